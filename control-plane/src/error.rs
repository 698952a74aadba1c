//! The domain error: what can go wrong below the HTTP layer. `http::error` maps it to
//! statuses in one place.

/// A domain failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input broke a rule; `field` names the offending input (`email`,
    /// `records[3].total_tokens`).
    #[error("{field}: {message}")]
    Invalid {
        /// The offending field, as the client spelled it.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The request is well-formed but the rules refuse it (422 with `code`), e.g. a
    /// transfer above the sender's balance.
    #[error("{field}: {message}")]
    Rejected {
        /// The input the refusal is about.
        field: &'static str,
        /// Machine-readable reason (`insufficient_quota`, `self_transfer`, …).
        code: &'static str,
        /// What is wrong, for people.
        message: String,
    },
    /// The thing is not in a state that allows this (409), e.g. deciding a request
    /// twice.
    #[error("{message}")]
    Conflict {
        /// Machine-readable reason.
        code: &'static str,
        /// What is wrong.
        message: String,
        /// The input it is about, if one.
        field: Option<&'static str>,
    },
    /// The caller's role does not allow this (403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// An accounting invariant would break; the transaction is rolled back (500).
    #[error("ledger invariant: {0}")]
    Invariant(String),
    /// Another user already has this email.
    #[error("a user with this email already exists")]
    EmailTaken,
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    /// No connection could be checked out of the pool.
    #[error("database unavailable: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    /// No connection could be checked out of the pool (already logged).
    #[error("database unavailable")]
    Unavailable,
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Error {
    /// Shorthand for [`Error::Rejected`].
    pub fn rejected(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self::Rejected {
            field,
            code,
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Conflict`].
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// A [`Error::Conflict`] about one input field (e.g. a taken name).
    pub fn conflict_on(
        field: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
            field: Some(field),
        }
    }
}

/// Result of a domain operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
