// The usage picture shared by the overview (organisation) and "my usage" (one user):
// range picker, totals, cost trend by day, model breakdown.

import type { ChartConfiguration } from "chart.js";
import type { ComponentChildren } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";

import { api, type Audience, type Summary, type UsageReport } from "../api";
import { formatCompact, formatInt, formatUsd, lastDays } from "../format";
import { cssVar, type Theme } from "../theme";
import { ChartView, PALETTE } from "./Chart";
import { ErrorBanner, Loading, Panel, Stat } from "./ui";

export const RANGES = [7, 30, 90] as const;

export interface UsageData {
  summary: Summary;
  days: UsageReport;
  models: UsageReport;
}

/** Loads summary, per-day and per-model usage for the last `days` days. */
export function useUsage(audience: Audience, days: number) {
  const [data, setData] = useState<UsageData | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let live = true;
    const range = lastDays(days);
    setError(null);
    Promise.all([api.summary(audience, range), api.usage(audience, "day", range), api.usage(audience, "model", range, 8)])
      .then(([summary, dayRows, models]) => live && setData({ summary, days: dayRows, models }))
      .catch((e) => live && setError(e));
    return () => {
      live = false;
    };
  }, [audience, days]);
  return { data, error };
}

export function RangePicker({ days, onChange }: { days: number; onChange: (d: number) => void }) {
  return (
    <div class="segmented" role="group" aria-label="Date range">
      {RANGES.map((d) => (
        <button key={d} type="button" class={d === days ? "on" : ""} onClick={() => onChange(d)} data-testid={`range-${d}`}>
          {d} days
        </button>
      ))}
    </div>
  );
}

export function Totals({ summary, showUsers, extra }: { summary: Summary; showUsers: boolean; extra?: ComponentChildren }) {
  return (
    <div class="stats">
      {showUsers && <Stat label="Total users" value={formatInt(summary.users)} hint={`${formatInt(summary.active_users)} active in range`} testId="stat-users" />}
      <Stat label="Tokens used" value={formatCompact(summary.total_tokens)} hint={`${formatInt(summary.total_tokens)} tokens`} testId="stat-tokens" />
      <Stat label="Requests" value={formatInt(summary.requests)} testId="stat-requests" />
      <Stat
        label="Cost"
        value={formatUsd(summary.cost_usd)}
        hint={summary.unpriced_requests ? `${formatInt(summary.unpriced_requests)} requests of unpriced models not included` : "all requests priced"}
        testId="stat-cost"
      />
      {extra}
    </div>
  );
}

export function TrendAndModels({ data, theme }: { data: UsageData; theme: Theme }) {
  const trend = useMemo<ChartConfiguration>(() => {
    const rows = data.days.rows;
    return {
      type: "line",
      data: {
        labels: rows.map((r) => (r.key ?? "").slice(5)),
        datasets: [
          {
            label: "Cost (USD)",
            data: rows.map((r) => r.cost_usd),
            borderColor: PALETTE[0],
            backgroundColor: `${PALETTE[0]}33`,
            fill: true,
            tension: 0.25,
            yAxisID: "cost",
          },
          {
            label: "Tokens",
            data: rows.map((r) => r.total_tokens),
            borderColor: PALETTE[1],
            backgroundColor: PALETTE[1],
            tension: 0.25,
            yAxisID: "tokens",
          },
        ],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          cost: { type: "linear", position: "left", beginAtZero: true, title: { display: true, text: "USD" } },
          tokens: { type: "linear", position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "tokens" } },
        },
      },
    };
    // The theme is read by ChartView when it rebuilds.
  }, [data, theme]);

  const models = useMemo<ChartConfiguration>(() => {
    const rows = data.models.rows;
    return {
      type: "doughnut",
      data: {
        labels: rows.map((r) => r.key ?? "(unknown)"),
        datasets: [{ data: rows.map((r) => r.total_tokens), backgroundColor: PALETTE, borderColor: cssVar("--surface") }],
      },
      options: { responsive: true, maintainAspectRatio: false, animation: false, plugins: { legend: { position: "right" } } },
    };
  }, [data, theme]);

  const empty = data.summary.requests === 0;
  return (
    <div class="grid-2">
      <Panel title="Cost trend">
        {empty ? <p class="muted" data-testid="no-usage">No usage in this range yet.</p> : <ChartView config={trend} theme={theme} label="Cost and tokens per day" testId="chart-cost-trend" />}
      </Panel>
      <Panel title="Model breakdown (tokens)">
        {empty ? (
          <p class="muted">No usage in this range yet.</p>
        ) : (
          <>
            <ChartView config={models} theme={theme} label="Tokens per model" testId="chart-models" height={220} />
            <table class="table compact" data-testid="model-table">
              <thead>
                <tr>
                  <th>Model</th>
                  <th class="num">Requests</th>
                  <th class="num">Tokens</th>
                  <th class="num">Cost</th>
                </tr>
              </thead>
              <tbody>
                {data.models.rows.map((r) => (
                  <tr key={r.key}>
                    <td>{r.key}</td>
                    <td class="num">{formatInt(r.requests)}</td>
                    <td class="num">{formatInt(r.total_tokens)}</td>
                    <td class="num">{r.unpriced_requests === r.requests ? <span class="badge warn">unpriced</span> : formatUsd(r.cost_usd)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        )}
      </Panel>
    </div>
  );
}

/** Totals and charts; `extraStats` are more cards in the totals' row (the overview's teams). */
export function UsageSection({ audience, theme, showUsers, days, extraStats }: { audience: Audience; theme: Theme; showUsers: boolean; days: number; extraStats?: ComponentChildren }) {
  const { data, error } = useUsage(audience, days);
  if (error) return <ErrorBanner error={error} />;
  if (!data) return <Loading />;
  return (
    <>
      <Totals summary={data.summary} showUsers={showUsers} extra={extraStats} />
      <TrendAndModels data={data} theme={theme} />
    </>
  );
}
