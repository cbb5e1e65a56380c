//! keepalived's LVS blocks (`virtual_server_group`, `virtual_server`,
//! `real_server` and their checkers) turned into rvs-cp's `ServiceDef`s.
//!
//! Each virtual server (each address of a group) becomes one rvs.toml-style
//! `VirtualServerConfig`, and `CpConfig::from_config` builds and checks it:
//! keepalived.conf and rvs.toml go through one validator. What keepalived
//! says differently from rvs.toml's defaults is settled here, before that
//! (see the module doc of `keepalived`). Last, every service is put through
//! `IpvsConfig`, the ipvsadm model, so that nothing ipvsadm would refuse
//! reaches rvs-dp.
//!
//! Top level: `virtual_server` and `virtual_server_group` are read;
//! keepalived's other blocks (`global_defs`, `vrrp_*`, `static_*`, ...) are
//! skipped here (`sync` reads `lvs_sync_daemon` in `global_defs`); an
//! unknown top-level keyword is an error (keepalived -t fails on it too, and
//! a typo such as `virtual_sever` would drop a whole service).
//! Inside LVS blocks an unknown keyword is a warning. Keywords that would
//! change what is forwarded or how health is judged, and that rvs cannot do,
//! are refused rather than ignored: fwmark and IPv6 services, SCTP, `ops`,
//! the checkers other than TCP_CHECK, HTTP_GET and MISC_CHECK, more than one
//! checker or url, `misc_dynamic`, `regex_no_match`.
//!
//! FULLNAT as DPVS's keepalived writes it: `lb_kind FNAT`, top-level
//! `local_address_group NAME { ADDRESS PORT-NAME ... }` (ADDRESS may be a
//! range `A.B.C.D-E`; PORT-NAME, DPVS's interface, is here an rvs-dp
//! `[[port]]` name) referenced by `laddr_group_name NAME` in a virtual
//! server, and `proxy_protocol v1|v2|disable`. As in DPVS, a FULLNAT TCP
//! service without `proxy_protocol v1|v2` carries the client address in TOA
//! (DPVS always writes it), when all its real servers are FNAT. A local
//! address belongs to one service in rvs: a group used by two services (or
//! by a `virtual_server group` of several addresses) is refused.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use rvs_dp::config::{Config, ConfigError, LaddrConfig, RealServerConfig, VirtualServerConfig};
use rvs_proto::command::{Command, MAX_TIMEOUT_S, MAX_WEIGHT};
use rvs_proto::ipvs::{IpvsConfig, SCHEDULER_NAMES};
use rvs_proto::types::{ForwardMethod, ServiceKey};

use super::diag::{KeepalivedError, Loc, Warning};
use super::parse::Stmt;
use crate::config::{CpConfig, ServiceDef, StartState};

/// keepalived's `persistence_timeout` without a value: 6 minutes.
const DEFAULT_PERSISTENCE_S: u32 = 360;
/// keepalived's delay_loop when none is given.
const DEFAULT_DELAY_LOOP_S: f64 = 60.0;
/// A group range may not stand for more addresses than this (a /16).
const MAX_RANGE: u64 = 65536;

/// keepalived's top-level blocks and keywords that are not LVS: skipped.
const NOT_LVS: &[&str] = &[
    "global_defs",
    "linkbeat_use_polling",
    "linkbeat_interfaces",
    "garp_group",
    "track_file",
    "track_process",
    "bfd_instance",
    "net_namespace",
    "net_namespace_ipvs",
    "namespace_with_ipsets",
    "use_pid_dir",
    "instance",
    "child_wait_time",
];

/// Keywords keepalived knows in LVS blocks that change nothing rvs-dp
/// forwards: read, and named in a warning, with why.
const NO_EFFECT: &[(&str, &str)] = &[
    ("quorum_up", "rvs-cp runs no notify scripts"),
    ("quorum_down", "rvs-cp runs no notify scripts"),
    ("notify_up", "rvs-cp runs no notify scripts"),
    ("notify_down", "rvs-cp runs no notify scripts"),
    ("smtp_alert", "rvs-cp sends no mail"),
    ("snmp_name", "rvs-cp has no SNMP agent"),
    ("ha_suspend", "rvs-cp checks whether or not the VIP is local"),
    ("virtualhost", "rvs-cp's HTTP_GET sends no Host header"),
    ("warmup", "rvs-cp starts every check at once"),
    ("log_all_failures", "rvs-cp logs state changes"),
    ("bindto", "rvs-cp's checks use the kernel's source address"),
    ("bind_port", "rvs-cp's checks use the kernel's source port"),
    ("bind_if", "rvs-cp's checks use the kernel's route"),
    ("fwmark", "rvs-cp marks no check packets"),
    ("http_protocol", "rvs-cp's HTTP_GET speaks HTTP/1.0"),
    ("fast_recovery", "rvs-cp checks one url"),
    ("user", "rvs-cp runs MISC_CHECK scripts as its own user"),
    (
        "sorry_server_inhibit",
        "the sorry server is only in the table while the quorum is lost",
    ),
    ("nat_mask", "keepalived ignores it too"),
    ("ip_family", "rvs serves IPv4 only"),
    ("regex_options", "rvs-cp's regex takes no options"),
    ("regex_stack", "rvs-cp's regex takes no options"),
    ("regex_min_offset", "rvs-cp matches the whole body"),
    ("regex_max_offset", "rvs-cp matches the whole body"),
];

/// Every service of the file, in file order, with where its block starts.
pub fn services(top: &[Stmt], warnings: &mut Vec<Warning>) -> Result<Vec<ServiceDef>, KeepalivedError> {
    let mut groups: BTreeMap<&str, Vec<(Ipv4Addr, u16)>> = BTreeMap::new();
    let mut laddr_groups: LaddrGroups = BTreeMap::new();
    for s in top {
        if s.name() == "virtual_server_group" {
            let name = one_arg(s)?;
            let vips = group(s)?;
            if groups.insert(name, vips).is_some() {
                return Err(err(s, format!("virtual_server_group {name} is defined twice")));
            }
        }
        if s.name() == "local_address_group" {
            let name = one_arg(s)?;
            let laddrs = laddr_group(s)?;
            if laddr_groups.insert(name, laddrs).is_some() {
                return Err(err(s, format!("local_address_group {name} is defined twice")));
            }
        }
    }
    let mut out = Vec::new();
    let mut seen: BTreeMap<ServiceKey, Loc> = BTreeMap::new();
    let mut lip_owner: BTreeMap<Ipv4Addr, (ServiceKey, Loc)> = BTreeMap::new();
    for s in top {
        match s.name() {
            "virtual_server_group" | "local_address_group" => {}
            "virtual_server" => {
                for def in virtual_server(s, &groups, &laddr_groups, warnings)? {
                    if let Some(first) = seen.insert(def.key(), s.loc().clone()) {
                        return Err(err(
                            s,
                            format!("virtual server {} is already defined at {first}", def.key()),
                        ));
                    }
                    for l in &def.laddrs {
                        if let Some((k, at)) = lip_owner.insert(l.addr, (def.key(), s.loc().clone())) {
                            return Err(err(
                                s,
                                format!(
                                    "local address {} of virtual server {} is already used by virtual server {k} \
                                     (at {at}): rvs gives a local address to one service only",
                                    l.addr,
                                    def.key()
                                ),
                            ));
                        }
                    }
                    out.push(def);
                }
            }
            n if NOT_LVS.contains(&n) || n.starts_with("vrrp_") || n.starts_with("static_") => {}
            n if n.starts_with('$') => {
                return Err(err(
                    s,
                    "keepalived's parameter definitions ($NAME=...) are not supported by rvs-cp",
                ))
            }
            n => {
                return Err(err(
                    s,
                    format!("unknown keyword '{n}' (rvs-cp reads virtual_server and virtual_server_group, and skips keepalived's other blocks)"),
                ))
            }
        }
    }
    Ok(out)
}

fn err(s: &Stmt, msg: impl Into<String>) -> KeepalivedError {
    KeepalivedError::at(s.loc(), msg)
}

fn warn(warnings: &mut Vec<Warning>, s: &Stmt, msg: String) {
    warnings.push(Warning {
        loc: s.loc().clone(),
        msg,
    });
}

fn one_arg(s: &Stmt) -> Result<&str, KeepalivedError> {
    match s.args.as_slice() {
        [a] => Ok(&a.text),
        _ => Err(err(s, format!("{} takes one value", s.name()))),
    }
}

fn block(s: &Stmt) -> Result<&[Stmt], KeepalivedError> {
    s.block
        .as_deref()
        .ok_or_else(|| err(s, format!("{} needs a {{ ... }} block", s.name())))
}

fn ipv4(s: &Stmt, text: &str) -> Result<Ipv4Addr, KeepalivedError> {
    if text.contains(':') {
        return Err(err(
            s,
            format!(
                "{}: IPv6 address {text} is not supported: rvs serves IPv4 only",
                s.name()
            ),
        ));
    }
    text.parse()
        .map_err(|_| err(s, format!("{}: '{text}' is not an IPv4 address", s.name())))
}

fn port(s: &Stmt, text: &str) -> Result<u16, KeepalivedError> {
    text.parse()
        .map_err(|_| err(s, format!("{}: '{text}' is not a port (0..65535)", s.name())))
}

fn number(s: &Stmt, max: u32) -> Result<u32, KeepalivedError> {
    let t = one_arg(s)?;
    t.parse::<u32>()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| err(s, format!("{}: '{t}' is not a whole number 0..{max}", s.name())))
}

/// keepalived's TIMER: seconds, fractions allowed, more than zero.
fn seconds(s: &Stmt) -> Result<f64, KeepalivedError> {
    let t = one_arg(s)?;
    t.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0 && *v <= 86400.0)
        .ok_or_else(|| {
            err(
                s,
                format!("{}: '{t}' is not a number of seconds in (0, 86400]", s.name()),
            )
        })
}

/// A flag with an optional keepalived BOOL (`inhibit_on_failure`, `alpha`).
fn flag(s: &Stmt) -> Result<bool, KeepalivedError> {
    match s.args.as_slice() {
        [] => Ok(true),
        [a] => match a.text.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(true),
            "false" | "off" | "no" | "0" => Ok(false),
            t => Err(err(
                s,
                format!("{}: '{t}' is not true/false, on/off or yes/no", s.name()),
            )),
        },
        _ => Err(err(s, format!("{} takes at most one value", s.name()))),
    }
}

/// `lb_kind` / `lvs_method`: NAT, DR, TUN with keepalived's `type ipip`, or
/// DPVS's FNAT.
fn method(s: &Stmt) -> Result<ForwardMethod, KeepalivedError> {
    let words: Vec<&str> = s.args.iter().map(|w| w.text.as_str()).collect();
    let m = match words.as_slice() {
        ["NAT"] => ForwardMethod::Nat,
        ["DR"] => ForwardMethod::Dr,
        ["FNAT"] => ForwardMethod::FullNat,
        ["TUN"] | ["TUN", "type", "ipip"] => ForwardMethod::Tun,
        ["TUN", "type", t, ..] => {
            return Err(err(
                s,
                format!(
                    "{}: tunnel type {t} is not supported: rvs tunnels with ipip",
                    s.name()
                ),
            ))
        }
        _ => return Err(err(s, format!("{}: expects NAT, DR, TUN or FNAT", s.name()))),
    };
    Ok(m)
}

fn method_word(m: ForwardMethod) -> &'static str {
    match m {
        ForwardMethod::Nat => "NAT",
        ForwardMethod::Dr => "DR",
        ForwardMethod::Tun => "TUN",
        ForwardMethod::FullNat => "FNAT",
    }
}

/// The addresses and ports of a `virtual_server_group`.
fn group(s: &Stmt) -> Result<Vec<(Ipv4Addr, u16)>, KeepalivedError> {
    let mut out = Vec::new();
    for e in block(s)? {
        if e.name() == "fwmark" {
            return Err(err(
                e,
                "virtual_server_group: fwmark entries are not supported: rvs has no fwmark services",
            ));
        }
        if e.block.is_some() {
            return Err(err(
                e,
                "virtual_server_group: an entry is ADDRESS [PORT], not a block",
            ));
        }
        let p = match e.args.as_slice() {
            [] => 0,
            [p] => port(e, &p.text)?,
            _ => return Err(err(e, "virtual_server_group: an entry is ADDRESS [PORT]")),
        };
        let (first, last) = range(e)?;
        for a in u32::from(first)..=u32::from(last) {
            out.push((Ipv4Addr::from(a), p));
        }
    }
    Ok(out)
}

/// The local addresses of each `local_address_group`, by name.
type LaddrGroups<'a> = BTreeMap<&'a str, Vec<LaddrConfig>>;

/// DPVS's `local_address_group NAME { ADDRESS IFNAME ... }`: ADDRESS a
/// single address or a range (as `virtual_server_group`'s), IFNAME the
/// rvs-dp port (rvs.toml's `[[port]] name`) it lives on.
fn laddr_group(s: &Stmt) -> Result<Vec<LaddrConfig>, KeepalivedError> {
    let mut out: Vec<LaddrConfig> = Vec::new();
    for e in block(s)? {
        if e.block.is_some() {
            return Err(err(
                e,
                "local_address_group: an entry is ADDRESS PORT-NAME, not a block",
            ));
        }
        let [port] = e.args.as_slice() else {
            return Err(err(
                e,
                "local_address_group: an entry is ADDRESS PORT-NAME (the rvs-dp port it lives on)",
            ));
        };
        let (first, last) = range(e)?;
        for a in u32::from(first)..=u32::from(last) {
            let address = Ipv4Addr::from(a);
            if out.iter().any(|l| l.address == address) {
                return Err(err(e, format!("local_address_group: {address} is listed twice")));
            }
            out.push(LaddrConfig {
                address,
                port: port.text.clone(),
            });
        }
    }
    Ok(out)
}

/// keepalived's address ranges: `A.B.C.D`, `A.B.C.D-E` (last byte),
/// `A.B.C.D-W.X.Y.Z` and `A.B.C.D/NN` (the whole prefix).
fn range(e: &Stmt) -> Result<(Ipv4Addr, Ipv4Addr), KeepalivedError> {
    let t = e.name();
    let (first, last) = if let Some((a, n)) = t.split_once('/') {
        let a = ipv4(e, a)?;
        let n: u32 = n
            .parse()
            .ok()
            .filter(|n| *n <= 32)
            .ok_or_else(|| err(e, format!("'{t}': '{n}' is not a prefix length")))?;
        let mask = u32::MAX.checked_shl(32 - n).unwrap_or(0);
        (
            Ipv4Addr::from(u32::from(a) & mask),
            Ipv4Addr::from(u32::from(a) | !mask),
        )
    } else if let Some((a, b)) = t.split_once('-') {
        let a = ipv4(e, a)?;
        let b = if b.contains('.') || b.contains(':') {
            ipv4(e, b)?
        } else {
            let last: u8 = b
                .parse()
                .map_err(|_| err(e, format!("'{t}': '{b}' is not a last byte 0..255")))?;
            let o = a.octets();
            Ipv4Addr::new(o[0], o[1], o[2], last)
        };
        (a, b)
    } else {
        let a = ipv4(e, t)?;
        (a, a)
    };
    if first > last {
        return Err(err(e, format!("'{t}': the range ends before it starts")));
    }
    if u64::from(u32::from(last)) - u64::from(u32::from(first)) + 1 > MAX_RANGE {
        return Err(err(e, format!("'{t}': more than {MAX_RANGE} addresses")));
    }
    Ok((first, last))
}

/// The check settings keepalived inherits virtual server -> real server ->
/// checker ("the virtual server setting is the default for real servers,
/// and the real server setting is the default for checkers").
#[derive(Clone, Copy, Debug, Default)]
struct Inherited {
    connect_timeout: Option<f64>,
    retry: Option<u32>,
    delay_before_retry: Option<f64>,
    delay_loop: Option<f64>,
    alpha: Option<bool>,
}

impl Inherited {
    /// Reads one of the inherited keywords; false if `s` is not one.
    fn read(&mut self, s: &Stmt) -> Result<bool, KeepalivedError> {
        match s.name() {
            "connect_timeout" => self.connect_timeout = Some(seconds(s)?),
            "retry" | "nb_get_retry" => self.retry = Some(number(s, 1_000_000)?),
            "delay_before_retry" => self.delay_before_retry = Some(seconds(s)?),
            "delay_loop" => self.delay_loop = Some(seconds(s)?),
            "alpha" => self.alpha = Some(flag(s)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn under(self, outer: Inherited) -> Inherited {
        Inherited {
            connect_timeout: self.connect_timeout.or(outer.connect_timeout),
            retry: self.retry.or(outer.retry),
            delay_before_retry: self.delay_before_retry.or(outer.delay_before_retry),
            delay_loop: self.delay_loop.or(outer.delay_loop),
            alpha: self.alpha.or(outer.alpha),
        }
    }
}

/// Warns about a keyword that has no effect in rvs; false if `s` is not one.
fn no_effect(s: &Stmt, warnings: &mut Vec<Warning>) -> bool {
    match NO_EFFECT.iter().find(|(k, _)| *k == s.name()) {
        Some((k, why)) => {
            warn(warnings, s, format!("{k} ignored: {why}"));
            true
        }
        None => false,
    }
}

fn unknown(s: &Stmt, within: &str, warnings: &mut Vec<Warning>) {
    warn(
        warnings,
        s,
        format!("unknown keyword '{}' in {within} ignored", s.name()),
    );
}

/// A `real_server` with what keepalived adds to the rvs.toml form.
struct Real {
    config: RealServerConfig,
    alpha: Option<bool>,
    loc: Loc,
}

fn virtual_server(
    s: &Stmt,
    groups: &BTreeMap<&str, Vec<(Ipv4Addr, u16)>>,
    laddr_groups: &LaddrGroups,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<ServiceDef>, KeepalivedError> {
    let args: Vec<&str> = s.args.iter().map(|w| w.text.as_str()).collect();
    let vips: Vec<(Ipv4Addr, u16)> = match args.as_slice() {
        ["fwmark", ..] => {
            return Err(err(
                s,
                "virtual_server fwmark is not supported: rvs has no fwmark services (use one virtual_server per address and port)",
            ))
        }
        ["group", name] => groups
            .get(name)
            .cloned()
            .ok_or_else(|| err(s, format!("virtual_server group {name}: no virtual_server_group {name}")))?,
        [ip] => vec![(ipv4(s, ip)?, 0)],
        [ip, p] => vec![(ipv4(s, ip)?, port(s, p)?)],
        _ => {
            return Err(err(
                s,
                "virtual_server expects ADDRESS [PORT], fwmark N or group NAME",
            ))
        }
    };
    let mut vs = VirtualServerConfig {
        address: Ipv4Addr::UNSPECIFIED,
        port: 0,
        protocol: "TCP".into(),
        lb_algo: rvs_proto::command::DEFAULT_SCHEDULER.into(),
        lb_kind: "NAT".into(),
        sched_flags: None,
        persistence_timeout: None,
        persistence_granularity: None,
        syn_proxy: false,
        client_addr: None,
        laddrs: Vec::new(),
        quorum: 1,
        hysteresis: 0,
        sorry_server: None,
        inhibit_on_failure: false,
        delay_loop: DEFAULT_DELAY_LOOP_S,
        real_server: Vec::new(),
    };
    let mut inherited = Inherited::default();
    let mut flags: Vec<&str> = Vec::new();
    let mut sorry_method: Option<(ForwardMethod, &Stmt)> = None;
    let mut proxy_protocol: Option<&str> = None;
    let mut real_stmts = Vec::new();
    for k in block(s)? {
        if inherited.read(k)? {
            continue;
        }
        match k.name() {
            "lb_algo" | "lvs_sched" => {
                let a = one_arg(k)?;
                if !SCHEDULER_NAMES.contains(&a) {
                    return Err(err(
                        k,
                        format!(
                            "{}: unknown scheduler '{a}' (known: {})",
                            k.name(),
                            SCHEDULER_NAMES.join(", ")
                        ),
                    ));
                }
                vs.lb_algo = a.to_string();
            }
            "lb_kind" | "lvs_method" => vs.lb_kind = method_word(method(k)?).into(),
            // DPVS's keepalived: the service's SYN proxy (ipvsadm -j enable).
            "syn_proxy" => {
                if !k.args.is_empty() {
                    return Err(err(k, "syn_proxy takes no value"));
                }
                vs.syn_proxy = true;
            }
            // DPVS's keepalived: the FULLNAT local addresses.
            "laddr_group_name" => {
                let name = one_arg(k)?;
                let Some(l) = laddr_groups.get(name) else {
                    return Err(err(
                        k,
                        format!("laddr_group_name {name}: no local_address_group {name}"),
                    ));
                };
                vs.laddrs = l.clone();
            }
            // DPVS's keepalived (proxy_protocol_type): v1, v2, disable.
            "proxy_protocol" => {
                let v = one_arg(k)?;
                proxy_protocol = Some(match v.to_ascii_lowercase().as_str() {
                    "v1" => "proxy-v1",
                    "v2" => "proxy-v2",
                    "disable" => "none",
                    "v1-insecure" | "v2-insecure" => {
                        return Err(err(
                            k,
                            format!(
                                "proxy_protocol {v} is not supported: rvs writes the header itself and passes none from clients"
                            ),
                        ))
                    }
                    _ => return Err(err(k, format!("proxy_protocol: '{v}' is not v1, v2 or disable"))),
                });
            }
            "persistence_timeout" => {
                vs.persistence_timeout = Some(match k.args.as_slice() {
                    [] => DEFAULT_PERSISTENCE_S,
                    _ => {
                        let t = number(k, MAX_TIMEOUT_S)?;
                        if t == 0 {
                            return Err(err(k, "persistence_timeout: must be 1..2678400 seconds"));
                        }
                        t
                    }
                });
            }
            "persistence_granularity" => {
                let m = one_arg(k)?;
                let mask: Ipv4Addr = m.parse().map_err(|_| {
                    err(
                        k,
                        format!("persistence_granularity: '{m}' is not an IPv4 netmask"),
                    )
                })?;
                let bits = u32::from(mask);
                if bits.leading_ones() + bits.trailing_zeros() != 32 {
                    return Err(err(k, format!("persistence_granularity: '{m}' is not a netmask")));
                }
                vs.persistence_granularity = Some(mask);
            }
            "protocol" => {
                let p = one_arg(k)?;
                match p {
                    "TCP" | "UDP" => vs.protocol = p.into(),
                    "SCTP" => return Err(err(k, "protocol SCTP is not supported: rvs forwards TCP and UDP")),
                    _ => return Err(err(k, format!("protocol: '{p}' is not TCP or UDP"))),
                }
            }
            "quorum" => vs.quorum = number(k, u32::MAX)?,
            "hysteresis" => vs.hysteresis = number(k, u32::MAX)?,
            "sorry_server" => {
                let (ip, p) = match k.args.as_slice() {
                    [ip] => (ipv4(k, &ip.text)?, None),
                    [ip, p] => (ipv4(k, &ip.text)?, Some(port(k, &p.text)?)),
                    _ => return Err(err(k, "sorry_server expects ADDRESS [PORT]")),
                };
                vs.sorry_server = Some(match p {
                    Some(p) => format!("{ip} {p}"),
                    None => ip.to_string(),
                });
            }
            "sorry_server_lvs_method" => sorry_method = Some((method(k)?, k)),
            "inhibit_on_failure" => vs.inhibit_on_failure = flag(k)?,
            // omega only decides whether notify scripts run at shutdown;
            // rvs-cp runs none, so it changes nothing.
            "omega" => {}
            f @ ("flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback" | "mh-port" | "mh-fallback") => {
                flags.push(f)
            }
            "ops" => return Err(err(k, "ops (one-packet scheduling) is not supported by rvs")),
            "persistence_engine" => return Err(err(k, "persistence_engine is not supported by rvs")),
            "real_server" => real_stmts.push(k),
            _ if no_effect(k, warnings) => {}
            _ => unknown(k, "virtual_server", warnings),
        }
    }
    if let Some((m, k)) = sorry_method {
        if method_word(m) != vs.lb_kind {
            return Err(err(
                k,
                "sorry_server_lvs_method differs from lb_kind: rvs-cp's sorry server uses the virtual server's lb_kind",
            ));
        }
    }
    if !flags.is_empty() {
        vs.sched_flags = Some(flags.join(","));
    }
    vs.delay_loop = inherited.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP_S);
    let mut reals = Vec::new();
    for r in real_stmts {
        let real = real_server(r, inherited, warnings)?;
        let dup = reals
            .iter()
            .find(|o: &&Real| o.config.address == real.config.address && o.config.port == real.config.port);
        if let Some(o) = dup {
            return Err(err(
                r,
                format!(
                    "real server {} is already listed at {}",
                    real.config.address, o.loc
                ),
            ));
        }
        reals.push(real);
    }
    vs.real_server = reals.iter().map(|r| r.config.clone()).collect();
    vs.client_addr = match proxy_protocol {
        Some("proxy-v1") | Some("proxy-v2") => proxy_protocol.map(String::from),
        // DPVS writes TOA on every FULLNAT TCP connection; rvs can when the
        // whole service is FULLNAT (the model's rule).
        _ if vs.protocol == "TCP" && all_fullnat(&vs) => Some("toa".into()),
        _ => None,
    };

    let mut out = Vec::new();
    for (address, vport) in vips {
        if vport == 0 && vs.persistence_timeout.is_none() {
            return Err(err(
                s,
                format!("virtual server {address} has no port: only a persistent service (persistence_timeout) may omit it"),
            ));
        }
        let one = VirtualServerConfig {
            address,
            port: vport,
            ..vs.clone()
        };
        let mut def = build(&one, s, &reals)?;
        for (rd, r) in def.reals.iter_mut().zip(&reals) {
            if let Some(c) = rd.check.as_mut() {
                c.start = if r.alpha.unwrap_or(false) {
                    StartState::Down
                } else {
                    StartState::Up
                };
            }
        }
        ipvs_accepts(&def, s)?;
        out.push(def);
    }
    Ok(out)
}

/// True if the service's real servers (and its sorry server, which takes
/// the service's lb_kind) are all FULLNAT, and there is at least one.
fn all_fullnat(vs: &VirtualServerConfig) -> bool {
    let fnat = |k: &str| k.parse::<ForwardMethod>() == Ok(ForwardMethod::FullNat);
    let kind = fnat(&vs.lb_kind);
    !vs.real_server.is_empty()
        && (vs.sorry_server.is_none() || kind)
        && (vs.real_server.iter()).all(|r| r.lb_kind.as_deref().map_or(kind, fnat))
}

/// `CpConfig::from_config` on one virtual server, its errors placed at the
/// block (or real server) they are about.
fn build(vs: &VirtualServerConfig, s: &Stmt, reals: &[Real]) -> Result<ServiceDef, KeepalivedError> {
    let cfg = Config {
        virtual_server: vec![vs.clone()],
        ..Config::default()
    };
    let file = s.loc().file.to_string();
    match CpConfig::from_config(&cfg, &file) {
        Ok(mut c) if c.services.len() == 1 => Ok(c.services.remove(0)),
        Ok(_) => Err(err(s, "internal: one virtual server did not make one service")),
        Err(ConfigError::Invalid { key, problem, .. }) => {
            // The key is rvs.toml's path, e.g. "virtual_server[0].real_server[2] (10.0.0.2).tcp_check.fall":
            // the real server index finds the line, the last part names the keyword.
            let loc = key
                .split_once(".real_server[")
                .and_then(|(_, rest)| rest.split(']').next())
                .and_then(|j| j.parse::<usize>().ok())
                .and_then(|j| reals.get(j))
                .map(|r| r.loc.clone())
                .unwrap_or_else(|| s.loc().clone());
            let field = key.rsplit_once(").").map(|(_, f)| f).unwrap_or(&key);
            Err(KeepalivedError::at(&loc, format!("{field}: {problem}")))
        }
        Err(e) => Err(err(s, e.to_string())),
    }
}

/// Puts the service, every real server and the sorry server through the
/// ipvsadm model, which refuses what ipvsadm (and rvs-dp) would.
fn ipvs_accepts(def: &ServiceDef, s: &Stmt) -> Result<(), KeepalivedError> {
    let mut ipvs = IpvsConfig::new();
    let key = def.key();
    let mut cmds = vec![Command::AddService(def.spec.clone())];
    cmds.extend(def.reals.iter().map(|r| Command::AddDest(key, r.dest.clone())));
    cmds.extend(def.sorry.iter().map(|d| Command::AddDest(key, d.clone())));
    cmds.extend(def.laddrs.iter().map(|l| Command::AddLaddr(key, l.clone())));
    for c in &cmds {
        ipvs.apply(c)
            .map_err(|e| err(s, format!("virtual server {key}: ipvsadm would refuse it: {e}")))?;
    }
    Ok(())
}

fn real_server(r: &Stmt, vs: Inherited, warnings: &mut Vec<Warning>) -> Result<Real, KeepalivedError> {
    let (address, port_) = match r.args.as_slice() {
        [ip] => (ipv4(r, &ip.text)?, None),
        [ip, p] => (ipv4(r, &ip.text)?, Some(port(r, &p.text)?)),
        _ => return Err(err(r, "real_server expects ADDRESS [PORT]")),
    };
    let mut config = RealServerConfig {
        address,
        port: port_,
        weight: 1,
        lb_kind: None,
        uthreshold: 0,
        lthreshold: 0,
        inhibit_on_failure: None,
        tcp_check: None,
        http_get: None,
        misc_check: None,
    };
    let mut inherited = Inherited::default();
    let mut checker: Option<&Stmt> = None;
    for k in r.block.as_deref().unwrap_or(&[]) {
        if inherited.read(k)? {
            continue;
        }
        match k.name() {
            "weight" => config.weight = number(k, MAX_WEIGHT)?,
            "lb_kind" | "lvs_method" => config.lb_kind = Some(method_word(method(k)?).into()),
            "uthreshold" => config.uthreshold = number(k, rvs_proto::command::MAX_THRESHOLD)?,
            "lthreshold" => config.lthreshold = number(k, rvs_proto::command::MAX_THRESHOLD)?,
            "inhibit_on_failure" => config.inhibit_on_failure = Some(flag(k)?),
            "TCP_CHECK" | "HTTP_GET" | "MISC_CHECK" => {
                if let Some(first) = checker {
                    return Err(err(
                        k,
                        format!(
                            "a second checker ({} after {} at {}): rvs-cp runs one health check per real server",
                            k.name(),
                            first.name(),
                            first.loc()
                        ),
                    ));
                }
                checker = Some(k);
            }
            "SSL_GET" => {
                return Err(err(
                    k,
                    "SSL_GET is not supported: rvs-cp's HTTP check speaks no TLS (use TCP_CHECK, or MISC_CHECK with curl)",
                ))
            }
            c @ ("SMTP_CHECK" | "DNS_CHECK" | "UDP_CHECK" | "PING_CHECK" | "BFD_CHECK" | "FILE_CHECK") => {
                return Err(err(
                    k,
                    format!("{c} is not supported: rvs-cp runs TCP_CHECK, HTTP_GET and MISC_CHECK"),
                ))
            }
            _ if no_effect(k, warnings) => {}
            _ => unknown(k, "real_server", warnings),
        }
    }
    let inherited = inherited.under(vs);
    let mut alpha = inherited.alpha;
    if let Some(c) = checker {
        let (name, table, a) = check(c, inherited, warnings)?;
        alpha = a;
        match name {
            "tcp_check" => config.tcp_check = Some(table),
            "http_get" => config.http_get = Some(table),
            _ => config.misc_check = Some(table),
        }
    }
    Ok(Real {
        config,
        alpha,
        loc: r.loc().clone(),
    })
}

/// A checker block as rvs.toml's check table, keepalived's defaults filled
/// in where they differ from rvs.toml's; and its alpha.
fn check(
    c: &Stmt,
    rs: Inherited,
    warnings: &mut Vec<Warning>,
) -> Result<(&'static str, toml::Table, Option<bool>), KeepalivedError> {
    let mut t = toml::Table::new();
    let mut own = Inherited::default();
    let mut urls = 0;
    let kind = c.name();
    for k in block(c)? {
        if own.read(k)? {
            continue;
        }
        match (kind, k.name()) {
            (_, "connect_ip") => {
                let ip = ipv4(k, one_arg(k)?)?;
                t.insert("connect_ip".into(), toml::Value::String(ip.to_string()));
            }
            (_, "connect_port") => {
                let p = port(k, one_arg(k)?)?;
                t.insert("connect_port".into(), toml::Value::Integer(p.into()));
            }
            ("HTTP_GET", "url") => {
                urls += 1;
                if urls > 1 {
                    return Err(err(
                        k,
                        "a second url: rvs-cp's HTTP_GET checks one url per real server",
                    ));
                }
                url(k, &mut t, warnings)?;
            }
            ("MISC_CHECK", "misc_path") => {
                if k.args.is_empty() {
                    return Err(err(k, "misc_path needs a command"));
                }
                let cmd: Vec<&str> = k.args.iter().map(|w| w.text.as_str()).collect();
                t.insert("misc_path".into(), toml::Value::String(cmd.join(" ")));
            }
            ("MISC_CHECK", "misc_timeout") => {
                t.insert("misc_timeout".into(), toml::Value::Float(seconds(k)?));
            }
            ("MISC_CHECK", "misc_dynamic") => {
                return Err(err(
                    k,
                    "misc_dynamic is not supported: rvs-cp takes a MISC_CHECK's exit status as up (0) or down, never as a weight",
                ))
            }
            _ if no_effect(k, warnings) => {}
            _ => unknown(k, kind, warnings),
        }
    }
    if kind == "HTTP_GET" && urls == 0 {
        return Err(err(c, "HTTP_GET needs a url { path ... } block"));
    }
    let all = own.under(rs);
    // keepalived's retry counts the checks made after a first failure, so a
    // server goes down after retry + 1 failures in a row; its default is 1,
    // and 0 for MISC_CHECK.
    let retry = all.retry.unwrap_or(if kind == "MISC_CHECK" { 0 } else { 1 });
    t.insert("fall".into(), toml::Value::Integer(i64::from(retry) + 1));
    // keepalived puts a failed server back after one success.
    t.insert("rise".into(), toml::Value::Integer(1));
    // delay_before_retry: 3 s for HTTP_GET, 1 s otherwise.
    let retry_delay = all
        .delay_before_retry
        .unwrap_or(if kind == "HTTP_GET" { 3.0 } else { 1.0 });
    t.insert("delay_before_retry".into(), toml::Value::Float(retry_delay));
    if let Some(d) = all.connect_timeout {
        t.insert("connect_timeout".into(), toml::Value::Float(d));
    }
    if let Some(d) = all.delay_loop {
        t.insert("delay_loop".into(), toml::Value::Float(d));
    }
    let name = match kind {
        "TCP_CHECK" => "tcp_check",
        "HTTP_GET" => "http_get",
        _ => "misc_check",
    };
    Ok((name, t, all.alpha))
}

/// HTTP_GET's `url { path, digest, status_code, regex }`.
fn url(u: &Stmt, t: &mut toml::Table, warnings: &mut Vec<Warning>) -> Result<(), KeepalivedError> {
    let mut codes: Option<Vec<toml::Value>> = None;
    for k in block(u)? {
        match k.name() {
            "path" => {
                t.insert("path".into(), toml::Value::String(one_arg(k)?.into()));
            }
            "digest" => {
                t.insert("digest".into(), toml::Value::String(one_arg(k)?.into()));
            }
            "regex" => {
                t.insert("regex".into(), toml::Value::String(one_arg(k)?.into()));
            }
            "regex_no_match" => {
                return Err(err(
                    k,
                    "regex_no_match is not supported: rvs-cp's regex must match",
                ))
            }
            "status_code" => {
                let mut v = Vec::new();
                for w in &k.args {
                    v.extend(
                        status_codes(k, &w.text)?
                            .into_iter()
                            .map(|c| toml::Value::Integer(c.into())),
                    );
                }
                if v.is_empty() {
                    return Err(err(k, "status_code needs at least one code or range"));
                }
                codes = Some(v);
            }
            _ if no_effect(k, warnings) => {}
            _ => unknown(k, "url", warnings),
        }
    }
    // keepalived's default is any 2xx, rvs.toml's is 200 alone.
    let codes = codes.unwrap_or_else(|| (200..=299).map(toml::Value::Integer).collect());
    t.insert("status_code".into(), toml::Value::Array(codes));
    Ok(())
}

/// `200` or `200-299`.
fn status_codes(k: &Stmt, w: &str) -> Result<Vec<u16>, KeepalivedError> {
    let bad = || {
        err(
            k,
            format!("status_code: '{w}' is not an HTTP status code (100..599) or range"),
        )
    };
    let code = |s: &str| s.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
    let (a, b) = match w.split_once('-') {
        Some((a, b)) => (code(a).ok_or_else(bad)?, code(b).ok_or_else(bad)?),
        None => {
            let c = code(w).ok_or_else(bad)?;
            (c, c)
        }
    };
    if a > b {
        return Err(bad());
    }
    Ok((a..=b).collect())
}
