//! Alfred's control plane: owns the database, grants quota leases to the Envoy filter,
//! ingests usage idempotently and serves the admin and user API.
//!
//! Domain modules (`users`, `quota`, `leases`, `usage`, `pricing`, `sessions`,
//! `analytics`) know nothing about HTTP; `http`
//! decodes requests, calls them and encodes the answers.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod analytics;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod leases;
pub mod pricing;
pub mod quota;
pub mod sessions;
pub mod usage;
pub mod users;
