//! Credit transfers between users (`POST /v1/users/me/transfer`).
//!
//! A transfer comes from the sender's personal credit not held by any lease, never
//! more; it goes to another active user. Above `TRANSFER_APPROVAL_THRESHOLD` it waits
//! for an admin or a team admin of the sender: the amount sits in escrow meanwhile
//! (so it cannot be spent twice), and goes to the recipient on approval or back to
//! the sender on denial or expiry. Every transfer is in the audit log; the recipient
//! is notified.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use crate::db::schema::{transfers, users};
use crate::db::{lock_user, retry_on_conflict, write_transaction, DbConnection};
use crate::error::{Error, Result};
use crate::ledger::{self, Account, Kind, Movement};
use crate::quota::{self, QuotaRules};
use crate::users::{User, UserStatus};
use crate::{audit, notifications, teams};

/// Longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// A transfer as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = transfers)]
pub struct Transfer {
    /// Id.
    pub id: i64,
    /// From.
    pub sender_id: i64,
    /// To.
    pub recipient_id: i64,
    /// Tokens.
    pub amount: i64,
    /// Why.
    pub reason: String,
    /// `completed`, `pending`, `denied`, `expired`.
    pub status: String,
    /// When asked.
    pub created_at: NaiveDateTime,
    /// When a pending transfer expires.
    pub expires_at: Option<NaiveDateTime>,
    /// When approved or denied.
    pub decided_at: Option<NaiveDateTime>,
    /// Who decided.
    pub decided_by: Option<i64>,
    /// The decider's note.
    pub decision_note: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = transfers)]
struct NewTransfer<'a> {
    sender_id: i64,
    recipient_id: i64,
    amount: i64,
    reason: &'a str,
    status: &'a str,
    created_at: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
}

/// A transfer asked for by a user.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    /// Recipient's email.
    pub recipient_email: String,
    /// Tokens, > 0.
    pub amount: i64,
    /// Why, 1–500 characters.
    pub reason: String,
}

pub(crate) fn validate_reason(raw: &str) -> Result<&str> {
    let reason = raw.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(Error::invalid(
            "reason",
            format!("must be 1–{MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(reason)
}

pub(crate) fn validate_amount(amount: i64) -> Result<()> {
    if amount <= 0 {
        return Err(Error::invalid(
            "amount",
            "must be a positive number of tokens",
        ));
    }
    if amount > ledger::MAX_TOKENS {
        return Err(Error::invalid(
            "amount",
            format!("must be at most {}", ledger::MAX_TOKENS),
        ));
    }
    Ok(())
}

/// Sends credit from `sender` (who must not be suspended; the caller checked the
/// key). Returns the transfer, `completed` or `pending`.
pub fn send(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    sender: &User,
    request: TransferRequest,
    rules: &QuotaRules,
) -> Result<Transfer> {
    validate_amount(request.amount)?;
    let reason = validate_reason(&request.reason)?;
    let email = request.recipient_email.trim().to_lowercase();
    retry_on_conflict(|| {
        write_transaction(&mut *conn, |conn| {
            let recipient: User = users::table
                .filter(users::email.eq(&email))
                .filter(users::deleted_at.is_null())
                .select(User::as_select())
                .first(conn)
                .optional()?
                .ok_or_else(|| {
                    Error::rejected(
                        "recipient_email",
                        "unknown_recipient",
                        "no user has this email",
                    )
                })?;
            if recipient.id == sender.id {
                return Err(Error::rejected(
                    "recipient_email",
                    "self_transfer",
                    "you cannot transfer credit to yourself",
                ));
            }
            if recipient.status() != UserStatus::Active {
                return Err(Error::rejected(
                    "recipient_email",
                    "recipient_inactive",
                    format!("the recipient is {}, not active", recipient.status()),
                ));
            }
            let (first, second) = if sender.id < recipient.id {
                (sender.id, recipient.id)
            } else {
                (recipient.id, sender.id)
            };
            lock_user(conn, first)?;
            lock_user(conn, second)?;
            let sender = crate::users::get_user(conn, sender.id)?;
            let bounds = quota::ensure_user_period(conn, now, &sender, rules)?;
            let p = bounds.start;
            quota::allocation::repay_debt(conn, now, &sender, p, bounds.end)?;
            quota::ensure_user_period(conn, now, &recipient, rules)?;
            let balance = ledger::balance(conn, Account::Personal(sender.id), p)?.max(0);
            if request.amount > balance {
                return Err(Error::rejected(
                "amount",
                "insufficient_quota",
                format!(
                    "exceeds your transferable personal credit of {balance} tokens (credit held by in-flight requests is not transferable)"
                ),
            ));
            }
            let pending = rules
                .transfer_approval_threshold
                .is_some_and(|threshold| request.amount > threshold);
            let transfer: Transfer =
                crate::on_backend!(conn, |c| diesel::insert_into(transfers::table)
                    .values(NewTransfer {
                        sender_id: sender.id,
                        recipient_id: recipient.id,
                        amount: request.amount,
                        reason,
                        status: if pending { "pending" } else { "completed" },
                        created_at: now,
                        expires_at: pending
                            .then(|| now + TimeDelta::days(i64::from(rules.approval_ttl_days))),
                    })
                    .returning(Transfer::as_returning())
                    .get_result(c))?;
            let to = if pending {
                Account::Escrow
            } else {
                Account::Personal(recipient.id)
            };
            ledger::post(
                conn,
                now,
                &Movement::new(if pending {
                    Kind::TransferEscrow
                } else {
                    Kind::Transfer
                })
                .user(sender.id)
                .actor(sender.id)
                .reference(transfer.id.to_string())
                .note(reason)
                .transfer(Account::Personal(sender.id), to, p, request.amount),
            )?;
            let details = serde_json::json!({
                "transfer_id": transfer.id,
                "sender_id": sender.id,
                "recipient_id": recipient.id,
                "amount": request.amount,
                "reason": reason,
                "status": transfer.status,
            });
            audit::record(
                conn,
                now,
                Some(sender.id),
                "transfer.create",
                "transfer",
                Some(transfer.id.to_string()),
                &details,
            )?;
            if pending {
                let mut approvers = teams::admins_of_member(conn, sender.id)?;
                approvers.extend(admin_ids(conn)?);
                approvers.sort_unstable();
                approvers.dedup();
                approvers.retain(|id| *id != sender.id);
                notifications::notify_many(
                    conn,
                    now,
                    &approvers,
                    "transfer_pending",
                    &format!(
                        "{} asks to transfer {} tokens to {}: {reason}",
                        sender.email, request.amount, recipient.email
                    ),
                    &details,
                )?;
            } else {
                notifications::notify(
                    conn,
                    now,
                    recipient.id,
                    "transfer_received",
                    &format!(
                        "{} sent you {} tokens: {reason}",
                        sender.email, request.amount
                    ),
                    &details,
                )?;
            }
            Ok(transfer)
        })
    })
}

fn admin_ids(conn: &mut DbConnection) -> Result<Vec<i64>> {
    Ok(users::table
        .filter(users::is_admin.eq(true))
        .filter(users::deleted_at.is_null())
        .select(users::id)
        .load(conn)?)
}

/// Approves (`approve = true`) or denies a pending transfer, as `actor` (an admin, or
/// a team admin of the sender; never the sender). An expired one is expired instead.
pub fn decide(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    id: i64,
    actor: &User,
    approve: bool,
    note: Option<String>,
    rules: &QuotaRules,
) -> Result<Transfer> {
    retry_on_conflict(|| {
        write_transaction(&mut *conn, |conn| {
            let transfer = get(conn, id)?;
            if !actor.is_admin && !teams::administers_member(conn, actor.id, transfer.sender_id)? {
                return Err(Error::Forbidden(
                    "only an admin or a team admin of the sender may decide this transfer",
                ));
            }
            if actor.id == transfer.sender_id {
                return Err(Error::Forbidden("you cannot decide your own transfer"));
            }
            if actor.id == transfer.recipient_id {
                return Err(Error::Forbidden("you cannot decide a transfer to yourself"));
            }
            if let Some(note) = &note {
                if note.chars().count() > MAX_REASON_CHARS {
                    return Err(Error::invalid(
                        "note",
                        format!("must be at most {MAX_REASON_CHARS} characters"),
                    ));
                }
            }
            let (first, second) = if transfer.sender_id < transfer.recipient_id {
                (transfer.sender_id, transfer.recipient_id)
            } else {
                (transfer.recipient_id, transfer.sender_id)
            };
            lock_user(conn, first)?;
            lock_user(conn, second)?;
            let transfer = get(conn, id)?;
            if transfer.status != "pending" {
                return Err(Error::conflict(
                    "already_decided",
                    format!("the transfer is {}, not pending", transfer.status),
                ));
            }
            if transfer.expires_at.is_some_and(|at| at <= now) {
                expire_one(conn, now, &transfer, rules)?;
                return Err(Error::conflict(
                    "expired",
                    "the transfer expired before a decision",
                ));
            }
            let recipient = crate::users::get_user(conn, transfer.recipient_id)?;
            if approve && recipient.status() != UserStatus::Active {
                return Err(Error::rejected(
                    "recipient_email",
                    "recipient_inactive",
                    format!("the recipient is {}, not active", recipient.status()),
                ));
            }
            let sender = crate::users::get_user_any(conn, transfer.sender_id)?;
            let escrow_period = rules.period.bounds(transfer.created_at).start;
            let to = if approve { &recipient } else { &sender };
            let p = quota::ensure_user_period(conn, now, to, rules)?.start;
            ledger::post(
                conn,
                now,
                &Movement::new(if approve {
                    Kind::Transfer
                } else {
                    Kind::TransferReturn
                })
                .user(transfer.sender_id)
                .actor(actor.id)
                .reference(transfer.id.to_string())
                .entry(Account::Escrow, escrow_period, -transfer.amount)
                .entry(Account::Personal(to.id), p, transfer.amount),
            )?;
            let status = if approve { "completed" } else { "denied" };
            let decided: Transfer =
                crate::on_backend!(conn, |c| diesel::update(transfers::table.find(id))
                    .set((
                        transfers::status.eq(status),
                        transfers::decided_at.eq(Some(now)),
                        transfers::decided_by.eq(Some(actor.id)),
                        transfers::decision_note.eq(note.as_deref()),
                    ))
                    .returning(Transfer::as_returning())
                    .get_result(c))?;
            let details = serde_json::json!({
                "transfer_id": id,
                "amount": transfer.amount,
                "status": status,
                "note": note,
            });
            audit::record(
                conn,
                now,
                Some(actor.id),
                if approve {
                    "transfer.approve"
                } else {
                    "transfer.deny"
                },
                "transfer",
                Some(id.to_string()),
                &details,
            )?;
            notifications::notify(
                conn,
                now,
                transfer.sender_id,
                if approve {
                    "transfer_approved"
                } else {
                    "transfer_denied"
                },
                &format!(
                    "Your transfer of {} tokens to {} was {}",
                    transfer.amount,
                    recipient.email,
                    if approve { "approved" } else { "denied" }
                ),
                &details,
            )?;
            if approve {
                notifications::notify(
                    conn,
                    now,
                    recipient.id,
                    "transfer_received",
                    &format!(
                        "{} sent you {} tokens: {}",
                        sender.email, transfer.amount, transfer.reason
                    ),
                    &details,
                )?;
            }
            Ok(decided)
        })
    })
}

fn expire_one(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    transfer: &Transfer,
    rules: &QuotaRules,
) -> Result<()> {
    let sender = crate::users::get_user_any(conn, transfer.sender_id)?;
    let p = quota::ensure_user_period(conn, now, &sender, rules)?.start;
    let escrow_period = rules.period.bounds(transfer.created_at).start;
    ledger::post(
        conn,
        now,
        &Movement::new(Kind::TransferReturn)
            .user(transfer.sender_id)
            .reference(transfer.id.to_string())
            .note("expired")
            .entry(Account::Escrow, escrow_period, -transfer.amount)
            .entry(Account::Personal(sender.id), p, transfer.amount),
    )?;
    diesel::update(transfers::table.find(transfer.id))
        .set((
            transfers::status.eq("expired"),
            transfers::decided_at.eq(Some(now)),
        ))
        .execute(conn)?;
    audit::record(
        conn,
        now,
        None,
        "transfer.expire",
        "transfer",
        Some(transfer.id.to_string()),
        &serde_json::json!({ "amount": transfer.amount }),
    )?;
    notifications::notify(
        conn,
        now,
        transfer.sender_id,
        "transfer_expired",
        &format!(
            "Your transfer of {} tokens expired without a decision; the tokens are back",
            transfer.amount
        ),
        &serde_json::json!({ "transfer_id": transfer.id }),
    )?;
    Ok(())
}

/// Expires pending transfers past their deadline (tokens back to the sender); returns
/// how many. Run by the maintenance loop.
pub fn expire_pending(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    rules: &QuotaRules,
) -> Result<usize> {
    let due: Vec<i64> = transfers::table
        .filter(transfers::status.eq("pending"))
        .filter(transfers::expires_at.le(now))
        .select(transfers::id)
        .load(conn)?;
    let mut expired = 0;
    for id in due {
        let done = write_transaction(conn, |conn| {
            let transfer = get(conn, id)?;
            if transfer.status != "pending" {
                return Ok::<_, Error>(false);
            }
            lock_user(conn, transfer.sender_id)?;
            expire_one(conn, now, &transfer, rules)?;
            Ok(true)
        })?;
        if done {
            expired += 1;
        }
    }
    Ok(expired)
}

/// One transfer.
pub fn get(conn: &mut DbConnection, id: i64) -> Result<Transfer> {
    transfers::table
        .find(id)
        .select(Transfer::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound("transfer"))
}

/// One transfer with its sender's and recipient's emails.
pub fn get_with_emails(conn: &mut DbConnection, id: i64) -> Result<(Transfer, String, String)> {
    let transfer = get(conn, id)?;
    let sender = crate::users::get_user_any(conn, transfer.sender_id)?.email;
    let recipient = crate::users::get_user_any(conn, transfer.recipient_id)?.email;
    Ok((transfer, sender, recipient))
}

/// Which transfers to list.
#[derive(Debug, Clone, Default)]
pub struct TransferFilter {
    /// Sent or received by this user.
    pub user_id: Option<i64>,
    /// Only these users' (a team admin's members).
    pub among: Option<Vec<i64>>,
    /// Created at or after.
    pub from: Option<NaiveDateTime>,
    /// Created before.
    pub to: Option<NaiveDateTime>,
    /// Amount at least.
    pub min_amount: Option<i64>,
    /// Amount at most.
    pub max_amount: Option<i64>,
    /// Status.
    pub status: Option<String>,
    /// Most rows (newest first).
    pub limit: i64,
}

/// Transfers matching `filter`, newest first, with sender and recipient emails.
pub fn list(
    conn: &mut DbConnection,
    filter: &TransferFilter,
) -> Result<Vec<(Transfer, String, String)>> {
    let mut query = transfers::table.into_boxed();
    if let Some(user) = filter.user_id {
        query = query.filter(
            transfers::sender_id
                .eq(user)
                .or(transfers::recipient_id.eq(user)),
        );
    }
    if let Some(among) = &filter.among {
        query = query.filter(
            transfers::sender_id
                .eq_any(among.clone())
                .or(transfers::recipient_id.eq_any(among.clone())),
        );
    }
    if let Some(from) = filter.from {
        query = query.filter(transfers::created_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(transfers::created_at.lt(to));
    }
    if let Some(min) = filter.min_amount {
        query = query.filter(transfers::amount.ge(min));
    }
    if let Some(max) = filter.max_amount {
        query = query.filter(transfers::amount.le(max));
    }
    if let Some(status) = &filter.status {
        query = query.filter(transfers::status.eq(status.clone()));
    }
    let rows: Vec<Transfer> = query
        .order(transfers::id.desc())
        .limit(filter.limit)
        .select(Transfer::as_select())
        .load(conn)?;
    let mut ids: Vec<i64> = rows
        .iter()
        .flat_map(|t| [t.sender_id, t.recipient_id])
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let emails: std::collections::HashMap<i64, String> = users::table
        .filter(users::id.eq_any(ids))
        .select((users::id, users::email))
        .load::<(i64, String)>(conn)?
        .into_iter()
        .collect();
    Ok(rows
        .into_iter()
        .map(|t| {
            let s = emails.get(&t.sender_id).cloned().unwrap_or_default();
            let r = emails.get(&t.recipient_id).cloned().unwrap_or_default();
            (t, s, r)
        })
        .collect())
}
