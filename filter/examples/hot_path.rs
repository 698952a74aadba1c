//! Native timing of the filter's per-request work (headers → body → response → end) on
//! a warm lease, with an in-memory shared store, per phase, with each phase's
//! allocations. A lower bound for the wasm build; the real overhead is measured in Envoy
//! by bench/filter.sh.
//!
//! In Envoy each callback starts with cold caches: between two callbacks of a request
//! the proxy (and, on a small machine, the client and upstream) run through far more
//! memory than the caches hold. `COLD=16` sweeps 16 MiB between phases to show that
//! cost, which is mostly cache misses on code and allocator metadata, not instructions:
//!
//!     cargo run --release --example hot_path -p alfred-filter
//!     COLD=16 cargo run --release --example hot_path -p alfred-filter

use alfred_filter::config::Config;
use alfred_filter::gateway::{Gateway, RequestHeaders};
use alfred_filter::ids::IdGen;
use alfred_filter::key::{self, ClientKey};
use alfred_filter::lease_store::{init_lock, CasMismatch, SharedStore};
use alfred_filter::protocol::LeaseAnswer;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counts allocations, so each phase's can be reported (each one is allocator work, and
/// in a cold VM the allocator's metadata is one more cache miss).
struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Default)]
struct Store(RefCell<HashMap<String, (Vec<u8>, u32)>>);

impl SharedStore for Store {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0
            .borrow()
            .get(key)
            .filter(|(v, _)| !v.is_empty())
            .cloned()
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        let mut map = self.0.borrow_mut();
        let next = map.get(key).map_or(1, |(_, c)| c + 1);
        if let (Some(cas), Some((_, cur))) = (cas, map.get(key)) {
            if cas != *cur {
                return Err(CasMismatch);
            }
        }
        map.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
    fn notify(&self, _: u64, _: &str) {}
}

const KEY: &str = "tp-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const BODY: &[u8] =
    br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;
const RESPONSE: &[u8] = br#"{"id":"chatcmpl-bench","object":"chat.completion","created":1764460800,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#;

fn main() -> Result<(), String> {
    let config = Config::parse(br#"{"proxy_id":"p","control_plane":{"cluster":"c","authority":"a","token":"t"},"providers":{"openai":{"auth_header":"authorization","auth_value":"Bearer sk"}}}"#)?;
    let store = Store::default();
    init_lock(&store);
    let mut g = Gateway::new(config, IdGen::from_seed([1; 16]));
    let headers = || RequestHeaders {
        path: "/v1/chat/completions",
        key: ClientKey::Found(KEY),
        content_length: Some(BODY.len() as u64),
        priority: None,
        privacy: None,
        project_id: None,
        has_body: true,
    };
    g.on_request_headers(0, headers(), 0, &store);
    let grant = LeaseAnswer::Granted {
        lease_id: "l".into(),
        user_id: 1,
        granted_tokens: u64::MAX / 4,
        expires_in_ms: u64::MAX / 4,
        quota_remaining: u64::MAX / 4,
        period_reset_s: 0,
        fail_open_tokens: 0,
    };
    g.on_lease_answer(&key::hash(KEY), Ok(grant), 0, &store);
    // COLD=<MiB>: between phases, sweep that much memory, as Envoy's own work between
    // two callbacks does, so each phase starts with cold caches (closer to the real cost).
    let cold_mib: usize = std::env::var("COLD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut junk = vec![0u64; cold_mib << 17];
    let mut phases = [std::time::Duration::ZERO; 5];
    let mut allocations = [0u64; 5];
    let mut phase_end = |phases: &mut [std::time::Duration; 5], i: usize, start: &mut Instant| {
        phases[i] += start.elapsed();
        allocations[i] += ALLOCATIONS.swap(0, Ordering::Relaxed);
        for (j, x) in junk.iter_mut().enumerate().step_by(8) {
            *x = x.wrapping_add(j as u64);
        }
        *start = Instant::now();
    };
    let n: u32 = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cold_mib > 0 { 5_000 } else { 200_000 });
    for ctx in 1..=n {
        let now = u64::from(ctx);
        let mut s = Instant::now();
        g.on_request_headers(ctx, headers(), now, &store);
        phase_end(&mut phases, 0, &mut s);
        g.on_request_body(
            ctx,
            BODY.len(),
            true,
            || Some(BODY.to_vec()),
            || now,
            &store,
        );
        phase_end(&mut phases, 1, &mut s);
        g.on_response_headers(ctx, 200, Some("application/json"));
        phase_end(&mut phases, 2, &mut s);
        g.on_response_body(ctx, RESPONSE, true);
        phase_end(&mut phases, 3, &mut s);
        g.on_request_end(ctx, now, &store);
        phase_end(&mut phases, 4, &mut s);
        if ctx % 500 == 0 {
            let _ = g.on_tick(u32::MAX, now, &store);
            g.on_usage_answer(Some(200), now);
        }
    }
    let names = [
        "request headers",
        "request body",
        "response headers",
        "response body",
        "end",
    ];
    let total: std::time::Duration = phases.iter().sum();
    println!(
        "per request (native, warm lease, caches {}): {:?}",
        if cold_mib > 0 {
            format!("swept {cold_mib} MiB between phases")
        } else {
            "warm".into()
        },
        total / n
    );
    for ((name, d), a) in names.iter().zip(phases).zip(allocations) {
        println!(
            "  {name:<17} {:>10?}  {:.1} allocations",
            d / n,
            a as f64 / f64::from(n)
        );
    }
    Ok(())
}
