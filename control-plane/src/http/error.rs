//! The one place where failures become HTTP responses.
//!
//! Body shape (OpenAI style, what the SDKs and the dashboard parse):
//! `{"error":{"message","type","code","field"?}}`. Unknown failures are logged with
//! context and answered 500 without internals.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::error::Error;

/// An error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON (400).
    #[error("{message}")]
    MalformedJson {
        /// What the parser said.
        message: String,
        /// Where, when known.
        field: Option<String>,
    },
    /// The JSON is well-formed but a field is missing, mistyped, unknown or breaks a
    /// rule (422).
    #[error("{message}")]
    Unprocessable {
        /// What is wrong.
        message: String,
        /// The offending field.
        field: Option<String>,
        /// Machine-readable reason.
        code: &'static str,
    },
    /// No, unknown, revoked or malformed `tp-` key (401).
    #[error("invalid API key")]
    InvalidApiKey,
    /// Wrong or missing filter credential on `/internal/v1/*` (401).
    #[error("invalid filter token")]
    InvalidFilterToken,
    /// The key's owner is suspended (403).
    #[error("user is suspended")]
    UserSuspended,
    /// The caller may not do this (403).
    #[error("admin privileges required")]
    Forbidden,
    /// No such thing (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A state conflict (409).
    #[error("{message}")]
    Conflict {
        /// What is wrong.
        message: String,
        /// Machine-readable reason.
        code: &'static str,
        /// The input it is about, if one.
        field: Option<&'static str>,
    },
    /// The caller's role does not allow this (403), with the reason.
    #[error("{0}")]
    NotAllowed(&'static str),
    /// Duplicate email (409).
    #[error("a user with this email already exists")]
    EmailTaken,
    /// The database cannot be reached (503).
    #[error("database unavailable")]
    Unavailable,
    /// Anything else (500); details are in the log, not the answer.
    #[error("internal server error")]
    Internal,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    fn kind_code_field(&self) -> (&'static str, &str, Option<&str>) {
        match self {
            Self::MalformedJson { field, .. } => {
                ("invalid_request_error", "invalid_json", field.as_deref())
            }
            Self::Unprocessable { field, code, .. } => {
                ("invalid_request_error", code, field.as_deref())
            }
            Self::InvalidApiKey => ("authentication_error", "invalid_api_key", None),
            Self::InvalidFilterToken => ("authentication_error", "invalid_filter_token", None),
            Self::UserSuspended => ("permission_error", "user_suspended", None),
            Self::Forbidden => ("permission_error", "forbidden", None),
            Self::NotAllowed(_) => ("permission_error", "forbidden", None),
            Self::Conflict { code, field, .. } => ("invalid_request_error", code, *field),
            Self::NotFound(_) => ("not_found_error", "not_found", None),
            Self::EmailTaken => ("invalid_request_error", "email_taken", Some("email")),
            Self::Unavailable => ("server_error", "database_unavailable", None),
            Self::Internal => ("server_error", "internal_error", None),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedJson { .. } => StatusCode::BAD_REQUEST,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InvalidApiKey | Self::InvalidFilterToken => StatusCode::UNAUTHORIZED,
            Self::UserSuspended | Self::Forbidden | Self::NotAllowed(_) => StatusCode::FORBIDDEN,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::EmailTaken => StatusCode::CONFLICT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (kind, code, field) = self.kind_code_field();
        HttpResponse::build(self.status_code()).json(Body {
            error: Detail {
                message: self.to_string(),
                kind,
                code,
                field,
            },
        })
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid { field, message } => Self::Unprocessable {
                message: format!("{field}: {message}"),
                field: Some(field),
                code: "invalid_value",
            },
            Error::Rejected {
                field,
                code,
                message,
            } => Self::Unprocessable {
                message: format!("{field}: {message}"),
                field: Some(field.to_owned()),
                code,
            },
            Error::Conflict {
                code,
                message,
                field,
            } => Self::Conflict {
                message,
                code,
                field,
            },
            Error::Forbidden(why) => Self::NotAllowed(why),
            Error::Invariant(why) => {
                tracing::error!(invariant = %why, "ledger invariant refused a write");
                Self::Internal
            }
            Error::EmailTaken => Self::EmailTaken,
            Error::NotFound(what) => Self::NotFound(what),
            Error::Pool(e) => {
                tracing::error!(error = %e, "no database connection available");
                Self::Unavailable
            }
            Error::Unavailable => Self::Unavailable,
            Error::Database(e) => {
                tracing::error!(error = %e, "database error");
                Self::Internal
            }
        }
    }
}
