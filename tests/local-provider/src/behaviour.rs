//! Per-request test knobs, read from `x-local-provider-*` request headers.
//!
//! | header | effect |
//! |---|---|
//! | `x-local-provider-chunk-bytes: N` | the body is written in N-byte pieces (cuts SSE events and UTF-8 characters) |
//! | `x-local-provider-abort-after: N` | the connection is closed after N writes, without finishing the body |
//! | `x-local-provider-fail: STATUS` | answer STATUS (4xx/5xx) with the provider's error shape instead of a completion |
//! | `x-local-provider-delay-ms: N` | sleep N ms before every write but the first (simulates generation time) |
//! | `x-local-provider-reply-words: N` | make the reply N words long (before `max_tokens`) |
//!
//! The gateway must strip nothing of these (they are not Alfred's headers), so tests can
//! set them through Envoy. A malformed value is answered 400 so a typo cannot silently
//! turn a test into one that exercises nothing.

use actix_web::http::header::HeaderMap;

pub const CHUNK_BYTES: &str = "x-local-provider-chunk-bytes";
pub const ABORT_AFTER: &str = "x-local-provider-abort-after";
pub const FAIL: &str = "x-local-provider-fail";
pub const DELAY_MS: &str = "x-local-provider-delay-ms";
pub const REPLY_WORDS: &str = "x-local-provider-reply-words";

/// Largest reply the knob allows (keeps a typo from producing gigabytes).
pub const MAX_REPLY_WORDS: usize = 1_000_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Behaviour {
    pub chunk_bytes: Option<usize>,
    pub abort_after: Option<usize>,
    pub fail_status: Option<u16>,
    pub delay_ms: u64,
    pub reply_words: Option<usize>,
}

fn number<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Result<Option<T>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<T>().ok())
            .map(Some)
            .ok_or_else(|| format!("header {name} must be a non-negative integer")),
    }
}

impl Behaviour {
    pub fn from_headers(headers: &HeaderMap) -> Result<Behaviour, String> {
        let chunk_bytes: Option<usize> = number(headers, CHUNK_BYTES)?;
        if chunk_bytes == Some(0) {
            return Err(format!("header {CHUNK_BYTES} must be at least 1"));
        }
        let fail_status: Option<u16> = number(headers, FAIL)?;
        if let Some(status) = fail_status {
            if !(400..=599).contains(&status) {
                return Err(format!(
                    "header {FAIL} must be a status between 400 and 599"
                ));
            }
        }
        let reply_words: Option<usize> = number(headers, REPLY_WORDS)?;
        if reply_words.is_some_and(|words| words > MAX_REPLY_WORDS) {
            return Err(format!(
                "header {REPLY_WORDS} must be at most {MAX_REPLY_WORDS}"
            ));
        }
        Ok(Behaviour {
            chunk_bytes,
            abort_after: number(headers, ABORT_AFTER)?,
            fail_status,
            delay_ms: number(headers, DELAY_MS)?.unwrap_or(0),
            reply_words,
        })
    }

    /// Whether the body must be written piece by piece rather than in one go.
    pub fn needs_streaming_writes(&self) -> bool {
        self.chunk_bytes.is_some() || self.abort_after.is_some() || self.delay_ms > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    #[test]
    fn no_headers_means_default_behaviour() {
        assert_eq!(
            Behaviour::from_headers(&HeaderMap::new()),
            Ok(Behaviour::default())
        );
        assert!(!Behaviour::default().needs_streaming_writes());
    }

    #[test]
    fn all_knobs_parse() {
        let parsed = Behaviour::from_headers(&headers(&[
            (CHUNK_BYTES, "7"),
            (ABORT_AFTER, "3"),
            (FAIL, "503"),
            (DELAY_MS, "10"),
            (REPLY_WORDS, "100"),
        ]));
        assert_eq!(
            parsed,
            Ok(Behaviour {
                chunk_bytes: Some(7),
                abort_after: Some(3),
                fail_status: Some(503),
                delay_ms: 10,
                reply_words: Some(100),
            })
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Behaviour::from_headers(&headers(&[(CHUNK_BYTES, "0")])).is_err());
        assert!(Behaviour::from_headers(&headers(&[(CHUNK_BYTES, "-1")])).is_err());
        assert!(Behaviour::from_headers(&headers(&[(ABORT_AFTER, "x")])).is_err());
        assert!(Behaviour::from_headers(&headers(&[(FAIL, "200")])).is_err());
        assert!(Behaviour::from_headers(&headers(&[(REPLY_WORDS, "99999999")])).is_err());
    }
}
