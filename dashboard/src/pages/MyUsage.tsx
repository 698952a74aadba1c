// Self-service: my quota and my usage.

import { useEffect, useState } from "preact/hooks";

import { api, type Quota } from "../api";
import { ErrorBanner, Loading, Panel, Stat } from "../components/ui";
import { RangePicker, UsageSection } from "../components/UsageCharts";
import { formatInt, statusLabel } from "../format";
import type { ScreenProps } from "../screens";

export function MyUsage({ user, theme }: ScreenProps) {
  const [quota, setQuota] = useState<Quota | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [days, setDays] = useState(30);

  useEffect(() => {
    api.myQuota().then(setQuota).catch(setError);
  }, []);

  const usedPct = quota && quota.personal_quota > 0 ? Math.min(100, (quota.used_tokens / quota.personal_quota) * 100) : 0;
  return (
    <div class="page" data-testid="page-me">
      <header class="page-head">
        <h1>My Usage</h1>
        <RangePicker days={days} onChange={setDays} />
      </header>
      <Panel title={`My quota — ${user.name} (${statusLabel[user.status] ?? user.status})`}>
        <ErrorBanner error={error} />
        {!quota && !error && <Loading />}
        {quota && (
          <>
            <div class="stats">
              <Stat label="Personal quota" value={formatInt(quota.personal_quota)} hint="tokens this period" testId="quota-personal" />
              <Stat label="Used" value={formatInt(quota.used_tokens)} testId="quota-used" />
              <Stat label="Available" value={formatInt(quota.available_quota)} testId="quota-available" />
              <Stat label="Team pool available" value={formatInt(quota.team_pool_available)} />
            </div>
            <div class="meter" role="meter" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(usedPct)} aria-label="Quota used">
              <div style={{ width: `${usedPct}%` }} />
            </div>
          </>
        )}
      </Panel>
      <UsageSection audience="me" theme={theme} showUsers={false} days={days} />
    </div>
  );
}
