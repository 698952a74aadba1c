//! Injected time. Everything that depends on "now" (periods, lease expiry) asks a
//! [`Clock`], so tests move time forward instead of sleeping.

use std::sync::{Arc, Mutex};

use chrono::{NaiveDateTime, TimeDelta, Utc};

/// A source of the current time, always UTC (the database stores naive UTC).
pub trait Clock: Send + Sync + 'static {
    /// The current instant in UTC.
    fn now(&self) -> NaiveDateTime;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> NaiveDateTime {
        Utc::now().naive_utc()
    }
}

/// A clock that stands still until told to move; shared by clones.
#[derive(Clone, Debug)]
pub struct TestClock {
    now: Arc<Mutex<NaiveDateTime>>,
}

impl TestClock {
    /// A clock frozen at `start`.
    pub fn new(start: NaiveDateTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock to `instant`.
    pub fn set(&self, instant: NaiveDateTime) {
        if let Ok(mut now) = self.now.lock() {
            *now = instant;
        }
    }

    /// Moves the clock forward by `delta`.
    pub fn advance(&self, delta: TimeDelta) {
        if let Ok(mut now) = self.now.lock() {
            *now += delta;
        }
    }
}

impl Clock for TestClock {
    fn now(&self) -> NaiveDateTime {
        match self.now.lock() {
            Ok(now) => *now,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}
