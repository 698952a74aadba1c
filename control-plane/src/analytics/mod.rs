//! Usage analytics: requests, tokens and cost summed over a range of UTC days and
//! grouped by day, model, user, project or team — for the whole organisation or one
//! user.
//!
//! The numbers come from `usage_daily` (see [`rollup`]), a per-day rollup of
//! `usage_records` that ingestion maintains in the same transaction as it inserts the
//! records, so a query reads one row per (day, user, model, project, provider) instead
//! of one per request, and always agrees with the records. Records count on the day
//! the control plane ingested them (`created_at`, the clock quotas are charged by).
//! Costs are summed in nano-USD (exact integers); records without a price are counted
//! as `unpriced_requests`, never as free. Besides volumes, every group carries what
//! the efficiency measures need (`docs/efficiency.md`): successful, failed and
//! estimated requests, the tokens of the failed and of the estimated ones, cached and
//! reasoning tokens.

pub mod rollup;

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, TimeDelta};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Nullable, Text};

use crate::db::schema::{usage_daily, users};
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
/// Accepted years of `from` and `to`: nothing was recorded before 1970, and four-digit
/// years keep dates in the form SQLite compares as text.
const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

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
    /// Team, by current membership: a member of several teams counts in each, and
    /// users in no team form the group with no key.
    Team,
}

impl GroupBy {
    /// The name used in query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Model => "model",
            Self::User => "user",
            Self::Project => "project",
            Self::Team => "team",
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
            "team" => Ok(Self::Team),
            _ => Err(Error::invalid(
                "group_by",
                format!("expected day, model, user, project or team, got {s:?}"),
            )),
        }
    }
}

/// An inclusive range of whole UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    /// First day.
    pub from: NaiveDate,
    /// Last day (inclusive).
    pub to: NaiveDate,
}

impl DayRange {
    /// Parses `from`/`to` (`YYYY-MM-DD`, 1970-01-01 to 9999-12-31, both optional: `to`
    /// defaults to `today`, `from` to 29 days before `to`). Errors name the parameter.
    pub fn parse(from: Option<&str>, to: Option<&str>, today: NaiveDate) -> Result<Self> {
        let day = |field: &'static str, raw: &str| {
            let bad = || Error::invalid(field, format!("expected a date YYYY-MM-DD, got {raw:?}"));
            let trimmed = raw.trim();
            // chrono alone would accept `+12345-01-01` or `2026-1-5`.
            if trimmed.len() != 10 {
                return Err(bad());
            }
            let date = NaiveDate::parse_from_str(trimmed, "%Y-%m-%d").map_err(|_| bad())?;
            if !YEARS.contains(&date.year()) {
                return Err(Error::invalid(
                    field,
                    "must be between 1970-01-01 and 9999-12-31",
                ));
            }
            Ok(date)
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

    /// The days of the range, in order.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> {
        let to = self.to;
        self.from.iter_days().take_while(move |d| *d <= to)
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

/// The sums over a set of usage records — the value columns of `usage_daily`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, QueryableByName, Insertable)]
#[diesel(table_name = usage_daily, treat_none_as_default_value = false)]
pub struct Totals {
    /// Requests (usage records).
    pub requests: i64,
    /// Requests answered with a 2xx status.
    pub successful_requests: i64,
    /// Requests with any other status (0 included: the client got no answer).
    pub failed_requests: i64,
    /// Requests whose usage the filter estimated (a stream cut before the provider
    /// reported usage).
    pub estimated_requests: i64,
    /// Input tokens (cached included).
    pub input_tokens: i64,
    /// Output tokens (reasoning included).
    pub output_tokens: i64,
    /// Total tokens, what quotas count.
    pub total_tokens: i64,
    /// Cached input tokens.
    pub cached_tokens: i64,
    /// Reasoning output tokens.
    pub reasoning_tokens: i64,
    /// Total tokens of the failed requests.
    pub failed_tokens: i64,
    /// Total tokens of the estimated requests.
    pub estimated_tokens: i64,
    /// Cost of the priced records, nano-USD.
    pub cost_nano_usd: i64,
    /// Records of models without a price (not in the cost).
    pub unpriced_requests: i64,
}

/// The value columns of `usage_daily`, in [`Totals`] order.
const TOTAL_COLUMNS: [&str; 13] = [
    "requests",
    "successful_requests",
    "failed_requests",
    "estimated_requests",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "failed_tokens",
    "estimated_tokens",
    "cost_nano_usd",
    "unpriced_requests",
];

/// Sums over one group.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct UsageRow {
    /// The group: day (`YYYY-MM-DD`), model, user id, project id or team id; `None`
    /// for records without a project, or of users in no team.
    #[diesel(sql_type = Nullable<Text>)]
    pub key: Option<String>,
    /// The user's name (grouping by user) or the team's name (grouping by team).
    #[diesel(sql_type = Nullable<Text>)]
    pub label: Option<String>,
    /// The user's email (grouping by user).
    #[diesel(sql_type = Nullable<Text>)]
    pub email: Option<String>,
    /// The sums.
    #[diesel(embed)]
    pub totals: Totals,
}

impl UsageRow {
    fn empty(key: String) -> Self {
        Self {
            key: Some(key),
            label: None,
            email: None,
            totals: Totals::default(),
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
    pub totals: Totals,
}

#[derive(QueryableByName)]
struct SummaryRow {
    #[diesel(sql_type = BigInt)]
    active_users: i64,
    #[diesel(embed)]
    totals: Totals,
}

/// `CAST(COALESCE(SUM(<prefix>c), 0) AS BIGINT) AS c, …` over the value columns
/// (PostgreSQL's SUM of BIGINT is NUMERIC, and NULL over no rows).
fn sums(prefix: &str) -> String {
    TOTAL_COLUMNS
        .iter()
        .map(|c| format!("CAST(COALESCE(SUM({prefix}{c}), 0) AS BIGINT) AS {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `<prefix>c, …` over the value columns.
fn columns(prefix: &str) -> String {
    TOTAL_COLUMNS
        .iter()
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `day >= from AND day <= to [AND user_id = user]` with the backend's placeholders.
fn filter(conn: &DbConnection, user: Option<i64>) -> String {
    let (from, to, user_id) = match conn {
        DbConnection::Sqlite(_) => ("?", "?", "?"),
        DbConnection::Postgres(_) => ("$1", "$2", "$3"),
    };
    match user {
        Some(_) => format!("day >= {from} AND day <= {to} AND user_id = {user_id}"),
        None => format!("day >= {from} AND day <= {to}"),
    }
}

/// Loads `sql` (binding the range's first and last day and the optional user) on
/// either backend.
fn load<T>(conn: &mut DbConnection, sql: &str, range: DayRange, user: Option<i64>) -> Result<Vec<T>>
where
    T: QueryableByName<diesel::sqlite::Sqlite> + QueryableByName<diesel::pg::Pg> + 'static,
{
    let query = diesel::sql_query(sql)
        .bind::<Date, _>(range.from)
        .bind::<Date, _>(range.to);
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
    let filter = filter(conn, user);
    let limit = limit.clamp(1, MAX_LIMIT);
    let no_label = "CAST(NULL AS TEXT) AS label, CAST(NULL AS TEXT) AS email";
    let sql = match group {
        GroupBy::Day => {
            // SQLite stores a DATE as its `YYYY-MM-DD` text already.
            let key = match conn {
                DbConnection::Sqlite(_) => "day",
                DbConnection::Postgres(_) => "to_char(day, 'YYYY-MM-DD')",
            };
            format!(
                "SELECT {key} AS key, {no_label}, {sums} FROM usage_daily WHERE {filter} \
                 GROUP BY day ORDER BY day",
                sums = sums("")
            )
        }
        GroupBy::Model => format!(
            "SELECT model AS key, {no_label}, {sums} FROM usage_daily WHERE {filter} \
             GROUP BY model ORDER BY total_tokens DESC, model LIMIT {limit}",
            sums = sums("")
        ),
        // '' (stored for requests without a project) sorts first on both backends,
        // where NULL would not.
        GroupBy::Project => format!(
            "SELECT NULLIF(project_id, '') AS key, {no_label}, {sums} FROM usage_daily \
             WHERE {filter} GROUP BY project_id \
             ORDER BY total_tokens DESC, project_id LIMIT {limit}",
            sums = sums("")
        ),
        GroupBy::User => format!(
            "SELECT CAST(g.user_id AS TEXT) AS key, u.name AS label, u.email AS email, {cols} \
             FROM (SELECT user_id, {sums} FROM usage_daily WHERE {filter} GROUP BY user_id) g \
             JOIN users u ON u.id = g.user_id \
             ORDER BY g.total_tokens DESC, g.user_id LIMIT {limit}",
            cols = columns("g."),
            sums = sums("")
        ),
        // Per user first (one row each), then onto the user's current teams: a member
        // of several teams counts in each; users in no team form the NULL group.
        GroupBy::Team => format!(
            "SELECT CAST(m.team_id AS TEXT) AS key, m.name AS label, \
                    CAST(NULL AS TEXT) AS email, {team_sums} \
             FROM (SELECT user_id, {sums} FROM usage_daily WHERE {filter} GROUP BY user_id) g \
             LEFT JOIN (SELECT tm.user_id, t.id AS team_id, t.name FROM team_members tm \
                        JOIN teams t ON t.id = tm.team_id WHERE t.deleted_at IS NULL) m \
                    ON m.user_id = g.user_id \
             GROUP BY m.team_id, m.name \
             ORDER BY total_tokens DESC, COALESCE(m.team_id, 0) LIMIT {limit}",
            team_sums = sums("g."),
            sums = sums("")
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
    for day in range.days() {
        let key = day.format("%Y-%m-%d").to_string();
        match rows.peek() {
            Some(row) if row.key.as_deref() == Some(key.as_str()) => {
                if let Some(row) = rows.next() {
                    out.push(row);
                }
            }
            _ => out.push(UsageRow::empty(key)),
        }
    }
    out
}

/// Totals over `range`, for everyone or one user.
pub fn summary(conn: &mut DbConnection, range: DayRange, user: Option<i64>) -> Result<Summary> {
    let sql = format!(
        "SELECT CAST(COUNT(DISTINCT user_id) AS BIGINT) AS active_users, {sums} \
         FROM usage_daily WHERE {filter}",
        sums = sums(""),
        filter = filter(conn, user)
    );
    let row = load::<SummaryRow>(conn, &sql, range, user)?
        .pop()
        .ok_or(Error::NotFound("usage totals"))?;
    let users = match user {
        Some(_) => 1,
        None => users::table
            .filter(users::deleted_at.is_null())
            .count()
            .get_result(conn)?,
    };
    Ok(Summary {
        users,
        active_users: row.active_users,
        totals: row.totals,
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
        assert_eq!(
            r.days().collect::<Vec<_>>(),
            [d("2026-11-29"), d("2026-11-30")]
        );
        let field = |e: Error| match e {
            Error::Invalid { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        };
        for (from, to, bad) in [
            (Some("yesterday"), None, "from"),
            (None, Some("2026-13-01"), "to"),
            (Some("2026-12-01"), Some("2026-11-01"), "from"),
            (Some("2025-01-01"), Some("2026-11-01"), "from"),
            (Some("+2026-11-01"), None, "from"),
            (Some("2026-11-1"), None, "from"),
            (None, Some("1969-12-31"), "to"),
            (Some("0001-01-01"), Some("2026-11-01"), "from"),
        ] {
            assert_eq!(
                field(DayRange::parse(from, to, today).unwrap_err()),
                bad,
                "{from:?} {to:?}"
            );
        }
        assert!(DayRange::parse(Some("2025-11-30"), Some("2026-11-30"), today).is_ok());
        assert!(DayRange::parse(Some("9999-12-31"), Some("9999-12-31"), today).is_ok());
        assert_eq!(field("week".parse::<GroupBy>().unwrap_err()), "group_by");
        assert_eq!("team".parse::<GroupBy>().unwrap(), GroupBy::Team);
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
        row.totals.requests = 2;
        let rows = every_day(range, vec![row.clone()]);
        let keys: Vec<_> = rows.iter().map(|r| r.key.clone().unwrap()).collect();
        assert_eq!(keys, ["2026-11-28", "2026-11-29", "2026-11-30"]);
        assert_eq!(rows[1], row);
        assert_eq!(rows[0].totals.requests, 0);
    }
}
