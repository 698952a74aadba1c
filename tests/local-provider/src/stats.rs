//! Counters the tests read at `GET /_stats` and clear with `POST /_reset`.
//!
//! Header values are never stored: only names, and for auth headers whether the value
//! looks like a client key and whether it carried the expected provider credential.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

/// Headers whose values are credentials in one provider API or another.
pub const AUTH_HEADERS: [&str; 4] = ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// What is known about one auth header of the last request, without its value.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuthSeen {
    /// The value starts with `tp-` (after an optional `Bearer `): a leaked client key.
    pub starts_with_tp: bool,
    /// The value carried the `--expect-key` credential (`null` when none is expected).
    pub matches_expected: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LastHeaders {
    /// Lower-case names of every header of the last request, sorted.
    pub names: Vec<String>,
    /// Auth headers of the last request, by name.
    pub auth: BTreeMap<String, AuthSeen>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Snapshot {
    /// Requests that reached a provider route (refused ones included).
    pub requests: u64,
    /// Requests answered with a completion (status 200).
    pub completed: u64,
    /// Requests answered 401 because the provider credential was missing or wrong.
    pub rejected_credential: u64,
    /// Requests answered 400 because the body was not a valid request.
    pub rejected_bad_request: u64,
    /// Requests answered with an error asked for by `x-local-provider-fail`.
    pub injected_failures: u64,
    /// Requests carrying a client key (`tp-…`) in any header: the gateway leaked it.
    pub leaked_client_keys: u64,
    /// Streams cut on purpose by `x-local-provider-abort-after`.
    pub aborted: u64,
    /// Sum of `usage.total_tokens` that response bodies reported completely.
    pub total_tokens_reported: u64,
    /// Sum of total tokens the provider "spent", reported or not.
    pub total_tokens_spent: u64,
    /// Requests by dialect name (`openai`, …).
    pub by_provider: BTreeMap<String, u64>,
    pub last_headers: LastHeaders,
    /// The JSON body of the last request (`null` when it was not JSON). Test prompts only.
    pub last_body: Value,
}

/// Thread-safe holder of the counters, shared by all server workers.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Snapshot>,
}

impl Stats {
    /// Applies `change` to the counters. A poisoned lock (a panicking writer) still
    /// yields the data: counters stay usable for the test that reads them.
    pub fn update(&self, change: impl FnOnce(&mut Snapshot)) {
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut guard);
    }

    pub fn snapshot(&self) -> Snapshot {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn reset(&self) {
        self.update(|snapshot| *snapshot = Snapshot::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_snapshot_and_reset() {
        let stats = Stats::default();
        stats.update(|s| {
            s.requests += 2;
            s.total_tokens_reported += 29;
        });
        assert_eq!(stats.snapshot().requests, 2);
        assert_eq!(stats.snapshot().total_tokens_reported, 29);
        stats.reset();
        assert_eq!(stats.snapshot(), Snapshot::default());
    }
}
