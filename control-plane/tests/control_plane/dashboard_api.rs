//! Dashboard support: log-in sessions (cookie), the `/static/` files and usage
//! analytics — through the in-process actix service over a real database.

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use alfred_control_plane::clock::TestClock;
use alfred_control_plane::http::{self, AppState};
use alfred_control_plane::pricing::PriceCatalog;
use alfred_control_plane::quota::QuotaPeriod;
use alfred_control_plane::usage::{self, UsageBatch};
use alfred_control_plane::users::{self, UserStatus};
use chrono::TimeDelta;
use serde_json::Value;

use crate::common::{at, create_user, start_time, state, TestDb};
use crate::http_test;
use crate::leases::report;

macro_rules! app {
    ($state:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new($state))
                .configure(http::routes),
        )
        .await
    };
}

struct Answer {
    status: StatusCode,
    body: Value,
    set_cookie: Option<String>,
}

async fn send<S>(app: &S, req: test::TestRequest) -> Answer
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status();
    let set_cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = test::read_body(resp).await;
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Answer {
        status,
        body,
        set_cookie,
    }
}

fn login(key: &str) -> test::TestRequest {
    test::TestRequest::post()
        .uri("/v1/auth/login")
        .insert_header(("content-type", "application/json"))
        .set_payload(format!(r#"{{"api_key": "{key}"}}"#))
}

/// The cookie pair (`alfred_session=…`) of a `Set-Cookie` value.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

fn with_cookie(req: test::TestRequest, cookie: &str) -> test::TestRequest {
    req.insert_header(("cookie", cookie.to_owned()))
}

async fn logged_in<S>(app: &S, key: &str) -> String
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let answer = send(app, login(key)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    cookie_pair(&answer.set_cookie.unwrap())
}

http_test!(
    login_sets_a_strict_http_only_cookie_that_every_route_accepts,
    |db| {
        let clock = TestClock::new(start_time());
        let app = app!(state(&db, &clock));
        let admin = create_user(&db, "admin@example.com", 10_000, true);

        let answer = send(&app, login(&admin.api_key)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body["user"]["id"], admin.user.id);
        assert_eq!(answer.body["user"]["is_admin"], true);
        assert_eq!(answer.body["expires_at"], "2026-11-30T13:00:00Z");
        let set_cookie = answer.set_cookie.unwrap();
        assert!(set_cookie.starts_with("alfred_session="), "{set_cookie}");
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"] {
            assert!(
                set_cookie.contains(attribute),
                "{attribute} missing: {set_cookie}"
            );
        }
        assert!(!set_cookie.contains("Secure"), "{set_cookie}");
        assert!(!set_cookie.contains(&admin.api_key));
        let cookie = cookie_pair(&set_cookie);

        let me = send(
            &app,
            with_cookie(test::TestRequest::get().uri("/v1/auth/session"), &cookie),
        )
        .await;
        assert_eq!(me.status, StatusCode::OK);
        assert_eq!(me.body["email"], "admin@example.com");
        assert_eq!(me.body["status"], "active");

        // Existing routes take the session like a key: admin list, my quota.
        let list = send(
            &app,
            with_cookie(test::TestRequest::get().uri("/v1/admin/users"), &cookie),
        )
        .await;
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(list.body.as_array().unwrap().len(), 1);
        let quota = send(
            &app,
            with_cookie(test::TestRequest::get().uri("/v1/users/me/quota"), &cookie),
        )
        .await;
        assert_eq!(quota.status, StatusCode::OK);
        assert_eq!(quota.body["personal_quota"], 10_000);

        // A non-admin's session is a user's: 403 on admin routes.
        let user = create_user(&db, "user@example.com", 500, false);
        let user_cookie = logged_in(&app, &user.api_key).await;
        let refused = send(
            &app,
            with_cookie(
                test::TestRequest::get().uri("/v1/admin/users"),
                &user_cookie,
            ),
        )
        .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(refused.body["error"]["code"], "forbidden");
    }
);

http_test!(login_refuses_bad_revoked_and_suspended_keys, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(state(&db, &clock));
    let user = create_user(&db, "u@example.com", 500, false);

    let bad = send(&app, login("tp-not-a-real-key")).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.body["error"]["code"], "invalid_api_key");
    assert!(bad.set_cookie.is_none());

    let missing = send(
        &app,
        test::TestRequest::post()
            .uri("/v1/auth/login")
            .insert_header(("content-type", "application/json"))
            .set_payload(r#"{"key": "tp-x"}"#),
    )
    .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(missing.body["error"]["field"], "key");

    crate::common::set_status(
        &mut db.conn(),
        start_time(),
        user.user.id,
        UserStatus::Suspended,
    )
    .unwrap();
    let suspended = send(&app, login(&user.api_key)).await;
    assert_eq!(suspended.status, StatusCode::FORBIDDEN);
    assert_eq!(suspended.body["error"]["code"], "user_suspended");
    assert!(suspended.set_cookie.is_none());

    crate::common::set_status(
        &mut db.conn(),
        start_time(),
        user.user.id,
        UserStatus::Active,
    )
    .unwrap();
    users::revoke_keys(&mut db.conn(), start_time(), user.user.id, None).unwrap();
    assert_eq!(
        send(&app, login(&user.api_key)).await.status,
        StatusCode::UNAUTHORIZED
    );
});

http_test!(a_session_expires_by_the_clock_and_logout_clears_it, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(state(&db, &clock));
    let user = create_user(&db, "u@example.com", 500, false);
    let cookie = logged_in(&app, &user.api_key).await;
    let session = || with_cookie(test::TestRequest::get().uri("/v1/auth/session"), &cookie);

    clock.advance(TimeDelta::seconds(3599));
    assert_eq!(send(&app, session()).await.status, StatusCode::OK);
    clock.advance(TimeDelta::seconds(1));
    let expired = send(&app, session()).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(expired.body["error"]["code"], "invalid_api_key");
    // A stale cookie does not stand in the way of logging in again.
    let _fresh = logged_in(&app, &user.api_key).await;

    let out = send(&app, test::TestRequest::post().uri("/v1/auth/logout")).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let cleared = out.set_cookie.unwrap();
    assert!(cleared.starts_with("alfred_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
});

http_test!(tampered_and_forged_sessions_are_refused, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(state(&db, &clock));
    let admin = create_user(&db, "admin@example.com", 500, true);
    let user = create_user(&db, "u@example.com", 500, false);
    let cookie = logged_in(&app, &user.api_key).await;

    // Flip one character of the signature.
    let mut tampered = cookie.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let answer = send(
        &app,
        with_cookie(test::TestRequest::get().uri("/v1/auth/session"), &tampered),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // A token signed by another secret (another deployment) is refused.
    let mut other = state(&db, &clock);
    other.sessions = std::sync::Arc::new(alfred_control_plane::sessions::SessionKeys::random(
        std::time::Duration::from_secs(3600),
    ));
    let other_app = app!(other);
    let foreign = logged_in(&other_app, &user.api_key).await;
    let answer = send(
        &app,
        with_cookie(test::TestRequest::get().uri("/v1/auth/session"), &foreign),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // The middleware's identity header cannot be sent by a client.
    let forged = send(
        &app,
        test::TestRequest::get()
            .uri("/v1/admin/users")
            .insert_header(("x-alfred-verified-session", format!("{}:1", admin.user.id))),
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
});

http_test!(suspension_deletion_and_key_rotation_end_sessions, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(state(&db, &clock));
    let user = create_user(&db, "u@example.com", 500, false);
    let cookie = logged_in(&app, &user.api_key).await;
    let quota = || with_cookie(test::TestRequest::get().uri("/v1/users/me/quota"), &cookie);
    assert_eq!(send(&app, quota()).await.status, StatusCode::OK);

    crate::common::set_status(
        &mut db.conn(),
        start_time(),
        user.user.id,
        UserStatus::Suspended,
    )
    .unwrap();
    let suspended = send(&app, quota()).await;
    assert_eq!(suspended.status, StatusCode::FORBIDDEN);
    assert_eq!(suspended.body["error"]["code"], "user_suspended");
    crate::common::set_status(
        &mut db.conn(),
        start_time(),
        user.user.id,
        UserStatus::Active,
    )
    .unwrap();
    assert_eq!(send(&app, quota()).await.status, StatusCode::OK);

    // Rotating the key ends the sessions opened with the old one.
    let rotated = users::rotate_key(&mut db.conn(), start_time(), user.user.id, None).unwrap();
    assert_eq!(send(&app, quota()).await.status, StatusCode::UNAUTHORIZED);

    let cookie = logged_in(&app, &rotated.api_key).await;
    let quota = || with_cookie(test::TestRequest::get().uri("/v1/users/me/quota"), &cookie);
    assert_eq!(send(&app, quota()).await.status, StatusCode::OK);
    users::delete_user(&mut db.conn(), start_time(), user.user.id, None).unwrap();
    assert_eq!(send(&app, quota()).await.status, StatusCode::UNAUTHORIZED);
});

http_test!(
    the_dashboard_is_served_with_fallback_and_cache_headers,
    |db| {
        let clock = TestClock::new(start_time());
        let dir = tempfile::tempdir().unwrap();
        let mut with_dir: AppState = state(&db, &clock);
        with_dir.dashboard_dir = std::sync::Arc::new(dir.path().join("dist"));
        let app = app!(with_dir);
        let get = |uri: &str| test::TestRequest::get().uri(uri).to_request();

        // Not built: a 503 page that says how to build it.
        let resp = test::call_service(&app, get("/static/")).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
        assert!(body.contains("not built"), "{body}");
        assert!(body.contains("npm run build"), "{body}");

        let dist = dir.path().join("dist");
        std::fs::create_dir_all(dist.join("assets")).unwrap();
        std::fs::write(dist.join("index.html"), "<html>app</html>").unwrap();
        std::fs::write(dist.join("assets/index-abc123.js"), "console.log(1)").unwrap();
        std::fs::write(dist.join("favicon.svg"), "<svg/>").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "no").unwrap();

        let resp = test::call_service(&app, get("/static")).await;
        assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(resp.headers().get("location").unwrap(), "/static/");

        for (uri, status, content_type, cache) in [
            ("/static/", 200, "text/html; charset=utf-8", "no-cache"),
            (
                "/static/users/12",
                200,
                "text/html; charset=utf-8",
                "no-cache",
            ),
            (
                "/static/assets/index-abc123.js",
                200,
                "text/javascript; charset=utf-8",
                "public, max-age=31536000, immutable",
            ),
            ("/static/favicon.svg", 200, "image/svg+xml", "no-cache"),
            (
                "/static/assets/missing-1.js",
                404,
                "text/plain; charset=utf-8",
                "no-cache",
            ),
            (
                "/static/../secret.txt",
                404,
                "text/plain; charset=utf-8",
                "no-cache",
            ),
            (
                "/static/%2e%2e/secret.txt",
                404,
                "text/plain; charset=utf-8",
                "no-cache",
            ),
        ] {
            let resp = test::call_service(&app, get(uri)).await;
            assert_eq!(resp.status().as_u16(), status, "{uri}");
            assert_eq!(
                resp.headers().get("content-type").unwrap(),
                content_type,
                "{uri}"
            );
            assert_eq!(resp.headers().get("cache-control").unwrap(), cache, "{uri}");
            let body = test::read_body(resp).await;
            assert_ne!(&body[..], b"no", "{uri}");
        }
    }
);

/// Ingests records at `day` (12:00 UTC): (user, model, project, total tokens).
fn ingest_at(db: &TestDb, day: &str, records: &[(i64, &str, Option<&str>, i64)]) {
    let now = at(&format!("{day} 12:00:00"));
    let reports = records
        .iter()
        .enumerate()
        .map(|(i, (user, model, project, total))| {
            let mut r = report(&format!("{day}-{i}"), *user, None, *total);
            r.model = (*model).into();
            r.project_id = project.map(str::to_owned);
            r
        })
        .collect();
    usage::ingest(
        &mut db.conn(),
        now,
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        UsageBatch {
            proxy_id: "envoy-a".into(),
            records: reports,
        },
    )
    .unwrap();
}

http_test!(analytics_group_by_day_model_user_and_project, |db| {
    let clock = TestClock::new(at("2026-11-30 18:00:00"));
    let app = app!(state(&db, &clock));
    let admin = create_user(&db, "admin@example.com", 100_000, true);
    let ann = create_user(&db, "ann@example.com", 100_000, false);
    let (a, b) = (admin.user.id, ann.user.id);
    ingest_at(&db, "2026-11-27", &[(a, "gpt-4o-mini", Some("p1"), 1000)]);
    ingest_at(
        &db,
        "2026-11-29",
        &[
            (b, "gpt-4o-mini", Some("p1"), 200),
            (b, "claude-3-haiku", None, 300),
            (b, "no-such-model", Some("p2"), 50),
        ],
    );
    ingest_at(&db, "2026-11-30", &[(a, "claude-3-haiku", None, 10)]);

    let admin_get = |uri: &str| {
        test::TestRequest::get()
            .uri(uri)
            .insert_header(("x-api-key", admin.api_key.clone()))
    };

    let days = send(
        &app,
        admin_get("/v1/admin/analytics/usage?group_by=day&from=2026-11-28&to=2026-11-30"),
    )
    .await;
    assert_eq!(days.status, StatusCode::OK, "{}", days.body);
    assert_eq!(days.body["group_by"], "day");
    let rows = days.body["rows"].as_array().unwrap();
    let keys: Vec<_> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["2026-11-28", "2026-11-29", "2026-11-30"]);
    let totals: Vec<_> = rows
        .iter()
        .map(|r| r["total_tokens"].as_i64().unwrap())
        .collect();
    assert_eq!(totals, [0, 550, 10]);
    assert_eq!(rows[1]["requests"], 3);
    assert_eq!(rows[1]["unpriced_requests"], 1);
    // gpt-4o-mini 100 in + 100 out ($0.15 / $0.60 per 1M) + claude-3-haiku 150 + 150
    // ($0.25 / $1.25 per 1M) = 0.000075 + 0.000225 = $0.0003.
    assert!(
        (rows[1]["cost_usd"].as_f64().unwrap() - 0.0003).abs() < 1e-12,
        "{}",
        rows[1]
    );

    let models = send(
        &app,
        admin_get("/v1/admin/analytics/usage?group_by=model&from=2026-11-01&to=2026-11-30"),
    )
    .await;
    let got: Vec<_> = models.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_owned(),
                r["total_tokens"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("gpt-4o-mini".to_owned(), 1200),
            ("claude-3-haiku".to_owned(), 310),
            ("no-such-model".to_owned(), 50)
        ]
    );

    let by_user = send(
        &app,
        admin_get("/v1/admin/analytics/usage?group_by=user&from=2026-11-01&to=2026-11-30&limit=1"),
    )
    .await;
    let rows = by_user.body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["key"], a.to_string());
    assert_eq!(rows[0]["email"], "admin@example.com");
    assert_eq!(rows[0]["total_tokens"], 1010);

    let projects = send(
        &app,
        admin_get(&format!(
            "/v1/admin/analytics/usage?group_by=project&from=2026-11-01&to=2026-11-30&user_id={b}"
        )),
    )
    .await;
    let got: Vec<_> = projects.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().map(str::to_owned),
                r["total_tokens"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (None, 300),
            (Some("p1".to_owned()), 200),
            (Some("p2".to_owned()), 50)
        ]
    );

    let summary = send(
        &app,
        admin_get("/v1/admin/analytics/summary?from=2026-11-29&to=2026-11-30"),
    )
    .await;
    assert_eq!(summary.status, StatusCode::OK);
    assert_eq!(summary.body["users"], 2);
    assert_eq!(summary.body["active_users"], 2);
    assert_eq!(summary.body["requests"], 4);
    assert_eq!(summary.body["total_tokens"], 560);

    // Default range: the 30 days up to today (by the clock).
    let default = send(&app, admin_get("/v1/admin/analytics/summary")).await;
    assert_eq!(default.body["from"], "2026-11-01");
    assert_eq!(default.body["to"], "2026-11-30");
    assert_eq!(default.body["total_tokens"], 1560);
});

http_test!(analytics_are_admin_only_org_wide_and_own_for_users, |db| {
    let clock = TestClock::new(at("2026-11-30 18:00:00"));
    let app = app!(state(&db, &clock));
    let admin = create_user(&db, "admin@example.com", 100_000, true);
    let ann = create_user(&db, "ann@example.com", 100_000, false);
    ingest_at(
        &db,
        "2026-11-30",
        &[
            (admin.user.id, "gpt-4o-mini", None, 1000),
            (ann.user.id, "gpt-4o-mini", None, 7),
        ],
    );
    let as_ann = |uri: &str| {
        test::TestRequest::get()
            .uri(uri)
            .insert_header(("authorization", format!("Bearer {}", ann.api_key)))
    };

    let refused = send(&app, as_ann("/v1/admin/analytics/usage")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let own = send(&app, as_ann("/v1/users/me/analytics/summary")).await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.body["total_tokens"], 7);
    assert_eq!(own.body["users"], 1);
    let own = send(&app, as_ann("/v1/users/me/analytics/usage?group_by=model")).await;
    assert_eq!(own.body["rows"][0]["total_tokens"], 7);
    // Users cannot widen their view.
    let widened = send(
        &app,
        as_ann(&format!(
            "/v1/users/me/analytics/usage?user_id={}",
            admin.user.id
        )),
    )
    .await;
    assert_eq!(widened.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(widened.body["error"]["field"], "user_id");
    let anonymous = send(
        &app,
        test::TestRequest::get().uri("/v1/users/me/analytics/usage"),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
});

http_test!(analytics_parameters_are_validated_by_name, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(state(&db, &clock));
    let admin = create_user(&db, "admin@example.com", 100_000, true);
    for (query, field) in [
        ("from=2026-02-30", "from"),
        ("to=tomorrow", "to"),
        ("from=2026-11-30&to=2026-11-01", "from"),
        ("from=2020-01-01&to=2026-11-01", "from"),
        ("group_by=week", "group_by"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("user_id=x", "user_id"),
        ("colour=red", "colour"),
        ("from=2026-11-01&from=2026-11-02", "from"),
    ] {
        let answer = send(
            &app,
            test::TestRequest::get()
                .uri(&format!("/v1/admin/analytics/usage?{query}"))
                .insert_header(("x-api-key", admin.api_key.clone())),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            answer.body
        );
        assert_eq!(answer.body["error"]["field"], field, "{query}");
    }
});
