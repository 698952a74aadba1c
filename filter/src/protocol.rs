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

impl UsageRecord {
    /// Append the record as JSON, the same document `serde_json` would write. Written
    /// by hand because it runs for every request inside the VM, where a generic
    /// serializer costs several times more.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"request_id\":");
        write_json_str(out, &self.request_id);
        out.extend_from_slice(b",\"lease_id\":");
        match &self.lease_id {
            Some(id) => write_json_str(out, id),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"user_id\":");
        write_int(out, self.user_id.unsigned_abs(), self.user_id < 0);
        out.extend_from_slice(b",\"provider\":");
        write_json_str(out, self.provider);
        out.extend_from_slice(b",\"model\":");
        write_json_str(out, &self.model);
        for (name, value) in [
            (&b",\"input_tokens\":"[..], self.input_tokens),
            (b",\"output_tokens\":", self.output_tokens),
            (b",\"total_tokens\":", self.total_tokens),
            (b",\"cached_tokens\":", self.cached_tokens),
            (b",\"reasoning_tokens\":", self.reasoning_tokens),
            (b",\"status\":", u64::from(self.status)),
        ] {
            out.extend_from_slice(name);
            write_int(out, value, false);
        }
        out.extend_from_slice(if self.estimated {
            b",\"estimated\":true"
        } else {
            b",\"estimated\":false"
        });
        out.extend_from_slice(b",\"priority\":");
        write_json_str(out, self.priority);
        out.extend_from_slice(b",\"project_id\":");
        match &self.project_id {
            Some(id) => write_json_str(out, id),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"privacy\":");
        write_json_str(out, self.privacy);
        out.extend_from_slice(b",\"ts_ms\":");
        write_int(out, self.ts_ms, false);
        out.push(b'}');
    }
}

/// A JSON string: quotes, backslashes and control characters escaped; other UTF-8 as is.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A number in decimal, written on the stack without the formatting machinery (see
/// [`UsageRecord::write_json`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    pub fn new(mut value: u64) -> Self {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        Decimal { digits, start }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever written.
        std::str::from_utf8(&self.digits[self.start..]).unwrap_or("0")
    }
}

fn write_int(out: &mut Vec<u8>, value: u64, negative: bool) {
    if negative {
        out.push(b'-');
    }
    out.extend_from_slice(Decimal::new(value).as_str().as_bytes());
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
    fn decimals_match_to_string() {
        for v in [0, 1, 9, 10, 4400, 123_456_789, u64::MAX - 1, u64::MAX] {
            assert_eq!(Decimal::new(v).as_str(), v.to_string());
        }
    }

    #[test]
    fn hand_written_record_json_is_what_serde_writes() {
        let mut record = UsageRecord {
            request_id: "0f8e".into(),
            lease_id: Some("l-1".into()),
            user_id: -42,
            provider: "openai",
            model: "gpt\\u002d4 \"q\"\n\u{1}\u{7f} é✓".into(),
            input_tokens: 0,
            output_tokens: u64::MAX,
            total_tokens: 1_000_000_007,
            cached_tokens: 3,
            reasoning_tokens: 10,
            status: 200,
            estimated: true,
            priority: "critical",
            project_id: Some("p\t1".into()),
            privacy: "strict",
            ts_ms: 1_764_466_000_000,
        };
        for _ in 0..2 {
            let mut ours = Vec::new();
            record.write_json(&mut ours);
            let ours: serde_json::Value = serde_json::from_slice(&ours).unwrap();
            assert_eq!(ours, serde_json::to_value(&record).unwrap());
            record.lease_id = None;
            record.project_id = None;
            record.estimated = false;
            record.user_id = i64::MAX;
        }
    }

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
