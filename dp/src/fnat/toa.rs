//! TOA ("TCP Option Address", DPVS / Alibaba): the client's address and port in
//! a TCP option, so a real server with the `toa` kernel module sees CIP:cport
//! from `getpeername()` although FULLNAT delivered the connection from
//! LIP:lport.
//!
//! The option is kind 254, length 8, then the port (2 bytes) and the IPv4
//! address (4 bytes), in network order. DPVS puts it in the SYN or the first
//! ACK; the caller chooses which segment.
//!
//! It goes right after the fixed 20-byte header, in front of the options that
//! are there (as DPVS does): an option list may end with EOL, after which
//! nothing is read, so appending could hide it; and the toa module takes the
//! first kind 254 it finds, so ours wins over one the client sent.
//!
//! Its 8 bytes keep the header a multiple of 4 bytes, and they start at an
//! even offset, so the bytes behind them move by whole 16-bit words and their
//! part of the checksum does not change: the TCP checksum needs only the new
//! words, the new data offset and the pseudo-header's new length (RFC 1624),
//! and a segment that arrived with a bad checksum still has a bad one.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::segment::{locate, set_total_len, SegError};
use crate::wire::bytes::{get_u16, set_u16};
use crate::wire::checksum;

/// The TCP option kind TOA uses.
pub const TOA_KIND: u8 = 254;

/// The option's length, kind and length bytes included.
pub const TOA_LEN: usize = 8;

/// The most a TCP header can be: a 4-bit data offset counts 32-bit words.
pub const TCP_MAX_HEADER_LEN: usize = 60;

use crate::wire::tcp::field::{CHECKSUM as TCP_CHECKSUM, DATA_OFF as TCP_DATA_OFF};

/// The option's bytes for the client `cip:cport`.
#[inline]
pub fn toa_option(client: SocketAddrV4) -> [u8; TOA_LEN] {
    let [p0, p1] = client.port().to_be_bytes();
    let [a, b, c, d] = client.ip().octets();
    [TOA_KIND, TOA_LEN as u8, p0, p1, a, b, c, d]
}

/// Read a TOA option from a TCP option list (the first one, as the real
/// server's module does). For tests and tools; the forwarder only writes it.
pub fn find_toa(options: &[u8]) -> Option<SocketAddrV4> {
    let mut i = 0;
    while let Some(&kind) = options.get(i) {
        match kind {
            0 => return None,
            1 => i += 1,
            _ => {
                let len = usize::from(*options.get(i + 1)?);
                if len < 2 {
                    return None;
                }
                if kind == TOA_KIND && len == TOA_LEN {
                    let o = options.get(i..i + TOA_LEN)?;
                    let port = u16::from_be_bytes([o[2], o[3]]);
                    return Some(SocketAddrV4::new(Ipv4Addr::new(o[4], o[5], o[6], o[7]), port));
                }
                i += len;
            }
        }
    }
    None
}

/// Insert the TOA option for `client` into the TCP header of the IPv4 packet at
/// the start of `pkt`, moving the other options and the payload back 8 bytes;
/// the rest of `pkt` past the IP total length is room to grow into. Updates
/// the data offset, the IP total length and both checksums incrementally.
/// Returns the new IP total length. On error nothing is changed.
#[inline]
pub fn insert_toa(pkt: &mut [u8], client: SocketAddrV4) -> Result<usize, SegError> {
    let s = locate(pkt)?;
    if s.tcp_hl + TOA_LEN > TCP_MAX_HEADER_LEN {
        return Err(SegError::NoOptionSpace);
    }
    let total = s.total + TOA_LEN;
    let Ok(total16) = u16::try_from(total) else {
        return Err(SegError::NoRoom);
    };
    if total > pkt.len() {
        return Err(SegError::NoRoom);
    }
    let opt = toa_option(client);
    let at = s.tcp + 20;
    pkt.copy_within(at..s.total, at + TOA_LEN);
    if let Some(d) = pkt.get_mut(at..at + TOA_LEN) {
        d.copy_from_slice(&opt);
    }

    let tcp = s.tcp;
    let old_word = get_u16(pkt, tcp + TCP_DATA_OFF);
    // The data offset is the high nibble; the low one (reserved, NS) stays.
    let new_word = old_word.wrapping_add(((TOA_LEN / 4) as u16) << 12);
    set_u16(pkt, tcp + TCP_DATA_OFF, new_word);
    // Segment lengths fit u16: the total did.
    let old_len = s.seg_len() as u16;
    let new_len = old_len + TOA_LEN as u16;
    let delta =
        checksum::delta16(old_len, new_len) + checksum::delta16(old_word, new_word) + checksum::sum(&opt);
    let c = get_u16(pkt, tcp + TCP_CHECKSUM);
    set_u16(pkt, tcp + TCP_CHECKSUM, checksum::apply(c, delta));
    set_total_len(pkt, total16);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Ipv4Packet, TcpPacket};
    use etherparse::{Ipv4HeaderSlice, PacketBuilder, TcpOptionElement, TcpSlice};
    use proptest::prelude::*;

    const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const LIP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
    const RIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn client() -> SocketAddrV4 {
        SocketAddrV4::new(CIP, 40000)
    }

    /// LIP → RIP segment with the given options, payload and spare room.
    fn packet(syn: bool, opts: &[TcpOptionElement], payload: &[u8], room: usize) -> Vec<u8> {
        let mut v = Vec::new();
        let b = PacketBuilder::ipv4(LIP.octets(), RIP.octets(), 64).tcp(5001, 80, 1000, 64240);
        let b = if syn { b.syn() } else { b.ack(77) };
        b.options(opts).unwrap().write(&mut v, payload).unwrap();
        v.resize(v.len() + room, 0xee);
        v
    }

    /// What the oracle says about `pkt[..total]`: valid IP and TCP checksums
    /// (recomputed from scratch by etherparse), and the TCP options and payload.
    fn oracle(pkt: &[u8]) -> (bool, bool, Vec<u8>, Vec<u8>) {
        let ip = Ipv4HeaderSlice::from_slice(pkt).unwrap();
        let total = usize::from(ip.total_len());
        let ip_ok = ip.to_header().calc_header_checksum() == ip.header_checksum();
        let t = TcpSlice::from_slice(&pkt[ip.slice().len()..total]).unwrap();
        let tcp_ok = t.calc_checksum_ipv4(LIP.octets(), RIP.octets()).unwrap() == t.checksum();
        (ip_ok, tcp_ok, t.options().to_vec(), t.payload().to_vec())
    }

    #[test]
    fn syn_with_full_option_set() {
        let opts = [
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(1, 0),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ];
        let mut p = packet(true, &opts, &[], 8);
        let (_, _, old_opts, _) = oracle(&p);
        assert_eq!(old_opts.len(), 20);
        let total = insert_toa(&mut p, client()).unwrap();
        assert_eq!(total, p.len());
        let (ip_ok, tcp_ok, new_opts, payload) = oracle(&p);
        assert!(ip_ok && tcp_ok);
        assert_eq!(new_opts[..8], [254, 8, 0x9c, 0x40, 198, 51, 100, 10]);
        assert_eq!(new_opts[8..], old_opts[..]);
        assert!(payload.is_empty());
        assert_eq!(find_toa(&new_opts), Some(client()));
        // A 48-byte header takes one more (56), then 64 would pass the limit.
        let mut q = p.clone();
        q.extend_from_slice(&[0; 16]);
        assert_eq!(insert_toa(&mut q, client()), Ok(p.len() + 8));
        assert_eq!(insert_toa(&mut q, client()), Err(SegError::NoOptionSpace));
    }

    #[test]
    fn refusals_leave_the_packet_alone() {
        let p0 = packet(false, &[], b"hello", 7);
        let mut p = p0.clone();
        assert_eq!(insert_toa(&mut p, client()), Err(SegError::NoRoom));
        assert_eq!(p, p0);
        // A fragment.
        let mut f = packet(false, &[], b"hello", 8);
        Ipv4Packet::new_unchecked(&mut f[..]).set_more_frags(true);
        assert_eq!(insert_toa(&mut f, client()), Err(SegError::Fragment));
        // UDP.
        let mut u = Vec::new();
        PacketBuilder::ipv4(LIP.octets(), RIP.octets(), 64)
            .udp(1, 2)
            .write(&mut u, b"x")
            .unwrap();
        u.resize(u.len() + 8, 0);
        assert_eq!(insert_toa(&mut u, client()), Err(SegError::NotTcp));
        assert!(matches!(
            insert_toa(&mut [0u8; 10], client()),
            Err(SegError::Malformed(_))
        ));
    }

    #[test]
    fn a_bad_checksum_stays_bad() {
        let mut p = packet(false, &[], b"data!", 8);
        p[20 + 16] ^= 0x5a;
        insert_toa(&mut p, client()).unwrap();
        let (ip_ok, tcp_ok, _, payload) = oracle(&p);
        assert!(ip_ok && !tcp_ok);
        assert_eq!(payload, b"data!");
    }

    #[test]
    fn find_toa_walks_options() {
        assert_eq!(
            find_toa(&[1, 1, 254, 8, 0, 80, 1, 2, 3, 4]),
            Some("1.2.3.4:80".parse().unwrap())
        );
        assert_eq!(find_toa(&[0, 254, 8, 0, 80, 1, 2, 3, 4]), None);
        assert_eq!(find_toa(&[2, 0, 254, 8, 0, 80, 1, 2, 3, 4]), None);
        assert_eq!(find_toa(&[254, 8, 0, 80, 1]), None);
        assert_eq!(find_toa(&[2]), None);
    }

    proptest! {
        /// Any option list that fits (in 4-byte steps, as a sender pads it), any
        /// payload (odd lengths too), any room: the result is what etherparse
        /// recomputes, or a clean refusal.
        #[test]
        fn matches_full_recompute(
            syn in any::<bool>(),
            nops in 0usize..=10,
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            room in 0usize..16,
            port in any::<u16>(), addr in any::<[u8; 4]>(),
        ) {
            let opts = vec![TcpOptionElement::Noop; nops * 4];
            let p0 = packet(syn, &opts, &payload, room);
            let mut p = p0.clone();
            let who = SocketAddrV4::new(addr.into(), port);
            match insert_toa(&mut p, who) {
                Ok(total) => {
                    prop_assert!(nops <= 8 && room >= 8);
                    let (ip_ok, tcp_ok, o, pl) = oracle(&p);
                    prop_assert!(ip_ok && tcp_ok);
                    prop_assert_eq!(total, p0.len() - room + 8);
                    prop_assert_eq!(&o[..8], &toa_option(who)[..]);
                    prop_assert_eq!(o.len(), nops * 4 + 8);
                    prop_assert_eq!(pl, payload);
                    let t = TcpPacket::new_checked(&p[20..total]).unwrap();
                    prop_assert_eq!(t.syn(), syn);
                    prop_assert!(t.verify_checksum(LIP, RIP));
                }
                Err(e) => {
                    prop_assert_eq!(&p, &p0);
                    prop_assert!(matches!(e, SegError::NoOptionSpace | SegError::NoRoom));
                    prop_assert!(nops > 8 || room < 8);
                }
            }
        }

        /// Arbitrary bytes never make it panic, and a success leaves a packet
        /// that still validates with 8 more option bytes.
        #[test]
        fn arbitrary_bytes_never_panic(mut b in proptest::collection::vec(any::<u8>(), 0..120)) {
            let ip_ok = Ipv4Packet::new_checked(&b[..]).is_ok_and(|ip| ip.verify_checksum());
            if let Ok(total) = insert_toa(&mut b, client()) {
                let ip = Ipv4Packet::new_checked(&b[..]).unwrap();
                prop_assert_eq!(usize::from(ip.total_len()), total);
                prop_assert_eq!(ip.verify_checksum(), ip_ok);
                let t = TcpPacket::new_checked(ip.payload()).unwrap();
                prop_assert_eq!(find_toa(t.options()), Some(client()));
            }
        }
    }
}
