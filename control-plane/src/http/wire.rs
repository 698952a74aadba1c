//! Request and response JSON, separate from the domain types and converted with
//! `From`/`TryFrom` (which name the offending field).

use chrono::{DateTime, NaiveDateTime, SecondsFormat};
use serde::{Deserialize, Serialize};

use crate::approvals::QuotaRequest;
use crate::audit::AuditEntry;
use crate::error::Error;
use crate::leases::{KeyCheck, KeyDecision, LeaseDecision, LeaseRequest};
use crate::ledger::{MovementRow, StoredEntry};
use crate::notifications::Notification;
use crate::quota::{PoolShare, Priority, QuotaView};
use crate::teams::{Member, Team};
use crate::transfers::Transfer;
use crate::usage::{IngestOutcome, Privacy, UsageBatch, UsageRecord, UsageReport};
use crate::users::{CreatedUser, UpdateUser, User};

/// An optional request field: absent means "not given", but an explicit `null` is
/// refused (422 naming the field) rather than read as absent.
fn non_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

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
    #[serde(default, deserialize_with = "non_null")]
    pub personal_quota: Option<i64>,
    /// Admin flag, false when absent.
    #[serde(default, deserialize_with = "non_null")]
    pub is_admin: Option<bool>,
}

/// `PUT /v1/admin/users/{id}`: only the fields present change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserBody {
    /// New unique email.
    #[serde(default, deserialize_with = "non_null")]
    pub email: Option<String>,
    /// New display name.
    #[serde(default, deserialize_with = "non_null")]
    pub name: Option<String>,
    /// New tokens per period.
    #[serde(default, deserialize_with = "non_null")]
    pub personal_quota: Option<i64>,
    /// `active`, `on_vacation` or `suspended`.
    #[serde(default, deserialize_with = "non_null")]
    pub status: Option<String>,
    /// New admin flag.
    #[serde(default, deserialize_with = "non_null")]
    pub is_admin: Option<bool>,
    /// Whether critical requests may overdraw.
    #[serde(default, deserialize_with = "non_null")]
    pub overdraft_enabled: Option<bool>,
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
            overdraft_enabled: body.overdraft_enabled,
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
    pub overdraft_enabled: bool,
    pub created_at: String,
    pub updated_at: String,
    pub used_tokens: i64,
    pub held_tokens: i64,
    pub available_quota: i64,
    pub team_pool_available: i64,
    pub overdraft_used: i64,
    pub debt: i64,
}

impl From<(User, QuotaView)> for UserBody {
    fn from((u, b): (User, QuotaView)) -> Self {
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            personal_quota: u.personal_quota,
            status: u.status,
            is_admin: u.is_admin,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
            overdraft_enabled: u.overdraft_enabled,
            used_tokens: b.used_tokens,
            held_tokens: b.held_tokens,
            available_quota: b.available_quota,
            team_pool_available: b.team_pool_available,
            overdraft_used: b.overdraft_used,
            debt: b.debt,
        }
    }
}

/// `GET /v1/users/me/quota`: the guide's four fields first, then the detail.
#[derive(Debug, Serialize)]
pub struct QuotaBody {
    /// Tokens per period.
    pub personal_quota: i64,
    /// Used this period (from every source).
    pub used_tokens: i64,
    /// Personal credit still to spend (including the unused personal part of live
    /// leases).
    pub available_quota: i64,
    /// What the user may draw from their team pools now.
    pub team_pool_available: i64,
    /// Set aside by the user's live leases, not yet used.
    pub held_tokens: i64,
    /// Personal credit a transfer may send now (not held by a lease).
    pub transferable: i64,
    /// Critical overdraft drawn this period.
    pub overdraft_used: i64,
    /// Critical overdraft left this period (0 when disabled).
    pub overdraft_available: i64,
    /// Unpaid debt from usage past a lease.
    pub debt: i64,
    /// Each team pool as the user sees it.
    pub team_pools: Vec<PoolShareBody>,
    /// Start of the current period (RFC 3339).
    pub period_start: String,
    /// Start of the next period; `null` for `QUOTA_PERIOD=never`.
    pub period_end: Option<String>,
}

/// One team pool as a member sees it.
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct PoolShareBody {
    pub team_id: i64,
    pub pool_balance: i64,
    pub pool_size: i64,
    pub active_members: i64,
    pub member_cap: i64,
    pub daily_cap: i64,
    pub drawn_this_period: i64,
    pub drawn_today: i64,
    pub available: i64,
}

impl From<PoolShare> for PoolShareBody {
    fn from(s: PoolShare) -> Self {
        Self {
            team_id: s.team_id,
            pool_balance: s.pool_balance,
            pool_size: s.pool_size,
            active_members: s.active_members,
            member_cap: s.member_cap,
            daily_cap: s.daily_cap,
            drawn_this_period: s.drawn_period,
            drawn_today: s.drawn_today,
            available: s.available,
        }
    }
}

impl From<QuotaView> for QuotaBody {
    fn from(b: QuotaView) -> Self {
        Self {
            personal_quota: b.personal_quota,
            used_tokens: b.used_tokens,
            available_quota: b.available_quota,
            team_pool_available: b.team_pool_available,
            held_tokens: b.held_tokens,
            transferable: b.transferable,
            overdraft_used: b.overdraft_used,
            overdraft_available: b.overdraft_available,
            debt: b.debt,
            team_pools: b.pools.into_iter().map(PoolShareBody::from).collect(),
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
                scope,
            } => Self::Exhausted {
                user_id,
                budget_scope: scope.as_str(),
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

// ---- ledger ------------------------------------------------------------------------

/// A ledger movement with its entries.
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct LedgerMovementBody {
    pub id: i64,
    pub kind: String,
    pub created_at: String,
    pub user_id: Option<i64>,
    pub team_id: Option<i64>,
    pub actor_id: Option<i64>,
    pub reference: Option<String>,
    pub note: Option<String>,
    pub entries: Vec<LedgerEntryBody>,
}

/// One entry.
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct LedgerEntryBody {
    pub account: String,
    pub period_start: String,
    pub amount: i64,
}

impl From<(MovementRow, Vec<StoredEntry>)> for LedgerMovementBody {
    fn from((m, entries): (MovementRow, Vec<StoredEntry>)) -> Self {
        Self {
            id: m.id,
            kind: m.kind,
            created_at: rfc3339(m.created_at),
            user_id: m.user_id,
            team_id: m.team_id,
            actor_id: m.actor_id,
            reference: m.reference,
            note: m.note,
            entries: entries
                .into_iter()
                .map(|e| LedgerEntryBody {
                    account: e.account,
                    period_start: rfc3339(e.period_start),
                    amount: e.amount,
                })
                .collect(),
        }
    }
}

// ---- teams -------------------------------------------------------------------------

/// `POST /v1/admin/teams`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeamBody {
    /// Unique name.
    pub name: String,
    /// Free text.
    #[serde(default, deserialize_with = "non_null")]
    pub description: Option<String>,
    /// Tokens per period; `DEFAULT_TEAM_POOL` when absent.
    #[serde(default, deserialize_with = "non_null")]
    pub common_pool: Option<i64>,
}

/// `PUT /v1/admin/teams/{id}`: only the fields present change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct UpdateTeamBody {
    #[serde(default, deserialize_with = "non_null")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "non_null")]
    pub common_pool: Option<i64>,
}

/// A team with its pool this period and (in detail views) its members.
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct TeamBody {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub common_pool: i64,
    pub created_at: String,
    pub updated_at: String,
    pub pool_balance: i64,
    pub pool_size: i64,
    pub pool_used: i64,
    pub active_members: i64,
    pub member_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberBody>>,
}

/// A team's numbers this period.
#[derive(Debug, Clone, Copy, Default)]
pub struct TeamNumbers {
    /// Left in the pool.
    pub pool_balance: i64,
    /// Allocation plus outstanding vacation credit.
    pub pool_size: i64,
    /// Active members.
    pub active_members: i64,
    /// All members.
    pub member_count: i64,
}

impl TeamBody {
    /// A team with its numbers and optionally its members.
    pub fn new(t: Team, n: TeamNumbers, members: Option<Vec<MemberBody>>) -> Self {
        Self {
            id: t.id,
            name: t.name,
            description: t.description,
            common_pool: t.common_pool,
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
            pool_balance: n.pool_balance,
            pool_size: n.pool_size,
            pool_used: (n.pool_size - n.pool_balance).max(0),
            active_members: n.active_members,
            member_count: n.member_count,
            members,
        }
    }
}

/// A member as listed in a team.
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct MemberBody {
    pub user_id: i64,
    pub email: String,
    pub name: String,
    pub status: String,
    pub is_admin: bool,
    pub joined_at: String,
    pub drawn_this_period: i64,
}

impl From<(Member, User, i64)> for MemberBody {
    fn from((m, u, drawn): (Member, User, i64)) -> Self {
        Self {
            user_id: u.id,
            email: u.email,
            name: u.name,
            status: u.status,
            is_admin: m.is_admin,
            joined_at: rfc3339(m.created_at),
            drawn_this_period: drawn,
        }
    }
}

/// `?is_admin=` of the membership routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipQuery {
    /// Team admin flag (default false).
    #[serde(default)]
    pub is_admin: Option<bool>,
}

// ---- transfers ---------------------------------------------------------------------

/// `POST /v1/users/me/transfer`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    /// Recipient's email.
    pub recipient_email: String,
    /// Tokens, > 0.
    pub amount: i64,
    /// Why.
    pub reason: String,
}

/// A transfer as listed.
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct TransferView {
    pub id: i64,
    pub sender_id: i64,
    pub sender_email: String,
    pub recipient_id: i64,
    pub recipient_email: String,
    pub amount: i64,
    pub reason: String,
    pub status: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub decided_at: Option<String>,
    pub decided_by: Option<i64>,
    pub decision_note: Option<String>,
}

impl From<(Transfer, String, String)> for TransferView {
    fn from((t, sender_email, recipient_email): (Transfer, String, String)) -> Self {
        Self {
            id: t.id,
            sender_id: t.sender_id,
            sender_email,
            recipient_id: t.recipient_id,
            recipient_email,
            amount: t.amount,
            reason: t.reason,
            status: t.status,
            created_at: rfc3339(t.created_at),
            expires_at: t.expires_at.map(rfc3339),
            decided_at: t.decided_at.map(rfc3339),
            decided_by: t.decided_by,
            decision_note: t.decision_note,
        }
    }
}

/// Filters of transfer listings (`from`/`to`: dates or RFC 3339 times).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TransferQuery {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub user_id: Option<i64>,
    #[serde(default)]
    pub min_amount: Option<i64>,
    #[serde(default)]
    pub max_amount: Option<i64>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub limit: Option<i64>,
    /// `json` (default) or `csv`.
    #[serde(default)]
    pub format: Option<String>,
}

/// Body of approve/deny routes (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// A note for the requester.
    #[serde(default, deserialize_with = "non_null")]
    pub note: Option<String>,
}

// ---- quota requests ----------------------------------------------------------------

/// `POST /v1/users/me/quota-requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaRequestBody {
    /// Tokens asked for.
    pub amount: i64,
    /// Why.
    pub reason: String,
}

/// A quota request as listed.
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct QuotaRequestView {
    pub id: i64,
    pub user_id: i64,
    pub amount: i64,
    pub reason: String,
    pub status: String,
    pub created_at: String,
    pub expires_at: String,
    pub decided_at: Option<String>,
    pub decided_by: Option<i64>,
    pub decision_note: Option<String>,
}

impl From<QuotaRequest> for QuotaRequestView {
    fn from(r: QuotaRequest) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            amount: r.amount,
            reason: r.reason,
            status: r.status,
            created_at: rfc3339(r.created_at),
            expires_at: rfc3339(r.expires_at),
            decided_at: r.decided_at.map(rfc3339),
            decided_by: r.decided_by,
            decision_note: r.decision_note,
        }
    }
}

/// Filters of request listings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RequestQuery {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub user_id: Option<i64>,
    #[serde(default)]
    pub limit: Option<i64>,
}

// ---- notifications and audit -------------------------------------------------------

/// A notification.
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct NotificationView {
    pub id: i64,
    pub kind: String,
    pub message: String,
    pub data: serde_json::Value,
    pub created_at: String,
    pub read: bool,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> Self {
        Self {
            id: n.id,
            kind: n.kind,
            message: n.message,
            data: serde_json::from_str(&n.data).unwrap_or(serde_json::Value::Null),
            created_at: rfc3339(n.created_at),
            read: n.read_at.is_some(),
        }
    }
}

/// `?unread=&limit=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct NotificationQuery {
    #[serde(default)]
    pub unread: Option<bool>,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// `POST /v1/users/me/notifications/read`: these ids, or all when absent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkReadBody {
    /// Ids to mark read.
    #[serde(default, deserialize_with = "non_null")]
    pub ids: Option<Vec<i64>>,
}

/// An audit entry.
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct AuditView {
    pub id: i64,
    pub actor_id: Option<i64>,
    pub action: String,
    pub target_kind: String,
    pub target_id: Option<String>,
    pub details: serde_json::Value,
    pub created_at: String,
}

impl From<AuditEntry> for AuditView {
    fn from(a: AuditEntry) -> Self {
        Self {
            id: a.id,
            actor_id: a.actor_id,
            action: a.action,
            target_kind: a.target_kind,
            target_id: a.target_id,
            details: serde_json::from_str(&a.details).unwrap_or(serde_json::Value::Null),
            created_at: rfc3339(a.created_at),
        }
    }
}

/// Filters of the audit log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AuditQuery {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub actor_id: Option<i64>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub limit: Option<i64>,
}
