//! `/v1/admin/teams*`: teams and members. Admins manage every team; a team admin sees
//! their own teams and removes their (non-admin) members.

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::Require;
use super::error::ApiError;
use super::json::decode;
use super::query::{decode_query, path_id};
use super::wire::{
    CreateTeamBody, MemberBody, MembershipQuery, TeamBody, TeamNumbers, UpdateTeamBody,
};
use super::AppState;
use crate::db::{write_transaction, DbConnection};
use crate::error::Error;
use crate::quota::{pools, QuotaRules};
use crate::teams::{self, Team};
use crate::users::User;

fn team_body(
    conn: &mut DbConnection,
    now: chrono::NaiveDateTime,
    team: Team,
    rules: &QuotaRules,
    with_members: bool,
) -> Result<TeamBody, Error> {
    write_transaction(conn, |conn| {
        let (totals, drawn) = pools::totals(conn, now, team.id, rules)?;
        let numbers = TeamNumbers {
            pool_balance: totals.balance,
            pool_size: totals.size,
            active_members: totals.active_members,
            member_count: totals.member_count,
        };
        let members = if with_members {
            Some(
                teams::members(conn, team.id)?
                    .into_iter()
                    .map(|(m, u)| {
                        let d = drawn.get(&u.id).copied().unwrap_or(0);
                        MemberBody::from((m, u, d))
                    })
                    .collect(),
            )
        } else {
            None
        };
        Ok(TeamBody::new(team, numbers, members))
    })
}

/// Admin, or team admin of `team_id`.
fn may_see_team(conn: &mut DbConnection, caller: &User, team_id: i64) -> Result<(), ApiError> {
    if caller.is_admin || teams::membership(conn, team_id, caller.id)? == Some(true) {
        Ok(())
    } else {
        Err(ApiError::NotAllowed("admins and this team's admins only"))
    }
}

/// `POST /v1/admin/teams` → 201 with the team (`common_pool` defaults to
/// `DEFAULT_TEAM_POOL`).
pub async fn create_team(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rules = state.rules();
    let team = state
        .as_caller(&req, Require::Admin, move |conn, admin| {
            let body: CreateTeamBody = decode(&body)?;
            let team = teams::create_team(
                conn,
                now,
                teams::CreateTeam {
                    name: body.name,
                    description: body.description.unwrap_or_default(),
                    common_pool: body.common_pool.unwrap_or(rules.default_team_pool),
                },
                admin.id,
            )?;
            Ok(team_body(conn, now, team, &rules, true)?)
        })
        .await?;
    tracing::info!(team_id = team.id, "team created");
    Ok(HttpResponse::Created().json(team))
}

/// `GET /v1/admin/teams`: every team for admins, their own for team admins.
pub async fn list_teams(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rules = state.rules();
    let list = state
        .as_caller(&req, Require::User, move |conn, caller| {
            let list = if caller.is_admin {
                teams::list_teams(conn, None)?
            } else {
                let own = teams::administered_by(conn, caller.id)?;
                if own.is_empty() {
                    return Err(ApiError::NotAllowed("admins and team admins only"));
                }
                teams::list_teams(conn, Some(&own))?
            };
            let mut out = Vec::with_capacity(list.len());
            for team in list {
                out.push(team_body(conn, now, team, &rules, false)?);
            }
            Ok(out)
        })
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// `GET /v1/admin/teams/{id}`: the team with its members.
pub async fn get_team(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rules = state.rules();
    let raw = path.into_inner();
    let body = state
        .as_caller(&req, Require::User, move |conn, caller| {
            let id = path_id(&raw, "team")?;
            may_see_team(conn, &caller, id)?;
            let team = teams::get_team(conn, id)?;
            Ok(team_body(conn, now, team, &rules, true)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `PUT /v1/admin/teams/{id}` (admins).
pub async fn update_team(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rules = state.rules();
    let raw = path.into_inner();
    let team = state
        .as_caller(&req, Require::Admin, move |conn, admin| {
            let id = path_id(&raw, "team")?;
            let body: UpdateTeamBody = decode(&body)?;
            let team = teams::update_team(
                conn,
                now,
                id,
                teams::UpdateTeam {
                    name: body.name,
                    description: body.description,
                    common_pool: body.common_pool,
                },
                &rules,
                admin.id,
            )?;
            Ok(team_body(conn, now, team, &rules, true)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(team))
}

/// `DELETE /v1/admin/teams/{id}` (admins) → `{"id", "deleted": true}`.
pub async fn delete_team(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rules = state.rules();
    let raw = path.into_inner();
    let id = state
        .as_caller(&req, Require::Admin, move |conn, admin| {
            let id = path_id(&raw, "team")?;
            teams::delete_team(conn, now, id, &rules, admin.id)?;
            Ok(id)
        })
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "id": id, "deleted": true })))
}

fn membership_ids(raw: &(String, String)) -> Result<(i64, i64), ApiError> {
    Ok((path_id(&raw.0, "team")?, path_id(&raw.1, "user")?))
}

/// `POST /v1/admin/teams/{team_id}/members/{user_id}?is_admin=false` → the team.
/// Admins only: a team admin who could add anyone could then approve their requests.
pub async fn add_member(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rules = state.rules();
    let raw_query = req.query_string().to_owned();
    let raw = path.into_inner();
    let team = state
        .as_caller(&req, Require::Admin, move |conn, caller| {
            let query: MembershipQuery = decode_query(&raw_query)?;
            let is_admin = query.is_admin.unwrap_or(false);
            let (team_id, user_id) = membership_ids(&raw)?;
            teams::add_member(conn, now, team_id, user_id, is_admin, caller.id)?;
            let team = teams::get_team(conn, team_id)?;
            Ok(team_body(conn, now, team, &rules, true)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(team))
}

/// `DELETE /v1/admin/teams/{team_id}/members/{user_id}` → the team. Team admins may
/// remove their team's non-admin members.
pub async fn remove_member(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let rules = state.rules();
    let raw_query = req.query_string().to_owned();
    let raw = path.into_inner();
    let team = state
        .as_caller(&req, Require::User, move |conn, caller| {
            let (team_id, user_id) = membership_ids(&raw)?;
            if !caller.is_admin {
                may_see_team(conn, &caller, team_id)?;
            }
            // `is_admin` means nothing here, but a bad value is still refused.
            let _: MembershipQuery = decode_query(&raw_query)?;
            if !caller.is_admin && teams::membership(conn, team_id, user_id)? == Some(true) {
                return Err(ApiError::NotAllowed("only admins remove a team admin"));
            }
            teams::remove_member(conn, now, team_id, user_id, caller.id)?;
            let team = teams::get_team(conn, team_id)?;
            Ok(team_body(conn, now, team, &rules, true)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(team))
}
