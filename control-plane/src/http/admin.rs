//! `/v1/admin/*`: user management (admins only).

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{authorize, presented_key, Require};
use super::error::ApiError;
use super::json::decode;
use super::wire::{
    CreateUserBody, CreatedUserBody, UpdateUserBody, UsageQuery, UsageRecordView, UserBody,
};
use super::AppState;
use crate::{quota, usage, users};

/// `POST /v1/admin/users` → 201 with the key, shown this once.
pub async fn create_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let key = presented_key(req.headers());
    let now = state.clock.now();
    let default_quota = state.default_personal_quota;
    let created = state
        .run(move |conn| {
            authorize(conn, key.as_deref(), Require::Admin)?;
            let body: CreateUserBody = decode(&body)?;
            let input = users::CreateUser {
                email: body.email,
                name: body.name,
                personal_quota: body.personal_quota.unwrap_or(default_quota),
                is_admin: body.is_admin.unwrap_or(false),
            };
            Ok(users::create_user(conn, now, input)?)
        })
        .await?;
    tracing::info!(
        user_id = created.user.id,
        is_admin = created.user.is_admin,
        "user created"
    );
    Ok(HttpResponse::Created().json(CreatedUserBody::from(created)))
}

/// `GET /v1/admin/users` → every user with this period's numbers.
pub async fn list_users(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let key = presented_key(req.headers());
    let now = state.clock.now();
    let period = state.period();
    let list = state
        .run(move |conn| {
            authorize(conn, key.as_deref(), Require::Admin)?;
            let mut out = Vec::new();
            for user in users::list_users(conn)? {
                let balance = quota::balance(conn, &user, period, now)?;
                out.push(UserBody::from((user, balance)));
            }
            Ok(out)
        })
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// `GET /v1/admin/users/{id}` → one user, 404 when absent.
pub async fn get_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = presented_key(req.headers());
    let now = state.clock.now();
    let period = state.period();
    let raw_id = path.into_inner();
    let body = state
        .run(move |conn| {
            authorize(conn, key.as_deref(), Require::Admin)?;
            let id = user_id(&raw_id)?;
            let user = users::get_user(conn, id)?;
            let balance = quota::balance(conn, &user, period, now)?;
            Ok(UserBody::from((user, balance)))
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /v1/admin/users/{id}/usage?limit=N`: the user's newest usage records with
/// their cost (`unpriced` ones flagged, never shown as free); 404 when absent.
pub async fn user_usage(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = presented_key(req.headers());
    let query = web::Query::<UsageQuery>::from_query(req.query_string()).map_err(|e| {
        ApiError::Unprocessable {
            message: format!("invalid query string: {e}"),
            field: Some("limit".into()),
            code: "invalid_value",
        }
    })?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::Unprocessable {
            message: "limit must be between 1 and 1000".into(),
            field: Some("limit".into()),
            code: "invalid_value",
        });
    }
    let raw_id = path.into_inner();
    let body = state
        .run(move |conn| {
            authorize(conn, key.as_deref(), Require::Admin)?;
            let id = user_id(&raw_id)?;
            users::get_user(conn, id)?;
            let records = usage::recent_records(conn, id, limit)?;
            Ok(records
                .into_iter()
                .map(UsageRecordView::from)
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// A non-numeric id cannot name a user: 404, like an absent one.
fn user_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("user"))
}

/// `PUT /v1/admin/users/{id}`: changes the given fields (all validated first, all
/// written together) → the user; 404 when absent.
pub async fn update_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let key = presented_key(req.headers());
    let now = state.clock.now();
    let period = state.period();
    let raw_id = path.into_inner();
    let body = state
        .run(move |conn| {
            authorize(conn, key.as_deref(), Require::Admin)?;
            let id = user_id(&raw_id)?;
            let input = users::UpdateUser::try_from(decode::<UpdateUserBody>(&body)?)?;
            let user = users::update_user(conn, now, id, input)?;
            let balance = quota::balance(conn, &user, period, now)?;
            Ok(UserBody::from((user, balance)))
        })
        .await?;
    tracing::info!(user_id = body.id, "user updated");
    Ok(HttpResponse::Ok().json(body))
}

/// `DELETE /v1/admin/users/{id}`: soft delete (keys revoked, user hidden, usage kept)
/// → `{"id", "deleted": true}`. Admins cannot delete themselves.
pub async fn delete_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = presented_key(req.headers());
    let now = state.clock.now();
    let raw_id = path.into_inner();
    let id = state
        .run(move |conn| {
            let admin = authorize(conn, key.as_deref(), Require::Admin)?;
            let id = user_id(&raw_id)?;
            if admin.id == id {
                return Err(ApiError::Unprocessable {
                    message: "id: admins cannot delete their own account".into(),
                    field: Some("id".into()),
                    code: "invalid_value",
                });
            }
            users::delete_user(conn, now, id)?;
            Ok(id)
        })
        .await?;
    tracing::info!(user_id = id, "user deleted");
    Ok(HttpResponse::Ok().json(serde_json::json!({"id": id, "deleted": true})))
}

/// `POST /v1/admin/users/{id}/rotate-key`: a new key, shown this once; the old ones
/// stop working at once.
pub async fn rotate_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = presented_key(req.headers());
    let now = state.clock.now();
    let raw_id = path.into_inner();
    let created = state
        .run(move |conn| {
            authorize(conn, key.as_deref(), Require::Admin)?;
            Ok(users::rotate_key(conn, now, user_id(&raw_id)?)?)
        })
        .await?;
    tracing::info!(user_id = created.user.id, "key rotated");
    Ok(HttpResponse::Ok().json(CreatedUserBody::from(created)))
}

/// `DELETE /v1/admin/users/{id}/keys`: revokes every key → `{"id", "revoked": n}`.
pub async fn revoke_keys(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = presented_key(req.headers());
    let now = state.clock.now();
    let raw_id = path.into_inner();
    let (id, revoked) = state
        .run(move |conn| {
            authorize(conn, key.as_deref(), Require::Admin)?;
            let id = user_id(&raw_id)?;
            Ok((id, users::revoke_keys(conn, now, id)?))
        })
        .await?;
    tracing::info!(user_id = id, revoked, "keys revoked");
    Ok(HttpResponse::Ok().json(serde_json::json!({"id": id, "revoked": revoked})))
}
