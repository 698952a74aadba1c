//! The quota engine: quota periods and what a user may still spend.
//!
//! For this step a user's budget is their personal quota; team pools, transfers and
//! grants join the formula later (see `docs/control-plane.md`).

mod balance;
mod period;
mod priority;

pub use balance::{
    balance, held_tokens, live_leases, used_and_held, used_in_period, Balance, LiveLease,
};
pub use period::{PeriodBounds, QuotaPeriod};
pub use priority::Priority;
