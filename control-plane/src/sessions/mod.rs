//! Dashboard sessions: a browser logs in once with its `tp-` key and then carries a
//! short-lived signed token (a JWT, HS256) instead of the key.
//!
//! The token names the user (`sub`) and the key it was obtained with (`kid`), so a
//! session ends not only when it expires but as soon as that key is revoked or rotated,
//! or the user is deleted; a suspended user's session is refused like their key. Time
//! comes from the caller (the injected clock), never from the system clock, so expiry
//! is tested without sleeping. This module knows nothing about HTTP or cookies.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::db::schema::{api_keys, users};
use crate::db::DbConnection;
use crate::error::Result;
use crate::users::{keys, User};

/// The `aud` of every session token; tokens for anything else are refused.
pub const AUDIENCE: &str = "alfred-dashboard";

/// What a session token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a string (JWT convention).
    pub sub: String,
    /// The id of the API key the session was opened with.
    pub kid: i64,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Always [`AUDIENCE`].
    pub aud: String,
}

/// The verified identity a session token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionIdentity {
    /// Who.
    pub user_id: i64,
    /// With which key.
    pub key_id: i64,
}

/// A freshly issued session.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    /// The signed token (the cookie's value).
    pub token: String,
    /// When it stops working.
    pub expires_at: NaiveDateTime,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Past its `exp`.
    #[error("session expired")]
    Expired,
    /// Bad signature, wrong algorithm or audience, malformed, or missing claims.
    #[error("invalid session token")]
    Invalid,
}

/// Signs and checks session tokens with one HMAC secret.
pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Keys from a configured secret.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["sub", "exp", "iat", "aud"]);
        // jsonwebtoken compares `exp` with the system clock; expiry is checked in
        // `verify` against the injected clock instead.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// Keys from 32 random bytes: sessions end with the process.
    pub fn random(ttl: Duration) -> Self {
        let mut secret = [0_u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Self::new(&secret, ttl)
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `identity`, valid from `now` for the TTL.
    pub fn issue(
        &self,
        identity: SessionIdentity,
        now: NaiveDateTime,
    ) -> Result<IssuedSession, SessionError> {
        let ttl = i64::try_from(self.ttl.as_secs()).map_err(|_| SessionError::Invalid)?;
        let iat = now.and_utc().timestamp();
        let claims = Claims {
            sub: identity.user_id.to_string(),
            kid: identity.key_id,
            iat,
            exp: iat + ttl,
            aud: AUDIENCE.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| SessionError::Invalid)?;
        Ok(IssuedSession {
            token,
            expires_at: now + chrono::TimeDelta::seconds(ttl),
        })
    }

    /// Checks signature, algorithm, audience and expiry (at `now`).
    pub fn verify(&self, token: &str, now: NaiveDateTime) -> Result<SessionIdentity, SessionError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| SessionError::Invalid)?;
        let claims = data.claims;
        if now.and_utc().timestamp() >= claims.exp {
            return Err(SessionError::Expired);
        }
        let user_id = claims.sub.parse().map_err(|_| SessionError::Invalid)?;
        Ok(SessionIdentity {
            user_id,
            key_id: claims.kid,
        })
    }
}

/// Opens a session: the user owning this unrevoked key, with the key's id; `None` for
/// a malformed, unknown or revoked key, or a deleted user.
pub fn login(conn: &mut DbConnection, presented_key: &str) -> Result<Option<(User, i64)>> {
    if !keys::is_well_formed(presented_key) {
        return Ok(None);
    }
    let found = api_keys::table
        .inner_join(users::table)
        .filter(api_keys::key_hash.eq(keys::hash_key(presented_key)))
        .filter(api_keys::revoked_at.is_null())
        .filter(users::deleted_at.is_null())
        .select((User::as_select(), api_keys::id))
        .first(conn)
        .optional()?;
    Ok(found)
}

/// The user behind a verified session, while its key is unrevoked and the user not
/// deleted; `None` otherwise. Status (suspension) is for the caller to judge.
pub fn resolve(conn: &mut DbConnection, identity: SessionIdentity) -> Result<Option<User>> {
    let found = api_keys::table
        .inner_join(users::table)
        .filter(api_keys::id.eq(identity.key_id))
        .filter(api_keys::user_id.eq(identity.user_id))
        .filter(api_keys::revoked_at.is_null())
        .filter(users::deleted_at.is_null())
        .select(User::as_select())
        .first(conn)
        .optional()?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn t0() -> NaiveDateTime {
        NaiveDateTime::parse_from_str("2026-11-30 12:00:00", "%Y-%m-%d %H:%M:%S").unwrap()
    }

    const ME: SessionIdentity = SessionIdentity {
        user_id: 7,
        key_id: 3,
    };

    #[test]
    fn a_token_verifies_until_it_expires() {
        let keys = SessionKeys::new(&[1; 32], Duration::from_secs(600));
        let issued = keys.issue(ME, t0()).unwrap();
        assert_eq!(issued.expires_at, t0() + TimeDelta::seconds(600));
        assert_eq!(keys.verify(&issued.token, t0()), Ok(ME));
        assert_eq!(
            keys.verify(&issued.token, t0() + TimeDelta::seconds(599)),
            Ok(ME)
        );
        assert_eq!(
            keys.verify(&issued.token, t0() + TimeDelta::seconds(600)),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn other_secrets_audiences_and_algorithms_are_refused() {
        let keys = SessionKeys::new(&[1; 32], Duration::from_secs(600));
        let other = SessionKeys::new(&[2; 32], Duration::from_secs(600));
        let token = other.issue(ME, t0()).unwrap().token;
        assert_eq!(keys.verify(&token, t0()), Err(SessionError::Invalid));

        let iat = t0().and_utc().timestamp();
        let claims = Claims {
            sub: "7".into(),
            kid: 3,
            iat,
            exp: iat + 600,
            aud: "someone-else".into(),
        };
        let wrong_aud = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&[1; 32]),
        )
        .unwrap();
        assert_eq!(keys.verify(&wrong_aud, t0()), Err(SessionError::Invalid));

        let claims = Claims {
            aud: AUDIENCE.into(),
            ..claims
        };
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(&[1; 32]),
        )
        .unwrap();
        assert_eq!(keys.verify(&hs512, t0()), Err(SessionError::Invalid));

        // `alg: none` with the signature stripped.
        let mut parts = keys.issue(ME, t0()).unwrap().token;
        parts.truncate(parts.rfind('.').unwrap() + 1);
        assert_eq!(keys.verify(&parts, t0()), Err(SessionError::Invalid));
        assert_eq!(keys.verify("garbage", t0()), Err(SessionError::Invalid));
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        use base64::Engine as _;
        let keys = SessionKeys::new(&[1; 32], Duration::from_secs(600));
        let token = keys.issue(ME, t0()).unwrap().token;
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = String::from_utf8(b64.decode(&parts[1]).unwrap()).unwrap();
        parts[1] = b64.encode(payload.replace("\"sub\":\"7\"", "\"sub\":\"1\""));
        assert_eq!(
            keys.verify(&parts.join("."), t0()),
            Err(SessionError::Invalid)
        );
    }
}
