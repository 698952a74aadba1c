//! What a user has used, holds and may still spend in the current period.

use chrono::NaiveDateTime;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

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

/// Tokens held by the user's leases that are unexpired at `now` and belong to the
/// current period: each holds `max(granted − used, 0)`.
pub fn held_tokens(
    conn: &mut DbConnection,
    user_id: i64,
    period_start: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<i64> {
    // SUM(BIGINT) is NUMERIC on PostgreSQL; the cast keeps one Rust type for both.
    let held = leases::table
        .filter(leases::user_id.eq(user_id))
        .filter(leases::expires_at.gt(now))
        .filter(leases::period_start.eq(period_start))
        .select(sql::<BigInt>(
            "CAST(COALESCE(SUM(CASE WHEN granted_tokens > used_tokens \
             THEN granted_tokens - used_tokens ELSE 0 END), 0) AS BIGINT)",
        ))
        .get_result(conn)?;
    Ok(held)
}

/// `(used, held)` for the user in one statement (one round trip), with the same
/// meaning as [`used_in_period`] and [`held_tokens`].
pub fn used_and_held(
    conn: &mut DbConnection,
    user_id: i64,
    period_start: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<(i64, i64)> {
    let used = usage_totals::table
        .filter(usage_totals::user_id.eq(user_id))
        .filter(usage_totals::period_start.eq(period_start))
        .select(usage_totals::used_tokens)
        .single_value();
    let held = leases::table
        .filter(leases::user_id.eq(user_id))
        .filter(leases::expires_at.gt(now))
        .filter(leases::period_start.eq(period_start))
        .select(sql::<BigInt>(
            "CAST(COALESCE(SUM(CASE WHEN granted_tokens > used_tokens \
             THEN granted_tokens - used_tokens ELSE 0 END), 0) AS BIGINT)",
        ))
        .single_value();
    let (used, held): (Option<i64>, Option<i64>) = diesel::select((used, held)).get_result(conn)?;
    Ok((used.unwrap_or(0), held.unwrap_or(0)))
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
