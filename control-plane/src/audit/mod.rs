//! The audit log: every admin action, transfer, approval and critical overdraft use,
//! with who did it and what it touched. Append-only; written in the same transaction
//! as the action, so an action and its record commit together.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::audit_log;
use crate::db::DbConnection;
use crate::error::Result;

/// A logged action.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    /// Id, increasing.
    pub id: i64,
    /// Who acted (None: the system, e.g. idle vacation).
    pub actor_id: Option<i64>,
    /// `user.create`, `transfer.create`, `overdraft.use`, …
    pub action: String,
    /// `user`, `team`, `transfer`, `quota_request`.
    pub target_kind: String,
    /// The target's id.
    pub target_id: Option<String>,
    /// JSON with the action's details.
    pub details: String,
    /// When.
    pub created_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = audit_log)]
struct NewEntry<'a> {
    actor_id: Option<i64>,
    action: &'a str,
    target_kind: &'a str,
    target_id: Option<&'a str>,
    details: &'a str,
    created_at: NaiveDateTime,
}

/// Appends an entry (in the caller's transaction).
pub fn record(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    actor_id: Option<i64>,
    action: &str,
    target_kind: &str,
    target_id: Option<String>,
    details: &serde_json::Value,
) -> Result<()> {
    let details = details.to_string();
    diesel::insert_into(audit_log::table)
        .values(NewEntry {
            actor_id,
            action,
            target_kind,
            target_id: target_id.as_deref(),
            details: &details,
            created_at: now,
        })
        .execute(conn)?;
    Ok(())
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exact action, or a prefix ending in `.` (`transfer.`).
    pub action: Option<String>,
    /// Only this actor.
    pub actor_id: Option<i64>,
    /// At or after.
    pub from: Option<NaiveDateTime>,
    /// Before.
    pub to: Option<NaiveDateTime>,
    /// Most entries (newest first).
    pub limit: i64,
}

/// Entries matching `filter`, newest first.
pub fn list(conn: &mut DbConnection, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
    let mut query = audit_log::table.into_boxed();
    if let Some(action) = &filter.action {
        query = if action.ends_with('.') {
            query.filter(audit_log::action.like(format!("{action}%")))
        } else {
            query.filter(audit_log::action.eq(action.clone()))
        };
    }
    if let Some(actor) = filter.actor_id {
        query = query.filter(audit_log::actor_id.eq(actor));
    }
    if let Some(from) = filter.from {
        query = query.filter(audit_log::created_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(audit_log::created_at.lt(to));
    }
    Ok(query
        .order(audit_log::id.desc())
        .limit(filter.limit)
        .select(AuditEntry::as_select())
        .load(conn)?)
}
