//! Server-sent-events framing, incremental and byte-level.
//!
//! Splits a `text/event-stream` body into events without buffering lines: the bytes of
//! each `data:` field go straight to a JSON [`Scanner`], and the end of an event (a blank
//! line) finishes and resets it. Only a field name prefix of a few bytes is ever held.

use crate::json_scan::{Scanner, Sink};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the start of a line, matching the field name.
    Start,
    /// Inside the value of a `data:` field; `skip_space` until the first byte.
    Data { skip_space: bool },
    /// Inside any other field, or a comment.
    Skip,
}

/// Feeds the `data:` payloads of an SSE stream to a JSON scanner, one document per event.
#[derive(Debug, Default)]
pub struct SseFramer {
    line: LineState,
    scanner: Scanner,
    /// Whether the current event has had any data bytes.
    event_has_data: bool,
}

#[derive(Debug)]
struct LineState {
    kind: Line,
    prefix: [u8; 5],
    prefix_len: usize,
    /// Bytes on the current line so far (saturating), to recognise blank lines.
    len: usize,
}

impl Default for LineState {
    fn default() -> Self {
        LineState {
            kind: Line::Start,
            prefix: [0; 5],
            prefix_len: 0,
            len: 0,
        }
    }
}

impl SseFramer {
    /// Feed the next bytes of the stream; `sink` receives the JSON leaves of each event.
    pub fn feed(&mut self, mut bytes: &[u8], sink: &mut impl Sink) {
        while let Some((&first, rest)) = bytes.split_first() {
            if self.line.kind == (Line::Data { skip_space: false }) {
                // Hand the whole run up to the end of the line to the scanner at once.
                let end = bytes
                    .iter()
                    .position(|&b| b == b'\n' || b == b'\r')
                    .unwrap_or(bytes.len());
                if end > 0 {
                    self.scanner.feed(&bytes[..end], sink);
                    self.line.len = self.line.len.saturating_add(end);
                    bytes = &bytes[end..];
                    continue;
                }
            }
            self.step(first, sink);
            bytes = rest;
        }
    }

    fn end_line(&mut self, sink: &mut impl Sink) {
        if self.line.len == 0 {
            // Blank line: the event is complete.
            if self.event_has_data {
                self.scanner.finish(sink);
                self.scanner.reset();
                self.event_has_data = false;
            }
        } else if let Line::Data { .. } = self.line.kind {
            // Multi-line data is joined with '\n', which is JSON whitespace.
            self.scanner.feed(b"\n", sink);
        }
        self.line = LineState::default();
    }

    fn step(&mut self, b: u8, sink: &mut impl Sink) {
        if b == b'\n' {
            self.end_line(sink);
            return;
        }
        if b == b'\r' {
            return;
        }
        self.line.len = self.line.len.saturating_add(1);
        match self.line.kind {
            Line::Start => {
                if self.line.prefix_len < self.line.prefix.len() {
                    self.line.prefix[self.line.prefix_len] = b;
                    self.line.prefix_len += 1;
                }
                let seen = &self.line.prefix[..self.line.prefix_len];
                if seen == b"data:" {
                    self.line.kind = Line::Data { skip_space: true };
                    self.event_has_data = true;
                } else if !b"data:".starts_with(seen) {
                    self.line.kind = Line::Skip;
                }
            }
            Line::Data { skip_space } => {
                self.line.kind = Line::Data { skip_space: false };
                if skip_space && b == b' ' {
                    return;
                }
                self.scanner.feed(&[b], sink);
            }
            Line::Skip => {}
        }
    }

    /// End of stream: an event not terminated by a blank line still counts.
    pub fn finish(&mut self, sink: &mut impl Sink) {
        if self.event_has_data {
            self.scanner.finish(sink);
            self.scanner.reset();
            self.event_has_data = false;
        }
    }
}
