//! The quota engine: periods, allocations, team pools and the numbers a user sees.
//! Every amount is a ledger balance (`crate::ledger`); the rules are in
//! `docs/quota-model.md`.

pub mod allocation;
mod period;
pub mod pools;
mod priority;
mod rules;
mod view;

pub use allocation::{ensure_team_period, ensure_user_period};
pub use period::{PeriodBounds, QuotaPeriod};
pub use pools::PoolShare;
pub use priority::Priority;
pub use rules::QuotaRules;
pub use view::{view, QuotaView};
