//! PROXY protocol headers (HAProxy's proxy-protocol.txt, versions 1 and 2) for
//! TCP over IPv4.
//!
//! FULLNAT hides the client's address from the real server (it sees LIP:lport),
//! so the director can put a PROXY header at the start of the client's stream
//! naming CIP:cport → VIP:vport, for servers that read it (HAProxy, nginx
//! `proxy_protocol`, ...). Only the emitters live here; `seq` places the bytes
//! in the stream. They write into a caller's buffer and never allocate; the
//! length is known in advance (`v1_tcp4_len`, `V2_TCP4_LEN`) because the
//! connection entry needs it for the sequence shift before anything is written.

use std::net::SocketAddrV4;

/// The longest v1 TCP4 line: "PROXY TCP4 " + two 15-character addresses, two
/// 5-digit ports, three spaces and CRLF.
pub const V1_TCP4_MAX_LEN: usize = 56;

/// The v2 signature, the first 12 bytes of every v2 header.
pub const V2_SIGNATURE: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];

/// Version 2, command PROXY.
pub const V2_VERSION_PROXY: u8 = 0x21;

/// AF_INET, SOCK_STREAM.
pub const V2_FAMILY_TCP4: u8 = 0x11;

/// Length of the v2 address block for TCP4: two addresses and two ports.
pub const V2_TCP4_ADDR_LEN: u16 = 12;

/// A v2 TCP4 header without TLVs: signature, version/command, family, length,
/// addresses.
pub const V2_TCP4_LEN: usize = 16 + V2_TCP4_ADDR_LEN as usize;

/// Which version the service sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyVersion {
    V1,
    V2,
}

/// Why a header was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The output buffer is shorter than the header. Nothing was written.
    #[error("buffer too small for the PROXY header")]
    NoRoom,
}

/// Decimal digits of `v` (1 for 0).
#[inline]
fn digits(v: u16) -> usize {
    match v {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    }
}

#[inline]
fn addr_len(a: &SocketAddrV4) -> usize {
    // Three dots between four octets.
    3 + a
        .ip()
        .octets()
        .iter()
        .map(|&o| digits(u16::from(o)))
        .sum::<usize>()
}

/// Length of the v1 line for `src` → `dst`.
#[inline]
pub fn v1_tcp4_len(src: SocketAddrV4, dst: SocketAddrV4) -> usize {
    // "PROXY TCP4 " + src + ' ' + dst + ' ' + sport + ' ' + dport + "\r\n".
    11 + addr_len(&src) + 1 + addr_len(&dst) + 1 + digits(src.port()) + 1 + digits(dst.port()) + 2
}

/// Length of the header of `version` for `src` → `dst`.
#[inline]
pub fn header_len(version: ProxyVersion, src: SocketAddrV4, dst: SocketAddrV4) -> usize {
    match version {
        ProxyVersion::V1 => v1_tcp4_len(src, dst),
        ProxyVersion::V2 => V2_TCP4_LEN,
    }
}

/// A cursor over the output; the caller checked the length first, and the
/// writes are still checked so that no input can make them panic.
struct Out<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Out<'_> {
    #[inline]
    fn bytes(&mut self, b: &[u8]) {
        if let Some(d) = self.buf.get_mut(self.at..self.at + b.len()) {
            d.copy_from_slice(b);
        }
        self.at += b.len();
    }

    #[inline]
    fn dec(&mut self, v: u16) {
        let mut tmp = [0u8; 5];
        let n = digits(v);
        let mut x = v;
        for d in tmp[..n].iter_mut().rev() {
            *d = b'0' + (x % 10) as u8;
            x /= 10;
        }
        self.bytes(&tmp[..n]);
    }

    #[inline]
    fn ip(&mut self, a: &SocketAddrV4) {
        for (i, o) in a.ip().octets().into_iter().enumerate() {
            if i > 0 {
                self.bytes(b".");
            }
            self.dec(u16::from(o));
        }
    }
}

/// Write "PROXY TCP4 CIP VIP cport vport\r\n" at the start of `buf`; returns
/// its length.
#[inline]
pub fn emit_v1_tcp4(buf: &mut [u8], src: SocketAddrV4, dst: SocketAddrV4) -> Result<usize, ProxyError> {
    let n = v1_tcp4_len(src, dst);
    if buf.len() < n {
        return Err(ProxyError::NoRoom);
    }
    let mut o = Out { buf, at: 0 };
    o.bytes(b"PROXY TCP4 ");
    o.ip(&src);
    o.bytes(b" ");
    o.ip(&dst);
    o.bytes(b" ");
    o.dec(src.port());
    o.bytes(b" ");
    o.dec(dst.port());
    o.bytes(b"\r\n");
    Ok(n)
}

/// Write the v2 PROXY / TCP over IPv4 header (no TLVs) at the start of `buf`;
/// returns `V2_TCP4_LEN`.
#[inline]
pub fn emit_v2_tcp4(buf: &mut [u8], src: SocketAddrV4, dst: SocketAddrV4) -> Result<usize, ProxyError> {
    let Some(h) = buf.get_mut(..V2_TCP4_LEN) else {
        return Err(ProxyError::NoRoom);
    };
    let mut o = Out { buf: h, at: 0 };
    o.bytes(&V2_SIGNATURE);
    o.bytes(&[V2_VERSION_PROXY, V2_FAMILY_TCP4]);
    o.bytes(&V2_TCP4_ADDR_LEN.to_be_bytes());
    o.bytes(&src.ip().octets());
    o.bytes(&dst.ip().octets());
    o.bytes(&src.port().to_be_bytes());
    o.bytes(&dst.port().to_be_bytes());
    Ok(V2_TCP4_LEN)
}

/// Write the header of `version`; returns its length.
#[inline]
pub fn emit(
    version: ProxyVersion,
    buf: &mut [u8],
    src: SocketAddrV4,
    dst: SocketAddrV4,
) -> Result<usize, ProxyError> {
    match version {
        ProxyVersion::V1 => emit_v1_tcp4(buf, src, dst),
        ProxyVersion::V2 => emit_v2_tcp4(buf, src, dst),
    }
}

#[cfg(test)]
mod tests {
    //! The `ppp` crate (a PROXY protocol parser following HAProxy's spec, a
    //! dev-dependency only) is the independent reader of what we write.

    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn sa(a: [u8; 4], p: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), p)
    }

    #[test]
    fn v1_golden() {
        // The spec's own example (section 2.1).
        let (s, d) = (sa([192, 168, 0, 1], 56324), sa([192, 168, 0, 11], 443));
        let mut b = [0xaau8; 64];
        let n = emit_v1_tcp4(&mut b, s, d).unwrap();
        assert_eq!(&b[..n], b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
        assert_eq!(n, v1_tcp4_len(s, d));
        assert_eq!(b[n], 0xaa, "nothing written past the header");
        // The longest line, and the shortest.
        let (s, d) = (sa([255; 4], 65535), sa([255; 4], 65535));
        assert_eq!(v1_tcp4_len(s, d), V1_TCP4_MAX_LEN);
        let n = emit_v1_tcp4(&mut b, s, d).unwrap();
        assert_eq!(
            &b[..n],
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"
        );
        let n = emit_v1_tcp4(&mut b, sa([0; 4], 0), sa([0; 4], 0)).unwrap();
        assert_eq!(&b[..n], b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n");
    }

    #[test]
    fn v2_golden() {
        let (s, d) = (sa([192, 168, 0, 1], 56324), sa([192, 168, 0, 11], 443));
        let mut b = [0xaau8; 40];
        let n = emit_v2_tcp4(&mut b, s, d).unwrap();
        #[rustfmt::skip]
        let want: [u8; 28] = [
            // Signature "\r\n\r\n\0\r\nQUIT\n".
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
            0x21,                   // version 2, PROXY
            0x11,                   // AF_INET, STREAM
            0x00, 0x0c,             // 12 address bytes follow
            192, 168, 0, 1,         // source address
            192, 168, 0, 11,        // destination address
            0xdc, 0x04,             // source port 56324
            0x01, 0xbb,             // destination port 443
        ];
        assert_eq!(n, 28);
        assert_eq!(b[..n], want);
        assert_eq!(b[n], 0xaa);
    }

    #[test]
    fn short_buffers_are_refused_untouched() {
        let (s, d) = (sa([10, 0, 0, 1], 1), sa([10, 0, 0, 2], 2));
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
            let n = header_len(version, s, d);
            let mut b = vec![0u8; n - 1];
            assert_eq!(emit(version, &mut b, s, d), Err(ProxyError::NoRoom));
            assert!(b.iter().all(|&x| x == 0));
            let mut b = vec![0u8; n];
            assert_eq!(emit(version, &mut b, s, d), Ok(n));
        }
    }

    proptest! {
        #[test]
        fn ppp_reads_what_we_write(
            s in any::<[u8; 4]>(), sp in any::<u16>(), d in any::<[u8; 4]>(), dp in any::<u16>(),
            room in 0usize..80,
        ) {
            let (s, d) = (sa(s, sp), sa(d, dp));
            let mut b = vec![0u8; room];
            match emit_v1_tcp4(&mut b, s, d) {
                Ok(n) => {
                    prop_assert_eq!(n, v1_tcp4_len(s, d));
                    let h = ppp::v1::Header::try_from(&b[..n]).unwrap();
                    prop_assert_eq!(h.addresses, ppp::v1::Addresses::new_tcp4(*s.ip(), *d.ip(), sp, dp));
                    prop_assert_eq!(h.header.len(), n);
                }
                Err(ProxyError::NoRoom) => prop_assert!(room < v1_tcp4_len(s, d)),
            }
            match emit_v2_tcp4(&mut b, s, d) {
                Ok(n) => {
                    prop_assert_eq!(n, V2_TCP4_LEN);
                    let h = ppp::v2::Header::try_from(&b[..n]).unwrap();
                    prop_assert_eq!(h.command, ppp::v2::Command::Proxy);
                    prop_assert_eq!(h.protocol, ppp::v2::Protocol::Stream);
                    prop_assert_eq!(h.addresses, ppp::v2::Addresses::from((
                        std::net::SocketAddr::V4(s), std::net::SocketAddr::V4(d))));
                    prop_assert_eq!(h.len(), n);
                }
                Err(ProxyError::NoRoom) => prop_assert!(room < V2_TCP4_LEN),
            }
        }
    }
}
