// Organisation overview (admins): users, teams, token usage, cost trend, model
// breakdown, the efficiency leaderboard (docs/efficiency.md), top users and projects.

import { useEffect, useState } from "preact/hooks";

import { api, type Team, type UsageReport } from "../api";
import { EfficiencyLeaderboard } from "../components/Efficiency";
import { ErrorBanner, Panel, Stat } from "../components/ui";
import { RangePicker, UsageSection } from "../components/UsageCharts";
import { formatInt, formatUsd, lastDays } from "../format";
import type { ScreenProps } from "../screens";

function TopTable({ title, report, keyLabel, testId }: { title: string; report: UsageReport | null; keyLabel: string; testId: string }) {
  return (
    <Panel title={title}>
      {report && report.rows.length === 0 && <p class="muted">No usage in this range yet.</p>}
      {report && report.rows.length > 0 && (
        <table class="table compact" data-testid={testId}>
          <thead>
            <tr>
              <th>{keyLabel}</th>
              <th class="num">Requests</th>
              <th class="num">Tokens</th>
              <th class="num">Cost</th>
            </tr>
          </thead>
          <tbody>
            {report.rows.map((r) => (
              <tr key={r.key ?? "none"}>
                <td>{r.name ? `${r.name} (${r.email})` : (r.key ?? <span class="muted">no project</span>)}</td>
                <td class="num">{formatInt(r.requests)}</td>
                <td class="num">{formatInt(r.total_tokens)}</td>
                <td class="num">{formatUsd(r.cost_usd)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Panel>
  );
}

export function Overview({ theme }: ScreenProps) {
  const [days, setDays] = useState(30);
  const [byUser, setByUser] = useState<UsageReport | null>(null);
  const [byProject, setByProject] = useState<UsageReport | null>(null);
  const [everyUser, setEveryUser] = useState<UsageReport | null>(null);
  const [teams, setTeams] = useState<Team[] | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    api.listTeams().then(setTeams).catch(setError);
  }, []);

  useEffect(() => {
    const range = lastDays(days);
    setError(null);
    // Every user (up to the API's 1000) for the leaderboard; the top ten for the table.
    Promise.all([api.usage("org", "user", range, 1000), api.usage("org", "project", range, 10)])
      .then(([u, p]) => {
        setEveryUser(u);
        setByUser({ ...u, rows: u.rows.slice(0, 10) });
        setByProject(p);
      })
      .catch(setError);
  }, [days]);

  const poolSize = teams?.reduce((sum, t) => sum + t.pool_size, 0) ?? 0;
  const poolUsed = teams?.reduce((sum, t) => sum + t.pool_used, 0) ?? 0;

  return (
    <div class="page" data-testid="page-overview">
      <header class="page-head">
        <h1>Overview</h1>
        <RangePicker days={days} onChange={setDays} />
      </header>
      <UsageSection
        audience="org"
        theme={theme}
        showUsers
        days={days}
        extraStats={
          teams && (
            <>
              <Stat label="Total teams" value={formatInt(teams.length)} hint={`${formatInt(teams.reduce((n, t) => n + t.member_count, 0))} memberships`} testId="stat-teams" />
              <Stat label="Team pools used" value={formatInt(poolUsed)} hint={`of ${formatInt(poolSize)} tokens this period`} testId="stat-pools" />
            </>
          )
        }
      />
      <ErrorBanner error={error} />
      <EfficiencyLeaderboard report={everyUser} />
      <div class="grid-2">
        <TopTable title="Top users" report={byUser} keyLabel="User" testId="top-users" />
        <TopTable title="Projects" report={byProject} keyLabel="Project (X-Project-ID)" testId="top-projects" />
      </div>
    </div>
  );
}
