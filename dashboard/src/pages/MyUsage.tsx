// Self-service: my quota (personal, team pools, overdraft, debt), vacation, my usage.

import { useEffect, useState } from "preact/hooks";

import { api, type Quota } from "../api";
import { ErrorBanner, Loading, Panel, Stat } from "../components/ui";
import { RangePicker, UsageSection } from "../components/UsageCharts";
import { formatInt, formatTime, statusLabel } from "../format";
import type { ScreenProps } from "../screens";

export function MyUsage({ user, theme }: ScreenProps) {
  const [quota, setQuota] = useState<Quota | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [days, setDays] = useState(30);

  const [status, setStatus] = useState(user.status);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api.myQuota().then(setQuota).catch(setError);
  }, []);

  // Going on vacation releases my unused personal quota to my team pools; coming back
  // returns what the team did not use. The answer is my quota after the change.
  const toggleVacation = async () => {
    setBusy(true);
    setError(null);
    try {
      const away = status !== "on_vacation";
      setQuota(away ? await api.startVacation() : await api.endVacation());
      setStatus(away ? "on_vacation" : "active");
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const teamName = (id: number) => user.teams.find((t) => t.id === id)?.name ?? `team #${id}`;
  const usedPct = quota && quota.personal_quota > 0 ? Math.min(100, (quota.used_tokens / quota.personal_quota) * 100) : 0;
  return (
    <div class="page" data-testid="page-me">
      <header class="page-head">
        <h1>My Usage</h1>
        <RangePicker days={days} onChange={setDays} />
      </header>
      <Panel
        title={`My quota — ${user.name} (${statusLabel[status] ?? status})`}
        actions={
          status !== "suspended" && (
            <button type="button" onClick={toggleVacation} disabled={busy} data-testid="vacation-toggle">
              {status === "on_vacation" ? "I am back from vacation" : "Go on vacation"}
            </button>
          )
        }
      >
        <ErrorBanner error={error} />
        {!quota && !error && <Loading />}
        {quota && (
          <>
            <div class="stats">
              <Stat label="Personal quota" value={formatInt(quota.personal_quota)} hint="tokens this period" testId="quota-personal" />
              <Stat label="Used" value={formatInt(quota.used_tokens)} testId="quota-used" />
              <Stat label="Available" value={formatInt(quota.available_quota)} testId="quota-available" />
              <Stat label="Team pool available" value={formatInt(quota.team_pool_available)} testId="quota-team-pool" />
              <Stat label="Transferable" value={formatInt(quota.transferable)} hint="may be sent to a colleague" testId="quota-transferable" />
              {(quota.overdraft_available > 0 || quota.overdraft_used > 0) && (
                <Stat label="Critical overdraft" value={formatInt(quota.overdraft_available)} hint={`left; ${formatInt(quota.overdraft_used)} drawn`} testId="quota-overdraft" />
              )}
              {quota.debt > 0 && <Stat label="Debt" value={formatInt(quota.debt)} hint="repaid from next period's quota" testId="quota-debt" />}
            </div>
            <div class="meter" role="meter" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(usedPct)} aria-label="Quota used">
              <div style={{ width: `${usedPct}%` }} />
            </div>
            <p class="hint">
              Period from {formatTime(quota.period_start)} UTC{quota.period_end ? ` to ${formatTime(quota.period_end)} UTC` : " (never resets)"}.
            </p>
            {quota.team_pools.length > 0 && (
              <table class="table compact" data-testid="my-pools">
                <thead>
                  <tr>
                    <th>Team</th>
                    <th class="num">Pool left / size</th>
                    <th class="num">My share per period</th>
                    <th class="num">Drawn this period</th>
                    <th class="num">Available to me</th>
                  </tr>
                </thead>
                <tbody>
                  {quota.team_pools.map((p) => (
                    <tr key={p.team_id}>
                      <td>{teamName(p.team_id)}</td>
                      <td class="num">
                        {formatInt(p.pool_balance)} / {formatInt(p.pool_size)}
                      </td>
                      <td class="num">{formatInt(p.member_cap)}</td>
                      <td class="num">{formatInt(p.drawn_this_period)}</td>
                      <td class="num">{formatInt(p.available)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </>
        )}
      </Panel>
      <UsageSection audience="me" theme={theme} showUsers={false} days={days} />
    </div>
  );
}
