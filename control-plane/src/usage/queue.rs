//! Group commit for usage batches ([`crate::db::group_commit`]).
//!
//! SQLite has one writer slot (it has one writer anyway); PostgreSQL two, so one
//! round's record inserts overlap the other's commit. Under load a transaction carries
//! several proxies' batches: one commit instead of several, each lease updated once
//! instead of once per batch, and no two transactions of this process queueing on the
//! same rows.

use super::{write_batches, IngestOutcome, PreparedBatch};
use crate::db::group_commit::GroupCommit;
use crate::db::DbPool;
use crate::error::Result;

/// Most records written in one transaction (larger queues take several rounds).
pub const MAX_ROUND_RECORDS: usize = 20_000;

/// The queue of batches waiting to be written.
#[derive(Debug)]
pub struct IngestQueue(GroupCommit<PreparedBatch, IngestOutcome>);

impl Default for IngestQueue {
    fn default() -> Self {
        Self::new(1)
    }
}

impl IngestQueue {
    /// An empty queue with `max_writers` concurrent transactions (at least one).
    pub fn new(max_writers: usize) -> Self {
        Self(GroupCommit::new(max_writers, MAX_ROUND_RECORDS))
    }

    /// Writes `batch` (possibly together with others) and returns its outcome.
    /// Blocks the calling thread; a database connection is taken from `pool` only by
    /// the thread that writes.
    pub fn submit(&self, pool: &DbPool, batch: PreparedBatch) -> Result<IngestOutcome> {
        let records = batch.len();
        self.0.submit(pool, batch, records, write_batches)
    }
}
