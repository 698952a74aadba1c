//! `/v1/admin/users*`: user management (admins only).

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::Require;
use super::error::ApiError;
use super::json::decode;
use super::query::{decode_query, limit, path_id};
use super::wire::{
    CreateUserBody, CreatedUserBody, LedgerMovementBody, UpdateUserBody, UsageQuery,
    UsageRecordView, UserBody,
};
use super::AppState;
use crate::db::write_transaction;
use crate::{ledger, quota, usage, users};

/// `POST /v1/admin/users` → 201 with the key, shown this once.
pub async fn create_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let default_quota = state.default_personal_quota;
    let created = state
        .as_caller(&req, Require::Admin, move |conn, admin| {
            let body: CreateUserBody = decode(&body)?;
            let input = users::CreateUser {
                email: body.email,
                name: body.name,
                personal_quota: body.personal_quota.unwrap_or(default_quota),
                is_admin: body.is_admin.unwrap_or(false),
            };
            Ok(users::create_user(conn, now, input, Some(admin.id))?)
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
    let now = state.clock.now();
    let rules = state.rules();
    let list = state
        .as_caller(&req, Require::Admin, move |conn, _| {
            Ok(write_transaction(conn, |conn| {
                let mut out = Vec::new();
                for user in users::list_users(conn)? {
                    let view = quota::view(conn, now, &user, &rules)?;
                    out.push(UserBody::from((user, view)));
                }
                Ok::<_, crate::error::Error>(out)
            })?)
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
    let now = state.clock.now();
    let rules = state.rules();
    let raw_id = path.into_inner();
    let body = state
        .as_caller(&req, Require::Admin, move |conn, _| {
            let id = path_id(&raw_id, "user")?;
            Ok(write_transaction(conn, |conn| {
                let user = users::get_user(conn, id)?;
                let view = quota::view(conn, now, &user, &rules)?;
                Ok::<_, crate::error::Error>(UserBody::from((user, view)))
            })?)
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
    let raw_query = req.query_string().to_owned();
    let raw_id = path.into_inner();
    let body = state
        .as_caller(&req, Require::Admin, move |conn, _| {
            let query: UsageQuery = decode_query(&raw_query)?;
            let limit = limit(query.limit, 100, 1000)?;
            let id = path_id(&raw_id, "user")?;
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

/// `GET /v1/admin/users/{id}/ledger?limit=N`: the newest ledger movements about the
/// user, each with its entries.
pub async fn user_ledger(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let raw_query = req.query_string().to_owned();
    let raw_id = path.into_inner();
    let body = state
        .as_caller(&req, Require::Admin, move |conn, _| {
            let query: UsageQuery = decode_query(&raw_query)?;
            let limit = limit(query.limit, 100, 1000)?;
            let id = path_id(&raw_id, "user")?;
            users::get_user_any(conn, id)?;
            Ok(ledger::movements_for_user(conn, id, limit)?
                .into_iter()
                .map(LedgerMovementBody::from)
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `PUT /v1/admin/users/{id}`: changes the given fields (all validated first, all
/// written together) → the user; 404 when absent.
pub async fn update_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rules = state.rules();
    let raw_id = path.into_inner();
    let body = state
        .as_caller(&req, Require::Admin, move |conn, admin| {
            let id = path_id(&raw_id, "user")?;
            let input = users::UpdateUser::try_from(decode::<UpdateUserBody>(&body)?)?;
            if admin.id == id
                && (input.is_admin == Some(false)
                    || input
                        .status
                        .is_some_and(|s| s == users::UserStatus::Suspended))
            {
                return Err(ApiError::Unprocessable {
                    message: "id: admins cannot suspend themselves or drop their own admin flag"
                        .into(),
                    field: Some("id".into()),
                    code: "invalid_value",
                });
            }
            let user = users::update_user(conn, now, id, input, &rules, Some(admin.id))?;
            Ok(write_transaction(conn, |conn| {
                let view = quota::view(conn, now, &user, &rules)?;
                Ok::<_, crate::error::Error>(UserBody::from((user, view)))
            })?)
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
    let now = state.clock.now();
    let raw_id = path.into_inner();
    let id = state
        .as_caller(&req, Require::Admin, move |conn, admin| {
            let id = path_id(&raw_id, "user")?;
            if admin.id == id {
                return Err(ApiError::Unprocessable {
                    message: "id: admins cannot delete their own account".into(),
                    field: Some("id".into()),
                    code: "invalid_value",
                });
            }
            users::delete_user(conn, now, id, Some(admin.id))?;
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
    let now = state.clock.now();
    let raw_id = path.into_inner();
    let created = state
        .as_caller(&req, Require::Admin, move |conn, admin| {
            let id = path_id(&raw_id, "user")?;
            Ok(users::rotate_key(conn, now, id, Some(admin.id))?)
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
    let now = state.clock.now();
    let raw_id = path.into_inner();
    let (id, revoked) = state
        .as_caller(&req, Require::Admin, move |conn, admin| {
            let id = path_id(&raw_id, "user")?;
            Ok((id, users::revoke_keys(conn, now, id, Some(admin.id))?))
        })
        .await?;
    tracing::info!(user_id = id, revoked, "keys revoked");
    Ok(HttpResponse::Ok().json(serde_json::json!({"id": id, "revoked": revoked})))
}
