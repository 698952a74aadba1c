//! One provider API = one [`Dialect`].
//!
//! The server is generic: it counts, checks for leaked keys, checks the credential the
//! dialect asks for, reads the behaviour knobs, and writes whatever frames the dialect
//! rendered. Adding a provider API means one module implementing this trait and one
//! line in [`crate::server::dialects`].

use actix_web::http::header::HeaderMap;
use bytes::Bytes;

use crate::behaviour::Behaviour;
use crate::guard;
use crate::usage::Usage;

/// Why a request is refused, in provider-neutral terms; each dialect renders it in its
/// own error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Missing or wrong provider credential (401, or the provider's equivalent).
    InvalidCredential,
    /// The request body is not what the API accepts (400).
    BadRequest(String),
    /// A failure asked for with `x-local-provider-fail`.
    Injected(u16),
    /// A client key arrived at the provider (400; the gateway leaked it).
    LeakedClientKey,
}

/// Identity of one response, chosen by the server so ids are unique and `created` is
/// real time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseMeta {
    pub id: String,
    pub created: u64,
}

/// What a dialect sees of one request.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The request path (no query), e.g. `/v1beta/models/gemini-2.0-flash:generateContent`.
    pub path: &'a str,
    /// The raw query string (`alt=sse`), empty when none.
    pub query: &'a str,
    pub body: &'a [u8],
}

impl Call<'_> {
    /// Value of query parameter `name` (no percent-decoding; test values are plain).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }
}

/// How a provider API carries its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <key>` (OpenAI, vLLM).
    Bearer,
    /// The key alone in a named header (`x-api-key`, `api-key`, `x-goog-api-key`).
    Header(&'static str),
    /// An AWS Signature V4 `Authorization` header (Bedrock behind Envoy's signing filter).
    SigV4,
    /// No credential at all (keyless in-mesh Ollama): any auth header is refused.
    None,
}

/// Prefix of a SigV4 `Authorization` value.
pub const SIGV4_PREFIX: &str = "AWS4-HMAC-SHA256 Credential=";

impl Auth {
    /// Lower-case name of the header carrying the credential, if any.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Auth::Bearer | Auth::SigV4 => Some("authorization"),
            Auth::Header(name) => Some(name),
            Auth::None => None,
        }
    }

    /// Whether `value` (of [`Auth::header`]) carries exactly `expected` (for SigV4:
    /// whether it is a well-formed signature; `expected` is not a secret there).
    pub fn matches(self, value: &str, expected: &str) -> bool {
        match self {
            Auth::Bearer => {
                value
                    .trim()
                    .split_once(' ')
                    .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    && guard::credential(value) == expected
            }
            Auth::Header(_) => value.trim() == expected,
            Auth::SigV4 => is_sigv4(value),
            Auth::None => false,
        }
    }
}

/// `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=…, Signature=HEX`.
pub fn is_sigv4(value: &str) -> bool {
    let Some(rest) = value.strip_prefix(SIGV4_PREFIX) else {
        return false;
    };
    let mut parts = rest.split(',').map(str::trim);
    let scope_ok = parts
        .next()
        .is_some_and(|scope| scope.split('/').count() == 5 && scope.ends_with("/aws4_request"));
    let signed_ok = parts
        .next()
        .is_some_and(|signed| signed.starts_with("SignedHeaders=") && signed.contains("host"));
    let signature_ok = parts.next().is_some_and(|sig| {
        sig.strip_prefix("Signature=")
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    scope_ok && signed_ok && signature_ok
}

/// A response ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    pub content_type: &'static str,
    /// Extra response headers (e.g. Bedrock's `x-amzn-errortype`).
    pub headers: Vec<(&'static str, String)>,
    /// Logical pieces of the body (SSE events, event-stream messages, NDJSON lines, or
    /// the one JSON document).
    pub frames: Vec<Bytes>,
    /// Whether the body is a stream (no Content-Length; written frame by frame).
    pub stream: bool,
    /// The usage the body reports, with the byte offset at which that report is
    /// complete (an abort before it means the client never saw the usage).
    pub reported: Option<ReportedUsage>,
    /// Usage the provider "spent" on the request, reported or not.
    pub spent: Option<Usage>,
}

impl Rendered {
    /// A one-document JSON answer without usage (errors).
    pub fn json(status: u16, body: String) -> Rendered {
        Rendered {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            frames: vec![Bytes::from(body)],
            stream: false,
            reported: None,
            spent: None,
        }
    }

    /// A 200 JSON document reporting `usage` in full.
    pub fn json_with_usage(body: String, usage: Usage) -> Rendered {
        let complete_at = body.len();
        Rendered {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            frames: vec![Bytes::from(body)],
            stream: false,
            reported: Some(ReportedUsage { usage, complete_at }),
            spent: Some(usage),
        }
    }

    /// A 200 stream of `frames`; usage is reported once the first `reported_after`
    /// frames are out (`None`: never reported).
    pub fn stream(
        content_type: &'static str,
        frames: Vec<Bytes>,
        usage: Usage,
        reported_after: Option<usize>,
    ) -> Rendered {
        let reported = reported_after.map(|n| ReportedUsage {
            usage,
            complete_at: frames.iter().take(n).map(Bytes::len).sum(),
        });
        Rendered {
            status: 200,
            content_type,
            headers: Vec::new(),
            frames,
            stream: true,
            reported,
            spent: Some(usage),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedUsage {
    pub usage: Usage,
    pub complete_at: usize,
}

pub trait Dialect: Send + Sync {
    /// Short provider name (`openai`, `anthropic`, …), used in logs and stats.
    fn name(&self) -> &'static str;
    /// The actix route patterns this dialect serves (`POST`).
    fn paths(&self) -> Vec<&'static str>;
    /// How the credential is carried.
    fn auth(&self) -> Auth;
    /// The provider's error response for `refusal`.
    fn refuse(&self, refusal: &Refusal) -> Rendered;
    /// The provider's response to a request.
    fn render(
        &self,
        call: &Call<'_>,
        behaviour: &Behaviour,
        meta: &ResponseMeta,
    ) -> Result<Rendered, Refusal>;
    /// Extra request checks beyond the credential (e.g. Anthropic's `anthropic-version`).
    fn check_headers(&self, _headers: &HeaderMap) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigv4_shape_is_checked() {
        let good = "AWS4-HMAC-SHA256 Credential=AKIDLOCAL/20261130/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert!(is_sigv4(good));
        assert!(Auth::SigV4.matches(good, ""));
        assert!(!is_sigv4("Bearer tp-x"));
        assert!(!is_sigv4(&good.replace("Signature=0", "Signature=z")));
        assert!(!is_sigv4(&good.replace("/aws4_request", "")));
    }

    #[test]
    fn header_and_bearer_credentials() {
        assert!(Auth::Bearer.matches("Bearer sk-1", "sk-1"));
        assert!(!Auth::Bearer.matches("sk-1", "sk-1"));
        assert!(Auth::Header("x-api-key").matches("sk-1", "sk-1"));
        assert!(!Auth::Header("x-api-key").matches("Bearer sk-1", "sk-1"));
        assert!(!Auth::None.matches("", ""));
    }

    #[test]
    fn query_params() {
        let call = Call {
            path: "/",
            query: "alt=sse&key=k",
            body: b"",
        };
        assert_eq!(call.query_param("alt"), Some("sse"));
        assert_eq!(call.query_param("key"), Some("k"));
        assert_eq!(call.query_param("x"), None);
    }
}
