//! Packet latency as HdrHistograms: the workers' log-linear bucket counts
//! (`rvs_proto::latency`) are merged, each bucket recorded at its midpoint
//! with its count, and every stats interval's difference is appended to an
//! HdrHistogram interval log (V2 format, deflate-compressed), which
//! HistogramLogAnalyzer, `hdrhistogram`'s `IntervalLogIterator`, and the Java
//! and Go readers all read.
//!
//! Timestamps are absolute (seconds since the epoch); each time rvs-cp opens
//! the log it appends a `#[StartTime: ...]` line, so several runs can share
//! one file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use rvs_proto::latency::{bucket_mid, LatencyHist, LATENCY_MAX_TRACKED_NS};

/// An empty histogram wide enough for every latency bucket, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds that meet the constructor's rules (low >= 1, high >=
    // 2 * low, sigfig <= 5): this cannot fail.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, LATENCY_MAX_TRACKED_NS.saturating_mul(2), 3)
        .expect("constant histogram bounds")
}

/// Records every bucket of `h` at its midpoint.
pub fn record_into(h: &LatencyHist, out: &mut Histogram<u64>) {
    for (i, &c) in h.counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        if let Some(mid) = bucket_mid(i) {
            // With auto-resize off, a value past the top is refused; the
            // bounds above cover every midpoint.
            let _ = out.record_n(mid, c);
        }
    }
}

/// What `cur` gained since `prev`, bucket by bucket. When any count went
/// down, the workers started over (rvs-dp restarted): all of `cur` is new.
pub fn delta(cur: &LatencyHist, prev: &LatencyHist) -> LatencyHist {
    let went_back = cur.counts.iter().zip(prev.counts.iter()).any(|(c, p)| c < p);
    if went_back {
        return *cur;
    }
    let mut d = LatencyHist::default();
    for (o, (c, p)) in d.counts.iter_mut().zip(cur.counts.iter().zip(prev.counts.iter())) {
        *o = c - p;
    }
    d.total = d.counts.iter().sum();
    d.sum_ns = cur.sum_ns.wrapping_sub(prev.sum_ns);
    d.max_ns = cur.max_ns;
    d
}

fn epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// An interval log open for appending.
pub struct HlogWriter {
    path: PathBuf,
    file: File,
    serializer: V2DeflateSerializer,
}

impl HlogWriter {
    pub fn open(path: &Path) -> io::Result<HlogWriter> {
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        let mut head = Vec::new();
        let mut ser = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment("rvs-cp: per-packet processing latency of rvs-dp, in nanoseconds")
            .with_start_time(SystemTime::now())
            .begin_log_with(&mut head, &mut ser)?;
        file.write_all(&head)?;
        Ok(HlogWriter {
            path: path.to_path_buf(),
            file,
            serializer: ser,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one interval that started at `start` and lasted `duration`.
    pub fn append(&mut self, h: &Histogram<u64>, start: SystemTime, duration: Duration) -> io::Result<()> {
        // Each line is built in memory and written with one call, so a
        // reader never sees half a line.
        let mut line = Vec::new();
        let mut w = IntervalLogWriterBuilder::new().begin_log_with(&mut line, &mut self.serializer)?;
        w.write_histogram(h, epoch(start), duration, None)
            .map_err(|e| io::Error::other(format!("{e}")))?;
        self.file.write_all(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    #[test]
    fn delta_and_restart() {
        let mut a = LatencyHist::default();
        a.record(100);
        let mut b = a;
        b.record(100);
        b.record(5000);
        let d = delta(&b, &a);
        assert_eq!(d.total, 2);
        let fresh = {
            let mut f = LatencyHist::default();
            f.record(7);
            f
        };
        assert_eq!(delta(&fresh, &b), fresh, "counts going back mean a restart");
    }

    #[test]
    fn log_round_trip() {
        let path = std::env::temp_dir().join(format!("rvs-hlog-unit-{}.hlog", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut l = LatencyHist::default();
        for v in [3u64, 3, 40, 900, 900, 900, 70_000, 5_000_000] {
            l.record(v);
        }
        let mut h = new_histogram();
        record_into(&l, &mut h);
        assert_eq!(h.len(), 8);
        let mut w = HlogWriter::open(&path).unwrap();
        w.append(&h, SystemTime::now(), Duration::from_secs(1)).unwrap();
        w.append(&new_histogram(), SystemTime::now(), Duration::from_secs(1))
            .unwrap();
        drop(w);
        let bytes = std::fs::read(&path).unwrap();
        let mut de = Deserializer::new();
        let mut counts = Vec::new();
        for e in IntervalLogIterator::new(&bytes) {
            if let LogEntry::Interval(i) = e.unwrap() {
                let raw =
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, i.encoded_histogram());
                let raw = raw.unwrap();
                let back: Histogram<u64> = de.deserialize(&mut raw.as_slice()).unwrap();
                let mid = bucket_mid(rvs_proto::latency::bucket_index(900)).unwrap();
                counts.push((back.len(), back.count_at(mid)));
            }
        }
        let _ = std::fs::remove_file(&path);
        assert_eq!(counts[0].0, 8);
        assert_eq!(counts[0].1, 3);
        assert_eq!(counts[1].0, 0);
    }
}
