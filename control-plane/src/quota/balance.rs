//! What a user has used, holds and may still spend in the current period.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{PeriodBounds, QuotaPeriod};
use crate::db::schema::{leases, usage_totals};
use crate::db::DbConnection;
use crate::error::Result;
use crate::users::User;

/// A user's numbers for the current period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    /// Tokens per period.
    pub personal_quota: i64,
    /// Sum of usage charged in this period.
    pub used_tokens: i64,
    /// Tokens set aside by the user's unexpired leases and not yet reported as used.
    pub held_tokens: i64,
    /// `max(personal_quota − used_tokens, 0)`. Held tokens are not subtracted: they
    /// are the user's own to spend, through the proxy that holds them.
    pub available_quota: i64,
    /// The current period.
    pub period: PeriodBounds,
}

/// Usage charged to `user_id` in the period starting at `period_start`: one row of
/// the running totals that ingestion maintains.
pub fn used_in_period(
    conn: &mut DbConnection,
    user_id: i64,
    period_start: NaiveDateTime,
) -> Result<i64> {
    let used = usage_totals::table
        .find((user_id, period_start))
        .select(usage_totals::used_tokens)
        .first(conn)
        .optional()?;
    Ok(used.unwrap_or(0))
}

/// A lease that is unexpired at `now` and belongs to the current period.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct LiveLease {
    /// Lease id.
    pub id: String,
    /// The proxy holding it.
    pub proxy_id: String,
    /// Its total grant.
    pub granted_tokens: i64,
    /// Usage reported on it.
    pub used_tokens: i64,
}

impl LiveLease {
    /// What it holds: `max(granted − used, 0)`.
    pub fn hold(&self) -> i64 {
        self.granted_tokens.saturating_sub(self.used_tokens).max(0)
    }
}

/// The user's leases unexpired at `now` in the period starting at `period_start`,
/// latest expiry first. A user has at most one per proxy, so this is a handful of
/// rows; summing them here keeps the query a cached prepared statement.
pub fn live_leases(
    conn: &mut DbConnection,
    user_id: i64,
    period_start: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<Vec<LiveLease>> {
    Ok(leases::table
        .filter(leases::user_id.eq(user_id))
        .filter(leases::expires_at.gt(now))
        .filter(leases::period_start.eq(period_start))
        .order((leases::expires_at.desc(), leases::id.asc()))
        .select((
            leases::id,
            leases::proxy_id,
            leases::granted_tokens,
            leases::used_tokens,
        ))
        .load(conn)?)
}

/// Tokens held by the user's leases that are unexpired at `now` and belong to the
/// current period: each holds `max(granted − used, 0)`.
pub fn held_tokens(
    conn: &mut DbConnection,
    user_id: i64,
    period_start: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<i64> {
    Ok(live_leases(conn, user_id, period_start, now)?
        .iter()
        .map(LiveLease::hold)
        .fold(0, i64::saturating_add))
}

/// `(used, held)` for the user, with the meaning of [`used_in_period`] and
/// [`held_tokens`]. Two statements: callers that decide on them hold the user's lock.
pub fn used_and_held(
    conn: &mut DbConnection,
    user_id: i64,
    period_start: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<(i64, i64)> {
    Ok((
        used_in_period(conn, user_id, period_start)?,
        held_tokens(conn, user_id, period_start, now)?,
    ))
}

/// The user's balance at `now`.
pub fn balance(
    conn: &mut DbConnection,
    user: &User,
    period: QuotaPeriod,
    now: NaiveDateTime,
) -> Result<Balance> {
    let bounds = period.bounds(now);
    let (used_tokens, held_tokens) = used_and_held(conn, user.id, bounds.start, now)?;
    Ok(Balance {
        personal_quota: user.personal_quota,
        used_tokens,
        held_tokens,
        available_quota: user.personal_quota.saturating_sub(used_tokens).max(0),
        period: bounds,
    })
}
