//! AWS event-stream framing (`application/vnd.amazon.eventstream`), as Bedrock's
//! ConverseStream writes it. One message:
//!
//! ```text
//! total length (u32 BE) | headers length (u32 BE) | prelude CRC32 (of the 8 bytes before)
//! headers: name length (u8) | name | type 7 = string | value length (u16 BE) | value
//! payload
//! message CRC32 (of everything before it)
//! ```
//!
//! CRC32 is the IEEE polynomial (`crc32` of zlib).

use bytes::Bytes;

/// CRC-32/IEEE (reflected polynomial 0xEDB88320), bitwise: fast enough for a test server.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Header value type 7: a UTF-8 string.
const STRING_TYPE: u8 = 7;

/// Encodes one message with string headers.
pub fn message(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut header_bytes = Vec::new();
    for (name, value) in headers {
        header_bytes.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        header_bytes.extend_from_slice(name.as_bytes());
        header_bytes.push(STRING_TYPE);
        header_bytes
            .extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        header_bytes.extend_from_slice(value.as_bytes());
    }
    let total = 12 + header_bytes.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(
        &u32::try_from(header_bytes.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(payload);
    let message_crc = crc32(&out);
    out.extend_from_slice(&message_crc.to_be_bytes());
    Bytes::from(out)
}

/// A Bedrock stream event: `:event-type`, `:content-type: application/json`,
/// `:message-type: event`, JSON payload.
pub fn event(event_type: &str, payload: &str) -> Bytes {
    message(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.as_bytes(),
    )
}

/// A decoded message (for tests): headers and payload, after checking both CRCs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

/// Decodes one message from the start of `data`; returns it and its length.
pub fn decode(data: &[u8]) -> Result<(Decoded, usize), String> {
    let be32 = |at: usize| -> Result<u32, String> {
        data.get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| "truncated".to_owned())
    };
    let total = be32(0)? as usize;
    let headers_len = be32(4)? as usize;
    if be32(8)? != crc32(data.get(..8).ok_or("truncated")?) {
        return Err("prelude CRC mismatch".to_owned());
    }
    if data.len() < total || total < 16 + headers_len {
        return Err("truncated".to_owned());
    }
    if be32(total - 4)? != crc32(&data[..total - 4]) {
        return Err("message CRC mismatch".to_owned());
    }
    let mut headers = Vec::new();
    let mut at = 12;
    while at < 12 + headers_len {
        let name_len = usize::from(data[at]);
        let name = String::from_utf8_lossy(&data[at + 1..at + 1 + name_len]).into_owned();
        at += 1 + name_len;
        if data[at] != STRING_TYPE {
            return Err("only string headers are supported".to_owned());
        }
        let value_len = usize::from(u16::from_be_bytes([data[at + 1], data[at + 2]]));
        let value = String::from_utf8_lossy(&data[at + 3..at + 3 + value_len]).into_owned();
        at += 3 + value_len;
        headers.push((name, value));
    }
    Ok((
        Decoded {
            headers,
            payload: data[12 + headers_len..total - 4].to_vec(),
        },
        total,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn empty_message_matches_the_aws_test_vector() {
        // awslabs/aws-c-event-stream "empty message" vector: 16 bytes.
        let bytes = message(&[], b"");
        assert_eq!(
            &bytes[..],
            &[0, 0, 0, 0x10, 0, 0, 0, 0, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff]
        );
    }

    #[test]
    fn payload_only_vector() {
        // awslabs "payload no headers" vector: {'foo':'bar'}.
        let bytes = message(&[], b"{'foo':'bar'}");
        assert_eq!(
            &bytes[..12],
            &[0, 0, 0, 0x1d, 0, 0, 0, 0, 0xfd, 0x52, 0x8c, 0x5a]
        );
        assert_eq!(&bytes[bytes.len() - 4..], &[0xc3, 0x65, 0x39, 0x36]);
    }

    #[test]
    fn event_round_trips_and_crcs_are_checked() {
        let bytes = event("metadata", r#"{"usage":{"inputTokens":1}}"#);
        let (decoded, len) = decode(&bytes).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(
            decoded.headers[0],
            (":event-type".to_owned(), "metadata".to_owned())
        );
        assert_eq!(
            decoded.headers[2],
            (":message-type".to_owned(), "event".to_owned())
        );
        assert_eq!(decoded.payload, br#"{"usage":{"inputTokens":1}}"#);
        let mut corrupt = bytes.to_vec();
        corrupt[20] ^= 1;
        assert!(decode(&corrupt).is_err());
        let mut corrupt = bytes.to_vec();
        corrupt[2] ^= 1;
        assert_eq!(decode(&corrupt).unwrap_err(), "prelude CRC mismatch");
    }
}
