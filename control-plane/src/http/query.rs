//! Query-string decoding that names the offending parameter (422), plus the shared
//! parsers for dates and list limits.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Decodes the query string as `T` (unknown parameters refused when `T` denies them).
pub fn decode_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        let field = if path == "." {
            // serde names a missing or unknown field only inside the message.
            message.split('`').nth(1).map(str::to_owned)
        } else {
            Some(path)
        };
        ApiError::Unprocessable {
            message: match &field {
                Some(f) => format!("{f}: {message}"),
                None => message,
            },
            field,
            code: "invalid_query",
        }
    })
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::Unprocessable {
        message: format!("{field}: {message}"),
        field: Some(field.to_owned()),
        code: "invalid_query",
    }
}

/// Parses a date-time parameter: RFC 3339 (`2026-11-30T12:00:00Z`) or a date
/// (`2026-11-30`, meaning its midnight UTC).
pub fn parse_instant(field: &str, raw: Option<&str>) -> Result<Option<NaiveDateTime>, ApiError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let parsed = DateTime::parse_from_rfc3339(raw)
        .map(|at| at.naive_utc())
        .or_else(|_| {
            NaiveDate::parse_from_str(raw, "%Y-%m-%d").map(|d| d.and_time(NaiveTime::MIN))
        });
    if let Ok(at) = parsed {
        // Stored times are compared as text on SQLite: keep to four-digit years.
        if !(1..=9999).contains(&chrono::Datelike::year(&at)) {
            return Err(invalid(field, "the year must be between 1 and 9999"));
        }
        return Ok(Some(at));
    }
    Err(invalid(
        field,
        "expected a date (YYYY-MM-DD) or an RFC 3339 time (2026-11-30T12:00:00Z)",
    ))
}

/// A `from`/`to` pair, checked to be in order.
pub fn parse_range(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Option<NaiveDateTime>, Option<NaiveDateTime>), ApiError> {
    let from = parse_instant("from", from)?;
    let to = parse_instant("to", to)?;
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(invalid("to", "must not be before from"));
        }
    }
    Ok((from, to))
}

/// A list limit: default `default`, 1–`max`.
pub fn limit(raw: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = raw.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(invalid("limit", format!("must be between 1 and {max}")));
    }
    Ok(limit)
}

/// A numeric path id; anything else cannot name a thing: 404 like an absent one.
pub fn path_id(raw: &str, what: &'static str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Q {
        limit: Option<i64>,
        from: Option<String>,
    }

    #[test]
    fn parameters_are_named() {
        let err = decode_query::<Q>("limit=abc").unwrap_err();
        assert!(
            matches!(err, ApiError::Unprocessable { field: Some(ref f), .. } if f == "limit"),
            "{err:?}"
        );
        let err = decode_query::<Q>("bogus=1").unwrap_err();
        assert!(
            matches!(err, ApiError::Unprocessable { field: Some(ref f), .. } if f == "bogus"),
            "{err:?}"
        );
        let ok = decode_query::<Q>("limit=5&from=2026-11-01").unwrap();
        assert_eq!(ok.limit, Some(5));
    }

    #[test]
    fn dates() {
        assert!(parse_instant("from", Some("2026-11-30")).unwrap().is_some());
        assert!(parse_instant("from", Some("2026-11-30T10:00:00Z"))
            .unwrap()
            .is_some());
        assert!(parse_instant("from", Some("yesterday")).is_err());
        assert!(parse_range(Some("2026-12-01"), Some("2026-11-01")).is_err());
    }
}
