//! Request body rewriting for OpenAI-style APIs: make streams report usage
//! (`stream_options.include_usage`) and honour privacy mode (`"store": false`).

use crate::usage::Format;
use serde_json::{Map, Value};

/// What reading the request body decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// The new body, when it had to change.
    pub body: Option<Vec<u8>>,
    /// Usage reporting was added to a stream the client did not ask it for: the extra
    /// usage-only chunk must be removed from the response.
    pub strip_usage_chunk: bool,
    /// `model` named by the request.
    pub model: Option<String>,
    /// Estimated prompt tokens from the request's text (messages, input, prompt), when
    /// the body was read; better than a quarter of the body's bytes.
    pub prompt_tokens: Option<u64>,
    /// Whether the request asks for a stream (`None`: the body is not a JSON object).
    pub streaming: Option<bool>,
}

/// Longest model name kept from a request.
const MAX_MODEL: usize = 128;

pub fn rewrite(format: Format, privacy_strict: bool, body: &[u8]) -> Rewrite {
    // Most requests need nothing: without a `"stream"` key (and outside privacy mode)
    // there is nothing to add, so skip parsing the body at all.
    if !privacy_strict && !contains(body, b"\"stream\"") {
        return Rewrite {
            streaming: Some(false),
            ..Rewrite::default()
        };
    }
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        // Not JSON: the provider will say so; nothing to rewrite.
        return Rewrite::default();
    };
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty() && m.len() <= MAX_MODEL)
        .map(str::to_owned);
    let mut changed = false;
    let mut strip_usage_chunk = false;
    let prompt_tokens = Some(prompt_estimate(&obj));

    let streaming = obj.get("stream").and_then(Value::as_bool) == Some(true);
    if format.has_include_usage() && streaming {
        let asked = obj
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true);
        if !asked {
            let options = obj
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if !options.is_object() {
                *options = Value::Object(Map::new());
            }
            if let Value::Object(options) = options {
                options.insert("include_usage".into(), Value::Bool(true));
            }
            changed = true;
            strip_usage_chunk = true;
        }
    }
    if privacy_strict
        && matches!(format, Format::OpenAiChat | Format::OpenAiResponses)
        && obj.get("store") != Some(&Value::Bool(false))
    {
        obj.insert("store".into(), Value::Bool(false));
        changed = true;
    }
    let body = if changed {
        serde_json::to_vec(&Value::Object(obj)).ok()
    } else {
        None
    };
    Rewrite {
        body,
        strip_usage_chunk,
        model,
        prompt_tokens,
        streaming: Some(streaming),
    }
}

/// About four bytes of text per token, plus a few tokens of framing per message.
fn prompt_estimate(obj: &Map<String, Value>) -> u64 {
    fn text_bytes(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.len() as u64,
            Value::Array(items) => items.iter().map(text_bytes).sum(),
            Value::Object(o) => ["content", "text", "input"]
                .iter()
                .filter_map(|k| o.get(*k))
                .map(text_bytes)
                .sum(),
            _ => 0,
        }
    }
    let messages = obj.get("messages").and_then(Value::as_array);
    let framing = messages.map_or(0, |m| 4 * m.len() as u64);
    let bytes: u64 = ["messages", "input", "prompt", "system", "instructions"]
        .iter()
        .filter_map(|k| obj.get(*k))
        .map(text_bytes)
        .sum();
    bytes.div_ceil(4) + framing
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn adds_include_usage_to_streams_that_lack_it_keeping_other_options() {
        let r = rewrite(
            Format::OpenAiChat,
            false,
            r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hé"}]}"#
                .as_bytes(),
        );
        assert!(r.strip_usage_chunk);
        assert_eq!(r.model.as_deref(), Some("gpt-4o"));
        let body = json(&r.body.unwrap());
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["messages"][0]["content"], "hé");

        let r = rewrite(
            Format::OpenAiChat,
            false,
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
        );
        let body = json(&r.body.unwrap());
        assert_eq!(
            (
                body["stream_options"]["include_usage"].as_bool(),
                body["stream_options"]["x"].as_u64()
            ),
            (Some(true), Some(1))
        );
        assert!(r.strip_usage_chunk);
    }

    #[test]
    fn leaves_alone_what_needs_nothing() {
        for body in [
            &br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#[..],
            br#"{"model":"m","stream":false}"#,
            br#"{"model":"m"}"#,
            b"not json",
            b"[1,2]",
        ] {
            let r = rewrite(Format::OpenAiChat, false, body);
            assert_eq!((r.body, r.strip_usage_chunk), (None, false));
        }
        // Embeddings have no streams.
        assert_eq!(
            rewrite(Format::OpenAiEmbeddings, true, br#"{"stream":true}"#).body,
            None
        );
    }

    #[test]
    fn prompt_is_estimated_from_its_text() {
        let r = rewrite(Format::OpenAiChat, false, br#"{"model":"m","stream":true,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hello there!"}]}]}"#);
        // 9 + 12 bytes of text -> 6 tokens, plus 4 per message.
        assert_eq!(r.prompt_tokens, Some(6 + 8));
    }

    #[test]
    fn privacy_mode_sets_store_false() {
        let r = rewrite(Format::OpenAiChat, true, br#"{"model":"m","store":true}"#);
        assert_eq!(json(&r.body.unwrap())["store"], false);
        let r = rewrite(
            Format::OpenAiResponses,
            true,
            br#"{"model":"m","input":"x"}"#,
        );
        assert_eq!(json(&r.body.unwrap())["store"], false);
        assert_eq!(
            rewrite(Format::OpenAiChat, true, br#"{"model":"m","store":false}"#).body,
            None
        );
    }
}
