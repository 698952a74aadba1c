//! Ollama's native API (`POST /api/chat`, `POST /api/generate`), keyless as an in-mesh
//! Ollama is: any credential header arriving is refused when the server checks keys.
//! Ollama streams by default: NDJSON (`application/x-ndjson`), one object per line,
//! the last with `"done": true`, `prompt_eval_count` and `eval_count`; with
//! `"stream": false` one JSON object. Served at the root and under `/ollama` (so one
//! local provider stands in for an Ollama base URL ending in `/ollama`).
//!
//! Usage rule: `prompt_eval_count` = chat: Σ over messages (3 + words); generate: 3 +
//! words of `prompt` (+ 3 + words of `system`, when given); `eval_count` = the reply's
//! words, cut to `options.num_predict`.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::behaviour::Behaviour;
use crate::dialect::{Auth, Call, Dialect, Refusal, Rendered, ResponseMeta};
use crate::openai::parse_json;
use crate::usage::{count_words, prompt_tokens, Reply, Usage, PER_MESSAGE_TOKENS};

pub const NDJSON: &str = "application/x-ndjson";
const CREATED_AT: &str = "2026-01-01T00:00:00.000000000Z";

#[derive(Debug, Default, Clone, Copy)]
pub struct Ollama;

fn line(value: &Value) -> Bytes {
    Bytes::from(format!("{value}\n"))
}

impl Dialect for Ollama {
    fn name(&self) -> &'static str {
        "ollama"
    }

    fn paths(&self) -> Vec<&'static str> {
        vec![
            "/api/chat",
            "/api/generate",
            "/ollama/api/chat",
            "/ollama/api/generate",
        ]
    }

    fn auth(&self) -> Auth {
        Auth::None
    }

    fn refuse(&self, refusal: &Refusal) -> Rendered {
        let (status, message) = match refusal {
            Refusal::InvalidCredential => (
                401,
                "unauthorized: this Ollama takes no credential".to_owned(),
            ),
            Refusal::BadRequest(message) => (400, message.clone()),
            Refusal::LeakedClientKey => (
                400,
                "local provider: a client key (tp-…) reached the provider (client_key_leaked)"
                    .to_owned(),
            ),
            Refusal::Injected(status) => (
                *status,
                "Injected failure (x-local-provider-fail).".to_owned(),
            ),
        };
        Rendered::json(status, json!({"error": message}).to_string())
    }

    fn render(
        &self,
        call: &Call<'_>,
        behaviour: &Behaviour,
        meta: &ResponseMeta,
    ) -> Result<Rendered, Refusal> {
        let _ = meta;
        let bad = |m: &str| Refusal::BadRequest(m.to_owned());
        let chat = call.path.ends_with("/api/chat");
        let request = parse_json(call.body).map_err(Refusal::BadRequest)?;
        let model = request
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| bad("model is required"))?
            .to_owned();
        let prompt = if chat {
            let messages = request
                .get("messages")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("messages is required"))?;
            prompt_tokens(messages)
        } else {
            let text = request
                .get("prompt")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("prompt is required"))?;
            let system = request
                .get("system")
                .and_then(Value::as_str)
                .map_or(0, |s| PER_MESSAGE_TOKENS + count_words(s));
            system + PER_MESSAGE_TOKENS + count_words(text)
        };
        let max_tokens = request
            .pointer("/options/num_predict")
            .and_then(Value::as_u64);
        let stream = request
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let reply = Reply::new(behaviour.reply_words, max_tokens);
        let usage = Usage {
            prompt_tokens: prompt,
            completion_tokens: reply.completion_tokens(),
        };
        let done_reason = if reply.truncated { "length" } else { "stop" };
        let piece = |text: &str, done: bool| {
            let mut doc = json!({"model": model, "created_at": CREATED_AT});
            if chat {
                doc["message"] = json!({"role": "assistant", "content": text});
            } else {
                doc["response"] = json!(text);
            }
            doc["done"] = json!(done);
            if done {
                doc["done_reason"] = json!(done_reason);
                if !chat {
                    doc["context"] = json!([1, 2, 3]);
                }
                doc["total_duration"] = json!(1_000_000);
                doc["load_duration"] = json!(1000);
                doc["prompt_eval_count"] = json!(usage.prompt_tokens);
                doc["prompt_eval_duration"] = json!(1000);
                doc["eval_count"] = json!(usage.completion_tokens);
                doc["eval_duration"] = json!(1000);
            }
            doc
        };
        if !stream {
            return Ok(Rendered::json_with_usage(
                piece(&reply.text(), true).to_string(),
                usage,
            ));
        }
        let mut frames: Vec<Bytes> = reply
            .pieces()
            .iter()
            .map(|p| line(&piece(p, false)))
            .collect();
        frames.push(line(&piece("", true)));
        let count = frames.len();
        Ok(Rendered::stream(NDJSON, frames, usage, Some(count)))
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

    fn render(path: &str, body: Value) -> Rendered {
        let body = body.to_string();
        Ollama
            .render(
                &Call {
                    path,
                    query: "",
                    body: body.as_bytes(),
                },
                &Behaviour::default(),
                &meta(),
            )
            .unwrap()
    }

    #[test]
    fn chat_streams_ndjson_by_default() {
        let r = render(
            "/api/chat",
            json!({"model": "llama3.2", "messages": [{"role": "user", "content": "Hello!"}]}),
        );
        assert_eq!(r.content_type, NDJSON);
        let text: String = r
            .frames
            .iter()
            .map(|f| String::from_utf8(f.to_vec()).unwrap())
            .collect();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 25);
        assert_eq!(lines[0]["message"]["content"], "Hello");
        assert_eq!(lines[0]["done"], false);
        let last = lines.last().unwrap();
        assert_eq!(last["done"], true);
        assert_eq!(last["prompt_eval_count"], 4);
        assert_eq!(last["eval_count"], 24);
    }

    #[test]
    fn generate_without_stream_is_one_object() {
        let r = render(
            "/ollama/api/generate",
            json!({"model": "m", "prompt": "Say hi", "stream": false, "options": {"num_predict": 2}}),
        );
        assert!(!r.stream);
        let doc: Value = serde_json::from_slice(&r.frames[0]).unwrap();
        assert_eq!(doc["response"], "Hello from");
        assert_eq!(doc["done_reason"], "length");
        assert_eq!(doc["prompt_eval_count"], 5);
        assert_eq!(doc["eval_count"], 2);
    }
}
