//! Google Gemini (`POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent`, also under `/v1/models/…`; key in `x-goog-api-key` or
//! `?key=`). `generateContent` answers one `GenerateContentResponse`;
//! `streamGenerateContent?alt=sse` streams `data: {…}\r\n\r\n` events (Google's own
//! line endings), and without `alt=sse` a JSON array written element by element.
//! Every chunk carries `usageMetadata` with the cumulative counts so far, the last one
//! the final counts (as the real API does), so a parser must take the last, not sum.
//!
//! Usage rule: `promptTokenCount` = (3 + words of `systemInstruction`, when given) + Σ
//! over `contents` (3 + words of its `parts`); `candidatesTokenCount` = the reply's
//! words, cut to `generationConfig.maxOutputTokens`.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::behaviour::Behaviour;
use crate::dialect::{Auth, Call, Dialect, Refusal, Rendered, ResponseMeta};
use crate::openai::parse_json;
use crate::usage::{text_words, Reply, Usage, PER_MESSAGE_TOKENS};

const JSON_UTF8: &str = "application/json; charset=UTF-8";
const EVENT_STREAM: &str = "text/event-stream";

#[derive(Debug, Default, Clone, Copy)]
pub struct Gemini;

/// The Google error document.
pub fn error_json(code: u16, status: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message, "status": status}}).to_string()
}

fn parts_words(content: &Value) -> u64 {
    content.get("parts").map_or(0, text_words)
}

fn usage_metadata(prompt: u64, candidates: u64) -> Value {
    json!({"promptTokenCount": prompt, "candidatesTokenCount": candidates,
           "totalTokenCount": prompt + candidates,
           "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]})
}

impl Dialect for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn paths(&self) -> Vec<&'static str> {
        vec!["/v1beta/models/{model_method}", "/v1/models/{model_method}"]
    }

    fn auth(&self) -> Auth {
        Auth::Header("x-goog-api-key")
    }

    fn refuse(&self, refusal: &Refusal) -> Rendered {
        match refusal {
            Refusal::InvalidCredential => Rendered::json(
                400,
                error_json(
                    400,
                    "INVALID_ARGUMENT",
                    "API key not valid. Please pass a valid API key.",
                ),
            ),
            Refusal::BadRequest(message) => {
                Rendered::json(400, error_json(400, "INVALID_ARGUMENT", message))
            }
            Refusal::LeakedClientKey => Rendered::json(
                400,
                error_json(
                    400,
                    "INVALID_ARGUMENT",
                    "local provider: a client key (tp-…) reached the provider (client_key_leaked)",
                ),
            ),
            Refusal::Injected(status) => {
                let google = match status {
                    429 => "RESOURCE_EXHAUSTED",
                    503 => "UNAVAILABLE",
                    500..=599 => "INTERNAL",
                    _ => "INVALID_ARGUMENT",
                };
                Rendered::json(
                    *status,
                    error_json(*status, google, "Injected failure (x-local-provider-fail)."),
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
        let bad = |m: String| Refusal::BadRequest(m);
        let tail = call.path.rsplit('/').next().unwrap_or_default();
        let (model, method) = tail
            .rsplit_once(':')
            .ok_or_else(|| bad(format!("Invalid path {}", call.path)))?;
        let stream = match method {
            "generateContent" => false,
            "streamGenerateContent" => true,
            other => return Err(bad(format!("Unknown method {other}"))),
        };
        let request = parse_json(call.body).map_err(bad)?;
        let contents = request
            .get("contents")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                bad("* GenerateContentRequest.contents: contents is not specified".to_owned())
            })?;
        let system = request
            .get("systemInstruction")
            .or_else(|| request.get("system_instruction"))
            .map_or(0, |s| PER_MESSAGE_TOKENS + parts_words(s));
        let prompt = system
            + contents
                .iter()
                .map(|c| PER_MESSAGE_TOKENS + parts_words(c))
                .sum::<u64>();
        let max_tokens = request
            .pointer("/generationConfig/maxOutputTokens")
            .or_else(|| request.pointer("/generation_config/max_output_tokens"))
            .and_then(Value::as_u64);
        let reply = Reply::new(behaviour.reply_words, max_tokens);
        let usage = Usage {
            prompt_tokens: prompt,
            completion_tokens: reply.completion_tokens(),
        };
        let response_id = meta.id.trim_start_matches("chatcmpl-").to_owned();
        let finish = if reply.truncated {
            "MAX_TOKENS"
        } else {
            "STOP"
        };
        let chunk = |text: &str, finish: Option<&str>, so_far: u64| {
            let mut candidate =
                json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
            if let Some(finish) = finish {
                candidate["finishReason"] = json!(finish);
            }
            json!({"candidates": [candidate], "usageMetadata": usage_metadata(prompt, so_far),
                   "modelVersion": model, "responseId": response_id})
        };
        if !stream {
            let doc = chunk(&reply.text(), Some(finish), usage.completion_tokens);
            let mut rendered = Rendered::json_with_usage(doc.to_string(), usage);
            rendered.content_type = JSON_UTF8;
            return Ok(rendered);
        }
        let pieces = reply.pieces();
        let mut docs: Vec<Value> = pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                let last = i + 1 == pieces.len();
                chunk(piece, last.then_some(finish), i as u64 + 1)
            })
            .collect();
        if docs.is_empty() {
            docs.push(chunk("", Some(finish), 0));
        }
        let count = docs.len();
        if call.query_param("alt") == Some("sse") {
            let frames = docs
                .iter()
                .map(|d| Bytes::from(format!("data: {d}\r\n\r\n")))
                .collect();
            return Ok(Rendered::stream(EVENT_STREAM, frames, usage, Some(count)));
        }
        // The JSON-array form: "[" first element, then ",\r\n" before each next one, "]".
        let mut frames: Vec<Bytes> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                Bytes::from(if i == 0 {
                    format!("[{d}\n")
                } else {
                    format!(",\r\n{d}\n")
                })
            })
            .collect();
        frames.push(Bytes::from_static(b"]"));
        let mut rendered = Rendered::stream(JSON_UTF8, frames, usage, Some(count));
        rendered.stream = true;
        Ok(rendered)
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

    fn render(path: &str, query: &str, body: Value) -> Rendered {
        let body = body.to_string();
        Gemini
            .render(
                &Call {
                    path,
                    query,
                    body: body.as_bytes(),
                },
                &Behaviour::default(),
                &meta(),
            )
            .unwrap()
    }

    fn body() -> Value {
        json!({"contents": [{"role": "user", "parts": [{"text": "Hello!"}]}],
               "systemInstruction": {"parts": [{"text": "be brief"}]}})
    }

    #[test]
    fn generate_content() {
        let r = render(
            "/v1beta/models/gemini-2.0-flash:generateContent",
            "",
            body(),
        );
        let doc: Value = serde_json::from_slice(&r.frames[0]).unwrap();
        assert_eq!(
            doc["candidates"][0]["content"]["parts"][0]["text"],
            crate::usage::REPLY_TEXT
        );
        assert_eq!(doc["candidates"][0]["finishReason"], "STOP");
        assert_eq!(doc["usageMetadata"]["promptTokenCount"], 4 + 5);
        assert_eq!(doc["usageMetadata"]["candidatesTokenCount"], 24);
        assert_eq!(doc["usageMetadata"]["totalTokenCount"], 33);
        assert_eq!(doc["modelVersion"], "gemini-2.0-flash");
    }

    #[test]
    fn stream_sse_and_array_forms() {
        let r = render(
            "/v1/models/gemini-2.0-flash:streamGenerateContent",
            "alt=sse",
            body(),
        );
        let text: String = r
            .frames
            .iter()
            .map(|f| String::from_utf8(f.to_vec()).unwrap())
            .collect();
        let docs: Vec<Value> = text
            .split("\r\n\r\n")
            .filter(|e| !e.is_empty())
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(docs.len(), 24);
        assert_eq!(docs[23]["usageMetadata"]["totalTokenCount"], 33);
        assert_eq!(docs[0]["usageMetadata"]["candidatesTokenCount"], 1);
        assert!(docs[22]["candidates"][0].get("finishReason").is_none());
        let r = render("/v1beta/models/g:streamGenerateContent", "", body());
        let text: String = r
            .frames
            .iter()
            .map(|f| String::from_utf8(f.to_vec()).unwrap())
            .collect();
        let docs: Vec<Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(docs.len(), 24);
        assert_eq!(docs[23]["usageMetadata"]["candidatesTokenCount"], 24);
        assert_eq!(r.reported.unwrap().complete_at, text.len() - 1);
    }
}
