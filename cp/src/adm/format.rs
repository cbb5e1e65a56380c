//! ipvsadm's listings, column for column: `-L` in its plain, `--stats`,
//! `--rate`, `--thresholds`, `--persistent-conn` and `--tun-info` forms,
//! `-c`, `--timeout` and `-S`; and rvs's own `--latency`, `--drops` and
//! `--kernel`.
//!
//! Addresses and ports are always printed numerically: ipvsadm without `-n`
//! resolves them to host and service names, which rvsadm does not do, so
//! `-L` and `-Ln` (and `-S` and `-S -n`) print the same thing.

use std::cmp::Ordering;
use std::fmt::Write;
use std::net::Ipv4Addr;

use rvs_proto::command::{
    ClientAddr, ConnInfo, DestInfo, IpvsTimeouts, LaddrInfo, OwnedAddrs, ServiceInfo, ServiceSpec, VipOwned,
    WorkerLatency,
};
use rvs_proto::kernelblock::{KernelPortStats, KERNEL_DROP_REASONS};
use rvs_proto::types::{DropReason, ForwardMethod, Proto, ServiceKey};

use super::parse::ListOpts;

/// The IPVS version ipvsadm reports; the kernel has said 1.2.1 for two decades.
pub const IPVS_VERSION: &str = "1.2.1";

/// ipvsadm's default order: services by protocol, then VIP, then port; real
/// servers by RIP, then port. (ipvsadm compares addresses by subtracting them
/// as C ints, which misorders addresses more than 2^31 apart, e.g. 10.x after
/// 192.x; this sorts them numerically.)
pub fn sort_services(services: &mut [ServiceInfo]) {
    services.sort_by(|a, b| service_order(&a.spec, &b.spec));
    for s in services.iter_mut() {
        s.dests.sort_by_key(|d| (d.spec.rip, d.spec.port));
    }
}

fn service_order(a: &ServiceSpec, b: &ServiceSpec) -> Ordering {
    (a.proto as u8, a.vip, a.port).cmp(&(b.proto as u8, b.vip, b.port))
}

fn addr_port(a: Ipv4Addr, port: u16) -> String {
    format!("{a}:{port}")
}

/// ipvsadm's print_largenum: a 9-wide column that switches to K, M, G, T
/// (powers of 1000) past 8 digits, unless `--exact`.
pub fn largenum(i: u64, exact: bool) -> String {
    if exact {
        let len = i.to_string().len();
        let w = if len <= 8 { 9 } else { len + 1 };
        return format!("{i:>w$}");
    }
    if i < 100_000_000 {
        format!("{i:>9}")
    } else if i < 1_000_000_000 {
        format!("{:>8}K", i / 1_000)
    } else if i < 100_000_000_000 {
        format!("{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        format!("{:>8}G", i / 1_000_000_000)
    } else {
        format!("{:>8}T", i / 1_000_000_000_000)
    }
}

/// `-b` words as ipvsadm prints them: named for sh and mh, numbered otherwise.
pub fn sched_flags(spec: &ServiceSpec) -> Option<String> {
    let (fallback, port) = match spec.scheduler.as_str() {
        "sh" => ("sh-fallback", "sh-port"),
        "mh" => ("mh-fallback", "mh-port"),
        _ => ("flag-1", "flag-2"),
    };
    let mut words = Vec::new();
    if spec.flags.fallback {
        words.push(fallback);
    }
    if spec.flags.port {
        words.push(port);
    }
    (!words.is_empty()).then(|| words.join(","))
}

fn netmask_shown(spec: &ServiceSpec) -> Option<Ipv4Addr> {
    (spec.netmask != Ipv4Addr::BROADCAST).then_some(spec.netmask)
}

/// "TCP  10.0.0.1:80", cut at 33 characters as ipvsadm does.
fn service_name(spec: &ServiceSpec) -> String {
    let mut s = format!("{:<4} {}", spec.proto.as_str(), addr_port(spec.vip, spec.port));
    s.truncate(33);
    s
}

fn dest_name(d: &DestInfo) -> String {
    let mut s = addr_port(d.spec.rip, d.spec.port);
    s.truncate(28);
    s
}

/// The two title lines for the chosen format.
pub fn title(o: &ListOpts) -> String {
    let two = |a: &str, b: &str, c: &str, d: &str, e: &str| {
        format!(
            "{:<33} {a:>8} {b:>8} {c:>8} {d:>8} {e:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port"
        )
    };
    if o.stats {
        two("Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
    } else if o.rate {
        two("CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
    } else if o.thresholds {
        format!(
            "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        )
    } else if o.persistent_conn {
        format!(
            "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
        )
    } else if o.tun_info {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n".to_string()
    } else {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".to_string()
    }
}

/// One service line and its real-server lines.
pub fn service_entry(s: &ServiceInfo, o: &ListOpts) -> String {
    let mut out = String::new();
    let name = service_name(&s.spec);
    let nums = |out: &mut String, v: [u64; 5]| {
        for n in v {
            out.push_str(&largenum(n, o.exact));
        }
    };
    if o.stats {
        let t = &s.stats;
        let _ = write!(out, "{name:<33}");
        nums(&mut out, [t.conns, t.inpkts, t.outpkts, t.inbytes, t.outbytes]);
    } else if o.rate {
        let r = &s.rates;
        let _ = write!(out, "{name:<33}");
        nums(&mut out, [r.cps, r.inpps, r.outpps, r.inbps, r.outbps]);
    } else {
        let _ = write!(out, "{name} {}", s.spec.scheduler);
        if let Some(f) = sched_flags(&s.spec) {
            let _ = write!(out, " ({f})");
        }
        if let Some(t) = s.spec.persistence {
            let _ = write!(out, " persistent {t}");
            if let Some(m) = netmask_shown(&s.spec) {
                let _ = write!(out, " mask {m}");
            }
        }
        if s.spec.syn_proxy {
            // As DPVS's ipvsadm lists it.
            out.push_str(" synproxy");
        }
        match s.spec.client_addr {
            ClientAddr::None => {}
            // DPVS's ipvsadm: " ppv1", " ppv2"; TOA is rvs's word.
            ClientAddr::ProxyV1 | ClientAddr::ProxyV2 => {
                let _ = write!(out, " pp{}", s.spec.client_addr.as_str());
            }
            ClientAddr::Toa => out.push_str(" toa"),
        }
    }
    out.push('\n');

    let mut dests: Vec<&DestInfo> = s.dests.iter().collect();
    if !o.nosort {
        dests.sort_by_key(|d| (d.spec.rip, d.spec.port));
    }
    for d in dests {
        let dn = dest_name(d);
        let fwd = d.spec.method.ipvsadm_name();
        if o.stats {
            let t = &d.stats;
            let _ = write!(out, "  -> {dn:<28}");
            nums(&mut out, [t.conns, t.inpkts, t.outpkts, t.inbytes, t.outbytes]);
            out.push('\n');
        } else if o.rate {
            // ipvsadm prints the real servers' CPS and packet rates raw, only
            // the byte rates go through print_largenum.
            let r = &d.rates;
            let _ = write!(out, "  -> {dn:<28} {:>8} {:>8} {:>8}", r.cps, r.inpps, r.outpps);
            out.push_str(&largenum(r.inbps, o.exact));
            out.push_str(&largenum(r.outbps, o.exact));
            out.push('\n');
        } else if o.thresholds {
            let _ = writeln!(
                out,
                "  -> {dn:<28} {:<10} {:<10} {:<10} {:<10}",
                d.spec.u_threshold, d.spec.l_threshold, d.active, d.inactive
            );
        } else if o.persistent_conn {
            let _ = writeln!(
                out,
                "  -> {dn:<28} {:<9} {:<11} {:<10} {:<10}",
                d.spec.weight, d.persistent, d.active, d.inactive
            );
        } else if o.tun_info {
            let ti = if d.spec.method == ForwardMethod::Tun {
                "ipip"
            } else {
                "n/a"
            };
            let _ = writeln!(
                out,
                "  -> {dn:<28} {fwd:<7} {ti:<13} {:<6} {:<10} {:<10}",
                d.spec.weight, d.active, d.inactive
            );
        } else {
            let _ = writeln!(
                out,
                "  -> {dn:<28} {fwd:<7} {:<6} {:<10} {:<10}",
                d.spec.weight, d.active, d.inactive
            );
        }
    }
    out
}

/// `-L`: the version header, the title, then every service.
pub fn list_all(services: &[ServiceInfo], conn_tab_size: u32, o: &ListOpts) -> String {
    let mut out = format!("IP Virtual Server version {IPVS_VERSION} (size={conn_tab_size})\n");
    out.push_str(&title(o));
    for s in ordered(services, o.nosort) {
        out.push_str(&service_entry(s, o));
    }
    out
}

/// `-L -t VIP:port`: the title and the one service, no version header.
pub fn list_service(s: &ServiceInfo, o: &ListOpts) -> String {
    let mut out = title(o);
    out.push_str(&service_entry(s, o));
    out
}

fn ordered(services: &[ServiceInfo], nosort: bool) -> Vec<&ServiceInfo> {
    let mut v: Vec<&ServiceInfo> = services.iter().collect();
    if !nosort {
        v.sort_by(|a, b| service_order(&a.spec, &b.spec));
    }
    v
}

fn proto_switch(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "-t",
        Proto::Udp => "-u",
    }
}

fn method_switch(m: ForwardMethod) -> &'static str {
    match m {
        ForwardMethod::Nat => "-m",
        ForwardMethod::Dr => "-g",
        ForwardMethod::Tun => "-i",
        // DPVS's ipvsadm: on a real server, -b is FULLNAT.
        ForwardMethod::FullNat => "-b",
    }
}

/// `-S`: the rules that rebuild the table, one command per line, sorted as
/// ipvsadm sorts them. As ipvsadm 1.31, tunnel real servers carry
/// `--tun-type ipip`. Unlike ipvsadm, non-zero thresholds are written
/// (`-x`, `-y` at the end of the line) so that save then restore loses nothing.
/// FULLNAT as DPVS's ipvsadm takes it: `-b` on the real servers, the
/// client address option on the service (`--proxy-protocol v1|v2`, rvs's
/// `--toa`), and the local addresses as `--add-laddr` lines after the real
/// servers, in the order added (DPVS's ipvsadm saves neither of the last two).
pub fn save(services: &[ServiceInfo]) -> String {
    let mut out = String::new();
    for s in ordered(services, false) {
        let spec = &s.spec;
        let svc = format!("{} {}", proto_switch(spec.proto), addr_port(spec.vip, spec.port));
        let _ = write!(out, "-A {svc} -s {}", spec.scheduler);
        if let Some(t) = spec.persistence {
            let _ = write!(out, " -p {t}");
            if let Some(m) = netmask_shown(spec) {
                let _ = write!(out, " -M {m}");
            }
        }
        if let Some(f) = sched_flags(spec) {
            let _ = write!(out, " -b {f}");
        }
        if spec.syn_proxy {
            out.push_str(" -j enable");
        }
        match spec.client_addr {
            ClientAddr::None => {}
            ClientAddr::ProxyV1 | ClientAddr::ProxyV2 => {
                let _ = write!(out, " --proxy-protocol {}", spec.client_addr.as_str());
            }
            ClientAddr::Toa => out.push_str(" --toa"),
        }
        out.push('\n');
        let mut dests: Vec<&DestInfo> = s.dests.iter().collect();
        dests.sort_by_key(|d| (d.spec.rip, d.spec.port));
        for d in dests {
            let _ = write!(
                out,
                "-a {svc} -r {} {} -w {}",
                addr_port(d.spec.rip, d.spec.port),
                method_switch(d.spec.method),
                d.spec.weight
            );
            if d.spec.method == ForwardMethod::Tun {
                out.push_str(" --tun-type ipip");
            }
            if d.spec.u_threshold != 0 {
                let _ = write!(out, " -x {}", d.spec.u_threshold);
            }
            if d.spec.l_threshold != 0 {
                let _ = write!(out, " -y {}", d.spec.l_threshold);
            }
            out.push('\n');
        }
        for l in &s.laddrs {
            let _ = writeln!(out, "--add-laddr -z {} {svc} -F {}", l.addr, l.port_name);
        }
    }
    out
}

/// `-G` (`--get-laddr`), DPVS's ipvsadm's table: a title, then per service
/// its `VIP:VPORT` and number of local addresses, and a line per address
/// with `CONFLICTS` (rvs: new connections refused for lack of a free port
/// on it, `laddr_exhausted`) and `CONNS` (connections holding a port of it).
pub fn laddrs(each: &[(ServiceKey, Vec<LaddrInfo>)]) -> String {
    let mut out = String::new();
    for (i, (k, laddrs)) in each.iter().enumerate() {
        if i == 0 {
            let _ = writeln!(
                out,
                "{:<20} {:<8} {:<20} {:<10} {:<10}",
                "VIP:VPORT", "TOTAL", "SNAT_IP", "CONFLICTS", "CONNS"
            );
        }
        let _ = writeln!(out, "{:<20} {:<8} ", addr_port(k.vip, k.port), laddrs.len());
        for l in laddrs {
            let _ = writeln!(
                out,
                "{:<20} {:<8} {:<20} {:<10} {:<10}",
                "", "", l.spec.addr, l.exhausted, l.conns
            );
        }
    }
    out
}

/// `-L -c`: connection entries in the order the data plane gave them.
/// rvs has no persistence engines, so `--persistent-conn` changes only the
/// title, as it does in ipvsadm for entries without engine data.
///
/// A FULLNAT entry has a fourth address, its local one (LIP:lport). When
/// the listing holds any, a `local` column comes between `virtual` and
/// `destination` (DPVS lists a FULLNAT connection as client, virtual, local,
/// real server, in that order), `-` in it for the other entries. Without
/// one the output is ipvsadm's, byte for byte.
pub fn conns(conns: &[ConnInfo], persistent_conn: bool) -> String {
    let local = conns.iter().any(|c| c.laddr.is_some());
    let mut out = String::from("IPVS connection entries\n");
    let mut head = format!("pro expire {:<11} {:<18} {:<18} ", "state", "source", "virtual");
    if local {
        let _ = write!(head, "{:<18} ", "local");
    }
    if persistent_conn {
        let _ = writeln!(out, "{head}{:<18} {:<16} pe_data", "destination", "pe name");
    } else {
        let _ = writeln!(out, "{head}destination");
    }
    for c in conns {
        let expire = format!("{:02}:{:02}", c.expires_s / 60, c.expires_s % 60);
        let _ = write!(
            out,
            "{:<3} {expire:<6} {:<11} {:<18} {:<18} ",
            c.proto.as_str(),
            c.state,
            addr_port(c.cip, c.cport),
            addr_port(c.vip, c.vport),
        );
        if local {
            let l = c.laddr.map_or("-".to_string(), |l| addr_port(*l.ip(), l.port()));
            let _ = write!(out, "{l:<18} ");
        }
        let _ = writeln!(out, "{}", addr_port(c.rip, c.rport));
    }
    out
}

/// `-L --timeout`
pub fn timeouts(t: &IpvsTimeouts) -> String {
    format!("Timeout (tcp tcpfin udp): {} {} {}\n", t.tcp, t.tcpfin, t.udp)
}

/// `--latency` (rvs only): one line per worker, nanoseconds.
pub fn latency(workers: &[WorkerLatency]) -> String {
    let mut out = format!(
        "{:<6} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "Worker", "Samples", "p50(ns)", "p90(ns)", "p99(ns)", "p99.9(ns)", "max(ns)"
    );
    for w in workers {
        let _ = writeln!(
            out,
            "{:<6} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}",
            w.worker, w.count, w.p50, w.p90, w.p99, w.p999, w.max
        );
    }
    out
}

/// `rvsadm --workers` (rvs only): one line per worker for its packets,
/// redirects and connections, then one per worker for FULLNAT: packets each
/// way, the replies it owned by the way they came (from its own queue by
/// chance, through another worker's redirect ring, or put there by a NIC
/// flow rule), TOA options inserted and skipped, PROXY headers sent.
pub fn workers(ws: &[super::WorkerCounters]) -> String {
    let mut out = format!(
        "{:<6} {:>14} {:>14} {:>12} {:>12} {:>12} {:>10}\n",
        "Worker", "RxPkts", "TxPkts", "RedirOut", "RedirIn", "ConnsNew", "ConnsNow"
    );
    for w in ws {
        let _ = writeln!(
            out,
            "{:<6} {:>14} {:>14} {:>12} {:>12} {:>12} {:>10}",
            w.worker,
            w.rx_pkts,
            w.tx_pkts,
            w.redirects_sent,
            w.redirects_received,
            w.conns_created,
            w.conn_table_used
        );
    }
    let _ = writeln!(
        out,
        "{:<6} {:>14} {:>14} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "FNAT", "In", "Out", "RepDirect", "RepRedir", "RepSteered", "ToaIns", "ToaSkip", "ProxyHdr"
    );
    for w in ws {
        let _ = writeln!(
            out,
            "{:<6} {:>14} {:>14} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10}",
            w.worker,
            w.fnat_in,
            w.fnat_out,
            w.fnat_replies_direct,
            w.fnat_replies_redirected,
            w.fnat_replies_steered,
            w.toa_inserted,
            w.toa_skipped,
            w.proxy_inserted
        );
    }
    out
}

/// `rvsadm --drops`: every reason with a non-zero count, in the data plane's
/// order, and the total.
pub fn drops(d: &[u64; DropReason::COUNT]) -> String {
    let mut out = format!("{:<20} {:>14}\n", "Drop reason", "Packets");
    for r in DropReason::ALL.iter().filter(|r| d[**r as usize] > 0) {
        let _ = writeln!(out, "{:<20} {:>14}", r.name(), d[*r as usize]);
    }
    let _ = writeln!(out, "{:<20} {:>14}", "total", d.iter().sum::<u64>());
    out
}

/// `rvsadm --kernel` (rvs only): each kernel interface's exception-path
/// counters (frames up to the kernel, down from it, dropped by reason), the
/// addresses the director owns, and each configured VIP's state.
pub fn kernel(ports: &[KernelPortStats], owned: &OwnedAddrs, vips: &[VipOwned]) -> String {
    let mut out = String::new();
    if ports.is_empty() {
        out.push_str("No kernel interface\n");
    } else {
        let _ = write!(
            out,
            "{:<16} {:>4} {:>12} {:>12} {:>12}",
            "Kernel iface", "Port", "Up", "Down", "Dropped"
        );
        for r in KERNEL_DROP_REASONS {
            let _ = write!(out, " {r:>14}");
        }
        out.push('\n');
        for p in ports {
            let c = &p.counters;
            let _ = write!(
                out,
                "{:<16} {:>4} {:>12} {:>12} {:>12}",
                p.iface(),
                p.port,
                c.up,
                c.down,
                c.dropped()
            );
            for (_, n) in c.drops() {
                let _ = write!(out, " {n:>14}");
            }
            out.push('\n');
        }
    }
    if owned.all {
        out.push_str("Owned: every VIP (no kernel interface decides)\n");
    } else if owned.addresses.is_empty() {
        out.push_str("Owned: nothing\n");
    } else {
        let list: Vec<String> = owned.addresses.iter().map(Ipv4Addr::to_string).collect();
        let _ = writeln!(out, "Owned: {}", list.join(" "));
    }
    if !vips.is_empty() {
        let _ = writeln!(out, "{:<16} Owned", "VIP");
        for v in vips {
            let _ = writeln!(out, "{:<16} {}", v.vip, if v.owned { "yes" } else { "no" });
        }
    }
    out
}

/// `rvsadm --kernel --json`: `ports` (one object per kernel interface:
/// port, iface, up, down, dropped and each drop reason), `owned` (`all`,
/// `addresses`) and `vips` (each configured VIP: true if owned).
pub fn kernel_json(ports: &[KernelPortStats], owned: &OwnedAddrs, vips: &[VipOwned]) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| {
            let c = &p.counters;
            let mut o = Map::new();
            o.insert("port".into(), p.port.into());
            o.insert("iface".into(), p.iface().into());
            o.insert("up".into(), c.up.into());
            o.insert("down".into(), c.down.into());
            o.insert("dropped".into(), c.dropped().into());
            for (r, n) in c.drops() {
                o.insert(r.into(), n.into());
            }
            Value::Object(o)
        })
        .collect();
    let vips: Map<String, Value> = vips.iter().map(|v| (v.vip.to_string(), v.owned.into())).collect();
    json!({
        "ports": ports,
        "owned": { "all": owned.all, "addresses": owned.addresses },
        "vips": vips,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largenum_switches_units_where_ipvsadm_does() {
        assert_eq!(largenum(0, false), "        0");
        assert_eq!(largenum(99_999_999, false), " 99999999");
        assert_eq!(largenum(100_000_000, false), "  100000K");
        assert_eq!(largenum(999_999_999, false), "  999999K");
        assert_eq!(largenum(1_000_000_000, false), "    1000M");
        assert_eq!(largenum(99_999_999_999, false), "   99999M");
        assert_eq!(largenum(100_000_000_000, false), "     100G");
        assert_eq!(largenum(99_999_999_999_999, false), "   99999G");
        assert_eq!(largenum(100_000_000_000_000, false), "     100T");
        assert_eq!(largenum(u64::MAX, false), "18446744T");
    }

    #[test]
    fn largenum_exact_widens_past_eight_digits() {
        assert_eq!(largenum(5, true), "        5");
        assert_eq!(largenum(12_345_678, true), " 12345678");
        assert_eq!(largenum(123_456_789, true), " 123456789");
        assert_eq!(largenum(u64::MAX, true), " 18446744073709551615");
    }

    #[test]
    fn flags_are_named_after_the_scheduler() {
        let mut s = ServiceSpec::new(Proto::Tcp, Ipv4Addr::new(10, 0, 0, 1), 80);
        assert_eq!(sched_flags(&s), None);
        s.flags.port = true;
        assert_eq!(sched_flags(&s).as_deref(), Some("flag-2"));
        s.scheduler = "mh".into();
        s.flags.fallback = true;
        assert_eq!(sched_flags(&s).as_deref(), Some("mh-fallback,mh-port"));
    }
}
