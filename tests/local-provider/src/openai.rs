//! OpenAI chat completions (`POST /v1/chat/completions`), byte-compatible with the real
//! API: the `chat.completion` JSON document, or an SSE stream of
//! `chat.completion.chunk` events ending with `data: [DONE]`, with the usage chunk
//! (`"choices":[]`) only when the request set `stream_options.include_usage`.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::behaviour::Behaviour;
use crate::dialect::{Auth, Call, Dialect, Refusal, Rendered, ResponseMeta};
use crate::sse;
use crate::usage::{prompt_tokens, Reply, Usage};

pub const SYSTEM_FINGERPRINT: &str = "fp_local";
pub(crate) const EVENT_STREAM: &str = "text/event-stream";

/// What the provider needs from a chat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    pub model: String,
    pub prompt_tokens: u64,
    pub max_tokens: Option<u64>,
    pub stream: bool,
    pub include_usage: bool,
}

impl ChatRequest {
    /// Parses and validates a request body the way the real API would refuse it.
    pub fn parse(body: &[u8]) -> Result<ChatRequest, String> {
        ChatRequest::parse_with_default_model(body, None)
    }

    /// As [`ChatRequest::parse`]; `default_model` stands in for a missing `model` (Azure
    /// names the model by deployment in the path).
    pub fn parse_with_default_model(
        body: &[u8],
        default_model: Option<&str>,
    ) -> Result<ChatRequest, String> {
        let value = parse_json(body)?;
        let model = model_of(&value, default_model)?;
        let messages = value
            .get("messages")
            .and_then(Value::as_array)
            .filter(|messages| !messages.is_empty())
            .ok_or("'messages' must be a non-empty array")?;
        let max_tokens = limit(&value, "max_completion_tokens")?.or(limit(&value, "max_tokens")?);
        let (stream, include_usage) = stream_flags(&value)?;
        Ok(ChatRequest {
            model,
            prompt_tokens: prompt_tokens(messages),
            max_tokens,
            stream,
            include_usage,
        })
    }
}

/// The body as JSON, refused like OpenAI when it is not.
pub fn parse_json(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body)
        .map_err(|err| format!("We could not parse the JSON body of your request: {err}"))
}

/// The request's `model`, else `default_model`.
pub fn model_of(value: &Value, default_model: Option<&str>) -> Result<String, String> {
    value
        .get("model")
        .and_then(Value::as_str)
        .filter(|model| !model.is_empty())
        .or(default_model)
        .map(str::to_owned)
        .ok_or_else(|| "you must provide a model parameter".to_owned())
}

/// An optional non-negative integer field.
pub fn limit(value: &Value, name: &str) -> Result<Option<u64>, String> {
    match value.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("'{name}' must be a non-negative integer")),
    }
}

/// `stream` and `stream_options.include_usage`, refusing stream options without a stream.
pub fn stream_flags(value: &Value) -> Result<(bool, bool), String> {
    let stream = value
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let include_usage = value
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !stream && value.get("stream_options").is_some_and(|v| !v.is_null()) {
        return Err(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".to_owned(),
        );
    }
    Ok((stream, include_usage))
}

// ---- wire types (field order = OpenAI's) ----

#[derive(Serialize)]
struct PromptTokensDetails {
    cached_tokens: u64,
    audio_tokens: u64,
}

#[derive(Serialize)]
struct CompletionTokensDetails {
    reasoning_tokens: u64,
    audio_tokens: u64,
    accepted_prediction_tokens: u64,
    rejected_prediction_tokens: u64,
}

#[derive(Serialize)]
pub(crate) struct WireUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptTokensDetails,
    completion_tokens_details: CompletionTokensDetails,
}

impl From<Usage> for WireUsage {
    fn from(usage: Usage) -> Self {
        WireUsage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens(),
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: 0,
                audio_tokens: 0,
            },
            completion_tokens_details: CompletionTokensDetails {
                reasoning_tokens: 0,
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        }
    }
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<&'static str>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<Choice<'a>>,
    usage: WireUsage,
    system_fingerprint: &'static str,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    // Present (as null) only on the first chunk, like the real API.
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<Option<&'static str>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<ChunkChoice<'a>>,
    // `"usage": null` on every chunk when include_usage is set; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<WireUsage>>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    // Serialising these plain structs cannot fail; an empty object keeps the
    // provider answering rather than panicking if it ever did.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

/// The OpenAI error document.
pub fn error_json(message: &str, kind: &str, code: Option<&str>) -> String {
    to_json(&ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            param: None,
            code,
        },
    })
}

fn json_rendered(status: u16, body: String) -> Rendered {
    Rendered::json(status, body)
}

/// Which OpenAI-style operation a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Chat,
    Completions,
    Embeddings,
    Responses,
}

impl Operation {
    /// The operation of a path ending in `/chat/completions`, `/completions`, …
    pub fn from_path(path: &str) -> Option<Operation> {
        if path.ends_with("/chat/completions") {
            Some(Operation::Chat)
        } else if path.ends_with("/completions") {
            Some(Operation::Completions)
        } else if path.ends_with("/embeddings") {
            Some(Operation::Embeddings)
        } else if path.ends_with("/responses") {
            Some(Operation::Responses)
        } else {
            None
        }
    }
}

/// The OpenAI API family: the same wire format served by OpenAI itself (`/v1/…`),
/// vLLM/TGI and Ollama's OpenAI-compatible endpoint (mounted here under `/vllm/v1/…`
/// and `/ollama/v1/…` so one local provider can stand in for all of them), and Azure
/// OpenAI (`/openai/deployments/{deployment}/…?api-version=…`, `api-key` header).
#[derive(Debug, Clone, Copy)]
pub struct OpenAi {
    name: &'static str,
    paths: &'static [&'static str],
    auth: Auth,
    azure: bool,
}

impl OpenAi {
    pub const OPENAI: OpenAi = OpenAi {
        name: "openai",
        paths: &[
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
            "/v1/responses",
        ],
        auth: Auth::Bearer,
        azure: false,
    };
    pub const VLLM: OpenAi = OpenAi {
        name: "vllm",
        paths: &[
            "/vllm/v1/chat/completions",
            "/vllm/v1/completions",
            "/vllm/v1/embeddings",
            "/vllm/v1/responses",
        ],
        auth: Auth::Bearer,
        azure: false,
    };
    pub const OLLAMA: OpenAi = OpenAi {
        name: "ollama",
        paths: &[
            "/ollama/v1/chat/completions",
            "/ollama/v1/completions",
            "/ollama/v1/embeddings",
            "/ollama/v1/responses",
        ],
        auth: Auth::None,
        azure: false,
    };
    pub const AZURE: OpenAi = OpenAi {
        name: "azure",
        paths: &[
            "/openai/deployments/{deployment}/chat/completions",
            "/openai/deployments/{deployment}/completions",
            "/openai/deployments/{deployment}/embeddings",
            "/openai/deployments/{deployment}/responses",
        ],
        auth: Auth::Header("api-key"),
        azure: true,
    };

    fn finish_reason(reply: &Reply) -> &'static str {
        if reply.truncated {
            "length"
        } else {
            "stop"
        }
    }

    fn complete(
        request: &ChatRequest,
        reply: &Reply,
        usage: Usage,
        meta: &ResponseMeta,
    ) -> Rendered {
        let text = reply.text();
        let body = to_json(&Completion {
            id: &meta.id,
            object: "chat.completion",
            created: meta.created,
            model: &request.model,
            choices: vec![Choice {
                index: 0,
                message: Message {
                    role: "assistant",
                    content: &text,
                    refusal: None,
                },
                logprobs: None,
                finish_reason: Self::finish_reason(reply),
            }],
            usage: usage.into(),
            system_fingerprint: SYSTEM_FINGERPRINT,
        });
        Rendered::json_with_usage(body, usage)
    }

    fn stream(request: &ChatRequest, reply: &Reply, usage: Usage, meta: &ResponseMeta) -> Rendered {
        let include_usage = request.include_usage;
        let chunk = |delta: Delta, finish_reason: Option<&'static str>| {
            to_json(&Chunk {
                id: &meta.id,
                object: "chat.completion.chunk",
                created: meta.created,
                model: &request.model,
                system_fingerprint: SYSTEM_FINGERPRINT,
                choices: vec![ChunkChoice {
                    index: 0,
                    delta,
                    logprobs: None,
                    finish_reason,
                }],
                usage: include_usage.then_some(None),
            })
        };
        let mut frames = vec![sse::data_event(&chunk(
            Delta {
                role: Some("assistant"),
                content: Some(""),
                refusal: Some(None),
            },
            None,
        ))];
        for piece in reply.pieces() {
            frames.push(sse::data_event(&chunk(
                Delta {
                    content: Some(&piece),
                    ..Delta::default()
                },
                None,
            )));
        }
        frames.push(sse::data_event(&chunk(
            Delta::default(),
            Some(Self::finish_reason(reply)),
        )));
        let mut reported_after = None;
        if request.include_usage {
            frames.push(sse::data_event(&to_json(&Chunk {
                id: &meta.id,
                object: "chat.completion.chunk",
                created: meta.created,
                model: &request.model,
                system_fingerprint: SYSTEM_FINGERPRINT,
                choices: vec![],
                usage: Some(Some(usage.into())),
            })));
            reported_after = Some(frames.len());
        }
        frames.push(Bytes::from_static(sse::DONE.as_bytes()));
        Rendered::stream(EVENT_STREAM, frames, usage, reported_after)
    }

    fn chat(
        body: &[u8],
        default_model: Option<&str>,
        behaviour: &Behaviour,
        meta: &ResponseMeta,
    ) -> Result<Rendered, Refusal> {
        let request = ChatRequest::parse_with_default_model(body, default_model)
            .map_err(Refusal::BadRequest)?;
        let reply = Reply::new(behaviour.reply_words, request.max_tokens);
        let usage = Usage {
            prompt_tokens: request.prompt_tokens,
            completion_tokens: reply.completion_tokens(),
        };
        Ok(if request.stream {
            Self::stream(&request, &reply, usage, meta)
        } else {
            Self::complete(&request, &reply, usage, meta)
        })
    }
}

impl Dialect for OpenAi {
    fn name(&self) -> &'static str {
        self.name
    }

    fn paths(&self) -> Vec<&'static str> {
        self.paths.to_vec()
    }

    fn auth(&self) -> Auth {
        self.auth
    }

    fn refuse(&self, refusal: &Refusal) -> Rendered {
        match refusal {
            Refusal::InvalidCredential => json_rendered(
                401,
                error_json(
                    "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    Some("invalid_api_key"),
                ),
            ),
            Refusal::BadRequest(message) => json_rendered(400, error_json(message, "invalid_request_error", None)),
            Refusal::LeakedClientKey => json_rendered(
                400,
                error_json(
                    "local provider: a client key (tp-…) reached the provider; the gateway must swap it for the provider credential",
                    "invalid_request_error",
                    Some("client_key_leaked"),
                ),
            ),
            Refusal::Injected(status) => {
                let (message, kind, code) = match status {
                    429 => ("Rate limit reached for requests (injected by x-local-provider-fail).", "requests", Some("rate_limit_exceeded")),
                    500..=599 => ("The server had an error while processing your request. Sorry about that! (injected by x-local-provider-fail)", "server_error", None),
                    _ => ("Injected failure (x-local-provider-fail).", "invalid_request_error", None),
                };
                json_rendered(*status, error_json(message, kind, code))
            }
        }
    }

    fn render(
        &self,
        call: &Call<'_>,
        behaviour: &Behaviour,
        meta: &ResponseMeta,
    ) -> Result<Rendered, Refusal> {
        let deployment = if self.azure {
            if call.query_param("api-version").is_none_or(str::is_empty) {
                return Err(Refusal::BadRequest(
                    "Missing API version: the api-version query parameter is required.".to_owned(),
                ));
            }
            call.path
                .strip_prefix("/openai/deployments/")
                .and_then(|rest| rest.split('/').next())
        } else {
            None
        };
        match Operation::from_path(call.path) {
            Some(Operation::Chat) | None => Self::chat(call.body, deployment, behaviour, meta),
            Some(Operation::Completions) => {
                crate::openai_extra::completions(call.body, deployment, behaviour, meta)
            }
            Some(Operation::Embeddings) => {
                crate::openai_extra::embeddings(call.body, deployment, meta)
            }
            Some(Operation::Responses) => {
                crate::responses::render(call.body, deployment, behaviour, meta)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> ResponseMeta {
        ResponseMeta {
            id: "chatcmpl-local-1".to_owned(),
            created: 1_764_466_000,
        }
    }

    fn render(body: Value) -> Rendered {
        let body = body.to_string();
        let call = Call {
            path: "/v1/chat/completions",
            query: "",
            body: body.as_bytes(),
        };
        OpenAi::OPENAI
            .render(&call, &Behaviour::default(), &meta())
            .unwrap()
    }

    fn events(rendered: &Rendered) -> Vec<String> {
        let text: String = rendered
            .frames
            .iter()
            .map(|f| String::from_utf8(f.to_vec()).unwrap())
            .collect();
        assert!(text.ends_with("\n\n"));
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                e.strip_prefix("data: ")
                    .expect("every event is a data line")
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn non_streaming_completion_has_openai_shape_and_exact_usage() {
        let rendered = render(
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there!"}]}),
        );
        assert_eq!(rendered.status, 200);
        assert_eq!(rendered.content_type, "application/json");
        let body: Value = serde_json::from_slice(&rendered.frames[0]).unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["id"], "chatcmpl-local-1");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert_eq!(body["choices"][0]["message"]["refusal"], Value::Null);
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            body["choices"][0]["message"]["content"],
            crate::usage::REPLY_TEXT
        );
        assert_eq!(body["usage"]["prompt_tokens"], 5);
        assert_eq!(body["usage"]["completion_tokens"], 24);
        assert_eq!(body["usage"]["total_tokens"], 29);
        assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
        assert_eq!(
            body["usage"]["completion_tokens_details"]["reasoning_tokens"],
            0
        );
        assert_eq!(body["system_fingerprint"], "fp_local");
        let reported = rendered.reported.unwrap();
        assert_eq!(reported.usage.total_tokens(), 29);
        assert_eq!(reported.complete_at, rendered.frames[0].len());
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let rendered = render(
            json!({"model": "m", "max_tokens": 10, "max_completion_tokens": 2,
            "messages": [{"role": "user", "content": "hi"}]}),
        );
        let body: Value = serde_json::from_slice(&rendered.frames[0]).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "Hello from");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(body["usage"]["total_tokens"], 4 + 2);
    }

    #[test]
    fn stream_without_include_usage_has_no_usage_at_all() {
        let rendered = render(
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(rendered.content_type, "text/event-stream");
        assert_eq!(rendered.reported, None);
        let events = events(&rendered);
        assert_eq!(events.last().unwrap(), "[DONE]");
        // role chunk + 24 words + finish chunk + [DONE]
        assert_eq!(events.len(), 1 + 24 + 1 + 1);
        for event in &events[..events.len() - 1] {
            let chunk: Value = serde_json::from_str(event).unwrap();
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert!(
                chunk.get("usage").is_none(),
                "no usage key without include_usage: {event}"
            );
            assert_eq!(chunk["choices"].as_array().unwrap().len(), 1);
        }
        let first: Value = serde_json::from_str(&events[0]).unwrap();
        assert_eq!(
            first["choices"][0]["delta"],
            json!({"role": "assistant", "content": "", "refusal": null})
        );
        let finish: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
        assert_eq!(finish["choices"][0]["delta"], json!({}));
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let content: String = events[1..25]
            .iter()
            .map(|e| {
                serde_json::from_str::<Value>(e).unwrap()["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(content, crate::usage::REPLY_TEXT);
    }

    #[test]
    fn stream_with_include_usage_ends_with_a_usage_chunk() {
        let rendered = render(
            json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}),
        );
        let events = events(&rendered);
        assert_eq!(events.len(), 1 + 24 + 1 + 1 + 1);
        for event in &events[..events.len() - 2] {
            let chunk: Value = serde_json::from_str(event).unwrap();
            assert_eq!(chunk["usage"], Value::Null);
            assert!(chunk.get("usage").is_some());
        }
        let usage_chunk: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
        assert_eq!(usage_chunk["choices"], json!([]));
        assert_eq!(usage_chunk["usage"]["prompt_tokens"], 5 + 4);
        assert_eq!(usage_chunk["usage"]["completion_tokens"], 24);
        assert_eq!(usage_chunk["usage"]["total_tokens"], 33);
        let reported = rendered.reported.unwrap();
        let done_len = sse::DONE.len();
        assert_eq!(
            reported.complete_at,
            sse::total_len(&rendered.frames) - done_len
        );
    }

    #[test]
    fn bad_requests_are_refused_like_openai() {
        let bad = |body: &str| {
            let call = Call {
                path: "/v1/chat/completions",
                query: "",
                body: body.as_bytes(),
            };
            OpenAi::OPENAI.render(&call, &Behaviour::default(), &meta())
        };
        assert!(matches!(bad("not json"), Err(Refusal::BadRequest(_))));
        assert!(matches!(
            bad(r#"{"messages":[{"role":"user","content":"x"}]}"#),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(
            bad(r#"{"model":"m","messages":[]}"#),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(
            bad(r#"{"model":"m","max_tokens":-1,"messages":[{"role":"user"}]}"#),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(
            bad(
                r#"{"model":"m","stream_options":{"include_usage":true},"messages":[{"role":"user"}]}"#
            ),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn refusals_use_the_openai_error_shape() {
        let rendered = OpenAi::OPENAI.refuse(&Refusal::InvalidCredential);
        assert_eq!(rendered.status, 401);
        let body: Value = serde_json::from_slice(&rendered.frames[0]).unwrap();
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], Value::Null);
        let injected = OpenAi::OPENAI.refuse(&Refusal::Injected(503));
        assert_eq!(injected.status, 503);
        let body: Value = serde_json::from_slice(&injected.frames[0]).unwrap();
        assert_eq!(body["error"]["type"], "server_error");
    }

    #[test]
    fn credential_must_be_a_bearer_token_equal_to_the_expected_one() {
        let auth = OpenAi::OPENAI.auth();
        assert!(auth.matches("Bearer sk-local", "sk-local"));
        assert!(!auth.matches("sk-local", "sk-local"));
        assert!(!auth.matches("Bearer sk-local2", "sk-local"));
        assert!(!auth.matches("Bearer tp-abc", "sk-local"));
        assert_eq!(OpenAi::AZURE.auth(), Auth::Header("api-key"));
    }

    #[test]
    fn azure_needs_an_api_version_and_names_the_model_by_deployment() {
        let body = json!({"messages": [{"role": "user", "content": "Hello!"}]}).to_string();
        let path = "/openai/deployments/my-gpt/chat/completions";
        let call = Call {
            path,
            query: "",
            body: body.as_bytes(),
        };
        assert!(matches!(
            OpenAi::AZURE.render(&call, &Behaviour::default(), &meta()),
            Err(Refusal::BadRequest(_))
        ));
        let call = Call {
            path,
            query: "api-version=2024-10-21",
            body: body.as_bytes(),
        };
        let rendered = OpenAi::AZURE
            .render(&call, &Behaviour::default(), &meta())
            .unwrap();
        let doc: Value = serde_json::from_slice(&rendered.frames[0]).unwrap();
        assert_eq!(doc["model"], "my-gpt");
        assert_eq!(doc["usage"]["total_tokens"], 28);
    }
}
