//! Alfred's control plane: owns the database, grants quota leases to the Envoy filter,
//! ingests usage idempotently and serves the admin and user API and the dashboard.
//!
//! Domain modules (`users`, `teams`, `ledger`, `quota`, `leases`, `usage`, `vacation`,
//! `transfers`, `approvals`, `notifications`, `audit`, `pricing`, `sessions`,
//! `analytics`) know nothing about HTTP; `http` decodes requests, calls them and
//! encodes the answers. `seed` fills a demo organisation through the same domain calls.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod analytics;
pub mod approvals;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod leases;
pub mod ledger;
pub mod maintenance;
pub mod notifications;
pub mod pricing;
pub mod quota;
pub mod seed;
pub mod sessions;
pub mod teams;
pub mod transfers;
pub mod usage;
pub mod users;
pub mod vacation;
