//! Quota periods: UTC calendar months, ISO weeks (Monday first), days, or never.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime};

/// How often usage resets (`QUOTA_PERIOD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaPeriod {
    /// Calendar month, UTC (the default).
    Monthly,
    /// Calendar week starting Monday 00:00 UTC.
    Weekly,
    /// Calendar day, UTC.
    Daily,
    /// Usage never resets.
    Never,
}

/// The period containing an instant: `[start, end)`; `end` is `None` for `never`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeriodBounds {
    /// First instant of the period; usage rows are keyed by it.
    pub start: NaiveDateTime,
    /// First instant of the next period.
    pub end: Option<NaiveDateTime>,
}

impl PeriodBounds {
    /// Whole seconds from `now` until the period resets; `0` when it never does.
    pub fn seconds_until_reset(&self, now: NaiveDateTime) -> i64 {
        self.end.map_or(0, |end| {
            let delta = end - now;
            // Round up so a client told to retry after N seconds lands in the new period.
            let secs = delta.num_seconds();
            if delta > Duration::seconds(secs) {
                secs + 1
            } else {
                secs
            }
            .max(0)
        })
    }
}

impl QuotaPeriod {
    /// The period containing `now`.
    pub fn bounds(self, now: NaiveDateTime) -> PeriodBounds {
        let date = now.date();
        let (start, end) = match self {
            Self::Never => {
                return PeriodBounds {
                    start: epoch(),
                    end: None,
                }
            }
            Self::Daily => (date, date.succ_opt()),
            Self::Weekly => {
                let monday =
                    date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
                (monday, monday.checked_add_signed(Duration::days(7)))
            }
            Self::Monthly => {
                let first = date.with_day(1).unwrap_or(date);
                let next = if first.month() == 12 {
                    NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
                };
                (first, next)
            }
        };
        PeriodBounds {
            start: start.and_time(NaiveTime::MIN),
            end: end.map(|d| d.and_time(NaiveTime::MIN)),
        }
    }

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Monthly => "monthly",
            Self::Weekly => "weekly",
            Self::Daily => "daily",
            Self::Never => "never",
        }
    }
}

fn epoch() -> NaiveDateTime {
    chrono::DateTime::UNIX_EPOCH.naive_utc()
}

impl FromStr for QuotaPeriod {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.to_ascii_lowercase().as_str() {
            "monthly" => Ok(Self::Monthly),
            "weekly" => Ok(Self::Weekly),
            "daily" => Ok(Self::Daily),
            "never" => Ok(Self::Never),
            _ => Err(format!(
                "expected monthly, weekly, daily or never, got {raw:?}"
            )),
        }
    }
}

impl fmt::Display for QuotaPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn monthly_is_the_calendar_month() {
        let b = QuotaPeriod::Monthly.bounds(at("2026-02-14 13:00:00"));
        assert_eq!(b.start, at("2026-02-01 00:00:00"));
        assert_eq!(b.end, Some(at("2026-03-01 00:00:00")));
        let dec = QuotaPeriod::Monthly.bounds(at("2026-12-31 23:59:59"));
        assert_eq!(dec.start, at("2026-12-01 00:00:00"));
        assert_eq!(dec.end, Some(at("2027-01-01 00:00:00")));
        assert_eq!(dec.seconds_until_reset(at("2026-12-31 23:59:59")), 1);
    }

    #[test]
    fn weekly_starts_monday() {
        // 2026-11-29 is a Sunday; 2026-11-30 a Monday.
        let sunday = QuotaPeriod::Weekly.bounds(at("2026-11-29 23:00:00"));
        assert_eq!(sunday.start, at("2026-11-23 00:00:00"));
        assert_eq!(sunday.end, Some(at("2026-11-30 00:00:00")));
        let monday = QuotaPeriod::Weekly.bounds(at("2026-11-30 00:00:00"));
        assert_eq!(monday.start, at("2026-11-30 00:00:00"));
        assert_eq!(
            monday.seconds_until_reset(at("2026-11-30 00:00:00")),
            7 * 86_400
        );
    }

    #[test]
    fn daily_and_never() {
        let d = QuotaPeriod::Daily.bounds(at("2026-11-30 12:00:00"));
        assert_eq!(d.start, at("2026-11-30 00:00:00"));
        assert_eq!(d.seconds_until_reset(at("2026-11-30 12:00:00")), 43_200);
        let n = QuotaPeriod::Never.bounds(at("2026-11-30 12:00:00"));
        assert_eq!(n.end, None);
        assert_eq!(n.seconds_until_reset(at("2026-11-30 12:00:00")), 0);
    }

    #[test]
    fn parse() {
        assert_eq!(
            "Weekly".parse::<QuotaPeriod>().unwrap(),
            QuotaPeriod::Weekly
        );
        assert!("yearly".parse::<QuotaPeriod>().is_err());
    }
}
