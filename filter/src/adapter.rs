//! The only module that talks to the host (Envoy, through the proxy-wasm ABI). Each
//! callback reads what the [`Gateway`] needs, asks it, and turns the outcome into host
//! calls. No decisions are made here.

use crate::config::Config;
use crate::gateway::{
    BodyAction, Gateway, HeadersOutcome, LeaseFetch, RequestHeaders, WaiterOutcome, ALFRED_HEADERS,
};
use crate::ids::IdGen;
use crate::key::{self, KEY_HEADERS};
use crate::protocol::{LeaseAnswer, LEASES_PATH, USAGE_PATH};
use log::{error, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root { context_id, gateway: Rc::new(RefCell::new(None)), calls: HashMap::new(), ticks: 0 })
    });
}}

/// The VM's gateway, shared by the root context and every request context of the VM
/// (all on one thread). `None` until the configuration is loaded.
type Shared = Rc<RefCell<Option<Gateway>>>;

/// Ticks between sweeps of idle users.
const SWEEP_EVERY_TICKS: u64 = 50;

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Send a call to the control plane.
fn call_control_plane(
    ctx: &dyn Context,
    config: &Config,
    path: &str,
    body: &[u8],
) -> Result<u32, String> {
    let cp = &config.control_plane;
    let bearer = format!("Bearer {}", cp.token);
    ctx.dispatch_http_call(
        &cp.cluster,
        vec![
            (":method", "POST"),
            (":path", path),
            (":authority", &cp.authority),
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        Some(body),
        vec![],
        Duration::from_millis(cp.timeout_ms),
    )
    .map_err(|status| format!("dispatch to {} failed: {status:?}", cp.cluster))
}

fn call_status(ctx: &dyn Context) -> Option<u16> {
    ctx.get_http_call_response_header(":status")
        .and_then(|s| s.parse().ok())
}

fn read_lease_answer(ctx: &dyn Context, body_size: usize) -> Result<LeaseAnswer, String> {
    match call_status(ctx) {
        Some(200) => {
            let body = ctx
                .get_http_call_response_body(0, body_size)
                .unwrap_or_default();
            LeaseAnswer::parse(&body)
        }
        Some(status) => Err(format!("control plane answered {status}")),
        None => Err("no answer from the control plane (timeout or connection failure)".into()),
    }
}

/// Resume or answer each paused request, then make `current` the effective context again.
fn apply_waiter_outcomes(outcomes: Vec<(u32, WaiterOutcome)>, current: u32) {
    for (ctx, outcome) in outcomes {
        if hostcalls::set_effective_context(ctx).is_err() {
            continue; // that request is gone
        }
        let result = match outcome {
            WaiterOutcome::Resume => hostcalls::resume_http_request(),
            WaiterOutcome::AwaitBody => Ok(()),
            WaiterOutcome::Respond(reply) => {
                let headers: Vec<(&str, &str)> = reply
                    .headers
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .collect();
                hostcalls::send_http_response(reply.status, headers, Some(&reply.body))
            }
        };
        if let Err(status) = result {
            warn!("alfred: could not resume request {ctx}: {status:?}");
        }
    }
    let _ = hostcalls::set_effective_context(current);
}

enum RootCall {
    Usage,
    Lease(String),
}

struct Root {
    context_id: u32,
    gateway: Shared,
    calls: HashMap<u32, RootCall>,
    ticks: u64,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let now = now_ms();
        let outcomes = {
            let mut shared = self.gateway.borrow_mut();
            let Some(gateway) = shared.as_mut() else {
                return;
            };
            match self.calls.remove(&token) {
                Some(RootCall::Usage) => {
                    let status = call_status(self);
                    gateway.on_usage_answer(status, now);
                    return;
                }
                Some(RootCall::Lease(key_hash)) => {
                    let answer = read_lease_answer(self, body_size);
                    if let Err(e) = &answer {
                        warn!("alfred: lease request failed: {e}");
                    }
                    gateway.on_lease_answer(&key_hash, answer, now)
                }
                None => return,
            }
        };
        apply_waiter_outcomes(outcomes, self.context_id);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            error!("alfred: no plugin configuration");
            return false;
        };
        let config = match Config::parse(&bytes) {
            Ok(c) => c,
            Err(e) => {
                error!("alfred: {e}");
                return false;
            }
        };
        let ids = match IdGen::from_entropy() {
            Ok(ids) => ids,
            Err(e) => {
                error!("alfred: {e}");
                return false;
            }
        };
        self.set_tick_period(Duration::from_millis(config.tick_ms));
        *self.gateway.borrow_mut() = Some(Gateway::new(config, ids));
        true
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        self.ticks += 1;
        let mut failed_leases = Vec::new();
        {
            let mut shared = self.gateway.borrow_mut();
            let Some(gateway) = shared.as_mut() else {
                return;
            };
            if self.ticks % SWEEP_EVERY_TICKS == 0 {
                gateway.sweep(now);
            }
            for LeaseFetch { key_hash, body } in gateway.orphaned_fetches(self.context_id) {
                match call_control_plane(self, gateway.config(), LEASES_PATH, &body) {
                    Ok(token) => {
                        self.calls.insert(token, RootCall::Lease(key_hash));
                    }
                    Err(e) => failed_leases.push((key_hash, e)),
                }
            }
            if let Some(body) = gateway.next_usage_batch(now) {
                match call_control_plane(self, gateway.config(), USAGE_PATH, &body) {
                    Ok(token) => {
                        self.calls.insert(token, RootCall::Usage);
                    }
                    Err(e) => {
                        warn!("alfred: usage report not sent: {e}");
                        gateway.usage_send_failed(now);
                    }
                }
            }
        }
        for (key_hash, e) in failed_leases {
            let outcomes = match self.gateway.borrow_mut().as_mut() {
                Some(gateway) => gateway.on_lease_answer(&key_hash, Err(e), now),
                None => Vec::new(),
            };
            apply_waiter_outcomes(outcomes, self.context_id);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            context_id,
            gateway: Rc::clone(&self.gateway),
            lease_call: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    context_id: u32,
    gateway: Shared,
    /// The lease request this context sent, if any: (token, key hash).
    lease_call: Option<(u32, String)>,
}

impl Request {
    fn swap_credentials(&self, (name, value): &(String, String)) {
        for header in KEY_HEADERS.iter().chain(ALFRED_HEADERS.iter()) {
            self.set_http_request_header(header, None);
        }
        self.set_http_request_header(name, Some(value));
    }

    fn respond(&self, reply: &crate::reply::LocalReply) {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        self.send_http_response(reply.status, headers, Some(&reply.body));
    }
}

impl Context for Request {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some((expected, key_hash)) = self.lease_call.take() else {
            return;
        };
        if expected != token {
            return;
        }
        let answer = read_lease_answer(self, body_size);
        if let Err(e) = &answer {
            warn!("alfred: lease request failed: {e}");
        }
        let outcomes = match self.gateway.borrow_mut().as_mut() {
            Some(gateway) => gateway.on_lease_answer(&key_hash, answer, now_ms()),
            None => Vec::new(),
        };
        apply_waiter_outcomes(outcomes, self.context_id);
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let now = now_ms();
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let key_values: Vec<(&str, Option<String>)> = KEY_HEADERS
            .iter()
            .map(|h| (*h, self.get_http_request_header(h)))
            .collect();
        let client_key = key::find(|name| {
            key_values
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.as_deref())
        });
        let content_length = self
            .get_http_request_header("content-length")
            .and_then(|v| v.trim().parse().ok());
        let priority = self.get_http_request_header("x-priority");
        let privacy = self.get_http_request_header("x-privacy-mode");
        let project_id = self.get_http_request_header("x-project-id");
        let headers = RequestHeaders {
            path: &path,
            key: client_key,
            content_length,
            priority: priority.as_deref(),
            privacy: privacy.as_deref(),
            project_id: project_id.as_deref(),
            has_body: !end_of_stream,
        };

        let mut shared = self.gateway.borrow_mut();
        let Some(gateway) = shared.as_mut() else {
            drop(shared);
            self.respond(
                &crate::reply::Refusal::GovernanceUnavailable
                    .reply("unconfigured", crate::usage::Family::OpenAi),
            );
            return Action::Pause;
        };
        match gateway.on_request_headers(self.context_id, headers, now) {
            HeadersOutcome::Forward {
                credential,
                inspect_body,
            } => {
                drop(shared);
                self.swap_credentials(&credential);
                if inspect_body {
                    Action::Pause // until the body is read
                } else {
                    Action::Continue
                }
            }
            HeadersOutcome::Respond(reply) => {
                drop(shared);
                self.respond(&reply);
                Action::Pause
            }
            HeadersOutcome::Wait {
                credential, fetch, ..
            } => {
                let sent = fetch.map(|LeaseFetch { key_hash, body }| {
                    match call_control_plane(self, gateway.config(), LEASES_PATH, &body) {
                        Ok(token) => Ok((token, key_hash)),
                        Err(e) => Err((key_hash, e)),
                    }
                });
                let outcomes = match sent {
                    Some(Ok(call)) => {
                        self.lease_call = Some(call);
                        Vec::new()
                    }
                    Some(Err((key_hash, e))) => {
                        warn!("alfred: {e}");
                        gateway.on_lease_answer(&key_hash, Err(e), now)
                    }
                    None => Vec::new(),
                };
                drop(shared);
                self.swap_credentials(&credential);
                apply_waiter_outcomes(outcomes, self.context_id);
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let action = match self.gateway.borrow_mut().as_mut() {
            Some(gateway) => {
                gateway.on_request_body(self.context_id, body_size, end_of_stream, || {
                    self.get_http_request_body(0, body_size)
                })
            }
            None => BodyAction::Continue,
        };
        match action {
            BodyAction::Continue => Action::Continue,
            BodyAction::Buffer => Action::Pause,
            BodyAction::Replace { body, proceed } => {
                self.set_http_request_body(0, body_size, &body);
                if self.get_http_request_header("content-length").is_some() {
                    self.set_http_request_header("content-length", Some(&body.len().to_string()));
                }
                if proceed {
                    Action::Continue
                } else {
                    Action::Pause
                }
            }
            BodyAction::Respond(reply) => {
                self.respond(&reply);
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let status = self
            .get_http_response_header(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let content_type = self.get_http_response_header("content-type");
        let add = match self.gateway.borrow_mut().as_mut() {
            Some(gateway) => {
                gateway.on_response_headers(self.context_id, status, content_type.as_deref())
            }
            None => Vec::new(),
        };
        for (name, value) in add {
            self.set_http_response_header(name, Some(&value));
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let chunk = if body_size > 0 {
            self.get_http_response_body(0, body_size)
        } else {
            None
        };
        let replacement = match self.gateway.borrow_mut().as_mut() {
            Some(gateway) => {
                let replacement = gateway.on_response_body(
                    self.context_id,
                    chunk.as_deref().unwrap_or_default(),
                    end_of_stream,
                );
                if end_of_stream {
                    gateway.on_request_end(self.context_id, now_ms());
                }
                replacement
            }
            None => None,
        };
        if let Some(bytes) = replacement {
            self.set_http_response_body(0, body_size, &bytes);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(gateway) = self.gateway.borrow_mut().as_mut() {
            gateway.on_request_end(self.context_id, now_ms());
        }
    }
}
