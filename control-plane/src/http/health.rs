//! Liveness and readiness probes.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::db;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when the database answers, 503 otherwise.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let ready = state.run(|conn| Ok(db::ping(conn))).await.unwrap_or(false);
    if ready {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "unavailable"}))
    }
}
