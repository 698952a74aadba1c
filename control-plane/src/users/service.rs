//! User queries. Each function owns its transaction; handlers never write SQL.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::keys;
use super::model::{NewApiKey, NewUser, User, UserStatus};
use crate::db::schema::{api_keys, users};
use crate::db::{lock_user, retry_on_conflict, write_transaction, DbConnection};
use crate::error::{Error, Result};
use crate::ledger::{self, Account, Kind, Movement};
use crate::quota::allocation::{self, user_owner};
use crate::quota::QuotaRules;
use crate::{audit, vacation};

/// Longest accepted display name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest accepted email (RFC 5321 path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// What an admin asks for when creating a user.
#[derive(Debug, Clone)]
pub struct CreateUser {
    /// Email, unique (case-insensitive).
    pub email: String,
    /// Display name, 1–200 characters.
    pub name: String,
    /// Tokens per period, ≥ 0.
    pub personal_quota: i64,
    /// Whether the user is an admin.
    pub is_admin: bool,
}

/// A created user and their key — the only time the key exists outside the caller.
pub struct CreatedUser {
    /// The stored row.
    pub user: User,
    /// The plaintext key, to show once.
    pub api_key: String,
}

impl std::fmt::Debug for CreatedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedUser")
            .field("user", &self.user)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

/// Validates and creates a user together with their first API key, atomically.
pub fn create_user(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    input: CreateUser,
    actor: Option<i64>,
) -> Result<CreatedUser> {
    let email = normalize_email(&input.email)?;
    let name = validate_name(&input.name)?;
    validate_quota(input.personal_quota)?;
    let key = keys::generate();

    let user = write_transaction(conn, |conn| {
        let taken: i64 = users::table
            .filter(users::email.eq(&email))
            .count()
            .get_result(conn)?;
        if taken > 0 {
            return Err(Error::EmailTaken);
        }
        diesel::insert_into(users::table)
            .values(NewUser {
                email: &email,
                name,
                personal_quota: input.personal_quota,
                status: UserStatus::Active.as_str(),
                is_admin: input.is_admin,
                created_at: now,
                updated_at: now,
            })
            .execute(conn)
            .map_err(unique_violation_is_email_taken)?;
        let user: User = users::table
            .filter(users::email.eq(&email))
            .select(User::as_select())
            .first(conn)?;
        diesel::insert_into(api_keys::table)
            .values(NewApiKey {
                user_id: user.id,
                key_hash: &key.hash,
                key_prefix: &key.display_prefix,
                created_at: now,
            })
            .execute(conn)?;
        audit::record(
            conn,
            now,
            actor,
            "user.create",
            "user",
            Some(user.id.to_string()),
            &serde_json::json!({
                "email": user.email,
                "personal_quota": user.personal_quota,
                "is_admin": user.is_admin,
            }),
        )?;
        Ok(user)
    })?;
    Ok(CreatedUser {
        user,
        api_key: key.plaintext,
    })
}

fn validate_name(raw: &str) -> Result<&str> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(Error::invalid("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(name)
}

fn validate_quota(quota: i64) -> Result<()> {
    if !(0..=ledger::MAX_TOKENS).contains(&quota) {
        return Err(Error::invalid(
            "personal_quota",
            format!("must be between 0 and {}", ledger::MAX_TOKENS),
        ));
    }
    Ok(())
}

/// Lower-cases and checks an email address (one `@`, a dotted domain, no spaces).
fn normalize_email(raw: &str) -> Result<String> {
    let email = raw.trim().to_lowercase();
    let invalid = || Error::invalid("email", "must be a valid email address");
    if email.is_empty() || email.chars().count() > MAX_EMAIL_CHARS {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let well_formed = !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if well_formed {
        Ok(email)
    } else {
        Err(invalid())
    }
}

fn unique_violation_is_email_taken(error: DieselError) -> Error {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => Error::EmailTaken,
        other => Error::Database(other),
    }
}

/// The user owning an unrevoked key with this SHA-256 hex hash.
pub fn find_by_key_hash(conn: &mut DbConnection, key_hash: &str) -> Result<Option<User>> {
    let user = api_keys::table
        .inner_join(users::table)
        .filter(api_keys::key_hash.eq(key_hash))
        .filter(api_keys::revoked_at.is_null())
        .filter(users::deleted_at.is_null())
        .select(User::as_select())
        .first(conn)
        .optional()?;
    Ok(user)
}

/// The user owning a presented plaintext key; `None` for malformed, unknown or
/// revoked keys (the caller answers all three alike).
pub fn authenticate(conn: &mut DbConnection, presented_key: &str) -> Result<Option<User>> {
    if !keys::is_well_formed(presented_key) {
        return Ok(None);
    }
    find_by_key_hash(conn, &keys::hash_key(presented_key))
}

/// One user by id (deleted users are not found).
pub fn get_user(conn: &mut DbConnection, id: i64) -> Result<User> {
    users::table
        .find(id)
        .filter(users::deleted_at.is_null())
        .select(User::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound("user"))
}

/// One user by id, deleted or not (history: a transfer's sender).
pub fn get_user_any(conn: &mut DbConnection, id: i64) -> Result<User> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound("user"))
}

/// A live user by email (case-insensitive).
pub fn find_by_email(conn: &mut DbConnection, email: &str) -> Result<Option<User>> {
    Ok(users::table
        .filter(users::email.eq(email.trim().to_lowercase()))
        .filter(users::deleted_at.is_null())
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

/// All users but deleted ones, oldest first.
pub fn list_users(conn: &mut DbConnection) -> Result<Vec<User>> {
    Ok(users::table
        .filter(users::deleted_at.is_null())
        .order(users::id.asc())
        .select(User::as_select())
        .load(conn)?)
}

/// What an admin may change on a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UpdateUser {
    /// New email, unique (case-insensitive).
    pub email: Option<String>,
    /// New display name, 1–200 characters.
    pub name: Option<String>,
    /// New tokens per period, ≥ 0.
    pub personal_quota: Option<i64>,
    /// New status.
    pub status: Option<UserStatus>,
    /// New admin flag.
    pub is_admin: Option<bool>,
    /// Whether critical requests may overdraw.
    pub overdraft_enabled: Option<bool>,
}

/// Validates every given field, then changes them together (all or nothing), under
/// the user's lock. A quota change moves this period's personal credit by the
/// difference (a decrease takes at most what is unspent); a status change to or from
/// `on_vacation` releases or returns credit (see `crate::vacation`).
pub fn update_user(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    id: i64,
    input: UpdateUser,
    rules: &QuotaRules,
    actor: Option<i64>,
) -> Result<User> {
    let email = input.email.as_deref().map(normalize_email).transpose()?;
    let name = input.name.as_deref().map(validate_name).transpose()?;
    if let Some(quota) = input.personal_quota {
        validate_quota(quota)?;
    }
    retry_on_conflict(|| {
        write_transaction(&mut *conn, |conn| {
            lock_user(conn, id)?;
            let current = get_user(conn, id)?;
            if let Some(email) = &email {
                let taken: i64 = users::table
                    .filter(users::email.eq(email))
                    .filter(users::id.ne(id))
                    .count()
                    .get_result(conn)?;
                if taken > 0 {
                    return Err(Error::EmailTaken);
                }
            }
            diesel::update(users::table.find(id))
                .set((
                    users::email.eq(email.as_deref().unwrap_or(&current.email)),
                    users::name.eq(name.unwrap_or(&current.name)),
                    users::personal_quota
                        .eq(input.personal_quota.unwrap_or(current.personal_quota)),
                    users::is_admin.eq(input.is_admin.unwrap_or(current.is_admin)),
                    users::overdraft_enabled
                        .eq(input.overdraft_enabled.unwrap_or(current.overdraft_enabled)),
                    users::updated_at.eq(now),
                ))
                .execute(conn)
                .map_err(unique_violation_is_email_taken)?;
            let mut adjusted = 0;
            if let Some(quota) = input.personal_quota {
                let p = rules.period.bounds(now).start;
                let owner = user_owner(id);
                // Only an issued allocation is adjusted; an unissued one is issued at the
                // new quota.
                if allocation::allocated_exists(conn, &owner, p)? {
                    let mut delta = quota - current.personal_quota;
                    if delta < 0 {
                        let left = ledger::balance(conn, Account::Personal(id), p)?.max(0);
                        delta = delta.max(-left);
                    }
                    if delta != 0 {
                        let mut movement = Movement::new(Kind::Adjustment).user(id).transfer(
                            Account::Issued,
                            Account::Personal(id),
                            p,
                            delta,
                        );
                        if let Some(actor) = actor {
                            movement = movement.actor(actor);
                        }
                        ledger::post(conn, now, &movement)?;
                        allocation::adjust_allocated(conn, &owner, p, delta)?;
                    }
                    adjusted = delta;
                }
            }
            let mut user = get_user(conn, id)?;
            if let Some(status) = input.status {
                let was = current.status();
                user = match (was, status) {
                    (UserStatus::OnVacation, UserStatus::OnVacation) => user,
                    (_, UserStatus::OnVacation) => vacation::start(conn, now, &user, rules, actor)?,
                    (_, UserStatus::Active) if was != UserStatus::Active => {
                        vacation::end(conn, now, &user, rules, actor)?
                    }
                    (_, other) => {
                        diesel::update(users::table.find(id))
                            .set(users::status.eq(other.as_str()))
                            .execute(conn)?;
                        get_user(conn, id)?
                    }
                };
            }
            audit::record(
                conn,
                now,
                actor,
                "user.update",
                "user",
                Some(id.to_string()),
                &serde_json::json!({
                    "email": email,
                    "name": name,
                    "personal_quota": input.personal_quota,
                    "quota_adjustment": adjusted,
                    "status": input.status.map(UserStatus::as_str),
                    "is_admin": input.is_admin,
                    "overdraft_enabled": input.overdraft_enabled,
                }),
            )?;
            Ok(user)
        })
    })
}

/// Soft-deletes a user: every key revoked (requests and proxies see `invalid_key`
/// within seconds), the user hidden from the admin API; usage history kept.
pub fn delete_user(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    id: i64,
    actor: Option<i64>,
) -> Result<()> {
    write_transaction(conn, |conn| {
        lock_user(conn, id)?;
        get_user(conn, id)?;
        let revoked = revoke_all(conn, now, id)?;
        diesel::update(users::table.find(id))
            .set((users::deleted_at.eq(Some(now)), users::updated_at.eq(now)))
            .execute(conn)?;
        audit::record(
            conn,
            now,
            actor,
            "user.delete",
            "user",
            Some(id.to_string()),
            &serde_json::json!({ "keys_revoked": revoked }),
        )?;
        Ok(())
    })
}

/// Revokes every key of a user; returns how many were live.
pub fn revoke_keys(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    id: i64,
    actor: Option<i64>,
) -> Result<usize> {
    write_transaction(conn, |conn| {
        get_user(conn, id)?;
        let revoked = revoke_all(conn, now, id)?;
        audit::record(
            conn,
            now,
            actor,
            "user.keys_revoke",
            "user",
            Some(id.to_string()),
            &serde_json::json!({ "revoked": revoked }),
        )?;
        Ok(revoked)
    })
}

/// Replaces a user's keys by a new one (returned once), atomically: the old keys stop
/// working in the same transaction.
pub fn rotate_key(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    id: i64,
    actor: Option<i64>,
) -> Result<CreatedUser> {
    let key = keys::generate();
    let user = write_transaction(conn, |conn| {
        let user = get_user(conn, id)?;
        revoke_all(conn, now, id)?;
        diesel::insert_into(api_keys::table)
            .values(NewApiKey {
                user_id: id,
                key_hash: &key.hash,
                key_prefix: &key.display_prefix,
                created_at: now,
            })
            .execute(conn)?;
        audit::record(
            conn,
            now,
            actor,
            "user.key_rotate",
            "user",
            Some(id.to_string()),
            &serde_json::json!({}),
        )?;
        Ok::<_, Error>(user)
    })?;
    Ok(CreatedUser {
        user,
        api_key: key.plaintext,
    })
}

fn revoke_all(conn: &mut DbConnection, now: NaiveDateTime, id: i64) -> Result<usize> {
    Ok(diesel::update(
        api_keys::table
            .filter(api_keys::user_id.eq(id))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(Some(now)))
    .execute(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email(" Ann@Example.COM ").unwrap(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "a@b@c.com",
            "ann@.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
    }
}
