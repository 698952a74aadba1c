//! What `seed-demo` reports: the summary, as text for people and as JSON for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::NaiveDate;
use serde::Serialize;

/// What was seeded. Holds the admin's key: print it once, never log it.
#[derive(Clone)]
pub struct SeedSummary {
    /// The seed used.
    pub seed: u64,
    /// The admin's id.
    pub admin_id: i64,
    /// The admin's email.
    pub admin_email: String,
    /// The admin's API key (plaintext, shown once).
    pub api_key: String,
    /// Users created, the admin included.
    pub users: usize,
    /// Team admins.
    pub team_admins: usize,
    /// Teams created.
    pub teams: usize,
    /// First day of usage.
    pub first_day: NaiveDate,
    /// Last day of usage (today).
    pub last_day: NaiveDate,
    /// Leases granted.
    pub leases: usize,
    /// Usage records ingested.
    pub records: usize,
    /// Their total tokens.
    pub total_tokens: i64,
    /// Their cached prompt tokens.
    pub cached_tokens: i64,
    /// Their cost in billionths of a USD (priced records only).
    pub cost_nano_usd: i64,
    /// Records of the model without a price.
    pub unpriced_records: usize,
    /// Records with a 4xx/5xx status.
    pub failed_records: usize,
    /// Records whose usage the filter estimated (cut streams).
    pub estimated_records: usize,
    /// Planned requests refused because quota and pools were spent.
    pub refused_requests: usize,
    /// Completed transfers.
    pub transfers_completed: usize,
    /// Transfers waiting for approval (only with `TRANSFER_APPROVAL_THRESHOLD`).
    pub transfers_pending: usize,
    /// Quota requests still pending.
    pub requests_pending: usize,
    /// Quota requests approved.
    pub requests_approved: usize,
    /// Quota requests denied.
    pub requests_denied: usize,
    /// Email of the user on vacation.
    pub on_vacation: String,
    /// Email of the user who drew on the critical overdraft.
    pub overdraft_user: String,
    /// Tokens of overdraft they used.
    pub overdraft_tokens: i64,
}

impl std::fmt::Debug for SeedSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedSummary")
            .field("seed", &self.seed)
            .field("admin_id", &self.admin_id)
            .field("api_key", &"<redacted>")
            .field("users", &self.users)
            .field("records", &self.records)
            .field("total_tokens", &self.total_tokens)
            .finish_non_exhaustive()
    }
}

impl SeedSummary {
    /// The text `seed-demo` prints: counts, then the admin's key (once).
    pub fn report(&self, elapsed: Duration) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Demo organisation seeded (seed {}) in {:.1} s:",
            self.seed,
            elapsed.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "  users       {} (1 admin, {} team admins; {} is on vacation)",
            self.users, self.team_admins, self.on_vacation
        );
        let _ = writeln!(out, "  teams       {}", self.teams);
        let _ = writeln!(
            out,
            "  usage       {} records, {} to {}: {} tokens ({} cached), ${:.2}",
            thousands(i64::try_from(self.records).unwrap_or(i64::MAX)),
            self.first_day,
            self.last_day,
            thousands(self.total_tokens),
            thousands(self.cached_tokens),
            usd(self.cost_nano_usd)
        );
        let _ = writeln!(
            out,
            "              {} failed (4xx/5xx), {} estimated (cut streams), {} of an unpriced model, {} refused for quota",
            self.failed_records, self.estimated_records, self.unpriced_records, self.refused_requests
        );
        let _ = writeln!(
            out,
            "  transfers   {} completed, {} pending approval{}",
            self.transfers_completed,
            self.transfers_pending,
            if self.transfers_pending == 0 {
                " (set TRANSFER_APPROVAL_THRESHOLD for one)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "  requests    {} pending, {} approved, {} denied",
            self.requests_pending, self.requests_approved, self.requests_denied
        );
        let _ = writeln!(
            out,
            "  overdraft   {} used {} tokens of critical overdraft",
            self.overdraft_user,
            thousands(self.overdraft_tokens)
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "Admin: {} (id {})", self.admin_email, self.admin_id);
        let _ = writeln!(out, "API key (shown once, store it now): {}", self.api_key);
        let _ = writeln!(
            out,
            "Log in to the dashboard (/static/) with it; to act as someone else, rotate their key in Users."
        );
        out
    }
}

/// `seed-demo --json`: the admin's id and key first, like `create-admin --json`.
#[derive(Debug, Serialize)]
pub struct SummaryJson<'a> {
    id: i64,
    api_key: &'a str,
    email: &'a str,
    seed: u64,
    users: usize,
    team_admins: usize,
    teams: usize,
    first_day: String,
    last_day: String,
    leases: usize,
    usage_records: usize,
    total_tokens: i64,
    cached_tokens: i64,
    cost_usd: f64,
    unpriced_records: usize,
    failed_records: usize,
    estimated_records: usize,
    refused_requests: usize,
    transfers_completed: usize,
    transfers_pending: usize,
    requests_pending: usize,
    requests_approved: usize,
    requests_denied: usize,
    on_vacation: &'a str,
    overdraft_user: &'a str,
    overdraft_tokens: i64,
}

impl<'a> From<&'a SeedSummary> for SummaryJson<'a> {
    fn from(s: &'a SeedSummary) -> Self {
        Self {
            id: s.admin_id,
            api_key: &s.api_key,
            email: &s.admin_email,
            seed: s.seed,
            users: s.users,
            team_admins: s.team_admins,
            teams: s.teams,
            first_day: s.first_day.to_string(),
            last_day: s.last_day.to_string(),
            leases: s.leases,
            usage_records: s.records,
            total_tokens: s.total_tokens,
            cached_tokens: s.cached_tokens,
            cost_usd: usd(s.cost_nano_usd),
            unpriced_records: s.unpriced_records,
            failed_records: s.failed_records,
            estimated_records: s.estimated_records,
            refused_requests: s.refused_requests,
            transfers_completed: s.transfers_completed,
            transfers_pending: s.transfers_pending,
            requests_pending: s.requests_pending,
            requests_approved: s.requests_approved,
            requests_denied: s.requests_denied,
            on_vacation: &s.on_vacation,
            overdraft_user: &s.overdraft_user,
            overdraft_tokens: s.overdraft_tokens,
        }
    }
}

#[allow(clippy::cast_precision_loss)] // a display value
fn usd(nano: i64) -> f64 {
    nano as f64 / 1e9
}

/// `12345678` → `12,345,678`.
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(-1_234_567), "-1,234,567");
    }
}
