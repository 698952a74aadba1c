//! Many simultaneous transfers, lease grants, usage settlements, releases and
//! vacations across users and teams, on both backends; then the ledger must balance:
//! every movement sums to zero, cached balances equal their entries, no spendable
//! balance is below zero, overdraft stays within its limit, nothing is left held once
//! every lease is released, and used credit equals the usage records.
//!
//! Every operation must either succeed or be refused for a business reason; an
//! invariant refusal or a database error (e.g. a deadlock) fails the test. Without the
//! user and team locks (`db::lock_user` / `lock_team`) concurrent decisions read the
//! same balance and the ledger's floor check refuses the second write, which this test
//! reports; without both, balances go negative and the audit reports it.

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use alfred_control_plane::db::schema::{ledger_balances, ledger_entries, usage_records};
use alfred_control_plane::error::Error;
use alfred_control_plane::leases::{self, LeaseDecision, LeasePolicy, LeaseRequest};
use alfred_control_plane::ledger;
use alfred_control_plane::maintenance;
use alfred_control_plane::pricing::PriceCatalog;
use alfred_control_plane::quota::{Priority, QuotaPeriod, QuotaRules};
use alfred_control_plane::teams::{self, CreateTeam};
use alfred_control_plane::transfers::{self, TransferRequest};
use alfred_control_plane::usage::{self, UsageBatch};
use alfred_control_plane::users::{self, keys, UserStatus};
use chrono::TimeDelta;
use diesel::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{at, create_user, set_status};
use crate::db_test;
use crate::leases::report;

const USERS: usize = 8;
const THREADS: usize = 6;
const ROUNDS: usize = 40;
const RULES: QuotaRules = QuotaRules {
    critical_overdraft_limit: 300,
    ..QuotaRules::DEFAULT
};

db_test!(concurrent_credit_movements_keep_the_ledger_balanced, |db| {
    let now = at("2026-11-10 12:00:00");
    let admin = create_user(&db, "root@example.com", 0, true).user.id;
    let people: Vec<_> = (0..USERS)
        .map(|i| create_user(&db, &format!("u{i}@example.com"), 1000, false))
        .collect();
    for (t, chunk) in people.chunks(USERS / 2).enumerate() {
        let team = teams::create_team(
            &mut db.conn(),
            now,
            CreateTeam {
                name: format!("team-{t}"),
                description: String::new(),
                common_pool: 2000,
            },
            admin,
        )
        .unwrap();
        for u in chunk {
            teams::add_member(&mut db.conn(), now, team.id, u.user.id, false, admin).unwrap();
        }
    }
    let people = Arc::new(people);
    let live: Arc<Mutex<Vec<(String, i64, i64)>>> = Arc::new(Mutex::new(Vec::new()));
    let failures: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let barrier = Arc::new(Barrier::new(THREADS));
    let pool = db.pool();
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (people, live, failures, barrier, pool) = (
                Arc::clone(&people),
                Arc::clone(&live),
                Arc::clone(&failures),
                Arc::clone(&barrier),
                pool.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(7 + thread as u64);
                barrier.wait();
                for round in 0..ROUNDS {
                    let mut conn = pool.get().unwrap();
                    let who = &people[rng.gen_range(0..USERS)];
                    let op = rng.gen_range(0..100);
                    let outcome: Result<(), Error> = if op < 35 {
                        let to = &people[rng.gen_range(0..USERS)];
                        let sender = users::get_user(&mut conn, who.user.id).unwrap();
                        match transfers::send(
                            &mut conn,
                            now,
                            &sender,
                            TransferRequest {
                                recipient_email: to.user.email.clone(),
                                amount: rng.gen_range(1..400),
                                reason: format!("t{thread}-{round}"),
                            },
                            &RULES,
                        ) {
                            Ok(_)
                            | Err(Error::Rejected {
                                code: "insufficient_quota" | "self_transfer" | "recipient_inactive",
                                ..
                            }) => Ok(()),
                            Err(e) => Err(e),
                        }
                    } else if op < 70 {
                        let priority = if rng.gen_bool(0.2) {
                            Priority::Critical
                        } else {
                            Priority::Normal
                        };
                        match leases::grant(
                            &mut conn,
                            now,
                            LeasePolicy {
                                ttl: Duration::from_secs(60),
                                rules: RULES,
                            },
                            LeaseRequest {
                                key_hash: keys::hash_key(&who.api_key),
                                proxy_id: format!("envoy-{}", rng.gen_range(0..2)),
                                requested_tokens: rng.gen_range(1..600),
                                priority,
                            },
                        ) {
                            Ok(LeaseDecision::Granted {
                                lease_id,
                                granted_tokens,
                                ..
                            }) => {
                                live.lock()
                                    .unwrap()
                                    .push((lease_id, who.user.id, granted_tokens));
                                Ok(())
                            }
                            Ok(_) => Ok(()),
                            Err(e) => Err(e),
                        }
                    } else if op < 92 {
                        let pick = {
                            let leases = live.lock().unwrap();
                            (!leases.is_empty())
                                .then(|| leases[rng.gen_range(0..leases.len())].clone())
                        };
                        match pick {
                            Some((lease, user_id, granted)) => usage::ingest(
                                &mut conn,
                                now,
                                QuotaPeriod::Monthly,
                                &PriceCatalog::builtin(),
                                UsageBatch {
                                    proxy_id: "envoy-0".into(),
                                    records: vec![report(
                                        &format!("req-{thread}-{round}"),
                                        user_id,
                                        Some(&lease),
                                        rng.gen_range(0..=granted / 2),
                                    )],
                                },
                            )
                            .map(|_| ()),
                            None => Ok(()),
                        }
                    } else if op < 96 {
                        maintenance::run(&mut conn, now + TimeDelta::seconds(61), &RULES, false)
                            .map(|_| ())
                    } else {
                        let status = if rng.gen_bool(0.5) {
                            UserStatus::OnVacation
                        } else {
                            UserStatus::Active
                        };
                        set_status(&mut conn, now, who.user.id, status).map(|_| ())
                    };
                    if let Err(e) = outcome {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("thread {thread} round {round} op {op}: {e}"));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );

    // Every lease released.
    maintenance::run(&mut db.conn(), now + TimeDelta::minutes(5), &RULES, false).unwrap();
    let mut conn = db.conn();
    let report = ledger::audit(&mut conn).unwrap();
    assert!(report.is_clean(), "{report:?}");
    let balances: Vec<(String, i64)> = ledger_balances::table
        .select((ledger_balances::account, ledger_balances::balance))
        .load(&mut conn)
        .unwrap();
    let of = |suffix: &str| -> i64 {
        balances
            .iter()
            .filter(|(a, _)| a.ends_with(suffix))
            .map(|(_, b)| b)
            .sum()
    };
    // Held credit is derived from the entries (not cached): all of it came back.
    let held: i64 = ledger_entries::table
        .filter(ledger_entries::account.like("%:held"))
        .select(ledger_entries::amount)
        .load::<i64>(&mut conn)
        .unwrap()
        .into_iter()
        .sum();
    assert_eq!(held, 0, "credit still held after every lease was released");
    for (account, balance) in &balances {
        if account.ends_with(":overdraft") {
            assert!(
                *balance >= -RULES.critical_overdraft_limit,
                "{account} = {balance}"
            );
        }
    }
    let recorded: i64 = usage_records::table
        .select(usage_records::total_tokens)
        .load::<i64>(&mut conn)
        .unwrap()
        .into_iter()
        .sum();
    assert_eq!(of(":used"), recorded);
    // Everything issued is somewhere: personal, pools, escrow, used, or owed back.
    let issued = -ledger::balance(
        &mut conn,
        ledger::Account::Issued,
        QuotaPeriod::Monthly.bounds(now).start,
    )
    .unwrap();
    assert_eq!(
        issued,
        of(":personal")
            + of(":pool")
            + of("org:escrow")
            + of(":used")
            + of(":overdraft")
            + of(":debt")
    );
});
