//! Request priority (`X-Priority`), carried on leases and usage records.

use std::fmt;
use std::str::FromStr;

/// `low | normal | high | critical`. Only `critical` will change quota behaviour
/// (overdraft up to `CRITICAL_OVERDRAFT_LIMIT`, a later step); the rest is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// Background work.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Important, same budget.
    High,
    /// May overdraw (later step).
    Critical,
}

impl Priority {
    /// Stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl FromStr for Priority {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "low" => Ok(Self::Low),
            "normal" => Ok(Self::Normal),
            "high" => Ok(Self::High),
            "critical" => Ok(Self::Critical),
            _ => Err("expected low, normal, high or critical".to_owned()),
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
