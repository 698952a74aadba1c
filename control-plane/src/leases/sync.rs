//! Key re-checks (`POST /internal/v1/sync`): a proxy asks about the keys it holds
//! leases for, so revocation, suspension and spent quotas reach it within seconds
//! instead of at lease expiry.
//!
//! Two queries for the whole batch, whatever its size: keys with their owners and the
//! period's usage; then the unexpired leases of those owners held by other proxies.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{api_keys, leases, usage_totals, users};
use crate::db::DbConnection;
use crate::error::{Error, Result};
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
/// `exhausted` means nothing is left *for this proxy*: `personal_quota − used − holds
/// of the user's unexpired leases held by other proxies ≤ 0`. The proxy's own lease is
/// not subtracted: its hold is what the proxy is still allowed to spend, and counting
/// it would tell a proxy holding the user's whole remaining quota to drop it.
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

    // 1. Unrevoked keys → owner, quota, status and this period's usage.
    let owners: Vec<(String, i64, i64, String, Option<i64>)> = api_keys::table
        .inner_join(users::table)
        .left_join(
            usage_totals::table.on(usage_totals::user_id
                .eq(users::id)
                .and(usage_totals::period_start.eq(bounds.start))),
        )
        .filter(api_keys::key_hash.eq_any(&hashes))
        .filter(api_keys::revoked_at.is_null())
        .select((
            api_keys::key_hash,
            users::id,
            users::personal_quota,
            users::status,
            usage_totals::used_tokens.nullable(),
        ))
        .load(conn)?;

    // 2. What other proxies hold for those users.
    let user_ids: Vec<i64> = owners.iter().map(|o| o.1).collect();
    let other_leases: Vec<(i64, i64, i64)> = if user_ids.is_empty() {
        Vec::new()
    } else {
        leases::table
            .filter(leases::user_id.eq_any(&user_ids))
            .filter(leases::expires_at.gt(now))
            .filter(leases::period_start.eq(bounds.start))
            .filter(leases::proxy_id.ne(proxy_id))
            .select((leases::user_id, leases::granted_tokens, leases::used_tokens))
            .load(conn)?
    };
    let mut held_by_others: HashMap<i64, i64> = HashMap::new();
    for (user_id, granted, used) in other_leases {
        let held = held_by_others.entry(user_id).or_default();
        *held = held.saturating_add(granted.saturating_sub(used).max(0));
    }

    let period_reset_s = bounds.seconds_until_reset(now);
    let by_hash: HashMap<&str, KeyDecision> = owners
        .iter()
        .map(|(hash, user_id, quota, status, used)| {
            let decision = if status.parse() != Ok(UserStatus::Active)
                && status.parse() != Ok(UserStatus::OnVacation)
            {
                // Suspended, or an unknown stored status (fail closed).
                KeyDecision::Suspended
            } else {
                let left = quota
                    .saturating_sub(used.unwrap_or(0))
                    .saturating_sub(held_by_others.get(user_id).copied().unwrap_or(0));
                if left <= 0 {
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
