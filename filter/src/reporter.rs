//! Usage reporting: a bounded queue of records sent in batches from the root context's
//! tick, each batch retried with backoff until the control plane acknowledges it. The
//! control plane applies each `request_id` once, so resending is always safe.
//!
//! Records are written as JSON when queued: the cost is spread over the requests
//! instead of stalling the worker on the tick that sends a batch of hundreds.
//!
//! A batch goes when it is full, or when its oldest record has waited the report
//! interval. The control plane's cost is mostly per round (each user's lease, totals
//! and rollup rows, the commit), so a few full batches cost it far less than many
//! small ones; and a backlog drains batch after batch as each is acknowledged, not one
//! batch per tick, so the rate a worker can report is not capped by its tick.

use crate::protocol::{write_json_str, UsageRecord};
use std::collections::VecDeque;

const BACKOFF_START_MS: u64 = 250;
const BACKOFF_MAX_MS: u64 = 30_000;

/// What became of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// 200: applied (or recognised as already applied).
    Acknowledged,
    /// The control plane refused the batch as malformed (4xx other than 401/408/429):
    /// resending cannot help, so it is dropped and counted.
    Rejected,
    /// No answer, timeout, 5xx, 401, 408, 429: resend later.
    Failed,
}

impl ReportOutcome {
    pub fn from_status(status: Option<u16>) -> ReportOutcome {
        match status {
            Some(200) => ReportOutcome::Acknowledged,
            Some(401 | 408 | 429) => ReportOutcome::Failed,
            Some(s) if (400..500).contains(&s) => ReportOutcome::Rejected,
            _ => ReportOutcome::Failed,
        }
    }
}

#[derive(Debug)]
pub struct Reporter {
    /// Records, each as its JSON object, with the time of the first look at the queue
    /// after it was queued (`None` until then): the request path does not read the
    /// clock for it, and a tick is close enough to decide when a batch is due.
    queue: VecDeque<(Option<u64>, Vec<u8>)>,
    in_flight: Vec<Vec<u8>>,
    sending: bool,
    next_attempt_ms: u64,
    backoff_ms: u64,
    max_batch: usize,
    max_buffered: usize,
    /// How long a record may wait for its batch to fill.
    interval_ms: u64,
    /// Records lost to a full buffer or a rejected batch. Exposed as a metric.
    pub dropped: u64,
    /// Records acknowledged by the control plane.
    pub acknowledged: u64,
}

impl Reporter {
    pub fn new(max_batch: usize, max_buffered: usize, interval_ms: u64) -> Self {
        Reporter {
            queue: VecDeque::new(),
            in_flight: Vec::new(),
            sending: false,
            next_attempt_ms: 0,
            backoff_ms: 0,
            max_batch: max_batch.max(1),
            max_buffered: max_buffered.max(1),
            interval_ms,
            dropped: 0,
            acknowledged: 0,
        }
    }

    pub fn push(&mut self, record: &UsageRecord) {
        if self.queue.len() + self.in_flight.len() >= self.max_buffered {
            self.queue.pop_front();
            self.dropped += 1;
        }
        let mut json = Vec::with_capacity(384);
        record.write_json(&mut json);
        self.queue.push_back((None, json));
    }

    /// Records not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// The body of the next batch to send, if one is due: a retry whose backoff has
    /// passed, a full batch, or one whose oldest record has waited the interval.
    pub fn next_batch(&mut self, proxy_id: &str, now_ms: u64) -> Option<Vec<u8>> {
        self.batch(proxy_id, now_ms, false)
    }

    /// The body of the next batch, due or not, unless one is in flight: for a VM that
    /// is shutting down, which has no later tick to wait for.
    pub fn final_batch(&mut self, proxy_id: &str, now_ms: u64) -> Option<Vec<u8>> {
        self.batch(proxy_id, now_ms, true)
    }

    fn batch(&mut self, proxy_id: &str, now_ms: u64, now_or_never: bool) -> Option<Vec<u8>> {
        if self.sending || (now_ms < self.next_attempt_ms && !now_or_never) {
            return None;
        }
        for (seen_ms, _) in self.queue.iter_mut().rev() {
            if seen_ms.is_some() {
                break;
            }
            *seen_ms = Some(now_ms);
        }
        if self.in_flight.is_empty() {
            let waited = self.queue.front().is_some_and(|(seen_ms, _)| {
                now_ms.saturating_sub(seen_ms.unwrap_or(now_ms)) >= self.interval_ms
            });
            if !waited && self.queue.len() < self.max_batch && !now_or_never {
                return None;
            }
            let n = self.queue.len().min(self.max_batch);
            self.in_flight
                .extend(self.queue.drain(..n).map(|(_, record)| record));
        }
        if self.in_flight.is_empty() {
            return None;
        }
        let size: usize = self.in_flight.iter().map(|r| r.len() + 1).sum();
        let mut body = Vec::with_capacity(size + proxy_id.len() + 32);
        body.extend_from_slice(b"{\"proxy_id\":");
        write_json_str(&mut body, proxy_id);
        body.extend_from_slice(b",\"records\":[");
        for (i, record) in self.in_flight.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(record);
        }
        body.extend_from_slice(b"]}");
        self.sending = true;
        Some(body)
    }

    /// The dispatch itself failed (no call was made).
    pub fn send_failed(&mut self, now_ms: u64) {
        self.on_outcome(ReportOutcome::Failed, now_ms);
    }

    pub fn on_outcome(&mut self, outcome: ReportOutcome, now_ms: u64) {
        self.sending = false;
        match outcome {
            ReportOutcome::Acknowledged => {
                self.acknowledged += self.in_flight.len() as u64;
                self.in_flight.clear();
                self.backoff_ms = 0;
                self.next_attempt_ms = 0;
            }
            ReportOutcome::Rejected => {
                self.dropped += self.in_flight.len() as u64;
                self.in_flight.clear();
            }
            ReportOutcome::Failed => {
                // Keep the same batch: same records, same request ids, resent as is.
                self.backoff_ms = (self.backoff_ms * 2).clamp(BACKOFF_START_MS, BACKOFF_MAX_MS);
                self.next_attempt_ms = now_ms.saturating_add(self.backoff_ms);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64) -> UsageRecord {
        UsageRecord {
            request_id: format!("r{n}"),
            lease_id: Some("l".into()),
            user_id: 1,
            provider: "openai",
            model: "m".into(),
            input_tokens: n,
            output_tokens: 0,
            total_tokens: n,
            cached_tokens: 0,
            reasoning_tokens: 0,
            status: 200,
            estimated: false,
            priority: "normal",
            project_id: None,
            privacy: "standard",
            ts_ms: 0,
        }
    }

    fn ids(body: &[u8]) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn batches_retries_same_records_with_backoff_until_acknowledged() {
        let mut r = Reporter::new(2, 100, 1_000);
        for n in 0..3 {
            r.push(&record(n));
        }
        let first = r.next_batch("p", 0).unwrap();
        assert_eq!(ids(&first), ["r0", "r1"]);
        assert!(
            r.next_batch("p", 0).is_none(),
            "one batch in flight at a time"
        );
        r.on_outcome(ReportOutcome::from_status(None), 0);
        assert!(r.next_batch("p", 100).is_none(), "backing off");
        let retry = r.next_batch("p", 250).unwrap();
        assert_eq!(
            ids(&retry),
            ["r0", "r1"],
            "a retry resends the same request ids"
        );
        r.on_outcome(ReportOutcome::from_status(Some(503)), 250);
        assert!(
            r.next_batch("p", 700).is_none(),
            "backoff doubled to 500 ms"
        );
        assert!(r.next_batch("p", 750).is_some());
        r.on_outcome(ReportOutcome::from_status(Some(200)), 750);
        assert!(
            r.next_batch("p", 999).is_none(),
            "a part batch waits for the interval"
        );
        assert_eq!(ids(&r.next_batch("p", 1_000).unwrap()), ["r2"]);
        r.on_outcome(ReportOutcome::Acknowledged, 1_001);
        assert_eq!((r.acknowledged, r.pending(), r.dropped), (3, 0, 0));
    }

    #[test]
    fn full_buffer_and_rejections_are_counted() {
        let mut r = Reporter::new(10, 2, 1_000);
        for n in 0..5 {
            r.push(&record(n));
        }
        assert_eq!((r.pending(), r.dropped), (2, 3));
        assert!(r.next_batch("p", 500).is_none(), "first seen now");
        assert!(r.next_batch("p", 1_499).is_none());
        assert_eq!(ids(&r.next_batch("p", 1_500).unwrap()), ["r3", "r4"]);
        r.on_outcome(ReportOutcome::from_status(Some(422)), 0);
        assert_eq!((r.pending(), r.dropped), (0, 5));
    }

    #[test]
    fn a_full_batch_goes_at_once_and_a_backlog_drains_without_waiting() {
        let mut r = Reporter::new(3, 100, 1_000);
        for n in 0..2 {
            r.push(&record(n));
        }
        assert!(
            r.next_batch("p", 10).is_none(),
            "two of three: not full, not old"
        );
        for n in 2..8 {
            r.push(&record(n));
        }
        assert_eq!(ids(&r.next_batch("p", 10).unwrap()), ["r0", "r1", "r2"]);
        r.on_outcome(ReportOutcome::Acknowledged, 11);
        // Acknowledged: the next full batch is due at once, not on a later tick.
        assert_eq!(ids(&r.next_batch("p", 11).unwrap()), ["r3", "r4", "r5"]);
        r.on_outcome(ReportOutcome::Acknowledged, 12);
        assert!(r.next_batch("p", 12).is_none(), "two left: they wait");
        assert!(r.next_batch("p", 1_009).is_none());
        assert_eq!(ids(&r.next_batch("p", 1_010).unwrap()), ["r6", "r7"]);
    }

    #[test]
    fn a_final_batch_goes_now_whatever_its_age_or_backoff() {
        let mut r = Reporter::new(2, 100, 1_000);
        for n in 0..3 {
            r.push(&record(n));
        }
        assert_eq!(ids(&r.final_batch("p", 0).unwrap()), ["r0", "r1"]);
        assert!(
            r.final_batch("p", 0).is_none(),
            "one batch in flight at a time"
        );
        r.on_outcome(ReportOutcome::Failed, 0);
        assert!(r.next_batch("p", 1).is_none(), "backing off");
        assert_eq!(ids(&r.final_batch("p", 1).unwrap()), ["r0", "r1"]);
        r.on_outcome(ReportOutcome::Acknowledged, 2);
        assert_eq!(ids(&r.final_batch("p", 2).unwrap()), ["r2"]);
        r.on_outcome(ReportOutcome::Acknowledged, 3);
        assert!(r.final_batch("p", 3).is_none());
        assert_eq!(r.pending(), 0);
    }
}
