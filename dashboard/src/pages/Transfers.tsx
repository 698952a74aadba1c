// Credit reallocation. Everyone: send part of their personal quota to a colleague
// (what they may send is `transferable` from their quota) and see their transfers.
// Admins and team admins: the history (every transfer, or those touching their
// members) with filters, the filtered CSV export, and approve/deny of pending ones.

import { useCallback, useEffect, useState } from "preact/hooks";

import { ApiError, api, type Profile, type Quota, type Transfer, type TransferFilter, type TransferStatus } from "../api";
import { DecisionDialog, ErrorBanner, FieldError, Loading, Panel, Stat, StatusBadge } from "../components/ui";
import { EMAIL, formatInt, formatTime, isoDay, parseTokens } from "../format";
import { notificationsChanged } from "../notifications";
import { loadPeople, type Person } from "../people";
import type { ScreenProps } from "../screens";

export function Transfers({ user }: ScreenProps) {
  const [quota, setQuota] = useState<Quota | null>(null);
  const [mine, setMine] = useState<Transfer[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [historyVersion, setHistoryVersion] = useState(0);

  const load = useCallback(() => {
    Promise.all([api.myQuota(), api.myTransfers()])
      .then(([q, t]) => {
        setQuota(q);
        setMine(t);
        setError(null);
      })
      .catch(setError);
  }, []);
  useEffect(load, [load]);
  const changed = () => {
    load();
    setHistoryVersion((v) => v + 1);
  };
  const approver = user.is_admin || user.is_team_admin;

  return (
    <div class="page" data-testid="page-transfers">
      <header class="page-head">
        <h1>Credit Reallocation</h1>
      </header>
      <ErrorBanner error={error} />
      <div class="grid-2">
        <Panel title="Transfer credits" testId="transfer-panel">
          {quota ? (
            <div class="stats">
              <Stat label="Transferable now" value={formatInt(quota.transferable)} hint="personal credit not held by in-flight requests" testId="transferable" />
              <Stat label="Available" value={formatInt(quota.available_quota)} hint={`of ${formatInt(quota.personal_quota)} this period`} testId="transfer-available" />
            </div>
          ) : (
            !error && <Loading />
          )}
          <TransferForm onSent={changed} />
        </Panel>
        <Panel title="My transfers" testId="my-transfers">
          {!mine && !error && <Loading />}
          {mine && <MyTransfers list={mine} me={user} />}
        </Panel>
      </div>
      {approver && <History user={user} version={historyVersion} onDecided={changed} />}
    </div>
  );
}

interface FormValues {
  recipient: string;
  amount: string;
  reason: string;
}
type Problems = Partial<Record<keyof FormValues, string>>;
const SERVER_FIELDS: Record<string, keyof FormValues> = { recipient_email: "recipient", amount: "amount", reason: "reason" };

function TransferForm({ onSent }: { onSent: () => void }) {
  const empty = { recipient: "", amount: "", reason: "" };
  const [values, setValues] = useState<FormValues>(empty);
  const [problems, setProblems] = useState<Problems>({});
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<Transfer | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (k: keyof FormValues, v: string) => setValues((old) => ({ ...old, [k]: v }));

  const submit = async (e: Event) => {
    e.preventDefault();
    const found: Problems = {};
    if (!EMAIL.test(values.recipient.trim())) found.recipient = "Enter the recipient's email (name@company.com).";
    const amount = parseTokens(values.amount);
    if (typeof amount === "string") found.amount = amount;
    if (!values.reason.trim()) found.reason = "Say why (it is kept in the audit log).";
    else if (values.reason.trim().length > 500) found.reason = "At most 500 characters.";
    setProblems(found);
    setDone(null);
    if (Object.keys(found).length || typeof amount === "string") return;
    setBusy(true);
    setError(null);
    try {
      const sent = await api.transfer({ recipient_email: values.recipient.trim(), amount, reason: values.reason.trim() });
      setDone(sent);
      setValues(empty);
      onSent();
    } catch (err) {
      // insufficient_quota, unknown_recipient, self_transfer… name a field: show it there.
      if (err instanceof ApiError && err.field && SERVER_FIELDS[err.field]) setProblems({ [SERVER_FIELDS[err.field]]: err.message });
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="form" onSubmit={submit} noValidate data-testid="transfer-form">
      <label>
        Recipient email
        <input name="recipient_email" type="email" value={values.recipient} onInput={(e) => set("recipient", (e.target as HTMLInputElement).value)} aria-invalid={!!problems.recipient} />
        <FieldError message={problems.recipient} testId="error-recipient" />
      </label>
      <label>
        Amount (tokens)
        <input name="amount" inputMode="numeric" value={values.amount} onInput={(e) => set("amount", (e.target as HTMLInputElement).value)} aria-invalid={!!problems.amount} />
        <FieldError message={problems.amount} testId="error-amount" />
      </label>
      <label>
        Reason
        <input name="reason" value={values.reason} onInput={(e) => set("reason", (e.target as HTMLInputElement).value)} aria-invalid={!!problems.reason} />
        <FieldError message={problems.reason} testId="error-reason" />
      </label>
      <ErrorBanner error={error} />
      {done && (
        <div class="banner info" role="status" data-testid="transfer-done">
          {done.status === "pending"
            ? `${formatInt(done.amount)} tokens to ${done.recipient_email} wait for approval (held until then).`
            : `Sent ${formatInt(done.amount)} tokens to ${done.recipient_email}.`}
        </div>
      )}
      <div class="actions">
        <button type="submit" class="primary" disabled={busy} data-testid="transfer-submit">
          {busy ? "Sending…" : "Transfer"}
        </button>
      </div>
    </form>
  );
}

function MyTransfers({ list, me }: { list: Transfer[]; me: Profile }) {
  if (list.length === 0) return <p class="muted">No transfers yet.</p>;
  return (
    <table class="table compact" data-testid="my-transfers-table">
      <thead>
        <tr>
          <th>When (UTC)</th>
          <th>With</th>
          <th class="num">Tokens</th>
          <th>Reason</th>
          <th>Status</th>
        </tr>
      </thead>
      <tbody>
        {list.map((t) => {
          const sent = t.sender_id === me.id;
          return (
            <tr key={t.id} data-testid={`my-transfer-${t.id}`}>
              <td>{formatTime(t.created_at)}</td>
              <td>{sent ? `to ${t.recipient_email}` : `from ${t.sender_email}`}</td>
              <td class={`num ${sent ? "out" : "in"}`}>{`${sent ? "−" : "+"}${formatInt(t.amount)}`}</td>
              <td>
                {t.reason}
                {t.decision_note && <div class="hint">Note: {t.decision_note}</div>}
              </td>
              <td>
                <StatusBadge status={t.status} />
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

interface Filters {
  from: string;
  to: string;
  userId: string;
  min: string;
  max: string;
  status: "" | TransferStatus;
}

const NO_FILTERS: Filters = { from: "", to: "", userId: "", min: "", max: "", status: "" };

/** The filters as the API's query, or the problems by field. */
function toQuery(f: Filters): { query?: TransferFilter; problems: Partial<Record<keyof Filters, string>> } {
  const problems: Partial<Record<keyof Filters, string>> = {};
  const tokens = (raw: string, key: "min" | "max") => {
    if (!raw.trim()) return undefined;
    const n = parseTokens(raw, { allowZero: true });
    if (typeof n === "string") {
      problems[key] = n;
      return undefined;
    }
    return n;
  };
  const min = tokens(f.min, "min");
  const max = tokens(f.max, "max");
  if (min !== undefined && max !== undefined && min > max) problems.max = "The maximum is below the minimum.";
  if (f.from && f.to && f.from > f.to) problems.to = "The end date is before the start date.";
  if (Object.keys(problems).length) return { problems };
  return {
    problems,
    query: {
      from: f.from || undefined,
      // The API's `to` is an instant (a date means its midnight, excluded); the form's
      // "To" day is inclusive, so ask up to the next midnight.
      to: f.to ? nextDay(f.to) : undefined,
      user_id: f.userId ? Number(f.userId) : undefined,
      min_amount: min,
      max_amount: max,
      status: f.status || undefined,
      limit: 500,
    },
  };
}

/** `YYYY-MM-DD` of the day after. */
function nextDay(day: string): string {
  return isoDay(new Date(Date.parse(`${day}T00:00:00Z`) + 86_400_000));
}

function download(name: string, text: string, type: string) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  // Give the browser time to start the download before the URL goes.
  window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function History({ user, version, onDecided }: { user: Profile; version: number; onDecided: () => void }) {
  const [draft, setDraft] = useState<Filters>(NO_FILTERS);
  const [applied, setApplied] = useState<TransferFilter>({ limit: 500 });
  // The applied days as the user chose them (inclusive), for the export's file name.
  const [draftRange, setDraftRange] = useState({ from: "", to: "" });
  const [problems, setProblems] = useState<Partial<Record<keyof Filters, string>>>({});
  const [rows, setRows] = useState<Transfer[] | null>(null);
  const [people, setPeople] = useState<Map<number, Person> | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [exporting, setExporting] = useState(false);
  const [deciding, setDeciding] = useState<{ transfer: Transfer; approve: boolean } | null>(null);
  const set = (k: keyof Filters, v: string) => setDraft((old) => ({ ...old, [k]: v }));

  useEffect(() => {
    loadPeople(user).then(setPeople).catch(setError);
  }, [user.id, user.is_admin, user.is_team_admin]);

  useEffect(() => {
    let live = true;
    setRows(null);
    api
      .transfers(applied)
      .then((list) => {
        if (!live) return;
        setRows(list);
        setError(null);
      })
      .catch((e) => live && setError(e));
    return () => {
      live = false;
    };
  }, [applied, version]);

  const apply = (e: Event) => {
    e.preventDefault();
    const { query, problems: found } = toQuery(draft);
    setProblems(found);
    if (query) {
      setApplied(query);
      setDraftRange({ from: draft.from, to: draft.to });
    }
  };
  const reset = () => {
    setDraft(NO_FILTERS);
    setProblems({});
    setApplied({ limit: 500 });
    setDraftRange({ from: "", to: "" });
  };
  const exportCsv = async () => {
    setExporting(true);
    setError(null);
    try {
      // Exactly the filters shown in the table (the applied ones), without the page limit.
      const { limit: _shown, ...filters } = applied;
      const csv = await api.transfersCsv({ ...filters, limit: 10_000 });
      download(`transfers-${draftRange.from || "start"}-to-${draftRange.to || isoDay(new Date())}.csv`, csv, "text/csv;charset=utf-8");
    } catch (e) {
      setError(e);
    } finally {
      setExporting(false);
    }
  };

  const sortedPeople = [...(people?.values() ?? [])].sort((a, b) => a.email.localeCompare(b.email));
  return (
    <Panel
      title={user.is_admin ? "Transfer history" : "Transfer history (your teams' members)"}
      testId="transfer-history"
      actions={
        <button type="button" onClick={exportCsv} disabled={exporting} data-testid="export-csv">
          {exporting ? "Exporting…" : "Export CSV"}
        </button>
      }
    >
      <form class="filters" onSubmit={apply} noValidate data-testid="transfer-filters">
        <label>
          From
          <input type="date" name="from" value={draft.from} onInput={(e) => set("from", (e.target as HTMLInputElement).value)} />
        </label>
        <label>
          To
          <input type="date" name="to" value={draft.to} onInput={(e) => set("to", (e.target as HTMLInputElement).value)} aria-invalid={!!problems.to} />
          <FieldError message={problems.to} testId="error-filter-to" />
        </label>
        <label>
          User
          <select name="user_id" value={draft.userId} onChange={(e) => set("userId", (e.target as HTMLSelectElement).value)}>
            <option value="">Anyone</option>
            {sortedPeople.map((p) => (
              <option key={p.id} value={String(p.id)}>
                {p.email}
              </option>
            ))}
          </select>
        </label>
        <label>
          Min tokens
          <input name="min_amount" inputMode="numeric" value={draft.min} onInput={(e) => set("min", (e.target as HTMLInputElement).value)} aria-invalid={!!problems.min} />
          <FieldError message={problems.min} testId="error-filter-min" />
        </label>
        <label>
          Max tokens
          <input name="max_amount" inputMode="numeric" value={draft.max} onInput={(e) => set("max", (e.target as HTMLInputElement).value)} aria-invalid={!!problems.max} />
          <FieldError message={problems.max} testId="error-filter-max" />
        </label>
        <label>
          Status
          <select name="status" value={draft.status} onChange={(e) => set("status", (e.target as HTMLSelectElement).value)}>
            <option value="">Any</option>
            <option value="completed">Completed</option>
            <option value="pending">Pending</option>
            <option value="denied">Denied</option>
            <option value="expired">Expired</option>
          </select>
        </label>
        <div class="row filter-buttons">
          <button type="submit" class="primary" data-testid="apply-filters">
            Apply
          </button>
          <button type="button" onClick={reset} data-testid="reset-filters">
            Reset
          </button>
        </div>
      </form>
      <ErrorBanner error={error} />
      {!rows && !error && <Loading />}
      {rows && (
        <table class="table compact" data-testid="history-table">
          <thead>
            <tr>
              <th>When (UTC)</th>
              <th>From</th>
              <th>To</th>
              <th class="num">Tokens</th>
              <th>Reason</th>
              <th>Status</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {rows.map((t) => (
              <tr key={t.id} data-testid={`history-row-${t.id}`}>
                <td>{formatTime(t.created_at)}</td>
                <td>{t.sender_email}</td>
                <td>{t.recipient_email}</td>
                <td class="num">{formatInt(t.amount)}</td>
                <td>
                  {t.reason}
                  {t.decision_note && <div class="hint">Note: {t.decision_note}</div>}
                </td>
                <td>
                  <StatusBadge status={t.status} />
                </td>
                <td class="row-actions">
                  {t.status === "pending" && t.sender_id !== user.id && t.recipient_id !== user.id && (
                    <>
                      <button type="button" class="small" onClick={() => setDeciding({ transfer: t, approve: true })} data-testid="approve-transfer">
                        Approve
                      </button>
                      <button type="button" class="small danger" onClick={() => setDeciding({ transfer: t, approve: false })} data-testid="deny-transfer">
                        Deny
                      </button>
                    </>
                  )}
                </td>
              </tr>
            ))}
            {rows.length === 0 && (
              <tr>
                <td colSpan={7} class="muted">
                  No transfers match.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
      {rows && rows.length === 500 && <p class="hint">The first 500 transfers are shown; narrow the filters or export the CSV for all.</p>}
      {deciding && (
        <TransferDecision
          transfer={deciding.transfer}
          approve={deciding.approve}
          onCancel={() => setDeciding(null)}
          onDone={() => {
            setDeciding(null);
            onDecided();
          }}
        />
      )}
    </Panel>
  );
}

/** Approve or deny a pending transfer (also used by the approvals inbox). */
export function TransferDecision({ transfer, approve, onCancel, onDone }: { transfer: Transfer; approve: boolean; onCancel: () => void; onDone: () => void }) {
  return (
    <DecisionDialog
      title={approve ? "Approve transfer" : "Deny transfer"}
      approve={approve}
      summary={
        <p>
          {transfer.sender_email} → {transfer.recipient_email}: <strong>{formatInt(transfer.amount)} tokens</strong> — “{transfer.reason}”.{" "}
          {approve ? "The tokens go to the recipient." : "The tokens go back to the sender."}
        </p>
      }
      onCancel={onCancel}
      onDecide={async (note) => {
        await api.decideTransfer(transfer.id, approve, note);
        notificationsChanged();
        onDone();
      }}
    />
  );
}
