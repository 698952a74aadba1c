//! `/v1/admin/audit` and `/v1/admin/ledger/check` (admins only).

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::Require;
use super::error::ApiError;
use super::query::{decode_query, limit, parse_range};
use super::wire::{AuditQuery, AuditView};
use super::AppState;
use crate::{audit, ledger};

/// `GET /v1/admin/audit?action=&actor_id=&from=&to=&limit=`, newest first. An
/// `action` ending in `.` matches a prefix (`transfer.`).
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let raw_query = req.query_string().to_owned();
    let list = state
        .as_caller(&req, Require::Admin, move |conn, _| {
            let query: AuditQuery = decode_query(&raw_query)?;
            let (from, to) = parse_range(query.from.as_deref(), query.to.as_deref())?;
            let filter = audit::AuditFilter {
                action: query.action,
                actor_id: query.actor_id,
                from,
                to,
                limit: limit(query.limit, 100, 1000)?,
            };
            Ok(audit::list(conn, &filter)?
                .into_iter()
                .map(AuditView::from)
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// `GET /v1/admin/ledger/check`: re-derives every balance from the entries and
/// reports any broken invariant (`clean: true` when none).
pub async fn ledger_check(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let report = state
        .as_caller(&req, Require::Admin, move |conn, _| {
            Ok(ledger::audit(conn)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "clean": report.is_clean(),
        "total": report.total,
        "unbalanced_movements": report.unbalanced_movements,
        "drifted_balances": report.drifted_balances,
        "below_floor": report.below_floor,
    })))
}
