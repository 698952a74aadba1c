//! The gateway driven the way the adapter drives it, with a fake clock and fake answers.

use super::*;
use crate::config::Config;
use crate::protocol::LeaseAnswer;

const KEY_A: &str = "tp-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const KEY_B: &str = "tp-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn gateway() -> Gateway {
    let config = Config::parse(
        br#"{"proxy_id":"envoy-test","control_plane":{"cluster":"cp","authority":"cp","token":"t"},
            "lease_request_tokens":1000,"default_estimate_tokens":100,"tick_ms":200,
            "providers":{"openai":{"auth_header":"authorization","auth_value":"Bearer sk-provider"}}}"#,
    )
    .unwrap();
    Gateway::new(config, IdGen::from_seed([7; 16]))
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

fn granted(tokens: u64, ttl_ms: u64) -> Result<LeaseAnswer, String> {
    Ok(LeaseAnswer::Granted {
        lease_id: format!("lease-{tokens}-{ttl_ms}"),
        user_id: 42,
        granted_tokens: tokens,
        expires_in_ms: ttl_ms,
        quota_remaining: 5000,
        period_reset_s: 3600,
    })
}

fn credential() -> (String, String) {
    (
        "authorization".to_string(),
        "Bearer sk-provider".to_string(),
    )
}

const CHAT: &[u8] = br#"{"id":"c","object":"chat.completion","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29}}"#;

fn complete(g: &mut Gateway, ctx: u32, body: &[u8], now: u64) {
    g.on_response_headers(ctx, 200, Some("application/json"));
    g.on_response_body(ctx, body, true);
    g.on_request_end(ctx, now);
}

fn sent_records(g: &mut Gateway, now: u64) -> Vec<serde_json::Value> {
    let body = g.next_usage_batch(now).expect("a batch is due");
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

#[test]
fn cold_user_waits_once_then_requests_are_served_from_the_lease() {
    let mut g = gateway();
    let HeadersOutcome::Wait {
        credential: cred,
        fetch: Some(fetch),
        ..
    } = g.on_request_headers(1, headers(KEY_A), 0)
    else {
        panic!("first request must wait for a lease")
    };
    assert_eq!(cred, credential());
    assert_eq!(fetch.key_hash, crate::key::hash(KEY_A));
    let body: serde_json::Value = serde_json::from_slice(&fetch.body).unwrap();
    assert_eq!(body["requested_tokens"], 1000);
    assert_eq!(body["proxy_id"], "envoy-test");
    assert_eq!(body["priority"], "normal");
    assert!(
        !String::from_utf8_lossy(&fetch.body).contains(KEY_A),
        "the raw key never leaves the proxy"
    );

    // A second request of the same user while the lease is on its way: single flight.
    assert_eq!(
        g.on_request_headers(2, headers(KEY_A), 1),
        HeadersOutcome::Wait {
            credential: credential(),
            fetch: None,
            inspect_body: false
        }
    );

    let outcomes = g.on_lease_answer(&fetch.key_hash, granted(1000, 60_000), 5);
    assert_eq!(
        outcomes,
        vec![(1, WaiterOutcome::Resume), (2, WaiterOutcome::Resume)]
    );

    // Warm: no wait. Estimate = 100 + 400/4 = 200 per request; 3 reserved → 600.
    assert_eq!(
        g.on_request_headers(3, headers(KEY_A), 6),
        HeadersOutcome::Forward {
            credential: credential(),
            inspect_body: false
        }
    );
    let added = g.on_response_headers(3, 200, Some("application/json"));
    assert_eq!(added[1], ("x-alfred-quota-remaining", "4400".to_string()));
    g.on_response_body(3, CHAT, true);
    g.on_request_end(3, 7);
    g.on_request_end(3, 8); // on_log after end of stream: idempotent
    complete(&mut g, 1, CHAT, 9);
    complete(&mut g, 2, CHAT, 9);

    let records = sent_records(&mut g, 10);
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
        assert_eq!(r["model"], "gpt-4o-mini");
        assert_eq!(r["user_id"], 42);
        assert_eq!(r["estimated"], false);
        assert_eq!(r["lease_id"], "lease-1000-60000");
    }
    let ids: std::collections::HashSet<_> = records
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "request ids are distinct");
    // Settled: 3 × 29 consumed of 1000, so the next request reports 5000 − 87 − 200.
    g.on_request_headers(4, headers(KEY_A), 11);
    let added = g.on_response_headers(4, 200, None);
    assert_eq!(added[1].1, "4713");
}

#[test]
fn users_do_not_share_leases() {
    let mut g = gateway();
    assert!(matches!(
        g.on_request_headers(1, headers(KEY_A), 0),
        HeadersOutcome::Wait { fetch: Some(_), .. }
    ));
    assert!(matches!(
        g.on_request_headers(2, headers(KEY_B), 0),
        HeadersOutcome::Wait { fetch: Some(_), .. }
    ));
}

#[test]
fn lease_running_dry_asks_again_and_exhaustion_is_429_remembered_briefly() {
    let mut g = gateway();
    let hash = crate::key::hash(KEY_A);
    g.on_request_headers(1, headers(KEY_A), 0);
    assert_eq!(
        g.on_lease_answer(&hash, granted(20, 60_000), 0),
        vec![(1, WaiterOutcome::Resume)]
    );
    complete(&mut g, 1, CHAT, 1); // 29 used of a 20-token grant

    let HeadersOutcome::Wait { fetch: Some(_), .. } = g.on_request_headers(2, headers(KEY_A), 2)
    else {
        panic!("a spent lease must be renewed")
    };
    let exhausted = Ok(LeaseAnswer::Exhausted {
        user_id: 42,
        budget_scope: "personal".into(),
        period_reset_s: 777,
    });
    let outcomes = g.on_lease_answer(&hash, exhausted, 3);
    let WaiterOutcome::Respond(reply) = &outcomes[0].1 else {
        panic!("must refuse")
    };
    assert_eq!(reply.status, 429);
    assert!(reply.headers.contains(&("retry-after", "777".to_string())));
    assert!(reply
        .headers
        .contains(&("x-should-retry", "false".to_string())));

    // Remembered for REFUSAL_TTL_MS without asking the control plane again…
    let HeadersOutcome::Respond(reply) =
        g.on_request_headers(3, headers(KEY_A), 3 + REFUSAL_TTL_MS - 1)
    else {
        panic!("cached refusal")
    };
    assert_eq!(reply.status, 429);
    // …then asked again (an admin may have raised the quota).
    assert!(matches!(
        g.on_request_headers(4, headers(KEY_A), 3 + REFUSAL_TTL_MS),
        HeadersOutcome::Wait { fetch: Some(_), .. }
    ));
}

#[test]
fn unknown_key_and_suspended_user_are_refused_in_the_contract_shape() {
    let mut g = gateway();
    let hash = crate::key::hash(KEY_A);
    g.on_request_headers(1, headers(KEY_A), 0);
    g.on_request_headers(2, headers(KEY_A), 0);
    let outcomes = g.on_lease_answer(&hash, Ok(LeaseAnswer::InvalidKey), 1);
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
    // Refused requests leave no usage behind.
    assert!(g.next_usage_batch(2).is_none());

    let hash_b = crate::key::hash(KEY_B);
    g.on_request_headers(3, headers(KEY_B), 0);
    let outcomes = g.on_lease_answer(&hash_b, Ok(LeaseAnswer::Suspended { user_id: 9 }), 1);
    assert_eq!(status_of(&outcomes[0].1), Some(403));
}

#[test]
fn malformed_or_missing_key_and_unknown_paths_never_reach_the_control_plane() {
    let mut g = gateway();
    let mut h = headers(KEY_A);
    h.key = ClientKey::Missing;
    assert!(matches!(
        g.on_request_headers(1, h, 0),
        HeadersOutcome::Respond(LocalReply { status: 401, .. })
    ));
    let mut h = headers(KEY_A);
    h.key = ClientKey::Malformed;
    assert!(matches!(
        g.on_request_headers(2, h, 0),
        HeadersOutcome::Respond(LocalReply { status: 401, .. })
    ));
    let mut h = headers(KEY_A);
    h.path = "/v1/admin/users";
    assert!(matches!(
        g.on_request_headers(3, h, 0),
        HeadersOutcome::Respond(LocalReply { status: 404, .. })
    ));
}

#[test]
fn control_plane_failure_fails_closed_but_is_not_remembered() {
    let mut g = gateway();
    let hash = crate::key::hash(KEY_A);
    g.on_request_headers(1, headers(KEY_A), 0);
    let outcomes = g.on_lease_answer(&hash, Err("timeout".into()), 2000);
    let WaiterOutcome::Respond(reply) = &outcomes[0].1 else {
        panic!()
    };
    assert_eq!(reply.status, 503);
    assert!(String::from_utf8_lossy(&reply.body).contains("governance_unavailable"));
    assert!(matches!(
        g.on_request_headers(2, headers(KEY_A), 2001),
        HeadersOutcome::Wait { fetch: Some(_), .. }
    ));
}

#[test]
fn unexpired_lease_keeps_serving_through_an_outage_and_expiry_forces_a_renewal() {
    let mut g = gateway();
    let hash = crate::key::hash(KEY_A);
    g.on_request_headers(1, headers(KEY_A), 0);
    g.on_lease_answer(&hash, granted(1000, 60_000), 0);
    complete(&mut g, 1, CHAT, 1);
    g.usage_send_failed(2); // control plane gone
    assert!(matches!(
        g.on_request_headers(2, headers(KEY_A), 59_999),
        HeadersOutcome::Forward { .. }
    ));
    assert!(matches!(
        g.on_request_headers(3, headers(KEY_A), 60_000),
        HeadersOutcome::Wait { fetch: Some(_), .. }
    ));
}

#[test]
fn waiters_beyond_the_grant_are_refused_not_forwarded() {
    let mut g = gateway();
    let hash = crate::key::hash(KEY_A);
    g.on_request_headers(1, headers(KEY_A), 0);
    g.on_request_headers(2, headers(KEY_A), 0);
    let outcomes = g.on_lease_answer(&hash, granted(150, 60_000), 0);
    assert_eq!(outcomes[0], (1, WaiterOutcome::Resume));
    assert_eq!(status_of(&outcomes[1].1), Some(429));
}

#[test]
fn leader_gone_hands_the_lease_request_to_the_root_context() {
    let mut g = gateway();
    let hash = crate::key::hash(KEY_A);
    g.on_request_headers(1, headers(KEY_A), 0);
    g.on_request_headers(2, headers(KEY_A), 0);
    g.on_request_end(1, 1); // the leader's client went away; its call is cancelled
    let orphans = g.orphaned_fetches(99);
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].key_hash, hash);
    assert!(g.orphaned_fetches(99).is_empty(), "taken over once");
    assert_eq!(
        g.on_lease_answer(&hash, granted(1000, 60_000), 2),
        vec![(2, WaiterOutcome::Resume)]
    );
    // Nobody waiting and no leader: the fetch is simply dropped.
    g.on_request_headers(3, headers(KEY_B), 0);
    g.on_request_end(3, 1);
    assert!(g.orphaned_fetches(99).is_empty());
}

#[test]
fn cut_stream_is_charged_an_estimate_and_marked() {
    let mut g = gateway();
    g.on_request_headers(1, headers(KEY_A), 0);
    g.on_lease_answer(&crate::key::hash(KEY_A), granted(1000, 60_000), 0);
    g.on_response_headers(1, 200, Some("text/event-stream; charset=utf-8"));
    let partial = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hello wor";
    g.on_response_body(1, partial, false);
    g.on_request_end(1, 5); // client disconnected: on_log without end of stream
    let r = &sent_records(&mut g, 6)[0];
    assert_eq!(r["estimated"], true);
    assert_eq!(r["input_tokens"], 100); // 400 request bytes / 4
    assert_eq!(r["output_tokens"], (partial.len() as u64).div_ceil(4));
    assert_eq!(r["total_tokens"], 100 + (partial.len() as u64).div_ceil(4));
}

#[test]
fn provider_error_charges_nothing_and_releases_the_reservation() {
    let mut g = gateway();
    g.on_request_headers(1, headers(KEY_A), 0);
    g.on_lease_answer(&crate::key::hash(KEY_A), granted(200, 60_000), 0);
    g.on_response_headers(1, 500, Some("application/json"));
    g.on_response_body(
        1,
        br#"{"error":{"message":"boom","usage":{"total_tokens":5}}}"#,
        true,
    );
    g.on_request_end(1, 1);
    let r = &sent_records(&mut g, 2)[0];
    assert_eq!(
        (r["total_tokens"].as_u64(), r["status"].as_u64()),
        (Some(0), Some(500))
    );
    // The whole 200-token grant is free again.
    assert!(matches!(
        g.on_request_headers(2, headers(KEY_A), 3),
        HeadersOutcome::Forward { .. }
    ));
}

#[test]
fn alfred_headers_travel_in_the_record() {
    let mut g = gateway();
    let mut h = headers(KEY_A);
    h.priority = Some("CRITICAL");
    h.privacy = Some("strict");
    h.project_id = Some("project-123");
    g.on_request_headers(1, h, 0);
    g.on_lease_answer(&crate::key::hash(KEY_A), granted(1000, 60_000), 0);
    complete(&mut g, 1, CHAT, 1);
    let r = &sent_records(&mut g, 2)[0];
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
fn sweep_forgets_idle_users_only() {
    let mut g = gateway();
    g.on_request_headers(1, headers(KEY_A), 0);
    g.on_lease_answer(&crate::key::hash(KEY_A), granted(1000, 1_000), 0);
    g.on_request_headers(2, headers(KEY_B), 0); // fetch in flight
    g.sweep(5_000);
    assert_eq!(g.users.len(), 1);
    assert!(g.users.contains_key(&crate::key::hash(KEY_B)));
}

fn with_body(key: &str) -> RequestHeaders<'_> {
    RequestHeaders {
        has_body: true,
        ..headers(key)
    }
}

#[test]
fn stream_without_include_usage_gets_it_and_the_client_never_sees_the_usage_chunk() {
    let mut g = gateway();
    let hash = crate::key::hash(KEY_A);
    // Cold: waits for the lease and reads the body; the lease arrives first.
    let HeadersOutcome::Wait {
        inspect_body: true, ..
    } = g.on_request_headers(1, with_body(KEY_A), 0)
    else {
        panic!("chat requests with a body are inspected")
    };
    assert_eq!(g.on_request_body(1, 10, false, || None), BodyAction::Buffer);
    assert_eq!(
        g.on_lease_answer(&hash, granted(1000, 60_000), 1),
        vec![(1, WaiterOutcome::AwaitBody)]
    );
    let request = br#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#;
    let BodyAction::Replace {
        body,
        proceed: true,
    } = g.on_request_body(1, request.len(), true, || Some(request.to_vec()))
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
    g.on_request_end(1, 2);
    let r = &sent_records(&mut g, 3)[0];
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
    let mut g = gateway();
    let hash = crate::key::hash(KEY_A);
    g.on_request_headers(1, headers(KEY_A), 0);
    g.on_lease_answer(&hash, granted(1000, 60_000), 0);
    assert_eq!(
        g.on_request_headers(2, with_body(KEY_A), 1),
        HeadersOutcome::Forward {
            credential: credential(),
            inspect_body: true
        }
    );
    assert_eq!(g.on_request_body(2, 5, false, || None), BodyAction::Buffer);
    let request = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
    assert_eq!(
        g.on_request_body(2, request.len(), true, || Some(request.to_vec())),
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
    let mut g = gateway();
    let hash = crate::key::hash(KEY_A);
    let mut h = with_body(KEY_A);
    h.path = "/v1/embeddings";
    let HeadersOutcome::Wait {
        inspect_body: false,
        ..
    } = g.on_request_headers(1, h, 0)
    else {
        panic!()
    };
    assert_eq!(
        g.on_request_body(1, 10, true, || None),
        BodyAction::Buffer,
        "held until the lease is in"
    );
    assert_eq!(
        g.on_lease_answer(&hash, granted(1000, 60_000), 1),
        vec![(1, WaiterOutcome::Resume)]
    );
    assert_eq!(
        g.on_request_body(1, 10, true, || None),
        BodyAction::Continue
    );
}

#[test]
fn oversized_body_is_413_and_returns_its_reservation() {
    let mut g = gateway();
    let hash = crate::key::hash(KEY_A);
    g.on_request_headers(1, headers(KEY_A), 0);
    g.on_lease_answer(&hash, granted(300, 60_000), 0);
    complete(&mut g, 1, br#"{"usage":{"total_tokens":0}}"#, 0);
    g.on_request_headers(2, with_body(KEY_A), 1); // reserves 200 of 300
    let BodyAction::Respond(reply) = g.on_request_body(2, 33 * 1024 * 1024, false, || None) else {
        panic!()
    };
    assert_eq!(reply.status, 413);
    assert!(String::from_utf8_lossy(&reply.body).contains("request_too_large"));
    // The 200 are free again: another request fits.
    assert!(matches!(
        g.on_request_headers(3, headers(KEY_A), 2),
        HeadersOutcome::Forward { .. }
    ));
    assert!(matches!(
        g.on_request_headers(4, headers(KEY_A), 2),
        HeadersOutcome::Forward { .. }
    ));
}

#[test]
fn privacy_strict_sets_store_false() {
    let mut g = gateway();
    g.on_request_headers(1, headers(KEY_A), 0);
    g.on_lease_answer(&crate::key::hash(KEY_A), granted(1000, 60_000), 0);
    let mut h = with_body(KEY_A);
    h.privacy = Some("strict");
    g.on_request_headers(2, h, 1);
    let request = br#"{"model":"m","messages":[]}"#;
    let BodyAction::Replace {
        body,
        proceed: true,
    } = g.on_request_body(2, request.len(), true, || Some(request.to_vec()))
    else {
        panic!()
    };
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["store"],
        false
    );
}
