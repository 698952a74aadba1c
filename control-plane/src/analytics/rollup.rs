//! Maintenance of `usage_daily`, the per-day rollup the analytics read.
//!
//! Usage ingestion calls [`add_inserted`] inside its transaction, right after inserting
//! a round's records, with the records it actually inserted: a repeated batch (or a
//! request id seen twice) adds nothing, so the rollup stays equal to the aggregate of
//! `usage_records`. The round is summed per (day, user, model, project, provider) in
//! Rust first, then written (PostgreSQL: one statement over `unnest`ed arrays;
//! SQLite: one prepared single-row `INSERT … ON CONFLICT DO UPDATE` per row), in key
//! order so concurrent rounds take the rows' locks in the same order.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Date, Text};

use super::Totals;
use crate::db::sqlite_statement::{Prepared, SqliteStatement, Values};
use crate::db::DbConnection;
use crate::error::Result;
use crate::usage::NewUsageRecord;

/// A rollup row's key: (UTC day, user, model, project or "", provider).
type Key<'a> = (NaiveDate, i64, &'a str, &'a str, &'a str);

impl Totals {
    /// Adds one usage record.
    pub fn add_record(&mut self, r: &NewUsageRecord<'_>) {
        let ok = (200..=299).contains(&r.status);
        let tokens = r.total_tokens;
        self.requests += 1;
        self.successful_requests += i64::from(ok);
        self.failed_requests += i64::from(!ok);
        self.estimated_requests += i64::from(r.estimated);
        self.input_tokens = self.input_tokens.saturating_add(r.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(r.output_tokens);
        self.total_tokens = self.total_tokens.saturating_add(tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(r.cached_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(r.reasoning_tokens);
        if !ok {
            self.failed_tokens = self.failed_tokens.saturating_add(tokens);
        }
        if r.estimated {
            self.estimated_tokens = self.estimated_tokens.saturating_add(tokens);
        }
        self.cost_nano_usd = self.cost_nano_usd.saturating_add(r.cost_nano_usd);
        self.unpriced_requests += i64::from(r.unpriced);
    }
}

/// Adds the round's inserted records to the rollup. `rows` are the round's rows in
/// insert order and `inserted[i]` whether `rows[i]` was inserted by this round (only
/// the first row of a request id can be).
pub fn add_inserted<'r>(
    conn: &mut DbConnection,
    rows: &'r [NewUsageRecord<'r>],
    inserted: &[bool],
) -> Result<()> {
    let mut sums: BTreeMap<Key<'r>, Totals> = BTreeMap::new();
    for (r, _) in rows.iter().zip(inserted).filter(|(_, &inserted)| inserted) {
        let key = (
            r.created_at.date(),
            r.user_id,
            r.model,
            r.project_id.unwrap_or(""),
            r.provider,
        );
        sums.entry(key).or_default().add_record(r);
    }
    if sums.is_empty() {
        return Ok(());
    }
    match conn {
        DbConnection::Sqlite(c) => upsert_sqlite(c, &sums),
        DbConnection::Postgres(pg) => upsert_postgres(pg, &sums),
    }
}

/// One upsert of fixed text per rollup row ([`SqliteStatement`]: prepared once per
/// connection, then bound and stepped per row), where a multi-row upsert would be a
/// new text, parsed and prepared anew, for every round's row count.
fn upsert_sqlite(
    c: &mut diesel::sqlite::SqliteConnection,
    sums: &BTreeMap<Key<'_>, Totals>,
) -> Result<()> {
    for (&(day, user_id, model, project_id, provider), &totals) in sums {
        Prepared(&SqliteUsageDay {
            day,
            user_id,
            model,
            project_id,
            provider,
            totals,
        })
        .execute(c)?;
    }
    Ok(())
}

/// A `usage_daily` row's delta, added to the stored row on conflict.
struct SqliteUsageDay<'a> {
    day: NaiveDate,
    user_id: i64,
    model: &'a str,
    project_id: &'a str,
    provider: &'a str,
    totals: Totals,
}

impl SqliteStatement for SqliteUsageDay<'_> {
    type Id = SqliteUsageDay<'static>;
    const HEAD: &'static str = "INSERT INTO usage_daily (day, user_id, model, project_id, \
        provider, requests, successful_requests, failed_requests, estimated_requests, \
        input_tokens, output_tokens, total_tokens, cached_tokens, reasoning_tokens, \
        failed_tokens, estimated_tokens, cost_nano_usd, unpriced_requests) \
        VALUES (";
    const TAIL: &'static str =
        ") ON CONFLICT (day, user_id, model, project_id, provider) DO UPDATE SET \
        requests = usage_daily.requests + excluded.requests, \
        successful_requests = usage_daily.successful_requests + excluded.successful_requests, \
        failed_requests = usage_daily.failed_requests + excluded.failed_requests, \
        estimated_requests = usage_daily.estimated_requests + excluded.estimated_requests, \
        input_tokens = usage_daily.input_tokens + excluded.input_tokens, \
        output_tokens = usage_daily.output_tokens + excluded.output_tokens, \
        total_tokens = usage_daily.total_tokens + excluded.total_tokens, \
        cached_tokens = usage_daily.cached_tokens + excluded.cached_tokens, \
        reasoning_tokens = usage_daily.reasoning_tokens + excluded.reasoning_tokens, \
        failed_tokens = usage_daily.failed_tokens + excluded.failed_tokens, \
        estimated_tokens = usage_daily.estimated_tokens + excluded.estimated_tokens, \
        cost_nano_usd = usage_daily.cost_nano_usd + excluded.cost_nano_usd, \
        unpriced_requests = usage_daily.unpriced_requests + excluded.unpriced_requests";

    fn bind_values<'b>(&'b self, values: &mut Values<'_, '_, 'b>) -> QueryResult<()> {
        let t = &self.totals;
        values.bind::<Date, _>(&self.day)?;
        values.bind::<BigInt, _>(&self.user_id)?;
        values.bind::<Text, _>(&self.model)?;
        values.bind::<Text, _>(&self.project_id)?;
        values.bind::<Text, _>(&self.provider)?;
        for value in [
            &t.requests,
            &t.successful_requests,
            &t.failed_requests,
            &t.estimated_requests,
            &t.input_tokens,
            &t.output_tokens,
            &t.total_tokens,
            &t.cached_tokens,
            &t.reasoning_tokens,
            &t.failed_tokens,
            &t.estimated_tokens,
            &t.cost_nano_usd,
            &t.unpriced_requests,
        ] {
            values.bind::<BigInt, _>(value)?;
        }
        Ok(())
    }
}

/// One statement whatever the round's size: a fixed text of 18 array parameters is
/// parsed and planned once, where a `VALUES` list would bind 18 parameters per row.
fn upsert_postgres(pg: &mut PgConnection, sums: &BTreeMap<Key<'_>, Totals>) -> Result<()> {
    fn column<'s, T>(
        sums: &'s BTreeMap<Key<'s>, Totals>,
        f: impl Fn(&Key<'s>, &Totals) -> T,
    ) -> Vec<T> {
        sums.iter().map(|(k, t)| f(k, t)).collect()
    }
    diesel::sql_query(
        "INSERT INTO usage_daily AS d (day, user_id, model, project_id, provider, requests, \
         successful_requests, failed_requests, estimated_requests, input_tokens, \
         output_tokens, total_tokens, cached_tokens, reasoning_tokens, failed_tokens, \
         estimated_tokens, cost_nano_usd, unpriced_requests) \
         SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
         $15, $16, $17, $18) \
         ON CONFLICT (day, user_id, model, project_id, provider) DO UPDATE SET \
         requests = d.requests + EXCLUDED.requests, \
         successful_requests = d.successful_requests + EXCLUDED.successful_requests, \
         failed_requests = d.failed_requests + EXCLUDED.failed_requests, \
         estimated_requests = d.estimated_requests + EXCLUDED.estimated_requests, \
         input_tokens = d.input_tokens + EXCLUDED.input_tokens, \
         output_tokens = d.output_tokens + EXCLUDED.output_tokens, \
         total_tokens = d.total_tokens + EXCLUDED.total_tokens, \
         cached_tokens = d.cached_tokens + EXCLUDED.cached_tokens, \
         reasoning_tokens = d.reasoning_tokens + EXCLUDED.reasoning_tokens, \
         failed_tokens = d.failed_tokens + EXCLUDED.failed_tokens, \
         estimated_tokens = d.estimated_tokens + EXCLUDED.estimated_tokens, \
         cost_nano_usd = d.cost_nano_usd + EXCLUDED.cost_nano_usd, \
         unpriced_requests = d.unpriced_requests + EXCLUDED.unpriced_requests",
    )
    .bind::<Array<Date>, _>(column(sums, |k, _| k.0))
    .bind::<Array<BigInt>, _>(column(sums, |k, _| k.1))
    .bind::<Array<Text>, _>(column(sums, |k, _| k.2))
    .bind::<Array<Text>, _>(column(sums, |k, _| k.3))
    .bind::<Array<Text>, _>(column(sums, |k, _| k.4))
    .bind::<Array<BigInt>, _>(column(sums, |_, t| t.requests))
    .bind::<Array<BigInt>, _>(column(sums, |_, t| t.successful_requests))
    .bind::<Array<BigInt>, _>(column(sums, |_, t| t.failed_requests))
    .bind::<Array<BigInt>, _>(column(sums, |_, t| t.estimated_requests))
    .bind::<Array<BigInt>, _>(column(sums, |_, t| t.input_tokens))
    .bind::<Array<BigInt>, _>(column(sums, |_, t| t.output_tokens))
    .bind::<Array<BigInt>, _>(column(sums, |_, t| t.total_tokens))
    .bind::<Array<BigInt>, _>(column(sums, |_, t| t.cached_tokens))
    .bind::<Array<BigInt>, _>(column(sums, |_, t| t.reasoning_tokens))
    .bind::<Array<BigInt>, _>(column(sums, |_, t| t.failed_tokens))
    .bind::<Array<BigInt>, _>(column(sums, |_, t| t.estimated_tokens))
    .bind::<Array<BigInt>, _>(column(sums, |_, t| t.cost_nano_usd))
    .bind::<Array<BigInt>, _>(column(sums, |_, t| t.unpriced_requests))
    .execute(pg)?;
    Ok(())
}
