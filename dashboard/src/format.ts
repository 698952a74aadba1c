// Number and date formatting shared by the screens.

const integer = new Intl.NumberFormat("en-US");
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

export const formatInt = (n: number) => integer.format(n);
export const formatCompact = (n: number) => compact.format(n);

/** Dollars; amounts under a cent keep two significant digits (a request costs fractions
 * of a cent, and a small cost must never read as $0.00, i.e. free). */
export function formatUsd(n: number): string {
  if (n !== 0 && Math.abs(n) < 0.01) return `$${n.toLocaleString("en-US", { maximumSignificantDigits: 2 })}`;
  return `$${n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

/** `YYYY-MM-DD` of a date, in UTC (the API's days are UTC days). */
export const isoDay = (d: Date) => d.toISOString().slice(0, 10);

/** The last `days` days up to today (UTC), as the API's `from`/`to`. */
export function lastDays(days: number): { from: string; to: string } {
  const to = new Date();
  const from = new Date(to.getTime() - (days - 1) * 86_400_000);
  return { from: isoDay(from), to: isoDay(to) };
}

export const statusLabel: Record<string, string> = {
  active: "Active",
  on_vacation: "On vacation",
  suspended: "Suspended",
};
