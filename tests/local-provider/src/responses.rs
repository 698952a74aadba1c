//! OpenAI Responses API (`POST /v1/responses`): the `response` object, or with
//! `"stream": true` the SSE event sequence `response.created`, `response.in_progress`,
//! `response.output_item.added`, `response.content_part.added`,
//! `response.output_text.delta`…, `response.output_text.done`,
//! `response.content_part.done`, `response.output_item.done`, `response.completed` (the
//! only event with usage). Every event is named (`event:` line) and numbered
//! (`sequence_number`), as the real API does.
//!
//! Usage rule: `input_tokens` = (3 + words of `instructions`, when given) + (3 + words of
//! `input` when it is a string, else 3 + words per input message); `output_tokens` = the
//! reply's words, cut to `max_output_tokens`.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::behaviour::Behaviour;
use crate::dialect::{Refusal, Rendered, ResponseMeta};
use crate::openai::{limit, model_of, parse_json, EVENT_STREAM};
use crate::sse;
use crate::usage::{count_words, text_words, Reply, Usage, PER_MESSAGE_TOKENS};

fn input_tokens(value: &Value) -> Result<u64, String> {
    let instructions = value
        .get("instructions")
        .and_then(Value::as_str)
        .map_or(0, |text| PER_MESSAGE_TOKENS + count_words(text));
    let input = match value.get("input") {
        Some(Value::String(text)) => PER_MESSAGE_TOKENS + count_words(text),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| PER_MESSAGE_TOKENS + item.get("content").map_or(0, text_words))
            .sum(),
        _ => return Err("'input' must be a string or a non-empty array of input items".to_owned()),
    };
    Ok(instructions + input)
}

fn usage_json(usage: Usage) -> Value {
    json!({
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens(),
    })
}

struct Ids {
    response: String,
    message: String,
}

/// What every `response` object of one request shares.
struct Context<'a> {
    ids: &'a Ids,
    meta: &'a ResponseMeta,
    request: &'a Value,
    model: &'a str,
}

fn response_object(
    ctx: &Context<'_>,
    status: &str,
    output: Vec<Value>,
    usage: Option<Usage>,
    truncated: bool,
) -> Value {
    let Context {
        ids,
        meta,
        request,
        model,
    } = ctx;
    json!({
        "id": ids.response,
        "object": "response",
        "created_at": meta.created,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": if truncated && usage.is_some() { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "instructions": request.get("instructions").cloned().unwrap_or(Value::Null),
        "max_output_tokens": request.get("max_output_tokens").cloned().unwrap_or(Value::Null),
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": request.get("store").cloned().unwrap_or(json!(true)),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage.map_or(Value::Null, usage_json),
        "user": null,
        "metadata": {},
    })
}

fn message_item(ids: &Ids, status: &str, text: Option<&str>) -> Value {
    let content = match text {
        Some(text) => {
            json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
        }
        None => json!([]),
    };
    json!({"id": ids.message, "type": "message", "status": status, "role": "assistant", "content": content})
}

/// Renders a Responses API request.
pub fn render(
    body: &[u8],
    default_model: Option<&str>,
    behaviour: &Behaviour,
    meta: &ResponseMeta,
) -> Result<Rendered, Refusal> {
    let request = parse_json(body).map_err(Refusal::BadRequest)?;
    let model = model_of(&request, default_model).map_err(Refusal::BadRequest)?;
    let prompt = input_tokens(&request).map_err(Refusal::BadRequest)?;
    let max_tokens = limit(&request, "max_output_tokens").map_err(Refusal::BadRequest)?;
    let stream = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let reply = Reply::new(behaviour.reply_words, max_tokens);
    let usage = Usage {
        prompt_tokens: prompt,
        completion_tokens: reply.completion_tokens(),
    };
    let suffix = meta.id.trim_start_matches("chatcmpl-");
    let ids = Ids {
        response: format!("resp_{suffix}"),
        message: format!("msg_{suffix}"),
    };
    let text = reply.text();
    let final_status = if reply.truncated {
        "incomplete"
    } else {
        "completed"
    };
    let ctx = Context {
        ids: &ids,
        meta,
        request: &request,
        model: &model,
    };
    let done = response_object(
        &ctx,
        final_status,
        vec![message_item(&ids, final_status, Some(&text))],
        Some(usage),
        reply.truncated,
    );
    if !stream {
        return Ok(Rendered::json_with_usage(done.to_string(), usage));
    }
    let mut frames: Vec<Bytes> = Vec::new();
    let mut event = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(frames.len());
        frames.push(sse::named_event(kind, &data.to_string()));
    };
    let in_progress = response_object(&ctx, "in_progress", vec![], None, false);
    event("response.created", json!({"response": in_progress}));
    event("response.in_progress", json!({"response": in_progress}));
    event(
        "response.output_item.added",
        json!({"output_index": 0, "item": message_item(&ids, "in_progress", None)}),
    );
    let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
    event(
        "response.content_part.added",
        json!({"item_id": ids.message, "output_index": 0, "content_index": 0, "part": part("")}),
    );
    for piece in reply.pieces() {
        event(
            "response.output_text.delta",
            json!({"item_id": ids.message, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}),
        );
    }
    event(
        "response.output_text.done",
        json!({"item_id": ids.message, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
    );
    event(
        "response.content_part.done",
        json!({"item_id": ids.message, "output_index": 0, "content_index": 0, "part": part(&text)}),
    );
    event(
        "response.output_item.done",
        json!({"output_index": 0, "item": message_item(&ids, final_status, Some(&text))}),
    );
    let last = if reply.truncated {
        "response.incomplete"
    } else {
        "response.completed"
    };
    event(last, json!({"response": done}));
    let count = frames.len();
    Ok(Rendered::stream(EVENT_STREAM, frames, usage, Some(count)))
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

    #[test]
    fn json_response_has_usage() {
        let body = json!({"model": "gpt-4o-mini", "input": "Hello!", "instructions": "be brief"});
        let r = render(
            body.to_string().as_bytes(),
            None,
            &Behaviour::default(),
            &meta(),
        )
        .unwrap();
        let doc: Value = serde_json::from_slice(&r.frames[0]).unwrap();
        assert_eq!(doc["object"], "response");
        assert_eq!(doc["status"], "completed");
        assert_eq!(
            doc["output"][0]["content"][0]["text"],
            crate::usage::REPLY_TEXT
        );
        assert_eq!(doc["usage"]["input_tokens"], 4 + 5);
        assert_eq!(doc["usage"]["output_tokens"], 24);
        assert_eq!(doc["usage"]["total_tokens"], 33);
    }

    #[test]
    fn stream_events_in_order_and_usage_only_at_completion() {
        let body = json!({"model": "m", "stream": true,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hello there"}]}]});
        let r = render(
            body.to_string().as_bytes(),
            None,
            &Behaviour::default(),
            &meta(),
        )
        .unwrap();
        assert!(r.stream);
        let text: String = r
            .frames
            .iter()
            .map(|f| String::from_utf8(f.to_vec()).unwrap())
            .collect();
        let events: Vec<(&str, Value)> = text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                (
                    name.strip_prefix("event: ").unwrap(),
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap(),
                )
            })
            .collect();
        assert_eq!(events[0].0, "response.created");
        assert_eq!(events.last().unwrap().0, "response.completed");
        assert_eq!(events.len(), 8 + 24);
        for (i, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], *name);
            assert_eq!(data["sequence_number"], i);
        }
        let done = &events.last().unwrap().1;
        assert_eq!(done["response"]["usage"]["total_tokens"], 5 + 24);
        assert_eq!(events[0].1["response"]["usage"], Value::Null);
        assert_eq!(r.reported.unwrap().complete_at, text.len());
    }
}
