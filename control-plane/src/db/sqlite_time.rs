//! Timestamps bound on SQLite without chrono's formatter.
//!
//! diesel stores a `Timestamp` on SQLite as text in chrono's `%F %T%.f` format, and
//! renders each value with `format(…).to_string()`, which interprets the format
//! string anew every time; a usage round binds three per record. [`render`] writes
//! the same text directly, and [`SqliteTimestamp`] binds text rendered once for many
//! rows. The text must be exactly diesel's: SQLite compares timestamps as text.

use std::fmt::Write as _;

use chrono::{Datelike, NaiveDateTime, Timelike};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Timestamp;
use diesel::sqlite::Sqlite;

/// diesel's text format for a SQLite `Timestamp`.
const DIESEL_FORMAT: &str = "%F %T%.f";

/// A `Timestamp` value already rendered by [`render`].
#[derive(Debug, Clone, Copy, diesel::expression::AsExpression)]
#[diesel(sql_type = Timestamp)]
pub struct SqliteTimestamp<'a>(pub &'a str);

impl ToSql<Timestamp, Sqlite> for SqliteTimestamp<'_> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0);
        Ok(IsNull::No)
    }
}

/// `t` as diesel writes it on SQLite (`2026-11-30 12:00:00.250`).
pub fn render(t: NaiveDateTime) -> String {
    let nanos = t.nanosecond();
    let year = t.year();
    // Years that need a sign and leap seconds are rare: chrono renders those.
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return t.format(DIESEL_FORMAT).to_string();
    }
    let mut s = String::with_capacity(29);
    push_digits(&mut s, year.unsigned_abs(), 4);
    s.push('-');
    push_digits(&mut s, t.month(), 2);
    s.push('-');
    push_digits(&mut s, t.day(), 2);
    s.push(' ');
    push_digits(&mut s, t.hour(), 2);
    s.push(':');
    push_digits(&mut s, t.minute(), 2);
    s.push(':');
    push_digits(&mut s, t.second(), 2);
    // `%.f`: nothing for whole seconds, else milli-, micro- or nanoseconds, whichever
    // is the shortest exact form.
    if nanos != 0 {
        s.push('.');
        if nanos % 1_000_000 == 0 {
            push_digits(&mut s, nanos / 1_000_000, 3);
        } else if nanos % 1_000 == 0 {
            push_digits(&mut s, nanos / 1_000, 6);
        } else {
            push_digits(&mut s, nanos, 9);
        }
    }
    s
}

/// Appends `value` zero-padded to `width` digits.
fn push_digits(s: &mut String, value: u32, width: usize) {
    let _ = write!(s, "{value:0width$}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, NaiveDate};

    #[test]
    fn renders_exactly_as_diesel_does() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
        let mut times = vec![
            chrono::DateTime::UNIX_EPOCH.naive_utc(),
            day(2026, 11, 30).and_hms_opt(0, 0, 0).unwrap_or_default(),
            day(2026, 1, 2)
                .and_hms_milli_opt(3, 4, 5, 6)
                .unwrap_or_default(),
            day(2026, 12, 31)
                .and_hms_micro_opt(23, 59, 59, 999_999)
                .unwrap_or_default(),
            day(999, 7, 8)
                .and_hms_nano_opt(9, 10, 11, 12)
                .unwrap_or_default(),
            day(2026, 6, 1)
                .and_hms_nano_opt(9, 10, 11, 120_000_000)
                .unwrap_or_default(),
            day(2026, 6, 1)
                .and_hms_nano_opt(9, 10, 11, 1_000)
                .unwrap_or_default(),
            day(2026, 6, 30)
                .and_hms_milli_opt(23, 59, 59, 1_500)
                .unwrap_or_default(),
            day(-44, 3, 15).and_hms_opt(12, 0, 0).unwrap_or_default(),
            day(10_000, 1, 1).and_hms_opt(0, 0, 0).unwrap_or_default(),
        ];
        // Millisecond timestamps as the filter sends them.
        for ms in (0..2_000_000_000_000_i64).step_by(7_777_777_777) {
            times.extend(DateTime::from_timestamp_millis(ms).map(|t| t.naive_utc()));
        }
        for t in times {
            assert_eq!(render(t), t.format(DIESEL_FORMAT).to_string(), "{t:?}");
        }
    }
}
