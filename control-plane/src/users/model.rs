//! The `users` and `api_keys` rows.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{api_keys, users};

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users)]
pub struct User {
    /// Primary key.
    pub id: i64,
    /// Unique, stored lower-cased.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Tokens per quota period.
    pub personal_quota: i64,
    /// `active`, `on_vacation` or `suspended` (see [`UserStatus`]).
    pub status: String,
    /// Admins may use `/v1/admin/*`.
    pub is_admin: bool,
    /// Creation time (UTC).
    pub created_at: NaiveDateTime,
    /// Last change (UTC).
    pub updated_at: NaiveDateTime,
    /// Whether critical requests may overdraw (admins can turn it off).
    pub overdraft_enabled: bool,
}

impl User {
    /// The typed status; an unknown stored value counts as suspended (fail closed).
    pub fn status(&self) -> UserStatus {
        self.status.parse().unwrap_or(UserStatus::Suspended)
    }
}

/// Insert form of [`User`].
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    /// Lower-cased email.
    pub email: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Tokens per period.
    pub personal_quota: i64,
    /// Initial status.
    pub status: &'a str,
    /// Admin flag.
    pub is_admin: bool,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Same as `created_at` at first.
    pub updated_at: NaiveDateTime,
}

/// Insert form of an `api_keys` row.
#[derive(Debug, Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey<'a> {
    /// Owner.
    pub user_id: i64,
    /// SHA-256 hex of the whole key.
    pub key_hash: &'a str,
    /// Non-secret display prefix.
    pub key_prefix: &'a str,
    /// Creation time.
    pub created_at: NaiveDateTime,
}

/// A user's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    /// Normal operation.
    Active,
    /// Away: unused personal credit shared with the team; the next request returns.
    OnVacation,
    /// Every request refused.
    Suspended,
}

impl UserStatus {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::OnVacation => "on_vacation",
            Self::Suspended => "suspended",
        }
    }
}

impl FromStr for UserStatus {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "active" => Ok(Self::Active),
            "on_vacation" => Ok(Self::OnVacation),
            "suspended" => Ok(Self::Suspended),
            _ => Err("expected active, on_vacation or suspended".to_owned()),
        }
    }
}

impl fmt::Display for UserStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
