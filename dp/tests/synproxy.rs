//! The SYN proxy through the whole per-packet path (`Forwarder::process`):
//! frames in, verdicts and frames out, read back with etherparse.

use std::net::Ipv4Addr;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TcpSlice, TransportSlice};
use rvs_dp::core::{CoreOptions, Forwarder, Verdict};
use rvs_dp::packet::{PacketBuf, VecBuf};
use rvs_dp::service::{ForwardMethod, Proto};
use rvs_dp::stats::DropReason;
use rvs_dp::sync::bulk::{encode_page, Bulk};
use rvs_dp::sync::install::{install, Installed};
use rvs_dp::sync::{worker_tick, SyncDecoder, SyncEncoder, SyncEvent, SyncParams};
use rvs_dp::wire::ethernet::MacAddr;
use rvs_proto::command::{Command, Reply};
use rvs_proto::resync::BulkRequest;
use std::sync::atomic::Ordering;

#[path = "common/lab.rs"]
mod lab;
use lab::{port, LabDirector, CIP, CLIENT_MAC, P0_MAC, P1_MAC, RIP, RS_MAC, VIP};

const CLIENT_ISN: u32 = 1000;
const RS_ISN: u32 = 5_000_000;

fn lab(syn_proxy: bool) -> (LabDirector, Forwarder) {
    let mut dir = LabDirector::new(
        vec![
            port(P0_MAC, Ipv4Addr::new(10, 1, 0, 1), 1500),
            port(P1_MAC, Ipv4Addr::new(10, 2, 0, 1), 1500),
        ],
        &[],
        &[(CIP, MacAddr(CLIENT_MAC)), (RIP, MacAddr(RS_MAC))],
        1,
        CoreOptions::default(),
    );
    let mut spec = lab::service(Proto::Tcp, VIP, 80, "rr", None);
    spec.syn_proxy = syn_proxy;
    dir.apply(Command::AddService(spec.clone()));
    dir.real_server(spec.key(), RIP, 8080, 1, ForwardMethod::Nat);
    let fwd = dir.forwarder(0, 1024, 100);
    (dir, fwd)
}

struct Seg<'a> {
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    rst: bool,
    win: u16,
    opts: &'a [TcpOptionElement],
    payload: &'a [u8],
}

impl Default for Seg<'_> {
    fn default() -> Self {
        Seg {
            seq: 0,
            ack: None,
            syn: false,
            rst: false,
            win: 502,
            opts: &[],
            payload: &[],
        }
    }
}

fn frame(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), macs: ([u8; 6], [u8; 6]), s: Seg) -> Vec<u8> {
    let mut t = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, s.seq, s.win);
    if s.syn {
        t = t.syn();
    }
    if s.rst {
        t = t.rst();
    }
    if let Some(a) = s.ack {
        t = t.ack(a);
    }
    if !s.opts.is_empty() {
        t = t.options(s.opts).unwrap();
    }
    let mut out = Vec::new();
    t.write(&mut out, s.payload).unwrap();
    out
}

fn from_client(cport: u16, s: Seg) -> Vec<u8> {
    frame((CIP, cport), (VIP, 80), (CLIENT_MAC, P0_MAC.0), s)
}

fn from_rs(cport: u16, s: Seg) -> Vec<u8> {
    frame((RIP, 8080), (CIP, cport), (RS_MAC, P1_MAC.0), s)
}

fn send(fwd: &mut Forwarder, port: u16, f: &[u8]) -> (Verdict, Vec<u8>) {
    let mut b = VecBuf::new(f);
    let v = fwd.process(port, &mut b, false);
    (v, b.data().to_vec())
}

/// The TCP segment of an output frame, its addresses, and whether its
/// checksum (and the IP header's) holds.
struct Out {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dst_mac: [u8; 6],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    syn: bool,
    ackf: bool,
    rst: bool,
    win: u16,
    opts: Vec<TcpOptionElement>,
    payload: Vec<u8>,
    sums_ok: bool,
}

fn out(f: &[u8]) -> Out {
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else {
        panic!("no ethernet")
    };
    let Some(NetSlice::Ipv4(ip)) = p.net else {
        panic!("no ipv4")
    };
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("no tcp")
    };
    let t: TcpSlice = t;
    let h = ip.header();
    let sums_ok = h.header_checksum() == h.to_header().calc_header_checksum()
        && t.checksum()
            == t.to_header()
                .calc_checksum_ipv4(&h.to_header(), t.payload())
                .unwrap();
    Out {
        src: h.source_addr(),
        dst: h.destination_addr(),
        dst_mac: eth.destination(),
        sport: t.source_port(),
        dport: t.destination_port(),
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        syn: t.syn(),
        ackf: t.ack(),
        rst: t.rst(),
        win: t.window_size(),
        opts: t.options_iterator().map(|o| o.unwrap()).collect(),
        payload: t.payload().to_vec(),
        sums_ok,
    }
}

const LINUX_SYN: [TcpOptionElement; 5] = [
    TcpOptionElement::MaximumSegmentSize(1460),
    TcpOptionElement::SelectiveAcknowledgementPermitted,
    TcpOptionElement::Timestamp(7, 0),
    TcpOptionElement::Noop,
    TcpOptionElement::WindowScale(7),
];

/// Client SYN → the director's SYN-ACK; returns the cookie.
fn handshake_with_director(fwd: &mut Forwarder, cport: u16) -> u32 {
    let syn = Seg {
        seq: CLIENT_ISN,
        syn: true,
        win: 64_240,
        opts: &LINUX_SYN,
        ..Default::default()
    };
    let (v, f) = send(fwd, 0, &from_client(cport, syn));
    assert_eq!(v, Verdict::Forward { port: 0 }, "answered on the port it came in");
    let o = out(&f);
    assert!(o.syn && o.ackf && !o.rst);
    assert_eq!((o.src, o.sport, o.dst, o.dport), (VIP, 80, CIP, cport));
    assert_eq!(o.dst_mac, CLIENT_MAC);
    assert_eq!(o.ack, CLIENT_ISN + 1);
    assert!(o.sums_ok);
    assert!(o.opts.contains(&TcpOptionElement::MaximumSegmentSize(1460)));
    assert!(o.opts.contains(&TcpOptionElement::WindowScale(7)));
    assert!(o
        .opts
        .contains(&TcpOptionElement::SelectiveAcknowledgementPermitted));
    assert!(
        !o.opts
            .iter()
            .any(|x| matches!(x, TcpOptionElement::Timestamp(..))),
        "no timestamps"
    );
    o.seq
}

#[test]
fn a_proxied_connection_end_to_end() {
    let (_dir, mut fwd) = lab(true);
    let cookie = handshake_with_director(&mut fwd, 40_000);
    assert_eq!(fwd.conns.len(), 0, "a SYN leaves no state");

    // A forged or stale ACK opens nothing.
    let forged = Seg {
        seq: CLIENT_ISN + 1,
        ack: Some(cookie.wrapping_add(2)),
        ..Default::default()
    };
    let (v, _) = send(&mut fwd, 0, &from_client(40_000, forged));
    assert_eq!(v, Verdict::Drop(DropReason::SynProxyBadCookie));
    let other_port = Seg {
        seq: CLIENT_ISN + 1,
        ack: Some(cookie.wrapping_add(1)),
        ..Default::default()
    };
    let (v, _) = send(&mut fwd, 0, &from_client(40_001, other_port));
    assert_eq!(
        v,
        Verdict::Drop(DropReason::SynProxyBadCookie),
        "the cookie names its tuple"
    );
    assert_eq!(fwd.conns.len(), 0);

    // The client's ACK becomes the SYN to the real server.
    let ack = Seg {
        seq: CLIENT_ISN + 1,
        ack: Some(cookie.wrapping_add(1)),
        win: 502,
        ..Default::default()
    };
    let (v, f) = send(&mut fwd, 0, &from_client(40_000, ack));
    assert_eq!(v, Verdict::Forward { port: 1 });
    let o = out(&f);
    assert!(o.syn && !o.ackf);
    assert_eq!((o.src, o.sport, o.dst, o.dport), (CIP, 40_000, RIP, 8080));
    assert_eq!(o.dst_mac, RS_MAC);
    assert_eq!(o.seq, CLIENT_ISN, "the client's ISN");
    assert_eq!(o.win, 64_256, "502 << 7: a SYN's window is unscaled");
    assert!(o.sums_ok);
    assert!(o.opts.contains(&TcpOptionElement::MaximumSegmentSize(1460)));
    assert!(o.opts.contains(&TcpOptionElement::WindowScale(7)));
    assert!(o
        .opts
        .contains(&TcpOptionElement::SelectiveAcknowledgementPermitted));
    assert_eq!(fwd.conns.len(), 1);

    // Data before the real server answered: handed back to be held.
    let early = Seg {
        seq: CLIENT_ISN + 1,
        ack: Some(cookie.wrapping_add(1)),
        payload: b"GET / HTTP/1.0\r\n\r\n",
        ..Default::default()
    };
    let early_frame = from_client(40_000, early);
    let (v, held) = send(&mut fwd, 0, &early_frame);
    let Verdict::Hold { conn } = v else {
        panic!("{v:?}")
    };
    assert_eq!(held, early_frame, "a held frame is untouched");
    assert!(fwd.synproxy_released.is_empty());

    // The real server's SYN-ACK is answered by the director, for the client.
    let rs_opts = [
        TcpOptionElement::MaximumSegmentSize(1400),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(9),
    ];
    let sa = Seg {
        seq: RS_ISN,
        ack: Some(CLIENT_ISN + 1),
        syn: true,
        win: 65_535,
        opts: &rs_opts,
        ..Default::default()
    };
    let (v, f) = send(&mut fwd, 1, &from_rs(40_000, sa));
    assert_eq!(v, Verdict::Forward { port: 1 }, "back to the real server");
    let o = out(&f);
    assert!(o.ackf && !o.syn && !o.rst);
    assert_eq!((o.src, o.sport, o.dst, o.dport), (CIP, 40_000, RIP, 8080));
    assert_eq!(o.dst_mac, RS_MAC);
    assert_eq!((o.seq, o.ack), (CLIENT_ISN + 1, RS_ISN + 1));
    assert_eq!(o.win, 502, "the client's window, in the scale both use");
    assert!(o.sums_ok);

    // The held request goes now, translated, counted once.
    assert_eq!(fwd.synproxy_released, vec![conn]);
    fwd.synproxy_released.clear();
    let rx_before = fwd.counters.rx_pkts;
    let mut b = VecBuf::new(&held);
    assert_eq!(fwd.process_held(0, &mut b), Verdict::Forward { port: 1 });
    let o = out(b.data());
    assert_eq!(
        (o.dst, o.dport, o.seq, o.ack),
        (RIP, 8080, CLIENT_ISN + 1, RS_ISN + 1)
    );
    assert_eq!(o.payload, b"GET / HTTP/1.0\r\n\r\n");
    assert!(o.sums_ok);
    assert_eq!(fwd.counters.rx_pkts, rx_before, "not received twice");

    // From now on, translated both ways, with the fast path on.
    let get = Seg {
        seq: CLIENT_ISN + 1,
        ack: Some(cookie.wrapping_add(1)),
        win: 500,
        payload: b"GET / HTTP/1.0\r\n\r\n",
        ..Default::default()
    };
    let (v, f) = send(&mut fwd, 0, &from_client(40_000, get));
    assert_eq!(v, Verdict::Forward { port: 1 });
    let o = out(&f);
    assert_eq!(
        (o.dst, o.dport, o.seq, o.ack, o.win),
        (RIP, 8080, CLIENT_ISN + 1, RS_ISN + 1, 500)
    );
    assert_eq!(o.payload, b"GET / HTTP/1.0\r\n\r\n");
    assert!(o.sums_ok);

    let reply = Seg {
        seq: RS_ISN + 1,
        ack: Some(CLIENT_ISN + 19),
        win: 100,
        payload: b"HTTP/1.0 200 OK\r\n\r\ns1",
        ..Default::default()
    };
    let (v, f) = send(&mut fwd, 1, &from_rs(40_000, reply));
    assert_eq!(v, Verdict::Forward { port: 0 });
    let o = out(&f);
    assert_eq!((o.src, o.sport, o.dst, o.dport), (VIP, 80, CIP, 40_000));
    assert_eq!((o.seq, o.ack), (cookie.wrapping_add(1), CLIENT_ISN + 19));
    assert_eq!(o.win, 400, "100 at the RS's shift 9 is 400 at the announced 7");
    assert_eq!(o.payload, b"HTTP/1.0 200 OK\r\n\r\ns1");
    assert!(o.sums_ok);

    let c = &fwd.counters;
    assert_eq!(
        (c.synproxy_syn_acks, c.synproxy_accepted, c.synproxy_established),
        (1, 1, 1)
    );
    assert_eq!(fwd.drops.get(DropReason::SynProxyBadCookie), 2);
    assert_eq!(fwd.counters.synproxy_held, 1);
    assert_eq!(fwd.drops.get(DropReason::SynProxyWaiting), 0);
}

#[test]
fn a_refusing_real_server_resets_the_client_in_its_numbering() {
    let (_dir, mut fwd) = lab(true);
    let cookie = handshake_with_director(&mut fwd, 40_002);
    let ack = Seg {
        seq: CLIENT_ISN + 1,
        ack: Some(cookie.wrapping_add(1)),
        ..Default::default()
    };
    assert_eq!(
        send(&mut fwd, 0, &from_client(40_002, ack)).0,
        Verdict::Forward { port: 1 }
    );
    let rst = Seg {
        seq: 0,
        ack: Some(CLIENT_ISN + 1),
        rst: true,
        win: 0,
        ..Default::default()
    };
    let (v, f) = send(&mut fwd, 1, &from_rs(40_002, rst));
    assert_eq!(v, Verdict::Forward { port: 0 });
    let o = out(&f);
    assert!(o.rst);
    assert_eq!((o.src, o.dst, o.dport), (VIP, CIP, 40_002));
    assert_eq!(o.seq, cookie.wrapping_add(1), "in the window the client expects");
    assert!(o.sums_ok);
}

#[test]
fn without_the_proxy_a_syn_goes_to_the_real_server() {
    let (_dir, mut fwd) = lab(false);
    let syn = Seg {
        seq: CLIENT_ISN,
        syn: true,
        opts: &LINUX_SYN,
        ..Default::default()
    };
    let (v, f) = send(&mut fwd, 0, &from_client(40_000, syn));
    assert_eq!(v, Verdict::Forward { port: 1 });
    assert_eq!(out(&f).dst, RIP);
    let c = &fwd.counters;
    assert_eq!(c.synproxy_syn_acks, 0);
    // And an ACK without a connection is the ordinary drop, not a cookie check.
    let ack = Seg {
        seq: 5,
        ack: Some(6),
        ..Default::default()
    };
    let (v, _) = send(&mut fwd, 0, &from_client(40_009, ack));
    assert_eq!(v, Verdict::Drop(DropReason::NoConnNotSyn));
}

#[test]
fn a_syn_flood_leaves_the_table_empty() {
    let (_dir, mut fwd) = lab(true);
    for i in 0..5000u32 {
        let src = Ipv4Addr::from(0x0a09_0000 + i);
        let syn = Seg {
            seq: i,
            syn: true,
            ..Default::default()
        };
        let f = frame(
            (src, 1024 + (i % 60000) as u16),
            (VIP, 80),
            (CLIENT_MAC, P0_MAC.0),
            syn,
        );
        assert_eq!(send(&mut fwd, 0, &f).0, Verdict::Forward { port: 0 });
    }
    assert_eq!(fwd.conns.len(), 0);
    assert_eq!(fwd.counters.synproxy_syn_acks, 5000);
    // A real client still gets through.
    let cookie = handshake_with_director(&mut fwd, 41_000);
    let ack = Seg {
        seq: CLIENT_ISN + 1,
        ack: Some(cookie.wrapping_add(1)),
        ..Default::default()
    };
    assert_eq!(
        send(&mut fwd, 0, &from_client(41_000, ack)).0,
        Verdict::Forward { port: 1 }
    );
}

// ---------------------------------------------------------------------------------
// Connection sync of proxied connections: the sequence offset (and the window
// shifts) go with the entry, so a backup translates each packet as the master did.

/// A proxied connection through both handshakes (no early data); returns the
/// cookie. The real server scales by 9, the client by 7.
fn proxied_connection(fwd: &mut Forwarder, cport: u16) -> u32 {
    let cookie = handshake_with_director(fwd, cport);
    let ack = Seg {
        seq: CLIENT_ISN + 1,
        ack: Some(cookie.wrapping_add(1)),
        ..Default::default()
    };
    assert_eq!(
        send(fwd, 0, &from_client(cport, ack)).0,
        Verdict::Forward { port: 1 }
    );
    let rs_opts = [
        TcpOptionElement::MaximumSegmentSize(1400),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(9),
    ];
    let sa = Seg {
        seq: RS_ISN,
        ack: Some(CLIENT_ISN + 1),
        syn: true,
        win: 65_535,
        opts: &rs_opts,
        ..Default::default()
    };
    assert_eq!(send(fwd, 1, &from_rs(cport, sa)).0, Verdict::Forward { port: 1 });
    fwd.synproxy_released.clear();
    cookie
}

/// Frames of the connection after the handshakes, both ways: data with a SACK
/// block from the client, the real server's reply, a pure ACK, a FIN.
fn later_frames(cport: u16, cookie: u32) -> Vec<(u16, Vec<u8>)> {
    let sack = [
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::SelectiveAcknowledgement(
            (cookie.wrapping_add(100), cookie.wrapping_add(200)),
            [None; 3],
        ),
    ];
    vec![
        (
            0,
            from_client(
                cport,
                Seg {
                    seq: CLIENT_ISN + 19,
                    ack: Some(cookie.wrapping_add(1)),
                    win: 300,
                    opts: &sack,
                    payload: b"more",
                    ..Default::default()
                },
            ),
        ),
        (
            1,
            from_rs(
                cport,
                Seg {
                    seq: RS_ISN + 1,
                    ack: Some(CLIENT_ISN + 23),
                    win: 100,
                    payload: b"HTTP/1.0 200 OK\r\n\r\n",
                    ..Default::default()
                },
            ),
        ),
        (
            0,
            from_client(
                cport,
                Seg {
                    seq: CLIENT_ISN + 23,
                    ack: Some(cookie.wrapping_add(20)),
                    win: 501,
                    ..Default::default()
                },
            ),
        ),
    ]
}

/// The master: a proxied connection, its client's request (its third packet
/// toward the VIP, so due for sync), and the event its tap sent.
fn synced_master(cport: u16) -> (LabDirector, Forwarder, u32, SyncEvent) {
    let (m, mut fwd) = lab(true);
    m.shared.sync.set_master(true, SyncParams::default());
    worker_tick(&mut fwd);
    let cookie = proxied_connection(&mut fwd, cport);
    let get = Seg {
        seq: CLIENT_ISN + 1,
        ack: Some(cookie.wrapping_add(1)),
        win: 500,
        payload: b"GET / HTTP/1.0\r\n\r\n",
        ..Default::default()
    };
    assert_eq!(
        send(&mut fwd, 0, &from_client(cport, get)).0,
        Verdict::Forward { port: 1 }
    );
    let mut ev = Vec::new();
    while let Some(e) = m.shared.sync.out[0].pop() {
        ev.push(e);
    }
    assert_eq!(ev.len(), 1, "{ev:?}");
    (m, fwd, cookie, ev[0])
}

/// Every later frame translated identically by the master and the backup.
fn same_on_both(mfwd: &mut Forwarder, bfwd: &mut Forwarder, frames: &[(u16, Vec<u8>)]) {
    for (port, f) in frames {
        let (mv, mo) = send(mfwd, *port, f);
        let (bv, bo) = send(bfwd, *port, f);
        assert!(matches!(mv, Verdict::Forward { .. }), "{mv:?}");
        assert_eq!(bv, mv);
        assert_eq!(bo, mo, "frame from port {port} translated alike");
        assert!(out(&bo).sums_ok);
    }
}

#[test]
fn a_proxied_connection_goes_on_through_a_synced_backup() {
    let (_m, mut mfwd, cookie, ev) = synced_master(40_100);
    let shift = ev.proxy.expect("the proxied connection's shift goes with it");
    assert_eq!(shift.delta, RS_ISN.wrapping_sub(cookie));
    assert_eq!((shift.rs_win, shift.client_win), ((9, 7), (7, 7)));

    // On the wire: IPVS's sequence option, in the kernel's meaning (OUT_SEQ:
    // RS → client sequence numbers move by out_seq.delta, client → RS
    // acknowledgments by minus it, whatever init_seq), and rvs's window shifts.
    let mut msgs = Vec::new();
    SyncEncoder::new(1, 1472)
        .encode_all(&[ev.to_sync()], |m| msgs.push(m.to_vec()))
        .unwrap();
    let mut dec = SyncDecoder::new(1);
    let conns: Vec<_> = dec.decode(&msgs[0]).unwrap().map(|c| c.unwrap()).collect();
    let seq = conns[0].seq.expect("the sequence option");
    assert!(seq.adjust_out && !seq.adjust_in);
    assert_eq!(seq.out_seq.delta, cookie.wrapping_sub(RS_ISN));
    assert_eq!(seq.out_seq.previous_delta, seq.out_seq.delta);
    assert_eq!(seq.windows, Some([9, 7, 7, 7]));
    let got = SyncEvent::from_sync(&conns[0]);
    assert_eq!(got, ev);

    // The backup (a cookie key of its own) installs it and translates alike.
    let (_b, mut bfwd) = lab(true);
    assert_eq!(install(&mut bfwd, &got), Ok(Installed::New));
    let frames = later_frames(40_100, cookie);
    same_on_both(&mut mfwd, &mut bfwd, &frames);
    let (_, f) = send(&mut bfwd, 1, &frames[1].1);
    let o = out(&f);
    assert_eq!(
        o.seq,
        cookie.wrapping_add(1),
        "the RS's numbers in the client's space"
    );
    assert_eq!(o.win, 400, "100 at the RS's shift 9 is 400 at the announced 7");

    // Without the shift (before sync carried it), the backup would hand the
    // client the RS's own numbers: the connection breaks.
    let (_c, mut plain) = lab(true);
    let bare = SyncEvent { proxy: None, ..got };
    assert_eq!(install(&mut plain, &bare), Ok(Installed::New));
    let (_, f) = send(&mut plain, 1, &frames[1].1);
    assert_eq!(out(&f).seq, RS_ISN + 1);
}

#[test]
fn a_proxied_connection_goes_on_after_a_full_resync() {
    let (m, mut mfwd, cookie, _) = synced_master(40_200);
    // The master's listing (`SyncDump`), as its worker answers it.
    m.shared.sync.dump.request.fetch_add(1, Ordering::AcqRel);
    worker_tick(&mut mfwd);
    let events = std::mem::take(&mut *m.shared.sync.dump.slots[0].1.lock().unwrap());
    assert_eq!(events.len(), 1);
    assert!(events[0].proxy.is_some());
    let (n, page) = encode_page(&events, 1 << 20);
    assert_eq!(n, 1);
    let (b, mut bfwd) = lab(true);
    let req = BulkRequest::Install {
        count: n,
        entries: &page,
    }
    .to_bytes();
    let reply = Bulk::default().serve(&b.shared, BulkRequest::parse(&req).unwrap());
    assert_eq!(reply, serde_json::to_vec(&Reply::Ok).unwrap());
    worker_tick(&mut bfwd);
    assert_eq!(bfwd.conns.len(), 1);
    same_on_both(&mut mfwd, &mut bfwd, &later_frames(40_200, cookie));
}
