//! Database access: one connection type for SQLite and PostgreSQL, the pool, the
//! embedded migrations and the write-transaction helper.
//!
//! [`DbConnection`] is a diesel `MultiConnection`, so every query is written once.
//! Where the multi-backend lacks a feature (`ON CONFLICT`, `FOR UPDATE`, how a write
//! transaction takes its lock) the code matches on the variant.

pub mod schema;

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionError};
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
}

/// How long a SQLite writer waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

/// Opens connections of the backend named by the URL, with per-connection settings.
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    url: DatabaseUrl,
}

impl ConnectionManager {
    /// A manager for `url`.
    pub fn new(url: DatabaseUrl) -> Self {
        Self { url }
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
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        // A transaction left open by a failed rollback poisons the connection.
        diesel::r2d2::R2D2Connection::is_broken(conn)
    }
}

fn open_sqlite(path: &str) -> Result<DbConnection, r2d2::Error> {
    let mut conn = SqliteConnection::establish(path).map_err(r2d2::Error::ConnectionError)?;
    // busy_timeout first, so that even switching to WAL waits for a lock held by a
    // sibling connection instead of failing. WAL lets readers run beside the single
    // writer; foreign keys are off by default in SQLite.
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; \
         PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
    ))
    .map_err(|e| r2d2::Error::ConnectionError(ConnectionError::BadConnection(e.to_string())))?;
    Ok(DbConnection::Sqlite(conn))
}

/// Builds the pool. An in-memory SQLite database lives in one connection, so its pool
/// has exactly one.
pub fn connect(url: &DatabaseUrl) -> Result<DbPool, DbSetupError> {
    let max_size = match url {
        DatabaseUrl::SqliteMemory => 1,
        DatabaseUrl::SqliteFile(_) => 8,
        DatabaseUrl::Postgres(_) => 16,
    };
    let pool = Pool::builder()
        .max_size(max_size)
        .connection_timeout(Duration::from_secs(10))
        // A PostgreSQL connection can go stale (server restart, failover) and libpq
        // does not reconnect by itself, so it is tested at checkout. A SQLite file
        // cannot go stale; skipping the test saves a query per request.
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

/// Runs `f` in a transaction that holds the write lock from its first statement.
///
/// SQLite: `BEGIN IMMEDIATE`, so two read-then-write transactions cannot interleave
/// (a plain `BEGIN` would let both read, then one fail to upgrade). PostgreSQL: a plain
/// transaction; callers lock the rows they decide on with `SELECT … FOR UPDATE`.
pub fn write_transaction<T, E>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    type Tm = <DbConnection as Connection>::TransactionManager;
    match conn {
        DbConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
        DbConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
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

/// Whether the database answers (`/readyz`).
pub fn ping(conn: &mut DbConnection) -> bool {
    conn.batch_execute("SELECT 1").is_ok()
}
