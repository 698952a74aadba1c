//! The host's serialized header map (the Proxy-Wasm ABI's `get_header_map_pairs`),
//! parsed in place: a count, then a (name length, value length) pair per header, then
//! each name and value followed by a NUL. The SDK's getter copies every name and value
//! into allocations of their own; reading the one buffer the host wrote costs less.

/// The headers in `bytes`, in order, as (name, value) slices of it. `None` when the
/// buffer is not a well-formed map (it never panics, whatever the bytes).
pub fn parse(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut pairs = Vec::new();
    walk(bytes, |name, value| pairs.push((name, value)))?;
    Some(pairs)
}

/// The first value of each of `names` (lower-case, as Envoy gives header names), read
/// in one pass over the map without allocating: the request path looks up a dozen
/// names, and a scan per name, or a list of every pair, cost more than this. `None`
/// when the buffer is not a well-formed map.
pub fn pick<'a, const N: usize>(
    bytes: &'a [u8],
    names: &[&str; N],
) -> Option<[Option<&'a [u8]>; N]> {
    let mut found = [None; N];
    walk(bytes, |name, value| {
        if let Some(i) = names.iter().position(|n| n.as_bytes() == name) {
            found[i].get_or_insert(value);
        }
    })?;
    Some(found)
}

/// Calls `each` with every (name, value) in order; `None` (after any calls) when the
/// map is malformed.
fn walk<'a>(bytes: &'a [u8], mut each: impl FnMut(&'a [u8], &'a [u8])) -> Option<()> {
    if bytes.is_empty() {
        return Some(());
    }
    let count = usize::try_from(read_u32(bytes, 0)?).ok()?;
    let sizes_end = count.checked_mul(8)?.checked_add(4)?;
    if sizes_end > bytes.len() {
        return None;
    }
    let mut at = sizes_end;
    for i in 0..count {
        let name_len = usize::try_from(read_u32(bytes, 4 + i * 8)?).ok()?;
        let value_len = usize::try_from(read_u32(bytes, 8 + i * 8)?).ok()?;
        let name = bytes.get(at..at.checked_add(name_len)?)?;
        at += name_len + 1;
        let value = bytes.get(at..at.checked_add(value_len)?)?;
        at += value_len + 1;
        each(name, value);
    }
    (at <= bytes.len()).then_some(())
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's encoding (proxy-wasm-cpp-host `exports.cc`).
    fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (n, v) in pairs {
            out.extend_from_slice(&(n.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (n, v) in pairs {
            out.extend_from_slice(n);
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    #[test]
    fn reads_every_pair_in_order() {
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b":path", b"/v1/chat/completions"),
            (b"authorization", b"Bearer tp-x"),
            (b"x-empty", b""),
            (b"x-bytes", b"\xff\xfe obs-text"),
        ];
        assert_eq!(parse(&serialize(&pairs)), Some(pairs));
        assert_eq!(parse(&serialize(&[])), Some(vec![]));
        assert_eq!(parse(&[]), Some(vec![]));
    }

    #[test]
    fn pick_takes_the_first_value_of_each_name_in_one_pass() {
        let map = serialize(&[
            (b":path", b"/v1/chat/completions"),
            (b"x-api-key", b"first"),
            (b"authorization", b"Bearer tp-x"),
            (b"x-api-key", b"second"),
            (b"x-other", b"ignored"),
        ]);
        let names = ["authorization", "x-api-key", ":path", "x-priority"];
        let found = pick(&map, &names).expect("well formed");
        assert_eq!(
            found,
            [
                Some(&b"Bearer tp-x"[..]),
                Some(&b"first"[..]),
                Some(&b"/v1/chat/completions"[..]),
                None
            ]
        );
        assert_eq!(pick(&[], &names), Some([None; 4]));
        // A malformed map gives nothing, even when the names came before the fault.
        assert_eq!(pick(&map[..map.len() - 3], &names), None);
    }

    #[test]
    fn malformed_maps_are_refused_without_panicking() {
        let good = serialize(&[(b"a", b"b"), (b"cc", b"dd")]);
        // Every truncation of a good map.
        for end in 1..good.len() {
            assert_eq!(parse(&good[..end]), None, "truncated at {end}");
        }
        // Counts and lengths far beyond the buffer, including ones that overflow.
        let mut huge_count = good.clone();
        huge_count[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&huge_count), None);
        let mut huge_len = good.clone();
        huge_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&huge_len), None);
        // Arbitrary bytes.
        let mut x: u32 = 12345;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8 % 8
                })
                .collect();
            let _ = parse(&bytes);
            let _ = pick(&bytes, &["a", "cc"]);
        }
    }
}
