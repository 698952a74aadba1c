//! API keys: `tp-` followed by 32 random bytes in unpadded base64url. Only the
//! SHA-256 of the whole key is stored; the key itself is shown once, at creation.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// Prefix every Alfred key starts with.
pub const KEY_PREFIX: &str = "tp-";
/// Random bytes in a key.
const KEY_BYTES: usize = 32;
/// Length of a well-formed key: prefix + 43 base64url characters.
pub const KEY_LEN: usize = 3 + 43;
/// Characters of the key kept for display (`tp-` + 8).
const DISPLAY_PREFIX_LEN: usize = 11;

/// A freshly generated key. Deliberately not `Debug`: it must not reach logs.
pub struct GeneratedKey {
    /// The key to hand to the user, once.
    pub plaintext: String,
    /// What is stored: SHA-256 hex of `plaintext`.
    pub hash: String,
    /// A short, non-secret prefix for listings.
    pub display_prefix: String,
}

/// Generates a new key from the OS random source.
pub fn generate() -> GeneratedKey {
    let mut bytes = [0_u8; KEY_BYTES];
    OsRng.fill_bytes(&mut bytes);
    let plaintext = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_key(&plaintext);
    let display_prefix = plaintext.chars().take(DISPLAY_PREFIX_LEN).collect();
    GeneratedKey {
        plaintext,
        hash,
        display_prefix,
    }
}

/// SHA-256 hex of the whole key, as the filter computes it too.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `key` has the shape of an Alfred key (checked before any database work).
pub fn is_well_formed(key: &str) -> bool {
    key.len() == KEY_LEN
        && key.starts_with(KEY_PREFIX)
        && key[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `hash` is 64 lowercase hex characters, the shape of a stored key hash.
pub fn is_key_hash(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_unique() {
        let a = generate();
        let b = generate();
        assert!(a.plaintext.starts_with("tp-"));
        assert_eq!(a.plaintext.len(), KEY_LEN);
        assert!(is_well_formed(&a.plaintext));
        assert_ne!(a.plaintext, b.plaintext);
        assert_eq!(a.hash, hash_key(&a.plaintext));
        assert!(is_key_hash(&a.hash));
        assert_eq!(a.display_prefix, a.plaintext[..11]);
    }

    #[test]
    fn hash_is_sha256_hex_of_the_whole_key() {
        // sha256("test") — the example in docs/lease-protocol.md starts with 9f86d08.
        assert_eq!(
            hash_key("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn malformed_keys_are_rejected() {
        assert!(!is_well_formed("tp-short"));
        assert!(!is_well_formed(&format!("sk-{}", "a".repeat(43))));
        assert!(!is_well_formed(&format!("tp-{}", "!".repeat(43))));
        assert!(is_well_formed(&format!("tp-{}", "a".repeat(43))));
        assert!(!is_key_hash(&"A".repeat(64)));
    }
}
