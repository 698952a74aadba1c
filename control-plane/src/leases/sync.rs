//! Key re-checks (`POST /internal/v1/sync`): a proxy asks about the keys it holds
//! leases for, so revocation, suspension and spent quotas reach it within seconds
//! instead of at lease expiry.
//!
//! A handful of queries for the whole batch, whatever its size: keys with their
//! owners, their ledger balances, their returnable leases and team memberships.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{allocations, api_keys, leases, ledger_balances, team_members, users};
use crate::db::DbConnection;
use crate::error::{Error, Result};
use crate::ledger::Account;
use crate::quota::QuotaPeriod;
use crate::users::{keys, UserStatus};

/// Most key hashes accepted in one sync call.
pub const MAX_SYNC_KEYS: usize = 500;

/// What the proxy should do with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDecision {
    /// Keep serving it.
    Active,
    /// Unknown or revoked: drop the lease, answer 401.
    InvalidKey,
    /// The owner is suspended: drop the lease, answer 403.
    Suspended,
    /// Nothing is left for this proxy to spend: drop the lease, answer 429 until the
    /// period resets.
    Exhausted {
        /// Seconds until the period resets (0 for `QUOTA_PERIOD=never`).
        period_reset_s: i64,
    },
}

/// The answer for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCheck {
    /// As asked (lower-cased).
    pub key_hash: String,
    /// The verdict.
    pub decision: KeyDecision,
}

/// Checks `key_hashes` for the proxy `proxy_id`, one answer per hash, in order.
///
/// `exhausted` means nothing is left *for this proxy*: for a user in no team (a pool
/// may still fund team members), their personal credit this period less unpaid debt,
/// plus what this proxy's own live leases (and expired, not yet released, leases)
/// still hold of it, is ≤ 0. What other proxies hold is theirs to spend.
pub fn check_keys(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    period: QuotaPeriod,
    proxy_id: &str,
    key_hashes: &[String],
) -> Result<Vec<KeyCheck>> {
    let proxy_id = super::validate_proxy_id(proxy_id)?;
    if key_hashes.len() > MAX_SYNC_KEYS {
        return Err(Error::invalid(
            "key_hashes",
            format!("at most {MAX_SYNC_KEYS} key hashes per call"),
        ));
    }
    let hashes: Vec<String> = key_hashes.iter().map(|h| h.to_ascii_lowercase()).collect();
    if let Some(index) = hashes.iter().position(|h| !keys::is_key_hash(h)) {
        return Err(Error::invalid(
            format!("key_hashes[{index}]"),
            "must be 64 hex characters (SHA-256 of the key)",
        ));
    }
    if hashes.is_empty() {
        return Ok(Vec::new());
    }
    let bounds = period.bounds(now);

    // 1. Unrevoked keys of live users → owner, quota and status.
    let owners: Vec<(String, i64, i64, String)> = api_keys::table
        .inner_join(users::table)
        .filter(api_keys::key_hash.eq_any(&hashes))
        .filter(api_keys::revoked_at.is_null())
        .filter(users::deleted_at.is_null())
        .select((
            api_keys::key_hash,
            users::id,
            users::personal_quota,
            users::status,
        ))
        .load(conn)?;

    // 2. What each owner may still get: personal credit this period (their quota when
    // not yet issued), less unpaid debt, plus what this proxy's own live leases and
    // any expired, not yet released, leases still hold of it; and team membership.
    let user_ids: Vec<i64> = owners.iter().map(|o| o.1).collect();
    let personal_keys: Vec<String> = user_ids
        .iter()
        .map(|id| Account::Personal(*id).key())
        .collect();
    let debt_keys: Vec<String> = user_ids.iter().map(|id| Account::Debt(*id).key()).collect();
    let mut credit: HashMap<i64, i64> = owners.iter().map(|o| (o.1, o.2)).collect();
    let issued: HashSet<String> = allocations::table
        .filter(
            allocations::owner.eq_any(
                user_ids
                    .iter()
                    .map(|id| format!("user:{id}"))
                    .collect::<Vec<_>>(),
            ),
        )
        .filter(allocations::period_start.eq(bounds.start))
        .select(allocations::owner)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    for id in &user_ids {
        if issued.contains(&format!("user:{id}")) {
            credit.insert(*id, 0);
        }
    }
    let rows: Vec<(String, NaiveDateTime, i64)> = ledger_balances::table
        .filter(
            ledger_balances::account
                .eq_any(&personal_keys)
                .and(ledger_balances::period_start.eq(bounds.start))
                .or(ledger_balances::account
                    .eq_any(&debt_keys)
                    .and(ledger_balances::balance.lt(0))),
        )
        .select((
            ledger_balances::account,
            ledger_balances::period_start,
            ledger_balances::balance,
        ))
        .load(conn)?;
    for (account, _, balance) in rows {
        let Some(id) = account
            .split(':')
            .nth(1)
            .and_then(|raw| raw.parse::<i64>().ok())
        else {
            continue;
        };
        *credit.entry(id).or_default() += balance;
    }
    let returnable: Vec<(i64, i64, i64)> = leases::table
        .filter(leases::user_id.eq_any(&user_ids))
        .filter(leases::released_at.is_null())
        .filter(leases::period_start.eq(bounds.start))
        .filter(leases::proxy_id.eq(proxy_id).or(leases::expires_at.le(now)))
        .select((leases::user_id, leases::hold_personal, leases::used_tokens))
        .load(conn)?;
    for (id, hold_personal, used) in returnable {
        *credit.entry(id).or_default() += (hold_personal - used).max(0);
    }
    let in_team: HashSet<i64> = team_members::table
        .filter(team_members::user_id.eq_any(&user_ids))
        .select(team_members::user_id)
        .load::<i64>(conn)?
        .into_iter()
        .collect();

    let period_reset_s = bounds.seconds_until_reset(now);
    let by_hash: HashMap<&str, KeyDecision> = owners
        .iter()
        .map(|(hash, user_id, _, status)| {
            let decision = if status.parse() != Ok(UserStatus::Active)
                && status.parse() != Ok(UserStatus::OnVacation)
            {
                // Suspended, or an unknown stored status (fail closed).
                KeyDecision::Suspended
            } else {
                let left = credit.get(user_id).copied().unwrap_or(0);
                if !in_team.contains(user_id) && left <= 0 {
                    KeyDecision::Exhausted { period_reset_s }
                } else {
                    KeyDecision::Active
                }
            };
            (hash.as_str(), decision)
        })
        .collect();
    Ok(hashes
        .into_iter()
        .map(|key_hash| {
            let decision = by_hash
                .get(key_hash.as_str())
                .copied()
                .unwrap_or(KeyDecision::InvalidKey);
            KeyCheck { key_hash, decision }
        })
        .collect())
}
