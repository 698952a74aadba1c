//! Token usage extraction from provider responses, streamed or not.
//!
//! An [`ApiKind`] is chosen from the request path; the [`UsageParser`] is fed every
//! response chunk as it passes through (nothing is buffered) and knows, per API, which
//! JSON leaves carry input, output, cached and reasoning tokens. Later values win, which
//! is right both for OpenAI's final usage chunk and for cumulative usage events.

use crate::json_scan::{Key, Scanner, Sink, Value};
use crate::sse::SseFramer;

/// The provider API a request is addressed to, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    OpenAiChat,
    OpenAiCompletions,
    OpenAiEmbeddings,
    OpenAiResponses,
}

impl ApiKind {
    /// Classify a request path (query string ignored). `None`: not an API Alfred meters.
    pub fn from_path(path: &str) -> Option<ApiKind> {
        let path = path.split('?').next().unwrap_or(path);
        match path {
            "/v1/chat/completions" => Some(ApiKind::OpenAiChat),
            "/v1/completions" => Some(ApiKind::OpenAiCompletions),
            "/v1/embeddings" => Some(ApiKind::OpenAiEmbeddings),
            "/v1/responses" => Some(ApiKind::OpenAiResponses),
            _ => None,
        }
    }

    /// The provider whose credential this API uses (a key of the plugin config's
    /// `providers` map).
    pub fn provider(self) -> &'static str {
        match self {
            ApiKind::OpenAiChat
            | ApiKind::OpenAiCompletions
            | ApiKind::OpenAiEmbeddings
            | ApiKind::OpenAiResponses => "openai",
        }
    }
}

/// Token counts of one request. Unit of quota: `input + output`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    /// Provider-reported total, when it gave one.
    pub total: Option<u64>,
    pub cached: u64,
    pub reasoning: u64,
}

impl Usage {
    /// Tokens charged against quota.
    pub fn charged(&self) -> u64 {
        self.total
            .unwrap_or(0)
            .max(self.input.saturating_add(self.output))
    }
}

#[derive(Debug, Default)]
struct Collected {
    usage: Usage,
    seen: bool,
    model: Option<String>,
}

impl Collected {
    fn set(&mut self, field: Field, n: u64) {
        self.seen = true;
        let u = &mut self.usage;
        match field {
            Field::Input => u.input = n,
            Field::Output => u.output = n,
            Field::Total => u.total = Some(n),
            Field::Cached => u.cached = n,
            Field::Reasoning => u.reasoning = n,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Field {
    Input,
    Output,
    Total,
    Cached,
    Reasoning,
}

/// Which usage field, if any, a leaf path is for (OpenAI chat, completions, embeddings,
/// and the Responses API, whose stream events wrap the response in `response`).
fn openai_field(path: &[Key]) -> Option<Field> {
    let path = match path {
        [Key::Response, rest @ ..] => rest,
        _ => path,
    };
    use Key::*;
    match path {
        [Usage, PromptTokens] | [Usage, InputTokens] => Some(Field::Input),
        [Usage, CompletionTokens] | [Usage, OutputTokens] => Some(Field::Output),
        [Usage, TotalTokens] => Some(Field::Total),
        [Usage, PromptTokensDetails, CachedTokens] | [Usage, InputTokensDetails, CachedTokens] => {
            Some(Field::Cached)
        }
        [Usage, CompletionTokensDetails, ReasoningTokens]
        | [Usage, OutputTokensDetails, ReasoningTokens] => Some(Field::Reasoning),
        _ => None,
    }
}

fn is_model(path: &[Key]) -> bool {
    matches!(path, [Key::Model] | [Key::Response, Key::Model])
}

struct KindSink<'a> {
    kind: ApiKind,
    out: &'a mut Collected,
}

impl Sink for KindSink<'_> {
    fn leaf(&mut self, path: &[Key], value: Value<'_>) {
        let _ = self.kind; // all current kinds share OpenAI's field names
        match value {
            Value::Uint(n) => {
                if let Some(field) = openai_field(path) {
                    self.out.set(field, n);
                }
            }
            Value::Str(s) => {
                if is_model(path) && !s.is_empty() {
                    self.out.model = Some(String::from_utf8_lossy(s).into_owned());
                }
            }
        }
    }
}

#[derive(Debug)]
enum Framing {
    Json(Scanner),
    Sse(SseFramer),
}

/// Incremental usage parser for one response.
#[derive(Debug)]
pub struct UsageParser {
    kind: ApiKind,
    framing: Framing,
    collected: Collected,
    bytes: u64,
}

impl UsageParser {
    /// `streaming`: the response is `text/event-stream`.
    pub fn new(kind: ApiKind, streaming: bool) -> Self {
        let framing = if streaming {
            Framing::Sse(SseFramer::default())
        } else {
            Framing::Json(Scanner::default())
        };
        UsageParser {
            kind,
            framing,
            collected: Collected::default(),
            bytes: 0,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        let mut sink = KindSink {
            kind: self.kind,
            out: &mut self.collected,
        };
        match &mut self.framing {
            Framing::Json(scanner) => scanner.feed(chunk, &mut sink),
            Framing::Sse(framer) => framer.feed(chunk, &mut sink),
        }
    }

    /// End of body. Returns the usage the provider reported, if it reported any.
    pub fn finish(&mut self) -> Option<Usage> {
        let mut sink = KindSink {
            kind: self.kind,
            out: &mut self.collected,
        };
        match &mut self.framing {
            Framing::Json(scanner) => scanner.finish(&mut sink),
            Framing::Sse(framer) => framer.finish(&mut sink),
        }
        self.collected.seen.then(|| self.collected.usage.clone())
    }

    /// Model named by the response, if any.
    pub fn model(&self) -> Option<&str> {
        self.collected.model.as_deref()
    }

    /// Response body bytes seen so far.
    pub fn body_bytes(&self) -> u64 {
        self.bytes
    }
}

/// Rough token estimate for bytes of text when the provider never said (about four
/// bytes per token for English text and JSON).
pub fn estimate_tokens(bytes: u64) -> u64 {
    bytes.div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_split(
        kind: ApiKind,
        streaming: bool,
        body: &[u8],
        split: usize,
    ) -> (Option<Usage>, Option<String>) {
        let mut p = UsageParser::new(kind, streaming);
        let (a, b) = body.split_at(split);
        p.feed(a);
        p.feed(b);
        let usage = p.finish();
        (usage, p.model().map(str::to_owned))
    }

    fn at_every_split(
        kind: ApiKind,
        streaming: bool,
        body: &[u8],
    ) -> (Option<Usage>, Option<String>) {
        let whole = parse_split(kind, streaming, body, 0);
        for split in 0..=body.len() {
            assert_eq!(
                parse_split(kind, streaming, body, split),
                whole,
                "split at {split}"
            );
        }
        // And byte by byte.
        let mut p = UsageParser::new(kind, streaming);
        for b in body {
            p.feed(std::slice::from_ref(b));
        }
        assert_eq!((p.finish(), p.model().map(str::to_owned)), whole);
        whole
    }

    #[test]
    fn openai_chat_non_streaming() {
        let body = br#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"The image shows a wooden boardwalk \u2014 caf\u00e9 \"usage\":{}","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#;
        let (usage, model) = at_every_split(ApiKind::OpenAiChat, false, body);
        let usage = usage.unwrap();
        assert_eq!(
            (usage.input, usage.output, usage.total, usage.charged()),
            (1117, 46, Some(1163), 1163)
        );
        assert_eq!(model.as_deref(), Some("gpt-4o-2024-08-06"));
    }

    #[test]
    fn openai_chat_streaming_with_usage_chunk_and_multibyte_split() {
        let body = "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Grüße ✓ 日本\"},\"finish_reason\":null}],\"usage\":null}\r\n\r\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21,\"completion_tokens_details\":{\"reasoning_tokens\":4}}}\n\n\
data: [DONE]\n\n";
        let (usage, model) = at_every_split(ApiKind::OpenAiChat, true, body.as_bytes());
        let usage = usage.unwrap();
        assert_eq!(
            (usage.input, usage.output, usage.reasoning, usage.charged()),
            (9, 12, 4, 21)
        );
        assert_eq!(model.as_deref(), Some("gpt-4o-mini"));
    }

    #[test]
    fn stream_without_usage_reports_none() {
        let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\ndata: [DONE]\n\n";
        let (usage, _) = at_every_split(ApiKind::OpenAiChat, true, body);
        assert_eq!(usage, None);
    }

    #[test]
    fn responses_api_stream_completed_event() {
        let body = b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4.1\",\"usage\":null}}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4.1\",\"usage\":{\"input_tokens\":36,\"input_tokens_details\":{\"cached_tokens\":5},\"output_tokens\":87,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":123}}}\n\n";
        let usage = at_every_split(ApiKind::OpenAiResponses, true, body)
            .0
            .unwrap();
        assert_eq!(
            (usage.input, usage.output, usage.cached, usage.charged()),
            (36, 87, 5, 123)
        );
    }

    #[test]
    fn embeddings() {
        let body = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292,-0.0028842222]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        let usage = at_every_split(ApiKind::OpenAiEmbeddings, false, body)
            .0
            .unwrap();
        assert_eq!((usage.input, usage.output, usage.charged()), (8, 0, 8));
    }

    #[test]
    fn paths() {
        assert_eq!(
            ApiKind::from_path("/v1/chat/completions?x=1"),
            Some(ApiKind::OpenAiChat)
        );
        assert_eq!(ApiKind::from_path("/v1/chat/completionsX"), None);
        assert_eq!(ApiKind::from_path("/v1/admin/users"), None);
    }
}
