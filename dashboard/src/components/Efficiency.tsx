// The efficiency leaderboard of the overview, computed from the per-user analytics
// (`GET /v1/admin/analytics/usage?group_by=user`). The formula and what it leaves out
// (no per-user failed, estimated or cached token counts in the API yet) are in
// docs/efficiency.md.

import type { UsageReport, UsageRow } from "../api";
import { formatInt, formatUsd } from "../format";
import { Loading, Panel } from "./ui";

/** Users with fewer requests in the range are listed, not ranked. */
export const MIN_REQUESTS = 5;

export interface Efficiency {
  row: UsageRow;
  /** USD per 1,000 tokens; null when some requests were of unpriced models. */
  costPerKTokens: number | null;
  /** USD per request; null as above. */
  costPerRequest: number | null;
  tokensPerRequest: number;
  /** Output tokens / total tokens. */
  outputShare: number;
  ranked: boolean;
}

export function efficiency(row: UsageRow): Efficiency {
  const priced = row.unpriced_requests === 0;
  return {
    row,
    costPerKTokens: priced && row.total_tokens > 0 ? (row.cost_usd / row.total_tokens) * 1000 : null,
    costPerRequest: priced && row.requests > 0 ? row.cost_usd / row.requests : null,
    tokensPerRequest: row.requests > 0 ? row.total_tokens / row.requests : 0,
    outputShare: row.total_tokens > 0 ? row.output_tokens / row.total_tokens : 0,
    ranked: priced && row.requests >= MIN_REQUESTS && row.total_tokens > 0,
  };
}

/** Ranked users first, cheapest tokens first (ties: fewer tokens per request); then the
 * unranked ones by requests. */
export function leaderboard(rows: UsageRow[]): Efficiency[] {
  const all = rows.map(efficiency);
  const ranked = all.filter((e) => e.ranked).sort((a, b) => a.costPerKTokens! - b.costPerKTokens! || a.tokensPerRequest - b.tokensPerRequest);
  const rest = all.filter((e) => !e.ranked).sort((a, b) => b.row.requests - a.row.requests);
  return [...ranked, ...rest];
}

export function EfficiencyLeaderboard({ report }: { report: UsageReport | null }) {
  const board = report ? leaderboard(report.rows) : [];
  return (
    <Panel title="Efficiency leaderboard" testId="efficiency">
      <p class="hint">
        Ranked by cost per 1,000 tokens (lower is better), among users with at least {MIN_REQUESTS} requests and every request priced. See docs/efficiency.md.
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
              <th class="num">Output share</th>
              <th class="num">Cost / request</th>
              <th class="num">Cost / 1K tokens</th>
            </tr>
          </thead>
          <tbody>
            {board.map((e, i) => (
              <tr key={e.row.key} data-testid={`efficiency-row-${e.row.email ?? e.row.key}`}>
                <td>{e.ranked ? i + 1 : <span class="muted" title={e.row.unpriced_requests ? "some requests were of unpriced models" : `fewer than ${MIN_REQUESTS} requests`}>–</span>}</td>
                <td>{e.row.name ? `${e.row.name} (${e.row.email})` : e.row.key}</td>
                <td class="num">{formatInt(e.row.requests)}</td>
                <td class="num">{formatInt(Math.round(e.tokensPerRequest))}</td>
                <td class="num">{`${(e.outputShare * 100).toFixed(0)}%`}</td>
                <td class="num">{e.costPerRequest !== null ? formatUsd(e.costPerRequest) : e.row.unpriced_requests ? <span class="badge warn">unpriced</span> : "–"}</td>
                <td class="num" data-testid="cost-per-k">
                  {e.costPerKTokens !== null ? formatUsd(e.costPerKTokens) : e.row.unpriced_requests ? <span class="badge warn">unpriced</span> : "–"}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Panel>
  );
}
