//! A small seeded random generator (SplitMix64) for the demo seed.
//!
//! Written out rather than taken from `rand` so a seed keeps producing the same
//! organisation across dependency upgrades (`rand`'s `StdRng` promises no stable
//! stream), and only integer and basic float arithmetic is used, which IEEE 754 makes
//! identical on every platform: screenshots of a seeded demo stay comparable.

/// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit state advanced by a constant and
/// mixed; statistically fine for generating demo data, not for secrets.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent generator for one part of the plan, so adding draws to one
    /// part does not shift every other part's numbers.
    pub fn fork(&mut self, label: u64) -> Self {
        Self::new(self.next_u64() ^ label.wrapping_mul(0xA076_1D64_78BD_642F))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // 53 bits fit an f64 mantissa exactly
        let top = (self.next_u64() >> 11) as f64;
        top / (1_u64 << 53) as f64
    }

    /// Uniform in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // Multiply-shift: unbiased enough for demo data, no loop.
        let n64 = n as u64;
        let r = (u128::from(self.next_u64()) * u128::from(n64)) >> 64;
        usize::try_from(r).unwrap_or(0)
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = usize::try_from(hi - lo).unwrap_or(usize::MAX - 1) + 1;
        lo + i64::try_from(self.below(span)).unwrap_or(0)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice (`None` for an empty one).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }

    /// An index drawn with the given integer weights (`0` when all are zero).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if total == 0 {
            return 0;
        }
        let mut r = self.next_u64() % total;
        for (i, &w) in weights.iter().enumerate() {
            if r < u64::from(w) {
                return i;
            }
            r -= u64::from(w);
        }
        weights.len() - 1
    }

    /// A right-skewed factor with mean ≈ 1 (0.3 to 3.35): most values below 1, a
    /// long tail of big ones, like request sizes. Basic arithmetic only.
    pub fn skewed(&mut self) -> f64 {
        let (a, b, c) = (self.unit(), self.unit(), self.unit());
        0.3 + 0.55 * a + 2.5 * b * b * c
    }

    /// Shuffles in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_fixed_by_the_seed() {
        // SplitMix64's published first output for seed 0.
        assert_eq!(Rng::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(42);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(42);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn ranges_hold() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(r.below(3) < 3);
            let x = r.between(-2, 2);
            assert!((-2..=2).contains(&x));
            let s = r.skewed();
            assert!((0.3..3.35).contains(&s));
        }
        assert_eq!(r.weighted(&[0, 0, 5]), 2);
        let mean: f64 = (0..20_000).map(|_| r.skewed()).sum::<f64>() / 20_000.0;
        assert!((0.95..1.05).contains(&mean), "{mean}");
    }
}
