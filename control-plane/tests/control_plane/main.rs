//! Integration tests of the control plane, each run against SQLite and PostgreSQL
//! (set `ALFRED_TEST_POSTGRES_URL` for the latter).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod concurrency;

mod analytics;
mod authz;
mod bad_input;
mod cli;
mod dashboard_api;
mod http_api;
mod leases;
mod openapi;
mod quota_model;
mod seed;
mod usage;
mod users;
