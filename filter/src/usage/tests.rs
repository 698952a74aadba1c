//! Provider fixtures in their documented shapes, each fed whole, split at every byte
//! boundary, and byte by byte.

use super::*;
use crate::eventstream::encode_message;

fn parse_split(
    format: Format,
    framing: Framing,
    body: &[u8],
    split: usize,
) -> (Option<Usage>, Option<String>) {
    let mut p = UsageParser::new(format, framing);
    let (a, b) = body.split_at(split);
    p.feed(a);
    p.feed(b);
    let usage = p.finish();
    (usage, p.model().map(str::to_owned))
}

fn at_every_split(format: Format, framing: Framing, body: &[u8]) -> (Usage, Option<String>) {
    let whole = parse_split(format, framing, body, 0);
    for split in 0..=body.len() {
        assert_eq!(
            parse_split(format, framing, body, split),
            whole,
            "split at {split}"
        );
    }
    let mut p = UsageParser::new(format, framing);
    for b in body {
        p.feed(std::slice::from_ref(b));
    }
    assert_eq!(
        (p.finish(), p.model().map(str::to_owned)),
        whole,
        "byte by byte"
    );
    (whole.0.expect("usage reported"), whole.1)
}

fn counts(u: &Usage) -> (u64, u64, u64, u64, u64) {
    (u.input, u.output, u.cached, u.reasoning, u.charged())
}

#[test]
fn openai_chat_non_streaming() {
    let body = br#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"The image shows a wooden boardwalk \u2014 caf\u00e9 \"usage\":{}","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#;
    let (usage, model) = at_every_split(Format::OpenAiChat, Framing::Json, body);
    assert_eq!(counts(&usage), (1117, 46, 1024, 0, 1163));
    assert_eq!(model.as_deref(), Some("gpt-4o-2024-08-06"));
}

#[test]
fn openai_chat_streaming_with_usage_chunk_and_multibyte_split() {
    let body = "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Grüße ✓ 日本\"},\"finish_reason\":null}],\"usage\":null}\r\n\r\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21,\"completion_tokens_details\":{\"reasoning_tokens\":4}}}\n\n\
data: [DONE]\n\n";
    let (usage, model) = at_every_split(Format::OpenAiChat, Framing::Sse, body.as_bytes());
    assert_eq!(counts(&usage), (9, 12, 0, 4, 21));
    assert_eq!(model.as_deref(), Some("gpt-4o-mini"));
}

#[test]
fn stream_without_usage_reports_none() {
    let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\ndata: [DONE]\n\n";
    let mut p = UsageParser::new(Format::OpenAiChat, Framing::Sse);
    p.feed(body);
    assert_eq!(p.finish(), None);
}

#[test]
fn openai_responses_stream_completed_event() {
    let body = b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4.1\",\"usage\":null}}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4.1\",\"usage\":{\"input_tokens\":36,\"input_tokens_details\":{\"cached_tokens\":5},\"output_tokens\":87,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":123}}}\n\n";
    let (usage, model) = at_every_split(Format::OpenAiResponses, Framing::Sse, body);
    assert_eq!(counts(&usage), (36, 87, 5, 0, 123));
    assert_eq!(model.as_deref(), Some("gpt-4.1"));
}

#[test]
fn openai_embeddings() {
    let body = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292,-0.0028842222]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
    let (usage, _) = at_every_split(Format::OpenAiEmbeddings, Framing::Json, body);
    assert_eq!(counts(&usage), (8, 0, 0, 0, 8));
}

#[test]
fn anthropic_message_counts_cache_outside_input() {
    let body = br#"{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"cache_creation_input_tokens":100,"cache_read_input_tokens":1800,"output_tokens":503}}"#;
    let (usage, model) = at_every_split(Format::AnthropicMessages, Framing::Json, body);
    assert_eq!(
        counts(&usage),
        (2095 + 100 + 1800, 503, 1800, 0, 2095 + 100 + 1800 + 503)
    );
    assert_eq!(usage.cache_write, 100);
    assert_eq!(model.as_deref(), Some("claude-sonnet-4-5-20250929"));
}

#[test]
fn anthropic_stream_cumulative_message_delta() {
    let body = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-opus-4-1-20250805\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo ✓\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":7}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let (usage, model) = at_every_split(Format::AnthropicMessages, Framing::Sse, body.as_bytes());
    assert_eq!(counts(&usage), (25, 15, 0, 0, 40));
    assert_eq!(model.as_deref(), Some("claude-opus-4-1-20250805"));
}

#[test]
fn gemini_generate_and_sse_stream() {
    let body = br#"{"candidates":[{"content":{"parts":[{"text":"Hello"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":12,"totalTokenCount":40,"cachedContentTokenCount":2,"thoughtsTokenCount":20,"promptTokensDetails":[{"modality":"TEXT","tokenCount":8}]},"modelVersion":"gemini-2.5-flash","responseId":"abc"}"#;
    let (usage, model) = at_every_split(Format::GeminiGenerate, Framing::Json, body);
    assert_eq!(counts(&usage), (8, 32, 2, 20, 40));
    assert_eq!(model.as_deref(), Some("gemini-2.5-flash"));

    let stream = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Bonjour é\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"totalTokenCount\": 8},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" le monde\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 5,\"totalTokenCount\": 13},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n";
    let (usage, _) = at_every_split(Format::GeminiGenerate, Framing::Sse, stream.as_bytes());
    assert_eq!(counts(&usage), (8, 5, 0, 0, 13));

    // streamGenerateContent without alt=sse: one JSON array, streamed.
    let array = b"[{\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":3,\"totalTokenCount\":3}}\n,\r\n{\"candidates\":[],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":4,\"totalTokenCount\":7}}]";
    let (usage, _) = at_every_split(Format::GeminiGenerate, Framing::Json, array);
    assert_eq!(counts(&usage), (3, 4, 0, 0, 7));
}

#[test]
fn bedrock_converse_and_event_stream() {
    let body = br#"{"output":{"message":{"role":"assistant","content":[{"text":"Hi"}]}},"stopReason":"end_turn","usage":{"inputTokens":30,"outputTokens":628,"totalTokens":658,"cacheReadInputTokens":0,"cacheWriteInputTokens":0},"metrics":{"latencyMs":1275}}"#;
    let (usage, _) = at_every_split(Format::BedrockConverse, Framing::Json, body);
    assert_eq!(counts(&usage), (30, 628, 0, 0, 658));

    let event = |kind: &str, payload: &str| {
        encode_message(
            &[
                (":event-type", kind),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.as_bytes(),
        )
    };
    let mut stream = Vec::new();
    stream.extend(event("messageStart", r#"{"p":"abcd","role":"assistant"}"#));
    stream.extend(event(
        "contentBlockDelta",
        r#"{"contentBlockIndex":0,"delta":{"text":"Grüß ✓"},"p":"ab"}"#,
    ));
    stream.extend(event(
        "messageStop",
        r#"{"p":"abcdefgh","stopReason":"end_turn"}"#,
    ));
    stream.extend(event(
        "metadata",
        r#"{"metrics":{"latencyMs":412},"p":"abc","usage":{"cacheReadInputTokens":10,"inputTokens":11,"outputTokens":25,"totalTokens":46}}"#,
    ));
    let (usage, _) = at_every_split(Format::BedrockConverse, Framing::EventStream, &stream);
    assert_eq!(counts(&usage), (21, 25, 10, 0, 46));
}

#[test]
fn ollama_native_ndjson_stream_and_single() {
    let stream = "{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T08:52:19.385406455-07:00\",\"message\":{\"role\":\"assistant\",\"content\":\"The ✓\"},\"done\":false}\n\
{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T19:22:45.499127Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":4883583458,\"load_duration\":1334875,\"prompt_eval_count\":26,\"prompt_eval_duration\":342546000,\"eval_count\":282,\"eval_duration\":4535599000}\n";
    let (usage, model) = at_every_split(Format::OllamaNative, Framing::Ndjson, stream.as_bytes());
    assert_eq!(counts(&usage), (26, 282, 0, 0, 308));
    assert_eq!(model.as_deref(), Some("llama3.2"));
    let single = br#"{"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","response":"The sky is blue","done":true,"context":[1,2,3],"total_duration":10706818083,"prompt_eval_count":26,"eval_count":290}"#;
    let (usage, _) = at_every_split(Format::OllamaNative, Framing::Json, single);
    assert_eq!(counts(&usage), (26, 290, 0, 0, 316));
}

#[test]
fn paths() {
    let p = |path| Api::from_path(path).map(|a| (a.provider, a.format, a.path_model));
    assert_eq!(
        p("/v1/chat/completions?x=1"),
        Some((Provider::OpenAi, Format::OpenAiChat, None))
    );
    assert_eq!(p("/v1/chat/completionsX"), None);
    assert_eq!(p("/v1/admin/users"), None);
    assert_eq!(
        p("/v1/messages"),
        Some((Provider::Anthropic, Format::AnthropicMessages, None))
    );
    assert_eq!(
        p("/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"),
        Some((
            Provider::Azure,
            Format::OpenAiChat,
            Some("gpt4o-prod".into())
        ))
    );
    assert_eq!(
        p("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
        Some((
            Provider::Gemini,
            Format::GeminiGenerate,
            Some("gemini-2.5-flash".into())
        ))
    );
    assert_eq!(
        p("/v1/models/gemini-2.5-flash:generateContent"),
        Some((
            Provider::Gemini,
            Format::GeminiGenerate,
            Some("gemini-2.5-flash".into())
        ))
    );
    assert_eq!(p("/v1/models/gemini-2.5-flash:countTokens"), None);
    assert_eq!(
        p("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"),
        Some((
            Provider::Bedrock,
            Format::BedrockConverse,
            Some("anthropic.claude-3-haiku-20240307-v1:0".into())
        ))
    );
    assert_eq!(
        p("/api/chat"),
        Some((Provider::Ollama, Format::OllamaNative, None))
    );
    assert_eq!(
        p("/ollama/v1/chat/completions"),
        Some((Provider::Ollama, Format::OpenAiChat, None))
    );
    assert_eq!(
        p("/vllm/v1/completions"),
        Some((Provider::Vllm, Format::OpenAiCompletions, None))
    );
    assert_eq!(
        p("/model/%ZZ/converse").map(|x| x.2),
        Some(Some("%ZZ".into()))
    );
}

#[test]
fn framing_from_content_type() {
    assert_eq!(
        Framing::from_content_type(Some("text/event-stream; charset=utf-8")),
        Framing::Sse
    );
    assert_eq!(
        Framing::from_content_type(Some("application/vnd.amazon.eventstream")),
        Framing::EventStream
    );
    assert_eq!(
        Framing::from_content_type(Some("application/x-ndjson")),
        Framing::Ndjson
    );
    assert_eq!(Framing::from_content_type(None), Framing::Json);
}

/// Random bytes and random splits: never a panic, memory stays bounded.
#[test]
fn random_input_never_panics() {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"{}[]\":,\\ \n\r0123456789-+.eEdata:usage_tokens\xff\xc3\xa9";
    let formats = [
        Format::OpenAiChat,
        Format::AnthropicMessages,
        Format::GeminiGenerate,
        Format::BedrockConverse,
        Format::OllamaNative,
    ];
    let framings = [
        Framing::Json,
        Framing::Sse,
        Framing::Ndjson,
        Framing::EventStream,
    ];
    for round in 0..2_000 {
        let len = (next() % 600) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if round % 3 == 0 {
                    next() as u8
                } else {
                    alphabet[(next() % alphabet.len() as u64) as usize]
                }
            })
            .collect();
        let mut p = UsageParser::new(
            formats[round % formats.len()],
            framings[(round / 5) % framings.len()],
        );
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = 1 + (next() % 40) as usize;
            let (a, b) = rest.split_at(n.min(rest.len()));
            p.feed(a);
            rest = b;
        }
        let _ = p.finish();
    }
}
