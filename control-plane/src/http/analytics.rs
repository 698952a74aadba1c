//! Usage analytics: `/v1/admin/analytics/*` (admins: the organisation, or one user
//! with `user_id`) and `/v1/users/me/analytics/*` (any user: their own).
//!
//! Query parameters: `from`, `to` (`YYYY-MM-DD`, whole UTC days, both inclusive;
//! default the last 30 days), `group_by` (`day`, `model`, `user`, `project`, `team`),
//! `limit` (groups other than days, 1–1000, default 100) and, for admins, `user_id`.
//! An unknown, repeated or bad parameter is a 422 naming it.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::auth::{authorize, presented_key, Require};
use super::error::ApiError;
use super::AppState;
use crate::analytics::{self, DayRange, GroupBy, Summary, Totals, UsageRow};
use crate::error::Error;

/// Whose usage a route reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Audience {
    Organisation,
    Me,
}

/// The decoded query string.
#[derive(Debug, Default)]
struct Params {
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
    limit: Option<String>,
    user_id: Option<String>,
}

impl Params {
    fn decode(query: &str, audience: Audience, usage: bool) -> Result<Self, ApiError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|e| invalid("query", format!("invalid query string: {e}")))?
            .into_inner();
        let mut params = Self::default();
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "from" => &mut params.from,
                "to" => &mut params.to,
                "group_by" if usage => &mut params.group_by,
                "limit" if usage => &mut params.limit,
                "user_id" if audience == Audience::Organisation => &mut params.user_id,
                _ => return Err(invalid(&name, format!("unknown parameter {name:?}"))),
            };
            if slot.replace(value).is_some() {
                return Err(invalid(&name, format!("{name} is given more than once")));
            }
        }
        Ok(params)
    }

    fn range(&self, today: chrono::NaiveDate) -> Result<DayRange, ApiError> {
        Ok(DayRange::parse(
            self.from.as_deref(),
            self.to.as_deref(),
            today,
        )?)
    }

    fn user_id(&self) -> Result<Option<i64>, ApiError> {
        self.user_id
            .as_deref()
            .map(|raw| {
                raw.trim()
                    .parse::<i64>()
                    .map_err(|_| invalid("user_id", format!("expected a user id, got {raw:?}")))
            })
            .transpose()
    }
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::from(Error::invalid(field.to_owned(), message))
}

/// The sums on the wire (one group's, or the range's).
#[derive(Debug, Serialize)]
pub struct TotalsBody {
    requests: i64,
    successful_requests: i64,
    failed_requests: i64,
    estimated_requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    cached_tokens: i64,
    reasoning_tokens: i64,
    failed_tokens: i64,
    estimated_tokens: i64,
    cost_usd: f64,
    unpriced_requests: i64,
}

impl From<Totals> for TotalsBody {
    fn from(t: Totals) -> Self {
        Self {
            requests: t.requests,
            successful_requests: t.successful_requests,
            failed_requests: t.failed_requests,
            estimated_requests: t.estimated_requests,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            total_tokens: t.total_tokens,
            cached_tokens: t.cached_tokens,
            reasoning_tokens: t.reasoning_tokens,
            failed_tokens: t.failed_tokens,
            estimated_tokens: t.estimated_tokens,
            cost_usd: usd(t.cost_nano_usd),
            unpriced_requests: t.unpriced_requests,
        }
    }
}

/// One group's sums on the wire.
#[derive(Debug, Serialize)]
pub struct UsageRowBody {
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(flatten)]
    totals: TotalsBody,
}

impl From<UsageRow> for UsageRowBody {
    fn from(r: UsageRow) -> Self {
        Self {
            key: r.key,
            name: r.label,
            email: r.email,
            totals: r.totals.into(),
        }
    }
}

#[derive(Debug, Serialize)]
struct UsageBody {
    from: String,
    to: String,
    group_by: &'static str,
    rows: Vec<UsageRowBody>,
}

#[derive(Debug, Serialize)]
struct SummaryBody {
    from: String,
    to: String,
    users: i64,
    active_users: i64,
    #[serde(flatten)]
    totals: TotalsBody,
}

impl SummaryBody {
    fn new(range: DayRange, s: Summary) -> Self {
        Self {
            from: range.from.to_string(),
            to: range.to.to_string(),
            users: s.users,
            active_users: s.active_users,
            totals: s.totals.into(),
        }
    }
}

/// Nano-USD as dollars (for display; the exact integer stays in the database).
#[allow(clippy::cast_precision_loss)]
fn usd(nano: i64) -> f64 {
    nano as f64 / 1e9
}

/// `GET /v1/admin/analytics/usage`.
pub async fn org_usage(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    usage(state, req, Audience::Organisation).await
}

/// `GET /v1/users/me/analytics/usage`.
pub async fn my_usage(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    usage(state, req, Audience::Me).await
}

/// `GET /v1/admin/analytics/summary`.
pub async fn org_summary(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    summary(state, req, Audience::Organisation).await
}

/// `GET /v1/users/me/analytics/summary`.
pub async fn my_summary(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    summary(state, req, Audience::Me).await
}

async fn usage(
    state: web::Data<AppState>,
    req: HttpRequest,
    audience: Audience,
) -> Result<HttpResponse, ApiError> {
    let key = presented_key(req.headers());
    let query = req.query_string().to_owned();
    let today = state.clock.now().date();
    let body = state
        .run(move |conn| {
            // Authorize first: a caller without the right learns nothing from a 422.
            let caller = authorize(conn, key.as_deref(), require(audience))?;
            let params = Params::decode(&query, audience, true)?;
            let range = params.range(today)?;
            let group: GroupBy = params.group_by.as_deref().unwrap_or("day").parse()?;
            let limit = analytics::parse_limit(params.limit.as_deref())?;
            let user = match audience {
                Audience::Organisation => params.user_id()?,
                Audience::Me => Some(caller.id),
            };
            let rows = analytics::usage(conn, range, user, group, limit)?;
            Ok(UsageBody {
                from: range.from.to_string(),
                to: range.to.to_string(),
                group_by: group.as_str(),
                rows: rows.into_iter().map(UsageRowBody::from).collect(),
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn summary(
    state: web::Data<AppState>,
    req: HttpRequest,
    audience: Audience,
) -> Result<HttpResponse, ApiError> {
    let key = presented_key(req.headers());
    let query = req.query_string().to_owned();
    let today = state.clock.now().date();
    let body = state
        .run(move |conn| {
            let caller = authorize(conn, key.as_deref(), require(audience))?;
            let params = Params::decode(&query, audience, false)?;
            let range = params.range(today)?;
            let user = match audience {
                Audience::Organisation => params.user_id()?,
                Audience::Me => Some(caller.id),
            };
            Ok(SummaryBody::new(
                range,
                analytics::summary(conn, range, user)?,
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

fn require(audience: Audience) -> Require {
    match audience {
        Audience::Organisation => Require::Admin,
        Audience::Me => Require::User,
    }
}
