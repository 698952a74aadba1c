//! The only module that talks to the host (Envoy, through the proxy-wasm ABI). Each
//! callback reads what the [`Gateway`] needs, asks it, and turns the outcome into host
//! calls. No decisions are made here.

use crate::config::Config;
use crate::gateway::{
    BodyAction, Gateway, HeadersOutcome, LeaseFetch, RequestHeaders, Stats, WaiterOutcome,
    ALFRED_HEADERS,
};
use crate::header_map;
use crate::ids::IdGen;
use crate::key::{self, KEY_HEADERS};
use crate::lease_store::{self, CasMismatch, SharedStore};
use crate::protocol::{LeaseAnswer, SyncAnswer, LEASES_PATH, SYNC_PATH, USAGE_PATH};
use crate::reply::{LocalReply, Refusal};
use crate::usage::Family;
use log::{error, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root {
            context_id,
            gateway: Rc::new(RefCell::new(None)),
            calls: HashMap::new(),
            ticks: 0,
            queue: None,
            metrics: Vec::new(),
            reported: Stats::default(),
            draining: false,
            reported_dropped: 0,
        })
    });
}}

/// The VM's gateway, shared by the root context and every request context of the VM
/// (all on one thread). `None` until the configuration is loaded.
type Shared = Rc<RefCell<Option<Gateway>>>;

/// Ticks between sweeps of idle users.
const SWEEP_EVERY_TICKS: u64 = 50;
/// `vm_config.vm_id` of the filter in the Envoy config; names the wake-up queues.
const VM_ID: &str = "alfred";

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Header names Alfred removes from requests before they go upstream: the client key
/// headers and Alfred's own.
const STRIPPED: [&str; KEY_HEADERS.len() + ALFRED_HEADERS.len()] = {
    let mut all = [""; KEY_HEADERS.len() + ALFRED_HEADERS.len()];
    let mut i = 0;
    while i < KEY_HEADERS.len() {
        all[i] = KEY_HEADERS[i];
        i += 1;
    }
    while i < all.len() {
        all[i] = ALFRED_HEADERS[i - KEY_HEADERS.len()];
        i += 1;
    }
    all
};

/// The request headers read, in one pass: `:path`, `content-length`, then [`STRIPPED`].
const READ_HEADERS: [&str; STRIPPED_AT + STRIPPED.len()] = {
    let mut all = [""; STRIPPED_AT + STRIPPED.len()];
    all[PATH] = ":path";
    all[CONTENT_LENGTH] = "content-length";
    let mut i = 0;
    while i < STRIPPED.len() {
        all[STRIPPED_AT + i] = STRIPPED[i];
        i += 1;
    }
    all
};
const PATH: usize = 0;
const CONTENT_LENGTH: usize = 1;
const STRIPPED_AT: usize = 2;

/// The host's `get_header_map_pairs`, called directly: the SDK's getter copies every
/// header into allocations of its own, this reads the host's one buffer in place.
mod raw {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
    }
}

/// A header map as the host serialized it, owned by this VM until dropped.
struct HostBuffer {
    ptr: *mut u8,
    len: usize,
}

impl HostBuffer {
    /// The request headers of the current context.
    fn request_headers() -> Option<HostBuffer> {
        const REQUEST_HEADERS: u32 = 0;
        let mut ptr = std::ptr::null_mut();
        let mut len = 0;
        // SAFETY: the host writes a pointer and a size into the two out-parameters; the
        // buffer was allocated in this VM by the SDK's `proxy_on_memory_allocate` (a
        // `Vec<u8>` of capacity `len`), and is now ours to read and free.
        let status =
            unsafe { raw::proxy_get_header_map_pairs(REQUEST_HEADERS, &mut ptr, &mut len) };
        (status == 0).then_some(HostBuffer { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` points to `len` initialised bytes the host wrote (see above).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        if !self.ptr.is_null() && self.len > 0 {
            // SAFETY: allocated as a `Vec<u8>` with capacity `len` (see above), freed
            // once, the way the SDK frees the buffers it reads.
            drop(unsafe { Vec::from_raw_parts(self.ptr, self.len, self.len) });
        }
    }
}

/// Header bytes as text; invalid UTF-8 (obs-text) is replaced, never a panic.
fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

fn queue_name(vm: u64) -> String {
    format!("alfred/wake/{vm:016x}")
}

/// Envoy's shared data and queues.
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) if !value.is_empty() => Some((value, cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|_| CasMismatch)
    }

    fn notify(&self, vm: u64, key_hash: &str) {
        if let Ok(Some(queue)) = hostcalls::resolve_shared_queue(VM_ID, &queue_name(vm)) {
            let _ = hostcalls::enqueue_shared_queue(queue, Some(key_hash.as_bytes()));
        }
    }
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
    ctx.get_http_call_response_header_bytes(":status")
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .and_then(|s| s.parse().ok())
}

fn call_body(ctx: &dyn Context, body_size: usize) -> Result<Vec<u8>, String> {
    match call_status(ctx) {
        Some(200) => Ok(ctx
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default()),
        Some(status) => Err(format!("control plane answered {status}")),
        None => Err("no answer from the control plane (timeout or connection failure)".into()),
    }
}

fn read_lease_answer(ctx: &dyn Context, body_size: usize) -> Result<LeaseAnswer, String> {
    let answer = call_body(ctx, body_size).and_then(|b| LeaseAnswer::parse(&b));
    if let Err(e) = &answer {
        warn!("alfred: lease request failed: {e}");
    }
    answer
}

fn send_reply(reply: &LocalReply) -> Result<(), proxy_wasm::types::Status> {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    hostcalls::send_http_response(reply.status, headers, Some(&reply.body))
}

/// Resume or answer each paused request, then make `current` the effective context again.
fn apply_waiter_outcomes(outcomes: Vec<(u32, WaiterOutcome)>, current: u32) {
    if outcomes.is_empty() {
        return;
    }
    for (ctx, outcome) in outcomes {
        if hostcalls::set_effective_context(ctx).is_err() {
            continue; // that request is gone
        }
        let result = match outcome {
            WaiterOutcome::Resume => hostcalls::resume_http_request(),
            WaiterOutcome::AwaitBody => Ok(()),
            WaiterOutcome::Respond(reply) => send_reply(&reply),
        };
        if let Err(status) = result {
            warn!("alfred: could not resume request {ctx}: {status:?}");
        }
    }
    let _ = hostcalls::set_effective_context(current);
}

enum RootCall {
    Usage,
    Sync,
    /// A lease request for this record.
    Lease(String),
}

/// Envoy metrics (`wasmcustom.alfred_*` in Envoy's stats).
const METRICS: [&str; 9] = [
    "alfred_requests_total",
    "alfred_requests_waited_total",
    "alfred_requests_refused_total",
    "alfred_lease_fetches_total",
    "alfred_cas_failures_total",
    "alfred_usage_records_dropped_total",
    "alfred_usage_records_pending",
    "alfred_tracked_keys",
    "alfred_vm_memory_bytes",
];

struct Root {
    context_id: u32,
    gateway: Shared,
    calls: HashMap<u32, RootCall>,
    ticks: u64,
    queue: Option<u32>,
    metrics: Vec<u32>,
    reported: Stats,
    reported_dropped: u64,
    /// Shutting down, waiting for the last usage reports to be answered.
    draining: bool,
}

impl Root {
    fn usage_in_flight(&self) -> bool {
        self.calls.values().any(|c| matches!(c, RootCall::Usage))
    }

    /// Sends a usage batch; a call that cannot be made is retried with backoff.
    fn send_usage(&mut self, gateway: &mut Gateway, body: &[u8], now: u64) {
        match call_control_plane(self, gateway.config(), USAGE_PATH, body) {
            Ok(token) => {
                self.calls.insert(token, RootCall::Usage);
            }
            Err(e) => {
                warn!("alfred: usage report not sent: {e}");
                gateway.usage_send_failed(now);
            }
        }
    }

    fn send_lease_fetches(
        &mut self,
        gateway: &mut Gateway,
        fetches: Vec<LeaseFetch>,
        now: u64,
    ) -> Vec<(u32, WaiterOutcome)> {
        let mut outcomes = Vec::new();
        for LeaseFetch { record, body, .. } in fetches {
            match call_control_plane(self, gateway.config(), LEASES_PATH, &body) {
                Ok(token) => {
                    self.calls.insert(token, RootCall::Lease(record));
                }
                Err(e) => {
                    warn!("alfred: {e}");
                    outcomes.extend(gateway.on_lease_answer(&record, Err(e), now, &HostStore));
                }
            }
        }
        outcomes
    }

    /// Report the gateway's counters as deltas (each VM adds its own share).
    fn report_metrics(&mut self, gateway: &Gateway, pending: u64, tracked: u64) {
        if self.metrics.len() != METRICS.len() {
            return;
        }
        let s = &gateway.stats;
        let dropped = gateway.dropped_records();
        let deltas = [
            s.requests - self.reported.requests,
            s.waited - self.reported.waited,
            s.refused - self.reported.refused,
            s.lease_fetches - self.reported.lease_fetches,
            s.cas_failures - self.reported.cas_failures,
            dropped - self.reported_dropped,
        ];
        for (id, delta) in self.metrics.iter().zip(deltas) {
            if delta > 0 {
                let _ = hostcalls::increment_metric(*id, i64::try_from(delta).unwrap_or(i64::MAX));
            }
        }
        // Gauges come from the VMs that serve requests: Envoy also runs the filter on its
        // main thread, whose VM would otherwise overwrite them with its empty state.
        if s.requests > 0 {
            let _ = hostcalls::record_metric(self.metrics[6], pending);
            let _ = hostcalls::record_metric(self.metrics[7], tracked);
            // Linear memory of this VM (pages of 64 KiB); it only grows.
            let memory = core::arch::wasm32::memory_size(0) as u64 * 65_536;
            let _ = hostcalls::record_metric(self.metrics[8], memory);
        }
        self.reported = s.clone();
        self.reported_dropped = dropped;
    }
}

impl Context for Root {
    /// Envoy is stopping or the configuration went away: send what is queued now, and
    /// ask Envoy to keep the VM until the control plane has answered (`done`). A best
    /// effort: Envoy 1.40 tears worker VMs down at once on SIGTERM, which is why a proxy
    /// is drained for the report delay before it is stopped (docs/lease-protocol.md).
    fn on_done(&mut self) -> bool {
        let now = now_ms();
        let shared = Rc::clone(&self.gateway);
        let mut guard = shared.borrow_mut();
        let Some(gateway) = guard.as_mut() else {
            return true;
        };
        if let Some(body) = gateway.on_shutdown(now, &HostStore) {
            self.send_usage(gateway, &body, now);
        }
        self.draining = self.usage_in_flight();
        !self.draining
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let now = now_ms();
        let outcomes = {
            let shared = Rc::clone(&self.gateway);
            let mut guard = shared.borrow_mut();
            let Some(gateway) = guard.as_mut() else {
                return;
            };
            match self.calls.remove(&token) {
                Some(RootCall::Usage) => {
                    let (_, next) = gateway.on_usage_answer(call_status(self), now);
                    if let Some(body) = next {
                        self.send_usage(gateway, &body, now);
                    }
                    if self.draining && !self.usage_in_flight() {
                        self.done();
                    }
                    return;
                }
                Some(RootCall::Sync) => {
                    let answer = call_body(self, body_size).and_then(|b| SyncAnswer::parse(&b));
                    if let Err(e) = &answer {
                        warn!("alfred: key sync failed: {e}");
                    }
                    gateway.on_sync_answer(answer.ok(), now, &HostStore);
                    return;
                }
                Some(RootCall::Lease(record)) => {
                    let answer = read_lease_answer(self, body_size);
                    gateway.on_lease_answer(&record, answer, now, &HostStore)
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
        let gateway = Gateway::new(config, ids);
        match hostcalls::register_shared_queue(&queue_name(gateway.vm_id())) {
            Ok(queue) => self.queue = Some(queue),
            Err(e) => {
                error!("alfred: cannot register the wake-up queue: {e:?}");
                return false;
            }
        }
        lease_store::init_lock(&HostStore);
        self.metrics = METRICS
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let kind = if i >= 6 {
                    MetricType::Gauge
                } else {
                    MetricType::Counter
                };
                hostcalls::define_metric(kind, name).ok()
            })
            .collect();
        self.set_tick_period(Duration::from_millis(gateway.config().tick_ms));
        *self.gateway.borrow_mut() = Some(gateway);
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if Some(queue_id) != self.queue {
            return;
        }
        let now = now_ms();
        let mut outcomes = Vec::new();
        while let Ok(Some(message)) = hostcalls::dequeue_shared_queue(queue_id) {
            let key_hash = String::from_utf8_lossy(&message);
            if let Some(gateway) = self.gateway.borrow_mut().as_mut() {
                outcomes.extend(gateway.on_notified(&key_hash, now, &HostStore));
            }
        }
        apply_waiter_outcomes(outcomes, self.context_id);
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        self.ticks += 1;
        let shared = Rc::clone(&self.gateway);
        let mut guard = shared.borrow_mut();
        let Some(gateway) = guard.as_mut() else {
            return;
        };
        if self.ticks % SWEEP_EVERY_TICKS == 0 {
            gateway.sweep(now, &HostStore);
        }
        let work = gateway.on_tick(self.context_id, now, &HostStore);
        let mut outcomes = work.waiters;
        outcomes.extend(self.send_lease_fetches(gateway, work.lease_fetches, now));
        if let Some(body) = work.usage_batch {
            self.send_usage(gateway, &body, now);
        }
        for body in work.syncs {
            match call_control_plane(self, gateway.config(), SYNC_PATH, &body) {
                Ok(token) => {
                    self.calls.insert(token, RootCall::Sync);
                }
                Err(_) => gateway.on_sync_answer(None, now, &HostStore),
            }
        }
        let (pending, tracked) = (
            gateway.pending_records() as u64,
            gateway.tracked_keys() as u64,
        );
        self.report_metrics(gateway, pending, tracked);
        drop(guard);
        apply_waiter_outcomes(outcomes, self.context_id);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            context_id,
            gateway: Rc::clone(&self.gateway),
            lease_call: None,
            present: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    context_id: u32,
    gateway: Shared,
    /// The lease request this context sent, if any: (token, record).
    lease_call: Option<(u32, String)>,
    /// Key and Alfred headers the request carries (bit i: `STRIPPED[i]`): removed
    /// before it goes upstream.
    present: u16,
}

impl Request {
    /// A request header as text. Header values may hold any byte (obs-text); the SDK's
    /// `String` getters panic on those, which would take the VM down, so read bytes.
    fn request_header(&self, name: &str) -> Option<String> {
        self.get_http_request_header_bytes(name).map(|b| {
            String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        })
    }

    fn swap_credentials(&self, (name, value): &(String, String)) {
        for (i, header) in STRIPPED.iter().enumerate() {
            if self.present & (1 << i) != 0 && header != name {
                self.set_http_request_header(header, None);
            }
        }
        if !name.is_empty() {
            self.set_http_request_header(name, Some(value));
        }
    }

    fn respond(&self, reply: &LocalReply) {
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
        let Some((expected, record)) = self.lease_call.take() else {
            return;
        };
        if expected != token {
            return;
        }
        let answer = read_lease_answer(self, body_size);
        let outcomes = match self.gateway.borrow_mut().as_mut() {
            Some(gateway) => gateway.on_lease_answer(&record, answer, now_ms(), &HostStore),
            None => Vec::new(),
        };
        apply_waiter_outcomes(outcomes, self.context_id);
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let now = now_ms();
        // One host call for all headers (each single-header call crosses the VM boundary),
        // read in place in one pass: only values that are not UTF-8 are copied.
        let buffer = HostBuffer::request_headers();
        let Some(found) = buffer
            .as_ref()
            .and_then(|b| header_map::pick(b.bytes(), &READ_HEADERS))
        else {
            // Not the client's fault: answering "invalid key" would mislead.
            error!("alfred: the host's request header map could not be read");
            let reply = Refusal::GovernanceUnavailable.reply("unreadable-headers", Family::OpenAi);
            self.respond(&reply);
            return Action::Pause;
        };
        let text = |i: usize| found[i].map(lossy);
        let path = text(PATH).unwrap_or_default();
        let stripped = &found[STRIPPED_AT..];
        self.present = stripped
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some())
            .fold(0, |bits, (i, _)| bits | 1 << i);
        let key_values: [Option<Cow<'_, str>>; KEY_HEADERS.len()] =
            std::array::from_fn(|i| text(STRIPPED_AT + i));
        let mut client_key = key::find(|name| {
            let i = KEY_HEADERS.iter().position(|h| *h == name)?;
            key_values[i].as_deref()
        });
        // A key in the query string (Gemini REST style) must not travel upstream either.
        let query_key = key::from_query(&path);
        if let Some((key_in_query, rest)) = &query_key {
            self.set_http_request_header(":path", Some(rest));
            if matches!(client_key, key::ClientKey::Missing) {
                client_key = key::find(|name| (name == "x-api-key").then_some(*key_in_query));
            }
        }
        let content_length = text(CONTENT_LENGTH).and_then(|v| v.trim().parse().ok());
        let alfred = |name: &str| {
            let i = ALFRED_HEADERS.iter().position(|h| *h == name)?;
            text(STRIPPED_AT + KEY_HEADERS.len() + i)
        };
        let priority = alfred("x-priority");
        let privacy = alfred("x-privacy-mode");
        let project_id = alfred("x-project-id");
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
            self.respond(&Refusal::GovernanceUnavailable.reply("unconfigured", Family::OpenAi));
            return Action::Pause;
        };
        match gateway.on_request_headers(self.context_id, headers, now, &HostStore) {
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
                let mut outcomes = Vec::new();
                if let Some(LeaseFetch { record, body, .. }) = fetch {
                    match call_control_plane(self, gateway.config(), LEASES_PATH, &body) {
                        Ok(token) => self.lease_call = Some((token, record)),
                        Err(e) => {
                            warn!("alfred: {e}");
                            outcomes = gateway.on_lease_answer(&record, Err(e), now, &HostStore);
                        }
                    }
                }
                drop(shared);
                self.swap_credentials(&credential);
                apply_waiter_outcomes(outcomes, self.context_id);
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let action = match self.gateway.borrow_mut().as_mut() {
            Some(gateway) => gateway.on_request_body(
                self.context_id,
                body_size,
                end_of_stream,
                || self.get_http_request_body(0, body_size),
                now_ms,
                &HostStore,
            ),
            None => BodyAction::Continue,
        };
        match action {
            BodyAction::Continue => Action::Continue,
            BodyAction::Buffer => Action::Pause,
            BodyAction::Replace { body, proceed } => {
                self.set_http_request_body(0, body_size, &body);
                if self.request_header("content-length").is_some() {
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
        let mut shared = self.gateway.borrow_mut();
        let Some(gateway) = shared.as_mut().filter(|g| g.has_request(self.context_id)) else {
            return Action::Continue; // answered locally, or not governed: nothing to add
        };
        // Two single-header reads cost less than reading (and copying) the whole map.
        let status = self
            .get_http_response_header_bytes(":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.trim().parse().ok())
            .unwrap_or(0);
        let content_type = if gateway.needs_content_type(self.context_id) {
            self.get_http_response_header_bytes("content-type")
                .map(|v| lossy(&v).into_owned())
        } else {
            None
        };
        // Setting headers calls back into no context: the gateway stays borrowed.
        if let Some(added) =
            gateway.on_response_headers(self.context_id, status, content_type.as_deref())
        {
            self.set_http_response_header("x-alfred-request-id", Some(added.request_id));
            if let Some(remaining) = &added.quota_remaining {
                self.set_http_response_header("x-alfred-quota-remaining", Some(remaining.as_str()));
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let mut shared = self.gateway.borrow_mut();
        let Some(gateway) = shared.as_mut().filter(|g| g.has_request(self.context_id)) else {
            return Action::Continue;
        };
        let chunk = if body_size > 0 {
            self.get_http_response_body(0, body_size)
        } else {
            None
        };
        let replacement = gateway.on_response_body(
            self.context_id,
            chunk.as_deref().unwrap_or_default(),
            end_of_stream,
        );
        if end_of_stream {
            gateway.on_request_end_with(self.context_id, now_ms, &HostStore);
        }
        drop(shared);
        if let Some(bytes) = replacement {
            self.set_http_response_body(0, body_size, &bytes);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(gateway) = self.gateway.borrow_mut().as_mut() {
            // Most requests ended with their response body: nothing to do.
            if gateway.has_request(self.context_id) {
                gateway.on_request_end_with(self.context_id, now_ms, &HostStore);
            }
        }
    }
}
