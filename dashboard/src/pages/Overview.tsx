// Organisation overview (admins): users, token usage, cost trend, model breakdown,
// top users and projects. (Teams and the efficiency leaderboard come with the quota
// engine's teams.)

import { useEffect, useState } from "preact/hooks";

import { api, type UsageReport } from "../api";
import { ErrorBanner, Panel } from "../components/ui";
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
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    const range = lastDays(days);
    setError(null);
    Promise.all([api.usage("org", "user", range, 10), api.usage("org", "project", range, 10)])
      .then(([u, p]) => {
        setByUser(u);
        setByProject(p);
      })
      .catch(setError);
  }, [days]);

  return (
    <div class="page" data-testid="page-overview">
      <header class="page-head">
        <h1>Overview</h1>
        <RangePicker days={days} onChange={setDays} />
      </header>
      <UsageSection audience="org" theme={theme} showUsers days={days} />
      <ErrorBanner error={error} />
      <div class="grid-2">
        <TopTable title="Top users" report={byUser} keyLabel="User" testId="top-users" />
        <TopTable title="Projects" report={byProject} keyLabel="Project (X-Project-ID)" testId="top-projects" />
      </div>
    </div>
  );
}
