//! Server-sent-event framing and write splitting.
//!
//! A response body is built as a list of *frames* (one SSE event, one JSON document, …)
//! and then turned into the list of *writes* the server performs. By default each frame
//! is one write; with `x-local-provider-chunk-bytes: N` the concatenated body is cut
//! into N-byte writes regardless of frame or UTF-8 character boundaries, which is how
//! real providers' bytes reach a proxy after TCP segmentation.

use bytes::Bytes;

/// The terminator OpenAI sends after the last chunk.
pub const DONE: &str = "data: [DONE]\n\n";

/// One SSE event carrying `data` (which must not contain a newline; JSON from
/// `serde_json::to_string` never does).
pub fn data_event(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// A named SSE event (`event: NAME` line before the data), as Anthropic uses.
pub fn named_event(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// Turns frames into writes: unchanged when `chunk_bytes` is `None` (or 0), otherwise
/// the concatenation cut into `chunk_bytes`-sized pieces (the last may be shorter).
pub fn split_writes(frames: &[Bytes], chunk_bytes: Option<usize>) -> Vec<Bytes> {
    match chunk_bytes {
        Some(size) if size > 0 => {
            let body: Vec<u8> = frames
                .iter()
                .flat_map(|frame| frame.iter().copied())
                .collect();
            body.chunks(size).map(Bytes::copy_from_slice).collect()
        }
        _ => frames.to_vec(),
    }
}

/// Total length of a list of frames or writes.
pub fn total_len(parts: &[Bytes]) -> usize {
    parts.iter().map(Bytes::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_event_is_one_line_and_a_blank_line() {
        assert_eq!(&data_event("{\"a\":1}")[..], b"data: {\"a\":1}\n\n");
        assert_eq!(&named_event("ping", "{}")[..], b"event: ping\ndata: {}\n\n");
        assert_eq!(DONE.as_bytes(), b"data: [DONE]\n\n");
    }

    #[test]
    fn no_chunk_size_keeps_one_write_per_frame() {
        let frames = vec![data_event("1"), data_event("2")];
        assert_eq!(split_writes(&frames, None), frames);
        assert_eq!(split_writes(&frames, Some(0)), frames);
    }

    #[test]
    fn chunk_size_cuts_across_frames_and_keeps_every_byte() {
        let frames = vec![
            data_event("{\"x\":\"café\"}"),
            Bytes::from_static(DONE.as_bytes()),
        ];
        let whole: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        for size in 1..=whole.len() + 1 {
            let writes = split_writes(&frames, Some(size));
            assert!(writes.iter().all(|w| w.len() <= size && !w.is_empty()));
            let joined: Vec<u8> = writes.iter().flat_map(|w| w.to_vec()).collect();
            assert_eq!(joined, whole, "size {size}");
            assert_eq!(total_len(&writes), whole.len());
        }
    }

    #[test]
    fn chunk_size_can_cut_a_multibyte_character() {
        // "é" is two bytes; with 1-byte writes it must arrive split.
        let frames = vec![Bytes::from("é")];
        let writes = split_writes(&frames, Some(1));
        assert_eq!(writes.len(), 2);
        assert!(std::str::from_utf8(&writes[0]).is_err());
    }
}
