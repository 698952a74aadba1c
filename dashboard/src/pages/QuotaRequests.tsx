// Self-service: ask an admin or team admin for more quota this period, and follow
// one's requests (pending, approved — granted —, denied, expired).

import { useCallback, useEffect, useState } from "preact/hooks";

import { ApiError, api, type Quota, type QuotaRequest } from "../api";
import { ErrorBanner, FieldError, Loading, Panel, Stat, StatusBadge } from "../components/ui";
import { formatInt, formatTime, parseTokens } from "../format";
import type { ScreenProps } from "../screens";

export function QuotaRequests(_props: ScreenProps) {
  const [list, setList] = useState<QuotaRequest[] | null>(null);
  const [quota, setQuota] = useState<Quota | null>(null);
  const [error, setError] = useState<unknown>(null);

  const load = useCallback(() => {
    Promise.all([api.myQuotaRequests(), api.myQuota()])
      .then(([l, q]) => {
        setList(l);
        setQuota(q);
        setError(null);
      })
      .catch(setError);
  }, []);
  useEffect(load, [load]);

  return (
    <div class="page" data-testid="page-requests">
      <header class="page-head">
        <h1>Request Quota</h1>
      </header>
      <ErrorBanner error={error} />
      <div class="grid-2">
        <Panel title="Request more quota" testId="request-panel">
          {quota && (
            <div class="stats">
              <Stat label="Available now" value={formatInt(quota.available_quota)} hint={`of ${formatInt(quota.personal_quota)} this period`} testId="request-available" />
            </div>
          )}
          <RequestForm onSent={load} />
        </Panel>
        <Panel title="My requests" testId="my-requests">
          {!list && !error && <Loading />}
          {list && list.length === 0 && <p class="muted">No requests yet.</p>}
          {list && list.length > 0 && (
            <table class="table compact" data-testid="my-requests-table">
              <thead>
                <tr>
                  <th>Asked (UTC)</th>
                  <th class="num">Tokens</th>
                  <th>Reason</th>
                  <th>Status</th>
                </tr>
              </thead>
              <tbody>
                {list.map((r) => (
                  <tr key={r.id} data-testid={`my-request-${r.id}`}>
                    <td>{formatTime(r.created_at)}</td>
                    <td class="num">{formatInt(r.amount)}</td>
                    <td>
                      {r.reason}
                      {r.decision_note && <div class="hint">Note: {r.decision_note}</div>}
                      {r.status === "pending" && <div class="hint">Expires {formatTime(r.expires_at)}</div>}
                    </td>
                    <td>
                      <StatusBadge status={r.status} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Panel>
      </div>
    </div>
  );
}

function RequestForm({ onSent }: { onSent: () => void }) {
  const [amount, setAmount] = useState("");
  const [reason, setReason] = useState("");
  const [problems, setProblems] = useState<{ amount?: string; reason?: string }>({});
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<QuotaRequest | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const found: { amount?: string; reason?: string } = {};
    const tokens = parseTokens(amount);
    if (typeof tokens === "string") found.amount = tokens;
    if (!reason.trim()) found.reason = "Say why you need it.";
    else if (reason.trim().length > 500) found.reason = "At most 500 characters.";
    setProblems(found);
    setDone(null);
    if (Object.keys(found).length || typeof tokens === "string") return;
    setBusy(true);
    setError(null);
    try {
      setDone(await api.requestQuota({ amount: tokens, reason: reason.trim() }));
      setAmount("");
      setReason("");
      onSent();
    } catch (err) {
      if (err instanceof ApiError && (err.field === "amount" || err.field === "reason")) setProblems({ [err.field]: err.message });
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="form" onSubmit={submit} noValidate data-testid="request-form">
      <label>
        Tokens
        <input name="amount" inputMode="numeric" value={amount} onInput={(e) => setAmount((e.target as HTMLInputElement).value)} aria-invalid={!!problems.amount} />
        <FieldError message={problems.amount} testId="error-request-amount" />
      </label>
      <label>
        Reason
        <input name="reason" value={reason} onInput={(e) => setReason((e.target as HTMLInputElement).value)} aria-invalid={!!problems.reason} />
        <FieldError message={problems.reason} testId="error-request-reason" />
      </label>
      <ErrorBanner error={error} />
      {done && (
        <div class="banner info" role="status" data-testid="request-done">
          Asked for {formatInt(done.amount)} tokens; your team admins and the administrators were notified.
        </div>
      )}
      <div class="actions">
        <button type="submit" class="primary" disabled={busy} data-testid="request-submit">
          {busy ? "Sending…" : "Send request"}
        </button>
      </div>
    </form>
  );
}
