//! The authorization matrix: every `/v1/*` route called by every kind of caller, written
//! as data (route × caller → exact status), with proof that refused calls changed
//! nothing.
//!
//! A row names a route and, where the answer depends on it, its target (whose transfer,
//! which membership). A cell expected to succeed runs in a fresh scenario and its effect
//! is checked; the other cells of a row share one scenario, snapshotted before and after
//! each call. Where the code deviates from the policy, the cell holds the policy's
//! answer, so the matrix fails until the code is fixed. All wrong cells are reported
//! together.
//!
//! The policy: admin routes are for admins; team admins see their own teams, manage
//! their non-admin members, and decide the transfers and quota requests of their
//! members (never their own); `/v1/users/me*` is for any user, about themselves. A
//! missing, malformed, revoked or deleted user's key is 401 `invalid_api_key`, a
//! suspended user 403 `user_suspended`, on every route, before any input is looked at.
//!
//! `bad_input.rs` reuses the scenario, the snapshot and the request helper.

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::Method;
use actix_web::test;
use alfred_control_plane::approvals;
use alfred_control_plane::clock::TestClock;
use alfred_control_plane::db::schema::{
    allocations, api_keys, audit_log, ledger_balances, ledger_entries, ledger_movements,
    notifications, quota_requests, team_members, teams as teams_table,
    transfers as transfers_table, users as users_table, vacation_releases,
};
use alfred_control_plane::db::DbConnection;
use alfred_control_plane::ledger;
use alfred_control_plane::quota::QuotaRules;
use alfred_control_plane::teams;
use alfred_control_plane::transfers::{self, TransferRequest};
use alfred_control_plane::users::{self, CreatedUser, UserStatus};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::{json, Value};

use crate::common::{create_user, set_status, start_time, TestDb};
use crate::http_test;

/// The in-process app over `db` with `clock`.
macro_rules! app {
    ($db:expr, $clock:expr) => {
        actix_web::test::init_service(
            actix_web::App::new()
                .app_data(actix_web::web::Data::new($crate::common::state(
                    &$db, &$clock,
                )))
                .configure(alfred_control_plane::http::routes),
        )
        .await
    };
}
pub(crate) use app;

/// Sends one request (`key` in `X-API-Key`, `body` verbatim) → status and body (JSON,
/// or the raw text as a JSON string, e.g. CSV).
pub(crate) async fn call<S>(
    app: &S,
    method: Method,
    uri: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let mut req = test::TestRequest::default().method(method).uri(uri);
    if let Some(key) = key {
        req = req.insert_header(("x-api-key", key.to_owned()));
    }
    if let Some(body) = body {
        req = req
            .insert_header(("content-type", "application/json"))
            .set_payload(body.to_owned());
    }
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status().as_u16();
    let bytes = test::read_body(resp).await;
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, value)
}

/// Rules under which the scenario's transfers of 200 tokens wait for approval.
pub(crate) fn approval_rules() -> QuotaRules {
    QuotaRules {
        transfer_approval_threshold: Some(100),
        ..QuotaRules::DEFAULT
    }
}

// ---- the scenario ------------------------------------------------------------------

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A global admin.
    Admin,
    /// Team admin of the other team `O` (not of the team concerned).
    OtherTeamAdmin,
    /// Team admin of the team concerned `T`.
    TeamAdmin,
    /// A plain member of `T`.
    Member,
    /// A suspended user (an admin and team admin of `T`, to show suspension wins).
    Suspended,
    /// The key of a deleted user (an admin).
    Deleted,
    /// A revoked key (of an admin).
    Revoked,
    /// No key at all.
    NoKey,
    /// Not a `tp-` key.
    Malformed,
}

const CALLERS: [Caller; 9] = [
    Caller::Admin,
    Caller::OtherTeamAdmin,
    Caller::TeamAdmin,
    Caller::Member,
    Caller::Suspended,
    Caller::Deleted,
    Caller::Revoked,
    Caller::NoKey,
    Caller::Malformed,
];

/// One organisation: team `T` (team admins `team_admin`, `co_admin`, the suspended
/// user; members `member`, `colleague`), team `O` (team admin `other_team_admin`,
/// member `other_member`), and `outsider` in no team. Every user has 1000 tokens.
///
/// Transfers: `t_member` (member → outsider, 200, pending), `t_team_admin` (team admin
/// → outsider, pending), `t_other` (other member → member, pending), `t_gift`
/// (colleague → member, 50, completed), `t_outside` (outsider → admin, 50, completed).
/// Quota requests (300, pending): `r_member`, `r_team_admin`, `r_other`, `r_outside`.
pub(crate) struct World {
    pub n: usize,
    pub admin: CreatedUser,
    pub other_team_admin: CreatedUser,
    pub team_admin: CreatedUser,
    pub member: CreatedUser,
    pub suspended: CreatedUser,
    pub deleted: CreatedUser,
    pub revoked: CreatedUser,
    pub co_admin: CreatedUser,
    pub colleague: CreatedUser,
    pub other_member: CreatedUser,
    pub outsider: CreatedUser,
    pub team: i64,
    pub other_team: i64,
    pub t_member: i64,
    pub t_team_admin: i64,
    pub t_other: i64,
    pub t_gift: i64,
    pub r_member: i64,
    pub r_team_admin: i64,
    pub r_other: i64,
    pub r_outside: i64,
    /// (id, sender, recipient) of every transfer above.
    pub transfers: Vec<(i64, i64, i64)>,
    /// (id, requester) of every request above.
    pub requests: Vec<(i64, i64)>,
    /// The notifications of this scenario's users when it was built.
    pub notification_ids: Vec<i64>,
}

impl World {
    /// Builds scenario number `n` (emails and team names carry `n`).
    pub(crate) fn build(db: &TestDb, n: usize) -> Self {
        let user = |role: &str, admin: bool| {
            create_user(db, &format!("{role}{n}@example.com"), 1000, admin)
        };
        let admin = user("admin", true);
        let other_team_admin = user("other-team-admin", false);
        let team_admin = user("team-admin", false);
        let member = user("member", false);
        let suspended = user("suspended", true);
        let deleted = user("deleted", true);
        let revoked = user("revoked", true);
        let co_admin = user("co-admin", false);
        let colleague = user("colleague", false);
        let other_member = user("other-member", false);
        let outsider = user("outsider", false);

        let now = start_time();
        let rules = approval_rules();
        let mut conn = db.conn();
        let mut team = |name: String| {
            teams::create_team(
                &mut conn,
                now,
                teams::CreateTeam {
                    name,
                    description: String::new(),
                    common_pool: 10_000,
                },
                admin.user.id,
            )
            .unwrap()
            .id
        };
        let t = team(format!("Team {n}"));
        let o = team(format!("Other {n}"));
        for (team_id, who, is_admin) in [
            (t, &team_admin, true),
            (t, &co_admin, true),
            (t, &suspended, true),
            (t, &member, false),
            (t, &colleague, false),
            (o, &other_team_admin, true),
            (o, &other_member, false),
        ] {
            teams::add_member(
                &mut conn,
                now,
                team_id,
                who.user.id,
                is_admin,
                admin.user.id,
            )
            .unwrap();
        }
        let mut transfer_list = Vec::new();
        let mut send = |conn: &mut DbConnection, from: &CreatedUser, to: &CreatedUser, amount| {
            let t = transfers::send(
                conn,
                now,
                &from.user,
                TransferRequest {
                    recipient_email: to.user.email.clone(),
                    amount,
                    reason: "for the project".into(),
                },
                &rules,
            )
            .unwrap();
            assert_eq!(t.status, if amount > 100 { "pending" } else { "completed" });
            transfer_list.push((t.id, from.user.id, to.user.id));
            t.id
        };
        let t_member = send(&mut conn, &member, &outsider, 200);
        let t_team_admin = send(&mut conn, &team_admin, &outsider, 200);
        let t_other = send(&mut conn, &other_member, &member, 200);
        let t_gift = send(&mut conn, &colleague, &member, 50);
        send(&mut conn, &outsider, &admin, 50);
        let mut request_list = Vec::new();
        let mut ask = |conn: &mut DbConnection, who: &CreatedUser| {
            let r = approvals::create(conn, now, &who.user, 300, "a bigger run", &rules).unwrap();
            request_list.push((r.id, who.user.id));
            r.id
        };
        let r_member = ask(&mut conn, &member);
        let r_team_admin = ask(&mut conn, &team_admin);
        let r_other = ask(&mut conn, &other_member);
        let r_outside = ask(&mut conn, &outsider);

        set_status(&mut conn, now, suspended.user.id, UserStatus::Suspended).unwrap();
        users::delete_user(&mut conn, now, deleted.user.id, None).unwrap();
        users::revoke_keys(&mut conn, now, revoked.user.id, None).unwrap();

        let mut world = Self {
            n,
            admin,
            other_team_admin,
            team_admin,
            member,
            suspended,
            deleted,
            revoked,
            co_admin,
            colleague,
            other_member,
            outsider,
            team: t,
            other_team: o,
            t_member,
            t_team_admin,
            t_other,
            t_gift,
            r_member,
            r_team_admin,
            r_other,
            r_outside,
            transfers: transfer_list,
            requests: request_list,
            notification_ids: Vec::new(),
        };
        world.notification_ids = notifications::table
            .filter(notifications::user_id.eq_any(world.user_ids()))
            .order(notifications::id.asc())
            .select(notifications::id)
            .load(&mut conn)
            .unwrap();
        world
    }

    fn user_ids(&self) -> Vec<i64> {
        [
            &self.admin,
            &self.other_team_admin,
            &self.team_admin,
            &self.member,
            &self.suspended,
            &self.deleted,
            &self.revoked,
            &self.co_admin,
            &self.colleague,
            &self.other_member,
            &self.outsider,
        ]
        .iter()
        .map(|u| u.user.id)
        .collect()
    }

    /// The key `caller` presents, if any.
    pub(crate) fn key(&self, caller: Caller) -> Option<String> {
        Some(match caller {
            Caller::Admin => self.admin.api_key.clone(),
            Caller::OtherTeamAdmin => self.other_team_admin.api_key.clone(),
            Caller::TeamAdmin => self.team_admin.api_key.clone(),
            Caller::Member => self.member.api_key.clone(),
            Caller::Suspended => self.suspended.api_key.clone(),
            Caller::Deleted => self.deleted.api_key.clone(),
            Caller::Revoked => self.revoked.api_key.clone(),
            Caller::NoKey => return None,
            Caller::Malformed => "tp-not a key".to_owned(),
        })
    }

    /// The caller's user id (0 for callers without one).
    pub(crate) fn id(&self, caller: Caller) -> i64 {
        match caller {
            Caller::Admin => self.admin.user.id,
            Caller::OtherTeamAdmin => self.other_team_admin.user.id,
            Caller::TeamAdmin => self.team_admin.user.id,
            Caller::Member => self.member.user.id,
            Caller::Suspended => self.suspended.user.id,
            Caller::Deleted => self.deleted.user.id,
            Caller::Revoked => self.revoked.user.id,
            Caller::NoKey | Caller::Malformed => 0,
        }
    }
}

// ---- "nothing changed" -------------------------------------------------------------

type UserRow = (
    i64,
    String,
    String,
    i64,
    String,
    bool,
    bool,
    Option<NaiveDateTime>,
);

/// Everything a call could change, compared before and after refused calls.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    users: Vec<UserRow>,
    api_keys: Vec<(i64, i64, Option<NaiveDateTime>)>,
    teams: Vec<(i64, String, String, i64, Option<NaiveDateTime>)>,
    team_members: Vec<(i64, i64, bool)>,
    transfers: Vec<(i64, String, Option<i64>, Option<String>)>,
    quota_requests: Vec<(i64, String, Option<i64>, Option<String>)>,
    /// Rows and unread rows.
    notifications: (i64, i64),
    audit_log: i64,
    ledger_movements: i64,
    ledger_entries: i64,
    ledger_balances: Vec<(String, NaiveDateTime, i64)>,
    allocations: Vec<(String, NaiveDateTime, i64)>,
    vacation_releases: i64,
}

impl Snapshot {
    /// Reads the snapshot.
    pub(crate) fn take(conn: &mut DbConnection) -> Self {
        Self {
            users: users_table::table
                .order(users_table::id)
                .select((
                    users_table::id,
                    users_table::email,
                    users_table::name,
                    users_table::personal_quota,
                    users_table::status,
                    users_table::is_admin,
                    users_table::overdraft_enabled,
                    users_table::deleted_at,
                ))
                .load(conn)
                .unwrap(),
            api_keys: api_keys::table
                .order(api_keys::id)
                .select((api_keys::id, api_keys::user_id, api_keys::revoked_at))
                .load(conn)
                .unwrap(),
            teams: teams_table::table
                .order(teams_table::id)
                .select((
                    teams_table::id,
                    teams_table::name,
                    teams_table::description,
                    teams_table::common_pool,
                    teams_table::deleted_at,
                ))
                .load(conn)
                .unwrap(),
            team_members: team_members::table
                .order((team_members::team_id, team_members::user_id))
                .select((
                    team_members::team_id,
                    team_members::user_id,
                    team_members::is_admin,
                ))
                .load(conn)
                .unwrap(),
            transfers: transfers_table::table
                .order(transfers_table::id)
                .select((
                    transfers_table::id,
                    transfers_table::status,
                    transfers_table::decided_by,
                    transfers_table::decision_note,
                ))
                .load(conn)
                .unwrap(),
            quota_requests: quota_requests::table
                .order(quota_requests::id)
                .select((
                    quota_requests::id,
                    quota_requests::status,
                    quota_requests::decided_by,
                    quota_requests::decision_note,
                ))
                .load(conn)
                .unwrap(),
            notifications: (
                notifications::table.count().get_result(conn).unwrap(),
                notifications::table
                    .filter(notifications::read_at.is_null())
                    .count()
                    .get_result(conn)
                    .unwrap(),
            ),
            audit_log: audit_log::table.count().get_result(conn).unwrap(),
            ledger_movements: ledger_movements::table.count().get_result(conn).unwrap(),
            ledger_entries: ledger_entries::table.count().get_result(conn).unwrap(),
            ledger_balances: ledger_balances::table
                .order((ledger_balances::account, ledger_balances::period_start))
                .select((
                    ledger_balances::account,
                    ledger_balances::period_start,
                    ledger_balances::balance,
                ))
                .load(conn)
                .unwrap(),
            allocations: allocations::table
                .order((allocations::owner, allocations::period_start))
                .select((
                    allocations::owner,
                    allocations::period_start,
                    allocations::amount,
                ))
                .load(conn)
                .unwrap(),
            vacation_releases: vacation_releases::table.count().get_result(conn).unwrap(),
        }
    }

    /// The tables that differ from `other`.
    pub(crate) fn changed(&self, other: &Self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut cmp = |name, differs: bool| {
            if differs {
                out.push(name);
            }
        };
        cmp("users", self.users != other.users);
        cmp("api_keys", self.api_keys != other.api_keys);
        cmp("teams", self.teams != other.teams);
        cmp("team_members", self.team_members != other.team_members);
        cmp("transfers", self.transfers != other.transfers);
        cmp(
            "quota_requests",
            self.quota_requests != other.quota_requests,
        );
        cmp("notifications", self.notifications != other.notifications);
        cmp("audit_log", self.audit_log != other.audit_log);
        cmp(
            "ledger_movements",
            self.ledger_movements != other.ledger_movements,
        );
        cmp(
            "ledger_entries",
            self.ledger_entries != other.ledger_entries,
        );
        cmp(
            "ledger_balances",
            self.ledger_balances != other.ledger_balances,
        );
        cmp("allocations", self.allocations != other.allocations);
        cmp(
            "vacation_releases",
            self.vacation_releases != other.vacation_releases,
        );
        out
    }
}

/// Fails when the ledger's invariants are broken.
pub(crate) fn assert_ledger_clean(db: &TestDb) {
    let report = ledger::audit(&mut db.conn()).unwrap();
    assert!(report.is_clean(), "ledger audit: {report:?}");
}

// ---- the matrix --------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Users,
    Teams,
    Members,
    Transfers,
    Requests,
    AuditAndMe,
    AuthBeforeInput,
}

type PathFn = fn(&World, Caller) -> String;
type BodyFn = fn(&World) -> Option<String>;
/// Checks a successful call's effect: (connection, scenario, caller, answer).
type CheckFn = fn(&mut DbConnection, &World, Caller, &Value) -> Result<(), String>;

struct Row {
    group: Group,
    /// Route and target, for the report.
    what: &'static str,
    method: Method,
    path: PathFn,
    body: BodyFn,
    /// Status for the admin, the other team's admin, the team's admin, a member.
    /// Suspended callers get 403 `user_suspended`, the rest 401 `invalid_api_key`.
    expect: [u16; 4],
    check: Option<CheckFn>,
}

impl Row {
    fn expected(&self, caller: Caller) -> u16 {
        match caller {
            Caller::Admin => self.expect[0],
            Caller::OtherTeamAdmin => self.expect[1],
            Caller::TeamAdmin => self.expect[2],
            Caller::Member => self.expect[3],
            Caller::Suspended => 403,
            Caller::Deleted | Caller::Revoked | Caller::NoKey | Caller::Malformed => 401,
        }
    }
}

fn row(
    group: Group,
    what: &'static str,
    method: Method,
    path: PathFn,
    body: BodyFn,
    expect: [u16; 4],
    check: Option<CheckFn>,
) -> Row {
    Row {
        group,
        what,
        method,
        path,
        body,
        expect,
        check,
    }
}

fn no_body(_: &World) -> Option<String> {
    None
}

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

fn ids_of(body: &Value, key: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = body
        .as_array()
        .map(|a| a.iter().filter_map(|v| v[key].as_i64()).collect())
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

fn sorted(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable();
    ids
}

fn membership(conn: &mut DbConnection, team: i64, user: i64) -> Option<bool> {
    teams::membership(conn, team, user).unwrap()
}

fn user_row(conn: &mut DbConnection, id: i64) -> UserRow {
    users_table::table
        .find(id)
        .select((
            users_table::id,
            users_table::email,
            users_table::name,
            users_table::personal_quota,
            users_table::status,
            users_table::is_admin,
            users_table::overdraft_enabled,
            users_table::deleted_at,
        ))
        .first(conn)
        .unwrap()
}

fn transfer_decided(conn: &mut DbConnection, id: i64, status: &str, by: i64) -> Result<(), String> {
    let t = transfers::get(conn, id).unwrap();
    ensure(t.status == status && t.decided_by == Some(by), || {
        format!(
            "transfer {id} is {} decided by {:?}",
            t.status, t.decided_by
        )
    })
}

fn request_decided(conn: &mut DbConnection, id: i64, status: &str, by: i64) -> Result<(), String> {
    let r = approvals::get(conn, id).unwrap();
    ensure(r.status == status && r.decided_by == Some(by), || {
        format!("request {id} is {} decided by {:?}", r.status, r.decided_by)
    })
}

/// The transfers of the scenario an admin listing (`Some(None)`), a team admin's
/// listing (`Some(Some(team members))`) or nobody (`None`) may see.
fn visible_transfers(w: &World, caller: Caller) -> Vec<i64> {
    let members: Vec<i64> = match caller {
        Caller::Admin => return sorted(w.transfers.iter().map(|t| t.0).collect()),
        Caller::TeamAdmin => vec![
            w.team_admin.user.id,
            w.co_admin.user.id,
            w.suspended.user.id,
            w.member.user.id,
            w.colleague.user.id,
        ],
        Caller::OtherTeamAdmin => vec![w.other_team_admin.user.id, w.other_member.user.id],
        _ => vec![],
    };
    sorted(
        w.transfers
            .iter()
            .filter(|(_, s, r)| members.contains(s) || members.contains(r))
            .map(|t| t.0)
            .collect(),
    )
}

fn visible_requests(w: &World, caller: Caller) -> Vec<i64> {
    let members: Vec<i64> = match caller {
        Caller::Admin => return sorted(w.requests.iter().map(|r| r.0).collect()),
        Caller::TeamAdmin => vec![
            w.team_admin.user.id,
            w.co_admin.user.id,
            w.suspended.user.id,
            w.member.user.id,
            w.colleague.user.id,
        ],
        Caller::OtherTeamAdmin => vec![w.other_team_admin.user.id, w.other_member.user.id],
        _ => vec![],
    };
    sorted(
        w.requests
            .iter()
            .filter(|(_, u)| members.contains(u))
            .map(|r| r.0)
            .collect(),
    )
}

/// `listed` is exactly `expected` for team admins; for admins (who see every
/// scenario of the database) it contains it.
fn listing_matches(caller: Caller, listed: &[i64], expected: &[i64]) -> Result<(), String> {
    let ok = if caller == Caller::Admin {
        expected.iter().all(|id| listed.contains(id))
    } else {
        listed == expected
    };
    ensure(ok, || format!("listed {listed:?}, expected {expected:?}"))
}

const A: [u16; 4] = [200, 403, 403, 403];

#[allow(clippy::too_many_lines)]
fn rows() -> Vec<Row> {
    use Group::*;
    let (get, post, put, delete) = (Method::GET, Method::POST, Method::PUT, Method::DELETE);
    let long_note = |_: &World| Some(json!({ "note": "n".repeat(501) }).to_string());
    vec![
        // ---- /v1/admin/users*: admins only, even about a member of the caller's team.
        row(
            Users,
            "POST /v1/admin/users",
            post.clone(),
            |_, _| "/v1/admin/users".into(),
            |w| {
                Some(json!({"email": format!("new{}@example.com", w.n), "name": "New"}).to_string())
            },
            [201, 403, 403, 403],
            Some(|conn, w, _, body| {
                let found = users::find_by_email(conn, &format!("new{}@example.com", w.n)).unwrap();
                ensure(
                    found.is_some_and(|u| !u.is_admin) && body["api_key"].is_string(),
                    || format!("{body}"),
                )
            }),
        ),
        row(
            Users,
            "GET /v1/admin/users",
            get.clone(),
            |_, _| "/v1/admin/users".into(),
            no_body,
            A,
            Some(|_, w, _, body| {
                let ids = ids_of(body, "id");
                ensure(
                    ids.contains(&w.colleague.user.id) && !ids.contains(&w.deleted.user.id),
                    || format!("{ids:?}"),
                )
            }),
        ),
        row(
            Users,
            "GET /v1/admin/users/{colleague}",
            get.clone(),
            |w, _| format!("/v1/admin/users/{}", w.colleague.user.id),
            no_body,
            A,
            Some(|_, w, _, body| ensure(body["id"] == w.colleague.user.id, || format!("{body}"))),
        ),
        row(
            Users,
            "PUT /v1/admin/users/{colleague} personal_quota",
            put.clone(),
            |w, _| format!("/v1/admin/users/{}", w.colleague.user.id),
            |_| Some(r#"{"personal_quota": 2000}"#.into()),
            A,
            Some(|conn, w, _, _| {
                let row = user_row(conn, w.colleague.user.id);
                ensure(row.3 == 2000, || format!("{row:?}"))
            }),
        ),
        row(
            Users,
            "PUT /v1/admin/users/{colleague} status=suspended",
            put.clone(),
            |w, _| format!("/v1/admin/users/{}", w.colleague.user.id),
            |_| Some(r#"{"status": "suspended"}"#.into()),
            A,
            Some(|conn, w, _, _| {
                let row = user_row(conn, w.colleague.user.id);
                ensure(row.4 == "suspended", || format!("{row:?}"))
            }),
        ),
        // Escalation: making oneself an admin.
        row(
            Users,
            "PUT /v1/admin/users/{self} is_admin=true",
            put.clone(),
            |w, c| format!("/v1/admin/users/{}", w.id(c)),
            |_| Some(r#"{"is_admin": true}"#.into()),
            A,
            Some(|conn, w, c, _| {
                let row = user_row(conn, w.id(c));
                ensure(row.5, || format!("{row:?}"))
            }),
        ),
        row(
            Users,
            "DELETE /v1/admin/users/{colleague}",
            delete.clone(),
            |w, _| format!("/v1/admin/users/{}", w.colleague.user.id),
            no_body,
            A,
            Some(|conn, w, _, _| {
                let row = user_row(conn, w.colleague.user.id);
                ensure(row.7.is_some(), || format!("{row:?}"))
            }),
        ),
        row(
            Users,
            "POST /v1/admin/users/{colleague}/rotate-key",
            post.clone(),
            |w, _| format!("/v1/admin/users/{}/rotate-key", w.colleague.user.id),
            no_body,
            A,
            Some(|conn, w, _, body| {
                let old = users::authenticate(conn, &w.colleague.api_key).unwrap();
                let new =
                    users::authenticate(conn, body["api_key"].as_str().unwrap_or("")).unwrap();
                ensure(
                    old.is_none() && new.is_some_and(|u| u.id == w.colleague.user.id),
                    || format!("{body}"),
                )
            }),
        ),
        row(
            Users,
            "DELETE /v1/admin/users/{colleague}/keys",
            delete.clone(),
            |w, _| format!("/v1/admin/users/{}/keys", w.colleague.user.id),
            no_body,
            A,
            Some(|conn, w, _, body| {
                let old = users::authenticate(conn, &w.colleague.api_key).unwrap();
                ensure(old.is_none() && body["revoked"] == 1, || format!("{body}"))
            }),
        ),
        row(
            Users,
            "GET /v1/admin/users/{colleague}/usage",
            get.clone(),
            |w, _| format!("/v1/admin/users/{}/usage", w.colleague.user.id),
            no_body,
            A,
            Some(|_, _, _, body| {
                ensure(body.as_array().is_some_and(Vec::is_empty), || {
                    format!("{body}")
                })
            }),
        ),
        row(
            Users,
            "GET /v1/admin/users/{colleague}/ledger",
            get.clone(),
            |w, _| format!("/v1/admin/users/{}/ledger", w.colleague.user.id),
            no_body,
            A,
            Some(|_, _, _, body| {
                ensure(body.as_array().is_some_and(|a| !a.is_empty()), || {
                    format!("{body}")
                })
            }),
        ),
        // ---- teams: create/update/delete admins only; reading for the team's admins.
        row(
            Teams,
            "POST /v1/admin/teams",
            post.clone(),
            |_, _| "/v1/admin/teams".into(),
            |w| Some(json!({"name": format!("Fresh {}", w.n)}).to_string()),
            [201, 403, 403, 403],
            Some(|_, w, _, body| {
                ensure(body["name"] == format!("Fresh {}", w.n), || {
                    format!("{body}")
                })
            }),
        ),
        row(
            Teams,
            "GET /v1/admin/teams",
            get.clone(),
            |_, _| "/v1/admin/teams".into(),
            no_body,
            [200, 200, 200, 403],
            Some(|_, w, c, body| {
                let expected = match c {
                    Caller::TeamAdmin => vec![w.team],
                    Caller::OtherTeamAdmin => vec![w.other_team],
                    _ => sorted(vec![w.team, w.other_team]),
                };
                listing_matches(c, &ids_of(body, "id"), &expected)
            }),
        ),
        row(
            Teams,
            "GET /v1/admin/teams/{T}",
            get.clone(),
            |w, _| format!("/v1/admin/teams/{}", w.team),
            no_body,
            [200, 403, 200, 403],
            Some(|_, w, _, body| {
                ensure(
                    body["id"] == w.team
                        && body["members"].as_array().is_some_and(|m| m.len() == 5),
                    || format!("{body}"),
                )
            }),
        ),
        row(
            Teams,
            "PUT /v1/admin/teams/{T} description",
            put.clone(),
            |w, _| format!("/v1/admin/teams/{}", w.team),
            |_| Some(r#"{"description": "changed"}"#.into()),
            A,
            Some(|conn, w, _, _| {
                ensure(
                    teams::get_team(conn, w.team).unwrap().description == "changed",
                    String::new,
                )
            }),
        ),
        row(
            Teams,
            "PUT /v1/admin/teams/{T} common_pool",
            put.clone(),
            |w, _| format!("/v1/admin/teams/{}", w.team),
            |_| Some(r#"{"common_pool": 999999}"#.into()),
            A,
            Some(|conn, w, _, _| {
                ensure(
                    teams::get_team(conn, w.team).unwrap().common_pool == 999_999,
                    String::new,
                )
            }),
        ),
        row(
            Teams,
            "DELETE /v1/admin/teams/{T}",
            delete.clone(),
            |w, _| format!("/v1/admin/teams/{}", w.team),
            no_body,
            A,
            Some(|conn, w, _, _| ensure(teams::get_team(conn, w.team).is_err(), String::new)),
        ),
        // ---- membership: admins add members; team admins remove their non-admin members.
        row(
            Members,
            "POST /v1/admin/teams/{T}/members/{outsider}?is_admin=false",
            post.clone(),
            |w, _| {
                format!(
                    "/v1/admin/teams/{}/members/{}?is_admin=false",
                    w.team, w.outsider.user.id
                )
            },
            no_body,
            [200, 403, 403, 403],
            Some(|conn, w, _, _| {
                ensure(
                    membership(conn, w.team, w.outsider.user.id) == Some(false),
                    String::new,
                )
            }),
        ),
        row(
            Members,
            "POST /v1/admin/teams/{T}/members/{outsider}",
            post.clone(),
            |w, _| format!("/v1/admin/teams/{}/members/{}", w.team, w.outsider.user.id),
            no_body,
            [200, 403, 403, 403],
            Some(|conn, w, _, _| {
                ensure(
                    membership(conn, w.team, w.outsider.user.id) == Some(false),
                    String::new,
                )
            }),
        ),
        row(
            Members,
            "POST /v1/admin/teams/{T}/members/{outsider}?is_admin=true",
            post.clone(),
            |w, _| {
                format!(
                    "/v1/admin/teams/{}/members/{}?is_admin=true",
                    w.team, w.outsider.user.id
                )
            },
            no_body,
            A,
            Some(|conn, w, _, _| {
                ensure(
                    membership(conn, w.team, w.outsider.user.id) == Some(true),
                    String::new,
                )
            }),
        ),
        row(
            Members,
            "POST /v1/admin/teams/{T}/members/{colleague}?is_admin=true (promote)",
            post.clone(),
            |w, _| {
                format!(
                    "/v1/admin/teams/{}/members/{}?is_admin=true",
                    w.team, w.colleague.user.id
                )
            },
            no_body,
            A,
            Some(|conn, w, _, _| {
                ensure(
                    membership(conn, w.team, w.colleague.user.id) == Some(true),
                    String::new,
                )
            }),
        ),
        row(
            Members,
            "POST /v1/admin/teams/{T}/members/{co_admin}?is_admin=false (demote)",
            post.clone(),
            |w, _| {
                format!(
                    "/v1/admin/teams/{}/members/{}?is_admin=false",
                    w.team, w.co_admin.user.id
                )
            },
            no_body,
            A,
            Some(|conn, w, _, _| {
                ensure(
                    membership(conn, w.team, w.co_admin.user.id) == Some(false),
                    String::new,
                )
            }),
        ),
        // Escalation: appointing oneself team admin of the team, or of another team.
        row(
            Members,
            "POST /v1/admin/teams/{T}/members/{self}?is_admin=true",
            post.clone(),
            |w, c| {
                format!(
                    "/v1/admin/teams/{}/members/{}?is_admin=true",
                    w.team,
                    w.id(c)
                )
            },
            no_body,
            A,
            Some(|conn, w, c, _| {
                ensure(membership(conn, w.team, w.id(c)) == Some(true), String::new)
            }),
        ),
        row(
            Members,
            "POST /v1/admin/teams/{O}/members/{self}?is_admin=true",
            post.clone(),
            |w, c| {
                format!(
                    "/v1/admin/teams/{}/members/{}?is_admin=true",
                    w.other_team,
                    w.id(c)
                )
            },
            no_body,
            A,
            Some(|conn, w, c, _| {
                ensure(
                    membership(conn, w.other_team, w.id(c)) == Some(true),
                    String::new,
                )
            }),
        ),
        row(
            Members,
            "POST /v1/admin/teams/{O}/members/{self}?is_admin=false",
            post.clone(),
            |w, c| {
                format!(
                    "/v1/admin/teams/{}/members/{}?is_admin=false",
                    w.other_team,
                    w.id(c)
                )
            },
            no_body,
            A,
            Some(|conn, w, c, _| {
                ensure(
                    membership(conn, w.other_team, w.id(c)) == Some(false),
                    String::new,
                )
            }),
        ),
        row(
            Members,
            "DELETE /v1/admin/teams/{T}/members/{colleague}",
            delete.clone(),
            |w, _| format!("/v1/admin/teams/{}/members/{}", w.team, w.colleague.user.id),
            no_body,
            [200, 403, 200, 403],
            Some(|conn, w, _, _| {
                ensure(
                    membership(conn, w.team, w.colleague.user.id).is_none(),
                    String::new,
                )
            }),
        ),
        row(
            Members,
            "DELETE /v1/admin/teams/{T}/members/{co_admin}",
            delete.clone(),
            |w, _| format!("/v1/admin/teams/{}/members/{}", w.team, w.co_admin.user.id),
            no_body,
            A,
            Some(|conn, w, _, _| {
                ensure(
                    membership(conn, w.team, w.co_admin.user.id).is_none(),
                    String::new,
                )
            }),
        ),
        row(
            Members,
            "DELETE /v1/admin/teams/{T}/members/{self}",
            delete.clone(),
            |w, c| format!("/v1/admin/teams/{}/members/{}", w.team, w.id(c)),
            no_body,
            [404, 403, 403, 403],
            None,
        ),
        // ---- transfers: listing scoped to the team admin's members; decisions by an
        // admin or a team admin of the sender, never the sender.
        row(
            Transfers,
            "GET /v1/admin/transfers",
            get.clone(),
            |_, _| "/v1/admin/transfers".into(),
            no_body,
            [200, 200, 200, 403],
            Some(|_, w, c, body| listing_matches(c, &ids_of(body, "id"), &visible_transfers(w, c))),
        ),
        row(
            Transfers,
            "GET /v1/admin/transfers?format=csv",
            get.clone(),
            |_, _| "/v1/admin/transfers?format=csv".into(),
            no_body,
            [200, 200, 200, 403],
            Some(|_, w, c, body| {
                let csv = body.as_str().unwrap_or("");
                let mut listed: Vec<i64> = csv
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split(',').next()?.parse().ok())
                    .collect();
                listed.sort_unstable();
                listing_matches(c, &listed, &visible_transfers(w, c))
            }),
        ),
        row(
            Transfers,
            "GET /v1/admin/transfers?user_id={outsider}",
            get.clone(),
            |w, _| format!("/v1/admin/transfers?user_id={}", w.outsider.user.id),
            no_body,
            [200, 200, 200, 403],
            Some(|_, w, c, body| {
                let outsider = w.outsider.user.id;
                let expected: Vec<i64> = visible_transfers(w, c)
                    .into_iter()
                    .filter(|id| {
                        w.transfers
                            .iter()
                            .any(|t| t.0 == *id && (t.1 == outsider || t.2 == outsider))
                    })
                    .collect();
                listing_matches(c, &ids_of(body, "id"), &expected)
            }),
        ),
        row(
            Transfers,
            "POST /v1/admin/transfers/{member's}/approve",
            post.clone(),
            |w, _| format!("/v1/admin/transfers/{}/approve", w.t_member),
            no_body,
            [200, 403, 200, 403],
            Some(|conn, w, c, _| transfer_decided(conn, w.t_member, "completed", w.id(c))),
        ),
        row(
            Transfers,
            "POST /v1/admin/transfers/{member's}/deny",
            post.clone(),
            |w, _| format!("/v1/admin/transfers/{}/deny", w.t_member),
            no_body,
            [200, 403, 200, 403],
            Some(|conn, w, c, _| transfer_decided(conn, w.t_member, "denied", w.id(c))),
        ),
        row(
            Transfers,
            "POST /v1/admin/transfers/{team admin's}/approve",
            post.clone(),
            |w, _| format!("/v1/admin/transfers/{}/approve", w.t_team_admin),
            no_body,
            A,
            Some(|conn, w, c, _| transfer_decided(conn, w.t_team_admin, "completed", w.id(c))),
        ),
        row(
            Transfers,
            "POST /v1/admin/transfers/{team admin's}/deny",
            post.clone(),
            |w, _| format!("/v1/admin/transfers/{}/deny", w.t_team_admin),
            no_body,
            A,
            Some(|conn, w, c, _| transfer_decided(conn, w.t_team_admin, "denied", w.id(c))),
        ),
        row(
            Transfers,
            "POST /v1/admin/transfers/{other member's, to member}/approve",
            post.clone(),
            |w, _| format!("/v1/admin/transfers/{}/approve", w.t_other),
            no_body,
            [200, 200, 403, 403],
            Some(|conn, w, c, _| transfer_decided(conn, w.t_other, "completed", w.id(c))),
        ),
        row(
            Transfers,
            "POST /v1/admin/transfers/{completed}/approve",
            post.clone(),
            |w, _| format!("/v1/admin/transfers/{}/approve", w.t_gift),
            no_body,
            [409, 403, 409, 403],
            None,
        ),
        row(
            Transfers,
            "POST /v1/admin/transfers/{unknown}/approve",
            post.clone(),
            |_, _| "/v1/admin/transfers/999999999/approve".into(),
            no_body,
            [404, 404, 404, 403],
            None,
        ),
        // ---- quota requests: same pattern, the requester instead of the sender.
        row(
            Requests,
            "GET /v1/admin/quota-requests",
            get.clone(),
            |_, _| "/v1/admin/quota-requests".into(),
            no_body,
            [200, 200, 200, 403],
            Some(|_, w, c, body| listing_matches(c, &ids_of(body, "id"), &visible_requests(w, c))),
        ),
        row(
            Requests,
            "POST /v1/admin/quota-requests/{member's}/approve",
            post.clone(),
            |w, _| format!("/v1/admin/quota-requests/{}/approve", w.r_member),
            no_body,
            [200, 403, 200, 403],
            Some(|conn, w, c, _| request_decided(conn, w.r_member, "approved", w.id(c))),
        ),
        row(
            Requests,
            "POST /v1/admin/quota-requests/{member's}/deny",
            post.clone(),
            |w, _| format!("/v1/admin/quota-requests/{}/deny", w.r_member),
            no_body,
            [200, 403, 200, 403],
            Some(|conn, w, c, _| request_decided(conn, w.r_member, "denied", w.id(c))),
        ),
        row(
            Requests,
            "POST /v1/admin/quota-requests/{team admin's}/approve",
            post.clone(),
            |w, _| format!("/v1/admin/quota-requests/{}/approve", w.r_team_admin),
            no_body,
            A,
            Some(|conn, w, c, _| request_decided(conn, w.r_team_admin, "approved", w.id(c))),
        ),
        row(
            Requests,
            "POST /v1/admin/quota-requests/{team admin's}/deny",
            post.clone(),
            |w, _| format!("/v1/admin/quota-requests/{}/deny", w.r_team_admin),
            no_body,
            A,
            Some(|conn, w, c, _| request_decided(conn, w.r_team_admin, "denied", w.id(c))),
        ),
        row(
            Requests,
            "POST /v1/admin/quota-requests/{other member's}/approve",
            post.clone(),
            |w, _| format!("/v1/admin/quota-requests/{}/approve", w.r_other),
            no_body,
            [200, 200, 403, 403],
            Some(|conn, w, c, _| request_decided(conn, w.r_other, "approved", w.id(c))),
        ),
        row(
            Requests,
            "POST /v1/admin/quota-requests/{outsider's}/deny",
            post.clone(),
            |w, _| format!("/v1/admin/quota-requests/{}/deny", w.r_outside),
            no_body,
            A,
            Some(|conn, w, c, _| request_decided(conn, w.r_outside, "denied", w.id(c))),
        ),
        row(
            Requests,
            "POST /v1/admin/quota-requests/{unknown}/approve",
            post.clone(),
            |_, _| "/v1/admin/quota-requests/999999999/approve".into(),
            no_body,
            [404, 404, 404, 403],
            None,
        ),
        // ---- audit and ledger check: admins only.
        row(
            AuditAndMe,
            "GET /v1/admin/audit",
            get.clone(),
            |_, _| "/v1/admin/audit".into(),
            no_body,
            A,
            Some(|_, _, _, body| {
                ensure(body.as_array().is_some_and(|a| !a.is_empty()), || {
                    format!("{body}")
                })
            }),
        ),
        row(
            AuditAndMe,
            "GET /v1/admin/ledger/check",
            get.clone(),
            |_, _| "/v1/admin/ledger/check".into(),
            no_body,
            A,
            Some(|_, _, _, body| ensure(body["clean"] == true, || format!("{body}"))),
        ),
        // ---- analytics: the organisation's for admins, one's own for everyone.
        row(
            AuditAndMe,
            "GET /v1/admin/analytics/usage",
            get.clone(),
            |_, _| "/v1/admin/analytics/usage".into(),
            no_body,
            A,
            None,
        ),
        row(
            AuditAndMe,
            "GET /v1/admin/analytics/usage?user_id={colleague}",
            get.clone(),
            |w, _| format!("/v1/admin/analytics/usage?user_id={}", w.colleague.user.id),
            no_body,
            A,
            None,
        ),
        row(
            AuditAndMe,
            "GET /v1/admin/analytics/summary",
            get.clone(),
            |_, _| "/v1/admin/analytics/summary".into(),
            no_body,
            A,
            None,
        ),
        row(
            AuditAndMe,
            "GET /v1/users/me/analytics/usage",
            get.clone(),
            |_, _| "/v1/users/me/analytics/usage".into(),
            no_body,
            [200; 4],
            None,
        ),
        row(
            AuditAndMe,
            "GET /v1/users/me/analytics/summary",
            get.clone(),
            |_, _| "/v1/users/me/analytics/summary".into(),
            no_body,
            [200; 4],
            None,
        ),
        row(
            AuditAndMe,
            "GET /v1/auth/session",
            get.clone(),
            |_, _| "/v1/auth/session".into(),
            no_body,
            [200; 4],
            Some(|_, w, c, body| ensure(body["id"] == w.id(c), || format!("{body}"))),
        ),
        // ---- /v1/users/me*: everyone who may sign in, about themselves.
        row(
            AuditAndMe,
            "GET /v1/users/me",
            get.clone(),
            |_, _| "/v1/users/me".into(),
            no_body,
            [200; 4],
            Some(|_, w, c, body| ensure(body["id"] == w.id(c), || format!("{body}"))),
        ),
        row(
            AuditAndMe,
            "GET /v1/users/me/quota",
            get.clone(),
            |_, _| "/v1/users/me/quota".into(),
            no_body,
            [200; 4],
            Some(|_, _, _, body| ensure(body["personal_quota"] == 1000, || format!("{body}"))),
        ),
        row(
            AuditAndMe,
            "POST /v1/users/me/transfer",
            post.clone(),
            |_, _| "/v1/users/me/transfer".into(),
            |w| {
                Some(json!({"recipient_email": w.outsider.user.email, "amount": 10, "reason": "thanks"}).to_string())
            },
            [201; 4],
            Some(|conn, w, c, body| {
                let t = transfers::get(conn, body["id"].as_i64().unwrap_or(0)).unwrap();
                ensure(
                    t.sender_id == w.id(c)
                        && t.recipient_id == w.outsider.user.id
                        && t.status == "completed",
                    || format!("{t:?}"),
                )
            }),
        ),
        row(
            AuditAndMe,
            "GET /v1/users/me/transfers",
            get.clone(),
            |_, _| "/v1/users/me/transfers".into(),
            no_body,
            [200; 4],
            Some(|_, w, c, body| {
                let me = w.id(c);
                let expected = sorted(
                    w.transfers
                        .iter()
                        .filter(|t| t.1 == me || t.2 == me)
                        .map(|t| t.0)
                        .collect(),
                );
                let listed = ids_of(body, "id");
                ensure(listed == expected, || {
                    format!("listed {listed:?}, expected {expected:?}")
                })
            }),
        ),
        row(
            AuditAndMe,
            "POST /v1/users/me/quota-requests",
            post.clone(),
            |_, _| "/v1/users/me/quota-requests".into(),
            |_| Some(r#"{"amount": 100, "reason": "more"}"#.into()),
            [201; 4],
            Some(|_, w, c, body| {
                ensure(
                    body["user_id"] == w.id(c) && body["status"] == "pending",
                    || format!("{body}"),
                )
            }),
        ),
        row(
            AuditAndMe,
            "GET /v1/users/me/quota-requests",
            get.clone(),
            |_, _| "/v1/users/me/quota-requests".into(),
            no_body,
            [200; 4],
            Some(|_, w, c, body| {
                let me = w.id(c);
                let expected = sorted(
                    w.requests
                        .iter()
                        .filter(|r| r.1 == me)
                        .map(|r| r.0)
                        .collect(),
                );
                let listed = ids_of(body, "id");
                ensure(listed == expected, || {
                    format!("listed {listed:?}, expected {expected:?}")
                })
            }),
        ),
        row(
            AuditAndMe,
            "GET /v1/users/me/notifications",
            get.clone(),
            |_, _| "/v1/users/me/notifications".into(),
            no_body,
            [200; 4],
            Some(|conn, w, c, body| {
                let mine: Vec<i64> = notifications::table
                    .filter(notifications::user_id.eq(w.id(c)))
                    .order(notifications::id)
                    .select(notifications::id)
                    .load(conn)
                    .unwrap();
                let listed = ids_of(body, "id");
                ensure(listed == mine, || {
                    format!("listed {listed:?}, own {mine:?}")
                })
            }),
        ),
        // The ids of every user of the scenario: only the caller's are marked.
        row(
            AuditAndMe,
            "POST /v1/users/me/notifications/read {everyone's ids}",
            post.clone(),
            |_, _| "/v1/users/me/notifications/read".into(),
            |w| Some(json!({ "ids": w.notification_ids }).to_string()),
            [200; 4],
            Some(|conn, w, c, body| {
                let rows: Vec<(i64, Option<NaiveDateTime>)> = notifications::table
                    .filter(notifications::id.eq_any(&w.notification_ids))
                    .select((notifications::user_id, notifications::read_at))
                    .load(conn)
                    .unwrap();
                let own = rows.iter().filter(|r| r.0 == w.id(c)).count();
                let wrong = rows
                    .iter()
                    .filter(|r| (r.0 == w.id(c)) != r.1.is_some())
                    .count();
                ensure(wrong == 0 && body["marked"] == own, || {
                    format!("{body}: {wrong} wrongly (un)marked of {}", rows.len())
                })
            }),
        ),
        row(
            AuditAndMe,
            "POST /v1/users/me/vacation",
            post.clone(),
            |_, _| "/v1/users/me/vacation".into(),
            no_body,
            [200; 4],
            Some(|conn, w, c, _| ensure(user_row(conn, w.id(c)).4 == "on_vacation", String::new)),
        ),
        row(
            AuditAndMe,
            "DELETE /v1/users/me/vacation",
            delete.clone(),
            |_, _| "/v1/users/me/vacation".into(),
            no_body,
            [200; 4],
            Some(|conn, w, c, _| ensure(user_row(conn, w.id(c)).4 == "active", String::new)),
        ),
        // ---- who may call is decided before the input is looked at: a caller without
        // the right gets 401/403 whatever they send, never a validation answer.
        row(
            AuthBeforeInput,
            "POST /v1/admin/users {email: 42}",
            post.clone(),
            |_, _| "/v1/admin/users".into(),
            |_| Some(r#"{"email": 42}"#.into()),
            [422, 403, 403, 403],
            None,
        ),
        row(
            AuthBeforeInput,
            "PUT /v1/admin/users/{colleague} {personal_quota: \"x\"}",
            put.clone(),
            |w, _| format!("/v1/admin/users/{}", w.colleague.user.id),
            |_| Some(r#"{"personal_quota": "x"}"#.into()),
            [422, 403, 403, 403],
            None,
        ),
        row(
            AuthBeforeInput,
            "GET /v1/admin/users/{colleague}/usage?limit=0",
            get.clone(),
            |w, _| format!("/v1/admin/users/{}/usage?limit=0", w.colleague.user.id),
            no_body,
            [422, 403, 403, 403],
            None,
        ),
        row(
            AuthBeforeInput,
            "GET /v1/admin/users/{colleague}/ledger?limit=0",
            get.clone(),
            |w, _| format!("/v1/admin/users/{}/ledger?limit=0", w.colleague.user.id),
            no_body,
            [422, 403, 403, 403],
            None,
        ),
        row(
            AuthBeforeInput,
            "POST /v1/admin/teams {name: 1}",
            post.clone(),
            |_, _| "/v1/admin/teams".into(),
            |_| Some(r#"{"name": 1}"#.into()),
            [422, 403, 403, 403],
            None,
        ),
        row(
            AuthBeforeInput,
            "PUT /v1/admin/teams/{T} {common_pool: -1}",
            put.clone(),
            |w, _| format!("/v1/admin/teams/{}", w.team),
            |_| Some(r#"{"common_pool": -1}"#.into()),
            [422, 403, 403, 403],
            None,
        ),
        row(
            AuthBeforeInput,
            "POST /v1/admin/teams/{T}/members/{outsider}?is_admin=maybe",
            post.clone(),
            |w, _| {
                format!(
                    "/v1/admin/teams/{}/members/{}?is_admin=maybe",
                    w.team, w.outsider.user.id
                )
            },
            no_body,
            [422, 403, 403, 403],
            None,
        ),
        row(
            AuthBeforeInput,
            "GET /v1/admin/transfers?limit=0",
            get.clone(),
            |_, _| "/v1/admin/transfers?limit=0".into(),
            no_body,
            [422, 422, 422, 403],
            None,
        ),
        row(
            AuthBeforeInput,
            "POST /v1/admin/transfers/{member's}/approve {note: 501 chars}",
            post.clone(),
            |w, _| format!("/v1/admin/transfers/{}/approve", w.t_member),
            long_note,
            [422, 403, 422, 403],
            None,
        ),
        row(
            AuthBeforeInput,
            "POST /v1/admin/transfers/{member's}/approve {malformed",
            post.clone(),
            |w, _| format!("/v1/admin/transfers/{}/approve", w.t_member),
            |_| Some("{".into()),
            [400, 403, 400, 403],
            None,
        ),
        row(
            AuthBeforeInput,
            "GET /v1/admin/quota-requests?limit=0",
            get.clone(),
            |_, _| "/v1/admin/quota-requests?limit=0".into(),
            no_body,
            [422, 422, 422, 403],
            None,
        ),
        row(
            AuthBeforeInput,
            "POST /v1/admin/quota-requests/{member's}/approve {note: 501 chars}",
            post.clone(),
            |w, _| format!("/v1/admin/quota-requests/{}/approve", w.r_member),
            long_note,
            [422, 403, 422, 403],
            None,
        ),
        row(
            AuthBeforeInput,
            "GET /v1/admin/analytics/usage?limit=0",
            get.clone(),
            |_, _| "/v1/admin/analytics/usage?limit=0".into(),
            no_body,
            [422, 403, 403, 403],
            None,
        ),
        row(
            AuthBeforeInput,
            "GET /v1/users/me/analytics/summary?from=yesterday",
            get.clone(),
            |_, _| "/v1/users/me/analytics/summary?from=yesterday".into(),
            no_body,
            [422; 4],
            None,
        ),
        row(
            AuthBeforeInput,
            "GET /v1/admin/audit?limit=0",
            get.clone(),
            |_, _| "/v1/admin/audit?limit=0".into(),
            no_body,
            [422, 403, 403, 403],
            None,
        ),
        row(
            AuthBeforeInput,
            "POST /v1/users/me/transfer {amount: \"x\"}",
            post.clone(),
            |_, _| "/v1/users/me/transfer".into(),
            |_| {
                Some(r#"{"recipient_email": "a@example.com", "amount": "x", "reason": "r"}"#.into())
            },
            [422; 4],
            None,
        ),
        row(
            AuthBeforeInput,
            "GET /v1/users/me/transfers?limit=0",
            get.clone(),
            |_, _| "/v1/users/me/transfers?limit=0".into(),
            no_body,
            [422; 4],
            None,
        ),
        row(
            AuthBeforeInput,
            "POST /v1/users/me/quota-requests {amount: 0}",
            post.clone(),
            |_, _| "/v1/users/me/quota-requests".into(),
            |_| Some(r#"{"amount": 0, "reason": "r"}"#.into()),
            [422; 4],
            None,
        ),
        row(
            AuthBeforeInput,
            "GET /v1/users/me/quota-requests?limit=0",
            get.clone(),
            |_, _| "/v1/users/me/quota-requests?limit=0".into(),
            no_body,
            [422; 4],
            None,
        ),
        row(
            AuthBeforeInput,
            "GET /v1/users/me/notifications?limit=0",
            get.clone(),
            |_, _| "/v1/users/me/notifications?limit=0".into(),
            no_body,
            [422; 4],
            None,
        ),
        row(
            AuthBeforeInput,
            "POST /v1/users/me/notifications/read {malformed",
            post.clone(),
            |_, _| "/v1/users/me/notifications/read".into(),
            |_| Some("{".into()),
            [400; 4],
            None,
        ),
    ]
}

/// The error `type` and `code` a refusal must carry.
fn expected_error(caller: Caller, status: u16) -> Option<(&'static str, Option<&'static str>)> {
    match status {
        401 => Some(("authentication_error", Some("invalid_api_key"))),
        403 if caller == Caller::Suspended => Some(("permission_error", Some("user_suspended"))),
        403 => Some(("permission_error", Some("forbidden"))),
        404 => Some(("not_found_error", Some("not_found"))),
        400 | 409 | 422 => Some(("invalid_request_error", None)),
        _ => None,
    }
}

/// Runs every row of `group`; panics listing every wrong cell.
async fn run_group(db: &TestDb, group: Group) {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let mut failures = Vec::new();
    let mut cells = 0;
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    for row in rows().into_iter().filter(|r| r.group == group) {
        let mut shared: Option<World> = None;
        for caller in CALLERS {
            cells += 1;
            let expected = row.expected(caller);
            let succeeds = (200..300).contains(&expected);
            let mut fresh = None;
            let world = if succeeds {
                fresh.insert(World::build(db, next()))
            } else {
                shared.get_or_insert_with(|| World::build(db, next()))
            };
            let path = (row.path)(world, caller);
            let body = (row.body)(world);
            let before = Snapshot::take(&mut db.conn());
            let (status, answer) = call(
                &app,
                row.method.clone(),
                &path,
                world.key(caller).as_deref(),
                body.as_deref(),
            )
            .await;
            let cell = format!("{} as {caller:?}", row.what);
            if status != expected {
                failures.push(format!(
                    "{cell}: expected {expected}, got {status} {answer}"
                ));
            } else if let Some((kind, code)) = expected_error(caller, expected) {
                let error = &answer["error"];
                if error["type"] != kind
                    || code.is_some_and(|c| error["code"] != c)
                    || !error["message"].is_string()
                {
                    failures.push(format!(
                        "{cell}: expected error type {kind} code {code:?}, got {answer}"
                    ));
                }
            } else if let Some(check) = row.check {
                if let Err(why) = check(&mut db.conn(), world, caller, &answer) {
                    failures.push(format!("{cell}: effect wrong: {why}"));
                }
            }
            if !succeeds {
                let changed = Snapshot::take(&mut db.conn()).changed(&before);
                if !changed.is_empty() {
                    failures.push(format!("{cell}: refused call changed {changed:?}"));
                    // Later cells get an untouched scenario.
                    shared = None;
                }
            }
        }
    }
    assert_ledger_clean(db);
    assert!(
        failures.is_empty(),
        "{group:?}: {} of {cells} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

http_test!(matrix_admin_users, |db| {
    run_group(&db, Group::Users).await;
});

http_test!(matrix_teams, |db| {
    run_group(&db, Group::Teams).await;
});

http_test!(matrix_memberships, |db| {
    run_group(&db, Group::Members).await;
});

http_test!(matrix_transfers, |db| {
    run_group(&db, Group::Transfers).await;
});

http_test!(matrix_quota_requests, |db| {
    run_group(&db, Group::Requests).await;
});

http_test!(matrix_audit_and_me, |db| {
    run_group(&db, Group::AuditAndMe).await;
});

http_test!(matrix_auth_before_input, |db| {
    run_group(&db, Group::AuthBeforeInput).await;
});

// ---- escalation attempts, spelled out ----------------------------------------------

fn personal_balance(db: &TestDb, user: &CreatedUser) -> i64 {
    let mut conn = db.conn();
    let user = users::get_user(&mut conn, user.user.id).unwrap();
    crate::common::balance(
        &mut conn,
        &user,
        alfred_control_plane::quota::QuotaPeriod::Monthly,
        start_time(),
    )
    .unwrap()
    .available_quota
}

http_test!(a_user_cannot_make_themselves_admin, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let w = World::build(&db, 1);
    for who in [&w.member, &w.team_admin] {
        let before = Snapshot::take(&mut db.conn());
        let (status, body) = call(
            &app,
            Method::PUT,
            &format!("/v1/admin/users/{}", who.user.id),
            Some(&who.api_key),
            Some(r#"{"is_admin": true}"#),
        )
        .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (403, &json!("forbidden")),
            "{body}"
        );
        assert!(
            !users::get_user(&mut db.conn(), who.user.id)
                .unwrap()
                .is_admin
        );
        assert_eq!(
            Snapshot::take(&mut db.conn()).changed(&before),
            Vec::<&str>::new()
        );
        // Nor through the admin listing's creation route.
        let (status, _) = call(
            &app,
            Method::POST,
            "/v1/admin/users",
            Some(&who.api_key),
            Some(r#"{"email": "sock@example.com", "name": "Sock", "is_admin": true}"#),
        )
        .await;
        assert_eq!(status, 403);
        assert!(users::find_by_email(&mut db.conn(), "sock@example.com")
            .unwrap()
            .is_none());
    }
});

http_test!(a_team_admin_cannot_appoint_themselves_elsewhere, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let w = World::build(&db, 1);
    let me = &w.team_admin;
    for query in ["?is_admin=true", "?is_admin=false", ""] {
        let before = Snapshot::take(&mut db.conn());
        let (status, body) = call(
            &app,
            Method::POST,
            &format!(
                "/v1/admin/teams/{}/members/{}{query}",
                w.other_team, me.user.id
            ),
            Some(&me.api_key),
            None,
        )
        .await;
        assert_eq!(status, 403, "{query}: {body}");
        assert_eq!(membership(&mut db.conn(), w.other_team, me.user.id), None);
        assert_eq!(
            Snapshot::take(&mut db.conn()).changed(&before),
            Vec::<&str>::new()
        );
    }
    // Nor promote a member of their own team, nor demote or remove their co-admin.
    for (method, path) in [
        (
            Method::POST,
            format!(
                "/v1/admin/teams/{}/members/{}?is_admin=true",
                w.team, w.member.user.id
            ),
        ),
        (
            Method::POST,
            format!(
                "/v1/admin/teams/{}/members/{}?is_admin=false",
                w.team, w.co_admin.user.id
            ),
        ),
        (
            Method::DELETE,
            format!("/v1/admin/teams/{}/members/{}", w.team, w.co_admin.user.id),
        ),
    ] {
        let (status, body) = call(&app, method, &path, Some(&me.api_key), None).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    assert_eq!(
        membership(&mut db.conn(), w.team, w.member.user.id),
        Some(false)
    );
    assert_eq!(
        membership(&mut db.conn(), w.team, w.co_admin.user.id),
        Some(true)
    );
});

http_test!(nobody_decides_outside_their_teams_or_their_own, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let w = World::build(&db, 1);
    let balances = |db: &TestDb| {
        [&w.member, &w.team_admin, &w.other_member, &w.outsider].map(|u| personal_balance(db, u))
    };
    let before_balances = balances(&db);
    let attempts = [
        // A team admin deciding for a user outside their team.
        (
            &w.team_admin,
            format!("/v1/admin/quota-requests/{}/approve", w.r_other),
        ),
        (
            &w.team_admin,
            format!("/v1/admin/quota-requests/{}/approve", w.r_outside),
        ),
        (
            &w.team_admin,
            format!("/v1/admin/transfers/{}/approve", w.t_other),
        ),
        // Their own.
        (
            &w.team_admin,
            format!("/v1/admin/quota-requests/{}/approve", w.r_team_admin),
        ),
        (
            &w.team_admin,
            format!("/v1/admin/transfers/{}/approve", w.t_team_admin),
        ),
        (
            &w.member,
            format!("/v1/admin/quota-requests/{}/approve", w.r_member),
        ),
        (
            &w.member,
            format!("/v1/admin/transfers/{}/approve", w.t_member),
        ),
        // The recipient of a pending transfer.
        (
            &w.member,
            format!("/v1/admin/transfers/{}/approve", w.t_other),
        ),
    ];
    for (who, path) in attempts {
        let before = Snapshot::take(&mut db.conn());
        let (status, body) = call(&app, Method::POST, &path, Some(&who.api_key), None).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (403, &json!("forbidden")),
            "{path}: {body}"
        );
        assert_eq!(
            Snapshot::take(&mut db.conn()).changed(&before),
            Vec::<&str>::new(),
            "{path}"
        );
    }
    let mut conn = db.conn();
    for id in [w.r_member, w.r_team_admin, w.r_other, w.r_outside] {
        assert_eq!(approvals::get(&mut conn, id).unwrap().status, "pending");
    }
    for id in [w.t_member, w.t_team_admin, w.t_other] {
        assert_eq!(transfers::get(&mut conn, id).unwrap().status, "pending");
    }
    drop(conn);
    assert_eq!(balances(&db), before_balances);
    assert_ledger_clean(&db);
    // An admin who is the sender cannot approve their own transfer either.
    let mut conn = db.conn();
    let own = transfers::send(
        &mut conn,
        start_time(),
        &w.admin.user,
        TransferRequest {
            recipient_email: w.outsider.user.email.clone(),
            amount: 200,
            reason: "mine".into(),
        },
        &approval_rules(),
    )
    .unwrap();
    drop(conn);
    let (status, body) = call(
        &app,
        Method::POST,
        &format!("/v1/admin/transfers/{}/approve", own.id),
        Some(&w.admin.api_key),
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        transfers::get(&mut db.conn(), own.id).unwrap().status,
        "pending"
    );
});

// `POST /v1/auth/login` takes the key in the body: it answers like every route does
// for that key, and changes nothing in the database.
http_test!(login_answers_like_every_route, |db| {
    let clock = TestClock::new(start_time());
    let app = app!(db, clock);
    let w = World::build(&db, 1);
    for caller in CALLERS {
        let body = match w.key(caller) {
            Some(key) => json!({ "api_key": key }).to_string(),
            None => "{}".to_owned(),
        };
        let expected = match caller {
            Caller::Admin | Caller::OtherTeamAdmin | Caller::TeamAdmin | Caller::Member => 200,
            Caller::Suspended => 403,
            Caller::NoKey => 422,
            Caller::Deleted | Caller::Revoked | Caller::Malformed => 401,
        };
        let before = Snapshot::take(&mut db.conn());
        let (status, answer) = call(&app, Method::POST, "/v1/auth/login", None, Some(&body)).await;
        assert_eq!(status, expected, "{caller:?}: {answer}");
        if status == 200 {
            assert_eq!(answer["user"]["id"], w.id(caller), "{answer}");
        }
        assert_eq!(
            Snapshot::take(&mut db.conn()).changed(&before),
            Vec::<&str>::new(),
            "{caller:?}"
        );
    }
});
