//! The `teams` and `team_members` rows.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{team_members, teams};

/// A team with a shared pool.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = teams)]
pub struct Team {
    /// Primary key.
    pub id: i64,
    /// Unique among live teams.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Tokens allocated to the pool each period.
    pub common_pool: i64,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Last change.
    pub updated_at: NaiveDateTime,
    /// Set when deleted (the row stays for the ledger's history).
    pub deleted_at: Option<NaiveDateTime>,
}

/// Insert form of [`Team`].
#[derive(Debug, Insertable)]
#[diesel(table_name = teams)]
pub struct NewTeam<'a> {
    /// Name.
    pub name: &'a str,
    /// Description.
    pub description: &'a str,
    /// Pool per period.
    pub common_pool: i64,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Same as `created_at`.
    pub updated_at: NaiveDateTime,
}

/// A membership.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = team_members)]
pub struct Member {
    /// The team.
    pub team_id: i64,
    /// The user.
    pub user_id: i64,
    /// Team admins manage their team's members and approve their requests.
    pub is_admin: bool,
    /// When they joined.
    pub created_at: NaiveDateTime,
}
