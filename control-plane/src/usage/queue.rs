//! Group commit for usage batches.
//!
//! Batches that arrive while the writers are busy wait in a queue; whoever finds a
//! writer slot free becomes a writer and writes everything queued so far in one
//! transaction ([`super::write_batches`]), then hands the results back and steps down.
//! SQLite has one slot (it has one writer anyway); PostgreSQL two, so one round's
//! record inserts overlap the other's commit.
//! Under load a transaction carries several proxies' batches: one commit instead of
//! several, each user's running total and each lease updated once instead of once
//! per batch, and no two transactions of this process queueing on the same rows.
//! Without load a batch is written at once, alone.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::{write_batches, IngestOutcome, PreparedBatch};
use crate::db::DbPool;
use crate::error::{Error, Result};

/// Most records written in one transaction (larger queues take several rounds).
pub const MAX_ROUND_RECORDS: usize = 20_000;

/// The queue of batches waiting to be written.
#[derive(Debug)]
pub struct IngestQueue {
    state: Mutex<State>,
    changed: Condvar,
    max_writers: usize,
}

#[derive(Debug, Default)]
struct State {
    next_ticket: u64,
    pending: Vec<(u64, PreparedBatch)>,
    done: HashMap<u64, Result<IngestOutcome>>,
    writers: usize,
}

impl Default for IngestQueue {
    fn default() -> Self {
        Self::new(1)
    }
}

impl IngestQueue {
    /// An empty queue with `max_writers` concurrent transactions (at least one).
    pub fn new(max_writers: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            max_writers: max_writers.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing in `State` is left half-updated by a panic: every change is a
        // single assignment or collection operation.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `batch` (possibly together with others) and returns its outcome.
    /// Blocks the calling thread; a database connection is taken from `pool` only by
    /// the thread that writes.
    pub fn submit(&self, pool: &DbPool, batch: PreparedBatch) -> Result<IngestOutcome> {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.pending.push((ticket, batch));
        loop {
            if let Some(outcome) = state.done.remove(&ticket) {
                return outcome;
            }
            if state.writers >= self.max_writers || state.pending.is_empty() {
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Become the writer for one round: everything queued, oldest first, up to
            // MAX_ROUND_RECORDS (at least one batch).
            state.writers += 1;
            let mut records = 0;
            let take = state
                .pending
                .iter()
                .take_while(|(_, b)| {
                    records += b.len();
                    records <= MAX_ROUND_RECORDS
                })
                .count()
                .max(1);
            let round: Vec<(u64, PreparedBatch)> = state.pending.drain(..take).collect();
            drop(state);

            let (tickets, batches): (Vec<u64>, Vec<PreparedBatch>) = round.into_iter().unzip();
            let outcomes = match pool.get() {
                Ok(mut conn) => {
                    let outcomes = write_batches(&mut conn, &batches);
                    if outcomes
                        .iter()
                        .any(|o| matches!(o, Err(Error::Database(_))))
                    {
                        crate::db::discard_if_disconnected(&mut conn);
                    }
                    outcomes
                }
                Err(e) => {
                    tracing::error!(error = %e, "no database connection for usage");
                    batches.iter().map(|_| Err(Error::Unavailable)).collect()
                }
            };

            state = self.lock();
            state.done.extend(tickets.into_iter().zip(outcomes));
            state.writers -= 1;
            self.changed.notify_all();
        }
    }
}
