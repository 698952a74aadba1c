//! Alfred's own answers to a client (the error contract of SPEC section 2), in the shape
//! of the API that was called so each SDK raises its usual exception.

use serde_json::json;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    InvalidApiKey,
    UserSuspended,
    InsufficientQuota {
        budget_scope: String,
        retry_after_s: u64,
    },
    GovernanceUnavailable,
    /// The path reached the filter but is no API Alfred meters.
    UnknownApi,
    /// The route's provider has no credential configured on this proxy.
    ProviderNotConfigured,
}

/// A complete local response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Refusal {
    pub fn reply(&self, request_id: &str) -> LocalReply {
        let mut headers = vec![
            ("content-type", "application/json".to_string()),
            ("x-alfred-request-id", request_id.to_string()),
        ];
        let (status, kind, code, message) = match self {
            Refusal::InvalidApiKey => (
                401,
                "invalid_request_error",
                "invalid_api_key",
                "Invalid API key. Use the tp- key Alfred issued to you.".to_string(),
            ),
            Refusal::UserSuspended => (
                403,
                "permission_error",
                "user_suspended",
                "This Alfred user is suspended. Ask an administrator to reactivate it.".to_string(),
            ),
            Refusal::InsufficientQuota {
                budget_scope,
                retry_after_s,
            } => {
                headers.push(("retry-after", retry_after_s.to_string()));
                headers.push(("x-should-retry", "false".to_string()));
                (
                    429,
                    "insufficient_quota",
                    "insufficient_quota",
                    format!(
                        "Your Alfred {budget_scope} quota is exhausted for this period. \
                         Check GET /v1/users/me/quota or ask for more."
                    ),
                )
            }
            Refusal::GovernanceUnavailable => {
                headers.push(("retry-after", "5".to_string()));
                (
                    503,
                    "server_error",
                    "governance_unavailable",
                    "Alfred cannot check your quota right now; try again shortly.".to_string(),
                )
            }
            Refusal::UnknownApi => (
                404,
                "invalid_request_error",
                "unknown_url",
                "Alfred does not serve this path.".to_string(),
            ),
            Refusal::ProviderNotConfigured => (
                503,
                "server_error",
                "provider_not_configured",
                "No provider credential is configured for this API on this Alfred gateway."
                    .to_string(),
            ),
        };
        let mut error = json!({"message": message, "type": kind, "code": code, "param": null});
        if let Refusal::InsufficientQuota { budget_scope, .. } = self {
            error["budget_scope"] = json!(budget_scope);
        }
        let body = json!({ "error": error }).to_string().into_bytes();
        LocalReply {
            status,
            headers,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_reply_follows_contract() {
        let r = Refusal::InsufficientQuota {
            budget_scope: "personal".into(),
            retry_after_s: 3600,
        }
        .reply("rid");
        assert_eq!(r.status, 429);
        assert!(r.headers.contains(&("x-should-retry", "false".to_string())));
        assert!(r.headers.contains(&("retry-after", "3600".to_string())));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["code"], "insufficient_quota");
        assert_eq!(v["error"]["budget_scope"], "personal");
        let r = Refusal::InvalidApiKey.reply("rid");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            (r.status, v["error"]["code"].as_str()),
            (401, Some("invalid_api_key"))
        );
    }
}
