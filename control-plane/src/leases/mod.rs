//! Quota leases: tokens the control plane sets aside for one proxy so it can admit a
//! user's requests without asking per request (see `docs/lease-protocol.md`).
//!
//! A grant is race-free: the balance is computed and the lease inserted in one
//! transaction that holds the user's lock (PostgreSQL `SELECT … FOR UPDATE` on the user
//! row; SQLite `BEGIN IMMEDIATE`), so concurrent grants — from any number of proxies and
//! control-plane replicas — never hold more than is available.

mod model;

use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

pub use model::{Lease, NewLease};

use crate::db::schema::{api_keys, leases, users};
use crate::db::{write_transaction, DbConnection};
use crate::error::{Error, Result};
use crate::quota::{self, Priority, QuotaPeriod};
use crate::users::{keys, UserStatus};

/// Longest accepted proxy id.
pub const MAX_PROXY_ID_CHARS: usize = 200;

/// Settings that shape every grant.
#[derive(Debug, Clone, Copy)]
pub struct LeasePolicy {
    /// How long a lease lives (`LEASE_TTL_SECONDS`).
    pub ttl: Duration,
    /// The quota period (`QUOTA_PERIOD`).
    pub period: QuotaPeriod,
}

/// A proxy asking for tokens on behalf of the owner of a key.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    /// SHA-256 hex of the client key (the raw key never leaves the proxy).
    pub key_hash: String,
    /// Which proxy asks.
    pub proxy_id: String,
    /// Tokens wanted, > 0.
    pub requested_tokens: i64,
    /// The priority of the request that triggered the lease.
    pub priority: Priority,
}

/// The control plane's answer about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseDecision {
    /// Tokens were set aside.
    Granted {
        /// The new lease.
        lease_id: String,
        /// Owner.
        user_id: i64,
        /// `min(requested, available)`, > 0.
        granted_tokens: i64,
        /// Lifetime of the lease.
        expires_in_ms: i64,
        /// What the user may still spend, counting this grant as theirs:
        /// `personal_quota − used − holds of the user's other unexpired leases`.
        quota_remaining: i64,
        /// Seconds until the period resets (0 for `QUOTA_PERIOD=never`).
        period_reset_s: i64,
    },
    /// No unrevoked key has this hash.
    InvalidKey,
    /// The owner is suspended.
    Suspended {
        /// Owner.
        user_id: i64,
    },
    /// Nothing is left to grant in the user's personal budget.
    Exhausted {
        /// Owner.
        user_id: i64,
        /// Always 0 (kept for the wire format).
        quota_remaining: i64,
        /// Seconds until the period resets (0 for `QUOTA_PERIOD=never`).
        period_reset_s: i64,
    },
}

/// Grants a lease, or says why not.
pub fn grant(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    policy: LeasePolicy,
    request: LeaseRequest,
) -> Result<LeaseDecision> {
    let key_hash = request.key_hash.to_ascii_lowercase();
    if !keys::is_key_hash(&key_hash) {
        return Err(Error::invalid(
            "key_hash",
            "must be 64 hex characters (SHA-256 of the key)",
        ));
    }
    let proxy_id = request.proxy_id.trim();
    if proxy_id.is_empty() || proxy_id.chars().count() > MAX_PROXY_ID_CHARS {
        return Err(Error::invalid(
            "proxy_id",
            format!("must be 1–{MAX_PROXY_ID_CHARS} characters"),
        ));
    }
    if request.requested_tokens <= 0 {
        return Err(Error::invalid("requested_tokens", "must be > 0"));
    }

    let bounds = policy.period.bounds(now);
    let period_reset_s = bounds.seconds_until_reset(now);
    let ttl = TimeDelta::from_std(policy.ttl).unwrap_or(TimeDelta::seconds(60));

    write_transaction(conn, |conn| {
        let Some(owner) = lock_key_owner(conn, &key_hash)? else {
            return Ok(LeaseDecision::InvalidKey);
        };
        if owner.status == UserStatus::Suspended.as_str() {
            return Ok(LeaseDecision::Suspended { user_id: owner.id });
        }
        // Read only after the lock is held, so the numbers include every grant and
        // usage batch that committed before us.
        let (used, held) = quota::used_and_held(conn, owner.id, bounds.start, now)?;
        let personal_quota = owner.personal_quota;
        let available = personal_quota.saturating_sub(used).saturating_sub(held);
        if available <= 0 {
            return Ok(LeaseDecision::Exhausted {
                user_id: owner.id,
                quota_remaining: 0,
                period_reset_s,
            });
        }
        let granted_tokens = request.requested_tokens.min(available);
        let lease_id = uuid::Uuid::new_v4().to_string();
        diesel::insert_into(leases::table)
            .values(NewLease {
                id: &lease_id,
                user_id: owner.id,
                proxy_id,
                granted_tokens,
                used_tokens: 0,
                priority: request.priority.as_str(),
                created_at: now,
                expires_at: now + ttl,
                period_start: bounds.start,
            })
            .execute(conn)?;
        Ok(LeaseDecision::Granted {
            lease_id,
            user_id: owner.id,
            granted_tokens,
            expires_in_ms: ttl.num_milliseconds(),
            quota_remaining: available,
            period_reset_s,
        })
    })
}

/// The owner of an unrevoked key, as locked for a grant.
struct KeyOwner {
    id: i64,
    personal_quota: i64,
    status: String,
}

/// Finds the key's owner and locks their row for the rest of the transaction
/// (PostgreSQL `FOR UPDATE`; SQLite's `BEGIN IMMEDIATE` already holds the database
/// write lock). One statement: key look-up and lock in a single round trip.
fn lock_key_owner(conn: &mut DbConnection, key_hash: &str) -> Result<Option<KeyOwner>> {
    let query = api_keys::table
        .inner_join(users::table)
        .filter(api_keys::key_hash.eq(key_hash))
        .filter(api_keys::revoked_at.is_null())
        .select((users::id, users::personal_quota, users::status));
    let row: Option<(i64, i64, String)> = match conn {
        DbConnection::Postgres(pg) => query.for_update().first(pg).optional()?,
        DbConnection::Sqlite(sqlite) => query.first(sqlite).optional()?,
    };
    Ok(row.map(|(id, personal_quota, status)| KeyOwner {
        id,
        personal_quota,
        status,
    }))
}

/// A lease by id.
pub fn get_lease(conn: &mut DbConnection, lease_id: &str) -> Result<Lease> {
    leases::table
        .find(lease_id)
        .select(Lease::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound("lease"))
}
