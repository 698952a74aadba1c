//! The gateway driven the way the adapter drives it, with a fake clock, a fake shared
//! store (several gateways on one store are several worker VMs of one Envoy) and fake
//! control-plane answers.

use super::*;
use crate::config::Config;
use crate::lease_store::fake::FakeStore;
use crate::lease_store::init_lock;
use crate::protocol::LeaseAnswer;

const KEY_A: &str = "tp-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const KEY_B: &str = "tp-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// A gateway whose records are reported at the first tick (`report_interval_ms` 0):
/// the interval has tests of its own.
fn gateway(seed: u8) -> Gateway {
    let config = Config::parse(
        br#"{"proxy_id":"envoy-test","control_plane":{"cluster":"cp","authority":"cp","token":"t"},
            "lease_request_tokens":1000,"default_estimate_tokens":100,"tick_ms":200,
            "report_interval_ms":0,
            "providers":{"openai":{"auth_header":"authorization","auth_value":"Bearer sk-provider"},
                         "anthropic":{"auth_header":"x-api-key","auth_value":"sk-ant"}}}"#,
    )
    .unwrap();
    Gateway::new(config, IdGen::from_seed([seed; 16]))
}

fn store() -> FakeStore {
    let s = FakeStore::default();
    init_lock(&s);
    s
}

fn headers(key: &str) -> RequestHeaders<'_> {
    RequestHeaders {
        path: "/v1/chat/completions",
        key: ClientKey::Found(key),
        content_length: Some(400),
        priority: None,
        privacy: None,
        project_id: None,
        has_body: false,
    }
}

fn with_body(key: &str) -> RequestHeaders<'_> {
    RequestHeaders {
        has_body: true,
        ..headers(key)
    }
}

fn granted_id(id: &str, tokens: u64, ttl_ms: u64) -> Result<LeaseAnswer, String> {
    Ok(LeaseAnswer::Granted {
        lease_id: id.to_string(),
        user_id: 42,
        granted_tokens: tokens,
        expires_in_ms: ttl_ms,
        quota_remaining: 5000,
        period_reset_s: 3600,
        fail_open_tokens: 0,
    })
}

fn granted(tokens: u64, ttl_ms: u64) -> Result<LeaseAnswer, String> {
    granted_id(&format!("lease-{tokens}-{ttl_ms}"), tokens, ttl_ms)
}

fn credential() -> Credential {
    Credential::new((
        "authorization".to_string(),
        "Bearer sk-provider".to_string(),
    ))
}

const CHAT: &[u8] = br#"{"id":"c","object":"chat.completion","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29}}"#;

fn complete(g: &mut Gateway, s: &FakeStore, ctx: u32, body: &[u8], now: u64) {
    g.on_response_headers(ctx, 200, Some("application/json"));
    g.on_response_body(ctx, body, true);
    g.on_request_end(ctx, now, s);
}

fn sent_records(g: &mut Gateway, s: &FakeStore, now: u64) -> Vec<serde_json::Value> {
    let body = g.on_tick(1, now, s).usage_batch.expect("a batch is due");
    g.on_usage_answer(Some(200), now);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["proxy_id"], "envoy-test");
    v["records"].as_array().unwrap().clone()
}

fn status_of(outcome: &WaiterOutcome) -> Option<u32> {
    match outcome {
        WaiterOutcome::Resume | WaiterOutcome::AwaitBody => None,
        WaiterOutcome::Respond(r) => Some(r.status),
    }
}

fn consumed(s: &FakeStore, key: &str) -> u64 {
    lease_store::load(s, &key::hash(key))
        .unwrap()
        .lease
        .unwrap()
        .consumed
}

/// What the process has consumed of KEY_A-like `key`'s lease once `g` settled its slices.
fn settled(g: &mut Gateway, s: &FakeStore, key: &str, now: u64) -> u64 {
    g.settle_slices(now, s, true);
    consumed(s, key)
}

/// Admit `ctx` on a fresh lease of `tokens` for KEY_A.
fn warm(g: &mut Gateway, s: &FakeStore, tokens: u64) {
    g.on_request_headers(900, headers(KEY_A), 0, s);
    g.on_lease_answer(&key::hash(KEY_A), granted(tokens, 60_000), 0, s);
    complete(g, s, 900, br#"{"usage":{"total_tokens":0}}"#, 0);
    let _ = g.on_tick(1, 0, s);
    g.on_usage_answer(Some(200), 0);
}

#[test]
fn cold_user_waits_once_then_requests_are_served_from_the_lease() {
    let s = store();
    let mut g = gateway(7);
    let HeadersOutcome::Wait {
        credential: cred,
        fetch: Some(fetch),
        ..
    } = g.on_request_headers(1, headers(KEY_A), 0, &s)
    else {
        panic!("first request must wait for a lease")
    };
    assert_eq!(cred, credential());
    assert_eq!(fetch.key_hash, key::hash(KEY_A));
    let body: serde_json::Value = serde_json::from_slice(&fetch.body).unwrap();
    assert_eq!(
        (body["requested_tokens"].as_u64(), body["proxy_id"].as_str()),
        (Some(100), Some("envoy-test"))
    );
    assert!(
        !String::from_utf8_lossy(&fetch.body).contains(KEY_A),
        "the raw key never leaves the proxy"
    );

    // A second request of the same user while the lease is on its way: single flight.
    assert_eq!(
        g.on_request_headers(2, headers(KEY_A), 1, &s),
        HeadersOutcome::Wait {
            credential: credential(),
            fetch: None,
            inspect_body: false
        }
    );
    let outcomes = g.on_lease_answer(&fetch.key_hash, granted(1000, 60_000), 5, &s);
    assert_eq!(
        outcomes,
        vec![(1, WaiterOutcome::Resume), (2, WaiterOutcome::Resume)]
    );

    // Warm: no wait. Estimate = 100 + 400/4 = 200 per request; 3 reserved → 600.
    assert_eq!(
        g.on_request_headers(3, headers(KEY_A), 6, &s),
        HeadersOutcome::Forward {
            credential: credential(),
            inspect_body: false
        }
    );
    let added = g
        .on_response_headers(3, 200, Some("application/json"))
        .unwrap();
    assert_eq!(added.request_id.len(), 32);
    assert_eq!(added.quota_remaining.unwrap().as_str(), "4400");
    g.on_response_body(3, CHAT, true);
    g.on_request_end(3, 7, &s);
    g.on_request_end(3, 8, &s); // on_log after end of stream: idempotent
    complete(&mut g, &s, 1, CHAT, 9);
    complete(&mut g, &s, 2, CHAT, 9);
    assert_eq!(settled(&mut g, &s, KEY_A, 9), 3 * 29);

    let records = sent_records(&mut g, &s, 10);
    assert_eq!(records.len(), 3);
    for r in &records {
        assert_eq!(
            (
                r["total_tokens"].as_u64(),
                r["input_tokens"].as_u64(),
                r["output_tokens"].as_u64()
            ),
            (Some(29), Some(19), Some(10))
        );
        assert_eq!(
            (
                r["model"].as_str(),
                r["user_id"].as_i64(),
                r["estimated"].as_bool()
            ),
            (Some("gpt-4o-mini"), Some(42), Some(false))
        );
        assert_eq!(r["lease_id"], "lease-1000-60000");
    }
    let ids: std::collections::HashSet<_> = records
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "request ids are distinct");
    assert_eq!(g.stats.waited, 2);
    assert_eq!(g.stats.requests, 3);
}

#[test]
fn worker_vms_share_one_lease_and_one_fetch() {
    let s = store();
    let (mut g1, mut g2) = (gateway(1), gateway(2));
    let HeadersOutcome::Wait { fetch: Some(_), .. } =
        g1.on_request_headers(1, headers(KEY_A), 0, &s)
    else {
        panic!()
    };
    // The other VM misses at the same time: it waits for g1's fetch instead of sending one.
    assert!(matches!(
        g2.on_request_headers(1, headers(KEY_A), 1, &s),
        HeadersOutcome::Wait { fetch: None, .. }
    ));
    assert_eq!(
        g1.on_lease_answer(&key::hash(KEY_A), granted(1000, 60_000), 2, &s),
        vec![(1, WaiterOutcome::Resume)]
    );
    assert_eq!(
        *s.notified.borrow(),
        vec![(g2.vm_id(), key::hash(KEY_A))],
        "g2 is woken"
    );
    assert_eq!(
        g2.on_notified(&key::hash(KEY_A), 3, &s),
        vec![(1, WaiterOutcome::Resume)]
    );
    assert_eq!(
        consumed(&s, KEY_A),
        400,
        "both reservations are in the one shared lease"
    );
    // Warm on both VMs now.
    assert!(matches!(
        g2.on_request_headers(2, headers(KEY_A), 4, &s),
        HeadersOutcome::Forward { .. }
    ));
    complete(&mut g2, &s, 1, CHAT, 5);
    complete(&mut g1, &s, 1, CHAT, 5);
    assert_eq!(consumed(&s, KEY_A), 29 + 29 + 200);
    assert_eq!(g1.stats.lease_fetches + g2.stats.lease_fetches, 1);
}

#[test]
fn reservations_survive_cas_conflicts_exactly_once() {
    let s = store();
    let mut g = gateway(1);
    warm(&mut g, &s, 1000);
    s.fail_next_sets.set(5);
    assert!(matches!(
        g.on_request_headers(1, headers(KEY_A), 1, &s),
        HeadersOutcome::Forward { .. }
    ));
    assert_eq!(consumed(&s, KEY_A), 200);
    s.fail_next_sets.set(usize::MAX);
    let HeadersOutcome::Respond(reply) = g.on_request_headers(2, headers(KEY_A), 1, &s) else {
        panic!()
    };
    assert_eq!(reply.status, 503, "endless conflicts fail closed");
    s.fail_next_sets.set(0);
    assert_eq!(consumed(&s, KEY_A), 200);
}

#[test]
fn renewal_starts_at_low_water_from_the_root_without_making_anyone_wait() {
    let s = store();
    let mut g = gateway(1);
    warm(&mut g, &s, 1000);
    for ctx in 1..=3 {
        assert!(matches!(
            g.on_request_headers(ctx, headers(KEY_A), 10, &s),
            HeadersOutcome::Forward { .. }
        ));
        assert!(g.on_tick(1, 10, &s).lease_fetches.is_empty());
    }
    // 800 of 1000 reserved: below a quarter left → renewal, sent by the root context.
    assert!(matches!(
        g.on_request_headers(4, headers(KEY_A), 11, &s),
        HeadersOutcome::Forward { .. }
    ));
    let work = g.on_tick(1, 12, &s);
    assert_eq!(work.lease_fetches.len(), 1);
    assert!(g.on_tick(1, 13, &s).lease_fetches.is_empty(), "sent once");
    // The control plane extends the same lease to 3000.
    g.on_lease_answer(
        &key::hash(KEY_A),
        granted_id("lease-1000-60000", 3000, 60_000),
        14,
        &s,
    );
    assert_eq!(
        settled(&mut g, &s, KEY_A, 14),
        800,
        "four requests in flight"
    );
    let lease = lease_store::load(&s, &key::hash(KEY_A))
        .unwrap()
        .lease
        .unwrap();
    assert_eq!(lease.granted, 3000);
    // A renewal refused for quota keeps the room that is left.
    for ctx in 5..=12 {
        g.on_request_headers(ctx, headers(KEY_A), 15, &s); // 800 + 1600 of 3000: renew
    }
    let _ = g.on_tick(1, 16, &s);
    let exhausted = Ok(LeaseAnswer::Exhausted {
        user_id: 42,
        budget_scope: "personal".into(),
        period_reset_s: 9,
    });
    g.on_lease_answer(&key::hash(KEY_A), exhausted, 17, &s);
    assert!(matches!(
        g.on_request_headers(16, headers(KEY_A), 18, &s),
        HeadersOutcome::Forward { .. }
    ));
    // Still low, but the control plane just said no: a new slice does not ask again
    // until that answer lapses.
    let _ = g.on_tick(1, 600, &s); // the slice lapses and is settled
    assert!(matches!(
        g.on_request_headers(17, headers(KEY_A), 601, &s),
        HeadersOutcome::Forward { .. }
    ));
    assert!(g.on_tick(1, 602, &s).lease_fetches.is_empty());
    let _ = g.on_tick(1, 17 + REFUSAL_TTL_MS, &s);
    assert!(matches!(
        g.on_request_headers(18, headers(KEY_A), 17 + REFUSAL_TTL_MS + 1, &s),
        HeadersOutcome::Forward { .. }
    ));
    assert_eq!(
        g.on_tick(1, 17 + REFUSAL_TTL_MS + 2, &s)
            .lease_fetches
            .len(),
        1
    );
}

#[test]
fn a_lease_in_use_is_renewed_before_it_expires_and_an_idle_one_is_left_to_expire() {
    let s = store();
    let mut g = gateway(1);
    warm(&mut g, &s, 100_000); // 60 s lease granted at 0, hardly used
    let renew_from = (60_000 - expiry_margin_ms(g.config())) / 4 * 3;
    // Early in its life, use does not renew it.
    assert!(matches!(
        g.on_request_headers(1, headers(KEY_A), renew_from - 1, &s),
        HeadersOutcome::Forward { .. }
    ));
    complete(&mut g, &s, 1, CHAT, renew_from - 1);
    assert!(g.on_tick(1, renew_from - 1, &s).lease_fetches.is_empty());
    // In its last quarter, the next request that claims credit renews it, from the root
    // context, while the request goes on.
    assert!(matches!(
        g.on_request_headers(2, headers(KEY_A), renew_from + 600, &s),
        HeadersOutcome::Forward { .. }
    ));
    complete(&mut g, &s, 2, CHAT, renew_from + 600);
    let work = g.on_tick(1, renew_from + 601, &s);
    assert_eq!(work.lease_fetches.len(), 1);
    assert!(
        g.on_tick(1, renew_from + 700, &s).lease_fetches.is_empty(),
        "once"
    );
    g.on_lease_answer(
        &key::hash(KEY_A),
        granted_id("lease-100000-60000", 100_000, 60_000),
        renew_from + 800,
        &s,
    );
    // Past the first lease's end the user is still served without waiting.
    assert!(matches!(
        g.on_request_headers(3, headers(KEY_A), 61_000, &s),
        HeadersOutcome::Forward { .. }
    ));
    complete(&mut g, &s, 3, CHAT, 61_000);

    // A user who stops: no request claims credit, so nothing renews the lease.
    let s = store();
    let mut idle = gateway(2);
    warm(&mut idle, &s, 100_000);
    for now in (0..=60_000).step_by(200) {
        assert!(idle.on_tick(1, now, &s).lease_fetches.is_empty());
    }
}

#[test]
fn a_dead_fetcher_is_taken_over_after_its_claim_expires() {
    let s = store();
    let (mut g1, mut g2) = (gateway(1), gateway(2));
    g1.on_request_headers(1, headers(KEY_A), 0, &s); // g1 claims, then never answers
    g2.on_request_headers(1, headers(KEY_A), 0, &s);
    assert!(g2
        .on_tick(1, FETCH_CLAIM_MS - 1, &s)
        .lease_fetches
        .is_empty());
    let work = g2.on_tick(1, FETCH_CLAIM_MS, &s);
    assert_eq!(work.lease_fetches.len(), 1);
    assert_eq!(
        g2.on_lease_answer(
            &key::hash(KEY_A),
            granted(1000, 60_000),
            FETCH_CLAIM_MS + 1,
            &s
        ),
        vec![(1, WaiterOutcome::Resume)]
    );
}

#[test]
fn leader_gone_hands_the_lease_request_to_the_root_context() {
    let s = store();
    let mut g = gateway(1);
    g.on_request_headers(1, headers(KEY_A), 0, &s);
    g.on_request_headers(2, headers(KEY_A), 0, &s);
    g.on_request_end(1, 1, &s); // the leader's client went away; its call is cancelled
    let work = g.on_tick(99, 2, &s);
    assert_eq!(work.lease_fetches.len(), 1);
    assert_eq!(work.lease_fetches[0].key_hash, key::hash(KEY_A));
    assert!(
        g.on_tick(99, 3, &s).lease_fetches.is_empty(),
        "taken over once"
    );
    assert_eq!(
        g.on_lease_answer(&key::hash(KEY_A), granted(1000, 60_000), 4, &s),
        vec![(2, WaiterOutcome::Resume)]
    );
}

#[test]
fn lease_running_dry_asks_again_and_exhaustion_is_429_remembered_briefly() {
    let s = store();
    let mut g = gateway(1);
    let hash = key::hash(KEY_A);
    g.on_request_headers(1, headers(KEY_A), 0, &s);
    assert_eq!(
        g.on_lease_answer(&hash, granted(20, 60_000), 0, &s),
        vec![(1, WaiterOutcome::Resume)]
    );
    complete(&mut g, &s, 1, CHAT, 1); // 29 used of a 20-token grant

    let HeadersOutcome::Wait { fetch: Some(_), .. } =
        g.on_request_headers(2, headers(KEY_A), 2, &s)
    else {
        panic!("a spent lease must be renewed")
    };
    let exhausted = Ok(LeaseAnswer::Exhausted {
        user_id: 42,
        budget_scope: "personal".into(),
        period_reset_s: 777,
    });
    let outcomes = g.on_lease_answer(&hash, exhausted, 3, &s);
    let WaiterOutcome::Respond(reply) = &outcomes[0].1 else {
        panic!("must refuse")
    };
    assert_eq!(reply.status, 429);
    assert!(reply.headers.contains(&("retry-after", "777".to_string())));
    assert!(reply
        .headers
        .contains(&("x-should-retry", "false".to_string())));

    let HeadersOutcome::Respond(reply) =
        g.on_request_headers(3, headers(KEY_A), 3 + REFUSAL_TTL_MS - 1, &s)
    else {
        panic!("cached refusal")
    };
    assert_eq!(reply.status, 429);
    assert!(matches!(
        g.on_request_headers(4, headers(KEY_A), 3 + REFUSAL_TTL_MS, &s),
        HeadersOutcome::Wait { fetch: Some(_), .. }
    ));
}

#[test]
fn unknown_key_and_suspended_user_are_refused_in_the_contract_shape() {
    let s = store();
    let mut g = gateway(1);
    let hash = key::hash(KEY_A);
    g.on_request_headers(1, headers(KEY_A), 0, &s);
    g.on_request_headers(2, headers(KEY_A), 0, &s);
    let outcomes = g.on_lease_answer(&hash, Ok(LeaseAnswer::InvalidKey), 1, &s);
    assert_eq!(
        outcomes
            .iter()
            .map(|(_, o)| status_of(o))
            .collect::<Vec<_>>(),
        vec![Some(401), Some(401)]
    );
    let WaiterOutcome::Respond(reply) = &outcomes[0].1 else {
        unreachable!()
    };
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert!(
        g.on_tick(1, 2, &s).usage_batch.is_none(),
        "refused requests leave no usage"
    );

    g.on_request_headers(3, headers(KEY_B), 0, &s);
    let outcomes = g.on_lease_answer(
        &key::hash(KEY_B),
        Ok(LeaseAnswer::Suspended { user_id: 9 }),
        1,
        &s,
    );
    assert_eq!(status_of(&outcomes[0].1), Some(403));
}

#[test]
fn malformed_or_missing_key_and_unknown_paths_never_reach_the_control_plane() {
    let s = store();
    let mut g = gateway(1);
    for (key, path, status) in [
        (ClientKey::Missing, "/v1/chat/completions", 401),
        (ClientKey::Malformed, "/v1/chat/completions", 401),
        (ClientKey::Found(KEY_A), "/v1/admin/users", 404),
    ] {
        let h = RequestHeaders {
            key,
            path,
            ..headers(KEY_A)
        };
        let HeadersOutcome::Respond(reply) = g.on_request_headers(1, h, 0, &s) else {
            panic!()
        };
        assert_eq!(reply.status, status);
    }
    assert_eq!(
        s.data.borrow().len(),
        1,
        "no record made (only the creation lock)"
    );
}

#[test]
fn control_plane_failure_fails_closed_but_is_not_remembered() {
    let s = store();
    let mut g = gateway(1);
    g.on_request_headers(1, headers(KEY_A), 0, &s);
    let outcomes = g.on_lease_answer(&key::hash(KEY_A), Err("timeout".into()), 2000, &s);
    let WaiterOutcome::Respond(reply) = &outcomes[0].1 else {
        panic!()
    };
    assert_eq!(reply.status, 503);
    assert!(String::from_utf8_lossy(&reply.body).contains("governance_unavailable"));
    assert!(matches!(
        g.on_request_headers(2, headers(KEY_A), 2001, &s),
        HeadersOutcome::Wait { fetch: Some(_), .. }
    ));
}

#[test]
fn unexpired_lease_keeps_serving_through_an_outage_and_expiry_forces_a_renewal() {
    let s = store();
    let mut g = gateway(1);
    g.on_request_headers(1, headers(KEY_A), 0, &s);
    g.on_lease_answer(&key::hash(KEY_A), granted(100_000, 60_000), 0, &s);
    complete(&mut g, &s, 1, CHAT, 1);
    g.usage_send_failed(2); // control plane gone
    let margin = expiry_margin_ms(g.config());
    let late = 60_000 - margin - 1;
    assert!(matches!(
        g.on_request_headers(2, headers(KEY_A), late, &s),
        HeadersOutcome::Forward { .. }
    ));
    // In use this late in its life, the lease is renewed in the background; with the
    // control plane gone the renewal fails.
    let work = g.on_tick(1, late, &s);
    assert_eq!(work.lease_fetches.len(), 1);
    g.on_lease_answer(&key::hash(KEY_A), Err("unreachable".into()), late, &s);
    // Used until a margin before the control plane releases the hold.
    assert!(matches!(
        g.on_request_headers(3, headers(KEY_A), 60_000 - margin, &s),
        HeadersOutcome::Wait { fetch: Some(_), .. }
    ));
}

#[test]
fn waiters_beyond_the_grant_ask_for_more_and_are_refused_only_when_there_is_none() {
    let s = store();
    let mut g = gateway(1);
    g.on_request_headers(1, headers(KEY_A), 0, &s);
    g.on_request_headers(2, headers(KEY_A), 0, &s);
    let outcomes = g.on_lease_answer(&key::hash(KEY_A), granted(150, 60_000), 0, &s);
    assert_eq!(
        outcomes,
        vec![(1, WaiterOutcome::Resume)],
        "the second still waits"
    );
    // More is asked for (from the root context); the control plane has no more: 429.
    let work = g.on_tick(1, 1, &s);
    assert_eq!(work.lease_fetches.len(), 1);
    let exhausted = Ok(LeaseAnswer::Exhausted {
        user_id: 42,
        budget_scope: "personal".into(),
        period_reset_s: 9,
    });
    let outcomes = g.on_lease_answer(&key::hash(KEY_A), exhausted, 2, &s);
    assert_eq!(outcomes.len(), 1);
    assert_eq!((outcomes[0].0, status_of(&outcomes[0].1)), (2, Some(429)));
}

#[test]
fn cut_stream_is_charged_an_estimate_and_marked() {
    let s = store();
    let mut g = gateway(1);
    g.on_request_headers(1, headers(KEY_A), 0, &s);
    g.on_lease_answer(&key::hash(KEY_A), granted(1000, 60_000), 0, &s);
    g.on_response_headers(1, 200, Some("text/event-stream; charset=utf-8"));
    let complete_chunk =
        b"data: {\"choices\":[{\"delta\":{\"content\":\"Hello world, this is\"}}]}\n\n";
    let partial = b"data: {\"choices\":[{\"delta\":{\"content\":\" a cut str";
    g.on_response_body(1, complete_chunk, false);
    g.on_response_body(1, partial, false);
    g.on_request_end(1, 5, &s); // client disconnected: on_log without end of stream
    let r = &sent_records(&mut g, &s, 6)[0];
    assert_eq!(r["estimated"], true);
    assert_eq!(r["input_tokens"], 100); // 400 request bytes / 4
                                        // Generated text seen: "Hello world, this is" (20 bytes → 5 tokens); the unfinished
                                        // last string is not counted.
    assert_eq!(r["output_tokens"], 5);
    assert_eq!(r["total_tokens"], 105);
}

#[test]
fn provider_error_charges_nothing_and_releases_the_reservation() {
    let s = store();
    let mut g = gateway(1);
    g.on_request_headers(1, headers(KEY_A), 0, &s);
    g.on_lease_answer(&key::hash(KEY_A), granted(200, 60_000), 0, &s);
    g.on_response_headers(1, 500, Some("application/json"));
    g.on_response_body(
        1,
        br#"{"error":{"message":"boom","usage":{"total_tokens":5}}}"#,
        true,
    );
    g.on_request_end(1, 1, &s);
    let r = &sent_records(&mut g, &s, 2)[0];
    assert_eq!(
        (r["total_tokens"].as_u64(), r["status"].as_u64()),
        (Some(0), Some(500))
    );
    assert_eq!(consumed(&s, KEY_A), 0, "the whole grant is free again");
}

#[test]
fn alfred_headers_travel_in_the_record() {
    let s = store();
    let mut g = gateway(1);
    let h = RequestHeaders {
        priority: Some("CRITICAL"),
        privacy: Some("strict"),
        project_id: Some("project-123"),
        ..headers(KEY_A)
    };
    g.on_request_headers(1, h, 0, &s);
    // A critical request draws on the user's critical lease (its own record).
    let critical = lease_store::record_id(&key::hash(KEY_A), true);
    g.on_lease_answer(&critical, granted(1000, 60_000), 0, &s);
    complete(&mut g, &s, 1, CHAT, 1);
    let r = &sent_records(&mut g, &s, 2)[0];
    assert_eq!(
        (
            r["priority"].as_str(),
            r["privacy"].as_str(),
            r["project_id"].as_str()
        ),
        (Some("critical"), Some("strict"), Some("project-123"))
    );
}

#[test]
fn revocation_and_suspension_reach_the_proxy_through_sync() {
    let s = store();
    let mut g = gateway(1);
    warm(&mut g, &s, 100_000);
    assert!(
        g.on_tick(1, RECHECK_AFTER_MS - 1, &s).syncs.is_empty(),
        "checked at grant time"
    );
    let mut g2 = gateway(2);
    let due_at = RECHECK_AFTER_MS - 1 + SYNC_EVERY_MS;
    assert!(
        g.on_tick(1, due_at - 1, &s).syncs.is_empty(),
        "syncs are spaced"
    );
    let sync = g
        .on_tick(1, due_at, &s)
        .syncs
        .into_iter()
        .next()
        .expect("due");
    let v: serde_json::Value = serde_json::from_slice(&sync).unwrap();
    assert_eq!(v["key_hashes"][0], key::hash(KEY_A));
    g2.active.insert(
        key::hash(KEY_A),
        Activity {
            seen_ms: due_at,
            check_due_ms: 0,
        },
    );
    assert!(
        g2.on_tick(1, due_at, &s).syncs.is_empty(),
        "one VM checks each key"
    );
    let answer = SyncAnswer::parse(
        format!(
            r#"{{"keys":[{{"key_hash":"{}","decision":"suspended"}}]}}"#,
            key::hash(KEY_A)
        )
        .as_bytes(),
    )
    .unwrap();
    g.on_sync_answer(Some(answer), due_at + 5, &s);
    let HeadersOutcome::Respond(reply) = g2.on_request_headers(1, headers(KEY_A), due_at + 6, &s)
    else {
        panic!()
    };
    assert_eq!(reply.status, 403);
}

#[test]
fn the_sync_reads_a_record_only_when_its_check_is_due_and_writes_only_to_claim_it() {
    let s = store();
    let mut g = gateway(1);
    let mut g2 = gateway(2);
    warm(&mut g, &s, 100_000); // granted, and so confirmed, at 0
    g2.on_request_headers(5, headers(KEY_A), 0, &s);
    complete(&mut g2, &s, 5, CHAT, 0);
    let counts = |s: &FakeStore| (s.record_gets.get(), s.sets.get());
    // The slices lapse and are settled back first (a read and a write each, not counted).
    let _ = g.on_tick(1, SYNC_EVERY_MS - 1, &s);
    let _ = g2.on_tick(1, SYNC_EVERY_MS - 1, &s);

    // Before the re-check is due, each VM reads the record once, to learn when it is
    // due, and writes nothing.
    let before = counts(&s);
    assert!(g.on_tick(1, SYNC_EVERY_MS, &s).syncs.is_empty());
    assert!(g2.on_tick(1, SYNC_EVERY_MS, &s).syncs.is_empty());
    assert_eq!(counts(&s), (before.0 + 2, before.1));
    // Until then, the syncs do not read it at all.
    let before = counts(&s);
    assert!(g.on_tick(1, 2 * SYNC_EVERY_MS, &s).syncs.is_empty());
    assert!(g2.on_tick(1, 2 * SYNC_EVERY_MS, &s).syncs.is_empty());
    assert_eq!(counts(&s), before);

    // Due: the first VM claims the check (one read, one write); the second reads the
    // claim and leaves it.
    let due = RECHECK_AFTER_MS + SYNC_EVERY_MS;
    let before = counts(&s);
    let sync = g.on_tick(1, due, &s).syncs.into_iter().next().expect("due");
    let v: serde_json::Value = serde_json::from_slice(&sync).unwrap();
    assert_eq!(v["key_hashes"][0], key::hash(KEY_A));
    assert!(
        g2.on_tick(1, due, &s).syncs.is_empty(),
        "one VM checks each key"
    );
    assert_eq!(counts(&s), (before.0 + 2, before.1 + 1));
    g.on_sync_answer(Some(SyncAnswer { keys: Vec::new() }), due + 5, &s);

    // The next check is due a full interval after the claim, for both VMs: the syncs in
    // between read nothing.
    let before = counts(&s);
    assert!(g.on_tick(1, due + SYNC_EVERY_MS, &s).syncs.is_empty());
    assert!(g2.on_tick(1, due + SYNC_EVERY_MS, &s).syncs.is_empty());
    assert_eq!(counts(&s), before);
    assert_eq!(g2.on_tick(1, due + RECHECK_AFTER_MS, &s).syncs.len(), 1);
}

#[test]
fn a_process_with_thousands_of_users_checks_every_due_key_in_one_round() {
    let s = store();
    let mut g = gateway(1);
    let users = MAX_SYNC_KEYS * 3 + 7;
    let keys: Vec<String> = (0..users).map(|i| format!("tp-{i:0>36}")).collect();
    for (ctx, k) in (1..).zip(&keys) {
        g.on_request_headers(ctx, headers(k), 0, &s);
        g.on_lease_answer(&key::hash(k), granted(100_000, 60_000), 0, &s);
        complete(&mut g, &s, ctx, CHAT, 0);
    }
    let work = g.on_tick(1, RECHECK_AFTER_MS + SYNC_EVERY_MS, &s);
    assert_eq!(work.syncs.len(), 4, "calls of at most {MAX_SYNC_KEYS} keys");
    let mut asked: Vec<String> = Vec::new();
    for body in &work.syncs {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        let hashes = v["key_hashes"].as_array().unwrap();
        assert!(hashes.len() <= MAX_SYNC_KEYS);
        asked.extend(hashes.iter().map(|h| h.as_str().unwrap().to_string()));
    }
    asked.sort();
    let mut expected: Vec<String> = keys.iter().map(|k| key::hash(k)).collect();
    expected.sort();
    assert_eq!(asked, expected, "every key, once");
    // No new round until every call is answered.
    assert!(g
        .on_tick(1, RECHECK_AFTER_MS + 3 * SYNC_EVERY_MS, &s)
        .syncs
        .is_empty());
    for _ in 0..4 {
        g.on_sync_answer(None, RECHECK_AFTER_MS + 3 * SYNC_EVERY_MS, &s);
    }
    // Answered: the next round checks them all again when they are due.
    let again = 2 * RECHECK_AFTER_MS + SYNC_EVERY_MS;
    assert_eq!(g.on_tick(1, again, &s).syncs.len(), 4);
}

#[test]
fn lease_size_follows_burn_rate_within_bounds() {
    let config = gateway(1).config().clone();
    let mut record = Record::default();
    assert_eq!(
        lease_size(&config, &record, 10_000),
        100,
        "idle: a tenth of the cap"
    );
    record.window_start_ms = 0;
    record.window_tokens = 150;
    assert_eq!(
        lease_size(&config, &record, 10_000),
        450,
        "15 tokens/s for 30 s"
    );
    record.window_tokens = 100_000;
    assert_eq!(
        lease_size(&config, &record, 10_000),
        1000,
        "capped per proxy"
    );
}

#[test]
fn sweep_forgets_idle_users_only() {
    let s = store();
    let mut g = gateway(1);
    g.on_request_headers(1, headers(KEY_A), 0, &s);
    g.on_lease_answer(&key::hash(KEY_A), granted(1000, 1_000), 0, &s);
    complete(&mut g, &s, 1, CHAT, 0);
    g.on_request_headers(2, headers(KEY_B), 0, &s); // waiting
    g.sweep(IDLE_MS, &s);
    assert_eq!(g.tracked_keys(), 1);
    assert!(
        lease_store::load(&s, &key::hash(KEY_A)).is_none(),
        "record emptied"
    );
    assert!(lease_store::load(&s, &key::hash(KEY_B)).is_some());
}

#[test]
fn stream_without_include_usage_gets_it_and_the_client_never_sees_the_usage_chunk() {
    let s = store();
    let mut g = gateway(1);
    let HeadersOutcome::Wait {
        inspect_body: true, ..
    } = g.on_request_headers(1, with_body(KEY_A), 0, &s)
    else {
        panic!("chat requests with a body are inspected")
    };
    assert_eq!(
        g.on_request_body(1, 10, false, || None, || 0, &s),
        BodyAction::Buffer
    );
    assert_eq!(
        g.on_lease_answer(&key::hash(KEY_A), granted(1000, 60_000), 1, &s),
        vec![(1, WaiterOutcome::AwaitBody)]
    );
    let request = br#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#;
    let BodyAction::Replace {
        body,
        proceed: true,
    } = g.on_request_body(1, request.len(), true, || Some(request.to_vec()), || 1, &s)
    else {
        panic!("include_usage must be added")
    };
    let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);

    g.on_response_headers(1, 200, Some("text/event-stream"));
    let content =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n";
    let usage = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1,\"total_tokens\":5}}\n\n";
    assert_eq!(
        g.on_response_body(1, content.as_bytes(), false),
        None,
        "content passes untouched"
    );
    assert_eq!(
        g.on_response_body(1, usage.as_bytes(), false),
        Some(Vec::new()),
        "usage chunk removed"
    );
    assert_eq!(g.on_response_body(1, b"data: [DONE]\n\n", true), None);
    g.on_request_end(1, 2, &s);
    let r = &sent_records(&mut g, &s, 3)[0];
    assert_eq!(
        (
            r["total_tokens"].as_u64(),
            r["model"].as_str(),
            r["estimated"].as_bool()
        ),
        (Some(5), Some("gpt-4o-mini"), Some(false))
    );
}

#[test]
fn warm_request_body_is_read_before_forwarding_and_left_alone_when_fine() {
    let s = store();
    let mut g = gateway(1);
    warm(&mut g, &s, 1000);
    assert_eq!(
        g.on_request_headers(2, with_body(KEY_A), 1, &s),
        HeadersOutcome::Forward {
            credential: credential(),
            inspect_body: true
        }
    );
    assert_eq!(
        g.on_request_body(2, 5, false, || None, || 1, &s),
        BodyAction::Buffer
    );
    let request = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
    assert_eq!(
        g.on_request_body(2, request.len(), true, || Some(request.to_vec()), || 1, &s),
        BodyAction::Continue
    );
    g.on_response_headers(2, 200, Some("text/event-stream"));
    let usage = b"data: {\"choices\":[],\"usage\":{\"total_tokens\":5}}\n\n";
    assert_eq!(
        g.on_response_body(2, usage, true),
        None,
        "the client asked for usage: kept"
    );
}

#[test]
fn body_arriving_before_the_lease_waits_for_it() {
    let s = store();
    let mut g = gateway(1);
    let h = RequestHeaders {
        path: "/v1/embeddings",
        ..with_body(KEY_A)
    };
    let HeadersOutcome::Wait {
        inspect_body: false,
        ..
    } = g.on_request_headers(1, h, 0, &s)
    else {
        panic!()
    };
    assert_eq!(
        g.on_request_body(1, 10, true, || None, || 0, &s),
        BodyAction::Buffer,
        "held until the lease is in"
    );
    assert_eq!(
        g.on_lease_answer(&key::hash(KEY_A), granted(1000, 60_000), 1, &s),
        vec![(1, WaiterOutcome::Resume)]
    );
    assert_eq!(
        g.on_request_body(1, 10, true, || None, || 1, &s),
        BodyAction::Continue
    );
}

#[test]
fn oversized_body_is_413_and_returns_its_reservation() {
    let s = store();
    let mut g = gateway(1);
    warm(&mut g, &s, 300);
    g.on_request_headers(2, with_body(KEY_A), 1, &s); // reserves 200 of 300
    let BodyAction::Respond(reply) =
        g.on_request_body(2, 33 * 1024 * 1024, false, || None, || 1, &s)
    else {
        panic!()
    };
    assert_eq!(reply.status, 413);
    assert!(String::from_utf8_lossy(&reply.body).contains("request_too_large"));
    assert_eq!(
        settled(&mut g, &s, KEY_A, 1),
        0,
        "the reservation is returned"
    );
}

#[test]
fn privacy_strict_sets_store_false() {
    let s = store();
    let mut g = gateway(1);
    warm(&mut g, &s, 1000);
    let h = RequestHeaders {
        privacy: Some("strict"),
        ..with_body(KEY_A)
    };
    g.on_request_headers(2, h, 1, &s);
    let request = br#"{"model":"m","messages":[]}"#;
    let BodyAction::Replace {
        body,
        proceed: true,
    } = g.on_request_body(2, request.len(), true, || Some(request.to_vec()), || 1, &s)
    else {
        panic!()
    };
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["store"],
        false
    );
}

#[test]
fn fail_open_allowance_serves_through_an_outage_then_fails_closed() {
    let s = store();
    let mut g = gateway(1);
    let hash = key::hash(KEY_A);
    g.on_request_headers(1, headers(KEY_A), 0, &s);
    let answer = Ok(LeaseAnswer::Granted {
        lease_id: "l1".into(),
        user_id: 42,
        granted_tokens: 200,
        expires_in_ms: 60_000,
        quota_remaining: 5000,
        period_reset_s: 3600,
        fail_open_tokens: 300,
    });
    g.on_lease_answer(&hash, answer, 0, &s);
    complete(&mut g, &s, 1, br#"{"usage":{"total_tokens":200}}"#, 1); // lease spent
                                                                      // The control plane is down: the allowance (300) admits requests, recorded as such.
    g.on_request_headers(2, headers(KEY_A), 2, &s);
    assert_eq!(
        g.on_lease_answer(&hash, Err("down".into()), 3, &s),
        vec![(2, WaiterOutcome::Resume)]
    );
    complete(&mut g, &s, 2, CHAT, 4);
    let records = sent_records(&mut g, &s, 5);
    assert_eq!(records[1]["lease_id"], FAIL_OPEN_LEASE);
    assert_eq!(
        (
            records[1]["user_id"].as_i64(),
            records[1]["total_tokens"].as_u64()
        ),
        (Some(42), Some(29))
    );
    // Spent allowance (29 + 271 more), still down: fail closed.
    assert!(matches!(
        g.on_request_headers(3, headers(KEY_A), 6, &s),
        HeadersOutcome::Forward { .. }
    ));
    complete(&mut g, &s, 3, br#"{"usage":{"total_tokens":271}}"#, 7);
    g.on_request_headers(4, headers(KEY_A), 8, &s);
    let outcomes = g.on_lease_answer(&hash, Err("down".into()), 9, &s);
    assert_eq!(status_of(&outcomes[0].1), Some(503));
}

#[test]
fn quota_refusal_keeps_the_lease_so_unused_reservations_come_back() {
    let s = store();
    let mut g = gateway(1);
    let hash = key::hash(KEY_A);
    g.on_request_headers(1, headers(KEY_A), 0, &s);
    g.on_lease_answer(&hash, granted(400, 60_000), 0, &s);
    g.on_request_headers(2, headers(KEY_A), 0, &s); // 200 + 200 reserved: room 0
                                                    // Room 0: the renewal (claimed at low water) is what request 3 waits for.
    let HeadersOutcome::Wait { .. } = g.on_request_headers(3, headers(KEY_A), 1, &s) else {
        panic!()
    };
    assert_eq!(g.on_tick(1, 1, &s).lease_fetches.len(), 1);
    let exhausted = Ok(LeaseAnswer::Exhausted {
        user_id: 42,
        budget_scope: "personal".into(),
        period_reset_s: 9,
    });
    let outcomes = g.on_lease_answer(&hash, exhausted, 2, &s);
    assert_eq!(status_of(&outcomes[0].1), Some(429));
    // The two in flight use 29 each: 342 of the lease is free again and is served,
    // even while the refusal is remembered.
    complete(&mut g, &s, 1, CHAT, 3);
    complete(&mut g, &s, 2, CHAT, 3);
    assert!(matches!(
        g.on_request_headers(4, headers(KEY_A), 4, &s),
        HeadersOutcome::Forward { .. }
    ));
    assert_eq!(consumed(&s, KEY_A), 29 + 29 + 200);
}

#[test]
fn cut_stream_with_an_early_usage_report_is_estimated_from_what_was_produced() {
    let s = store();
    let mut g = gateway(1);
    warm(&mut g, &s, 100_000);
    let h = RequestHeaders {
        path: "/v1/messages",
        ..headers(KEY_A)
    };
    g.on_request_headers(1, h, 1, &s);
    g.on_response_headers(1, 200, Some("text/event-stream"));
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n";
    let text = format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{}\"}}}}\n\n", "word ".repeat(40));
    g.on_response_body(1, start.as_bytes(), false);
    g.on_response_body(1, text.as_bytes(), false);
    g.on_request_end(1, 2, &s); // the client went away: no end of stream
    let r = &sent_records(&mut g, &s, 3)[0];
    assert_eq!(r["estimated"], true);
    assert_eq!(
        (r["input_tokens"].as_u64(), r["output_tokens"].as_u64()),
        (Some(25), Some(50)),
        "200 bytes of text"
    );
    assert_eq!(r["total_tokens"], 75);

    // The same stream run to its end is exact.
    let h = RequestHeaders {
        path: "/v1/messages",
        ..headers(KEY_A)
    };
    g.on_request_headers(2, h, 4, &s);
    g.on_response_headers(2, 200, Some("text/event-stream"));
    g.on_response_body(2, start.as_bytes(), false);
    let end = "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":61}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    g.on_response_body(2, end.as_bytes(), true);
    g.on_request_end(2, 5, &s);
    let r = &sent_records(&mut g, &s, 6)[0];
    assert_eq!(
        (r["estimated"].as_bool(), r["total_tokens"].as_u64()),
        (Some(false), Some(86))
    );
}

// ---- Critical priority: a separate lease per class (normal | critical).

fn critical(key: &str) -> RequestHeaders<'_> {
    RequestHeaders {
        priority: Some("critical"),
        ..headers(key)
    }
}

fn exhausted() -> Result<LeaseAnswer, String> {
    Ok(LeaseAnswer::Exhausted {
        user_id: 42,
        budget_scope: "team".into(),
        period_reset_s: 77,
    })
}

fn critical_record(key: &str) -> String {
    lease_store::record_id(&key::hash(key), true)
}

#[test]
fn critical_request_fetches_its_own_lease_after_a_normal_refusal() {
    let s = store();
    let mut g = gateway(1);
    let HeadersOutcome::Wait {
        fetch: Some(normal),
        ..
    } = g.on_request_headers(1, headers(KEY_A), 0, &s)
    else {
        panic!("cold user waits")
    };
    let outcomes = g.on_lease_answer(&normal.record, exhausted(), 1, &s);
    assert_eq!(status_of(&outcomes[0].1), Some(429));
    // The refusal is cached for normal requests ...
    let HeadersOutcome::Respond(reply) = g.on_request_headers(2, headers(KEY_A), 2, &s) else {
        panic!("normal requests are refused from the cache")
    };
    assert_eq!(reply.status, 429);
    // ... but a critical request asks for the critical lease, under the real key hash.
    let HeadersOutcome::Wait {
        fetch: Some(fetch), ..
    } = g.on_request_headers(3, critical(KEY_A), 3, &s)
    else {
        panic!("a critical request is not refused by the normal refusal")
    };
    assert_eq!(fetch.record, critical_record(KEY_A));
    assert_eq!(fetch.key_hash, key::hash(KEY_A));
    let body: serde_json::Value = serde_json::from_slice(&fetch.body).unwrap();
    assert_eq!(
        (body["key_hash"].as_str(), body["priority"].as_str()),
        (Some(key::hash(KEY_A).as_str()), Some("critical"))
    );
    assert_eq!(
        g.on_lease_answer(&fetch.record, granted_id("crit", 1000, 60_000), 4, &s),
        vec![(3, WaiterOutcome::Resume)]
    );
    complete(&mut g, &s, 3, CHAT, 5);
    let records = sent_records(&mut g, &s, 6);
    assert_eq!(records.len(), 1);
    assert_eq!(
        (
            records[0]["lease_id"].as_str(),
            records[0]["priority"].as_str()
        ),
        (Some("crit"), Some("critical"))
    );
    // Warm critical lease: the next critical request goes straight through, while normal
    // requests are still refused.
    assert!(matches!(
        g.on_request_headers(4, critical(KEY_A), 7, &s),
        HeadersOutcome::Forward { .. }
    ));
    assert!(matches!(
        g.on_request_headers(5, headers(KEY_A), 8, &s),
        HeadersOutcome::Respond(LocalReply { status: 429, .. })
    ));
}

#[test]
fn normal_requests_never_spend_the_critical_lease() {
    let s = store();
    let mut g = gateway(1);
    let HeadersOutcome::Wait {
        fetch: Some(fetch), ..
    } = g.on_request_headers(1, critical(KEY_A), 0, &s)
    else {
        panic!()
    };
    g.on_lease_answer(&fetch.record, granted_id("crit", 1000, 60_000), 1, &s);
    complete(&mut g, &s, 1, CHAT, 2);
    let critical_consumed = || {
        lease_store::load(&s, &critical_record(KEY_A))
            .unwrap()
            .lease
            .unwrap()
            .consumed
    };
    assert_eq!(critical_consumed(), 29);
    // The critical lease has room, yet a normal request needs a normal lease.
    let HeadersOutcome::Wait {
        fetch: Some(normal),
        ..
    } = g.on_request_headers(2, headers(KEY_A), 3, &s)
    else {
        panic!("a normal request must not draw on the critical lease")
    };
    assert_eq!(normal.record, key::hash(KEY_A));
    let body: serde_json::Value = serde_json::from_slice(&normal.body).unwrap();
    assert_eq!(body["priority"], "normal");
    let outcomes = g.on_lease_answer(&normal.record, exhausted(), 4, &s);
    assert_eq!(status_of(&outcomes[0].1), Some(429));
    assert!(matches!(
        g.on_request_headers(3, headers(KEY_A), 5, &s),
        HeadersOutcome::Respond(LocalReply { status: 429, .. })
    ));
    assert_eq!(critical_consumed(), 29, "untouched by normal requests");
    assert!(lease_store::load(&s, &critical_record(KEY_A))
        .unwrap()
        .refusal
        .is_none());
}

#[test]
fn lease_fetches_are_single_flight_per_class() {
    let s = store();
    let (mut g1, mut g2) = (gateway(1), gateway(2));
    let HeadersOutcome::Wait {
        fetch: Some(crit), ..
    } = g1.on_request_headers(1, critical(KEY_A), 0, &s)
    else {
        panic!()
    };
    // Another critical request, on another VM: it waits for g1's critical fetch.
    assert!(matches!(
        g2.on_request_headers(1, critical(KEY_A), 1, &s),
        HeadersOutcome::Wait { fetch: None, .. }
    ));
    // A normal request of the same user is not held up by the critical fetch: it sends
    // its own, once, for both VMs.
    let HeadersOutcome::Wait {
        fetch: Some(normal),
        ..
    } = g2.on_request_headers(2, headers(KEY_A), 2, &s)
    else {
        panic!("the normal class has its own flight")
    };
    assert_eq!(normal.record, key::hash(KEY_A));
    assert!(matches!(
        g1.on_request_headers(3, headers(KEY_A), 3, &s),
        HeadersOutcome::Wait { fetch: None, .. }
    ));
    assert!(matches!(
        g1.on_request_headers(4, critical(KEY_A), 3, &s),
        HeadersOutcome::Wait { fetch: None, .. }
    ));
    assert_eq!(g1.stats.lease_fetches + g2.stats.lease_fetches, 2);
    // The critical answer resumes the critical waiters only.
    assert_eq!(
        g1.on_lease_answer(&crit.record, granted_id("crit", 1000, 60_000), 4, &s),
        vec![(1, WaiterOutcome::Resume), (4, WaiterOutcome::Resume)]
    );
    assert_eq!(
        *s.notified.borrow(),
        vec![(g2.vm_id(), critical_record(KEY_A))]
    );
    assert_eq!(
        g2.on_notified(&critical_record(KEY_A), 5, &s),
        vec![(1, WaiterOutcome::Resume)]
    );
    assert!(g2.waiters.contains_key(&key::hash(KEY_A)), "still waiting");
    assert_eq!(
        g2.on_lease_answer(&normal.record, granted_id("norm", 1000, 60_000), 6, &s),
        vec![(2, WaiterOutcome::Resume)]
    );
    assert_eq!(
        g1.on_notified(&key::hash(KEY_A), 7, &s),
        vec![(3, WaiterOutcome::Resume)]
    );
}

#[test]
fn renewal_of_the_critical_lease_asks_as_critical() {
    let s = store();
    let mut g = gateway(1);
    g.on_request_headers(1, critical(KEY_A), 0, &s);
    g.on_lease_answer(
        &critical_record(KEY_A),
        granted_id("crit", 1000, 60_000),
        0,
        &s,
    );
    // Three more requests of 200 reserved each: below the low-water mark (a quarter).
    for ctx in 2..=4 {
        assert!(matches!(
            g.on_request_headers(ctx, critical(KEY_A), 1, &s),
            HeadersOutcome::Forward { .. }
        ));
    }
    let work = g.on_tick(99, 2, &s);
    assert_eq!(work.lease_fetches.len(), 1);
    let renewal = &work.lease_fetches[0];
    assert_eq!(renewal.record, critical_record(KEY_A));
    let body: serde_json::Value = serde_json::from_slice(&renewal.body).unwrap();
    assert_eq!(
        (body["key_hash"].as_str(), body["priority"].as_str()),
        (Some(key::hash(KEY_A).as_str()), Some("critical"))
    );
}

#[test]
fn revocation_reaches_both_classes_but_exhaustion_only_the_normal_one() {
    let s = store();
    let mut g = gateway(1);
    for (ctx, h) in [
        (1, headers(KEY_A)),
        (2, critical(KEY_A)),
        (3, headers(KEY_B)),
    ] {
        g.on_request_headers(ctx, h, 0, &s);
    }
    g.on_lease_answer(
        &key::hash(KEY_A),
        granted_id("norm", 100_000, 60_000),
        0,
        &s,
    );
    g.on_lease_answer(
        &critical_record(KEY_A),
        granted_id("crit", 100_000, 60_000),
        0,
        &s,
    );
    g.on_lease_answer(&key::hash(KEY_B), granted_id("b", 100_000, 60_000), 0, &s);
    for ctx in 1..=3 {
        complete(&mut g, &s, ctx, CHAT, 1);
    }
    let _ = g.on_tick(1, 1, &s);
    g.on_usage_answer(Some(200), 1);
    let now = RECHECK_AFTER_MS + SYNC_EVERY_MS;
    let sync = g.on_tick(1, now, &s).syncs.into_iter().next().expect("due");
    let v: serde_json::Value = serde_json::from_slice(&sync).unwrap();
    let mut hashes: Vec<&str> = v["key_hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    hashes.sort_unstable();
    let mut expected = vec![key::hash(KEY_A), key::hash(KEY_B)];
    expected.sort_unstable();
    assert_eq!(hashes, expected, "real key hashes, each once");
    let answer = SyncAnswer::parse(
        format!(
            r#"{{"keys":[{{"key_hash":"{}","decision":"invalid_key"}},
                         {{"key_hash":"{}","decision":"exhausted","budget_scope":"team"}}]}}"#,
            key::hash(KEY_A),
            key::hash(KEY_B)
        )
        .as_bytes(),
    )
    .unwrap();
    g.on_sync_answer(Some(answer), now + 1, &s);
    for h in [headers(KEY_A), critical(KEY_A)] {
        assert!(matches!(
            g.on_request_headers(10, h, now + 2, &s),
            HeadersOutcome::Respond(LocalReply { status: 401, .. })
        ));
    }
    // KEY_B is out of normal quota; a critical request may still ask for the overdraft.
    assert!(matches!(
        g.on_request_headers(11, headers(KEY_B), now + 3, &s),
        HeadersOutcome::Respond(LocalReply { status: 429, .. })
    ));
    assert!(matches!(
        g.on_request_headers(12, critical(KEY_B), now + 4, &s),
        HeadersOutcome::Wait { fetch: Some(_), .. }
    ));
}

#[test]
fn key_hashes_are_cached_while_in_use_and_swept_with_their_records() {
    let s = store();
    let mut g = gateway(1);
    warm(&mut g, &s, 100_000);
    assert_eq!(
        g.key_hashes.get(KEY_A).map(|h| &**h),
        Some(key::hash(KEY_A).as_str())
    );
    g.on_request_headers(1, critical(KEY_B), 0, &s);
    assert_eq!(g.key_hashes.len(), 2);
    // A fetch answered, nothing in flight: both keys go idle and leave the cache.
    g.on_lease_answer(&critical_record(KEY_B), exhausted(), 1, &s);
    g.sweep(1 + IDLE_MS, &s);
    assert!(g.key_hashes.is_empty());
    assert_eq!(g.tracked_keys(), 0);
}

#[test]
fn warm_requests_spend_the_vm_slice_without_touching_shared_data() {
    let s = store();
    let mut g = gateway(1);
    warm(&mut g, &s, 100_000);
    // The first request claims a slice (one write); a burst then claims by its rate.
    g.on_request_headers(1, headers(KEY_A), 10, &s);
    complete(&mut g, &s, 1, CHAT, 10);
    g.on_request_headers(2, headers(KEY_A), 20, &s);
    complete(&mut g, &s, 2, CHAT, 20);
    let writes = s.sets.get();
    for ctx in 3..=40 {
        assert!(matches!(
            g.on_request_headers(ctx, headers(KEY_A), 30, &s),
            HeadersOutcome::Forward { .. }
        ));
        complete(&mut g, &s, ctx, CHAT, 30);
    }
    assert!(
        s.sets.get() - writes <= 2,
        "38 warm requests wrote shared data {} times",
        s.sets.get() - writes
    );
    // Settled, the shared lease holds exactly what was used.
    assert_eq!(settled(&mut g, &s, KEY_A, 31), 40 * 29);
}

#[test]
fn slices_divide_one_lease_between_vms_and_never_exceed_it() {
    let s = store();
    let (mut g1, mut g2) = (gateway(1), gateway(2));
    warm(&mut g1, &s, 1000);
    // Requests in flight on both VMs, each reserving 200, until the lease is spent.
    let mut admitted = 0;
    let mut waited = false;
    for ctx in 1..=20u32 {
        let g = if ctx % 2 == 0 { &mut g1 } else { &mut g2 };
        match g.on_request_headers(ctx, headers(KEY_A), 10, &s) {
            HeadersOutcome::Forward { .. } => admitted += 1,
            HeadersOutcome::Wait { .. } => {
                waited = true;
                break;
            }
            HeadersOutcome::Respond(r) => panic!("refused: {}", r.status),
        }
    }
    assert!(waited, "the lease ran out");
    // Five reservations of 200, or more when the last ones got what was left.
    assert!(admitted >= 5, "admitted {admitted}");
    g1.settle_slices(10, &s, true);
    g2.settle_slices(10, &s, true);
    assert_eq!(consumed(&s, KEY_A), 1000, "every token reserved once");
}

#[test]
fn an_idle_vm_gives_its_slice_back_on_the_tick() {
    let s = store();
    let (mut g1, mut g2) = (gateway(1), gateway(2));
    warm(&mut g1, &s, 1000);
    // g1 bursts, so its next claim is large, then goes quiet.
    for ctx in 1..=3 {
        g1.on_request_headers(ctx, headers(KEY_A), 10, &s);
        complete(&mut g1, &s, ctx, CHAT, 10);
    }
    assert!(
        consumed(&s, KEY_A) > 3 * 29,
        "g1 still holds the rest of its slice"
    );
    let _ = g1.on_tick(1, 10 + SLICE_TTL_MS, &s);
    assert_eq!(consumed(&s, KEY_A), 3 * 29, "the lapsed slice was settled");
    // All of the rest is g2's to use now.
    let mut admitted = 0;
    for ctx in 1..=10 {
        if matches!(
            g2.on_request_headers(ctx, headers(KEY_A), 11 + SLICE_TTL_MS, &s),
            HeadersOutcome::Forward { .. }
        ) {
            admitted += 1;
        }
    }
    assert_eq!(
        admitted,
        (1000 - 3 * 29) / 200 + 1,
        "the last one gets what is left"
    );
}

#[test]
fn a_revocation_seen_by_one_vm_ends_the_other_vms_slices_at_once() {
    let s = store();
    let (mut g1, mut g2) = (gateway(1), gateway(2));
    warm(&mut g1, &s, 100_000);
    for ctx in 1..=3 {
        g2.on_request_headers(ctx, headers(KEY_A), 10, &s);
        complete(&mut g2, &s, ctx, CHAT, 10);
    }
    let answer = SyncAnswer::parse(
        format!(
            r#"{{"keys":[{{"key_hash":"{}","decision":"invalid_key"}}]}}"#,
            key::hash(KEY_A)
        )
        .as_bytes(),
    )
    .unwrap();
    g1.on_sync_answer(Some(answer), 20, &s);
    let HeadersOutcome::Respond(reply) = g1.on_request_headers(9, headers(KEY_A), 21, &s) else {
        panic!("the VM that saw the revocation refuses at once")
    };
    assert_eq!(reply.status, 401);
    // g2 holds a slice: it is told, and its slice lapses as soon as it hears.
    assert!(s
        .notified
        .borrow()
        .contains(&(g2.vm_id(), key::hash(KEY_A))));
    g2.on_notified(&key::hash(KEY_A), 22, &s);
    let HeadersOutcome::Respond(reply) = g2.on_request_headers(9, headers(KEY_A), 23, &s) else {
        panic!("refused once told")
    };
    assert_eq!(reply.status, 401);
    // What g2's requests used is still reported (the control plane charges the records).
    assert_eq!(sent_records(&mut g2, &s, 11 + SLICE_TTL_MS).len(), 3);
}

#[test]
fn a_spent_lease_waits_for_other_vms_slices_before_refusing() {
    let s = store();
    let (mut g1, mut g2) = (gateway(1), gateway(2));
    warm(&mut g1, &s, 1000);
    // g2 bursts and keeps the unspent rest of its slice.
    for ctx in 1..=3 {
        g2.on_request_headers(ctx, headers(KEY_A), 10, &s);
        complete(&mut g2, &s, ctx, CHAT, 10);
    }
    // g1 spends the rest of the lease; the control plane has nothing more.
    let mut ctx = 10;
    loop {
        ctx += 1;
        match g1.on_request_headers(ctx, headers(KEY_A), 20, &s) {
            HeadersOutcome::Forward { .. } => continue,
            HeadersOutcome::Wait { .. } => break,
            HeadersOutcome::Respond(r) => panic!("refused with {} while g2 holds credit", r.status),
        }
    }
    let record = key::hash(KEY_A);
    let waiting = ctx;
    // The renewal g1 started at the low-water mark comes back exhausted.
    assert_eq!(g1.on_tick(1, 20, &s).lease_fetches.len(), 1);
    assert_eq!(
        g1.on_lease_answer(&record, exhausted(), 21, &s),
        vec![],
        "exhausted, but g2's slice still holds credit: keep waiting"
    );
    // g2's slice lapses and its tick settles it: g1 is woken and admitted.
    s.notified.borrow_mut().clear();
    let _ = g2.on_tick(1, 10 + SLICE_TTL_MS, &s);
    assert!(s.notified.borrow().contains(&(g1.vm_id(), record.clone())));
    assert_eq!(
        g1.on_notified(&record, 11 + SLICE_TTL_MS, &s),
        vec![(waiting, WaiterOutcome::Resume)]
    );
}

/// The default report interval, with batches of two records.
fn two_record_batches() -> Config {
    Config::parse(
        br#"{"proxy_id":"envoy-test","control_plane":{"cluster":"cp","authority":"cp","token":"t"},
            "lease_request_tokens":1000,"default_estimate_tokens":100,"max_batch":2,
            "providers":{"openai":{"auth_header":"authorization","auth_value":"Bearer sk"}}}"#,
    )
    .unwrap()
}

fn records_in(batch: &[u8]) -> usize {
    let v: serde_json::Value = serde_json::from_slice(batch).unwrap();
    v["records"].as_array().unwrap().len()
}

#[test]
fn reports_wait_for_a_full_batch_or_the_interval_and_a_backlog_drains_on_each_answer() {
    let config = two_record_batches();
    assert_eq!(config.report_interval_ms, 1_000, "the default");
    let mut g = Gateway::new(config, IdGen::from_seed([5; 16]));
    let s = store();
    g.on_request_headers(1, headers(KEY_A), 0, &s);
    g.on_lease_answer(&key::hash(KEY_A), granted(100_000, 60_000), 0, &s);
    complete(&mut g, &s, 1, CHAT, 0);
    assert!(
        g.on_tick(1, 0, &s).usage_batch.is_none(),
        "one record: not full, not old"
    );
    for ctx in 2..=5 {
        g.on_request_headers(ctx, headers(KEY_A), 100, &s);
        complete(&mut g, &s, ctx, CHAT, 100);
    }
    let first = g
        .on_tick(1, 200, &s)
        .usage_batch
        .expect("full: sent at once");
    assert_eq!(records_in(&first), 2);
    let (outcome, next) = g.on_usage_answer(Some(200), 210);
    assert_eq!(outcome, ReportOutcome::Acknowledged);
    assert_eq!(
        records_in(&next.expect("the next full batch, without a tick")),
        2
    );
    let (_, next) = g.on_usage_answer(Some(200), 220);
    assert!(next.is_none(), "one left: it waits");
    assert!(g.on_tick(1, 1_199, &s).usage_batch.is_none());
    let last = g
        .on_tick(1, 1_200, &s)
        .usage_batch
        .expect("waited a second");
    assert_eq!(records_in(&last), 1);
    g.on_usage_answer(Some(200), 1_210);
    assert_eq!(g.pending_records(), 0);
}

#[test]
fn shutting_down_sends_every_queued_record_at_once_batch_after_batch() {
    let config = two_record_batches();
    let mut g = Gateway::new(config, IdGen::from_seed([6; 16]));
    let s = store();
    g.on_request_headers(1, headers(KEY_A), 0, &s);
    g.on_lease_answer(&key::hash(KEY_A), granted(100_000, 60_000), 0, &s);
    complete(&mut g, &s, 1, CHAT, 0);
    for ctx in 2..=3 {
        g.on_request_headers(ctx, headers(KEY_A), 10, &s);
        complete(&mut g, &s, ctx, CHAT, 10);
    }
    let first = g.on_shutdown(20, &s).expect("sent without waiting");
    assert_eq!(records_in(&first), 2);
    assert_eq!(
        consumed(&s, KEY_A),
        3 * 29,
        "the slice went back: only what was used stays consumed"
    );
    let (_, next) = g.on_usage_answer(Some(200), 30);
    assert_eq!(
        records_in(&next.expect("the rest, though not full nor old")),
        1
    );
    let (_, next) = g.on_usage_answer(None, 40);
    assert!(next.is_none(), "no tick will come to retry: stop");
    assert_eq!(g.pending_records(), 1);
}

#[test]
fn a_lease_stops_being_used_early_enough_for_its_last_report_to_land_before_it_expires() {
    let config = Config::parse(
        br#"{"proxy_id":"envoy-test","control_plane":{"cluster":"cp","authority":"cp","token":"t"},
            "providers":{"openai":{"auth_header":"authorization","auth_value":"Bearer sk"}}}"#,
    )
    .unwrap();
    // 1 s for the answer's delay, plus the report interval (1 s) and a tick (0.2 s).
    assert_eq!(expiry_margin_ms(&config), 2_200);
    let mut g = Gateway::new(config, IdGen::from_seed([7; 16]));
    let s = store();
    g.on_request_headers(1, headers(KEY_A), 0, &s);
    g.on_lease_answer(&key::hash(KEY_A), granted(100_000, 60_000), 0, &s);
    complete(&mut g, &s, 1, CHAT, 0);
    assert!(matches!(
        g.on_request_headers(2, headers(KEY_A), 60_000 - 2_200 - 1, &s),
        HeadersOutcome::Forward { .. }
    ));
    assert!(matches!(
        g.on_request_headers(3, headers(KEY_A), 60_000 - 2_200, &s),
        HeadersOutcome::Wait { .. }
    ));
}
