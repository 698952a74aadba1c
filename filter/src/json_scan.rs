//! Incremental, byte-level JSON scanner that reports the few leaves Alfred cares about.
//!
//! Provider responses can be large (embeddings, long completions) and arrive in arbitrary
//! chunks, so the filter never buffers a body to parse it. This scanner keeps only a
//! bounded path stack and the bytes of the current key or wanted value, and emits
//! `(path, value)` for numbers and short strings whose keys are in [`Key`]. It never
//! fails: malformed input simply produces no events, and memory stays bounded whatever
//! the input.

/// Object keys the usage parsers look for; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// An array element or the document root.
    Index,
    Other,
    Usage,
    Model,
    PromptTokens,
    CompletionTokens,
    TotalTokens,
    PromptTokensDetails,
    CompletionTokensDetails,
    CachedTokens,
    ReasoningTokens,
    InputTokens,
    OutputTokens,
    InputTokensDetails,
    OutputTokensDetails,
    CacheReadInputTokens,
    CacheCreationInputTokens,
    Message,
    Response,
    Type,
    // Gemini
    UsageMetadata,
    PromptTokenCount,
    CandidatesTokenCount,
    TotalTokenCount,
    CachedContentTokenCount,
    ThoughtsTokenCount,
    ModelVersion,
    // Bedrock
    InputTokensCamel,
    OutputTokensCamel,
    TotalTokensCamel,
    CacheReadInputTokensCamel,
    CacheWriteInputTokensCamel,
    // Ollama
    PromptEvalCount,
    EvalCount,
    // Generated text (to estimate what a cut response produced)
    Content,
    Text,
    Delta,
}

impl Key {
    fn from_bytes(bytes: &[u8]) -> Key {
        match bytes {
            b"usage" => Key::Usage,
            b"model" => Key::Model,
            b"prompt_tokens" => Key::PromptTokens,
            b"completion_tokens" => Key::CompletionTokens,
            b"total_tokens" => Key::TotalTokens,
            b"prompt_tokens_details" => Key::PromptTokensDetails,
            b"completion_tokens_details" => Key::CompletionTokensDetails,
            b"cached_tokens" => Key::CachedTokens,
            b"reasoning_tokens" => Key::ReasoningTokens,
            b"input_tokens" => Key::InputTokens,
            b"output_tokens" => Key::OutputTokens,
            b"input_tokens_details" => Key::InputTokensDetails,
            b"output_tokens_details" => Key::OutputTokensDetails,
            b"cache_read_input_tokens" => Key::CacheReadInputTokens,
            b"cache_creation_input_tokens" => Key::CacheCreationInputTokens,
            b"message" => Key::Message,
            b"response" => Key::Response,
            b"type" => Key::Type,
            b"usageMetadata" => Key::UsageMetadata,
            b"promptTokenCount" => Key::PromptTokenCount,
            b"candidatesTokenCount" => Key::CandidatesTokenCount,
            b"totalTokenCount" => Key::TotalTokenCount,
            b"cachedContentTokenCount" => Key::CachedContentTokenCount,
            b"thoughtsTokenCount" => Key::ThoughtsTokenCount,
            b"modelVersion" => Key::ModelVersion,
            b"inputTokens" => Key::InputTokensCamel,
            b"outputTokens" => Key::OutputTokensCamel,
            b"totalTokens" => Key::TotalTokensCamel,
            b"cacheReadInputTokens" => Key::CacheReadInputTokensCamel,
            b"cacheWriteInputTokens" => Key::CacheWriteInputTokensCamel,
            b"prompt_eval_count" => Key::PromptEvalCount,
            b"eval_count" => Key::EvalCount,
            b"content" => Key::Content,
            b"text" => Key::Text,
            b"delta" => Key::Delta,
            _ => Key::Other,
        }
    }
}

/// A leaf value the scanner reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// A non-negative integer (token counts); fractions are truncated, negatives dropped.
    Uint(u64),
    /// A string of at most [`MAX_STRING`] bytes, raw (escapes are not decoded).
    Str(&'a [u8]),
    /// The length in bytes (raw) of a string under a text key (`content`, `text`,
    /// `delta`, `response`), whatever its length.
    TextBytes(u64),
}

/// Receives the leaves of interest. `path` is the chain of keys from the root, the
/// root itself excluded (`{"usage":{"total_tokens":3}}` gives `[Usage, TotalTokens]`).
pub trait Sink {
    fn leaf(&mut self, path: &[Key], value: Value<'_>);
}

const MAX_DEPTH: usize = 16;
const MAX_KEY: usize = 40;
/// Longest string value kept (model names); longer ones are reported truncated-free: skipped.
pub const MAX_STRING: usize = 128;
const MAX_NUMBER: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a value (document start, after `:` or `,` in an array, after `[`).
    Value,
    /// In an object, expecting a key or `}`.
    Key,
    /// After a key, expecting `:`.
    Colon,
    /// After a value, expecting `,` or a closing bracket.
    AfterValue,
    KeyString {
        escape: bool,
    },
    ValueString {
        escape: bool,
    },
    Number,
    /// A number under a key nobody asked for: skipped, not parsed.
    SkipNumber,
    Literal,
}

/// The scanner. Feed it bytes with [`Scanner::feed`]; call [`Scanner::reset`] between
/// documents (e.g. between SSE events).
#[derive(Debug)]
pub struct Scanner {
    state: State,
    /// Keys of the open containers, root first; `depth` may exceed the stored part.
    path: [Key; MAX_DEPTH],
    kinds: [Container; MAX_DEPTH],
    depth: usize,
    current_key: Key,
    buf: [u8; MAX_STRING],
    buf_len: usize,
    buf_overflow: bool,
    /// Bytes of the string value being read.
    str_len: u64,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: State::Value,
            path: [Key::Index; MAX_DEPTH],
            kinds: [Container::Object; MAX_DEPTH],
            depth: 0,
            current_key: Key::Index,
            buf: [0; MAX_STRING],
            buf_len: 0,
            buf_overflow: false,
            str_len: 0,
        }
    }
}

impl Scanner {
    pub fn reset(&mut self) {
        self.state = State::Value;
        self.depth = 0;
        self.current_key = Key::Index;
        self.clear_buf();
    }

    fn clear_buf(&mut self) {
        self.buf_len = 0;
        self.buf_overflow = false;
    }

    fn push_buf(&mut self, byte: u8, limit: usize) {
        if self.buf_len < limit.min(MAX_STRING) {
            self.buf[self.buf_len] = byte;
            self.buf_len += 1;
        } else {
            self.buf_overflow = true;
        }
    }

    fn container(&self) -> Option<Container> {
        match self.depth {
            0 => None,
            d if d <= MAX_DEPTH => Some(self.kinds[d - 1]),
            // Deeper than we track: nothing there is of interest; treat as array.
            _ => Some(Container::Array),
        }
    }

    /// Path of the value being completed: keys of containers below the root, then the
    /// value's own key. `None` when deeper than tracked.
    fn with_path<R>(&self, f: impl FnOnce(&[Key]) -> R) -> Option<R> {
        if self.depth > MAX_DEPTH || self.depth == 0 {
            return None;
        }
        let mut keys = [Key::Index; MAX_DEPTH + 1];
        let stored = self.depth;
        // path[0] is the key under which the root sits (Index); skip it.
        keys[..stored - 1].copy_from_slice(&self.path[1..stored]);
        keys[stored - 1] = self.current_key;
        Some(f(&keys[..stored]))
    }

    fn open(&mut self, kind: Container) {
        if self.depth < MAX_DEPTH {
            self.path[self.depth] = self.current_key;
            self.kinds[self.depth] = kind;
        }
        self.depth = self.depth.saturating_add(1);
        self.current_key = Key::Index;
        self.state = match kind {
            Container::Object => State::Key,
            Container::Array => State::Value,
        };
    }

    fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        self.current_key = if self.depth < MAX_DEPTH {
            self.path[self.depth]
        } else {
            Key::Other
        };
        self.state = State::AfterValue;
    }

    fn value_done(&mut self) {
        self.state = State::AfterValue;
    }

    fn emit_number(&mut self, sink: &mut impl Sink) {
        if !self.buf_overflow {
            if let Some(value) = parse_uint(&self.buf[..self.buf_len]) {
                let _ = self.with_path(|p| sink.leaf(p, Value::Uint(value)));
            }
        }
        self.clear_buf();
    }

    fn emit_string(&mut self, sink: &mut impl Sink) {
        if matches!(
            self.current_key,
            Key::Content | Key::Text | Key::Delta | Key::Response
        ) {
            let n = self.str_len;
            let _ = self.with_path(|p| sink.leaf(p, Value::TextBytes(n)));
        }
        if !self.buf_overflow && self.current_key != Key::Other {
            let buf = &self.buf[..self.buf_len];
            let _ = self.with_path(|p| sink.leaf(p, Value::Str(buf)));
        }
        self.clear_buf();
    }

    /// Feed the next bytes of the document.
    pub fn feed(&mut self, bytes: &[u8], sink: &mut impl Sink) {
        let mut at = 0;
        while let Some(&b) = bytes.get(at) {
            // Inside a string, everything up to the next quote or backslash is taken in
            // one go (most of a response is text); the state machine sees the rest.
            let limit = match self.state {
                State::KeyString { escape: false } => Some(MAX_KEY),
                State::ValueString { escape: false } => Some(MAX_STRING),
                _ => None,
            };
            if let Some(limit) = limit {
                let rest = &bytes[at..];
                let run = rest
                    .iter()
                    .position(|&c| c == b'"' || c == b'\\')
                    .unwrap_or(rest.len());
                if run > 0 {
                    let text = &rest[..run];
                    let keep = match self.state {
                        State::ValueString { .. } => {
                            self.str_len = self.str_len.saturating_add(run as u64);
                            self.current_key != Key::Other
                        }
                        _ => true,
                    };
                    if keep {
                        self.push_run(text, limit);
                    }
                    at += run;
                    continue;
                }
            }
            self.step(b, sink);
            at += 1;
        }
    }

    /// [`Scanner::push_buf`] for a run of bytes.
    fn push_run(&mut self, text: &[u8], limit: usize) {
        let room = limit.min(MAX_STRING).saturating_sub(self.buf_len);
        let n = room.min(text.len());
        self.buf[self.buf_len..self.buf_len + n].copy_from_slice(&text[..n]);
        self.buf_len += n;
        if n < text.len() {
            self.buf_overflow = true;
        }
    }

    fn step(&mut self, b: u8, sink: &mut impl Sink) {
        match self.state {
            State::KeyString { escape } => {
                if escape {
                    self.push_buf(b, MAX_KEY);
                    self.state = State::KeyString { escape: false };
                } else if b == b'\\' {
                    self.buf_overflow = true; // keys we want never contain escapes
                    self.state = State::KeyString { escape: true };
                } else if b == b'"' {
                    self.current_key = if self.buf_overflow {
                        Key::Other
                    } else {
                        Key::from_bytes(&self.buf[..self.buf_len])
                    };
                    self.clear_buf();
                    self.state = State::Colon;
                } else {
                    self.push_buf(b, MAX_KEY);
                }
            }
            State::ValueString { escape } => {
                self.str_len += 1;
                if escape {
                    self.push_buf(b, MAX_STRING);
                    self.state = State::ValueString { escape: false };
                } else if b == b'\\' {
                    self.push_buf(b, MAX_STRING);
                    self.state = State::ValueString { escape: true };
                } else if b == b'"' {
                    self.str_len -= 1; // the closing quote
                    self.emit_string(sink);
                    self.value_done();
                } else if self.current_key != Key::Other {
                    self.push_buf(b, MAX_STRING);
                }
            }
            State::Number => {
                if b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E') {
                    self.push_buf(b, MAX_NUMBER);
                } else {
                    self.emit_number(sink);
                    self.value_done();
                    self.step(b, sink);
                }
            }
            State::SkipNumber => {
                if b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E') {
                    return;
                }
                self.value_done();
                self.step(b, sink);
            }
            State::Literal => {
                if b.is_ascii_alphabetic() {
                    return;
                }
                self.value_done();
                self.step(b, sink);
            }
            State::Value => match b {
                b'{' => self.open(Container::Object),
                b'[' => self.open(Container::Array),
                b'"' => {
                    self.clear_buf();
                    self.str_len = 0;
                    self.state = State::ValueString { escape: false };
                }
                // Wanted numbers are token counts, always under a key of their own.
                b'-' | b'0'..=b'9' if matches!(self.current_key, Key::Other | Key::Index) => {
                    self.state = State::SkipNumber;
                }
                b'-' | b'0'..=b'9' => {
                    self.clear_buf();
                    self.push_buf(b, MAX_NUMBER);
                    self.state = State::Number;
                }
                b't' | b'f' | b'n' => self.state = State::Literal,
                b']' => self.close(), // empty array
                _ => {}               // whitespace or garbage: ignore
            },
            State::Key => match b {
                b'"' => {
                    self.clear_buf();
                    self.state = State::KeyString { escape: false };
                }
                b'}' => self.close(),
                _ => {}
            },
            State::Colon => {
                if b == b':' {
                    self.state = State::Value;
                }
            }
            State::AfterValue => match b {
                b',' => {
                    self.state = match self.container() {
                        Some(Container::Object) => State::Key,
                        _ => State::Value,
                    };
                    if self.container() == Some(Container::Array) {
                        self.current_key = Key::Index;
                    }
                }
                b'}' | b']' => self.close(),
                _ => {}
            },
        }
    }

    /// Call at the end of a document: a number at the very end has no terminator.
    pub fn finish(&mut self, sink: &mut impl Sink) {
        if self.state == State::Number {
            self.emit_number(sink);
            self.value_done();
        }
    }
}

fn parse_uint(bytes: &[u8]) -> Option<u64> {
    if bytes.first() == Some(&b'-') {
        return None;
    }
    let int_part = bytes
        .iter()
        .position(|b| !b.is_ascii_digit())
        .map_or(bytes, |end| &bytes[..end]);
    if int_part.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &d in int_part {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    // An exponent on a token count would be unusual; honour small positive ones.
    if let Some(e_pos) = bytes.iter().position(|b| matches!(b, b'e' | b'E')) {
        let exp: u32 = std::str::from_utf8(&bytes[e_pos + 1..])
            .ok()?
            .trim_start_matches('+')
            .parse()
            .ok()?;
        value = value.checked_mul(10u64.checked_pow(exp)?)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Vec<(Vec<Key>, String)>);
    impl Sink for Collect {
        fn leaf(&mut self, path: &[Key], value: Value<'_>) {
            let v = match value {
                Value::Uint(n) => n.to_string(),
                Value::Str(s) => format!("'{}'", String::from_utf8_lossy(s)),
                Value::TextBytes(n) => format!("#{n}"),
            };
            self.0.push((path.to_vec(), v));
        }
    }

    fn scan_split(doc: &[u8], split: usize) -> Collect {
        let mut scanner = Scanner::default();
        let mut sink = Collect::default();
        let (a, b) = doc.split_at(split);
        scanner.feed(a, &mut sink);
        scanner.feed(b, &mut sink);
        scanner.finish(&mut sink);
        sink
    }

    const OPENAI: &[u8] = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"h\u00e9llo \"usage\": {\"total_tokens\": 999} ✓"},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":3},"completion_tokens_details":{"reasoning_tokens":0}}}"#.as_bytes();

    #[test]
    fn finds_usage_at_every_split() {
        let whole = scan_split(OPENAI, 0).0;
        for split in 0..=OPENAI.len() {
            assert_eq!(scan_split(OPENAI, split).0, whole, "split at {split}");
        }
        let get = |path: &[Key]| {
            whole
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get(&[Key::Usage, Key::TotalTokens]).as_deref(), Some("29"));
        assert_eq!(get(&[Key::Usage, Key::PromptTokens]).as_deref(), Some("19"));
        assert_eq!(
            get(&[Key::Usage, Key::CompletionTokens]).as_deref(),
            Some("10")
        );
        assert_eq!(
            get(&[Key::Usage, Key::PromptTokensDetails, Key::CachedTokens]).as_deref(),
            Some("3")
        );
        assert_eq!(get(&[Key::Model]).as_deref(), Some("'gpt-4o-mini'"));
        // The fake usage inside the message content is a string, never a leaf.
        assert!(!whole.iter().any(|(_, v)| v == "999"));
    }

    #[test]
    fn runs_of_text_read_in_one_go_match_byte_by_byte_reading() {
        let long_key = "k".repeat(MAX_KEY + 5);
        let doc = format!(
            r#"{{"{long_key}":"x","model":"m\"q","content":"{}","usage":{{"total_tokens":7}}}}"#,
            "é".repeat(300)
        );
        let whole = scan_split(doc.as_bytes(), 0).0;
        let mut scanner = Scanner::default();
        let mut sink = Collect::default();
        for b in doc.as_bytes() {
            scanner.feed(std::slice::from_ref(b), &mut sink);
        }
        scanner.finish(&mut sink);
        assert_eq!(sink.0, whole);
        assert!(whole.contains(&(vec![Key::Content], "#600".to_string())));
        assert!(whole.contains(&(vec![Key::Model], r#"'m\"q'"#.to_string())));
        assert!(whole.contains(&(vec![Key::Usage, Key::TotalTokens], "7".to_string())));
    }

    #[test]
    fn bounded_and_never_panics_on_garbage() {
        let mut scanner = Scanner::default();
        let mut sink = Collect::default();
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        scanner.feed(deep.as_bytes(), &mut sink);
        scanner.feed(b"}}}]]]:::,,,\"\\", &mut sink);
        scanner.feed(&[0xff, 0xfe, b'"', 0x80], &mut sink);
        scanner.feed(
            b"{\"usage\":{\"total_tokens\":123456789012345678901234567890}}",
            &mut sink,
        );
        scanner.finish(&mut sink);
    }

    #[test]
    fn numbers_forms() {
        assert_eq!(parse_uint(b"42"), Some(42));
        assert_eq!(parse_uint(b"42.9"), Some(42));
        assert_eq!(parse_uint(b"1e3"), Some(1000));
        assert_eq!(parse_uint(b"-1"), None);
        assert_eq!(parse_uint(b"99999999999999999999999"), None);
    }

    #[test]
    fn number_at_end_of_document() {
        let c = scan_split(b"{\"usage\":{\"total_tokens\":7}}", 26);
        assert_eq!(
            c.0,
            vec![(vec![Key::Usage, Key::TotalTokens], "7".to_string())]
        );
        let mut scanner = Scanner::default();
        let mut sink = Collect::default();
        scanner.feed(b"5", &mut sink);
        scanner.finish(&mut sink);
        assert!(sink.0.is_empty(), "a bare root value has no key");
    }
}
