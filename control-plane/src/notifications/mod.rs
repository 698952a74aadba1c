//! In-app notifications: what a user is told (a transfer received, a request decided,
//! a critical overdraft used by someone, for admins). Written in the same transaction
//! as the event.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{notifications, users};
use crate::db::DbConnection;
use crate::error::Result;

/// A notification.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = notifications)]
pub struct Notification {
    /// Id, increasing.
    pub id: i64,
    /// Recipient.
    pub user_id: i64,
    /// `transfer_received`, `quota_request_approved`, …
    pub kind: String,
    /// For people.
    pub message: String,
    /// JSON details.
    pub data: String,
    /// When.
    pub created_at: NaiveDateTime,
    /// When the user marked it read.
    pub read_at: Option<NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = notifications, treat_none_as_default_value = false)]
struct NewNotification<'a> {
    user_id: i64,
    kind: &'a str,
    message: &'a str,
    data: &'a str,
    created_at: NaiveDateTime,
}

/// Notifies one user.
pub fn notify(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    user_id: i64,
    kind: &str,
    message: &str,
    data: &serde_json::Value,
) -> Result<()> {
    notify_many(conn, now, &[user_id], kind, message, data)
}

/// Notifies several users with the same message.
pub fn notify_many(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    user_ids: &[i64],
    kind: &str,
    message: &str,
    data: &serde_json::Value,
) -> Result<()> {
    if user_ids.is_empty() {
        return Ok(());
    }
    let data = data.to_string();
    let rows: Vec<NewNotification<'_>> = user_ids
        .iter()
        .map(|&user_id| NewNotification {
            user_id,
            kind,
            message,
            data: &data,
            created_at: now,
        })
        .collect();
    crate::on_backend!(conn, |c| diesel::insert_into(notifications::table)
        .values(&rows)
        .execute(c))?;
    Ok(())
}

/// Notifies every live admin.
pub fn notify_admins(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    kind: &str,
    message: &str,
    data: &serde_json::Value,
) -> Result<()> {
    let admins: Vec<i64> = users::table
        .filter(users::is_admin.eq(true))
        .filter(users::deleted_at.is_null())
        .select(users::id)
        .load(conn)?;
    notify_many(conn, now, &admins, kind, message, data)
}

/// A user's notifications, newest first.
pub fn list(
    conn: &mut DbConnection,
    user_id: i64,
    unread_only: bool,
    limit: i64,
) -> Result<Vec<Notification>> {
    let mut query = notifications::table
        .filter(notifications::user_id.eq(user_id))
        .into_boxed();
    if unread_only {
        query = query.filter(notifications::read_at.is_null());
    }
    Ok(query
        .order(notifications::id.desc())
        .limit(limit)
        .select(Notification::as_select())
        .load(conn)?)
}

/// Marks the user's notifications read (the given ids, or all); returns how many
/// changed.
pub fn mark_read(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    user_id: i64,
    ids: Option<&[i64]>,
) -> Result<usize> {
    let base = notifications::table
        .filter(notifications::user_id.eq(user_id))
        .filter(notifications::read_at.is_null());
    let changed = match ids {
        Some(ids) => diesel::update(base.filter(notifications::id.eq_any(ids)))
            .set(notifications::read_at.eq(Some(now)))
            .execute(conn)?,
        None => diesel::update(base)
            .set(notifications::read_at.eq(Some(now)))
            .execute(conn)?,
    };
    Ok(changed)
}
