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

/** An RFC 3339 time as `YYYY-MM-DD HH:MM` UTC (the API's clock). */
export function formatTime(rfc3339: string | null | undefined): string {
  if (!rfc3339) return "";
  return `${rfc3339.slice(0, 10)} ${rfc3339.slice(11, 16)}`;
}

export const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** A positive whole number of tokens, or the problem with the text. */
export function parseTokens(raw: string, { allowZero = false } = {}): number | string {
  const text = raw.trim().replace(/[,_ ]/g, "");
  if (!/^\d+$/.test(text)) return "Enter a whole number of tokens.";
  const n = Number(text);
  if (!Number.isSafeInteger(n)) return "That number is too large.";
  if (n === 0 && !allowZero) return "Enter at least 1 token.";
  return n;
}
