//! Test support: an isolated database per test on either backend, and the macros that
//! run one test definition against SQLite and PostgreSQL.
//!
//! SQLite: a fresh file in a temporary directory. PostgreSQL: a fresh database created
//! from `ALFRED_TEST_POSTGRES_URL` (a role with CREATEDB) and dropped afterwards; when
//! the variable is unset the PostgreSQL variants print a note and pass.

use std::sync::Arc;

use alfred_control_plane::clock::TestClock;
use alfred_control_plane::config::{Config, DatabaseUrl, Secret};
use alfred_control_plane::db::{self, DbPool, PooledConn};
use alfred_control_plane::http::AppState;
use alfred_control_plane::ledger;
use alfred_control_plane::quota::{self, QuotaPeriod, QuotaRules, QuotaView};
use alfred_control_plane::users::{self, CreateUser, CreatedUser};
use chrono::NaiveDateTime;
use diesel::connection::SimpleConnection as _;
use diesel::pg::PgConnection;
use diesel::Connection as _;

/// The variable naming the PostgreSQL server for the `postgres` variants.
pub const POSTGRES_ENV: &str = "ALFRED_TEST_POSTGRES_URL";
/// Filter credential used by the tests.
pub const FILTER_TOKEN: &str = "test-filter-token-0123456789abcdef";

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

/// One test's private database.
pub struct TestDb {
    pool: Option<DbPool>,
    cleanup: Cleanup,
    /// `"sqlite"` or `"postgres"`.
    pub backend: &'static str,
}

impl TestDb {
    /// A migrated SQLite database in a fresh temporary file.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alfred.db").to_string_lossy().into_owned();
        let pool = db::connect(&DatabaseUrl::SqliteFile(path)).unwrap();
        db::run_migrations(&mut pool.get().unwrap()).unwrap();
        Self {
            pool: Some(pool),
            cleanup: Cleanup::Sqlite(dir),
            backend: "sqlite",
        }
    }

    /// A migrated PostgreSQL database of its own, or `None` (with a note) when
    /// `ALFRED_TEST_POSTGRES_URL` is unset.
    pub fn postgres(test: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
            eprintln!("note: {test} skipped on PostgreSQL: set {POSTGRES_ENV}=postgres://user:pass@host/db to run it");
            return None;
        };
        let suffix: String = test
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let suffix: String = suffix
            .chars()
            .rev()
            .take(36)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let name = format!("alfred_t_{}_{}", suffix.trim_matches('_'), rand_hex());
        let mut admin = PgConnection::establish(&admin_url).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap();
        let url = database_url_with_name(&admin_url, &name);
        let pool = db::connect(&DatabaseUrl::Postgres(Secret::new(url))).unwrap();
        db::run_migrations(&mut pool.get().unwrap()).unwrap();
        Some(Self {
            pool: Some(pool),
            cleanup: Cleanup::Postgres { admin_url, name },
            backend: "postgres",
        })
    }

    /// The pool.
    pub fn pool(&self) -> DbPool {
        self.pool.clone().unwrap()
    }

    /// A connection.
    pub fn conn(&self) -> PooledConn {
        self.pool.as_ref().unwrap().get().unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.pool.take();
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup {
            if let Ok(mut admin) = PgConnection::establish(admin_url) {
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            }
        }
    }
}

fn rand_hex() -> String {
    use rand::RngCore as _;
    let mut bytes = [0_u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Replaces the database name in a `postgres://…/name?params` URL.
fn database_url_with_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// 2026-11-30 12:00:00 UTC, a Monday: 43,200 s before the monthly reset.
pub fn start_time() -> NaiveDateTime {
    at("2026-11-30 12:00:00")
}

/// Parses `YYYY-MM-DD HH:MM:SS`.
pub fn at(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

/// Default configuration (monthly periods, 60 s leases) with the test filter token.
pub fn config() -> Config {
    let mut config = Config::from_lookup(|_| None).unwrap();
    config.filter_token = Some(Secret::new(FILTER_TOKEN));
    config
}

/// App state over `db` with a test clock.
pub fn state(db: &TestDb, clock: &TestClock) -> AppState {
    AppState::new(
        db.pool(),
        Arc::new(clock.clone()),
        &config(),
        Secret::new(FILTER_TOKEN),
    )
}

/// Creates a user directly through the domain.
pub fn create_user(db: &TestDb, email: &str, quota: i64, is_admin: bool) -> CreatedUser {
    users::create_user(
        &mut db.conn(),
        start_time(),
        CreateUser {
            email: email.into(),
            name: email.into(),
            personal_quota: quota,
            is_admin,
        },
        None,
    )
    .unwrap()
}

/// Runs one test body against SQLite and PostgreSQL: `db_test!(name, |db| { … });`
/// generates `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! db_test {
    ($name:ident, |$db:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn sqlite() {
                let $db = $crate::common::TestDb::sqlite();
                $body
            }

            #[test]
            fn postgres() {
                let Some($db) = $crate::common::TestDb::postgres(module_path!()) else {
                    return;
                };
                $body
            }
        }
    };
}

/// Like [`db_test!`] for async (actix) tests.
#[macro_export]
macro_rules! http_test {
    ($name:ident, |$db:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[actix_web::test]
            async fn sqlite() {
                let $db = $crate::common::TestDb::sqlite();
                $body
            }

            #[actix_web::test]
            async fn postgres() {
                let Some($db) = $crate::common::TestDb::postgres(module_path!()) else {
                    return;
                };
                $body
            }
        }
    };
}

/// Sets a user's status the way an admin does (vacation rules included).
pub fn set_status(
    conn: &mut alfred_control_plane::db::DbConnection,
    now: NaiveDateTime,
    id: i64,
    status: users::UserStatus,
) -> alfred_control_plane::error::Result<users::User> {
    users::update_user(
        conn,
        now,
        id,
        users::UpdateUser {
            status: Some(status),
            ..users::UpdateUser::default()
        },
        &rules(),
        None,
    )
}

/// The default quota rules with the given period.
pub fn rules_with(period: QuotaPeriod) -> QuotaRules {
    QuotaRules {
        period,
        ..QuotaRules::DEFAULT
    }
}

/// The default quota rules (monthly).
pub fn rules() -> QuotaRules {
    QuotaRules::DEFAULT
}

/// The user's quota view at `now` under `period`.
pub fn balance(
    conn: &mut alfred_control_plane::db::DbConnection,
    user: &users::User,
    period: QuotaPeriod,
    now: NaiveDateTime,
) -> alfred_control_plane::error::Result<QuotaView> {
    let rules = rules_with(period);
    db::write_transaction(conn, |conn| quota::view(conn, now, user, &rules))
}

/// The user's usage charged in the period starting at `period_start`.
pub fn used_in_period(
    conn: &mut alfred_control_plane::db::DbConnection,
    user_id: i64,
    period_start: NaiveDateTime,
) -> alfred_control_plane::error::Result<i64> {
    ledger::balance(conn, ledger::Account::Used(user_id), period_start)
}
