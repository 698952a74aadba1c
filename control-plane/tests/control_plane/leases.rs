//! Lease grants: exact numbers, expiry, periods and concurrency.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use alfred_control_plane::leases::{self, LeaseDecision, LeasePolicy, LeaseRequest};
use alfred_control_plane::pricing::PriceCatalog;
use alfred_control_plane::quota::{Priority, QuotaPeriod, QuotaRules};
use alfred_control_plane::usage::{self, Privacy, UsageBatch, UsageReport};
use alfred_control_plane::users::{keys, UserStatus};
use chrono::TimeDelta;

use crate::common::{at, create_user, start_time};
use crate::db_test;

const POLICY: LeasePolicy = LeasePolicy {
    ttl: Duration::from_secs(60),
    rules: QuotaRules::DEFAULT,
};

fn request(key: &str, tokens: i64) -> LeaseRequest {
    LeaseRequest {
        key_hash: keys::hash_key(key),
        proxy_id: "envoy-a".into(),
        requested_tokens: tokens,
        priority: Priority::Normal,
    }
}

fn granted(decision: &LeaseDecision) -> (i64, i64) {
    match decision {
        LeaseDecision::Granted {
            granted_tokens,
            quota_remaining,
            ..
        } => (*granted_tokens, *quota_remaining),
        other => panic!("expected a grant, got {other:?}"),
    }
}

pub fn report(request_id: &str, user_id: i64, lease_id: Option<&str>, total: i64) -> UsageReport {
    UsageReport {
        request_id: request_id.into(),
        lease_id: lease_id.map(str::to_owned),
        user_id,
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        input_tokens: total / 2,
        output_tokens: total - total / 2,
        total_tokens: total,
        cached_tokens: 0,
        reasoning_tokens: 0,
        status: 200,
        estimated: false,
        priority: Priority::Normal,
        project_id: None,
        privacy: Privacy::Standard,
        occurred_at: None,
    }
}

db_test!(grants_min_of_requested_and_available_then_exhausts, |db| {
    let user = create_user(&db, "g@example.com", 1000, false);
    let now = start_time();
    let first = leases::grant(&mut db.conn(), now, POLICY, request(&user.api_key, 300)).unwrap();
    assert_eq!(granted(&first), (300, 1000));
    let LeaseDecision::Granted {
        expires_in_ms,
        period_reset_s,
        user_id,
        ..
    } = &first
    else {
        unreachable!()
    };
    assert_eq!(
        (*expires_in_ms, *period_reset_s, *user_id),
        (60_000, 43_200, user.user.id)
    );

    // Another proxy gets the rest.
    let mut other_proxy = request(&user.api_key, 800);
    other_proxy.proxy_id = "envoy-b".into();
    let second = leases::grant(&mut db.conn(), now, POLICY, other_proxy).unwrap();
    assert_eq!(granted(&second), (700, 700));

    let third = leases::grant(&mut db.conn(), now, POLICY, request(&user.api_key, 1)).unwrap();
    assert_eq!(
        third,
        LeaseDecision::Exhausted {
            user_id: user.user.id,
            quota_remaining: 0,
            period_reset_s: 43_200,
            scope: leases::BudgetScope::Personal,
        }
    );
    let balance =
        crate::common::balance(&mut db.conn(), &user.user, QuotaPeriod::Monthly, now).unwrap();
    assert_eq!(
        (
            balance.used_tokens,
            balance.held_tokens,
            balance.available_quota
        ),
        (0, 1000, 1000)
    );
});

db_test!(invalid_key_and_suspended_decisions, |db| {
    let user = create_user(&db, "s@example.com", 1000, false);
    let now = start_time();
    let unknown = keys::generate().plaintext;
    assert_eq!(
        leases::grant(&mut db.conn(), now, POLICY, request(&unknown, 10)).unwrap(),
        LeaseDecision::InvalidKey
    );
    crate::common::set_status(&mut db.conn(), now, user.user.id, UserStatus::Suspended).unwrap();
    assert_eq!(
        leases::grant(&mut db.conn(), now, POLICY, request(&user.api_key, 10)).unwrap(),
        LeaseDecision::Suspended {
            user_id: user.user.id
        }
    );
    // On vacation is still allowed for now.
    crate::common::set_status(&mut db.conn(), now, user.user.id, UserStatus::OnVacation).unwrap();
    assert_eq!(
        granted(&leases::grant(&mut db.conn(), now, POLICY, request(&user.api_key, 10)).unwrap()),
        (10, 1000)
    );
});

db_test!(malformed_requests_are_rejected, |db| {
    let user = create_user(&db, "m@example.com", 1000, false);
    let mut bad = request(&user.api_key, 10);
    bad.key_hash = "xyz".into();
    assert!(leases::grant(&mut db.conn(), start_time(), POLICY, bad).is_err());
    assert!(leases::grant(
        &mut db.conn(),
        start_time(),
        POLICY,
        request(&user.api_key, 0)
    )
    .is_err());
    let mut no_proxy = request(&user.api_key, 10);
    no_proxy.proxy_id = " ".into();
    assert!(leases::grant(&mut db.conn(), start_time(), POLICY, no_proxy).is_err());
});

db_test!(expired_leases_hold_nothing, |db| {
    let user = create_user(&db, "e@example.com", 1000, false);
    let now = start_time();
    assert_eq!(
        granted(&leases::grant(&mut db.conn(), now, POLICY, request(&user.api_key, 1000)).unwrap())
            .0,
        1000
    );
    // Still held one second before expiry…
    let almost = now + TimeDelta::seconds(59);
    assert!(matches!(
        leases::grant(&mut db.conn(), almost, POLICY, request(&user.api_key, 1)).unwrap(),
        LeaseDecision::Exhausted { .. }
    ));
    // …released at expiry.
    let later = now + TimeDelta::seconds(60);
    assert_eq!(
        granted(
            &leases::grant(&mut db.conn(), later, POLICY, request(&user.api_key, 5000)).unwrap()
        ),
        (1000, 1000)
    );
});

db_test!(usage_turns_holds_into_used, |db| {
    let user = create_user(&db, "u@example.com", 1000, false);
    let now = start_time();
    let lease = leases::grant(&mut db.conn(), now, POLICY, request(&user.api_key, 500)).unwrap();
    let LeaseDecision::Granted { lease_id, .. } = &lease else {
        unreachable!()
    };
    let batch = UsageBatch {
        proxy_id: "envoy-a".into(),
        records: vec![report("r1", user.user.id, Some(lease_id), 200)],
    };
    usage::ingest(
        &mut db.conn(),
        now,
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch,
    )
    .unwrap();
    // used 200, this lease holds 300: another proxy may get 500.
    let mut other_proxy = request(&user.api_key, 10_000);
    other_proxy.proxy_id = "envoy-b".into();
    let other = leases::grant(&mut db.conn(), now, POLICY, other_proxy).unwrap();
    assert_eq!(granted(&other), (500, 500));
    let stored = leases::get_lease(&mut db.conn(), lease_id).unwrap();
    assert_eq!((stored.granted_tokens, stored.used_tokens), (500, 200));
    // Over-spending a lease never makes its hold negative.
    let batch = UsageBatch {
        proxy_id: "envoy-a".into(),
        records: vec![report("r2", user.user.id, Some(lease_id), 400)],
    };
    usage::ingest(
        &mut db.conn(),
        now,
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch,
    )
    .unwrap();
    let balance =
        crate::common::balance(&mut db.conn(), &user.user, QuotaPeriod::Monthly, now).unwrap();
    assert_eq!(
        (
            balance.used_tokens,
            balance.held_tokens,
            balance.available_quota
        ),
        (600, 500, 400)
    );
    assert!(matches!(
        leases::grant(&mut db.conn(), now, POLICY, request(&user.api_key, 1)).unwrap(),
        LeaseDecision::Exhausted { .. }
    ));
});

db_test!(new_period_starts_fresh, |db| {
    let user = create_user(&db, "p@example.com", 1000, false);
    let nov = at("2026-11-30 23:59:00");
    let lease = leases::grant(&mut db.conn(), nov, POLICY, request(&user.api_key, 1000)).unwrap();
    let LeaseDecision::Granted {
        lease_id,
        period_reset_s,
        ..
    } = &lease
    else {
        unreachable!()
    };
    assert_eq!(*period_reset_s, 60);
    let batch = UsageBatch {
        proxy_id: "envoy-a".into(),
        records: vec![report("r1", user.user.id, Some(lease_id), 900)],
    };
    usage::ingest(
        &mut db.conn(),
        nov,
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch,
    )
    .unwrap();
    // 30 s later it is December: the November lease (still unexpired) holds nothing
    // in the new period and November's usage no longer counts.
    let dec = at("2026-12-01 00:00:30");
    let balance =
        crate::common::balance(&mut db.conn(), &user.user, QuotaPeriod::Monthly, dec).unwrap();
    assert_eq!(
        (
            balance.used_tokens,
            balance.held_tokens,
            balance.available_quota
        ),
        (0, 0, 1000)
    );
    let fresh = leases::grant(&mut db.conn(), dec, POLICY, request(&user.api_key, 400)).unwrap();
    assert_eq!(granted(&fresh), (400, 1000));
    let LeaseDecision::Granted { period_reset_s, .. } = fresh else {
        unreachable!()
    };
    assert_eq!(period_reset_s, 31 * 86_400 - 30);
});

db_test!(concurrent_grants_never_exceed_quota, |db| {
    const QUOTA: i64 = 1000;
    const THREADS: usize = 8;
    const PER_THREAD: usize = 20;
    const ASK: i64 = 13;
    let user = create_user(&db, "c@example.com", QUOTA, false);
    let pool = db.pool();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = pool.clone();
            let key = user.api_key.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut conn = pool.get().unwrap();
                barrier.wait();
                // Each proxy holds one lease, extended by every further grant.
                let mut total = 0;
                let mut lease: Option<String> = None;
                for _ in 0..PER_THREAD {
                    let mut req = request(&key, ASK);
                    req.proxy_id = format!("envoy-{t}");
                    match leases::grant(&mut conn, start_time(), POLICY, req).unwrap() {
                        LeaseDecision::Granted {
                            lease_id,
                            granted_tokens,
                            ..
                        } => {
                            let extra = granted_tokens - total;
                            assert!(extra > 0 && extra <= ASK, "extra {extra}");
                            assert!(lease.as_ref().is_none_or(|l| *l == lease_id));
                            lease = Some(lease_id);
                            total = granted_tokens;
                        }
                        LeaseDecision::Exhausted { .. } => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
                total
            })
        })
        .collect();
    let total: i64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // 8 × 20 × 13 = 2080 asked for, 1000 available: exactly the quota is held.
    assert_eq!(total, QUOTA);
    let balance = crate::common::balance(
        &mut db.conn(),
        &user.user,
        QuotaPeriod::Monthly,
        start_time(),
    )
    .unwrap();
    assert_eq!(balance.held_tokens, QUOTA);
});

db_test!(concurrent_grants_and_usage_spend_exactly_the_quota, |db| {
    // Several proxies each loop: take a lease, spend all of it, report the usage.
    // Grants and usage batches interleave; in the end exactly the quota is used.
    const QUOTA: i64 = 997;
    const THREADS: usize = 6;
    let user = create_user(&db, "spend@example.com", QUOTA, false);
    let pool = db.pool();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = pool.clone();
            let key = user.api_key.clone();
            let user_id = user.user.id;
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut conn = pool.get().unwrap();
                barrier.wait();
                let mut spent = 0;
                let mut lease_total = 0;
                for round in 0.. {
                    let mut req = request(&key, 11);
                    req.proxy_id = format!("envoy-{t}");
                    match leases::grant(&mut conn, start_time(), POLICY, req).unwrap() {
                        LeaseDecision::Granted {
                            lease_id,
                            granted_tokens,
                            ..
                        } => {
                            // The proxy's lease grew by the difference; spend it.
                            let extra = granted_tokens - lease_total;
                            lease_total = granted_tokens;
                            let records = vec![report(
                                &format!("t{t}-r{round}"),
                                user_id,
                                Some(&lease_id),
                                extra,
                            )];
                            let batch = UsageBatch {
                                proxy_id: format!("envoy-{t}"),
                                records,
                            };
                            usage::ingest(
                                &mut conn,
                                start_time(),
                                QuotaPeriod::Monthly,
                                &PriceCatalog::builtin(),
                                batch,
                            )
                            .unwrap();
                            spent += extra;
                        }
                        LeaseDecision::Exhausted { .. } => break,
                        other => panic!("unexpected {other:?}"),
                    }
                }
                spent
            })
        })
        .collect();
    let spent: i64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(spent, QUOTA);
    let balance = crate::common::balance(
        &mut db.conn(),
        &user.user,
        QuotaPeriod::Monthly,
        start_time(),
    )
    .unwrap();
    assert_eq!(
        (
            balance.used_tokens,
            balance.held_tokens,
            balance.available_quota
        ),
        (QUOTA, 0, 0)
    );
});

db_test!(a_proxy_asking_again_extends_its_lease, |db| {
    let user = create_user(&db, "x@example.com", 1000, false);
    let uid = user.user.id;
    let now = start_time();
    let first = leases::grant(&mut db.conn(), now, POLICY, request(&user.api_key, 300)).unwrap();
    assert_eq!(granted(&first), (300, 1000));
    let LeaseDecision::Granted { lease_id: a, .. } = first else {
        unreachable!()
    };
    let mut from_b = request(&user.api_key, 200);
    from_b.proxy_id = "envoy-b".into();
    let second = leases::grant(&mut db.conn(), now, POLICY, from_b).unwrap();
    assert_eq!(granted(&second), (200, 700));
    let LeaseDecision::Granted { lease_id: b, .. } = second else {
        unreachable!()
    };
    assert_ne!(a, b);
    let batch = UsageBatch {
        proxy_id: "envoy-a".into(),
        records: vec![report("x1", uid, Some(&a), 100)],
    };
    usage::ingest(
        &mut db.conn(),
        now,
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch,
    )
    .unwrap();

    // 30 s later envoy-a asks for 1000: available = 1000 − 100 used − 200 (its own
    // hold) − 200 (envoy-b) = 500, so its lease grows by 500 to 800, same id, fresh
    // expiry; quota_remaining = 500 + its hold 200 + its reported 100.
    let later = now + TimeDelta::seconds(30);
    let extended =
        leases::grant(&mut db.conn(), later, POLICY, request(&user.api_key, 1000)).unwrap();
    assert_eq!(
        extended,
        LeaseDecision::Granted {
            lease_id: a.clone(),
            user_id: uid,
            granted_tokens: 800,
            expires_in_ms: 60_000,
            quota_remaining: 800,
            period_reset_s: 43_170,
        }
    );
    let stored = leases::get_lease(&mut db.conn(), &a).unwrap();
    assert_eq!(
        (stored.granted_tokens, stored.used_tokens, stored.expires_at),
        (800, 100, later + TimeDelta::seconds(60))
    );
    let balance =
        crate::common::balance(&mut db.conn(), &user.user, QuotaPeriod::Monthly, later).unwrap();
    assert_eq!((balance.used_tokens, balance.held_tokens), (100, 900));

    // Nothing left: exhausted, and the lease is left as it was.
    assert_eq!(
        leases::grant(&mut db.conn(), later, POLICY, request(&user.api_key, 1)).unwrap(),
        LeaseDecision::Exhausted {
            user_id: uid,
            quota_remaining: 0,
            period_reset_s: 43_170,
            scope: leases::BudgetScope::Personal,
        }
    );
    assert_eq!(leases::get_lease(&mut db.conn(), &a).unwrap(), stored);

    // envoy-b's lease expired at +60 s, envoy-a's lives until +90 s: at +60 s envoy-a
    // can grow by what envoy-b held (1000 − 100 − 700 = 200).
    let at_60 = now + TimeDelta::seconds(60);
    let grown = leases::grant(&mut db.conn(), at_60, POLICY, request(&user.api_key, 5000)).unwrap();
    assert_eq!(granted(&grown), (1000, 1000));
    let LeaseDecision::Granted { lease_id, .. } = &grown else {
        unreachable!()
    };
    assert_eq!(lease_id, &a);

    // Once it has expired, the next grant is a new lease.
    let at_200 = now + TimeDelta::seconds(200);
    let fresh = leases::grant(&mut db.conn(), at_200, POLICY, request(&user.api_key, 50)).unwrap();
    assert_eq!(granted(&fresh), (50, 900));
    let LeaseDecision::Granted { lease_id, .. } = &fresh else {
        unreachable!()
    };
    assert_ne!(lease_id, &a);
});

db_test!(sync_reports_each_key, |db| {
    use alfred_control_plane::db::schema::api_keys;
    use alfred_control_plane::error::Error;
    use alfred_control_plane::leases::{check_keys, KeyCheck, KeyDecision};
    use diesel::prelude::*;

    let now = start_time();
    let active = create_user(&db, "active@example.com", 1000, false);
    let suspended = create_user(&db, "suspended@example.com", 1000, false);
    crate::common::set_status(
        &mut db.conn(),
        now,
        suspended.user.id,
        UserStatus::Suspended,
    )
    .unwrap();
    let spent = create_user(&db, "spent@example.com", 100, false);
    usage::ingest(
        &mut db.conn(),
        now,
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        UsageBatch {
            proxy_id: "envoy-a".into(),
            records: vec![report("s1", spent.user.id, None, 100)],
        },
    )
    .unwrap();
    // envoy-b holds the whole quota of `held`: nothing left for envoy-a, while
    // envoy-b itself must keep its lease.
    let held = create_user(&db, "held@example.com", 100, false);
    let mut from_b = request(&held.api_key, 100);
    from_b.proxy_id = "envoy-b".into();
    assert_eq!(
        granted(&leases::grant(&mut db.conn(), now, POLICY, from_b).unwrap()).0,
        100
    );
    // A proxy holding the user's whole quota itself is still active.
    let own = create_user(&db, "own@example.com", 100, false);
    assert_eq!(
        granted(&leases::grant(&mut db.conn(), now, POLICY, request(&own.api_key, 100)).unwrap()).0,
        100
    );
    let revoked = create_user(&db, "revoked@example.com", 1000, false);
    diesel::update(api_keys::table.filter(api_keys::user_id.eq(revoked.user.id)))
        .set(api_keys::revoked_at.eq(Some(now)))
        .execute(&mut db.conn())
        .unwrap();
    let unknown = keys::hash_key(&keys::generate().plaintext);

    let hashes: Vec<String> = [
        &active.api_key,
        &suspended.api_key,
        &spent.api_key,
        &held.api_key,
        &own.api_key,
        &revoked.api_key,
    ]
    .iter()
    .map(|k| keys::hash_key(k))
    .chain([
        unknown.clone(),
        keys::hash_key(&active.api_key).to_uppercase(),
    ])
    .collect();
    let exhausted = KeyDecision::Exhausted {
        period_reset_s: 43_200,
    };
    let decisions = |proxy: &str| -> Vec<KeyDecision> {
        let checks = check_keys(&mut db.conn(), now, QuotaPeriod::Monthly, proxy, &hashes).unwrap();
        assert_eq!(checks.len(), hashes.len());
        for (check, hash) in checks.iter().zip(&hashes) {
            assert_eq!(check.key_hash, hash.to_ascii_lowercase());
        }
        checks.into_iter().map(|c: KeyCheck| c.decision).collect()
    };
    assert_eq!(
        decisions("envoy-a"),
        [
            KeyDecision::Active,
            KeyDecision::Suspended,
            exhausted,
            exhausted,
            KeyDecision::Active,
            KeyDecision::InvalidKey,
            KeyDecision::InvalidKey,
            KeyDecision::Active,
        ]
    );
    assert_eq!(decisions("envoy-b")[3], KeyDecision::Active);
    // After the lease expires, envoy-a may have the quota again.
    let later = now + TimeDelta::seconds(60);
    let checks = check_keys(
        &mut db.conn(),
        later,
        QuotaPeriod::Monthly,
        "envoy-a",
        &hashes[3..4],
    )
    .unwrap();
    assert_eq!(checks[0].decision, KeyDecision::Active);

    let too_many = vec![unknown.clone(); 501];
    let err = check_keys(
        &mut db.conn(),
        now,
        QuotaPeriod::Monthly,
        "envoy-a",
        &too_many,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { field, .. } if field == "key_hashes"),
        "{err:?}"
    );
    let err = check_keys(
        &mut db.conn(),
        now,
        QuotaPeriod::Monthly,
        "envoy-a",
        &[unknown, "xyz".into()],
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { field, .. } if field == "key_hashes[1]"),
        "{err:?}"
    );
    assert_eq!(
        check_keys(&mut db.conn(), now, QuotaPeriod::Monthly, "envoy-a", &[]).unwrap(),
        []
    );
});

/// A grant as compared across the two runs: lease ids differ, so each is named by the
/// index of the first decision that granted it.
fn shape(decisions: &[LeaseDecision], user_index: impl Fn(i64) -> usize) -> Vec<String> {
    let mut leases_seen: Vec<String> = Vec::new();
    decisions
        .iter()
        .map(|d| match d {
            LeaseDecision::Granted {
                lease_id,
                user_id,
                granted_tokens,
                expires_in_ms,
                quota_remaining,
                period_reset_s,
            } => {
                let lease = match leases_seen.iter().position(|l| l == lease_id) {
                    Some(i) => i,
                    None => {
                        leases_seen.push(lease_id.clone());
                        leases_seen.len() - 1
                    }
                };
                format!(
                    "granted lease#{lease} user#{} {granted_tokens} {expires_in_ms} \
                     {quota_remaining} {period_reset_s}",
                    user_index(*user_id)
                )
            }
            LeaseDecision::Exhausted {
                user_id,
                quota_remaining,
                period_reset_s,
                scope,
            } => format!(
                "exhausted user#{} {quota_remaining} {period_reset_s} {}",
                user_index(*user_id),
                scope.as_str()
            ),
            LeaseDecision::Suspended { user_id } => {
                format!("suspended user#{}", user_index(*user_id))
            }
            LeaseDecision::InvalidKey => "invalid_key".to_owned(),
        })
        .collect()
}

db_test!(a_round_of_grants_decides_as_one_grant_after_another, |db| {
    use alfred_control_plane::ledger::{self, Account};
    use alfred_control_plane::teams::{self, CreateTeam};

    let now = start_time();
    let admin = create_user(&db, "root@example.com", 0, true).user.id;
    // Two identical organisations: `one` is granted one request at a time, `round`
    // all at once; every decision and balance must come out the same. Users 0–2 take
    // the round's in-memory path (several grants each), the others the general one.
    let mut groups = Vec::new();
    for group in ["one", "round"] {
        let people: Vec<_> = (0..8)
            .map(|i| create_user(&db, &format!("{group}{i}@example.com"), 1000, false))
            .collect();
        let team = teams::create_team(
            &mut db.conn(),
            now,
            CreateTeam {
                name: format!("team-{group}"),
                description: String::new(),
                common_pool: 500,
            },
            admin,
        )
        .unwrap();
        teams::add_member(
            &mut db.conn(),
            now,
            team.id,
            people[3].user.id,
            false,
            admin,
        )
        .unwrap();
        crate::common::set_status(
            &mut db.conn(),
            now,
            people[4].user.id,
            UserStatus::Suspended,
        )
        .unwrap();
        // Leases before the round: user 0 on envoy-a, user 1 on envoy-a and envoy-b,
        // user 2 used 150 of a 100-token lease (the 50 past it became debt, repaid by
        // its grant on envoy-b), user 5's allocation not issued yet.
        let ask = |user: usize, proxy: &str, tokens: i64| LeaseRequest {
            proxy_id: proxy.into(),
            ..request(&people[user].api_key, tokens)
        };
        let mut conn = db.conn();
        for (user, proxy, tokens) in [(0, "envoy-a", 100), (1, "envoy-a", 50), (1, "envoy-b", 50)] {
            leases::grant(&mut conn, now, POLICY, ask(user, proxy, tokens)).unwrap();
        }
        let LeaseDecision::Granted { lease_id, .. } =
            leases::grant(&mut conn, now, POLICY, ask(2, "envoy-a", 100)).unwrap()
        else {
            panic!("no lease for user 2");
        };
        let batch = UsageBatch {
            proxy_id: "envoy-a".into(),
            records: vec![report(
                &format!("{group}-over"),
                people[2].user.id,
                Some(&lease_id),
                150,
            )],
        };
        usage::ingest(
            &mut conn,
            now,
            QuotaPeriod::Monthly,
            &PriceCatalog::builtin(),
            batch,
        )
        .unwrap();
        leases::grant(&mut conn, now, POLICY, ask(2, "envoy-b", 10)).unwrap();
        groups.push(people);
    }

    let later = now + TimeDelta::seconds(5);
    let script: Vec<(Option<usize>, &str, i64, Priority)> = vec![
        (Some(0), "envoy-a", 100, Priority::Normal), // extends
        (Some(0), "envoy-a", 200, Priority::Normal), // extends again
        (Some(0), "envoy-c", 100, Priority::Normal), // new lease
        (Some(1), "envoy-b", 300, Priority::Normal), // extends
        (Some(1), "envoy-c", 50, Priority::Normal),  // new, then extended
        (Some(1), "envoy-c", 25, Priority::Normal),
        (Some(2), "envoy-a", 100, Priority::Normal), // used past its grant
        (Some(3), "envoy-a", 1200, Priority::Normal), // team pool: general path
        (Some(4), "envoy-a", 10, Priority::Normal),  // suspended
        (None, "envoy-a", 10, Priority::Normal),     // unknown key
        (Some(5), "envoy-a", 10, Priority::Normal),  // allocation not issued
        (Some(6), "envoy-a", 40, Priority::Critical), // critical: general path
        (Some(7), "envoy-a", 400, Priority::Normal), // plain on its own…
        (Some(7), "envoy-d", 5000, Priority::Normal), // …but more than is left
        (Some(7), "envoy-e", 10, Priority::Normal),  // nothing left
    ];
    let unknown = keys::generate().plaintext;
    let requests = |people: &[alfred_control_plane::users::CreatedUser]| -> Vec<LeaseRequest> {
        script
            .iter()
            .map(|&(user, proxy, tokens, priority)| LeaseRequest {
                proxy_id: proxy.into(),
                priority,
                ..request(user.map_or(&unknown, |u| &people[u].api_key), tokens)
            })
            .collect()
    };
    let mut conn = db.conn();
    let one: Vec<LeaseDecision> = requests(&groups[0])
        .into_iter()
        .map(|r| leases::grant(&mut conn, later, POLICY, r).unwrap())
        .collect();
    let prepared: Vec<_> = requests(&groups[1])
        .into_iter()
        .map(|r| leases::prepare(later, POLICY, r).unwrap())
        .collect();
    let round: Vec<LeaseDecision> = leases::grant_round(&mut conn, &prepared)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let index_in = |people: &[alfred_control_plane::users::CreatedUser]| {
        let ids: Vec<i64> = people.iter().map(|p| p.user.id).collect();
        move |id: i64| ids.iter().position(|&u| u == id).unwrap_or(usize::MAX)
    };
    assert_eq!(
        shape(&one, index_in(&groups[0])),
        shape(&round, index_in(&groups[1]))
    );
    // The script reaches every kind of answer.
    let shapes = shape(&one, index_in(&groups[0]));
    for kind in ["granted", "exhausted", "suspended", "invalid_key"] {
        assert!(
            shapes.iter().any(|s| s.starts_with(kind)),
            "{kind}: {shapes:#?}"
        );
    }

    let p = QuotaRules::DEFAULT.period.bounds(later).start;
    for (a, b) in groups[0].iter().zip(&groups[1]) {
        for account in [
            Account::Personal,
            Account::Held,
            Account::Debt,
            Account::Overdraft,
        ] {
            assert_eq!(
                ledger::balance(&mut conn, account(a.user.id), p).unwrap(),
                ledger::balance(&mut conn, account(b.user.id), p).unwrap(),
                "{} of {}",
                account(0),
                a.user.email
            );
        }
    }
    assert!(ledger::audit(&mut conn).unwrap().is_clean());
});
