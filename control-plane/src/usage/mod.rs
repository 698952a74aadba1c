//! Usage ingestion: the filter's reports of what each request really consumed.
//!
//! A batch is validated whole before anything is written (one bad record rejects the
//! batch, naming its index and field). Then one transaction inserts the records with
//! `ON CONFLICT (request_id) DO NOTHING` and settles only the rows actually inserted —
//! so a retried batch charges nothing twice: their leases' `used_tokens` grow, and
//! two ledger movements cover the whole round: `usage` turns what the leases held into
//! used, `overrun` records usage past a lease's grant (or on an expired, released or
//! unknown lease, or without one) as the user's debt, which their next grant repays
//! from personal credit. Each record's cost is computed from the price catalog on the
//! way in (`unpriced` when the model has no price). Usage is always charged: the lease
//! only bounds what proxies may reserve; the usage is the truth.

mod model;
mod queue;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamp};

pub use model::{NewUsageRecord, Privacy, UsageRecord};
pub use queue::{IngestQueue, MAX_ROUND_RECORDS};

use crate::db::schema::{usage_records, users};
use crate::db::sqlite_statement::{Prepared, SqliteStatement, Values};
use crate::db::sqlite_time::{self, SqliteTimestamp};
use crate::db::{write_transaction, DbConnection};
use crate::error::{Error, Result};
use crate::leases::MAX_PROXY_ID_CHARS;
use crate::ledger::{self, Account, Kind, Movement};
use crate::pricing::{Cost, Price, PriceCatalog, TokenCounts};
use crate::quota::{Priority, QuotaPeriod};

/// Most records accepted in one batch.
pub const MAX_BATCH_RECORDS: usize = 10_000;
/// Longest accepted identifier-like string (request id, lease id, model, …).
const MAX_ID_CHARS: usize = 200;
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
        if !(0..=ledger::MAX_RECORD_TOKENS).contains(&value) {
            return Err((
                field,
                format!("must be between 0 and {}", ledger::MAX_RECORD_TOKENS),
            ));
        }
    }
    if !(0..=999).contains(&r.status) {
        return Err(("status", "must be an HTTP status (0–999)".to_owned()));
    }
    Ok(())
}

/// Validates, prices and applies a batch at `now`.
pub fn ingest(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    period: QuotaPeriod,
    prices: &PriceCatalog,
    batch: UsageBatch,
) -> Result<IngestOutcome> {
    let prepared = prepare(now, period, prices, batch)?;
    write_batches(conn, std::slice::from_ref(&prepared))
        .pop()
        .unwrap_or(Ok(IngestOutcome {
            applied: 0,
            duplicates: 0,
        }))
}

/// A validated batch with each record's cost, ready to be written.
#[derive(Debug, Clone)]
pub struct PreparedBatch {
    batch: UsageBatch,
    now: NaiveDateTime,
    period_start: NaiveDateTime,
    costs: Vec<Cost>,
}

impl PreparedBatch {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.batch.records.len()
    }

    /// Whether the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.batch.records.is_empty()
    }
}

/// Validates a batch and prices its records (no database work).
pub fn prepare(
    now: NaiveDateTime,
    period: QuotaPeriod,
    prices: &PriceCatalog,
    batch: UsageBatch,
) -> Result<PreparedBatch> {
    validate(&batch)?;
    // A batch names few models: look each up once.
    let mut model_prices: HashMap<&str, Option<Price>> = HashMap::new();
    let costs = batch
        .records
        .iter()
        .map(|r| {
            let price = *model_prices
                .entry(r.model.as_str())
                .or_insert_with(|| prices.price(&r.model));
            PriceCatalog::cost_at(
                price,
                TokenCounts {
                    input: r.input_tokens,
                    output: r.output_tokens,
                    cached: r.cached_tokens,
                },
            )
        })
        .collect();
    Ok(PreparedBatch {
        now,
        period_start: period.bounds(now).start,
        costs,
        batch,
    })
}

/// Writes several batches in one transaction (one commit, one statement per table)
/// and answers each batch on its own: a batch naming an unknown user is refused
/// alone, and if the shared transaction fails, each batch is retried in its own.
/// Records are applied in order, so of two records with the same `request_id` the
/// first is applied and the second counted a duplicate, within or across batches.
pub fn write_batches(
    conn: &mut DbConnection,
    batches: &[PreparedBatch],
) -> Vec<Result<IngestOutcome>> {
    match write_round(conn, batches) {
        Ok(outcomes) => outcomes,
        Err(error) if batches.len() <= 1 => vec![Err(error)],
        Err(_) => batches
            .iter()
            .map(|b| {
                write_round(conn, std::slice::from_ref(b))
                    .and_then(|mut v| v.pop().unwrap_or(Err(Error::NotFound("batch"))))
            })
            .collect(),
    }
}

fn write_round(
    conn: &mut DbConnection,
    batches: &[PreparedBatch],
) -> Result<Vec<Result<IngestOutcome>>> {
    let empty = IngestOutcome {
        applied: 0,
        duplicates: 0,
    };
    if batches.iter().all(PreparedBatch::is_empty) {
        return Ok(batches.iter().map(|_| Ok(empty)).collect());
    }
    write_transaction(conn, |conn| {
        // Every charged user must exist; a batch naming an unknown one is refused
        // whole (and alone).
        let user_ids: BTreeSet<i64> = batches
            .iter()
            .flat_map(|b| b.batch.records.iter().map(|r| r.user_id))
            .collect();
        let user_ids: Vec<i64> = user_ids.into_iter().collect();
        let known: BTreeSet<i64> = existing_users(conn, &user_ids)?.into_iter().collect();
        let mut outcomes: Vec<Result<IngestOutcome>> = batches
            .iter()
            .map(|b| {
                match b
                    .batch
                    .records
                    .iter()
                    .position(|r| !known.contains(&r.user_id))
                {
                    Some(index) => Err(Error::invalid(
                        format!("records[{index}].user_id"),
                        "no such user",
                    )),
                    None => Ok(empty),
                }
            })
            .collect();
        let accepted: Vec<&PreparedBatch> = batches
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| o.is_ok())
            .map(|(b, _)| b)
            .collect();
        let rows: Vec<NewUsageRecord<'_>> = accepted.iter().flat_map(|b| b.rows()).collect();
        if rows.is_empty() {
            return Ok(outcomes);
        }

        // The records first: concurrent transactions insert side by side. Then the
        // contended rows (running totals, then leases, each in key order so
        // transactions cannot deadlock), held only until the commit just after.
        let inserted = insert_new(conn, &rows)?;
        if inserted.len() != rows.len() {
            return Err(Error::Invariant("an insert lost a row's outcome".into()));
        }
        // The analytics rollup, from the records actually inserted (in key order).
        crate::analytics::rollup::add_inserted(conn, &rows, &inserted)?;

        // Usage per lease, and per (user, period) for records without a usable lease.
        let mut per_lease: BTreeMap<&str, i64> = BTreeMap::new();
        let mut lease_fallback: HashMap<&str, (i64, NaiveDateTime)> = HashMap::new();
        let mut unleased: BTreeMap<(i64, NaiveDateTime), i64> = BTreeMap::new();
        let mut accepted_outcomes = outcomes.iter_mut().filter(|o| o.is_ok());
        // `rows` are the accepted batches' records in order, so `inserted` follows them.
        let mut inserted = inserted.into_iter();
        for batch in &accepted {
            let mut applied = 0;
            for record in &batch.batch.records {
                // Only the first occurrence of a request id can have been inserted.
                if !inserted.next().unwrap_or(false) {
                    continue;
                }
                applied += 1;
                let (user_id, total) = (record.user_id, record.total_tokens);
                match record.lease_id.as_deref() {
                    Some(lease_id) => {
                        lease_fallback
                            .entry(lease_id)
                            .or_insert((user_id, batch.period_start));
                        let sum = per_lease.entry(lease_id).or_default();
                        *sum = sum.saturating_add(total);
                    }
                    None => {
                        let sum = unleased.entry((user_id, batch.period_start)).or_default();
                        *sum = sum.saturating_add(total);
                    }
                }
            }
            if let Some(outcome) = accepted_outcomes.next() {
                *outcome = Ok(IngestOutcome {
                    applied,
                    duplicates: batch.len() - applied,
                });
            }
        }
        let now = accepted.first().map_or_else(ledger::timeless, |b| b.now);
        let settled = add_to_leases(conn, &per_lease)?;
        let mut usage = Movement::new(Kind::Usage);
        let mut overrun = Movement::new(Kind::Overrun);
        for lease in &settled {
            lease_fallback.remove(lease.id.as_str());
            let prior = lease.used_tokens - lease.tokens;
            let covered = if lease.released {
                0
            } else {
                (lease.granted_tokens - prior).clamp(0, lease.tokens)
            };
            let (u, p) = (lease.user_id, lease.period_start);
            usage = usage.transfer(Account::Held(u), Account::Used(u), p, covered);
            overrun = overrun.transfer(
                Account::Debt(u),
                Account::Used(u),
                p,
                lease.tokens - covered,
            );
        }
        // Unknown leases: charged like usage without a lease.
        for (lease_id, (user_id, p)) in lease_fallback {
            let tokens = per_lease.get(lease_id).copied().unwrap_or(0);
            let sum = unleased.entry((user_id, p)).or_default();
            *sum = sum.saturating_add(tokens);
        }
        for ((u, p), tokens) in unleased {
            overrun = overrun.transfer(Account::Debt(u), Account::Used(u), p, tokens);
        }
        ledger::post(conn, now, &usage)?;
        ledger::post(conn, now, &overrun)?;
        Ok(outcomes)
    })
}

impl PreparedBatch {
    /// The insert rows of this batch.
    fn rows(&self) -> impl Iterator<Item = NewUsageRecord<'_>> {
        let proxy_id = self.batch.proxy_id.trim();
        self.batch
            .records
            .iter()
            .zip(&self.costs)
            .map(move |(r, cost)| NewUsageRecord {
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
                occurred_at: r.occurred_at.unwrap_or(self.now),
                created_at: self.now,
                period_start: self.period_start,
                cost_nano_usd: cost.nano_usd,
                unpriced: cost.unpriced,
            })
    }
}

/// `SELECT id FROM users WHERE id IN (…)`.
///
/// No user lock is needed: a grant reads `used` and the holds in one statement after
/// locking the user, so it sees a batch entirely or not at all, and a batch can only
/// lower what is available. (On SQLite the whole batch holds the write lock anyway.)
///
/// PostgreSQL joins the ids as a relation: `id = ANY($1)` over a long array is
/// evaluated element by element against every row it scans.
fn existing_users(conn: &mut DbConnection, ids: &[i64]) -> Result<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    Ok(match conn {
        DbConnection::Postgres(pg) => {
            diesel::sql_query("SELECT u.id FROM unnest($1) AS i(id) JOIN users u ON u.id = i.id")
                .bind::<Array<BigInt>, _>(ids)
                .load::<Id>(pg)?
                .into_iter()
                .map(|i| i.id)
                .collect()
        }
        DbConnection::Sqlite(c) => users::table
            .filter(users::id.eq_any(ids))
            .select(users::id)
            .load(c)?,
    })
}

/// Inserts the records, skipping known request ids; returns, for each row, whether
/// it was inserted (of two rows with one request id, only the first can be). SQLite: one statement of fixed text per record, prepared once per
/// connection (in-process; a multi-row `VALUES` list would be SQL text to parse anew
/// on every batch), a row counted as inserted when it changed one. PostgreSQL: one
/// `INSERT … SELECT FROM unnest(<one array per column>)` for the whole batch — a fixed
/// statement of 21 array parameters is parsed and planned in microseconds, where a
/// 500-row `VALUES` list has 11,500 parameters to parse and plan on every batch.
fn insert_new(conn: &mut DbConnection, rows: &[NewUsageRecord<'_>]) -> Result<Vec<bool>> {
    match conn {
        DbConnection::Sqlite(c) => {
            // Each distinct time rendered once (a round has one `created_at` and one
            // period per batch, and requests share milliseconds).
            let mut texts: HashMap<NaiveDateTime, String> = HashMap::new();
            for r in rows {
                for t in [r.occurred_at, r.created_at, r.period_start] {
                    texts.entry(t).or_insert_with(|| sqlite_time::render(t));
                }
            }
            let text = |t: &NaiveDateTime| {
                texts
                    .get(t)
                    .map(|s| SqliteTimestamp(s))
                    .ok_or_else(|| Error::Invariant("a usage time was not rendered".into()))
            };
            let mut inserted = Vec::with_capacity(rows.len());
            for r in rows {
                let row = SqliteRecord {
                    occurred_at: text(&r.occurred_at)?,
                    created_at: text(&r.created_at)?,
                    period_start: text(&r.period_start)?,
                    request_id: r.request_id,
                    user_id: r.user_id,
                    lease_id: r.lease_id,
                    proxy_id: r.proxy_id,
                    provider: r.provider,
                    model: r.model,
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                    total_tokens: r.total_tokens,
                    cached_tokens: r.cached_tokens,
                    reasoning_tokens: r.reasoning_tokens,
                    status: r.status,
                    estimated: r.estimated,
                    priority: r.priority,
                    project_id: r.project_id,
                    privacy: r.privacy,
                    cost_nano_usd: r.cost_nano_usd,
                    unpriced: r.unpriced,
                };
                // One row changed: inserted; none: the request id was already known.
                inserted.push(Prepared(&row).execute(c)? == 1);
            }
            Ok(inserted)
        }
        DbConnection::Postgres(pg) => insert_new_postgres(pg, rows),
    }
}

/// [`NewUsageRecord`] with its times rendered for SQLite
/// ([`crate::db::sqlite_time`]), inserted by one statement of fixed text
/// ([`SqliteStatement`]): prepared once per connection, then bound and stepped per
/// row.
struct SqliteRecord<'a> {
    request_id: &'a str,
    user_id: i64,
    lease_id: Option<&'a str>,
    proxy_id: &'a str,
    provider: &'a str,
    model: &'a str,
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    cached_tokens: i64,
    reasoning_tokens: i64,
    status: i32,
    estimated: bool,
    priority: &'a str,
    project_id: Option<&'a str>,
    privacy: &'a str,
    occurred_at: SqliteTimestamp<'a>,
    created_at: SqliteTimestamp<'a>,
    period_start: SqliteTimestamp<'a>,
    cost_nano_usd: i64,
    unpriced: bool,
}

impl SqliteStatement for SqliteRecord<'_> {
    type Id = SqliteRecord<'static>;
    const HEAD: &'static str = "INSERT INTO usage_records (request_id, user_id, lease_id, \
        proxy_id, provider, model, input_tokens, output_tokens, total_tokens, cached_tokens, \
        reasoning_tokens, status, estimated, priority, project_id, privacy, occurred_at, \
        created_at, period_start, cost_nano_usd, unpriced) \
        VALUES (";
    const TAIL: &'static str = ") ON CONFLICT (request_id) DO NOTHING";

    fn bind_values<'b>(&'b self, values: &mut Values<'_, '_, 'b>) -> QueryResult<()> {
        values.bind::<Text, _>(&self.request_id)?;
        values.bind::<BigInt, _>(&self.user_id)?;
        values.bind::<Nullable<Text>, _>(&self.lease_id)?;
        values.bind::<Text, _>(&self.proxy_id)?;
        values.bind::<Text, _>(&self.provider)?;
        values.bind::<Text, _>(&self.model)?;
        values.bind::<BigInt, _>(&self.input_tokens)?;
        values.bind::<BigInt, _>(&self.output_tokens)?;
        values.bind::<BigInt, _>(&self.total_tokens)?;
        values.bind::<BigInt, _>(&self.cached_tokens)?;
        values.bind::<BigInt, _>(&self.reasoning_tokens)?;
        values.bind::<Integer, _>(&self.status)?;
        values.bind::<Bool, _>(&self.estimated)?;
        values.bind::<Text, _>(&self.priority)?;
        values.bind::<Nullable<Text>, _>(&self.project_id)?;
        values.bind::<Text, _>(&self.privacy)?;
        values.bind::<Timestamp, _>(&self.occurred_at)?;
        values.bind::<Timestamp, _>(&self.created_at)?;
        values.bind::<Timestamp, _>(&self.period_start)?;
        values.bind::<BigInt, _>(&self.cost_nano_usd)?;
        values.bind::<Bool, _>(&self.unpriced)
    }
}

/// A row returned by the PostgreSQL bulk insert.
#[derive(QueryableByName)]
struct InsertedRow {
    #[diesel(sql_type = Text)]
    request_id: String,
}

fn insert_new_postgres(pg: &mut PgConnection, rows: &[NewUsageRecord<'_>]) -> Result<Vec<bool>> {
    fn column<'r, T>(
        rows: &'r [NewUsageRecord<'r>],
        f: impl Fn(&'r NewUsageRecord<'r>) -> T,
    ) -> Vec<T> {
        rows.iter().map(f).collect()
    }
    let inserted: Vec<InsertedRow> = diesel::sql_query(
        "INSERT INTO usage_records (request_id, user_id, lease_id, proxy_id, provider, model, \
         input_tokens, output_tokens, total_tokens, cached_tokens, reasoning_tokens, status, \
         estimated, priority, project_id, privacy, occurred_at, created_at, period_start, \
         cost_nano_usd, unpriced) \
         SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
         $15, $16, $17, $18, $19, $20, $21) \
         ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
    )
    .bind::<Array<Text>, _>(column(rows, |r| r.request_id))
    .bind::<Array<BigInt>, _>(column(rows, |r| r.user_id))
    .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.lease_id))
    .bind::<Array<Text>, _>(column(rows, |r| r.proxy_id))
    .bind::<Array<Text>, _>(column(rows, |r| r.provider))
    .bind::<Array<Text>, _>(column(rows, |r| r.model))
    .bind::<Array<BigInt>, _>(column(rows, |r| r.input_tokens))
    .bind::<Array<BigInt>, _>(column(rows, |r| r.output_tokens))
    .bind::<Array<BigInt>, _>(column(rows, |r| r.total_tokens))
    .bind::<Array<BigInt>, _>(column(rows, |r| r.cached_tokens))
    .bind::<Array<BigInt>, _>(column(rows, |r| r.reasoning_tokens))
    .bind::<Array<Integer>, _>(column(rows, |r| r.status))
    .bind::<Array<Bool>, _>(column(rows, |r| r.estimated))
    .bind::<Array<Text>, _>(column(rows, |r| r.priority))
    .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.project_id))
    .bind::<Array<Text>, _>(column(rows, |r| r.privacy))
    .bind::<Array<Timestamp>, _>(column(rows, |r| r.occurred_at))
    .bind::<Array<Timestamp>, _>(column(rows, |r| r.created_at))
    .bind::<Array<Timestamp>, _>(column(rows, |r| r.period_start))
    .bind::<Array<BigInt>, _>(column(rows, |r| r.cost_nano_usd))
    .bind::<Array<Bool>, _>(column(rows, |r| r.unpriced))
    .load(pg)?;
    // Of two rows with one request id, the first is the one inserted.
    let mut inserted: HashSet<String> = inserted.into_iter().map(|r| r.request_id).collect();
    Ok(rows.iter().map(|r| inserted.remove(r.request_id)).collect())
}

/// A lease after usage was added to it.
#[derive(Debug, QueryableByName)]
struct Settled {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = BigInt)]
    granted_tokens: i64,
    /// After this batch.
    #[diesel(sql_type = BigInt)]
    used_tokens: i64,
    #[diesel(sql_type = Bool)]
    released: bool,
    #[diesel(sql_type = Timestamp)]
    period_start: NaiveDateTime,
    /// What this batch added.
    #[diesel(sql_type = BigInt)]
    tokens: i64,
}

/// Adds usage to leases' `used_tokens` and returns each lease as updated (unknown
/// leases are absent). Lease rows are taken in id order, before any ledger balance
/// row (the grant's lock order). One statement whatever the count: PostgreSQL over
/// `unnest`ed arrays (a round trip per lease would dominate a batch), SQLite over
/// `json_each`.
fn add_to_leases(conn: &mut DbConnection, per_lease: &BTreeMap<&str, i64>) -> Result<Vec<Settled>> {
    if per_lease.is_empty() {
        return Ok(Vec::new());
    }
    match conn {
        DbConnection::Postgres(pg) => {
            let ids: Vec<&str> = per_lease.keys().copied().collect();
            let tokens: Vec<i64> = per_lease.values().copied().collect();
            Ok(diesel::sql_query(
                "UPDATE leases SET used_tokens = leases.used_tokens + v.tokens \
                 FROM (SELECT * FROM unnest($1, $2) AS u(id, tokens) ORDER BY id) AS v \
                 WHERE leases.id = v.id \
                 RETURNING leases.id, leases.user_id, leases.granted_tokens, leases.used_tokens, \
                 leases.released_at IS NOT NULL AS released, leases.period_start, v.tokens",
            )
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<BigInt>, _>(tokens)
            .load(pg)?)
        }
        DbConnection::Sqlite(c) => {
            // `json_each` plays `unnest`: one fixed statement with one parameter, where
            // an `UPDATE` per lease would be parsed once per lease (diesel caches no
            // `UPDATE`). SQLite's `RETURNING` sees only the updated table, so the
            // tokens added come from the map.
            let tokens_by_lease = serde_json::to_string(per_lease)
                .map_err(|e| Error::Invariant(format!("lease usage as JSON: {e}")))?;
            let rows: Vec<SqliteSettled> = diesel::sql_query(
                "UPDATE leases SET used_tokens = used_tokens + v.value \
                 FROM json_each(?) AS v WHERE leases.id = v.key \
                 RETURNING id, user_id, granted_tokens, used_tokens, \
                 released_at IS NOT NULL AS released, period_start",
            )
            .bind::<Text, _>(tokens_by_lease)
            .load(c)?;
            let mut settled: Vec<Settled> = rows
                .into_iter()
                .filter_map(|r| {
                    per_lease.get(r.id.as_str()).map(|&tokens| Settled {
                        tokens,
                        id: r.id,
                        user_id: r.user_id,
                        granted_tokens: r.granted_tokens,
                        used_tokens: r.used_tokens,
                        released: r.released,
                        period_start: r.period_start,
                    })
                })
                .collect();
            settled.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(settled)
        }
    }
}

/// A lease as SQLite's `RETURNING` gives it after usage was added.
#[derive(Debug, QueryableByName)]
struct SqliteSettled {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = BigInt)]
    granted_tokens: i64,
    #[diesel(sql_type = BigInt)]
    used_tokens: i64,
    #[diesel(sql_type = Bool)]
    released: bool,
    #[diesel(sql_type = Timestamp)]
    period_start: NaiveDateTime,
}

/// The newest `limit` usage records of a user, newest first.
pub fn recent_records(
    conn: &mut DbConnection,
    user_id: i64,
    limit: i64,
) -> Result<Vec<UsageRecord>> {
    Ok(usage_records::table
        .filter(usage_records::user_id.eq(user_id))
        .order(usage_records::id.desc())
        .limit(limit)
        .select(UsageRecord::as_select())
        .load(conn)?)
}

/// Usage records of a user, newest first (for tests and analytics).
pub fn records_for_user(conn: &mut DbConnection, user_id: i64) -> Result<Vec<UsageRecord>> {
    Ok(usage_records::table
        .filter(usage_records::user_id.eq(user_id))
        .order(usage_records::id.desc())
        .select(UsageRecord::as_select())
        .load(conn)?)
}
