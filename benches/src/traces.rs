//! Workloads for hit-ratio replay: the ARC paper's traces and synthetic
//! ones.
//!
//! The traces are from Nimrod Megiddo and Dharmendra S. Modha, "ARC: A
//! Self-Tuning, Low Overhead Replacement Cache", FAST '03, pp. 115–130.
//! They are read at run time from `../shared/traces/` (or `CACHE_TRACES`)
//! and never copied into this repository.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Where the traces are: `CACHE_TRACES`, else `../shared/traces` from the
/// workspace root.
pub fn trace_dir() -> PathBuf {
    std::env::var_os("CACHE_TRACES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces"),
        PathBuf::from,
    )
}

/// The keys of a trace file (`name.lis.zst`): each line
/// `start_block block_count ignored request_no` stands for `block_count`
/// consecutive keys from `start_block`.
pub fn read_trace(name: &str) -> std::io::Result<Vec<u64>> {
    let path = trace_dir().join(format!("{name}.lis.zst"));
    let file = std::fs::File::open(&path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "{}: {e} (set CACHE_TRACES to the traces' directory)",
                path.display()
            ),
        )
    })?;
    let mut keys = Vec::new();
    for line in BufReader::new(zstd::Decoder::new(file)?).lines() {
        let line = line?;
        let mut f = line.split_ascii_whitespace();
        let bad = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad line {line:?}"),
            )
        };
        let start: u64 = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let count: u64 = f.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        keys.extend(start..start + count);
    }
    Ok(keys)
}

/// SplitMix64, for reproducible synthetic workloads.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.bits() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `len` reads of keys 0..`keys` drawn from a Zipf law of exponent `s`
/// (key 0 the most popular), shuffled so popularity is not key order.
pub fn zipf(keys: usize, s: f64, len: usize, seed: u64) -> Vec<u64> {
    let mut cdf = Vec::with_capacity(keys);
    let mut acc = 0.0;
    for rank in 1..=keys {
        acc += 1.0 / (rank as f64).powf(s);
        cdf.push(acc);
    }
    let mut rng = Rng(seed);
    let salt = rng.bits();
    (0..len)
        .map(|_| {
            let u = rng.unit() * acc;
            let rank = cdf.partition_point(|&c| c < u) as u64;
            rank.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt
        })
        .collect()
}

/// Zipf reads interrupted every `every` reads by a sequential scan of
/// `scan` keys never read otherwise: a policy that lets scans flush its
/// hot set loses its hits.
pub fn zipf_with_scans(keys: usize, s: f64, len: usize, every: usize, scan: usize) -> Vec<u64> {
    let base = zipf(keys, s, len, 7);
    let mut out = Vec::with_capacity(len + len / every * scan);
    let mut next_scan = u64::MAX / 2;
    for (i, k) in base.into_iter().enumerate() {
        if i > 0 && i % every == 0 {
            out.extend(next_scan..next_scan + scan as u64);
            next_scan += scan as u64;
        }
        out.push(k);
    }
    out
}
