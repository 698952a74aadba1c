//! The HTTP surface (actix-web). Handlers only decode, call the domain, encode; the
//! blocking diesel work runs on actix's blocking pool via [`AppState::run`].

mod admin;
mod analytics;
mod approvals;
mod audit;
pub mod auth;
mod dashboard;
pub mod error;
mod health;
mod internal;
pub mod json;
mod me;
pub mod metrics;
mod openapi;
pub mod query;
pub mod session;
mod teams;
mod transfers;
pub mod wire;

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::clock::Clock;
use crate::config::{Config, DatabaseUrl, Secret};
use crate::db::{DbConnection, DbPool};
use crate::leases::GrantQueue;
use crate::leases::LeasePolicy;
use crate::pricing::PriceCatalog;
use crate::quota::{QuotaPeriod, QuotaRules};
use crate::sessions::SessionKeys;
use crate::usage::IngestQueue;
use crate::users::User;
use auth::{authorize, presented_key, Require};
use error::ApiError;

/// Largest accepted request body (a usage batch of 10,000 records fits comfortably).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Database pool.
    pub pool: DbPool,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// The filter's shared secret.
    pub filter_token: Secret,
    /// Lease TTL and the quota rules.
    pub lease_policy: LeasePolicy,
    /// Quota of users created without one.
    pub default_personal_quota: i64,
    /// Prices for the cost of usage records (built-in list unless replaced, e.g. by
    /// `serve` with `PRICING_FILE`).
    pub prices: Arc<PriceCatalog>,
    /// Group commit of usage batches.
    pub ingest_queue: Arc<IngestQueue>,
    /// Group commit of lease grants.
    pub grant_queue: Arc<GrantQueue>,
    /// Counters served at `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// Signs and checks dashboard session tokens.
    pub sessions: Arc<SessionKeys>,
    /// Whether the session cookie is `Secure` (`SESSION_COOKIE_SECURE`).
    pub session_cookie_secure: bool,
    /// The built dashboard served at `/static/` (`DASHBOARD_DIR`).
    pub dashboard_dir: Arc<PathBuf>,
}

impl AppState {
    /// State for `serve` (and tests) from the configuration.
    pub fn new(pool: DbPool, clock: Arc<dyn Clock>, config: &Config, filter_token: Secret) -> Self {
        // Concurrent write rounds per queue. SQLite has one writer anyway. PostgreSQL
        // overlaps two, so one round's statements run while the other waits for its
        // commit. (One usage round at a time makes rounds larger and costs the server
        // ~20 % less CPU per record, but leaves it idle during each commit's WAL
        // flush: measured 13–14k records/s against 15–16k with two.)
        let writers = match config.database_url {
            DatabaseUrl::Postgres(_) => 2,
            DatabaseUrl::SqliteFile(_) | DatabaseUrl::SqliteMemory => 1,
        };
        Self {
            pool,
            clock,
            filter_token,
            lease_policy: LeasePolicy {
                ttl: config.lease_ttl,
                rules: QuotaRules::from_config(config),
            },
            default_personal_quota: config.default_personal_quota,
            prices: Arc::new(PriceCatalog::builtin()),
            metrics: Arc::new(metrics::Metrics::default()),
            ingest_queue: Arc::new(IngestQueue::new(writers)),
            grant_queue: Arc::new(GrantQueue::new(writers)),
            sessions: Arc::new(session_keys(config)),
            session_cookie_secure: config.session_cookie_secure,
            dashboard_dir: Arc::new(config.dashboard_dir.clone()),
        }
    }

    /// The configured quota period.
    pub fn period(&self) -> QuotaPeriod {
        self.lease_policy.rules.period
    }

    /// The quota rules.
    pub fn rules(&self) -> QuotaRules {
        self.lease_policy.rules
    }

    /// Authenticates the caller (`require` decides who is admitted), then runs
    /// blocking `work` with the connection and the caller.
    pub async fn as_caller<T, F>(
        &self,
        req: &HttpRequest,
        require: Require,
        work: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection, User) -> Result<T, ApiError> + Send + 'static,
    {
        let key = presented_key(req.headers());
        self.run(move |conn| {
            let caller = authorize(conn, key.as_deref(), require)?;
            work(conn, caller)
        })
        .await
    }

    /// Runs blocking database work on a pooled connection, off the async workers.
    pub async fn run<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
    {
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = pool.get().map_err(crate::error::Error::from)?;
            let result = work(&mut conn);
            if matches!(result, Err(ApiError::Internal)) {
                crate::db::discard_if_disconnected(&mut conn);
            }
            result
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "blocking task failed");
            ApiError::Internal
        })?
    }
}

fn session_keys(config: &Config) -> SessionKeys {
    match &config.session_secret {
        Some(secret) => SessionKeys::new(secret.expose().as_bytes(), config.session_ttl),
        None => {
            tracing::warn!(
                "SESSION_SECRET is unset: dashboard sessions use a random per-process secret, \
                 so they end when the control plane restarts and are not shared between replicas"
            );
            SessionKeys::random(config.session_ttl)
        }
    }
}

/// Registers every route; used by `serve` and by the tests alike. Every route sits
/// behind [`session::attach_session`], which turns a valid session cookie into a
/// caller (see `auth`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .service(
            web::scope("")
                .wrap(actix_web::middleware::from_fn(session::attach_session))
                .configure(api_routes),
        )
        .default_service(web::to(not_found));
}

fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::metrics))
        .service(
            web::resource("/v1/admin/users")
                .route(web::post().to(admin::create_user))
                .route(web::get().to(admin::list_users)),
        )
        .service(
            web::resource("/v1/admin/users/{id}")
                .route(web::get().to(admin::get_user))
                .route(web::put().to(admin::update_user))
                .route(web::delete().to(admin::delete_user)),
        )
        .route(
            "/v1/admin/users/{id}/rotate-key",
            web::post().to(admin::rotate_key),
        )
        .route(
            "/v1/admin/users/{id}/keys",
            web::delete().to(admin::revoke_keys),
        )
        .route(
            "/v1/admin/users/{id}/usage",
            web::get().to(admin::user_usage),
        )
        .route(
            "/v1/admin/users/{id}/ledger",
            web::get().to(admin::user_ledger),
        )
        .service(
            web::resource("/v1/admin/teams")
                .route(web::post().to(teams::create_team))
                .route(web::get().to(teams::list_teams)),
        )
        .service(
            web::resource("/v1/admin/teams/{id}")
                .route(web::get().to(teams::get_team))
                .route(web::put().to(teams::update_team))
                .route(web::delete().to(teams::delete_team)),
        )
        .service(
            web::resource("/v1/admin/teams/{team_id}/members/{user_id}")
                .route(web::post().to(teams::add_member))
                .route(web::delete().to(teams::remove_member)),
        )
        .route("/v1/admin/transfers", web::get().to(transfers::admin_list))
        .route(
            "/v1/admin/transfers/{id}/approve",
            web::post().to(transfers::approve),
        )
        .route(
            "/v1/admin/transfers/{id}/deny",
            web::post().to(transfers::deny),
        )
        .route(
            "/v1/admin/quota-requests",
            web::get().to(approvals::admin_list),
        )
        .route(
            "/v1/admin/quota-requests/{id}/approve",
            web::post().to(approvals::approve),
        )
        .route(
            "/v1/admin/quota-requests/{id}/deny",
            web::post().to(approvals::deny),
        )
        .route("/v1/admin/audit", web::get().to(audit::list))
        .route("/v1/admin/ledger/check", web::get().to(audit::ledger_check))
        .route("/v1/users/me", web::get().to(me::profile))
        .route("/v1/users/me/quota", web::get().to(me::quota))
        .route("/v1/users/me/transfer", web::post().to(transfers::send))
        .route("/v1/users/me/transfers", web::get().to(transfers::mine))
        .service(
            web::resource("/v1/users/me/quota-requests")
                .route(web::post().to(approvals::create))
                .route(web::get().to(approvals::mine)),
        )
        .route(
            "/v1/users/me/notifications",
            web::get().to(me::notifications),
        )
        .route(
            "/v1/users/me/notifications/read",
            web::post().to(me::mark_read),
        )
        .service(
            web::resource("/v1/users/me/vacation")
                .route(web::post().to(me::start_vacation))
                .route(web::delete().to(me::end_vacation)),
        )
        .route("/openapi.json", web::get().to(openapi::document))
        .route("/internal/v1/leases", web::post().to(internal::grant_lease))
        .route("/internal/v1/usage", web::post().to(internal::report_usage))
        .route("/internal/v1/sync", web::post().to(internal::sync_keys))
        .route("/v1/auth/login", web::post().to(session::login))
        .route("/v1/auth/logout", web::post().to(session::logout))
        .route("/v1/auth/session", web::get().to(session::session))
        .route(
            "/v1/admin/analytics/usage",
            web::get().to(analytics::org_usage),
        )
        .route(
            "/v1/admin/analytics/summary",
            web::get().to(analytics::org_summary),
        )
        .route(
            "/v1/users/me/analytics/usage",
            web::get().to(analytics::my_usage),
        )
        .route(
            "/v1/users/me/analytics/summary",
            web::get().to(analytics::my_summary),
        )
        .route("/static", web::get().to(dashboard::redirect_to_slash))
        .route("/static/{path:.*}", web::get().to(dashboard::serve));
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("route"))
}
