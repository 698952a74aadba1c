//! The HTTP API end to end (in-process actix service over a real database).

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use alfred_control_plane::clock::TestClock;
use alfred_control_plane::db::schema::{api_keys, usage_records, users as users_table};
use alfred_control_plane::http;
use alfred_control_plane::users::{keys, UserStatus};
use chrono::TimeDelta;
use diesel::prelude::*;
use serde_json::{json, Value};

use crate::common::{at, create_user, start_time, state, TestDb, FILTER_TOKEN};
use crate::http_test;

macro_rules! app {
    ($db:expr, $clock:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new(state(&$db, &$clock)))
                .configure(http::routes),
        )
        .await
    };
}

async fn send<S>(app: &S, req: test::TestRequest) -> (StatusCode, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status();
    let body = test::read_body(resp).await;
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, value)
}

fn admin_post(key: &str, body: &str) -> test::TestRequest {
    test::TestRequest::post()
        .uri("/v1/admin/users")
        .insert_header(("x-api-key", key.to_owned()))
        .insert_header(("content-type", "application/json"))
        .set_payload(body.to_owned())
}

fn internal(uri: &str, body: Value) -> test::TestRequest {
    test::TestRequest::post()
        .uri(uri)
        .insert_header(("authorization", format!("Bearer {FILTER_TOKEN}")))
        .set_json(body)
}

fn user_count(db: &TestDb) -> i64 {
    users_table::table
        .count()
        .get_result(&mut db.conn())
        .unwrap()
}

fn key_count(db: &TestDb) -> i64 {
    api_keys::table.count().get_result(&mut db.conn()).unwrap()
}

http_test!(admin_creates_a_user_and_sees_the_key_once, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let admin = create_user(&db, "admin@example.com", 10_000, true);

    let (status, body) = send(
        &app,
        admin_post(
            &admin.api_key,
            r#"{"email": "user@company.com", "name": "New User", "personal_quota": 5000}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key = body["api_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("tp-") && keys::is_well_formed(&key));
    let id = body["id"].as_i64().unwrap();
    assert_eq!(
        body,
        json!({"id": id, "email": "user@company.com", "name": "New User", "personal_quota": 5000,
               "status": "active", "is_admin": false, "created_at": "2026-11-30T12:00:00Z", "api_key": key})
    );
    // Stored as its hash only.
    let stored: Vec<String> = api_keys::table
        .filter(api_keys::user_id.eq(id))
        .select(api_keys::key_hash)
        .load(&mut db.conn())
        .unwrap();
    assert_eq!(stored, [keys::hash_key(&key)]);

    // Never shown again.
    let get = test::TestRequest::get()
        .uri(&format!("/v1/admin/users/{id}"))
        .insert_header(("x-api-key", admin.api_key.clone()));
    let (status, body) = send(&app, get).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("api_key").is_none());
    assert_eq!(body["personal_quota"], 5000);
    assert_eq!(body["used_tokens"], 0);
    assert_eq!(body["available_quota"], 5000);

    let list = test::TestRequest::get()
        .uri("/v1/admin/users")
        .insert_header(("authorization", format!("Bearer {}", admin.api_key)));
    let (status, body) = send(&app, list).await;
    assert_eq!(status, StatusCode::OK);
    let emails: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["admin@example.com", "user@company.com"]);
    assert!(!body.to_string().contains("tp-"));

    // Default quota and the new key works.
    let (status, body) = send(
        &app,
        admin_post(&admin.api_key, r#"{"email":"d@example.com","name":"D"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["personal_quota"], 1000);
    let quota = test::TestRequest::get()
        .uri("/v1/users/me/quota")
        .insert_header(("authorization", format!("Bearer {key}")));
    assert_eq!(send(&app, quota).await.0, StatusCode::OK);

    let missing = test::TestRequest::get()
        .uri("/v1/admin/users/99999")
        .insert_header(("x-api-key", admin.api_key.clone()));
    let (status, body) = send(&app, missing).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["type"], "not_found_error");
});

http_test!(bad_input_is_refused_naming_the_field, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let admin = create_user(&db, "admin@example.com", 10_000, true);
    create_user(&db, "taken@example.com", 10, false);
    let cases: &[(&str, u16, Option<&str>, &str)] = &[
        (r#"{"name":"A"}"#, 422, Some("email"), "missing_field"),
        (
            r#"{"email":"a@example.com"}"#,
            422,
            Some("name"),
            "missing_field",
        ),
        (
            r#"{"email":"a@example.com","name":"A","personal_quota":-1}"#,
            422,
            Some("personal_quota"),
            "invalid_value",
        ),
        (
            r#"{"email":"a@example.com","name":"A","personal_quota":9223372036854775808}"#,
            422,
            Some("personal_quota"),
            "invalid_type",
        ),
        (
            r#"{"email":"a@example.com","name":"A","personal_quota":"100"}"#,
            422,
            Some("personal_quota"),
            "invalid_type",
        ),
        (
            r#"{"email":"a@example.com","name":"A","personal_quota":1.5}"#,
            422,
            Some("personal_quota"),
            "invalid_type",
        ),
        (
            r#"{"email":42,"name":"A"}"#,
            422,
            Some("email"),
            "invalid_type",
        ),
        (
            r#"{"email":"a@example.com","name":"A","is_admin":"yes"}"#,
            422,
            Some("is_admin"),
            "invalid_type",
        ),
        (
            r#"{"email":"a@example.com","name":"A","role":"admin"}"#,
            422,
            Some("role"),
            "unknown_field",
        ),
        (
            r#"{"email":"not-an-email","name":"A"}"#,
            422,
            Some("email"),
            "invalid_value",
        ),
        (
            r#"{"email":"a@example.com","name":""}"#,
            422,
            Some("name"),
            "invalid_value",
        ),
        (
            r#"{"email":"Taken@Example.com","name":"A"}"#,
            409,
            Some("email"),
            "email_taken",
        ),
        (
            r#"{"email":"a@example.com","name":"A""#,
            400,
            None,
            "invalid_json",
        ),
        (r#"not json"#, 400, None, "invalid_json"),
        (r#""#, 400, None, "invalid_json"),
        (r#"[]"#, 422, None, "invalid_type"),
    ];
    let long_name = format!(
        r#"{{"email":"a@example.com","name":"{}"}}"#,
        "n".repeat(201)
    );
    let mut all: Vec<(&str, u16, Option<&str>, &str)> = cases.to_vec();
    all.push((&long_name, 422, Some("name"), "invalid_value"));
    let (users_before, keys_before) = (user_count(&db), key_count(&db));
    for (body, status, field, code) in all {
        let (got, answer) = send(&app, admin_post(&admin.api_key, body)).await;
        assert_eq!(got.as_u16(), status, "{body} → {answer}");
        assert_eq!(
            answer["error"]["field"].as_str(),
            field,
            "{body} → {answer}"
        );
        assert_eq!(answer["error"]["code"], code, "{body} → {answer}");
        assert_eq!(
            answer["error"]["type"], "invalid_request_error",
            "{body} → {answer}"
        );
    }
    assert_eq!(
        (user_count(&db), key_count(&db)),
        (users_before, keys_before)
    );
});

http_test!(authentication_and_authorization, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let admin = create_user(&db, "admin@example.com", 10_000, true);
    let plain = create_user(&db, "plain@example.com", 10, false);
    let suspended = create_user(&db, "gone@example.com", 10, true);
    crate::common::set_status(
        &mut db.conn(),
        start_time(),
        suspended.user.id,
        UserStatus::Suspended,
    )
    .unwrap();
    let revoked_like = keys::generate().plaintext;
    let body = r#"{"email":"x@example.com","name":"X"}"#;

    let cases: Vec<(test::TestRequest, u16, &str, &str)> = vec![
        (test::TestRequest::post().uri("/v1/admin/users").set_payload(body), 401, "authentication_error", "invalid_api_key"),
        (admin_post(&revoked_like, body), 401, "authentication_error", "invalid_api_key"),
        (admin_post("tp-garbage", body), 401, "authentication_error", "invalid_api_key"),
        (admin_post(&plain.api_key, body), 403, "permission_error", "forbidden"),
        (admin_post(&suspended.api_key, body), 403, "permission_error", "user_suspended"),
        (test::TestRequest::get().uri("/v1/admin/users").insert_header(("x-api-key", plain.api_key.clone())), 403, "permission_error", "forbidden"),
        (test::TestRequest::get().uri("/v1/users/me/quota"), 401, "authentication_error", "invalid_api_key"),
        (
            test::TestRequest::get().uri("/v1/users/me/quota").insert_header(("authorization", format!("Bearer {}", suspended.api_key))),
            403,
            "permission_error",
            "user_suspended",
        ),
        (
            test::TestRequest::post().uri("/internal/v1/leases").set_json(json!({"key_hash": keys::hash_key(&admin.api_key), "proxy_id": "p", "requested_tokens": 1})),
            401,
            "authentication_error",
            "invalid_filter_token",
        ),
        (
            test::TestRequest::post()
                .uri("/internal/v1/usage")
                .insert_header(("authorization", format!("Bearer {}", admin.api_key)))
                .set_json(json!({"proxy_id": "p", "records": []})),
            401,
            "authentication_error",
            "invalid_filter_token",
        ),
    ];
    for (i, (req, status, kind, code)) in cases.into_iter().enumerate() {
        let (got, answer) = send(&app, req).await;
        assert_eq!(got.as_u16(), status, "case {i}: {answer}");
        assert_eq!(answer["error"]["type"], kind, "case {i}: {answer}");
        assert_eq!(answer["error"]["code"], code, "case {i}: {answer}");
    }
    assert_eq!(user_count(&db), 3);
    // The plain user may read their own quota.
    let own = test::TestRequest::get()
        .uri("/v1/users/me/quota")
        .insert_header(("x-api-key", plain.api_key.clone()));
    assert_eq!(send(&app, own).await.0, StatusCode::OK);
    // Probes need no key.
    assert_eq!(
        send(&app, test::TestRequest::get().uri("/healthz")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, test::TestRequest::get().uri("/readyz")).await.0,
        StatusCode::OK
    );
});

http_test!(lease_decisions_on_the_wire, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let user = create_user(&db, "l@example.com", 1000, false);
    let hash = keys::hash_key(&user.api_key);
    let uid = user.user.id;
    let ask = |tokens: i64| {
        internal(
            "/internal/v1/leases",
            json!({"key_hash": hash, "proxy_id": "envoy-a", "requested_tokens": tokens, "priority": "normal"}),
        )
    };

    let (status, body) = send(&app, ask(600)).await;
    assert_eq!(status, StatusCode::OK);
    let lease_id = body["lease_id"].as_str().unwrap().to_owned();
    assert_eq!(
        body,
        json!({"decision": "granted", "lease_id": lease_id, "user_id": uid, "granted_tokens": 600,
               "expires_in_ms": 60000, "quota_remaining": 1000, "period_reset_s": 43200})
    );
    // The same proxy asking again extends its lease: same id, the new total.
    let (_, body) = send(&app, ask(600)).await;
    assert_eq!(
        body,
        json!({"decision": "granted", "lease_id": lease_id, "user_id": uid, "granted_tokens": 1000,
               "expires_in_ms": 60000, "quota_remaining": 1000, "period_reset_s": 43200})
    );
    let (status, body) = send(&app, ask(1)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"decision": "exhausted", "user_id": uid, "budget_scope": "personal", "quota_remaining": 0, "period_reset_s": 43200})
    );

    let unknown = keys::hash_key(&keys::generate().plaintext);
    let (status, body) = send(
        &app,
        internal(
            "/internal/v1/leases",
            json!({"key_hash": unknown, "proxy_id": "envoy-a", "requested_tokens": 5}),
        ),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"decision": "invalid_key"}))
    );

    crate::common::set_status(&mut db.conn(), start_time(), uid, UserStatus::Suspended).unwrap();
    let (status, body) = send(&app, ask(1)).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"decision": "suspended", "user_id": uid})
        )
    );

    // Malformed requests are 4xx naming the field.
    let (status, body) = send(
        &app,
        internal(
            "/internal/v1/leases",
            json!({"key_hash": hash, "proxy_id": "envoy-a"}),
        ),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["field"].as_str()),
        (422, Some("requested_tokens"))
    );
    let (status, body) = send(
        &app,
        internal("/internal/v1/leases", json!({"key_hash": hash, "proxy_id": "envoy-a", "requested_tokens": 5, "priority": "urgent"})),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["field"].as_str()),
        (422, Some("priority"))
    );
    let bad_json = test::TestRequest::post()
        .uri("/internal/v1/leases")
        .insert_header(("authorization", format!("Bearer {FILTER_TOKEN}")))
        .set_payload("{\"key_hash\":");
    assert_eq!(send(&app, bad_json).await.0, StatusCode::BAD_REQUEST);
});

http_test!(usage_is_idempotent_and_shows_in_the_quota, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let user = create_user(&db, "q@example.com", 10_000, false);
    let uid = user.user.id;
    let (_, lease) = send(
        &app,
        internal("/internal/v1/leases", json!({"key_hash": keys::hash_key(&user.api_key), "proxy_id": "envoy-a", "requested_tokens": 2000})),
    )
    .await;
    let lease_id = lease["lease_id"].as_str().unwrap().to_owned();
    let record = |id: &str, total: i64| {
        json!({"request_id": id, "lease_id": lease_id, "user_id": uid, "provider": "openai", "model": "gpt-4o-mini",
               "input_tokens": 12, "output_tokens": total - 12, "total_tokens": total, "cached_tokens": 0,
               "reasoning_tokens": 0, "status": 200, "estimated": false, "priority": "normal",
               "project_id": null, "privacy": "standard", "ts_ms": 1_764_504_000_000_i64})
    };
    let batch = json!({"proxy_id": "envoy-a", "records": [record("0f8e0000000000000000000000000001", 42), record("0f8e0000000000000000000000000002", 3458)]});
    let (status, body) = send(&app, internal("/internal/v1/usage", batch.clone())).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"applied": 2, "duplicates": 0}))
    );
    let (status, body) = send(&app, internal("/internal/v1/usage", batch)).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"applied": 0, "duplicates": 2}))
    );

    // Admins see the records with their cost: gpt-4o-mini at $0.15 / $0.60 per 1M
    // tokens, so 12 in + 3446 out = 1,800 + 2,067,600 nano-USD.
    let admin = create_user(&db, "usage-admin@example.com", 0, true);
    let listing = |query: &str| {
        test::TestRequest::get()
            .uri(&format!("/v1/admin/users/{uid}/usage{query}"))
            .insert_header(("x-api-key", admin.api_key.clone()))
    };
    let (status, body) = send(&app, listing("?limit=1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.as_array().map(Vec::len), Some(1));
    assert_eq!(body[0]["request_id"], "0f8e0000000000000000000000000002");
    assert_eq!(
        (
            body[0]["total_tokens"].as_i64(),
            body[0]["unpriced"].as_bool()
        ),
        (Some(3458), Some(false))
    );
    assert!(
        (body[0]["cost_usd"].as_f64().unwrap() - 0.002_069_4).abs() < 1e-12,
        "{body}"
    );
    let (status, body) = send(&app, listing("")).await;
    assert_eq!(
        (status, body.as_array().map(Vec::len)),
        (StatusCode::OK, Some(2))
    );
    for (bad, field) in [
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=ten", "limit"),
        ("?bogus=1", "bogus"),
    ] {
        let (status, body) = send(&app, listing(bad)).await;
        assert_eq!(
            (status.as_u16(), body["error"]["field"].as_str()),
            (422, Some(field)),
            "{bad}: {body}"
        );
    }
    let (status, _) = send(
        &app,
        test::TestRequest::get()
            .uri(&format!("/v1/admin/users/{uid}/usage"))
            .insert_header(("x-api-key", user.api_key.clone())),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a user cannot read usage listings"
    );

    let quota = || {
        test::TestRequest::get()
            .uri("/v1/users/me/quota")
            .insert_header(("authorization", format!("Bearer {}", user.api_key)))
    };
    let (status, body) = send(&app, quota()).await;
    assert_eq!(status, StatusCode::OK);
    // 3500 used; the lease (2000 granted) is over-spent, so it holds 0, and the
    // 1500 past it are debt the next grant repays from personal credit.
    assert_eq!(
        body,
        json!({"personal_quota": 10000, "used_tokens": 3500, "available_quota": 6500, "team_pool_available": 0,
               "held_tokens": 0, "transferable": 6500, "overdraft_used": 0, "overdraft_available": 5000,
               "debt": 1500, "team_pools": [],
               "period_start": "2026-11-01T00:00:00Z", "period_end": "2026-12-01T00:00:00Z"})
    );

    // A bad record rejects the whole batch and names it.
    let mut bad = record("0f8e0000000000000000000000000003", 20);
    bad["total_tokens"] = json!("ten");
    let batch = json!({"proxy_id": "envoy-a", "records": [record("0f8e0000000000000000000000000004", 20), bad]});
    let (status, body) = send(&app, internal("/internal/v1/usage", batch)).await;
    assert_eq!(
        (status.as_u16(), body["error"]["field"].as_str()),
        (422, Some("records[1].total_tokens")),
        "{body}"
    );
    let mut negative = record("0f8e0000000000000000000000000005", 20);
    negative["cached_tokens"] = json!(-3);
    let batch = json!({"proxy_id": "envoy-a", "records": [record("0f8e0000000000000000000000000006", 20), negative]});
    let (status, body) = send(&app, internal("/internal/v1/usage", batch)).await;
    assert_eq!(
        (status.as_u16(), body["error"]["field"].as_str()),
        (422, Some("records[1].cached_tokens")),
        "{body}"
    );
    let stored: i64 = usage_records::table
        .count()
        .get_result(&mut db.conn())
        .unwrap();
    assert_eq!(stored, 2);

    // Next month the usage no longer counts.
    clock.set(at("2026-12-01 00:00:00"));
    let (_, body) = send(&app, quota()).await;
    assert_eq!(
        (
            body["used_tokens"].as_i64(),
            body["available_quota"].as_i64()
        ),
        (Some(0), Some(10_000))
    );
    assert_eq!(body["period_start"], "2026-12-01T00:00:00Z");
    assert_eq!(body["period_end"], "2027-01-01T00:00:00Z");
    clock.advance(TimeDelta::days(-1));
    let (_, body) = send(&app, quota()).await;
    assert_eq!(body["used_tokens"].as_i64(), Some(3500));
});

http_test!(sync_on_the_wire, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let user = create_user(&db, "sync@example.com", 1000, false);
    let gone = create_user(&db, "gone@example.com", 1000, false);
    crate::common::set_status(
        &mut db.conn(),
        start_time(),
        gone.user.id,
        UserStatus::Suspended,
    )
    .unwrap();
    let hash = keys::hash_key(&user.api_key);
    let gone_hash = keys::hash_key(&gone.api_key);
    let unknown = keys::hash_key(&keys::generate().plaintext);
    let (status, body) = send(
        &app,
        internal(
            "/internal/v1/sync",
            json!({"proxy_id": "envoy-1", "key_hashes": [hash, gone_hash, unknown]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"keys": [
            {"key_hash": hash, "decision": "active"},
            {"key_hash": gone_hash, "decision": "suspended"},
            {"key_hash": unknown, "decision": "invalid_key"},
        ]})
    );

    // Exhausted carries the scope and the reset.
    send(
        &app,
        internal("/internal/v1/usage", json!({"proxy_id": "envoy-1", "records": [
            {"request_id": "s-1", "user_id": user.user.id, "model": "gpt-4o", "total_tokens": 1000}]})),
    )
    .await;
    let (_, body) = send(
        &app,
        internal(
            "/internal/v1/sync",
            json!({"proxy_id": "envoy-1", "key_hashes": [hash]}),
        ),
    )
    .await;
    assert_eq!(
        body,
        json!({"keys": [{"key_hash": hash, "decision": "exhausted", "budget_scope": "personal", "period_reset_s": 43200}]})
    );

    let too_many = vec![unknown.clone(); 501];
    let (status, body) = send(
        &app,
        internal(
            "/internal/v1/sync",
            json!({"proxy_id": "envoy-1", "key_hashes": too_many}),
        ),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["field"].as_str()),
        (422, Some("key_hashes"))
    );
    let no_token = test::TestRequest::post()
        .uri("/internal/v1/sync")
        .set_json(json!({"proxy_id": "envoy-1", "key_hashes": []}));
    let (status, body) = send(&app, no_token).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (401, Some("invalid_filter_token"))
    );
});

fn admin_req(method: &str, uri: &str, key: &str, body: Option<&str>) -> test::TestRequest {
    let req = match method {
        "PUT" => test::TestRequest::put(),
        "DELETE" => test::TestRequest::delete(),
        "POST" => test::TestRequest::post(),
        _ => test::TestRequest::get(),
    }
    .uri(uri)
    .insert_header(("x-api-key", key.to_owned()));
    match body {
        Some(body) => req
            .insert_header(("content-type", "application/json"))
            .set_payload(body.to_owned()),
        None => req,
    }
}

http_test!(admin_edits_a_user_and_nothing_is_half_written, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let admin = create_user(&db, "admin@example.com", 10_000, true);
    let user = create_user(&db, "user@example.com", 1000, false);
    let uri = format!("/v1/admin/users/{}", user.user.id);

    let (status, body) = send(
        &app,
        admin_req(
            "PUT",
            &uri,
            &admin.api_key,
            Some(r#"{"name": "Updated Name", "personal_quota": 10000, "status": "on_vacation"}"#),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            &body["name"],
            &body["email"],
            &body["personal_quota"],
            &body["status"],
            &body["is_admin"],
            &body["available_quota"]
        ),
        (
            &json!("Updated Name"),
            &json!("user@example.com"),
            &json!(10000),
            &json!("on_vacation"),
            &json!(false),
            &json!(10000)
        )
    );
    let before = body;

    let cases: &[(&str, u16, &str, &str)] = &[
        (
            r#"{"personal_quota": -1}"#,
            422,
            "personal_quota",
            "invalid_value",
        ),
        (r#"{"status": "retired"}"#, 422, "status", "invalid_value"),
        (
            r#"{"name": "Changed", "email": "not-an-email"}"#,
            422,
            "email",
            "invalid_value",
        ),
        (
            r#"{"name": "", "personal_quota": 5}"#,
            422,
            "name",
            "invalid_value",
        ),
        (
            r#"{"name": "Changed", "email": "ADMIN@example.com"}"#,
            409,
            "email",
            "email_taken",
        ),
        (
            r#"{"name": "Changed", "role": "admin"}"#,
            422,
            "role",
            "unknown_field",
        ),
        (r#"{"is_admin": "yes"}"#, 422, "is_admin", "invalid_type"),
    ];
    for (payload, status, field, code) in cases {
        let (got, answer) = send(&app, admin_req("PUT", &uri, &admin.api_key, Some(payload))).await;
        assert_eq!(got.as_u16(), *status, "{payload} → {answer}");
        assert_eq!(answer["error"]["field"], *field, "{payload} → {answer}");
        assert_eq!(answer["error"]["code"], *code, "{payload} → {answer}");
    }
    let (_, after) = send(&app, admin_req("GET", &uri, &admin.api_key, None)).await;
    assert_eq!(after, before, "a refused update changed nothing");

    // Changing the email to its own (another case) is fine; promotion works at once.
    let (status, body) = send(
        &app,
        admin_req(
            "PUT",
            &uri,
            &admin.api_key,
            Some(r#"{"email": "USER@example.com", "is_admin": true}"#),
        ),
    )
    .await;
    assert_eq!((status, &body["is_admin"]), (StatusCode::OK, &json!(true)));
    let (status, _) = send(
        &app,
        admin_req("GET", "/v1/admin/users", &user.api_key, None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    for missing in ["/v1/admin/users/99999", "/v1/admin/users/abc"] {
        let (status, _) = send(
            &app,
            admin_req("PUT", missing, &admin.api_key, Some(r#"{"name": "X"}"#)),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let plain = create_user(&db, "plain@example.com", 10, false);
    let (status, _) = send(
        &app,
        admin_req("PUT", &uri, &plain.api_key, Some(r#"{"name": "X"}"#)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
});

http_test!(rotation_revocation_and_deletion_stop_the_old_keys, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let admin = create_user(&db, "admin@example.com", 10_000, true);
    let user = create_user(&db, "user@example.com", 1000, false);
    let uid = user.user.id;
    let quota = |key: &str| {
        test::TestRequest::get()
            .uri("/v1/users/me/quota")
            .insert_header(("x-api-key", key.to_owned()))
    };
    let sync = |key: &str| {
        internal(
            "/internal/v1/sync",
            json!({"proxy_id": "envoy-1", "key_hashes": [keys::hash_key(key)]}),
        )
    };

    let (status, body) = send(
        &app,
        admin_req(
            "POST",
            &format!("/v1/admin/users/{uid}/rotate-key"),
            &admin.api_key,
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new_key = body["api_key"].as_str().unwrap().to_owned();
    assert!(keys::is_well_formed(&new_key) && new_key != user.api_key);
    assert_eq!(body["id"], uid);
    assert_eq!(
        send(&app, quota(&user.api_key)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(&app, quota(&new_key)).await.0, StatusCode::OK);
    let (_, body) = send(&app, sync(&user.api_key)).await;
    assert_eq!(body["keys"][0]["decision"], "invalid_key");
    let (_, body) = send(&app, sync(&new_key)).await;
    assert_eq!(body["keys"][0]["decision"], "active");
    let stored: i64 = api_keys::table
        .filter(api_keys::user_id.eq(uid))
        .count()
        .get_result(&mut db.conn())
        .unwrap();
    assert_eq!(stored, 2, "the old key is revoked, not deleted");

    let (status, body) = send(
        &app,
        admin_req(
            "DELETE",
            &format!("/v1/admin/users/{uid}/keys"),
            &admin.api_key,
            None,
        ),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"id": uid, "revoked": 1}))
    );
    assert_eq!(
        send(&app, quota(&new_key)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, body) = send(&app, sync(&new_key)).await;
    assert_eq!(body["keys"][0]["decision"], "invalid_key");
    let (_, body) = send(
        &app,
        internal("/internal/v1/leases", json!({"key_hash": keys::hash_key(&new_key), "proxy_id": "envoy-1", "requested_tokens": 5})),
    )
    .await;
    assert_eq!(body, json!({"decision": "invalid_key"}));

    // Deletion: a fresh key first, so there is something to stop.
    let (_, body) = send(
        &app,
        admin_req(
            "POST",
            &format!("/v1/admin/users/{uid}/rotate-key"),
            &admin.api_key,
            None,
        ),
    )
    .await;
    let last_key = body["api_key"].as_str().unwrap().to_owned();
    let uri = format!("/v1/admin/users/{uid}");
    let (status, body) = send(&app, admin_req("DELETE", &uri, &admin.api_key, None)).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"id": uid, "deleted": true}))
    );
    assert_eq!(
        send(&app, quota(&last_key)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, body) = send(&app, sync(&last_key)).await;
    assert_eq!(body["keys"][0]["decision"], "invalid_key");
    for (method, path) in [
        ("GET", uri.clone()),
        ("DELETE", uri.clone()),
        ("POST", format!("{uri}/rotate-key")),
        ("DELETE", format!("{uri}/keys")),
    ] {
        let (status, _) = send(&app, admin_req(method, &path, &admin.api_key, None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let (status, _) = send(
        &app,
        admin_req("PUT", &uri, &admin.api_key, Some(r#"{"name":"Back"}"#)),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = send(
        &app,
        admin_req("GET", "/v1/admin/users", &admin.api_key, None),
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    // The row and its history stay.
    assert_eq!(user_count(&db), 2);

    let (status, body) = send(
        &app,
        admin_req(
            "DELETE",
            &format!("/v1/admin/users/{}", admin.user.id),
            &admin.api_key,
            None,
        ),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["field"].as_str()),
        (422, Some("id"))
    );
});

http_test!(metrics_count_what_happened, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let user = create_user(&db, "metrics@example.com", 100, false);
    let hash = keys::hash_key(&user.api_key);
    let ask = || {
        internal(
            "/internal/v1/leases",
            json!({"key_hash": hash, "proxy_id": "envoy-a", "requested_tokens": 100}),
        )
    };
    send(&app, ask()).await;
    send(&app, ask()).await;
    let record =
        json!({"request_id": "m-1", "user_id": user.user.id, "model": "gpt-4o", "total_tokens": 7});
    let batch = json!({"proxy_id": "envoy-a", "records": [record.clone()]});
    send(&app, internal("/internal/v1/usage", batch.clone())).await;
    send(&app, internal("/internal/v1/usage", batch)).await;
    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    for line in [
        "alfred_lease_grants_total{decision=\"granted\"} 1",
        "alfred_lease_grants_total{decision=\"exhausted\"} 1",
        "alfred_usage_batches_total 2",
        "alfred_usage_records_total{result=\"applied\"} 1",
        "alfred_usage_records_total{result=\"duplicate\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
});
