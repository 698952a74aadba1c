//! Removes the usage-only chunk Alfred asked for from an OpenAI-style stream, so a
//! client that did not ask for `include_usage` sees exactly the stream it expects.
//!
//! Events are passed on as soon as they are complete; only the bytes of the event in
//! progress are held (at most [`MAX_HELD`]; a larger event cannot be the small usage
//! chunk and streams through).

use crate::usage::{Format, Framing, UsageParser};

/// Largest event held back to be judged.
pub const MAX_HELD: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct UsageChunkStripper {
    held: Vec<u8>,
    /// The last byte other than `\r` was `\n`.
    after_newline: bool,
    /// The current event outgrew [`MAX_HELD`] and is streaming through.
    passing: bool,
}

fn is_usage_only(event: &[u8]) -> bool {
    let mut parser = UsageParser::new(Format::OpenAiChat, Framing::Sse);
    parser.feed(event);
    parser.finish().is_some() && contains_empty_choices(event)
}

fn contains_empty_choices(event: &[u8]) -> bool {
    let needle = b"\"choices\"";
    event.windows(needle.len()).enumerate().any(|(i, w)| {
        w == needle && {
            let rest = event[i + needle.len()..]
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace());
            rest.take(3).eq(b":[]".iter().copied())
        }
    })
}

impl UsageChunkStripper {
    /// The bytes of `chunk` (and earlier held bytes) to send on now.
    pub fn filter(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len());
        for &b in chunk {
            if self.passing {
                out.push(b);
            } else {
                self.held.push(b);
            }
            if b == b'\r' {
                continue;
            }
            let boundary = b == b'\n' && self.after_newline;
            self.after_newline = b == b'\n';
            if boundary {
                if self.passing {
                    self.passing = false;
                } else {
                    if !is_usage_only(&self.held) {
                        out.extend_from_slice(&self.held);
                    }
                    self.held.clear();
                }
            } else if self.held.len() > MAX_HELD {
                out.append(&mut self.held);
                self.passing = true;
            }
        }
        out
    }

    /// End of stream: whatever is held goes out (an unterminated event is never dropped).
    pub fn flush(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Grüße\"},\"finish_reason\":null}],\"usage\":null}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
    const USAGE: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    fn run(input: &[u8], split: usize) -> Vec<u8> {
        let mut s = UsageChunkStripper::default();
        let (a, b) = input.split_at(split);
        let mut out = s.filter(a);
        out.extend(s.filter(b));
        out.extend(s.flush());
        out
    }

    #[test]
    fn removes_only_the_usage_chunk_at_every_split() {
        let input = format!("{STREAM}{USAGE}{DONE}");
        let expected = format!("{STREAM}{DONE}");
        for split in 0..=input.len() {
            assert_eq!(
                String::from_utf8(run(input.as_bytes(), split)).unwrap(),
                expected,
                "split {split}"
            );
        }
        let crlf = input.replace('\n', "\r\n");
        assert_eq!(
            String::from_utf8(run(crlf.as_bytes(), 17)).unwrap(),
            expected.replace('\n', "\r\n")
        );
    }

    #[test]
    fn complete_events_are_not_held() {
        let mut s = UsageChunkStripper::default();
        assert_eq!(s.filter(STREAM.as_bytes()), STREAM.as_bytes());
        assert_eq!(s.filter(b"data: {\"partial"), b"");
        assert_eq!(s.flush(), b"data: {\"partial");
    }

    #[test]
    fn huge_events_stream_through() {
        let big = format!(
            "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
            "x".repeat(MAX_HELD * 2)
        );
        let input = format!("{big}{USAGE}{DONE}");
        let mut s = UsageChunkStripper::default();
        let mut out = Vec::new();
        for chunk in input.as_bytes().chunks(1000) {
            out.extend(s.filter(chunk));
        }
        out.extend(s.flush());
        assert_eq!(String::from_utf8(out).unwrap(), format!("{big}{DONE}"));
    }
}
