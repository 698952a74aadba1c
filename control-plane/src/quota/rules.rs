//! The organisation-wide quota rules, from the configuration.

use super::QuotaPeriod;
use crate::config::Config;

/// Rules every credit decision follows (see `docs/quota-model.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaRules {
    /// `QUOTA_PERIOD`.
    pub period: QuotaPeriod,
    /// `VACATION_SHARE_PERCENTAGE`: the most a member may draw from a team pool per
    /// UTC day, in percent of the pool.
    pub vacation_share_percentage: u8,
    /// `CRITICAL_OVERDRAFT_LIMIT`: tokens a user may overdraw per period with
    /// `X-Priority: critical` once personal quota and pool share are spent.
    pub critical_overdraft_limit: i64,
    /// `IDLE_DAYS`: days without requests after which a team member goes on vacation.
    pub idle_days: u32,
    /// `TRANSFER_APPROVAL_THRESHOLD`: transfers above it wait for approval.
    pub transfer_approval_threshold: Option<i64>,
    /// `APPROVAL_TTL_DAYS`: pending transfers and quota requests expire after it.
    pub approval_ttl_days: u32,
    /// `DEFAULT_TEAM_POOL`: the pool of teams created without one.
    pub default_team_pool: i64,
}

impl QuotaRules {
    /// The user guide's defaults.
    pub const DEFAULT: Self = Self {
        period: QuotaPeriod::Monthly,
        vacation_share_percentage: 10,
        critical_overdraft_limit: 5000,
        idle_days: 14,
        transfer_approval_threshold: None,
        approval_ttl_days: 7,
        default_team_pool: 10_000,
    };

    /// The rules the configuration sets.
    pub fn from_config(config: &Config) -> Self {
        Self {
            period: config.quota_period,
            vacation_share_percentage: config.vacation_share_percentage,
            critical_overdraft_limit: config.critical_overdraft_limit,
            idle_days: config.idle_days,
            transfer_approval_threshold: config.transfer_approval_threshold,
            approval_ttl_days: config.approval_ttl_days,
            default_team_pool: config.default_team_pool,
        }
    }
}

impl Default for QuotaRules {
    fn default() -> Self {
        Self::DEFAULT
    }
}
