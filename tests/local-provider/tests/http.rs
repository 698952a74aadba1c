//! The provider over HTTP (in-process actix service): checks, knobs and counters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix_web::{test, web, App};
use alfred_local_provider::server::{self, AppState};
use serde_json::{json, Value};

const KEY: &str = "sk-local-test";

fn body() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]})
}

macro_rules! service {
    ($state:expr) => {
        test::init_service(
            App::new()
                .app_data($state.clone())
                .configure(server::configure),
        )
        .await
    };
}

macro_rules! stats {
    ($app:expr) => {{
        let value: Value = test::call_and_read_body_json(
            $app,
            test::TestRequest::get().uri("/_stats").to_request(),
        )
        .await;
        value
    }};
}

#[actix_web::test]
async fn completion_with_the_expected_key_is_counted() {
    let state = web::Data::new(AppState::new(Some(KEY.to_owned())));
    let app = service!(state);
    let req = test::TestRequest::post()
        .uri("/v1/chat/completions")
        .insert_header(("authorization", format!("Bearer {KEY}")))
        .set_json(body())
        .to_request();
    let resp: Value = test::call_and_read_body_json(&app, req).await;
    assert_eq!(resp["usage"]["total_tokens"], 28);
    let s = stats!(&app);
    assert_eq!(s["requests"], 1);
    assert_eq!(s["completed"], 1);
    assert_eq!(s["total_tokens_reported"], 28);
    assert_eq!(s["leaked_client_keys"], 0);
    assert_eq!(
        s["last_headers"]["auth"]["authorization"],
        json!({"starts_with_tp": false, "matches_expected": true})
    );
    let names = s["last_headers"]["names"].as_array().unwrap();
    assert!(names.contains(&json!("authorization")));
    assert!(
        !s.to_string().contains(KEY),
        "stats must never contain credentials"
    );
}

#[actix_web::test]
async fn a_client_key_in_any_header_is_a_leak() {
    let state = web::Data::new(AppState::new(Some(KEY.to_owned())));
    let app = service!(state);
    let req = test::TestRequest::post()
        .uri("/v1/chat/completions")
        .insert_header(("authorization", format!("Bearer {KEY}")))
        .insert_header(("x-api-key", "tp-abcdef"))
        .set_json(body())
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 400);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["error"]["code"], "client_key_leaked");
    let s = stats!(&app);
    assert_eq!(s["leaked_client_keys"], 1);
    assert_eq!(s["completed"], 0);
    assert_eq!(
        s["last_headers"]["auth"]["x-api-key"]["starts_with_tp"],
        true
    );
    assert!(!s.to_string().contains("tp-abcdef"));
}

#[actix_web::test]
async fn a_missing_or_wrong_credential_is_401() {
    let state = web::Data::new(AppState::new(Some(KEY.to_owned())));
    let app = service!(state);
    for auth in [None, Some("Bearer wrong"), Some(KEY)] {
        let mut req = test::TestRequest::post()
            .uri("/v1/chat/completions")
            .set_json(body());
        if let Some(auth) = auth {
            req = req.insert_header(("authorization", auth));
        }
        let resp = test::call_service(&app, req.to_request()).await;
        assert_eq!(resp.status(), 401, "{auth:?}");
        let body: Value = test::read_body_json(resp).await;
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }
    assert_eq!(stats!(&app)["rejected_credential"], 3);
}

#[actix_web::test]
async fn injected_failures_and_reset() {
    let state = web::Data::new(AppState::new(None));
    let app = service!(state);
    let req = test::TestRequest::post()
        .uri("/v1/chat/completions")
        .insert_header(("x-local-provider-fail", "429"))
        .set_json(body())
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 429);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(stats!(&app)["injected_failures"], 1);
    let reset =
        test::call_service(&app, test::TestRequest::post().uri("/_reset").to_request()).await;
    assert!(reset.status().is_success());
    assert_eq!(stats!(&app)["requests"], 0);
}

#[actix_web::test]
async fn chunked_stream_keeps_every_byte_and_aborted_usage_is_not_reported() {
    let state = web::Data::new(AppState::new(None));
    let app = service!(state);
    let stream_body = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}]});
    let whole = test::call_and_read_body(
        &app,
        test::TestRequest::post()
            .uri("/v1/chat/completions")
            .set_json(&stream_body)
            .to_request(),
    )
    .await;
    let chunked = test::call_and_read_body(
        &app,
        test::TestRequest::post()
            .uri("/v1/chat/completions")
            .insert_header(("x-local-provider-chunk-bytes", "3"))
            .set_json(&stream_body)
            .to_request(),
    )
    .await;
    // Same bytes apart from the per-response id.
    assert_eq!(whole.len(), chunked.len());
    assert!(std::str::from_utf8(&chunked)
        .unwrap()
        .ends_with("data: [DONE]\n\n"));
    assert_eq!(stats!(&app)["total_tokens_reported"], 2 * (4 + 24));

    let resp = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/v1/chat/completions")
            .insert_header(("x-local-provider-abort-after", "2"))
            .set_json(&stream_body)
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let s = stats!(&app);
    assert_eq!(s["aborted"], 1);
    assert_eq!(
        s["total_tokens_reported"],
        2 * (4 + 24),
        "usage chunk never sent"
    );
    assert_eq!(s["total_tokens_spent"], 3 * (4 + 24));
}

#[actix_web::test]
async fn unknown_routes_are_openai_404s() {
    let state = web::Data::new(AppState::new(None));
    let app = service!(state);
    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/v1/nope").to_request()).await;
    assert_eq!(resp.status(), 404);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

/// Each provider API checks its own credential header and answers in its own shape.
#[actix_web::test]
async fn every_dialect_checks_its_own_credential() {
    let state = web::Data::new(AppState::new(Some(KEY.to_owned())).with_sigv4(true));
    let app = service!(state);
    let gemini = json!({"contents": [{"role": "user", "parts": [{"text": "Hello!"}]}]});
    let anthropic = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "Hello!"}]});
    let chat = body();
    let bedrock = json!({"messages": [{"role": "user", "content": [{"text": "Hello!"}]}]});
    let sigv4 = "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    // (path, body, good header, expected status without it)
    let cases: Vec<(&str, &Value, (&str, String), u16)> = vec![
        (
            "/v1/messages",
            &anthropic,
            ("x-api-key", KEY.to_owned()),
            401,
        ),
        (
            "/v1beta/models/g:generateContent",
            &gemini,
            ("x-goog-api-key", KEY.to_owned()),
            400,
        ),
        (
            "/v1/models/g:generateContent",
            &gemini,
            ("x-goog-api-key", KEY.to_owned()),
            400,
        ),
        (
            "/openai/deployments/d/chat/completions?api-version=2024-10-21",
            &chat,
            ("api-key", KEY.to_owned()),
            401,
        ),
        (
            "/vllm/v1/chat/completions",
            &chat,
            ("authorization", format!("Bearer {KEY}")),
            401,
        ),
        (
            "/model/m/converse",
            &bedrock,
            ("authorization", sigv4.to_owned()),
            403,
        ),
    ];
    for (path, payload, (name, value), refused) in cases {
        let resp = test::call_service(
            &app,
            test::TestRequest::post()
                .uri(path)
                .insert_header(("anthropic-version", "2023-06-01"))
                .set_json(payload)
                .to_request(),
        )
        .await;
        assert_eq!(resp.status(), refused, "{path} without credential");
        let resp = test::call_service(
            &app,
            test::TestRequest::post()
                .uri(path)
                .insert_header(("anthropic-version", "2023-06-01"))
                .insert_header((name, value.as_str()))
                .set_json(payload)
                .to_request(),
        )
        .await;
        assert_eq!(resp.status(), 200, "{path} with credential");
    }
    let s = stats!(&app);
    assert_eq!(s["completed"], 6);
    assert_eq!(s["rejected_credential"], 6);
    assert_eq!(
        s["by_provider"],
        json!({"anthropic": 2, "gemini": 4, "azure": 2, "vllm": 2, "bedrock": 2})
    );
}

#[actix_web::test]
async fn keyless_ollama_refuses_any_credential_when_keys_are_checked() {
    let state = web::Data::new(AppState::new(Some(KEY.to_owned())));
    let app = service!(state);
    let payload = json!({"model": "llama3.2", "stream": false, "messages": [{"role": "user", "content": "Hello!"}]});
    for path in [
        "/api/chat",
        "/ollama/api/chat",
        "/ollama/v1/chat/completions",
    ] {
        let ok = test::call_service(
            &app,
            test::TestRequest::post()
                .uri(path)
                .set_json(&payload)
                .to_request(),
        )
        .await;
        assert_eq!(ok.status(), 200, "{path}");
        let refused = test::call_service(
            &app,
            test::TestRequest::post()
                .uri(path)
                .insert_header(("authorization", format!("Bearer {KEY}")))
                .set_json(&payload)
                .to_request(),
        )
        .await;
        assert_eq!(refused.status(), 401, "{path}");
    }
    let resp: Value = test::call_and_read_body_json(
        &app,
        test::TestRequest::post()
            .uri("/api/chat")
            .set_json(&payload)
            .to_request(),
    )
    .await;
    assert_eq!(
        (
            resp["prompt_eval_count"].as_u64(),
            resp["eval_count"].as_u64()
        ),
        (Some(4), Some(24))
    );
}

#[actix_web::test]
async fn anthropic_requires_its_version_header() {
    let state = web::Data::new(AppState::new(None));
    let app = service!(state);
    let resp = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/v1/messages")
            .set_json(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

/// Odd-sized writes keep every byte of binary event-stream frames (CRCs still check),
/// and the provider's injected errors use each API's error shape.
#[actix_web::test]
async fn bedrock_stream_survives_odd_chunks_and_errors_have_aws_shape() {
    let state = web::Data::new(AppState::new(None));
    let app = service!(state);
    let payload = json!({"messages": [{"role": "user", "content": [{"text": "Hello!"}]}]});
    let chunked = test::call_and_read_body(
        &app,
        test::TestRequest::post()
            .uri("/model/m/converse-stream")
            .insert_header(("x-local-provider-chunk-bytes", "5"))
            .set_json(&payload)
            .to_request(),
    )
    .await;
    let mut at = 0;
    let mut events = 0;
    while at < chunked.len() {
        let (_, len) = alfred_local_provider::eventstream::decode(&chunked[at..]).unwrap();
        at += len;
        events += 1;
    }
    assert_eq!(events, 1 + 24 + 3);
    assert_eq!(stats!(&app)["total_tokens_reported"], 28);

    let resp = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/model/m/converse")
            .insert_header(("x-local-provider-fail", "429"))
            .set_json(&payload)
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert!(resp
        .headers()
        .get("x-amzn-errortype")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("ThrottlingException:"));
}

#[actix_web::test]
async fn aborted_ndjson_stream_reports_no_usage() {
    let state = web::Data::new(AppState::new(None));
    let app = service!(state);
    let resp = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/api/generate")
            .insert_header(("x-local-provider-abort-after", "3"))
            .set_json(json!({"model": "m", "prompt": "Hello!"}))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/x-ndjson"
    );
    let s = stats!(&app);
    assert_eq!(
        (s["aborted"].as_u64(), s["total_tokens_reported"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(s["total_tokens_spent"], 28);
}
