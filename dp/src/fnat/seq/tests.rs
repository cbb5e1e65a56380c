//! `SeqShift` against etherparse (checksums recomputed from scratch) and
//! against a model of both byte streams.

use super::*;
use etherparse::{Ipv4HeaderSlice, PacketBuilder, TcpSlice};
use proptest::prelude::*;
use std::net::Ipv4Addr;

const LIP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const RIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const HDR: &[u8] = b"PROXY TCP4 198.51.100.10 203.0.113.1 40000 80\r\n";

/// A segment as the builder makes it; `ack` None leaves the ACK flag off.
#[derive(Clone, Copy)]
struct Seg<'a> {
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    fin: bool,
    rst: bool,
    opts: &'a [u8],
    payload: &'a [u8],
    room: usize,
}

fn seg<'a>(seq: u32, payload: &'a [u8]) -> Seg<'a> {
    Seg {
        seq,
        ack: Some(1),
        syn: false,
        fin: false,
        rst: false,
        opts: &[],
        payload,
        room: 0,
    }
}

/// Build the IPv4 packet, with `room` spare bytes behind it. Client → RS and
/// RS → client use the same two addresses (the order does not matter to the
/// translation), so one oracle serves both.
fn build(s: Seg) -> Vec<u8> {
    let mut v = Vec::new();
    let mut b = PacketBuilder::ipv4(LIP.octets(), RIP.octets(), 64).tcp(5001, 80, s.seq, 64240);
    if let Some(a) = s.ack {
        b = b.ack(a);
    }
    if s.syn {
        b = b.syn();
    }
    if s.fin {
        b = b.fin();
    }
    if s.rst {
        b = b.rst();
    }
    b.options_raw(s.opts).unwrap().write(&mut v, s.payload).unwrap();
    v.resize(v.len() + s.room, 0xee);
    v
}

/// What etherparse reads back.
#[derive(Debug, PartialEq)]
struct Seen {
    ip_ok: bool,
    tcp_ok: bool,
    seq: u32,
    ack: u32,
    syn: bool,
    fin: bool,
    options: Vec<u8>,
    payload: Vec<u8>,
}

fn seen(pkt: &[u8]) -> Seen {
    let ip = Ipv4HeaderSlice::from_slice(pkt).unwrap();
    let total = usize::from(ip.total_len());
    let t = TcpSlice::from_slice(&pkt[ip.slice().len()..total]).unwrap();
    Seen {
        ip_ok: ip.to_header().calc_header_checksum() == ip.header_checksum(),
        tcp_ok: t.calc_checksum_ipv4(LIP.octets(), RIP.octets()).unwrap() == t.checksum(),
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        syn: t.syn(),
        fin: t.fin(),
        options: t.options().to_vec(),
        payload: t.payload().to_vec(),
    }
}

fn shift(isn: u32) -> SeqShift {
    SeqShift::new(isn, HDR.len() as u16)
}

#[test]
fn mappings_around_the_header_and_the_wrap() {
    for isn in [1000u32, u32::MAX, u32::MAX - 10] {
        let s = shift(isn);
        let (c0, n) = (isn.wrapping_add(1), HDR.len() as u32);
        assert_eq!(s.seq_to_rs(isn), isn);
        assert_eq!(s.seq_to_rs(c0), c0.wrapping_add(n));
        assert_eq!(s.seq_to_rs(c0.wrapping_add(5)), c0.wrapping_add(5 + n));
        assert_eq!(s.ack_to_client(c0), c0);
        assert_eq!(s.ack_to_client(c0.wrapping_add(n - 1)), c0);
        assert_eq!(s.ack_to_client(c0.wrapping_add(n)), c0);
        assert_eq!(s.ack_to_client(c0.wrapping_add(n + 7)), c0.wrapping_add(7));
        assert_eq!(s.ack_to_client(isn), isn);
    }
}

#[test]
fn plans() {
    let mut s = shift(999);
    let (syn, fin, rst, ack) = (TcpFlags::SYN, TcpFlags::FIN, TcpFlags::RST, TcpFlags::ACK);
    assert_eq!(s.plan(999, syn, 0), ClientPlan::Keep);
    assert_eq!(s.plan(999, syn, 30), ClientPlan::Trim { keep: 0 });
    assert_eq!(s.plan(1000, ack, 0), ClientPlan::Insert);
    assert_eq!(s.plan(1000, ack | fin, 10), ClientPlan::Insert);
    assert_eq!(s.plan(1001, ack, 10), ClientPlan::Shift);
    assert_eq!(s.plan(1000, rst, 0), ClientPlan::Keep);
    // A keepalive probe at ISN, with or without its garbage byte.
    assert_eq!(s.plan(999, ack, 0), ClientPlan::Keep);
    assert_eq!(s.plan(999, ack, 1), ClientPlan::Keep);
    assert_eq!(s.plan(995, ack, 10), ClientPlan::Trim { keep: 5 });
    s.state = HdrState::Sent;
    assert_eq!(s.plan(1000, ack, 0), ClientPlan::Insert);
    assert_eq!(s.plan(1000, rst, 0), ClientPlan::Shift);
    s.state = HdrState::Acked;
    assert_eq!(s.plan(1000, ack, 10), ClientPlan::Shift);
    assert_eq!(s.plan(999, syn, 0), ClientPlan::Keep);
}

#[test]
fn first_data_segment_carries_the_header() {
    let mut s = shift(999);
    let mut p = build(Seg {
        room: 100,
        ..seg(1000, b"GET / HTTP/1.0\r\n\r\n")
    });
    let total = s.client_to_rs(&mut p, HDR).unwrap();
    let v = seen(&p[..total]);
    assert!(v.ip_ok && v.tcp_ok);
    assert_eq!(v.seq, 1000);
    assert_eq!(v.payload, [HDR, b"GET / HTTP/1.0\r\n\r\n"].concat());
    assert_eq!(s.state(), HdrState::Sent);
    // The next segment is shifted.
    let mut q = build(seg(1018, b"more"));
    s.client_to_rs(&mut q, HDR).unwrap();
    let v = seen(&q);
    assert!(v.tcp_ok);
    assert_eq!(
        (v.seq, v.payload.as_slice()),
        (1018 + HDR.len() as u32, &b"more"[..])
    );
}

#[test]
fn short_room_cuts_the_tail_and_the_fin() {
    let mut s = shift(999);
    let data = [7u8; 40];
    // Room for the header and 25 of the 40 bytes.
    let room = HDR.len() - 15;
    let mut p = build(Seg {
        fin: true,
        room,
        ..seg(1000, &data)
    });
    let total = s.client_to_rs(&mut p, HDR).unwrap();
    assert_eq!(total, p.len());
    let v = seen(&p);
    assert!(v.ip_ok && v.tcp_ok && !v.fin);
    assert_eq!(v.payload, [HDR, &data[..25]].concat());
    // Not even the header fits: refused, untouched.
    let p0 = build(Seg {
        room: HDR.len() - 1,
        ..seg(1000, b"")
    });
    let mut p = p0.clone();
    assert_eq!(s.client_to_rs(&mut p, HDR), Err(SegError::NoRoom));
    assert_eq!(p, p0);
    assert_eq!(s.client_to_rs(&mut p, &HDR[1..]), Err(SegError::BadHeaderLen));
}

#[test]
fn tfo_syn_loses_its_data() {
    let mut s = shift(999);
    let mut p = build(Seg {
        syn: true,
        ack: None,
        fin: false,
        ..seg(999, b"early data")
    });
    let total = s.client_to_rs(&mut p, HDR).unwrap();
    let v = seen(&p[..total]);
    assert!(v.ip_ok && v.tcp_ok && v.syn);
    assert_eq!(v.seq, 999);
    assert!(v.payload.is_empty());
    assert_eq!(s.state(), HdrState::Pending);
}

#[test]
fn rs_acks_and_sacks_come_back_in_client_numbering() {
    let mut s = shift(999);
    let n = HDR.len() as u32;
    // NOP, then SACK at an odd offset within the options: two blocks, one
    // inside the header (a D-SACK of a repeated header) and one past it.
    let mut opts = vec![1u8, 5, 18];
    for e in [1000 + 3, 1000 + 9, 1000 + n + 100, 1000 + n + 200] {
        opts.extend_from_slice(&e.to_be_bytes());
    }
    opts.push(1);
    let mut p = build(Seg {
        opts: &opts,
        ack: Some(1000 + n + 50),
        ..seg(7777, b"response")
    });
    s.rs_to_client(&mut p).unwrap();
    let v = seen(&p);
    assert!(v.ip_ok && v.tcp_ok);
    assert_eq!((v.seq, v.ack), (7777, 1050));
    assert_eq!(v.payload, b"response");
    let edges: Vec<u32> = v.options[3..19]
        .chunks(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(edges, [1000, 1000, 1100, 1200]);
    assert_eq!(s.state(), HdrState::Acked);
    // The SYN-ACK acks C0, which stays C0, and does not count as a header ack.
    let mut s = shift(999);
    let mut p = build(Seg {
        syn: true,
        ack: Some(1000),
        ..seg(5555, b"")
    });
    let before = p.clone();
    s.rs_to_client(&mut p).unwrap();
    assert_eq!(p, before);
    assert_eq!(s.state(), HdrState::Pending);
}

#[test]
fn bad_checksums_stay_bad() {
    let mut s = shift(999);
    let mut p = build(Seg {
        room: 100,
        ..seg(1000, b"abc")
    });
    p[20 + 16] ^= 1;
    let total = s.client_to_rs(&mut p, HDR).unwrap();
    assert!(!seen(&p[..total]).tcp_ok);
    let mut q = build(seg(2000, b"abc"));
    q[20 + 16] ^= 1;
    s.client_to_rs(&mut q, HDR).unwrap();
    assert!(!seen(&q).tcp_ok);
    let mut r = build(Seg {
        ack: Some(1000 + 60),
        ..seg(1, b"")
    });
    r[20 + 16] ^= 1;
    s.rs_to_client(&mut r).unwrap();
    assert!(!seen(&r).tcp_ok);
}

/// One step of the stream model.
#[derive(Debug, Clone)]
enum Step {
    /// The client sends bytes `[from, from + len)` of its data (clamped),
    /// with FIN if they reach the end and `fin`; lost before the RS if `lost`.
    Send {
        from: usize,
        len: usize,
        fin: bool,
        lost: bool,
        room: usize,
    },
    /// The RS acks what it has in order, with a SACK block for the first
    /// out-of-order run; the ack is lost before the client if `lost`.
    Ack { lost: bool },
    /// A keepalive probe at ISN with one garbage byte.
    Probe,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0usize..320, 0usize..90, any::<bool>(), proptest::bool::weighted(0.3), 0usize..140)
            .prop_map(|(from, len, fin, lost, room)| Step::Send { from, len, fin, lost, room }),
        3 => proptest::bool::weighted(0.3).prop_map(|lost| Step::Ack { lost }),
        1 => Just(Step::Probe),
    ]
}

/// The RS's receive side, positions counted from C0 in its numbering.
struct Rs {
    want: Vec<u8>,
    got: Vec<Option<u8>>,
    fin_seen: bool,
}

impl Rs {
    fn contiguous(&self) -> usize {
        self.got
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.got.len())
    }

    /// Take a translated client segment: every byte at or after C0 must be
    /// the byte the RS is meant to see there, and a FIN must sit at the end.
    fn take(&mut self, c0: u32, v: &Seen) -> Result<(), TestCaseError> {
        prop_assert!(v.ip_ok && v.tcp_ok);
        let start = i64::from(v.seq.wrapping_add(u32::from(v.syn)).wrapping_sub(c0) as i32);
        for (i, &b) in v.payload.iter().enumerate() {
            let at = start + i as i64;
            if at < 0 {
                continue;
            }
            let at = at as usize;
            prop_assert!(at < self.want.len(), "byte past the end at {}", at);
            prop_assert_eq!(b, self.want[at], "wrong byte at {}", at);
            self.got[at] = Some(b);
        }
        if v.fin {
            prop_assert_eq!(
                start + v.payload.len() as i64,
                self.want.len() as i64,
                "FIN off the end"
            );
            self.fin_seen = true;
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// A client stream cut into random, repeated, overlapping, lost segments
    /// (a TFO SYN, keepalive probes, short room), RS acks with SACK, some of
    /// them lost: the RS only ever sees header + client bytes at their places,
    /// the client only sees acks of its own bytes, and a final clean resend
    /// from the client's acked point delivers the whole stream.
    #[test]
    fn streams_line_up(
        isn in prop_oneof![any::<u32>(), Just(u32::MAX), Just(u32::MAX - 30)],
        hdr in proptest::collection::vec(any::<u8>(), 1..60),
        data in proptest::collection::vec(any::<u8>(), 0..300),
        tfo in 0usize..40,
        steps in proptest::collection::vec(step(), 0..40),
    ) {
        let n = hdr.len();
        let mut s = SeqShift::new(isn, n as u16);
        let c0 = s.c0();
        let mut rs = Rs { want: [&hdr[..], &data[..]].concat(), got: vec![None; n + data.len()], fin_seen: false };
        // Client's una, as bytes of its own data acked.
        let mut una = 0usize;

        // The SYN, maybe with TFO data: only the SYN reaches the RS.
        let tfo = &data[..tfo.min(data.len())];
        let mut p = build(Seg { syn: true, ack: None, room: 100, ..seg(isn, tfo) });
        let total = s.client_to_rs(&mut p, &hdr).unwrap();
        let v = seen(&p[..total]);
        prop_assert!(v.payload.is_empty() && v.syn);
        rs.take(c0, &v)?;

        let send = |s: &mut SeqShift, rs: &mut Rs, from: usize, len: usize, fin: bool, room: usize, lost: bool|
            -> Result<(), TestCaseError> {
            let from = from.min(data.len());
            let to = (from + len).min(data.len());
            let fin = fin && to == data.len();
            let mut p = build(Seg { fin, room, ..seg(c0.wrapping_add(from as u32), &data[from..to]) });
            match s.client_to_rs(&mut p, &hdr) {
                Ok(total) if !lost => rs.take(c0, &seen(&p[..total]))?,
                Ok(_) => {}
                Err(e) => prop_assert_eq!(e, SegError::NoRoom),
            }
            Ok(())
        };
        let ack = |s: &mut SeqShift, rs: &Rs, una: &mut usize, lost: bool| -> Result<(), TestCaseError> {
            let have = rs.contiguous();
            // The first out-of-order run past the hole, if any, as a SACK block.
            let mut opts = Vec::new();
            if let Some(l) = rs.got[have..].iter().position(Option::is_some).map(|i| have + i) {
                let r = rs.got[l..].iter().position(Option::is_none).map_or(rs.got.len(), |i| l + i);
                opts = vec![1, 1, 5, 10];
                opts.extend_from_slice(&c0.wrapping_add(l as u32).to_be_bytes());
                opts.extend_from_slice(&c0.wrapping_add(r as u32).to_be_bytes());
            }
            let body = [0x42u8; 7];
            let mut p = build(Seg { opts: &opts, ack: Some(c0.wrapping_add(have as u32)), ..seg(4242, &body) });
            s.rs_to_client(&mut p).unwrap();
            let v = seen(&p);
            prop_assert!(v.ip_ok && v.tcp_ok);
            prop_assert_eq!(v.seq, 4242);
            prop_assert_eq!(&v.payload[..], &body[..]);
            // In the client's numbering: its own bytes the RS has in order.
            let acked = have.saturating_sub(n);
            prop_assert_eq!(v.ack, c0.wrapping_add(acked as u32));
            if opts.len() == 12 {
                let l = u32::from_be_bytes(v.options[4..8].try_into().unwrap());
                let r = u32::from_be_bytes(v.options[8..12].try_into().unwrap());
                prop_assert!(l.wrapping_sub(c0) as usize <= data.len());
                prop_assert!(r.wrapping_sub(l) as i32 >= 0);
            }
            if !lost {
                *una = (*una).max(acked);
            }
            Ok(())
        };

        for st in steps {
            match st {
                Step::Send { from, len, fin, lost, room } => send(&mut s, &mut rs, from, len, fin, room, lost)?,
                Step::Ack { lost } => ack(&mut s, &rs, &mut una, lost)?,
                Step::Probe => {
                    let mut p = build(seg(isn, b"x"));
                    let total = s.client_to_rs(&mut p, &hdr).unwrap();
                    let v = seen(&p[..total]);
                    prop_assert_eq!(v.seq, isn);
                    rs.take(c0, &v)?;
                }
            }
        }
        // The client resends from its acked point, nothing lost, enough room;
        // the RS acks each time. Every round moves the RS's in-order point.
        for _ in 0..(data.len() / 100 + 4) {
            if rs.contiguous() == rs.want.len() && rs.fin_seen && una == data.len() {
                break;
            }
            send(&mut s, &mut rs, una, 100, true, 200, false)?;
            ack(&mut s, &rs, &mut una, false)?;
        }
        prop_assert_eq!(rs.contiguous(), rs.want.len());
        prop_assert!(rs.fin_seen);
        let stream: Vec<u8> = rs.got.iter().map(|b| b.unwrap()).collect();
        prop_assert_eq!(stream, rs.want);
        prop_assert_eq!(una, data.len());
    }

    /// `steady` (the fast path's shortcut) gives, when it answers, exactly the
    /// bytes the full translation gives, both ways, SACK or not.
    #[test]
    fn steady_agrees_with_the_full_translation(
        isn in any::<u32>(), off in -3i32..300, ack_off in -3i32..300,
        fin in any::<bool>(), syn in any::<bool>(), rst in any::<bool>(), with_ack in any::<bool>(),
        sack in any::<bool>(), ts in any::<bool>(), state in 0u8..3,
        payload in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut s = shift(isn);
        s.state = [HdrState::Pending, HdrState::Sent, HdrState::Acked][usize::from(state)];
        let seqv = s.c0().wrapping_add(off as u32);
        let ackv = s.c0().wrapping_add(ack_off as u32);
        let mut opts = Vec::new();
        if ts {
            opts.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        }
        if sack {
            opts.extend_from_slice(&[1, 1, 5, 10]);
            opts.extend_from_slice(&ackv.wrapping_add(10).to_be_bytes());
            opts.extend_from_slice(&ackv.wrapping_add(20).to_be_bytes());
        }
        let sg = Seg { syn, fin, rst, opts: &opts, ack: with_ack.then_some(ackv), room: 80, ..seg(seqv, &payload) };
        let pkt = build(sg);
        for to_rs in [true, false] {
            let Some((at, old, new)) = s.steady(to_rs, &pkt[20..]) else { continue };
            let mut fast = pkt.clone();
            prop_assert_eq!(get_u32(&fast, 20 + at), old);
            set_u32(&mut fast, 20 + at, new);
            let c = get_u16(&fast, 20 + TCP_CHECKSUM);
            set_u16(&mut fast, 20 + TCP_CHECKSUM, checksum::apply(c, checksum::delta32(old, new)));
            let mut full = pkt.clone();
            let mut t = s;
            if to_rs {
                let total = t.client_to_rs(&mut full, HDR).unwrap();
                prop_assert_eq!(total, pkt.len() - 80, "no growth");
            } else {
                t.rs_to_client(&mut full).unwrap();
            }
            prop_assert_eq!(t, s, "no state change");
            prop_assert_eq!(fast, full);
        }
    }

    /// Arbitrary bytes never make either direction panic, and what comes out
    /// of a success still validates.
    #[test]
    fn arbitrary_bytes_never_panic(
        mut b in proptest::collection::vec(any::<u8>(), 0..160),
        isn in any::<u32>(), n in 0u16..80, state in 0u8..3,
    ) {
        let mut s = SeqShift::new(isn, n);
        s.state = [HdrState::Pending, HdrState::Sent, HdrState::Acked][usize::from(state)];
        let hdr = vec![0x55u8; usize::from(n)];
        let mut c = b.clone();
        if let Ok(total) = s.client_to_rs(&mut c, &hdr) {
            prop_assert!(total <= c.len());
            prop_assert!(locate(&c).is_ok());
        }
        if s.rs_to_client(&mut b).is_ok() {
            prop_assert!(locate(&b).is_ok());
        }
    }
}
