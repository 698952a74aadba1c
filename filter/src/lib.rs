//! Alfred's Proxy-Wasm filter.
//!
//! Everything but [`adapter`] is plain Rust with no host calls: key handling, the lease
//! cache and reservations ([`gateway`]), usage parsing ([`usage`], [`json_scan`],
//! [`sse`]), reporting ([`reporter`]). The adapter is the only module that names
//! `proxy_wasm`; it is compiled for the wasm target only.

pub mod body;
pub mod config;
pub mod eventstream;
pub mod gateway;
pub mod header_map;
pub mod ids;
pub mod json_scan;
pub mod key;
pub mod lease_store;
pub mod protocol;
pub mod reply;
pub mod reporter;
pub mod sse;
pub mod strip;
pub mod usage;

#[cfg(target_arch = "wasm32")]
mod adapter;
