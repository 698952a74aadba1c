//! `/v1/auth/*`: dashboard log-in with a `tp-` key, the session cookie, and the
//! middleware that turns a valid session cookie into a caller for every route.
//!
//! The cookie (`alfred_session`) is `HttpOnly; SameSite=Strict; Path=/`, and `Secure`
//! only when `SESSION_COOKIE_SECURE` is set (a `Secure` cookie is never sent to plain
//! `http://localhost`, where `make run` serves). `SameSite=Strict` keeps other sites
//! from riding the session (no cross-site request carries it).

use actix_web::body::MessageBody;
use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::auth::{authorize, has_key_header, presented_key, Require, SESSION_IDENTITY_HEADER};
use super::error::ApiError;
use super::json::decode;
use super::wire::rfc3339;
use super::AppState;
use crate::sessions::{self, SessionError, SessionIdentity};
use crate::users::{User, UserStatus};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "alfred_session";

/// Middleware on every route: drops any client-sent [`SESSION_IDENTITY_HEADER`], then,
/// for a request without a key of its own, verifies the session cookie (signature,
/// audience, expiry by the injected clock) and passes the identity on in that header.
/// An invalid or expired cookie is simply not a credential: routes that need one answer
/// 401, public ones (log-in, the dashboard's files) work as usual.
pub async fn attach_session(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let header = HeaderName::from_static(SESSION_IDENTITY_HEADER);
    req.headers_mut().remove(&header);
    if !has_key_header(req.headers()) {
        let identity = match (
            req.cookie(SESSION_COOKIE),
            req.app_data::<web::Data<AppState>>(),
        ) {
            (Some(cookie), Some(state)) => {
                match state.sessions.verify(cookie.value(), state.clock.now()) {
                    Ok(identity) => Some(identity),
                    Err(SessionError::Expired) => {
                        tracing::debug!("expired session cookie");
                        None
                    }
                    Err(SessionError::Invalid) => {
                        tracing::info!(path = req.path(), "invalid session cookie refused");
                        None
                    }
                }
            }
            _ => None,
        };
        if let Some(identity) = identity {
            let value = format!("{}:{}", identity.user_id, identity.key_id);
            if let Ok(value) = HeaderValue::from_str(&value) {
                req.headers_mut().insert(header, value);
            }
        }
    }
    next.call(req).await
}

/// `POST /v1/auth/login` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// The user's `tp-` key.
    pub api_key: String,
}

/// Who is logged in (`GET /v1/auth/session`, and the log-in answer).
#[derive(Debug, Serialize)]
pub struct SessionUserBody {
    /// User id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Admin flag.
    pub is_admin: bool,
    /// `active`, `on_vacation` or `suspended`.
    pub status: String,
}

impl From<User> for SessionUserBody {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            name: u.name,
            email: u.email,
            is_admin: u.is_admin,
            status: u.status,
        }
    }
}

#[derive(Debug, Serialize)]
struct LoginAnswer {
    user: SessionUserBody,
    expires_at: String,
}

/// `POST /v1/auth/login` `{"api_key": "tp-…"}`: checks the key like every route does
/// (401 unknown or revoked, 403 suspended) and sets the session cookie.
pub async fn login(state: web::Data<AppState>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let (user, key_id) = state
        .run(move |conn| {
            let body: LoginBody = decode(&body)?;
            let (user, key_id) =
                sessions::login(conn, body.api_key.trim())?.ok_or(ApiError::InvalidApiKey)?;
            if user.status() == UserStatus::Suspended {
                return Err(ApiError::UserSuspended);
            }
            Ok((user, key_id))
        })
        .await?;
    let identity = SessionIdentity {
        user_id: user.id,
        key_id,
    };
    let issued = state.sessions.issue(identity, now).map_err(|e| {
        tracing::error!(error = %e, "session token could not be signed");
        ApiError::Internal
    })?;
    tracing::info!(user_id = user.id, "dashboard session opened");
    let max_age = i64::try_from(state.sessions.ttl().as_secs()).unwrap_or(i64::MAX);
    let cookie = session_cookie(issued.token, state.session_cookie_secure)
        .max_age(time::Duration::seconds(max_age))
        .finish();
    Ok(HttpResponse::Ok().cookie(cookie).json(LoginAnswer {
        user: SessionUserBody::from(user),
        expires_at: rfc3339(issued.expires_at),
    }))
}

/// `POST /v1/auth/logout`: clears the cookie (204). The token itself stays valid
/// until it expires, but no browser holds it any more.
pub async fn logout(state: web::Data<AppState>) -> HttpResponse {
    let mut cookie = session_cookie(String::new(), state.session_cookie_secure).finish();
    cookie.make_removal();
    HttpResponse::NoContent().cookie(cookie).finish()
}

/// `GET /v1/auth/session`: the caller (session or key), 401 when there is none.
pub async fn session(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let key = presented_key(req.headers());
    let user = state
        .run(move |conn| authorize(conn, key.as_deref(), Require::User))
        .await?;
    Ok(HttpResponse::Ok().json(SessionUserBody::from(user)))
}

fn session_cookie(value: String, secure: bool) -> actix_web::cookie::CookieBuilder<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
}
