//! Usage ingestion: the filter's reports of what each request really consumed.
//!
//! A batch is validated whole before anything is written (one bad record rejects the
//! batch, naming its index and field). Then one transaction inserts the records with
//! `ON CONFLICT (request_id) DO NOTHING` and adds only the rows actually inserted to
//! their leases' `used_tokens` — so a retried batch charges nothing twice. Usage is
//! charged to the user even when the lease has expired or never existed: the lease
//! only bounds what proxies may reserve; the usage is the truth.

mod model;

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::upsert::excluded;

pub use model::{NewUsageRecord, NewUsageTotal, Privacy, UsageRecord};

use crate::db::schema::{leases, usage_records, usage_totals, users};
use crate::db::{write_transaction, DbConnection};
use crate::error::{Error, Result};
use crate::leases::MAX_PROXY_ID_CHARS;
use crate::quota::{Priority, QuotaPeriod};

/// Most records accepted in one batch.
pub const MAX_BATCH_RECORDS: usize = 10_000;
/// Longest accepted identifier-like string (request id, lease id, model, …).
const MAX_ID_CHARS: usize = 200;
/// Rows per INSERT statement: 21 bind parameters each stays far below SQLite's
/// 32,766 and PostgreSQL's 65,535 parameter limits.
const INSERT_CHUNK_ROWS: usize = 500;

/// One proxy's report.
#[derive(Debug, Clone)]
pub struct UsageBatch {
    /// The reporting proxy.
    pub proxy_id: String,
    /// The records, in the order sent.
    pub records: Vec<UsageReport>,
}

/// One request's usage, as reported.
#[derive(Debug, Clone)]
pub struct UsageReport {
    /// Unique per request; the idempotency key.
    pub request_id: String,
    /// The lease the request was admitted under, if any.
    pub lease_id: Option<String>,
    /// Who is charged.
    pub user_id: i64,
    /// `openai`, `anthropic`, …
    pub provider: String,
    /// Model name as the provider reported it.
    pub model: String,
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
    /// What is charged.
    pub total_tokens: i64,
    /// Cached prompt tokens (informational).
    pub cached_tokens: i64,
    /// Reasoning tokens (informational).
    pub reasoning_tokens: i64,
    /// HTTP status the client saw.
    pub status: i32,
    /// True when the filter had to estimate (stream cut off, no usage reported).
    pub estimated: bool,
    /// `X-Priority`.
    pub priority: Priority,
    /// `X-Project-ID`.
    pub project_id: Option<String>,
    /// `X-Privacy-Mode`.
    pub privacy: Privacy,
    /// When the request happened by the proxy's clock (informational: periods follow
    /// the control plane's clock, so proxy clocks need not agree).
    pub occurred_at: Option<NaiveDateTime>,
}

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Records inserted and charged now.
    pub applied: usize,
    /// Records already known (by `request_id`), charged nothing.
    pub duplicates: usize,
}

/// Checks every record; the first problem is reported as `records[i].field`.
pub fn validate(batch: &UsageBatch) -> Result<()> {
    let proxy_id = batch.proxy_id.trim();
    if proxy_id.is_empty() || proxy_id.chars().count() > MAX_PROXY_ID_CHARS {
        return Err(Error::invalid(
            "proxy_id",
            format!("must be 1–{MAX_PROXY_ID_CHARS} characters"),
        ));
    }
    if batch.records.len() > MAX_BATCH_RECORDS {
        return Err(Error::invalid(
            "records",
            format!("at most {MAX_BATCH_RECORDS} records per batch"),
        ));
    }
    for (index, record) in batch.records.iter().enumerate() {
        validate_record(record).map_err(|(field, message)| Error::Invalid {
            field: format!("records[{index}].{field}"),
            message,
        })?;
    }
    Ok(())
}

fn validate_record(r: &UsageReport) -> std::result::Result<(), (&'static str, String)> {
    let text = |field: &'static str, value: &str, required: bool| {
        let len = value.chars().count();
        if (required && value.trim().is_empty()) || len > MAX_ID_CHARS {
            Err((
                field,
                format!(
                    "must be {}–{MAX_ID_CHARS} characters",
                    usize::from(required)
                ),
            ))
        } else {
            Ok(())
        }
    };
    text("request_id", &r.request_id, true)?;
    if let Some(lease_id) = &r.lease_id {
        text("lease_id", lease_id, true)?;
    }
    if r.user_id <= 0 {
        return Err(("user_id", "must be a user id (> 0)".to_owned()));
    }
    text("provider", &r.provider, false)?;
    text("model", &r.model, false)?;
    if let Some(project_id) = &r.project_id {
        text("project_id", project_id, false)?;
    }
    for (field, value) in [
        ("input_tokens", r.input_tokens),
        ("output_tokens", r.output_tokens),
        ("total_tokens", r.total_tokens),
        ("cached_tokens", r.cached_tokens),
        ("reasoning_tokens", r.reasoning_tokens),
    ] {
        if value < 0 {
            return Err((field, "must be ≥ 0".to_owned()));
        }
    }
    if !(0..=999).contains(&r.status) {
        return Err(("status", "must be an HTTP status (0–999)".to_owned()));
    }
    Ok(())
}

/// Validates and applies a batch at `now`.
pub fn ingest(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    period: QuotaPeriod,
    batch: UsageBatch,
) -> Result<IngestOutcome> {
    validate(&batch)?;
    if batch.records.is_empty() {
        return Ok(IngestOutcome {
            applied: 0,
            duplicates: 0,
        });
    }
    let period_start = period.bounds(now).start;
    let proxy_id = batch.proxy_id.trim();
    let user_ids: BTreeSet<i64> = batch.records.iter().map(|r| r.user_id).collect();
    let user_ids: Vec<i64> = user_ids.into_iter().collect();

    let rows: Vec<NewUsageRecord<'_>> = batch
        .records
        .iter()
        .map(|r| NewUsageRecord {
            request_id: &r.request_id,
            user_id: r.user_id,
            lease_id: r.lease_id.as_deref(),
            proxy_id,
            provider: &r.provider,
            model: &r.model,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            total_tokens: r.total_tokens,
            cached_tokens: r.cached_tokens,
            reasoning_tokens: r.reasoning_tokens,
            status: r.status,
            estimated: r.estimated,
            priority: r.priority.as_str(),
            project_id: r.project_id.as_deref(),
            privacy: r.privacy.as_str(),
            occurred_at: r.occurred_at.unwrap_or(now),
            created_at: now,
            period_start,
        })
        .collect();

    write_transaction(conn, |conn| {
        // Lock the charged users (in id order, so concurrent batches cannot deadlock)
        // to serialise with lease grants, and check they all exist.
        let known = lock_users(conn, &user_ids)?;
        if known.len() != user_ids.len() {
            let known: BTreeSet<i64> = known.into_iter().collect();
            if let Some(index) = batch
                .records
                .iter()
                .position(|r| !known.contains(&r.user_id))
            {
                return Err(Error::invalid(
                    format!("records[{index}].user_id"),
                    "no such user",
                ));
            }
        }

        let mut inserted: Vec<Inserted> = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(INSERT_CHUNK_ROWS) {
            inserted.extend(insert_new(conn, chunk)?);
        }

        let mut per_user: BTreeMap<i64, i64> = BTreeMap::new();
        let mut per_lease: BTreeMap<&str, i64> = BTreeMap::new();
        for (user_id, lease_id, total) in &inserted {
            let sum = per_user.entry(*user_id).or_default();
            *sum = sum.saturating_add(*total);
            if let Some(lease_id) = lease_id {
                let sum = per_lease.entry(lease_id.as_str()).or_default();
                *sum = sum.saturating_add(*total);
            }
        }
        for (user_id, tokens) in per_user {
            add_to_total(
                conn,
                NewUsageTotal {
                    user_id,
                    period_start,
                    used_tokens: tokens,
                },
            )?;
        }
        for (lease_id, tokens) in per_lease {
            // No row updated = unknown lease; the usage is charged to the user anyway.
            diesel::update(leases::table.find(lease_id))
                .set(leases::used_tokens.eq(leases::used_tokens + tokens))
                .execute(conn)?;
        }
        Ok(IngestOutcome {
            applied: inserted.len(),
            duplicates: rows.len() - inserted.len(),
        })
    })
}

/// `SELECT id FROM users WHERE id IN (…) [FOR UPDATE]`, in id order.
fn lock_users(conn: &mut DbConnection, ids: &[i64]) -> Result<Vec<i64>> {
    let query = users::table
        .filter(users::id.eq_any(ids))
        .order(users::id.asc())
        .select(users::id);
    let found = match conn {
        DbConnection::Postgres(pg) => query.for_update().load(pg)?,
        DbConnection::Sqlite(sqlite) => query.load(sqlite)?,
    };
    Ok(found)
}

/// `(user_id, lease_id, total_tokens)` of a row actually inserted.
type Inserted = (i64, Option<String>, i64);

/// Multi-row insert skipping known request ids; returns the rows actually inserted.
/// `ON CONFLICT` is not in diesel's multi-backend, hence the match.
fn insert_new(conn: &mut DbConnection, chunk: &[NewUsageRecord<'_>]) -> Result<Vec<Inserted>> {
    let returning = (
        usage_records::user_id,
        usage_records::lease_id,
        usage_records::total_tokens,
    );
    let rows = match conn {
        DbConnection::Sqlite(c) => diesel::insert_into(usage_records::table)
            .values(chunk)
            .on_conflict(usage_records::request_id)
            .do_nothing()
            .returning(returning)
            .get_results(c)?,
        DbConnection::Postgres(c) => diesel::insert_into(usage_records::table)
            .values(chunk)
            .on_conflict(usage_records::request_id)
            .do_nothing()
            .returning(returning)
            .get_results(c)?,
    };
    Ok(rows)
}

/// Adds to the user's running total for the period (insert or increment).
fn add_to_total(conn: &mut DbConnection, row: NewUsageTotal) -> Result<()> {
    let target = (usage_totals::user_id, usage_totals::period_start);
    let increment = usage_totals::used_tokens
        .eq(usage_totals::used_tokens + excluded(usage_totals::used_tokens));
    match conn {
        DbConnection::Sqlite(c) => diesel::insert_into(usage_totals::table)
            .values(&row)
            .on_conflict(target)
            .do_update()
            .set(increment)
            .execute(c)?,
        DbConnection::Postgres(c) => diesel::insert_into(usage_totals::table)
            .values(&row)
            .on_conflict(target)
            .do_update()
            .set(increment)
            .execute(c)?,
    };
    Ok(())
}

/// Usage records of a user, newest first (for tests and analytics).
pub fn records_for_user(conn: &mut DbConnection, user_id: i64) -> Result<Vec<UsageRecord>> {
    Ok(usage_records::table
        .filter(usage_records::user_id.eq(user_id))
        .order(usage_records::id.desc())
        .select(UsageRecord::as_select())
        .load(conn)?)
}
