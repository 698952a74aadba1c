//! Several grants decided in one transaction (group commit, see
//! `crate::db::group_commit`), with set-based statements for the common case.
//!
//! A round resolves every key, takes the users' locks in ascending id order, then
//! their teams' locks in ascending id order (the documented lock order), reads the
//! users, and locks their unreleased leases in id order (the order usage settlement
//! takes lease rows). A user whose grants are all *plain* — active, in no team, the
//! period's allocation issued, no debt, enough personal credit for all of them, no
//! critical request — is decided in memory from one read of the balances, and all
//! plain grants are written together: one statement for the extended leases, one for
//! the new ones, one ledger posting for every hold. Everyone else takes the general
//! path ([`super::grant_locked`]) one grant at a time, in the same transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamp};

use super::{grant_locked, LeaseDecision, NewLease, PreparedGrant};
use crate::db::schema::{allocations, api_keys, leases, team_members, teams, users};
use crate::db::{lock_teams, lock_users, DbConnection};
use crate::error::Result;
use crate::ledger::{self, Account, Kind, Movement};
use crate::quota::allocation::user_owner;
use crate::quota::Priority;
use crate::users::{User, UserStatus};

/// An unreleased lease of a user of the round.
#[derive(Debug, Queryable)]
struct LiveLease {
    id: String,
    user_id: i64,
    proxy_id: String,
    class: String,
    granted_tokens: i64,
    used_tokens: i64,
    expires_at: NaiveDateTime,
    period_start: NaiveDateTime,
}

/// A lease a plain grant of this round extends or creates.
#[derive(Debug)]
struct Slot {
    id: String,
    granted_tokens: i64,
    used_tokens: i64,
    expires_at: NaiveDateTime,
    /// Made by this round (inserted), not extended.
    created: Option<Created>,
    /// Tokens this round added to its personal hold.
    added: i64,
}

/// What a lease made by this round is inserted with.
#[derive(Debug)]
struct Created {
    user_id: i64,
    proxy_id: String,
    priority: Priority,
    class: &'static str,
    created_at: NaiveDateTime,
    period_start: NaiveDateTime,
}

/// Decides `grants` in the caller's write transaction; one decision per grant, in
/// order.
pub(super) fn decide(
    conn: &mut DbConnection,
    grants: &[PreparedGrant],
) -> Result<Vec<LeaseDecision>> {
    let hashes: Vec<&str> = grants
        .iter()
        .map(|g| g.key_hash.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let owners: HashMap<String, i64> = api_keys::table
        .inner_join(users::table)
        .filter(api_keys::key_hash.eq_any(&hashes))
        .filter(api_keys::revoked_at.is_null())
        .filter(users::deleted_at.is_null())
        .select((api_keys::key_hash, users::id))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .collect();
    let user_ids: Vec<i64> = owners
        .values()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if user_ids.is_empty() {
        return Ok(grants.iter().map(|_| LeaseDecision::InvalidKey).collect());
    }
    // Users ascending, then teams ascending: the lock order of every credit decision.
    lock_users(conn, &user_ids)?;
    let memberships: Vec<(i64, i64)> = team_members::table
        .inner_join(teams::table)
        .filter(team_members::user_id.eq_any(&user_ids))
        .filter(teams::deleted_at.is_null())
        .order(teams::id.asc())
        .select((team_members::user_id, teams::id))
        .load(conn)?;
    let mut teams_of: HashMap<i64, Vec<i64>> = HashMap::new();
    for &(user_id, team_id) in &memberships {
        teams_of.entry(user_id).or_default().push(team_id);
    }
    let team_ids: Vec<i64> = memberships
        .iter()
        .map(|&(_, team_id)| team_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    lock_teams(conn, &team_ids)?;
    // Read after the locks: status and quota changes take the same locks.
    let people: HashMap<i64, User> = users::table
        .filter(users::id.eq_any(&user_ids))
        .filter(users::deleted_at.is_null())
        .select(User::as_select())
        .load::<User>(conn)?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let live = lock_live_leases(conn, &user_ids)?;

    let plain = plain_users(conn, grants, &owners, &people, &teams_of, &live)?;

    // Plain grants in memory, in order; the rest are left for the general path.
    let mut decisions: Vec<Option<LeaseDecision>> = Vec::with_capacity(grants.len());
    let mut slots: BTreeMap<(i64, &str, &'static str), Slot> = BTreeMap::new();
    for lease in &live {
        if !plain.contains_key(&lease.user_id) {
            continue;
        }
        let class = if lease.class == "critical" {
            "critical"
        } else {
            "normal"
        };
        slots.insert(
            (lease.user_id, lease.proxy_id.as_str(), class),
            Slot {
                id: lease.id.clone(),
                granted_tokens: lease.granted_tokens,
                used_tokens: lease.used_tokens,
                expires_at: lease.expires_at,
                created: None,
                added: 0,
            },
        );
    }
    let mut personal: HashMap<i64, i64> = plain.clone();
    let mut holds: Vec<Movement> = Vec::new();
    for g in grants {
        let Some(&user_id) = owners.get(&g.key_hash) else {
            decisions.push(Some(LeaseDecision::InvalidKey));
            continue;
        };
        if people
            .get(&user_id)
            .is_some_and(|u| u.status() == UserStatus::Suspended)
        {
            decisions.push(Some(LeaseDecision::Suspended { user_id }));
            continue;
        }
        let Some(left) = personal.get_mut(&user_id) else {
            decisions.push(None);
            continue;
        };
        let bounds = g.rules.period.bounds(g.now);
        let p = bounds.start;
        let total = g.requested;
        let available = *left;
        *left -= total;
        let expires_at = g.now + g.ttl;
        let key = (user_id, g.proxy_id.as_str(), g.class());
        // Only a lease still live at this grant's time is extended (the maintenance
        // loop may release one whose expiry has just passed).
        let slot = match slots.get_mut(&key) {
            Some(slot) if slot.expires_at > g.now => slot,
            _ => {
                slots.insert(
                    key,
                    Slot {
                        id: uuid::Uuid::new_v4().to_string(),
                        granted_tokens: 0,
                        used_tokens: 0,
                        expires_at,
                        created: Some(Created {
                            user_id,
                            proxy_id: g.proxy_id.clone(),
                            priority: g.priority,
                            class: g.class(),
                            created_at: g.now,
                            period_start: p,
                        }),
                        added: 0,
                    },
                );
                slots
                    .get_mut(&key)
                    .ok_or_else(|| crate::error::Error::Invariant("lease slot vanished".into()))?
            }
        };
        // A lease already used past its grant had the excess charged as debt, not to
        // its hold: it grows from what it used (as in the general path).
        let base = slot.granted_tokens.max(slot.used_tokens);
        let hold_before = (base - slot.used_tokens).max(0);
        // What was available, plus what the lease still holds, plus what it used
        // (the general path's answer; for a new lease just what was available).
        let quota_remaining = available + hold_before + slot.used_tokens;
        slot.granted_tokens = base + total;
        slot.added += total;
        slot.expires_at = slot.expires_at.max(expires_at);
        holds.push(
            Movement::new(Kind::Hold)
                .user(user_id)
                .reference(slot.id.clone())
                .transfer(Account::Personal(user_id), Account::Held(user_id), p, total),
        );
        decisions.push(Some(LeaseDecision::Granted {
            lease_id: slot.id.clone(),
            user_id,
            granted_tokens: slot.granted_tokens,
            expires_in_ms: g.ttl.num_milliseconds(),
            quota_remaining,
            period_reset_s: bounds.seconds_until_reset(g.now),
        }));
    }
    write_slots(conn, &slots)?;
    if let Some(first) = grants.first() {
        ledger::post_all(conn, first.now, &holds)?;
    }

    // The general path, one grant at a time, for everyone else.
    let mut out = Vec::with_capacity(grants.len());
    for (g, decision) in grants.iter().zip(decisions) {
        let decision = match decision {
            Some(d) => d,
            None => match owners.get(&g.key_hash) {
                Some(&user_id) => {
                    let teams = teams_of.get(&user_id).map_or(&[][..], Vec::as_slice);
                    grant_locked(conn, g, user_id, teams)?
                }
                None => LeaseDecision::InvalidKey,
            },
        };
        out.push(decision);
    }
    Ok(out)
}

/// Locks the users' unreleased leases in id order (PostgreSQL; SQLite's write lock
/// already covers them) and returns them.
fn lock_live_leases(conn: &mut DbConnection, user_ids: &[i64]) -> Result<Vec<LiveLease>> {
    let columns = (
        leases::id,
        leases::user_id,
        leases::proxy_id,
        leases::class,
        leases::granted_tokens,
        leases::used_tokens,
        leases::expires_at,
        leases::period_start,
    );
    let query = leases::table
        .filter(leases::user_id.eq_any(user_ids))
        .filter(leases::released_at.is_null())
        .order(leases::id.asc())
        .select(columns);
    Ok(match conn {
        DbConnection::Postgres(c) => query.for_update().load(c)?,
        DbConnection::Sqlite(c) => query.load(c)?,
    })
}

/// The users whose grants this round are all plain, each with their personal credit
/// in the period (see the module documentation).
fn plain_users(
    conn: &mut DbConnection,
    grants: &[PreparedGrant],
    owners: &HashMap<String, i64>,
    people: &HashMap<i64, User>,
    teams_of: &HashMap<i64, Vec<i64>>,
    live: &[LiveLease],
) -> Result<HashMap<i64, i64>> {
    let Some(first) = grants.first() else {
        return Ok(HashMap::new());
    };
    let p = first.rules.period.bounds(first.now).start;
    // Candidates and what they ask in all.
    let mut asked: BTreeMap<i64, i64> = BTreeMap::new();
    let mut excluded: BTreeSet<i64> = BTreeSet::new();
    for g in grants {
        let Some(&user_id) = owners.get(&g.key_hash) else {
            continue;
        };
        let plain = people
            .get(&user_id)
            .is_some_and(|u| u.status() == UserStatus::Active)
            && !teams_of.contains_key(&user_id)
            && g.priority != Priority::Critical
            && g.rules.period.bounds(g.now).start == p;
        if plain {
            let sum = asked.entry(user_id).or_default();
            *sum = sum.saturating_add(g.requested);
        } else {
            excluded.insert(user_id);
        }
    }
    // A lease of another period, or two live leases for one proxy and class, is left
    // to the general path.
    let mut seen: BTreeSet<(i64, &str, &str)> = BTreeSet::new();
    for lease in live {
        if lease.period_start != p || !seen.insert((lease.user_id, &lease.proxy_id, &lease.class)) {
            excluded.insert(lease.user_id);
        }
    }
    for user_id in &excluded {
        asked.remove(user_id);
    }
    if asked.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<i64> = asked.keys().copied().collect();
    let allocated: BTreeSet<String> = allocations::table
        .filter(allocations::owner.eq_any(ids.iter().map(|&id| user_owner(id))))
        .filter(allocations::period_start.eq(p))
        .select(allocations::owner)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    let mut accounts = Vec::with_capacity(ids.len() * 2);
    for &id in &ids {
        accounts.push(Account::Personal(id));
        accounts.push(Account::Debt(id));
    }
    let balances = ledger::balances(conn, &accounts, p)?;
    let mut plain = HashMap::new();
    for (&user_id, pair) in ids.iter().zip(balances.chunks(2)) {
        let &[personal, debt] = pair else {
            continue;
        };
        if allocated.contains(&user_owner(user_id))
            && debt >= 0
            && asked.get(&user_id).is_some_and(|&sum| personal >= sum)
        {
            plain.insert(user_id, personal);
        }
    }
    Ok(plain)
}

/// Writes the plain grants' leases: extended ones (grant, personal hold, expiry) and
/// new ones, each in as few statements as the backend allows.
fn write_slots(
    conn: &mut DbConnection,
    slots: &BTreeMap<(i64, &str, &'static str), Slot>,
) -> Result<()> {
    let extended: Vec<&Slot> = slots
        .values()
        .filter(|s| s.created.is_none() && s.added > 0)
        .collect();
    let created: Vec<NewLease<'_>> = slots
        .values()
        .filter_map(|s| {
            s.created.as_ref().map(|c| NewLease {
                id: &s.id,
                user_id: c.user_id,
                proxy_id: &c.proxy_id,
                granted_tokens: s.granted_tokens,
                used_tokens: 0,
                priority: c.priority.as_str(),
                created_at: c.created_at,
                expires_at: s.expires_at,
                period_start: c.period_start,
                class: c.class,
                hold_personal: s.added,
                hold_pool: 0,
                hold_overdraft: 0,
            })
        })
        .collect();
    if !created.is_empty() {
        crate::on_backend!(conn, |c| diesel::insert_into(leases::table)
            .values(&created)
            .execute(c))?;
    }
    if extended.is_empty() {
        return Ok(());
    }
    // The rows are locked (PostgreSQL: `lock_live_leases`; SQLite: the write lock),
    // so the grant computed from them is written as is.
    match conn {
        DbConnection::Postgres(pg) => {
            diesel::sql_query(
                "UPDATE leases SET granted_tokens = v.granted, \
                 hold_personal = leases.hold_personal + v.added, expires_at = v.expires_at \
                 FROM unnest($1, $2, $3, $4) AS v(id, granted, added, expires_at) \
                 WHERE leases.id = v.id",
            )
            .bind::<Array<Text>, _>(extended.iter().map(|s| s.id.as_str()).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(
                extended
                    .iter()
                    .map(|s| s.granted_tokens)
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<BigInt>, _>(extended.iter().map(|s| s.added).collect::<Vec<_>>())
            .bind::<Array<Timestamp>, _>(extended.iter().map(|s| s.expires_at).collect::<Vec<_>>())
            .execute(pg)?;
        }
        DbConnection::Sqlite(c) => {
            for s in extended {
                diesel::update(leases::table.find(&s.id))
                    .set((
                        leases::granted_tokens.eq(s.granted_tokens),
                        leases::hold_personal.eq(leases::hold_personal + s.added),
                        leases::expires_at.eq(s.expires_at),
                    ))
                    .execute(c)?;
            }
        }
    }
    Ok(())
}
