//! The quota engine: quota periods and what a user may still spend.
//!
//! For this step a user's budget is their personal quota; team pools, transfers and
//! grants join the formula later (see `docs/control-plane.md`).

mod balance;
mod period;
mod priority;

pub use balance::{balance, held_tokens, used_and_held, used_in_period, Balance};
pub use period::{PeriodBounds, QuotaPeriod};
pub use priority::Priority;
