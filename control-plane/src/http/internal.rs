//! `/internal/v1/*`: the filter's routes (docs/lease-protocol.md). Authenticated with
//! `authorization: Bearer <ALFRED_FILTER_TOKEN>`; never routed by the Envoy front door.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::check_filter_token;
use super::error::ApiError;
use super::json::decode;
use super::metrics::GrantOutcome;
use super::wire::{
    IngestBody, LeaseDecisionBody, LeaseRequestBody, SyncAnswerBody, SyncRequestBody, UsageBody,
};
use super::AppState;
use crate::leases::{self, LeaseRequest};
use crate::usage::{self, UsageBatch};

/// `POST /internal/v1/leases`: decisions about the user are always 200. Grants are
/// group-committed with those of other requests that arrive meanwhile.
pub async fn grant_lease(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    check_filter_token(req.headers(), state.filter_token.expose())?;
    let request = LeaseRequest::try_from(decode::<LeaseRequestBody>(&body)?)?;
    let prepared = leases::prepare(state.clock.now(), state.lease_policy, request)?;
    let (pool, queue) = (state.pool.clone(), Arc::clone(&state.grant_queue));
    let decision = web::block(move || queue.submit(&pool, prepared))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "blocking task failed");
            ApiError::Internal
        })??;
    state.metrics.grant(match &decision {
        leases::LeaseDecision::Granted { .. } => GrantOutcome::Granted,
        leases::LeaseDecision::Exhausted { .. } => GrantOutcome::Exhausted,
        leases::LeaseDecision::InvalidKey => GrantOutcome::InvalidKey,
        leases::LeaseDecision::Suspended { .. } => GrantOutcome::Suspended,
    });
    Ok(HttpResponse::Ok().json(LeaseDecisionBody::from(decision)))
}

/// `POST /internal/v1/usage`: idempotent batch ingestion, group-committed with the
/// batches of other proxies that arrive meanwhile.
pub async fn report_usage(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    check_filter_token(req.headers(), state.filter_token.expose())?;
    let batch = UsageBatch::try_from(decode::<UsageBody>(&body)?)?;
    let records = batch.records.len();
    let prepared = usage::prepare(state.clock.now(), state.period(), &state.prices, batch)?;
    let (pool, queue) = (state.pool.clone(), Arc::clone(&state.ingest_queue));
    let outcome = web::block(move || queue.submit(&pool, prepared))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "blocking task failed");
            ApiError::Internal
        })??;
    state.metrics.usage(outcome.applied, outcome.duplicates);
    tracing::debug!(
        records,
        applied = outcome.applied,
        duplicates = outcome.duplicates,
        "usage batch ingested"
    );
    Ok(HttpResponse::Ok().json(IngestBody::from(outcome)))
}

/// `POST /internal/v1/sync`: the proxy re-checks the keys it holds leases for.
pub async fn sync_keys(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    check_filter_token(req.headers(), state.filter_token.expose())?;
    let body = decode::<SyncRequestBody>(&body)?;
    let now = state.clock.now();
    let period = state.period();
    let checks = state
        .run(move |conn| {
            Ok(leases::check_keys(
                conn,
                now,
                period,
                &body.proxy_id,
                &body.key_hashes,
            )?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(SyncAnswerBody::from(checks)))
}
