//! Group commit for lease grants ([`crate::db::group_commit`]).
//!
//! Grants arriving while a round is being written queue; the next writer decides them
//! all in one transaction ([`super::grant_round`]): one commit, one lock statement,
//! and set-based reads and writes for the plain grants. SQLite has one writer slot (it
//! has one writer anyway); PostgreSQL two, so one round's statements overlap the
//! other's commit.

use super::{grant_round, LeaseDecision, PreparedGrant};
use crate::db::group_commit::GroupCommit;
use crate::db::DbPool;
use crate::error::Result;

/// Most grants decided in one transaction (longer queues take several rounds).
pub const MAX_ROUND_GRANTS: usize = 256;

/// The queue of grants waiting to be decided.
#[derive(Debug)]
pub struct GrantQueue(GroupCommit<PreparedGrant, LeaseDecision>);

impl Default for GrantQueue {
    fn default() -> Self {
        Self::new(1)
    }
}

impl GrantQueue {
    /// An empty queue with `max_writers` concurrent transactions (at least one).
    pub fn new(max_writers: usize) -> Self {
        Self(GroupCommit::new(max_writers, MAX_ROUND_GRANTS))
    }

    /// Decides `grant` (possibly together with others) and returns the decision.
    /// Blocks the calling thread; a database connection is taken from `pool` only by
    /// the thread that writes.
    pub fn submit(&self, pool: &DbPool, grant: PreparedGrant) -> Result<LeaseDecision> {
        self.0.submit(pool, grant, 1, grant_round)
    }
}
