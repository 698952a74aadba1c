//! The filter's plugin configuration, as Envoy hands it over (JSON in the wasm filter's
//! `configuration`). Rendered by `envoy/render.py`.

use serde::Deserialize;
use std::collections::HashMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Names this Envoy process in leases and usage records.
    pub proxy_id: String,
    pub control_plane: ControlPlane,
    /// Tokens asked for in each lease.
    #[serde(default = "default_lease_request_tokens")]
    pub lease_request_tokens: u64,
    /// Tokens reserved per request before its real usage is known, on top of a quarter of
    /// the request body's size.
    #[serde(default = "default_estimate_tokens")]
    pub default_estimate_tokens: u64,
    /// Period of the root context's tick (usage reports, retries).
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// Most usage records in one report.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Longest a usage record waits for its report to fill (a full report goes at once).
    /// At most [`MAX_REPORT_INTERVAL_MS`]: leases stop being used this much earlier.
    #[serde(default = "default_report_interval_ms")]
    pub report_interval_ms: u64,
    /// Most unsent usage records kept; beyond, the oldest are dropped and counted.
    #[serde(default = "default_max_buffered")]
    pub max_buffered_records: usize,
    /// Largest request body read or held (bigger ones get 413 `request_too_large`).
    #[serde(default = "default_max_request_body")]
    pub max_request_body_bytes: u64,
    /// Provider name → credential swapped in for the client key.
    pub providers: HashMap<String, Provider>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlane {
    pub cluster: String,
    pub authority: String,
    pub token: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Header carrying the provider credential; empty: set none (Bedrock requests are
    /// signed by Envoy's AWS request-signing filter, in-mesh models may need nothing).
    #[serde(default)]
    pub auth_header: String,
    #[serde(default)]
    pub auth_value: String,
}

fn default_lease_request_tokens() -> u64 {
    20_000
}
fn default_estimate_tokens() -> u64 {
    256
}
fn default_tick_ms() -> u64 {
    200
}
fn default_timeout_ms() -> u64 {
    2_000
}
fn default_max_batch() -> usize {
    2_000
}
/// Longest accepted `report_interval_ms`. A lease stops being used the report delay
/// before it expires, so a delay near the lease's life (60 s by default) would leave
/// leases nothing to serve from.
pub const MAX_REPORT_INTERVAL_MS: u64 = 10_000;

fn default_report_interval_ms() -> u64 {
    1_000
}
fn default_max_request_body() -> u64 {
    32 * 1024 * 1024
}
fn default_max_buffered() -> usize {
    100_000
}

impl Config {
    /// Parse and check the configuration; the error names what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        let config: Config = serde_json::from_slice(bytes)
            .map_err(|e| format!("invalid alfred filter configuration: {e}"))?;
        if config.proxy_id.is_empty() || config.proxy_id.len() > 128 {
            return Err(
                "invalid alfred filter configuration: proxy_id must be 1 to 128 characters".into(),
            );
        }
        if config.control_plane.token.is_empty() {
            return Err("invalid alfred filter configuration: control_plane.token is empty".into());
        }
        if config.lease_request_tokens == 0 || config.tick_ms == 0 || config.max_batch == 0 {
            return Err("invalid alfred filter configuration: lease_request_tokens, tick_ms and max_batch must be positive".into());
        }
        if config.report_interval_ms > MAX_REPORT_INTERVAL_MS {
            return Err(format!(
                "invalid alfred filter configuration: report_interval_ms must be at most {MAX_REPORT_INTERVAL_MS}"
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rendered_config_and_names_errors() {
        let json = br#"{"proxy_id":"envoy-1","control_plane":{"cluster":"alfred_control_plane","authority":"alfred-control-plane","token":"t","timeout_ms":2000},"lease_request_tokens":20000,"default_estimate_tokens":256,"tick_ms":200,"providers":{"openai":{"auth_header":"authorization","auth_value":"Bearer sk"}}}"#;
        let c = Config::parse(json).unwrap();
        assert_eq!(c.providers["openai"].auth_value, "Bearer sk");
        assert_eq!((c.max_batch, c.report_interval_ms), (2_000, 1_000));
        let err = Config::parse(br#"{"proxy_id":"x","control_plane":{"cluster":"c","authority":"a","token":"t"},"providers":{},"bogus":1}"#).unwrap_err();
        assert!(err.contains("bogus"), "{err}");
        let err = Config::parse(br#"{"proxy_id":"x","control_plane":{"cluster":"c","authority":"a","token":"t"},"providers":{},"report_interval_ms":10001}"#).unwrap_err();
        assert!(
            err.contains("report_interval_ms must be at most 10000"),
            "{err}"
        );
        let err = Config::parse(b"not json").unwrap_err();
        assert!(err.contains("invalid alfred filter configuration"), "{err}");
    }
}
