//! One provider API = one [`Dialect`].
//!
//! The server is generic: it counts, checks for leaked keys, checks the credential in
//! the dialect's auth header, reads the behaviour knobs, and writes whatever frames the
//! dialect rendered. Adding Anthropic (`/v1/messages`, named SSE events), Gemini, Bedrock
//! (event-stream framing), Ollama (NDJSON) or Azure means one new module implementing
//! this trait and one line in [`crate::server::dialects`].

use bytes::Bytes;

use crate::behaviour::Behaviour;
use crate::usage::Usage;

/// Why a request is refused, in provider-neutral terms; each dialect renders it in its
/// own error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Missing or wrong provider credential (401).
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

/// A response ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    pub content_type: &'static str,
    /// Logical pieces of the body (SSE events, or the one JSON document).
    pub frames: Vec<Bytes>,
    /// The usage the body reports, with the byte offset at which that report is
    /// complete (an abort before it means the client never saw the usage).
    pub reported: Option<ReportedUsage>,
    /// Usage the provider "spent" on the request, reported or not.
    pub spent: Option<Usage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedUsage {
    pub usage: Usage,
    pub complete_at: usize,
}

pub trait Dialect: Send + Sync {
    /// Short provider name (`openai`), used in logs and stats.
    fn name(&self) -> &'static str;
    /// The route this dialect serves (`POST`).
    fn path(&self) -> &'static str;
    /// Lower-case name of the header carrying the provider credential.
    fn auth_header(&self) -> &'static str;
    /// Whether `value` (of [`Dialect::auth_header`]) carries exactly `expected`.
    fn credential_matches(&self, value: &str, expected: &str) -> bool;
    /// The provider's error response for `refusal`.
    fn refuse(&self, refusal: &Refusal) -> Rendered;
    /// The provider's response to a request body.
    fn render(
        &self,
        body: &[u8],
        behaviour: &Behaviour,
        meta: &ResponseMeta,
    ) -> Result<Rendered, Refusal>;
}
