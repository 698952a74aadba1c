//! Anthropic Messages (`POST /v1/messages`, `x-api-key` + `anthropic-version`): the
//! `message` JSON, or with `"stream": true` the named SSE events `message_start` (with
//! the input usage), `content_block_start`, `ping`, `content_block_delta`…,
//! `content_block_stop`, `message_delta` (cumulative usage: the final
//! `output_tokens`), `message_stop`.
//!
//! Usage rule: `input_tokens` = (3 + words of `system`, when given) + Σ over messages
//! (3 + words); `output_tokens` = the reply's words, cut to `max_tokens` (required, as
//! in the real API). `message_start` reports `output_tokens: 1` like the real API.

use actix_web::http::header::HeaderMap;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::behaviour::Behaviour;
use crate::dialect::{Auth, Call, Dialect, Refusal, Rendered, ResponseMeta};
use crate::openai::parse_json;
use crate::sse;
use crate::usage::{prompt_tokens, text_words, Reply, Usage, PER_MESSAGE_TOKENS};

const EVENT_STREAM: &str = "text/event-stream; charset=utf-8";

#[derive(Debug, Default, Clone, Copy)]
pub struct Anthropic;

/// The Anthropic error document.
pub fn error_json(kind: &str, message: &str) -> String {
    json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
}

fn usage_json(input: u64, output: u64) -> Value {
    json!({"input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
           "output_tokens": output, "service_tier": "standard"})
}

impl Dialect for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn paths(&self) -> Vec<&'static str> {
        vec!["/v1/messages"]
    }

    fn auth(&self) -> Auth {
        Auth::Header("x-api-key")
    }

    fn check_headers(&self, headers: &HeaderMap) -> Result<(), String> {
        headers
            .get("anthropic-version")
            .map(|_| ())
            .ok_or_else(|| "anthropic-version: header is required".to_owned())
    }

    fn refuse(&self, refusal: &Refusal) -> Rendered {
        match refusal {
            Refusal::InvalidCredential => {
                Rendered::json(401, error_json("authentication_error", "invalid x-api-key"))
            }
            Refusal::BadRequest(message) => {
                Rendered::json(400, error_json("invalid_request_error", message))
            }
            Refusal::LeakedClientKey => Rendered::json(
                400,
                error_json(
                    "invalid_request_error",
                    "local provider: a client key (tp-…) reached the provider (client_key_leaked)",
                ),
            ),
            Refusal::Injected(status) => {
                let kind = match status {
                    429 => "rate_limit_error",
                    529 => "overloaded_error",
                    500..=599 => "api_error",
                    _ => "invalid_request_error",
                };
                Rendered::json(
                    *status,
                    error_json(kind, "Injected failure (x-local-provider-fail)."),
                )
            }
        }
    }

    fn render(
        &self,
        call: &Call<'_>,
        behaviour: &Behaviour,
        meta: &ResponseMeta,
    ) -> Result<Rendered, Refusal> {
        let bad = |m: &str| Refusal::BadRequest(m.to_owned());
        let request = parse_json(call.body).map_err(Refusal::BadRequest)?;
        let model = request
            .get("model")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("model: Field required"))?
            .to_owned();
        let messages = request
            .get("messages")
            .and_then(Value::as_array)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| bad("messages: Field required"))?;
        let max_tokens = request
            .get("max_tokens")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("max_tokens: Field required"))?;
        let system = request
            .get("system")
            .map_or(0, |s| PER_MESSAGE_TOKENS + text_words(s));
        let stream = request
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let reply = Reply::new(behaviour.reply_words, Some(max_tokens));
        let usage = Usage {
            prompt_tokens: system + prompt_tokens(messages),
            completion_tokens: reply.completion_tokens(),
        };
        let id = format!("msg_{}", meta.id.trim_start_matches("chatcmpl-"));
        let stop_reason = if reply.truncated {
            "max_tokens"
        } else {
            "end_turn"
        };
        if !stream {
            let doc = json!({
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": reply.text()}],
                "stop_reason": stop_reason, "stop_sequence": null,
                "usage": usage_json(usage.prompt_tokens, usage.completion_tokens),
            });
            return Ok(Rendered::json_with_usage(doc.to_string(), usage));
        }
        let mut frames: Vec<Bytes> = Vec::new();
        let mut event =
            |name: &str, data: Value| frames.push(sse::named_event(name, &data.to_string()));
        event(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": usage_json(usage.prompt_tokens, 1)}}),
        );
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        );
        event("ping", json!({"type": "ping"}));
        for piece in reply.pieces() {
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            );
        }
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        );
        event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                   "usage": {"output_tokens": usage.completion_tokens}}),
        );
        event("message_stop", json!({"type": "message_stop"}));
        let reported_after = frames.len() - 1;
        Ok(Rendered::stream(
            EVENT_STREAM,
            frames,
            usage,
            Some(reported_after),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn meta() -> ResponseMeta {
        ResponseMeta {
            id: "chatcmpl-1".into(),
            created: 1,
        }
    }

    fn render(body: Value) -> Result<Rendered, Refusal> {
        let body = body.to_string();
        Anthropic.render(
            &Call {
                path: "/v1/messages",
                query: "",
                body: body.as_bytes(),
            },
            &Behaviour::default(),
            &meta(),
        )
    }

    #[test]
    fn message_json() {
        let r = render(
            json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": "be brief",
            "messages": [{"role": "user", "content": "Hello!"}]}),
        )
        .unwrap();
        let doc: Value = serde_json::from_slice(&r.frames[0]).unwrap();
        assert_eq!(doc["type"], "message");
        assert_eq!(doc["content"][0]["text"], crate::usage::REPLY_TEXT);
        assert_eq!(doc["stop_reason"], "end_turn");
        assert_eq!(doc["usage"]["input_tokens"], 5 + 4);
        assert_eq!(doc["usage"]["output_tokens"], 24);
        assert!(matches!(
            render(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn stream_events() {
        let r = render(json!({"model": "m", "max_tokens": 3, "stream": true,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello!"}]}]}))
        .unwrap();
        let text: String = r
            .frames
            .iter()
            .map(|f| String::from_utf8(f.to_vec()).unwrap())
            .collect();
        let names: Vec<&str> = text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.lines().next().unwrap().strip_prefix("event: ").unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(text.contains(r#""stop_reason":"max_tokens""#));
        assert!(text.contains(r#""usage":{"output_tokens":3}"#));
        let reported = r.reported.unwrap();
        assert_eq!(reported.usage.total_tokens(), 4 + 3);
        assert_eq!(
            reported.complete_at,
            text.len() - r.frames.last().unwrap().len()
        );
    }
}
