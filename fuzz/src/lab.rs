//! A director to fuzz: two workers, two ports, NAT, DR and TUN services (one
//! with persistence, port-0 services, one with no usable real server),
//! FULLNAT services (PROXY v2, TOA, UDP) over a small local port range so
//! that "laddr exhausted" is reached, small connection tables so that
//! "table full" is reached, and both options that add paths
//! (expire_nodest_conn, tcp_rst_no_dest).
//!
//! Input format: a sequence of records `[ctl, len_hi, len_lo, frame...]`; a
//! record whose length runs past the end takes what is left. `ctl` bits:
//!
//! - 0: receiving port (0 or 1); 1: receiving worker (0 or 1);
//! - 2-3: advance the clock by 0, 1, 10 or 400 seconds first;
//! - 4: run both workers' housekeeping first;
//! - 5: publish the other service table (real server 3 removed from, or
//!   restored to, the NAT service), as the control plane would;
//! - 6: give the frame only 8 bytes of headroom and none at the back, so
//!   encapsulation and in-place replies hit "no room";
//! - 7: deliver the frame twice (a retransmission).
//!
//! Besides "never panics", every verdict is checked for what the callers rely
//! on: ports and workers in range, a redirected frame never redirected again,
//! a forwarded frame no shorter than an Ethernet header.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use etherparse::PacketBuilder;
use rvs_dp::conn::ConnId;
use rvs_dp::core::{CoreOptions, Forwarder, Shared, Verdict};
use rvs_dp::packet::{PacketBuf, VecBuf};
use rvs_dp::service::{ForwardMethod, Proto, RealServer, ServiceTable};
use rvs_dp::synproxy::cookie::{self, CookieKey, CookieOptions, Handshake};
use rvs_dp::wire::ethernet::MacAddr;
use rvs_proto::command::{ClientAddr, Command, LaddrSpec};

#[path = "../../dp/tests/common/lab.rs"]
mod common_lab;
use common_lab::{dest, port, service, LabDirector};

pub const WORKERS: u16 = 2;
/// Per worker: small, so a few dozen SYNs fill it.
pub const CONN_CAPACITY: u32 = 48;

pub const P0_MAC: [u8; 6] = [2, 0, 0, 0, 0xd0, 0];
pub const P1_MAC: [u8; 6] = [2, 0, 0, 0, 0xd0, 1];
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0c];
pub const DIP0: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub const DIP1: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
pub const CLIENT_GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 254);
/// On-link client.
pub const CIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
/// Client behind the router.
pub const CIP_FAR: Ipv4Addr = Ipv4Addr::new(172, 16, 5, 5);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 100);
pub const VIP2: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 101);

pub fn rs_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 2, 0, 10 + i)
}
pub fn rs_mac(i: u8) -> [u8; 6] {
    [2, 0, 0, 0, 2, i]
}
/// The SYN proxy's key in the fuzz lab: fixed, so seeds can carry valid
/// cookies (`synproxy_ack`) and the fuzzer mutates real proxied exchanges.
pub fn fuzz_cookie_key() -> CookieKey {
    CookieKey::from_bytes([0x5a; 16])
}

/// The proxied service (`-j enable`, NAT) and its real server port.
pub const PROXIED_PORT: u16 = 84;
pub const PROXIED_RS_PORT: u16 = 8084;

/// FULLNAT services: VIP:85 with PROXY v2, VIP:86 with TOA (TCP), VIP:54
/// (UDP), each with its own local address on port 1.
pub const FNAT_PROXY_PORT: u16 = 85;
pub const FNAT_TOA_PORT: u16 = 86;
pub const FNAT_UDP_PORT: u16 = 54;
/// And VIP:87, FULLNAT TCP with no client hint (the fast path's).
pub const FNAT_PLAIN_PORT: u16 = 87;
pub const LIP_PLAIN: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 203);
pub const FNAT_RS_PORT: u16 = 8085;
pub const LIP_PROXY: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 200);
pub const LIP_TOA: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 201);
pub const LIP_UDP: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 202);
/// Local ports 1024..=1151: 64 per worker and LIP.
pub const LPORT_FIRST: u16 = 1024;
pub const LPORT_LAST: u16 = 1151;

/// The first local port a new FULLNAT connection of client `cip` gets
/// (its owner's first port; the lab's owner mask is /24).
pub fn first_lport(cip: Ipv4Addr) -> u16 {
    let owner = rvs_dp::core::owner_of(cip, Ipv4Addr::new(255, 255, 255, 0), WORKERS);
    (LPORT_FIRST..=LPORT_LAST)
        .find(|&p| rvs_dp::fnat::laddr::owner_of_port(p, WORKERS) == owner)
        .unwrap_or(LPORT_FIRST)
}

/// A real server whose MAC nobody has told us: its packets wait for ARP.
pub const RS_UNRESOLVED: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 99);

/// How many frames ended in each kind of verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub forwarded: u64,
    pub resolve: u64,
    pub redirected: u64,
    pub consumed: u64,
    pub dropped: u64,
    /// SYN proxy: frames held until their real server answered.
    pub held: u64,
}

/// A delivered frame's final verdict and bytes, and the next hops its
/// worker found stale (to be ARPed again) so far in this record.
pub type Delivery = (Verdict, Vec<u8>, Vec<(u16, Ipv4Addr)>);

pub struct FuzzLab {
    pub shared: Arc<Shared>,
    pub workers: Vec<Forwarder>,
    tables: [Arc<ServiceTable>; 2],
    /// The removed real server of table 1 (its `removed` flag is toggled).
    rs3: RealServer,
    current: usize,
    now: u32,
    pub tally: Tally,
    /// When set, what became of every delivered frame.
    pub log: Option<Vec<Delivery>>,
    /// What the "NIC" says of every frame's IPv4 header and TCP/UDP
    /// checksums (`PacketBuf::rx_ip_csum`, `rx_l4_csum`); None, software
    /// checks, by default.
    pub rx_ip_csum: Option<bool>,
    pub rx_l4_csum: Option<bool>,
    /// Frames held for proxied connections: (worker, connection, port, frame).
    held: Vec<(usize, ConnId, u16, VecBuf)>,
}

impl Default for FuzzLab {
    fn default() -> Self {
        Self::new()
    }
}

impl FuzzLab {
    pub fn new() -> FuzzLab {
        Self::with_options(CoreOptions {
            expire_nodest_conn: true,
            tcp_rst_no_dest: true,
            ..CoreOptions::default()
        })
    }

    pub fn with_options(opts: CoreOptions) -> FuzzLab {
        let mut neighbours = vec![
            (CLIENT_GW, MacAddr([2, 0, 0, 0, 0x99, 0x99])),
            (CIP, MacAddr(CLIENT_MAC)),
        ];
        neighbours.extend((1..=3).map(|i| (rs_ip(i), MacAddr(rs_mac(i)))));
        let mut dir = LabDirector::new_with(
            vec![
                port(MacAddr(P0_MAC), DIP0, 1500),
                // A smaller MTU toward the real servers: TUN's "fragmentation
                // needed" is reached by frames the fuzzer can afford.
                port(MacAddr(P1_MAC), DIP1, 600),
            ],
            &[(Ipv4Addr::new(172, 16, 0, 0), 12, CLIENT_GW)],
            &neighbours,
            WORKERS,
            opts,
            |s| {
                s.with_cookie_key(fuzz_cookie_key())
                    .with_laddr_config(rvs_dp::fnat::laddr::LaddrConfig {
                        ports: LPORT_FIRST..=LPORT_LAST,
                        hold: 10,
                    })
            },
        );
        use ForwardMethod::{Dr, FullNat, Nat, Tun};
        // One `-R` batch: a table build per command would rebuild mh's
        // 65537-entry table each time, and every fuzz run builds two labs.
        let mut cmds = Vec::new();
        let mut svc =
            |proto, vip, port, sched: &str, persistence, dests: &[(Ipv4Addr, u16, u32, ForwardMethod)]| {
                let spec = service(proto, vip, port, sched, persistence);
                let key = spec.key();
                cmds.push(Command::AddService(spec));
                for &(rip, rport, weight, method) in dests {
                    cmds.push(Command::AddDest(key, dest(rip, rport, weight, method)));
                }
                key
            };
        let nat80 = svc(
            Proto::Tcp,
            VIP,
            80,
            "rr",
            None,
            &[
                (rs_ip(1), 8080, 1, Nat),
                (rs_ip(2), 8080, 1, Nat),
                (rs_ip(3), 8080, 1, Nat),
            ],
        );
        svc(
            Proto::Udp,
            VIP,
            53,
            "wlc",
            None,
            &[(rs_ip(1), 5353, 1, Nat), (rs_ip(2), 5353, 2, Nat)],
        );
        svc(
            Proto::Tcp,
            VIP,
            81,
            "wrr",
            None,
            &[(rs_ip(1), 81, 3, Dr), (rs_ip(2), 81, 1, Dr)],
        );
        svc(
            Proto::Tcp,
            VIP,
            82,
            "sh",
            Some((300, Ipv4Addr::new(255, 255, 255, 0))),
            &[
                (rs_ip(1), 82, 1, Tun),
                (rs_ip(2), 82, 1, Tun),
                (rs_ip(3), 82, 1, Tun),
            ],
        );
        svc(
            Proto::Udp,
            VIP2,
            0,
            "mh",
            Some((30, Ipv4Addr::BROADCAST)),
            &[(rs_ip(1), 0, 1, Tun), (rs_ip(2), 0, 1, Tun)],
        );
        // Port 0 (every port) needs persistence, as in IPVS.
        svc(
            Proto::Tcp,
            VIP2,
            0,
            "rr",
            Some((30, Ipv4Addr::BROADCAST)),
            &[(rs_ip(3), 0, 1, Nat), (RS_UNRESOLVED, 0, 1, Nat)],
        );
        // Every real server quiesced: SYNs get a RST.
        svc(Proto::Tcp, VIP2, 443, "wlc", None, &[(rs_ip(1), 443, 0, Dr)]);
        // The SYN proxy.
        let mut sp = service(Proto::Tcp, VIP, PROXIED_PORT, "rr", None);
        sp.syn_proxy = true;
        let spk = sp.key();
        cmds.push(Command::AddService(sp));
        for i in 1..=2 {
            cmds.push(Command::AddDest(spk, dest(rs_ip(i), PROXIED_RS_PORT, 1, Nat)));
        }
        // FULLNAT.
        for (proto, vport, client_addr, lip, rs) in [
            (Proto::Tcp, FNAT_PROXY_PORT, ClientAddr::ProxyV2, LIP_PROXY, 2),
            (Proto::Tcp, FNAT_TOA_PORT, ClientAddr::Toa, LIP_TOA, 1),
            (Proto::Udp, FNAT_UDP_PORT, ClientAddr::None, LIP_UDP, 2),
            (Proto::Tcp, FNAT_PLAIN_PORT, ClientAddr::None, LIP_PLAIN, 1),
        ] {
            let mut spec = service(proto, VIP, vport, "rr", None);
            spec.client_addr = client_addr;
            let key = spec.key();
            cmds.push(Command::AddService(spec));
            for i in 1..=rs {
                cmds.push(Command::AddDest(key, dest(rs_ip(i), FNAT_RS_PORT, 1, FullNat)));
            }
            cmds.push(Command::AddLaddr(
                key,
                LaddrSpec {
                    addr: lip,
                    port_name: "port1".into(),
                },
            ));
        }
        dir.apply(Command::Restore(cmds));
        // The second table is the first without real server 3 of VIP:80, as
        // `-d` leaves it; the fuzzer swaps between the two snapshots.
        let full = dir.shared.services.load_full();
        let rs3 = full.get(0).expect("VIP:80").dests[2].clone();
        dir.apply(Command::DelDest(nat80, rs_ip(3), 8080));
        let reduced = dir.shared.services.load_full();
        rs3.stats.removed.store(false, Ordering::Relaxed);
        dir.shared.services.store(full.clone());
        let workers = (0..WORKERS)
            .map(|w| dir.forwarder(w, CONN_CAPACITY, 100))
            .collect();
        FuzzLab {
            shared: dir.shared.clone(),
            workers,
            tables: [full, reduced],
            rs3,
            current: 0,
            now: 100,
            tally: Tally::default(),
            log: None,
            rx_ip_csum: None,
            rx_l4_csum: None,
            held: Vec::new(),
        }
    }

    /// Every service's and real server's traffic counters and connection
    /// counts, in both service tables, one line each.
    pub fn traffic_report(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (t, table) in self.tables.iter().enumerate() {
            for s in table.services() {
                out.push(format!("table {t} {:?}: {:?}", s.key, s.stats.total()));
                for d in &s.dests {
                    out.push(format!(
                        "table {t} {:?} {}:{}: {:?} active {} inactive {} persistent {}",
                        s.key,
                        d.rip,
                        d.port,
                        d.stats.traffic.total(),
                        d.stats.active.load(Ordering::Relaxed),
                        d.stats.inactive.load(Ordering::Relaxed),
                        d.stats.persistent.load(Ordering::Relaxed)
                    ));
                }
            }
        }
        out
    }

    /// Feeds one fuzz input (see the module docs for its format).
    pub fn run(&mut self, mut data: &[u8]) {
        while let Some((&ctl, rest)) = data.split_first() {
            let (len, rest) = match rest {
                [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
                _ => (rest.len(), &[][..]),
            };
            let (frame, rest) = rest.split_at(len.min(rest.len()));
            data = rest;
            self.record(ctl, frame);
        }
    }

    fn record(&mut self, ctl: u8, frame: &[u8]) {
        let port = u16::from(ctl & 1);
        let worker = usize::from((ctl >> 1) & 1);
        let step = [0, 1, 10, 400][usize::from((ctl >> 2) & 3)];
        if step > 0 {
            self.now = self.now.saturating_add(step);
            for w in self.workers.iter_mut() {
                w.set_now(self.now);
            }
        }
        if ctl & 0x10 != 0 {
            for w in self.workers.iter_mut() {
                w.housekeeping(8);
            }
        }
        if ctl & 0x20 != 0 {
            self.current ^= 1;
            // Table 1 lacks real server 3: it was deleted.
            self.rs3.stats.removed.store(self.current == 1, Ordering::Relaxed);
            self.shared.services.store(self.tables[self.current].clone());
        }
        for w in self.workers.iter_mut() {
            w.refresh();
            // The DPDK worker drains these after each burst.
            w.stale_hops.clear();
        }
        let times = if ctl & 0x80 != 0 { 2 } else { 1 };
        for _ in 0..times {
            let mut buf = if ctl & 0x40 != 0 {
                VecBuf::with_room(frame, 8, 0)
            } else {
                VecBuf::new(frame)
            };
            buf.set_rx_ip_csum(self.rx_ip_csum);
            buf.set_rx_l4_csum(self.rx_l4_csum);
            self.deliver(worker, port, &mut buf);
        }
    }

    fn deliver(&mut self, worker: usize, port: u16, buf: &mut VecBuf) {
        let mut v = self.workers[worker].process(port, buf, false);
        let mut last = worker;
        if let Verdict::Redirect { worker: to } = v {
            last = usize::from(to);
            assert!(
                usize::from(to) < self.workers.len() && usize::from(to) != worker,
                "{v:?}"
            );
            self.tally.redirected += 1;
            v = self.workers[usize::from(to)].process(port, buf, true);
            assert!(!matches!(v, Verdict::Redirect { .. }), "redirected twice: {v:?}");
        }
        self.account(v, buf, last, port);
        self.release(last);
    }

    /// As the DPDK worker does with `Verdict::Hold`: frames held for a
    /// proxied connection are processed again once the forwarder released it.
    fn release(&mut self, worker: usize) {
        let released = std::mem::take(&mut self.workers[worker].synproxy_released);
        for conn in released {
            let mut i = 0;
            while i < self.held.len() {
                if self.held[i].0 != worker || self.held[i].1 != conn {
                    i += 1;
                    continue;
                }
                let (_, _, port, mut buf) = self.held.remove(i);
                let v = self.workers[worker].process_held(port, &mut buf);
                assert!(
                    !matches!(v, Verdict::Hold { .. } | Verdict::Redirect { .. }),
                    "{v:?}"
                );
                self.account(v, &mut buf, worker, port);
            }
        }
    }

    fn account(&mut self, v: Verdict, buf: &mut VecBuf, last: usize, in_port: u16) {
        if let Some(log) = self.log.as_mut() {
            log.push((v, buf.data().to_vec(), self.workers[last].stale_hops.clone()));
        }
        match v {
            Verdict::Hold { conn } => {
                self.tally.held += 1;
                if self.held.len() < 64 {
                    self.held.push((last, conn, in_port, buf.clone()));
                }
            }
            Verdict::Forward { port } => {
                assert!(port < 2, "{v:?}");
                assert!(buf.len() >= 14, "forwarded a {}-byte frame", buf.len());
                self.tally.forwarded += 1;
            }
            Verdict::Resolve { port, .. } => {
                assert!(port < 2, "{v:?}");
                self.tally.resolve += 1;
            }
            Verdict::Consumed { .. } => self.tally.consumed += 1,
            Verdict::Drop(_) => self.tally.dropped += 1,
            // The fuzz director has no kernel interface.
            Verdict::ToKernel => unreachable!("no kernel interface: {v:?}"),
            Verdict::Redirect { .. } => unreachable!("handled above"),
        }
    }
}

/// Wraps frames as records. `ctl` per frame as in the module docs.
pub fn records(frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ctl, f) in frames {
        out.push(*ctl);
        out.extend_from_slice(&(f.len() as u16).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// A TCP frame; `flags` letters S, A, F, R, P.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(sport, dport, 1000, 64240);
    for f in flags.chars() {
        t = match f {
            'S' => t.syn(),
            'A' => t.ack(1),
            'F' => t.fin(),
            'R' => t.rst(),
            'P' => t.psh(),
            _ => t,
        };
    }
    let mut out = Vec::new();
    let _ = t.write(&mut out, payload);
    out
}

pub fn udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(sport, dport);
    let mut out = Vec::new();
    let _ = b.write(&mut out, payload);
    out
}

fn echo_request(dst_mac: [u8; 6], dst: Ipv4Addr) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, dst_mac)
        .ipv4(CIP.octets(), dst.octets(), 64)
        .icmpv4_echo_request(7, 1);
    let mut out = Vec::new();
    let _ = b.write(&mut out, b"ping");
    out
}

/// A port-unreachable from `src` to `dst` quoting the first 28 bytes of the
/// IP packet in `quoted` (an Ethernet frame).
fn port_unreachable(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    quoted: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ));
    let mut out = Vec::new();
    let q = quoted.get(14..42).unwrap_or(&[]);
    let _ = b.write(&mut out, q);
    out
}

/// An ARP frame (`op` 1 request, 2 reply).
pub fn arp(op: u16, sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr, dst_mac: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&sender_mac);
    f[12..14].copy_from_slice(&[8, 6]);
    f[14..20].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[22..28].copy_from_slice(&sender_mac);
    f[28..32].copy_from_slice(&sender.octets());
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// The two fragments of a UDP datagram from `CIP` to `VIP:53`.
fn udp_fragments() -> (Vec<u8>, Vec<u8>) {
    let whole = udp(CLIENT_MAC, P0_MAC, CIP, VIP, 7000, 53, &[0x5a; 600]);
    let payload = &whole[34..];
    let mk = |offset: usize, data: &[u8], more: bool| -> Vec<u8> {
        let Ok(mut h) = etherparse::Ipv4Header::new(
            data.len() as u16,
            64,
            etherparse::IpNumber::UDP,
            CIP.octets(),
            VIP.octets(),
        ) else {
            return Vec::new();
        };
        h.identification = 0x4242;
        h.more_fragments = more;
        h.fragment_offset = etherparse::IpFragOffset::try_new((offset / 8) as u16).unwrap_or_default();
        h.header_checksum = h.calc_header_checksum();
        let mut f = whole[..14].to_vec();
        let _ = h.write(&mut f);
        f.extend_from_slice(data);
        f
    };
    (mk(0, &payload[..400], true), mk(400, &payload[400..], false))
}

/// Valid conversations, one per path: the seed corpus of the fuzzer and the
/// starting points of the mutation tests. Control bytes pick port and worker
/// (records are redirected to the owner when they land on the wrong one).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let c = CLIENT_MAC;
    let (p0, p1) = (P0_MAC, P1_MAC);
    let nat_tcp = records(&[
        (0, tcp(c, p0, CIP, VIP, 40000, 80, "S", b"")),
        (1, tcp(rs_mac(1), p1, rs_ip(1), CIP, 8080, 40000, "SA", b"")),
        (0, tcp(c, p0, CIP, VIP, 40000, 80, "A", b"GET / HTTP/1.0\r\n\r\n")),
        (
            1,
            tcp(
                rs_mac(1),
                p1,
                rs_ip(1),
                CIP,
                8080,
                40000,
                "AP",
                b"HTTP/1.0 200 OK\r\n",
            ),
        ),
        (0, tcp(c, p0, CIP, VIP, 40000, 80, "AF", b"")),
        (1, tcp(rs_mac(1), p1, rs_ip(1), CIP, 8080, 40000, "AF", b"")),
        (4, tcp(c, p0, CIP, VIP, 40000, 80, "A", b"")),
    ]);
    let far = records(&[
        (2, tcp(c, p0, CIP_FAR, VIP, 41000, 80, "S", b"")),
        (3, tcp(rs_mac(1), p1, rs_ip(1), CIP_FAR, 8080, 41000, "SA", b"")),
        (0x80, tcp(c, p0, CIP_FAR, VIP, 41000, 80, "R", b"")),
    ]);
    let query = udp(c, p0, CIP, VIP, 7000, 53, b"query");
    let udp_nat = records(&[
        (0, query.clone()),
        (1, udp(rs_mac(1), p1, rs_ip(1), CIP, 5353, 7000, b"answer")),
        (1, udp(rs_mac(2), p1, rs_ip(2), CIP, 5353, 7000, b"answer")),
    ]);
    let dr = records(&[
        (0, tcp(c, p0, CIP, VIP, 40001, 81, "S", b"")),
        (0, tcp(c, p0, CIP, VIP, 40001, 81, "A", b"data")),
    ]);
    let tun = records(&[
        (0, tcp(c, p0, CIP, VIP, 40002, 82, "S", b"")),
        (0, tcp(c, p0, CIP, VIP, 40002, 82, "A", &[0x33; 560])),
        (0x40, tcp(c, p0, CIP, VIP, 40002, 82, "A", b"x")),
        (0, tcp(c, p0, CIP, VIP, 40003, 82, "S", b"")),
    ]);
    let port0 = records(&[
        (0, udp(c, p0, CIP, VIP2, 5000, 9999, b"any port")),
        (0, tcp(c, p0, CIP, VIP2, 5001, 8443, "S", b"")),
        (0, tcp(c, p0, CIP, VIP2, 5002, 443, "S", b"")),
        (0x20, tcp(c, p0, CIP, VIP, 40000, 80, "S", b"")),
    ]);
    let icmp_echo = records(&[
        (0, echo_request(p0, VIP)),
        (0, echo_request(p0, DIP0)),
        (1, echo_request(p1, DIP1)),
    ]);
    // The real server says port unreachable about CIP:7000 -> RIP:5353; the
    // client says the same about VIP:53 -> CIP:7000.
    let from_rs = udp(c, p1, CIP, rs_ip(1), 7000, 5353, b"q");
    let from_vip = udp(c, p0, VIP, CIP, 53, 7000, b"a");
    let icmp_err = records(&[
        (0, query),
        (1, port_unreachable(rs_mac(1), p1, rs_ip(1), CIP, &from_rs)),
        (0, port_unreachable(c, p0, CIP, VIP, &from_vip)),
    ]);
    let arp_frames = records(&[
        (0, arp(1, c, CIP, VIP, [0xff; 6])),
        (0, arp(1, c, CIP, DIP0, [0xff; 6])),
        (1, arp(2, [2, 0, 0, 0, 2, 99], RS_UNRESOLVED, DIP1, p1)),
    ]);
    let (f1, f2) = udp_fragments();
    let frags = records(&[(0, f2.clone()), (0, f1), (0, f2)]);
    let vlan = {
        let b = PacketBuilder::ethernet2(c, p0)
            .single_vlan(etherparse::VlanId::try_new(42).unwrap_or_default())
            .ipv4(CIP.octets(), VIP.octets(), 64)
            .tcp(4000, 80, 1, 1000)
            .syn();
        let mut f = Vec::new();
        let _ = b.write(&mut f, b"");
        records(&[(0, f)])
    };
    let flood = records(
        &(0..60u16)
            .map(|i| {
                let ctl = if i % 7 == 0 { 0x14 } else { 0 };
                (ctl, tcp(c, p0, CIP, VIP, 20000 + i, 80 + i % 3, "S", b""))
            })
            .collect::<Vec<_>>(),
    );
    // A proxied handshake with a valid cookie (the lab's fixed key, its time
    // 100), then data both ways.
    let cport = 40_010;
    let k = cookie::make(
        &fuzz_cookie_key(),
        &Handshake {
            cip: CIP,
            cport,
            vip: VIP,
            vport: PROXIED_PORT,
            client_isn: 1000,
        },
        &CookieOptions::from_syn(None, None, false),
        100,
    );
    let seg = |from_client: bool, seq: u32, ack: u32, syn: bool, payload: &[u8]| {
        let (smac, dmac, src, dst, sp, dp) = if from_client {
            (c, p0, CIP, VIP, cport, PROXIED_PORT)
        } else {
            (rs_mac(1), p1, rs_ip(1), CIP, PROXIED_RS_PORT, cport)
        };
        let mut t = PacketBuilder::ethernet2(smac, dmac)
            .ipv4(src.octets(), dst.octets(), 64)
            .tcp(sp, dp, seq, 502)
            .ack(ack);
        if syn {
            t = t.syn();
        }
        let mut out = Vec::new();
        let _ = t.write(&mut out, payload);
        out
    };
    let synproxy = records(&[
        (0, tcp(c, p0, CIP, VIP, cport, PROXIED_PORT, "S", b"")),
        (0, seg(true, 1001, k.wrapping_add(1), false, b"")),
        (0, seg(true, 1001, k.wrapping_add(1), false, b"early")),
        (1, seg(false, 5000, 1001, true, b"")),
        (
            0,
            seg(true, 1001, k.wrapping_add(1), false, b"GET / HTTP/1.0\r\n\r\n"),
        ),
        (1, seg(false, 5001, 1019, false, b"HTTP/1.0 200 OK\r\n\r\n")),
        (0, seg(true, 1019, k.wrapping_add(20), false, b"")),
    ]);
    // FULLNAT: a PROXY v2 conversation (the header goes in front of the
    // first data; the server's acks count it), TOA, UDP.
    let lport = first_lport(CIP);
    let fseg =
        |from_client: bool, vport: u16, lip: Ipv4Addr, seq: u32, ack: u32, flags: &str, payload: &[u8]| {
            let (smac, dmac, src, dst, sp, dp) = if from_client {
                (c, p0, CIP, VIP, 40_020, vport)
            } else {
                (rs_mac(1), p1, rs_ip(1), lip, FNAT_RS_PORT, lport)
            };
            let mut t = PacketBuilder::ethernet2(smac, dmac)
                .ipv4(src.octets(), dst.octets(), 64)
                .tcp(sp, dp, seq, 502);
            for f in flags.chars() {
                t = match f {
                    'S' => t.syn(),
                    'A' => t.ack(ack),
                    'F' => t.fin(),
                    'P' => t.psh(),
                    _ => t,
                };
            }
            let mut out = Vec::new();
            let _ = t.write(&mut out, payload);
            out
        };
    let (pp, lp) = (FNAT_PROXY_PORT, LIP_PROXY);
    let get = b"GET / HTTP/1.0\r\n\r\n";
    let fnat_proxy = records(&[
        (0, fseg(true, pp, lp, 1000, 0, "S", b"")),
        (1, fseg(false, pp, lp, 5000, 1001, "SA", b"")),
        (0, fseg(true, pp, lp, 1001, 5001, "A", b"")),
        (0, fseg(true, pp, lp, 1001, 5001, "AP", get)),
        (
            1,
            fseg(
                false,
                pp,
                lp,
                5001,
                1001 + 28 + get.len() as u32,
                "AP",
                b"HTTP/1.0 200 OK\r\n\r\n",
            ),
        ),
        (0, fseg(true, pp, lp, 1001 + get.len() as u32, 5020, "AF", b"")),
        (
            1,
            fseg(false, pp, lp, 5020, 1002 + 28 + get.len() as u32, "AF", b""),
        ),
        (0, fseg(true, pp, lp, 1002 + get.len() as u32, 5021, "A", b"")),
    ]);
    let (tp, lt) = (FNAT_TOA_PORT, LIP_TOA);
    let fnat_toa = records(&[
        (0, fseg(true, tp, lt, 1000, 0, "S", b"")),
        (1, fseg(false, tp, lt, 7000, 1001, "SA", b"")),
        (0, fseg(true, tp, lt, 1001, 7001, "A", b"")),
        (0, fseg(true, tp, lt, 1001, 7001, "AP", b"hello")),
        (1, fseg(false, tp, lt, 7001, 1006, "A", b"world")),
    ]);
    let fnat_udp = records(&[
        (0, udp(c, p0, CIP, VIP, 7100, FNAT_UDP_PORT, b"query")),
        (
            1,
            udp(rs_mac(1), p1, rs_ip(1), LIP_UDP, FNAT_RS_PORT, lport, b"answer"),
        ),
        (0, udp(c, p0, CIP, VIP, 7100, FNAT_UDP_PORT, b"again")),
    ]);
    vec![
        ("fnat_proxy", fnat_proxy),
        ("fnat_toa", fnat_toa),
        ("fnat_udp", fnat_udp),
        ("synproxy", synproxy),
        ("nat_tcp", nat_tcp),
        ("far_client", far),
        ("udp_nat", udp_nat),
        ("dr", dr),
        ("tun", tun),
        ("port0", port0),
        ("icmp_echo", icmp_echo),
        ("icmp_error", icmp_err),
        ("arp", arp_frames),
        ("fragments", frags),
        ("vlan", vlan),
        ("flood", flood),
    ]
}
