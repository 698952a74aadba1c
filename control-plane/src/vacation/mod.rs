//! Vacation: a user away releases their unused personal credit into their team
//! pool(s) and stops counting as an active member; on return, whatever of it the
//! team did not use comes back. No credit is created or destroyed.
//!
//! Pools are drawn allocation first, vacation credit last, so "what the team did not
//! use" of a release is `min(outstanding release, pool balance)`. A user in several
//! teams splits the release evenly (the remainder to the lowest team id). A user still
//! away when a new period starts has that period's quota released as it is issued
//! (`quota::ensure_user_period`).

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use crate::db::schema::{leases, team_members, users, vacation_releases};
use crate::db::{lock_team, lock_user, write_transaction, DbConnection};
use crate::error::Result;
use crate::ledger::{self, Account, Kind, Movement};
use crate::quota::{self, pools, QuotaRules};
use crate::users::{User, UserStatus};
use crate::{audit, notifications};

#[derive(Insertable)]
#[diesel(table_name = vacation_releases)]
struct NewRelease {
    user_id: i64,
    team_id: i64,
    period_start: NaiveDateTime,
    amount: i64,
    created_at: NaiveDateTime,
}

fn set_status(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    user_id: i64,
    status: UserStatus,
) -> Result<User> {
    diesel::update(users::table.find(user_id))
        .set((users::status.eq(status.as_str()), users::updated_at.eq(now)))
        .execute(conn)?;
    crate::users::get_user(conn, user_id)
}

/// Sends the user on vacation (the caller holds the user's lock): status
/// `on_vacation`, unused personal credit released to their teams. Returns the user.
pub fn start(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    user: &User,
    rules: &QuotaRules,
    actor: Option<i64>,
) -> Result<User> {
    // Issue the period first so the release covers this period's quota.
    quota::ensure_user_period(conn, now, user, rules)?;
    let user = set_status(conn, now, user.id, UserStatus::OnVacation)?;
    let released = release_personal(conn, now, &user, rules, actor)?;
    audit::record(
        conn,
        now,
        actor,
        "user.vacation_start",
        "user",
        Some(user.id.to_string()),
        &serde_json::json!({ "released": released }),
    )?;
    Ok(user)
}

/// Moves the user's personal credit of the current period into their teams' pools;
/// returns the tokens released (0 for a user in no team).
pub fn release_personal(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    user: &User,
    rules: &QuotaRules,
    actor: Option<i64>,
) -> Result<i64> {
    let teams = pools::teams_of(conn, user.id)?;
    if teams.is_empty() {
        return Ok(0);
    }
    let p = rules.period.bounds(now).start;
    let personal = ledger::balance(conn, Account::Personal(user.id), p)?;
    if personal <= 0 {
        return Ok(0);
    }
    let n = i64::try_from(teams.len()).unwrap_or(1).max(1);
    let (base, extra) = (personal / n, personal % n);
    for (i, &team_id) in teams.iter().enumerate() {
        let share = base + if i == 0 { extra } else { 0 };
        if share == 0 {
            continue;
        }
        quota::ensure_team_period(conn, now, team_id, rules)?;
        let mut movement = Movement::new(Kind::VacationRelease)
            .user(user.id)
            .team(team_id)
            .transfer(Account::Personal(user.id), Account::Pool(team_id), p, share);
        if let Some(actor) = actor {
            movement = movement.actor(actor);
        }
        ledger::post(conn, now, &movement)?;
        diesel::insert_into(vacation_releases::table)
            .values(NewRelease {
                user_id: user.id,
                team_id,
                period_start: p,
                amount: share,
                created_at: now,
            })
            .execute(conn)?;
    }
    Ok(personal)
}

/// Brings the user back (the caller holds the user's lock): status `active`, and of
/// this period's releases whatever the teams did not use returns. Returns the user.
pub fn end(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    user: &User,
    rules: &QuotaRules,
    actor: Option<i64>,
) -> Result<User> {
    let p = quota::ensure_user_period(conn, now, user, rules)?.start;
    let user = set_status(conn, now, user.id, UserStatus::Active)?;
    let open: Vec<(i64, i64, i64, i64)> = vacation_releases::table
        .filter(vacation_releases::user_id.eq(user.id))
        .filter(vacation_releases::period_start.eq(p))
        .filter(vacation_releases::returned.lt(vacation_releases::amount))
        .order((
            vacation_releases::team_id.asc(),
            vacation_releases::id.asc(),
        ))
        .select((
            vacation_releases::id,
            vacation_releases::team_id,
            vacation_releases::amount,
            vacation_releases::returned,
        ))
        .load(conn)?;
    let mut locked = Vec::new();
    let mut returned_total = 0;
    for (id, team_id, amount, returned) in open {
        if !locked.contains(&team_id) {
            lock_team(conn, team_id)?;
            locked.push(team_id);
        }
        let pool = ledger::balance(conn, Account::Pool(team_id), p)?;
        let back = (amount - returned).min(pool).max(0);
        if back > 0 {
            let mut movement = Movement::new(Kind::VacationReturn)
                .user(user.id)
                .team(team_id)
                .reference(id.to_string())
                .transfer(Account::Pool(team_id), Account::Personal(user.id), p, back);
            if let Some(actor) = actor {
                movement = movement.actor(actor);
            }
            ledger::post(conn, now, &movement)?;
        }
        // What the team used of it is gone to the team; the release is closed.
        diesel::update(vacation_releases::table.find(id))
            .set((
                vacation_releases::returned.eq(amount),
                vacation_releases::returned_at.eq(Some(now)),
            ))
            .execute(conn)?;
        returned_total += back;
    }
    audit::record(
        conn,
        now,
        actor,
        "user.vacation_end",
        "user",
        Some(user.id.to_string()),
        &serde_json::json!({ "returned": returned_total }),
    )?;
    Ok(user)
}

/// Sends active team members with no request for `IDLE_DAYS` on vacation (no lease
/// granted or extended since, and created before); returns how many. Run by the
/// maintenance loop.
pub fn send_idle_on_vacation(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    rules: &QuotaRules,
) -> Result<usize> {
    let cutoff = now - TimeDelta::days(i64::from(rules.idle_days));
    let candidates: Vec<i64> = users::table
        .filter(users::status.eq(UserStatus::Active.as_str()))
        .filter(users::deleted_at.is_null())
        .filter(users::created_at.le(cutoff))
        .filter(diesel::dsl::exists(
            team_members::table.filter(team_members::user_id.eq(users::id)),
        ))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            leases::table
                .filter(leases::user_id.eq(users::id))
                .filter(leases::expires_at.gt(cutoff)),
        )))
        .select(users::id)
        .load(conn)?;
    let mut sent = 0;
    for user_id in candidates {
        let went = write_transaction(conn, |conn| {
            lock_user(conn, user_id)?;
            let user = crate::users::get_user(conn, user_id)?;
            if user.status() != UserStatus::Active {
                return Ok::<_, crate::error::Error>(false);
            }
            start(conn, now, &user, rules, None)?;
            notifications::notify(
                conn,
                now,
                user_id,
                "vacation_auto",
                &format!(
                    "No requests for {} days: you were set on vacation and your unused quota was shared with your team. Your next request brings you back.",
                    rules.idle_days
                ),
                &serde_json::json!({}),
            )?;
            Ok(true)
        })?;
        if went {
            sent += 1;
        }
    }
    Ok(sent)
}
