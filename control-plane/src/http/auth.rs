//! Who is calling: a user's `tp-` key or dashboard session (user and admin routes), or
//! the filter's shared secret (internal routes).
//!
//! A dashboard session arrives as a cookie; [`super::session::attach_session`] (which
//! wraps every route) verifies it and hands the verified identity over in the
//! [`SESSION_IDENTITY_HEADER`] request header, after removing any such header the
//! client sent. So every handler reads its caller with [`presented_key`] from the
//! headers alone, and a key and a session are authorized alike by [`authorize`].

use std::ops::Deref;

use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use sha2::{Digest as _, Sha256};

use super::error::ApiError;
use crate::db::DbConnection;
use crate::sessions::{self, SessionIdentity};
use crate::users::{self, User, UserStatus};

/// Request header carrying a session identity verified by the session middleware
/// (`USER_ID:KEY_ID`). Never trusted from a client: the middleware strips it first.
pub const SESSION_IDENTITY_HEADER: &str = "x-alfred-verified-session";

/// What a caller presented to prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A `tp-` key from `X-API-Key` or `Authorization: Bearer`.
    ApiKey(String),
    /// A verified dashboard session.
    Session(SessionIdentity),
}

/// A presented [`Credential`], owned (it moves into blocking database work).
/// Dereferences to the credential so call sites read `key.as_deref()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented(Credential);

impl Deref for Presented {
    type Target = Credential;

    fn deref(&self) -> &Credential {
        &self.0
    }
}

/// The caller's credential: a key in `X-API-Key` or `Authorization: Bearer` (a key
/// wins over a session), else a verified session, else `None`.
pub fn presented_key(headers: &HeaderMap) -> Option<Presented> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(Presented(Credential::ApiKey(key.trim().to_owned())));
    }
    if let Some(key) = bearer(headers) {
        return Some(Presented(Credential::ApiKey(key.to_owned())));
    }
    let verified = headers.get(SESSION_IDENTITY_HEADER)?.to_str().ok()?;
    let (user_id, key_id) = verified.split_once(':')?;
    Some(Presented(Credential::Session(SessionIdentity {
        user_id: user_id.parse().ok()?,
        key_id: key_id.parse().ok()?,
    })))
}

/// Whether the request carries a key of its own (then a session cookie is ignored).
pub fn has_key_header(headers: &HeaderMap) -> bool {
    headers.contains_key("x-api-key") || bearer(headers).is_some()
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

/// Resolves the credential to a user allowed on the route: 401 for a bad key or a
/// session whose key was revoked or whose user was deleted, 403 for a suspended user
/// or a non-admin on an admin route.
pub fn authorize(
    conn: &mut DbConnection,
    credential: Option<&Credential>,
    require: Require,
) -> Result<User, ApiError> {
    let user = match credential.ok_or(ApiError::InvalidApiKey)? {
        Credential::ApiKey(key) => users::authenticate(conn, key)?,
        Credential::Session(identity) => sessions::resolve(conn, *identity)?,
    };
    let user = user.ok_or(ApiError::InvalidApiKey)?;
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

    fn key(k: &str) -> Option<Credential> {
        Some(Credential::ApiKey(k.to_owned()))
    }

    fn got(pairs: &[(&'static str, &'static str)]) -> Option<Credential> {
        presented_key(&headers(pairs)).map(|p| (*p).clone())
    }

    #[test]
    fn keys_from_either_header() {
        assert_eq!(got(&[("x-api-key", "tp-a")]), key("tp-a"));
        assert_eq!(got(&[("authorization", "Bearer tp-b")]), key("tp-b"));
        assert_eq!(got(&[("authorization", "bearer tp-c")]), key("tp-c"));
        assert_eq!(
            got(&[("x-alfred-verified-session", "4:9")]),
            Some(Credential::Session(SessionIdentity {
                user_id: 4,
                key_id: 9
            }))
        );
        // A key wins over a session; a malformed identity is none.
        assert_eq!(
            got(&[("x-alfred-verified-session", "4:9"), ("x-api-key", "tp-d")]),
            key("tp-d")
        );
        assert_eq!(got(&[("x-alfred-verified-session", "4")]), None);
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
