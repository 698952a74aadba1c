//! Usage ingestion: idempotency, validation, charging without a lease.

use alfred_control_plane::db::schema::usage_records;
use alfred_control_plane::error::Error;
use alfred_control_plane::leases::{self, LeaseDecision, LeasePolicy, LeaseRequest};
use alfred_control_plane::pricing::PriceCatalog;
use alfred_control_plane::quota::{Priority, QuotaPeriod};
use alfred_control_plane::usage::{self, IngestOutcome, UsageBatch};
use alfred_control_plane::users::keys;
use diesel::prelude::*;

use crate::common::{create_user, start_time};
use crate::db_test;
use crate::leases::report;

fn count(db: &crate::common::TestDb) -> i64 {
    usage_records::table
        .count()
        .get_result(&mut db.conn())
        .unwrap()
}

/// The running total must always equal the sum of the stored records.
fn assert_total_matches_records(db: &crate::common::TestDb, user_id: i64) {
    let totals: Vec<i64> = usage_records::table
        .filter(usage_records::user_id.eq(user_id))
        .select(usage_records::total_tokens)
        .load(&mut db.conn())
        .unwrap();
    let period_start = QuotaPeriod::Monthly.bounds(start_time()).start;
    let used = crate::common::used_in_period(&mut db.conn(), user_id, period_start).unwrap();
    assert_eq!(used, totals.iter().sum::<i64>());
}

fn batch(records: Vec<usage::UsageReport>) -> UsageBatch {
    UsageBatch {
        proxy_id: "envoy-a".into(),
        records,
    }
}

db_test!(same_batch_twice_is_charged_once, |db| {
    let user = create_user(&db, "i@example.com", 10_000, false);
    let now = start_time();
    let policy = LeasePolicy {
        ttl: std::time::Duration::from_secs(60),
        rules: alfred_control_plane::quota::QuotaRules::DEFAULT,
    };
    let lease = leases::grant(
        &mut db.conn(),
        now,
        policy,
        LeaseRequest {
            key_hash: keys::hash_key(&user.api_key),
            proxy_id: "envoy-a".into(),
            requested_tokens: 5000,
            priority: Priority::Normal,
        },
    )
    .unwrap();
    let LeaseDecision::Granted { lease_id, .. } = lease else {
        panic!("no grant")
    };
    let records = vec![
        report("req-1", user.user.id, Some(&lease_id), 42),
        report("req-2", user.user.id, Some(&lease_id), 100),
        report("req-3", user.user.id, None, 8),
    ];
    let first = usage::ingest(
        &mut db.conn(),
        now,
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch(records.clone()),
    )
    .unwrap();
    assert_eq!(
        first,
        IngestOutcome {
            applied: 3,
            duplicates: 0
        }
    );
    let again = usage::ingest(
        &mut db.conn(),
        now,
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch(records),
    )
    .unwrap();
    assert_eq!(
        again,
        IngestOutcome {
            applied: 0,
            duplicates: 3
        }
    );
    assert_eq!(count(&db), 3);
    assert_eq!(
        leases::get_lease(&mut db.conn(), &lease_id)
            .unwrap()
            .used_tokens,
        142
    );
    let balance =
        crate::common::balance(&mut db.conn(), &user.user, QuotaPeriod::Monthly, now).unwrap();
    assert_eq!(
        (
            balance.used_tokens,
            balance.held_tokens,
            balance.available_quota
        ),
        (150, 4858, 9850)
    );

    // A partly new batch applies only the new record.
    let mixed = vec![
        report("req-3", user.user.id, None, 8),
        report("req-4", user.user.id, Some(&lease_id), 1),
    ];
    let outcome = usage::ingest(
        &mut db.conn(),
        now,
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch(mixed),
    )
    .unwrap();
    assert_eq!(
        outcome,
        IngestOutcome {
            applied: 1,
            duplicates: 1
        }
    );
    assert_eq!(
        leases::get_lease(&mut db.conn(), &lease_id)
            .unwrap()
            .used_tokens,
        143
    );
    assert_total_matches_records(&db, user.user.id);
});

db_test!(repeats_inside_one_batch_count_once, |db| {
    let user = create_user(&db, "r@example.com", 10_000, false);
    let records = vec![
        report("same", user.user.id, None, 10),
        report("same", user.user.id, None, 10),
    ];
    let outcome = usage::ingest(
        &mut db.conn(),
        start_time(),
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch(records),
    )
    .unwrap();
    assert_eq!(
        outcome,
        IngestOutcome {
            applied: 1,
            duplicates: 1
        }
    );
    assert_eq!(
        crate::common::used_in_period(
            &mut db.conn(),
            user.user.id,
            QuotaPeriod::Monthly.bounds(start_time()).start
        )
        .unwrap(),
        10
    );
});

db_test!(usage_without_a_known_lease_is_still_charged, |db| {
    let user = create_user(&db, "n@example.com", 100, false);
    let records = vec![report("x", user.user.id, Some("no-such-lease"), 250)];
    usage::ingest(
        &mut db.conn(),
        start_time(),
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch(records),
    )
    .unwrap();
    let balance = crate::common::balance(
        &mut db.conn(),
        &user.user,
        QuotaPeriod::Monthly,
        start_time(),
    )
    .unwrap();
    // Over the quota: used is the truth, available floors at 0.
    assert_eq!((balance.used_tokens, balance.available_quota), (250, 0));
});

db_test!(a_bad_record_rejects_the_whole_batch, |db| {
    let user = create_user(&db, "b@example.com", 100, false);
    let mut negative = report("neg", user.user.id, None, 5);
    negative.output_tokens = -1;
    let err = usage::ingest(
        &mut db.conn(),
        start_time(),
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch(vec![report("ok", user.user.id, None, 5), negative]),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { field, .. } if field == "records[1].output_tokens"),
        "{err:?}"
    );

    let err = usage::ingest(
        &mut db.conn(),
        start_time(),
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch(vec![
            report("ok", user.user.id, None, 5),
            report("ghost", 424_242, None, 5),
        ]),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { field, .. } if field == "records[1].user_id"),
        "{err:?}"
    );

    let err = usage::ingest(
        &mut db.conn(),
        start_time(),
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch(vec![report("", user.user.id, None, 5)]),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { field, .. } if field == "records[0].request_id"),
        "{err:?}"
    );
    assert_eq!(count(&db), 0);
    assert_eq!(
        crate::common::used_in_period(
            &mut db.conn(),
            user.user.id,
            QuotaPeriod::Monthly.bounds(start_time()).start
        )
        .unwrap(),
        0
    );
});

db_test!(large_batches_are_one_transaction, |db| {
    let user = create_user(&db, "big@example.com", 1_000_000_000, false);
    let records: Vec<_> = (0..2500)
        .map(|i| report(&format!("bulk-{i:05}"), user.user.id, None, 3))
        .collect();
    let started = std::time::Instant::now();
    let outcome = usage::ingest(
        &mut db.conn(),
        start_time(),
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch(records.clone()),
    )
    .unwrap();
    let elapsed = started.elapsed();
    eprintln!("{}: 2500 records ingested in {elapsed:?}", db.backend);
    assert_eq!(
        outcome,
        IngestOutcome {
            applied: 2500,
            duplicates: 0
        }
    );
    let again = usage::ingest(
        &mut db.conn(),
        start_time(),
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch(records),
    )
    .unwrap();
    assert_eq!(
        again,
        IngestOutcome {
            applied: 0,
            duplicates: 2500
        }
    );
    assert_eq!(count(&db), 2500);
    assert_total_matches_records(&db, user.user.id);
    assert_eq!(
        crate::common::used_in_period(
            &mut db.conn(),
            user.user.id,
            QuotaPeriod::Monthly.bounds(start_time()).start
        )
        .unwrap(),
        7500
    );
});

db_test!(each_record_is_priced_at_ingestion, |db| {
    let user = create_user(&db, "cost@example.com", 1_000_000, false);
    let mut mini = report("c1", user.user.id, None, 1500);
    mini.model = "gpt-4o-mini-2024-07-18".into();
    (mini.input_tokens, mini.output_tokens, mini.cached_tokens) = (1000, 500, 0);
    let mut cached = report("c2", user.user.id, None, 1100);
    cached.model = "claude-sonnet-4-20250514".into();
    (
        cached.input_tokens,
        cached.output_tokens,
        cached.cached_tokens,
    ) = (1000, 100, 800);
    let mut unknown = report("c3", user.user.id, None, 30);
    unknown.model = "my-private-finetune".into();
    usage::ingest(
        &mut db.conn(),
        start_time(),
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch(vec![mini, cached, unknown]),
    )
    .unwrap();
    let mut stored: Vec<(String, i64, bool)> =
        usage::records_for_user(&mut db.conn(), user.user.id)
            .unwrap()
            .into_iter()
            .map(|r| (r.request_id, r.cost_nano_usd, r.unpriced))
            .collect();
    stored.sort();
    assert_eq!(
        stored,
        [
            // 1000 × $0.15/M + 500 × $0.60/M = $0.00045
            ("c1".to_owned(), 450_000, false),
            // 200 × $3/M + 800 cached × $0.30/M + 100 × $15/M = $0.00234
            ("c2".to_owned(), 2_340_000, false),
            // No price: flagged, never silently free.
            ("c3".to_owned(), 0, true),
        ]
    );
});

db_test!(merged_batches_are_answered_one_by_one, |db| {
    use alfred_control_plane::usage::{prepare, write_batches};
    let a = create_user(&db, "a@example.com", 1_000_000, false);
    let b = create_user(&db, "b@example.com", 1_000_000, false);
    let now = start_time();
    let prep = |records| {
        prepare(
            now,
            QuotaPeriod::Monthly,
            &PriceCatalog::builtin(),
            batch(records),
        )
        .unwrap()
    };
    let batches = vec![
        prep(vec![
            report("m1", a.user.id, None, 10),
            report("m2", a.user.id, None, 20),
        ]),
        // m2 again (a retry racing the original), and a new one for b.
        prep(vec![
            report("m2", a.user.id, None, 20),
            report("m3", b.user.id, None, 5),
        ]),
        // An unknown user refuses this batch only.
        prep(vec![
            report("m4", b.user.id, None, 7),
            report("m5", 424_242, None, 7),
        ]),
        prep(vec![]),
    ];
    let outcomes = write_batches(&mut db.conn(), &batches);
    assert_eq!(outcomes.len(), 4);
    assert_eq!(
        outcomes[0].as_ref().unwrap(),
        &IngestOutcome {
            applied: 2,
            duplicates: 0
        }
    );
    assert_eq!(
        outcomes[1].as_ref().unwrap(),
        &IngestOutcome {
            applied: 1,
            duplicates: 1
        }
    );
    assert!(
        matches!(&outcomes[2], Err(Error::Invalid { field, .. }) if field == "records[1].user_id"),
        "{:?}",
        outcomes[2]
    );
    assert_eq!(
        outcomes[3].as_ref().unwrap(),
        &IngestOutcome {
            applied: 0,
            duplicates: 0
        }
    );
    assert_eq!(count(&db), 3);
    let period_start = QuotaPeriod::Monthly.bounds(now).start;
    assert_eq!(
        crate::common::used_in_period(&mut db.conn(), a.user.id, period_start).unwrap(),
        30
    );
    assert_eq!(
        crate::common::used_in_period(&mut db.conn(), b.user.id, period_start).unwrap(),
        5
    );
    assert_total_matches_records(&db, a.user.id);
    assert_total_matches_records(&db, b.user.id);
});

db_test!(
    the_ingest_queue_applies_every_record_once_under_concurrency,
    |db| {
        use std::sync::Arc;

        use alfred_control_plane::usage::{prepare, IngestQueue};
        const THREADS: usize = 8;
        const BATCHES: usize = 10;
        let users: Vec<i64> = (0..4)
            .map(|i| {
                create_user(&db, &format!("q{i}@example.com"), 1_000_000_000, false)
                    .user
                    .id
            })
            .collect();
        let queue = Arc::new(IngestQueue::new(2));
        let pool = db.pool();
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (queue, pool, users) = (Arc::clone(&queue), pool.clone(), users.clone());
                std::thread::spawn(move || {
                    let mut applied = 0;
                    for b in 0..BATCHES {
                        // Every other thread resends the previous thread's batch ids too.
                        let records = (0..50)
                            .map(|i| {
                                let owner = if i % 2 == 0 { t } else { t.saturating_sub(1) };
                                report(&format!("q-{owner}-{b}-{i}"), users[i % 4], None, 3)
                            })
                            .collect();
                        let prepared = prepare(
                            start_time(),
                            QuotaPeriod::Monthly,
                            &PriceCatalog::builtin(),
                            batch(records),
                        )
                        .unwrap();
                        let outcome = queue.submit(&pool, prepared).unwrap();
                        assert_eq!(outcome.applied + outcome.duplicates, 50);
                        applied += outcome.applied;
                    }
                    applied
                })
            })
            .collect();
        let applied: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        // Distinct ids: thread t sends q-t-* (even i) and q-(t-1)-* (odd i); thread 0
        // sends q-0-* for both, so the union is THREADS × BATCHES × 50 ids... minus the
        // odd ids of the last thread's own series, which nobody sends.
        let distinct = count(&db) as usize;
        assert_eq!(applied, distinct);
        assert_eq!(distinct, THREADS * BATCHES * 50 - (BATCHES * 25));
        for user in users {
            assert_total_matches_records(&db, user);
        }
    }
);

db_test!(every_column_is_stored_exactly_as_reported, |db| {
    // A round's rows are bound in bulk (PostgreSQL: one array per column): text that
    // needs escaping, non-ASCII, NULLs, extreme counts and sub-second times must come
    // back unchanged, and an unknown lease is charged like no lease.
    let user = create_user(&db, "rows@example.com", 10_000_000_000, false);
    let now = start_time() + chrono::Duration::microseconds(123_457);
    let occurred = chrono::DateTime::from_timestamp_millis(1_764_466_000_123)
        .unwrap()
        .naive_utc();
    let odd = usage::UsageReport {
        request_id: "req-\"quoted\"\\back\nslash\u{1}-é🦀".into(),
        lease_id: Some("no-such-lease-ü".into()),
        user_id: user.user.id,
        provider: "anthropic".into(),
        model: "claude-3-5-sonnet@20240620".into(),
        input_tokens: 1_000_000,
        output_tokens: 7,
        total_tokens: 1_000_007,
        cached_tokens: 999_999,
        reasoning_tokens: 3,
        status: 503,
        estimated: true,
        priority: Priority::Critical,
        project_id: Some("proj \"x\" \t ✓".into()),
        privacy: usage::Privacy::Strict,
        occurred_at: Some(occurred),
    };
    let plain = crate::leases::report("req-plain", user.user.id, None, 10);
    let outcome = usage::ingest(
        &mut db.conn(),
        now,
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch(vec![odd.clone(), plain.clone()]),
    )
    .unwrap();
    assert_eq!(
        outcome,
        IngestOutcome {
            applied: 2,
            duplicates: 0
        }
    );
    let mut stored = usage::records_for_user(&mut db.conn(), user.user.id).unwrap();
    stored.reverse();
    assert_eq!(stored.len(), 2);
    let period_start = QuotaPeriod::Monthly.bounds(now).start;
    let cost = |r: &usage::UsageReport| {
        PriceCatalog::cost_at(
            PriceCatalog::builtin().price(&r.model),
            alfred_control_plane::pricing::TokenCounts {
                input: r.input_tokens,
                output: r.output_tokens,
                cached: r.cached_tokens,
            },
        )
    };
    for (s, r) in stored.iter().zip([&odd, &plain]) {
        assert_eq!(s.request_id, r.request_id);
        assert_eq!(s.user_id, r.user_id);
        assert_eq!(s.lease_id, r.lease_id);
        assert_eq!(s.proxy_id, "envoy-a");
        assert_eq!(s.provider, r.provider);
        assert_eq!(s.model, r.model);
        assert_eq!(
            (
                s.input_tokens,
                s.output_tokens,
                s.total_tokens,
                s.cached_tokens,
                s.reasoning_tokens
            ),
            (
                r.input_tokens,
                r.output_tokens,
                r.total_tokens,
                r.cached_tokens,
                r.reasoning_tokens
            )
        );
        assert_eq!(s.status, r.status);
        assert_eq!(s.estimated, r.estimated);
        assert_eq!(s.priority, r.priority.as_str());
        assert_eq!(s.project_id, r.project_id);
        assert_eq!(s.privacy, r.privacy.as_str());
        assert_eq!(s.occurred_at, r.occurred_at.unwrap_or(now));
        assert_eq!(s.created_at, now);
        assert_eq!(s.period_start, period_start);
        let c = cost(r);
        assert_eq!((s.cost_nano_usd, s.unpriced), (c.nano_usd, c.unpriced));
    }
    assert!(stored[0].cost_nano_usd > 0);
    // Charged in full (an unknown lease is charged like no lease).
    assert_total_matches_records(&db, user.user.id);
    // The same batch again: nothing new, the odd request id is recognised.
    let again = usage::ingest(
        &mut db.conn(),
        now,
        QuotaPeriod::Monthly,
        &PriceCatalog::builtin(),
        batch(vec![odd, plain]),
    )
    .unwrap();
    assert_eq!(
        again,
        IngestOutcome {
            applied: 0,
            duplicates: 2
        }
    );
    assert_total_matches_records(&db, user.user.id);
});
