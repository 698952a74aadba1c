//! The `alfred` command line: `serve` (default), `migrate`, `create-admin`, `seed-demo`.

use std::io::Write as _;
use std::sync::Arc;

use actix_web::{middleware, web, App, HttpServer};
use clap::{Parser, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::db::{self, DbPool};
use crate::error::Error;
use crate::http::{self, AppState};
use crate::users::{self, CreateUser};

/// Alfred control plane.
#[derive(Debug, Parser)]
#[command(
    name = "alfred",
    version,
    about = "Alfred control plane: quota leases, usage, admin API"
)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run pending migrations, then serve the API (needs ALFRED_FILTER_TOKEN).
    Serve,
    /// Run pending migrations and exit.
    Migrate,
    /// Create an admin user and print their API key (shown once).
    CreateAdmin {
        /// Email of the admin.
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Personal quota in tokens (default: DEFAULT_PERSONAL_QUOTA).
        #[arg(long)]
        quota: Option<i64>,
        /// Print `{"id":…,"api_key":"tp-…"}` instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Fill the database with a demo organisation (an admin, 30 people, 5 teams, 30
    /// days of usage ending now, transfers, approvals) and print the admin's API key
    /// once.
    SeedDemo {
        /// Fixes every name and number: the same seed gives the same demo.
        #[arg(long, default_value_t = crate::seed::DEFAULT_SEED)]
        seed: u64,
        /// Seed even though the database already has users: the demo organisation is
        /// added beside them (nothing existing is changed; its emails and team names
        /// must be free). Without it, a database with users is refused, so a real
        /// deployment is never filled with demo data by mistake.
        #[arg(long)]
        force: bool,
        /// Print the summary as one JSON object (`{"id":…,"api_key":"tp-…",…}`).
        #[arg(long)]
        json: bool,
    },
}

/// Why a command failed; `main` prints it and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Database unreachable or migration failure.
    #[error(transparent)]
    Db(#[from] db::DbSetupError),
    /// A domain rule refused the command.
    #[error("{0}")]
    Domain(#[from] Error),
    /// The demo seed refused or stopped.
    #[error(transparent)]
    Seed(#[from] crate::seed::SeedError),
    /// The server could not bind or crashed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

fn migrated_pool(config: &Config) -> Result<DbPool, CliError> {
    let pool = db::connect_with(&config.database_url, config.database_pool_size)?;
    let mut conn = pool.get().map_err(db::DbSetupError::from)?;
    let applied = db::run_migrations(&mut conn)?;
    tracing::info!(applied, database = %config.database_url.redacted(), "migrations up to date");
    drop(conn);
    Ok(pool)
}

/// Runs the chosen command.
pub async fn run(cli: Cli, config: Config) -> Result<(), CliError> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            migrated_pool(&config)?;
            Ok(())
        }
        Command::CreateAdmin {
            email,
            name,
            quota,
            json,
        } => {
            let pool = migrated_pool(&config)?;
            let mut conn = pool.get().map_err(Error::from)?;
            let input = CreateUser {
                email,
                name,
                personal_quota: quota.unwrap_or(config.default_personal_quota),
                is_admin: true,
            };
            let created = users::create_user(&mut conn, SystemClock.now(), input, None).map_err(
                |e| match e {
                    Error::EmailTaken => {
                        Error::invalid("--email", "a user with this email already exists")
                    }
                    Error::Invalid { field, message } => {
                        Error::invalid(format!("--{}", field.replace('_', "-")), message)
                    }
                    other => other,
                },
            )?;
            let mut out = std::io::stdout().lock();
            if json {
                // A struct keeps the documented key order: {"id":…,"api_key":"tp-…"}.
                #[derive(serde::Serialize)]
                struct AdminKey<'a> {
                    id: i64,
                    api_key: &'a str,
                }
                let line = serde_json::to_string(&AdminKey {
                    id: created.user.id,
                    api_key: &created.api_key,
                })
                .map_err(|e| std::io::Error::other(e.to_string()))?;
                writeln!(out, "{line}")?;
            } else {
                writeln!(
                    out,
                    "Admin user created: id {} <{}>",
                    created.user.id, created.user.email
                )?;
                writeln!(
                    out,
                    "API key (shown once, store it now): {}",
                    created.api_key
                )?;
            }
            Ok(())
        }
        Command::SeedDemo { seed, force, json } => seed_demo(&config, seed, force, json),
    }
}

/// `alfred seed-demo`: see `crate::seed`.
fn seed_demo(config: &Config, seed: u64, force: bool, json: bool) -> Result<(), CliError> {
    let prices = config.price_catalog()?;
    let pool = migrated_pool(config)?;
    let mut conn = pool.get().map_err(Error::from)?;
    let policy = crate::leases::LeasePolicy {
        ttl: config.lease_ttl,
        rules: crate::quota::QuotaRules::from_config(config),
    };
    let started = std::time::Instant::now();
    let summary = crate::seed::seed_demo(
        &mut conn,
        SystemClock.now(),
        policy,
        &prices,
        crate::seed::SeedOptions { seed, force },
    )?;
    let elapsed = started.elapsed();
    tracing::info!(
        seed,
        users = summary.users,
        records = summary.records,
        elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "demo organisation seeded"
    );
    let mut out = std::io::stdout().lock();
    if json {
        let line = serde_json::to_string(&crate::seed::SummaryJson::from(&summary))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        writeln!(out, "{line}")?;
    } else {
        write!(out, "{}", summary.report(elapsed))?;
    }
    Ok(())
}

async fn serve(config: Config) -> Result<(), CliError> {
    let filter_token = config.require_filter_token()?.clone();
    let prices = config.price_catalog()?;
    tracing::info!(
        models = prices.len(),
        pricing_file = config.pricing_file.is_some(),
        "price catalog loaded"
    );
    let pool = migrated_pool(&config)?;
    if let crate::config::DatabaseUrl::SqliteFile(path) = &config.database_url {
        db::spawn_sqlite_checkpointer(path)?;
    }
    let mut state = AppState::new(pool, Arc::new(SystemClock), &config, filter_token);
    state.prices = Arc::new(prices);
    let bind = config.bind;
    tokio::spawn(maintenance_loop(state.clone()));
    tracing::info!(%bind, environment = %config.environment, quota_period = %config.quota_period, "serving");
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            // Method, path, status, latency: never headers (keys) or bodies.
            .wrap(middleware::Logger::new("%r %s %Dms"))
            .configure(http::routes)
    })
    .bind(bind)?
    .run()
    .await?;
    Ok(())
}

/// Every second: release expired leases, expire pending approvals; every minute also
/// the idle-vacation check (see `crate::maintenance`). Failures are logged and retried
/// on the next tick.
async fn maintenance_loop(state: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round: u64 = 0;
    loop {
        tick.tick().await;
        round = round.wrapping_add(1);
        let with_idle = round % 60 == 1;
        let now = state.clock.now();
        let rules = state.rules();
        let result = state
            .run(move |conn| Ok(crate::maintenance::run(conn, now, &rules, with_idle)?))
            .await;
        match result {
            Ok(done) => {
                state.metrics.maintenance(&done);
                if done != crate::maintenance::Round::default() {
                    tracing::debug!(?done, "maintenance round");
                }
            }
            Err(error) => {
                state.metrics.maintenance_failed();
                tracing::warn!(%error, "maintenance round failed; retrying next second");
            }
        }
    }
}
