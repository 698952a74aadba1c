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

/// Result of a domain operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
