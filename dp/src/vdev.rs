//! What rvs-dp knows about the virtual devices labs run on, and the pitfalls
//! that otherwise fail silently or with DPDK's bare errno:
//!
//! - `net_af_packet` on a veth whose peer has TX checksum offload on (the
//!   veth default) receives TCP/UDP frames with a *partial* checksum: only
//!   the pseudo-header sum, the rest left to a NIC that does not exist.
//!   rvs-dp forwards them and the next kernel drops them without a word.
//!   [`CsumSampler`] verifies one frame in [`CSUM_SAMPLE_EVERY`] on such
//!   ports, counts the wrong ones, and the worker logs [`CsumSampler::hint`]
//!   once.
//! - `net_pcap` with `infinite_rx=1` keeps every frame of its file in an mbuf
//!   of its own; a pool smaller than that fails the RX queue setup with
//!   EINVAL. [`pcap_pool_hint`] names the `[dataplane] mbufs` key and the
//!   numbers.
//!
//! Pure code: no DPDK, tested without it.

use std::io::{Read, Seek, SeekFrom};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::checksum;

/// The driver part of devargs: `net_af_packet` for `net_af_packet1,iface=d1`.
pub fn driver(devargs: &str) -> &str {
    let name = devargs.split(',').next().unwrap_or("").trim();
    name.trim_end_matches(|c: char| c.is_ascii_digit())
}

/// The value of `key=` in devargs, if given.
pub fn devarg<'a>(devargs: &'a str, key: &str) -> Option<&'a str> {
    devargs
        .split(',')
        .skip(1)
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

// ---------------------------------------------------------------------------
// af_packet: sampled RX checksum verification

/// One received frame in this many is verified on af_packet ports.
pub const CSUM_SAMPLE_EVERY: u32 = 64;

/// Whether the TCP/UDP checksum of an Ethernet/IPv4 frame is right.
/// `None` when the frame carries nothing to verify: not IPv4 TCP/UDP, a
/// fragment, a UDP datagram without checksum (0), or cut short (a frame the
/// mbuf could not hold whole).
pub fn l4_checksum_ok(frame: &[u8]) -> Option<bool> {
    const ETH: usize = 14;
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(ETH..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x3fff != 0 || total < ihl || total > ip.len() {
        return None;
    }
    let proto = ip[9];
    let l4 = &ip[ihl..total];
    match proto {
        6 if l4.len() >= 20 => {}
        17 if l4.len() >= 8 => {
            if l4[6..8] == [0, 0] {
                return None;
            }
        }
        _ => return None,
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let s = checksum::pseudo_header_sum(src, dst, proto, l4.len() as u16) + checksum::sum(l4);
    Some(checksum::fold(s) == 0xffff)
}

/// Sampled checksum verification for one af_packet port on one worker.
/// The worker holds `Option<CsumSampler>` per port: `None` (every other
/// driver) costs one untaken branch per burst.
#[derive(Debug, Clone)]
pub struct CsumSampler {
    /// Our port index and name, and the kernel interface (`iface=`).
    pub port: usize,
    pub name: String,
    pub iface: String,
    countdown: u32,
    /// Frames verified, and of those, with a wrong TCP/UDP checksum.
    pub sampled: u64,
    pub bad: u64,
    hinted: bool,
}

impl CsumSampler {
    /// A sampler if `devargs` names an af_packet device.
    pub fn for_port(port: usize, name: &str, devargs: &str) -> Option<CsumSampler> {
        if driver(devargs) != "net_af_packet" && driver(devargs) != "eth_af_packet" {
            return None;
        }
        Some(CsumSampler {
            port,
            name: name.to_string(),
            iface: devarg(devargs, "iface").unwrap_or("?").to_string(),
            // The first frame is verified, so a short run still tells.
            countdown: 1,
            sampled: 0,
            bad: 0,
            hinted: false,
        })
    }

    /// Called once per received burst of `n` frames: verifies the first
    /// verifiable frame of the burst once `CSUM_SAMPLE_EVERY` frames have
    /// gone by since the last verified one.
    #[inline]
    pub fn on_burst<'a>(&mut self, n: usize, frames: impl Iterator<Item = &'a [u8]>) {
        let n = n.min(u32::MAX as usize) as u32;
        if self.countdown > n {
            self.countdown -= n;
            return;
        }
        for f in frames {
            if let Some(ok) = l4_checksum_ok(f) {
                self.sampled += 1;
                self.bad += u64::from(!ok);
                self.countdown = CSUM_SAMPLE_EVERY;
                return;
            }
        }
        // Nothing verifiable in this burst: try the next one.
        self.countdown = 1;
    }

    /// True once per process and port, the first time this port saw a bad
    /// checksum (any worker): the caller logs [`CsumSampler::hint`] then.
    /// Cheap when nothing is bad: a worker calls it between bursts.
    pub fn take_hint(&mut self) -> bool {
        static HINTED: AtomicU64 = AtomicU64::new(0);
        if self.bad == 0 || self.hinted {
            return false;
        }
        self.hinted = true;
        let bit = 1u64 << (self.port % 64);
        HINTED.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    /// The message for the log: the device, the count, the fix.
    pub fn hint(&self) -> String {
        format!(
            "port {} '{}' (af_packet iface={}): {} of {} sampled TCP/UDP frames had a wrong L4 checksum \
             (counted as rx_l4_csum_bad). The sender has TX checksum offload on, as veths do by \
             default: such frames leave rvs-dp unchanged and the receiver drops them silently. Fix: \
             `ethtool -K <iface> tx off` on every interface of the veth lab (the peer of {} and every \
             host behind it); see README, \"net_af_packet ports on veths\"",
            self.port, self.name, self.iface, self.bad, self.sampled, self.iface
        )
    }
}

// ---------------------------------------------------------------------------
// pcap: frames preloaded by infinite_rx

/// Number of frames in a pcap file (classic format, either byte order).
pub fn pcap_frames(path: &Path) -> std::io::Result<u64> {
    let mut f = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut hdr = [0u8; 24];
    f.read_exact(&mut hdr)?;
    let magic = [hdr[0], hdr[1], hdr[2], hdr[3]];
    let le = match u32::from_le_bytes(magic) {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        _ => match u32::from_be_bytes(magic) {
            0xa1b2_c3d4 | 0xa1b2_3c4d => false,
            _ => return Err(std::io::Error::other("not a pcap file")),
        },
    };
    let mut n = 0u64;
    let mut rec = [0u8; 16];
    loop {
        match f.read_exact(&mut rec) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(n),
            Err(e) => return Err(e),
        }
        let b = [rec[8], rec[9], rec[10], rec[11]];
        let incl = if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        };
        f.seek(SeekFrom::Current(i64::from(incl)))?;
        n += 1;
    }
}

/// For a port that failed to configure: if it is a `net_pcap` replaying a
/// file with `infinite_rx=1` into a pool too small for it, says so, with the
/// config key and the numbers. `rx_queues`: each RX queue preloads the file.
pub fn pcap_pool_hint(devargs: &str, mbufs: u32, rx_queues: u16) -> Option<String> {
    if driver(devargs) != "net_pcap" && driver(devargs) != "eth_pcap" {
        return None;
    }
    let infinite = devarg(devargs, "infinite_rx").is_some_and(|v| v.trim() != "0");
    let file = devarg(devargs, "rx_pcap")?;
    if !infinite {
        return None;
    }
    let frames = match pcap_frames(Path::new(file)) {
        // Enough room for the preload: the failure is something else.
        Ok(n) if n.saturating_mul(u64::from(rx_queues)) <= u64::from(mbufs) => return None,
        Ok(n) => n.to_string(),
        Err(_) => "an unknown number of".to_string(),
    };
    Some(format!(
        "net_pcap with infinite_rx=1 holds every frame of {file} in an mbuf of its own, on each of its \
         {rx_queues} RX queue(s): {file} has {frames} frames, the mbuf pool has {mbufs}. Set \
         [dataplane] mbufs above frames x RX queues plus the rings (a smaller [dataplane] \
         mbuf_data_room fits a big pool in less memory)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 + UDP (or TCP) frame with a correct checksum.
    fn frame(proto: u8) -> Vec<u8> {
        let l4len = if proto == 6 { 20 + 5 } else { 8 + 5 };
        let mut f = vec![0u8; 14 + 20 + l4len];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((20 + l4len) as u16).to_be_bytes());
        f[22] = 64;
        f[23] = proto;
        f[26..30].copy_from_slice(&[10, 7, 0, 10]);
        f[30..34].copy_from_slice(&[10, 7, 0, 1]);
        f[34..36].copy_from_slice(&4000u16.to_be_bytes());
        f[36..38].copy_from_slice(&9u16.to_be_bytes());
        let at = if proto == 6 {
            f[46] = 0x50;
            50
        } else {
            f[38..40].copy_from_slice(&(l4len as u16).to_be_bytes());
            40
        };
        let n = f.len();
        f[n - 5..].copy_from_slice(b"hello");
        let s = checksum::pseudo_header_sum(
            Ipv4Addr::new(10, 7, 0, 10),
            Ipv4Addr::new(10, 7, 0, 1),
            proto,
            l4len as u16,
        ) + checksum::sum(&f[34..]);
        f[at..at + 2].copy_from_slice(&checksum::finish(s).to_be_bytes());
        f
    }

    /// What a veth with TX checksum offload hands af_packet: the field holds
    /// the pseudo-header sum only.
    fn partial(mut f: Vec<u8>) -> Vec<u8> {
        let at = if f[23] == 6 { 50 } else { 40 };
        let ps = checksum::pseudo_header_sum(
            Ipv4Addr::new(10, 7, 0, 10),
            Ipv4Addr::new(10, 7, 0, 1),
            f[23],
            (f.len() - 34) as u16,
        );
        f[at..at + 2].copy_from_slice(&checksum::fold(ps).to_be_bytes());
        f
    }

    #[test]
    fn verifies_tcp_and_udp_and_skips_the_rest() {
        for proto in [6, 17] {
            assert_eq!(l4_checksum_ok(&frame(proto)), Some(true), "proto {proto}");
            assert_eq!(
                l4_checksum_ok(&partial(frame(proto))),
                Some(false),
                "proto {proto}"
            );
            let short = frame(proto);
            assert_eq!(l4_checksum_ok(&short[..short.len() - 1]), None, "cut short");
        }
        let mut nocsum = frame(17);
        nocsum[40..42].copy_from_slice(&[0, 0]);
        assert_eq!(l4_checksum_ok(&nocsum), None);
        let mut frag = frame(17);
        frag[20] = 0x20; // MF
        assert_eq!(l4_checksum_ok(&frag), None);
        let mut arp = frame(17);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(l4_checksum_ok(&arp), None);
        let mut icmp = frame(17);
        icmp[23] = 1;
        assert_eq!(l4_checksum_ok(&icmp), None);
        assert_eq!(l4_checksum_ok(&[]), None);
    }

    #[test]
    fn sampler_only_on_af_packet_and_one_frame_in_n() {
        assert!(CsumSampler::for_port(0, "p", "net_pcap0,rx_pcap=x").is_none());
        assert!(CsumSampler::for_port(0, "p", "0000:01:00.0").is_none());
        let mut s = CsumSampler::for_port(3, "client", "net_af_packet0,iface=d0,qpairs=2").unwrap();
        assert_eq!(s.iface, "d0");
        let bad = partial(frame(6));
        let arp = {
            let mut a = frame(6);
            a[12..14].copy_from_slice(&[0x08, 0x06]);
            a
        };
        // A burst with nothing to verify keeps the sampler due.
        s.on_burst(1, [arp.as_slice()].into_iter());
        assert_eq!(s.sampled, 0);
        s.on_burst(2, [arp.as_slice(), bad.as_slice()].into_iter());
        assert_eq!((s.sampled, s.bad), (1, 1));
        // 10_000 frames in bursts of 32: about one in CSUM_SAMPLE_EVERY verified.
        for _ in 0..10_000 / 32 {
            s.on_burst(32, std::iter::repeat_n(bad.as_slice(), 32));
        }
        let want = 10_000 / 32 * 32 / u64::from(CSUM_SAMPLE_EVERY);
        assert!(s.sampled.abs_diff(want) <= 2, "{} vs {want}", s.sampled);
        assert_eq!(s.bad, s.sampled);
        assert!(s.take_hint());
        assert!(!s.take_hint(), "once per port");
        let h = s.hint();
        assert!(
            h.contains("iface=d0") && h.contains("ethtool -K <iface> tx off"),
            "{h}"
        );
        let mut other_worker = CsumSampler::for_port(3, "client", "net_af_packet0,iface=d0").unwrap();
        other_worker.on_burst(1, [bad.as_slice()].into_iter());
        assert!(
            !other_worker.take_hint(),
            "once per port, whichever worker saw it first"
        );
        let mut good = CsumSampler::for_port(4, "x", "net_af_packet1,iface=d1").unwrap();
        assert!(!good.take_hint(), "no bad frame, no hint");
    }

    #[test]
    fn pcap_hint_counts_frames_and_names_the_key() {
        let dir = std::env::temp_dir().join(format!("rvs-vdev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.pcap");
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0]);
        for _ in 0..7 {
            out.extend_from_slice(&[0; 8]);
            out.extend_from_slice(&60u32.to_le_bytes());
            out.extend_from_slice(&60u32.to_le_bytes());
            out.extend_from_slice(&[0; 60]);
        }
        std::fs::write(&path, out).unwrap();
        assert_eq!(pcap_frames(&path).unwrap(), 7);
        let dev = format!("net_pcap0,rx_pcap={},infinite_rx=1", path.display());
        let h = pcap_pool_hint(&dev, 5, 2).unwrap();
        assert!(
            h.contains("[dataplane] mbufs") && h.contains("7 frames") && h.contains("has 5"),
            "{h}"
        );
        assert!(pcap_pool_hint(&format!("net_pcap0,rx_pcap={}", path.display()), 5, 1).is_none());
        assert!(
            pcap_pool_hint(&dev, 14, 2).is_none(),
            "room enough: another failure"
        );
        assert!(pcap_pool_hint("net_af_packet0,iface=d0", 5, 1).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
