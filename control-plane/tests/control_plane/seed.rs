//! `alfred seed-demo`: the demo organisation is complete, consistent and reproducible,
//! on both backends, and a database with users is refused unless forced.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use alfred_control_plane::analytics::{self, DayRange};
use alfred_control_plane::config::DatabaseUrl;
use alfred_control_plane::db::schema::{
    audit_log, leases, ledger_balances, quota_requests, team_members, teams, transfers,
    usage_records, users,
};
use alfred_control_plane::db::{self, DbConnection};
use alfred_control_plane::leases::LeasePolicy;
use alfred_control_plane::pricing::PriceCatalog;
use alfred_control_plane::quota::QuotaRules;
use alfred_control_plane::seed::{self, SeedError, SeedOptions, SeedSummary, DEFAULT_SEED};
use alfred_control_plane::{ledger, vacation};
use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta, Weekday};
use diesel::prelude::*;

use crate::common::{at, create_user, TestDb};
use crate::db_test;

/// A Wednesday afternoon: the 30 days cross a month boundary (20 Oct – 18 Nov).
fn now() -> NaiveDateTime {
    at("2026-11-18 15:30:00")
}

/// The default rules, with a transfer threshold so one transfer waits.
fn rules() -> QuotaRules {
    QuotaRules {
        transfer_approval_threshold: Some(50_000),
        ..QuotaRules::DEFAULT
    }
}

fn policy() -> LeasePolicy {
    LeasePolicy {
        ttl: Duration::from_secs(60),
        rules: rules(),
    }
}

fn run(db: &TestDb, seed: u64, force: bool) -> Result<SeedSummary, SeedError> {
    seed::seed_demo(
        &mut db.conn(),
        now(),
        policy(),
        &PriceCatalog::builtin(),
        SeedOptions { seed, force },
    )
}

fn count<T>(result: QueryResult<T>) -> T {
    result.unwrap()
}

db_test!(
    seed_demo_fills_a_consistent_organisation_the_same_every_time,
    |db| {
        let summary = run(&db, DEFAULT_SEED, false).unwrap();
        let conn = &mut *db.conn();

        // People: 30 and the admin; 5 teams, each with one team admin; one on vacation.
        assert_eq!(summary.users, 31);
        let live: i64 = count(users::table.count().get_result(conn));
        assert_eq!(live, 31);
        let admins: Vec<String> = count(
            users::table
                .filter(users::is_admin.eq(true))
                .select(users::email)
                .load(conn),
        );
        assert_eq!(admins, std::slice::from_ref(&summary.admin_email));
        assert!(summary.api_key.starts_with("tp-"));
        let admin = alfred_control_plane::users::authenticate(conn, &summary.api_key)
            .unwrap()
            .expect("the printed key logs the admin in");
        assert_eq!(admin.id, summary.admin_id);
        assert_eq!(summary.teams, 5);
        let team_count: i64 = count(teams::table.count().get_result(conn));
        assert_eq!(team_count, 5);
        let team_admins: Vec<i64> = count(
            team_members::table
                .filter(team_members::is_admin.eq(true))
                .select(team_members::team_id)
                .load(conn),
        );
        assert_eq!(team_admins.len(), 5);
        assert_eq!(team_admins.iter().collect::<BTreeSet<_>>().len(), 5);
        let members: i64 = count(team_members::table.count().get_result(conn));
        assert_eq!(members, 28, "27 team members, one of them in two teams");
        let away: Vec<String> = count(
            users::table
                .filter(users::status.eq("on_vacation"))
                .select(users::email)
                .load(conn),
        );
        assert_eq!(away, std::slice::from_ref(&summary.on_vacation));
        let quotas: BTreeSet<i64> =
            count(users::table.select(users::personal_quota).load::<i64>(conn))
                .into_iter()
                .collect();
        assert!(quotas.len() >= 10, "varied quotas: {quotas:?}");

        // Usage: the summary's numbers are the database's.
        type Row = (
            i64,
            String,
            String,
            i64,
            i64,
            i64,
            i32,
            bool,
            Option<String>,
            NaiveDateTime,
            bool,
        );
        let rows: Vec<Row> = count(
            usage_records::table
                .select((
                    usage_records::total_tokens,
                    usage_records::provider,
                    usage_records::model,
                    usage_records::input_tokens,
                    usage_records::output_tokens,
                    usage_records::cached_tokens,
                    usage_records::status,
                    usage_records::estimated,
                    usage_records::project_id,
                    usage_records::created_at,
                    usage_records::unpriced,
                ))
                .load(conn),
        );
        assert_eq!(rows.len(), summary.records);
        assert!(summary.records > 5_000, "{} records", summary.records);
        let total: i64 = rows.iter().map(|r| r.0).sum();
        assert_eq!(total, summary.total_tokens);
        assert!(
            rows.iter().all(|r| r.0 == r.3 + r.4),
            "total = input + output"
        );
        let cached: i64 = rows.iter().map(|r| r.5).sum();
        assert_eq!(cached, summary.cached_tokens);
        assert!(cached > 0);
        let providers: BTreeSet<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(
            providers,
            BTreeSet::from(["anthropic", "azure", "bedrock", "gemini", "openai", "vllm"])
        );
        let models: BTreeSet<&str> = rows.iter().map(|r| r.2.as_str()).collect();
        assert_eq!(models.len(), 13, "{models:?}");
        let unpriced: BTreeSet<&str> = rows.iter().filter(|r| r.10).map(|r| r.2.as_str()).collect();
        assert_eq!(
            unpriced,
            BTreeSet::from(["meta-llama/Llama-3.1-70B-Instruct"])
        );
        assert_eq!(
            rows.iter().filter(|r| r.10).count(),
            summary.unpriced_records
        );
        let failed: Vec<&Row> = rows.iter().filter(|r| r.6 >= 400).collect();
        assert_eq!(failed.len(), summary.failed_records);
        assert!(!failed.is_empty());
        assert!(
            failed.iter().all(|r| r.0 == 0),
            "failed requests charge nothing"
        );
        assert!(failed.iter().any(|r| r.6 < 500) && failed.iter().any(|r| r.6 >= 500));
        let estimated = rows.iter().filter(|r| r.7).count();
        assert_eq!(estimated, summary.estimated_records);
        assert!(estimated > 0);
        let projects: BTreeSet<Option<&str>> = rows.iter().map(|r| r.8.as_deref()).collect();
        assert!(
            projects.contains(&None) && projects.len() > 10,
            "{projects:?}"
        );

        // Spread over the 30 days ending now, busier on weekdays.
        let mut per_day: BTreeMap<NaiveDate, usize> = BTreeMap::new();
        for r in &rows {
            *per_day.entry(r.9.date()).or_default() += 1;
        }
        let first = now().date() - TimeDelta::days(29);
        assert_eq!(per_day.keys().next(), Some(&first));
        assert_eq!(per_day.keys().next_back(), Some(&now().date()));
        assert_eq!(per_day.len(), 30, "{per_day:?}");
        assert!(rows.iter().all(|r| r.9 <= now()));
        assert_eq!((summary.first_day, summary.last_day), (first, now().date()));
        let mean = |weekend: bool| {
            let days: Vec<usize> = per_day
                .iter()
                .filter(|(d, _)| matches!(d.weekday(), Weekday::Sat | Weekday::Sun) == weekend)
                .map(|(_, n)| *n)
                .collect();
            days.iter().sum::<usize>() / days.len()
        };
        assert!(mean(false) > 4 * mean(true), "{per_day:?}");

        // The dashboard's analytics see the same usage.
        let seen = analytics::summary(
            conn,
            DayRange {
                from: first,
                to: now().date(),
            },
            None,
        )
        .unwrap();
        assert_eq!(
            seen.totals.requests,
            i64::try_from(summary.records).unwrap()
        );
        assert_eq!(seen.totals.total_tokens, summary.total_tokens);

        // The ledger is consistent, every lease released, nobody owes usage past a lease.
        let report = ledger::audit(conn).unwrap();
        assert!(report.is_clean(), "{report:?}");
        let live_leases: i64 = count(
            leases::table
                .filter(leases::released_at.is_null())
                .count()
                .get_result(conn),
        );
        assert_eq!(live_leases, 0);
        let leases_made: i64 = count(leases::table.count().get_result(conn));
        assert_eq!(leases_made, i64::try_from(summary.leases).unwrap());
        let debts: Vec<(String, i64)> = count(
            ledger_balances::table
                .filter(ledger_balances::account.like("%:debt"))
                .filter(ledger_balances::balance.ne(0))
                .select((ledger_balances::account, ledger_balances::balance))
                .load(conn),
        );
        assert!(debts.is_empty(), "{debts:?}");

        // Transfers: several completed, one waiting above the threshold.
        let statuses: Vec<(String, i64)> = count(
            transfers::table
                .select((transfers::status, transfers::amount))
                .load(conn),
        );
        let completed = statuses.iter().filter(|s| s.0 == "completed").count();
        assert_eq!(completed, summary.transfers_completed);
        assert!(completed >= 4, "{statuses:?}");
        assert!(statuses
            .iter()
            .filter(|s| s.0 == "completed")
            .all(|s| s.1 <= 50_000));
        let pending: Vec<i64> = statuses
            .iter()
            .filter(|s| s.0 == "pending")
            .map(|s| s.1)
            .collect();
        assert_eq!(pending, [55_000]);
        assert_eq!(summary.transfers_pending, 1);

        // Quota requests: two pending, two approved, one denied.
        let mut requests: Vec<String> = count(
            quota_requests::table
                .select(quota_requests::status)
                .load(conn),
        );
        requests.sort();
        assert_eq!(
            requests,
            ["approved", "approved", "denied", "pending", "pending"]
        );
        assert_eq!(
            (
                summary.requests_pending,
                summary.requests_approved,
                summary.requests_denied
            ),
            (2, 2, 1)
        );

        // The incident drew on the critical overdraft, audited.
        assert_eq!(summary.overdraft_tokens, 3_000);
        let overdraft_audits: i64 = count(
            audit_log::table
                .filter(audit_log::action.eq("overdraft.use"))
                .count()
                .get_result(conn),
        );
        assert!(overdraft_audits >= 1);

        // Everyone in a team was active in the last IDLE_DAYS: starting `serve` now
        // sends nobody on vacation.
        assert_eq!(
            vacation::send_idle_on_vacation(conn, now(), &rules()).unwrap(),
            0
        );

        // The same seed gives the same database (keys and lease ids aside).
        let again = match db.backend {
            "sqlite" => TestDb::sqlite(),
            _ => TestDb::postgres("seed_demo_fills_the_same_every_time_again").unwrap(),
        };
        let second = run(&again, DEFAULT_SEED, false).unwrap();
        assert_ne!(
            summary.api_key, second.api_key,
            "keys are random, never seeded"
        );
        assert_eq!(
            (
                summary.records,
                summary.total_tokens,
                summary.cost_nano_usd,
                summary.leases
            ),
            (
                second.records,
                second.total_tokens,
                second.cost_nano_usd,
                second.leases
            )
        );
        let (a, b) = (fingerprint(conn), fingerprint(&mut again.conn()));
        assert!(a == b, "the same seed gave different databases");
    }
);

/// Everything a seed decides, read back from the database (lease ids and keys are
/// random by design and left out).
fn fingerprint(conn: &mut DbConnection) -> String {
    let people: Vec<(i64, String, String, i64, String, bool)> = users::table
        .order(users::id)
        .select((
            users::id,
            users::email,
            users::name,
            users::personal_quota,
            users::status,
            users::is_admin,
        ))
        .load(conn)
        .unwrap();
    let team_rows: Vec<(i64, String, i64)> = teams::table
        .order(teams::id)
        .select((teams::id, teams::name, teams::common_pool))
        .load(conn)
        .unwrap();
    let member_rows: Vec<(i64, i64, bool)> = team_members::table
        .order((team_members::team_id, team_members::user_id))
        .select((
            team_members::team_id,
            team_members::user_id,
            team_members::is_admin,
        ))
        .load(conn)
        .unwrap();
    type Usage = (
        String,
        i64,
        String,
        i64,
        i64,
        i64,
        i32,
        bool,
        Option<String>,
        NaiveDateTime,
        NaiveDateTime,
        i64,
    );
    let usage: Vec<Usage> = usage_records::table
        .order(usage_records::request_id)
        .select((
            usage_records::request_id,
            usage_records::user_id,
            usage_records::model,
            usage_records::input_tokens,
            usage_records::output_tokens,
            usage_records::cached_tokens,
            usage_records::status,
            usage_records::estimated,
            usage_records::project_id,
            usage_records::occurred_at,
            usage_records::created_at,
            usage_records::cost_nano_usd,
        ))
        .load(conn)
        .unwrap();
    let transfer_rows: Vec<(i64, i64, i64, String, NaiveDateTime)> = transfers::table
        .order(transfers::id)
        .select((
            transfers::sender_id,
            transfers::recipient_id,
            transfers::amount,
            transfers::status,
            transfers::created_at,
        ))
        .load(conn)
        .unwrap();
    let request_rows: Vec<(i64, i64, String)> = quota_requests::table
        .order(quota_requests::id)
        .select((
            quota_requests::user_id,
            quota_requests::amount,
            quota_requests::status,
        ))
        .load(conn)
        .unwrap();
    let balances: Vec<(String, NaiveDateTime, i64)> = ledger_balances::table
        .order((ledger_balances::account, ledger_balances::period_start))
        .select((
            ledger_balances::account,
            ledger_balances::period_start,
            ledger_balances::balance,
        ))
        .load(conn)
        .unwrap();
    format!(
        "{people:?}\n{team_rows:?}\n{member_rows:?}\n{usage:?}\n{transfer_rows:?}\n{request_rows:?}\n{balances:?}"
    )
}

db_test!(
    seed_demo_refuses_a_database_with_users_unless_forced,
    |db| {
        let existing = create_user(&db, "ann@company.com", 1000, true);
        let err = run(&db, DEFAULT_SEED, false).unwrap_err();
        assert!(matches!(err, SeedError::NotEmpty { users: 1 }), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
        let users_now =
            |db: &TestDb| -> i64 { users::table.count().get_result(&mut *db.conn()).unwrap() };
        assert_eq!(users_now(&db), 1, "nothing written");

        // Forced: the demo is added beside the existing user, who keeps their own data.
        let summary = run(&db, DEFAULT_SEED, true).unwrap();
        assert_eq!(summary.users, 31);
        assert_eq!(users_now(&db), 32);
        let ann: (String, i64) = users::table
            .find(existing.user.id)
            .select((users::email, users::personal_quota))
            .first(&mut *db.conn())
            .unwrap();
        assert_eq!(ann, ("ann@company.com".to_owned(), 1000));
        assert!(ledger::audit(&mut db.conn()).unwrap().is_clean());

        // The same demo twice is refused before anything is written.
        let err = run(&db, DEFAULT_SEED, true).unwrap_err();
        assert!(matches!(err, SeedError::Taken(_)), "{err}");
        assert_eq!(users_now(&db), 32);
    }
);

#[test]
fn the_command_prints_the_admin_key_once_and_refuses_a_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let alfred = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_alfred"))
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", "sqlite://./demo.db")
            .output()
            .unwrap()
    };
    let out = alfred(&["seed-demo", "--seed", "3", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with(r#"{"id":1,"api_key":"tp-"#), "{stdout}");
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let key = value["api_key"].as_str().unwrap();
    assert!(!stderr.contains(key), "the key never reaches the logs");
    assert_eq!(value["users"], 31);
    assert_eq!(value["teams"], 5);
    assert_eq!(value["seed"], 3);
    assert!(value["usage_records"].as_u64().unwrap() > 5_000);

    // The key is the admin's.
    let path = dir.path().join("demo.db").to_string_lossy().into_owned();
    let pool = db::connect(&DatabaseUrl::SqliteFile(path)).unwrap();
    let admin = alfred_control_plane::users::authenticate(&mut pool.get().unwrap(), key)
        .unwrap()
        .unwrap();
    assert!(admin.is_admin);
    drop(pool);

    let again = alfred(&["seed-demo"]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already has 31 user(s)"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
}
