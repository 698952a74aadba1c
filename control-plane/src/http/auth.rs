//! Who is calling: a user's `tp-` key (user and admin routes) or the filter's shared
//! secret (internal routes).

use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use sha2::{Digest as _, Sha256};

use super::error::ApiError;
use crate::db::DbConnection;
use crate::users::{self, User, UserStatus};

/// The key presented in `X-API-Key` or `Authorization: Bearer`, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim().to_owned());
    }
    bearer(headers).map(str::to_owned)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Which callers a route admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Require {
    /// Any user who is not suspended.
    User,
    /// Admins only.
    Admin,
}

/// Resolves the key to a user allowed on the route: 401 for a bad key, 403 for a
/// suspended user or a non-admin on an admin route.
pub fn authorize(
    conn: &mut DbConnection,
    key: Option<&str>,
    require: Require,
) -> Result<User, ApiError> {
    let key = key.ok_or(ApiError::InvalidApiKey)?;
    let user = users::authenticate(conn, key)?.ok_or(ApiError::InvalidApiKey)?;
    if user.status() == UserStatus::Suspended {
        return Err(ApiError::UserSuspended);
    }
    if require == Require::Admin && !user.is_admin {
        return Err(ApiError::Forbidden);
    }
    Ok(user)
}

/// Checks `authorization: Bearer <ALFRED_FILTER_TOKEN>` in constant time.
pub fn check_filter_token(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let presented = bearer(headers).ok_or(ApiError::InvalidFilterToken)?;
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::InvalidFilterToken)
    }
}

/// Compares digests so neither the content nor the length of the secret leaks
/// through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    da.iter()
        .zip(db.iter())
        .fold(0_u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn keys_from_either_header() {
        assert_eq!(
            presented_key(&headers(&[("x-api-key", "tp-a")])).as_deref(),
            Some("tp-a")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer tp-b")])).as_deref(),
            Some("tp-b")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "bearer tp-c")])).as_deref(),
            Some("tp-c")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "Basic xyz")])),
            None
        );
        assert_eq!(presented_key(&headers(&[])), None);
    }

    #[test]
    fn filter_token() {
        let secret = "s".repeat(32);
        let ok = HeaderMap::from_iter([(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {secret}")).unwrap(),
        )]);
        assert!(check_filter_token(&ok, &secret).is_ok());
        assert!(
            check_filter_token(&headers(&[("authorization", "Bearer nope")]), &secret).is_err()
        );
        assert!(check_filter_token(&headers(&[]), &secret).is_err());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
