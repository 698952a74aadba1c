//! Lease grants: exact numbers, expiry, periods and concurrency.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use alfred_control_plane::leases::{self, LeaseDecision, LeasePolicy, LeaseRequest};
use alfred_control_plane::quota::{self, Priority, QuotaPeriod};
use alfred_control_plane::usage::{self, Privacy, UsageBatch, UsageReport};
use alfred_control_plane::users::{self, keys, UserStatus};
use chrono::TimeDelta;

use crate::common::{at, create_user, start_time};
use crate::db_test;

const POLICY: LeasePolicy = LeasePolicy {
    ttl: Duration::from_secs(60),
    period: QuotaPeriod::Monthly,
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

    let second = leases::grant(&mut db.conn(), now, POLICY, request(&user.api_key, 800)).unwrap();
    assert_eq!(granted(&second), (700, 700));

    let third = leases::grant(&mut db.conn(), now, POLICY, request(&user.api_key, 1)).unwrap();
    assert_eq!(
        third,
        LeaseDecision::Exhausted {
            user_id: user.user.id,
            quota_remaining: 0,
            period_reset_s: 43_200
        }
    );
    let balance = quota::balance(&mut db.conn(), &user.user, QuotaPeriod::Monthly, now).unwrap();
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
    users::set_status(&mut db.conn(), now, user.user.id, UserStatus::Suspended).unwrap();
    assert_eq!(
        leases::grant(&mut db.conn(), now, POLICY, request(&user.api_key, 10)).unwrap(),
        LeaseDecision::Suspended {
            user_id: user.user.id
        }
    );
    // On vacation is still allowed for now.
    users::set_status(&mut db.conn(), now, user.user.id, UserStatus::OnVacation).unwrap();
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
    usage::ingest(&mut db.conn(), now, QuotaPeriod::Monthly, batch).unwrap();
    // used 200, this lease holds 300: another proxy may get 500.
    let other = leases::grant(&mut db.conn(), now, POLICY, request(&user.api_key, 10_000)).unwrap();
    assert_eq!(granted(&other), (500, 500));
    let stored = leases::get_lease(&mut db.conn(), lease_id).unwrap();
    assert_eq!((stored.granted_tokens, stored.used_tokens), (500, 200));
    // Over-spending a lease never makes its hold negative.
    let batch = UsageBatch {
        proxy_id: "envoy-a".into(),
        records: vec![report("r2", user.user.id, Some(lease_id), 400)],
    };
    usage::ingest(&mut db.conn(), now, QuotaPeriod::Monthly, batch).unwrap();
    let balance = quota::balance(&mut db.conn(), &user.user, QuotaPeriod::Monthly, now).unwrap();
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
    usage::ingest(&mut db.conn(), nov, QuotaPeriod::Monthly, batch).unwrap();
    // 30 s later it is December: the November lease (still unexpired) holds nothing
    // in the new period and November's usage no longer counts.
    let dec = at("2026-12-01 00:00:30");
    let balance = quota::balance(&mut db.conn(), &user.user, QuotaPeriod::Monthly, dec).unwrap();
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
                let mut total = 0;
                for _ in 0..PER_THREAD {
                    let mut req = request(&key, ASK);
                    req.proxy_id = format!("envoy-{t}");
                    match leases::grant(&mut conn, start_time(), POLICY, req).unwrap() {
                        LeaseDecision::Granted { granted_tokens, .. } => {
                            assert!(granted_tokens > 0 && granted_tokens <= ASK);
                            total += granted_tokens;
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
    let balance = quota::balance(
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
                for round in 0.. {
                    let mut req = request(&key, 11);
                    req.proxy_id = format!("envoy-{t}");
                    match leases::grant(&mut conn, start_time(), POLICY, req).unwrap() {
                        LeaseDecision::Granted {
                            lease_id,
                            granted_tokens,
                            ..
                        } => {
                            let records = vec![report(
                                &format!("t{t}-r{round}"),
                                user_id,
                                Some(&lease_id),
                                granted_tokens,
                            )];
                            let batch = UsageBatch {
                                proxy_id: format!("envoy-{t}"),
                                records,
                            };
                            usage::ingest(&mut conn, start_time(), QuotaPeriod::Monthly, batch)
                                .unwrap();
                            spent += granted_tokens;
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
    let balance = quota::balance(
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
