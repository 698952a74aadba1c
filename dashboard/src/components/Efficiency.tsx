// The efficiency leaderboard of the overview, computed from the per-user analytics
// (`GET /v1/admin/analytics/usage?group_by=user`). The formula is in docs/efficiency.md.

import type { UsageReport, UsageRow } from "../api";
import { formatInt, formatUsd } from "../format";
import { Loading, Panel } from "./ui";

/** Users with fewer requests in the range are listed, not ranked. */
export const MIN_REQUESTS = 5;

export interface Efficiency {
  row: UsageRow;
  /** Share of tokens spent in failed or cut (estimated) requests. */
  wasteShare: number;
  /** Cached prompt tokens / prompt tokens. */
  cacheShare: number;
  /** USD per successful request; null when unpriced or none succeeded. */
  costPerSuccess: number | null;
  tokensPerRequest: number;
  ranked: boolean;
}

export function efficiency(row: UsageRow): Efficiency {
  const priced = row.unpriced_requests === 0;
  const wasted = (row.failed_tokens ?? 0) + (row.estimated_tokens ?? 0);
  const successes = row.successful_requests ?? 0;
  return {
    row,
    wasteShare: row.total_tokens > 0 ? Math.min(wasted / row.total_tokens, 1) : 0,
    cacheShare: row.input_tokens > 0 ? (row.cached_tokens ?? 0) / row.input_tokens : 0,
    costPerSuccess: priced && successes > 0 ? row.cost_usd / successes : null,
    tokensPerRequest: row.requests > 0 ? row.total_tokens / row.requests : 0,
    ranked: priced && row.requests >= MIN_REQUESTS && successes > 0,
  };
}

/** Ranked users first: least waste, then cheapest successful request; then the
 * unranked ones by requests. */
export function leaderboard(rows: UsageRow[]): Efficiency[] {
  const all = rows.map(efficiency);
  const ranked = all
    .filter((e) => e.ranked)
    .sort((a, b) => a.wasteShare - b.wasteShare || a.costPerSuccess! - b.costPerSuccess!);
  const rest = all.filter((e) => !e.ranked).sort((a, b) => b.row.requests - a.row.requests);
  return [...ranked, ...rest];
}

const percent = (share: number) => `${(share * 100).toFixed(share > 0 && share < 0.01 ? 1 : 0)}%`;

export function EfficiencyLeaderboard({ report }: { report: UsageReport | null }) {
  const board = report ? leaderboard(report.rows) : [];
  return (
    <Panel title="Efficiency leaderboard" testId="efficiency">
      <p class="hint">
        Ranked by waste (share of tokens in failed or cut requests), then cost per successful request — lower is better — among users with at least {MIN_REQUESTS} requests, every request priced. See docs/efficiency.md.
      </p>
      {!report && <Loading />}
      {report && board.length === 0 && <p class="muted">No usage in this range yet.</p>}
      {board.length > 0 && (
        <table class="table compact" data-testid="efficiency-table">
          <thead>
            <tr>
              <th>#</th>
              <th>User</th>
              <th class="num">Requests</th>
              <th class="num">Tokens / request</th>
              <th class="num">Waste</th>
              <th class="num">Cache share</th>
              <th class="num">Cost / successful request</th>
            </tr>
          </thead>
          <tbody>
            {board.map((e, i) => (
              <tr key={e.row.key} data-testid={`efficiency-row-${e.row.email ?? e.row.key}`}>
                <td>{e.ranked ? i + 1 : <span class="muted" title={e.row.unpriced_requests ? "some requests were of unpriced models" : `fewer than ${MIN_REQUESTS} requests`}>–</span>}</td>
                <td>{e.row.name ? `${e.row.name} (${e.row.email})` : e.row.key}</td>
                <td class="num">{formatInt(e.row.requests)}</td>
                <td class="num">{formatInt(Math.round(e.tokensPerRequest))}</td>
                <td class="num" data-testid="waste-share">{percent(e.wasteShare)}</td>
                <td class="num">{percent(e.cacheShare)}</td>
                <td class="num" data-testid="cost-per-success">
                  {e.costPerSuccess !== null ? formatUsd(e.costPerSuccess) : e.row.unpriced_requests ? <span class="badge warn">unpriced</span> : "–"}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Panel>
  );
}
