//! Teams: shared pools and their members. Admins manage teams; a team admin manages
//! their own team's members and approves their requests (see `crate::approvals`).

mod model;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

pub use model::{Member, NewTeam, Team};

use crate::audit;
use crate::db::schema::{team_members, teams, users, vacation_releases};
use crate::db::{lock_team, lock_user, write_transaction, DbConnection};
use crate::error::{Error, Result};
use crate::ledger::{self, Account, Kind, Movement};
use crate::quota::allocation::{self, team_owner};
use crate::quota::QuotaRules;
use crate::users::User;

/// Longest team name, in characters.
pub const MAX_TEAM_NAME_CHARS: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;

/// What an admin gives to create a team.
#[derive(Debug, Clone)]
pub struct CreateTeam {
    /// Unique among live teams, 1–200 characters.
    pub name: String,
    /// Up to 2000 characters.
    pub description: String,
    /// Tokens per period, ≥ 0.
    pub common_pool: i64,
}

/// What an admin may change; `None` leaves a field.
#[derive(Debug, Clone, Default)]
pub struct UpdateTeam {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New pool per period (the current period's pool moves by the difference, never
    /// below what is left in it).
    pub common_pool: Option<i64>,
}

fn validate_name(raw: &str) -> Result<&str> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_TEAM_NAME_CHARS {
        return Err(Error::invalid(
            "name",
            format!("must be 1–{MAX_TEAM_NAME_CHARS} characters"),
        ));
    }
    Ok(name)
}

fn validate_description(raw: &str) -> Result<&str> {
    if raw.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Error::invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(raw.trim())
}

fn validate_pool(pool: i64) -> Result<()> {
    if !(0..=ledger::MAX_TOKENS).contains(&pool) {
        return Err(Error::invalid(
            "common_pool",
            format!("must be between 0 and {}", ledger::MAX_TOKENS),
        ));
    }
    Ok(())
}

fn name_taken(error: DieselError) -> Error {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => Error::conflict_on(
            "name",
            "team_name_taken",
            "a team with this name already exists",
        ),
        other => Error::Database(other),
    }
}

fn ensure_name_free(conn: &mut DbConnection, name: &str, except: Option<i64>) -> Result<()> {
    let mut query = teams::table
        .filter(teams::name.eq(name))
        .filter(teams::deleted_at.is_null())
        .into_boxed();
    if let Some(id) = except {
        query = query.filter(teams::id.ne(id));
    }
    let taken: i64 = query.count().get_result(conn)?;
    if taken > 0 {
        return Err(Error::conflict_on(
            "name",
            "team_name_taken",
            "a team with this name already exists",
        ));
    }
    Ok(())
}

/// Creates a team.
pub fn create_team(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    input: CreateTeam,
    actor: i64,
) -> Result<Team> {
    let name = validate_name(&input.name)?;
    let description = validate_description(&input.description)?;
    validate_pool(input.common_pool)?;
    write_transaction(conn, |conn| {
        ensure_name_free(conn, name, None)?;
        let team: Team = crate::on_backend!(conn, |c| diesel::insert_into(teams::table)
            .values(NewTeam {
                name,
                description,
                common_pool: input.common_pool,
                created_at: now,
                updated_at: now,
            })
            .returning(Team::as_returning())
            .get_result(c))
        .map_err(name_taken)?;
        audit::record(
            conn,
            now,
            Some(actor),
            "team.create",
            "team",
            Some(team.id.to_string()),
            &serde_json::json!({ "name": team.name, "common_pool": team.common_pool }),
        )?;
        Ok(team)
    })
}

/// A live team.
pub fn get_team(conn: &mut DbConnection, id: i64) -> Result<Team> {
    teams::table
        .find(id)
        .filter(teams::deleted_at.is_null())
        .select(Team::as_select())
        .first(conn)
        .optional()?
        .ok_or(Error::NotFound("team"))
}

/// Live teams by id; `only` restricts to these ids.
pub fn list_teams(conn: &mut DbConnection, only: Option<&[i64]>) -> Result<Vec<Team>> {
    let mut query = teams::table
        .filter(teams::deleted_at.is_null())
        .into_boxed();
    if let Some(ids) = only {
        query = query.filter(teams::id.eq_any(ids.to_vec()));
    }
    Ok(query
        .order(teams::id.asc())
        .select(Team::as_select())
        .load(conn)?)
}

/// Changes a team; a pool change adjusts the current period's pool by the
/// difference (a decrease takes at most what is left in it).
pub fn update_team(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    id: i64,
    input: UpdateTeam,
    rules: &QuotaRules,
    actor: i64,
) -> Result<Team> {
    let name = input.name.as_deref().map(validate_name).transpose()?;
    let description = input
        .description
        .as_deref()
        .map(validate_description)
        .transpose()?;
    if let Some(pool) = input.common_pool {
        validate_pool(pool)?;
    }
    write_transaction(conn, |conn| {
        lock_team(conn, id)?;
        let current = get_team(conn, id)?;
        if let Some(name) = name {
            ensure_name_free(conn, name, Some(id))?;
        }
        let team: Team = crate::on_backend!(conn, |c| diesel::update(teams::table.find(id))
            .set((
                teams::name.eq(name.unwrap_or(&current.name)),
                teams::description.eq(description.unwrap_or(&current.description)),
                teams::common_pool.eq(input.common_pool.unwrap_or(current.common_pool)),
                teams::updated_at.eq(now),
            ))
            .returning(Team::as_returning())
            .get_result(c))
        .map_err(name_taken)?;
        let mut adjusted = 0;
        if let Some(pool) = input.common_pool {
            let p = rules.period.bounds(now).start;
            let owner = team_owner(id);
            // Only an issued pool is adjusted; an unissued one is issued at the new size.
            if allocation::allocated_exists(conn, &owner, p)? {
                let mut delta = pool - current.common_pool;
                if delta < 0 {
                    let left = ledger::balance(conn, Account::Pool(id), p)?.max(0);
                    delta = delta.max(-left);
                }
                if delta != 0 {
                    ledger::post(
                        conn,
                        now,
                        &Movement::new(Kind::Adjustment)
                            .team(id)
                            .actor(actor)
                            .transfer(Account::Issued, Account::Pool(id), p, delta),
                    )?;
                    allocation::adjust_allocated(conn, &owner, p, delta)?;
                }
                adjusted = delta;
            }
        }
        audit::record(
            conn,
            now,
            Some(actor),
            "team.update",
            "team",
            Some(id.to_string()),
            &serde_json::json!({
                "name": team.name,
                "common_pool": team.common_pool,
                "pool_adjustment": adjusted,
            }),
        )?;
        Ok(team)
    })
}

/// Deletes a team: outstanding vacation credit goes back to its owners (as far as
/// the pool still has it), the rest of the pool back to the issuer, members are
/// removed. The row stays for the ledger's history.
pub fn delete_team(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    id: i64,
    rules: &QuotaRules,
    actor: i64,
) -> Result<()> {
    write_transaction(conn, |conn| {
        let member_ids: Vec<i64> = team_members::table
            .filter(team_members::team_id.eq(id))
            .order(team_members::user_id.asc())
            .select(team_members::user_id)
            .load(conn)?;
        for user_id in &member_ids {
            lock_user(conn, *user_id)?;
        }
        lock_team(conn, id)?;
        get_team(conn, id)?;
        let p = rules.period.bounds(now).start;
        let mut pool = ledger::balance(conn, Account::Pool(id), p)?.max(0);
        let open: Vec<(i64, i64, i64, i64)> = vacation_releases::table
            .filter(vacation_releases::team_id.eq(id))
            .filter(vacation_releases::period_start.eq(p))
            .filter(vacation_releases::returned.lt(vacation_releases::amount))
            .order(vacation_releases::id.asc())
            .select((
                vacation_releases::id,
                vacation_releases::user_id,
                vacation_releases::amount,
                vacation_releases::returned,
            ))
            .load(conn)?;
        for (release_id, user_id, amount, returned) in open {
            let back = (amount - returned).min(pool).max(0);
            ledger::post(
                conn,
                now,
                &Movement::new(Kind::VacationReturn)
                    .user(user_id)
                    .team(id)
                    .actor(actor)
                    .reference(release_id.to_string())
                    .transfer(Account::Pool(id), Account::Personal(user_id), p, back),
            )?;
            pool -= back;
            diesel::update(vacation_releases::table.find(release_id))
                .set((
                    vacation_releases::returned.eq(amount),
                    vacation_releases::returned_at.eq(Some(now)),
                ))
                .execute(conn)?;
        }
        ledger::post(
            conn,
            now,
            &Movement::new(Kind::Adjustment)
                .team(id)
                .actor(actor)
                .note("team deleted")
                .transfer(Account::Pool(id), Account::Issued, p, pool),
        )?;
        diesel::delete(team_members::table.filter(team_members::team_id.eq(id))).execute(conn)?;
        diesel::update(teams::table.find(id))
            .set((teams::deleted_at.eq(Some(now)), teams::updated_at.eq(now)))
            .execute(conn)?;
        audit::record(
            conn,
            now,
            Some(actor),
            "team.delete",
            "team",
            Some(id.to_string()),
            &serde_json::json!({ "members": member_ids, "pool_returned": pool }),
        )?;
        Ok(())
    })
}

/// Adds a user to a team (or changes their team-admin flag if already a member).
pub fn add_member(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    team_id: i64,
    user_id: i64,
    is_admin: bool,
    actor: i64,
) -> Result<Member> {
    write_transaction(conn, |conn| {
        get_team(conn, team_id)?;
        crate::users::get_user(conn, user_id)?;
        let existing: Option<Member> = team_members::table
            .find((team_id, user_id))
            .select(Member::as_select())
            .first(conn)
            .optional()?;
        let member = match existing {
            Some(_) => crate::on_backend!(conn, |c| diesel::update(
                team_members::table.find((team_id, user_id))
            )
            .set(team_members::is_admin.eq(is_admin))
            .returning(Member::as_returning())
            .get_result(c))?,
            None => crate::on_backend!(conn, |c| diesel::insert_into(team_members::table)
                .values(Member {
                    team_id,
                    user_id,
                    is_admin,
                    created_at: now,
                })
                .returning(Member::as_returning())
                .get_result(c))?,
        };
        audit::record(
            conn,
            now,
            Some(actor),
            "team.member_add",
            "team",
            Some(team_id.to_string()),
            &serde_json::json!({ "user_id": user_id, "is_admin": is_admin }),
        )?;
        Ok(member)
    })
}

/// Removes a user from a team; 404 when they are not a member.
pub fn remove_member(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    team_id: i64,
    user_id: i64,
    actor: i64,
) -> Result<()> {
    write_transaction(conn, |conn| {
        get_team(conn, team_id)?;
        let removed = diesel::delete(team_members::table.find((team_id, user_id))).execute(conn)?;
        if removed == 0 {
            return Err(Error::NotFound("team member"));
        }
        audit::record(
            conn,
            now,
            Some(actor),
            "team.member_remove",
            "team",
            Some(team_id.to_string()),
            &serde_json::json!({ "user_id": user_id }),
        )?;
        Ok(())
    })
}

/// A team's members with their users, by user id.
pub fn members(conn: &mut DbConnection, team_id: i64) -> Result<Vec<(Member, User)>> {
    Ok(team_members::table
        .inner_join(users::table)
        .filter(team_members::team_id.eq(team_id))
        .filter(users::deleted_at.is_null())
        .order(users::id.asc())
        .select((Member::as_select(), User::as_select()))
        .load(conn)?)
}

/// Whether `user_id` is a member of `team_id`, and whether as team admin.
pub fn membership(conn: &mut DbConnection, team_id: i64, user_id: i64) -> Result<Option<bool>> {
    Ok(team_members::table
        .find((team_id, user_id))
        .select(team_members::is_admin)
        .first(conn)
        .optional()?)
}

/// The live teams `user_id` administers.
pub fn administered_by(conn: &mut DbConnection, user_id: i64) -> Result<Vec<i64>> {
    Ok(team_members::table
        .inner_join(teams::table)
        .filter(team_members::user_id.eq(user_id))
        .filter(team_members::is_admin.eq(true))
        .filter(teams::deleted_at.is_null())
        .order(teams::id.asc())
        .select(teams::id)
        .load(conn)?)
}

/// Whether `admin_id` is team admin of a live team `member_id` belongs to.
pub fn administers_member(conn: &mut DbConnection, admin_id: i64, member_id: i64) -> Result<bool> {
    let teams = administered_by(conn, admin_id)?;
    if teams.is_empty() {
        return Ok(false);
    }
    let shared: i64 = team_members::table
        .filter(team_members::user_id.eq(member_id))
        .filter(team_members::team_id.eq_any(teams))
        .count()
        .get_result(conn)?;
    Ok(shared > 0)
}

/// The team admins of every team `member_id` belongs to.
pub fn admins_of_member(conn: &mut DbConnection, member_id: i64) -> Result<Vec<i64>> {
    let teams: Vec<i64> = team_members::table
        .filter(team_members::user_id.eq(member_id))
        .select(team_members::team_id)
        .load(conn)?;
    let mut admins: Vec<i64> = team_members::table
        .inner_join(users::table)
        .filter(team_members::team_id.eq_any(teams))
        .filter(team_members::is_admin.eq(true))
        .filter(users::deleted_at.is_null())
        .select(team_members::user_id)
        .load(conn)?;
    admins.sort_unstable();
    admins.dedup();
    Ok(admins)
}
