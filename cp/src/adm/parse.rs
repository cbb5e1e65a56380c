//! ipvsadm's command line, parsed by hand.
//!
//! ipvsadm uses popt: short options cluster (`-Ln`, `-At 10.0.0.1:80`), an
//! option's value may be glued on (`-w3`, `--weight=3`) or follow as the next
//! word, and `-p` takes its timeout only if one follows. clap cannot say "an
//! optional value that is never a word starting with '-'", hence this module.
//!
//! After the scan the same checks run, in the same order, with the same
//! messages and exit codes as ipvsadm.c: value errors as each option is read,
//! then `--set` values and stray words, scheduler flags, the table of legal
//! command/option pairs, and the per-command rules (zero port, DR port, list
//! conflicts). Differences from ipvsadm, all deliberate:
//! - the command may come anywhere, not only first (`-n -L` works);
//! - host names are not resolved (addresses are dotted quads); port names are
//!   looked up in a small built-in table rather than /etc/services;
//! - a `-g`/`-i` real server given a port different from the service's is an
//!   error, where ipvsadm silently replaces it by the service's port;
//! - fwmark, SCTP, IPv6, one-packet scheduling, persistence engines and GUE
//!   are refused with an explicit "not supported";
//! - the sync daemon's options come last in the legality table, after rvs's own.
//!
//! DPVS's ipvsadm additions are read as DPVS reads them: `-j enable|disable`
//! (SYN proxy), `-b`/`--fullnat` on `-a`/`-e` (FULLNAT real servers; on
//! `-A`/`-E`, `-b` stays the scheduler flags), `--add-laddr`/`-P`,
//! `--del-laddr`/`-Q`, `--get-laddr`/`-G` with `-z LIP` and `-F NAME` (here
//! the name of an rvs-dp port, rvs.toml's `[[port]] name`), and
//! `--proxy-protocol disable|v1|v2` on `-A`/`-E`. rvs's own: `--toa` on
//! `-A`/`-E` (DPVS always writes TOA on FULLNAT; rvs only when asked), and
//! `--del-laddr` without `-F`. DPVS's `v1-insecure`/`v2-insecure` are refused.

use std::net::Ipv4Addr;

use rvs_proto::command::{
    ClientAddr, Command, DaemonRole, DestSpec, IpvsError, LaddrSpec, ServiceSpec, SyncDaemonSpec,
    DEFAULT_PERSISTENT_TIMEOUT_S, DEFAULT_SCHEDULER, MAX_THRESHOLD, MAX_TIMEOUT_S, MAX_WEIGHT,
    SYNC_MAX_MAXLEN,
};
use rvs_proto::types::{ForwardMethod, Proto, SchedFlags, ServiceKey};

/// A command line that ipvsadm would refuse: the message (without the
/// trailing newline) and the exit status ipvsadm would use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub msg: String,
    pub code: i32,
}

/// ipvsadm's `fail(2, ...)`.
fn fail<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        msg: msg.into(),
        code: 2,
    })
}

/// popt's own errors and "Try ... -h": ipvsadm exits with -1, i.e. 255.
fn popt_fail<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        msg: msg.into(),
        code: 255,
    })
}

pub const TRY_HELP: &str = "Try `rvsadm -h' or 'rvsadm --help' for more information.";

/// What to list with `-L`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListWhat {
    /// Every virtual service.
    All,
    /// `-L -t VIP:port`: one service, without the version header.
    Service(ServiceKey),
    /// `-L -c`
    Conns,
    /// `-L --timeout`
    Timeouts,
    /// `--latency` (rvs only)
    Latency,
    /// `--drops` (rvs only)
    Drops,
    /// `-L --daemon`
    Daemons,
    /// `--kernel` (rvs only): the exception path's counters, VIP ownership
    Kernel,
    /// `--get-laddr`/`-G [-t VIP:port]` (DPVS's): local addresses of one
    /// service, or of every service.
    Laddrs(Option<ServiceKey>),
}

/// `-L`'s output options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOpts {
    pub numeric: bool,
    pub stats: bool,
    pub rate: bool,
    pub thresholds: bool,
    pub persistent_conn: bool,
    pub tun_info: bool,
    pub exact: bool,
    pub nosort: bool,
    /// `--json` (rvs only): the data plane's reply as JSON.
    pub json: bool,
}

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A configuration change (or `-Z`) to send as is.
    Apply(Command),
    List(ListWhat, ListOpts),
    /// `-S [-n]`
    Save {
        numeric: bool,
    },
    /// `-R`: read a save file from stdin.
    Restore,
    Help,
    Version,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Set,
    Restore,
    Save,
    Zero,
    StartDaemon,
    StopDaemon,
    AddLaddr,
    DelLaddr,
    GetLaddr,
}

impl Cmd {
    /// ipvsadm's names in its messages (`-C` is "flush" there too).
    fn name(self) -> &'static str {
        match self {
            Cmd::Add => "add-service",
            Cmd::Edit => "edit-service",
            Cmd::Del => "delete-service",
            Cmd::Flush => "flush",
            Cmd::List => "list",
            Cmd::AddDest => "add-server",
            Cmd::DelDest => "delete-server",
            Cmd::EditDest => "edit-server",
            Cmd::Set => "set",
            Cmd::Restore => "restore",
            Cmd::Save => "save",
            Cmd::Zero => "zero",
            Cmd::StartDaemon => "start-daemon",
            Cmd::StopDaemon => "stop-daemon",
            Cmd::AddLaddr => "add-laddr",
            Cmd::DelLaddr => "del-laddr",
            Cmd::GetLaddr => "get-laddr",
        }
    }
}

/// Options as ipvsadm counts them for its legality table, in its order (the
/// order decides which of two conflicting options a message names first).
/// `json`, `latency`, `drops` and `kernel` are rvs's own and come after
/// ipvsadm's; DPVS's (`syn-proxy`, `local-address`, `ifname`,
/// `proxy-protocol`) and rvs's `toa` after the sync daemon's.
mod opt {
    pub const NUMERIC: usize = 0;
    pub const CONNECTION: usize = 1;
    pub const SERVICE: usize = 2;
    pub const SCHEDULER: usize = 3;
    pub const PERSISTENT: usize = 4;
    pub const NETMASK: usize = 5;
    pub const SERVER: usize = 6;
    pub const FORWARD: usize = 7;
    pub const WEIGHT: usize = 8;
    pub const UTHRESHOLD: usize = 9;
    pub const LTHRESHOLD: usize = 10;
    pub const TIMEOUT: usize = 11;
    pub const STATS: usize = 12;
    pub const RATE: usize = 13;
    pub const THRESHOLDS: usize = 14;
    pub const PERSISTENTCONN: usize = 15;
    pub const NOSORT: usize = 16;
    pub const EXACT: usize = 17;
    pub const SCHED_FLAGS: usize = 18;
    pub const TUN_INFO: usize = 19;
    pub const TUN_TYPE: usize = 20;
    pub const JSON: usize = 21;
    pub const LATENCY: usize = 22;
    pub const DROPS: usize = 23;
    pub const KERNEL: usize = 24;
    pub const DAEMON: usize = 25;
    pub const MCAST: usize = 26;
    pub const SYNCID: usize = 27;
    pub const SYNC_MAXLEN: usize = 28;
    pub const MCAST_GROUP: usize = 29;
    pub const MCAST_PORT: usize = 30;
    pub const MCAST_TTL: usize = 31;
    pub const SYN_PROXY: usize = 32;
    pub const LADDR: usize = 33;
    pub const IFNAME: usize = 34;
    pub const PROXY_PROTOCOL: usize = 35;
    pub const TOA: usize = 36;
    pub const COUNT: usize = 37;

    pub const NAMES: [&str; COUNT] = [
        "numeric",
        "connection",
        "service-address",
        "scheduler",
        "persistent",
        "netmask",
        "real-server",
        "forwarding-method",
        "weight",
        "u-threshold",
        "l-threshold",
        "timeout",
        "stats",
        "rate",
        "thresholds",
        "persistent-conn",
        "nosort",
        "exact",
        "sched-flags",
        "tun-info",
        "tun-type",
        "json",
        "latency",
        "drops",
        "kernel",
        "daemon",
        "mcast-interface",
        "syncid",
        "sync-maxlen",
        "mcast-group",
        "mcast-port",
        "mcast-ttl",
        "syn-proxy",
        "local-address",
        "ifname",
        "proxy-protocol",
        "toa",
    ];
}

/// Which options each command takes: '+' required, 'x' illegal, '1' at most
/// one of the '1's, ' ' optional. Rows follow `Cmd`, columns follow `opt`.
fn legality(cmd: Cmd) -> &'static [u8; opt::COUNT] {
    //                         n c s s p M r f w x y t s r t p n e b i t j l d k d m s s m m m j z F p t
    //                               c             o t a h c o x   n y s a a r c y y g p t     p o
    match cmd {
        Cmd::Add | Cmd::Edit => b"xx+   xxxxxxxxxxxx xxxxxxxxxxxxx xx  ",
        Cmd::Del => b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        Cmd::Flush | Cmd::Set | Cmd::Restore => b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        Cmd::List => b" 11xxxxxxxx1      x x 1111xxxxxxxxxxx",
        Cmd::AddDest | Cmd::EditDest => b"xx+xxx+    xxxxxxxxx xxxxxxxxxxxxxxxx",
        Cmd::DelDest => b"xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        Cmd::Save => b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        Cmd::Zero => b"xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        Cmd::StartDaemon => b"xxxxxxxxxxxxxxxxxxxxxxxxxx+     xxxxx",
        Cmd::StopDaemon => b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        // DPVS's table, except that `--del-laddr` does not need `-F` (a
        // local address belongs to one service, so the address says which).
        Cmd::AddLaddr => b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx++xx",
        Cmd::DelLaddr => b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx+ xx",
        Cmd::GetLaddr => b"xx xxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxxx",
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arg {
    None,
    Required,
    Optional,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Id {
    Cmd(Cmd),
    Service(Proto),
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward(ForwardMethod),
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    Timeout,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    SchedFlags,
    TunInfo,
    TunType,
    Json,
    Latency,
    Drops,
    Kernel,
    SynProxy,
    Laddr,
    Ifname,
    ProxyProtocol,
    Toa,
    StartDaemon,
    StopDaemon,
    Daemon,
    McastInterface,
    Syncid,
    SyncMaxlen,
    McastGroup,
    McastPort,
    McastTtl,
    Help,
    Version,
    /// Known to ipvsadm, not to rvs: the text says why.
    Unsupported(&'static str),
}

struct OptSpec {
    long: &'static str,
    short: Option<char>,
    arg: Arg,
    id: Id,
}

const fn o(long: &'static str, short: Option<char>, arg: Arg, id: Id) -> OptSpec {
    OptSpec { long, short, arg, id }
}

const NO_FWMARK: &str = "rvs has no firewall-mark services";

static OPTIONS: &[OptSpec] = &[
    o("add-service", Some('A'), Arg::None, Id::Cmd(Cmd::Add)),
    o("edit-service", Some('E'), Arg::None, Id::Cmd(Cmd::Edit)),
    o("delete-service", Some('D'), Arg::None, Id::Cmd(Cmd::Del)),
    o("clear", Some('C'), Arg::None, Id::Cmd(Cmd::Flush)),
    o("list", Some('L'), Arg::None, Id::Cmd(Cmd::List)),
    o("list", Some('l'), Arg::None, Id::Cmd(Cmd::List)),
    o("zero", Some('Z'), Arg::None, Id::Cmd(Cmd::Zero)),
    o("add-server", Some('a'), Arg::None, Id::Cmd(Cmd::AddDest)),
    o("edit-server", Some('e'), Arg::None, Id::Cmd(Cmd::EditDest)),
    o("delete-server", Some('d'), Arg::None, Id::Cmd(Cmd::DelDest)),
    o("set", None, Arg::None, Id::Cmd(Cmd::Set)),
    o("restore", Some('R'), Arg::None, Id::Cmd(Cmd::Restore)),
    o("save", Some('S'), Arg::None, Id::Cmd(Cmd::Save)),
    o("help", Some('h'), Arg::None, Id::Help),
    o("version", Some('v'), Arg::None, Id::Version),
    o("tcp-service", Some('t'), Arg::Required, Id::Service(Proto::Tcp)),
    o("udp-service", Some('u'), Arg::Required, Id::Service(Proto::Udp)),
    o("scheduler", Some('s'), Arg::Required, Id::Scheduler),
    o("persistent", Some('p'), Arg::Optional, Id::Persistent),
    o("netmask", Some('M'), Arg::Required, Id::Netmask),
    o("real-server", Some('r'), Arg::Required, Id::Server),
    o(
        "masquerading",
        Some('m'),
        Arg::None,
        Id::Forward(ForwardMethod::Nat),
    ),
    o("ipip", Some('i'), Arg::None, Id::Forward(ForwardMethod::Tun)),
    o("gatewaying", Some('g'), Arg::None, Id::Forward(ForwardMethod::Dr)),
    o("weight", Some('w'), Arg::Required, Id::Weight),
    o("u-threshold", Some('x'), Arg::Required, Id::UThreshold),
    o("l-threshold", Some('y'), Arg::Required, Id::LThreshold),
    o("numeric", Some('n'), Arg::None, Id::Numeric),
    o("connection", Some('c'), Arg::None, Id::Connection),
    o("timeout", None, Arg::None, Id::Timeout),
    o("stats", None, Arg::None, Id::Stats),
    o("rate", None, Arg::None, Id::Rate),
    o("thresholds", None, Arg::None, Id::Thresholds),
    o("persistent-conn", None, Arg::None, Id::PersistentConn),
    o("nosort", None, Arg::None, Id::NoSort),
    o("sort", None, Arg::None, Id::Sort),
    o("exact", Some('X'), Arg::None, Id::Exact),
    o("sched-flags", Some('b'), Arg::Required, Id::SchedFlags),
    o("tun-info", None, Arg::None, Id::TunInfo),
    o("tun-type", None, Arg::Required, Id::TunType),
    o("json", None, Arg::None, Id::Json),
    o("latency", None, Arg::None, Id::Latency),
    o("drops", None, Arg::None, Id::Drops),
    o("kernel", None, Arg::None, Id::Kernel),
    o("syn-proxy", Some('j'), Arg::Required, Id::SynProxy),
    // DPVS's FULLNAT commands and options. `-b` is FULLNAT only on a real
    // server command (see `FULLNAT_B`); `--fullnat` is always.
    o("add-laddr", Some('P'), Arg::None, Id::Cmd(Cmd::AddLaddr)),
    o("del-laddr", Some('Q'), Arg::None, Id::Cmd(Cmd::DelLaddr)),
    o("get-laddr", Some('G'), Arg::None, Id::Cmd(Cmd::GetLaddr)),
    o("laddr", Some('z'), Arg::Required, Id::Laddr),
    o("ifname", Some('F'), Arg::Required, Id::Ifname),
    o("fullnat", None, Arg::None, Id::Forward(ForwardMethod::FullNat)),
    o("proxy-protocol", None, Arg::Required, Id::ProxyProtocol),
    o("toa", None, Arg::None, Id::Toa),
    o(
        "fwmark-service",
        Some('f'),
        Arg::Required,
        Id::Unsupported(NO_FWMARK),
    ),
    o(
        "sctp-service",
        None,
        Arg::Required,
        Id::Unsupported("rvs balances TCP and UDP only"),
    ),
    o("ipv6", Some('6'), Arg::None, Id::Unsupported("rvs is IPv4 only")),
    o(
        "ops",
        Some('o'),
        Arg::None,
        Id::Unsupported("rvs has no one-packet scheduling"),
    ),
    o(
        "pe",
        None,
        Arg::Required,
        Id::Unsupported("rvs has no persistence engines"),
    ),
    o("start-daemon", None, Arg::Required, Id::StartDaemon),
    o("stop-daemon", None, Arg::Required, Id::StopDaemon),
    o("daemon", None, Arg::None, Id::Daemon),
    o("mcast-interface", None, Arg::Required, Id::McastInterface),
    o("syncid", None, Arg::Required, Id::Syncid),
    o("mcast-group", None, Arg::Required, Id::McastGroup),
    o("mcast-port", None, Arg::Required, Id::McastPort),
    o("mcast-ttl", None, Arg::Required, Id::McastTtl),
    o("sync-maxlen", None, Arg::Required, Id::SyncMaxlen),
    o(
        "tun-port",
        None,
        Arg::Required,
        Id::Unsupported("rvs tunnels with ipip only"),
    ),
    o(
        "tun-nocsum",
        None,
        Arg::None,
        Id::Unsupported("rvs tunnels with ipip only"),
    ),
    o(
        "tun-csum",
        None,
        Arg::None,
        Id::Unsupported("rvs tunnels with ipip only"),
    ),
    o(
        "tun-remcsum",
        None,
        Arg::None,
        Id::Unsupported("rvs tunnels with ipip only"),
    ),
];

/// DPVS's `-b` on `-a`/`-e`: FULLNAT, where ipvsadm's `-b` (on `-A`/`-E`)
/// is `--sched-flags` and takes a value.
static FULLNAT_B: OptSpec = o(
    "fullnat",
    Some('b'),
    Arg::None,
    Id::Forward(ForwardMethod::FullNat),
);

/// One option as written: what it is, its value, and how it was spelled.
type Event = (Id, Option<String>, String);

/// Splits the words into option events and positional words; `-b` is
/// FULLNAT when `b_fullnat`, else the scheduler flags.
fn scan(args: &[String], b_fullnat: bool) -> Result<(Vec<Event>, Vec<String>), ParseError> {
    let mut events = Vec::new();
    let mut positional = Vec::new();
    let mut i = 0;
    let mut only_positional = false;
    while i < args.len() {
        let word = &args[i];
        i += 1;
        if only_positional || word == "-" || !word.starts_with('-') {
            positional.push(word.clone());
            continue;
        }
        if word == "--" {
            only_positional = true;
            continue;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, glued) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let Some(spec) = OPTIONS.iter().find(|s| s.long == name) else {
                return popt_fail(format!("{word}: unknown option"));
            };
            let value = match (spec.arg, glued) {
                (Arg::None, Some(_)) => {
                    return popt_fail(format!("{word}: option does not take an argument"))
                }
                (Arg::None, None) => None,
                (_, Some(v)) => Some(v),
                (Arg::Required, None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.clone())
                    }
                    None => return popt_fail(format!("{word}: missing argument")),
                },
                (Arg::Optional, None) => match args.get(i) {
                    Some(v) if !v.starts_with('-') => {
                        i += 1;
                        Some(v.clone())
                    }
                    _ => None,
                },
            };
            events.push((spec.id, value, format!("--{name}")));
            continue;
        }
        // A cluster of short options: the first one that takes a value takes
        // the rest of the word, or the next word.
        let cluster: Vec<char> = word[1..].chars().collect();
        let mut j = 0;
        while j < cluster.len() {
            let c = cluster[j];
            j += 1;
            let found = match c {
                'b' if b_fullnat => Some(&FULLNAT_B),
                _ => OPTIONS.iter().find(|s| s.short == Some(c)),
            };
            let Some(spec) = found else {
                return popt_fail(format!("-{c}: unknown option"));
            };
            let rest: String = cluster[j..].iter().collect();
            let value = match spec.arg {
                Arg::None => None,
                Arg::Required if !rest.is_empty() => {
                    j = cluster.len();
                    Some(rest)
                }
                Arg::Required => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.clone())
                    }
                    None => return popt_fail(format!("-{c}: missing argument")),
                },
                Arg::Optional if !rest.is_empty() => {
                    j = cluster.len();
                    Some(rest)
                }
                Arg::Optional => match args.get(i) {
                    Some(v) if !v.starts_with('-') => {
                        i += 1;
                        Some(v.clone())
                    }
                    _ => None,
                },
            };
            events.push((spec.id, value, format!("-{c}")));
        }
    }
    Ok((events, positional))
}

/// ipvsadm's string_to_number: plain decimal within [min, max].
fn number(s: &str, min: u64, max: u64) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().filter(|n| (min..=max).contains(n))
}

fn timeout(s: &str, min: u32) -> Result<u32, ParseError> {
    match number(s, min as u64, MAX_TIMEOUT_S as u64) {
        Some(n) => Ok(n as u32),
        None => fail(format!("invalid timeout value `{s}' specified")),
    }
}

/// The few /etc/services names that save files commonly carry. Host names
/// are not resolved at all.
fn port_by_name(name: &str) -> Option<u16> {
    Some(match name {
        "ftp" => 21,
        "ssh" => 22,
        "telnet" => 23,
        "smtp" => 25,
        "domain" => 53,
        "http" | "www" => 80,
        "pop3" => 110,
        "ntp" => 123,
        "imap" | "imap2" => 143,
        "snmp" => 161,
        "ldap" => 389,
        "https" => 443,
        "submission" => 587,
        "ldaps" => 636,
        "imaps" => 993,
        "pop3s" => 995,
        "mysql" => 3306,
        "postgresql" => 5432,
        _ => return None,
    })
}

/// ipvsadm's parse_service: `addr[:port]`. None when the text is not one.
fn addr_port(s: &str) -> Option<(Ipv4Addr, Option<u16>)> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (addr, port) = match s.rsplit_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: Ipv4Addr = addr.parse().ok()?;
    let port = match port {
        None => None,
        Some(p) => Some(match number(p, 0, 65535) {
            Some(n) => n as u16,
            None => port_by_name(p)?,
        }),
    };
    Some((addr, port))
}

/// ipvsadm's parse_sched_flags: sh-* only with sh, mh-* only with mh;
/// flag-N with any scheduler. flag-3 has no meaning in rvs and is dropped.
fn sched_flags(sched: &str, arg: &str) -> Result<SchedFlags, ParseError> {
    let mut f = SchedFlags::default();
    for word in arg.split(',').filter(|w| !w.is_empty()) {
        let (needs, fallback) = match word {
            "flag-1" => (None, true),
            "flag-2" => (None, false),
            "flag-3" => continue,
            "sh-fallback" => (Some("sh"), true),
            "sh-port" => (Some("sh"), false),
            "mh-fallback" => (Some("mh"), true),
            "mh-port" => (Some("mh"), false),
            _ => return fail(format!("invalid scheduler flag `{word}'")),
        };
        if needs.is_some_and(|n| n != sched) {
            return fail(format!("incompatible scheduler flag `{word}'"));
        }
        if fallback {
            f.fallback = true;
        } else {
            f.port = true;
        }
    }
    Ok(f)
}

/// Which options a command line gave (too many for `[bool; N]: Default`).
struct OptSet([bool; opt::COUNT]);

impl Default for OptSet {
    fn default() -> Self {
        OptSet([false; opt::COUNT])
    }
}

impl std::ops::Index<usize> for OptSet {
    type Output = bool;
    fn index(&self, i: usize) -> &bool {
        &self.0[i]
    }
}

impl std::ops::IndexMut<usize> for OptSet {
    fn index_mut(&mut self, i: usize) -> &mut bool {
        &mut self.0[i]
    }
}

/// Everything one command line sets.
#[derive(Default)]
struct State {
    cmd: Option<Cmd>,
    set: OptSet,
    proto: Option<Proto>,
    vip: Option<Ipv4Addr>,
    vport: u16,
    scheduler: Option<String>,
    persistence: Option<u32>,
    netmask: Option<Ipv4Addr>,
    syn_proxy: bool,
    client_addr: ClientAddr,
    laddr: Option<Ipv4Addr>,
    ifname: Option<String>,
    rip: Option<Ipv4Addr>,
    rport: Option<u16>,
    method: Option<ForwardMethod>,
    weight: Option<u32>,
    u_threshold: u32,
    l_threshold: u32,
    sched_flags: Option<String>,
    list: ListOpts,
    /// `--start-daemon`/`--stop-daemon` and their options.
    daemon: SyncDaemonSpec,
    help: bool,
    version: bool,
}

impl State {
    fn set_option(&mut self, o: usize) -> Result<(), ParseError> {
        if self.set[o] {
            return fail(format!("multiple '{}' options specified", opt::NAMES[o]));
        }
        self.set[o] = true;
        Ok(())
    }

    fn set_command(&mut self, c: Cmd) -> Result<(), ParseError> {
        if self.cmd.is_some() {
            return fail("multiple commands specified");
        }
        self.cmd = Some(c);
        Ok(())
    }

    fn key(&self) -> Option<ServiceKey> {
        Some(ServiceKey {
            proto: self.proto?,
            vip: self.vip?,
            port: self.vport,
        })
    }
}

/// True if the events name a real server command (`-a`, `-e`, `-d`).
fn names_server_command(events: &[Event]) -> bool {
    (events.iter()).any(|e| matches!(e.0, Id::Cmd(Cmd::AddDest | Cmd::EditDest | Cmd::DelDest)))
}

/// Parses one command line (without the program name).
///
/// `-b` means two things, as in DPVS's ipvsadm: the scheduler flags (with a
/// value) on a service command, FULLNAT (without) on a real server command.
/// The words are read as ipvsadm's first; if they do not read, or name a
/// real server command, they are read again with `-b` as FULLNAT, and that
/// reading wins when it names a real server command.
pub fn parse_args(args: &[String]) -> Result<Action, ParseError> {
    let (events, positional) = match scan(args, false) {
        Ok(sc) if !names_server_command(&sc.0) => sc,
        first => match scan(args, true) {
            Ok(sc) if names_server_command(&sc.0) => sc,
            _ => first?,
        },
    };
    let mut st = State::default();
    for (id, value, spelled) in events {
        let v = value.unwrap_or_default();
        match id {
            Id::Cmd(c) => st.set_command(c)?,
            Id::Help => st.help = true,
            Id::Version => st.version = true,
            Id::Unsupported(why) => return fail(format!("option `{spelled}' is not supported: {why}")),
            Id::Service(p) => {
                st.set_option(opt::SERVICE)?;
                let Some((a, port)) = addr_port(&v) else {
                    return fail("illegal virtual server address[:port] specified");
                };
                st.proto = Some(p);
                st.vip = Some(a);
                st.vport = port.unwrap_or(0);
            }
            Id::Scheduler => {
                st.set_option(opt::SCHEDULER)?;
                st.scheduler = Some(v);
            }
            Id::Persistent => {
                st.set_option(opt::PERSISTENT)?;
                st.persistence = Some(if v.is_empty() {
                    DEFAULT_PERSISTENT_TIMEOUT_S
                } else {
                    timeout(&v, 1)?
                });
            }
            Id::Netmask => {
                st.set_option(opt::NETMASK)?;
                match v.parse() {
                    Ok(m) => st.netmask = Some(m),
                    Err(_) => return fail("illegal virtual server persistent mask specified"),
                }
            }
            Id::Server => {
                st.set_option(opt::SERVER)?;
                let Some((a, port)) = addr_port(&v) else {
                    return fail("illegal real server address[:port] specified");
                };
                st.rip = Some(a);
                st.rport = port;
            }
            Id::Forward(m) => {
                st.set_option(opt::FORWARD)?;
                st.method = Some(m);
            }
            Id::Weight => {
                st.set_option(opt::WEIGHT)?;
                match number(&v, 0, MAX_WEIGHT as u64) {
                    Some(w) => st.weight = Some(w as u32),
                    None => return fail("illegal weight specified"),
                }
            }
            Id::UThreshold => {
                st.set_option(opt::UTHRESHOLD)?;
                match number(&v, 0, MAX_THRESHOLD as u64) {
                    Some(n) => st.u_threshold = n as u32,
                    None => return fail("illegal u_threshold specified"),
                }
            }
            Id::LThreshold => {
                st.set_option(opt::LTHRESHOLD)?;
                match number(&v, 0, MAX_THRESHOLD as u64) {
                    Some(n) => st.l_threshold = n as u32,
                    None => return fail("illegal l_threshold specified"),
                }
            }
            Id::Numeric => {
                st.set_option(opt::NUMERIC)?;
                st.list.numeric = true;
            }
            Id::Connection => st.set_option(opt::CONNECTION)?,
            Id::Timeout => st.set_option(opt::TIMEOUT)?,
            Id::Stats => {
                st.set_option(opt::STATS)?;
                st.list.stats = true;
            }
            Id::Rate => {
                st.set_option(opt::RATE)?;
                st.list.rate = true;
            }
            Id::Thresholds => {
                st.set_option(opt::THRESHOLDS)?;
                st.list.thresholds = true;
            }
            Id::PersistentConn => {
                st.set_option(opt::PERSISTENTCONN)?;
                st.list.persistent_conn = true;
            }
            Id::NoSort => {
                st.set_option(opt::NOSORT)?;
                st.list.nosort = true;
            }
            // Sorting is the default; ipvsadm keeps --sort as a no-op.
            Id::Sort => {}
            Id::Exact => {
                st.set_option(opt::EXACT)?;
                st.list.exact = true;
            }
            Id::SchedFlags => {
                st.set_option(opt::SCHED_FLAGS)?;
                st.sched_flags = Some(v);
            }
            Id::TunInfo => {
                st.set_option(opt::TUN_INFO)?;
                st.list.tun_info = true;
            }
            Id::TunType => {
                st.set_option(opt::TUN_TYPE)?;
                match v.as_str() {
                    "ipip" => {}
                    "gue" => {
                        return fail("option `--tun-type gue' is not supported: rvs tunnels with ipip only")
                    }
                    _ => return fail("illegal tunnel type specified"),
                }
            }
            Id::Json => {
                st.set_option(opt::JSON)?;
                st.list.json = true;
            }
            Id::Latency => st.set_option(opt::LATENCY)?,
            Id::Drops => st.set_option(opt::DROPS)?,
            Id::Kernel => st.set_option(opt::KERNEL)?,
            Id::SynProxy => {
                st.set_option(opt::SYN_PROXY)?;
                st.syn_proxy = match v.as_str() {
                    "enable" => true,
                    "disable" => false,
                    _ => return fail("illegal syn-proxy value specified: enable or disable"),
                };
            }
            Id::Laddr => {
                st.set_option(opt::LADDR)?;
                match v.parse() {
                    Ok(a) => st.laddr = Some(a),
                    Err(_) => return fail("illegal local address"),
                }
            }
            Id::Ifname => {
                st.set_option(opt::IFNAME)?;
                if v.is_empty() {
                    return fail("illegal ifname specified");
                }
                st.ifname = Some(v);
            }
            Id::ProxyProtocol => {
                st.set_option(opt::PROXY_PROTOCOL)?;
                st.client_addr = match v.to_ascii_lowercase().as_str() {
                    "disable" => ClientAddr::None,
                    "v1" => ClientAddr::ProxyV1,
                    "v2" => ClientAddr::ProxyV2,
                    "v1-insecure" | "v2-insecure" => {
                        return fail(format!(
                            "option `--proxy-protocol {v}' is not supported: rvs writes the header itself \
                             and passes none from clients"
                        ))
                    }
                    _ => return fail("illegal proxy-protocol specified: disable, v1 or v2"),
                };
            }
            Id::Toa => {
                st.set_option(opt::TOA)?;
                st.client_addr = ClientAddr::Toa;
            }
            Id::StartDaemon | Id::StopDaemon => {
                let start = id == Id::StartDaemon;
                st.set_command(if start { Cmd::StartDaemon } else { Cmd::StopDaemon })?;
                st.daemon.role = match v.as_str() {
                    "master" => DaemonRole::Master,
                    "backup" => DaemonRole::Backup,
                    _ if start => return fail("illegal start-daemon parameter specified"),
                    _ => return fail("illegal start_daemon specified"),
                };
            }
            Id::Daemon => st.set_option(opt::DAEMON)?,
            Id::McastInterface => {
                st.set_option(opt::MCAST)?;
                st.daemon.mcast_ifn = v;
            }
            Id::Syncid => {
                st.set_option(opt::SYNCID)?;
                match number(&v, 0, 255) {
                    Some(n) => st.daemon.syncid = n as u8,
                    None => return fail("illegal syncid specified"),
                }
            }
            Id::SyncMaxlen => {
                st.set_option(opt::SYNC_MAXLEN)?;
                match number(&v, 1, u64::from(SYNC_MAX_MAXLEN)) {
                    Some(n) => st.daemon.sync_maxlen = n as u32,
                    None => return fail("illegal sync maxlen specified"),
                }
            }
            Id::McastGroup => {
                st.set_option(opt::MCAST_GROUP)?;
                match v.parse::<Ipv4Addr>() {
                    Ok(a) if a.is_multicast() => st.daemon.mcast_group = Some(a),
                    _ => return fail("illegal multicast group specified"),
                }
            }
            Id::McastPort => {
                st.set_option(opt::MCAST_PORT)?;
                match number(&v, 1, 65535) {
                    Some(n) => st.daemon.mcast_port = n as u16,
                    None => return fail("illegal multicast port specified"),
                }
            }
            Id::McastTtl => {
                st.set_option(opt::MCAST_TTL)?;
                match number(&v, 1, 255) {
                    Some(n) => st.daemon.mcast_ttl = n as u8,
                    None => return fail("illegal multicast ttl specified"),
                }
            }
        }
    }

    if st.help {
        return Ok(Action::Help);
    }
    if st.version {
        return Ok(Action::Version);
    }
    let cmd = match st.cmd {
        Some(c) => c,
        // `rvsadm --latency` alone reads as a listing.
        None if st.set[opt::LATENCY] || st.set[opt::DROPS] || st.set[opt::KERNEL] => Cmd::List,
        None => return popt_fail(TRY_HELP),
    };

    let mut words = positional.into_iter();
    let mut set_values = [0u32; 3];
    if cmd == Cmd::Set {
        let got: Vec<String> = words.by_ref().take(3).collect();
        if got.len() < 3 {
            return fail("--set option requires 3 timeout values");
        }
        for (slot, w) in set_values.iter_mut().zip(&got) {
            *slot = timeout(w, 0)?;
        }
    }
    if let Some(w) = words.next() {
        return fail(format!("unexpected argument {w}"));
    }

    let scheduler = st
        .scheduler
        .clone()
        .unwrap_or_else(|| DEFAULT_SCHEDULER.to_string());
    let flags = match &st.sched_flags {
        Some(arg) => sched_flags(&scheduler, arg)?,
        None => SchedFlags::default(),
    };

    let row = legality(cmd);
    let mut first_exclusive: Option<usize> = None;
    for (j, &rule) in row.iter().enumerate() {
        if !st.set[j] {
            if rule == b'+' {
                return fail(format!(
                    "You need to supply the '{}' option for the '{}' command",
                    opt::NAMES[j],
                    cmd.name()
                ));
            }
            continue;
        }
        match rule {
            b'x' => {
                return fail(format!(
                    "Illegal '{}' option with the '{}' command",
                    opt::NAMES[j],
                    cmd.name()
                ))
            }
            b'1' => match first_exclusive {
                None => first_exclusive = Some(j),
                Some(k) => {
                    return fail(format!(
                        "The option '{}' conflicts with the '{}' option in the '{}' command",
                        opt::NAMES[j],
                        opt::NAMES[k],
                        cmd.name()
                    ))
                }
            },
            _ => {}
        }
    }

    if st.set[opt::TOA] && st.set[opt::PROXY_PROTOCOL] {
        return fail(format!(
            "The option 'toa' conflicts with the 'proxy-protocol' option in the '{}' command",
            cmd.name()
        ));
    }

    let key = st.key();
    // The table made the service compulsory where these run.
    let need_key = || {
        key.ok_or_else(|| ParseError {
            msg: TRY_HELP.into(),
            code: 255,
        })
    };
    Ok(match cmd {
        Cmd::Add | Cmd::Edit => {
            let k = need_key()?;
            if k.port == 0 && st.persistence.is_none() {
                return fail(IpvsError::ZeroPortNotPersistent.to_string());
            }
            let spec = ServiceSpec {
                proto: k.proto,
                vip: k.vip,
                port: k.port,
                scheduler,
                flags,
                persistence: st.persistence,
                netmask: st.netmask.unwrap_or(Ipv4Addr::BROADCAST),
                syn_proxy: st.syn_proxy,
                client_addr: st.client_addr,
            };
            Action::Apply(if cmd == Cmd::Add {
                Command::AddService(spec)
            } else {
                Command::EditService(spec)
            })
        }
        Cmd::Del => Action::Apply(Command::DelService(need_key()?)),
        Cmd::Flush => Action::Apply(Command::Clear),
        Cmd::Zero => Action::Apply(Command::Zero(key)),
        Cmd::Set => Action::Apply(Command::SetTimeouts {
            tcp: set_values[0],
            tcpfin: set_values[1],
            udp: set_values[2],
        }),
        Cmd::AddDest | Cmd::EditDest | Cmd::DelDest => {
            let k = need_key()?;
            let rip = st.rip.ok_or_else(|| ParseError {
                msg: TRY_HELP.into(),
                code: 255,
            })?;
            let method = st.method.unwrap_or(ForwardMethod::Dr);
            if st.set[opt::TUN_TYPE] && method != ForwardMethod::Tun {
                return fail("Tunnel options conflict with forward method");
            }
            let rport = match (method, st.rport) {
                // NAT and FULLNAT may change the port.
                (ForwardMethod::Nat | ForwardMethod::FullNat, p) => p.unwrap_or(k.port),
                (_, Some(p)) if p != k.port && cmd != Cmd::DelDest => {
                    return fail(
                        IpvsError::PortMismatch {
                            vport: k.port,
                            rport: p,
                        }
                        .to_string(),
                    )
                }
                // ipvsadm's rule: DR and TUN real servers carry the service's port.
                _ => k.port,
            };
            if cmd == Cmd::DelDest {
                // `-d` never names a method, so the port is the one given (or the service's).
                return Ok(Action::Apply(Command::DelDest(
                    k,
                    rip,
                    st.rport.unwrap_or(k.port),
                )));
            }
            let dest = DestSpec {
                rip,
                port: rport,
                method,
                weight: st.weight.unwrap_or(1),
                u_threshold: st.u_threshold,
                l_threshold: st.l_threshold,
            };
            Action::Apply(if cmd == Cmd::AddDest {
                Command::AddDest(k, dest)
            } else {
                Command::EditDest(k, dest)
            })
        }
        Cmd::List => {
            let s = &st.set;
            let own = s[opt::LATENCY] || s[opt::DROPS] || s[opt::KERNEL];
            if ((s[opt::CONNECTION] || s[opt::TIMEOUT] || own)
                && (s[opt::STATS] || s[opt::RATE] || s[opt::THRESHOLDS]))
                || ((s[opt::TIMEOUT] || own) && s[opt::PERSISTENTCONN])
            {
                return fail("options conflicts in the list command");
            }
            let what = if s[opt::CONNECTION] {
                ListWhat::Conns
            } else if let Some(k) = key {
                ListWhat::Service(k)
            } else if s[opt::TIMEOUT] {
                ListWhat::Timeouts
            } else if s[opt::LATENCY] {
                ListWhat::Latency
            } else if s[opt::DROPS] {
                ListWhat::Drops
            } else if s[opt::KERNEL] {
                ListWhat::Kernel
            } else if s[opt::DAEMON] {
                ListWhat::Daemons
            } else {
                ListWhat::All
            };
            Action::List(what, st.list)
        }
        Cmd::Save => Action::Save {
            numeric: st.list.numeric,
        },
        Cmd::Restore => Action::Restore,
        Cmd::StartDaemon => Action::Apply(Command::StartDaemon(st.daemon)),
        Cmd::StopDaemon => Action::Apply(Command::StopDaemon(st.daemon.role)),
        // The table made -z (and for add-laddr -F) compulsory.
        Cmd::AddLaddr | Cmd::DelLaddr => {
            let k = need_key()?;
            let (Some(addr), ifname) = (st.laddr, st.ifname) else {
                return popt_fail(TRY_HELP);
            };
            if cmd == Cmd::DelLaddr {
                Action::Apply(Command::DelLaddr(k, addr))
            } else {
                Action::Apply(Command::AddLaddr(
                    k,
                    LaddrSpec {
                        addr,
                        port_name: ifname.unwrap_or_default(),
                    },
                ))
            }
        }
        Cmd::GetLaddr => Action::List(ListWhat::Laddrs(key), st.list),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Action, ParseError> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse_args(&args)
    }

    fn ok(line: &str) -> Action {
        p(line).unwrap_or_else(|e| panic!("{line}: {e:?}"))
    }

    fn err(line: &str) -> (String, i32) {
        match p(line) {
            Ok(a) => panic!("{line} parsed as {a:?}"),
            Err(e) => (e.msg, e.code),
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn tcp(vip: &str, port: u16) -> ServiceKey {
        ServiceKey {
            proto: Proto::Tcp,
            vip: ip(vip),
            port,
        }
    }

    fn spec(proto: Proto, vip: &str, port: u16, sched: &str) -> ServiceSpec {
        let mut s = ServiceSpec::new(proto, ip(vip), port);
        s.scheduler = sched.into();
        s
    }

    #[test]
    fn syn_proxy_on_services_only() {
        let mut want = spec(Proto::Tcp, "10.0.0.1", 80, "wrr");
        want.syn_proxy = true;
        assert_eq!(
            ok("-A -t 10.0.0.1:80 -s wrr -j enable"),
            Action::Apply(Command::AddService(want.clone()))
        );
        assert_eq!(
            ok("-E -t 10.0.0.1:80 -s wrr --syn-proxy=enable"),
            Action::Apply(Command::EditService(want))
        );
        assert_eq!(
            ok("-E -t 10.0.0.1:80 -s wrr -j disable"),
            Action::Apply(Command::EditService(spec(Proto::Tcp, "10.0.0.1", 80, "wrr")))
        );
        assert_eq!(err("-A -t 10.0.0.1:80 -j on").1, 2);
        assert!(err("-A -t 10.0.0.1:80 -j on").0.contains("syn-proxy"));
        assert_eq!(err("-a -t 10.0.0.1:80 -r 10.0.1.1 -j enable").1, 2);
        assert_eq!(err("-L -j enable").1, 2);
    }

    fn fnat(rip: &str, port: u16, weight: u32) -> DestSpec {
        let mut d = DestSpec::new(ip(rip), port, ForwardMethod::FullNat);
        d.weight = weight;
        d
    }

    /// DPVS's ipvsadm: `-b` is FULLNAT on `-a`/`-e` (where it takes no
    /// value) and the scheduler flags on `-A`/`-E`, whatever the order.
    #[test]
    fn b_is_fullnat_on_real_servers_and_sched_flags_on_services() {
        let k = tcp("10.0.0.1", 80);
        for line in [
            "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -b -w 3",
            "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -w 3 -b",
            "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -bw3",
            "-r 10.0.1.1:8080 -b -w 3 -t 10.0.0.1:80 -a",
            "--add-server -t 10.0.0.1:80 -r 10.0.1.1:8080 --fullnat --weight 3",
        ] {
            assert_eq!(
                ok(line),
                Action::Apply(Command::AddDest(k, fnat("10.0.1.1", 8080, 3))),
                "{line}"
            );
        }
        assert_eq!(
            ok("-e -t 10.0.0.1:80 -r 10.0.1.1 -b"),
            Action::Apply(Command::EditDest(k, fnat("10.0.1.1", 80, 1))),
            "FULLNAT keeps the service's port when none is given, as NAT"
        );
        // On -A, -b is still ipvsadm's scheduler flags.
        let mut sh = spec(Proto::Tcp, "10.0.0.1", 80, "sh");
        sh.flags.port = true;
        assert_eq!(
            ok("-A -t 10.0.0.1:80 -s sh -b sh-port"),
            Action::Apply(Command::AddService(sh))
        );
        assert_eq!(
            err("-A -t 10.0.0.1:80 -s sh -b"),
            ("-b: missing argument".into(), 255)
        );
        assert_eq!(
            err("-A -t 10.0.0.1:80 --fullnat"),
            (
                "Illegal 'forwarding-method' option with the 'add-service' command".into(),
                2
            )
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.1.1 -b -m"),
            ("multiple 'forwarding-method' options specified".into(), 2)
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.1.1 -b sh-port"),
            ("unexpected argument sh-port".into(), 2)
        );
        assert_eq!(
            err("-d -t 10.0.0.1:80 -r 10.0.1.1 -b"),
            (
                "Illegal 'forwarding-method' option with the 'delete-server' command".into(),
                2
            )
        );
    }

    #[test]
    fn local_address_commands() {
        let k = tcp("10.0.0.1", 80);
        let spec = LaddrSpec {
            addr: ip("10.0.2.1"),
            port_name: "inside".into(),
        };
        for line in [
            "--add-laddr -z 10.0.2.1 -t 10.0.0.1:80 -F inside",
            "-P -z 10.0.2.1 -t 10.0.0.1:80 -F inside",
            "-P -t 10.0.0.1:80 -z10.0.2.1 -Finside",
            "--add-laddr --laddr=10.0.2.1 --tcp-service 10.0.0.1:80 --ifname inside",
        ] {
            assert_eq!(
                ok(line),
                Action::Apply(Command::AddLaddr(k, spec.clone())),
                "{line}"
            );
        }
        for line in [
            "--del-laddr -z 10.0.2.1 -t 10.0.0.1:80",
            "-Q -z 10.0.2.1 -t 10.0.0.1:80 -F inside",
        ] {
            assert_eq!(
                ok(line),
                Action::Apply(Command::DelLaddr(k, ip("10.0.2.1"))),
                "{line}"
            );
        }
        assert_eq!(
            ok("--get-laddr -t 10.0.0.1:80"),
            Action::List(ListWhat::Laddrs(Some(k)), ListOpts::default())
        );
        assert_eq!(
            ok("-G"),
            Action::List(ListWhat::Laddrs(None), ListOpts::default())
        );
        let json = ListOpts {
            json: true,
            ..ListOpts::default()
        };
        assert_eq!(ok("-G --json"), Action::List(ListWhat::Laddrs(None), json));

        // ipvsadm's checks and messages (DPVS's names for the options).
        let bad = |line: &str, msg: &str| assert_eq!(err(line), (msg.to_string(), 2), "{line}");
        bad(
            "--add-laddr -t 10.0.0.1:80 -F inside",
            "You need to supply the 'local-address' option for the 'add-laddr' command",
        );
        bad(
            "--add-laddr -z 10.0.2.1 -t 10.0.0.1:80",
            "You need to supply the 'ifname' option for the 'add-laddr' command",
        );
        bad(
            "--add-laddr -z 10.0.2.1 -F inside",
            "You need to supply the 'service-address' option for the 'add-laddr' command",
        );
        bad(
            "--del-laddr -t 10.0.0.1:80",
            "You need to supply the 'local-address' option for the 'del-laddr' command",
        );
        bad(
            "--add-laddr -z 10.0.2.300 -t 10.0.0.1:80 -F inside",
            "illegal local address",
        );
        bad(
            "--add-laddr -z lip -t 10.0.0.1:80 -F inside",
            "illegal local address",
        );
        bad(
            "--add-laddr -z 10.0.2.1 -t 10.0.0.1:80 --ifname=",
            "illegal ifname specified",
        );
        bad(
            "--add-laddr -z 10.0.2.1 -t 10.0.0.1:80 -F inside -w 2",
            "Illegal 'weight' option with the 'add-laddr' command",
        );
        bad(
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -b -z 10.0.2.1",
            "Illegal 'local-address' option with the 'add-server' command",
        );
        bad(
            "-A -t 10.0.0.1:80 -F inside",
            "Illegal 'ifname' option with the 'add-service' command",
        );
        bad(
            "-G -z 10.0.2.1",
            "Illegal 'local-address' option with the 'get-laddr' command",
        );
        bad(
            "-P -Q -z 10.0.2.1 -t 10.0.0.1:80 -F inside",
            "multiple commands specified",
        );
    }

    #[test]
    fn client_address_option_on_services_only() {
        let get = |line: &str| match ok(line) {
            Action::Apply(Command::AddService(s)) | Action::Apply(Command::EditService(s)) => s.client_addr,
            a => panic!("{a:?}"),
        };
        assert_eq!(get("-A -t 10.0.0.1:80"), ClientAddr::None);
        assert_eq!(get("-A -t 10.0.0.1:80 --proxy-protocol v1"), ClientAddr::ProxyV1);
        assert_eq!(get("-A -t 10.0.0.1:80 --proxy-protocol=V2"), ClientAddr::ProxyV2);
        assert_eq!(
            get("-E -t 10.0.0.1:80 --proxy-protocol disable"),
            ClientAddr::None
        );
        assert_eq!(get("-E -t 10.0.0.1:80 -s rr --toa"), ClientAddr::Toa);
        let bad = |line: &str, msg: &str| assert_eq!(err(line), (msg.to_string(), 2), "{line}");
        bad(
            "-A -t 10.0.0.1:80 --proxy-protocol v3",
            "illegal proxy-protocol specified: disable, v1 or v2",
        );
        assert!(err("-A -t 10.0.0.1:80 --proxy-protocol v2-insecure")
            .0
            .contains("is not supported"));
        bad(
            "-A -t 10.0.0.1:80 --toa --proxy-protocol v2",
            "The option 'toa' conflicts with the 'proxy-protocol' option in the 'add-service' command",
        );
        bad(
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -b --toa",
            "Illegal 'toa' option with the 'add-server' command",
        );
        bad(
            "-L --proxy-protocol v1",
            "Illegal 'proxy-protocol' option with the 'list' command",
        );
        // UDP or non-FULLNAT real servers are the data plane's to refuse
        // (the model's ClientAddrNeedsTcp / ClientAddrNeedsFullNat).
        assert_eq!(get("-A -u 10.0.0.1:53 --toa"), ClientAddr::Toa);
    }

    #[test]
    fn add_service_forms() {
        let want = Action::Apply(Command::AddService(spec(Proto::Tcp, "10.0.0.1", 80, "wrr")));
        for line in [
            "-A -t 10.0.0.1:80 -s wrr",
            "-At 10.0.0.1:80 -s wrr",
            "-A -t10.0.0.1:80 -swrr",
            "--add-service --tcp-service 10.0.0.1:80 --scheduler wrr",
            "--add-service --tcp-service=10.0.0.1:80 --scheduler=wrr",
            "-s wrr -t 10.0.0.1:80 -A",
            "-A -t 10.0.0.1:http -s wrr",
        ] {
            assert_eq!(ok(line), want, "{line}");
        }
        assert_eq!(
            ok("-A -u 10.0.0.1:53"),
            Action::Apply(Command::AddService(spec(Proto::Udp, "10.0.0.1", 53, "wlc"))),
            "wlc is the default scheduler"
        );
    }

    #[test]
    fn persistence_timeout_is_optional() {
        let get = |line: &str| match ok(line) {
            Action::Apply(Command::AddService(s)) | Action::Apply(Command::EditService(s)) => s,
            a => panic!("{a:?}"),
        };
        assert_eq!(get("-A -t 10.0.0.1:80 -p").persistence, Some(300));
        assert_eq!(get("-A -t 10.0.0.1:80 -p -s rr").persistence, Some(300));
        assert_eq!(get("-A -t 10.0.0.1:80 -p 60 -s rr").persistence, Some(60));
        assert_eq!(get("-A -t 10.0.0.1:80 -p60").persistence, Some(60));
        assert_eq!(get("-A -t 10.0.0.1:80 --persistent=60").persistence, Some(60));
        assert_eq!(get("-A -t 10.0.0.1:80 --persistent 60").persistence, Some(60));
        assert_eq!(get("-E -t 10.0.0.1:80 -s rr").persistence, None);
        let s = get("-A -t 10.0.0.1:0 -p 1800 -M 255.255.255.0");
        assert_eq!(s.port, 0);
        assert_eq!(s.netmask, ip("255.255.255.0"));
        let s = get("-A -t 10.0.0.1:80 --netmask 255.255.0.0 --persistent");
        assert_eq!((s.persistence, s.netmask), (Some(300), ip("255.255.0.0")));
        assert_eq!(get("-A -t 10.0.0.1 -p").port, 0, "no port means port 0");
    }

    #[test]
    fn sched_flags() {
        let get = |line: &str| match ok(line) {
            Action::Apply(Command::AddService(s)) => s.flags,
            a => panic!("{a:?}"),
        };
        let both = SchedFlags {
            fallback: true,
            port: true,
        };
        assert_eq!(get("-A -t 10.0.0.1:80 -s sh -b sh-fallback,sh-port"), both);
        assert_eq!(get("-A -t 10.0.0.1:80 -b mh-port,mh-fallback -s mh"), both);
        assert_eq!(get("-A -t 10.0.0.1:80 -s rr --sched-flags flag-1,flag-2"), both);
        assert_eq!(get("-A -t 10.0.0.1:80 -s rr -b flag-3"), SchedFlags::default());
        assert_eq!(
            err("-A -t 10.0.0.1:80 -s rr -b sh-port"),
            ("incompatible scheduler flag `sh-port'".into(), 2)
        );
        assert_eq!(
            err("-A -t 10.0.0.1:80 -b mh-port"),
            ("incompatible scheduler flag `mh-port'".into(), 2),
            "the default scheduler wlc is not mh"
        );
        assert_eq!(
            err("-A -t 10.0.0.1:80 -s sh -b sh-bogus"),
            ("invalid scheduler flag `sh-bogus'".into(), 2)
        );
    }

    #[test]
    fn edit_and_delete_service() {
        assert_eq!(
            ok("-E -t 10.0.0.1:80 -s lc"),
            Action::Apply(Command::EditService(spec(Proto::Tcp, "10.0.0.1", 80, "lc")))
        );
        assert_eq!(
            ok("--edit-service -t 10.0.0.1:80"),
            Action::Apply(Command::EditService(spec(Proto::Tcp, "10.0.0.1", 80, "wlc")))
        );
        for line in [
            "-D -t 10.0.0.1:80",
            "--delete-service --tcp-service 10.0.0.1:80",
            "-Dt10.0.0.1:80",
        ] {
            assert_eq!(
                ok(line),
                Action::Apply(Command::DelService(tcp("10.0.0.1", 80))),
                "{line}"
            );
        }
    }

    #[test]
    fn real_server_commands() {
        let d = |rip: &str, port, m, w| {
            let mut d = DestSpec::new(ip(rip), port, m);
            d.weight = w;
            d
        };
        let k = tcp("10.0.0.1", 80);
        assert_eq!(
            ok("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 3"),
            Action::Apply(Command::AddDest(k, d("10.0.1.1", 8080, ForwardMethod::Nat, 3)))
        );
        assert_eq!(
            ok("-a -t 10.0.0.1:80 -r 10.0.1.1"),
            Action::Apply(Command::AddDest(k, d("10.0.1.1", 80, ForwardMethod::Dr, 1))),
            "DR and weight 1 by default; the port is the service's"
        );
        assert_eq!(
            ok("--add-server --tcp-service 10.0.0.1:80 --real-server 10.0.1.1:80 --gatewaying --weight 0"),
            Action::Apply(Command::AddDest(k, d("10.0.1.1", 80, ForwardMethod::Dr, 0)))
        );
        assert_eq!(
            ok("-a -t 10.0.0.1:80 -r 10.0.1.1 --ipip --tun-type ipip"),
            Action::Apply(Command::AddDest(k, d("10.0.1.1", 80, ForwardMethod::Tun, 1)))
        );
        assert_eq!(
            ok("-a -t 10.0.0.1:80 -r 10.0.1.1 -i -w 2"),
            Action::Apply(Command::AddDest(k, d("10.0.1.1", 80, ForwardMethod::Tun, 2)))
        );
        let mut t = d("10.0.1.1", 80, ForwardMethod::Nat, 5);
        t.u_threshold = 100;
        t.l_threshold = 50;
        assert_eq!(
            ok("-e -t 10.0.0.1:80 -r 10.0.1.1:80 --masquerading -w5 -x 100 -y 50"),
            Action::Apply(Command::EditDest(k, t.clone()))
        );
        assert_eq!(
            ok("--edit-server -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 5 --u-threshold 100 --l-threshold=50"),
            Action::Apply(Command::EditDest(k, t))
        );
        assert_eq!(
            ok("-d -t 10.0.0.1:80 -r 10.0.1.1:8080"),
            Action::Apply(Command::DelDest(k, ip("10.0.1.1"), 8080))
        );
        assert_eq!(
            ok("--delete-server -t 10.0.0.1:80 -r 10.0.1.1"),
            Action::Apply(Command::DelDest(k, ip("10.0.1.1"), 80))
        );
        // A port given after the real server still fills its default port.
        assert_eq!(
            ok("-a -r 10.0.1.1 -t 10.0.0.1:80 -m"),
            Action::Apply(Command::AddDest(k, d("10.0.1.1", 80, ForwardMethod::Nat, 1)))
        );
    }

    #[test]
    fn dr_and_tun_keep_the_service_port() {
        let (msg, code) = err("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -g");
        assert_eq!(code, 2);
        assert!(msg.contains("8080") && msg.contains("80"), "{msg}");
        assert_eq!(err("-a -t 10.0.0.1:80 -r 10.0.1.1:81 -i").1, 2);
        assert!(matches!(
            ok("-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g"),
            Action::Apply(_)
        ));
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.1.1 -m --tun-type ipip"),
            ("Tunnel options conflict with forward method".into(), 2)
        );
    }

    #[test]
    fn clear_zero_set_save_restore() {
        assert_eq!(ok("-C"), Action::Apply(Command::Clear));
        assert_eq!(ok("--clear"), Action::Apply(Command::Clear));
        assert_eq!(ok("-Z"), Action::Apply(Command::Zero(None)));
        assert_eq!(
            ok("--zero -t 10.0.0.1:80"),
            Action::Apply(Command::Zero(Some(tcp("10.0.0.1", 80))))
        );
        assert_eq!(
            ok("--set 900 120 300"),
            Action::Apply(Command::SetTimeouts {
                tcp: 900,
                tcpfin: 120,
                udp: 300
            })
        );
        assert_eq!(
            ok("--set 0 0 60"),
            Action::Apply(Command::SetTimeouts {
                tcp: 0,
                tcpfin: 0,
                udp: 60
            })
        );
        assert_eq!(ok("-S"), Action::Save { numeric: false });
        assert_eq!(ok("-S -n"), Action::Save { numeric: true });
        assert_eq!(ok("--save --numeric"), Action::Save { numeric: true });
        assert_eq!(ok("-Sn"), Action::Save { numeric: true });
        assert_eq!(ok("-R"), Action::Restore);
        assert_eq!(ok("--restore"), Action::Restore);
        assert_eq!(ok("-h"), Action::Help);
        assert_eq!(ok("--help"), Action::Help);
        assert_eq!(ok("-v"), Action::Version);
    }

    #[test]
    fn list_forms() {
        let lo = |f: fn(&mut ListOpts)| {
            let mut o = ListOpts::default();
            f(&mut o);
            o
        };
        assert_eq!(ok("-L"), Action::List(ListWhat::All, ListOpts::default()));
        assert_eq!(ok("-l"), Action::List(ListWhat::All, ListOpts::default()));
        assert_eq!(ok("--list"), Action::List(ListWhat::All, ListOpts::default()));
        let n = lo(|o| o.numeric = true);
        assert_eq!(ok("-Ln"), Action::List(ListWhat::All, n.clone()));
        assert_eq!(ok("-nL"), Action::List(ListWhat::All, n.clone()));
        assert_eq!(ok("-L -n --sort"), Action::List(ListWhat::All, n.clone()));
        assert_eq!(ok("--list --numeric"), Action::List(ListWhat::All, n.clone()));
        assert_eq!(
            ok("-Ln --stats"),
            Action::List(
                ListWhat::All,
                lo(|o| {
                    o.numeric = true;
                    o.stats = true
                })
            )
        );
        assert_eq!(
            ok("-L -n --rate --exact"),
            Action::List(
                ListWhat::All,
                lo(|o| {
                    o.numeric = true;
                    o.rate = true;
                    o.exact = true
                })
            )
        );
        assert_eq!(
            ok("-LnX --thresholds --nosort"),
            Action::List(
                ListWhat::All,
                lo(|o| {
                    o.numeric = true;
                    o.exact = true;
                    o.thresholds = true;
                    o.nosort = true
                })
            )
        );
        assert_eq!(
            ok("-L --persistent-conn --tun-info --json"),
            Action::List(
                ListWhat::All,
                lo(|o| {
                    o.persistent_conn = true;
                    o.tun_info = true;
                    o.json = true
                })
            )
        );
        assert_eq!(ok("-Lnc"), Action::List(ListWhat::Conns, n.clone()));
        assert_eq!(ok("-L -c -n"), Action::List(ListWhat::Conns, n.clone()));
        assert_eq!(
            ok("--list --connection"),
            Action::List(ListWhat::Conns, ListOpts::default())
        );
        assert_eq!(
            ok("-L --timeout"),
            Action::List(ListWhat::Timeouts, ListOpts::default())
        );
        assert_eq!(
            ok("-L --latency"),
            Action::List(ListWhat::Latency, ListOpts::default())
        );
        assert_eq!(
            ok("--latency"),
            Action::List(ListWhat::Latency, ListOpts::default())
        );
        assert_eq!(
            ok("--kernel"),
            Action::List(ListWhat::Kernel, ListOpts::default())
        );
        let json = ListOpts {
            json: true,
            ..ListOpts::default()
        };
        assert_eq!(ok("-L --kernel --json"), Action::List(ListWhat::Kernel, json));
        assert_eq!(
            ok("-Ln -t 10.0.0.1:80"),
            Action::List(ListWhat::Service(tcp("10.0.0.1", 80)), n)
        );
    }

    #[test]
    fn ipvsadm_error_messages_and_codes() {
        let cases: &[(&str, &str, i32)] = &[
            (
                "-A",
                "You need to supply the 'service-address' option for the 'add-service' command",
                2,
            ),
            (
                "-a -t 10.0.0.1:80",
                "You need to supply the 'real-server' option for the 'add-server' command",
                2,
            ),
            (
                "-d -r 10.0.1.1",
                "You need to supply the 'service-address' option for the 'delete-server' command",
                2,
            ),
            (
                "-A -t 10.0.0.1:80 -w 3",
                "Illegal 'weight' option with the 'add-service' command",
                2,
            ),
            (
                "-D -t 10.0.0.1:80 -s rr",
                "Illegal 'scheduler' option with the 'delete-service' command",
                2,
            ),
            ("-C -n", "Illegal 'numeric' option with the 'flush' command", 2),
            (
                "-d -t 10.0.0.1:80 -r 10.0.1.1 -w 2",
                "Illegal 'weight' option with the 'delete-server' command",
                2,
            ),
            (
                "--set 1 2 3 -n",
                "Illegal 'numeric' option with the 'set' command",
                2,
            ),
            ("-S --stats", "Illegal 'stats' option with the 'save' command", 2),
            (
                "-L -s rr",
                "Illegal 'scheduler' option with the 'list' command",
                2,
            ),
            ("-R -n", "Illegal 'numeric' option with the 'restore' command", 2),
            ("-Z -n", "Illegal 'numeric' option with the 'zero' command", 2),
            (
                "-L -c --timeout",
                "The option 'timeout' conflicts with the 'connection' option in the 'list' command",
                2,
            ),
            (
                "-L -c -t 10.0.0.1:80",
                "The option 'service-address' conflicts with the 'connection' option in the 'list' command",
                2,
            ),
            (
                "-L --timeout --latency",
                "The option 'latency' conflicts with the 'timeout' option in the 'list' command",
                2,
            ),
            ("-L -c --stats", "options conflicts in the list command", 2),
            ("-L --latency --rate", "options conflicts in the list command", 2),
            ("--kernel --stats", "options conflicts in the list command", 2),
            (
                "--kernel --drops",
                "The option 'kernel' conflicts with the 'drops' option in the 'list' command",
                2,
            ),
            (
                "-A -t 10.0.0.1:80 --kernel",
                "Illegal 'kernel' option with the 'add-service' command",
                2,
            ),
            ("-A -D", "multiple commands specified", 2),
            ("-L -l", "multiple commands specified", 2),
            ("-Ln -n", "multiple 'numeric' options specified", 2),
            (
                "-A -t 10.0.0.1:80 -t 10.0.0.2:80",
                "multiple 'service-address' options specified",
                2,
            ),
            (
                "-A -t 10.0.0.1:80 -m",
                "Illegal 'forwarding-method' option with the 'add-service' command",
                2,
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.1.1 -m -g",
                "multiple 'forwarding-method' options specified",
                2,
            ),
            ("-A -t 10.0.0.1:80 -p 0", "invalid timeout value `0' specified", 2),
            (
                "-A -t 10.0.0.1:80 -p 2678401",
                "invalid timeout value `2678401' specified",
                2,
            ),
            (
                "-A -t 10.0.0.1:80 -p abc",
                "invalid timeout value `abc' specified",
                2,
            ),
            (
                "-A -t 10.0.0.1:0",
                "Zero port specified for non-persistent service",
                2,
            ),
            (
                "-A -t 10.0.0.1",
                "Zero port specified for non-persistent service",
                2,
            ),
            ("-A -t 80", "illegal virtual server address[:port] specified", 2),
            (
                "-A -t 10.0.0.300:80",
                "illegal virtual server address[:port] specified",
                2,
            ),
            (
                "-A -t 10.0.0.1:65536",
                "illegal virtual server address[:port] specified",
                2,
            ),
            (
                "-A -t 10.0.0.1:nosuchport",
                "illegal virtual server address[:port] specified",
                2,
            ),
            (
                "-A -t 10.0.0.1:80 -M 255.255.255.999",
                "illegal virtual server persistent mask specified",
                2,
            ),
            (
                "-a -t 10.0.0.1:80 -r bogus",
                "illegal real server address[:port] specified",
                2,
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.1.1 -w 65536",
                "illegal weight specified",
                2,
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.1.1 -w -1",
                "illegal weight specified",
                2,
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.1.1 -x 2147483648",
                "illegal u_threshold specified",
                2,
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.1.1 -y abc",
                "illegal l_threshold specified",
                2,
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type xyz",
                "illegal tunnel type specified",
                2,
            ),
            ("--set 1 2", "--set option requires 3 timeout values", 2),
            ("--set 1 2 x", "invalid timeout value `x' specified", 2),
            ("--set 1 2 3 4", "unexpected argument 4", 2),
            ("-L foo", "unexpected argument foo", 2),
            ("-n", TRY_HELP, 255),
            ("-t 10.0.0.1:80", TRY_HELP, 255),
            ("-L --bogus", "--bogus: unknown option", 255),
            ("-Lq", "-q: unknown option", 255),
            ("-A -t", "-t: missing argument", 255),
            ("-A --tcp-service", "--tcp-service: missing argument", 255),
            (
                "-L --numeric=1",
                "--numeric=1: option does not take an argument",
                255,
            ),
        ];
        for (line, msg, code) in cases {
            assert_eq!(err(line), (msg.to_string(), *code), "{line}");
        }
    }

    #[test]
    fn unsupported_ipvsadm_features_are_named() {
        for line in [
            "-A -f 1",
            "-A --sctp-service 10.0.0.1:80",
            "-A -t 10.0.0.1:80 -o",
            "-A -t 10.0.0.1:80 --pe sip",
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue",
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-port 5555",
        ] {
            let (msg, code) = err(line);
            assert_eq!(code, 2, "{line}");
            assert!(msg.contains("not supported"), "{line}: {msg}");
        }
    }

    #[test]
    fn sync_daemon_commands() {
        let mut m = SyncDaemonSpec::new(DaemonRole::Master, "outside0");
        assert_eq!(
            ok("--start-daemon master --mcast-interface outside0"),
            Action::Apply(Command::StartDaemon(m.clone()))
        );
        m.syncid = 9;
        m.sync_maxlen = 1400;
        m.mcast_group = Some(ip("239.1.2.3"));
        m.mcast_port = 9000;
        m.mcast_ttl = 2;
        assert_eq!(
            ok(
                "--start-daemon=master --mcast-interface=outside0 --syncid 9 --sync-maxlen 1400 \
                --mcast-group 239.1.2.3 --mcast-port 9000 --mcast-ttl 2"
            ),
            Action::Apply(Command::StartDaemon(m))
        );
        let b = SyncDaemonSpec::new(DaemonRole::Backup, "eth1");
        assert_eq!(
            ok("--start-daemon backup --mcast-interface eth1"),
            Action::Apply(Command::StartDaemon(b))
        );
        assert_eq!(
            ok("--stop-daemon backup"),
            Action::Apply(Command::StopDaemon(DaemonRole::Backup))
        );
        assert_eq!(
            ok("-L --daemon"),
            Action::List(ListWhat::Daemons, ListOpts::default())
        );
        for (line, msg) in [
            (
                "--start-daemon primary --mcast-interface x",
                "illegal start-daemon parameter specified",
            ),
            ("--stop-daemon primary", "illegal start_daemon specified"),
            (
                "--start-daemon master --mcast-interface x --syncid 256",
                "illegal syncid specified",
            ),
            (
                "--start-daemon master --mcast-interface x --sync-maxlen 0",
                "illegal sync maxlen specified",
            ),
            (
                "--start-daemon master --mcast-interface x --mcast-group 10.0.0.1",
                "illegal multicast group specified",
            ),
            (
                "--start-daemon master --mcast-interface x --mcast-port 0",
                "illegal multicast port specified",
            ),
            (
                "--start-daemon master --mcast-interface x --mcast-ttl 256",
                "illegal multicast ttl specified",
            ),
            (
                "--start-daemon master",
                "You need to supply the 'mcast-interface' option for the 'start-daemon' command",
            ),
            (
                "--stop-daemon master --syncid 1",
                "Illegal 'syncid' option with the 'stop-daemon' command",
            ),
            (
                "-L -c --daemon",
                "The option 'daemon' conflicts with the 'connection' option in the 'list' command",
            ),
            (
                "-A -t 10.0.0.1:80 --syncid 1",
                "Illegal 'syncid' option with the 'add-service' command",
            ),
        ] {
            assert_eq!(err(line), (msg.to_string(), 2), "{line}");
        }
    }

    #[test]
    fn double_dash_ends_options() {
        assert_eq!(err("-L -- -n"), ("unexpected argument -n".into(), 2));
        assert_eq!(
            ok("--set -- 1 2 3"),
            Action::Apply(Command::SetTimeouts {
                tcp: 1,
                tcpfin: 2,
                udp: 3
            })
        );
    }
}
