//! `/v1/users/me*`: what a user sees and does about themselves.

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::Require;
use super::error::ApiError;
use super::json::decode;
use super::query::{decode_query, limit};
use super::wire::{rfc3339, MarkReadBody, NotificationQuery, NotificationView, QuotaBody};
use super::AppState;
use crate::db::{lock_user, write_transaction};
use crate::users::UserStatus;
use crate::{notifications, quota, teams, users, vacation};

/// `GET /v1/users/me/quota`: the guide's `personal_quota, used_tokens,
/// available_quota, team_pool_available`, then the detail.
pub async fn quota(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rules = state.rules();
    let view = state
        .as_caller(&req, Require::User, move |conn, user| {
            Ok(write_transaction(conn, |conn| {
                quota::view(conn, now, &user, &rules)
            })?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(QuotaBody::from(view)))
}

/// `GET /v1/users/me`: who the key belongs to, with their teams.
pub async fn profile(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let body = state
        .as_caller(&req, Require::User, move |conn, user| {
            let administered = teams::administered_by(conn, user.id)?;
            let team_ids = quota::pools::teams_of(conn, user.id)?;
            let list = teams::list_teams(conn, Some(&team_ids))?;
            let teams: Vec<serde_json::Value> = list
                .into_iter()
                .map(|t| {
                    serde_json::json!({
                        "id": t.id,
                        "name": t.name,
                        "is_team_admin": administered.contains(&t.id),
                    })
                })
                .collect();
            Ok(serde_json::json!({
                "id": user.id,
                "email": user.email,
                "name": user.name,
                "status": user.status,
                "is_admin": user.is_admin,
                "is_team_admin": !administered.is_empty(),
                "overdraft_enabled": user.overdraft_enabled,
                "created_at": rfc3339(user.created_at),
                "teams": teams,
            }))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /v1/users/me/notifications?unread=true&limit=N`, newest first.
pub async fn notifications(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let raw_query = req.query_string().to_owned();
    let list = state
        .as_caller(&req, Require::User, move |conn, user| {
            let query: NotificationQuery = decode_query(&raw_query)?;
            let limit = limit(query.limit, 50, 500)?;
            let unread = query.unread.unwrap_or(false);
            Ok(notifications::list(conn, user.id, unread, limit)?
                .into_iter()
                .map(NotificationView::from)
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// `POST /v1/users/me/notifications/read` with `{"ids": [..]}` (or `{}` for all) →
/// `{"marked": n}`.
pub async fn mark_read(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let marked = state
        .as_caller(&req, Require::User, move |conn, user| {
            let body: MarkReadBody = if body.is_empty() {
                MarkReadBody::default()
            } else {
                decode(&body)?
            };
            Ok(notifications::mark_read(
                conn,
                now,
                user.id,
                body.ids.as_deref(),
            )?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "marked": marked })))
}

/// `POST /v1/users/me/vacation`: the user goes on vacation (their unused personal
/// credit goes to their team pools) → the quota view.
pub async fn start_vacation(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    set_vacation(state, req, true).await
}

/// `DELETE /v1/users/me/vacation`: the user is back (unused released credit returns)
/// → the quota view.
pub async fn end_vacation(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    set_vacation(state, req, false).await
}

async fn set_vacation(
    state: web::Data<AppState>,
    req: HttpRequest,
    away: bool,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rules = state.rules();
    let view = state
        .as_caller(&req, Require::User, move |conn, caller| {
            Ok(write_transaction(conn, |conn| {
                lock_user(conn, caller.id)?;
                let user = users::get_user(conn, caller.id)?;
                let user = match (away, user.status()) {
                    (true, UserStatus::Active) => {
                        vacation::start(conn, now, &user, &rules, Some(user.id))?
                    }
                    (false, UserStatus::OnVacation) => {
                        vacation::end(conn, now, &user, &rules, Some(user.id))?
                    }
                    _ => user,
                };
                quota::view(conn, now, &user, &rules)
            })?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(QuotaBody::from(view)))
}
