//! Background upkeep, run by `serve` every second: release expired leases (returning
//! what they did not use), expire pending transfers and quota requests, and send idle
//! team members on vacation. Each step is an ordinary domain call, so tests run them
//! with an injected clock instead of waiting.

use chrono::NaiveDateTime;

use crate::db::DbConnection;
use crate::error::Result;
use crate::quota::QuotaRules;
use crate::{approvals, leases, transfers, vacation};

/// Most leases released per round (the rest wait for the next second).
pub const RELEASE_BATCH: i64 = 500;

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Leases released.
    pub leases_released: usize,
    /// Pending transfers expired.
    pub transfers_expired: usize,
    /// Pending quota requests expired.
    pub requests_expired: usize,
    /// Users sent on vacation for being idle.
    pub idle_on_vacation: usize,
}

/// One round at `now`. `with_idle` also runs the idle check (cheap, but only needed
/// now and then).
pub fn run(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    rules: &QuotaRules,
    with_idle: bool,
) -> Result<Round> {
    let mut round = Round::default();
    loop {
        let released = leases::release_expired(conn, now, RELEASE_BATCH)?;
        round.leases_released += released;
        if released < usize::try_from(RELEASE_BATCH).unwrap_or(usize::MAX) {
            break;
        }
    }
    round.transfers_expired = transfers::expire_pending(conn, now, rules)?;
    round.requests_expired = approvals::expire_pending(conn, now)?;
    if with_idle {
        round.idle_on_vacation = vacation::send_idle_on_vacation(conn, now, rules)?;
    }
    Ok(round)
}
