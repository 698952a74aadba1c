//! What the provider checks about the gateway: no client key leaks through, and the
//! provider credential was swapped in.

/// Prefix of Alfred's client keys.
pub const CLIENT_KEY_PREFIX: &str = "tp-";

/// Whether a header value carries something that looks like an Alfred client key:
/// `tp-` at the start of the value or of a word (`Bearer tp-…`). Inside a word
/// (`http-client`) it is not a key.
pub fn contains_client_key(value: &str) -> bool {
    value.match_indices(CLIENT_KEY_PREFIX).any(|(at, _)| {
        value[..at]
            .chars()
            .next_back()
            .is_none_or(|before| !before.is_ascii_alphanumeric())
    })
}

/// The credential part of an auth header value: after `Bearer ` when present.
pub fn credential(value: &str) -> &str {
    let trimmed = value.trim();
    match trimmed.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => trimmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_keys_where_sdks_put_them() {
        assert!(contains_client_key("Bearer tp-abc123"));
        assert!(contains_client_key("tp-abc123"));
        assert!(contains_client_key("key=tp-abc"));
    }

    #[test]
    fn ignores_tp_inside_words() {
        assert!(!contains_client_key("http-client/1.0"));
        assert!(!contains_client_key("Bearer sk-local-provider"));
        assert!(!contains_client_key(""));
    }

    #[test]
    fn credential_strips_the_bearer_scheme() {
        assert_eq!(credential("Bearer sk-1"), "sk-1");
        assert_eq!(credential("bearer  sk-1 "), "sk-1");
        assert_eq!(credential("sk-1"), "sk-1");
    }
}
