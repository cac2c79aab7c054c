//! What the load is made of: a seeded random generator, file content that
//! no cache can answer, the EICAR test file, and the file-size mix.
//!
//! Everything is derived from `--seed`, with our own generator (splitmix64)
//! rather than a crate's, so a seed means the same files and the same
//! operation order whatever the dependency versions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The EICAR anti-malware test file: the built-in ruleset matches exactly
/// these 68 bytes at the start of a file of at most 128 bytes
/// (`rules/eicar.yar`), so infected files are always this small.
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// splitmix64: tiny, fast, and the same sequence for a seed forever.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for sub-stream `n` of `seed` (per opener, per phase).
    pub fn derive(seed: u64, n: u64) -> Self {
        let mut g = Self(seed ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03));
        g.next_u64();
        g
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift; the bias is below 2^-32 for our sizes.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// Fills `buf` with bytes that depend on `(seed, n)`: every file or request
/// gets distinct content (so no verdict cache can answer), cheaply.
pub fn fill_content(buf: &mut [u8], seed: u64, n: u64) {
    let mut g = SplitMix64::new(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&g.next_u64().to_le_bytes());
    }
    let rest = chunks.into_remainder();
    let last = g.next_u64().to_le_bytes();
    rest.copy_from_slice(&last[..rest.len()]);
    // The counter itself, in clear, at the start: distinct even if two
    // pseudo-random streams ever collided.
    let tag = n.to_le_bytes();
    let k = tag.len().min(buf.len());
    buf[..k].copy_from_slice(&tag[..k]);
}

/// One size of the mix and its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeWeight {
    pub bytes: u64,
    pub weight: u32,
}

/// A file-size mix such as `4k:70,64k:25,1m:5`: sizes (`k`, `m` = KiB,
/// MiB) with relative weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeMix(Vec<SizeWeight>);

/// Why a size mix did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeMixError(String);

impl fmt::Display for SizeMixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SizeMixError {}

/// `4096`, `4k`, `64K`, `1m`, `1MiB` → bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(digits_end);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return None,
    };
    n.checked_mul(mult)
}

impl FromStr for SizeMix {
    type Err = SizeMixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = vec![];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (size, weight) = part.split_once(':').unwrap_or((part, "1"));
            let bytes = parse_size(size).ok_or_else(|| {
                SizeMixError(format!(
                    "`{size}` is not a size (like 4096, 4k, 64k, 1m) in `{part}`"
                ))
            })?;
            if bytes == 0 || bytes > 256 << 20 {
                return Err(SizeMixError(format!(
                    "`{size}`: sizes go from 1 byte to 256 MiB"
                )));
            }
            let weight: u32 = weight.trim().parse().map_err(|_| {
                SizeMixError(format!("`{weight}` is not a whole weight in `{part}`"))
            })?;
            if weight > 0 {
                out.push(SizeWeight { bytes, weight });
            }
        }
        if out.is_empty() {
            return Err(SizeMixError(format!(
                "`{s}` has no size with a positive weight (expected like 4k:70,64k:25,1m:5)"
            )));
        }
        Ok(Self(out))
    }
}

impl fmt::Display for SizeMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|s| format!("{}:{}", human_size(s.bytes), s.weight))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl SizeMix {
    pub fn entries(&self) -> &[SizeWeight] {
        &self.0
    }

    /// A size drawn with the mix's weights.
    pub fn pick(&self, rng: &mut SplitMix64) -> u64 {
        let total: u64 = self.0.iter().map(|s| u64::from(s.weight)).sum();
        let mut x = rng.below(total);
        for s in &self.0 {
            if x < u64::from(s.weight) {
                return s.bytes;
            }
            x -= u64::from(s.weight);
        }
        self.0.last().map_or(4096, |s| s.bytes)
    }

    /// The weighted mean size, in bytes.
    pub fn mean(&self) -> f64 {
        let total: f64 = self.0.iter().map(|s| f64::from(s.weight)).sum();
        self.0
            .iter()
            .map(|s| s.bytes as f64 * f64::from(s.weight))
            .sum::<f64>()
            / total.max(1.0)
    }
}

/// `4096` → `4k`, `1048576` → `1m`, `1000` → `1000`.
pub fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{}m", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{}k", bytes >> 10)
    } else {
        bytes.to_string()
    }
}

/// Which of `n` items are infected: `round(n * fraction)` of them (at
/// least one when the fraction is positive and `n` is not 0), spread by
/// the generator.
pub fn infected_set(n: usize, fraction: f64, rng: &mut SplitMix64) -> Vec<bool> {
    let mut k = (n as f64 * fraction.clamp(0.0, 1.0)).round() as usize;
    if fraction > 0.0 && n > 0 {
        k = k.max(1);
    }
    let mut v: Vec<bool> = (0..n).map(|i| i < k).collect();
    rng.shuffle(&mut v);
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn content_is_distinct_per_item_and_deterministic() {
        let mut a = vec![0u8; 4096];
        let mut b = vec![0u8; 4096];
        fill_content(&mut a, 7, 1);
        fill_content(&mut b, 7, 2);
        assert_ne!(a, b);
        let mut c = vec![0u8; 4096];
        fill_content(&mut c, 7, 1);
        assert_eq!(a, c);
        fill_content(&mut c, 8, 1);
        assert_ne!(a, c);
        let mut d = vec![0u8; 13];
        fill_content(&mut d, 1, 1);
        let mut e = vec![0u8; 3];
        fill_content(&mut e, 1, 1);
        assert_eq!(e, [1, 0, 0]);
    }

    #[test]
    fn the_generator_is_stable_and_uniform_enough() {
        let mut g = SplitMix64::new(42);
        let first: Vec<u64> = (0..3).map(|_| g.next_u64()).collect();
        let mut h = SplitMix64::new(42);
        assert_eq!(first, (0..3).map(|_| h.next_u64()).collect::<Vec<_>>());
        // A known value pins the sequence: changing it changes every seed.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            counts[g.below(4) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        let u = g.unit();
        assert!((0.0..1.0).contains(&u));
        let mut v: Vec<u32> = (0..50).collect();
        g.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }

    #[test]
    fn size_mixes_parse_print_and_pick_by_weight() {
        let m: SizeMix = "4k:70, 64k:25,1m:5".parse().unwrap();
        assert_eq!(
            m.entries(),
            [
                SizeWeight {
                    bytes: 4096,
                    weight: 70
                },
                SizeWeight {
                    bytes: 65536,
                    weight: 25
                },
                SizeWeight {
                    bytes: 1 << 20,
                    weight: 5
                }
            ]
        );
        assert_eq!(m.to_string(), "4k:70,64k:25,1m:5");
        assert_eq!("100".parse::<SizeMix>().unwrap().entries()[0].bytes, 100);
        assert!("4x:1".parse::<SizeMix>().is_err());
        assert!("4k:0".parse::<SizeMix>().is_err());
        assert!("4k:a".parse::<SizeMix>().is_err());
        assert!("".parse::<SizeMix>().is_err());
        let mut g = SplitMix64::new(1);
        let small = (0..1000).filter(|_| m.pick(&mut g) == 4096).count();
        assert!((600..800).contains(&small), "{small}");
        assert!((m.mean() - (0.7 * 4096.0 + 0.25 * 65536.0 + 0.05 * 1048576.0)).abs() < 1.0);
    }

    #[test]
    fn infected_sets_have_the_fraction_and_at_least_one() {
        let mut g = SplitMix64::new(3);
        assert_eq!(
            infected_set(100, 0.1, &mut g)
                .iter()
                .filter(|x| **x)
                .count(),
            10
        );
        assert_eq!(
            infected_set(10, 0.01, &mut g)
                .iter()
                .filter(|x| **x)
                .count(),
            1
        );
        assert_eq!(
            infected_set(10, 0.0, &mut g).iter().filter(|x| **x).count(),
            0
        );
        assert!(infected_set(0, 0.5, &mut g).is_empty());
    }
}
