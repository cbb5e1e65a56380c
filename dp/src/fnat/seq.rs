//! Sequence and acknowledgment translation for a header (a PROXY header) that
//! the director inserts at the start of the client → real server stream.
//!
//! Numbering. The client's first data byte has sequence number `C0 = ISN + 1`.
//! The real server sees the inserted header at `C0 .. C0 + N`, then the
//! client's bytes, so a client byte at `s >= C0` is at `s + N` for the RS.
//! Client → RS: `seq` from `C0` on gets `+N`; the ack and SACK blocks name the
//! RS's own stream and pass unchanged. RS → client: its seq passes unchanged;
//! its ack and SACK edges get `-N`, and an edge inside the header (`C0 <= e <
//! C0 + N`) becomes `C0`, as no client byte is covered by it.
//!
//! Where the header goes. The header's bytes ride in front of the payload of a
//! client segment that starts exactly at `C0` (a pure ACK or a FIN at `C0`
//! counts: it then carries the header alone). That repeats for every such
//! segment until an RS ack covering the header has passed through us, so a
//! lost header is resent by the client's own retransmission of `C0` (its data,
//! its handshake ACK answering the RS's SYN-ACK retransmit, or its duplicate
//! ACKs): the director keeps no timer. A repeat the RS already has is a plain
//! duplicate to it.
//!
//! Segments that cross `C0` without starting at it are trimmed to the bytes
//! before `C0`, so client bytes from `C0` on only ever reach the RS behind the
//! header: a SYN with data (TCP Fast Open) loses its data, which the client
//! resends after the handshake since the RS acks only the SYN; anything else
//! that straddles `C0` is not a segment a TCP sends, but is handled the same
//! way. A trimmed segment loses its FIN, which belongs after the bytes cut.
//! When the header and all of the payload do not fit the room given, the tail
//! of the payload is cut the same way, and the client resends it when the RS's
//! ack stops short of it.
//!
//! A RST at `C0` is not given the header: it keeps `C0` if the header was
//! never sent, and moves to `C0 + N` once it was, where the RS most likely
//! expects it.
//!
//! Checksums are updated incrementally: one 32-bit word for a seq or ack; for
//! a payload change, the sums of the old and the new payload (the bytes are
//! rewritten anyway), so a segment that came with a bad checksum still has a
//! bad one. Nothing here allocates.

use super::segment::{locate, set_total_len, Seg, SegError};
use crate::wire::bytes::{get_u16, get_u32, get_u8, set_u16, set_u32, set_u8};
use crate::wire::checksum;
use crate::wire::TcpFlags;

use crate::wire::tcp::field::{
    ACK as TCP_ACK, CHECKSUM as TCP_CHECKSUM, DATA_OFF as TCP_DATA_OFF, FLAGS as TCP_FLAGS, SEQ as TCP_SEQ,
};
use crate::wire::tcpopt::kind::{EOL as TCP_OPT_EOL, NOP as TCP_OPT_NOP, SACK as TCP_OPT_SACK};

/// Serial-number comparison (RFC 1982): `a - b` as a signed distance.
#[inline(always)]
fn dist(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Ones-complement negation of a partial sum, to subtract it in `apply`.
#[inline(always)]
fn neg(s: u32) -> u32 {
    u32::from(!checksum::fold(s))
}

/// How far the header has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HdrState {
    /// Never put in a segment.
    Pending,
    /// Put in at least one segment; no RS ack covering it seen yet.
    Sent,
    /// An RS ack covering it passed through: segments at `C0` are shifted.
    Acked,
}

/// What a client → RS segment needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientPlan {
    /// All before `C0` (a SYN without data, a keepalive probe at `ISN`): as is.
    Keep,
    /// At or after `C0`: `seq + N`.
    Shift,
    /// Starts at `C0`: the header goes in front of the payload.
    Insert,
    /// Crosses `C0` without starting there: keep only the first `keep` payload
    /// bytes (those before `C0`).
    Trim { keep: usize },
}

/// Per-connection state: 8 bytes, kept in the connection entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqShift {
    c0: u32,
    n: u16,
    state: HdrState,
}

// The connection entry's FULLNAT side keeps it next to LIP:lport (see mod.rs).
const _: () = assert!(std::mem::size_of::<SeqShift>() == 8);

impl SeqShift {
    /// For a connection whose client SYN had `client_isn`, with a header of
    /// `hdr_len` bytes.
    #[inline]
    pub fn new(client_isn: u32, hdr_len: u16) -> Self {
        SeqShift {
            c0: client_isn.wrapping_add(1),
            n: hdr_len,
            state: HdrState::Pending,
        }
    }

    /// The client's first data sequence number, where the header goes.
    #[inline]
    pub fn c0(&self) -> u32 {
        self.c0
    }

    /// The header's length, the shift.
    #[inline]
    pub fn hdr_len(&self) -> u16 {
        self.n
    }

    #[inline]
    pub fn state(&self) -> HdrState {
        self.state
    }

    /// A client sequence number at or after `C0` in the RS's numbering.
    #[inline]
    pub fn seq_to_rs(&self, s: u32) -> u32 {
        if dist(s, self.c0) >= 0 {
            s.wrapping_add(u32::from(self.n))
        } else {
            s
        }
    }

    /// An RS ack (or SACK edge) in the client's numbering: `-N` past the
    /// header, `C0` inside it, unchanged before it. Monotone, so blocks keep
    /// their order and never turn inside out.
    #[inline]
    pub fn ack_to_client(&self, a: u32) -> u32 {
        let d = dist(a, self.c0);
        if d < 0 {
            a
        } else if (d as u32) < u32::from(self.n) {
            self.c0
        } else {
            a.wrapping_sub(u32::from(self.n))
        }
    }

    /// What a client segment with `seq`, `flags` and `payload_len` bytes needs
    /// (pure; `client_to_rs` carries it out).
    #[inline]
    pub fn plan(&self, seq: u32, flags: u8, payload_len: usize) -> ClientPlan {
        let syn = flags & TcpFlags::SYN != 0;
        // The first payload byte's number: a SYN occupies one.
        let p = seq.wrapping_add(u32::from(syn));
        let d = dist(p, self.c0);
        // Payload lengths fit an IP packet, far below 2^31.
        let len = payload_len.min(u16::MAX as usize) as i64;
        if d > 0 {
            return ClientPlan::Shift;
        }
        if d == 0 {
            return if syn {
                if len == 0 {
                    ClientPlan::Keep
                } else {
                    ClientPlan::Trim { keep: 0 }
                }
            } else if flags & TcpFlags::RST != 0 {
                if self.state == HdrState::Pending {
                    ClientPlan::Keep
                } else {
                    ClientPlan::Shift
                }
            } else if self.state == HdrState::Acked {
                ClientPlan::Shift
            } else {
                ClientPlan::Insert
            };
        }
        // Starts before C0: keep what lies before it.
        let before = -i64::from(d);
        if len <= before {
            ClientPlan::Keep
        } else {
            ClientPlan::Trim {
                keep: before as usize,
            }
        }
    }

    /// Translate a client → RS segment in place. `pkt` holds the IPv4 packet
    /// (its total length says where it ends) and room behind it; `hdr` is the
    /// header to insert, `hdr_len()` bytes (emitted afresh by the caller from
    /// the connection's addresses). Returns the new IP total length. On error
    /// the packet is unchanged.
    pub fn client_to_rs(&mut self, pkt: &mut [u8], hdr: &[u8]) -> Result<usize, SegError> {
        let s = locate(pkt)?;
        let seq = get_u32(pkt, s.tcp + TCP_SEQ);
        let flags = get_u8(pkt, s.tcp + TCP_FLAGS);
        match self.plan(seq, flags, s.payload_len()) {
            ClientPlan::Keep => Ok(s.total),
            ClientPlan::Shift => {
                let new = seq.wrapping_add(u32::from(self.n));
                set_u32(pkt, s.tcp + TCP_SEQ, new);
                fix_checksum(pkt, &s, checksum::delta32(seq, new));
                Ok(s.total)
            }
            ClientPlan::Trim { keep } => Ok(resize_payload(pkt, &s, &[], keep)),
            ClientPlan::Insert => {
                if hdr.len() != usize::from(self.n) {
                    return Err(SegError::BadHeaderLen);
                }
                let cap = pkt.len().min(usize::from(u16::MAX));
                // The packet without its payload, plus the header.
                let base = s.total - s.payload_len() + hdr.len();
                if base > cap {
                    return Err(SegError::NoRoom);
                }
                let keep = s.payload_len().min(cap - base);
                let total = resize_payload(pkt, &s, hdr, keep);
                if self.state == HdrState::Pending {
                    self.state = HdrState::Sent;
                }
                Ok(total)
            }
        }
    }

    /// Translate an RS → client segment in place: its ack and SACK edges.
    /// Notes when the RS has acked the whole header. The length never changes.
    pub fn rs_to_client(&mut self, pkt: &mut [u8]) -> Result<(), SegError> {
        let s = locate(pkt)?;
        if get_u8(pkt, s.tcp + TCP_FLAGS) & TcpFlags::ACK == 0 {
            return Ok(());
        }
        let ack = get_u32(pkt, s.tcp + TCP_ACK);
        if dist(ack, self.c0) >= i32::from(self.n) {
            self.state = HdrState::Acked;
        }
        let new = self.ack_to_client(ack);
        let mut delta = 0;
        if new != ack {
            set_u32(pkt, s.tcp + TCP_ACK, new);
            delta += checksum::delta32(ack, new);
        }
        delta += self.translate_sack(pkt, &s);
        if delta != 0 {
            fix_checksum(pkt, &s, delta);
        }
        Ok(())
    }

    /// The one number a segment needs changed once the header is acked, when
    /// that is all it needs: the fast path's shortcut of `client_to_rs`
    /// (`to_rs`) and `rs_to_client`, which give the same bytes for such a
    /// segment (a property test holds them to it). `tcp` is the TCP header
    /// and what follows (its length and data offset already checked by the
    /// caller). Returns (offset in `tcp`, old, new): client → RS the seq,
    /// RS → client the ack. None when the segment needs the full
    /// translation: the header not acked yet, a SYN or RST, a client segment
    /// before `C0`, an RS segment without ACK or with a SACK option, a
    /// header cut short.
    #[inline]
    pub fn steady(&self, to_rs: bool, tcp: &[u8]) -> Option<(usize, u32, u32)> {
        if self.state != HdrState::Acked {
            return None;
        }
        let flags = *tcp.get(TCP_FLAGS)?;
        if flags & (TcpFlags::SYN | TcpFlags::RST) != 0 {
            return None;
        }
        let word = |at: usize| -> Option<u32> {
            let b = tcp.get(at..at + 4)?;
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        if to_rs {
            let seq = word(TCP_SEQ)?;
            return (dist(seq, self.c0) >= 0).then(|| (TCP_SEQ, seq, seq.wrapping_add(u32::from(self.n))));
        }
        if flags & TcpFlags::ACK == 0 {
            return None;
        }
        let doff = usize::from(*tcp.get(TCP_DATA_OFF)? >> 4) * 4;
        if has_sack(tcp.get(20..doff)?) {
            return None;
        }
        let ack = word(TCP_ACK)?;
        Some((TCP_ACK, ack, self.ack_to_client(ack)))
    }

    /// Rewrite the edges of every SACK option; returns the checksum delta. The
    /// option list is summed before and after as a whole (at most 40 bytes,
    /// starting at an even offset), since an option may sit at an odd offset.
    /// A malformed list is translated up to where it goes wrong.
    fn translate_sack(&self, pkt: &mut [u8], s: &Seg) -> u32 {
        let (from, to) = (s.tcp + 20, s.payload());
        let Some(opts) = pkt.get_mut(from..to) else {
            return 0;
        };
        let before = checksum::sum(opts);
        let mut changed = false;
        let mut i = 0;
        while let Some(&kind) = opts.get(i) {
            match kind {
                TCP_OPT_EOL => break,
                TCP_OPT_NOP => i += 1,
                _ => {
                    let len = usize::from(get_u8(opts, i + 1));
                    if len < 2 || i + len > opts.len() {
                        break;
                    }
                    if kind == TCP_OPT_SACK && (len - 2) % 8 == 0 {
                        let mut e = i + 2;
                        while e < i + len {
                            let old = get_u32(opts, e);
                            let new = self.ack_to_client(old);
                            if new != old {
                                set_u32(opts, e, new);
                                changed = true;
                            }
                            e += 4;
                        }
                    }
                    i += len;
                }
            }
        }
        if changed {
            checksum::sum(opts) + neg(before)
        } else {
            0
        }
    }
}

/// Whether a TCP option list holds a SACK option (`steady`'s check; the same
/// walk as `translate_sack`).
#[inline]
fn has_sack(opts: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&kind) = opts.get(i) {
        match kind {
            TCP_OPT_EOL => return false,
            TCP_OPT_NOP => i += 1,
            _ => {
                let len = usize::from(get_u8(opts, i + 1));
                if len < 2 || i + len > opts.len() {
                    return false;
                }
                if kind == TCP_OPT_SACK {
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

/// Fold `delta` into the TCP checksum.
#[inline]
fn fix_checksum(pkt: &mut [u8], s: &Seg, delta: u32) {
    let c = get_u16(pkt, s.tcp + TCP_CHECKSUM);
    set_u16(pkt, s.tcp + TCP_CHECKSUM, checksum::apply(c, delta));
}

/// Make the payload `hdr` followed by the first `keep` bytes of the old one
/// (`keep <= payload_len`, and the caller checked the result fits). Clears FIN
/// when payload bytes are cut: it belonged after them. Fixes the IP total
/// length and both checksums; returns the new total length.
fn resize_payload(pkt: &mut [u8], s: &Seg, hdr: &[u8], keep: usize) -> usize {
    let (o, len) = (s.payload(), s.payload_len());
    let keep = keep.min(len);
    let total = o + hdr.len() + keep;
    // The TCP header starts at an even offset and is a multiple of 4 bytes, so
    // the payload is word-aligned for the checksum before and after.
    let old_sum = checksum::sum(pkt.get(o..s.total).unwrap_or(&[]));
    let Some(region) = pkt.get_mut(o..total) else {
        return s.total;
    };
    // The kept bytes move back behind the header, within `o..total`.
    region.copy_within(..keep, hdr.len());
    if let Some(d) = region.get_mut(..hdr.len()) {
        d.copy_from_slice(hdr);
    }
    let new_sum = checksum::sum(region);
    let mut delta = new_sum + neg(old_sum);
    if keep < len {
        let flags = get_u8(pkt, s.tcp + TCP_FLAGS);
        if flags & TcpFlags::FIN != 0 {
            let old = get_u16(pkt, s.tcp + TCP_DATA_OFF);
            set_u8(pkt, s.tcp + TCP_FLAGS, flags & !TcpFlags::FIN);
            delta += checksum::delta16(old, get_u16(pkt, s.tcp + TCP_DATA_OFF));
        }
    }
    // Both lengths fit u16: the old total did, and the new one was checked.
    let (old_len, new_len) = (s.seg_len() as u16, (total - s.tcp) as u16);
    delta += checksum::delta16(old_len, new_len);
    fix_checksum(pkt, s, delta);
    set_total_len(pkt, total as u16);
    total
}

#[cfg(test)]
mod tests;
