//! Request ids: 128 random bits, hex. They key idempotent usage ingestion, so they must
//! not come from the client (a replayed id would dodge a charge) and must not collide
//! across VMs and proxies.

/// A small, fast generator (SplitMix64 over a 128-bit state) seeded from the host's
/// random source once per VM.
#[derive(Debug, Clone)]
pub struct IdGen {
    a: u64,
    b: u64,
}

impl IdGen {
    pub fn from_seed(seed: [u8; 16]) -> Self {
        let (lo, hi) = seed.split_at(8);
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(lo);
        b.copy_from_slice(hi);
        IdGen {
            a: u64::from_le_bytes(a),
            b: u64::from_le_bytes(b),
        }
    }

    /// Seed from the WASI random source (or the OS, natively).
    pub fn from_entropy() -> Result<Self, String> {
        let mut seed = [0u8; 16];
        getrandom::getrandom(&mut seed).map_err(|e| format!("no random source: {e}"))?;
        Ok(Self::from_seed(seed))
    }

    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn next_u64(&mut self) -> u64 {
        Self::next(&mut self.a) ^ Self::next(&mut self.b).rotate_left(17)
    }

    /// 32 lowercase hex digits. Written without `format!`: this runs for every request
    /// inside the VM, and the formatting machinery's code is cold there each time.
    pub fn request_id(&mut self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let hi = Self::next(&mut self.a);
        let lo = Self::next(&mut self.b);
        let mut id = String::with_capacity(32);
        for word in [hi, lo] {
            for shift in (0..16).rev() {
                id.push(char::from(HEX[((word >> (shift * 4)) & 0xf) as usize]));
            }
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_the_two_words_in_hex() {
        let mut g = IdGen::from_seed([7; 16]);
        let mut h = g.clone();
        let expected = format!(
            "{:016x}{:016x}",
            IdGen::next(&mut h.a),
            IdGen::next(&mut h.b)
        );
        assert_eq!(g.request_id(), expected);
    }

    #[test]
    fn ids_are_distinct_hex() {
        let mut g = IdGen::from_entropy().unwrap();
        let ids: HashSet<String> = (0..10_000).map(|_| g.request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids
            .iter()
            .all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }
}
