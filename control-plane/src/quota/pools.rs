//! Team pools: how much a member may draw now.
//!
//! A pool is drawn only after the member's personal credit is spent. Per period a
//! member may draw at most `pool size / active members`, and per UTC day at most
//! `VACATION_SHARE_PERCENTAGE` % of the pool size, where the pool size is the period's
//! allocation plus the vacation credit released into it and not yet returned. Draws
//! are holds net of releases (`pool_draws`), so credit a lease did not use counts as
//! not drawn.

use chrono::{NaiveDateTime, NaiveTime};
use diesel::prelude::*;
use diesel::upsert::excluded;

use super::allocation::{self, team_owner};
use super::QuotaRules;
use crate::db::schema::{pool_draws, team_members, teams, users, vacation_releases};
use crate::db::DbConnection;
use crate::error::Result;
use crate::ledger::{self, Account};
use crate::users::UserStatus;

/// A pool as one member sees it in the current period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShare {
    /// The team.
    pub team_id: i64,
    /// Credit left in the pool.
    pub pool_balance: i64,
    /// Allocation plus outstanding vacation credit.
    pub pool_size: i64,
    /// Members counted in the share (active, not deleted).
    pub active_members: i64,
    /// `pool_size / active_members`: the member's most per period.
    pub member_cap: i64,
    /// `pool_size × VACATION_SHARE_PERCENTAGE / 100`: the member's most per day.
    pub daily_cap: i64,
    /// Drawn by the member this period.
    pub drawn_period: i64,
    /// Drawn by the member today.
    pub drawn_today: i64,
    /// What the member may draw now: the least of the three limits, ≥ 0.
    pub available: i64,
}

/// The UTC day containing `now`.
pub fn day_of(now: NaiveDateTime) -> NaiveDateTime {
    now.date().and_time(NaiveTime::MIN)
}

/// The live teams of a user, by id.
pub fn teams_of(conn: &mut DbConnection, user_id: i64) -> Result<Vec<i64>> {
    Ok(team_members::table
        .inner_join(teams::table)
        .filter(team_members::user_id.eq(user_id))
        .filter(teams::deleted_at.is_null())
        .order(teams::id.asc())
        .select(teams::id)
        .load(conn)?)
}

/// The pool of `team_id` as `user_id` sees it at `now` (issuing the period's pool
/// first if needed). Callers that decide on it hold the team's lock.
pub fn share(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    team_id: i64,
    user_id: i64,
    rules: &QuotaRules,
) -> Result<PoolShare> {
    let bounds = allocation::ensure_team_period(conn, now, team_id, rules)?;
    let p = bounds.start;
    let pool_balance = ledger::balance(conn, Account::Pool(team_id), p)?;
    let allocated = allocation::allocated(conn, &team_owner(team_id), p)?;
    let released: i64 = vacation_releases::table
        .filter(vacation_releases::team_id.eq(team_id))
        .filter(vacation_releases::period_start.eq(p))
        .select((vacation_releases::amount, vacation_releases::returned))
        .load::<(i64, i64)>(conn)?
        .into_iter()
        .map(|(amount, returned)| amount - returned)
        .sum();
    let pool_size = allocated.saturating_add(released).max(0);
    let active_members: i64 = team_members::table
        .inner_join(users::table)
        .filter(team_members::team_id.eq(team_id))
        .filter(users::status.eq(UserStatus::Active.as_str()))
        .filter(users::deleted_at.is_null())
        .count()
        .get_result(conn)?;
    let member_cap = pool_size / active_members.max(1);
    let daily_cap = pool_size.saturating_mul(i64::from(rules.vacation_share_percentage)) / 100;
    let today = day_of(now);
    let mut draws = pool_draws::table
        .filter(pool_draws::team_id.eq(team_id))
        .filter(pool_draws::user_id.eq(user_id))
        .filter(pool_draws::day.ge(p))
        .into_boxed();
    if let Some(end) = bounds.end {
        draws = draws.filter(pool_draws::day.lt(end));
    }
    let rows: Vec<(NaiveDateTime, i64)> = draws
        .select((pool_draws::day, pool_draws::tokens))
        .load(conn)?;
    let drawn_period: i64 = rows.iter().map(|(_, t)| *t).sum();
    let drawn_today: i64 = rows
        .iter()
        .filter(|(day, _)| *day == today)
        .map(|(_, t)| *t)
        .sum();
    let available = pool_balance
        .min(member_cap - drawn_period)
        .min(daily_cap - drawn_today)
        .max(0);
    Ok(PoolShare {
        team_id,
        pool_balance,
        pool_size,
        active_members,
        member_cap,
        daily_cap,
        drawn_period,
        drawn_today,
        available,
    })
}

#[derive(Insertable)]
#[diesel(table_name = pool_draws)]
struct DrawDelta {
    team_id: i64,
    user_id: i64,
    day: NaiveDateTime,
    tokens: i64,
}

/// Adds `tokens` (negative for a release) to what `user_id` drew from `team_id` on
/// `day`.
pub fn record_draw(
    conn: &mut DbConnection,
    team_id: i64,
    user_id: i64,
    day: NaiveDateTime,
    tokens: i64,
) -> Result<()> {
    if tokens == 0 {
        return Ok(());
    }
    let row = DrawDelta {
        team_id,
        user_id,
        day,
        tokens,
    };
    let target = (pool_draws::team_id, pool_draws::user_id, pool_draws::day);
    let add = pool_draws::tokens.eq(pool_draws::tokens + excluded(pool_draws::tokens));
    match conn {
        DbConnection::Sqlite(c) => diesel::insert_into(pool_draws::table)
            .values(&row)
            .on_conflict(target)
            .do_update()
            .set(add)
            .execute(c)?,
        DbConnection::Postgres(c) => diesel::insert_into(pool_draws::table)
            .values(&row)
            .on_conflict(target)
            .do_update()
            .set(add)
            .execute(c)?,
    };
    Ok(())
}

/// A team's pool this period, whoever looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolTotals {
    /// Left in the pool.
    pub balance: i64,
    /// Allocation plus outstanding vacation credit.
    pub size: i64,
    /// Active members.
    pub active_members: i64,
    /// All members.
    pub member_count: i64,
}

/// The team's pool this period (issuing it first if needed), with what each member
/// drew from it this period.
pub fn totals(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    team_id: i64,
    rules: &QuotaRules,
) -> Result<(PoolTotals, std::collections::HashMap<i64, i64>)> {
    let share = share(conn, now, team_id, 0, rules)?;
    let bounds = rules.period.bounds(now);
    let member_count: i64 = team_members::table
        .inner_join(users::table)
        .filter(team_members::team_id.eq(team_id))
        .filter(users::deleted_at.is_null())
        .count()
        .get_result(conn)?;
    let mut draws = pool_draws::table
        .filter(pool_draws::team_id.eq(team_id))
        .filter(pool_draws::day.ge(bounds.start))
        .into_boxed();
    if let Some(end) = bounds.end {
        draws = draws.filter(pool_draws::day.lt(end));
    }
    let mut drawn = std::collections::HashMap::new();
    for (user_id, tokens) in draws
        .select((pool_draws::user_id, pool_draws::tokens))
        .load::<(i64, i64)>(conn)?
    {
        *drawn.entry(user_id).or_insert(0) += tokens;
    }
    Ok((
        PoolTotals {
            balance: share.pool_balance,
            size: share.pool_size,
            active_members: share.active_members,
            member_count,
        },
        drawn,
    ))
}
