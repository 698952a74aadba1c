//! Request and response JSON, separate from the domain types and converted with
//! `From`/`TryFrom` (which name the offending field).

use chrono::{DateTime, NaiveDateTime, SecondsFormat};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::leases::{KeyCheck, KeyDecision, LeaseDecision, LeaseRequest};
use crate::quota::{Balance, Priority};
use crate::usage::{IngestOutcome, Privacy, UsageBatch, UsageRecord, UsageReport};
use crate::users::{CreatedUser, UpdateUser, User};

/// RFC 3339 in UTC with a `Z`, e.g. `2026-11-30T00:00:00Z`.
pub fn rfc3339(at: NaiveDateTime) -> String {
    at.and_utc().to_rfc3339_opts(SecondsFormat::Secs, true)
}

// ---- users -------------------------------------------------------------------------

/// `POST /v1/admin/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    /// Unique email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Tokens per period; `DEFAULT_PERSONAL_QUOTA` when absent.
    #[serde(default)]
    pub personal_quota: Option<i64>,
    /// Admin flag, false when absent.
    #[serde(default)]
    pub is_admin: Option<bool>,
}

/// `PUT /v1/admin/users/{id}`: only the fields present change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserBody {
    /// New unique email.
    #[serde(default)]
    pub email: Option<String>,
    /// New display name.
    #[serde(default)]
    pub name: Option<String>,
    /// New tokens per period.
    #[serde(default)]
    pub personal_quota: Option<i64>,
    /// `active`, `on_vacation` or `suspended`.
    #[serde(default)]
    pub status: Option<String>,
    /// New admin flag.
    #[serde(default)]
    pub is_admin: Option<bool>,
}

impl TryFrom<UpdateUserBody> for UpdateUser {
    type Error = Error;

    fn try_from(body: UpdateUserBody) -> Result<Self, Error> {
        let status = match body.status.as_deref() {
            None => None,
            Some(raw) => Some(
                raw.parse()
                    .map_err(|why: String| Error::invalid("status", why))?,
            ),
        };
        Ok(Self {
            email: body.email,
            name: body.name,
            personal_quota: body.personal_quota,
            status,
            is_admin: body.is_admin,
        })
    }
}

/// Answer to `POST /v1/admin/users` (and `…/rotate-key`): the user and, this once,
/// the key.
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct CreatedUserBody {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub personal_quota: i64,
    pub status: String,
    pub is_admin: bool,
    pub created_at: String,
    pub api_key: String,
}

impl From<CreatedUser> for CreatedUserBody {
    fn from(created: CreatedUser) -> Self {
        let u = created.user;
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            personal_quota: u.personal_quota,
            status: u.status,
            is_admin: u.is_admin,
            created_at: rfc3339(u.created_at),
            api_key: created.api_key,
        }
    }
}

/// A user as admins see them, with this period's numbers.
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct UserBody {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub personal_quota: i64,
    pub status: String,
    pub is_admin: bool,
    pub created_at: String,
    pub updated_at: String,
    pub used_tokens: i64,
    pub held_tokens: i64,
    pub available_quota: i64,
}

impl From<(User, Balance)> for UserBody {
    fn from((u, b): (User, Balance)) -> Self {
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            personal_quota: u.personal_quota,
            status: u.status,
            is_admin: u.is_admin,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
            used_tokens: b.used_tokens,
            held_tokens: b.held_tokens,
            available_quota: b.available_quota,
        }
    }
}

/// `GET /v1/users/me/quota`.
#[derive(Debug, Serialize)]
pub struct QuotaBody {
    /// Tokens per period.
    pub personal_quota: i64,
    /// Used this period.
    pub used_tokens: i64,
    /// `max(personal_quota − used_tokens, 0)`.
    pub available_quota: i64,
    /// Always 0 until teams exist.
    pub team_pool_available: i64,
    /// Set aside by the user's unexpired leases, not yet used.
    pub held_tokens: i64,
    /// Start of the current period (RFC 3339).
    pub period_start: String,
    /// Start of the next period; `null` for `QUOTA_PERIOD=never`.
    pub period_end: Option<String>,
}

impl From<Balance> for QuotaBody {
    fn from(b: Balance) -> Self {
        Self {
            personal_quota: b.personal_quota,
            used_tokens: b.used_tokens,
            available_quota: b.available_quota,
            team_pool_available: 0,
            held_tokens: b.held_tokens,
            period_start: rfc3339(b.period.start),
            period_end: b.period.end.map(rfc3339),
        }
    }
}

// ---- leases ------------------------------------------------------------------------

/// `POST /internal/v1/leases`. Unknown fields are ignored so the filter may add some.
#[derive(Debug, Deserialize)]
pub struct LeaseRequestBody {
    /// SHA-256 hex of the client key.
    pub key_hash: String,
    /// The asking proxy.
    pub proxy_id: String,
    /// Tokens wanted.
    pub requested_tokens: i64,
    /// `low|normal|high|critical`, default `normal`.
    #[serde(default)]
    pub priority: Option<String>,
}

impl TryFrom<LeaseRequestBody> for LeaseRequest {
    type Error = Error;

    fn try_from(body: LeaseRequestBody) -> Result<Self, Error> {
        let priority = match body.priority.as_deref() {
            None => Priority::Normal,
            Some(raw) => raw
                .parse()
                .map_err(|why: String| Error::invalid("priority", why))?,
        };
        Ok(Self {
            key_hash: body.key_hash,
            proxy_id: body.proxy_id,
            requested_tokens: body.requested_tokens,
            priority,
        })
    }
}

/// The decision, tagged by `decision`.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "decision", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum LeaseDecisionBody {
    Granted {
        lease_id: String,
        user_id: i64,
        granted_tokens: i64,
        expires_in_ms: i64,
        quota_remaining: i64,
        period_reset_s: i64,
    },
    InvalidKey,
    Suspended {
        user_id: i64,
    },
    Exhausted {
        user_id: i64,
        budget_scope: &'static str,
        quota_remaining: i64,
        period_reset_s: i64,
    },
}

impl From<LeaseDecision> for LeaseDecisionBody {
    fn from(d: LeaseDecision) -> Self {
        match d {
            LeaseDecision::Granted {
                lease_id,
                user_id,
                granted_tokens,
                expires_in_ms,
                quota_remaining,
                period_reset_s,
            } => Self::Granted {
                lease_id,
                user_id,
                granted_tokens,
                expires_in_ms,
                quota_remaining,
                period_reset_s,
            },
            LeaseDecision::InvalidKey => Self::InvalidKey,
            LeaseDecision::Suspended { user_id } => Self::Suspended { user_id },
            LeaseDecision::Exhausted {
                user_id,
                quota_remaining,
                period_reset_s,
            } => Self::Exhausted {
                user_id,
                budget_scope: "personal",
                quota_remaining,
                period_reset_s,
            },
        }
    }
}

// ---- key sync ----------------------------------------------------------------------

/// `POST /internal/v1/sync`. Unknown fields are ignored so the filter may add some.
#[derive(Debug, Deserialize)]
pub struct SyncRequestBody {
    /// The asking proxy.
    pub proxy_id: String,
    /// SHA-256 hex of each key to re-check (at most 500).
    pub key_hashes: Vec<String>,
}

/// `{"keys":[…]}`, one entry per requested hash, in order.
#[derive(Debug, Serialize)]
pub struct SyncAnswerBody {
    /// The verdicts.
    pub keys: Vec<KeyStatusBody>,
}

/// One key's verdict: `active`, `invalid_key`, `suspended` or `exhausted` (the last
/// with `budget_scope` and `period_reset_s`).
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct KeyStatusBody {
    pub key_hash: String,
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_scope: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_reset_s: Option<i64>,
}

impl From<KeyCheck> for KeyStatusBody {
    fn from(check: KeyCheck) -> Self {
        let (decision, budget_scope, period_reset_s) = match check.decision {
            KeyDecision::Active => ("active", None, None),
            KeyDecision::InvalidKey => ("invalid_key", None, None),
            KeyDecision::Suspended => ("suspended", None, None),
            KeyDecision::Exhausted { period_reset_s } => {
                ("exhausted", Some("personal"), Some(period_reset_s))
            }
        };
        Self {
            key_hash: check.key_hash,
            decision,
            budget_scope,
            period_reset_s,
        }
    }
}

impl From<Vec<KeyCheck>> for SyncAnswerBody {
    fn from(checks: Vec<KeyCheck>) -> Self {
        Self {
            keys: checks.into_iter().map(KeyStatusBody::from).collect(),
        }
    }
}

// ---- usage -------------------------------------------------------------------------

/// `POST /internal/v1/usage`.
#[derive(Debug, Deserialize)]
pub struct UsageBody {
    /// The reporting proxy.
    pub proxy_id: String,
    /// The records.
    pub records: Vec<UsageRecordBody>,
}

fn default_status() -> i32 {
    200
}

/// One record as the filter sends it.
#[derive(Debug, Deserialize)]
#[allow(missing_docs)]
pub struct UsageRecordBody {
    pub request_id: String,
    #[serde(default)]
    pub lease_id: Option<String>,
    pub user_id: i64,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub input_tokens: i64,
    #[serde(default)]
    pub output_tokens: i64,
    pub total_tokens: i64,
    #[serde(default)]
    pub cached_tokens: i64,
    #[serde(default)]
    pub reasoning_tokens: i64,
    #[serde(default = "default_status")]
    pub status: i32,
    #[serde(default)]
    pub estimated: bool,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub privacy: Option<String>,
    #[serde(default)]
    pub ts_ms: Option<i64>,
}

impl TryFrom<UsageBody> for UsageBatch {
    type Error = Error;

    fn try_from(body: UsageBody) -> Result<Self, Error> {
        let records = body
            .records
            .into_iter()
            .enumerate()
            .map(|(index, r)| {
                let field = |name: &str| format!("records[{index}].{name}");
                let priority = match r.priority.as_deref() {
                    None => Priority::Normal,
                    Some(raw) => raw
                        .parse()
                        .map_err(|why: String| Error::invalid(field("priority"), why))?,
                };
                let privacy = match r.privacy.as_deref() {
                    None => Privacy::Standard,
                    Some(raw) => raw
                        .parse()
                        .map_err(|why: String| Error::invalid(field("privacy"), why))?,
                };
                let occurred_at = match r.ts_ms {
                    None => None,
                    Some(ms) => Some(
                        DateTime::from_timestamp_millis(ms)
                            .ok_or_else(|| Error::invalid(field("ts_ms"), "out of range"))?
                            .naive_utc(),
                    ),
                };
                Ok(UsageReport {
                    request_id: r.request_id,
                    lease_id: r.lease_id,
                    user_id: r.user_id,
                    provider: r.provider,
                    model: r.model,
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                    total_tokens: r.total_tokens,
                    cached_tokens: r.cached_tokens,
                    reasoning_tokens: r.reasoning_tokens,
                    status: r.status,
                    estimated: r.estimated,
                    priority,
                    project_id: r.project_id,
                    privacy,
                    occurred_at,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self {
            proxy_id: body.proxy_id,
            records,
        })
    }
}

/// `{"applied","duplicates"}`.
#[derive(Debug, Serialize)]
pub struct IngestBody {
    /// Records charged now.
    pub applied: usize,
    /// Records seen before, charged nothing.
    pub duplicates: usize,
}

impl From<IngestOutcome> for IngestBody {
    fn from(o: IngestOutcome) -> Self {
        Self {
            applied: o.applied,
            duplicates: o.duplicates,
        }
    }
}

/// `GET /v1/admin/users/{id}/usage` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Most records returned (1 to 1000, default 100).
    pub limit: Option<i64>,
}

/// One usage record as the admin API shows it. Metadata only: Alfred never stores
/// prompt or response content.
#[derive(Debug, Serialize)]
pub struct UsageRecordView {
    pub request_id: String,
    pub provider: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    pub status: i32,
    pub estimated: bool,
    pub priority: String,
    pub project_id: Option<String>,
    pub privacy: String,
    pub occurred_at: String,
    /// Cost in USD; `null` when the model has no price (`unpriced`), never 0 for it.
    pub cost_usd: Option<f64>,
    pub unpriced: bool,
}

impl From<UsageRecord> for UsageRecordView {
    fn from(r: UsageRecord) -> Self {
        Self {
            request_id: r.request_id,
            provider: r.provider,
            model: r.model,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            total_tokens: r.total_tokens,
            cached_tokens: r.cached_tokens,
            reasoning_tokens: r.reasoning_tokens,
            status: r.status,
            estimated: r.estimated,
            priority: r.priority,
            project_id: r.project_id,
            privacy: r.privacy,
            occurred_at: rfc3339(r.occurred_at),
            cost_usd: (!r.unpriced).then(|| r.cost_nano_usd as f64 / 1e9),
            unpriced: r.unpriced,
        }
    }
}
