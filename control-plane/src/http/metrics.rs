//! `GET /metrics`: Prometheus counters of what the control plane did since start, and
//! the database pool's state. Served on the control plane's own port only (the Envoy
//! front door does not route it).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{web, HttpResponse};

use super::AppState;

/// Counters, shared by every worker.
#[derive(Debug, Default)]
pub struct Metrics {
    grants_granted: AtomicU64,
    grants_exhausted: AtomicU64,
    grants_invalid_key: AtomicU64,
    grants_suspended: AtomicU64,
    usage_batches: AtomicU64,
    usage_records_applied: AtomicU64,
    usage_records_duplicate: AtomicU64,
    leases_released: AtomicU64,
    approvals_expired: AtomicU64,
    idle_vacations: AtomicU64,
    maintenance_failures: AtomicU64,
}

/// A lease decision, for counting.
#[derive(Debug, Clone, Copy)]
pub enum GrantOutcome {
    /// Tokens held.
    Granted,
    /// Nothing left.
    Exhausted,
    /// Unknown or revoked key.
    InvalidKey,
    /// Suspended owner.
    Suspended,
}

impl Metrics {
    /// Counts a lease decision.
    pub fn grant(&self, outcome: GrantOutcome) {
        let counter = match outcome {
            GrantOutcome::Granted => &self.grants_granted,
            GrantOutcome::Exhausted => &self.grants_exhausted,
            GrantOutcome::InvalidKey => &self.grants_invalid_key,
            GrantOutcome::Suspended => &self.grants_suspended,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an ingested usage batch.
    pub fn usage(&self, applied: usize, duplicates: usize) {
        self.usage_batches.fetch_add(1, Ordering::Relaxed);
        self.usage_records_applied
            .fetch_add(applied as u64, Ordering::Relaxed);
        self.usage_records_duplicate
            .fetch_add(duplicates as u64, Ordering::Relaxed);
    }

    /// Counts a maintenance round.
    pub fn maintenance(&self, round: &crate::maintenance::Round) {
        self.leases_released
            .fetch_add(round.leases_released as u64, Ordering::Relaxed);
        self.approvals_expired.fetch_add(
            (round.transfers_expired + round.requests_expired) as u64,
            Ordering::Relaxed,
        );
        self.idle_vacations
            .fetch_add(round.idle_on_vacation as u64, Ordering::Relaxed);
    }

    /// Counts a failed maintenance round.
    pub fn maintenance_failed(&self) {
        self.maintenance_failures.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, pool: &crate::db::DbPool) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        counter(
            "alfred_lease_grants_total",
            "Lease requests answered, by decision.",
            &[
                ("{decision=\"granted\"}", get(&self.grants_granted)),
                ("{decision=\"exhausted\"}", get(&self.grants_exhausted)),
                ("{decision=\"invalid_key\"}", get(&self.grants_invalid_key)),
                ("{decision=\"suspended\"}", get(&self.grants_suspended)),
            ],
        );
        counter(
            "alfred_usage_batches_total",
            "Usage batches ingested.",
            &[("", get(&self.usage_batches))],
        );
        counter(
            "alfred_usage_records_total",
            "Usage records received, by result (duplicates were already charged).",
            &[
                ("{result=\"applied\"}", get(&self.usage_records_applied)),
                ("{result=\"duplicate\"}", get(&self.usage_records_duplicate)),
            ],
        );
        counter(
            "alfred_leases_released_total",
            "Expired leases whose unused credit was returned.",
            &[("", get(&self.leases_released))],
        );
        counter(
            "alfred_approvals_expired_total",
            "Pending transfers and quota requests that expired.",
            &[("", get(&self.approvals_expired))],
        );
        counter(
            "alfred_idle_vacations_total",
            "Users set on vacation for being idle.",
            &[("", get(&self.idle_vacations))],
        );
        counter(
            "alfred_maintenance_failures_total",
            "Maintenance rounds that failed (retried the next second).",
            &[("", get(&self.maintenance_failures))],
        );
        let state = pool.state();
        let _ = writeln!(
            out,
            "# HELP alfred_db_connections Database pool connections, by state.\n# TYPE alfred_db_connections gauge\nalfred_db_connections{{state=\"idle\"}} {}\nalfred_db_connections{{state=\"in_use\"}} {}",
            state.idle_connections,
            state.connections.saturating_sub(state.idle_connections)
        );
        out
    }
}

/// `GET /metrics` (Prometheus text format 0.0.4).
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&state.pool))
}
