//! Per-user lease records in Envoy's shared data: one record per user per Envoy process,
//! read and written by every worker VM with compare-and-swap.
//!
//! A record holds the user's current lease and what the process has consumed of it, a
//! cached refusal, the VM that is fetching a lease for the user (single flight across
//! VMs) and the VMs waiting for it, and a burn-rate window for sizing leases.
//!
//! Shared data cannot create a key conditionally (writing a missing key always
//! succeeds), so records are created only while holding the process-wide creation lock,
//! itself a record written once per process before any traffic (see [`SharedStore`]).

use crate::reply::Refusal;

/// The host's shared key-value store, as the gateway needs it. The adapter implements
/// it with proxy-wasm shared data and queues; tests with an in-memory fake.
pub trait SharedStore {
    /// Value and CAS token, or `None` for a missing (or emptied) key.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Write if the key's CAS token still equals `cas` (`None`: unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch>;
    /// Tell VM `vm` that the record of `key_hash` changed (its waiters may go on).
    fn notify(&self, vm: u64, key_hash: &str);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasMismatch;

/// Bounded retries of a compare-and-swap update before giving up (fail closed).
pub const CAS_RETRIES: usize = 32;

pub const LOCK_KEY: &str = "alfred/create-lock";
/// Version of the record encoding; records of another version read as missing.
const FORMAT: u8 = 4;
const PREFIX: &str = "alfred/u/";

/// Appended to a key hash to name the record of the user's critical-priority lease. The
/// control plane keeps a separate lease per (user, proxy, class), `critical` or `normal`
/// (every other priority), so the filter keeps one record per class: a refusal cached for
/// normal requests never refuses a critical one, and normal requests never spend a
/// critical lease. A key hash is 64 hex characters, so the two names never collide.
const CRITICAL_SUFFIX: &str = "/critical";

/// The name of the record a request draws on, which is also how a VM names the record
/// in its own maps: the key hash itself for the normal class.
pub fn record_id(key_hash: &str, critical: bool) -> String {
    let mut id = String::with_capacity(key_hash.len() + CRITICAL_SUFFIX.len());
    id.push_str(key_hash);
    if critical {
        id.push_str(CRITICAL_SUFFIX);
    }
    id
}

/// Whether record `id` holds a critical-priority lease.
pub fn is_critical(id: &str) -> bool {
    id.ends_with(CRITICAL_SUFFIX)
}

/// The key hash record `id` belongs to: what the control plane knows the key by.
pub fn key_hash_of(id: &str) -> &str {
    id.strip_suffix(CRITICAL_SUFFIX).unwrap_or(id)
}

/// The shared-data key of record `id` (see [`record_id`]).
pub fn record_key(key_hash: &str) -> String {
    let mut k = String::with_capacity(PREFIX.len() + key_hash.len());
    k.push_str(PREFIX);
    k.push_str(key_hash);
    k
}

/// Make sure the creation lock exists. Called from every VM's configuration, before the
/// listeners take traffic: racing first writes all write "unlocked", which is harmless.
pub fn init_lock(store: &dyn SharedStore) {
    if store.get(LOCK_KEY).is_none() {
        let _ = store.set(LOCK_KEY, &encode_lock(0, 0), None);
    }
}

fn encode_lock(owner: u64, until_ms: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&owner.to_le_bytes());
    b[8..].copy_from_slice(&until_ms.to_le_bytes());
    b
}

fn decode_lock(b: &[u8]) -> (u64, u64) {
    let mut r = Reader { b, at: 0 };
    (r.u64().unwrap_or(0), r.u64().unwrap_or(0))
}

/// How long a creation lock is honoured if its holder never releases it.
const LOCK_TTL_MS: u64 = 1_000;
/// Attempts at a creation lock held by another VM before giving up. Its holder keeps it
/// for four host calls, but the holder's thread can be preempted in between: the CAS
/// retry budget ran out in microseconds and failed a user's first request with 503
/// when two workers met new users at once; this many attempts outlast a preemption.
const LOCK_ATTEMPTS: usize = 1_024;

/// Create the record of `key` with `initial` unless it exists; returns whether this call
/// created it. Serialised by the process-wide lock.
fn create(
    store: &dyn SharedStore,
    key: &str,
    initial: &Record,
    vm: u64,
    now_ms: u64,
) -> Result<bool, CasMismatch> {
    for _ in 0..LOCK_ATTEMPTS {
        let Some((lock, cas)) = store.get(LOCK_KEY) else {
            init_lock(store);
            continue;
        };
        let (owner, until) = decode_lock(&lock);
        if owner != 0 && owner != vm && now_ms < until {
            // Someone else is creating — perhaps this very record.
            if store.get(key).is_some() {
                return Ok(false);
            }
            continue;
        }
        if store
            .set(LOCK_KEY, &encode_lock(vm, now_ms + LOCK_TTL_MS), Some(cas))
            .is_err()
        {
            continue;
        }
        let created = if store.get(key).is_none() {
            let _ = store.set(key, &initial.encode(), None);
            true
        } else {
            false
        };
        // Release; a failed release only means it expires by itself.
        if let Some((_, cas)) = store.get(LOCK_KEY) {
            let _ = store.set(LOCK_KEY, &encode_lock(0, 0), Some(cas));
        }
        return Ok(created);
    }
    Err(CasMismatch)
}

/// Read-modify-write the record of `key_hash` with compare-and-swap. `f` sees the current
/// record (a default one when missing) and changes it; its result is returned once the
/// write succeeded. `f` may run several times.
pub fn update<R>(
    store: &dyn SharedStore,
    key_hash: &str,
    vm: u64,
    now_ms: u64,
    mut f: impl FnMut(&mut Record) -> R,
) -> Result<R, CasMismatch> {
    update_if(store, key_hash, vm, now_ms, |record| Some(f(record)))?.ok_or(CasMismatch)
}

/// [`update`] for a change that may not be needed: when `f` returns `None` the record is
/// left as it was — not written, and not created when missing — and so is the answer.
/// Each write is a host call and a copy of the record, so reads that find nothing to do
/// stay reads.
pub fn update_if<R>(
    store: &dyn SharedStore,
    key_hash: &str,
    vm: u64,
    now_ms: u64,
    mut f: impl FnMut(&mut Record) -> Option<R>,
) -> Result<Option<R>, CasMismatch> {
    let key = record_key(key_hash);
    for _ in 0..CAS_RETRIES {
        match store.get(&key) {
            Some((bytes, cas)) => {
                let mut record = Record::decode(&bytes).unwrap_or_default();
                let Some(out) = f(&mut record) else {
                    return Ok(None);
                };
                if store.set(&key, &record.encode(), Some(cas)).is_ok() {
                    return Ok(Some(out));
                }
            }
            None => {
                if f(&mut Record::default()).is_none() {
                    return Ok(None);
                }
                create(store, &key, &Record::default(), vm, now_ms)?;
            }
        }
    }
    Err(CasMismatch)
}

/// Read the record of `key_hash` without changing it.
pub fn load(store: &dyn SharedStore, key_hash: &str) -> Option<Record> {
    store
        .get(&record_key(key_hash))
        .and_then(|(b, _)| Record::decode(&b))
}

/// Empty an idle record (shared data keys cannot be removed, but their values can).
pub fn clear(store: &dyn SharedStore, key_hash: &str, expect_cas: u32) {
    let _ = store.set(&record_key(key_hash), &[], Some(expect_cas));
}

/// A refusal the control plane gave, cached until `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedRefusal {
    pub refusal: Refusal,
    pub until_ms: u64,
}

/// The lease a process holds for a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    pub id: String,
    pub user_id: i64,
    pub granted: u64,
    /// Reserved by requests in flight plus settled usage, across all VMs.
    pub consumed: u64,
    pub expires_at_ms: u64,
    /// From then on, a request that finds the lease still in use has it renewed in the
    /// background, so users who keep working never wait for its expiry.
    pub renew_at_ms: u64,
    /// What the user could still spend when the lease was granted, this lease included.
    pub quota_remaining: u64,
    pub period_reset_s: u64,
}

impl Lease {
    pub fn room(&self, now_ms: u64) -> u64 {
        if now_ms >= self.expires_at_ms {
            0
        } else {
            self.granted.saturating_sub(self.consumed)
        }
    }
}

/// One user's shared record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub lease: Option<Lease>,
    pub refusal: Option<CachedRefusal>,
    /// VM fetching a lease for this user (0: none), until when that claim holds.
    pub fetch_owner: u64,
    pub fetch_until_ms: u64,
    /// VMs with requests waiting for that fetch, or for other VMs' slices to come back.
    pub waiting_vms: Vec<u64>,
    /// VMs holding a slice of the lease (credit claimed and not yet settled back), each
    /// until when it counts: its slice's lapse plus the time its tick takes to settle it.
    pub slice_vms: Vec<(u64, u64)>,
    /// When the control plane last confirmed the key and user (revocation, suspension).
    pub checked_at_ms: u64,
    /// Burn-rate window: tokens settled since `window_start_ms`.
    pub window_start_ms: u64,
    pub window_tokens: u64,
    pub last_used_ms: u64,
    /// The user's id once a grant named it, and what this process may still serve the
    /// user without the control plane (refreshed by every grant).
    pub user_id: i64,
    pub fail_open_left: u64,
}

impl Record {
    pub fn fetch_active(&self, now_ms: u64) -> bool {
        self.fetch_owner != 0 && now_ms < self.fetch_until_ms
    }

    /// Whether a VM other than `vm` may hold unspent credit of the live lease in its
    /// slice (credit of a dropped or expired lease is no use to anyone).
    pub fn others_hold_slices(&self, vm: u64, now_ms: u64) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| now_ms < l.expires_at_ms)
            && self
                .slice_vms
                .iter()
                .any(|&(holder, until)| holder != vm && now_ms < until)
    }

    /// `vm` holds a slice until `until_ms` (entries that no longer count are dropped).
    pub fn hold_slice(&mut self, vm: u64, until_ms: u64, now_ms: u64) {
        self.slice_vms
            .retain(|&(holder, until)| holder != vm && now_ms < until);
        self.slice_vms.push((vm, until_ms));
    }

    /// `vm` settled its slice.
    pub fn release_slice(&mut self, vm: u64) {
        self.slice_vms.retain(|&(holder, _)| holder != vm);
    }

    pub fn live_refusal(&self, now_ms: u64) -> Option<&Refusal> {
        self.refusal
            .as_ref()
            .filter(|r| now_ms < r.until_ms)
            .map(|r| &r.refusal)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(160);
        w.push(FORMAT); // format version
        match &self.lease {
            Some(l) => {
                w.push(1);
                put_str(&mut w, &l.id);
                put_u64(&mut w, l.user_id as u64);
                for v in [
                    l.granted,
                    l.consumed,
                    l.expires_at_ms,
                    l.renew_at_ms,
                    l.quota_remaining,
                    l.period_reset_s,
                ] {
                    put_u64(&mut w, v);
                }
            }
            None => w.push(0),
        }
        match &self.refusal {
            Some(r) => {
                let (code, scope, retry) = match &r.refusal {
                    Refusal::InvalidApiKey => (1, "", 0),
                    Refusal::UserSuspended => (2, "", 0),
                    Refusal::InsufficientQuota {
                        budget_scope,
                        retry_after_s,
                    } => (3, budget_scope.as_str(), *retry_after_s),
                    _ => (4, "", 0),
                };
                w.push(code);
                put_str(&mut w, scope);
                put_u64(&mut w, retry);
                put_u64(&mut w, r.until_ms);
            }
            None => w.push(0),
        }
        for v in [self.fetch_owner, self.fetch_until_ms] {
            put_u64(&mut w, v);
        }
        w.push(self.waiting_vms.len().min(255) as u8);
        for vm in self.waiting_vms.iter().take(255) {
            put_u64(&mut w, *vm);
        }
        w.push(self.slice_vms.len().min(255) as u8);
        for (vm, until) in self.slice_vms.iter().take(255) {
            put_u64(&mut w, *vm);
            put_u64(&mut w, *until);
        }
        for v in [
            self.checked_at_ms,
            self.window_start_ms,
            self.window_tokens,
            self.last_used_ms,
        ] {
            put_u64(&mut w, v);
        }
        put_u64(&mut w, self.user_id as u64);
        put_u64(&mut w, self.fail_open_left);
        w
    }

    /// `None` for empty or unreadable bytes (treated as a missing record).
    pub fn decode(b: &[u8]) -> Option<Record> {
        let mut r = Reader { b, at: 0 };
        if r.u8()? != FORMAT {
            return None;
        }
        let lease = match r.u8()? {
            1 => Some(Lease {
                id: r.str()?,
                user_id: r.u64()? as i64,
                granted: r.u64()?,
                consumed: r.u64()?,
                expires_at_ms: r.u64()?,
                renew_at_ms: r.u64()?,
                quota_remaining: r.u64()?,
                period_reset_s: r.u64()?,
            }),
            _ => None,
        };
        let refusal = match r.u8()? {
            0 => None,
            code => {
                let scope = r.str()?;
                let retry = r.u64()?;
                let until_ms = r.u64()?;
                let refusal = match code {
                    1 => Refusal::InvalidApiKey,
                    2 => Refusal::UserSuspended,
                    3 => Refusal::InsufficientQuota {
                        budget_scope: scope,
                        retry_after_s: retry,
                    },
                    _ => Refusal::GovernanceUnavailable,
                };
                Some(CachedRefusal { refusal, until_ms })
            }
        };
        let fetch_owner = r.u64()?;
        let fetch_until_ms = r.u64()?;
        let n = r.u8()?;
        let mut waiting_vms = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            waiting_vms.push(r.u64()?);
        }
        let n = r.u8()?;
        let mut slice_vms = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            slice_vms.push((r.u64()?, r.u64()?));
        }
        Some(Record {
            lease,
            refusal,
            fetch_owner,
            fetch_until_ms,
            waiting_vms,
            slice_vms,
            checked_at_ms: r.u64()?,
            window_start_ms: r.u64()?,
            window_tokens: r.u64()?,
            last_used_ms: r.u64()?,
            user_id: r.u64()? as i64,
            fail_open_left: r.u64()?,
        })
    }
}

fn put_u64(w: &mut Vec<u8>, v: u64) {
    w.extend_from_slice(&v.to_le_bytes());
}

fn put_str(w: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(255)];
    w.push(bytes.len() as u8);
    w.extend_from_slice(bytes);
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u64(&mut self) -> Option<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Some(u64::from_le_bytes(a))
    }
    fn str(&mut self) -> Option<String> {
        let n = usize::from(self.u8()?);
        Some(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
}

#[cfg(test)]
pub mod fake {
    //! An in-memory shared store with Envoy's semantics, and hooks to force conflicts.

    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    #[derive(Default)]
    pub struct FakeStore {
        pub data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        next_cas: Cell<u32>,
        /// Each `set` with a CAS fails while this is positive (and decrements it).
        pub fail_next_sets: Cell<usize>,
        pub notified: RefCell<Vec<(u64, String)>>,
        pub sets: Cell<usize>,
        /// Reads of records (keys other than the creation lock), each a host call.
        pub record_gets: Cell<usize>,
    }

    impl SharedStore for FakeStore {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            if key != LOCK_KEY {
                self.record_gets.set(self.record_gets.get() + 1);
            }
            self.data
                .borrow()
                .get(key)
                .filter(|(v, _)| !v.is_empty())
                .cloned()
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
            self.sets.set(self.sets.get() + 1);
            let mut data = self.data.borrow_mut();
            if let (Some(cas), Some((_, current))) = (cas, data.get(key)) {
                if self.fail_next_sets.get() > 0 {
                    self.fail_next_sets.set(self.fail_next_sets.get() - 1);
                    return Err(CasMismatch);
                }
                if cas != *current {
                    return Err(CasMismatch);
                }
            }
            self.next_cas.set(self.next_cas.get() + 1);
            data.insert(key.to_string(), (value.to_vec(), self.next_cas.get()));
            Ok(())
        }
        fn notify(&self, vm: u64, key_hash: &str) {
            self.notified.borrow_mut().push((vm, key_hash.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeStore;
    use super::*;

    fn sample() -> Record {
        Record {
            lease: Some(Lease {
                id: "lease-1".into(),
                user_id: 42,
                granted: 1000,
                consumed: 250,
                expires_at_ms: 60_000,
                renew_at_ms: 45_000,
                quota_remaining: 9000,
                period_reset_s: 3600,
            }),
            refusal: Some(CachedRefusal {
                refusal: Refusal::InsufficientQuota {
                    budget_scope: "team".into(),
                    retry_after_s: 7,
                },
                until_ms: 99,
            }),
            fetch_owner: 3,
            fetch_until_ms: 4,
            waiting_vms: vec![5, 6],
            slice_vms: vec![(5, 12)],
            checked_at_ms: 7,
            window_start_ms: 8,
            window_tokens: 9,
            last_used_ms: 10,
            user_id: 42,
            fail_open_left: 11,
        }
    }

    #[test]
    fn update_if_writes_only_what_changes() {
        let store = FakeStore::default();
        init_lock(&store);
        let sets = store.sets.get();
        // Nothing to do on a missing record: it is not created.
        assert_eq!(update_if(&store, "k", 1, 0, |_| None::<()>), Ok(None));
        assert!(store.get(&record_key("k")).is_none());
        assert_eq!(store.sets.get(), sets);
        // A change creates it and is written.
        assert_eq!(
            update_if(&store, "k", 1, 0, |r| {
                r.window_tokens = 7;
                Some(7)
            }),
            Ok(Some(7))
        );
        let written = store.sets.get();
        assert_eq!(load(&store, "k").map(|r| r.window_tokens), Some(7));
        // Nothing to do on an existing record: read, not written, even if `f` touched it.
        assert_eq!(
            update_if(&store, "k", 1, 0, |r| {
                r.window_tokens = 9;
                None::<()>
            }),
            Ok(None)
        );
        assert_eq!(store.sets.get(), written);
        assert_eq!(load(&store, "k").map(|r| r.window_tokens), Some(7));
    }

    #[test]
    fn record_round_trips_and_garbage_is_a_missing_record() {
        let r = sample();
        assert_eq!(Record::decode(&r.encode()), Some(r));
        assert_eq!(
            Record::decode(&Record::default().encode()),
            Some(Record::default())
        );
        for bad in [&b""[..], b"\x01", b"\x03\x01\x05ab", &[0xff; 40]] {
            assert_eq!(Record::decode(bad), None);
        }
        let enc = sample().encode();
        for cut in 0..enc.len() {
            assert_eq!(Record::decode(&enc[..cut]), None, "truncated at {cut}");
        }
    }

    #[test]
    fn update_creates_once_and_retries_cas_conflicts() {
        let store = FakeStore::default();
        init_lock(&store);
        let n = update(&store, "h", 1, 0, |r| {
            r.window_tokens += 1;
            r.window_tokens
        })
        .unwrap();
        assert_eq!(n, 1);
        // Two conflicting writes: the update re-reads and still applies exactly once.
        store.fail_next_sets.set(2);
        let n = update(&store, "h", 2, 0, |r| {
            r.window_tokens += 1;
            r.window_tokens
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(load(&store, "h").unwrap().window_tokens, 2);
        // Endless conflicts: bounded, reported.
        store.fail_next_sets.set(usize::MAX);
        assert_eq!(
            update(&store, "h", 2, 0, |r| r.window_tokens += 1),
            Err(CasMismatch)
        );
        store.fail_next_sets.set(0);
        assert_eq!(load(&store, "h").unwrap().window_tokens, 2);
    }

    #[test]
    fn creation_is_serialised_by_the_lock() {
        let store = FakeStore::default();
        init_lock(&store);
        // Another VM holds the creation lock: this VM cannot create until it expires.
        store.set(LOCK_KEY, &encode_lock(9, 500), None).unwrap();
        assert_eq!(
            create(&store, &record_key("k"), &sample(), 1, 100),
            Err(CasMismatch)
        );
        assert!(store.get(&record_key("k")).is_none());
        // The holder created this very record meanwhile: nothing left to do.
        store
            .set(&record_key("j"), &sample().encode(), None)
            .unwrap();
        assert_eq!(
            create(&store, &record_key("j"), &Record::default(), 1, 100),
            Ok(false)
        );
        assert_eq!(load(&store, "j"), Some(sample()));
        assert_eq!(
            create(&store, &record_key("k"), &sample(), 1, 600),
            Ok(true)
        );
        // Existing records are never overwritten by creation.
        assert_eq!(
            create(&store, &record_key("k"), &Record::default(), 2, 700),
            Ok(false)
        );
        assert_eq!(load(&store, "k"), Some(sample()));
        assert_eq!(
            decode_lock(&store.get(LOCK_KEY).unwrap().0),
            (0, 0),
            "released"
        );
    }
}
