//! Group commit: concurrent requests share one write transaction.
//!
//! Requests that arrive while the writers are busy wait in a queue; whoever finds a
//! writer slot free becomes a writer, takes everything queued so far (up to a round's
//! weight) and writes it with one call of the round function — one transaction, one
//! commit — then hands each request its own outcome and steps down. Without load a
//! request is written at once, alone. Usage batches (`crate::usage`) and lease grants
//! (`crate::leases`) use it: under load a commit (and on PostgreSQL its WAL flush and
//! round trips) is paid once per round instead of once per request.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::{discard_if_disconnected, DbConnection, DbPool};
use crate::error::{Error, Result};

/// Writes one round: one outcome per item, in order.
pub type RoundFn<T, R> = fn(&mut DbConnection, &[T]) -> Vec<Result<R>>;

/// The queue of items waiting to be written.
#[derive(Debug)]
pub struct GroupCommit<T, R> {
    state: Mutex<State<T, R>>,
    changed: Condvar,
    max_writers: usize,
    max_round_weight: usize,
}

#[derive(Debug)]
struct State<T, R> {
    next_ticket: u64,
    /// (ticket, weight, item), oldest first.
    pending: Vec<(u64, usize, T)>,
    done: HashMap<u64, Result<R>>,
    writers: usize,
}

impl<T, R> GroupCommit<T, R> {
    /// An empty queue with `max_writers` concurrent rounds (at least one), each of at
    /// most `max_round_weight` (but always at least one item).
    pub fn new(max_writers: usize, max_round_weight: usize) -> Self {
        Self {
            state: Mutex::new(State {
                next_ticket: 0,
                pending: Vec::new(),
                done: HashMap::new(),
                writers: 0,
            }),
            changed: Condvar::new(),
            max_writers: max_writers.max(1),
            max_round_weight,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T, R>> {
        // Nothing in `State` is left half-updated by a panic: every change is a
        // single assignment or collection operation.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `item` (weighing `weight` towards the round's limit), possibly together
    /// with others, and returns its outcome. Blocks the calling thread; a database
    /// connection is taken from `pool` only by the thread that writes.
    pub fn submit(&self, pool: &DbPool, item: T, weight: usize, write: RoundFn<T, R>) -> Result<R> {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.pending.push((ticket, weight, item));
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
            // the round's weight (at least one item).
            state.writers += 1;
            let mut weight = 0;
            let take = state
                .pending
                .iter()
                .take_while(|(_, w, _)| {
                    weight += w;
                    weight <= self.max_round_weight
                })
                .count()
                .max(1);
            let round: Vec<(u64, usize, T)> = state.pending.drain(..take).collect();
            drop(state);

            let (tickets, items): (Vec<u64>, Vec<T>) =
                round.into_iter().map(|(t, _, item)| (t, item)).unzip();
            let outcomes = match pool.get() {
                Ok(mut conn) => {
                    let outcomes = write(&mut conn, &items);
                    if outcomes
                        .iter()
                        .any(|o| matches!(o, Err(Error::Database(_))))
                    {
                        discard_if_disconnected(&mut conn);
                    }
                    outcomes
                }
                Err(e) => {
                    tracing::error!(error = %e, "no database connection for a write round");
                    items.iter().map(|_| Err(Error::Unavailable)).collect()
                }
            };

            state = self.lock();
            if outcomes.len() != tickets.len() {
                // A round function answers every item; if one ever did not, its
                // callers get an error instead of waiting forever.
                tracing::error!(
                    items = tickets.len(),
                    outcomes = outcomes.len(),
                    "a write round lost outcomes"
                );
            }
            let mut outcomes = outcomes.into_iter();
            for ticket in tickets {
                let outcome = outcomes
                    .next()
                    .unwrap_or(Err(Error::Invariant("write round lost an outcome".into())));
                state.done.insert(ticket, outcome);
            }
            state.writers -= 1;
            self.changed.notify_all();
        }
    }
}
