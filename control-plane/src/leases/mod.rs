//! Quota leases: tokens the control plane sets aside for one proxy so it can admit a
//! user's requests without asking per request (see `docs/lease-protocol.md`).
//!
//! A grant is race-free: the balance is computed and the lease written in one
//! transaction that holds the user's lock, so concurrent grants — from any number of
//! proxies and control-plane replicas — never hold more than is available. A proxy
//! asking again for a user it already holds an unexpired lease for gets that lease
//! *extended* (more tokens, a fresh expiry, the same id), so each proxy holds at most
//! one lease per user.
//!
//! The steps, identical on both backends:
//! 1. lock the owner of the unrevoked key (`invalid_key` / `suspended` answers);
//! 2. `available = personal_quota − used − holds of all the user's unexpired leases`
//!    (a lease holds `max(granted − used, 0)`); `exhausted` when ≤ 0;
//! 3. `extra = min(requested, available)`: extend this proxy's lease by `extra`, or
//!    insert a new lease of `extra`.
//!
//! SQLite runs them as statements in a `BEGIN IMMEDIATE` transaction behind the
//! in-process writer queue (statements are in-process calls, so they are cheap).
//! PostgreSQL runs them inside the `alfred_grant_lease()` function of the migrations,
//! under a transaction-scoped advisory lock on the user id: one round trip per grant
//! instead of five, and no row write for the lock.

mod model;
mod sync;

use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

pub use model::{Lease, NewLease};
pub use sync::{check_keys, KeyCheck, KeyDecision, MAX_SYNC_KEYS};

use crate::db::schema::{api_keys, leases, users};
use crate::db::{write_transaction, DbConnection};
use crate::error::{Error, Result};
use crate::quota::{self, PeriodBounds, Priority, QuotaPeriod};
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
    /// Tokens were set aside (a new lease, or this proxy's lease extended).
    Granted {
        /// The lease (unchanged when an existing lease was extended).
        lease_id: String,
        /// Owner.
        user_id: i64,
        /// The lease's total grant: for a new lease `min(requested, available)`; for
        /// an extended one its previous total plus `min(requested, available)`.
        granted_tokens: i64,
        /// Lifetime of the lease from now.
        expires_in_ms: i64,
        /// What the user may spend counting from the start of this lease:
        /// `available + the lease's own hold + usage already reported on it` (for a
        /// new lease simply `available`). The filter subtracts what it consumed.
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
    /// Nothing is left to grant in the user's personal budget (the proxy keeps what
    /// is left of a lease it already holds).
    Exhausted {
        /// Owner.
        user_id: i64,
        /// Always 0 (kept for the wire format).
        quota_remaining: i64,
        /// Seconds until the period resets (0 for `QUOTA_PERIOD=never`).
        period_reset_s: i64,
    },
}

/// Grants (or extends) a lease, or says why not.
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
    let proxy_id = validate_proxy_id(&request.proxy_id)?;
    if request.requested_tokens <= 0 {
        return Err(Error::invalid("requested_tokens", "must be > 0"));
    }
    let ask = Ask {
        key_hash: &key_hash,
        proxy_id,
        requested: request.requested_tokens,
        priority: request.priority,
        now,
        bounds: policy.period.bounds(now),
        ttl: TimeDelta::from_std(policy.ttl).unwrap_or(TimeDelta::seconds(60)),
    };
    let outcome = match conn {
        DbConnection::Postgres(pg) => grant_postgres(pg, &ask)?,
        DbConnection::Sqlite(_) => grant_in_transaction(conn, &ask)?,
    };
    let period_reset_s = ask.bounds.seconds_until_reset(now);
    Ok(match outcome {
        Outcome::InvalidKey => LeaseDecision::InvalidKey,
        Outcome::Suspended { user_id } => LeaseDecision::Suspended { user_id },
        Outcome::Exhausted { user_id } => LeaseDecision::Exhausted {
            user_id,
            quota_remaining: 0,
            period_reset_s,
        },
        Outcome::Granted {
            user_id,
            lease_id,
            granted_tokens,
            quota_remaining,
        } => LeaseDecision::Granted {
            lease_id,
            user_id,
            granted_tokens,
            expires_in_ms: ask.ttl.num_milliseconds(),
            quota_remaining,
            period_reset_s,
        },
    })
}

/// Checks a proxy id (1–200 characters after trimming) and returns it trimmed.
pub(crate) fn validate_proxy_id(raw: &str) -> Result<&str> {
    let proxy_id = raw.trim();
    if proxy_id.is_empty() || proxy_id.chars().count() > MAX_PROXY_ID_CHARS {
        return Err(Error::invalid(
            "proxy_id",
            format!("must be 1–{MAX_PROXY_ID_CHARS} characters"),
        ));
    }
    Ok(proxy_id)
}

/// A validated grant request.
struct Ask<'a> {
    key_hash: &'a str,
    proxy_id: &'a str,
    requested: i64,
    priority: Priority,
    now: NaiveDateTime,
    bounds: PeriodBounds,
    ttl: TimeDelta,
}

/// What the grant steps decided.
enum Outcome {
    InvalidKey,
    Suspended {
        user_id: i64,
    },
    Exhausted {
        user_id: i64,
    },
    Granted {
        user_id: i64,
        lease_id: String,
        granted_tokens: i64,
        quota_remaining: i64,
    },
}

/// The grant steps as statements in one write transaction (the SQLite path; also
/// correct on PostgreSQL, where `lock_key_owner` takes `FOR UPDATE`).
fn grant_in_transaction(conn: &mut DbConnection, ask: &Ask<'_>) -> Result<Outcome> {
    let period_start = ask.bounds.start;
    write_transaction(conn, |conn| {
        let Some(owner) = lock_key_owner(conn, ask.key_hash)? else {
            return Ok(Outcome::InvalidKey);
        };
        if owner.status == UserStatus::Suspended.as_str() {
            return Ok(Outcome::Suspended { user_id: owner.id });
        }
        // Read only after the lock is held, so the numbers include every grant and
        // usage batch that committed before us.
        let used = quota::used_in_period(conn, owner.id, period_start)?;
        let live = quota::live_leases(conn, owner.id, period_start, ask.now)?;
        let held = live
            .iter()
            .map(quota::LiveLease::hold)
            .fold(0, i64::saturating_add);
        let available = owner
            .personal_quota
            .saturating_sub(used)
            .saturating_sub(held);
        if available <= 0 {
            return Ok(Outcome::Exhausted { user_id: owner.id });
        }
        let extra = ask.requested.min(available);
        let expires_at = ask.now + ask.ttl;
        // Latest expiry first, so this is the proxy's current lease.
        if let Some(own) = live.into_iter().find(|l| l.proxy_id == ask.proxy_id) {
            diesel::update(leases::table.find(&own.id))
                .set((
                    leases::granted_tokens.eq(leases::granted_tokens + extra),
                    leases::expires_at.eq(expires_at),
                ))
                .execute(conn)?;
            return Ok(Outcome::Granted {
                user_id: owner.id,
                granted_tokens: own.granted_tokens.saturating_add(extra),
                quota_remaining: available
                    .saturating_add(own.hold())
                    .saturating_add(own.used_tokens),
                lease_id: own.id,
            });
        }
        let lease_id = uuid::Uuid::new_v4().to_string();
        diesel::insert_into(leases::table)
            .values(NewLease {
                id: &lease_id,
                user_id: owner.id,
                proxy_id: ask.proxy_id,
                granted_tokens: extra,
                used_tokens: 0,
                priority: ask.priority.as_str(),
                created_at: ask.now,
                expires_at,
                period_start,
            })
            .execute(conn)?;
        Ok(Outcome::Granted {
            user_id: owner.id,
            lease_id,
            granted_tokens: extra,
            quota_remaining: available,
        })
    })
}

/// The migration's SQL function, typed.
mod sql {
    #![allow(clippy::too_many_arguments)] // the SQL function's eight parameters, mirrored
    use diesel::sql_types::{BigInt, Text, Timestamp};

    diesel::define_sql_function! {
        /// The migration's one-round-trip grant (PostgreSQL only); its row is
        /// `(decision, user_id, lease_id, granted_tokens, quota_remaining)`.
        fn alfred_grant_lease(
            key_hash: Text,
            proxy_id: Text,
            requested: BigInt,
            priority: Text,
            now: Timestamp,
            period_start: Timestamp,
            expires_at: Timestamp,
            new_lease_id: Text,
        ) -> Record<(Text, Nullable<BigInt>, Nullable<Text>, BigInt, BigInt)>;
    }
}
use sql::alfred_grant_lease;

/// The grant steps in one round trip: the migration's `alfred_grant_lease()`, called
/// outside a transaction so the call is its own (see the migration for why a function).
/// A typed call, so diesel keeps it as a prepared statement per connection.
fn grant_postgres(conn: &mut diesel::PgConnection, ask: &Ask<'_>) -> Result<Outcome> {
    let (decision, user_id, lease_id, granted_tokens, quota_remaining): (
        String,
        Option<i64>,
        Option<String>,
        i64,
        i64,
    ) = diesel::select(alfred_grant_lease(
        ask.key_hash,
        ask.proxy_id,
        ask.requested,
        ask.priority.as_str(),
        ask.now,
        ask.bounds.start,
        ask.now + ask.ttl,
        uuid::Uuid::new_v4().to_string(),
    ))
    .get_result(conn)?;
    let user_id = user_id.unwrap_or(0);
    Ok(match (decision.as_str(), lease_id) {
        ("granted", Some(lease_id)) => Outcome::Granted {
            user_id,
            lease_id,
            granted_tokens,
            quota_remaining,
        },
        ("suspended", _) => Outcome::Suspended { user_id },
        ("exhausted", _) => Outcome::Exhausted { user_id },
        // `invalid_key`, and fail closed on anything unexpected.
        _ => Outcome::InvalidKey,
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
