//! `/v1/users/me/*`: what a user sees about themselves.

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{authorize, presented_key, Require};
use super::error::ApiError;
use super::wire::QuotaBody;
use super::AppState;
use crate::quota;

/// `GET /v1/users/me/quota`.
pub async fn quota(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let key = presented_key(req.headers());
    let now = state.clock.now();
    let period = state.period();
    let balance = state
        .run(move |conn| {
            let user = authorize(conn, key.as_deref(), Require::User)?;
            Ok(quota::balance(conn, &user, period, now)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(QuotaBody::from(balance)))
}
