//! `alfred seed-demo`: fills a database with a demo organisation for trying the
//! dashboard — an admin, 30 people, five teams with pools, and 30 days of usage ending
//! now, plus transfers, quota requests, a vacation and a critical overdraft.
//!
//! Nothing is written behind the domain's back: [`plan`] builds a deterministic
//! timeline from the seed, and [`seed_demo`] plays it through the same calls the API
//! and the filter use (`users::create_user`, `leases::grant`, `usage::ingest`,
//! `maintenance::run`, `transfers::send`, `approvals`, `users::update_user`), with the
//! clock set to each event's instant. The ledger, periods, pools and analytics are
//! therefore exactly what real traffic would have left, and `ledger::audit` is clean.

mod data;
mod plan;
mod rng;
mod summary;

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use diesel::prelude::*;

pub use plan::DAYS;
pub use summary::{SeedSummary, SummaryJson};

use crate::db::schema::{teams as team_rows, users as user_rows};
use crate::db::{write_transaction, DbConnection};
use crate::error::Error;
use crate::leases::{self, LeaseDecision, LeasePolicy, LeaseRequest};
use crate::ledger::{self, Account};
use crate::pricing::{PriceCatalog, TokenCounts};
use crate::quota::{self, Priority, QuotaRules};
use crate::transfers::{self, TransferRequest};
use crate::usage::{self, Privacy, UsageBatch, UsageReport};
use crate::users::{self, keys, CreateUser, UpdateUser, User, UserStatus};
use crate::{approvals, maintenance, teams};
use plan::{Plan, Step};

/// The seed used when `--seed` is not given, so screenshots are reproducible.
pub const DEFAULT_SEED: u64 = 42;

/// Tokens of critical overdraft the incident draws (less if the limit is lower).
const INCIDENT_OVERDRAFT: i64 = 3_000;

/// What the command was asked.
#[derive(Debug, Clone, Copy)]
pub struct SeedOptions {
    /// Fixes every name, number and instant of the demo.
    pub seed: u64,
    /// Seed even though the database already has users.
    pub force: bool,
}

/// Why seeding refused or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The database already has users and `--force` was not given.
    #[error(
        "the database already has {users} user(s); seed-demo fills an empty database. \
         Point DATABASE_URL at a new one, or pass --force to add the demo organisation \
         beside the existing users (nothing existing is changed)"
    )]
    NotEmpty {
        /// How many.
        users: i64,
    },
    /// A demo email or team name is already in use (the demo was seeded before).
    #[error(
        "{0} already exists in this database (was the demo seeded before?); \
         use a new database or another --seed"
    )]
    Taken(String),
    /// A domain call failed; what was written before it stays.
    #[error("seeding stopped at {step}: {source}; the database holds part of the demo")]
    Failed {
        /// What was being done.
        step: String,
        /// The domain's error.
        source: Error,
    },
    /// The database failed before anything was written.
    #[error(transparent)]
    Domain(#[from] Error),
}

/// The demo's users as created.
struct Org {
    admin: User,
    admin_key: String,
    /// In the plan's order.
    people: Vec<User>,
    /// SHA-256 of each person's key, as the filter presents it.
    key_hashes: Vec<String>,
}

/// A session's lease once granted.
#[derive(Debug, Clone)]
struct Granted {
    lease_id: String,
    tokens: i64,
    /// The incident's records are cut to use exactly this many tokens.
    target: Option<i64>,
}

/// Seeds the demo organisation at `now` (usage covers the 30 days ending then).
pub fn seed_demo(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    policy: LeasePolicy,
    prices: &PriceCatalog,
    options: SeedOptions,
) -> Result<SeedSummary, SeedError> {
    let plan = plan::build(options.seed, now, policy.ttl);
    check_free(conn, &plan, options.force)?;
    let org = create_org(conn, &plan).map_err(|source| SeedError::Failed {
        step: "creating users and teams".to_owned(),
        source,
    })?;
    let mut player = Player {
        plan: &plan,
        org: &org,
        policy,
        prices,
        granted: vec![None; plan.sessions.len()],
        request_ids: Vec::new(),
        tally: Tally::default(),
    };
    for event in &plan.events {
        player
            .play(conn, event.at, &event.step)
            .map_err(|source| SeedError::Failed {
                step: format!("{:?} at {}", event.step, event.at),
                source,
            })?;
    }
    // Release what the last leases did not use, as the maintenance loop would.
    let rules = policy.rules;
    maintenance::run(conn, now, &rules, false).map_err(|source| SeedError::Failed {
        step: "the final maintenance round".to_owned(),
        source,
    })?;
    let tally = player.tally;
    let person_email = |p: usize| {
        org.people
            .get(p)
            .map(|u| u.email.clone())
            .unwrap_or_default()
    };
    let overdraft_tokens = match org.people.get(plan.overdraft_user) {
        Some(user) => ledger::balance(
            conn,
            Account::Overdraft(user.id),
            rules.period.bounds(now).start,
        )?
        .saturating_neg()
        .max(0),
        None => 0,
    };
    Ok(SeedSummary {
        seed: plan.seed,
        admin_id: org.admin.id,
        admin_email: org.admin.email.clone(),
        users: org.people.len() + 1,
        team_admins: plan
            .teams
            .iter()
            .flat_map(|t| t.members.iter().filter(|m| m.1).map(|m| m.0))
            .collect::<BTreeSet<_>>()
            .len(),
        teams: plan.teams.len(),
        first_day: plan.first_day,
        last_day: plan.last_day,
        leases: tally.leases,
        records: tally.records,
        total_tokens: tally.total_tokens,
        cached_tokens: tally.cached_tokens,
        cost_nano_usd: tally.cost_nano_usd,
        unpriced_records: tally.unpriced_records,
        failed_records: tally.failed_records,
        estimated_records: tally.estimated_records,
        refused_requests: tally.refused_requests,
        transfers_completed: tally.transfers_completed,
        transfers_pending: tally.transfers_pending,
        requests_pending: tally.requests_created - tally.requests_approved - tally.requests_denied,
        requests_approved: tally.requests_approved,
        requests_denied: tally.requests_denied,
        on_vacation: person_email(plan.vacationer),
        overdraft_user: person_email(plan.overdraft_user),
        overdraft_tokens,
        api_key: org.admin_key,
    })
}

/// Refuses a database with users (unless forced) and any demo email or team name
/// already taken, before anything is written.
fn check_free(conn: &mut DbConnection, plan: &Plan, force: bool) -> Result<(), SeedError> {
    let existing: i64 = user_rows::table
        .filter(user_rows::deleted_at.is_null())
        .count()
        .get_result(conn)
        .map_err(Error::from)?;
    if existing > 0 && !force {
        return Err(SeedError::NotEmpty { users: existing });
    }
    let mut emails: Vec<String> = plan.people.iter().map(|p| p.email.clone()).collect();
    emails.push(Plan::admin_email());
    // Deleted users keep their email, so they count too.
    let taken: Option<String> = user_rows::table
        .filter(user_rows::email.eq_any(&emails))
        .order(user_rows::id.asc())
        .select(user_rows::email)
        .first(conn)
        .optional()
        .map_err(Error::from)?;
    if let Some(email) = taken {
        return Err(SeedError::Taken(format!("the user {email}")));
    }
    let names: Vec<&str> = plan.teams.iter().map(|t| t.name).collect();
    let taken: Option<String> = team_rows::table
        .filter(team_rows::name.eq_any(&names))
        .filter(team_rows::deleted_at.is_null())
        .order(team_rows::id.asc())
        .select(team_rows::name)
        .first(conn)
        .optional()
        .map_err(Error::from)?;
    if let Some(name) = taken {
        return Err(SeedError::Taken(format!("the team {name:?}")));
    }
    Ok(())
}

/// The admin, the people (created by the admin) and the teams with their members,
/// all at the plan's creation instant.
fn create_org(conn: &mut DbConnection, plan: &Plan) -> Result<Org, Error> {
    let at = plan.created_at;
    let admin = users::create_user(
        conn,
        at,
        CreateUser {
            email: Plan::admin_email(),
            name: data::ADMIN_NAME.to_owned(),
            personal_quota: 1_000_000,
            is_admin: true,
        },
        None,
    )?;
    let mut people = Vec::with_capacity(plan.people.len());
    let mut key_hashes = Vec::with_capacity(plan.people.len());
    for person in &plan.people {
        let created = users::create_user(
            conn,
            at,
            CreateUser {
                email: person.email.clone(),
                name: person.name.clone(),
                personal_quota: person.quota,
                is_admin: false,
            },
            Some(admin.user.id),
        )?;
        key_hashes.push(keys::hash_key(&created.api_key));
        people.push(created.user);
    }
    for team in &plan.teams {
        let created = teams::create_team(
            conn,
            at,
            teams::CreateTeam {
                name: team.name.to_owned(),
                description: team.description.to_owned(),
                common_pool: team.common_pool,
            },
            admin.user.id,
        )?;
        for &(person, is_admin) in &team.members {
            let Some(user) = people.get(person) else {
                continue;
            };
            teams::add_member(conn, at, created.id, user.id, is_admin, admin.user.id)?;
        }
    }
    Ok(Org {
        admin: admin.user,
        admin_key: admin.api_key,
        people,
        key_hashes,
    })
}

/// Counts for the summary.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    leases: usize,
    records: usize,
    total_tokens: i64,
    cached_tokens: i64,
    cost_nano_usd: i64,
    unpriced_records: usize,
    failed_records: usize,
    estimated_records: usize,
    refused_requests: usize,
    transfers_completed: usize,
    transfers_pending: usize,
    requests_created: usize,
    requests_approved: usize,
    requests_denied: usize,
}

/// Plays the plan's events, in order, through the domain.
struct Player<'a> {
    plan: &'a Plan,
    org: &'a Org,
    policy: LeasePolicy,
    prices: &'a PriceCatalog,
    granted: Vec<Option<Granted>>,
    /// Ids of the quota requests created, by plan index.
    request_ids: Vec<i64>,
    tally: Tally,
}

impl Player<'_> {
    fn rules(&self) -> QuotaRules {
        self.policy.rules
    }

    fn user(&self, person: usize) -> Result<&User, Error> {
        self.org
            .people
            .get(person)
            .ok_or(Error::NotFound("demo person"))
    }

    fn play(
        &mut self,
        conn: &mut DbConnection,
        at: NaiveDateTime,
        step: &Step,
    ) -> Result<(), Error> {
        // What the maintenance loop would have done by now: release expired leases,
        // expire pending approvals.
        maintenance::run(conn, at, &self.rules(), false)?;
        match *step {
            Step::Grant(session) => self.grant(conn, at, session),
            Step::Report(session) => self.report(conn, at, session),
            Step::Transfer {
                from,
                to,
                amount,
                reason,
            } => {
                let cap = self.rules().transfer_approval_threshold.unwrap_or(i64::MAX);
                let transferable = self.transferable(conn, at, from)?;
                // A quarter of what they could give, so the sender keeps working.
                let amount = amount.min(transferable / 4).min(cap) / 100 * 100;
                if amount <= 0 {
                    return Ok(());
                }
                self.send(conn, at, from, to, amount, reason)?;
                self.tally.transfers_completed += 1;
                Ok(())
            }
            Step::PendingTransfer {
                from,
                to,
                above,
                reason,
            } => {
                let Some(threshold) = self.rules().transfer_approval_threshold else {
                    return Ok(());
                };
                let amount = threshold.saturating_add(above);
                if self.transferable(conn, at, from)? < amount {
                    return Ok(());
                }
                self.send(conn, at, from, to, amount, reason)?;
                self.tally.transfers_pending += 1;
                Ok(())
            }
            Step::Request {
                index,
                person,
                amount,
                reason,
            } => {
                let user = users::get_user(conn, self.user(person)?.id)?;
                let request = approvals::create(conn, at, &user, amount, reason, &self.rules())?;
                if self.request_ids.len() <= index {
                    self.request_ids.resize(index + 1, 0);
                }
                self.request_ids[index] = request.id;
                self.tally.requests_created += 1;
                Ok(())
            }
            Step::Decide {
                index,
                approve,
                by,
                note,
            } => {
                let id = self
                    .request_ids
                    .get(index)
                    .copied()
                    .ok_or(Error::NotFound("quota request"))?;
                let actor = match by {
                    Some(person) => self.user(person)?.clone(),
                    None => self.org.admin.clone(),
                };
                approvals::decide(
                    conn,
                    at,
                    id,
                    &actor,
                    approve,
                    note.map(str::to_owned),
                    &self.rules(),
                )?;
                if approve {
                    self.tally.requests_approved += 1;
                } else {
                    self.tally.requests_denied += 1;
                }
                Ok(())
            }
            Step::Vacation(person) => {
                let id = self.user(person)?.id;
                users::update_user(
                    conn,
                    at,
                    id,
                    UpdateUser {
                        status: Some(UserStatus::OnVacation),
                        ..UpdateUser::default()
                    },
                    &self.rules(),
                    Some(self.org.admin.id),
                )?;
                Ok(())
            }
        }
    }

    fn transferable(
        &self,
        conn: &mut DbConnection,
        at: NaiveDateTime,
        person: usize,
    ) -> Result<i64, Error> {
        let user = users::get_user(conn, self.user(person)?.id)?;
        let rules = self.rules();
        // The view issues the period's allocation when needed, so it writes.
        let view = write_transaction(conn, |c| quota::view(c, at, &user, &rules))?;
        Ok(view.transferable)
    }

    fn send(
        &self,
        conn: &mut DbConnection,
        at: NaiveDateTime,
        from: usize,
        to: usize,
        amount: i64,
        reason: &str,
    ) -> Result<(), Error> {
        let sender = users::get_user(conn, self.user(from)?.id)?;
        let recipient_email = self.user(to)?.email.clone();
        transfers::send(
            conn,
            at,
            &sender,
            TransferRequest {
                recipient_email,
                amount,
                reason: reason.to_owned(),
            },
            &self.rules(),
        )?;
        Ok(())
    }

    /// The proxy asks for a lease covering the session's planned tokens (a little
    /// more, as the filter's estimates do); the incident asks for everything left
    /// plus some critical overdraft.
    fn grant(
        &mut self,
        conn: &mut DbConnection,
        at: NaiveDateTime,
        index: usize,
    ) -> Result<(), Error> {
        let session = self
            .plan
            .sessions
            .get(index)
            .ok_or(Error::NotFound("demo session"))?;
        let key_hash = self
            .org
            .key_hashes
            .get(session.person)
            .ok_or(Error::NotFound("demo person"))?
            .clone();
        let (requested, target) = if session.critical {
            let user = users::get_user(conn, self.user(session.person)?.id)?;
            let rules = self.rules();
            let view = write_transaction(conn, |c| quota::view(c, at, &user, &rules))?;
            let target = view.available_quota
                + view.team_pool_available
                + INCIDENT_OVERDRAFT.min(view.overdraft_available);
            (target, Some(target))
        } else {
            let planned: i64 = session
                .requests
                .iter()
                .map(plan::PlannedRequest::total)
                .sum();
            (planned + planned / 5 + 500, None)
        };
        if requested <= 0 {
            return Ok(());
        }
        let decision = leases::grant(
            conn,
            at,
            self.policy,
            LeaseRequest {
                key_hash,
                proxy_id: session.proxy_id.to_owned(),
                requested_tokens: requested,
                priority: if session.critical {
                    Priority::Critical
                } else {
                    Priority::Normal
                },
            },
        )?;
        match decision {
            LeaseDecision::Granted {
                lease_id,
                granted_tokens,
                ..
            } => {
                self.tally.leases += 1;
                self.granted[index] = Some(Granted {
                    lease_id,
                    tokens: granted_tokens,
                    target,
                });
            }
            LeaseDecision::Exhausted { .. } => {}
            LeaseDecision::InvalidKey | LeaseDecision::Suspended { .. } => {
                return Err(Error::Invariant(format!(
                    "the demo user of session {index} cannot get a lease: {decision:?}"
                )));
            }
        }
        Ok(())
    }

    /// The proxy reports what fitted in the lease; requests past it were refused by
    /// the filter (429) and leave no record.
    fn report(
        &mut self,
        conn: &mut DbConnection,
        at: NaiveDateTime,
        index: usize,
    ) -> Result<(), Error> {
        let session = self
            .plan
            .sessions
            .get(index)
            .ok_or(Error::NotFound("demo session"))?;
        let Some(granted) = self.granted.get(index).cloned().flatten() else {
            self.tally.refused_requests += session.requests.len();
            return Ok(());
        };
        let user_id = self.user(session.person)?.id;
        let budget = granted
            .target
            .map_or(granted.tokens, |t| t.min(granted.tokens));
        let mut planned: Vec<plan::PlannedRequest> = Vec::new();
        let mut spent = 0_i64;
        if granted.target.is_some() {
            // The incident: its requests, repeated, until exactly the budget is used.
            for request in session.requests.iter().cycle().take(MAX_INCIDENT_RECORDS) {
                if spent >= budget || request.total() <= 0 {
                    if spent >= budget {
                        break;
                    }
                    continue;
                }
                let mut request = request.clone();
                let left = budget - spent;
                if request.total() > left {
                    request.input = request.input.min(left);
                    request.output = left - request.input;
                    request.cached = request.cached.min(request.input);
                    request.reasoning = request.reasoning.min(request.output);
                }
                spent += request.total();
                planned.push(request);
            }
        } else {
            for request in &session.requests {
                if spent + request.total() > budget {
                    break;
                }
                spent += request.total();
                planned.push(request.clone());
            }
            self.tally.refused_requests += session.requests.len() - planned.len();
        }
        if planned.is_empty() {
            return Ok(());
        }
        let grant_at = at - session.report_after;
        let n = i32::try_from(planned.len()).unwrap_or(i32::MAX);
        let mut records = Vec::with_capacity(planned.len());
        for (i, request) in planned.iter().enumerate() {
            let model = request.model();
            let step = session.report_after / (n + 1);
            let occurred_at = grant_at + step * (i32::try_from(i).unwrap_or(0) + 1);
            let cost = self.prices.cost(
                model.name,
                TokenCounts {
                    input: request.input,
                    output: request.output,
                    cached: request.cached,
                },
            );
            let tally = &mut self.tally;
            tally.records += 1;
            tally.total_tokens += request.total();
            tally.cached_tokens += request.cached;
            tally.cost_nano_usd += cost.nano_usd;
            tally.unpriced_records += usize::from(cost.unpriced);
            tally.failed_records += usize::from(request.status >= 400);
            tally.estimated_records += usize::from(request.estimated);
            records.push(UsageReport {
                request_id: format!("demo-{}-s{index:05}-r{i:03}", self.plan.seed),
                lease_id: Some(granted.lease_id.clone()),
                user_id,
                provider: model.provider.to_owned(),
                model: model.name.to_owned(),
                input_tokens: request.input,
                output_tokens: request.output,
                total_tokens: request.total(),
                cached_tokens: request.cached,
                reasoning_tokens: request.reasoning,
                status: request.status,
                estimated: request.estimated,
                priority: request.priority,
                project_id: request.project.map(str::to_owned),
                privacy: if request.strict {
                    Privacy::Strict
                } else {
                    Privacy::Standard
                },
                occurred_at: Some(occurred_at),
            });
        }
        let outcome = usage::ingest(
            conn,
            at,
            self.rules().period,
            self.prices,
            UsageBatch {
                proxy_id: session.proxy_id.to_owned(),
                records,
            },
        )?;
        if outcome.duplicates > 0 {
            return Err(Error::Invariant(format!(
                "{} demo request ids were already in the database",
                outcome.duplicates
            )));
        }
        Ok(())
    }
}

/// Most records the incident reports (a bound for very large quotas).
const MAX_INCIDENT_RECORDS: usize = 5_000;
