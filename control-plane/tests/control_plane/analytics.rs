//! Usage analytics: the `usage_daily` rollup against the records it summarises, and
//! the analytics endpoints' exact numbers for every grouping, on both backends.

use actix_web::http::StatusCode;
use actix_web::{test as web_test, web, App};
use alfred_control_plane::clock::TestClock;
use alfred_control_plane::db::{self, DbConnection, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
use alfred_control_plane::http::{self, AppState};
use alfred_control_plane::pricing::PriceCatalog;
use alfred_control_plane::quota::QuotaPeriod;
use alfred_control_plane::teams::{self, CreateTeam};
use alfred_control_plane::usage::{self, UsageBatch, UsageReport};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_migrations::MigrationHarness;
use serde_json::{json, Value};

use crate::common::{at, create_user, rules, state, TestDb};
use crate::leases::report;
use crate::{db_test, http_test};

/// One rollup row, or the same aggregate computed from `usage_records`.
#[derive(Debug, PartialEq, Eq, QueryableByName)]
struct DayRow {
    #[diesel(sql_type = Text)]
    day: String,
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = Text)]
    model: String,
    #[diesel(sql_type = Text)]
    project_id: String,
    #[diesel(sql_type = Text)]
    provider: String,
    #[diesel(sql_type = BigInt)]
    requests: i64,
    #[diesel(sql_type = BigInt)]
    successful_requests: i64,
    #[diesel(sql_type = BigInt)]
    failed_requests: i64,
    #[diesel(sql_type = BigInt)]
    estimated_requests: i64,
    #[diesel(sql_type = BigInt)]
    input_tokens: i64,
    #[diesel(sql_type = BigInt)]
    output_tokens: i64,
    #[diesel(sql_type = BigInt)]
    total_tokens: i64,
    #[diesel(sql_type = BigInt)]
    cached_tokens: i64,
    #[diesel(sql_type = BigInt)]
    reasoning_tokens: i64,
    #[diesel(sql_type = BigInt)]
    failed_tokens: i64,
    #[diesel(sql_type = BigInt)]
    estimated_tokens: i64,
    #[diesel(sql_type = BigInt)]
    cost_nano_usd: i64,
    #[diesel(sql_type = BigInt)]
    unpriced_requests: i64,
}

fn load_rows(conn: &mut DbConnection, sql: &str) -> Vec<DayRow> {
    match conn {
        DbConnection::Sqlite(c) => diesel::sql_query(sql).load(c).unwrap(),
        DbConnection::Postgres(c) => diesel::sql_query(sql).load(c).unwrap(),
    }
}

const ORDER: &str = "ORDER BY day, user_id, model, project_id, provider";

/// `usage_daily` as stored.
fn rollup(conn: &mut DbConnection) -> Vec<DayRow> {
    let day = match conn {
        DbConnection::Sqlite(_) => "day",
        DbConnection::Postgres(_) => "to_char(day, 'YYYY-MM-DD')",
    };
    load_rows(
        conn,
        &format!(
            "SELECT {day} AS day, user_id, model, project_id, provider, requests, \
             successful_requests, failed_requests, estimated_requests, input_tokens, \
             output_tokens, total_tokens, cached_tokens, reasoning_tokens, failed_tokens, \
             estimated_tokens, cost_nano_usd, unpriced_requests FROM usage_daily {ORDER}"
        ),
    )
}

/// The same numbers aggregated from `usage_records` directly.
fn aggregate_of_records(conn: &mut DbConnection) -> Vec<DayRow> {
    let (day, yes, no) = match conn {
        DbConnection::Sqlite(_) => ("substr(created_at, 1, 10)", "1", "0"),
        DbConnection::Postgres(_) => ("to_char(created_at, 'YYYY-MM-DD')", "TRUE", "FALSE"),
    };
    let ok = "status >= 200 AND status < 300";
    let sum = |e: String, name: &str| format!("CAST(SUM({e}) AS BIGINT) AS {name}");
    let count_if =
        |cond: &str, name: &str| sum(format!("CASE WHEN {cond} THEN 1 ELSE 0 END"), name);
    let sql = format!(
        "SELECT {day} AS day, user_id, model, COALESCE(project_id, '') AS project_id, provider, \
         CAST(COUNT(*) AS BIGINT) AS requests, {succ}, {fail}, {est}, \
         {input}, {output}, {total}, {cached}, {reasoning}, {failed_tokens}, \
         {estimated_tokens}, {cost}, {unpriced} \
         FROM usage_records GROUP BY 1, 2, 3, 4, 5 {ORDER}",
        succ = count_if(ok, "successful_requests"),
        fail = count_if(&format!("NOT ({ok})"), "failed_requests"),
        est = count_if(&format!("estimated = {yes}"), "estimated_requests"),
        input = sum("input_tokens".into(), "input_tokens"),
        output = sum("output_tokens".into(), "output_tokens"),
        total = sum("total_tokens".into(), "total_tokens"),
        cached = sum("cached_tokens".into(), "cached_tokens"),
        reasoning = sum("reasoning_tokens".into(), "reasoning_tokens"),
        failed_tokens = sum(
            format!("CASE WHEN {ok} THEN 0 ELSE total_tokens END"),
            "failed_tokens"
        ),
        estimated_tokens = sum(
            format!("CASE WHEN estimated = {no} THEN 0 ELSE total_tokens END"),
            "estimated_tokens"
        ),
        cost = sum("cost_nano_usd".into(), "cost_nano_usd"),
        unpriced = count_if(&format!("unpriced = {yes}"), "unpriced_requests"),
    );
    load_rows(conn, &sql)
}

/// A record with every field the rollup sums set to something distinct.
#[allow(clippy::too_many_arguments)]
fn record(
    request_id: &str,
    user_id: i64,
    model: &str,
    project: Option<&str>,
    provider: &str,
    (input, output): (i64, i64),
    (cached, reasoning): (i64, i64),
    status: i32,
    estimated: bool,
) -> UsageReport {
    let mut r = report(request_id, user_id, None, input + output);
    r.model = model.into();
    r.project_id = project.map(str::to_owned);
    r.provider = provider.into();
    r.input_tokens = input;
    r.output_tokens = output;
    r.cached_tokens = cached;
    r.reasoning_tokens = reasoning;
    r.status = status;
    r.estimated = estimated;
    r
}

fn batch(records: Vec<UsageReport>) -> UsageBatch {
    UsageBatch {
        proxy_id: "envoy-a".into(),
        records,
    }
}

fn prepare(now: &str, b: UsageBatch) -> usage::PreparedBatch {
    usage::prepare(at(now), QuotaPeriod::Monthly, &PriceCatalog::builtin(), b).unwrap()
}

/// Mixed traffic: two days, two users, several models, projects and providers, failed
/// (4xx, 5xx, 0) and estimated requests, an unpriced model, and duplicates — inside a
/// batch, across the batches of one round, and a whole batch sent again.
fn mixed_traffic(db: &TestDb, ann: i64, bob: i64) {
    let first = batch(vec![
        record(
            "r1",
            ann,
            "gpt-4o-mini",
            Some("p1"),
            "openai",
            (100, 50),
            (40, 0),
            200,
            false,
        ),
        record(
            "r2",
            ann,
            "gpt-4o-mini",
            Some("p1"),
            "openai",
            (300, 20),
            (0, 0),
            500,
            false,
        ),
        record(
            "r3",
            ann,
            "gpt-4o-mini",
            None,
            "openai",
            (10, 5),
            (0, 0),
            200,
            true,
        ),
        record(
            "r4",
            bob,
            "claude-3-haiku",
            None,
            "anthropic",
            (70, 30),
            (0, 10),
            429,
            true,
        ),
        record(
            "r5",
            bob,
            "no-such-model",
            Some("p2"),
            "local",
            (7, 3),
            (0, 0),
            0,
            false,
        ),
        // Same request id again in the batch: the first one counts.
        record(
            "r1",
            ann,
            "gpt-4o",
            Some("p9"),
            "openai",
            (999, 999),
            (0, 0),
            200,
            false,
        ),
    ]);
    let outcome = usage::ingest(
        &mut db.conn(),
        at("2026-11-29 23:59:59"),
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        first.clone(),
    )
    .unwrap();
    assert_eq!((outcome.applied, outcome.duplicates), (5, 1));
    // The same batch again (a proxy's retry) the next day: nothing counts.
    let again = usage::ingest(
        &mut db.conn(),
        at("2026-11-30 00:00:01"),
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        first,
    )
    .unwrap();
    assert_eq!((again.applied, again.duplicates), (0, 6));
    // One round of two batches sharing a request id, and one repeating r2.
    let outcomes = usage::write_batches(
        &mut db.conn(),
        &[
            prepare(
                "2026-11-30 10:00:00",
                batch(vec![
                    record(
                        "r6",
                        ann,
                        "gpt-4o-mini",
                        Some("p1"),
                        "openai",
                        (1000, 200),
                        (500, 0),
                        201,
                        false,
                    ),
                    record(
                        "r7",
                        bob,
                        "gpt-4o-mini",
                        Some("p1"),
                        "openai",
                        (5, 5),
                        (0, 0),
                        200,
                        false,
                    ),
                    record(
                        "r2",
                        ann,
                        "gpt-4o-mini",
                        Some("p1"),
                        "openai",
                        (1, 1),
                        (0, 0),
                        200,
                        false,
                    ),
                ]),
            ),
            prepare(
                "2026-11-30 10:00:01",
                batch(vec![
                    record(
                        "r7",
                        bob,
                        "gpt-4o-mini",
                        Some("p1"),
                        "openai",
                        (50, 50),
                        (0, 0),
                        200,
                        false,
                    ),
                    record(
                        "r8",
                        bob,
                        "claude-3-haiku",
                        None,
                        "anthropic",
                        (20, 80),
                        (0, 30),
                        200,
                        false,
                    ),
                ]),
            ),
        ],
    );
    let outcomes: Vec<_> = outcomes
        .into_iter()
        .map(|o| {
            let o = o.unwrap();
            (o.applied, o.duplicates)
        })
        .collect();
    assert_eq!(outcomes, [(2, 1), (1, 1)]);
}

db_test!(
    rollup_equals_the_records_after_mixed_batches_with_duplicates,
    |db| {
        let ann = create_user(&db, "ann@example.com", 1_000_000, false)
            .user
            .id;
        let bob = create_user(&db, "bob@example.com", 1_000_000, false)
            .user
            .id;
        mixed_traffic(&db, ann, bob);
        let mut conn = db.conn();
        let rollup = rollup(&mut conn);
        assert_eq!(rollup, aggregate_of_records(&mut conn));
        // And the numbers are the ones intended (not merely equal to a wrong aggregate).
        let r1_cost = 100 * 150 + 50 * 600 - 40 * 75; // gpt-4o-mini, nano-USD
        assert_eq!(rollup.len(), 7, "{rollup:#?}");
        let ann_p1 = &rollup[0];
        assert_eq!(
            (
                ann_p1.day.as_str(),
                ann_p1.user_id,
                ann_p1.model.as_str(),
                ann_p1.project_id.as_str()
            ),
            ("2026-11-29", ann, "gpt-4o-mini", "")
        );
        let ann_p1 = &rollup[1];
        assert_eq!(ann_p1.project_id, "p1");
        assert_eq!(
            (
                ann_p1.requests,
                ann_p1.successful_requests,
                ann_p1.failed_requests
            ),
            (2, 1, 1)
        );
        assert_eq!(
            (
                ann_p1.total_tokens,
                ann_p1.failed_tokens,
                ann_p1.cached_tokens
            ),
            (470, 320, 40)
        );
        assert!(ann_p1.cost_nano_usd > r1_cost, "r2 (failed) is charged too");
        let bob_haiku = rollup
            .iter()
            .find(|r| r.day == "2026-11-29" && r.user_id == bob && r.model == "claude-3-haiku")
            .unwrap();
        assert_eq!(
            (
                bob_haiku.failed_requests,
                bob_haiku.estimated_requests,
                bob_haiku.failed_tokens,
                bob_haiku.estimated_tokens,
                bob_haiku.reasoning_tokens,
                bob_haiku.provider.as_str()
            ),
            (1, 1, 100, 100, 10, "anthropic")
        );
        let unpriced = rollup.iter().find(|r| r.model == "no-such-model").unwrap();
        assert_eq!(
            (
                unpriced.unpriced_requests,
                unpriced.cost_nano_usd,
                unpriced.failed_requests
            ),
            (1, 0, 1)
        );
        let bob_r7 = rollup
            .iter()
            .find(|r| r.day == "2026-11-30" && r.user_id == bob && r.model == "gpt-4o-mini")
            .unwrap();
        assert_eq!(
            (bob_r7.requests, bob_r7.total_tokens),
            (1, 10),
            "the first r7 counts"
        );
        let totals: i64 = rollup.iter().map(|r| r.requests).sum();
        assert_eq!(totals, 8);
    }
);

db_test!(migration_backfills_the_rollup_from_existing_records, |db| {
    let ann = create_user(&db, "ann@example.com", 1_000_000, false)
        .user
        .id;
    let bob = create_user(&db, "bob@example.com", 1_000_000, false)
        .user
        .id;
    mixed_traffic(&db, ann, bob);
    let mut conn = db.conn();
    let before = rollup(&mut conn);
    // Revert down to before the rollup's migration (dropping the table), then migrate
    // again: the up migration must rebuild it from usage_records alone.
    let version = "20261130300000";
    loop {
        let applied: Vec<String> = match &mut *conn {
            DbConnection::Sqlite(c) => c.applied_migrations(),
            DbConnection::Postgres(c) => c.applied_migrations(),
        }
        .unwrap()
        .iter()
        .map(|v| v.to_string().replace('-', ""))
        .collect();
        if !applied.iter().any(|v| v == version) {
            break;
        }
        match &mut *conn {
            DbConnection::Sqlite(c) => c.revert_last_migration(SQLITE_MIGRATIONS).map(drop),
            DbConnection::Postgres(c) => c.revert_last_migration(POSTGRES_MIGRATIONS).map(drop),
        }
        .unwrap();
    }
    db::run_migrations(&mut conn).unwrap();
    assert_eq!(rollup(&mut conn), before);
    assert_eq!(before.len(), 7);
});

macro_rules! app {
    ($state:expr) => {
        web_test::init_service(
            App::new()
                .app_data(web::Data::<AppState>::new($state))
                .configure(http::routes),
        )
        .await
    };
}

async fn get<S>(app: &S, key: &str, uri: &str) -> (StatusCode, Value)
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    let resp = web_test::call_service(
        app,
        web_test::TestRequest::get()
            .uri(uri)
            .insert_header(("x-api-key", key.to_owned()))
            .to_request(),
    )
    .await;
    let status = resp.status();
    let body = web_test::read_body(resp).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The numbers of a row, without `cost_usd` (a float, compared on its own).
fn numbers(row: &Value) -> Value {
    let mut row = row.clone();
    let map = row.as_object_mut().unwrap();
    map.remove("cost_usd");
    row
}

/// `(key, name?, requests, successful, failed, estimated, input, output, total,
/// cached, reasoning, failed_tokens, estimated_tokens, unpriced)`.
#[allow(clippy::too_many_arguments)]
fn expected(key: Value, extra: Value, n: [i64; 12]) -> Value {
    let mut row = json!({
        "key": key,
        "requests": n[0],
        "successful_requests": n[1],
        "failed_requests": n[2],
        "estimated_requests": n[3],
        "input_tokens": n[4],
        "output_tokens": n[5],
        "total_tokens": n[6],
        "cached_tokens": n[7],
        "reasoning_tokens": n[8],
        "failed_tokens": n[9],
        "estimated_tokens": n[10],
        "unpriced_requests": n[11],
    });
    if let Value::Object(extra) = extra {
        row.as_object_mut().unwrap().extend(extra);
    }
    row
}

fn rows(body: &Value) -> Vec<Value> {
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(numbers)
        .collect()
}

fn cost(row: &Value) -> f64 {
    row["cost_usd"].as_f64().unwrap()
}

http_test!(every_grouping_gives_exact_numbers_from_the_rollup, |db| {
    let clock = TestClock::new(at("2026-11-30 18:00:00"));
    let app = app!(state(&db, &clock));
    let admin = create_user(&db, "admin@example.com", 1_000_000, true);
    let ann = create_user(&db, "ann@example.com", 1_000_000, false)
        .user
        .id;
    let bob = create_user(&db, "bob@example.com", 1_000_000, false)
        .user
        .id;
    let cat = create_user(&db, "cat@example.com", 1_000_000, false)
        .user
        .id;
    mixed_traffic(&db, ann, bob);
    // Cat (in no team) on the 28th, outside the two-day ranges below.
    usage::ingest(
        &mut db.conn(),
        at("2026-11-28 08:00:00"),
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch(vec![record(
            "c1",
            cat,
            "gpt-4o",
            Some("p2"),
            "openai",
            (1000, 1000),
            (0, 0),
            200,
            false,
        )]),
    )
    .unwrap();
    // Teams: ann in red and blue, bob in blue; a deleted team counts nowhere.
    let now = at("2026-11-30 09:00:00");
    let team = |name: &str| {
        teams::create_team(
            &mut db.conn(),
            now,
            CreateTeam {
                name: name.into(),
                description: String::new(),
                common_pool: 0,
            },
            admin.user.id,
        )
        .unwrap()
        .id
    };
    let (red, blue, gone) = (team("red"), team("blue"), team("gone"));
    for (t, u) in [(red, ann), (blue, ann), (blue, bob), (gone, bob)] {
        teams::add_member(&mut db.conn(), now, t, u, false, admin.user.id).unwrap();
    }
    teams::delete_team(&mut db.conn(), now, gone, &rules(), admin.user.id).unwrap();
    let key = admin.api_key.as_str();
    let range = "from=2026-11-29&to=2026-11-30";

    // Ann: 29th r1 (150, cached 40), r2 (320, 500), r3 (15, estimated, no project);
    // 30th r6 (1200, cached 500, 201). Bob: 29th r4 (100, 429, estimated, reasoning 10),
    // r5 (10, status 0, unpriced, p2); 30th r7 (10), r8 (100, reasoning 30).
    let ann_row = [4, 3, 1, 1, 1410, 275, 1685, 540, 0, 320, 15, 0];
    let bob_row = [4, 2, 2, 1, 102, 118, 220, 0, 40, 110, 100, 1];
    let all = [8, 5, 3, 2, 1512, 393, 1905, 540, 40, 430, 115, 1];

    let (status, body) = get(
        &app,
        key,
        &format!("/v1/admin/analytics/usage?group_by=user&{range}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        rows(&body),
        [
            expected(
                json!(ann.to_string()),
                json!({"name": "ann@example.com", "email": "ann@example.com"}),
                ann_row
            ),
            expected(
                json!(bob.to_string()),
                json!({"name": "bob@example.com", "email": "bob@example.com"}),
                bob_row
            ),
        ]
    );

    let (_, body) = get(
        &app,
        key,
        &format!("/v1/admin/analytics/usage?group_by=day&{range}"),
    )
    .await;
    assert_eq!(body["group_by"], "day");
    assert_eq!(
        rows(&body),
        [
            expected(
                json!("2026-11-29"),
                Value::Null,
                [5, 2, 3, 2, 487, 108, 595, 40, 10, 430, 115, 1]
            ),
            expected(
                json!("2026-11-30"),
                Value::Null,
                [3, 3, 0, 0, 1025, 285, 1310, 500, 30, 0, 0, 0]
            ),
        ]
    );

    let (_, body) = get(
        &app,
        key,
        &format!("/v1/admin/analytics/usage?group_by=model&{range}"),
    )
    .await;
    assert_eq!(
        rows(&body),
        [
            expected(
                json!("gpt-4o-mini"),
                Value::Null,
                [5, 4, 1, 1, 1415, 280, 1695, 540, 0, 320, 15, 0]
            ),
            expected(
                json!("claude-3-haiku"),
                Value::Null,
                [2, 1, 1, 1, 90, 110, 200, 0, 40, 100, 100, 0]
            ),
            expected(
                json!("no-such-model"),
                Value::Null,
                [1, 0, 1, 0, 7, 3, 10, 0, 0, 10, 0, 1]
            ),
        ]
    );
    // Exact costs: gpt-4o-mini $0.15 in / $0.075 cached / $0.60 out per 1M tokens.
    let mini = body["rows"][0].clone();
    let mini_nano = (1415 - 540) * 150 + 540 * 75 + 280 * 600;
    assert!(
        (cost(&mini) - mini_nano as f64 / 1e9).abs() < 1e-12,
        "{mini}"
    );

    let (_, body) = get(
        &app,
        key,
        &format!("/v1/admin/analytics/usage?group_by=project&{range}"),
    )
    .await;
    assert_eq!(
        rows(&body),
        [
            expected(
                json!("p1"),
                Value::Null,
                [4, 3, 1, 0, 1405, 275, 1680, 540, 0, 320, 0, 0]
            ),
            expected(
                Value::Null,
                Value::Null,
                [3, 2, 1, 2, 100, 115, 215, 0, 40, 100, 115, 0]
            ),
            expected(
                json!("p2"),
                Value::Null,
                [1, 0, 1, 0, 7, 3, 10, 0, 0, 10, 0, 1]
            ),
        ]
    );

    // Team: ann counts in red and blue; bob in blue only (his deleted team is gone).
    let (status, body) = get(
        &app,
        key,
        &format!("/v1/admin/analytics/usage?group_by=team&{range}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["group_by"], "team");
    let blue_row: Vec<i64> = ann_row.iter().zip(bob_row).map(|(a, b)| a + b).collect();
    assert_eq!(
        rows(&body),
        [
            expected(
                json!(blue.to_string()),
                json!({"name": "blue"}),
                blue_row.try_into().unwrap()
            ),
            expected(json!(red.to_string()), json!({"name": "red"}), ann_row),
        ]
    );
    // Over the whole month, cat's usage forms the no-team group.
    let (_, body) = get(
        &app,
        key,
        "/v1/admin/analytics/usage?group_by=team&from=2026-11-01&to=2026-11-30",
    )
    .await;
    let keys: Vec<Value> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].clone())
        .collect();
    assert_eq!(
        keys,
        [json!(null), json!(blue.to_string()), json!(red.to_string())]
    );
    assert_eq!(body["rows"][0]["total_tokens"], 2000);
    assert!(body["rows"][0].get("name").is_none());
    // One user's teams.
    let (_, body) = get(
        &app,
        key,
        &format!("/v1/admin/analytics/usage?group_by=team&{range}&user_id={bob}"),
    )
    .await;
    assert_eq!(
        rows(&body),
        [expected(
            json!(blue.to_string()),
            json!({"name": "blue"}),
            bob_row
        )]
    );

    let (_, body) = get(&app, key, &format!("/v1/admin/analytics/summary?{range}")).await;
    let mut want = expected(
        Value::Null,
        json!({"from": "2026-11-29", "to": "2026-11-30", "users": 4, "active_users": 2}),
        all,
    );
    want.as_object_mut().unwrap().remove("key");
    assert_eq!(numbers(&body), want);
    // `to` is inclusive, `from` too: the 28th alone is cat's record.
    let (_, body) = get(
        &app,
        key,
        "/v1/admin/analytics/summary?from=2026-11-28&to=2026-11-28",
    )
    .await;
    assert_eq!(
        (body["requests"].as_i64(), body["active_users"].as_i64()),
        (Some(1), Some(1))
    );
    let (_, body) = get(
        &app,
        key,
        "/v1/admin/analytics/summary?from=2026-11-27&to=2026-11-27",
    )
    .await;
    assert_eq!(body["requests"], 0);
    assert_eq!(body["cost_usd"], 0.0);
});

http_test!(users_see_only_their_own_numbers, |db| {
    let clock = TestClock::new(at("2026-11-30 18:00:00"));
    let app = app!(state(&db, &clock));
    let ann = create_user(&db, "ann@example.com", 1_000_000, false);
    let bob = create_user(&db, "bob@example.com", 1_000_000, false);
    mixed_traffic(&db, ann.user.id, bob.user.id);
    let range = "from=2026-11-29&to=2026-11-30";
    for group in ["day", "model", "user", "project", "team"] {
        let (status, body) = get(
            &app,
            &bob.api_key,
            &format!("/v1/users/me/analytics/usage?group_by={group}&{range}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let requests: i64 = body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["requests"].as_i64().unwrap())
            .sum();
        assert_eq!(requests, 4, "{group}: {body}");
    }
    let (_, body) = get(
        &app,
        &bob.api_key,
        &format!("/v1/users/me/analytics/usage?group_by=user&{range}"),
    )
    .await;
    assert_eq!(body["rows"].as_array().unwrap().len(), 1);
    assert_eq!(body["rows"][0]["key"], bob.user.id.to_string());
    let (_, body) = get(
        &app,
        &bob.api_key,
        &format!("/v1/users/me/analytics/summary?{range}"),
    )
    .await;
    assert_eq!(
        (
            body["users"].as_i64(),
            body["active_users"].as_i64(),
            body["total_tokens"].as_i64(),
            body["failed_tokens"].as_i64()
        ),
        (Some(1), Some(1), Some(220), Some(110))
    );
    // Nor can a user reach the organisation's or another user's numbers.
    let (status, _) = get(
        &app,
        &bob.api_key,
        "/v1/admin/analytics/usage?group_by=team",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = get(
        &app,
        &bob.api_key,
        &format!("/v1/users/me/analytics/summary?user_id={}", ann.user.id),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "user_id");
});

http_test!(bad_parameters_are_refused_naming_them, |db| {
    let clock = TestClock::new(at("2026-11-30 18:00:00"));
    let app = app!(state(&db, &clock));
    let admin = create_user(&db, "admin@example.com", 1_000_000, true);
    for (path, query, field) in [
        ("usage", "from=2026-02-30", "from"),
        ("usage", "from=%2B2026-11-01", "from"),
        ("usage", "from=2026-11-1", "from"),
        ("usage", "to=1969-12-31", "to"),
        ("usage", "to=2026-11-30T00:00:00", "to"),
        ("usage", "from=2026-11-30&to=2026-11-29", "from"),
        ("usage", "from=2025-11-29&to=2026-11-30", "from"),
        ("usage", "group_by=week", "group_by"),
        ("usage", "group_by=", "group_by"),
        ("usage", "group_by=team&group_by=user", "group_by"),
        ("usage", "limit=1001", "limit"),
        ("usage", "user_id=-", "user_id"),
        ("summary", "group_by=day", "group_by"),
        ("summary", "limit=5", "limit"),
        ("summary", "to=2026-11-31", "to"),
    ] {
        let (status, body) = get(
            &app,
            &admin.api_key,
            &format!("/v1/admin/analytics/{path}?{query}"),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}?{query}: {body}"
        );
        assert_eq!(body["error"]["field"], field, "{path}?{query}");
    }
    // The widest accepted range: 366 days, both ends inclusive.
    let (status, body) = get(
        &app,
        &admin.api_key,
        "/v1/admin/analytics/usage?group_by=day&from=2025-11-30&to=2026-11-30",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"].as_array().unwrap().len(), 366);
});
