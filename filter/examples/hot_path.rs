//! Native timing of the filter's per-request work (headers → body → response → end) on
//! a warm lease, with an in-memory shared store. A lower bound for the wasm build; the
//! real overhead is measured in Envoy by bench/filter.sh.

use alfred_filter::config::Config;
use alfred_filter::gateway::{Gateway, RequestHeaders};
use alfred_filter::ids::IdGen;
use alfred_filter::key::{self, ClientKey};
use alfred_filter::lease_store::{init_lock, CasMismatch, SharedStore};
use alfred_filter::protocol::LeaseAnswer;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

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
    let n = 200_000u32;
    let start = Instant::now();
    for ctx in 1..=n {
        let now = u64::from(ctx);
        g.on_request_headers(ctx, headers(), now, &store);
        g.on_request_body(
            ctx,
            BODY.len(),
            true,
            || Some(BODY.to_vec()),
            || now,
            &store,
        );
        g.on_response_headers(ctx, 200, Some("application/json"));
        g.on_response_body(ctx, RESPONSE, true);
        g.on_request_end(ctx, now, &store);
        if ctx % 500 == 0 {
            let _ = g.on_tick(u32::MAX, now, &store);
            g.on_usage_answer(Some(200), now);
        }
    }
    let per = start.elapsed() / n;
    println!("per request (native, warm lease): {per:?}");
    Ok(())
}
