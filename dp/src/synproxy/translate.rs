//! The sequence space of a proxied connection. The client completed its
//! handshake with the director, whose ISN was the cookie `K`; the real
//! server then chose its own ISN `R` in the director's handshake with it.
//! Every RS byte numbered `s` is `s - delta` for the client, `delta = R - K`:
//! - RS → client: `seq -= delta`;
//! - client → RS: `ack += delta`, and so are its SACK blocks' edges.
//!
//! Windows are rescaled both ways: the director announced its own shift to
//! the client before it knew the RS's, and the RS may not scale at all
//! (then neither does it read the client's windows scaled).
//!
//! The client's own numbering is the same on both sides (the director sent
//! the RS a SYN with the client's ISN), so nothing else changes. Checksums
//! are updated incrementally; a segment that came with a bad checksum keeps
//! a bad one.

use crate::wire::bytes::{get_u16, get_u32, set_u16, set_u32};
use crate::wire::checksum;
use crate::wire::tcp::{field, HEADER_LEN};
use crate::wire::tcpopt;
use crate::wire::TcpFlags;

/// What a proxied connection needs per packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SeqShift {
    /// RS ISN minus cookie.
    pub delta: u32,
    /// RS → client windows: (the shift the RS applies to its own, the one
    /// the client reads them with); 0 where scaling is off.
    pub rs_win: (u8, u8),
    /// Client → RS windows: (the client's own shift, the one the RS reads
    /// them with).
    pub client_win: (u8, u8),
}

fn data_off(tcp: &[u8]) -> usize {
    usize::from(tcp.get(field::DATA_OFF).copied().unwrap_or(0) >> 4) * 4
}

/// Client → RS. `tcp` is the TCP header and payload; a segment shorter than
/// its header is left alone (the caller drops such segments before).
pub fn client_to_rs(tcp: &mut [u8], s: &SeqShift) {
    let hl = data_off(tcp);
    if hl < HEADER_LEN || hl > tcp.len() {
        return;
    }
    let flags = tcp[field::FLAGS];
    let mut d = window(tcp, s.client_win);
    if flags & TcpFlags::ACK != 0 {
        let old = get_u32(tcp, field::ACK);
        let new = old.wrapping_add(s.delta);
        set_u32(tcp, field::ACK, new);
        d += checksum::delta32(old, new);
    }
    d += tcpopt::shift_sack_blocks(&mut tcp[HEADER_LEN..hl], s.delta);
    let c = get_u16(tcp, field::CHECKSUM);
    set_u16(tcp, field::CHECKSUM, checksum::apply(c, d));
}

/// A window from shift `from` to shift `to`: exact when they agree, rounded
/// down otherwise (the peer may send less, never more than was offered),
/// saturated at 65535.
pub fn rescale_window(win: u16, from: u8, to: u8) -> u16 {
    if from == to {
        return win;
    }
    let bytes = u64::from(win) << from.min(14);
    (bytes >> to.min(14)).min(65535) as u16
}

/// Rescales the window field; returns the checksum delta.
fn window(tcp: &mut [u8], (from, to): (u8, u8)) -> u32 {
    let w = get_u16(tcp, field::WINDOW);
    let nw = rescale_window(w, from, to);
    if nw == w {
        return 0;
    }
    set_u16(tcp, field::WINDOW, nw);
    checksum::delta16(w, nw)
}

/// RS → client.
pub fn rs_to_client(tcp: &mut [u8], s: &SeqShift) {
    let hl = data_off(tcp);
    if hl < HEADER_LEN || hl > tcp.len() {
        return;
    }
    let mut d = window(tcp, s.rs_win);
    let old = get_u32(tcp, field::SEQ);
    let new = old.wrapping_sub(s.delta);
    if new != old {
        set_u32(tcp, field::SEQ, new);
        d += checksum::delta32(old, new);
    }
    if d != 0 {
        let c = get_u16(tcp, field::CHECKSUM);
        set_u16(tcp, field::CHECKSUM, checksum::apply(c, d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, TcpOptionElement};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const A: [u8; 4] = [198, 51, 100, 7];
    const B: [u8; 4] = [10, 2, 0, 11];

    /// An IPv4+TCP packet built by etherparse (the oracle); returns the TCP part.
    fn segment(seq: u32, ack: u32, win: u16, sack: &[(u32, u32)], payload: &[u8]) -> Vec<u8> {
        let mut b = PacketBuilder::ipv4(A, B, 64).tcp(1000, 80, seq, win).ack(ack);
        if !sack.is_empty() {
            let mut blocks = [None; 3];
            for (i, &(l, r)) in sack.iter().skip(1).take(3).enumerate() {
                blocks[i] = Some((l, r));
            }
            b = b
                .options(&[
                    TcpOptionElement::Noop,
                    TcpOptionElement::Noop,
                    TcpOptionElement::SelectiveAcknowledgement(sack[0], blocks),
                ])
                .unwrap();
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out.split_off(20)
    }

    fn valid(tcp: &[u8]) -> bool {
        crate::wire::TcpPacket::new_unchecked(tcp).verify_checksum(Ipv4Addr::from(A), Ipv4Addr::from(B))
    }

    #[test]
    fn window_rescaling() {
        assert_eq!(rescale_window(1000, 7, 7), 1000);
        assert_eq!(rescale_window(1000, 9, 7), 4000);
        assert_eq!(rescale_window(1000, 5, 7), 250);
        assert_eq!(rescale_window(3, 0, 2), 0, "rounded down");
        assert_eq!(rescale_window(65535, 14, 0), 65535, "saturated");
    }

    proptest! {
        #[test]
        fn translations_match_a_rebuilt_segment(seq: u32, ack: u32, delta: u32, win: u16,
                                                rs_ws in 0u8..15, cl_ws in 0u8..15,
                                                c_ws in 0u8..15, at_rs in 0u8..15,
                                                edges in proptest::collection::vec(any::<(u32, u32)>(), 0..4),
                                                payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let s = SeqShift { delta, rs_win: (rs_ws, cl_ws), client_win: (c_ws, at_rs) };
            let mut c2r = segment(seq, ack, win, &edges, &payload);
            client_to_rs(&mut c2r, &s);
            let shifted: Vec<(u32, u32)> =
                edges.iter().map(|&(l, r)| (l.wrapping_add(delta), r.wrapping_add(delta))).collect();
            let cw = rescale_window(win, c_ws, at_rs);
            prop_assert_eq!(&c2r, &segment(seq, ack.wrapping_add(delta), cw, &shifted, &payload));
            prop_assert!(valid(&c2r));

            let mut r2c = segment(seq, ack, win, &edges, &payload);
            rs_to_client(&mut r2c, &s);
            let w = rescale_window(win, rs_ws, cl_ws);
            prop_assert_eq!(&r2c, &segment(seq.wrapping_sub(delta), ack, w, &edges, &payload));
            prop_assert!(valid(&r2c));
        }
    }

    #[test]
    fn short_or_bad_headers_are_left_alone() {
        let mut t = vec![0u8; 19];
        client_to_rs(
            &mut t,
            &SeqShift {
                delta: 5,
                ..Default::default()
            },
        );
        rs_to_client(
            &mut t,
            &SeqShift {
                delta: 5,
                ..Default::default()
            },
        );
        assert_eq!(t, vec![0u8; 19]);
        let mut t = segment(1, 2, 3, &[], &[]);
        t[field::DATA_OFF] = 0xf0; // 60 bytes of header in a 20-byte segment
        let before = t.clone();
        client_to_rs(
            &mut t,
            &SeqShift {
                delta: 5,
                ..Default::default()
            },
        );
        assert_eq!(t, before);
    }
}
