//! Per-worker histograms of per-packet processing time.
//!
//! Buckets are log-linear, in the spirit of HdrHistogram with 4 bits of
//! sub-bucket precision: values below 16 ns each get their own bucket, and
//! every power of two from 16 ns upwards is split into 16 equal sub-buckets.
//! A bucket's width is therefore at most 1/16 of its lower bound, which is the
//! relative error of any quantile read back. The last bucket ends at 2^32 ns
//! (about 4.3 s); slower samples are clamped into it, and `max_ns` keeps the
//! exact maximum.
//!
//! The histogram is a plain `#[repr(C)]` block of `u64`s so that it can live
//! inside a worker's stats block in the shared region and be copied out by the
//! tools under the stats seqlock. rvs-cp merges bucket counts into an
//! `hdrhistogram` using `bucket_bounds` / `bucket_mid`.

/// Sub-buckets per power of two (4 bits of precision).
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Values at or above `1 << TOP_BITS` ns land in the last bucket.
const TOP_BITS: u32 = 32;

/// Number of buckets: 16 exact ones for 0..16 ns, then 16 per power of two
/// from 2^4 up to 2^31.
pub const LATENCY_BUCKETS: usize = (SUB as usize) * (TOP_BITS - SUB_BITS + 1) as usize;

/// The largest value that gets a bucket of its own precision.
pub const LATENCY_MAX_TRACKED_NS: u64 = (1u64 << TOP_BITS) - 1;

/// Index of the bucket that holds `ns`.
///
/// Values below 16 map to themselves; above, the shift that brings the value
/// into 16..32 selects the power of two and the remaining 4 bits the
/// sub-bucket. Both cases share one formula, so there is no branch beyond the
/// clamp and a saturating subtract (which compile to conditional moves).
#[inline]
pub fn bucket_index(ns: u64) -> usize {
    let v = ns.min(LATENCY_MAX_TRACKED_NS);
    let msb = 63 - (v | 1).leading_zeros();
    let shift = msb.saturating_sub(SUB_BITS);
    ((shift as u64) * SUB + (v >> shift)) as usize
}

/// Bounds `[lo, hi)` in ns of bucket `i`; `None` past the last bucket.
pub fn bucket_bounds(i: usize) -> Option<(u64, u64)> {
    if i >= LATENCY_BUCKETS {
        return None;
    }
    let i = i as u64;
    let shift = (i / SUB).saturating_sub(1);
    let top = if i >= SUB { SUB } else { 0 };
    let lo = ((i % SUB) + top) << shift;
    Some((lo, lo + (1u64 << shift)))
}

/// A representative value for bucket `i` (the middle of its range, rounded
/// down), for tools that feed bucket counts into another histogram.
pub fn bucket_mid(i: usize) -> Option<u64> {
    bucket_bounds(i).map(|(lo, hi)| lo + (hi - lo - 1) / 2)
}

/// Converts TSC cycles to nanoseconds with a 32.32 fixed-point multiplier, so
/// the per-packet path does one multiply and one shift, never a division.
#[derive(Clone, Copy, Debug)]
pub struct CyclesToNs {
    mult: u64,
}

impl CyclesToNs {
    /// `tsc_hz` is the TSC frequency (e.g. `rte_get_tsc_hz()`); 0 is treated as 1 GHz.
    pub fn new(tsc_hz: u64) -> Self {
        let hz = if tsc_hz == 0 { 1_000_000_000 } else { tsc_hz };
        // Rounded up, so exact multiples convert exactly instead of one short.
        let mult = ((1_000_000_000u128 << 32).div_ceil(hz as u128)).min(u64::MAX as u128) as u64;
        CyclesToNs { mult }
    }

    #[inline]
    pub fn to_ns(&self, cycles: u64) -> u64 {
        let ns = (cycles as u128 * self.mult as u128) >> 32;
        ns.min(u64::MAX as u128) as u64
    }
}

/// Latency counts of one worker. All fields are `u64` with no padding: the
/// stats area copies it word by word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct LatencyHist {
    pub counts: [u64; LATENCY_BUCKETS],
    /// Number of samples (the sum of `counts`, kept to avoid a pass).
    pub total: u64,
    /// Sum of all samples in ns (wrapping), for the mean.
    pub sum_ns: u64,
    /// Exact largest sample.
    pub max_ns: u64,
}

impl Default for LatencyHist {
    fn default() -> Self {
        LatencyHist {
            counts: [0; LATENCY_BUCKETS],
            total: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

impl LatencyHist {
    /// Records one sample. No allocation, no data-dependent branch.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        // bucket_index never exceeds LATENCY_BUCKETS - 1; the `min` lets the
        // compiler drop the bounds check.
        let i = bucket_index(ns).min(LATENCY_BUCKETS - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.sum_ns = self.sum_ns.wrapping_add(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Records `n` samples of the same value: every packet of a burst waits
    /// from the burst's RX to its TX flush.
    #[inline]
    pub fn record_n(&mut self, ns: u64, n: u64) {
        let i = bucket_index(ns).min(LATENCY_BUCKETS - 1);
        self.counts[i] += n;
        self.total += n;
        self.sum_ns = self.sum_ns.wrapping_add(ns.wrapping_mul(n));
        self.max_ns = self.max_ns.max(ns);
    }

    /// Records a sample measured in TSC cycles.
    #[inline]
    pub fn record_cycles(&mut self, cycles: u64, conv: &CyclesToNs) {
        self.record(conv.to_ns(cycles));
    }

    /// Records `n` samples measured in TSC cycles.
    #[inline]
    pub fn record_cycles_n(&mut self, cycles: u64, n: u64, conv: &CyclesToNs) {
        self.record_n(conv.to_ns(cycles), n);
    }

    /// Adds another worker's histogram into this one.
    pub fn merge(&mut self, other: &LatencyHist) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.wrapping_add(*b);
        }
        self.total = self.total.wrapping_add(other.total);
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    pub fn reset(&mut self) {
        *self = LatencyHist::default();
    }

    /// Mean in ns, or 0 with no samples.
    pub fn mean_ns(&self) -> u64 {
        self.sum_ns.checked_div(self.total).unwrap_or(0)
    }

    /// The value at quantile `q` (0.0..=1.0): the highest value of the bucket
    /// holding the sample of rank ceil(q * total), capped by the exact maximum.
    /// Within 1/16 of the true sample value. `None` with no samples.
    pub fn value_at_quantile(&self, q: f64) -> Option<u64> {
        // Sum the buckets rather than trust `total`: a block copied from the
        // shared region may be inconsistent if the writer is buggy.
        let n: u64 = self.counts.iter().fold(0u64, |a, c| a.saturating_add(*c));
        if n == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(*c);
            if seen >= rank {
                let (_, hi) = bucket_bounds(i)?;
                return Some((hi - 1).min(self.max_ns.max(bucket_bounds(i)?.0)));
            }
        }
        Some(self.max_ns)
    }

    /// The usual summary: p50, p90, p99, p99.9 and max, in ns.
    pub fn summary(&self) -> Option<LatencySummary> {
        Some(LatencySummary {
            p50: self.value_at_quantile(0.50)?,
            p90: self.value_at_quantile(0.90)?,
            p99: self.value_at_quantile(0.99)?,
            p999: self.value_at_quantile(0.999)?,
            max: self.max_ns,
            mean: self.mean_ns(),
            count: self.total,
        })
    }

    /// Non-empty buckets as `(lo, hi, count)`, for export.
    pub fn nonzero_buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != 0)
            .filter_map(|(i, c)| {
                let (lo, hi) = bucket_bounds(i)?;
                Some((lo, hi, *c))
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LatencySummary {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: u64,
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_n_equals_n_records() {
        let mut a = LatencyHist::default();
        let mut b = LatencyHist::default();
        for (ns, n) in [(5u64, 3u64), (1234, 32), (999_999, 1)] {
            a.record_n(ns, n);
            for _ in 0..n {
                b.record(ns);
            }
        }
        assert_eq!(a.counts, b.counts);
        assert_eq!((a.total, a.sum_ns, a.max_ns), (b.total, b.sum_ns, b.max_ns));
    }

    #[test]
    fn buckets_tile_the_range_without_gaps() {
        let mut prev_hi = 0;
        for i in 0..LATENCY_BUCKETS {
            let (lo, hi) = bucket_bounds(i).unwrap();
            assert_eq!(lo, prev_hi, "bucket {i} starts where {} ended", i.wrapping_sub(1));
            assert!(hi > lo);
            // Relative width at most 1/16 from 16 ns on.
            if lo >= 16 {
                assert!((hi - lo) * 16 <= lo, "bucket {i} [{lo},{hi}) too wide");
            }
            assert_eq!(bucket_index(lo), i);
            assert_eq!(bucket_index(hi - 1), i);
            prev_hi = hi;
        }
        assert_eq!(prev_hi, 1u64 << 32);
        assert!(bucket_bounds(LATENCY_BUCKETS).is_none());
        assert_eq!(bucket_index(u64::MAX), LATENCY_BUCKETS - 1);
        // 1 s is well inside the tracked range.
        assert!(bucket_index(1_000_000_000) < LATENCY_BUCKETS - 1);
    }

    #[test]
    fn small_values_are_exact() {
        for v in 0..16 {
            assert_eq!(bucket_index(v), v as usize);
            assert_eq!(bucket_bounds(v as usize), Some((v, v + 1)));
        }
        assert_eq!(bucket_index(16), 16);
        assert_eq!(bucket_index(31), 31);
        assert_eq!(bucket_index(32), 32);
        assert_eq!(bucket_index(33), 32);
        assert_eq!(bucket_index(34), 33);
    }

    fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    fn check_distribution(mut samples: Vec<u64>) {
        let mut h = LatencyHist::default();
        for s in &samples {
            h.record(*s);
        }
        samples.sort_unstable();
        assert_eq!(h.total, samples.len() as u64);
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let exact = exact_quantile(&samples, q);
            let got = h.value_at_quantile(q).unwrap();
            assert!(got >= exact, "q={q}: {got} < exact {exact}");
            assert!(
                got - exact <= exact / 16,
                "q={q}: got {got}, exact {exact}: beyond 1/16"
            );
        }
        assert_eq!(h.value_at_quantile(1.0), Some(*samples.last().unwrap()));
        assert_eq!(h.max_ns, *samples.last().unwrap());
    }

    /// Deterministic xorshift so the test needs no rand crate.
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn quantiles_of_uniform_distribution() {
        let mut s = 0x9e3779b97f4a7c15;
        check_distribution((0..100_000).map(|_| 100 + rng(&mut s) % 10_000).collect());
    }

    #[test]
    fn quantiles_of_long_tailed_distribution() {
        // Log-uniform from 1 ns to ~1 s: every magnitude is exercised.
        let mut s = 12345;
        check_distribution(
            (0..100_000)
                .map(|_| {
                    let exp = rng(&mut s) % 30;
                    let base = 1u64 << exp;
                    base + rng(&mut s) % base
                })
                .collect(),
        );
    }

    #[test]
    fn quantiles_of_bimodal_distribution() {
        // 99% fast packets at ~200 ns, 1% slow ones at ~50 µs.
        let mut v: Vec<u64> = (0..99_000).map(|i| 190 + i % 20).collect();
        v.extend((0..1_000).map(|i| 50_000 + i));
        let mut h = LatencyHist::default();
        for x in &v {
            h.record(*x);
        }
        let p50 = h.value_at_quantile(0.5).unwrap();
        assert!((190..=221).contains(&p50), "p50 {p50}");
        let p999 = h.value_at_quantile(0.999).unwrap();
        assert!((50_000..=53_125).contains(&p999), "p99.9 {p999}");
        check_distribution(v);
    }

    #[test]
    fn empty_and_merge() {
        let h = LatencyHist::default();
        assert_eq!(h.value_at_quantile(0.5), None);
        assert!(h.summary().is_none());
        let mut a = LatencyHist::default();
        let mut b = LatencyHist::default();
        a.record(100);
        b.record(1000);
        b.record(5_000_000_000); // clamped into the last bucket, max exact
        a.merge(&b);
        assert_eq!(a.total, 3);
        assert_eq!(a.max_ns, 5_000_000_000);
        assert_eq!(a.value_at_quantile(1.0), Some(LATENCY_MAX_TRACKED_NS));
        // 100 sits in [100, 104): the bucket's top is reported.
        assert_eq!(a.value_at_quantile(0.0), Some(103));
        assert_eq!(a.nonzero_buckets().count(), 3);
        assert_eq!(a.value_at_quantile(f64::NAN), a.value_at_quantile(1.0));
    }

    #[test]
    fn cycles_conversion() {
        let c = CyclesToNs::new(2_500_000_000);
        assert_eq!(c.to_ns(2_500), 1_000);
        assert_eq!(c.to_ns(2_500_000_000), 1_000_000_000);
        let one = CyclesToNs::new(1_000_000_000);
        assert_eq!(one.to_ns(12345), 12345);
        assert_eq!(CyclesToNs::new(0).to_ns(7), 7);
        let _ = CyclesToNs::new(1).to_ns(u64::MAX); // saturates, no panic
    }
}
