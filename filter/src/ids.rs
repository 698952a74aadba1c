//! Request ids: 128 bits in hex, the time then random bits. They key idempotent usage
//! ingestion, so they must not come from the client (a replayed id would dodge a
//! charge) and must not collide across VMs and proxies: 80 random bits per
//! millisecond make a collision vanishingly unlikely.

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

    /// 32 lowercase hex digits: the time in milliseconds (48 bits, as in a UUIDv7),
    /// then 80 random bits. Ids made close in time sort close together, so the control
    /// plane's unique index on them grows at one edge: a batch of records dirties a few
    /// index pages instead of one page per record, which with random ids was most of
    /// what an ingestion round wrote to disk. Written without `format!`: this runs for
    /// every request inside the VM, and the formatting machinery's code is cold there
    /// each time.
    pub fn request_id(&mut self, now_ms: u64) -> String {
        let random = Self::next(&mut self.a);
        let more = Self::next(&mut self.b) & 0xffff;
        let mut id = String::with_capacity(32);
        push_hex(&mut id, now_ms & 0xffff_ffff_ffff, 12);
        push_hex(&mut id, random, 16);
        push_hex(&mut id, more, 4);
        id
    }
}

/// Appends the low `digits` hex digits of `value`, most significant first.
fn push_hex(out: &mut String, value: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..digits).rev() {
        out.push(char::from(HEX[((value >> (shift * 4)) & 0xf) as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_the_time_then_random_bits_in_hex() {
        let mut g = IdGen::from_seed([7; 16]);
        let mut h = g.clone();
        let now_ms = 1_764_466_000_123u64;
        let expected = format!(
            "{now_ms:012x}{:016x}{:04x}",
            IdGen::next(&mut h.a),
            IdGen::next(&mut h.b) & 0xffff
        );
        assert_eq!(g.request_id(now_ms), expected);
    }

    #[test]
    fn ids_are_distinct_hex_even_within_one_millisecond() {
        let mut g = IdGen::from_entropy().unwrap();
        let ids: HashSet<String> = (0..10_000).map(|_| g.request_id(42)).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids
            .iter()
            .all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let mut a = IdGen::from_seed([1; 16]);
        let mut b = IdGen::from_seed([2; 16]);
        let mut previous = a.request_id(1_000);
        for now_ms in [1_001, 1_002, 70_000, 1 << 40] {
            let next = if now_ms % 2 == 0 {
                a.request_id(now_ms)
            } else {
                b.request_id(now_ms)
            };
            assert!(next > previous, "{next} after {previous}");
            previous = next;
        }
    }
}
