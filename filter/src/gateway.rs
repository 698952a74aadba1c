//! The filter's decisions, free of any host calls.
//!
//! One [`Gateway`] lives in each worker VM. The adapter calls it at each point of a
//! request's life (request headers, lease answer, request body, response headers and
//! body, end) and on every root tick, and turns the returned outcomes into host calls.
//! Leases live in the process-wide [`SharedStore`] (one record per user, shared by all
//! worker VMs, updated with compare-and-swap); what is VM-local is only what belongs to
//! this VM's requests. Everything here is plain data and time passed in, so every path
//! is unit-tested natively, several VMs included.

use crate::body;
use crate::config::Config;
use crate::ids::IdGen;
use crate::key::{self, ClientKey};
use crate::lease_store::{self, CachedRefusal, Lease, Record, SharedStore};
use crate::protocol::{Decimal, LeaseAnswer, LeaseRequest, SyncAnswer, SyncRequest, UsageRecord};
use crate::reply::{LocalReply, Refusal};
use crate::reporter::{ReportOutcome, Reporter};
use crate::strip::UsageChunkStripper;
use crate::usage::{estimate_tokens, Api, Family, Format, Framing, Provider, Usage, UsageParser};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

/// A provider credential: (header, value) swapped in for the client key. Shared, so a
/// request takes it without copying the strings.
pub type Credential = Rc<(String, String)>;

/// Hasher for the host's context ids: small integers the host assigns, never client
/// input, so a multiplicative hash is enough — and its code is tiny, which matters in a
/// VM whose caches are cold at every callback.
#[derive(Default, Clone, Copy)]
struct ContextIdHasher(u64);

impl Hasher for ContextIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type ContextMap<V> = HashMap<u32, V, BuildHasherDefault<ContextIdHasher>>;

/// A shared record's id ([`lease_store::record_id`]), shared by the key cache and the
/// requests drawing on it: taking it for a request copies nothing.
type RecordId = Rc<str>;

/// How long a refusal from the control plane (unknown key, suspended, exhausted) is
/// remembered before asking again: bounds both load and how stale a "no" can be.
pub const REFUSAL_TTL_MS: u64 = 2_000;
/// A fetch claim not answered by then (its VM died or its call was lost) is taken over.
const FETCH_CLAIM_MS: u64 = 5_000;
/// Keys are re-checked with the control plane (revocation, suspension, quota changes)
/// when their last check is older than this; the sync runs every [`SYNC_EVERY_MS`], so a
/// change reaches every proxy within their sum plus one round trip (under 5 s).
pub const RECHECK_AFTER_MS: u64 = 2_500;
pub const SYNC_EVERY_MS: u64 = 1_000;
/// A lease is used until this long before the control plane lets its hold go, so the
/// delay of the answer can never make a proxy spend a hold that was already released.
/// The report delay is added to it ([`expiry_margin_ms`]): the usage of a request
/// admitted at the last moment still reaches the control plane before the lease
/// expires there.
const EXPIRY_MARGIN_MS: u64 = 1_000;
/// Lease id of the tokens served from a fail-open allowance, and how long they last.
pub const FAIL_OPEN_LEASE: &str = "fail-open";
const FAIL_OPEN_MS: u64 = 60_000;
/// Burn-rate window used to size leases.
const WINDOW_MS: u64 = 10_000;
/// Leases are sized to last about this long at the current burn rate.
const LEASE_HORIZON_MS: u64 = 30_000;
/// Renew when less than this fraction (1/N) of the lease is left.
const LOW_WATER_DIVISOR: u64 = 4;
/// Keys idle this long are forgotten by the VM (and their record emptied).
const IDLE_MS: u64 = 120_000;
/// Longest a VM serves from its slice of a lease before it looks at the shared record
/// again: bounds how long a revocation handled by another VM, or credit another VM could
/// use, waits on this one.
const SLICE_TTL_MS: u64 = 500;
/// How long after its slice lapses a VM's tick has to settle it (at least two ticks):
/// until then, a request of another VM that finds the lease spent waits for that credit
/// instead of being refused.
const SLICE_SETTLE_GRACE_MS: u64 = 500;
/// A VM claims at most this fraction (1/N) of a lease at once.
const SLICE_MAX_DIVISOR: u64 = 4;
/// Longest `X-Project-ID` kept.
const MAX_PROJECT_ID: usize = 128;
/// Cap on the per-request reservation estimate.
const MAX_ESTIMATE: u64 = 1_000_000;
/// Most keys checked in one sync call.
const MAX_SYNC_KEYS: usize = 500;
/// Most sync calls a VM sends at once. A process re-checks each held key every
/// [`RECHECK_AFTER_MS`]: with one call a round, a two-worker Envoy fell behind past
/// about 2,500 active users, and revocations took longer than 5 s to arrive.
const MAX_SYNC_CALLS: usize = 8;
/// Bound on the VM's cache of key hashes (emptied when reached; idle keys leave it at
/// each sweep).
const MAX_CACHED_KEY_HASHES: usize = 50_000;

/// Alfred's own request headers; removed before the request goes upstream.
pub const ALFRED_HEADERS: [&str; 3] = ["x-privacy-mode", "x-priority", "x-project-id"];

#[derive(Debug, Clone)]
struct Admission {
    lease_id: String,
    user_id: i64,
    reserved: u64,
    quota_remaining: u64,
    /// Reserved from this VM's [`Slice`] (else directly in the shared record).
    from_slice: bool,
}

/// This VM's slice of a record's lease: credit claimed from the shared record with one
/// compare-and-swap, then spent by this VM's requests without touching shared data, and
/// settled back when the VM next claims or on a tick after the slice lapsed. A warm
/// request costs no shared-data call; the lease itself, and so the overspend bound, is
/// unchanged (slices only divide it among the VMs of the process).
#[derive(Debug, Default)]
struct Slice {
    lease_id: String,
    user_id: i64,
    /// Claimed from the shared lease (counted in its `consumed`) and not given back.
    taken: u64,
    /// Reserved by this VM's requests in flight on the slice.
    in_flight: u64,
    /// Settled usage of the slice's requests since the last settlement.
    used: u64,
    /// Settled usage of this record's requests (any lease) since the last settlement:
    /// the shared burn-rate window.
    window: u64,
    /// What the user could spend at the claim, less what other VMs held then.
    quota_left: u64,
    /// Served from until then: the lease's expiry, or [`SLICE_TTL_MS`] after the claim.
    valid_until_ms: u64,
    claimed_at_ms: u64,
    /// Reserved since the claim: this VM's burn rate, which sizes its next claim.
    reserved_since_claim: u64,
}

impl Slice {
    fn room(&self, now_ms: u64) -> u64 {
        if now_ms >= self.valid_until_ms {
            0
        } else {
            self.taken
                .saturating_sub(self.in_flight.saturating_add(self.used))
        }
    }

    /// Whether settling would change the shared record.
    fn unsettled(&self) -> bool {
        self.taken != self.in_flight || self.used > 0 || self.window > 0
    }

    fn reserve(&mut self, estimate: u64, now_ms: u64) -> Admission {
        let reserved = estimate.min(self.room(now_ms));
        self.in_flight = self.in_flight.saturating_add(reserved);
        self.reserved_since_claim = self.reserved_since_claim.saturating_add(reserved);
        Admission {
            lease_id: self.lease_id.clone(),
            user_id: self.user_id,
            reserved,
            quota_remaining: self
                .quota_left
                .saturating_sub(self.in_flight.saturating_add(self.used)),
            from_slice: true,
        }
    }

    /// What settling sends to the shared record (see [`settle_slice`]).
    fn snapshot(&self) -> SliceSnapshot {
        SliceSnapshot {
            lease_id: self.lease_id.clone(),
            taken: self.taken,
            in_flight: self.in_flight,
            used: self.used,
            window: self.window,
        }
    }

    /// The shared record took `snapshot` (`same_lease`: its lease is still this one).
    fn settled(&mut self, snapshot: &SliceSnapshot, same_lease: bool) {
        self.window = self.window.saturating_sub(snapshot.window);
        if same_lease && self.lease_id == snapshot.lease_id {
            // What is in flight stays claimed; everything else went back.
            self.taken = self.in_flight;
            self.used = self.used.saturating_sub(snapshot.used);
        } else {
            // The lease is gone: requests still in flight on it settle outside any slice.
            self.lease_id.clear();
            self.taken = 0;
            self.in_flight = 0;
            self.used = 0;
            self.valid_until_ms = 0;
        }
    }
}

/// A slice's numbers as read before a compare-and-swap (which may run more than once).
#[derive(Debug, Clone)]
struct SliceSnapshot {
    lease_id: String,
    taken: u64,
    in_flight: u64,
    used: u64,
    window: u64,
}

/// Settle `slice` into the shared record: its usage joins the burn-rate window and,
/// when the lease is still the one it was claimed from, the lease's `consumed` becomes
/// what the slice's requests really hold (in flight plus used) instead of what was
/// claimed. Returns whether the lease is the same.
fn settle_slice(rec: &mut Record, slice: &SliceSnapshot, now_ms: u64) -> bool {
    add_to_window(rec, slice.window, now_ms);
    match rec.lease.as_mut().filter(|l| l.id == slice.lease_id) {
        Some(lease) => {
            lease.consumed = lease
                .consumed
                .saturating_add(slice.in_flight.saturating_add(slice.used))
                .saturating_sub(slice.taken);
            true
        }
        None => false,
    }
}

fn add_to_window(rec: &mut Record, tokens: u64, now_ms: u64) {
    if now_ms.saturating_sub(rec.window_start_ms) > WINDOW_MS {
        rec.window_start_ms = now_ms;
        rec.window_tokens = 0;
    }
    rec.window_tokens = rec.window_tokens.saturating_add(tokens);
}

/// Tokens a VM claims: its own recent rate over the next [`SLICE_TTL_MS`] (twice over,
/// so a steady VM claims about once per slice), at least the request's estimate, at most
/// a [`SLICE_MAX_DIVISOR`]th of the lease, never more than the lease has.
fn slice_size(estimate: u64, previous: Option<&SliceSnapshotRate>, granted: u64, room: u64) -> u64 {
    let rate = previous.map_or(0, |p| {
        let elapsed = p.elapsed_ms.clamp(50, SLICE_TTL_MS * 4);
        p.reserved.saturating_mul(2 * SLICE_TTL_MS) / elapsed
    });
    let cap = (granted / SLICE_MAX_DIVISOR).max(estimate);
    rate.clamp(estimate, cap).min(room)
}

/// A VM's reservations over its previous slice.
#[derive(Debug, Clone, Copy)]
struct SliceSnapshotRate {
    reserved: u64,
    elapsed_ms: u64,
}

#[derive(Debug)]
struct RequestState {
    request_id: String,
    /// The shared record the request draws on ([`lease_store::record_id`]).
    record: RecordId,
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
    /// The response body reached its end (not cut by client or provider).
    response_complete: bool,
    /// The response's framing as the request body decided it (OpenAI-style `stream`),
    /// so the response's `content-type` need not be read.
    framing: Option<Framing>,
    /// When the request arrived: the usage record's time.
    started_ms: u64,
}

/// A lease request to send: for which record, whose key hash, and the body. The answer
/// goes back to [`Gateway::on_lease_answer`] with `record`.
#[derive(Debug, PartialEq, Eq)]
pub struct LeaseFetch {
    pub record: String,
    pub key_hash: String,
    pub body: Vec<u8>,
}

/// What the adapter does with a request's headers.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadersOutcome {
    /// Swap the key for `credential` and forward now — or, with `inspect_body`, once the
    /// body is read ([`Gateway::on_request_body`]).
    Forward {
        credential: Credential,
        inspect_body: bool,
    },
    /// Swap the key for `credential`, then pause. When `fetch` is set, this context
    /// sends that lease request (`POST /internal/v1/leases`) and reports its answer.
    Wait {
        credential: Credential,
        fetch: Option<LeaseFetch>,
        inspect_body: bool,
    },
    /// Answer locally; nothing goes upstream.
    Respond(LocalReply),
}

/// What Alfred adds to a response's headers (`x-alfred-request-id`,
/// `x-alfred-quota-remaining`), borrowed: nothing is copied for it.
#[derive(Debug, PartialEq, Eq)]
pub struct AddedHeaders<'a> {
    pub request_id: &'a str,
    pub quota_remaining: Option<Decimal>,
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

/// Calls the root context should make on this tick.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TickWork {
    /// Lease requests (renewals, and fetches whose sender went away or died).
    pub lease_fetches: Vec<LeaseFetch>,
    /// `POST /internal/v1/usage` body.
    pub usage_batch: Option<Vec<u8>>,
    /// `POST /internal/v1/sync` bodies, one per call.
    pub syncs: Vec<Vec<u8>>,
    /// Requests whose wait ended without an answer of their own (record changed).
    pub waiters: Vec<(u32, WaiterOutcome)>,
}

/// Counters exposed as Envoy metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    /// Requests that waited for the control plane (cold or spent lease).
    pub waited: u64,
    pub refused: u64,
    pub lease_fetches: u64,
    pub cas_failures: u64,
}

/// A fetch this VM sent (or must send) for a key.
#[derive(Debug)]
struct LocalFetch {
    /// The request context whose call is in flight; `None`: the root context's, or nobody's
    /// (then the root sends it on the next tick).
    leader: Option<u32>,
    sent: bool,
}

pub struct Gateway {
    config: Config,
    /// This VM's id in shared records (random, non-zero).
    vm: u64,
    requests: ContextMap<RequestState>,
    /// Provider name → its credential.
    credentials: HashMap<&'static str, Credential>,
    /// Requests of this VM waiting for a record's lease, by record id.
    waiters: HashMap<String, Vec<u32>>,
    fetches: HashMap<String, LocalFetch>,
    /// Records this VM served: what it re-checks and sweeps.
    active: HashMap<String, Activity>,
    /// This VM's slice of each record's lease, by record id.
    slices: HashMap<String, Slice>,
    /// Client key → its hash, for the keys in use: SHA-256 in wasm costs more than the
    /// rest of a request's own work. Pruned with `active`, bounded.
    key_hashes: HashMap<String, RecordId>,
    last_sync_ms: u64,
    /// Sync calls sent and not yet answered.
    syncs_in_flight: usize,
    /// The VM is shutting down: every queued record goes now, batch after batch.
    shutting_down: bool,
    reporter: Reporter,
    ids: IdGen,
    pub stats: Stats,
}

/// What a VM knows of a record it served.
#[derive(Debug, Clone, Copy)]
struct Activity {
    /// When this VM last served it.
    seen_ms: u64,
    /// When its key is next due for a re-check, as far as this VM knows (from the
    /// record's `checked_at_ms`, which only moves forward): the sync does not read the
    /// record before. Without it every sync read and rewrote every active record.
    check_due_ms: u64,
}

enum Decision {
    Refuse(Refusal),
    /// Claimed `slice` from the lease; `renew`: this VM now fetches the next grant.
    Admit {
        slice: Slice,
        renew: bool,
    },
    Wait {
        fetch: Option<u64>,
    },
}

impl Gateway {
    pub fn new(config: Config, mut ids: IdGen) -> Self {
        let reporter = Reporter::new(
            config.max_batch,
            config.max_buffered_records,
            config.report_interval_ms,
        );
        let credentials = Provider::ALL
            .iter()
            .filter_map(|p| {
                let c = config.providers.get(p.name())?;
                Some((
                    p.name(),
                    Rc::new((c.auth_header.clone(), c.auth_value.clone())),
                ))
            })
            .collect();
        let vm = ids.next_u64().max(1);
        Gateway {
            config,
            vm,
            requests: ContextMap::default(),
            credentials,
            waiters: HashMap::new(),
            fetches: HashMap::new(),
            active: HashMap::new(),
            slices: HashMap::new(),
            key_hashes: HashMap::new(),
            last_sync_ms: 0,
            syncs_in_flight: 0,
            shutting_down: false,
            reporter,
            ids,
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This VM's id in shared records and wake-up queues.
    pub fn vm_id(&self) -> u64 {
        self.vm
    }

    /// Usage records dropped so far (full buffer or rejected batch).
    pub fn dropped_records(&self) -> u64 {
        self.reporter.dropped
    }

    /// Usage records not yet acknowledged by the control plane.
    pub fn pending_records(&self) -> usize {
        self.reporter.pending()
    }

    /// Whether context `ctx` is a request this VM still tracks (so its end has work).
    pub fn has_request(&self, ctx: u32) -> bool {
        self.requests.contains_key(&ctx)
    }

    fn key_hash(&mut self, client_key: &str) -> RecordId {
        if let Some(hash) = self.key_hashes.get(client_key) {
            return Rc::clone(hash);
        }
        if self.key_hashes.len() >= MAX_CACHED_KEY_HASHES {
            self.key_hashes.clear();
        }
        let hash: RecordId = Rc::from(key::hash(client_key));
        self.key_hashes
            .insert(client_key.to_string(), Rc::clone(&hash));
        hash
    }

    /// Request headers arrived for context `ctx`.
    pub fn on_request_headers(
        &mut self,
        ctx: u32,
        headers: RequestHeaders<'_>,
        now_ms: u64,
        store: &dyn SharedStore,
    ) -> HeadersOutcome {
        self.stats.requests += 1;
        let request_id = self.ids.request_id(now_ms);
        let Some(api) = Api::from_path(headers.path) else {
            self.stats.refused += 1;
            return HeadersOutcome::Respond(Refusal::UnknownApi.reply(&request_id, Family::OpenAi));
        };
        let family = api.format.family();
        let client_key = match headers.key {
            ClientKey::Found(k) => k,
            ClientKey::Missing | ClientKey::Malformed => {
                self.stats.refused += 1;
                return HeadersOutcome::Respond(Refusal::InvalidApiKey.reply(&request_id, family));
            }
        };
        let Some(credential) = self.credentials.get(api.provider.name()).map(Rc::clone) else {
            self.stats.refused += 1;
            return HeadersOutcome::Respond(
                Refusal::ProviderNotConfigured.reply(&request_id, family),
            );
        };
        let priority = parse_priority(headers.priority);
        let key_hash = self.key_hash(client_key);
        // A normal-priority request draws on the record named by the key hash itself.
        let record: RecordId = if priority == CRITICAL {
            Rc::from(lease_store::record_id(&key_hash, true))
        } else {
            Rc::clone(&key_hash)
        };
        let input_estimate = estimate_tokens(headers.content_length.unwrap_or(0));
        let estimate = self
            .config
            .default_estimate_tokens
            .saturating_add(input_estimate)
            .min(MAX_ESTIMATE);
        let privacy = parse_privacy(headers.privacy);
        let inspect_body = headers.has_body
            && (api.format.has_include_usage()
                || (privacy == "strict" && api.format == Format::OpenAiResponses));
        match self.active.get_mut(&*record) {
            Some(activity) => activity.seen_ms = now_ms,
            None => {
                let activity = Activity {
                    seen_ms: now_ms,
                    check_due_ms: 0,
                };
                self.active.insert(record.to_string(), activity);
            }
        }
        let mut state = RequestState {
            request_id,
            record: Rc::clone(&record),
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
            response_complete: false,
            framing: None,
            started_ms: now_ms,
        };
        // Warm: this VM's slice of the lease covers the request; no shared data.
        if let Some(slice) = self
            .slices
            .get_mut(&*record)
            .filter(|s| s.room(now_ms) >= estimate)
        {
            state.admission = Some(slice.reserve(estimate, now_ms));
            self.requests.insert(ctx, state);
            return HeadersOutcome::Forward {
                credential,
                inspect_body,
            };
        }
        let record = record.to_string();
        let vm = self.vm;
        let config = &self.config;
        let previous = self.slices.get(&record).map(|s| {
            let rate = SliceSnapshotRate {
                reserved: s.reserved_since_claim,
                elapsed_ms: now_ms.saturating_sub(s.claimed_at_ms),
            };
            (s.snapshot(), rate)
        });
        let decision = lease_store::update(store, &record, vm, now_ms, |rec| {
            rec.last_used_ms = now_ms;
            // This VM's slice goes back first: what it did not use is room again, and
            // requests of VMs waiting for such credit look again.
            let same_lease = previous.as_ref().map(|(snapshot, _)| {
                rec.release_slice(vm);
                settle_slice(rec, snapshot, now_ms)
            });
            let wake = if previous.is_some() {
                std::mem::take(&mut rec.waiting_vms)
            } else {
                Vec::new()
            };
            // Room in the lease first: a quota refusal may have come while requests in
            // flight held the rest of the lease, and what they did not use is the user's.
            if let Some(lease) = rec.lease.as_mut().filter(|l| l.room(now_ms) > 0) {
                let take = slice_size(
                    estimate,
                    previous.as_ref().map(|(_, rate)| rate),
                    lease.granted,
                    lease.room(now_ms),
                );
                lease.consumed = lease.consumed.saturating_add(take);
                // Requests in flight on the same lease stay in the slice.
                let carried = match (&previous, same_lease) {
                    (Some((snapshot, _)), Some(true)) => snapshot.in_flight,
                    _ => 0,
                };
                let mine = carried.saturating_add(take);
                let slice = Slice {
                    lease_id: lease.id.clone(),
                    user_id: lease.user_id,
                    taken: mine,
                    in_flight: carried,
                    used: 0,
                    window: 0,
                    quota_left: lease
                        .quota_remaining
                        .saturating_sub(lease.consumed.saturating_sub(mine)),
                    valid_until_ms: lease.expires_at_ms.min(now_ms + SLICE_TTL_MS),
                    claimed_at_ms: now_ms,
                    reserved_since_claim: 0,
                };
                let low = lease.room(now_ms) < lease.granted / LOW_WATER_DIVISOR;
                let ageing = now_ms >= lease.renew_at_ms;
                // A refusal just cached is the control plane's answer to the last
                // renewal: asking again before it lapses only loads it.
                let renew = (low || ageing)
                    && !rec.fetch_active(now_ms)
                    && rec.live_refusal(now_ms).is_none();
                if renew {
                    rec.fetch_owner = vm;
                    rec.fetch_until_ms = now_ms + FETCH_CLAIM_MS;
                }
                let grace = config.tick_ms.saturating_mul(2).max(SLICE_SETTLE_GRACE_MS);
                rec.hold_slice(vm, slice.valid_until_ms.saturating_add(grace), now_ms);
                return (Decision::Admit { slice, renew }, same_lease, wake);
            }
            // No room, but other VMs' slices may hold unspent credit of the lease: it
            // comes back within their slice's life, so wait for it rather than refuse.
            let others_hold = rec.others_hold_slices(vm, now_ms);
            if others_hold && !rec.waiting_vms.contains(&vm) {
                rec.waiting_vms.push(vm);
            }
            if let Some(refusal) = rec.live_refusal(now_ms) {
                if !others_hold {
                    return (Decision::Refuse(refusal.clone()), same_lease, wake);
                }
                return (Decision::Wait { fetch: None }, same_lease, wake);
            }
            if rec.fetch_active(now_ms) {
                if rec.fetch_owner != vm && !rec.waiting_vms.contains(&vm) {
                    rec.waiting_vms.push(vm);
                }
                return (Decision::Wait { fetch: None }, same_lease, wake);
            }
            rec.fetch_owner = vm;
            rec.fetch_until_ms = now_ms + FETCH_CLAIM_MS;
            let fetch = Some(lease_size(config, rec, now_ms));
            (Decision::Wait { fetch }, same_lease, wake)
        });
        let decision = match decision {
            Ok((decision, same_lease, wake)) => {
                for other in wake {
                    store.notify(other, &record);
                }
                if let (Some((snapshot, _)), Some(same), Some(slice)) =
                    (&previous, same_lease, self.slices.get_mut(&record))
                {
                    slice.settled(snapshot, same);
                }
                decision
            }
            Err(_) => {
                self.stats.cas_failures += 1;
                self.stats.refused += 1;
                self.requests.remove(&ctx);
                return HeadersOutcome::Respond(
                    Refusal::GovernanceUnavailable.reply(&state.request_id, family),
                );
            }
        };
        match decision {
            Decision::Refuse(refusal) => {
                self.stats.refused += 1;
                HeadersOutcome::Respond(refusal.reply(&state.request_id, family))
            }
            Decision::Admit { mut slice, renew } => {
                state.admission = Some(slice.reserve(estimate, now_ms));
                self.slices.insert(record.clone(), slice);
                self.requests.insert(ctx, state);
                if renew {
                    // Sent by the root context on its next tick: nobody waits for it.
                    self.fetches.insert(
                        record,
                        LocalFetch {
                            leader: None,
                            sent: false,
                        },
                    );
                }
                HeadersOutcome::Forward {
                    credential,
                    inspect_body,
                }
            }
            Decision::Wait { fetch } => {
                self.stats.waited += 1;
                self.requests.insert(ctx, state);
                self.waiters.entry(record.clone()).or_default().push(ctx);
                let fetch = fetch.map(|tokens| {
                    self.stats.lease_fetches += 1;
                    self.fetches.insert(
                        record.clone(),
                        LocalFetch {
                            leader: Some(ctx),
                            sent: true,
                        },
                    );
                    LeaseFetch {
                        body: lease_request_body(&self.config, &key_hash, priority, tokens),
                        record,
                        key_hash: key_hash.to_string(),
                    }
                });
                HeadersOutcome::Wait {
                    credential,
                    fetch,
                    inspect_body,
                }
            }
        }
    }

    /// The lease request for record `key_hash` ([`LeaseFetch::record`]) was answered
    /// (`Err`: no usable answer: the call failed, timed out, or the control plane replied
    /// with an error). Returns what to do with this VM's paused requests; other VMs'
    /// waiters are notified through `store`.
    pub fn on_lease_answer(
        &mut self,
        key_hash: &str,
        answer: Result<LeaseAnswer, String>,
        now_ms: u64,
        store: &dyn SharedStore,
    ) -> Vec<(u32, WaiterOutcome)> {
        self.fetches.remove(key_hash);
        let vm = self.vm;
        let margin = expiry_margin_ms(&self.config);
        let others = lease_store::update(store, key_hash, vm, now_ms, |rec| {
            let mut dropped_slices = false;
            if rec.fetch_owner == vm {
                rec.fetch_owner = 0;
                rec.fetch_until_ms = 0;
            }
            match &answer {
                Ok(LeaseAnswer::Granted {
                    lease_id,
                    user_id,
                    granted_tokens,
                    expires_in_ms,
                    quota_remaining,
                    period_reset_s,
                    fail_open_tokens,
                }) => {
                    rec.refusal = None;
                    rec.checked_at_ms = now_ms;
                    rec.user_id = *user_id;
                    rec.fail_open_left = *fail_open_tokens;
                    match rec.lease.as_mut().filter(|l| &l.id == lease_id) {
                        // The control plane extended the lease this process holds.
                        Some(lease) => {
                            lease.granted = *granted_tokens;
                            lease.expires_at_ms =
                                now_ms.saturating_add(expires_in_ms.saturating_sub(margin));
                            lease.renew_at_ms = renew_at(now_ms, *expires_in_ms, margin);
                            lease.quota_remaining = *quota_remaining;
                            lease.period_reset_s = *period_reset_s;
                        }
                        None => {
                            // Slices of an earlier lease hold nothing of this one.
                            rec.slice_vms.clear();
                            rec.lease = Some(Lease {
                                id: lease_id.clone(),
                                user_id: *user_id,
                                granted: *granted_tokens,
                                consumed: 0,
                                expires_at_ms: now_ms
                                    .saturating_add(expires_in_ms.saturating_sub(margin)),
                                renew_at_ms: renew_at(now_ms, *expires_in_ms, margin),
                                quota_remaining: *quota_remaining,
                                period_reset_s: *period_reset_s,
                            })
                        }
                    }
                }
                Ok(answer) => {
                    let refusal = match answer {
                        LeaseAnswer::InvalidKey => Refusal::InvalidApiKey,
                        LeaseAnswer::Suspended { .. } => Refusal::UserSuspended,
                        LeaseAnswer::Exhausted {
                            budget_scope,
                            period_reset_s,
                            ..
                        } => Refusal::InsufficientQuota {
                            budget_scope: budget_scope.clone(),
                            retry_after_s: *period_reset_s,
                        },
                        LeaseAnswer::Granted { .. } => Refusal::GovernanceUnavailable,
                    };
                    // Refused for quota: the current lease stays (its room, and what the
                    // requests in flight on it do not use, is still the user's to spend);
                    // a revoked key or a suspended user loses it.
                    if !matches!(refusal, Refusal::InsufficientQuota { .. }) {
                        rec.lease = None;
                    }
                    dropped_slices = rec.lease.is_none();
                    rec.refusal = Some(CachedRefusal {
                        refusal,
                        until_ms: now_ms + REFUSAL_TTL_MS,
                    });
                }
                // The control plane is unreachable: a user with a fail-open allowance
                // is served from it once the lease is spent (the usage is reported and
                // charged when the control plane is back).
                Err(_) => {
                    let spent = rec.lease.as_ref().is_none_or(|l| l.room(now_ms) == 0);
                    if spent && rec.fail_open_left > 0 && rec.user_id != 0 {
                        rec.lease = Some(Lease {
                            id: FAIL_OPEN_LEASE.to_string(),
                            user_id: rec.user_id,
                            granted: rec.fail_open_left,
                            consumed: 0,
                            expires_at_ms: now_ms.saturating_add(FAIL_OPEN_MS),
                            // Replaced by the first grant once the control plane is
                            // back; until then only a spent allowance asks again.
                            renew_at_ms: now_ms.saturating_add(FAIL_OPEN_MS),
                            quota_remaining: rec.fail_open_left,
                            period_reset_s: 0,
                        });
                        rec.fail_open_left = 0;
                    }
                }
            }
            // VMs holding slices of a dropped lease are told too (their slices lapse).
            let holders: Vec<u64> = if dropped_slices {
                rec.slice_vms.drain(..).map(|(holder, _)| holder).collect()
            } else {
                Vec::new()
            };
            let mut others: Vec<u64> = rec.waiting_vms.to_vec();
            for holder in holders {
                if !others.contains(&holder) {
                    others.push(holder);
                }
            }
            others.retain(|&v| v != vm);
            others
        });
        if matches!(
            answer,
            Ok(LeaseAnswer::InvalidKey | LeaseAnswer::Suspended { .. })
        ) {
            // The lease is dropped: this VM's slice of it too.
            if let Some(slice) = self.slices.get_mut(key_hash) {
                slice.valid_until_ms = 0;
            }
        }
        match others {
            Ok(others) => {
                // Clear the list we are about to notify; a VM that adds itself meanwhile stays.
                let _ = lease_store::update(store, key_hash, vm, now_ms, |rec| {
                    rec.waiting_vms.retain(|v| !others.contains(v))
                });
                for other in others {
                    store.notify(other, key_hash);
                }
            }
            Err(_) => self.stats.cas_failures += 1,
        }
        let failed = answer.is_err();
        self.resolve_waiters(key_hash, now_ms, store, true, failed)
    }

    /// Another VM changed the record of `key_hash`: its fetch completed, a slice came
    /// back, or the lease was revoked (then this VM's slice of it lapses now).
    pub fn on_notified(
        &mut self,
        key_hash: &str,
        now_ms: u64,
        store: &dyn SharedStore,
    ) -> Vec<(u32, WaiterOutcome)> {
        if let Some(slice) = self.slices.get_mut(key_hash) {
            let current = lease_store::load(store, key_hash);
            let lease_kept = current
                .as_ref()
                .and_then(|r| r.lease.as_ref())
                .is_some_and(|l| l.id == slice.lease_id);
            if !lease_kept {
                slice.valid_until_ms = 0;
            }
        }
        self.resolve_waiters(key_hash, now_ms, store, false, false)
    }

    /// Admit or refuse this VM's requests waiting on `key_hash`, from the shared record.
    /// `answered`: a fetch just completed (`failed`: without an answer), so waiters that
    /// cannot be admitted are refused or, after a grant too small for all, ask again —
    /// rather than left waiting.
    fn resolve_waiters(
        &mut self,
        key_hash: &str,
        now_ms: u64,
        store: &dyn SharedStore,
        answered: bool,
        failed: bool,
    ) -> Vec<(u32, WaiterOutcome)> {
        let Some(waiting) = self.waiters.remove(key_hash) else {
            return Vec::new();
        };
        let estimates: Vec<(u32, u64)> = waiting
            .iter()
            .filter_map(|ctx| self.requests.get(ctx).map(|s| (*ctx, s.estimate)))
            .collect();
        let vm = self.vm;
        enum Verdict {
            Admit(Admission),
            Refuse(Refusal),
            KeepWaiting,
        }
        let verdicts = lease_store::update(store, key_hash, vm, now_ms, |rec| {
            let refusal = rec.live_refusal(now_ms).cloned();
            let fetching = rec.fetch_active(now_ms);
            let others_hold = rec.others_hold_slices(vm, now_ms);
            let mut refetch = false;
            let mut verdicts = Vec::with_capacity(estimates.len());
            for (ctx, estimate) in &estimates {
                let verdict = if let Some(lease) = rec.lease.as_mut().filter(|l| l.room(now_ms) > 0)
                {
                    Verdict::Admit(reserve(lease, *estimate, now_ms))
                } else if others_hold {
                    // Other VMs' slices come back within their life (see on_request_headers).
                    Verdict::KeepWaiting
                } else if let Some(refusal) = &refusal {
                    Verdict::Refuse(refusal.clone())
                } else if fetching && !answered {
                    Verdict::KeepWaiting
                } else if failed {
                    // This VM's own fetch failed and nothing is left: fail closed.
                    Verdict::Refuse(Refusal::GovernanceUnavailable)
                } else if rec.lease.as_ref().is_some_and(|l| now_ms < l.expires_at_ms) {
                    // Earlier waiters took the whole grant: ask for more (the control
                    // plane answers `exhausted` when there is no more).
                    refetch = true;
                    Verdict::KeepWaiting
                } else {
                    Verdict::Refuse(Refusal::GovernanceUnavailable)
                };
                verdicts.push((*ctx, verdict));
            }
            if refetch && !fetching {
                rec.fetch_owner = vm;
                rec.fetch_until_ms = now_ms + FETCH_CLAIM_MS;
            }
            let waiting = verdicts
                .iter()
                .any(|(_, v)| matches!(v, Verdict::KeepWaiting));
            if waiting && (others_hold || rec.fetch_owner != vm) && !rec.waiting_vms.contains(&vm) {
                rec.waiting_vms.push(vm);
            }
            (verdicts, refetch && !fetching)
        });
        let verdicts = match verdicts {
            Ok((v, refetch)) => {
                if refetch {
                    self.fetches.insert(
                        key_hash.to_string(),
                        LocalFetch {
                            leader: None,
                            sent: false,
                        },
                    );
                }
                v
            }
            Err(_) => {
                self.stats.cas_failures += 1;
                estimates
                    .iter()
                    .map(|(ctx, _)| (*ctx, Verdict::Refuse(Refusal::GovernanceUnavailable)))
                    .collect()
            }
        };
        let mut outcomes = Vec::with_capacity(verdicts.len());
        for (ctx, verdict) in verdicts {
            let Some(state) = self.requests.get_mut(&ctx) else {
                continue;
            };
            let family = state.api.format.family();
            let outcome = match verdict {
                Verdict::KeepWaiting => {
                    self.waiters
                        .entry(key_hash.to_string())
                        .or_default()
                        .push(ctx);
                    continue;
                }
                Verdict::Admit(admission) => {
                    state.admission = Some(admission);
                    if state.inspect_body && !state.body_done {
                        WaiterOutcome::AwaitBody
                    } else {
                        WaiterOutcome::Resume
                    }
                }
                Verdict::Refuse(refusal) => {
                    self.stats.refused += 1;
                    let reply = refusal.reply(&state.request_id, family);
                    self.requests.remove(&ctx);
                    WaiterOutcome::Respond(reply)
                }
            };
            outcomes.push((ctx, outcome));
        }
        outcomes
    }

    /// Whether [`Gateway::on_response_headers`] needs the response's `content-type` for
    /// context `ctx` (each header read is a host call).
    pub fn needs_content_type(&self, ctx: u32) -> bool {
        self.requests.get(&ctx).is_some_and(|s| s.framing.is_none())
    }

    /// Response headers arrived. Returns what to add to them (`None`: the request is not
    /// one this VM governs).
    pub fn on_response_headers(
        &mut self,
        ctx: u32,
        status: u16,
        content_type: Option<&str>,
    ) -> Option<AddedHeaders<'_>> {
        let state = self.requests.get_mut(&ctx)?;
        state.status = status;
        if (200..300).contains(&status) {
            let framing = state
                .framing
                .unwrap_or_else(|| Framing::from_content_type(content_type));
            state.parser = Some(UsageParser::new(state.api.format, framing));
        }
        Some(AddedHeaders {
            request_id: &state.request_id,
            quota_remaining: state
                .admission
                .as_ref()
                .map(|a| Decimal::new(a.quota_remaining)),
        })
    }

    /// The request body: `buffered` bytes so far, `read` gives them all. Called for each
    /// part; the body is read once, at its end, when it is to be inspected. `now_ms` is
    /// asked only when the time matters (a refused body releases its reservation): each
    /// clock read is a host call.
    pub fn on_request_body(
        &mut self,
        ctx: u32,
        buffered: usize,
        end_of_stream: bool,
        read: impl FnOnce() -> Option<Vec<u8>>,
        now_ms: impl FnOnce() -> u64,
        store: &dyn SharedStore,
    ) -> BodyAction {
        let Some(state) = self.requests.get_mut(&ctx) else {
            return BodyAction::Continue;
        };
        let admitted = state.admission.is_some();
        let holding = !admitted || (state.inspect_body && !state.body_done);
        if holding && buffered as u64 > self.config.max_request_body_bytes {
            let reply =
                Refusal::RequestTooLarge.reply(&state.request_id, state.api.format.family());
            self.release(ctx, now_ms(), store);
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
            if let Some(tokens) = rewrite.prompt_tokens {
                state.input_estimate = tokens;
            }
            if rewrite.strip_usage_chunk {
                state.stripper = Some(UsageChunkStripper::default());
            }
            if state.api.format.has_include_usage() {
                state.framing = rewrite.streaming.map(|streaming| {
                    if streaming {
                        Framing::Sse
                    } else {
                        Framing::Json
                    }
                });
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
        state.response_complete |= end_of_stream;
        let stripper = state.stripper.as_mut()?;
        let mut out = stripper.filter(chunk);
        if end_of_stream {
            out.extend(stripper.flush());
        }
        (out != chunk).then_some(out)
    }

    /// Forget a request that never went upstream, returning its reservation.
    fn release(&mut self, ctx: u32, now_ms: u64, store: &dyn SharedStore) {
        let Some(state) = self.requests.remove(&ctx) else {
            return;
        };
        match state.admission {
            Some(admission) => self.settle(&state.record, &admission, 0, || now_ms, store),
            None => self.abandon_wait(ctx, &state.record),
        }
    }

    /// Move a reservation to what was actually used: in this VM's slice when it came
    /// from there, else in the shared lease.
    fn settle(
        &mut self,
        record: &str,
        admission: &Admission,
        used: u64,
        now_ms: impl FnOnce() -> u64,
        store: &dyn SharedStore,
    ) {
        if admission.from_slice {
            if let Some(slice) = self.slices.get_mut(record) {
                slice.window = slice.window.saturating_add(used);
                if slice.lease_id == admission.lease_id {
                    slice.in_flight = slice.in_flight.saturating_sub(admission.reserved);
                    slice.used = slice.used.saturating_add(used);
                }
                return;
            }
            // The slice was settled and dropped: its reservations are in the shared
            // lease, where this one is settled like any other.
        }
        let now_ms = now_ms();
        let result = lease_store::update(store, record, self.vm, now_ms, |rec| {
            if let Some(lease) = rec.lease.as_mut().filter(|l| l.id == admission.lease_id) {
                lease.consumed = lease
                    .consumed
                    .saturating_sub(admission.reserved)
                    .saturating_add(used);
            }
            add_to_window(rec, used, now_ms);
        });
        if result.is_err() {
            self.stats.cas_failures += 1;
        }
    }

    /// Settle this VM's slices into the shared records: those that lapsed (`all`: every
    /// one). Lapsed slices are claimed again by the next request, so an active VM settles
    /// as it claims; this returns what idle VMs hold.
    pub fn settle_slices(&mut self, now_ms: u64, store: &dyn SharedStore, all: bool) {
        let due: Vec<String> = self
            .slices
            .iter()
            .filter(|(_, s)| s.unsettled() && (all || now_ms >= s.valid_until_ms))
            .map(|(record, _)| record.clone())
            .collect();
        for record in due {
            let Some(snapshot) = self.slices.get(&record).map(Slice::snapshot) else {
                continue;
            };
            let vm = self.vm;
            match lease_store::update(store, &record, vm, now_ms, |rec| {
                rec.release_slice(vm);
                let same = settle_slice(rec, &snapshot, now_ms);
                (same, std::mem::take(&mut rec.waiting_vms))
            }) {
                Ok((same, wake)) => {
                    for other in wake {
                        store.notify(other, &record);
                    }
                    if let Some(slice) = self.slices.get_mut(&record) {
                        slice.settled(&snapshot, same);
                        if all {
                            slice.valid_until_ms = 0;
                        }
                    }
                }
                Err(_) => self.stats.cas_failures += 1,
            }
        }
    }

    /// The request is over (complete, cut, or reset): settle its reservation and queue
    /// its usage record. Idempotent per context.
    pub fn on_request_end(&mut self, ctx: u32, now_ms: u64, store: &dyn SharedStore) {
        self.on_request_end_with(ctx, || now_ms, store);
    }

    /// [`Gateway::on_request_end`], reading the clock only when the shared record must
    /// be written (each clock read is a host call).
    pub fn on_request_end_with(
        &mut self,
        ctx: u32,
        now_ms: impl FnOnce() -> u64,
        store: &dyn SharedStore,
    ) {
        let Some(mut state) = self.requests.remove(&ctx) else {
            return;
        };
        let Some(admission) = state.admission.take() else {
            // Still waiting for a lease: it no longer waits.
            self.abandon_wait(ctx, &state.record);
            return;
        };
        let complete = state.response_complete;
        let (usage, estimated) = match state.parser.as_mut() {
            Some(parser) => match parser.finish() {
                // Cut short, in a format that reports usage before the end (Anthropic's
                // message_start, Gemini's running usageMetadata): what was reported is a
                // floor; the text seen may show more was produced.
                Some(mut usage) if !complete && parser.reports_early() => {
                    usage.output = usage.output.max(parser.estimated_output());
                    usage.total = None;
                    (usage, true)
                }
                Some(usage) => (usage, false),
                // A successful response that never said: estimate what was produced.
                None => (
                    Usage {
                        input: state.input_estimate,
                        output: parser.estimated_output(),
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
        self.settle(&state.record, &admission, charged, now_ms, store);
        self.reporter.push(&UsageRecord {
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
            ts_ms: state.started_ms,
        });
    }

    fn abandon_wait(&mut self, ctx: u32, key_hash: &str) {
        if let Some(waiting) = self.waiters.get_mut(key_hash) {
            waiting.retain(|&w| w != ctx);
            if waiting.is_empty() {
                self.waiters.remove(key_hash);
            }
        }
        if let Some(fetch) = self.fetches.get_mut(key_hash) {
            if fetch.leader == Some(ctx) {
                // Its call is cancelled with it: the root context sends it again.
                fetch.leader = None;
                fetch.sent = false;
            }
        }
    }

    /// The root context's tick: what to send, and waits that ended.
    pub fn on_tick(&mut self, root_ctx: u32, now_ms: u64, store: &dyn SharedStore) -> TickWork {
        let mut work = TickWork::default();
        // Waits that outlived their fetch (its VM died, or its call was lost), or whose
        // record changed without a wake-up reaching us.
        let stalled: Vec<String> = self
            .waiters
            .keys()
            .filter(|k| !self.fetches.contains_key(*k))
            .cloned()
            .collect();
        for key_hash in stalled {
            let claimed = lease_store::update_if(store, &key_hash, self.vm, now_ms, |rec| {
                let has_room = rec.lease.as_ref().is_some_and(|l| l.room(now_ms) > 0);
                if has_room
                    || rec.live_refusal(now_ms).is_some()
                    || rec.fetch_active(now_ms)
                    || rec.others_hold_slices(self.vm, now_ms)
                {
                    return None;
                }
                rec.fetch_owner = self.vm;
                rec.fetch_until_ms = now_ms + FETCH_CLAIM_MS;
                Some(())
            });
            match claimed {
                Ok(Some(())) => {
                    self.fetches.insert(
                        key_hash,
                        LocalFetch {
                            leader: None,
                            sent: false,
                        },
                    );
                }
                Ok(None) => work
                    .waiters
                    .extend(self.resolve_waiters(&key_hash, now_ms, store, false, false)),
                Err(_) => self.stats.cas_failures += 1,
            }
        }
        // Fetches to send from the root: renewals, taken-over and orphaned fetches.
        for (record, fetch) in self.fetches.iter_mut().filter(|(_, f)| !f.sent) {
            fetch.sent = true;
            fetch.leader = Some(root_ctx);
            let tokens = lease_size(
                &self.config,
                &lease_store::load(store, record).unwrap_or_default(),
                now_ms,
            );
            let key_hash = lease_store::key_hash_of(record);
            let priority = if lease_store::is_critical(record) {
                CRITICAL
            } else {
                "normal"
            };
            self.stats.lease_fetches += 1;
            work.lease_fetches.push(LeaseFetch {
                body: lease_request_body(&self.config, key_hash, priority, tokens),
                record: record.clone(),
                key_hash: key_hash.to_string(),
            });
        }
        self.settle_slices(now_ms, store, false);
        work.usage_batch = self.reporter.next_batch(&self.config.proxy_id, now_ms);
        if self.syncs_in_flight == 0 && now_ms.saturating_sub(self.last_sync_ms) >= SYNC_EVERY_MS {
            work.syncs = self.sync_bodies(now_ms, store);
        }
        work
    }

    /// Keys due for a re-check, claimed in their records so one VM checks each, as the
    /// bodies of the sync calls to send.
    fn sync_bodies(&mut self, now_ms: u64, store: &dyn SharedStore) -> Vec<Vec<u8>> {
        self.last_sync_ms = now_ms;
        let vm = self.vm;
        let mut due: Vec<String> = Vec::new();
        for (record, activity) in self
            .active
            .iter_mut()
            .filter(|(_, a)| now_ms.saturating_sub(a.seen_ms) < IDLE_MS && now_ms >= a.check_due_ms)
        {
            if due.len() >= MAX_SYNC_KEYS * MAX_SYNC_CALLS {
                break;
            }
            // Without a live lease there is nothing to re-check: look again next sync.
            let mut next_due = now_ms + SYNC_EVERY_MS;
            let claimed = lease_store::update_if(store, record, vm, now_ms, |rec| {
                if rec.lease.as_ref().is_none_or(|l| now_ms >= l.expires_at_ms) {
                    next_due = now_ms + SYNC_EVERY_MS;
                    return None;
                }
                let due_at = rec.checked_at_ms.saturating_add(RECHECK_AFTER_MS);
                if now_ms < due_at {
                    next_due = due_at; // another VM checked it, or a grant confirmed it
                    return None;
                }
                rec.checked_at_ms = now_ms;
                next_due = now_ms + RECHECK_AFTER_MS;
                Some(())
            });
            match claimed {
                Ok(claimed) => {
                    activity.check_due_ms = next_due;
                    if claimed.is_some() {
                        due.push(lease_store::key_hash_of(record).to_string());
                    }
                }
                // Contended: tried again next sync.
                Err(_) => self.stats.cas_failures += 1,
            }
        }
        // A key's normal and critical records name the same hash: ask once.
        due.sort_unstable();
        due.dedup();
        let bodies: Vec<Vec<u8>> = due
            .chunks(MAX_SYNC_KEYS)
            .filter_map(|key_hashes| {
                serde_json::to_vec(&SyncRequest {
                    proxy_id: &self.config.proxy_id,
                    key_hashes,
                })
                .ok()
            })
            .collect();
        self.syncs_in_flight = bodies.len();
        bodies
    }

    /// The control plane answered a sync (`None`: it did not).
    pub fn on_sync_answer(
        &mut self,
        answer: Option<SyncAnswer>,
        now_ms: u64,
        store: &dyn SharedStore,
    ) {
        self.syncs_in_flight = self.syncs_in_flight.saturating_sub(1);
        let Some(answer) = answer else { return };
        for status in answer.keys {
            let refusal = match status.decision.as_str() {
                "invalid_key" => Refusal::InvalidApiKey,
                "suspended" => Refusal::UserSuspended,
                "exhausted" => Refusal::InsufficientQuota {
                    budget_scope: status
                        .budget_scope
                        .clone()
                        .unwrap_or_else(|| "personal".into()),
                    retry_after_s: status.period_reset_s.unwrap_or(0),
                },
                _ => continue,
            };
            // The lease goes; the VMs holding slices of it are told at once, so none
            // serves from its slice after this one refuses.
            let vm = self.vm;
            let revoke = |rec: &mut Record| {
                rec.lease = None;
                rec.refusal = Some(CachedRefusal {
                    refusal: refusal.clone(),
                    until_ms: now_ms + REFUSAL_TTL_MS,
                });
                let holders: Vec<u64> = rec
                    .slice_vms
                    .drain(..)
                    .map(|(holder, _)| holder)
                    .filter(|&holder| holder != vm)
                    .collect();
                holders
            };
            // A revoked key or a suspended user loses its critical lease too; `exhausted`
            // speaks of the normal budget only (the critical overdraft is separate).
            let critical = lease_store::record_id(&status.key_hash, true);
            let applies = !matches!(refusal, Refusal::InsufficientQuota { .. });
            let mut records = vec![status.key_hash.clone()];
            if applies && lease_store::load(store, &critical).is_some() {
                records.push(critical);
            }
            for record in records {
                match lease_store::update(store, &record, vm, now_ms, revoke) {
                    Ok(holders) => {
                        for holder in holders {
                            store.notify(holder, &record);
                        }
                    }
                    Err(_) => self.stats.cas_failures += 1,
                }
                if let Some(slice) = self.slices.get_mut(&record) {
                    slice.valid_until_ms = 0;
                }
            }
        }
    }

    /// The usage batch could not be sent at all.
    pub fn usage_send_failed(&mut self, now_ms: u64) {
        self.reporter.send_failed(now_ms);
    }

    /// The control plane answered the usage batch with `status` (`None`: no answer).
    /// Returns the next batch if one is due at once (a full one waiting behind it), so a
    /// backlog drains as fast as the control plane acknowledges, not one batch a tick.
    pub fn on_usage_answer(
        &mut self,
        status: Option<u16>,
        now_ms: u64,
    ) -> (ReportOutcome, Option<Vec<u8>>) {
        let outcome = ReportOutcome::from_status(status);
        self.reporter.on_outcome(outcome, now_ms);
        let next = match (self.shutting_down, outcome) {
            // No later tick will retry: what the control plane did not take is lost.
            (true, ReportOutcome::Failed) => None,
            (true, _) => self.reporter.final_batch(&self.config.proxy_id, now_ms),
            (false, _) => self.reporter.next_batch(&self.config.proxy_id, now_ms),
        };
        (outcome, next)
    }

    /// The VM is shutting down (Envoy is stopping, or the filter's configuration went
    /// away): this VM's slices go back to the shared leases, and its queued records are
    /// sent at once instead of waiting for a full batch or the report interval, for as
    /// long as the host lets the VM live. Returns the first batch, unless one is already
    /// in flight; [`Gateway::on_usage_answer`] returns the next ones.
    pub fn on_shutdown(&mut self, now_ms: u64, store: &dyn SharedStore) -> Option<Vec<u8>> {
        self.shutting_down = true;
        self.settle_slices(now_ms, store, true);
        self.reporter.final_batch(&self.config.proxy_id, now_ms)
    }

    /// Forget keys this VM has not served for a while, so memory follows active users;
    /// their records are emptied once nothing in them is live.
    pub fn sweep(&mut self, now_ms: u64, store: &dyn SharedStore) {
        let idle: Vec<String> = self
            .active
            .iter()
            .filter(|(k, activity)| {
                now_ms.saturating_sub(activity.seen_ms) >= IDLE_MS
                    && !self.waiters.contains_key(*k)
                    // A slice goes once settled (the tick settles lapsed slices).
                    && !self.slices.get(*k).is_some_and(Slice::unsettled)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key_hash in idle {
            self.active.remove(&key_hash);
            self.slices.remove(&key_hash);
            if let Some((bytes, cas)) = store.get(&lease_store::record_key(&key_hash)) {
                let dead = Record::decode(&bytes).is_none_or(|r| {
                    r.lease.as_ref().is_none_or(|l| now_ms >= l.expires_at_ms)
                        && r.live_refusal(now_ms).is_none()
                        && !r.fetch_active(now_ms)
                        && now_ms.saturating_sub(r.last_used_ms) >= IDLE_MS
                });
                if dead {
                    lease_store::clear(store, &key_hash, cas);
                }
            }
        }
        let active = &self.active;
        self.key_hashes.retain(|_, hash| {
            active.contains_key(&**hash) || active.contains_key(&lease_store::record_id(hash, true))
        });
    }

    /// Keys this VM tracks (bounded by active users).
    pub fn tracked_keys(&self) -> usize {
        self.active.len()
    }
}

/// Reserve directly in the shared lease (requests that waited for it).
fn reserve(lease: &mut Lease, estimate: u64, now_ms: u64) -> Admission {
    let reserved = estimate.min(lease.room(now_ms));
    lease.consumed = lease.consumed.saturating_add(reserved);
    Admission {
        lease_id: lease.id.clone(),
        user_id: lease.user_id,
        reserved,
        quota_remaining: lease.quota_remaining.saturating_sub(lease.consumed),
        from_slice: false,
    }
}

/// Tokens to ask for: enough for [`LEASE_HORIZON_MS`] at the user's recent burn rate,
/// between a tenth of the per-proxy cap and the cap itself.
fn lease_size(config: &Config, record: &Record, now_ms: u64) -> u64 {
    let cap = config.lease_request_tokens;
    let floor = (cap / 10).max(1);
    let elapsed = now_ms
        .saturating_sub(record.window_start_ms)
        .clamp(1_000, WINDOW_MS);
    let wanted = record.window_tokens.saturating_mul(LEASE_HORIZON_MS) / elapsed;
    wanted.clamp(floor, cap)
}

/// When a lease granted at `now_ms` for `expires_in_ms` is renewed if still in use: with a
/// quarter of its life left, far more than a renewal takes.
fn renew_at(now_ms: u64, expires_in_ms: u64, margin_ms: u64) -> u64 {
    now_ms.saturating_add(expires_in_ms.saturating_sub(margin_ms) / 4 * 3)
}

/// How long before the control plane's expiry a lease stops being used: the answer's
/// delay ([`EXPIRY_MARGIN_MS`]) plus the longest a usage record waits to be reported.
pub(crate) fn expiry_margin_ms(config: &Config) -> u64 {
    EXPIRY_MARGIN_MS
        .saturating_add(config.report_interval_ms)
        .saturating_add(config.tick_ms)
}

fn lease_request_body(config: &Config, key_hash: &str, priority: &str, tokens: u64) -> Vec<u8> {
    let request = LeaseRequest {
        key_hash,
        proxy_id: &config.proxy_id,
        requested_tokens: tokens,
        priority,
    };
    serde_json::to_vec(&request).unwrap_or_default()
}

/// The priority whose requests draw on a separate lease (see [`lease_store::record_id`]).
const CRITICAL: &str = "critical";

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
