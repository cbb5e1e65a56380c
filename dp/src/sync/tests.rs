//! Golden datagrams written byte by byte from the kernel's struct layouts, the error
//! reasons one by one, and property tests for round trips and hostile input.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use rvs_proto::types::{ForwardMethod, Proto};

use crate::conn::TcpState;

use super::decode::{entries, validate};
use super::encode::{MAX_ENTRY_LEN, MIN_SYNC_MAXLEN};
use super::*;

const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const RIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// Decodes a datagram that must be valid; every entry must parse.
fn decode_all(d: &[u8]) -> Vec<SyncConn<'_>> {
    entries(d, 0)
        .expect("valid datagram")
        .map(|r| r.expect("entry"))
        .collect()
}

/// Encodes with a large limit, expecting exactly one message.
fn encode_one(syncid: u8, conns: &[SyncConn<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    SyncEncoder::new(syncid, 1472)
        .encode_all(conns, |m| out.push(m.to_vec()))
        .unwrap();
    assert_eq!(out.len(), 1);
    out.pop().unwrap()
}

// ---------------------------------------------------------------------------------
// Golden datagrams. Offsets are from the start of the datagram.

/// TCP NAT ESTABLISHED, no options.
#[rustfmt::skip]
const TCP_NAT_EST: [u8; 44] = [
    // struct ip_vs_sync_mesg
    0x00,                   //  0 reserved: 0 in v1
    0x05,                   //  1 syncid 5
    0x00, 0x2c,             //  2 size 44 = 8 + 36
    0x01,                   //  4 nr_conns 1
    0x01,                   //  5 version 1
    0x00, 0x00,             //  6 spare
    // struct ip_vs_sync_v4
    0x00,                   //  8 type 0: IPv4
    0x06,                   //  9 protocol TCP
    0x00, 0x24,             // 10 ver_size: version 0, size 36
    0x00, 0x00, 0x00, 0x00, // 12 flags: MASQ, active
    0x00, 0x01,             // 16 state IP_VS_TCP_S_ESTABLISHED
    0x9c, 0x40,             // 18 cport 40000
    0x00, 0x50,             // 20 vport 80
    0x1f, 0x90,             // 22 dport 8080
    0x00, 0x00, 0x00, 0x00, // 24 fwmark 0
    0x00, 0x00, 0x03, 0x84, // 28 timeout 900 s
    198, 51, 100, 10,       // 32 caddr
    203, 0, 113, 1,         // 36 vaddr
    10, 0, 0, 2,            // 40 daddr
];

fn tcp_nat_est() -> SyncConn<'static> {
    SyncConn {
        proto: Proto::Tcp,
        cip: CIP,
        cport: 40000,
        vip: VIP,
        vport: 80,
        rip: RIP,
        rport: 8080,
        fwd: ForwardMethod::Nat,
        state: SyncState::Tcp(TcpState::Established),
        inactive: false,
        timeout: 900,
        fwmark: 0,
        seq: None,
        pe: None,
    }
}

/// TCP NAT ESTABLISHED whose replies are sequence-adjusted (`IP_VS_CONN_F_OUT_SEQ`).
/// 62-byte entry: the last entry of a datagram is not padded, so size is 70.
#[rustfmt::skip]
const TCP_NAT_EST_SEQ: [u8; 70] = [
    0x00,                   //  0 reserved
    0x05,                   //  1 syncid 5
    0x00, 0x46,             //  2 size 70 = 8 + 62
    0x01,                   //  4 nr_conns 1
    0x01,                   //  5 version 1
    0x00, 0x00,             //  6 spare
    0x00,                   //  8 type IPv4
    0x06,                   //  9 protocol TCP
    0x00, 0x3e,             // 10 ver_size: size 62 = 36 + 2 + 24
    0x00, 0x00, 0x02, 0x00, // 12 flags: MASQ | OUT_SEQ
    0x00, 0x01,             // 16 state ESTABLISHED
    0x9c, 0x40,             // 18 cport 40000
    0x00, 0x50,             // 20 vport 80
    0x1f, 0x90,             // 22 dport 8080
    0x00, 0x00, 0x00, 0x00, // 24 fwmark
    0x00, 0x00, 0x03, 0x84, // 28 timeout 900
    198, 51, 100, 10,       // 32 caddr
    203, 0, 113, 1,         // 36 vaddr
    10, 0, 0, 2,            // 40 daddr
    0x01,                   // 44 option type IPVS_OPT_SEQ_DATA
    0x18,                   // 45 option length 24
    0x00, 0x00, 0x00, 0x00, // 46 in_seq.init_seq
    0x00, 0x00, 0x00, 0x00, // 50 in_seq.delta
    0x00, 0x00, 0x00, 0x00, // 54 in_seq.previous_delta
    0x11, 0x22, 0x33, 0x44, // 58 out_seq.init_seq
    0x00, 0x00, 0x00, 0x05, // 62 out_seq.delta 5
    0x00, 0x00, 0x00, 0x03, // 66 out_seq.previous_delta 3
];

fn tcp_nat_est_seq() -> SyncConn<'static> {
    SyncConn {
        seq: Some(SeqAdjust {
            adjust_in: false,
            adjust_out: true,
            in_seq: SeqDelta::default(),
            out_seq: SeqDelta {
                init_seq: 0x1122_3344,
                delta: 5,
                previous_delta: 3,
            },
            windows: None,
        }),
        ..tcp_nat_est()
    }
}

/// UDP DR: every UDP connection is inactive, and DR sets NOOUTPUT.
#[rustfmt::skip]
const UDP_DR: [u8; 44] = [
    0x00,                   //  0 reserved
    0x07,                   //  1 syncid 7
    0x00, 0x2c,             //  2 size 44
    0x01,                   //  4 nr_conns 1
    0x01,                   //  5 version 1
    0x00, 0x00,             //  6 spare
    0x00,                   //  8 type IPv4
    0x11,                   //  9 protocol UDP
    0x00, 0x24,             // 10 ver_size 36
    0x00, 0x00, 0x01, 0x83, // 12 flags: DROUTE | NOOUTPUT | INACTIVE
    0x00, 0x00,             // 16 state IP_VS_UDP_S_NORMAL
    0x14, 0xe9,             // 18 cport 5353
    0x00, 0x35,             // 20 vport 53
    0x00, 0x35,             // 22 dport 53
    0x00, 0x00, 0x00, 0x00, // 24 fwmark
    0x00, 0x00, 0x01, 0x2c, // 28 timeout 300
    198, 51, 100, 10,       // 32 caddr
    203, 0, 113, 1,         // 36 vaddr
    10, 0, 0, 2,            // 40 daddr
];

fn udp_dr() -> SyncConn<'static> {
    SyncConn {
        proto: Proto::Udp,
        cip: CIP,
        cport: 5353,
        vip: VIP,
        vport: 53,
        rip: RIP,
        rport: 53,
        fwd: ForwardMethod::Dr,
        state: SyncState::Udp,
        inactive: true,
        timeout: 300,
        fwmark: 0,
        seq: None,
        pe: None,
    }
}

/// A persistence template for a `-p 360` TCP service on port 80: client port 0.
#[rustfmt::skip]
const TEMPLATE: [u8; 44] = [
    0x00,                   //  0 reserved
    0x05,                   //  1 syncid 5
    0x00, 0x2c,             //  2 size 44
    0x01,                   //  4 nr_conns 1
    0x01,                   //  5 version 1
    0x00, 0x00,             //  6 spare
    0x00,                   //  8 type IPv4
    0x06,                   //  9 protocol TCP
    0x00, 0x24,             // 10 ver_size 36
    0x00, 0x00, 0x11, 0x83, // 12 flags: TEMPLATE | INACTIVE | NOOUTPUT | DROUTE
    0x00, 0x00,             // 16 state IP_VS_CTPL_S_NONE
    0x00, 0x00,             // 18 cport 0
    0x00, 0x50,             // 20 vport 80
    0x00, 0x50,             // 22 dport 80
    0x00, 0x00, 0x00, 0x00, // 24 fwmark
    0x00, 0x00, 0x01, 0x68, // 28 timeout 360
    198, 51, 100, 10,       // 32 caddr
    203, 0, 113, 1,         // 36 vaddr
    10, 0, 0, 2,            // 40 daddr
];

fn template() -> SyncConn<'static> {
    SyncConn {
        proto: Proto::Tcp,
        cip: CIP,
        cport: 0,
        vip: VIP,
        vport: 80,
        rip: RIP,
        rport: 80,
        fwd: ForwardMethod::Dr,
        state: SyncState::Template { assured: false },
        inactive: true,
        timeout: 360,
        fwmark: 0,
        seq: None,
        pe: None,
    }
}

/// Three entries: the sequence-adjusted one (62 bytes, then 2 bytes of padding), a
/// TUN SYN_RECV one, and an assured template. Size 8 + 62 + 2 + 36 + 36 = 144.
#[rustfmt::skip]
const MULTI: [u8; 144] = [
    0x00,                   //   0 reserved
    0x05,                   //   1 syncid 5
    0x00, 0x90,             //   2 size 144
    0x03,                   //   4 nr_conns 3
    0x01,                   //   5 version 1
    0x00, 0x00,             //   6 spare
    // entry 1 at 8
    0x00, 0x06, 0x00, 0x3e, //   8 type IPv4, TCP, size 62
    0x00, 0x00, 0x02, 0x00, //  12 flags MASQ | OUT_SEQ
    0x00, 0x01, 0x9c, 0x40, //  16 state ESTABLISHED, cport 40000
    0x00, 0x50, 0x1f, 0x90, //  20 vport 80, dport 8080
    0x00, 0x00, 0x00, 0x00, //  24 fwmark
    0x00, 0x00, 0x03, 0x84, //  28 timeout 900
    198, 51, 100, 10,       //  32 caddr
    203, 0, 113, 1,         //  36 vaddr
    10, 0, 0, 2,            //  40 daddr
    0x01, 0x18,             //  44 IPVS_OPT_SEQ_DATA, 24 bytes
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //  46 in_seq
    0x11, 0x22, 0x33, 0x44, //  58 out_seq.init_seq
    0x00, 0x00, 0x00, 0x05, //  62 out_seq.delta
    0x00, 0x00, 0x00, 0x03, //  66 out_seq.previous_delta
    0x00, 0x00,             //  70 padding to 72
    // entry 2 at 72
    0x00, 0x06, 0x00, 0x24, //  72 type IPv4, TCP, size 36
    0x00, 0x00, 0x01, 0x82, //  76 flags TUNNEL | NOOUTPUT | INACTIVE
    0x00, 0x03, 0xc3, 0x50, //  80 state SYN_RECV, cport 50000
    0x01, 0xbb, 0x01, 0xbb, //  84 vport 443, dport 443
    0x00, 0x00, 0x00, 0x00, //  88 fwmark
    0x00, 0x00, 0x00, 0x1e, //  92 timeout 30
    198, 51, 100, 11,       //  96 caddr
    203, 0, 113, 1,         // 100 vaddr
    10, 0, 0, 3,            // 104 daddr
    // entry 3 at 108
    0x00, 0x06, 0x00, 0x24, // 108 type IPv4, TCP, size 36
    0x00, 0x00, 0x11, 0x83, // 112 flags TEMPLATE | INACTIVE | NOOUTPUT | DROUTE
    0x00, 0x01, 0x00, 0x00, // 116 state IP_VS_CTPL_S_ASSURED, cport 0
    0x00, 0x50, 0x00, 0x50, // 120 vport 80, dport 80
    0x00, 0x00, 0x00, 0x00, // 124 fwmark
    0x00, 0x00, 0x01, 0x68, // 128 timeout 360
    198, 51, 100, 10,       // 132 caddr
    203, 0, 113, 1,         // 136 vaddr
    10, 0, 0, 2,            // 140 daddr
];

fn multi() -> [SyncConn<'static>; 3] {
    let tun = SyncConn {
        cip: Ipv4Addr::new(198, 51, 100, 11),
        cport: 50000,
        vport: 443,
        rip: Ipv4Addr::new(10, 0, 0, 3),
        rport: 443,
        fwd: ForwardMethod::Tun,
        state: SyncState::Tcp(TcpState::SynRecv),
        inactive: true,
        timeout: 30,
        ..tcp_nat_est()
    };
    let tpl = SyncConn {
        state: SyncState::Template { assured: true },
        ..template()
    };
    [tcp_nat_est_seq(), tun, tpl]
}

#[test]
fn golden_single_entries_both_ways() {
    let cases: [(&[u8], u8, SyncConn<'static>); 4] = [
        (&TCP_NAT_EST, 5, tcp_nat_est()),
        (&TCP_NAT_EST_SEQ, 5, tcp_nat_est_seq()),
        (&UDP_DR, 7, udp_dr()),
        (&TEMPLATE, 5, template()),
    ];
    for (bytes, syncid, conn) in cases {
        assert_eq!(decode_all(bytes), [conn], "decode {conn:?}");
        assert_eq!(encode_one(syncid, &[conn]), bytes, "encode {conn:?}");
    }
}

#[test]
fn golden_multi_entry_both_ways() {
    assert_eq!(decode_all(&MULTI), multi());
    assert_eq!(encode_one(5, &multi()), MULTI);
}

#[test]
fn golden_views_read_the_kernel_fields() {
    let m = SyncMessage::new_checked(&TCP_NAT_EST_SEQ[..]).unwrap();
    assert_eq!(
        (
            m.reserved(),
            m.syncid(),
            m.size(),
            m.nr_conns(),
            m.version(),
            m.spare()
        ),
        (0, 5, 70, 1, 1, 0)
    );
    let e = SyncConnEntry::new_checked(m.entries_bytes()).unwrap();
    assert_eq!(
        (e.entry_type(), e.protocol(), e.size(), e.padded_size()),
        (0, 6, 62, 64)
    );
    assert_eq!(
        (e.flags(), e.state(), e.cport(), e.vport(), e.dport()),
        (0x200, 1, 40000, 80, 8080)
    );
    assert_eq!(
        (e.caddr(), e.vaddr(), e.daddr(), e.timeout(), e.fwmark()),
        (CIP, VIP, RIP, 900, 0)
    );
    let opts: Vec<_> = e.options().collect();
    assert_eq!(opts.len(), 1);
    let o = opts[0].unwrap();
    assert_eq!((o.kind, o.data.len()), (msg::IPVS_OPT_SEQ_DATA, 24));
}

/// PE data and name follow the sequence option, in that order; the 49-byte entry is
/// padded with 3 bytes when another entry follows.
#[test]
fn golden_pe_options_and_padding() {
    #[rustfmt::skip]
    let bytes: [u8; 8 + 49 + 3 + 36] = [
        0x00, 0x05, 0x00, 0x60, 0x02, 0x01, 0x00, 0x00, //  0 header: syncid 5, size 96, 2 conns
        0x00, 0x11, 0x00, 0x31,                         //  8 IPv4, UDP, size 49
        0x00, 0x00, 0x01, 0x83,                         // 12 flags DROUTE | NOOUTPUT | INACTIVE
        0x00, 0x00, 0x13, 0xc4, 0x13, 0xc4, 0x13, 0xc4, // 16 state 0, ports 5060
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb4, // 24 fwmark 0, timeout 180
        198, 51, 100, 10, 203, 0, 113, 1, 10, 0, 0, 2,  // 32 caddr, vaddr, daddr
        0x02, 0x06, b'c', b'a', b'l', b'l', b'i', b'd', // 44 IPVS_OPT_PE_DATA, 6 bytes
        0x03, 0x03, b's', b'i', b'p',                   // 52 IPVS_OPT_PE_NAME, 3 bytes
        0x00, 0x00, 0x00,                               // 57 padding to 60
        0x00, 0x06, 0x00, 0x24, 0x00, 0x00, 0x00, 0x00, // 60 second entry: TCP NAT
        0x00, 0x01, 0x9c, 0x40, 0x00, 0x50, 0x1f, 0x90, // 68
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x84, // 76
        198, 51, 100, 10, 203, 0, 113, 1, 10, 0, 0, 2,  // 84
    ];
    let sip = SyncConn {
        cport: 5060,
        vport: 5060,
        rport: 5060,
        timeout: 180,
        pe: Some(PeParam {
            name: b"sip",
            data: b"callid",
        }),
        ..udp_dr()
    };
    assert_eq!(decode_all(&bytes), [sip, tcp_nat_est()]);
    assert_eq!(encode_one(5, &[sip, tcp_nat_est()]), bytes);
}

// ---------------------------------------------------------------------------------
// Reasons, one by one.

fn with(base: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = base.to_vec();
    f(&mut v);
    v
}

fn set_size(v: &mut [u8]) {
    let n = v.len() as u16;
    v[2..4].copy_from_slice(&n.to_be_bytes());
}

fn refused(d: &[u8]) -> SyncError {
    let mut dec = SyncDecoder::new(5);
    let e = dec.decode(d).expect_err("refused");
    assert_eq!(dec.counters().get(e), 1);
    assert_eq!(dec.counters().messages, 0);
    e
}

fn skipped(d: &[u8]) -> SyncError {
    let mut dec = SyncDecoder::new(5);
    let items: Vec<_> = dec.decode(d).expect("accepted").collect();
    assert_eq!(items.len(), 1);
    let e = items[0].expect_err("skipped");
    assert!(!e.drops_datagram());
    assert_eq!(dec.counters().get(e), 1);
    assert_eq!(dec.counters().conns, 0);
    e
}

#[test]
fn datagram_level_reasons() {
    use SyncError::*;
    let b = &TCP_NAT_EST[..];
    assert_eq!(refused(&b[..7]), TruncatedHeader);
    assert_eq!(refused(&b[..43]), BadSize);
    assert_eq!(refused(&with(b, |v| v.push(0))), BadSize);
    assert_eq!(refused(&with(b, |v| v[1] = 6)), WrongSyncId);
    assert_eq!(refused(&with(b, |v| v[0] = 1)), Version0);
    assert_eq!(refused(&with(b, |v| v[5] = 2)), UnknownVersion);
    assert_eq!(refused(&with(b, |v| v[6] = 1)), UnknownVersion);
    assert_eq!(refused(&with(b, |v| v[4] = 2)), CountPastEnd);
    assert_eq!(refused(&with(b, |v| v[11] = 35)), EntryTooSmall);
    assert_eq!(refused(&with(b, |v| v[11] = 37)), EntryTooLarge);
    assert_eq!(refused(&with(b, |v| v[10] = 0x10)), BadEntryVersion);
    assert_eq!(refused(&with(b, |v| v[8] = 2)), UnknownEntryType);
    // An IPv6 entry needs 72 bytes.
    assert_eq!(refused(&with(b, |v| v[8] = 1)), EntryTooSmall);
    let s = &TCP_NAT_EST_SEQ[..];
    // One byte cut from the option data, size fields kept consistent.
    assert_eq!(
        refused(&with(s, |v| {
            v.pop();
            v[11] = 61;
            set_size(v)
        })),
        OptionOverrun
    );
    // A lone TLV header byte after the fixed part.
    assert_eq!(
        refused(&with(b, |v| {
            v.push(1);
            v[11] = 37;
            set_size(v)
        })),
        OptionOverrun
    );
    assert_eq!(refused(&with(s, |v| v[45] = 0)), BadOption);
    assert_eq!(refused(&with(s, |v| v[45] = 23)), BadOption);
    // Sequence data twice (the second marked optional: still the same option).
    let twice = with(s, |v| {
        v.extend_from_slice(&[0x41, 24]);
        v.extend_from_slice(&[0; 24]);
        v[11] = 88;
        set_size(v)
    });
    assert_eq!(refused(&twice), BadOption);
    // PE name over 16 bytes.
    let long = with(b, |v| {
        v.extend_from_slice(&[3, 17]);
        v.extend_from_slice(&[b'x'; 17]);
        v[11] = 55;
        set_size(v)
    });
    assert_eq!(refused(&long), BadOption);
}

#[test]
fn entry_level_reasons() {
    use SyncError::*;
    let b = &TCP_NAT_EST[..];
    assert_eq!(skipped(&with(b, |v| v[9] = 132)), UnknownProtocol); // SCTP
    assert_eq!(skipped(&with(b, |v| v[17] = 11)), InvalidState); // IP_VS_TCP_S_LAST
    assert_eq!(
        skipped(&with(&UDP_DR, |v| {
            v[1] = 5;
            v[17] = 1
        })),
        InvalidState
    );
    assert_eq!(skipped(&with(&TEMPLATE, |v| v[17] = 2)), InvalidState);
    assert_eq!(skipped(&with(b, |v| v[15] = 1)), UnsupportedForward); // LOCALNODE
    assert_eq!(skipped(&with(b, |v| v[15] = 4)), UnsupportedForward); // BYPASS
    let unknown = |kind: u8| {
        with(b, |v| {
            v.extend_from_slice(&[kind, 2, 0xaa, 0xbb]);
            v[11] = 40;
            set_size(v)
        })
    };
    assert_eq!(skipped(&unknown(9)), UnknownMandatoryOption);
    // The same option marked optional is ignored.
    assert_eq!(decode_all(&unknown(9 | msg::IPVS_OPT_F_PARAM)), [tcp_nat_est()]);
    let pe_only = with(b, |v| {
        v.extend_from_slice(&[2, 2, 0xaa, 0xbb]);
        v[11] = 40;
        set_size(v)
    });
    assert_eq!(skipped(&pe_only), PeDataWithoutName);
    // A name alone means nothing, as to the kernel.
    let name_only = with(b, |v| {
        v.extend_from_slice(&[3, 2, b'h', b'i']);
        v[11] = 40;
        set_size(v)
    });
    assert_eq!(decode_all(&name_only), [tcp_nat_est()]);
}

/// An IPv6 entry between two IPv4 ones is skipped by its size and counted.
#[test]
fn ipv6_entries_are_skipped_by_size() {
    let mut d = TCP_NAT_EST.to_vec();
    #[rustfmt::skip]
    let v6: [u8; 24] = [
        0x01, 0x06, 0x00, 0x48, // type INET6, TCP, size 72
        0, 0, 0, 0, 0, 1, 0x9c, 0x40, 0, 80, 0x1f, 0x90, 0, 0, 0, 0, 0, 0, 3, 0x84,
    ];
    d.extend_from_slice(&v6);
    d.extend_from_slice(&[0x20; 48]); // three IPv6 addresses
    d.extend_from_slice(&TCP_NAT_EST[8..]);
    d[4] = 3;
    set_size(&mut d);
    let mut dec = SyncDecoder::new(0);
    let items: Vec<_> = dec.decode(&d).unwrap().collect();
    assert_eq!(
        items,
        [
            Ok(tcp_nat_est()),
            Err(SyncError::Ipv6Unsupported),
            Ok(tcp_nat_est())
        ]
    );
    assert_eq!(dec.counters().conns, 2);
    assert_eq!(dec.counters().get(SyncError::Ipv6Unsupported), 1);
}

/// A framing error in a later entry refuses the datagram before the first is yielded.
#[test]
fn no_entry_before_a_framing_error() {
    let mut d = MULTI.to_vec();
    d[108 + 3] = 40; // third entry's size past the end
    assert_eq!(refused(&d), SyncError::EntryTooLarge);
    assert!(entries(&d, 0).is_err());
}

#[test]
fn counters_name_every_reason_once() {
    let names: std::collections::HashSet<_> = SyncError::ALL.iter().map(|e| e.as_str()).collect();
    assert_eq!(names.len(), SyncError::COUNT);
    for (i, e) in SyncError::ALL.iter().enumerate() {
        assert_eq!(*e as usize, i);
    }
    assert!(SyncError::BadOption.drops_datagram());
    assert!(!SyncError::Ipv6Unsupported.drops_datagram());
}

// ---------------------------------------------------------------------------------
// Message limits.

#[test]
fn sync_maxlen_mirrors_the_kernel() {
    use McastFamily::*;
    use SyncRole::*;
    assert_eq!(sync_maxlen(Master, Ipv4, 9000, 0), 1472);
    assert_eq!(sync_maxlen(Master, Ipv6, 9000, 0), 1452);
    assert_eq!(sync_maxlen(Backup, Ipv4, 9000, 0), 8972);
    assert_eq!(sync_maxlen(Backup, Ipv4, 1280, 0), 1472);
    assert_eq!(sync_maxlen(Master, Ipv4, 1500, 1), 1);
    assert_eq!(sync_maxlen(Backup, Ipv4, 1500, 1), 1024);
    assert_eq!(sync_maxlen(Master, Ipv4, 1500, 70000), 65507);
    assert_eq!(sync_maxlen(Master, Ipv6, 1500, 70000), 65487);
}

#[test]
fn encoder_packs_like_a_kernel_master() {
    // 1472 bytes: 8 + 40 * 36 = 1448, and a 41st entry would pass the limit.
    let conns: Vec<_> = (0..100u16)
        .map(|i| SyncConn {
            cport: i,
            ..tcp_nat_est()
        })
        .collect();
    let mut msgs = Vec::new();
    let mut enc = SyncEncoder::new(5, sync_maxlen(SyncRole::Master, McastFamily::Ipv4, 1500, 0));
    enc.encode_all(&conns, |m| msgs.push(m.to_vec())).unwrap();
    let counts: Vec<_> = msgs.iter().map(|m| m[4]).collect();
    assert_eq!(counts, [40, 40, 20]);
    assert_eq!(msgs[0].len(), 1448);
    let back: Vec<_> = msgs.iter().flat_map(|m| decode_all(m)).collect();
    assert_eq!(back, conns);
    // Never more than 255 entries, however large the limit.
    let mut big = SyncEncoder::new(5, 65535);
    let many: Vec<_> = (0..600u16)
        .map(|i| SyncConn {
            cport: i,
            ..tcp_nat_est()
        })
        .collect();
    let mut counts = Vec::new();
    big.encode_all(&many, |m| counts.push(m[4])).unwrap();
    assert_eq!(counts, [255, 255, 90]);
    // A limit below one entry is raised so that every entry fits.
    assert_eq!(MAX_ENTRY_LEN, 343);
    assert_eq!(SyncEncoder::new(5, 1).maxlen(), MIN_SYNC_MAXLEN);
}

#[test]
fn encoder_refuses_impossible_pe_without_cutting_the_message() {
    let mut enc = SyncEncoder::new(5, 1472);
    let mut sent = 0;
    enc.push(&tcp_nat_est(), |_| sent += 1).unwrap();
    let bad = SyncConn {
        pe: Some(PeParam {
            name: &[b'n'; 17],
            data: b"x",
        }),
        ..tcp_nat_est()
    };
    assert_eq!(enc.push(&bad, |_| sent += 1), Err(EmitError::BadPeParam));
    let empty = SyncConn {
        pe: Some(PeParam {
            name: b"sip",
            data: b"",
        }),
        ..tcp_nat_est()
    };
    assert_eq!(enc.push(&empty, |_| sent += 1), Err(EmitError::BadPeParam));
    assert_eq!((sent, enc.pending()), (0, 1));
    let mut out = Vec::new();
    enc.flush(|m| out = m.to_vec());
    assert_eq!(out, TCP_NAT_EST);
}

// ---------------------------------------------------------------------------------
// Properties.

/// An owned stand-in for `SyncConn`'s borrowed PE bytes.
#[derive(Debug, Clone)]
struct Arb {
    conn: SyncConn<'static>,
    pe: Option<(Vec<u8>, Vec<u8>)>,
}

impl Arb {
    fn conn(&self) -> SyncConn<'_> {
        SyncConn {
            pe: self.pe.as_ref().map(|(name, data)| PeParam { name, data }),
            ..self.conn
        }
    }
}

fn arb_seq_delta() -> impl Strategy<Value = SeqDelta> {
    any::<[u32; 3]>().prop_map(|[a, b, c]| SeqDelta {
        init_seq: a,
        delta: b,
        previous_delta: c,
    })
}

fn arb_conn() -> impl Strategy<Value = Arb> {
    let proto = prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)];
    let fwd = prop_oneof![
        Just(ForwardMethod::Nat),
        Just(ForwardMethod::Dr),
        Just(ForwardMethod::Tun)
    ];
    let seq = proptest::option::of(
        (
            any::<bool>(),
            any::<bool>(),
            arb_seq_delta(),
            arb_seq_delta(),
            proptest::option::of(any::<[u8; 4]>()),
        )
            .prop_map(|(i, o, a, b, w)| SeqAdjust {
                adjust_in: i,
                adjust_out: o,
                in_seq: a,
                out_seq: b,
                windows: w,
            }),
    );
    let pe = proptest::option::of((
        proptest::collection::vec(any::<u8>(), 1..=16),
        proptest::collection::vec(any::<u8>(), 1..=255),
    ));
    (
        (proto, fwd, any::<[u32; 3]>(), any::<[u16; 3]>()),
        (0u16..13, any::<bool>(), any::<u32>(), any::<u32>()),
        seq,
        pe,
    )
        .prop_map(|((proto, fwd, a, p), (st, inactive, timeout, fwmark), seq, pe)| {
            // 0..=10: a TCP state (or UDP's one state); 11, 12: a template.
            let state = match (st, proto) {
                (11 | 12, _) => SyncState::Template { assured: st == 12 },
                (_, Proto::Tcp) => SyncState::Tcp(TcpState::ALL[usize::from(st)]),
                (_, Proto::Udp) => SyncState::Udp,
            };
            Arb {
                conn: SyncConn {
                    proto,
                    cip: Ipv4Addr::from(a[0]),
                    cport: p[0],
                    vip: Ipv4Addr::from(a[1]),
                    vport: p[1],
                    rip: Ipv4Addr::from(a[2]),
                    rport: p[2],
                    fwd,
                    state,
                    inactive,
                    timeout,
                    fwmark,
                    seq,
                    pe: None,
                },
                pe,
            }
        })
}

/// Every outcome of decoding arbitrary bytes: a refusal, or whole entries and skips.
/// A yielded entry must survive emit → parse unchanged (nothing half-read).
fn check_decode(d: &[u8], syncid: u8) -> Result<(), TestCaseError> {
    let mut dec = SyncDecoder::new(syncid);
    match dec.decode(d) {
        Err(e) => {
            prop_assert!(e.drops_datagram());
            prop_assert!(validate(d, syncid).is_err());
        }
        Ok(items) => {
            let n = d[4];
            let mut count = 0usize;
            for item in items {
                count += 1;
                match item {
                    Ok(c) => {
                        let mut buf = [0u8; MAX_ENTRY_LEN];
                        let len = c.emit(&mut buf).unwrap();
                        let e = SyncConnEntry::new_checked(&buf[..len]).unwrap();
                        prop_assert_eq!(SyncConn::parse(&e), Ok(c));
                    }
                    Err(e) => prop_assert!(!e.drops_datagram(), "{e:?} after validation"),
                }
            }
            prop_assert_eq!(count, usize::from(n));
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn emit_parse_round_trip(arbs in proptest::collection::vec(arb_conn(), 1..60), syncid in 1u8.., maxlen in 300usize..3000) {
        let conns: Vec<_> = arbs.iter().map(Arb::conn).collect();
        let mut enc = SyncEncoder::new(syncid, maxlen);
        let mut msgs = Vec::new();
        enc.encode_all(&conns, |m| msgs.push(m.to_vec())).unwrap();
        let mut back = Vec::new();
        for m in &msgs {
            prop_assert!(m.len() <= enc.maxlen());
            let mut dec = SyncDecoder::new(syncid);
            for item in dec.decode(m).unwrap() {
                back.push(item.unwrap());
            }
        }
        prop_assert_eq!(back, conns);
    }

    #[test]
    fn arbitrary_bytes_never_panic(d in proptest::collection::vec(any::<u8>(), 0..400), syncid in any::<u8>()) {
        check_decode(&d, syncid)?;
    }

    /// Valid headers with arbitrary entries behind them reach the entry checks.
    #[test]
    fn arbitrary_entries_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400), n in any::<u8>()) {
        let mut d = vec![0, 5, 0, 0, n, 1, 0, 0];
        d.extend_from_slice(&body);
        let len = d.len() as u16;
        d[2..4].copy_from_slice(&len.to_be_bytes());
        check_decode(&d, 5)?;
    }

    #[test]
    fn mutated_messages_never_panic(
        arbs in proptest::collection::vec(arb_conn(), 1..6),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        fix_size in any::<bool>(),
        do_cut in any::<bool>(),
    ) {
        let conns: Vec<_> = arbs.iter().map(Arb::conn).collect();
        let mut d = Vec::new();
        SyncEncoder::new(5, 65535).encode_all(&conns, |m| d = m.to_vec()).unwrap();
        for (i, v) in flips {
            let i = i.index(d.len());
            d[i] ^= v;
        }
        if do_cut {
            d.truncate(cut.index(d.len() + 1));
        }
        if fix_size && d.len() >= 4 {
            let len = d.len() as u16;
            d[2..4].copy_from_slice(&len.to_be_bytes());
        }
        check_decode(&d, 5)?;
    }
}
