//! Quota requests: `POST/GET /v1/users/me/quota-requests`, the approvers' inbox
//! `GET /v1/admin/quota-requests` and its approve/deny routes.

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::Require;
use super::error::ApiError;
use super::json::decode;
use super::query::{decode_query, limit, path_id};
use super::transfers::{may_decide, members_of_administered};
use super::wire::{DecisionBody, QuotaRequestBody, QuotaRequestView, RequestQuery};
use super::AppState;
use crate::approvals::{self, RequestFilter};
use crate::teams;

fn status_filter(raw: Option<String>) -> Result<Option<String>, ApiError> {
    match raw.as_deref() {
        None => Ok(None),
        Some("pending" | "approved" | "denied" | "expired") => Ok(raw),
        Some(_) => Err(ApiError::Unprocessable {
            message: "status: expected pending, approved, denied or expired".into(),
            field: Some("status".into()),
            code: "invalid_query",
        }),
    }
}

/// `POST /v1/users/me/quota-requests` with `{"amount", "reason"}` → 201.
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rules = state.rules();
    let view = state
        .as_caller(&req, Require::User, move |conn, user| {
            let body: QuotaRequestBody = decode(&body)?;
            Ok(QuotaRequestView::from(approvals::create(
                conn,
                now,
                &user,
                body.amount,
                &body.reason,
                &rules,
            )?))
        })
        .await?;
    Ok(HttpResponse::Created().json(view))
}

/// `GET /v1/users/me/quota-requests?status=&limit=`.
pub async fn mine(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let raw_query = req.query_string().to_owned();
    let now = state.clock.now();
    let list = state
        .as_caller(&req, Require::User, move |conn, user| {
            let query: RequestQuery = decode_query(&raw_query)?;
            let filter = RequestFilter {
                user_id: Some(user.id),
                among: None,
                status: status_filter(query.status)?,
                limit: limit(query.limit, 100, 1000)?,
            };
            Ok(approvals::list(conn, now, &filter)?
                .into_iter()
                .map(QuotaRequestView::from)
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// `GET /v1/admin/quota-requests?status=pending&user_id=&limit=`: every request for
/// admins, their members' for team admins.
pub async fn admin_list(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let raw_query = req.query_string().to_owned();
    let now = state.clock.now();
    let list = state
        .as_caller(&req, Require::User, move |conn, caller| {
            let among = if caller.is_admin {
                None
            } else {
                Some(members_of_administered(conn, &caller)?)
            };
            let query: RequestQuery = decode_query(&raw_query)?;
            let filter = RequestFilter {
                user_id: query.user_id,
                among,
                status: status_filter(query.status)?,
                limit: limit(query.limit, 100, 1000)?,
            };
            Ok(approvals::list(conn, now, &filter)?
                .into_iter()
                .map(QuotaRequestView::from)
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// `POST /v1/admin/quota-requests/{id}/approve` with optional `{"note"}`.
pub async fn approve(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    decide(state, req, path.into_inner(), body, true).await
}

/// `POST /v1/admin/quota-requests/{id}/deny` with optional `{"note"}`.
pub async fn deny(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    decide(state, req, path.into_inner(), body, false).await
}

async fn decide(
    state: web::Data<AppState>,
    req: HttpRequest,
    raw: String,
    body: web::Bytes,
    approve: bool,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rules = state.rules();
    let view = state
        .as_caller(&req, Require::User, move |conn, caller| {
            may_decide(conn, &caller)?;
            let id = path_id(&raw, "quota request")?;
            let requester = approvals::get(conn, id)?.user_id;
            if !caller.is_admin && !teams::administers_member(conn, caller.id, requester)? {
                return Err(ApiError::NotAllowed(
                    "only an admin or a team admin of the requester may decide this request",
                ));
            }
            let body: DecisionBody = if body.is_empty() {
                DecisionBody::default()
            } else {
                decode(&body)?
            };
            Ok(QuotaRequestView::from(approvals::decide(
                conn, now, id, &caller, approve, body.note, &rules,
            )?))
        })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}
