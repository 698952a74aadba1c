//! Period allocations: a user's personal quota and a team's pool are issued once per
//! period, lazily, the first time anything touches them in that period.
//!
//! "Has this owner been allocated for this period" is a row of `allocations`, inserted
//! with `ON CONFLICT DO NOTHING`: of two transactions racing to allocate, exactly one
//! inserts the row and posts the movement; the other waits for it and does nothing.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{PeriodBounds, QuotaRules};
use crate::db::schema::{allocations, team_members, teams, users};
use crate::db::DbConnection;
use crate::error::Result;
use crate::ledger::{self, Account, Kind, Movement};
use crate::users::{User, UserStatus};
use crate::vacation;

#[derive(Insertable)]
#[diesel(table_name = allocations)]
struct NewAllocation<'a> {
    owner: &'a str,
    period_start: NaiveDateTime,
    amount: i64,
    created_at: NaiveDateTime,
}

/// `'user:5'` / `'team:3'`.
pub(crate) fn user_owner(id: i64) -> String {
    format!("user:{id}")
}

pub(crate) fn team_owner(id: i64) -> String {
    format!("team:{id}")
}

/// Inserts the allocation marker; `true` when this call inserted it.
fn claim(
    conn: &mut DbConnection,
    owner: &str,
    period_start: NaiveDateTime,
    amount: i64,
    now: NaiveDateTime,
) -> Result<bool> {
    let row = NewAllocation {
        owner,
        period_start,
        amount,
        created_at: now,
    };
    let inserted = match conn {
        DbConnection::Sqlite(c) => diesel::insert_into(allocations::table)
            .values(&row)
            .on_conflict_do_nothing()
            .execute(c)?,
        DbConnection::Postgres(c) => diesel::insert_into(allocations::table)
            .values(&row)
            .on_conflict_do_nothing()
            .execute(c)?,
    };
    Ok(inserted == 1)
}

/// What an owner was allocated for a period (after adjustments), 0 when not yet.
pub fn allocated(conn: &mut DbConnection, owner: &str, period_start: NaiveDateTime) -> Result<i64> {
    Ok(allocations::table
        .find((owner, period_start))
        .select(allocations::amount)
        .first(conn)
        .optional()?
        .unwrap_or(0))
}

/// Changes the recorded allocation by `delta` (an admin's adjustment).
pub(crate) fn adjust_allocated(
    conn: &mut DbConnection,
    owner: &str,
    period_start: NaiveDateTime,
    delta: i64,
) -> Result<()> {
    diesel::update(allocations::table.find((owner, period_start)))
        .set(allocations::amount.eq(allocations::amount + delta))
        .execute(conn)?;
    Ok(())
}

/// Makes sure the user's quota for the period containing `now` is issued. When this
/// call issues it, unpaid debt and overdraft of earlier periods are repaid (from what
/// their own period left unspent, then from the new quota), and a user on vacation has the rest released to their teams at once.
/// Returns the period.
pub fn ensure_user_period(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    user: &User,
    rules: &QuotaRules,
) -> Result<PeriodBounds> {
    let bounds = rules.period.bounds(now);
    let p = bounds.start;
    if !claim(conn, &user_owner(user.id), p, user.personal_quota, now)? {
        return Ok(bounds);
    }
    ledger::post(
        conn,
        now,
        &Movement::new(Kind::Allocation).user(user.id).transfer(
            Account::Issued,
            Account::Personal(user.id),
            p,
            user.personal_quota,
        ),
    )?;
    // Earlier debt is paid from what was left of its own period first, then from this
    // allocation; what this allocation cannot cover waits for the next one.
    let mut left = user.personal_quota;
    for account in [Account::Debt(user.id), Account::Overdraft(user.id)] {
        for (period, balance) in ledger::negative_periods(conn, account, p)? {
            let mut owed = balance.saturating_neg();
            let unspent = ledger::balance(conn, Account::Personal(user.id), period)?.max(0);
            for (source, available) in [(period, unspent), (p, left)] {
                let repay = owed.min(available);
                if repay <= 0 {
                    continue;
                }
                ledger::post(
                    conn,
                    now,
                    &Movement::new(Kind::Repayment)
                        .user(user.id)
                        .entry(Account::Personal(user.id), source, -repay)
                        .entry(account, period, repay),
                )?;
                owed -= repay;
                if source == p {
                    left -= repay;
                }
            }
        }
    }
    if user.status() == UserStatus::OnVacation {
        vacation::release_personal(conn, now, user, rules, None)?;
    }
    Ok(bounds)
}

/// Makes sure the team's pool for the period containing `now` is issued; when this
/// call issues it, members on vacation have their new quota released into it.
pub fn ensure_team_period(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    team_id: i64,
    rules: &QuotaRules,
) -> Result<PeriodBounds> {
    let bounds = rules.period.bounds(now);
    let p = bounds.start;
    let pool: Option<i64> = teams::table
        .find(team_id)
        .filter(teams::deleted_at.is_null())
        .select(teams::common_pool)
        .first(conn)
        .optional()?;
    let Some(pool) = pool else {
        return Ok(bounds);
    };
    if !claim(conn, &team_owner(team_id), p, pool, now)? {
        return Ok(bounds);
    }
    ledger::post(
        conn,
        now,
        &Movement::new(Kind::Allocation).team(team_id).transfer(
            Account::Issued,
            Account::Pool(team_id),
            p,
            pool,
        ),
    )?;
    let away: Vec<User> = team_members::table
        .inner_join(users::table)
        .filter(team_members::team_id.eq(team_id))
        .filter(users::status.eq(UserStatus::OnVacation.as_str()))
        .filter(users::deleted_at.is_null())
        .order(users::id.asc())
        .select(User::as_select())
        .load(conn)?;
    for user in away {
        ensure_user_period(conn, now, &user, rules)?;
    }
    Ok(bounds)
}

/// Whether the owner's allocation for the period was issued.
pub fn allocated_exists(
    conn: &mut DbConnection,
    owner: &str,
    period_start: NaiveDateTime,
) -> Result<bool> {
    let n: i64 = allocations::table
        .filter(allocations::owner.eq(owner))
        .filter(allocations::period_start.eq(period_start))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Pays the user's debt from usage past a lease out of their personal credit of the
/// period starting at `p` (the caller holds the user's lock), so what is left to grant
/// or transfer reflects it.
pub fn repay_debt(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    user: &User,
    p: NaiveDateTime,
    period_end: Option<NaiveDateTime>,
) -> Result<()> {
    let debts = ledger::negative_periods(
        conn,
        Account::Debt(user.id),
        period_end.unwrap_or(NaiveDateTime::MAX),
    )?;
    if debts.is_empty() {
        return Ok(());
    }
    let mut personal = ledger::balance(conn, Account::Personal(user.id), p)?.max(0);
    for (period, balance) in debts {
        let repay = personal.min(balance.saturating_neg());
        if repay <= 0 {
            break;
        }
        ledger::post(
            conn,
            now,
            &Movement::new(Kind::Repayment)
                .user(user.id)
                .entry(Account::Personal(user.id), p, -repay)
                .entry(Account::Debt(user.id), period, repay),
        )?;
        personal -= repay;
    }
    Ok(())
}
