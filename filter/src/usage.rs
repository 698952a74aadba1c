//! Token usage extraction from provider responses, streamed or not.
//!
//! An [`Api`] is chosen from the request path; the [`UsageParser`] is fed every response
//! chunk as it passes through (nothing is buffered) and knows, per wire format, which
//! JSON leaves carry input, output, cached and reasoning tokens. Later values win, which
//! is right both for OpenAI's final usage chunk and for cumulative usage events
//! (Anthropic's `message_delta`, Gemini's chunks).

use crate::eventstream::EventStreamFramer;
use crate::json_scan::{Key, Scanner, Sink, Value};
use crate::sse::SseFramer;

/// Who serves the request: selects the credential and the upstream cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Azure,
    Anthropic,
    Gemini,
    Bedrock,
    Ollama,
    Vllm,
}

impl Provider {
    pub const ALL: [Provider; 7] = [
        Provider::OpenAi,
        Provider::Azure,
        Provider::Anthropic,
        Provider::Gemini,
        Provider::Bedrock,
        Provider::Ollama,
        Provider::Vllm,
    ];

    /// Key of the plugin config's `providers` map, and the `provider` of usage records.
    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Azure => "azure",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
            Provider::Bedrock => "bedrock",
            Provider::Ollama => "ollama",
            Provider::Vllm => "vllm",
        }
    }
}

/// The wire format of request and response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenAiChat,
    OpenAiCompletions,
    OpenAiEmbeddings,
    OpenAiResponses,
    AnthropicMessages,
    GeminiGenerate,
    BedrockConverse,
    OllamaNative,
}

impl Format {
    /// Error bodies follow the format's family so each SDK raises its own exception.
    pub fn family(self) -> Family {
        match self {
            Format::AnthropicMessages => Family::Anthropic,
            Format::GeminiGenerate => Family::Gemini,
            Format::BedrockConverse => Family::Bedrock,
            Format::OllamaNative => Family::Ollama,
            _ => Family::OpenAi,
        }
    }

    /// OpenAI-style chat or completions stream: `stream_options.include_usage` applies.
    pub fn has_include_usage(self) -> bool {
        matches!(self, Format::OpenAiChat | Format::OpenAiCompletions)
    }
}

/// Error-shape families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    OpenAi,
    Anthropic,
    Gemini,
    Bedrock,
    Ollama,
}

/// A metered API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    pub provider: Provider,
    pub format: Format,
    /// The model named in the path (Gemini, Bedrock), when the path names one.
    pub path_model: Option<String>,
}

impl Api {
    /// Classify a request path (query string ignored). `None`: not an API Alfred meters.
    pub fn from_path(path: &str) -> Option<Api> {
        let path = path.split('?').next().unwrap_or(path);
        let api = |provider, format| {
            Some(Api {
                provider,
                format,
                path_model: None,
            })
        };
        if let Some(rest) = path.strip_prefix("/vllm") {
            return openai_format(rest).and_then(|f| api(Provider::Vllm, f));
        }
        if let Some(rest) = path.strip_prefix("/ollama") {
            return openai_format(rest).and_then(|f| api(Provider::Ollama, f));
        }
        if let Some(format) = openai_format(path) {
            return api(Provider::OpenAi, format);
        }
        match path {
            "/v1/messages" => return api(Provider::Anthropic, Format::AnthropicMessages),
            "/api/chat" | "/api/generate" => return api(Provider::Ollama, Format::OllamaNative),
            _ => {}
        }
        if let Some(rest) = path.strip_prefix("/openai/deployments/") {
            // /openai/deployments/{deployment}/chat/completions
            let (deployment, op) = rest.split_once('/')?;
            let format = openai_format(&format!("/v1/{op}"))?;
            return (!deployment.is_empty()).then(|| Api {
                provider: Provider::Azure,
                format,
                path_model: Some(deployment.to_string()),
            });
        }
        if let Some(rest) = path
            .strip_prefix("/v1beta/models/")
            .or_else(|| path.strip_prefix("/v1/models/"))
        {
            let (model, method) = rest.rsplit_once(':')?;
            return (matches!(method, "generateContent" | "streamGenerateContent")
                && !model.is_empty())
            .then(|| Api {
                provider: Provider::Gemini,
                format: Format::GeminiGenerate,
                path_model: Some(model.to_string()),
            });
        }
        if let Some(rest) = path.strip_prefix("/model/") {
            let (model, op) = rest.rsplit_once('/')?;
            return (matches!(op, "converse" | "converse-stream") && !model.is_empty()).then(
                || Api {
                    provider: Provider::Bedrock,
                    format: Format::BedrockConverse,
                    path_model: Some(percent_decode(model)),
                },
            );
        }
        None
    }
}

fn openai_format(path: &str) -> Option<Format> {
    match path {
        "/v1/chat/completions" => Some(Format::OpenAiChat),
        "/v1/completions" => Some(Format::OpenAiCompletions),
        "/v1/embeddings" => Some(Format::OpenAiEmbeddings),
        "/v1/responses" => Some(Format::OpenAiResponses),
        _ => None,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Token counts of one request. Unit of quota: `input + output`, where `input` counts
/// every prompt token the provider processed, cached ones included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    /// Provider-reported total, when it gave one.
    pub total: Option<u64>,
    /// Prompt tokens read from the provider's cache (inside `input`).
    pub cached: u64,
    /// Prompt tokens written to the provider's cache (inside `input`).
    pub cache_write: u64,
    /// Reasoning/thinking tokens (inside `output`).
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

/// The raw fields as providers name them; [`Raw::usage`] applies each format's rule.
#[derive(Debug, Default, Clone)]
struct Raw {
    seen: bool,
    input: Option<u64>,
    output: Option<u64>,
    total: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    reasoning: Option<u64>,
    model: Option<String>,
    /// Bytes of generated text seen (for estimates when usage never comes).
    text_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
enum Field {
    Input,
    Output,
    Total,
    CacheRead,
    CacheWrite,
    Reasoning,
}

impl Raw {
    fn set(&mut self, field: Field, n: u64) {
        self.seen = true;
        let slot = match field {
            Field::Input => &mut self.input,
            Field::Output => &mut self.output,
            Field::Total => &mut self.total,
            Field::CacheRead => &mut self.cache_read,
            Field::CacheWrite => &mut self.cache_write,
            Field::Reasoning => &mut self.reasoning,
        };
        *slot = Some(n);
    }

    fn usage(&self, format: Format) -> Usage {
        let input = self.input.unwrap_or(0);
        let output = self.output.unwrap_or(0);
        let cached = self.cache_read.unwrap_or(0);
        let cache_write = self.cache_write.unwrap_or(0);
        let reasoning = self.reasoning.unwrap_or(0);
        match format {
            // Anthropic and Bedrock count cached prompt tokens outside `input_tokens`.
            Format::AnthropicMessages | Format::BedrockConverse => Usage {
                input: input.saturating_add(cached).saturating_add(cache_write),
                output,
                total: self.total,
                cached,
                cache_write,
                reasoning,
            },
            // Gemini's candidates exclude thinking tokens; its total includes them.
            Format::GeminiGenerate => Usage {
                input,
                output: output.saturating_add(reasoning),
                total: self.total,
                cached,
                cache_write,
                reasoning,
            },
            // OpenAI (and compatible) and Ollama: cached tokens are inside the prompt
            // count, reasoning inside the completion count.
            _ => Usage {
                input,
                output,
                total: self.total,
                cached,
                cache_write,
                reasoning,
            },
        }
    }
}

/// Which field, if any, a leaf path carries, for a format.
fn field_for(format: Format, path: &[Key]) -> Option<Field> {
    use Key::*;
    // Wrappers: Responses API events (`response`), Anthropic's `message_start`
    // (`message`), JSON-array streams (Gemini without SSE: an array element).
    let path = match path {
        [Index, rest @ ..] | [Response, rest @ ..] | [Message, rest @ ..] => rest,
        _ => path,
    };
    match format {
        Format::OpenAiChat
        | Format::OpenAiCompletions
        | Format::OpenAiEmbeddings
        | Format::OpenAiResponses => match path {
            [Usage, PromptTokens] | [Usage, InputTokens] => Some(Field::Input),
            [Usage, CompletionTokens] | [Usage, OutputTokens] => Some(Field::Output),
            [Usage, TotalTokens] => Some(Field::Total),
            [Usage, PromptTokensDetails, CachedTokens]
            | [Usage, InputTokensDetails, CachedTokens] => Some(Field::CacheRead),
            [Usage, CompletionTokensDetails, ReasoningTokens]
            | [Usage, OutputTokensDetails, ReasoningTokens] => Some(Field::Reasoning),
            _ => None,
        },
        Format::AnthropicMessages => match path {
            [Usage, InputTokens] => Some(Field::Input),
            [Usage, OutputTokens] => Some(Field::Output),
            [Usage, CacheReadInputTokens] => Some(Field::CacheRead),
            [Usage, CacheCreationInputTokens] => Some(Field::CacheWrite),
            _ => None,
        },
        Format::GeminiGenerate => match path {
            [UsageMetadata, PromptTokenCount] => Some(Field::Input),
            [UsageMetadata, CandidatesTokenCount] => Some(Field::Output),
            [UsageMetadata, TotalTokenCount] => Some(Field::Total),
            [UsageMetadata, CachedContentTokenCount] => Some(Field::CacheRead),
            [UsageMetadata, ThoughtsTokenCount] => Some(Field::Reasoning),
            _ => None,
        },
        Format::BedrockConverse => match path {
            [Usage, InputTokensCamel] => Some(Field::Input),
            [Usage, OutputTokensCamel] => Some(Field::Output),
            [Usage, TotalTokensCamel] => Some(Field::Total),
            [Usage, CacheReadInputTokensCamel] => Some(Field::CacheRead),
            [Usage, CacheWriteInputTokensCamel] => Some(Field::CacheWrite),
            _ => None,
        },
        Format::OllamaNative => match path {
            [PromptEvalCount] => Some(Field::Input),
            [EvalCount] => Some(Field::Output),
            _ => None,
        },
    }
}

fn is_model(path: &[Key]) -> bool {
    let path = match path {
        [Key::Index, rest @ ..] | [Key::Response, rest @ ..] | [Key::Message, rest @ ..] => rest,
        _ => path,
    };
    matches!(path, [Key::Model] | [Key::ModelVersion])
}

struct FormatSink<'a> {
    format: Format,
    raw: &'a mut Raw,
}

impl Sink for FormatSink<'_> {
    fn leaf(&mut self, path: &[Key], value: Value<'_>) {
        match value {
            Value::Uint(n) => {
                if let Some(field) = field_for(self.format, path) {
                    self.raw.set(field, n);
                }
            }
            Value::Str(s) => {
                if is_model(path) && !s.is_empty() {
                    self.raw.model = Some(String::from_utf8_lossy(s).into_owned());
                }
            }
            Value::TextBytes(n) => {
                // Generated text only: not the request echoed back (`message` in
                // Anthropic's message_start has no text), not tool schemas.
                self.raw.text_bytes = self.raw.text_bytes.saturating_add(n);
            }
        }
    }
}

/// How the response body is framed, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Json,
    Sse,
    Ndjson,
    EventStream,
}

impl Framing {
    pub fn from_content_type(content_type: Option<&str>) -> Framing {
        let ct = content_type.unwrap_or("").trim_start().to_ascii_lowercase();
        if ct.starts_with("text/event-stream") {
            Framing::Sse
        } else if ct.starts_with("application/vnd.amazon.eventstream") {
            Framing::EventStream
        } else if ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl") {
            Framing::Ndjson
        } else {
            Framing::Json
        }
    }
}

#[derive(Debug)]
enum Decoder {
    Json(Scanner),
    Ndjson(Scanner),
    Sse(SseFramer),
    EventStream(EventStreamFramer),
}

/// Incremental usage parser for one response.
#[derive(Debug)]
pub struct UsageParser {
    format: Format,
    decoder: Decoder,
    raw: Raw,
    bytes: u64,
}

impl UsageParser {
    pub fn new(format: Format, framing: Framing) -> Self {
        let decoder = match framing {
            Framing::Json => Decoder::Json(Scanner::default()),
            Framing::Ndjson => Decoder::Ndjson(Scanner::default()),
            Framing::Sse => Decoder::Sse(SseFramer::default()),
            Framing::EventStream => Decoder::EventStream(EventStreamFramer::default()),
        };
        UsageParser {
            format,
            decoder,
            raw: Raw::default(),
            bytes: 0,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        let mut sink = FormatSink {
            format: self.format,
            raw: &mut self.raw,
        };
        match &mut self.decoder {
            Decoder::Json(scanner) => scanner.feed(chunk, &mut sink),
            Decoder::Sse(framer) => framer.feed(chunk, &mut sink),
            Decoder::EventStream(framer) => framer.feed(chunk, &mut sink),
            Decoder::Ndjson(scanner) => {
                // One JSON document per line.
                for (i, line) in chunk.split(|&b| b == b'\n').enumerate() {
                    if i > 0 {
                        scanner.finish(&mut sink);
                        scanner.reset();
                    }
                    scanner.feed(line, &mut sink);
                }
            }
        }
    }

    /// End of body. Returns the usage the provider reported, if it reported any.
    pub fn finish(&mut self) -> Option<Usage> {
        let mut sink = FormatSink {
            format: self.format,
            raw: &mut self.raw,
        };
        match &mut self.decoder {
            Decoder::Json(scanner) | Decoder::Ndjson(scanner) => scanner.finish(&mut sink),
            Decoder::Sse(framer) => framer.finish(&mut sink),
            Decoder::EventStream(_) => {}
        }
        self.raw.seen.then(|| self.raw.usage(self.format))
    }

    /// Usage seen so far, without ending the parse.
    pub fn seen(&self) -> bool {
        self.raw.seen
    }

    /// Streams of this format report usage before they end (so a report seen in a cut
    /// stream may be partial): Anthropic and Gemini streams.
    pub fn reports_early(&self) -> bool {
        matches!(
            self.decoder,
            Decoder::Sse(_) | Decoder::Json(_) | Decoder::Ndjson(_)
        ) && matches!(
            self.format,
            Format::AnthropicMessages | Format::GeminiGenerate
        )
    }

    /// Model named by the response, if any.
    pub fn model(&self) -> Option<&str> {
        self.raw.model.as_deref()
    }

    /// Response body bytes seen so far.
    pub fn body_bytes(&self) -> u64 {
        self.bytes
    }

    /// Output tokens estimated from the generated text seen so far, for a response
    /// that ended before the provider reported usage.
    pub fn estimated_output(&self) -> u64 {
        estimate_tokens(self.raw.text_bytes)
    }
}

/// Rough token estimate for bytes of text when the provider never said (about four
/// bytes per token for English text and JSON).
pub fn estimate_tokens(bytes: u64) -> u64 {
    bytes.div_ceil(4)
}

#[cfg(test)]
mod tests;
