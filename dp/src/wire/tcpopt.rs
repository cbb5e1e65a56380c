//! TCP options (RFC 9293 3.2, RFC 7323, RFC 2018): the ones a SYN negotiates
//! (MSS, window scale, SACK permitted, timestamps), read from and written to
//! an options area, and the SACK blocks of later segments.
//!
//! Parsing is total: an option whose length runs past the area, or a length
//! below 2, ends the walk; what was read before it stands, as a TCP stack
//! would use it.

use super::bytes::{get_u16, get_u32, set_u32};

pub mod kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WSCALE: u8 = 3;
    pub const SACK_PERM: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

/// The largest window shift RFC 7323 allows; larger values are read as 14.
pub const MAX_WSCALE: u8 = 14;

/// What a SYN or SYN-ACK negotiates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SynOptions {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_perm: bool,
    /// (TSval, TSecr)
    pub timestamp: Option<(u32, u32)>,
}

/// Walks the options area: `(kind, value)` for each option with a length,
/// until EOL, the end, or a malformed length.
pub fn walk(opts: &[u8]) -> impl Iterator<Item = (u8, &[u8])> + '_ {
    let mut i = 0usize;
    std::iter::from_fn(move || loop {
        let k = *opts.get(i)?;
        match k {
            kind::EOL => return None,
            kind::NOP => i += 1,
            _ => {
                let len = usize::from(*opts.get(i + 1)?);
                if len < 2 || i + len > opts.len() {
                    return None;
                }
                let v = &opts[i + 2..i + len];
                i += len;
                return Some((k, v));
            }
        }
    })
}

impl SynOptions {
    pub fn parse(opts: &[u8]) -> SynOptions {
        let mut o = SynOptions::default();
        for (k, v) in walk(opts) {
            match (k, v.len()) {
                (kind::MSS, 2) => o.mss = Some(get_u16(v, 0)),
                (kind::WSCALE, 1) => o.wscale = Some(v[0].min(MAX_WSCALE)),
                (kind::SACK_PERM, 0) => o.sack_perm = true,
                (kind::TIMESTAMP, 8) => o.timestamp = Some((get_u32(v, 0), get_u32(v, 4))),
                _ => {}
            }
        }
        o
    }

    /// The bytes `write` needs: each option padded to 4 with NOPs.
    pub fn len(&self) -> usize {
        self.mss.map_or(0, |_| 4)
            + self.wscale.map_or(0, |_| 4)
            + if self.sack_perm { 4 } else { 0 }
            + self.timestamp.map_or(0, |_| 12)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the options, padded with NOPs in front of the odd-sized ones
    /// as stacks do, into `buf`; returns the length (a multiple of 4), or
    /// None if `buf` is shorter than `len()`.
    pub fn write(&self, buf: &mut [u8]) -> Option<usize> {
        let n = self.len();
        let out = buf.get_mut(..n)?;
        out.fill(kind::NOP);
        let mut i = 0;
        if let Some(mss) = self.mss {
            out[i..i + 4].copy_from_slice(&[kind::MSS, 4, (mss >> 8) as u8, mss as u8]);
            i += 4;
        }
        if self.sack_perm {
            // NOP NOP SACK_PERM(2) keeps the rest aligned.
            i += 2;
            out[i..i + 2].copy_from_slice(&[kind::SACK_PERM, 2]);
            i += 2;
        }
        if let Some((val, ecr)) = self.timestamp {
            i += 2;
            out[i] = kind::TIMESTAMP;
            out[i + 1] = 10;
            set_u32(out, i + 2, val);
            set_u32(out, i + 6, ecr);
            i += 10;
        }
        if let Some(ws) = self.wscale {
            // NOP WSCALE(3)
            i += 1;
            out[i..i + 3].copy_from_slice(&[kind::WSCALE, 3, ws.min(MAX_WSCALE)]);
            i += 3;
        }
        debug_assert_eq!(i, n);
        Some(n)
    }
}

/// Adds `delta` (wrapping) to both edges of every SACK block in an options
/// area; returns the checksum change as a `checksum::delta32` sum. `opts`
/// must start at an even offset of the checksummed bytes (a TCP header's
/// options do, at 20). An edge at an odd offset (after a lone NOP) straddles
/// three checksum words, and its change counts byte-swapped.
pub fn shift_sack_blocks(opts: &mut [u8], delta: u32) -> u32 {
    // [even offsets, odd offsets]
    let mut sum = [0u32; 2];
    let mut i = 0usize;
    while i < opts.len() {
        match opts[i] {
            kind::EOL => break,
            kind::NOP => i += 1,
            k => {
                let Some(&l) = opts.get(i + 1) else { break };
                let len = usize::from(l);
                if len < 2 || i + len > opts.len() {
                    break;
                }
                if k == kind::SACK {
                    let mut e = i + 2;
                    while e + 4 <= i + len {
                        let old = get_u32(opts, e);
                        let new = old.wrapping_add(delta);
                        set_u32(opts, e, new);
                        // At most 8 edges of under 2^18 each: no overflow.
                        sum[e % 2] += super::checksum::delta32(old, new);
                        e += 4;
                    }
                }
                i += len;
            }
        }
    }
    let even = super::checksum::fold(sum[0]);
    let odd = super::checksum::fold(sum[1]).swap_bytes();
    u32::from(even) + u32::from(odd)
}

/// Lowers the MSS option of a SYN's options area to `to(mss)` if that is
/// less; returns the value it had and the checksum change (as
/// `shift_sack_blocks`: `opts` starts at an even offset, an MSS at an odd
/// one counts byte-swapped). None: no MSS option, or `to` did not lower it.
pub fn lower_mss(opts: &mut [u8], to: impl FnOnce(u16) -> u16) -> Option<(u16, u32)> {
    let mut i = 0usize;
    loop {
        match *opts.get(i)? {
            kind::EOL => return None,
            kind::NOP => i += 1,
            k => {
                let len = usize::from(*opts.get(i + 1)?);
                if len < 2 || i + len > opts.len() {
                    return None;
                }
                if k == kind::MSS && len == 4 {
                    let old = get_u16(opts, i + 2);
                    let max = to(old);
                    if old <= max {
                        return None;
                    }
                    opts[i + 2..i + 4].copy_from_slice(&max.to_be_bytes());
                    let d = super::checksum::fold(super::checksum::delta16(old, max));
                    let d = if i.is_multiple_of(2) { d } else { d.swap_bytes() };
                    return Some((old, u32::from(d)));
                }
                i += len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;

    #[test]
    fn parses_what_stacks_send() {
        // Linux's SYN: MSS 1460, SACK_PERM, TS, NOP, WS 7.
        let linux = [2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];
        let o = SynOptions::parse(&linux);
        assert_eq!(o.mss, Some(1460));
        assert!(o.sack_perm);
        assert_eq!(o.timestamp, Some((1, 0)));
        assert_eq!(o.wscale, Some(7));
        assert_eq!(SynOptions::parse(&[]), SynOptions::default());
    }

    #[test]
    fn malformed_lengths_end_the_walk_without_panic() {
        assert_eq!(SynOptions::parse(&[2, 4, 5]).mss, None, "runs past the end");
        assert_eq!(SynOptions::parse(&[2, 0, 2, 4, 5, 0xb4]).mss, None, "length 0");
        assert_eq!(SynOptions::parse(&[2, 1]).mss, None, "length 1");
        assert_eq!(SynOptions::parse(&[3, 3, 200]).wscale, Some(14), "clamped");
        let o = SynOptions::parse(&[2, 4, 2, 0, 0, 3, 3, 9]);
        assert_eq!(o.mss, Some(512), "EOL ends it");
        assert_eq!(o.wscale, None);
        for n in 0..=255u8 {
            for l in 0..=12u8 {
                let _ = SynOptions::parse(&[n, l, 1, 2, 3, 4, 5, 6, 7, 8]);
            }
        }
    }

    #[test]
    fn writes_what_it_parses_back() {
        let all = [
            SynOptions::default(),
            SynOptions {
                mss: Some(1460),
                ..Default::default()
            },
            SynOptions {
                mss: Some(1460),
                wscale: Some(7),
                sack_perm: true,
                timestamp: None,
            },
            SynOptions {
                mss: Some(536),
                wscale: Some(0),
                sack_perm: false,
                timestamp: Some((9, 8)),
            },
            SynOptions {
                mss: None,
                wscale: None,
                sack_perm: true,
                timestamp: Some((1, 2)),
            },
        ];
        for o in all {
            let mut buf = [0xeeu8; 40];
            let n = o.write(&mut buf).unwrap();
            assert_eq!(n % 4, 0);
            assert_eq!(n, o.len());
            assert_eq!(SynOptions::parse(&buf[..n]), o, "{o:?}: {:?}", &buf[..n]);
        }
        let big = SynOptions {
            mss: Some(1),
            wscale: Some(1),
            sack_perm: true,
            timestamp: Some((0, 0)),
        };
        assert_eq!(big.write(&mut [0u8; 4]), None);
    }

    #[test]
    fn mss_clamps_with_a_matching_checksum_delta() {
        // Aligned (Linux's order), and after a lone NOP (odd offset).
        for mut opts in [
            vec![2, 4, 5, 0xb4, 4, 2, 1, 3, 3, 7, 0, 0],
            vec![1, 2, 4, 5, 0xb4, 1, 1, 1],
            vec![1, 1, 1, 2, 4, 0x12, 0x34, 0],
        ] {
            let c0 = checksum::finish(checksum::sum(&opts));
            let old = SynOptions::parse(&opts).mss.unwrap();
            let (was, d) = lower_mss(&mut opts, |m| m - 8).expect("clamped");
            assert_eq!(was, old);
            assert_eq!(SynOptions::parse(&opts).mss, Some(old - 8));
            assert_eq!(
                checksum::apply(c0, d),
                checksum::finish(checksum::sum(&opts)),
                "{opts:?}"
            );
            assert_eq!(lower_mss(&mut opts, |_| old), None, "already below");
        }
        assert_eq!(lower_mss(&mut [4, 2, 1, 1], |_| 100), None, "no MSS");
        assert_eq!(lower_mss(&mut [2, 4, 5], |_| 100), None, "runs past the end");
        assert_eq!(lower_mss(&mut [0, 2, 4, 5, 0xb4], |_| 100), None, "behind EOL");
        assert_eq!(lower_mss(&mut [2, 3, 5, 1], |_| 100), None, "wrong length");
    }

    #[test]
    fn sack_edges_shift_with_a_matching_checksum_delta() {
        // NOP NOP SACK with two blocks, then a timestamp that must not move.
        let mut opts = vec![1, 1, 5, 18];
        for e in [100u32, 200, u32::MAX - 5, 10] {
            opts.extend_from_slice(&e.to_be_bytes());
        }
        opts.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
        let before = opts.clone();
        let c0 = checksum::finish(checksum::sum(&opts));
        let d = shift_sack_blocks(&mut opts, 1000);
        let edges: Vec<u32> = (0..4).map(|k| get_u32(&opts, 4 + 4 * k)).collect();
        assert_eq!(edges, vec![1100, 1200, 994, 1010]);
        assert_eq!(&opts[20..], &before[20..], "the timestamp is not a SACK block");
        assert_eq!(checksum::apply(c0, d), checksum::finish(checksum::sum(&opts)));
        // A lone NOP puts the edges at odd offsets: each one straddles three
        // checksum words, and the delta must still match.
        let mut odd = vec![1, 5, 10];
        for e in [0x0102_0304u32, 0xfffe_fdfc] {
            odd.extend_from_slice(&e.to_be_bytes());
        }
        odd.push(0);
        let c0 = checksum::finish(checksum::sum(&odd));
        let d = shift_sack_blocks(&mut odd[..11], 0x0101_0101);
        assert_eq!(get_u32(&odd, 3), 0x0203_0405);
        assert_eq!(
            checksum::apply(c0, d),
            checksum::finish(checksum::sum(&odd)),
            "odd offsets"
        );
        // A truncated SACK option shifts only whole edges inside it.
        let mut short = vec![5, 6, 0, 0, 0, 1];
        shift_sack_blocks(&mut short, 1);
        assert_eq!(short, vec![5, 6, 0, 0, 0, 2]);
    }
}
