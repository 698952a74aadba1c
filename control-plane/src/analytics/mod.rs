//! Usage analytics: tokens, requests and cost from `usage_records`, summed over a
//! range of UTC days and grouped by day, model, user or project — for the whole
//! organisation or one user.
//!
//! Records count on the day the control plane ingested them (`created_at`, the clock
//! quotas are charged by), so these numbers agree with the quota numbers. Costs are
//! summed in nano-USD (exact integers) and records without a price are counted as
//! `unpriced_requests`, never as free. The queries read only the covering index of
//! migration `2026-11-30-100000_analytics_indexes` (org-wide) or the
//! `(user_id, created_at)` index (one user). Grouping by team comes with teams.

use std::fmt;
use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};

use crate::db::schema::users;
use crate::db::DbConnection;
use crate::error::{Error, Result};

/// Longest accepted range, in days (a year and a leap day).
pub const MAX_RANGE_DAYS: i64 = 366;
/// Default range when `from` is not given: the last 30 days up to `to`.
pub const DEFAULT_RANGE_DAYS: i64 = 30;
/// Default and largest number of groups returned (days are never cut).
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest accepted `limit`.
pub const MAX_LIMIT: i64 = 1000;

/// How records are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// UTC calendar day of ingestion; every day of the range is present (zeros too).
    Day,
    /// Model name as reported.
    Model,
    /// User (with name and email).
    User,
    /// `X-Project-ID` (records without one form the group with no key).
    Project,
}

impl GroupBy {
    /// The name used in query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Model => "model",
            Self::User => "user",
            Self::Project => "project",
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GroupBy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "day" => Ok(Self::Day),
            "model" => Ok(Self::Model),
            "user" => Ok(Self::User),
            "project" => Ok(Self::Project),
            _ => Err(Error::invalid(
                "group_by",
                format!("expected day, model, user or project, got {s:?}"),
            )),
        }
    }
}

/// An inclusive range of UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    /// First day.
    pub from: NaiveDate,
    /// Last day (inclusive).
    pub to: NaiveDate,
}

impl DayRange {
    /// Parses `from`/`to` (`YYYY-MM-DD`, both optional: `to` defaults to `today`, `from`
    /// to 29 days before `to`). Errors name the parameter.
    pub fn parse(from: Option<&str>, to: Option<&str>, today: NaiveDate) -> Result<Self> {
        let day = |field: &'static str, raw: &str| {
            NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d").map_err(|_| {
                Error::invalid(field, format!("expected a date YYYY-MM-DD, got {raw:?}"))
            })
        };
        let to = match to {
            Some(raw) => day("to", raw)?,
            None => today,
        };
        let from = match from {
            Some(raw) => day("from", raw)?,
            None => to - TimeDelta::days(DEFAULT_RANGE_DAYS - 1),
        };
        if from > to {
            return Err(Error::invalid("from", "must not be after `to`"));
        }
        if (to - from).num_days() + 1 > MAX_RANGE_DAYS {
            return Err(Error::invalid(
                "from",
                format!("the range may span at most {MAX_RANGE_DAYS} days"),
            ));
        }
        Ok(Self { from, to })
    }

    /// The first instant of the range.
    pub fn start(&self) -> NaiveDateTime {
        self.from.and_time(chrono::NaiveTime::MIN)
    }

    /// The first instant after the range.
    pub fn end(&self) -> NaiveDateTime {
        (self.to + TimeDelta::days(1)).and_time(chrono::NaiveTime::MIN)
    }
}

/// Parses a `limit` (1–[`MAX_LIMIT`], default [`DEFAULT_LIMIT`]).
pub fn parse_limit(raw: Option<&str>) -> Result<i64> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.trim().parse::<i64>() {
        Ok(v) if (1..=MAX_LIMIT).contains(&v) => Ok(v),
        _ => Err(Error::invalid(
            "limit",
            format!("expected a whole number from 1 to {MAX_LIMIT}, got {raw:?}"),
        )),
    }
}

/// Sums over one group.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct UsageRow {
    /// The group: day (`YYYY-MM-DD`), model, user id or project id; `None` for records
    /// without a project.
    #[diesel(sql_type = Nullable<Text>)]
    pub key: Option<String>,
    /// The user's name (grouping by user).
    #[diesel(sql_type = Nullable<Text>)]
    pub label: Option<String>,
    /// The user's email (grouping by user).
    #[diesel(sql_type = Nullable<Text>)]
    pub email: Option<String>,
    /// Requests (usage records).
    #[diesel(sql_type = BigInt)]
    pub requests: i64,
    /// Input tokens (cached included).
    #[diesel(sql_type = BigInt)]
    pub input_tokens: i64,
    /// Output tokens (reasoning included).
    #[diesel(sql_type = BigInt)]
    pub output_tokens: i64,
    /// Total tokens, what quotas count.
    #[diesel(sql_type = BigInt)]
    pub total_tokens: i64,
    /// Cost of the priced records, nano-USD.
    #[diesel(sql_type = BigInt)]
    pub cost_nano_usd: i64,
    /// Records of models without a price (not in the cost).
    #[diesel(sql_type = BigInt)]
    pub unpriced_requests: i64,
}

impl UsageRow {
    fn empty(key: String) -> Self {
        Self {
            key: Some(key),
            label: None,
            email: None,
            requests: 0,
            input_tokens: 0,
            output_tokens: 0,
            total_tokens: 0,
            cost_nano_usd: 0,
            unpriced_requests: 0,
        }
    }
}

/// Totals over a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Users (not deleted), whatever the range; 1 for a one-user summary.
    pub users: i64,
    /// Users with at least one record in the range.
    pub active_users: i64,
    /// The sums.
    pub totals: UsageRow,
}

#[derive(QueryableByName)]
struct ActiveUsers {
    #[diesel(sql_type = BigInt)]
    active_users: i64,
}

const SUMS: &str = "CAST(COUNT(*) AS BIGINT) AS requests, \
    CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
    CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
    CAST(COALESCE(SUM(total_tokens), 0) AS BIGINT) AS total_tokens, \
    CAST(COALESCE(SUM(cost_nano_usd), 0) AS BIGINT) AS cost_nano_usd, \
    CAST(COALESCE(SUM(CASE WHEN unpriced THEN 1 ELSE 0 END), 0) AS BIGINT) AS unpriced_requests";

/// Which backend's SQL to write.
#[derive(Clone, Copy)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn of(conn: &DbConnection) -> Self {
        match conn {
            DbConnection::Sqlite(_) => Self::Sqlite,
            DbConnection::Postgres(_) => Self::Postgres,
        }
    }

    /// The `n`th bind placeholder (1-based).
    fn param(self, n: usize) -> String {
        match self {
            Self::Sqlite => "?".to_owned(),
            Self::Postgres => format!("${n}"),
        }
    }

    /// `(grouping expression, its key as YYYY-MM-DD)` of a record's UTC day.
    fn day_of_created_at(self) -> (&'static str, &'static str) {
        match self {
            // diesel stores SQLite timestamps as `YYYY-MM-DD HH:MM:SS[.f]` text.
            Self::Sqlite => ("substr(created_at, 1, 10)", "substr(created_at, 1, 10)"),
            // Group by the cheap cast; format once per group, not once per record.
            Self::Postgres => (
                "created_at::date",
                "to_char(created_at::date, 'YYYY-MM-DD')",
            ),
        }
    }

    fn filter(self, user: Option<i64>) -> String {
        let mut sql = format!(
            "created_at >= {} AND created_at < {}",
            self.param(1),
            self.param(2)
        );
        if user.is_some() {
            sql.push_str(&format!(" AND user_id = {}", self.param(3)));
        }
        sql
    }
}

/// Loads `sql` (binding the range start, end and the optional user) on either backend.
fn load<T>(conn: &mut DbConnection, sql: &str, range: DayRange, user: Option<i64>) -> Result<Vec<T>>
where
    T: QueryableByName<diesel::sqlite::Sqlite> + QueryableByName<diesel::pg::Pg> + 'static,
{
    let query = diesel::sql_query(sql)
        .bind::<Timestamp, _>(range.start())
        .bind::<Timestamp, _>(range.end());
    let rows = match (conn, user) {
        (DbConnection::Sqlite(c), None) => query.load(c)?,
        (DbConnection::Sqlite(c), Some(u)) => query.bind::<BigInt, _>(u).load(c)?,
        (DbConnection::Postgres(c), None) => query.load(c)?,
        (DbConnection::Postgres(c), Some(u)) => query.bind::<BigInt, _>(u).load(c)?,
    };
    Ok(rows)
}

/// Sums per group over `range`, for everyone (`user = None`) or one user. Days come
/// in order with every day present; other groups come largest (total tokens) first,
/// at most `limit` of them.
pub fn usage(
    conn: &mut DbConnection,
    range: DayRange,
    user: Option<i64>,
    group: GroupBy,
    limit: i64,
) -> Result<Vec<UsageRow>> {
    let dialect = Dialect::of(conn);
    let filter = dialect.filter(user);
    let limit = limit.clamp(1, MAX_LIMIT);
    let sql = match group {
        GroupBy::Day => {
            let (day, key) = dialect.day_of_created_at();
            format!(
                "SELECT {key} AS key, CAST(NULL AS TEXT) AS label, CAST(NULL AS TEXT) AS email, {SUMS} \
                 FROM usage_records WHERE {filter} GROUP BY {day} ORDER BY key"
            )
        }
        GroupBy::Model => format!(
            "SELECT model AS key, CAST(NULL AS TEXT) AS label, CAST(NULL AS TEXT) AS email, {SUMS} \
             FROM usage_records WHERE {filter} GROUP BY model \
             ORDER BY total_tokens DESC, key LIMIT {limit}"
        ),
        GroupBy::Project => format!(
            "SELECT project_id AS key, CAST(NULL AS TEXT) AS label, CAST(NULL AS TEXT) AS email, {SUMS} \
             FROM usage_records WHERE {filter} GROUP BY project_id \
             ORDER BY total_tokens DESC, key LIMIT {limit}"
        ),
        GroupBy::User => format!(
            "SELECT CAST(g.user_id AS TEXT) AS key, u.name AS label, u.email AS email, \
                    g.requests, g.input_tokens, g.output_tokens, g.total_tokens, \
                    g.cost_nano_usd, g.unpriced_requests \
             FROM (SELECT user_id, {SUMS} FROM usage_records WHERE {filter} GROUP BY user_id) g \
             JOIN users u ON u.id = g.user_id \
             ORDER BY g.total_tokens DESC, g.user_id LIMIT {limit}"
        ),
    };
    let rows: Vec<UsageRow> = load(conn, &sql, range, user)?;
    if group == GroupBy::Day {
        return Ok(every_day(range, rows));
    }
    Ok(rows)
}

/// Fills the days without records with zeros, so a chart's x-axis is the range.
fn every_day(range: DayRange, rows: Vec<UsageRow>) -> Vec<UsageRow> {
    let mut rows = rows.into_iter().peekable();
    let mut out = Vec::new();
    let mut day = range.from;
    while day <= range.to {
        let key = day.format("%Y-%m-%d").to_string();
        match rows.peek() {
            Some(row) if row.key.as_deref() == Some(key.as_str()) => {
                if let Some(row) = rows.next() {
                    out.push(row);
                }
            }
            _ => out.push(UsageRow::empty(key)),
        }
        day += TimeDelta::days(1);
    }
    out
}

/// Totals over `range`, for everyone or one user.
pub fn summary(conn: &mut DbConnection, range: DayRange, user: Option<i64>) -> Result<Summary> {
    let dialect = Dialect::of(conn);
    let filter = dialect.filter(user);
    let sql = format!(
        "SELECT CAST(NULL AS TEXT) AS key, CAST(NULL AS TEXT) AS label, CAST(NULL AS TEXT) AS email, \
         {SUMS} FROM usage_records WHERE {filter}"
    );
    let totals = load::<UsageRow>(conn, &sql, range, user)?
        .pop()
        .ok_or(Error::NotFound("usage totals"))?;
    let active_users = if user.is_some() {
        i64::from(totals.requests > 0)
    } else {
        let sql = format!(
            "SELECT CAST(COUNT(DISTINCT user_id) AS BIGINT) AS active_users \
             FROM usage_records WHERE {filter}"
        );
        load::<ActiveUsers>(conn, &sql, range, None)?
            .pop()
            .map_or(0, |r| r.active_users)
    };
    let users = match user {
        Some(_) => 1,
        None => users::table
            .filter(users::deleted_at.is_null())
            .count()
            .get_result(conn)?,
    };
    Ok(Summary {
        users,
        active_users,
        totals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn ranges_default_and_name_the_bad_parameter() {
        let today = d("2026-11-30");
        assert_eq!(
            DayRange::parse(None, None, today).unwrap(),
            DayRange {
                from: d("2026-11-01"),
                to: today
            }
        );
        let r = DayRange::parse(Some("2026-11-29"), Some("2026-11-30"), today).unwrap();
        assert_eq!(r.start().to_string(), "2026-11-29 00:00:00");
        assert_eq!(r.end().to_string(), "2026-12-01 00:00:00");
        let field = |e: Error| match e {
            Error::Invalid { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(
            field(DayRange::parse(Some("yesterday"), None, today).unwrap_err()),
            "from"
        );
        assert_eq!(
            field(DayRange::parse(None, Some("2026-13-01"), today).unwrap_err()),
            "to"
        );
        assert_eq!(
            field(DayRange::parse(Some("2026-12-01"), Some("2026-11-01"), today).unwrap_err()),
            "from"
        );
        assert_eq!(
            field(DayRange::parse(Some("2025-01-01"), Some("2026-11-01"), today).unwrap_err()),
            "from"
        );
        assert!(DayRange::parse(Some("2025-11-30"), Some("2026-11-30"), today).is_ok());
        assert_eq!(field("week".parse::<GroupBy>().unwrap_err()), "group_by");
        assert_eq!(field(parse_limit(Some("0")).unwrap_err()), "limit");
        assert_eq!(parse_limit(None).unwrap(), DEFAULT_LIMIT);
    }

    #[test]
    fn missing_days_are_zero() {
        let range = DayRange {
            from: d("2026-11-28"),
            to: d("2026-11-30"),
        };
        let mut row = UsageRow::empty("2026-11-29".into());
        row.requests = 2;
        let rows = every_day(range, vec![row.clone()]);
        let keys: Vec<_> = rows.iter().map(|r| r.key.clone().unwrap()).collect();
        assert_eq!(keys, ["2026-11-28", "2026-11-29", "2026-11-30"]);
        assert_eq!(rows[1], row);
        assert_eq!(rows[0].requests, 0);
    }
}
