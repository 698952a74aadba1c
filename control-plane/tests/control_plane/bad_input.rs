//! Bad input on every write route and listing query: each case answers an exact 4xx
//! (400 for malformed JSON, 404 for a non-numeric or unknown id, 409 for a conflict,
//! 422 otherwise) with the JSON error naming the offending field or parameter, and
//! writes nothing: the database is snapshotted before and after each call (users,
//! keys, teams, members, transfers, quota requests, notifications, audit log, ledger,
//! allocations) and the ledger audit stays clean.
//!
//! The scenario is `authz::World` (see there), called by its admin or member.

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::Method;
use alfred_control_plane::clock::TestClock;
use alfred_control_plane::users::UserStatus;
use serde_json::{json, Value};

use crate::authz::{app, assert_ledger_clean, call, Snapshot, World};
use crate::common::{create_user, set_status, start_time, TestDb};
use crate::http_test;

/// One bad request and the exact answer it must get.
struct Case {
    method: Method,
    path: String,
    key: String,
    body: Option<String>,
    status: u16,
    field: Option<&'static str>,
    code: Option<&'static str>,
}

fn case(
    method: &Method,
    path: impl Into<String>,
    key: &str,
    body: Option<&str>,
    status: u16,
    field: Option<&'static str>,
    code: Option<&'static str>,
) -> Case {
    Case {
        method: method.clone(),
        path: path.into(),
        key: key.to_owned(),
        body: body.map(str::to_owned),
        status,
        field,
        code,
    }
}

/// A JSON body with `value` (raw JSON text) under `key`, merged into `base`.
fn with(base: &Value, key: &str, raw: &str) -> String {
    let mut body = base.clone();
    body[key] = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
    body.to_string()
}

/// Like [`with`] but splices raw text, for numbers JSON values cannot hold
/// (`9223372036854775808`, `1e30` stays a float either way).
fn raw_with(base: &Value, key: &str, raw: &str) -> String {
    let mut body = base.clone();
    body[key] = json!("__RAW__");
    body.to_string().replace("\"__RAW__\"", raw)
}

fn email_of_length(len: usize) -> String {
    let domain = "@example.com";
    format!("{}{domain}", "a".repeat(len - domain.len()))
}

/// Runs the cases; panics listing every wrong one.
async fn run<S>(db: &TestDb, app: &S, cases: Vec<Case>)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let mut failures = Vec::new();
    let total = cases.len();
    let mut wrong = 0;
    for c in cases {
        let failed_before = failures.len();
        let before = Snapshot::take(&mut db.conn());
        let (status, answer) = call(
            app,
            c.method.clone(),
            &c.path,
            Some(&c.key),
            c.body.as_deref(),
        )
        .await;
        let shown_body: String = c.body.as_deref().unwrap_or("").chars().take(120).collect();
        let what = format!("{} {} {shown_body}", c.method, c.path);
        let error = &answer["error"];
        let kind = match c.status {
            404 => "not_found_error",
            _ => "invalid_request_error",
        };
        if status != c.status {
            failures.push(format!(
                "{what}: expected {}, got {status} {answer}",
                c.status
            ));
        } else if error["type"] != kind
            || !error["message"].is_string()
            || error["field"].as_str() != c.field
            || c.code.is_some_and(|code| error["code"] != code)
        {
            failures.push(format!(
                "{what}: expected field {:?} code {:?}, got {answer}",
                c.field, c.code
            ));
        }
        let changed = Snapshot::take(&mut db.conn()).changed(&before);
        if !changed.is_empty() {
            failures.push(format!("{what}: wrote to {changed:?}"));
        }
        if failures.len() > failed_before {
            wrong += 1;
        }
    }
    assert_ledger_clean(db);
    assert!(
        failures.is_empty(),
        "{wrong} of {total} cases wrong:\n{}",
        failures.join("\n")
    );
}

/// The scenario plus a user on vacation (a transfer recipient who is not active).
fn setup(db: &TestDb) -> (World, String) {
    let world = World::build(db, 1);
    let away = create_user(db, "away1@example.com", 1000, false);
    set_status(
        &mut db.conn(),
        start_time(),
        away.user.id,
        UserStatus::OnVacation,
    )
    .unwrap();
    (world, away.user.email)
}

const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const GET: Method = Method::GET;
const DELETE: Method = Method::DELETE;

http_test!(users_bad_input, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let (w, _) = setup(&db);
    let admin = w.admin.api_key.as_str();
    let create = json!({"email": "new@example.com", "name": "New"});
    let c = |body: &str, field, code| {
        case(
            &POST,
            "/v1/admin/users",
            admin,
            Some(body),
            422,
            field,
            code,
        )
    };
    let mut cases = vec![
        c(
            &with(&create, "personal_quota", "-1"),
            Some("personal_quota"),
            Some("invalid_value"),
        ),
        c(
            &raw_with(&create, "personal_quota", "9223372036854775808"),
            Some("personal_quota"),
            Some("invalid_type"),
        ),
        c(
            &raw_with(&create, "personal_quota", "1e30"),
            Some("personal_quota"),
            Some("invalid_type"),
        ),
        c(
            &raw_with(&create, "personal_quota", "1.5"),
            Some("personal_quota"),
            Some("invalid_type"),
        ),
        c(
            &with(&create, "personal_quota", "\"100\""),
            Some("personal_quota"),
            Some("invalid_type"),
        ),
        c(
            &with(&create, "email", "null"),
            Some("email"),
            Some("invalid_type"),
        ),
        c(
            &with(&create, "email", "42"),
            Some("email"),
            Some("invalid_type"),
        ),
        c(
            &with(&create, "email", &json!(email_of_length(255)).to_string()),
            Some("email"),
            Some("invalid_value"),
        ),
        c(
            &with(&create, "email", "\"a b@example.com\""),
            Some("email"),
            Some("invalid_value"),
        ),
        c(
            &with(&create, "name", "null"),
            Some("name"),
            Some("invalid_type"),
        ),
        c(
            &with(&create, "name", "7"),
            Some("name"),
            Some("invalid_type"),
        ),
        c(
            &with(&create, "name", &json!("n".repeat(201)).to_string()),
            Some("name"),
            Some("invalid_value"),
        ),
        c(
            &with(&create, "name", "\"   \""),
            Some("name"),
            Some("invalid_value"),
        ),
        c(
            &with(&create, "is_admin", "\"yes\""),
            Some("is_admin"),
            Some("invalid_type"),
        ),
        c(
            &with(&create, "role", "\"admin\""),
            Some("role"),
            Some("unknown_field"),
        ),
        c(r#"{"name": "New"}"#, Some("email"), Some("missing_field")),
        c("[]", None, Some("invalid_type")),
        case(
            &POST,
            "/v1/admin/users",
            admin,
            Some(r#"{"email": "new@example.com", "#),
            400,
            None,
            Some("invalid_json"),
        ),
        case(
            &POST,
            "/v1/admin/users",
            admin,
            Some(""),
            400,
            None,
            Some("invalid_json"),
        ),
        case(
            &POST,
            "/v1/admin/users",
            admin,
            Some(&with(
                &create,
                "email",
                &json!(w.member.user.email.to_uppercase()).to_string(),
            )),
            409,
            Some("email"),
            Some("email_taken"),
        ),
    ];
    let target = format!("/v1/admin/users/{}", w.colleague.user.id);
    let u =
        |body: &str, field, code| case(&PUT, target.clone(), admin, Some(body), 422, field, code);
    let empty = json!({});
    cases.extend([
        u(
            &with(&empty, "personal_quota", "-1"),
            Some("personal_quota"),
            Some("invalid_value"),
        ),
        u(
            &raw_with(&empty, "personal_quota", "9223372036854775808"),
            Some("personal_quota"),
            Some("invalid_type"),
        ),
        u(
            &raw_with(&empty, "personal_quota", "1e30"),
            Some("personal_quota"),
            Some("invalid_type"),
        ),
        u(
            &with(&empty, "personal_quota", "\"5\""),
            Some("personal_quota"),
            Some("invalid_type"),
        ),
        u(
            &with(&empty, "status", "\"deleted\""),
            Some("status"),
            Some("invalid_value"),
        ),
        u(
            &with(&empty, "status", "1"),
            Some("status"),
            Some("invalid_type"),
        ),
        u(
            &with(&empty, "name", "\"\""),
            Some("name"),
            Some("invalid_value"),
        ),
        u(
            &with(&empty, "name", &json!("n".repeat(201)).to_string()),
            Some("name"),
            Some("invalid_value"),
        ),
        u(
            &with(&empty, "email", &json!(email_of_length(255)).to_string()),
            Some("email"),
            Some("invalid_value"),
        ),
        u(
            &with(&empty, "email", "false"),
            Some("email"),
            Some("invalid_type"),
        ),
        u(
            &with(&empty, "is_admin", "\"yes\""),
            Some("is_admin"),
            Some("invalid_type"),
        ),
        u(
            &with(&empty, "overdraft_enabled", "1"),
            Some("overdraft_enabled"),
            Some("invalid_type"),
        ),
        u(
            &with(&empty, "role", "\"admin\""),
            Some("role"),
            Some("unknown_field"),
        ),
        // One bad field among good ones: nothing is half-written.
        u(
            r#"{"name": "Valid Name", "is_admin": true, "personal_quota": -1}"#,
            Some("personal_quota"),
            Some("invalid_value"),
        ),
        u(
            r#"{"name": "Valid Name", "status": "gone"}"#,
            Some("status"),
            Some("invalid_value"),
        ),
        case(
            &PUT,
            target.clone(),
            admin,
            Some(r#"{"name": "#),
            400,
            Some("name"),
            Some("invalid_json"),
        ),
        case(
            &PUT,
            target.clone(),
            admin,
            Some(&with(
                &empty,
                "email",
                &json!(w.member.user.email).to_string(),
            )),
            409,
            Some("email"),
            Some("email_taken"),
        ),
        // Admins cannot suspend, demote or delete themselves.
        case(
            &PUT,
            format!("/v1/admin/users/{}", w.admin.user.id),
            admin,
            Some(r#"{"status": "suspended"}"#),
            422,
            Some("id"),
            Some("invalid_value"),
        ),
        case(
            &PUT,
            format!("/v1/admin/users/{}", w.admin.user.id),
            admin,
            Some(r#"{"is_admin": false}"#),
            422,
            Some("id"),
            Some("invalid_value"),
        ),
        case(
            &DELETE,
            format!("/v1/admin/users/{}", w.admin.user.id),
            admin,
            None,
            422,
            Some("id"),
            Some("invalid_value"),
        ),
    ]);
    for (method, suffix) in [
        (&GET, ""),
        (&PUT, ""),
        (&DELETE, ""),
        (&POST, "/rotate-key"),
        (&DELETE, "/keys"),
        (&GET, "/usage"),
        (&GET, "/ledger"),
    ] {
        let body = (*method == PUT).then_some(r#"{"name": "X"}"#);
        cases.push(case(
            method,
            format!("/v1/admin/users/abc{suffix}"),
            admin,
            body,
            404,
            None,
            Some("not_found"),
        ));
        cases.push(case(
            method,
            format!("/v1/admin/users/99999999{suffix}"),
            admin,
            body,
            404,
            None,
            Some("not_found"),
        ));
        // A deleted user is gone for every route but the ledger's history.
        if suffix != "/ledger" {
            cases.push(case(
                method,
                format!("/v1/admin/users/{}{suffix}", w.deleted.user.id),
                admin,
                body,
                404,
                None,
                Some("not_found"),
            ));
        }
    }
    run(&db, &app, cases).await;
});

http_test!(teams_and_members_bad_input, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let (w, _) = setup(&db);
    let admin = w.admin.api_key.as_str();
    let create = json!({"name": "Fresh"});
    let c = |body: &str, field, code| {
        case(
            &POST,
            "/v1/admin/teams",
            admin,
            Some(body),
            422,
            field,
            code,
        )
    };
    let mut cases = vec![
        c(
            &with(&create, "name", &json!("n".repeat(201)).to_string()),
            Some("name"),
            Some("invalid_value"),
        ),
        c(
            &with(&create, "name", "\"\""),
            Some("name"),
            Some("invalid_value"),
        ),
        c(
            &with(&create, "name", "null"),
            Some("name"),
            Some("invalid_type"),
        ),
        c(
            &with(&create, "name", "5"),
            Some("name"),
            Some("invalid_type"),
        ),
        c("{}", Some("name"), Some("missing_field")),
        c(
            &with(&create, "common_pool", "-1"),
            Some("common_pool"),
            Some("invalid_value"),
        ),
        c(
            &raw_with(&create, "common_pool", "9223372036854775808"),
            Some("common_pool"),
            Some("invalid_type"),
        ),
        c(
            &raw_with(&create, "common_pool", "1e30"),
            Some("common_pool"),
            Some("invalid_type"),
        ),
        c(
            &with(&create, "common_pool", "\"10\""),
            Some("common_pool"),
            Some("invalid_type"),
        ),
        c(
            &with(&create, "description", &json!("d".repeat(2001)).to_string()),
            Some("description"),
            Some("invalid_value"),
        ),
        c(
            &with(&create, "owner", "1"),
            Some("owner"),
            Some("unknown_field"),
        ),
        case(
            &POST,
            "/v1/admin/teams",
            admin,
            Some("{name: 'x'}"),
            400,
            None,
            Some("invalid_json"),
        ),
        // A taken name is the name's fault.
        case(
            &POST,
            "/v1/admin/teams",
            admin,
            Some(r#"{"name": "Team 1"}"#),
            409,
            Some("name"),
            Some("team_name_taken"),
        ),
    ];
    let target = format!("/v1/admin/teams/{}", w.team);
    let u =
        |body: &str, field, code| case(&PUT, target.clone(), admin, Some(body), 422, field, code);
    let empty = json!({});
    cases.extend([
        u(
            &with(&empty, "name", &json!("n".repeat(201)).to_string()),
            Some("name"),
            Some("invalid_value"),
        ),
        u(
            &with(&empty, "name", "\" \""),
            Some("name"),
            Some("invalid_value"),
        ),
        u(
            &with(&empty, "common_pool", "-1"),
            Some("common_pool"),
            Some("invalid_value"),
        ),
        u(
            &raw_with(&empty, "common_pool", "9223372036854775808"),
            Some("common_pool"),
            Some("invalid_type"),
        ),
        u(
            &raw_with(&empty, "common_pool", "1e30"),
            Some("common_pool"),
            Some("invalid_type"),
        ),
        u(
            &with(&empty, "description", "[]"),
            Some("description"),
            Some("invalid_type"),
        ),
        u(
            &with(&empty, "description", &json!("d".repeat(2001)).to_string()),
            Some("description"),
            Some("invalid_value"),
        ),
        u(
            &with(&empty, "members", "[]"),
            Some("members"),
            Some("unknown_field"),
        ),
        u(
            r#"{"description": "fine", "common_pool": -5}"#,
            Some("common_pool"),
            Some("invalid_value"),
        ),
        case(
            &PUT,
            target.clone(),
            admin,
            Some("{"),
            400,
            None,
            Some("invalid_json"),
        ),
        case(
            &PUT,
            target.clone(),
            admin,
            Some(r#"{"name": "Other 1"}"#),
            409,
            Some("name"),
            Some("team_name_taken"),
        ),
        case(
            &PUT,
            "/v1/admin/teams/abc",
            admin,
            Some(r#"{"name": "X"}"#),
            404,
            None,
            Some("not_found"),
        ),
        case(
            &PUT,
            "/v1/admin/teams/99999999",
            admin,
            Some(r#"{"name": "X"}"#),
            404,
            None,
            Some("not_found"),
        ),
        case(
            &GET,
            "/v1/admin/teams/abc",
            admin,
            None,
            404,
            None,
            Some("not_found"),
        ),
        case(
            &DELETE,
            "/v1/admin/teams/abc",
            admin,
            None,
            404,
            None,
            Some("not_found"),
        ),
        case(
            &DELETE,
            "/v1/admin/teams/99999999",
            admin,
            None,
            404,
            None,
            Some("not_found"),
        ),
    ]);
    // Membership: the query string and both ids.
    let (t, out, col) = (w.team, w.outsider.user.id, w.colleague.user.id);
    cases.extend([
        case(
            &POST,
            format!("/v1/admin/teams/{t}/members/{out}?is_admin=maybe"),
            admin,
            None,
            422,
            Some("is_admin"),
            Some("invalid_query"),
        ),
        case(
            &POST,
            format!("/v1/admin/teams/{t}/members/{out}?is_admin=1"),
            admin,
            None,
            422,
            Some("is_admin"),
            Some("invalid_query"),
        ),
        case(
            &POST,
            format!("/v1/admin/teams/{t}/members/{out}?admin=true"),
            admin,
            None,
            422,
            Some("admin"),
            Some("invalid_query"),
        ),
        case(
            &POST,
            format!("/v1/admin/teams/abc/members/{out}"),
            admin,
            None,
            404,
            None,
            Some("not_found"),
        ),
        case(
            &POST,
            format!("/v1/admin/teams/{t}/members/abc"),
            admin,
            None,
            404,
            None,
            Some("not_found"),
        ),
        case(
            &POST,
            format!("/v1/admin/teams/99999999/members/{out}"),
            admin,
            None,
            404,
            None,
            Some("not_found"),
        ),
        case(
            &POST,
            format!("/v1/admin/teams/{t}/members/99999999"),
            admin,
            None,
            404,
            None,
            Some("not_found"),
        ),
        case(
            &POST,
            format!("/v1/admin/teams/{t}/members/{}", w.deleted.user.id),
            admin,
            None,
            404,
            None,
            Some("not_found"),
        ),
        case(
            &DELETE,
            format!("/v1/admin/teams/{t}/members/{out}"),
            admin,
            None,
            404,
            None,
            Some("not_found"),
        ),
        case(
            &DELETE,
            format!("/v1/admin/teams/abc/members/{col}"),
            admin,
            None,
            404,
            None,
            Some("not_found"),
        ),
        case(
            &DELETE,
            format!("/v1/admin/teams/{t}/members/abc"),
            admin,
            None,
            404,
            None,
            Some("not_found"),
        ),
        // The removal route takes no parameters; an unknown one is refused like elsewhere.
        case(
            &DELETE,
            format!("/v1/admin/teams/{t}/members/{col}?is_admin=maybe"),
            admin,
            None,
            422,
            Some("is_admin"),
            Some("invalid_query"),
        ),
    ]);
    run(&db, &app, cases).await;
});

http_test!(transfer_bad_input, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let (w, away) = setup(&db);
    let key = w.member.api_key.as_str();
    let (_, quota) = call(&app, GET, "/v1/users/me/quota", Some(key), None).await;
    let transferable = quota["transferable"].as_i64().unwrap();
    assert_eq!(transferable, 1000 - 200 + 50, "{quota}");
    let ok = json!({"recipient_email": w.outsider.user.email, "amount": 10, "reason": "thanks"});
    let t = |body: &str, field, code| {
        case(
            &POST,
            "/v1/users/me/transfer",
            key,
            Some(body),
            422,
            field,
            code,
        )
    };
    let to = |email: &str| with(&ok, "recipient_email", &json!(email).to_string());
    let cases = vec![
        t(
            &with(&ok, "amount", "-5"),
            Some("amount"),
            Some("invalid_value"),
        ),
        t(
            &with(&ok, "amount", "0"),
            Some("amount"),
            Some("invalid_value"),
        ),
        t(
            &raw_with(&ok, "amount", "9223372036854775808"),
            Some("amount"),
            Some("invalid_type"),
        ),
        t(
            &raw_with(&ok, "amount", "-9223372036854775809"),
            Some("amount"),
            Some("invalid_type"),
        ),
        t(
            &raw_with(&ok, "amount", "1e30"),
            Some("amount"),
            Some("invalid_type"),
        ),
        t(
            &raw_with(&ok, "amount", "1.5"),
            Some("amount"),
            Some("invalid_type"),
        ),
        t(
            &with(&ok, "amount", "\"10\""),
            Some("amount"),
            Some("invalid_type"),
        ),
        t(
            &with(&ok, "amount", "null"),
            Some("amount"),
            Some("invalid_type"),
        ),
        t(
            &with(&ok, "amount", "9223372036854775807"),
            Some("amount"),
            Some("invalid_value"),
        ),
        t(
            &with(&ok, "amount", &(transferable + 1).to_string()),
            Some("amount"),
            Some("insufficient_quota"),
        ),
        t(
            &to("nobody@example.com"),
            Some("recipient_email"),
            Some("unknown_recipient"),
        ),
        t(
            &to(&email_of_length(255)),
            Some("recipient_email"),
            Some("unknown_recipient"),
        ),
        t(
            &to(&w.member.user.email),
            Some("recipient_email"),
            Some("self_transfer"),
        ),
        t(
            &to(&format!("  {}  ", w.member.user.email.to_uppercase())),
            Some("recipient_email"),
            Some("self_transfer"),
        ),
        t(
            &to(&w.suspended.user.email),
            Some("recipient_email"),
            Some("recipient_inactive"),
        ),
        t(
            &to(&away),
            Some("recipient_email"),
            Some("recipient_inactive"),
        ),
        t(
            &to(&w.deleted.user.email),
            Some("recipient_email"),
            Some("unknown_recipient"),
        ),
        t(
            &with(&ok, "recipient_email", "42"),
            Some("recipient_email"),
            Some("invalid_type"),
        ),
        t(
            &with(&ok, "recipient_email", "null"),
            Some("recipient_email"),
            Some("invalid_type"),
        ),
        t(
            &with(&ok, "reason", &json!("r".repeat(501)).to_string()),
            Some("reason"),
            Some("invalid_value"),
        ),
        t(
            &with(&ok, "reason", "\"\""),
            Some("reason"),
            Some("invalid_value"),
        ),
        t(
            &with(&ok, "reason", "\"   \""),
            Some("reason"),
            Some("invalid_value"),
        ),
        t(
            &with(&ok, "reason", "null"),
            Some("reason"),
            Some("invalid_type"),
        ),
        t(
            &with(&ok, "reason", "12"),
            Some("reason"),
            Some("invalid_type"),
        ),
        t(
            r#"{"recipient_email": "a@example.com", "amount": 5}"#,
            Some("reason"),
            Some("missing_field"),
        ),
        t(
            &with(&ok, "sender_email", "\"boss@example.com\""),
            Some("sender_email"),
            Some("unknown_field"),
        ),
        t("[]", None, Some("invalid_type")),
        case(
            &POST,
            "/v1/users/me/transfer",
            key,
            Some(r#"{"amount": 5,,}"#),
            400,
            None,
            Some("invalid_json"),
        ),
        case(
            &POST,
            "/v1/users/me/transfer",
            key,
            Some(""),
            400,
            None,
            Some("invalid_json"),
        ),
    ];
    run(&db, &app, cases).await;
});

http_test!(quota_request_bad_input, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let (w, _) = setup(&db);
    let key = w.member.api_key.as_str();
    let ok = json!({"amount": 100, "reason": "a bigger run"});
    let r = |body: &str, field, code| {
        case(
            &POST,
            "/v1/users/me/quota-requests",
            key,
            Some(body),
            422,
            field,
            code,
        )
    };
    let cases = vec![
        r(
            &with(&ok, "amount", "-1"),
            Some("amount"),
            Some("invalid_value"),
        ),
        r(
            &with(&ok, "amount", "0"),
            Some("amount"),
            Some("invalid_value"),
        ),
        r(
            &with(&ok, "amount", "10000000001"),
            Some("amount"),
            Some("invalid_value"),
        ),
        r(
            &raw_with(&ok, "amount", "9223372036854775808"),
            Some("amount"),
            Some("invalid_type"),
        ),
        r(
            &raw_with(&ok, "amount", "1e30"),
            Some("amount"),
            Some("invalid_type"),
        ),
        r(
            &with(&ok, "amount", "\"100\""),
            Some("amount"),
            Some("invalid_type"),
        ),
        r(
            &with(&ok, "amount", "null"),
            Some("amount"),
            Some("invalid_type"),
        ),
        r(
            &with(&ok, "reason", &json!("r".repeat(501)).to_string()),
            Some("reason"),
            Some("invalid_value"),
        ),
        r(
            &with(&ok, "reason", "\"\""),
            Some("reason"),
            Some("invalid_value"),
        ),
        r(
            &with(&ok, "reason", "null"),
            Some("reason"),
            Some("invalid_type"),
        ),
        r(r#"{"reason": "x"}"#, Some("amount"), Some("missing_field")),
        r(
            &with(&ok, "user_id", "1"),
            Some("user_id"),
            Some("unknown_field"),
        ),
        case(
            &POST,
            "/v1/users/me/quota-requests",
            key,
            Some("{\"amount\": 1"),
            400,
            None,
            Some("invalid_json"),
        ),
    ];
    run(&db, &app, cases).await;
});

http_test!(decision_bad_input, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let (w, _) = setup(&db);
    let admin = w.admin.api_key.as_str();
    let mut cases = Vec::new();
    for base in [
        format!("/v1/admin/transfers/{}", w.t_member),
        format!("/v1/admin/quota-requests/{}", w.r_member),
    ] {
        for verb in ["approve", "deny"] {
            let path = format!("{base}/{verb}");
            let d = |body: &str, status, field, code| {
                case(&POST, path.clone(), admin, Some(body), status, field, code)
            };
            cases.extend([
                d(
                    &json!({"note": "n".repeat(501)}).to_string(),
                    422,
                    Some("note"),
                    Some("invalid_value"),
                ),
                d(r#"{"note": 42}"#, 422, Some("note"), Some("invalid_type")),
                d(
                    r#"{"note": "ok", "amount": 1}"#,
                    422,
                    Some("amount"),
                    Some("unknown_field"),
                ),
                d("[]", 422, None, Some("invalid_type")),
                d("{\"note\": ", 400, Some("note"), Some("invalid_json")),
                d("{", 400, None, Some("invalid_json")),
            ]);
        }
    }
    for kind in ["transfers", "quota-requests"] {
        cases.push(case(
            &POST,
            format!("/v1/admin/{kind}/abc/approve"),
            admin,
            None,
            404,
            None,
            Some("not_found"),
        ));
        cases.push(case(
            &POST,
            format!("/v1/admin/{kind}/99999999/deny"),
            admin,
            None,
            404,
            None,
            Some("not_found"),
        ));
    }
    // A transfer already completed cannot be decided.
    cases.push(case(
        &POST,
        format!("/v1/admin/transfers/{}/deny", w.t_gift),
        admin,
        None,
        409,
        None,
        Some("already_decided"),
    ));
    run(&db, &app, cases).await;
});

http_test!(notifications_read_bad_input, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let (w, _) = setup(&db);
    let key = w.member.api_key.as_str();
    let path = "/v1/users/me/notifications/read";
    let n = |body: &str, field, code| case(&POST, path, key, Some(body), 422, field, code);
    let cases = vec![
        n(r#"{"ids": "1"}"#, Some("ids"), Some("invalid_type")),
        n(r#"{"ids": 1}"#, Some("ids"), Some("invalid_type")),
        n(r#"{"ids": [1.5]}"#, Some("ids[0]"), Some("invalid_type")),
        n(r#"{"ids": [1, "a"]}"#, Some("ids[1]"), Some("invalid_type")),
        n(
            r#"{"ids": [9223372036854775808]}"#,
            Some("ids[0]"),
            Some("invalid_type"),
        ),
        n(r#"{"all": true}"#, Some("all"), Some("unknown_field")),
        n("[]", None, Some("invalid_type")),
        case(
            &POST,
            path,
            key,
            Some("{\"ids\": [1,"),
            400,
            Some("ids"),
            Some("invalid_json"),
        ),
        case(
            &POST,
            path,
            key,
            Some("{ids}"),
            400,
            None,
            Some("invalid_json"),
        ),
    ];
    run(&db, &app, cases).await;
});

http_test!(listing_queries_bad_input, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let (w, _) = setup(&db);
    let (admin, member) = (w.admin.api_key.as_str(), w.member.api_key.as_str());
    let mut cases = Vec::new();
    let mut q = |path: &str, key: &str, query: &str, field: &'static str| {
        cases.push(case(
            &GET,
            format!("{path}?{query}"),
            key,
            None,
            422,
            Some(field),
            Some("invalid_query"),
        ));
    };
    for (path, key) in [
        ("/v1/admin/transfers", admin),
        ("/v1/users/me/transfers", member),
    ] {
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=-1", "limit"),
            ("limit=abc", "limit"),
            ("limit=10001", "limit"),
            ("limit=9223372036854775808", "limit"),
            ("limit=1&limit=2", "limit"),
            ("from=yesterday", "from"),
            ("from=2026-13-45", "from"),
            ("to=tomorrow", "to"),
            ("from=2026-12-01&to=2026-11-01", "to"),
            ("from=2026-11-30T12:00:00Z&to=2026-11-30T11:59:59Z", "to"),
            ("min_amount=-1", "min_amount"),
            ("max_amount=abc", "max_amount"),
            ("status=approved", "status"),
            ("format=xml", "format"),
            ("user_id=abc", "user_id"),
            ("sort=amount", "sort"),
        ] {
            q(path, key, query, field);
        }
    }
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=1001", "limit"),
        ("from=yesterday", "from"),
        ("from=2026-12-01&to=2026-11-01", "to"),
        ("actor_id=abc", "actor_id"),
        ("actor=1", "actor"),
    ] {
        q("/v1/admin/audit", admin, query, field);
    }
    for (path, key) in [
        ("/v1/admin/quota-requests", admin),
        ("/v1/users/me/quota-requests", member),
    ] {
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=abc", "limit"),
            ("limit=1001", "limit"),
            ("status=completed", "status"),
            ("user_id=abc", "user_id"),
            ("from=2026-11-01", "from"),
        ] {
            q(path, key, query, field);
        }
    }
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=501", "limit"),
        ("unread=maybe", "unread"),
        ("unread=true&kind=x", "kind"),
    ] {
        q("/v1/users/me/notifications", member, query, field);
    }
    let user = w.colleague.user.id;
    for suffix in ["usage", "ledger"] {
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=abc", "limit"),
            ("limit=1001", "limit"),
            ("offset=5", "offset"),
        ] {
            q(
                &format!("/v1/admin/users/{user}/{suffix}"),
                admin,
                query,
                field,
            );
        }
    }
    run(&db, &app, cases).await;
});

// `null` for an optional field: the code reads it as "absent" (a default, or no
// change) and answers 2xx. Null is not a value of any of these fields, and for
// `ids` the "absent" reading marks every notification read, so it is refused.
http_test!(null_for_an_optional_field_is_refused, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let (w, _) = setup(&db);
    let admin = w.admin.api_key.as_str();
    let cases = vec![
        case(
            &POST,
            "/v1/admin/users",
            admin,
            Some(r#"{"email": "n@example.com", "name": "N", "personal_quota": null}"#),
            422,
            Some("personal_quota"),
            Some("invalid_type"),
        ),
        case(
            &PUT,
            format!("/v1/admin/users/{}", w.colleague.user.id),
            admin,
            Some(r#"{"name": null}"#),
            422,
            Some("name"),
            Some("invalid_type"),
        ),
        case(
            &POST,
            "/v1/admin/teams",
            admin,
            Some(r#"{"name": "N", "common_pool": null}"#),
            422,
            Some("common_pool"),
            Some("invalid_type"),
        ),
        case(
            &PUT,
            format!("/v1/admin/teams/{}", w.team),
            admin,
            Some(r#"{"description": null}"#),
            422,
            Some("description"),
            Some("invalid_type"),
        ),
        case(
            &POST,
            "/v1/users/me/notifications/read",
            w.member.api_key.as_str(),
            Some(r#"{"ids": null}"#),
            422,
            Some("ids"),
            Some("invalid_type"),
        ),
    ];
    run(&db, &app, cases).await;
});
