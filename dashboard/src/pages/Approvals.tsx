// The approvals inbox (admins: everyone's; team admins: their members'): pending quota
// requests and pending transfers, each approved or denied with an optional note.
// Approving a quota request grants the tokens for the current period; approving a
// transfer releases the held tokens to the recipient.

import { useCallback, useEffect, useState } from "preact/hooks";

import { api, type QuotaRequest, type Transfer } from "../api";
import { DecisionDialog, ErrorBanner, Loading, Panel } from "../components/ui";
import { formatInt, formatTime } from "../format";
import { notificationsChanged } from "../notifications";
import { loadPeople, personLabel, type Person } from "../people";
import type { ScreenProps } from "../screens";
import { TransferDecision } from "./Transfers";

type Deciding = { kind: "request"; request: QuotaRequest; approve: boolean } | { kind: "transfer"; transfer: Transfer; approve: boolean } | null;

export function Approvals({ user }: ScreenProps) {
  const [requests, setRequests] = useState<QuotaRequest[] | null>(null);
  const [transfers, setTransfers] = useState<Transfer[] | null>(null);
  const [people, setPeople] = useState<Map<number, Person> | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [deciding, setDeciding] = useState<Deciding>(null);
  const [done, setDone] = useState<string | null>(null);

  const load = useCallback(() => {
    Promise.all([api.quotaRequests("pending"), api.transfers({ status: "pending", limit: 500 })])
      .then(([r, t]) => {
        setRequests(r);
        setTransfers(t);
        setError(null);
      })
      .catch(setError);
  }, []);
  useEffect(load, [load]);
  useEffect(() => {
    loadPeople(user).then(setPeople).catch(setError);
  }, [user.id, user.is_admin, user.is_team_admin]);

  const finish = (message: string) => {
    setDeciding(null);
    setDone(message);
    load();
  };

  return (
    <div class="page" data-testid="page-approvals">
      <header class="page-head">
        <h1>Approvals</h1>
        <button type="button" onClick={load} data-testid="refresh-approvals">
          Refresh
        </button>
      </header>
      <p class="hint">{user.is_admin ? "Pending requests from everyone." : "Pending requests from the members of the teams you administer."} You cannot decide your own requests, nor transfers to you.</p>
      <ErrorBanner error={error} />
      {done && (
        <div class="banner info" role="status" data-testid="decision-done">
          {done}
        </div>
      )}
      <Panel title={`Quota requests${requests ? ` (${requests.length})` : ""}`} testId="pending-requests">
        {!requests && !error && <Loading />}
        {requests && requests.length === 0 && <p class="muted">No pending quota requests.</p>}
        {requests && requests.length > 0 && (
          <table class="table compact" data-testid="requests-table">
            <thead>
              <tr>
                <th>Asked (UTC)</th>
                <th>Who</th>
                <th class="num">Tokens</th>
                <th>Reason</th>
                <th>Expires</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {requests.map((r) => (
                <tr key={r.id} data-testid={`request-row-${r.id}`}>
                  <td>{formatTime(r.created_at)}</td>
                  <td>{personLabel(people, r.user_id)}</td>
                  <td class="num">{formatInt(r.amount)}</td>
                  <td>{r.reason}</td>
                  <td>{formatTime(r.expires_at)}</td>
                  <td class="row-actions">
                    {r.user_id !== user.id && (
                      <>
                        <button type="button" class="small" onClick={() => setDeciding({ kind: "request", request: r, approve: true })} data-testid="approve-request">
                          Approve
                        </button>
                        <button type="button" class="small danger" onClick={() => setDeciding({ kind: "request", request: r, approve: false })} data-testid="deny-request">
                          Deny
                        </button>
                      </>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Panel>
      <Panel title={`Transfers waiting for approval${transfers ? ` (${transfers.length})` : ""}`} testId="pending-transfers">
        {!transfers && !error && <Loading />}
        {transfers && transfers.length === 0 && <p class="muted">No pending transfers.</p>}
        {transfers && transfers.length > 0 && (
          <table class="table compact" data-testid="pending-transfers-table">
            <thead>
              <tr>
                <th>Asked (UTC)</th>
                <th>From</th>
                <th>To</th>
                <th class="num">Tokens</th>
                <th>Reason</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {transfers.map((t) => (
                <tr key={t.id} data-testid={`pending-transfer-${t.id}`}>
                  <td>{formatTime(t.created_at)}</td>
                  <td>{t.sender_email}</td>
                  <td>{t.recipient_email}</td>
                  <td class="num">{formatInt(t.amount)}</td>
                  <td>{t.reason}</td>
                  <td class="row-actions">
                    {t.sender_id !== user.id && t.recipient_id !== user.id && (
                      <>
                        <button type="button" class="small" onClick={() => setDeciding({ kind: "transfer", transfer: t, approve: true })} data-testid="approve-transfer">
                          Approve
                        </button>
                        <button type="button" class="small danger" onClick={() => setDeciding({ kind: "transfer", transfer: t, approve: false })} data-testid="deny-transfer">
                          Deny
                        </button>
                      </>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Panel>

      {deciding?.kind === "request" && (
        <DecisionDialog
          title={deciding.approve ? "Approve quota request" : "Deny quota request"}
          approve={deciding.approve}
          summary={
            <p>
              {personLabel(people, deciding.request.user_id)} asks for <strong>{formatInt(deciding.request.amount)} tokens</strong>: “{deciding.request.reason}”.
              {deciding.approve ? " The tokens are granted for the current period." : ""}
            </p>
          }
          onCancel={() => setDeciding(null)}
          onDecide={async (note) => {
            const r = await api.decideQuotaRequest(deciding.request.id, deciding.approve, note);
            notificationsChanged();
            finish(`${r.status === "approved" ? "Approved" : "Denied"}: ${formatInt(r.amount)} tokens for ${personLabel(people, r.user_id)}.`);
          }}
        />
      )}
      {deciding?.kind === "transfer" && (
        <TransferDecision
          transfer={deciding.transfer}
          approve={deciding.approve}
          onCancel={() => setDeciding(null)}
          onDone={() =>
            finish(`${deciding.approve ? "Approved" : "Denied"}: ${formatInt(deciding.transfer.amount)} tokens from ${deciding.transfer.sender_email} to ${deciding.transfer.recipient_email}.`)
          }
        />
      )}
    </div>
  );
}
