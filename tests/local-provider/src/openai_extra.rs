//! OpenAI legacy completions (`/v1/completions`) and embeddings (`/v1/embeddings`).
//!
//! Usage rule: a completions prompt costs 3 + its words (like one chat message; a list
//! of prompts costs that per prompt); an embeddings input costs its words, per input
//! (an input given as token ids costs one token per id), and embeddings have no
//! completion tokens.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::behaviour::Behaviour;
use crate::dialect::{Refusal, Rendered, ResponseMeta};
use crate::openai::{limit, model_of, parse_json, stream_flags, to_json, WireUsage, EVENT_STREAM};
use crate::sse;
use crate::usage::{count_words, Reply, Usage, PER_MESSAGE_TOKENS};

/// Dimensions of the deterministic embedding vectors.
pub const EMBEDDING_DIMENSIONS: usize = 8;

fn prompt_tokens(prompt: &Value) -> Result<u64, String> {
    match prompt {
        Value::String(text) => Ok(PER_MESSAGE_TOKENS + count_words(text)),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(PER_MESSAGE_TOKENS + count_words(text)),
                _ => Err("'prompt' must be a string or an array of strings".to_owned()),
            })
            .sum(),
        _ => Err("'prompt' must be a string or an array of strings".to_owned()),
    }
}

fn finish(reply: &Reply) -> &'static str {
    if reply.truncated {
        "length"
    } else {
        "stop"
    }
}

/// `POST /v1/completions`: a `text_completion` document, or its SSE stream.
pub fn completions(
    body: &[u8],
    default_model: Option<&str>,
    behaviour: &Behaviour,
    meta: &ResponseMeta,
) -> Result<Rendered, Refusal> {
    let value = parse_json(body).map_err(Refusal::BadRequest)?;
    let model = model_of(&value, default_model).map_err(Refusal::BadRequest)?;
    let prompt =
        prompt_tokens(value.get("prompt").unwrap_or(&Value::Null)).map_err(Refusal::BadRequest)?;
    let max_tokens = limit(&value, "max_tokens").map_err(Refusal::BadRequest)?;
    let (stream, include_usage) = stream_flags(&value).map_err(Refusal::BadRequest)?;
    let reply = Reply::new(behaviour.reply_words, max_tokens);
    let usage = Usage {
        prompt_tokens: prompt,
        completion_tokens: reply.completion_tokens(),
    };
    let id = meta.id.replace("chatcmpl-", "cmpl-");
    if !stream {
        let doc = json!({
            "id": id, "object": "text_completion", "created": meta.created, "model": model,
            "choices": [{"text": reply.text(), "index": 0, "logprobs": null, "finish_reason": finish(&reply)}],
            "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                      "total_tokens": usage.total_tokens()},
        });
        return Ok(Rendered::json_with_usage(doc.to_string(), usage));
    }
    let chunk = |text: &str, finish_reason: Option<&str>| {
        let mut doc = json!({
            "id": id, "object": "text_completion", "created": meta.created,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish_reason}],
            "model": model,
        });
        if include_usage {
            doc["usage"] = Value::Null;
        }
        sse::data_event(&doc.to_string())
    };
    let mut frames: Vec<Bytes> = reply.pieces().iter().map(|p| chunk(p, None)).collect();
    frames.push(chunk("", Some(finish(&reply))));
    let mut reported_after = None;
    if include_usage {
        let doc = json!({
            "id": id, "object": "text_completion", "created": meta.created, "choices": [],
            "model": model, "usage": {"prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens, "total_tokens": usage.total_tokens()},
        });
        frames.push(sse::data_event(&doc.to_string()));
        reported_after = Some(frames.len());
    }
    frames.push(Bytes::from_static(sse::DONE.as_bytes()));
    Ok(Rendered::stream(
        EVENT_STREAM,
        frames,
        usage,
        reported_after,
    ))
}

fn input_tokens(input: &Value) -> Result<Vec<u64>, String> {
    let bad =
        || "'input' must be a string, an array of strings or an array of token arrays".to_owned();
    match input {
        Value::String(text) => Ok(vec![count_words(text)]),
        Value::Array(items) if !items.is_empty() => {
            if items.iter().all(Value::is_u64) {
                return Ok(vec![items.len() as u64]);
            }
            items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(count_words(text)),
                    Value::Array(ids) if ids.iter().all(Value::is_u64) => Ok(ids.len() as u64),
                    _ => Err(bad()),
                })
                .collect()
        }
        _ => Err(bad()),
    }
}

/// The deterministic vector of input `index` with `words` words.
pub fn embedding(index: usize, words: u64) -> Vec<f32> {
    (0..EMBEDDING_DIMENSIONS)
        .map(|d| ((index + 1) as f32 * 0.01) + (d as f32 * 0.1) + (words as f32 * 0.001))
        .collect()
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `POST /v1/embeddings`: a `list` of `embedding` objects (floats, or base64 of
/// little-endian float32 when `encoding_format` is `base64`, as the openai SDK asks).
pub fn embeddings(
    body: &[u8],
    default_model: Option<&str>,
    meta: &ResponseMeta,
) -> Result<Rendered, Refusal> {
    let _ = meta;
    let value = parse_json(body).map_err(Refusal::BadRequest)?;
    let model = model_of(&value, default_model).map_err(Refusal::BadRequest)?;
    let inputs =
        input_tokens(value.get("input").unwrap_or(&Value::Null)).map_err(Refusal::BadRequest)?;
    let base64_format = match value.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(Refusal::BadRequest(format!(
                "'encoding_format' must be 'float' or 'base64', got '{other}'"
            )))
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, words)| {
            let vector = embedding(index, *words);
            let encoded = if base64_format {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64(&bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": encoded})
        })
        .collect();
    let usage = Usage {
        prompt_tokens: inputs.iter().sum(),
        completion_tokens: 0,
    };
    let doc = json!({
        "object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens()},
    });
    let _ = to_json::<WireUsage>;
    Ok(Rendered::json_with_usage(doc.to_string(), usage))
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

    fn text(rendered: &Rendered) -> String {
        rendered
            .frames
            .iter()
            .map(|f| String::from_utf8(f.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn completions_json_and_stream() {
        let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 5});
        let r = completions(
            body.to_string().as_bytes(),
            None,
            &Behaviour::default(),
            &meta(),
        )
        .unwrap();
        let doc: Value = serde_json::from_str(&text(&r)).unwrap();
        assert_eq!(doc["object"], "text_completion");
        assert_eq!(doc["choices"][0]["text"], "Hello from the Alfred local");
        assert_eq!(doc["choices"][0]["finish_reason"], "length");
        assert_eq!(doc["usage"]["total_tokens"], 5 + 5);
        let body = json!({"model": "m", "prompt": "Say hi", "stream": true, "stream_options": {"include_usage": true}});
        let r = completions(
            body.to_string().as_bytes(),
            None,
            &Behaviour::default(),
            &meta(),
        )
        .unwrap();
        assert!(r.stream);
        let all = text(&r);
        assert!(all.ends_with("data: [DONE]\n\n"));
        // Key order depends on serde_json's `preserve_order` (workspace features): compare values.
        let usage_chunk: Value = all
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|c| c["choices"] == json!([]))
            .unwrap();
        assert_eq!(
            usage_chunk["usage"],
            json!({"prompt_tokens": 5, "completion_tokens": 24, "total_tokens": 29})
        );
        assert_eq!(r.reported.unwrap().usage.total_tokens(), 29);
        let body = json!({"model": "m", "prompt": "Say hi", "stream": true});
        let r = completions(
            body.to_string().as_bytes(),
            None,
            &Behaviour::default(),
            &meta(),
        )
        .unwrap();
        assert!(r.reported.is_none());
        assert!(!text(&r).contains("usage"));
    }

    #[test]
    fn embeddings_count_words_per_input() {
        let body = json!({"model": "text-embedding-3-small", "input": ["one two", "three"]});
        let r = embeddings(body.to_string().as_bytes(), None, &meta()).unwrap();
        let doc: Value = serde_json::from_str(&text(&r)).unwrap();
        assert_eq!(doc["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
        assert_eq!(doc["data"].as_array().unwrap().len(), 2);
        assert_eq!(
            doc["data"][1]["embedding"].as_array().unwrap().len(),
            EMBEDDING_DIMENSIONS
        );
        let body = json!({"model": "m", "input": "a b c d", "encoding_format": "base64"});
        let r = embeddings(body.to_string().as_bytes(), None, &meta()).unwrap();
        let doc: Value = serde_json::from_str(&text(&r)).unwrap();
        assert_eq!(doc["data"][0]["embedding"].as_str().unwrap().len(), 44); // 32 bytes
        assert_eq!(doc["usage"]["total_tokens"], 4);
        assert!(embeddings(br#"{"model":"m"}"#, None, &meta()).is_err());
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
