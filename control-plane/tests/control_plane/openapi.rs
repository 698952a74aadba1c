//! `GET /openapi.json` against the routes the app serves.
//!
//! Three lists must agree: [`ROUTES`] below, the routes `http::routes` registers (read
//! from the source of `src/http/mod.rs`) and the operations of the document. Then every
//! documented operation is called on the real app: none may fall through to the
//! default 404 (`route not found`) or a 405, and each answer's status must be one the
//! document gives for that operation. Whether the bodies match their schemas is what
//! `tests/api/schemathesis.sh` checks against the release binary.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::http::StatusCode;
use actix_web::test::{call_service, init_service, read_body, TestRequest};
use actix_web::{web, App};
use alfred_control_plane::clock::TestClock;
use alfred_control_plane::http;
use serde_json::Value;

use crate::common::{start_time, state};
use crate::http_test;

/// Every route the control plane serves, as the document spells it. Adding a route
/// means adding it here and documenting it in `src/http/openapi.json`.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
    ("GET", "/metrics"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/auth/session"),
    ("POST", "/v1/admin/users"),
    ("GET", "/v1/admin/users"),
    ("GET", "/v1/admin/users/{id}"),
    ("PUT", "/v1/admin/users/{id}"),
    ("DELETE", "/v1/admin/users/{id}"),
    ("POST", "/v1/admin/users/{id}/rotate-key"),
    ("DELETE", "/v1/admin/users/{id}/keys"),
    ("GET", "/v1/admin/users/{id}/usage"),
    ("GET", "/v1/admin/users/{id}/ledger"),
    ("POST", "/v1/admin/teams"),
    ("GET", "/v1/admin/teams"),
    ("GET", "/v1/admin/teams/{id}"),
    ("PUT", "/v1/admin/teams/{id}"),
    ("DELETE", "/v1/admin/teams/{id}"),
    ("POST", "/v1/admin/teams/{team_id}/members/{user_id}"),
    ("DELETE", "/v1/admin/teams/{team_id}/members/{user_id}"),
    ("GET", "/v1/admin/transfers"),
    ("POST", "/v1/admin/transfers/{id}/approve"),
    ("POST", "/v1/admin/transfers/{id}/deny"),
    ("GET", "/v1/admin/quota-requests"),
    ("POST", "/v1/admin/quota-requests/{id}/approve"),
    ("POST", "/v1/admin/quota-requests/{id}/deny"),
    ("GET", "/v1/admin/audit"),
    ("GET", "/v1/admin/ledger/check"),
    ("GET", "/v1/admin/analytics/usage"),
    ("GET", "/v1/admin/analytics/summary"),
    ("GET", "/v1/users/me"),
    ("GET", "/v1/users/me/quota"),
    ("POST", "/v1/users/me/transfer"),
    ("GET", "/v1/users/me/transfers"),
    ("POST", "/v1/users/me/quota-requests"),
    ("GET", "/v1/users/me/quota-requests"),
    ("GET", "/v1/users/me/notifications"),
    ("POST", "/v1/users/me/notifications/read"),
    ("POST", "/v1/users/me/vacation"),
    ("DELETE", "/v1/users/me/vacation"),
    ("GET", "/v1/users/me/analytics/usage"),
    ("GET", "/v1/users/me/analytics/summary"),
    ("GET", "/static"),
    ("GET", "/static/{path}"),
    ("POST", "/internal/v1/leases"),
    ("POST", "/internal/v1/usage"),
    ("POST", "/internal/v1/sync"),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// The document as the app serves it.
async fn served_document() -> Value {
    let clock = TestClock::new(start_time());
    let db = crate::common::TestDb::sqlite();
    let app = init_service(
        App::new()
            .app_data(web::Data::new(state(&db, &clock)))
            .configure(http::routes),
    )
    .await;
    let resp = call_service(&app, TestRequest::get().uri("/openapi.json").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json"
    );
    serde_json::from_slice(&read_body(resp).await).expect("/openapi.json is JSON")
}

/// `(METHOD, path template)` of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if METHODS.contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// `(METHOD, path)` of every route `http::routes` registers, read from its source: a
/// path literal, then the `web::get()`/`web::post()`… routes that follow it. Actix
/// path patterns (`{path:.*}`) are written as OpenAPI templates (`{path}`).
fn registered() -> BTreeSet<(String, String)> {
    let source = include_str!("../../src/http/mod.rs");
    let start = source
        .find("fn api_routes(")
        .expect("http/mod.rs defines api_routes");
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").expect("api_routes ends")];
    let mut out = BTreeSet::new();
    let mut path: Option<String> = None;
    let mut rest = body;
    while let Some(at) = rest.find(['"', 'w']) {
        rest = &rest[at..];
        if let Some(literal) = rest.strip_prefix('"') {
            let end = literal.find('"').unwrap();
            if literal.starts_with('/') {
                path = Some(openapi_template(&literal[..end]));
            }
            rest = &literal[end + 1..];
        } else if let Some(call) = rest.strip_prefix("web::") {
            let method = call.split('(').next().unwrap();
            if METHODS.contains(&method) && call[method.len()..].starts_with("()") {
                let path = path.clone().expect("a route method follows its path");
                out.insert((method.to_uppercase(), path));
            }
            rest = call;
        } else {
            rest = &rest[1..];
        }
    }
    out
}

/// `{name:regex}` → `{name}`.
fn openapi_template(actix: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    let mut skipping = false;
    for c in actix.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push(c);
            }
            '}' if in_param => {
                in_param = false;
                skipping = false;
                out.push(c);
            }
            ':' if in_param => skipping = true,
            _ if skipping => {}
            _ => out.push(c),
        }
    }
    out
}

fn listed() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect()
}

/// Every `$ref` in `value`, with where it sits.
fn refs<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push((at.clone(), v.as_str().unwrap_or("<not a string>")));
                } else {
                    refs(v, format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[actix_web::test]
async fn document_is_openapi_3_1_and_every_ref_resolves() {
    let doc = served_document().await;
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "openapi {version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let mut found = Vec::new();
    refs(&doc, String::new(), &mut found);
    assert!(
        found.len() > 50,
        "only {} $refs: the walk is broken",
        found.len()
    );
    for (at, target) in &found {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: $ref {target} is not local"));
        assert!(
            doc.pointer(pointer).is_some(),
            "{at}: $ref {target} resolves to nothing"
        );
    }

    // Every security requirement names a defined scheme; every operation has an
    // operationId (unique), answers, and declares exactly its template's parameters.
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let shared: Vec<&Value> = item["parameters"]
            .as_array()
            .map_or(vec![], |p| p.iter().collect());
        for (method, op) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let what = format!("{} {path}", method.to_uppercase());
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: no operationId"));
            assert!(ids.insert(id.to_owned()), "{what}: operationId {id} twice");
            assert!(
                !op["responses"].as_object().unwrap().is_empty(),
                "{what}: no responses"
            );
            for requirement in op["security"]
                .as_array()
                .or(doc["security"].as_array())
                .unwrap()
            {
                for name in requirement.as_object().unwrap().keys() {
                    assert!(schemes.contains_key(name), "{what}: unknown scheme {name}");
                }
            }
            let mut declared: BTreeSet<String> = BTreeSet::new();
            for p in shared
                .iter()
                .copied()
                .chain(op["parameters"].as_array().into_iter().flatten())
            {
                if p["in"] == "path" {
                    assert_eq!(p["required"], true, "{what}: path parameter not required");
                    declared.insert(p["name"].as_str().unwrap().to_owned());
                }
            }
            let in_template: BTreeSet<String> = path
                .split('{')
                .skip(1)
                .map(|s| s.split('}').next().unwrap().to_owned())
                .collect();
            assert_eq!(declared, in_template, "{what}: path parameters");
        }
    }
}

#[test]
fn listed_routes_are_the_registered_routes() {
    let registered = registered();
    assert!(
        registered.len() > 40,
        "only {} routes read from http/mod.rs: the reader is broken",
        registered.len()
    );
    let listed = listed();
    assert_eq!(
        listed.difference(&registered).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "listed in ROUTES but not registered by http::routes"
    );
    assert_eq!(
        registered.difference(&listed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "registered by http::routes but not listed in ROUTES (and so not documented)"
    );
}

#[actix_web::test]
async fn listed_routes_are_the_documented_operations() {
    let documented = documented(&served_document().await);
    let listed = listed();
    assert_eq!(
        listed.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "served but not in /openapi.json"
    );
    assert_eq!(
        documented.difference(&listed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in /openapi.json but not served"
    );
}

fn is_default_404(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::NOT_FOUND
        && body["error"]["code"] == "not_found"
        && body["error"]["message"] == "route not found"
}

http_test!(every_documented_operation_is_served, |db| {
    let clock = TestClock::new(start_time());
    let app = init_service(
        App::new()
            .app_data(web::Data::new(state(&db, &clock)))
            .configure(http::routes),
    )
    .await;
    let doc = served_document().await;

    // The probe can fail: an unknown route and a known path with a wrong method.
    for (method, uri) in [("GET", "/v1/admin/nope"), ("PATCH", "/healthz")] {
        let req = TestRequest::default()
            .method(method.parse().unwrap())
            .uri(uri)
            .to_request();
        let resp = call_service(&app, req).await;
        let status = resp.status();
        let body: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
        assert!(
            is_default_404(status, &body),
            "{method} {uri}: {status} {body}"
        );
    }

    let mut answered: BTreeMap<String, u16> = BTreeMap::new();
    for (method, template) in documented(&doc) {
        // Ids that name nothing and no credentials: each route must still be the one
        // answering (401, 404 for the id, 200 for the probes …).
        let uri = template
            .split('/')
            .map(|segment| match segment {
                "{path}" => "index.html",
                s if s.starts_with('{') => "1",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        let req = TestRequest::default()
            .method(method.parse().unwrap())
            .uri(&uri)
            .to_request();
        let resp = call_service(&app, req).await;
        let status = resp.status();
        let bytes = read_body(resp).await;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let what = format!("{method} {template} (as {uri})");
        assert!(
            !is_default_404(status, &body),
            "{what}: not served (default 404)"
        );
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{what}: 405");
        let op = &doc["paths"][&template][method.to_lowercase()];
        assert!(
            op["responses"].get(status.as_str()).is_some(),
            "{what}: answered {status}, not documented ({body})"
        );
        answered.insert(what, status.as_u16());
    }
    // Spot checks that the substitution reached the handlers.
    assert_eq!(answered["GET /healthz (as /healthz)"], 200);
    assert_eq!(answered["GET /v1/admin/users (as /v1/admin/users)"], 401);
    assert_eq!(
        answered["POST /internal/v1/usage (as /internal/v1/usage)"],
        401
    );
    assert_eq!(answered["GET /static (as /static)"], 308);
});
