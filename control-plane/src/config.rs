//! Typed configuration, built from the environment in exactly one place.
//!
//! Every variable is parsed up front; every bad value is reported by name before the
//! process exits, so an operator fixes them all in one go. Secrets are wrapped in
//! [`Secret`], whose `Debug` never prints the value.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::pricing::PriceCatalog;
use crate::quota::QuotaPeriod;

/// Minimum length of `ALFRED_FILTER_TOKEN`; shorter secrets are guessable.
pub const MIN_FILTER_TOKEN_LEN: usize = 32;

/// Minimum length of `SESSION_SECRET`: the HMAC key of dashboard session tokens.
pub const MIN_SESSION_SECRET_LEN: usize = 32;

/// A secret value (token, webhook URL). `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call sites are the only places it is ever read.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where the database lives, decoded from `DATABASE_URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite database file (path as given, relative to the working directory).
    SqliteFile(String),
    /// A private in-memory SQLite database (`sqlite::memory:`), for trying things out.
    SqliteMemory,
    /// A PostgreSQL connection string, passed to libpq unchanged.
    Postgres(Secret),
}

impl DatabaseUrl {
    /// Parses the accepted spellings:
    /// `sqlite://path`, `sqlite:///relative/path` (SQLAlchemy style, as in the user
    /// guide: `sqlite:///./alfred.db` is `./alfred.db`), `sqlite:////absolute/path`,
    /// `sqlite::memory:`, `postgres://…` and `postgresql://…`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(Self::Postgres(Secret::new(raw)));
        }
        let Some(rest) = raw.strip_prefix("sqlite:") else {
            return Err("expected sqlite://PATH, sqlite::memory: or postgres://…".to_owned());
        };
        if rest == ":memory:" || rest == "//:memory:" {
            return Ok(Self::SqliteMemory);
        }
        let Some(rest) = rest.strip_prefix("//") else {
            return Err("expected sqlite://PATH, sqlite::memory: or postgres://…".to_owned());
        };
        // `sqlite:///x` means the relative path `x` (three slashes), `sqlite:////x` the
        // absolute path `/x` — the convention of the prototype's SQLAlchemy URLs.
        let path = rest.strip_prefix('/').unwrap_or(rest);
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() {
            return Err("the SQLite path is empty".to_owned());
        }
        Ok(Self::SqliteFile(path.to_owned()))
    }

    /// A description safe to log (no password).
    pub fn redacted(&self) -> String {
        match self {
            Self::SqliteFile(path) => format!("sqlite file {path}"),
            Self::SqliteMemory => "sqlite in-memory".to_owned(),
            Self::Postgres(_) => "postgresql".to_owned(),
        }
    }
}

/// The control plane's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// `DATABASE_URL` (default `sqlite://./alfred.db`).
    pub database_url: DatabaseUrl,
    /// `DATABASE_POOL_SIZE` (optional, 1–1000): connections per process.
    pub database_pool_size: Option<u32>,
    /// `ALFRED_BIND` (default `0.0.0.0:8081`).
    pub bind: SocketAddr,
    /// `ALFRED_FILTER_TOKEN`: the shared secret the Envoy filter presents on
    /// `/internal/v1/*`. Required by `serve`, at least 32 characters.
    pub filter_token: Option<Secret>,
    /// `LEASE_TTL_SECONDS` (default 60).
    pub lease_ttl: Duration,
    /// `QUOTA_PERIOD`: monthly (default) | weekly | daily | never.
    pub quota_period: QuotaPeriod,
    /// `DEFAULT_PERSONAL_QUOTA` (default 1000 tokens).
    pub default_personal_quota: i64,
    /// `DEFAULT_TEAM_POOL` (default 10000 tokens).
    pub default_team_pool: i64,
    /// `VACATION_SHARE_PERCENTAGE` (default 10, 0–100).
    pub vacation_share_percentage: u8,
    /// `CRITICAL_OVERDRAFT_LIMIT` (default 5000 tokens).
    pub critical_overdraft_limit: i64,
    /// `IDLE_DAYS` (default 14).
    pub idle_days: u32,
    /// `TRANSFER_APPROVAL_THRESHOLD` (optional; unset = transfers never wait).
    pub transfer_approval_threshold: Option<i64>,
    /// `APPROVAL_TTL_DAYS` (default 7, 1–365): pending transfers and quota requests
    /// expire after this many days.
    pub approval_ttl_days: u32,
    /// `ENVIRONMENT` (default `production`).
    pub environment: String,
    /// `DEBUG` (default false).
    pub debug: bool,
    /// `NOTIFICATIONS_ENABLED` (default true).
    pub notifications_enabled: bool,
    /// `SLACK_WEBHOOK_URL` (optional, secret).
    pub slack_webhook_url: Option<Secret>,
    /// `PRICING_FILE` (optional): a LiteLLM `model_prices_and_context_window.json`
    /// whose prices override the built-in list.
    pub pricing_file: Option<PathBuf>,
    /// `SESSION_SECRET` (optional, ≥ 32 characters): signs dashboard session tokens.
    /// Unset: a random per-process secret (sessions end with the process and are not
    /// shared between replicas).
    pub session_secret: Option<Secret>,
    /// `SESSION_TTL_SECONDS` (default 3600, 60–86400): lifetime of a dashboard session.
    pub session_ttl: Duration,
    /// `SESSION_COOKIE_SECURE` (default false): mark the session cookie `Secure`, for
    /// deployments served over HTTPS only (a `Secure` cookie is never sent over plain
    /// `http://localhost`).
    pub session_cookie_secure: bool,
    /// `DASHBOARD_DIR` (default `dashboard/dist`, relative to the working directory):
    /// the built dashboard served at `/static/`.
    pub dashboard_dir: PathBuf,
}

/// Every bad variable found, each with the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {}", .problems.iter().map(|(var, why)| format!("{var}: {why}")).collect::<Vec<_>>().join("; "))]
pub struct ConfigError {
    /// `(variable, reason)` pairs, in the order checked.
    pub problems: Vec<(&'static str, String)>,
}

impl Config {
    /// Reads the process environment (after `.env`, which `main` loads).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any variable source (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Reader {
            lookup: &lookup,
            problems: Vec::new(),
        };

        let database_url = env.parse(
            "DATABASE_URL",
            DatabaseUrl::SqliteFile("./alfred.db".into()),
            DatabaseUrl::parse,
        );
        let database_pool_size = env.optional("DATABASE_POOL_SIZE", |raw| {
            int_in_range(raw, 1, 1000).map(|v| u32::try_from(v).unwrap_or(1000))
        });
        let bind = env.parse(
            "ALFRED_BIND",
            SocketAddr::from(([0, 0, 0, 0], 8081)),
            |raw| {
                raw.parse::<SocketAddr>()
                    .map_err(|_| "expected HOST:PORT, e.g. 0.0.0.0:8081".to_owned())
            },
        );
        let filter_token = env.optional("ALFRED_FILTER_TOKEN", |raw| {
            if raw.chars().count() < MIN_FILTER_TOKEN_LEN {
                Err(format!(
                    "must be at least {MIN_FILTER_TOKEN_LEN} characters"
                ))
            } else {
                Ok(Secret::new(raw))
            }
        });
        let lease_ttl_seconds = env.parse("LEASE_TTL_SECONDS", 60_u64, |raw| {
            int_in_range(raw, 1, 86_400)
        });
        let quota_period = env.parse("QUOTA_PERIOD", QuotaPeriod::Monthly, |raw| raw.parse());
        let default_personal_quota = env.parse("DEFAULT_PERSONAL_QUOTA", 1000_i64, non_negative);
        let default_team_pool = env.parse("DEFAULT_TEAM_POOL", 10_000_i64, non_negative);
        let vacation_share_percentage = env.parse("VACATION_SHARE_PERCENTAGE", 10_u8, |raw| {
            int_in_range(raw, 0, 100).map(|v| u8::try_from(v).unwrap_or(100))
        });
        let critical_overdraft_limit = env.parse("CRITICAL_OVERDRAFT_LIMIT", 5000_i64, |raw| {
            non_negative(raw)
        });
        let idle_days = env.parse("IDLE_DAYS", 14_u32, |raw| {
            int_in_range(raw, 1, 3650).map(|v| u32::try_from(v).unwrap_or(3650))
        });
        let transfer_approval_threshold = env.optional("TRANSFER_APPROVAL_THRESHOLD", non_negative);
        let approval_ttl_days = env.parse("APPROVAL_TTL_DAYS", 7_u32, |raw| {
            int_in_range(raw, 1, 365).map(|v| u32::try_from(v).unwrap_or(7))
        });
        let environment = env.parse("ENVIRONMENT", "production".to_owned(), |raw| {
            if raw.trim().is_empty() {
                Err("must not be empty".to_owned())
            } else {
                Ok(raw.trim().to_owned())
            }
        });
        let debug = env.parse("DEBUG", false, parse_bool);
        let notifications_enabled = env.parse("NOTIFICATIONS_ENABLED", true, parse_bool);
        let slack_webhook_url = env.optional("SLACK_WEBHOOK_URL", |raw| {
            if raw.starts_with("https://") || raw.starts_with("http://") {
                Ok(Secret::new(raw))
            } else {
                Err("expected an http(s):// URL".to_owned())
            }
        });

        let pricing_file = env.optional("PRICING_FILE", |raw| Ok(PathBuf::from(raw)));
        let session_secret = env.optional("SESSION_SECRET", |raw| {
            if raw.chars().count() < MIN_SESSION_SECRET_LEN {
                Err(format!(
                    "must be at least {MIN_SESSION_SECRET_LEN} characters"
                ))
            } else {
                Ok(Secret::new(raw))
            }
        });
        let session_ttl_seconds = env.parse("SESSION_TTL_SECONDS", 3600_u64, |raw| {
            int_in_range(raw, 60, 86_400)
        });
        let session_cookie_secure = env.parse("SESSION_COOKIE_SECURE", false, parse_bool);
        let dashboard_dir = env.parse("DASHBOARD_DIR", PathBuf::from("dashboard/dist"), |raw| {
            Ok(PathBuf::from(raw))
        });

        if !env.problems.is_empty() {
            return Err(ConfigError {
                problems: env.problems,
            });
        }
        Ok(Self {
            database_url,
            database_pool_size,
            bind,
            filter_token,
            lease_ttl: Duration::from_secs(lease_ttl_seconds),
            quota_period,
            default_personal_quota,
            default_team_pool,
            vacation_share_percentage,
            critical_overdraft_limit,
            idle_days,
            transfer_approval_threshold,
            approval_ttl_days,
            environment,
            debug,
            notifications_enabled,
            slack_webhook_url,
            pricing_file,
            session_secret,
            session_ttl: Duration::from_secs(session_ttl_seconds),
            session_cookie_secure,
            dashboard_dir,
        })
    }

    /// The price catalog: built-in prices, overridden by `PRICING_FILE` when set. An
    /// unreadable or malformed file is a configuration error naming the variable.
    pub fn price_catalog(&self) -> Result<PriceCatalog, ConfigError> {
        PriceCatalog::load(self.pricing_file.as_deref()).map_err(|e| ConfigError {
            problems: vec![("PRICING_FILE", e.to_string())],
        })
    }

    /// The filter token, or the error `serve` reports when it is missing.
    pub fn require_filter_token(&self) -> Result<&Secret, ConfigError> {
        self.filter_token.as_ref().ok_or_else(|| ConfigError {
            problems: vec![(
                "ALFRED_FILTER_TOKEN",
                format!(
                    "is required to serve (the shared secret the Envoy filter presents; \
                     at least {MIN_FILTER_TOKEN_LEN} characters)"
                ),
            )],
        })
    }
}

/// Collects problems while reading variables, so all of them are reported at once.
struct Reader<'a, F: Fn(&str) -> Option<String>> {
    lookup: &'a F,
    problems: Vec<(&'static str, String)>,
}

impl<F: Fn(&str) -> Option<String>> Reader<'_, F> {
    fn parse<T>(
        &mut self,
        name: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        self.optional(name, parse).unwrap_or(default)
    }

    fn optional<T>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = (self.lookup)(name)?;
        if raw.trim().is_empty() {
            return None;
        }
        match parse(raw.trim()) {
            Ok(value) => Some(value),
            Err(why) => {
                self.problems.push((name, why));
                None
            }
        }
    }
}

fn non_negative(raw: &str) -> Result<i64, String> {
    match raw.parse::<i64>() {
        Ok(v) if v >= 0 => Ok(v),
        _ => Err(format!(
            "expected a whole number of tokens ≥ 0, got {raw:?}"
        )),
    }
}

fn int_in_range(raw: &str, min: u64, max: u64) -> Result<u64, String> {
    match raw.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "expected a whole number from {min} to {max}, got {raw:?}"
        )),
    }
}

fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {raw:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_user_guide() {
        let cfg = config(&[]).unwrap();
        assert_eq!(
            cfg.database_url,
            DatabaseUrl::SqliteFile("./alfred.db".into())
        );
        assert_eq!(cfg.bind.to_string(), "0.0.0.0:8081");
        assert_eq!(cfg.lease_ttl, Duration::from_secs(60));
        assert_eq!(cfg.quota_period, QuotaPeriod::Monthly);
        assert_eq!(cfg.default_personal_quota, 1000);
        assert_eq!(cfg.default_team_pool, 10_000);
        assert_eq!(cfg.vacation_share_percentage, 10);
        assert_eq!(cfg.critical_overdraft_limit, 5000);
        assert_eq!(cfg.idle_days, 14);
        assert_eq!(cfg.transfer_approval_threshold, None);
        assert_eq!(cfg.environment, "production");
        assert!(!cfg.debug);
        assert!(cfg.notifications_enabled);
        assert!(cfg.filter_token.is_none());
        assert!(cfg.require_filter_token().is_err());
        assert_eq!(cfg.database_pool_size, None);
        assert_eq!(cfg.pricing_file, None);
        assert_eq!(cfg.price_catalog().unwrap(), PriceCatalog::builtin());
    }

    #[test]
    fn session_and_dashboard_variables() {
        let cfg = config(&[]).unwrap();
        assert!(cfg.session_secret.is_none());
        assert_eq!(cfg.session_ttl, Duration::from_secs(3600));
        assert!(!cfg.session_cookie_secure);
        assert_eq!(cfg.dashboard_dir, PathBuf::from("dashboard/dist"));

        let secret = "k".repeat(32);
        let cfg = config(&[
            ("SESSION_SECRET", &secret),
            ("SESSION_TTL_SECONDS", "900"),
            ("SESSION_COOKIE_SECURE", "true"),
            ("DASHBOARD_DIR", "/srv/alfred/dashboard"),
        ])
        .unwrap();
        assert_eq!(cfg.session_secret.unwrap().expose(), secret);
        assert_eq!(cfg.session_ttl, Duration::from_secs(900));
        assert!(cfg.session_cookie_secure);
        assert_eq!(cfg.dashboard_dir, PathBuf::from("/srv/alfred/dashboard"));

        let err = config(&[
            ("SESSION_SECRET", "too-short"),
            ("SESSION_TTL_SECONDS", "5"),
            ("SESSION_COOKIE_SECURE", "sometimes"),
        ])
        .unwrap_err();
        let names: Vec<_> = err.problems.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "SESSION_SECRET",
                "SESSION_TTL_SECONDS",
                "SESSION_COOKIE_SECURE"
            ]
        );
        assert!(!err.to_string().contains("too-short"));
    }

    #[test]
    fn pricing_file_problems_name_the_variable() {
        let cfg = config(&[
            ("PRICING_FILE", "/nonexistent/prices.json"),
            ("DATABASE_POOL_SIZE", "32"),
        ])
        .unwrap();
        assert_eq!(cfg.database_pool_size, Some(32));
        let err = cfg.price_catalog().unwrap_err();
        assert_eq!(err.problems[0].0, "PRICING_FILE");
    }

    #[test]
    fn every_bad_variable_is_named() {
        let err = config(&[
            ("DEFAULT_PERSONAL_QUOTA", "-5"),
            ("QUOTA_PERIOD", "fortnightly"),
            ("DEBUG", "maybe"),
            ("ALFRED_FILTER_TOKEN", "short"),
            ("DATABASE_URL", "mysql://x"),
            ("LEASE_TTL_SECONDS", "0"),
            ("DATABASE_POOL_SIZE", "0"),
        ])
        .unwrap_err();
        let names: Vec<_> = err.problems.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "DATABASE_URL",
                "DATABASE_POOL_SIZE",
                "ALFRED_FILTER_TOKEN",
                "LEASE_TTL_SECONDS",
                "QUOTA_PERIOD",
                "DEFAULT_PERSONAL_QUOTA",
                "DEBUG"
            ]
        );
        // The secret value itself never appears in the message.
        assert!(!err.to_string().contains("short\""));
    }

    #[test]
    fn database_urls() {
        let p = |s| DatabaseUrl::parse(s).unwrap();
        assert_eq!(
            p("sqlite://./alfred.db"),
            DatabaseUrl::SqliteFile("./alfred.db".into())
        );
        assert_eq!(
            p("sqlite:///./alfred.db"),
            DatabaseUrl::SqliteFile("./alfred.db".into())
        );
        assert_eq!(
            p("sqlite://data/a.db"),
            DatabaseUrl::SqliteFile("data/a.db".into())
        );
        assert_eq!(
            p("sqlite:////var/lib/a.db"),
            DatabaseUrl::SqliteFile("/var/lib/a.db".into())
        );
        assert_eq!(p("sqlite::memory:"), DatabaseUrl::SqliteMemory);
        assert!(matches!(p("postgres://u:p@h/db"), DatabaseUrl::Postgres(_)));
        assert!(matches!(
            p("postgresql://u:p@h/db"),
            DatabaseUrl::Postgres(_)
        ));
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        // The password never reaches logs.
        assert_eq!(p("postgres://u:hunter2@h/db").redacted(), "postgresql");
        assert!(!format!("{:?}", p("postgres://u:hunter2@h/db")).contains("hunter2"));
    }

    #[test]
    fn filter_token_length_is_checked() {
        let token = "x".repeat(32);
        let cfg = config(&[("ALFRED_FILTER_TOKEN", &token)]).unwrap();
        assert_eq!(cfg.require_filter_token().unwrap().expose(), token);
        assert!(config(&[("ALFRED_FILTER_TOKEN", &"x".repeat(31))]).is_err());
    }
}
