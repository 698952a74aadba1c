//! The demo organisation as a plan: people, teams and a time-ordered list of what
//! happens over 30 days. Pure — no database — so the same seed always gives the same
//! plan; [`super::apply`] then plays it through the domain.

use std::time::Duration;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Weekday};

use super::data::{self, Model, MODELS};
use super::rng::Rng;
use crate::quota::Priority;

/// Days of usage, ending with the day of `now`.
pub const DAYS: i64 = 30;
/// Rounding of quotas and pools, in tokens.
const QUOTA_STEP: i64 = 50_000;
/// Most planned requests in one session (one lease, one usage batch).
const MAX_SESSION_REQUESTS: usize = 40;

/// Someone in the demo organisation.
#[derive(Debug, Clone)]
pub struct Person {
    /// Display name.
    pub name: String,
    /// Email at [`data::DOMAIN`].
    pub email: String,
    /// Personal quota per period.
    pub quota: i64,
    /// Requests on a typical weekday.
    pub intensity: f64,
    /// UTC hour their working day starts.
    pub start_hour: u32,
    /// Their main team (index into [`Plan::teams`]), if any.
    pub team: Option<usize>,
    /// Weight of each of [`MODELS`] in their requests.
    pub model_weights: Vec<u32>,
    /// Their projects.
    pub projects: &'static [&'static str],
    /// Percent of their requests in strict privacy mode.
    pub strict_percent: u32,
}

/// A team to create.
#[derive(Debug, Clone)]
pub struct TeamPlan {
    /// Name.
    pub name: &'static str,
    /// Description.
    pub description: &'static str,
    /// Pool per period.
    pub common_pool: i64,
    /// Members (index into [`Plan::people`]) and whether each is a team admin.
    pub members: Vec<(usize, bool)>,
}

/// One request as the filter would report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRequest {
    /// Index into [`MODELS`].
    pub model: usize,
    /// Prompt tokens.
    pub input: i64,
    /// Completion tokens.
    pub output: i64,
    /// Cached prompt tokens (part of `input`).
    pub cached: i64,
    /// Reasoning tokens (part of `output`).
    pub reasoning: i64,
    /// HTTP status the client saw.
    pub status: i32,
    /// A stream cut short: the filter estimated the completion.
    pub estimated: bool,
    /// `X-Priority`.
    pub priority: Priority,
    /// `X-Project-ID`.
    pub project: Option<&'static str>,
    /// `X-Privacy-Mode: strict`.
    pub strict: bool,
}

impl PlannedRequest {
    /// What the request is charged.
    pub fn total(&self) -> i64 {
        self.input + self.output
    }

    /// The model.
    pub fn model(&self) -> &'static Model {
        &MODELS[self.model.min(MODELS.len() - 1)]
    }
}

/// A burst of one person's requests through one proxy under one lease.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who (index into [`Plan::people`]).
    pub person: usize,
    /// The reporting proxy.
    pub proxy_id: &'static str,
    /// A critical incident: asks for everything left plus some overdraft.
    pub critical: bool,
    /// The requests, in order.
    pub requests: Vec<PlannedRequest>,
    /// When the usage is reported, after the lease grant.
    pub report_after: TimeDelta,
}

/// Something that happens at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A proxy asks for a lease for a session (index into [`Plan::sessions`]).
    Grant(usize),
    /// The proxy reports the session's usage.
    Report(usize),
    /// A transfer under the approval threshold (capped to what the sender can give).
    Transfer {
        /// Sender.
        from: usize,
        /// Recipient.
        to: usize,
        /// Tokens wanted.
        amount: i64,
        /// Why.
        reason: &'static str,
    },
    /// A transfer above `TRANSFER_APPROVAL_THRESHOLD` (when set), left pending.
    PendingTransfer {
        /// Sender.
        from: usize,
        /// Recipient.
        to: usize,
        /// Tokens above the threshold.
        above: i64,
        /// Why.
        reason: &'static str,
    },
    /// A quota request (its index in the order of requests).
    Request {
        /// Index among the plan's requests.
        index: usize,
        /// Who asks.
        person: usize,
        /// Tokens.
        amount: i64,
        /// Why.
        reason: &'static str,
    },
    /// A decision on a quota request.
    Decide {
        /// Index among the plan's requests.
        index: usize,
        /// Approve or deny.
        approve: bool,
        /// The deciding team admin (index into people), or `None` for the admin.
        by: Option<usize>,
        /// The decider's note.
        note: Option<&'static str>,
    },
    /// An admin sets someone on vacation.
    Vacation(usize),
}

/// A step at its instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When.
    pub at: NaiveDateTime,
    /// What.
    pub step: Step,
}

/// The whole demo.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seed it came from.
    pub seed: u64,
    /// When the organisation is created (the day before the first day of usage).
    pub created_at: NaiveDateTime,
    /// First day of usage.
    pub first_day: NaiveDate,
    /// Last day of usage (the day of `now`).
    pub last_day: NaiveDate,
    /// Everyone but the admin.
    pub people: Vec<Person>,
    /// The teams.
    pub teams: Vec<TeamPlan>,
    /// The sessions the events refer to.
    pub sessions: Vec<Session>,
    /// Everything that happens, in time order.
    pub events: Vec<Event>,
    /// Who goes on vacation.
    pub vacationer: usize,
    /// Who draws on the critical overdraft.
    pub overdraft_user: usize,
}

impl Plan {
    /// The admin's email.
    pub fn admin_email() -> String {
        format!("{}@{}", data::ADMIN_LOCAL, data::DOMAIN)
    }
}

/// Persona of a person: how much they use AI.
fn draw_intensity(rng: &mut Rng) -> f64 {
    match rng.weighted(&[30, 50, 20]) {
        0 => 3.0 + 5.0 * rng.unit(),
        1 => 9.0 + 13.0 * rng.unit(),
        _ => 25.0 + 20.0 * rng.unit(),
    }
}

/// When someone's working day starts, in UTC: the company spans Asia-Pacific,
/// Europe and the Americas, so some work is going on at most hours.
fn draw_start_hour(rng: &mut Rng) -> u32 {
    let (first, spread) = [(0, 3), (6, 4), (13, 4)][rng.weighted(&[2, 5, 3])];
    first + rng.below(spread) as u32
}

fn round_up(value: f64, step: i64) -> i64 {
    #[allow(clippy::cast_possible_truncation)] // demo-sized values
    let v = value.max(0.0).ceil() as i64;
    (v + step - 1) / step * step
}

fn model_weights(choices: &[(&str, u32)]) -> Vec<u32> {
    MODELS
        .iter()
        .map(|m| {
            choices
                .iter()
                .find(|(name, _)| *name == m.name)
                .map_or(0, |(_, w)| *w)
        })
        .collect()
}

/// Mean tokens of one request of someone with these model weights.
fn mean_request_tokens(weights: &[u32]) -> f64 {
    let total: u32 = weights.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let sum: f64 = MODELS
        .iter()
        .zip(weights)
        .map(|(m, &w)| f64::from(w) * (m.input + m.output) as f64)
        .sum();
    sum / f64::from(total)
}

/// The demo for `seed`, with usage over the [`DAYS`] days ending at `now`.
pub fn build(seed: u64, now: NaiveDateTime, lease_ttl: Duration) -> Plan {
    let mut root = Rng::new(seed);
    let mut rng_people = root.fork(1);
    let mut rng_usage = root.fork(2);
    let mut rng_events = root.fork(3);

    let last_day = now.date();
    let first_day = last_day - TimeDelta::days(DAYS - 1);
    let created_at = (first_day - TimeDelta::days(1)).and_time(at_hour(9, 0));

    let (people, teams, overdraft_user) = people_and_teams(&mut rng_people);
    let in_team = |p: usize| teams.iter().any(|t| t.members.iter().any(|m| m.0 == p));
    let team_admin = |p: usize| teams.iter().any(|t| t.members.contains(&(p, true)));
    // Ordinary members: not team admins, not the overdraft user.
    let ordinary: Vec<usize> = (0..people.len())
        .filter(|&p| in_team(p) && !team_admin(p) && p != overdraft_user)
        .collect();
    let vacationer = ordinary
        .get(rng_events.below(ordinary.len()))
        .copied()
        .unwrap_or(0);
    let vacation_day = last_day - TimeDelta::days(5);

    // Someone of the first team is on call each week, so weekends see some use.
    let on_call: Vec<usize> = teams
        .first()
        .map(|t| {
            t.members
                .iter()
                .map(|m| m.0)
                .filter(|&p| p != vacationer)
                .collect()
        })
        .unwrap_or_default();
    let report_after = report_delay(lease_ttl);
    let mut sessions = Vec::new();
    let mut events = Vec::new();
    for (p, person) in people.iter().enumerate() {
        let mut rng = rng_usage.fork(p as u64);
        let mut last_active: Option<NaiveDate> = None;
        for d in 0..DAYS {
            let day = first_day + TimeDelta::days(d);
            if p == vacationer && day >= vacation_day {
                break;
            }
            let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
            // Team members never go two working weeks without a request, or the idle
            // check would send them on vacation as soon as `serve` starts.
            let stale = last_active.is_none_or(|last| (day - last).num_days() >= 6);
            let active = if weekend {
                let week = day.iso_week().week() as usize;
                rng.chance(0.12) || on_call.get(week % on_call.len().max(1)) == Some(&p)
            } else {
                rng.chance(0.9) || stale
            };
            if !active {
                continue;
            }
            let day_factor = match day.weekday() {
                Weekday::Mon | Weekday::Thu => 1.0,
                Weekday::Tue | Weekday::Wed => 1.1,
                Weekday::Fri => 0.75,
                Weekday::Sat | Weekday::Sun => 0.3,
            };
            #[allow(clippy::cast_precision_loss)]
            let trend = 0.85 + 0.3 * (d as f64) / ((DAYS - 1) as f64);
            let wanted = person.intensity * day_factor * trend * (0.6 + 0.8 * rng.unit());
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = (wanted.round() as usize).max(1);
            let parts = (1 + n / 12).min(4);
            let mut planned_any = false;
            for part in 0..parts {
                let count = n / parts + usize::from(part < n % parts);
                let start_hour = if weekend {
                    person.start_hour + 1 + rng.below(4) as u32
                } else {
                    person.start_hour
                };
                let span_minutes = if weekend { 120 } else { 540 };
                let slot = span_minutes / parts as i64;
                let minute = slot * part as i64 + rng.between(0, (slot - 10).max(0));
                let at = day.and_time(at_hour(start_hour, 0))
                    + TimeDelta::minutes(minute)
                    + TimeDelta::seconds(rng.between(0, 59));
                if at + report_after + TimeDelta::seconds(1) > now {
                    continue;
                }
                let requests = (0..count.min(MAX_SESSION_REQUESTS))
                    .map(|_| plan_request(&mut rng, person, false))
                    .collect();
                let proxy_id = if rng.chance(0.5) {
                    "envoy-1"
                } else {
                    "envoy-2"
                };
                push_session(
                    &mut sessions,
                    &mut events,
                    at,
                    Session {
                        person: p,
                        proxy_id,
                        critical: false,
                        requests,
                        report_after,
                    },
                );
                planned_any = true;
            }
            if planned_any {
                last_active = Some(day);
            }
        }
    }

    // The incident: the overdraft user's critical requests in the last hours.
    let incident_at = now - TimeDelta::hours(7) - TimeDelta::minutes(13);
    let overdraft_person = &people[overdraft_user];
    let mut rng = rng_usage.fork(10_000);
    let requests = (0..MAX_SESSION_REQUESTS)
        .map(|_| plan_request(&mut rng, overdraft_person, true))
        .collect();
    push_session(
        &mut sessions,
        &mut events,
        incident_at,
        Session {
            person: overdraft_user,
            proxy_id: "envoy-1",
            critical: true,
            requests,
            report_after,
        },
    );

    plan_admin_events(
        &mut rng_events,
        &people,
        &teams,
        &ordinary,
        vacationer,
        vacation_day,
        first_day,
        now,
        &mut events,
    );
    // Stable: events at the same instant keep the order they were planned in.
    events.sort_by_key(|e| e.at);

    Plan {
        seed,
        created_at,
        first_day,
        last_day,
        people,
        teams,
        sessions,
        events,
        vacationer,
        overdraft_user,
    }
}

fn at_hour(hour: u32, minute: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(hour.min(23), minute.min(59), 0).unwrap_or(NaiveTime::MIN)
}

/// When a session's usage is reported: within the lease's lifetime (so the lease
/// still holds the credit), at most 30 s after the grant.
fn report_delay(lease_ttl: Duration) -> TimeDelta {
    let half = TimeDelta::from_std(lease_ttl / 2).unwrap_or(TimeDelta::seconds(30));
    half.clamp(TimeDelta::milliseconds(100), TimeDelta::seconds(30))
}

fn push_session(
    sessions: &mut Vec<Session>,
    events: &mut Vec<Event>,
    at: NaiveDateTime,
    session: Session,
) {
    let index = sessions.len();
    let report_at = at + session.report_after;
    sessions.push(session);
    events.push(Event {
        at,
        step: Step::Grant(index),
    });
    events.push(Event {
        at: report_at,
        step: Step::Report(index),
    });
}

fn people_and_teams(rng: &mut Rng) -> (Vec<Person>, Vec<TeamPlan>, usize) {
    let mut first: Vec<&str> = data::FIRST_NAMES.to_vec();
    let mut last: Vec<&str> = data::LAST_NAMES.to_vec();
    rng.shuffle(&mut first);
    rng.shuffle(&mut last);
    let total: usize = data::TEAMS.iter().map(|t| t.size).sum::<usize>() + data::NO_TEAM_PEOPLE;
    let mut people = Vec::with_capacity(total);
    let mut teams = Vec::with_capacity(data::TEAMS.len());
    let mut add_person = |rng: &mut Rng,
                          team: Option<usize>,
                          models: &[(&str, u32)],
                          projects: &'static [&'static str],
                          strict_percent: u32| {
        let i = people.len();
        let (f, l) = (first[i % first.len()], last[i % last.len()]);
        let mut weights = model_weights(models);
        // Everyone has a favourite among their team's models.
        let favourite = rng.weighted(&weights);
        if let Some(w) = weights.get_mut(favourite) {
            *w *= 3;
        }
        people.push(Person {
            name: format!("{f} {l}"),
            email: format!("{}.{}@{}", f.to_lowercase(), l.to_lowercase(), data::DOMAIN),
            quota: 0,
            intensity: draw_intensity(rng),
            start_hour: draw_start_hour(rng),
            team,
            model_weights: weights,
            projects,
            strict_percent,
        });
        i
    };
    for (t, template) in data::TEAMS.iter().enumerate() {
        let members: Vec<(usize, bool)> = (0..template.size)
            .map(|k| {
                let p = add_person(
                    rng,
                    Some(t),
                    template.models,
                    template.projects,
                    template.strict_percent,
                );
                (p, k == 0)
            })
            .collect();
        teams.push(TeamPlan {
            name: template.name,
            description: template.description,
            common_pool: 0,
            members,
        });
    }
    let mut outside = Vec::new();
    for _ in 0..data::NO_TEAM_PEOPLE {
        outside.push(add_person(
            rng,
            None,
            data::NO_TEAM_MODELS,
            data::NO_TEAM_PROJECTS,
            0,
        ));
    }
    // Someone works for two teams: the last Research member helps Data Science.
    if let (Some(research), true) = (teams.last(), teams.len() > 1) {
        if let Some(&(p, _)) = research.members.last() {
            teams[1].members.push((p, false));
        }
    }
    // The overdraft user: outside every team, a heavy user on a tight quota.
    let overdraft_user = outside.first().copied().unwrap_or(0);

    // Quotas follow expected use: most people have room, some run into their team
    // pool, and the overdraft user runs short.
    let mut expected = Vec::with_capacity(people.len());
    for (p, person) in people.iter_mut().enumerate() {
        if p == overdraft_user {
            person.intensity = person.intensity.max(20.0);
        }
        let monthly = person.intensity * 21.0 * mean_request_tokens(&person.model_weights);
        expected.push(monthly);
        let factor = if p == overdraft_user {
            0.5
        } else {
            [0.8, 1.2, 1.8][rng.weighted(&[20, 45, 35])]
        };
        person.quota = round_up(monthly * factor, QUOTA_STEP).max(100_000);
    }
    for team in &mut teams {
        let sum: f64 = team.members.iter().map(|(p, _)| expected[*p]).sum();
        team.common_pool = round_up(sum * 0.5, 250_000).max(500_000);
    }
    (people, teams, overdraft_user)
}

fn plan_request(rng: &mut Rng, person: &Person, incident: bool) -> PlannedRequest {
    let model = rng.weighted(&person.model_weights);
    let m = &MODELS[model.min(MODELS.len() - 1)];
    let priority = if incident {
        Priority::Critical
    } else {
        match rng.weighted(&[8, 86, 6]) {
            0 => Priority::Low,
            1 => Priority::Normal,
            _ => Priority::High,
        }
    };
    let project = if incident {
        Some("incident-response")
    } else if rng.chance(0.8) {
        rng.pick(person.projects).copied()
    } else {
        None
    };
    let strict = rng.chance(f64::from(person.strict_percent) / 100.0);
    let mut request = PlannedRequest {
        model,
        input: 0,
        output: 0,
        cached: 0,
        reasoning: 0,
        status: 200,
        estimated: false,
        priority,
        project,
        strict,
    };
    if !incident && rng.chance(0.025) {
        // The provider refused or failed: no billable work, nothing charged.
        request.status = [400, 429, 500, 502, 503][rng.weighted(&[3, 2, 2, 1, 2])];
        return request;
    }
    let scale = |base: i64, f: f64| {
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let v = (base as f64 * f).round() as i64;
        v
    };
    request.input = scale(m.input, rng.skewed()).max(12);
    request.output = scale(m.output, rng.skewed());
    if m.caches && rng.chance(0.35) {
        request.cached = scale(request.input, 0.3 + 0.6 * rng.unit());
    }
    if m.streams && !incident && rng.chance(0.012) {
        // The client went away mid-stream: the filter charged what it saw.
        request.output = scale(request.output, 0.2 + 0.6 * rng.unit());
        request.estimated = true;
    }
    request.reasoning = request.output * m.reasoning_percent / 100;
    request
}

#[allow(clippy::too_many_arguments)]
fn plan_admin_events(
    rng: &mut Rng,
    people: &[Person],
    teams: &[TeamPlan],
    ordinary: &[usize],
    vacationer: usize,
    vacation_day: NaiveDate,
    first_day: NaiveDate,
    now: NaiveDateTime,
    events: &mut Vec<Event>,
) {
    let at_day = |d: i64, hour: u32, rng: &mut Rng| {
        (first_day + TimeDelta::days(d)).and_time(at_hour(hour, 0))
            + TimeDelta::minutes(rng.between(0, 50))
    };
    let teammate = |p: usize, rng: &mut Rng| -> Option<usize> {
        let team = people.get(p)?.team?;
        let mates: Vec<usize> = teams[team]
            .members
            .iter()
            .map(|m| m.0)
            .filter(|&m| m != p && m != vacationer)
            .collect();
        rng.pick(&mates).copied()
    };
    // People who take part in transfers and requests: never the vacationer (a
    // recipient must be active) nor the overdraft user (whose story is the incident).
    let takers: Vec<usize> = ordinary
        .iter()
        .copied()
        .filter(|&p| p != vacationer)
        .collect();

    for (k, day) in [3_i64, 9, 14, 20, 26].into_iter().enumerate() {
        let Some(&from) = rng.pick(&takers) else {
            break;
        };
        let Some(to) = teammate(from, rng) else {
            continue;
        };
        events.push(Event {
            at: at_day(day, 11, rng),
            step: Step::Transfer {
                from,
                to,
                amount: rng.between(5, 40) * 1000,
                reason: data::TRANSFER_REASONS[k % data::TRANSFER_REASONS.len()],
            },
        });
    }
    // The pending transfer: from whoever has the largest quota.
    if let Some(&from) = takers.iter().max_by_key(|&&p| (people[p].quota, p)) {
        if let Some(to) = teammate(from, rng) {
            events.push(Event {
                at: now - TimeDelta::hours(4) - TimeDelta::minutes(rng.between(0, 30)),
                step: Step::PendingTransfer {
                    from,
                    to,
                    above: 5000,
                    reason: "Handing over the search-relevance experiments",
                },
            });
        }
    }

    // Quota requests: approved by a team admin, denied and approved by the admin,
    // two still pending (asked within the last hours, so they do not expire).
    let mut askers = takers.clone();
    rng.shuffle(&mut askers);
    let mut askers = askers.into_iter();
    let team_admin_of = |p: usize| -> Option<usize> {
        let team = people.get(p)?.team?;
        teams[team].members.iter().find(|m| m.1).map(|m| m.0)
    };
    let decided: [(i64, bool, bool, Option<&'static str>); 3] = [
        (6, true, true, None),
        (13, false, false, Some("Please draw on the team pool first")),
        (22, true, false, Some("Approved for the launch")),
    ];
    let mut index = 0;
    for (day, approve, by_team_admin, note) in decided {
        let Some(person) = askers.next() else { break };
        let at = at_day(day, 10, rng);
        events.push(Event {
            at,
            step: Step::Request {
                index,
                person,
                amount: rng.between(2, 10) * 50_000,
                reason: data::REQUEST_REASONS[index % data::REQUEST_REASONS.len()],
            },
        });
        let by = if by_team_admin {
            team_admin_of(person)
        } else {
            None
        };
        events.push(Event {
            at: at + TimeDelta::hours(3),
            step: Step::Decide {
                index,
                approve,
                by,
                note,
            },
        });
        index += 1;
    }
    for hours in [9, 2] {
        let Some(person) = askers.next() else { break };
        events.push(Event {
            at: now - TimeDelta::hours(hours) - TimeDelta::minutes(rng.between(0, 50)),
            step: Step::Request {
                index,
                person,
                amount: rng.between(2, 10) * 50_000,
                reason: data::REQUEST_REASONS[index % data::REQUEST_REASONS.len()],
            },
        });
        index += 1;
    }

    events.push(Event {
        at: vacation_day.and_time(at_hour(7, 30)),
        step: Step::Vacation(vacationer),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 11, 18)
            .unwrap()
            .and_hms_opt(15, 30, 0)
            .unwrap()
    }

    #[test]
    fn same_seed_same_plan_other_seed_other_plan() {
        let ttl = Duration::from_secs(60);
        let a = build(42, now(), ttl);
        let b = build(42, now(), ttl);
        assert_eq!(a.events, b.events);
        assert_eq!(
            a.people.iter().map(|p| &p.email).collect::<Vec<_>>(),
            b.people.iter().map(|p| &p.email).collect::<Vec<_>>()
        );
        let c = build(43, now(), ttl);
        assert_ne!(
            a.people.iter().map(|p| &p.email).collect::<Vec<_>>(),
            c.people.iter().map(|p| &p.email).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_plan_has_what_the_demo_promises() {
        let plan = build(42, now(), Duration::from_secs(60));
        assert_eq!(plan.people.len(), 30);
        assert_eq!(plan.teams.len(), 5);
        let mut emails: Vec<&str> = plan.people.iter().map(|p| p.email.as_str()).collect();
        emails.sort_unstable();
        emails.dedup();
        assert_eq!(emails.len(), 30, "emails are unique");
        for team in &plan.teams {
            assert_eq!(team.members.iter().filter(|m| m.1).count(), 1);
        }
        // Events are in time order, inside the 30 days, never after now.
        assert!(plan.events.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(plan
            .events
            .iter()
            .all(|e| e.at > plan.created_at && e.at <= now()));
        let days: std::collections::BTreeSet<NaiveDate> = plan
            .events
            .iter()
            .filter(|e| matches!(e.step, Step::Report(_)))
            .map(|e| e.at.date())
            .collect();
        assert_eq!(days.len(), 30);
        // Every model of the catalogue is used by someone.
        for (i, m) in MODELS.iter().enumerate() {
            assert!(
                plan.people.iter().any(|p| p.model_weights[i] > 0),
                "{} unused",
                m.name
            );
        }
        let count = |f: fn(&Step) -> bool| plan.events.iter().filter(|e| f(&e.step)).count();
        assert_eq!(count(|s| matches!(s, Step::Request { .. })), 5);
        assert_eq!(count(|s| matches!(s, Step::Decide { .. })), 3);
        assert_eq!(count(|s| matches!(s, Step::Vacation(_))), 1);
        assert_eq!(count(|s| matches!(s, Step::PendingTransfer { .. })), 1);
        assert!(count(|s| matches!(s, Step::Transfer { .. })) >= 4);
        // Nobody plans usage while away.
        let away_from = plan
            .events
            .iter()
            .find(|e| e.step == Step::Vacation(plan.vacationer))
            .unwrap()
            .at;
        assert!(plan.events.iter().all(|e| match e.step {
            Step::Grant(s) => plan.sessions[s].person != plan.vacationer || e.at < away_from,
            _ => true,
        }));
    }
}
