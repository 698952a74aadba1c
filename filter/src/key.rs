//! Client keys: where each SDK puts them, what a well-formed Alfred key looks like, and
//! the hash that is the only form of a key that ever leaves the proxy.

use sha2::{Digest, Sha256};

/// Request headers that may carry a client key. All are removed before the request goes
/// upstream, whichever one held the key.
pub const KEY_HEADERS: [&str; 4] = ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

const PREFIX: &str = "tp-";
const MIN_LEN: usize = PREFIX.len() + 16;
const MAX_LEN: usize = 256;

/// What the request presented.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientKey<'a> {
    Missing,
    /// Something was presented, but it cannot be an Alfred key.
    Malformed,
    Found(&'a str),
}

/// Find the key: `Authorization: Bearer tp-…` first, then `X-API-Key` (Anthropic SDK),
/// `api-key` (Azure SDK), `x-goog-api-key` (Gemini SDK). `header` returns a header value.
pub fn find<'a>(header: impl Fn(&str) -> Option<&'a str>) -> ClientKey<'a> {
    let mut presented = false;
    if let Some(auth) = header("authorization") {
        presented = true;
        let token = auth
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if let Some(key) = token.filter(|t| well_formed(t)) {
            return ClientKey::Found(key);
        }
    }
    for name in &KEY_HEADERS[1..] {
        if let Some(value) = header(name) {
            presented = true;
            let value = value.trim();
            if well_formed(value) {
                return ClientKey::Found(value);
            }
        }
    }
    if presented {
        ClientKey::Malformed
    } else {
        ClientKey::Missing
    }
}

/// A key passed as the `key` query parameter (Gemini's REST convention): the key, and
/// the path without that parameter, which is what goes upstream.
pub fn from_query(path: &str) -> Option<(&str, String)> {
    let (base, query) = path.split_once('?')?;
    let mut found = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("key=") {
            Some(value) => found = Some(value),
            None => kept.push(pair),
        }
    }
    let key = found?;
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Some((key, rest))
}

fn well_formed(key: &str) -> bool {
    key.starts_with(PREFIX)
        && (MIN_LEN..=MAX_LEN).contains(&key.len())
        && key[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// SHA-256 of the whole key, lower-case hex: how the control plane stores and looks up keys.
pub fn hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "tp-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcde";

    fn find_in<'a>(headers: &'a [(&'a str, &'a str)]) -> ClientKey<'a> {
        find(|name| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
    }

    #[test]
    fn finds_key_where_sdks_put_it() {
        let bearer = format!("Bearer {KEY}");
        assert_eq!(
            find_in(&[("authorization", &bearer)]),
            ClientKey::Found(KEY)
        );
        assert_eq!(
            find_in(&[("authorization", &format!("bearer  {KEY}"))]),
            ClientKey::Found(KEY)
        );
        assert_eq!(find_in(&[("x-api-key", KEY)]), ClientKey::Found(KEY));
        assert_eq!(find_in(&[("api-key", KEY)]), ClientKey::Found(KEY));
        assert_eq!(find_in(&[("x-goog-api-key", KEY)]), ClientKey::Found(KEY));
        // A non-Alfred Authorization does not hide an X-API-Key.
        assert_eq!(
            find_in(&[("authorization", "Basic Zm9v"), ("x-api-key", KEY)]),
            ClientKey::Found(KEY)
        );
    }

    #[test]
    fn rejects_what_cannot_be_a_key() {
        assert_eq!(find_in(&[]), ClientKey::Missing);
        for bad in [
            "Bearer sk-live-123",
            "Bearer tp-short",
            "Bearer",
            "tp-AbCdEfGhIjKlMnOpQr",
            "Bearer tp-AbCdEfGhIjKlMnOpQr$%",
        ] {
            assert_eq!(
                find_in(&[("authorization", bad)]),
                ClientKey::Malformed,
                "{bad}"
            );
        }
        let huge = format!("Bearer tp-{}", "a".repeat(10_000));
        assert_eq!(find_in(&[("authorization", &huge)]), ClientKey::Malformed);
        assert_eq!(
            find_in(&[("authorization", "Bearer tp-ÄÖÜäöüßÄÖÜäöüßÄÖÜ")]),
            ClientKey::Malformed
        );
    }

    #[test]
    fn key_in_query_is_found_and_removed_from_the_path() {
        let path =
            format!("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key={KEY}");
        let (key, rest) = from_query(&path).unwrap();
        assert_eq!(key, KEY);
        assert_eq!(
            rest,
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        let path = format!("/v1beta/models/m:generateContent?key={KEY}");
        assert_eq!(
            from_query(&path).unwrap().1,
            "/v1beta/models/m:generateContent"
        );
        assert_eq!(from_query("/v1/chat/completions?alt=sse"), None);
        assert_eq!(from_query("/v1/chat/completions"), None);
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
