//! The `leases` row.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::leases;

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = leases)]
pub struct Lease {
    /// UUID.
    pub id: String,
    /// Owner.
    pub user_id: i64,
    /// The proxy holding it.
    pub proxy_id: String,
    /// Tokens set aside.
    pub granted_tokens: i64,
    /// Usage reported against it so far.
    pub used_tokens: i64,
    /// Priority of the request that asked for it.
    pub priority: String,
    /// Grant time.
    pub created_at: NaiveDateTime,
    /// After this it holds nothing.
    pub expires_at: NaiveDateTime,
    /// The quota period it was granted in.
    pub period_start: NaiveDateTime,
    /// `normal`, or `critical` (may draw on the overdraft).
    pub class: String,
    /// Tokens held from personal credit.
    pub hold_personal: i64,
    /// Tokens held from team pools.
    pub hold_pool: i64,
    /// Tokens held from the critical overdraft.
    pub hold_overdraft: i64,
    /// When what it did not use went back (None while live).
    pub released_at: Option<NaiveDateTime>,
}

/// Insert form of [`Lease`].
#[derive(Debug, Insertable)]
#[diesel(table_name = leases)]
pub struct NewLease<'a> {
    /// UUID.
    pub id: &'a str,
    /// Owner.
    pub user_id: i64,
    /// The proxy holding it.
    pub proxy_id: &'a str,
    /// Tokens set aside.
    pub granted_tokens: i64,
    /// 0 at grant.
    pub used_tokens: i64,
    /// Priority.
    pub priority: &'a str,
    /// Grant time.
    pub created_at: NaiveDateTime,
    /// Expiry.
    pub expires_at: NaiveDateTime,
    /// Period it belongs to.
    pub period_start: NaiveDateTime,
    /// `normal` or `critical`.
    pub class: &'a str,
    /// Held from personal credit.
    pub hold_personal: i64,
    /// Held from team pools.
    pub hold_pool: i64,
    /// Held from the overdraft.
    pub hold_overdraft: i64,
}
