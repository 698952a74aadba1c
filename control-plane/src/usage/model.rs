//! The `usage_records` row.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::usage_records;

/// A stored usage record.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = usage_records)]
#[allow(missing_docs)]
pub struct UsageRecord {
    pub id: i64,
    pub request_id: String,
    pub user_id: i64,
    pub lease_id: Option<String>,
    pub proxy_id: String,
    pub provider: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    pub status: i32,
    pub estimated: bool,
    pub priority: String,
    pub project_id: Option<String>,
    pub privacy: String,
    pub occurred_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub period_start: NaiveDateTime,
    /// Cost in billionths of a USD (0 when `unpriced`).
    pub cost_nano_usd: i64,
    /// The model had no price: the cost is unknown, not zero.
    pub unpriced: bool,
}

/// Insert form of [`UsageRecord`]. `None` is written as NULL (not DEFAULT) so a
/// batch is one multi-row INSERT on SQLite too.
#[derive(Debug, Insertable)]
#[diesel(table_name = usage_records, treat_none_as_default_value = false)]
#[allow(missing_docs)]
pub struct NewUsageRecord<'a> {
    pub request_id: &'a str,
    pub user_id: i64,
    pub lease_id: Option<&'a str>,
    pub proxy_id: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    pub status: i32,
    pub estimated: bool,
    pub priority: &'a str,
    pub project_id: Option<&'a str>,
    pub privacy: &'a str,
    pub occurred_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub period_start: NaiveDateTime,
    pub cost_nano_usd: i64,
    pub unpriced: bool,
}

/// `X-Privacy-Mode` of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Privacy {
    /// Metadata and (where enabled) content may be recorded.
    #[default]
    Standard,
    /// Metadata only; nothing of the content anywhere.
    Strict,
}

impl Privacy {
    /// Stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Strict => "strict",
        }
    }
}

impl FromStr for Privacy {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "standard" => Ok(Self::Standard),
            "strict" => Ok(Self::Strict),
            _ => Err("expected standard or strict".to_owned()),
        }
    }
}

impl fmt::Display for Privacy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
