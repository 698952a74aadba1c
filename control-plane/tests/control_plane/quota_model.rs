//! The credit model of `docs/quota-model.md`, rule by rule, with exact numbers:
//! allocations and periods, team pools and their caps, vacation, transfers and their
//! approval, quota requests, critical overdraft, lease release, quota changes and
//! idle vacation. Every test ends with a clean ledger audit.

use std::time::Duration;

use alfred_control_plane::approvals;
use alfred_control_plane::db::DbConnection;
use alfred_control_plane::error::Error;
use alfred_control_plane::leases::{self, BudgetScope, LeaseDecision, LeasePolicy, LeaseRequest};
use alfred_control_plane::ledger::{self, Account};
use alfred_control_plane::maintenance;
use alfred_control_plane::pricing::PriceCatalog;
use alfred_control_plane::quota::{self, Priority, QuotaPeriod, QuotaRules, QuotaView};
use alfred_control_plane::teams::{self, CreateTeam};
use alfred_control_plane::transfers::{self, TransferRequest};
use alfred_control_plane::usage::{self, UsageBatch};
use alfred_control_plane::users::{self, keys, CreatedUser, User, UserStatus};
use alfred_control_plane::{audit, notifications};
use chrono::{NaiveDateTime, TimeDelta};

use crate::common::{at, create_user, set_status, start_time, TestDb};
use crate::db_test;
use crate::leases::report;

const RULES: QuotaRules = QuotaRules::DEFAULT;

fn policy(rules: QuotaRules) -> LeasePolicy {
    LeasePolicy {
        ttl: Duration::from_secs(60),
        rules,
    }
}

/// Asks for `tokens` for the key's owner from `proxy`.
fn ask(
    db: &TestDb,
    now: NaiveDateTime,
    rules: QuotaRules,
    user: &CreatedUser,
    proxy: &str,
    tokens: i64,
    priority: Priority,
) -> LeaseDecision {
    leases::grant(
        &mut db.conn(),
        now,
        policy(rules),
        LeaseRequest {
            key_hash: keys::hash_key(&user.api_key),
            proxy_id: proxy.into(),
            requested_tokens: tokens,
            priority,
        },
    )
    .unwrap()
}

/// `(lease_id, granted_tokens)` of a grant.
fn granted(decision: &LeaseDecision) -> (String, i64) {
    match decision {
        LeaseDecision::Granted {
            lease_id,
            granted_tokens,
            ..
        } => (lease_id.clone(), *granted_tokens),
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn scope(decision: &LeaseDecision) -> BudgetScope {
    match decision {
        LeaseDecision::Exhausted { scope, .. } => *scope,
        other => panic!("expected exhausted, got {other:?}"),
    }
}

/// Reports `tokens` of usage on a lease.
fn spend(db: &TestDb, now: NaiveDateTime, id: &str, user_id: i64, lease: &str, tokens: i64) {
    usage::ingest(
        &mut db.conn(),
        now,
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        UsageBatch {
            proxy_id: "envoy-a".into(),
            records: vec![report(id, user_id, Some(lease), tokens)],
        },
    )
    .unwrap();
}

fn view(db: &TestDb, user_id: i64, now: NaiveDateTime, rules: QuotaRules) -> QuotaView {
    let mut conn = db.conn();
    let user = users::get_user(&mut conn, user_id).unwrap();
    alfred_control_plane::db::write_transaction(&mut conn, |c| quota::view(c, now, &user, &rules))
        .unwrap()
}

fn user_row(db: &TestDb, id: i64) -> User {
    users::get_user(&mut db.conn(), id).unwrap()
}

fn team(db: &TestDb, name: &str, pool: i64, members: &[(i64, bool)]) -> i64 {
    let admin = admin(db);
    let team = teams::create_team(
        &mut db.conn(),
        start_time(),
        CreateTeam {
            name: name.into(),
            description: String::new(),
            common_pool: pool,
        },
        admin,
    )
    .unwrap();
    for (user_id, is_admin) in members {
        teams::add_member(
            &mut db.conn(),
            start_time(),
            team.id,
            *user_id,
            *is_admin,
            admin,
        )
        .unwrap();
    }
    team.id
}

fn admin(db: &TestDb) -> i64 {
    let mut conn = db.conn();
    match users::find_by_email(&mut conn, "root@example.com").unwrap() {
        Some(u) => u.id,
        None => {
            drop(conn);
            create_user(db, "root@example.com", 0, true).user.id
        }
    }
}

fn assert_clean(db: &TestDb) {
    let report = ledger::audit(&mut db.conn()).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

fn balance(conn: &mut DbConnection, account: Account, at: NaiveDateTime) -> i64 {
    ledger::balance(conn, account, QuotaPeriod::Monthly.bounds(at).start).unwrap()
}

fn release_all(db: &TestDb, now: NaiveDateTime) {
    maintenance::run(&mut db.conn(), now, &RULES, false).unwrap();
}

db_test!(period_allocation_rolls_over_on_the_injected_clock, |db| {
    let ann = create_user(&db, "ann@example.com", 1000, false);
    let now = start_time();
    let (lease, got) = granted(&ask(
        &db,
        now,
        RULES,
        &ann,
        "envoy-a",
        300,
        Priority::Normal,
    ));
    assert_eq!(got, 300);
    spend(&db, now, "r1", ann.user.id, &lease, 280);
    let v = view(&db, ann.user.id, now, RULES);
    assert_eq!(
        (
            v.used_tokens,
            v.held_tokens,
            v.available_quota,
            v.transferable
        ),
        (280, 20, 720, 700)
    );
    // The lease expires; its 20 unused tokens come back.
    release_all(&db, now + TimeDelta::seconds(61));
    let v = view(&db, ann.user.id, now + TimeDelta::seconds(61), RULES);
    assert_eq!(
        (
            v.used_tokens,
            v.held_tokens,
            v.available_quota,
            v.transferable
        ),
        (280, 0, 720, 720)
    );
    // December: a fresh 1000, November's usage stays in November.
    let december = at("2026-12-01 00:00:00");
    let v = view(&db, ann.user.id, december, RULES);
    assert_eq!((v.used_tokens, v.available_quota), (0, 1000));
    let mut conn = db.conn();
    assert_eq!(balance(&mut conn, Account::Used(ann.user.id), now), 280);
    assert_eq!(
        balance(&mut conn, Account::Personal(ann.user.id), december),
        1000
    );
    // Issued: November's 1000 and December's 1000.
    assert_eq!(
        ledger::balance(
            &mut conn,
            Account::Issued,
            QuotaPeriod::Monthly.bounds(now).start
        )
        .unwrap(),
        -1000
    );
    drop(conn);
    assert_clean(&db);
});

db_test!(
    pool_is_drawn_after_personal_within_member_and_daily_caps,
    |db| {
        // Pool 10,000, 4 active members: each may draw 2,500 per period and 1,000 (10 %)
        // per day.
        let ids: Vec<CreatedUser> = (0..4)
            .map(|i| create_user(&db, &format!("m{i}@example.com"), 100, false))
            .collect();
        let members: Vec<(i64, bool)> = ids.iter().map(|u| (u.user.id, false)).collect();
        let t = team(&db, "Engineering", 10_000, &members);
        // Mid-month, so the days below stay in one period.
        let now = at("2026-11-10 12:00:00");
        let m0 = &ids[0];
        let v = view(&db, m0.user.id, now, RULES);
        assert_eq!((v.available_quota, v.team_pool_available), (100, 1000));
        assert_eq!(
            (
                v.pools[0].member_cap,
                v.pools[0].daily_cap,
                v.pools[0].active_members
            ),
            (2500, 1000, 4)
        );

        // Personal first (100), then the pool up to the daily cap (1,000).
        let (lease, got) = granted(&ask(&db, now, RULES, m0, "envoy-a", 5000, Priority::Normal));
        assert_eq!(got, 1100);
        let stored = leases::get_lease(&mut db.conn(), &lease).unwrap();
        assert_eq!(
            (
                stored.hold_personal,
                stored.hold_pool,
                stored.hold_overdraft
            ),
            (100, 1000, 0)
        );
        assert_eq!(
            scope(&ask(&db, now, RULES, m0, "envoy-a", 1, Priority::Normal)),
            BudgetScope::TeamPool
        );
        let mut conn = db.conn();
        assert_eq!(balance(&mut conn, Account::Pool(t), now), 9000);
        drop(conn);

        // Use 700 of it; at expiry the unused 400 goes back: pool first (it was drawn last).
        spend(&db, now, "p1", m0.user.id, &lease, 700);
        release_all(&db, now + TimeDelta::seconds(61));
        let v = view(&db, m0.user.id, now + TimeDelta::seconds(61), RULES);
        assert_eq!(
            (
                v.used_tokens,
                v.available_quota,
                v.pools[0].drawn_today,
                v.team_pool_available
            ),
            (700, 0, 600, 400)
        );
        let mut conn = db.conn();
        assert_eq!(balance(&mut conn, Account::Pool(t), now), 9400);
        drop(conn);

        // Next days: 1,000 a day until the period cap of 2,500 (600 drawn so far).
        let day2 = now + TimeDelta::days(1);
        let (day2_lease, got) = granted(&ask(
            &db,
            day2,
            RULES,
            m0,
            "envoy-a",
            5000,
            Priority::Normal,
        ));
        assert_eq!(got, 1000);
        spend(&db, day2, "p2", m0.user.id, &day2_lease, 1000);
        let day3 = now + TimeDelta::days(2);
        let (_, got) = granted(&ask(
            &db,
            day3,
            RULES,
            m0,
            "envoy-b",
            5000,
            Priority::Normal,
        ));
        assert_eq!(got, 900);
        assert_eq!(
            scope(&ask(&db, day3, RULES, m0, "envoy-c", 1, Priority::Normal)),
            BudgetScope::TeamPool
        );
        // Another member still has their own share.
        let v = view(&db, ids[1].user.id, day3, RULES);
        assert_eq!(v.team_pool_available, 1000);
        assert_clean(&db);
    }
);

db_test!(
    vacation_releases_to_the_pool_and_returns_what_the_team_left,
    |db| {
        let ann = create_user(&db, "ann@example.com", 1000, false);
        let bob = create_user(&db, "bob@example.com", 0, false);
        let t = team(
            &db,
            "Design",
            100,
            &[(ann.user.id, false), (bob.user.id, false)],
        );
        let now = start_time();
        // Ann leaves: her 1000 goes to the pool (1,100), she no longer counts.
        set_status(&mut db.conn(), now, ann.user.id, UserStatus::OnVacation).unwrap();
        let v = view(&db, bob.user.id, now, RULES);
        assert_eq!(
            (
                v.pools[0].pool_balance,
                v.pools[0].pool_size,
                v.pools[0].active_members,
                v.pools[0].member_cap,
                v.pools[0].daily_cap
            ),
            (1100, 1100, 1, 1100, 110)
        );
        let v = view(&db, ann.user.id, now, RULES);
        assert_eq!(v.available_quota, 0);
        // Bob draws his daily 110 and uses it all.
        let (lease, got) = granted(&ask(
            &db,
            now,
            RULES,
            &bob,
            "envoy-a",
            500,
            Priority::Normal,
        ));
        assert_eq!(got, 110);
        spend(&db, now, "b1", bob.user.id, &lease, 110);
        // Ann is back: the pool kept 990, the team's allocation (100) went first, so 990 of
        // her 1000 come back.
        let later = now + TimeDelta::hours(1);
        set_status(&mut db.conn(), later, ann.user.id, UserStatus::Active).unwrap();
        let v = view(&db, ann.user.id, later, RULES);
        assert_eq!(v.available_quota, 990);
        let mut conn = db.conn();
        assert_eq!(balance(&mut conn, Account::Pool(t), now), 0);
        drop(conn);
        assert_clean(&db);
    }
);

db_test!(vacation_by_the_user_ends_with_their_next_request, |db| {
    let ann = create_user(&db, "ann@example.com", 600, false);
    let bob = create_user(&db, "bob@example.com", 0, false);
    let carl = create_user(&db, "carl@example.com", 0, false);
    let t1 = team(&db, "One", 0, &[(ann.user.id, false), (bob.user.id, false)]);
    let t2 = team(
        &db,
        "Two",
        0,
        &[(ann.user.id, false), (carl.user.id, false)],
    );
    let now = start_time();
    // Split evenly between her two teams.
    let ann_row = user_row(&db, ann.user.id);
    alfred_control_plane::db::write_transaction(&mut db.conn(), |c| {
        alfred_control_plane::vacation::start(c, now, &ann_row, &RULES, Some(ann.user.id))
    })
    .unwrap();
    let mut conn = db.conn();
    assert_eq!(balance(&mut conn, Account::Pool(t1), now), 300);
    assert_eq!(balance(&mut conn, Account::Pool(t2), now), 300);
    drop(conn);
    // Her next request brings her back with all 600 (nobody drew), and is granted.
    let (_, got) = granted(&ask(
        &db,
        now,
        RULES,
        &ann,
        "envoy-a",
        1000,
        Priority::Normal,
    ));
    assert_eq!(got, 600);
    assert_eq!(user_row(&db, ann.user.id).status(), UserStatus::Active);
    assert_clean(&db);
});

db_test!(
    a_new_period_releases_the_quota_of_members_still_away,
    |db| {
        let ann = create_user(&db, "ann@example.com", 1000, false);
        let bob = create_user(&db, "bob@example.com", 0, false);
        let t = team(&db, "Ops", 0, &[(ann.user.id, false), (bob.user.id, false)]);
        set_status(
            &mut db.conn(),
            start_time(),
            ann.user.id,
            UserStatus::OnVacation,
        )
        .unwrap();
        let december = at("2026-12-02 09:00:00");
        // The team's December pool is issued when Bob asks; Ann's December quota with it.
        let v = view(&db, bob.user.id, december, RULES);
        assert_eq!(
            (v.pools[0].pool_balance, v.pools[0].pool_size),
            (1000, 1000)
        );
        let mut conn = db.conn();
        assert_eq!(balance(&mut conn, Account::Pool(t), december), 1000);
        assert_eq!(
            balance(&mut conn, Account::Personal(ann.user.id), december),
            0
        );
        drop(conn);
        assert_clean(&db);
    }
);

db_test!(transfers_move_only_unheld_personal_credit, |db| {
    let ann = create_user(&db, "ann@example.com", 1000, false);
    let bob = create_user(&db, "bob@example.com", 200, false);
    let now = start_time();
    let (_, got) = granted(&ask(
        &db,
        now,
        RULES,
        &ann,
        "envoy-a",
        300,
        Priority::Normal,
    ));
    assert_eq!(got, 300);
    let ann_row = user_row(&db, ann.user.id);
    let send = |amount: i64, to: &str| {
        transfers::send(
            &mut db.conn(),
            now,
            &ann_row,
            TransferRequest {
                recipient_email: to.into(),
                amount,
                reason: "deadline".into(),
            },
            &RULES,
        )
    };
    // 700 transferable: 300 are held by the lease.
    match send(701, "bob@example.com") {
        Err(Error::Rejected {
            field: "amount",
            code: "insufficient_quota",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    match send(5, "ann@example.com") {
        Err(Error::Rejected {
            code: "self_transfer",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    match send(5, "nobody@example.com") {
        Err(Error::Rejected {
            code: "unknown_recipient",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let t = send(500, "BOB@example.com").unwrap();
    assert_eq!((t.status.as_str(), t.amount), ("completed", 500));
    assert_eq!(view(&db, ann.user.id, now, RULES).transferable, 200);
    assert_eq!(view(&db, bob.user.id, now, RULES).available_quota, 700);
    // Recipient notified; transfer audited.
    let notes = notifications::list(&mut db.conn(), bob.user.id, true, 10).unwrap();
    assert_eq!(
        (notes.len(), notes[0].kind.as_str()),
        (1, "transfer_received")
    );
    let log = audit::list(
        &mut db.conn(),
        &audit::AuditFilter {
            action: Some("transfer.create".into()),
            limit: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(log.len(), 1);
    // Suspended recipients get nothing.
    set_status(&mut db.conn(), now, bob.user.id, UserStatus::Suspended).unwrap();
    match send(1, "bob@example.com") {
        Err(Error::Rejected {
            code: "recipient_inactive",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_clean(&db);
});

db_test!(transfers_above_the_threshold_wait_in_escrow, |db| {
    let rules = QuotaRules {
        transfer_approval_threshold: Some(100),
        ..RULES
    };
    let ann = create_user(&db, "ann@example.com", 1000, false);
    let bob = create_user(&db, "bob@example.com", 0, false);
    let lead = create_user(&db, "lead@example.com", 0, false);
    team(&db, "T", 0, &[(ann.user.id, false), (lead.user.id, true)]);
    // Mid-month, so the week below stays in one period.
    let now = at("2026-11-10 12:00:00");
    let ann_row = user_row(&db, ann.user.id);
    let send = |amount: i64| {
        transfers::send(
            &mut db.conn(),
            now,
            &ann_row,
            TransferRequest {
                recipient_email: "bob@example.com".into(),
                amount,
                reason: "help".into(),
            },
            &rules,
        )
        .unwrap()
    };
    assert_eq!(send(100).status, "completed");
    let pending = send(400);
    assert_eq!(pending.status, "pending");
    // Held in escrow: Ann cannot spend it, Bob does not have it yet.
    assert_eq!(view(&db, ann.user.id, now, rules).transferable, 500);
    assert_eq!(view(&db, bob.user.id, now, rules).available_quota, 100);
    // The team lead was told; Ann cannot approve her own.
    let lead_notes = notifications::list(&mut db.conn(), lead.user.id, true, 10).unwrap();
    assert_eq!(lead_notes[0].kind, "transfer_pending");
    assert!(matches!(
        transfers::decide(
            &mut db.conn(),
            now,
            pending.id,
            &ann_row,
            true,
            None,
            &rules
        ),
        Err(Error::Forbidden(_))
    ));
    let lead_row = user_row(&db, lead.user.id);
    let done = transfers::decide(
        &mut db.conn(),
        now,
        pending.id,
        &lead_row,
        true,
        Some("ok".into()),
        &rules,
    )
    .unwrap();
    assert_eq!(
        (done.status.as_str(), done.decided_by),
        ("completed", Some(lead.user.id))
    );
    assert_eq!(view(&db, bob.user.id, now, rules).available_quota, 500);
    assert!(matches!(
        transfers::decide(
            &mut db.conn(),
            now,
            pending.id,
            &lead_row,
            false,
            None,
            &rules
        ),
        Err(Error::Conflict {
            code: "already_decided",
            ..
        })
    ));
    // Denied: back to Ann.
    let denied = send(200);
    transfers::decide(
        &mut db.conn(),
        now,
        denied.id,
        &lead_row,
        false,
        None,
        &rules,
    )
    .unwrap();
    assert_eq!(view(&db, ann.user.id, now, rules).transferable, 500);
    // Expired after APPROVAL_TTL_DAYS: back to Ann.
    let waiting = send(300);
    assert_eq!(view(&db, ann.user.id, now, rules).transferable, 200);
    let week = now + TimeDelta::days(7);
    let round = maintenance::run(&mut db.conn(), week, &rules, false).unwrap();
    assert_eq!(round.transfers_expired, 1);
    assert_eq!(
        transfers::get(&mut db.conn(), waiting.id).unwrap().status,
        "expired"
    );
    assert_eq!(view(&db, ann.user.id, week, rules).transferable, 500);
    let mut conn = db.conn();
    assert_eq!(balance(&mut conn, Account::Escrow, now), 0);
    drop(conn);
    assert_clean(&db);
});

db_test!(approved_quota_requests_become_grants, |db| {
    let ann = create_user(&db, "ann@example.com", 100, false);
    let lead = create_user(&db, "lead@example.com", 0, false);
    let outsider = create_user(&db, "out@example.com", 0, false);
    team(&db, "T", 0, &[(ann.user.id, false), (lead.user.id, true)]);
    team(&db, "U", 0, &[(outsider.user.id, true)]);
    let now = start_time();
    let ann_row = user_row(&db, ann.user.id);
    let r = approvals::create(&mut db.conn(), now, &ann_row, 400, "launch week", &RULES).unwrap();
    assert_eq!(r.status, "pending");
    // A team admin of another team may not decide it.
    let out_row = user_row(&db, outsider.user.id);
    assert!(matches!(
        approvals::decide(&mut db.conn(), now, r.id, &out_row, true, None, &RULES),
        Err(Error::Forbidden(_))
    ));
    let lead_row = user_row(&db, lead.user.id);
    let approved =
        approvals::decide(&mut db.conn(), now, r.id, &lead_row, true, None, &RULES).unwrap();
    assert_eq!(approved.status, "approved");
    assert_eq!(view(&db, ann.user.id, now, RULES).available_quota, 500);
    let notes = notifications::list(&mut db.conn(), ann.user.id, false, 10).unwrap();
    assert_eq!(notes[0].kind, "quota_request_approved");
    // Denied requests grant nothing; pending ones expire.
    let d = approvals::create(&mut db.conn(), now, &ann_row, 50, "more", &RULES).unwrap();
    approvals::decide(&mut db.conn(), now, d.id, &lead_row, false, None, &RULES).unwrap();
    let e = approvals::create(&mut db.conn(), now, &ann_row, 50, "later", &RULES).unwrap();
    maintenance::run(&mut db.conn(), now + TimeDelta::days(8), &RULES, false).unwrap();
    assert_eq!(
        approvals::get(&mut db.conn(), e.id).unwrap().status,
        "expired"
    );
    assert_eq!(view(&db, ann.user.id, now, RULES).available_quota, 500);
    assert_clean(&db);
});

db_test!(
    critical_overdraft_is_capped_audited_and_repaid_next_period,
    |db| {
        let rules = QuotaRules {
            critical_overdraft_limit: 500,
            ..RULES
        };
        create_user(&db, "root@example.com", 0, true);
        let ann = create_user(&db, "ann@example.com", 1000, false);
        let now = start_time();
        let (normal, got) = granted(&ask(
            &db,
            now,
            rules,
            &ann,
            "envoy-a",
            1000,
            Priority::Normal,
        ));
        assert_eq!(got, 1000);
        spend(&db, now, "n1", ann.user.id, &normal, 1000);
        // Normal requests are refused; critical ones overdraw, up to the limit, on a
        // separate critical lease.
        assert_eq!(
            scope(&ask(&db, now, rules, &ann, "envoy-a", 10, Priority::Normal)),
            BudgetScope::Personal
        );
        let (critical, got) = granted(&ask(
            &db,
            now,
            rules,
            &ann,
            "envoy-a",
            800,
            Priority::Critical,
        ));
        assert_ne!(critical, normal);
        assert_eq!(got, 500);
        assert_eq!(
            scope(&ask(
                &db,
                now,
                rules,
                &ann,
                "envoy-a",
                1,
                Priority::Critical
            )),
            BudgetScope::Overdraft
        );
        spend(&db, now, "c1", ann.user.id, &critical, 300);
        release_all(&db, now + TimeDelta::seconds(61));
        let v = view(&db, ann.user.id, now + TimeDelta::seconds(61), rules);
        assert_eq!(
            (v.used_tokens, v.overdraft_used, v.overdraft_available),
            (1300, 300, 200)
        );
        // Audited and admins notified.
        let log = audit::list(
            &mut db.conn(),
            &audit::AuditFilter {
                action: Some("overdraft.use".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(log.len(), 1);
        let root = users::find_by_email(&mut db.conn(), "root@example.com")
            .unwrap()
            .unwrap();
        let notes = notifications::list(&mut db.conn(), root.id, true, 10).unwrap();
        assert_eq!(notes[0].kind, "overdraft_used");
        // December's 1000 first pays back the 300.
        let december = at("2026-12-01 08:00:00");
        let v = view(&db, ann.user.id, december, rules);
        assert_eq!((v.available_quota, v.overdraft_used), (700, 0));
        // An admin can switch the overdraft off.
        users::update_user(
            &mut db.conn(),
            december,
            ann.user.id,
            users::UpdateUser {
                overdraft_enabled: Some(false),
                ..Default::default()
            },
            &rules,
            None,
        )
        .unwrap();
        let (lease, _) = granted(&ask(
            &db,
            december,
            rules,
            &ann,
            "envoy-a",
            700,
            Priority::Normal,
        ));
        spend(&db, december, "d1", ann.user.id, &lease, 700);
        assert_eq!(
            scope(&ask(
                &db,
                december,
                rules,
                &ann,
                "envoy-a",
                1,
                Priority::Critical
            )),
            BudgetScope::Personal
        );
        assert_clean(&db);
    }
);

db_test!(usage_past_a_lease_is_debt_repaid_by_the_next_grant, |db| {
    let ann = create_user(&db, "ann@example.com", 1000, false);
    let now = start_time();
    let (lease, _) = granted(&ask(
        &db,
        now,
        RULES,
        &ann,
        "envoy-a",
        100,
        Priority::Normal,
    ));
    spend(&db, now, "o1", ann.user.id, &lease, 130);
    let v = view(&db, ann.user.id, now, RULES);
    assert_eq!((v.used_tokens, v.debt, v.available_quota), (130, 30, 870));
    // The proxy's lease grows by the 870 left after the debt is repaid.
    let (_, total) = granted(&ask(
        &db,
        now,
        RULES,
        &ann,
        "envoy-a",
        10_000,
        Priority::Normal,
    ));
    assert_eq!(total, 130 + 870); // the grant counts the 130 it used
    let v = view(&db, ann.user.id, now, RULES);
    assert_eq!(v.debt, 0);
    // The extended lease held exactly the 870 (its overrun went to debt, not to its
    // hold): at expiry all of it comes back and nothing stays held.
    release_all(&db, now + TimeDelta::seconds(61));
    let mut conn = db.conn();
    assert_eq!(balance(&mut conn, Account::Held(ann.user.id), now), 0);
    drop(conn);
    let v = view(&db, ann.user.id, now + TimeDelta::seconds(61), RULES);
    assert_eq!((v.used_tokens, v.available_quota), (130, 870));
    assert_clean(&db);
});

db_test!(quota_and_pool_changes_adjust_the_current_period, |db| {
    let ann = create_user(&db, "ann@example.com", 1000, false);
    let now = start_time();
    let (lease, _) = granted(&ask(
        &db,
        now,
        RULES,
        &ann,
        "envoy-a",
        400,
        Priority::Normal,
    ));
    spend(&db, now, "q1", ann.user.id, &lease, 400);
    let update = |quota: i64| {
        users::update_user(
            &mut db.conn(),
            now,
            ann.user.id,
            users::UpdateUser {
                personal_quota: Some(quota),
                ..Default::default()
            },
            &RULES,
            None,
        )
        .unwrap();
    };
    update(1500);
    assert_eq!(view(&db, ann.user.id, now, RULES).available_quota, 1100);
    // Lowering takes at most what is unspent.
    update(100);
    assert_eq!(view(&db, ann.user.id, now, RULES).available_quota, 0);
    update(600);
    assert_eq!(view(&db, ann.user.id, now, RULES).available_quota, 500);
    let bob = create_user(&db, "bob@example.com", 0, false);
    let t = team(&db, "P", 1000, &[(bob.user.id, false)]);
    assert_eq!(
        view(&db, bob.user.id, now, RULES).pools[0].pool_balance,
        1000
    );
    let root = admin(&db);
    teams::update_team(
        &mut db.conn(),
        now,
        t,
        teams::UpdateTeam {
            common_pool: Some(4000),
            ..Default::default()
        },
        &RULES,
        root,
    )
    .unwrap();
    assert_eq!(
        view(&db, bob.user.id, now, RULES).pools[0].pool_balance,
        4000
    );
    assert_clean(&db);
});

db_test!(idle_members_go_on_vacation, |db| {
    let ann = create_user(&db, "ann@example.com", 1000, false);
    let bob = create_user(&db, "bob@example.com", 1000, false);
    let loner = create_user(&db, "loner@example.com", 1000, false);
    let t = team(
        &db,
        "Idle",
        0,
        &[(ann.user.id, false), (bob.user.id, false)],
    );
    let now = start_time();
    granted(&ask(
        &db,
        now + TimeDelta::days(10),
        RULES,
        &bob,
        "envoy-a",
        10,
        Priority::Normal,
    ));
    // 15 days later Ann (no request) goes on vacation, Bob (request 5 days ago) does
    // not, and a user in no team never does.
    let later = now + TimeDelta::days(15);
    let round = maintenance::run(&mut db.conn(), later, &RULES, true).unwrap();
    assert_eq!(round.idle_on_vacation, 1);
    assert_eq!(user_row(&db, ann.user.id).status(), UserStatus::OnVacation);
    assert_eq!(user_row(&db, bob.user.id).status(), UserStatus::Active);
    assert_eq!(user_row(&db, loner.user.id).status(), UserStatus::Active);
    // Later is in December: Ann's December quota went to the pool.
    let mut conn = db.conn();
    assert_eq!(balance(&mut conn, Account::Pool(t), later), 1000);
    drop(conn);
    assert_clean(&db);
});
