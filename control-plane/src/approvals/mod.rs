//! Quota requests: a user asks for more credit (`amount`, `reason`); an admin, or a
//! team admin of one of the user's teams, approves or denies. An approved request
//! becomes a `grant` movement into the user's personal credit for the current
//! period; pending requests expire after `APPROVAL_TTL_DAYS`.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use crate::db::schema::{quota_requests, users};
use crate::db::{lock_user, retry_on_conflict, write_transaction, DbConnection};
use crate::error::{Error, Result};
use crate::ledger::{self, Account, Kind, Movement};
use crate::quota::{self, QuotaRules};
use crate::transfers::{validate_amount, validate_reason, MAX_REASON_CHARS};
use crate::users::User;
use crate::{audit, notifications, teams};

/// Largest amount one request may ask for (a typo guard: 10 billion tokens).
pub const MAX_REQUEST_TOKENS: i64 = 10_000_000_000;

/// A request as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = quota_requests)]
pub struct QuotaRequest {
    /// Id.
    pub id: i64,
    /// Who asks.
    pub user_id: i64,
    /// Tokens asked for.
    pub amount: i64,
    /// Why.
    pub reason: String,
    /// `pending`, `approved`, `denied`, `expired`.
    pub status: String,
    /// When asked.
    pub created_at: NaiveDateTime,
    /// When it expires if still pending.
    pub expires_at: NaiveDateTime,
    /// When decided.
    pub decided_at: Option<NaiveDateTime>,
    /// Who decided.
    pub decided_by: Option<i64>,
    /// The decider's note.
    pub decision_note: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = quota_requests)]
struct NewRequest<'a> {
    user_id: i64,
    amount: i64,
    reason: &'a str,
    status: &'a str,
    created_at: NaiveDateTime,
    expires_at: NaiveDateTime,
}

/// Files a request for `user`; approvers (admins and the user's team admins) are
/// notified.
pub fn create(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    user: &User,
    amount: i64,
    reason: &str,
    rules: &QuotaRules,
) -> Result<QuotaRequest> {
    validate_amount(amount)?;
    if amount > MAX_REQUEST_TOKENS {
        return Err(Error::invalid(
            "amount",
            format!("must be at most {MAX_REQUEST_TOKENS}"),
        ));
    }
    let reason = validate_reason(reason)?;
    write_transaction(conn, |conn| {
        let request: QuotaRequest =
            crate::on_backend!(conn, |c| diesel::insert_into(quota_requests::table)
                .values(NewRequest {
                    user_id: user.id,
                    amount,
                    reason,
                    status: "pending",
                    created_at: now,
                    expires_at: now + TimeDelta::days(i64::from(rules.approval_ttl_days)),
                })
                .returning(QuotaRequest::as_returning())
                .get_result(c))?;
        let mut approvers = teams::admins_of_member(conn, user.id)?;
        approvers.extend(
            users::table
                .filter(users::is_admin.eq(true))
                .filter(users::deleted_at.is_null())
                .select(users::id)
                .load::<i64>(conn)?,
        );
        approvers.sort_unstable();
        approvers.dedup();
        approvers.retain(|id| *id != user.id);
        let details = serde_json::json!({ "request_id": request.id, "user_id": user.id, "amount": amount, "reason": reason });
        notifications::notify_many(
            conn,
            now,
            &approvers,
            "quota_request",
            &format!("{} asks for {amount} more tokens: {reason}", user.email),
            &details,
        )?;
        audit::record(
            conn,
            now,
            Some(user.id),
            "quota_request.create",
            "quota_request",
            Some(request.id.to_string()),
            &details,
        )?;
        Ok(request)
    })
}

/// One request.
pub fn get(conn: &mut DbConnection, id: i64) -> Result<QuotaRequest> {
    quota_requests::table
        .find(id)
        .select(QuotaRequest::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound("quota request"))
}

/// Approves or denies a pending request as `actor`. Admins decide any request; a team
/// admin those of their teams' members; nobody their own.
pub fn decide(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    id: i64,
    actor: &User,
    approve: bool,
    note: Option<String>,
    rules: &QuotaRules,
) -> Result<QuotaRequest> {
    retry_on_conflict(|| {
        write_transaction(&mut *conn, |conn| {
            let request = get(conn, id)?;
            if !actor.is_admin && !teams::administers_member(conn, actor.id, request.user_id)? {
                return Err(Error::Forbidden(
                    "only an admin or a team admin of the requester may decide this request",
                ));
            }
            if actor.id == request.user_id {
                return Err(Error::Forbidden("you cannot decide your own request"));
            }
            if let Some(note) = &note {
                if note.chars().count() > MAX_REASON_CHARS {
                    return Err(Error::invalid(
                        "note",
                        format!("must be at most {MAX_REASON_CHARS} characters"),
                    ));
                }
            }
            lock_user(conn, request.user_id)?;
            let request = get(conn, id)?;
            if request.status != "pending" {
                return Err(Error::conflict(
                    "already_decided",
                    format!("the request is {}, not pending", request.status),
                ));
            }
            if request.expires_at <= now {
                mark(conn, now, id, "expired", None, None)?;
                return Err(Error::conflict(
                    "expired",
                    "the request expired before a decision",
                ));
            }
            let status = if approve { "approved" } else { "denied" };
            if approve {
                let user = crate::users::get_user(conn, request.user_id)?;
                let p = quota::ensure_user_period(conn, now, &user, rules)?.start;
                ledger::post(
                    conn,
                    now,
                    &Movement::new(Kind::Grant)
                        .user(user.id)
                        .actor(actor.id)
                        .reference(format!("quota_request:{id}"))
                        .note(request.reason.clone())
                        .transfer(
                            Account::Issued,
                            Account::Personal(user.id),
                            p,
                            request.amount,
                        ),
                )?;
            }
            let decided = mark(conn, now, id, status, Some(actor.id), note.as_deref())?;
            let details = serde_json::json!({ "request_id": id, "amount": request.amount, "status": status, "note": note });
            audit::record(
                conn,
                now,
                Some(actor.id),
                if approve {
                    "quota_request.approve"
                } else {
                    "quota_request.deny"
                },
                "quota_request",
                Some(id.to_string()),
                &details,
            )?;
            notifications::notify(
                conn,
                now,
                request.user_id,
                if approve {
                    "quota_request_approved"
                } else {
                    "quota_request_denied"
                },
                &format!("Your request for {} tokens was {status}", request.amount),
                &details,
            )?;
            Ok(decided)
        })
    })
}

fn mark(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    id: i64,
    status: &str,
    actor: Option<i64>,
    note: Option<&str>,
) -> Result<QuotaRequest> {
    Ok(crate::on_backend!(conn, |c| diesel::update(
        quota_requests::table.find(id)
    )
    .set((
        quota_requests::status.eq(status),
        quota_requests::decided_at.eq(Some(now)),
        quota_requests::decided_by.eq(actor),
        quota_requests::decision_note.eq(note),
    ))
    .returning(QuotaRequest::as_returning())
    .get_result(c))?)
}

/// Expires pending requests past their deadline; returns how many.
pub fn expire_pending(conn: &mut DbConnection, now: NaiveDateTime) -> Result<usize> {
    write_transaction(conn, |conn| {
        let due: Vec<QuotaRequest> = quota_requests::table
            .filter(quota_requests::status.eq("pending"))
            .filter(quota_requests::expires_at.le(now))
            .select(QuotaRequest::as_select())
            .load(conn)?;
        for request in &due {
            mark(conn, now, request.id, "expired", None, None)?;
            notifications::notify(
                conn,
                now,
                request.user_id,
                "quota_request_expired",
                &format!(
                    "Your request for {} tokens expired without a decision",
                    request.amount
                ),
                &serde_json::json!({ "request_id": request.id }),
            )?;
        }
        Ok(due.len())
    })
}

/// Which requests to list.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Only this user's.
    pub user_id: Option<i64>,
    /// Only these users' (a team admin's members).
    pub among: Option<Vec<i64>>,
    /// Only this status.
    pub status: Option<String>,
    /// Most rows (newest first).
    pub limit: i64,
}

/// Requests matching `filter`, newest first. Pending ones past their deadline are
/// shown as `expired` even before the maintenance loop marks them.
pub fn list(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    filter: &RequestFilter,
) -> Result<Vec<QuotaRequest>> {
    let mut query = quota_requests::table.into_boxed();
    if let Some(user) = filter.user_id {
        query = query.filter(quota_requests::user_id.eq(user));
    }
    if let Some(among) = &filter.among {
        query = query.filter(quota_requests::user_id.eq_any(among.clone()));
    }
    if let Some(status) = &filter.status {
        query = match status.as_str() {
            "pending" => query
                .filter(quota_requests::status.eq("pending"))
                .filter(quota_requests::expires_at.gt(now)),
            "expired" => query.filter(
                quota_requests::status
                    .eq("expired")
                    .or(quota_requests::status
                        .eq("pending")
                        .and(quota_requests::expires_at.le(now))),
            ),
            other => query.filter(quota_requests::status.eq(other.to_owned())),
        };
    }
    let mut rows: Vec<QuotaRequest> = query
        .order(quota_requests::id.desc())
        .limit(filter.limit)
        .select(QuotaRequest::as_select())
        .load(conn)?;
    for r in &mut rows {
        if r.status == "pending" && r.expires_at <= now {
            r.status = "expired".to_owned();
        }
    }
    Ok(rows)
}
