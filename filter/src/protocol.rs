//! Wire types of the lease protocol (docs/lease-protocol.md), filter side.

use serde::{Deserialize, Serialize};

pub const LEASES_PATH: &str = "/internal/v1/leases";
pub const USAGE_PATH: &str = "/internal/v1/usage";
pub const SYNC_PATH: &str = "/internal/v1/sync";

#[derive(Debug, Serialize)]
pub struct LeaseRequest<'a> {
    pub key_hash: &'a str,
    pub proxy_id: &'a str,
    pub requested_tokens: u64,
    pub priority: &'a str,
}

/// The control plane's decision about a user. Unknown decisions fail closed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum LeaseAnswer {
    Granted {
        lease_id: String,
        user_id: i64,
        granted_tokens: u64,
        expires_in_ms: u64,
        quota_remaining: u64,
        #[serde(default)]
        period_reset_s: u64,
        /// Tokens this proxy may serve the user beyond its leases while the control
        /// plane is unreachable (0: fail closed). Reconciled like any usage.
        #[serde(default)]
        fail_open_tokens: u64,
    },
    InvalidKey,
    Suspended {
        #[serde(default)]
        user_id: i64,
    },
    Exhausted {
        #[serde(default)]
        user_id: i64,
        #[serde(default = "personal")]
        budget_scope: String,
        #[serde(default)]
        period_reset_s: u64,
    },
}

fn personal() -> String {
    "personal".to_string()
}

impl LeaseAnswer {
    /// Parse a 200 answer; anything unparseable is an error (the caller fails closed).
    pub fn parse(body: &[u8]) -> Result<LeaseAnswer, String> {
        serde_json::from_slice(body).map_err(|e| format!("unreadable lease answer: {e}"))
    }
}

/// One request's usage, as reported. `request_id` makes reporting idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    pub request_id: String,
    pub lease_id: Option<String>,
    pub user_id: i64,
    pub provider: &'static str,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub status: u16,
    pub estimated: bool,
    pub priority: &'static str,
    pub project_id: Option<String>,
    pub privacy: &'static str,
    pub ts_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct UsageBatch<'a> {
    pub proxy_id: &'a str,
    pub records: &'a [UsageRecord],
}

/// Re-check of keys this proxy holds leases for: revocation, suspension and quota
/// changes reach the proxy through it.
#[derive(Debug, Serialize)]
pub struct SyncRequest<'a> {
    pub proxy_id: &'a str,
    pub key_hashes: &'a [String],
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SyncAnswer {
    pub keys: Vec<KeyStatus>,
}

/// `decision`: `active`, `invalid_key`, `suspended` or `exhausted` (others: ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeyStatus {
    pub key_hash: String,
    pub decision: String,
    #[serde(default)]
    pub budget_scope: Option<String>,
    #[serde(default)]
    pub period_reset_s: Option<u64>,
}

impl SyncAnswer {
    pub fn parse(body: &[u8]) -> Result<SyncAnswer, String> {
        serde_json::from_slice(body).map_err(|e| format!("unreadable sync answer: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_decision() {
        let granted = LeaseAnswer::parse(br#"{"decision":"granted","lease_id":"l1","user_id":42,"granted_tokens":20000,"expires_in_ms":60000,"quota_remaining":96000,"period_reset_s":86400}"#).unwrap();
        assert!(matches!(
            granted,
            LeaseAnswer::Granted {
                granted_tokens: 20000,
                user_id: 42,
                ..
            }
        ));
        assert_eq!(
            LeaseAnswer::parse(br#"{"decision":"invalid_key"}"#).unwrap(),
            LeaseAnswer::InvalidKey
        );
        assert!(matches!(
            LeaseAnswer::parse(br#"{"decision":"suspended","user_id":4}"#).unwrap(),
            LeaseAnswer::Suspended { user_id: 4 }
        ));
        assert!(matches!(
            LeaseAnswer::parse(br#"{"decision":"exhausted","user_id":4,"budget_scope":"personal","quota_remaining":0,"period_reset_s":5}"#).unwrap(),
            LeaseAnswer::Exhausted { period_reset_s: 5, .. }
        ));
        for garbage in [
            &b"{}"[..],
            b"{\"decision\":\"granted\"}",
            b"\xff\xfe",
            b"[1,2]",
            b"{\"decision\":\"maybe\"}",
        ] {
            assert!(LeaseAnswer::parse(garbage).is_err());
        }
    }
}
