//! Alfred's own answers to a client (the error contract of SPEC section 2), in the shape
//! of the API that was called so each SDK raises its usual exception: OpenAI
//! `{"error":{"message","type","code"}}`, Anthropic `{"type":"error","error":{…}}`,
//! Google `{"error":{"code","message","status"}}`, AWS `{"message"}` with
//! `x-amzn-errortype`, Ollama `{"error":"…"}`.

use crate::usage::Family;
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
    RequestTooLarge,
}

/// A complete local response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

struct Parts {
    status: u32,
    code: &'static str,
    message: String,
    openai_type: &'static str,
    anthropic_type: &'static str,
    google_status: &'static str,
    aws_type: &'static str,
}

impl Refusal {
    fn parts(&self) -> Parts {
        let p = |status,
                 code,
                 message: String,
                 openai_type,
                 anthropic_type,
                 google_status,
                 aws_type| Parts {
            status,
            code,
            message,
            openai_type,
            anthropic_type,
            google_status,
            aws_type,
        };
        match self {
            Refusal::InvalidApiKey => p(
                401,
                "invalid_api_key",
                "Invalid API key. Use the tp- key Alfred issued to you.".into(),
                "invalid_request_error",
                "authentication_error",
                "UNAUTHENTICATED",
                "UnrecognizedClientException",
            ),
            Refusal::UserSuspended => p(
                403,
                "user_suspended",
                "This Alfred user is suspended. Ask an administrator to reactivate it.".into(),
                "permission_error",
                "permission_error",
                "PERMISSION_DENIED",
                "AccessDeniedException",
            ),
            Refusal::InsufficientQuota { budget_scope, .. } => p(
                429,
                "insufficient_quota",
                format!(
                    "Your Alfred {budget_scope} quota is exhausted for this period. \
                     Check GET /v1/users/me/quota or ask for more."
                ),
                "insufficient_quota",
                "rate_limit_error",
                "RESOURCE_EXHAUSTED",
                // Bedrock's own quota error; answered with status 400 as Bedrock
                // models it (see `Refusal::reply`), so boto3 raises
                // `ServiceQuotaExceededException` and does not retry.
                "ServiceQuotaExceededException",
            ),
            Refusal::GovernanceUnavailable => p(
                503,
                "governance_unavailable",
                "Alfred cannot check your quota right now; try again shortly.".into(),
                "server_error",
                "api_error",
                "UNAVAILABLE",
                "ServiceUnavailableException",
            ),
            Refusal::UnknownApi => p(
                404,
                "unknown_url",
                "Alfred does not serve this path.".into(),
                "invalid_request_error",
                "not_found_error",
                "NOT_FOUND",
                "ResourceNotFoundException",
            ),
            Refusal::ProviderNotConfigured => p(
                503,
                "provider_not_configured",
                "No provider credential is configured for this API on this Alfred gateway.".into(),
                "server_error",
                "api_error",
                "UNAVAILABLE",
                "ServiceUnavailableException",
            ),
            Refusal::RequestTooLarge => p(
                413,
                "request_too_large",
                "The request body is larger than Alfred accepts.".into(),
                "invalid_request_error",
                "request_too_large",
                "INVALID_ARGUMENT",
                "ValidationException",
            ),
        }
    }

    /// The reply for an API of `family`.
    pub fn reply(&self, request_id: &str, family: Family) -> LocalReply {
        let parts = self.parts();
        let mut status = parts.status;
        let mut headers = vec![
            ("content-type", "application/json".to_string()),
            ("x-alfred-request-id", request_id.to_string()),
        ];
        match self {
            Refusal::InsufficientQuota { retry_after_s, .. } => {
                headers.push(("retry-after", retry_after_s.to_string()));
                headers.push(("x-should-retry", "false".to_string()));
            }
            Refusal::GovernanceUnavailable => headers.push(("retry-after", "5".to_string())),
            _ => {}
        }
        let scope = match self {
            Refusal::InsufficientQuota { budget_scope, .. } => Some(budget_scope.as_str()),
            _ => None,
        };
        let body = match family {
            Family::OpenAi => {
                let mut error = json!({"message": parts.message, "type": parts.openai_type, "code": parts.code, "param": null});
                if let Some(scope) = scope {
                    error["budget_scope"] = json!(scope);
                }
                json!({ "error": error })
            }
            Family::Anthropic => {
                let mut error = json!({"type": parts.anthropic_type, "message": parts.message, "code": parts.code});
                if let Some(scope) = scope {
                    error["budget_scope"] = json!(scope);
                }
                json!({"type": "error", "error": error})
            }
            Family::Gemini => json!({"error": {
                "code": parts.status,
                "message": parts.message,
                "status": parts.google_status,
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": parts.code,
                    "domain": "alfred",
                    "metadata": scope.map(|s| json!({"budget_scope": s})).unwrap_or(json!({})),
                }],
            }}),
            Family::Bedrock => {
                // botocore (default "standard" retry mode) retries every 429 whose code
                // is not a non-retryable modelled error of Converse/ConverseStream, and
                // ThrottlingException at any status. ServiceQuotaExceededException is
                // modelled by bedrock-runtime with status 400: answered that way,
                // boto3 raises it after exactly one request.
                if matches!(self, Refusal::InsufficientQuota { .. }) {
                    status = 400;
                }
                headers.push((
                    "x-amzn-errortype",
                    format!(
                        "{}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                        parts.aws_type
                    ),
                ));
                json!({"message": parts.message, "code": parts.code})
            }
            Family::Ollama => json!({"error": parts.message, "code": parts.code}),
        };
        LocalReply {
            status,
            headers,
            body: body.to_string().into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &LocalReply) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn quota_reply_follows_contract_in_every_family() {
        let refusal = Refusal::InsufficientQuota {
            budget_scope: "personal".into(),
            retry_after_s: 3600,
        };
        for family in [
            Family::OpenAi,
            Family::Anthropic,
            Family::Gemini,
            Family::Bedrock,
            Family::Ollama,
        ] {
            let r = refusal.reply("rid", family);
            // Bedrock: its own ServiceQuotaExceededException status (botocore retries 429s).
            let expected = if matches!(family, Family::Bedrock) {
                400
            } else {
                429
            };
            assert_eq!(r.status, expected);
            assert!(r.headers.contains(&("x-should-retry", "false".to_string())));
            assert!(r.headers.contains(&("retry-after", "3600".to_string())));
            assert!(
                String::from_utf8_lossy(&r.body).contains("insufficient_quota"),
                "{family:?}"
            );
        }
        let v = body(&refusal.reply("rid", Family::OpenAi));
        assert_eq!(
            (
                v["error"]["code"].as_str(),
                v["error"]["budget_scope"].as_str()
            ),
            (Some("insufficient_quota"), Some("personal"))
        );
        let v = body(&refusal.reply("rid", Family::Anthropic));
        assert_eq!(
            (v["type"].as_str(), v["error"]["type"].as_str()),
            (Some("error"), Some("rate_limit_error"))
        );
        let v = body(&refusal.reply("rid", Family::Gemini));
        assert_eq!(
            (v["error"]["code"].as_u64(), v["error"]["status"].as_str()),
            (Some(429), Some("RESOURCE_EXHAUSTED"))
        );
        let r = refusal.reply("rid", Family::Bedrock);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| *k == "x-amzn-errortype"
                && v.starts_with("ServiceQuotaExceededException:")));
    }

    #[test]
    fn invalid_key_is_401_invalid_api_key() {
        let r = Refusal::InvalidApiKey.reply("rid", Family::OpenAi);
        assert_eq!(
            (r.status, body(&r)["error"]["code"].as_str()),
            (401, Some("invalid_api_key"))
        );
        let r = Refusal::InvalidApiKey.reply("rid", Family::Anthropic);
        assert_eq!(body(&r)["error"]["type"], "authentication_error");
    }
}
