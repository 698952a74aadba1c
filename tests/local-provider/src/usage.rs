//! The deterministic usage rule.
//!
//! Tests compute expected token counts independently of the gateway, so the rule is
//! simple and documented here (and in the crate README):
//!
//! - **prompt_tokens** `P` = for every message, 3 + the number of whitespace-separated
//!   words in its text content. Text content is the `content` string, or the `text` of
//!   every part of a `content` array. Messages without text still cost 3.
//! - **completion_tokens** `C` = the number of words in the reply. The reply is
//!   [`REPLY_TEXT`] (its words cycled when a longer reply is asked for with the
//!   `x-local-provider-reply-words` header), cut to the request's `max_completion_tokens`
//!   or `max_tokens` when given (then `finish_reason` is `length`).
//! - **total_tokens** = `P + C`.
//!
//! The reply deliberately contains multi-byte UTF-8 characters so that byte-level
//! parsers in the gateway meet characters cut across chunk boundaries.

use serde_json::Value;

/// Fixed per-message overhead, like the real tokenizers' role/separator tokens.
pub const PER_MESSAGE_TOKENS: u64 = 3;

/// The reply every request gets (cut or cycled to the requested length).
pub const REPLY_TEXT: &str = "Hello from the Alfred local provider — this reply is deterministic: \
café, naïve, 東京 and 🚀 are here so that parsers meet multi-byte characters.";

/// Token usage of one request, as the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Number of whitespace-separated words in `text`.
pub fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Words of a text value: a string, or the `text` fields of an array of parts (a part
/// may also be a plain string). Anything else has no words.
pub fn text_words(value: &Value) -> u64 {
    match value {
        Value::String(text) => count_words(text),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part {
                Value::String(text) => count_words(text),
                _ => part
                    .get("text")
                    .and_then(Value::as_str)
                    .map_or(0, count_words),
            })
            .sum(),
        _ => 0,
    }
}

/// Text of one message's `content`: a string, or the `text` fields of an array of parts.
fn message_words(message: &Value) -> u64 {
    message.get("content").map_or(0, text_words)
}

/// `P` for a list of chat messages (see the module docs).
pub fn prompt_tokens(messages: &[Value]) -> u64 {
    messages
        .iter()
        .map(|message| PER_MESSAGE_TOKENS + message_words(message))
        .sum()
}

/// The reply for one request: its words, and whether a token limit cut it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub words: Vec<&'static str>,
    pub truncated: bool,
}

impl Reply {
    /// `reply_words`: length before the limit (`None` = the words of [`REPLY_TEXT`]);
    /// `max_tokens`: the request's completion limit, if any.
    pub fn new(reply_words: Option<usize>, max_tokens: Option<u64>) -> Reply {
        let base: Vec<&'static str> = REPLY_TEXT.split_whitespace().collect();
        let wanted = reply_words.unwrap_or(base.len());
        let full: Vec<&'static str> = base.iter().copied().cycle().take(wanted).collect();
        let limit = max_tokens
            .map(|max| usize::try_from(max).unwrap_or(usize::MAX))
            .unwrap_or(usize::MAX);
        let truncated = full.len() > limit;
        let words = full.into_iter().take(limit).collect();
        Reply { words, truncated }
    }

    pub fn completion_tokens(&self) -> u64 {
        self.words.len() as u64
    }

    /// The whole reply text: the words joined by single spaces.
    pub fn text(&self) -> String {
        self.words.join(" ")
    }

    /// The reply as streamed pieces, one per word; concatenated they equal [`Reply::text`].
    pub fn pieces(&self) -> Vec<String> {
        self.words
            .iter()
            .enumerate()
            .map(|(i, word)| {
                if i == 0 {
                    (*word).to_owned()
                } else {
                    format!(" {word}")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompt_counts_words_plus_three_per_message() {
        let messages = vec![
            json!({"role": "system", "content": "You are a helpful assistant."}),
            json!({"role": "user", "content": "  What is\tthe capital of France?\n"}),
        ];
        // (3 + 5) + (3 + 6)
        assert_eq!(prompt_tokens(&messages), 17);
    }

    #[test]
    fn prompt_counts_text_parts_and_ignores_other_parts() {
        let messages = vec![json!({"role": "user", "content": [
            {"type": "text", "text": "two words"},
            {"type": "image_url", "image_url": {"url": "data:..."}},
            {"type": "text", "text": "three more words"}
        ]})];
        assert_eq!(prompt_tokens(&messages), 3 + 2 + 3);
    }

    #[test]
    fn message_without_text_costs_the_overhead() {
        let messages = vec![
            json!({"role": "assistant", "tool_calls": []}),
            json!({"role": "user", "content": ""}),
        ];
        assert_eq!(prompt_tokens(&messages), 6);
    }

    #[test]
    fn default_reply_is_the_fixed_text() {
        let reply = Reply::new(None, None);
        assert_eq!(reply.text(), REPLY_TEXT);
        assert_eq!(reply.completion_tokens(), count_words(REPLY_TEXT));
        assert_eq!(reply.completion_tokens(), 24);
        assert!(!reply.truncated);
    }

    #[test]
    fn max_tokens_cuts_the_reply() {
        let reply = Reply::new(None, Some(4));
        assert_eq!(reply.text(), "Hello from the Alfred");
        assert_eq!(reply.completion_tokens(), 4);
        assert!(reply.truncated);
        let not_cut = Reply::new(None, Some(1000));
        assert_eq!(not_cut.completion_tokens(), 24);
        assert!(!not_cut.truncated);
    }

    #[test]
    fn longer_replies_cycle_the_words() {
        let reply = Reply::new(Some(50), None);
        assert_eq!(reply.completion_tokens(), 50);
        assert_eq!(reply.words[24], "Hello");
        assert_eq!(Reply::new(Some(0), None).text(), "");
    }

    #[test]
    fn pieces_concatenate_to_the_text() {
        let reply = Reply::new(Some(30), Some(25));
        assert_eq!(reply.pieces().concat(), reply.text());
        assert_eq!(reply.pieces().len(), 25);
    }

    #[test]
    fn total_is_prompt_plus_completion() {
        let usage = Usage {
            prompt_tokens: 11,
            completion_tokens: 22,
        };
        assert_eq!(usage.total_tokens(), 33);
    }
}
