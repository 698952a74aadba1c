//! Database access: one connection type for SQLite and PostgreSQL, the pool, the
//! embedded migrations and the write-transaction helper.
//!
//! [`DbConnection`] is a diesel `MultiConnection`, so every query is written once.
//! Where the multi-backend lacks a feature (`ON CONFLICT`, `FOR UPDATE`, how a write
//! transaction takes its lock) the code matches on the variant.

pub mod group_commit;
pub mod schema;
pub mod sqlite_statement;
pub mod sqlite_time;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionError, QueryResult, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::DatabaseUrl;

/// Migrations for SQLite, embedded at build time.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
/// Migrations for PostgreSQL, embedded at build time.
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// SQLite (development, single node).
    Sqlite(SqliteConnection),
    /// PostgreSQL (production, several replicas).
    Postgres(PgConnection),
}

/// The connection pool shared by the HTTP workers.
pub type DbPool = Pool<ConnectionManager>;
/// A connection checked out of the pool.
pub type PooledConn = PooledConnection<ConnectionManager>;

/// Errors opening the database or running migrations.
#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    /// The pool could not open connections.
    #[error("cannot connect to the database: {0}")]
    Pool(#[from] r2d2::PoolError),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The SQLite WAL checkpointer could not start.
    #[error("cannot start the SQLite WAL checkpointer: {0}")]
    Checkpointer(String),
}

/// How long a SQLite writer waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

/// A PostgreSQL connection is pinged at checkout only when no connection of the pool
/// has completed work for this long: under load the server is known to be up, and a
/// ping per request would be a round trip per request.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Opens connections of the backend named by the URL, with per-connection settings.
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    url: DatabaseUrl,
    /// Start of the clock for `last_ok_ms`.
    epoch: Instant,
    /// When a connection last came back to the pool unbroken (ms since `epoch`).
    last_ok_ms: Arc<AtomicU64>,
}

impl ConnectionManager {
    /// A manager for `url`.
    pub fn new(url: DatabaseUrl) -> Self {
        Self {
            url,
            epoch: Instant::now(),
            last_ok_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => PgConnection::establish(url.expose())
                .map(DbConnection::Postgres)
                .map_err(r2d2::Error::ConnectionError),
            DatabaseUrl::SqliteFile(path) => open_sqlite(path),
            DatabaseUrl::SqliteMemory => open_sqlite(":memory:"),
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        let idle_ms = self
            .elapsed_ms()
            .saturating_sub(self.last_ok_ms.load(Ordering::Relaxed));
        if u128::from(idle_ms) < PING_AFTER_IDLE.as_millis()
            && self.last_ok_ms.load(Ordering::Relaxed) > 0
        {
            return Ok(());
        }
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        // A transaction left open by a failed rollback poisons the connection, and so
        // does a lost server (see `discard_if_disconnected`).
        let broken = diesel::r2d2::R2D2Connection::is_broken(conn);
        if !broken {
            self.last_ok_ms
                .store(self.elapsed_ms().max(1), Ordering::Relaxed);
        }
        broken
    }
}

/// After a failed request: when the connection no longer answers (server restarted,
/// network cut), mark it broken so the pool discards it at check-in instead of handing
/// it out again (checkout pings are skipped while the pool is busy).
pub fn discard_if_disconnected(conn: &mut DbConnection) {
    if conn.batch_execute("SELECT 1").is_err() {
        type Tm = <DbConnection as Connection>::TransactionManager;
        Tm::transaction_manager_status_mut(conn).set_in_error();
    }
}

fn open_sqlite(path: &str) -> Result<DbConnection, r2d2::Error> {
    let mut conn = SqliteConnection::establish(path).map_err(r2d2::Error::ConnectionError)?;
    // busy_timeout first, so that even switching to WAL waits for a lock held by a
    // sibling connection instead of failing. WAL lets readers run beside the single
    // writer; foreign keys are off by default in SQLite. A 32 MiB page cache and
    // memory-mapped reads keep the hot pages (users, leases, totals, indexes) out of
    // read(2) calls. A writer checkpoints the WAL itself only past
    // SQLITE_AUTOCHECKPOINT_PAGES: a checkpoint (page copies and an fsync) run by the
    // committing writer stalls every other writer, so a served database is
    // checkpointed beside them by `spawn_sqlite_checkpointer`, and this is the backstop
    // that bounds the WAL when nothing else does (a command-line run, a stalled
    // checkpointer).
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; \
         PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA cache_size = -32768; PRAGMA mmap_size = 268435456; \
         PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = {SQLITE_AUTOCHECKPOINT_PAGES}; \
         PRAGMA journal_size_limit = {SQLITE_WAL_SIZE_LIMIT};"
    ))
    .map_err(|e| r2d2::Error::ConnectionError(ConnectionError::BadConnection(e.to_string())))?;
    Ok(DbConnection::Sqlite(conn))
}

/// WAL pages (4 KiB) past which a committing writer checkpoints by itself.
const SQLITE_AUTOCHECKPOINT_PAGES: u32 = 20_000;
/// The WAL file is truncated back to this size (bytes) when it starts over, so a burst
/// does not leave a large file behind.
const SQLITE_WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;
/// How often the background checkpointer copies the WAL into the database. A page
/// changed by every ingestion round (a busy lease, an index's right edge) is copied
/// once per checkpoint: at 250 ms the copying cost about 3 µs more per usage record.
const SQLITE_CHECKPOINT_EVERY: Duration = Duration::from_millis(1000);

/// Checkpoints the WAL of the SQLite database at `path` every
/// [`SQLITE_CHECKPOINT_EVERY`], on a thread and connection of its own.
///
/// A `PASSIVE` checkpoint copies committed pages into the database without taking the
/// write lock, so writers go on meanwhile and the copying and its fsync run on another
/// core instead of inside a writer's commit; once everything is copied, the next writer
/// starts the WAL over from its beginning. The thread lives as long as the process.
pub fn spawn_sqlite_checkpointer(path: &str) -> Result<(), DbSetupError> {
    let mut conn =
        SqliteConnection::establish(path).map_err(|e| DbSetupError::Checkpointer(e.to_string()))?;
    conn.batch_execute(&format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};"))
        .map_err(|e| DbSetupError::Checkpointer(e.to_string()))?;
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || loop {
            std::thread::sleep(SQLITE_CHECKPOINT_EVERY);
            if let Err(error) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE);") {
                tracing::warn!(%error, "WAL checkpoint failed; the writers' own checkpoint bounds the WAL meanwhile");
            }
        })
        .map_err(|e| DbSetupError::Checkpointer(e.to_string()))?;
    Ok(())
}

/// Builds the pool. An in-memory SQLite database lives in one connection, so its pool
/// has exactly one.
pub fn connect(url: &DatabaseUrl) -> Result<DbPool, DbSetupError> {
    connect_with(url, None)
}

/// Builds the pool with `max_size` connections (`DATABASE_POOL_SIZE`), or the
/// default: SQLite 8 (one writer at a time anyway; the rest serve reads), PostgreSQL 16.
pub fn connect_with(url: &DatabaseUrl, max_size: Option<u32>) -> Result<DbPool, DbSetupError> {
    let max_size = match url {
        DatabaseUrl::SqliteMemory => 1,
        DatabaseUrl::SqliteFile(_) => max_size.unwrap_or(8),
        DatabaseUrl::Postgres(_) => max_size.unwrap_or(16),
    };
    let pool = Pool::builder()
        .max_size(max_size)
        .connection_timeout(Duration::from_secs(10))
        // A PostgreSQL connection can go stale (server restart, failover) and libpq
        // does not reconnect by itself, so it is tested at checkout when the pool has
        // been idle (see `is_valid`) and discarded after a failure that lost it. A
        // SQLite file cannot go stale; skipping the test saves a query per request.
        .test_on_check_out(matches!(url, DatabaseUrl::Postgres(_)))
        .build(ConnectionManager::new(url.clone()))?;
    Ok(pool)
}

/// Runs pending migrations; returns how many ran.
pub fn run_migrations(conn: &mut DbConnection) -> Result<usize, DbSetupError> {
    let applied = match conn {
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        DbConnection::Postgres(c) => c
            .run_pending_migrations(POSTGRES_MIGRATIONS)
            .map(|v| v.len()),
    };
    applied.map_err(|e| DbSetupError::Migration(e.to_string()))
}

/// In-process queue for SQLite writers.
///
/// SQLite admits one writer per database; a second `BEGIN IMMEDIATE` waits in SQLite's
/// busy handler, which polls with sleeps of up to 100 ms, so under load writers spend
/// their time asleep while the lock is free. Taking this mutex first makes this
/// process's writers queue and hand over without sleeping; `BEGIN IMMEDIATE` still
/// guards against other processes on the same file. One mutex for every SQLite
/// database of the process: a deployment has one, and tests with several only
/// serialise their (short) write transactions.
static SQLITE_WRITER: Mutex<()> = Mutex::new(());

fn sqlite_writer() -> MutexGuard<'static, ()> {
    // The mutex guards no data, so a panic while holding it leaves nothing to repair.
    SQLITE_WRITER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `f` in a transaction that holds the write lock from its first statement.
///
/// SQLite: the in-process writer queue, then `BEGIN IMMEDIATE`, so two
/// read-then-write transactions cannot interleave (a plain `BEGIN` would let both
/// read, then one fail to upgrade). PostgreSQL: a plain transaction; callers lock the
/// rows they decide on with `SELECT … FOR UPDATE`.
pub fn write_transaction<T, E>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    type Tm = <DbConnection as Connection>::TransactionManager;
    let _writer = match conn {
        DbConnection::Sqlite(c) => {
            let guard = sqlite_writer();
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
            Some(guard)
        }
        DbConnection::Postgres(c) => {
            AnsiTransactionManager::begin_transaction(c)?;
            None
        }
    };
    match f(conn) {
        Ok(value) => {
            if let Err(commit_error) = Tm::commit_transaction(conn) {
                // A failed COMMIT leaves the transaction open on some backends.
                let _ = Tm::rollback_transaction(conn);
                return Err(commit_error.into());
            }
            Ok(value)
        }
        Err(error) => {
            // The caller's error is the one worth reporting; a rollback failure marks
            // the connection broken and r2d2 discards it.
            let _ = Tm::rollback_transaction(conn);
            Err(error)
        }
    }
}

/// Runs the same diesel expression on whichever backend `conn` is, for the queries
/// diesel's multi-backend connection cannot express (multi-row inserts, `RETURNING`
/// a selectable struct): `on_backend!(conn, |c| query.get_result(c))`.
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Sqlite($c) => $body,
            $crate::db::DbConnection::Postgres($c) => $body,
        }
    };
}

/// Advisory-lock key spaces, so a user id and a team id never share a lock.
const USER_LOCK_SPACE: i64 = 1 << 56;
const TEAM_LOCK_SPACE: i64 = 2 << 56;

/// Locks a user's credit for the rest of the transaction: every decision on their
/// balances (grant, transfer, vacation) takes it first, then team locks in id order.
/// PostgreSQL: a transaction-scoped advisory lock (no row write). SQLite: nothing to
/// do, [`write_transaction`] already holds the database's single write lock.
pub fn lock_user(conn: &mut DbConnection, user_id: i64) -> QueryResult<()> {
    advisory_lock(conn, USER_LOCK_SPACE | user_id)
}

/// Locks a team's pool for the rest of the transaction (after any user locks).
pub fn lock_team(conn: &mut DbConnection, team_id: i64) -> QueryResult<()> {
    advisory_lock(conn, TEAM_LOCK_SPACE | team_id)
}

/// Locks several users' credit at once, in ascending id order (the lock order), for
/// a transaction that decides for all of them (a round of grants). `user_ids` must be
/// sorted ascending.
pub fn lock_users(conn: &mut DbConnection, user_ids: &[i64]) -> QueryResult<()> {
    advisory_locks(
        conn,
        user_ids.iter().map(|&id| USER_LOCK_SPACE | id).collect(),
    )
}

/// Locks several teams' pools at once, in ascending id order (after the user locks).
/// `team_ids` must be sorted ascending.
pub fn lock_teams(conn: &mut DbConnection, team_ids: &[i64]) -> QueryResult<()> {
    advisory_locks(
        conn,
        team_ids.iter().map(|&id| TEAM_LOCK_SPACE | id).collect(),
    )
}

/// Takes the locks one after the other in the order given: `unnest` yields the
/// array's elements in order and nothing re-sorts them before the call.
fn advisory_locks(conn: &mut DbConnection, keys: Vec<i64>) -> QueryResult<()> {
    match keys.as_slice() {
        [] => Ok(()),
        [key] => advisory_lock(conn, *key),
        _ => {
            if let DbConnection::Postgres(pg) = conn {
                diesel::sql_query("SELECT pg_advisory_xact_lock(k) FROM unnest($1) AS u(k)")
                    .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(keys)
                    .execute(pg)?;
            }
            Ok(())
        }
    }
}

fn advisory_lock(conn: &mut DbConnection, key: i64) -> QueryResult<()> {
    if let DbConnection::Postgres(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(key)
            .execute(pg)?;
    }
    Ok(())
}

/// Runs `attempt` again (up to 4 tries in all) when PostgreSQL aborted it as a
/// deadlock victim or a serialization failure: the transaction was rolled back whole,
/// so trying again is safe. Other errors, and success, return at once.
pub fn retry_on_conflict<T>(
    mut attempt: impl FnMut() -> crate::error::Result<T>,
) -> crate::error::Result<T> {
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt() {
            Err(crate::error::Error::Database(diesel::result::Error::DatabaseError(
                kind,
                info,
            ))) if tries < 4
                && (matches!(
                    kind,
                    diesel::result::DatabaseErrorKind::SerializationFailure
                ) || info.message().contains("deadlock detected")) =>
            {
                tracing::debug!(tries, "transaction lost a lock conflict; retrying");
            }
            other => return other,
        }
    }
}

/// Whether the database answers (`/readyz`).
pub fn ping(conn: &mut DbConnection) -> bool {
    conn.batch_execute("SELECT 1").is_ok()
}

#[cfg(test)]
mod checkpointer_tests {
    use super::*;

    fn file_len(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    #[test]
    fn the_checkpointer_copies_committed_pages_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("alfred.db");
        let path = db.to_str().unwrap().to_string();
        let pool = connect(&DatabaseUrl::SqliteFile(path.clone())).unwrap();
        let mut conn = pool.get().unwrap();
        conn.batch_execute(
            "CREATE TABLE filler (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
             INSERT INTO filler (text) SELECT printf('%0200d', i) FROM n;",
        )
        .unwrap();
        // Far below the writers' own checkpoint threshold: the pages are in the WAL only.
        let before = file_len(&db);
        std::thread::sleep(SQLITE_CHECKPOINT_EVERY * 2);
        assert_eq!(file_len(&db), before, "nothing else checkpoints");

        spawn_sqlite_checkpointer(&path).unwrap();
        // A checkpoint writes the pages one after another: wait for all of them, not the
        // first.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while file_len(&db) <= before + 500_000 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            file_len(&db) > before + 500_000,
            "the database file holds the rows: {} -> {}",
            before,
            file_len(&db)
        );
        let count: i64 =
            diesel::dsl::sql::<diesel::sql_types::BigInt>("SELECT COUNT(*) FROM filler")
                .get_result(&mut conn)
                .unwrap();
        assert_eq!(count, 5000);
    }
}
