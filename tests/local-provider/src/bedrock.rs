//! AWS Bedrock Converse (`POST /model/{modelId}/converse`) and ConverseStream
//! (`POST /model/{modelId}/converse-stream`, AWS event-stream binary frames: events
//! `messageStart`, `contentBlockDelta`…, `contentBlockStop`, `messageStop`, `metadata`
//! with the usage). Requests must be SigV4-signed (`Authorization: AWS4-HMAC-SHA256
//! Credential=…`) when the server is started with `--expect-sigv4`; Alfred's Envoy signs
//! them with its own AWS request-signing filter after the Alfred filter.
//!
//! Usage rule: `inputTokens` = Σ over `system` blocks (3 + words) + Σ over messages
//! (3 + words of the `text` of its content blocks); `outputTokens` = the reply's words,
//! cut to `inferenceConfig.maxTokens`.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::behaviour::Behaviour;
use crate::dialect::{Auth, Call, Dialect, Refusal, Rendered, ResponseMeta};
use crate::eventstream;
use crate::openai::parse_json;
use crate::usage::{prompt_tokens, text_words, Reply, Usage, PER_MESSAGE_TOKENS};

pub const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

#[derive(Debug, Default, Clone, Copy)]
pub struct Bedrock;

fn error(status: u16, aws_type: &str, message: &str) -> Rendered {
    let mut rendered = Rendered::json(status, json!({"message": message}).to_string());
    rendered.headers.push((
        "x-amzn-errortype",
        format!("{aws_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
    ));
    rendered
}

impl Dialect for Bedrock {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    fn paths(&self) -> Vec<&'static str> {
        vec![
            "/model/{model_id}/converse",
            "/model/{model_id}/converse-stream",
        ]
    }

    fn auth(&self) -> Auth {
        Auth::SigV4
    }

    fn refuse(&self, refusal: &Refusal) -> Rendered {
        match refusal {
            Refusal::InvalidCredential => error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
            Refusal::BadRequest(message) => error(400, "ValidationException", message),
            Refusal::LeakedClientKey => error(
                400,
                "ValidationException",
                "local provider: a client key (tp-…) reached the provider (client_key_leaked)",
            ),
            Refusal::Injected(status) => {
                let aws = match status {
                    429 => "ThrottlingException",
                    503 => "ServiceUnavailableException",
                    500..=599 => "InternalServerException",
                    _ => "ValidationException",
                };
                error(*status, aws, "Injected failure (x-local-provider-fail).")
            }
        }
    }

    fn render(
        &self,
        call: &Call<'_>,
        behaviour: &Behaviour,
        meta: &ResponseMeta,
    ) -> Result<Rendered, Refusal> {
        let _ = meta;
        let bad = |m: &str| Refusal::BadRequest(m.to_owned());
        let stream = call.path.ends_with("/converse-stream");
        let request = parse_json(call.body).map_err(Refusal::BadRequest)?;
        let messages = request
            .get("messages")
            .and_then(Value::as_array)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| bad("A conversation must start with a user message."))?;
        let system: u64 = request
            .get("system")
            .and_then(Value::as_array)
            .map_or(0, |blocks| {
                blocks
                    .iter()
                    .map(|b| PER_MESSAGE_TOKENS + b.get("text").map_or(0, text_words))
                    .sum()
            });
        let max_tokens = request
            .pointer("/inferenceConfig/maxTokens")
            .and_then(Value::as_u64);
        let reply = Reply::new(behaviour.reply_words, max_tokens);
        let usage = Usage {
            prompt_tokens: system + prompt_tokens(messages),
            completion_tokens: reply.completion_tokens(),
        };
        let usage_json = json!({"inputTokens": usage.prompt_tokens, "outputTokens": usage.completion_tokens,
                                "totalTokens": usage.total_tokens()});
        let stop_reason = if reply.truncated {
            "max_tokens"
        } else {
            "end_turn"
        };
        if !stream {
            let doc = json!({
                "output": {"message": {"role": "assistant", "content": [{"text": reply.text()}]}},
                "stopReason": stop_reason, "usage": usage_json, "metrics": {"latencyMs": 1},
            });
            return Ok(Rendered::json_with_usage(doc.to_string(), usage));
        }
        let mut frames: Vec<Bytes> = vec![eventstream::event(
            "messageStart",
            &json!({"role": "assistant"}).to_string(),
        )];
        for piece in reply.pieces() {
            frames.push(eventstream::event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": {"text": piece}}).to_string(),
            ));
        }
        frames.push(eventstream::event(
            "contentBlockStop",
            &json!({"contentBlockIndex": 0}).to_string(),
        ));
        frames.push(eventstream::event(
            "messageStop",
            &json!({"stopReason": stop_reason}).to_string(),
        ));
        frames.push(eventstream::event(
            "metadata",
            &json!({"usage": usage_json, "metrics": {"latencyMs": 1}}).to_string(),
        ));
        let count = frames.len();
        Ok(Rendered::stream(EVENT_STREAM, frames, usage, Some(count)))
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

    fn body() -> String {
        json!({"messages": [{"role": "user", "content": [{"text": "Hello!"}]}],
               "system": [{"text": "be brief"}], "inferenceConfig": {"maxTokens": 100}})
        .to_string()
    }

    #[test]
    fn converse_json() {
        let body = body();
        let call = Call {
            path: "/model/anthropic.claude-3-haiku-20240307-v1:0/converse",
            query: "",
            body: body.as_bytes(),
        };
        let r = Bedrock
            .render(&call, &Behaviour::default(), &meta())
            .unwrap();
        let doc: Value = serde_json::from_slice(&r.frames[0]).unwrap();
        assert_eq!(
            doc["output"]["message"]["content"][0]["text"],
            crate::usage::REPLY_TEXT
        );
        assert_eq!(
            doc["usage"],
            json!({"inputTokens": 9, "outputTokens": 24, "totalTokens": 33})
        );
        assert_eq!(doc["stopReason"], "end_turn");
    }

    #[test]
    fn converse_stream_frames_decode_with_valid_crcs() {
        let body = body();
        let call = Call {
            path: "/model/m/converse-stream",
            query: "",
            body: body.as_bytes(),
        };
        let r = Bedrock
            .render(&call, &Behaviour::default(), &meta())
            .unwrap();
        assert_eq!(r.content_type, EVENT_STREAM);
        let all: Vec<u8> = r.frames.iter().flat_map(|f| f.to_vec()).collect();
        let mut at = 0;
        let mut types = Vec::new();
        let mut last = Value::Null;
        while at < all.len() {
            let (decoded, len) = eventstream::decode(&all[at..]).unwrap();
            types.push(decoded.headers[0].1.clone());
            last = serde_json::from_slice(&decoded.payload).unwrap();
            at += len;
        }
        assert_eq!(types.len(), 1 + 24 + 3);
        assert_eq!(types[0], "messageStart");
        assert_eq!(types[1], "contentBlockDelta");
        assert_eq!(
            &types[25..],
            ["contentBlockStop", "messageStop", "metadata"]
        );
        assert_eq!(last["usage"]["totalTokens"], 33);
    }

    #[test]
    fn errors_carry_the_aws_error_type() {
        let r = Bedrock.refuse(&Refusal::Injected(429));
        assert_eq!(r.status, 429);
        assert!(r.headers[0].1.starts_with("ThrottlingException:"));
    }
}
