//! What a user has, holds, used and may still spend — the numbers of
//! `GET /v1/users/me/quota`, all derived from the ledger.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::pools::{self, PoolShare};
use super::{allocation, PeriodBounds, QuotaRules};
use crate::db::schema::leases;
use crate::db::DbConnection;
use crate::error::Result;
use crate::ledger::{self, Account};
use crate::users::User;

/// A user's numbers for the current period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaView {
    /// Tokens per period.
    pub personal_quota: i64,
    /// Usage charged in this period.
    pub used_tokens: i64,
    /// Tokens set aside by the user's live leases and not yet used.
    pub held_tokens: i64,
    /// Personal credit the user may still spend: the ledger's personal balance plus
    /// the personal part of their live leases not yet used (that credit is theirs,
    /// spent through the proxy holding it), minus unpaid debt (which the next grant
    /// repays from it); never below 0.
    pub available_quota: i64,
    /// Personal credit not held by any lease, less unpaid debt: the most a transfer
    /// can send now.
    pub transferable: i64,
    /// What the user may draw from their team pools now (sum over teams).
    pub team_pool_available: i64,
    /// Each team pool as the user sees it.
    pub pools: Vec<PoolShare>,
    /// Critical overdraft drawn this period.
    pub overdraft_used: i64,
    /// Critical overdraft still available this period (0 when disabled).
    pub overdraft_available: i64,
    /// Unpaid debt from usage past a lease (repaid from personal credit first).
    pub debt: i64,
    /// The current period.
    pub period: PeriodBounds,
}

/// The user's numbers at `now`. Issues the period's allocation if nothing did yet, so
/// call it inside a write transaction.
pub fn view(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    user: &User,
    rules: &QuotaRules,
) -> Result<QuotaView> {
    let period = allocation::ensure_user_period(conn, now, user, rules)?;
    let p = period.start;
    let id = user.id;
    // Held credit is not a cached balance: it is read from the live leases below.
    let balances = ledger::balances(
        conn,
        &[
            Account::Personal(id),
            Account::Used(id),
            Account::Overdraft(id),
        ],
        p,
    )?;
    let [personal, used, overdraft] = [balances[0], balances[1], balances[2]];
    let debt_rows = ledger::negative_periods(
        conn,
        Account::Debt(id),
        period.end.unwrap_or(NaiveDateTime::MAX),
    )?;
    let debt: i64 = debt_rows.iter().map(|(_, b)| b.saturating_neg()).sum();
    let live: Vec<(i64, i64, i64)> = leases::table
        .filter(leases::user_id.eq(id))
        .filter(leases::released_at.is_null())
        .filter(leases::expires_at.gt(now))
        .select((
            leases::granted_tokens,
            leases::used_tokens,
            leases::hold_personal,
        ))
        .load(conn)?;
    let held_tokens: i64 = live.iter().map(|(g, u, _)| (g - u).max(0)).sum();
    let personal_in_leases: i64 = live.iter().map(|(_, u, hp)| (hp - u).max(0)).sum();
    let mut shares = Vec::new();
    for team_id in pools::teams_of(conn, id)? {
        shares.push(pools::share(conn, now, team_id, id, rules)?);
    }
    let overdraft_used = overdraft.saturating_neg().max(0);
    let overdraft_available = if user.overdraft_enabled {
        (rules.critical_overdraft_limit - overdraft_used).max(0)
    } else {
        0
    };
    Ok(QuotaView {
        personal_quota: user.personal_quota,
        used_tokens: used,
        held_tokens,
        available_quota: (personal.max(0) + personal_in_leases - debt).max(0),
        transferable: (personal.max(0) - debt).max(0),
        team_pool_available: shares.iter().map(|s| s.available).sum(),
        pools: shares,
        overdraft_used,
        overdraft_available,
        debt,
        period,
    })
}
