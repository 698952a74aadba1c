//! The filter's decisions, free of any host calls.
//!
//! One [`Gateway`] lives in each worker VM. The adapter calls it at each point of a
//! request's life (request headers, lease answer, response headers and body, end) and
//! on every root tick, and turns the returned outcomes into host calls. Everything here
//! is plain data and time passed in, so every path is unit-tested natively.

use crate::body;
use crate::config::Config;
use crate::ids::IdGen;
use crate::key::{self, ClientKey};
use crate::protocol::{LeaseAnswer, LeaseRequest, UsageRecord};
use crate::reply::{LocalReply, Refusal};
use crate::reporter::{ReportOutcome, Reporter};
use crate::strip::UsageChunkStripper;
use crate::usage::{estimate_tokens, Api, Family, Format, Framing, Usage, UsageParser};
use std::collections::HashMap;

/// How long a refusal from the control plane (unknown key, suspended, exhausted) is
/// remembered before asking again: bounds both load and how stale a "no" can be.
const REFUSAL_TTL_MS: u64 = 2_000;
/// Longest `X-Project-ID` kept.
const MAX_PROJECT_ID: usize = 128;
/// Cap on the per-request reservation estimate.
const MAX_ESTIMATE: u64 = 1_000_000;

/// Alfred's own request headers; removed before the request goes upstream.
pub const ALFRED_HEADERS: [&str; 3] = ["x-privacy-mode", "x-priority", "x-project-id"];

/// A quota lease as this VM holds it.
#[derive(Debug, Clone)]
struct Lease {
    id: String,
    user_id: i64,
    granted: u64,
    /// Reserved by requests in flight plus settled usage.
    consumed: u64,
    expires_at_ms: u64,
    /// What the user could still spend when the lease was granted, this lease included.
    quota_remaining: u64,
}

impl Lease {
    fn room(&self, now_ms: u64) -> u64 {
        if now_ms >= self.expires_at_ms {
            0
        } else {
            self.granted.saturating_sub(self.consumed)
        }
    }
}

/// A lease request in progress for one user, and the requests waiting for it.
#[derive(Debug, Default)]
struct Fetch {
    /// The context whose call is in flight; `None` once that request has gone away
    /// (its call is cancelled with it) until the root context takes the fetch over.
    leader: Option<u32>,
    waiters: Vec<u32>,
    body: Vec<u8>,
}

#[derive(Debug, Default)]
struct UserEntry {
    lease: Option<Lease>,
    fetch: Option<Fetch>,
    refusal: Option<(Refusal, u64)>,
}

#[derive(Debug)]
struct Admission {
    lease_id: String,
    user_id: i64,
    reserved: u64,
    quota_remaining: u64,
}

#[derive(Debug)]
struct RequestState {
    request_id: String,
    key_hash: String,
    api: Api,
    estimate: u64,
    input_estimate: u64,
    priority: &'static str,
    privacy: &'static str,
    project_id: Option<String>,
    admission: Option<Admission>,
    /// `model` of the request body, when the body was read.
    request_model: Option<String>,
    status: u16,
    parser: Option<UsageParser>,
    /// The body is read (and maybe rewritten) before the request goes upstream.
    inspect_body: bool,
    body_done: bool,
    /// Set when Alfred added `include_usage` the client did not ask for.
    stripper: Option<UsageChunkStripper>,
}

/// What the adapter does with a request's headers.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadersOutcome {
    /// Swap the key for `credential` and forward now — or, with `inspect_body`, once the
    /// body is read ([`Gateway::on_request_body`]).
    Forward {
        credential: (String, String),
        inspect_body: bool,
    },
    /// Swap the key for `credential`, then pause. When `fetch` is set, this context
    /// sends that lease request (`POST /internal/v1/leases`) and reports its answer.
    Wait {
        credential: (String, String),
        fetch: Option<LeaseFetch>,
        inspect_body: bool,
    },
    /// Answer locally; nothing goes upstream.
    Respond(LocalReply),
}

/// A lease request to send: for whom (key hash) and the body.
#[derive(Debug, PartialEq, Eq)]
pub struct LeaseFetch {
    pub key_hash: String,
    pub body: Vec<u8>,
}

/// What happens to a paused request once the lease answer is in.
#[derive(Debug, PartialEq, Eq)]
pub enum WaiterOutcome {
    Resume,
    /// Admitted, but its body is still being read: the end of the body lets it go.
    AwaitBody,
    Respond(LocalReply),
}

/// What the adapter does with (a part of) the request body.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyAction {
    /// Let the body through.
    Continue,
    /// Hold it (the request waits for its lease, or for the rest of the body).
    Buffer,
    /// Replace the whole buffered body; then continue, or keep waiting for the lease.
    Replace {
        body: Vec<u8>,
        proceed: bool,
    },
    Respond(LocalReply),
}

/// Header values the gateway reads from a request.
pub struct RequestHeaders<'a> {
    pub path: &'a str,
    pub key: ClientKey<'a>,
    pub content_length: Option<u64>,
    pub priority: Option<&'a str>,
    pub privacy: Option<&'a str>,
    pub project_id: Option<&'a str>,
    /// A body follows the headers.
    pub has_body: bool,
}

pub struct Gateway {
    config: Config,
    users: HashMap<String, UserEntry>,
    requests: HashMap<u32, RequestState>,
    reporter: Reporter,
    ids: IdGen,
}

impl Gateway {
    pub fn new(config: Config, ids: IdGen) -> Self {
        let reporter = Reporter::new(config.max_batch, config.max_buffered_records);
        Gateway {
            config,
            users: HashMap::new(),
            requests: HashMap::new(),
            reporter,
            ids,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Usage records dropped so far (full buffer or rejected batch).
    pub fn dropped_records(&self) -> u64 {
        self.reporter.dropped
    }

    /// Request headers arrived for context `ctx`.
    pub fn on_request_headers(
        &mut self,
        ctx: u32,
        headers: RequestHeaders<'_>,
        now_ms: u64,
    ) -> HeadersOutcome {
        let request_id = self.ids.request_id();
        let Some(api) = Api::from_path(headers.path) else {
            return HeadersOutcome::Respond(Refusal::UnknownApi.reply(&request_id, Family::OpenAi));
        };
        let family = api.format.family();
        let client_key = match headers.key {
            ClientKey::Found(k) => k,
            ClientKey::Missing | ClientKey::Malformed => {
                return HeadersOutcome::Respond(Refusal::InvalidApiKey.reply(&request_id, family));
            }
        };
        let Some(provider) = self.config.providers.get(api.provider.name()) else {
            return HeadersOutcome::Respond(
                Refusal::ProviderNotConfigured.reply(&request_id, family),
            );
        };
        let credential = (provider.auth_header.clone(), provider.auth_value.clone());
        let key_hash = key::hash(client_key);
        let input_estimate = estimate_tokens(headers.content_length.unwrap_or(0));
        let estimate = self
            .config
            .default_estimate_tokens
            .saturating_add(input_estimate)
            .min(MAX_ESTIMATE);
        let priority = parse_priority(headers.priority);
        let privacy = parse_privacy(headers.privacy);
        let inspect_body = headers.has_body
            && (api.format.has_include_usage()
                || (privacy == "strict" && api.format == Format::OpenAiResponses));
        let mut state = RequestState {
            request_id,
            key_hash: key_hash.clone(),
            api,
            estimate,
            input_estimate,
            priority,
            privacy,
            project_id: parse_project(headers.project_id),
            admission: None,
            request_model: None,
            status: 0,
            parser: None,
            inspect_body,
            body_done: false,
            stripper: None,
        };

        let entry = self.users.entry(key_hash).or_default();
        if let Some((refusal, until)) = &entry.refusal {
            if now_ms < *until {
                return HeadersOutcome::Respond(refusal.reply(&state.request_id, family));
            }
            entry.refusal = None;
        }
        if let Some(lease) = entry.lease.as_mut().filter(|l| l.room(now_ms) > 0) {
            state.admission = Some(reserve(lease, estimate, now_ms));
            self.requests.insert(ctx, state);
            return HeadersOutcome::Forward {
                credential,
                inspect_body,
            };
        }
        let fetch = match &mut entry.fetch {
            Some(fetch) => {
                fetch.waiters.push(ctx);
                None
            }
            None => {
                let body = lease_request_body(&self.config, &state.key_hash, priority);
                entry.fetch = Some(Fetch {
                    leader: Some(ctx),
                    waiters: vec![ctx],
                    body: body.clone(),
                });
                Some(LeaseFetch {
                    key_hash: state.key_hash.clone(),
                    body,
                })
            }
        };
        self.requests.insert(ctx, state);
        HeadersOutcome::Wait {
            credential,
            fetch,
            inspect_body,
        }
    }

    /// The lease request for `key_hash` was answered (`Err`: no usable answer: the call
    /// failed, timed out, or the control plane replied with an error). Returns what to do
    /// with each paused request.
    pub fn on_lease_answer(
        &mut self,
        key_hash: &str,
        answer: Result<LeaseAnswer, String>,
        now_ms: u64,
    ) -> Vec<(u32, WaiterOutcome)> {
        let Some(entry) = self.users.get_mut(key_hash) else {
            return Vec::new();
        };
        let waiters = entry.fetch.take().map(|f| f.waiters).unwrap_or_default();
        let refusal = match answer {
            Ok(LeaseAnswer::Granted {
                lease_id,
                user_id,
                granted_tokens,
                expires_in_ms,
                quota_remaining,
                ..
            }) => {
                entry.refusal = None;
                entry.lease = Some(Lease {
                    id: lease_id,
                    user_id,
                    granted: granted_tokens,
                    consumed: 0,
                    expires_at_ms: now_ms.saturating_add(expires_in_ms),
                    quota_remaining,
                });
                None
            }
            Ok(LeaseAnswer::InvalidKey) => Some(Refusal::InvalidApiKey),
            Ok(LeaseAnswer::Suspended { .. }) => Some(Refusal::UserSuspended),
            Ok(LeaseAnswer::Exhausted {
                budget_scope,
                period_reset_s,
                ..
            }) => Some(Refusal::InsufficientQuota {
                budget_scope,
                retry_after_s: period_reset_s,
            }),
            Err(_) => None,
        };
        let failed = refusal.is_none() && entry.lease.as_ref().is_none_or(|l| l.room(now_ms) == 0);
        if let Some(refusal) = &refusal {
            entry.lease = None;
            entry.refusal = Some((refusal.clone(), now_ms.saturating_add(REFUSAL_TTL_MS)));
        }

        let mut outcomes = Vec::with_capacity(waiters.len());
        for ctx in waiters {
            let Some(state) = self.requests.get_mut(&ctx) else {
                continue;
            };
            let family = state.api.format.family();
            let outcome = if let Some(refusal) = &refusal {
                WaiterOutcome::Respond(refusal.reply(&state.request_id, family))
            } else if failed {
                WaiterOutcome::Respond(
                    Refusal::GovernanceUnavailable.reply(&state.request_id, family),
                )
            } else {
                match entry.lease.as_mut().filter(|l| l.room(now_ms) > 0) {
                    Some(lease) => {
                        state.admission = Some(reserve(lease, state.estimate, now_ms));
                        if state.inspect_body && !state.body_done {
                            WaiterOutcome::AwaitBody
                        } else {
                            WaiterOutcome::Resume
                        }
                    }
                    // Earlier waiters took the whole grant.
                    None => WaiterOutcome::Respond(
                        Refusal::InsufficientQuota {
                            budget_scope: "personal".into(),
                            retry_after_s: 1,
                        }
                        .reply(&state.request_id, family),
                    ),
                }
            };
            if matches!(outcome, WaiterOutcome::Respond(_)) {
                self.requests.remove(&ctx);
            }
            outcomes.push((ctx, outcome));
        }
        outcomes
    }

    /// Response headers arrived. Returns headers to add to the response.
    pub fn on_response_headers(
        &mut self,
        ctx: u32,
        status: u16,
        content_type: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let Some(state) = self.requests.get_mut(&ctx) else {
            return Vec::new();
        };
        state.status = status;
        if (200..300).contains(&status) {
            let framing = Framing::from_content_type(content_type);
            state.parser = Some(UsageParser::new(state.api.format, framing));
        }
        let mut add = vec![("x-alfred-request-id", state.request_id.clone())];
        if let Some(admission) = &state.admission {
            add.push((
                "x-alfred-quota-remaining",
                admission.quota_remaining.to_string(),
            ));
        }
        add
    }

    /// The request body: `buffered` bytes so far, `read` gives them all. Called for each
    /// part; the body is read once, at its end, when it is to be inspected.
    pub fn on_request_body(
        &mut self,
        ctx: u32,
        buffered: usize,
        end_of_stream: bool,
        read: impl FnOnce() -> Option<Vec<u8>>,
    ) -> BodyAction {
        let Some(state) = self.requests.get_mut(&ctx) else {
            return BodyAction::Continue;
        };
        let admitted = state.admission.is_some();
        let holding = !admitted || (state.inspect_body && !state.body_done);
        if holding && buffered as u64 > self.config.max_request_body_bytes {
            let reply =
                Refusal::RequestTooLarge.reply(&state.request_id, state.api.format.family());
            self.release(ctx);
            return BodyAction::Respond(reply);
        }
        if !end_of_stream {
            return if holding {
                BodyAction::Buffer
            } else {
                BodyAction::Continue
            };
        }
        if state.inspect_body && !state.body_done {
            state.body_done = true;
            let rewrite = read()
                .map(|b| body::rewrite(state.api.format, state.privacy == "strict", &b))
                .unwrap_or_default();
            state.request_model = rewrite.model;
            if rewrite.strip_usage_chunk {
                state.stripper = Some(UsageChunkStripper::default());
            }
            if let Some(body) = rewrite.body {
                return BodyAction::Replace {
                    body,
                    proceed: admitted,
                };
            }
        }
        if admitted {
            BodyAction::Continue
        } else {
            BodyAction::Buffer
        }
    }

    /// A chunk of the response body passes through. Returns the bytes to send instead,
    /// when they differ (the usage chunk Alfred asked for is removed).
    pub fn on_response_body(
        &mut self,
        ctx: u32,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Option<Vec<u8>> {
        let state = self.requests.get_mut(&ctx)?;
        if let Some(parser) = state.parser.as_mut() {
            parser.feed(chunk);
        }
        let stripper = state.stripper.as_mut()?;
        let mut out = stripper.filter(chunk);
        if end_of_stream {
            out.extend(stripper.flush());
        }
        (out != chunk).then_some(out)
    }

    /// Forget a request that never went upstream, returning its reservation.
    fn release(&mut self, ctx: u32) {
        let Some(state) = self.requests.remove(&ctx) else {
            return;
        };
        match state.admission {
            Some(admission) => {
                if let Some(lease) = self
                    .users
                    .get_mut(&state.key_hash)
                    .and_then(|e| e.lease.as_mut())
                    .filter(|l| l.id == admission.lease_id)
                {
                    lease.consumed = lease.consumed.saturating_sub(admission.reserved);
                }
            }
            None => self.abandon_wait(ctx, &state.key_hash),
        }
    }

    /// The request is over (complete, cut, or reset): settle its reservation and queue
    /// its usage record. Idempotent per context.
    pub fn on_request_end(&mut self, ctx: u32, now_ms: u64) {
        let Some(mut state) = self.requests.remove(&ctx) else {
            return;
        };
        let Some(admission) = state.admission.take() else {
            // Still waiting for a lease: it no longer waits.
            self.abandon_wait(ctx, &state.key_hash);
            return;
        };
        let (usage, estimated) = match state.parser.as_mut() {
            Some(parser) => match parser.finish() {
                Some(usage) => (usage, false),
                // A successful response that never said: estimate what was produced.
                None => (
                    Usage {
                        input: state.input_estimate,
                        output: estimate_tokens(parser.body_bytes()),
                        ..Default::default()
                    },
                    true,
                ),
            },
            // No response at all after forwarding (cut before headers): the provider may
            // have read the prompt.
            None if state.status == 0 => (
                Usage {
                    input: state.input_estimate,
                    ..Default::default()
                },
                true,
            ),
            // The provider answered with an error: it did no billable work.
            None => (Usage::default(), false),
        };
        let model = state
            .parser
            .as_ref()
            .and_then(|p| p.model())
            .map(str::to_owned)
            .or(state.api.path_model.take())
            .or(state.request_model.take());
        let charged = usage.charged();
        if let Some(lease) = self
            .users
            .get_mut(&state.key_hash)
            .and_then(|e| e.lease.as_mut())
            .filter(|l| l.id == admission.lease_id)
        {
            lease.consumed = lease
                .consumed
                .saturating_sub(admission.reserved)
                .saturating_add(charged);
        }
        self.reporter.push(UsageRecord {
            request_id: state.request_id,
            lease_id: Some(admission.lease_id),
            user_id: admission.user_id,
            provider: state.api.provider.name(),
            model: model.unwrap_or_default(),
            input_tokens: usage.input,
            output_tokens: usage.output,
            total_tokens: charged,
            cached_tokens: usage.cached,
            reasoning_tokens: usage.reasoning,
            status: state.status,
            estimated,
            priority: state.priority,
            project_id: state.project_id,
            privacy: state.privacy,
            ts_ms: now_ms,
        });
    }

    fn abandon_wait(&mut self, ctx: u32, key_hash: &str) {
        let Some(entry) = self.users.get_mut(key_hash) else {
            return;
        };
        if let Some(fetch) = &mut entry.fetch {
            fetch.waiters.retain(|&w| w != ctx);
            if fetch.leader == Some(ctx) {
                fetch.leader = None;
            }
            if fetch.waiters.is_empty() && fetch.leader.is_none() {
                entry.fetch = None;
            }
        }
    }

    /// On a tick: lease requests whose sending request went away while others still wait.
    /// The root context sends them and reports the answers to [`Gateway::on_lease_answer`].
    pub fn orphaned_fetches(&mut self, root_ctx: u32) -> Vec<LeaseFetch> {
        let mut out = Vec::new();
        for (key_hash, entry) in &mut self.users {
            if let Some(fetch) = entry.fetch.as_mut().filter(|f| f.leader.is_none()) {
                fetch.leader = Some(root_ctx);
                out.push(LeaseFetch {
                    key_hash: key_hash.clone(),
                    body: fetch.body.clone(),
                });
            }
        }
        out
    }

    /// On a tick: the next usage batch to send, if one is due.
    pub fn next_usage_batch(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        self.reporter.next_batch(&self.config.proxy_id, now_ms)
    }

    /// The usage batch could not be sent at all.
    pub fn usage_send_failed(&mut self, now_ms: u64) {
        self.reporter.send_failed(now_ms);
    }

    /// The control plane answered the usage batch with `status` (`None`: no answer).
    pub fn on_usage_answer(&mut self, status: Option<u16>, now_ms: u64) -> ReportOutcome {
        let outcome = ReportOutcome::from_status(status);
        self.reporter.on_outcome(outcome, now_ms);
        outcome
    }

    /// Forget leases and refusals nobody uses any more, so memory follows active users.
    pub fn sweep(&mut self, now_ms: u64) {
        self.users.retain(|_, e| {
            let lease_live = e.lease.as_ref().is_some_and(|l| now_ms < l.expires_at_ms);
            let refusal_live = e.refusal.as_ref().is_some_and(|(_, until)| now_ms < *until);
            lease_live || refusal_live || e.fetch.is_some()
        });
    }
}

fn reserve(lease: &mut Lease, estimate: u64, now_ms: u64) -> Admission {
    let reserved = estimate.min(lease.room(now_ms));
    lease.consumed = lease.consumed.saturating_add(reserved);
    Admission {
        lease_id: lease.id.clone(),
        user_id: lease.user_id,
        reserved,
        quota_remaining: lease.quota_remaining.saturating_sub(lease.consumed),
    }
}

fn lease_request_body(config: &Config, key_hash: &str, priority: &str) -> Vec<u8> {
    let request = LeaseRequest {
        key_hash,
        proxy_id: &config.proxy_id,
        requested_tokens: config.lease_request_tokens,
        priority,
    };
    serde_json::to_vec(&request).unwrap_or_default()
}

fn parse_priority(value: Option<&str>) -> &'static str {
    match value.map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("low") => "low",
        Some(v) if v.eq_ignore_ascii_case("high") => "high",
        Some(v) if v.eq_ignore_ascii_case("critical") => "critical",
        _ => "normal",
    }
}

fn parse_privacy(value: Option<&str>) -> &'static str {
    match value.map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("strict") => "strict",
        _ => "standard",
    }
}

fn parse_project(value: Option<&str>) -> Option<String> {
    let v = value?.trim();
    let ok = !v.is_empty()
        && v.len() <= MAX_PROJECT_ID
        && v.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    ok.then(|| v.to_string())
}

#[cfg(test)]
mod tests;
