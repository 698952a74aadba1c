//! Quota leases: tokens the control plane sets aside for one proxy so it can admit a
//! user's requests without asking per request (see `docs/lease-protocol.md`).
//!
//! Granting *holds* the tokens in the ledger (`hold` movement: personal credit, then
//! team pool shares, then — for critical requests — the overdraft, into the user's
//! held account), so the proxies together can never spend more than was granted.
//! Usage reports turn held credit into used (`crate::usage`); when a lease expires,
//! [`release_expired`] returns what it did not use to where it came from, in reverse
//! order (overdraft first, personal last).
//!
//! A proxy asking again for a user it already holds a live lease for (of the same
//! class, `normal` or `critical`) gets that lease *extended*: more tokens, a fresh
//! expiry, the same id. The grant runs in one transaction under the user's lock (and
//! the team locks when it draws on pools), so concurrent grants from any number of
//! proxies and control-plane replicas never hold more than is available. Lock order:
//! user, teams by id, then lease rows before ledger balance rows.

mod model;
mod queue;
mod round;
mod sync;

use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use diesel::upsert::excluded;

pub use model::{Lease, NewLease};
pub use queue::{GrantQueue, MAX_ROUND_GRANTS};
pub use sync::{check_keys, KeyCheck, KeyDecision, MAX_SYNC_KEYS};

use crate::db::schema::{lease_pool_holds, leases};
use crate::db::{lock_team, lock_user, retry_on_conflict, write_transaction, DbConnection};
use crate::error::{Error, Result};
use crate::ledger::{self, Account, Kind, Movement};
use crate::quota::{self, pools, Priority, QuotaRules};
use crate::users::{keys, UserStatus};
use crate::{audit, notifications, vacation};

/// Longest accepted proxy id.
pub const MAX_PROXY_ID_CHARS: usize = 200;

/// Settings that shape every grant.
#[derive(Debug, Clone, Copy)]
pub struct LeasePolicy {
    /// How long a lease lives (`LEASE_TTL_SECONDS`).
    pub ttl: Duration,
    /// The quota rules (period, pool limits, overdraft).
    pub rules: QuotaRules,
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
    /// The priority of the request that triggered the lease; `critical` asks for a
    /// critical lease, which may draw on the overdraft.
    pub priority: Priority,
}

/// Which budget ran out, for the refusal the proxy shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetScope {
    /// Personal credit (the user is in no team).
    Personal,
    /// Personal credit and every team pool share.
    TeamPool,
    /// All of that and the critical overdraft.
    Overdraft,
}

impl BudgetScope {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Personal => "personal",
            Self::TeamPool => "team_pool",
            Self::Overdraft => "overdraft",
        }
    }
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
        /// The lease's total grant: for a new lease what this call held; for an
        /// extended one its previous total plus what this call held.
        granted_tokens: i64,
        /// Lifetime of the lease from now.
        expires_in_ms: i64,
        /// What the user may spend counting from the start of this lease: what was
        /// available before this call + the lease's own hold + usage already reported
        /// on it. The filter subtracts what it consumed.
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
    /// Nothing is left to grant (the proxy keeps what is left of a lease it holds).
    Exhausted {
        /// Owner.
        user_id: i64,
        /// Always 0 (kept for the wire format).
        quota_remaining: i64,
        /// Seconds until the period resets (0 for `QUOTA_PERIOD=never`).
        period_reset_s: i64,
        /// What ran out.
        scope: BudgetScope,
    },
}

/// Grants (or extends) a lease, or says why not.
pub fn grant(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    policy: LeasePolicy,
    request: LeaseRequest,
) -> Result<LeaseDecision> {
    let prepared = prepare(now, policy, request)?;
    grant_round(conn, std::slice::from_ref(&prepared))
        .pop()
        .unwrap_or(Err(Error::Invariant("grant round lost its outcome".into())))
}

/// Checks a request (no database work) and fixes the time it is decided at.
pub fn prepare(
    now: NaiveDateTime,
    policy: LeasePolicy,
    request: LeaseRequest,
) -> Result<PreparedGrant> {
    let key_hash = request.key_hash.to_ascii_lowercase();
    if !keys::is_key_hash(&key_hash) {
        return Err(Error::invalid(
            "key_hash",
            "must be 64 hex characters (SHA-256 of the key)",
        ));
    }
    let proxy_id = validate_proxy_id(&request.proxy_id)?.to_owned();
    if request.requested_tokens <= 0 {
        return Err(Error::invalid("requested_tokens", "must be > 0"));
    }
    Ok(PreparedGrant {
        key_hash,
        proxy_id,
        requested: request.requested_tokens,
        priority: request.priority,
        now,
        rules: policy.rules,
        ttl: TimeDelta::from_std(policy.ttl).unwrap_or(TimeDelta::seconds(60)),
    })
}

/// Decides several grants in one transaction (one commit) and answers each on its
/// own. If the shared transaction fails, each grant is tried again in its own, so one
/// grant's failure is that grant's alone. Grants of the same user are decided in the
/// order given.
pub fn grant_round(
    conn: &mut DbConnection,
    grants: &[PreparedGrant],
) -> Vec<Result<LeaseDecision>> {
    let write = |conn: &mut DbConnection, grants: &[PreparedGrant]| {
        retry_on_conflict(|| write_transaction(&mut *conn, |conn| round::decide(conn, grants)))
    };
    match write(conn, grants) {
        Ok(decisions) => decisions.into_iter().map(Ok).collect(),
        Err(error) if grants.len() <= 1 => vec![Err(error)],
        Err(_) => grants
            .iter()
            .map(|g| {
                write(conn, std::slice::from_ref(g)).and_then(|mut v| {
                    v.pop()
                        .ok_or(Error::Invariant("grant round lost its outcome".into()))
                })
            })
            .collect(),
    }
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

/// A validated grant request with the time it is decided at.
#[derive(Debug, Clone)]
pub struct PreparedGrant {
    key_hash: String,
    proxy_id: String,
    requested: i64,
    priority: Priority,
    now: NaiveDateTime,
    rules: QuotaRules,
    ttl: TimeDelta,
}

impl PreparedGrant {
    fn class(&self) -> &'static str {
        if self.priority == Priority::Critical {
            "critical"
        } else {
            "normal"
        }
    }
}

/// The live lease a proxy holds for a user in a class.
#[derive(Debug, Queryable)]
struct OwnLease {
    id: String,
    granted_tokens: i64,
    used_tokens: i64,
}

/// The general grant, for any user and request, in the caller's transaction, which
/// already holds the user's lock and the locks of `teams` (the user's teams, by id).
fn grant_locked(
    conn: &mut DbConnection,
    ask: &PreparedGrant,
    user_id: i64,
    teams: &[i64],
) -> Result<LeaseDecision> {
    let now = ask.now;
    let rules = &ask.rules;
    // Read after the lock: status and quota changes take the same lock.
    let mut user = crate::users::get_user(conn, user_id)?;
    let bounds = rules.period.bounds(now);
    let period_reset_s = bounds.seconds_until_reset(now);
    match user.status() {
        UserStatus::Suspended => return Ok(LeaseDecision::Suspended { user_id }),
        // Their next request brings them back.
        UserStatus::OnVacation => {
            user = vacation::end(conn, now, &user, rules, None)?;
        }
        UserStatus::Active => {}
    }
    // One read for the common case: the period's allocation is issued, and the
    // personal and debt balances.
    let p = bounds.start;
    let mut state = grant_state(conn, user_id, p)?;
    if !state.allocated {
        quota::ensure_user_period(conn, now, &user, rules)?;
        state = grant_state(conn, user_id, p)?;
    }
    let mut personal = state.personal.max(0);
    // Usage past a lease this period is repaid first, so what is left reflects it.
    let repay = personal.min(state.debt.saturating_neg().max(0));
    if repay > 0 {
        ledger::post(
            conn,
            now,
            &Movement::new(Kind::Repayment).user(user_id).transfer(
                Account::Personal(user_id),
                Account::Debt(user_id),
                p,
                repay,
            ),
        )?;
        personal -= repay;
    }

    // Credit of this user's expired leases not yet released (the maintenance loop
    // runs every second) is the user's again: release it now rather than refuse.
    if personal < ask.requested && release_expired_of_user(conn, now, user_id)? > 0 {
        personal = ledger::balance(conn, Account::Personal(user_id), p)?.max(0);
    }

    let critical = ask.priority == Priority::Critical;
    let mut need = ask.requested;
    let from_personal = need.min(personal);
    need -= from_personal;
    let mut available = personal;

    let mut from_pools: Vec<(i64, i64)> = Vec::new();
    for &team_id in teams {
        if need <= 0 {
            break;
        }
        let share = pools::share(conn, now, team_id, user_id, rules)?;
        available = available.saturating_add(share.available);
        let take = need.min(share.available);
        if take > 0 {
            from_pools.push((team_id, take));
            need -= take;
        }
    }
    let mut from_overdraft = 0;
    if need > 0 && critical && user.overdraft_enabled {
        let drawn = ledger::balance(conn, Account::Overdraft(user_id), p)?
            .saturating_neg()
            .max(0);
        let left = (rules.critical_overdraft_limit - drawn).max(0);
        available = available.saturating_add(left);
        from_overdraft = need.min(left);
    }
    let from_pool: i64 = from_pools.iter().map(|(_, t)| t).sum();
    let total = from_personal + from_pool + from_overdraft;
    if total <= 0 {
        let scope = if critical && user.overdraft_enabled {
            BudgetScope::Overdraft
        } else if teams.is_empty() {
            BudgetScope::Personal
        } else {
            BudgetScope::TeamPool
        };
        return Ok(LeaseDecision::Exhausted {
            user_id,
            quota_remaining: 0,
            period_reset_s,
            scope,
        });
    }

    // The lease row first, then the ledger (see the lock order above): this proxy's
    // live lease of the class is extended in one statement, or a new one is made.
    // Only an unreleased lease is extended: the maintenance loop may release one whose
    // expiry has just passed.
    let expires_at = now + ask.ttl;
    let extended: Option<OwnLease> = crate::on_backend!(conn, |c| diesel::update(
        leases::table
            .filter(leases::user_id.eq(user_id))
            .filter(leases::proxy_id.eq(&ask.proxy_id))
            .filter(leases::class.eq(ask.class()))
            .filter(leases::released_at.is_null())
            .filter(leases::expires_at.gt(now))
            .filter(leases::period_start.eq(p)),
    )
    .set((
        // A lease already used past its grant had the excess charged as debt, not
        // to its hold: it grows from what it used, so its hold stays exactly what
        // the ledger holds for it.
        leases::granted_tokens.eq(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "CASE WHEN used_tokens > granted_tokens THEN used_tokens ELSE granted_tokens END",
        ) + total),
        leases::hold_personal.eq(leases::hold_personal + from_personal),
        leases::hold_pool.eq(leases::hold_pool + from_pool),
        leases::hold_overdraft.eq(leases::hold_overdraft + from_overdraft),
        leases::expires_at.eq(expires_at),
    ))
    .returning((leases::id, leases::granted_tokens, leases::used_tokens))
    .get_result(c)
    .optional())?;
    let (lease_id, granted_tokens, quota_remaining) = match extended {
        Some(own) => {
            // `own` is after the extension (its grant at least its usage before it).
            let hold_before = (own.granted_tokens - total - own.used_tokens).max(0);
            (
                own.id,
                own.granted_tokens,
                available + hold_before + own.used_tokens,
            )
        }
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            diesel::insert_into(leases::table)
                .values(NewLease {
                    id: &id,
                    user_id,
                    proxy_id: &ask.proxy_id,
                    granted_tokens: total,
                    used_tokens: 0,
                    priority: ask.priority.as_str(),
                    created_at: now,
                    expires_at,
                    period_start: p,
                    class: ask.class(),
                    hold_personal: from_personal,
                    hold_pool: from_pool,
                    hold_overdraft: from_overdraft,
                })
                .execute(conn)?;
            (id, total, available)
        }
    };
    let today = pools::day_of(now);
    let mut hold = Movement::new(Kind::Hold)
        .user(user_id)
        .reference(lease_id.clone())
        .entry(Account::Held(user_id), p, total)
        .entry(Account::Personal(user_id), p, -from_personal)
        .entry(Account::Overdraft(user_id), p, -from_overdraft);
    for &(team_id, take) in &from_pools {
        hold = hold.entry(Account::Pool(team_id), p, -take);
        add_pool_hold(conn, &lease_id, team_id, today, take)?;
    }
    ledger::post(conn, now, &hold)?;
    for &(team_id, take) in &from_pools {
        pools::record_draw(conn, team_id, user_id, today, take)?;
    }
    if from_overdraft > 0 {
        let details = serde_json::json!({
            "lease_id": lease_id,
            "tokens": from_overdraft,
            "proxy_id": ask.proxy_id,
        });
        audit::record(
            conn,
            now,
            Some(user_id),
            "overdraft.use",
            "user",
            Some(user_id.to_string()),
            &details,
        )?;
        notifications::notify_admins(
            conn,
            now,
            "overdraft_used",
            &format!(
                "{} ({}) used {from_overdraft} tokens of critical overdraft",
                user.name, user.email
            ),
            &details,
        )?;
    }
    Ok(LeaseDecision::Granted {
        lease_id,
        user_id,
        granted_tokens,
        expires_in_ms: ask.ttl.num_milliseconds(),
        quota_remaining,
        period_reset_s,
    })
}

#[derive(Insertable)]
#[diesel(table_name = lease_pool_holds)]
struct PoolHold<'a> {
    lease_id: &'a str,
    team_id: i64,
    day: NaiveDateTime,
    amount: i64,
}

fn add_pool_hold(
    conn: &mut DbConnection,
    lease_id: &str,
    team_id: i64,
    day: NaiveDateTime,
    amount: i64,
) -> Result<()> {
    let row = PoolHold {
        lease_id,
        team_id,
        day,
        amount,
    };
    let target = (
        lease_pool_holds::lease_id,
        lease_pool_holds::team_id,
        lease_pool_holds::day,
    );
    let add =
        lease_pool_holds::amount.eq(lease_pool_holds::amount + excluded(lease_pool_holds::amount));
    match conn {
        DbConnection::Sqlite(c) => diesel::insert_into(lease_pool_holds::table)
            .values(&row)
            .on_conflict(target)
            .do_update()
            .set(add)
            .execute(c)?,
        DbConnection::Postgres(c) => diesel::insert_into(lease_pool_holds::table)
            .values(&row)
            .on_conflict(target)
            .do_update()
            .set(add)
            .execute(c)?,
    };
    Ok(())
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

/// What a grant reads in one statement.
#[derive(Debug, QueryableByName)]
struct GrantState {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    allocated: bool,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    personal: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    debt: i64,
}

/// Whether the user's allocation for the period is issued, and their personal and
/// debt balances in it.
fn grant_state(conn: &mut DbConnection, user_id: i64, p: NaiveDateTime) -> Result<GrantState> {
    use diesel::sql_types::{Text, Timestamp};
    let owner = crate::quota::allocation::user_owner(user_id);
    let personal = Account::Personal(user_id).key();
    let debt = Account::Debt(user_id).key();
    // The same statement on both backends but for the placeholder syntax.
    macro_rules! state_query {
        ($c:expr, $a:literal, $b:literal, $c2:literal, $d:literal, $e:literal, $f:literal) => {
            diesel::sql_query(concat!(
                "SELECT EXISTS (SELECT 1 FROM allocations WHERE owner = ",
                $a,
                " AND period_start = ",
                $b,
                ") AS allocated, ",
                "COALESCE((SELECT balance FROM ledger_balances WHERE account = ",
                $c2,
                " AND period_start = ",
                $d,
                "), 0) AS personal, ",
                "COALESCE((SELECT balance FROM ledger_balances WHERE account = ",
                $e,
                " AND period_start = ",
                $f,
                "), 0) AS debt"
            ))
            .bind::<Text, _>(&owner)
            .bind::<Timestamp, _>(p)
            .bind::<Text, _>(&personal)
            .bind::<Timestamp, _>(p)
            .bind::<Text, _>(&debt)
            .bind::<Timestamp, _>(p)
            .get_result::<GrantState>($c)
        };
    }
    let state = match conn {
        DbConnection::Postgres(c) => state_query!(c, "$1", "$2", "$3", "$4", "$5", "$6"),
        DbConnection::Sqlite(c) => state_query!(c, "?", "?", "?", "?", "?", "?"),
    }?;
    Ok(state)
}

/// The lease columns a release needs.
#[derive(Debug, Queryable)]
struct Releasing {
    user_id: i64,
    granted_tokens: i64,
    used_tokens: i64,
    hold_personal: i64,
    hold_pool: i64,
    hold_overdraft: i64,
    period_start: NaiveDateTime,
}

/// Releases one lease in the caller's transaction: marks it released (once) and
/// returns what it did not use — overdraft first, then pools (latest day first),
/// then personal credit. Returns the tokens returned.
pub fn release_lease(conn: &mut DbConnection, now: NaiveDateTime, lease_id: &str) -> Result<i64> {
    let row: Option<Releasing> = diesel::update(
        leases::table
            .find(lease_id)
            .filter(leases::released_at.is_null()),
    )
    .set(leases::released_at.eq(Some(now)))
    .returning((
        leases::user_id,
        leases::granted_tokens,
        leases::used_tokens,
        leases::hold_personal,
        leases::hold_pool,
        leases::hold_overdraft,
        leases::period_start,
    ))
    .get_result(conn)
    .optional()?;
    let Some(lease) = row else {
        return Ok(0);
    };
    let remaining = (lease.granted_tokens - lease.used_tokens).max(0);
    if remaining == 0 {
        return Ok(0);
    }
    let u = lease.user_id;
    let p = lease.period_start;
    let back_overdraft = remaining.min(lease.hold_overdraft);
    let mut left = remaining - back_overdraft;
    let back_pool_total = left.min(lease.hold_pool);
    left -= back_pool_total;
    let back_personal = left.min(lease.hold_personal);
    let mut release = Movement::new(Kind::Release)
        .user(u)
        .reference(lease_id)
        .entry(
            Account::Held(u),
            p,
            -(back_overdraft + back_pool_total + back_personal),
        )
        .entry(Account::Overdraft(u), p, back_overdraft)
        .entry(Account::Personal(u), p, back_personal);
    let mut draws_back = Vec::new();
    if back_pool_total > 0 {
        let parts: Vec<(i64, NaiveDateTime, i64)> = lease_pool_holds::table
            .filter(lease_pool_holds::lease_id.eq(lease_id))
            .order((
                lease_pool_holds::day.desc(),
                lease_pool_holds::team_id.desc(),
            ))
            .select((
                lease_pool_holds::team_id,
                lease_pool_holds::day,
                lease_pool_holds::amount,
            ))
            .load(conn)?;
        let mut to_return = back_pool_total;
        for (team_id, day, amount) in parts {
            let back = to_return.min(amount);
            if back <= 0 {
                break;
            }
            release = release.entry(Account::Pool(team_id), p, back);
            draws_back.push((team_id, day, back));
            to_return -= back;
        }
        // Pool parts always add up to hold_pool; anything unmatched stays held
        // rather than being invented.
        if to_return > 0 {
            release = release.entry(Account::Held(u), p, to_return);
            tracing::error!(
                lease_id,
                to_return,
                "lease pool parts do not cover its pool hold"
            );
        }
    }
    ledger::post(conn, now, &release)?;
    for (team_id, day, back) in draws_back {
        pools::record_draw(conn, team_id, u, day, -back)?;
    }
    Ok(remaining)
}

/// Releases the user's expired leases (in the caller's transaction, which holds the
/// user's and teams' locks); returns how many.
fn release_expired_of_user(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    user_id: i64,
) -> Result<usize> {
    let expired: Vec<String> = leases::table
        .filter(leases::user_id.eq(user_id))
        .filter(leases::released_at.is_null())
        .filter(leases::expires_at.le(now))
        .select(leases::id)
        .load(conn)?;
    for id in &expired {
        release_lease(conn, now, id)?;
    }
    Ok(expired.len())
}

/// Releases up to `limit` expired leases, oldest expiry first, each in its own
/// transaction under its owner's and teams' locks (the grant's lock order); returns
/// how many. Run by the control plane's maintenance loop every second.
pub fn release_expired(conn: &mut DbConnection, now: NaiveDateTime, limit: i64) -> Result<usize> {
    let expired: Vec<(String, i64)> = leases::table
        .filter(leases::released_at.is_null())
        .filter(leases::expires_at.le(now))
        .order(leases::expires_at.asc())
        .limit(limit)
        .select((leases::id, leases::user_id))
        .load(conn)?;
    for (id, user_id) in &expired {
        retry_on_conflict(|| {
            write_transaction(&mut *conn, |conn| {
                lock_user(conn, *user_id)?;
                for team_id in pools::teams_of(conn, *user_id)? {
                    lock_team(conn, team_id)?;
                }
                release_lease(conn, now, id)
            })
        })?;
    }
    Ok(expired.len())
}
