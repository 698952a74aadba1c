//! AWS event-stream framing (`application/vnd.amazon.eventstream`, Bedrock's
//! `converse-stream`), incremental and byte-level.
//!
//! A message is a 12-byte prelude (total length, headers length, prelude CRC), headers,
//! a payload and a 4-byte CRC. Only the prelude and the headers (bounded) are held; each
//! payload goes straight to a JSON [`Scanner`], one document per message. A prelude with
//! impossible lengths means the stream is not what it claims: parsing stops (bytes still
//! pass through untouched).

use crate::json_scan::{Scanner, Sink};

const PRELUDE: usize = 12;
const MAX_MESSAGE: u32 = 16 * 1024 * 1024;
const MAX_HEADERS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Prelude,
    Headers { left: usize },
    Payload { left: usize },
    Crc { left: usize },
    Broken,
}

#[derive(Debug)]
pub struct EventStreamFramer {
    state: State,
    prelude: [u8; PRELUDE],
    prelude_len: usize,
    payload_len: usize,
    scanner: Scanner,
    /// `:event-type` of the current message (first bytes only), for callers that care.
    headers: Vec<u8>,
}

impl Default for EventStreamFramer {
    fn default() -> Self {
        EventStreamFramer {
            state: State::Prelude,
            prelude: [0; PRELUDE],
            prelude_len: 0,
            payload_len: 0,
            scanner: Scanner::default(),
            headers: Vec::new(),
        }
    }
}

impl EventStreamFramer {
    pub fn feed(&mut self, mut bytes: &[u8], sink: &mut impl Sink) {
        while !bytes.is_empty() {
            match self.state {
                State::Broken => return,
                State::Prelude => {
                    let take = (PRELUDE - self.prelude_len).min(bytes.len());
                    self.prelude[self.prelude_len..self.prelude_len + take]
                        .copy_from_slice(&bytes[..take]);
                    self.prelude_len += take;
                    bytes = &bytes[take..];
                    if self.prelude_len == PRELUDE {
                        self.start_message();
                    }
                }
                State::Headers { left } => {
                    let take = left.min(bytes.len());
                    if self.headers.len() + take <= MAX_HEADERS {
                        self.headers.extend_from_slice(&bytes[..take]);
                    }
                    bytes = &bytes[take..];
                    self.state = if left == take {
                        self.scanner.reset();
                        self.payload_or_crc()
                    } else {
                        State::Headers { left: left - take }
                    };
                }
                State::Payload { left } => {
                    let take = left.min(bytes.len());
                    self.scanner.feed(&bytes[..take], sink);
                    bytes = &bytes[take..];
                    if left == take {
                        self.scanner.finish(sink);
                        self.state = State::Crc { left: 4 };
                    } else {
                        self.state = State::Payload { left: left - take };
                    }
                }
                State::Crc { left } => {
                    let take = left.min(bytes.len());
                    bytes = &bytes[take..];
                    if left == take {
                        self.prelude_len = 0;
                        self.headers.clear();
                        self.state = State::Prelude;
                    } else {
                        self.state = State::Crc { left: left - take };
                    }
                }
            }
        }
    }

    fn start_message(&mut self) {
        let word = |i: usize| {
            u32::from_be_bytes([
                self.prelude[i],
                self.prelude[i + 1],
                self.prelude[i + 2],
                self.prelude[i + 3],
            ])
        };
        let (total, headers) = (word(0), word(4));
        // total = prelude + headers + payload + crc
        if !(16..=MAX_MESSAGE).contains(&total) || headers > total - 16 {
            self.state = State::Broken;
            return;
        }
        self.payload_len = (total - 16 - headers) as usize;
        self.headers.clear();
        self.state = if headers > 0 {
            State::Headers {
                left: headers as usize,
            }
        } else {
            self.scanner.reset();
            self.payload_or_crc()
        };
    }

    fn payload_or_crc(&self) -> State {
        if self.payload_len > 0 {
            State::Payload {
                left: self.payload_len,
            }
        } else {
            State::Crc { left: 4 }
        }
    }

    /// Whether the framing was abandoned as inconsistent.
    pub fn is_broken(&self) -> bool {
        self.state == State::Broken
    }
}

/// Encode one event-stream message with string headers (for tests and the local provider
/// fixtures). CRCs are computed with CRC-32 (IEEE), as AWS does.
pub fn encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = (16 + h.len() + payload.len()) as u32;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_ieee() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn garbage_prelude_stops_parsing_without_panic() {
        struct Nothing;
        impl Sink for Nothing {
            fn leaf(&mut self, _: &[crate::json_scan::Key], _: crate::json_scan::Value<'_>) {}
        }
        let mut f = EventStreamFramer::default();
        f.feed(&[0xff; 64], &mut Nothing);
        assert!(f.is_broken());
        let mut f = EventStreamFramer::default();
        f.feed(
            &[0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
            &mut Nothing,
        );
        assert!(!f.is_broken(), "an empty message is valid");
    }
}
