//! What rvs-cp wants, read from rvs.toml: the virtual services with their real
//! servers and health checks (keepalived's vocabulary, parsed and validated by
//! `rvs_dp::config`), and rvs-cp's own `[control]` table.
//!
//! # `[control]` keys
//!
//! | key                    | default            | meaning |
//! |------------------------|--------------------|---------|
//! | `metrics_listen`       | `"127.0.0.1:9280"` | address of the `/metrics` HTTP endpoint; `"off"` disables it |
//! | `metrics_allow_remote` | `false`            | must be `true` for a `metrics_listen` that is not loopback |
//! | `histogram_log`        | none               | HdrHistogram interval log (V2, deflate) of packet latency, appended every `stats_interval` |
//! | `stats_interval`       | `1.0`              | seconds between reads of the workers' stats (rates, metrics, log) |
//! | `resync_interval`      | `30.0`             | seconds between full compares of rvs-dp's table with the wanted one (`0` = only on changes) |
//!
//! # Keepalived semantics kept
//!
//! - `lb_algo` is the scheduler, `lb_kind` the default forward method of the
//!   real servers (a real server's own `lb_kind` wins), `persistence_timeout`
//!   is `-p`, `persistence_granularity` `-M`, `sched_flags` `-b`.
//! - A check's `delay_loop` defaults to its virtual server's; `connect_ip` /
//!   `connect_port` to the real server's address and port; `connect_timeout`
//!   to 5 s; `fall` to `retry`, else 1; `rise` to 1; `misc_timeout` to the
//!   check's delay_loop; `delay_before_retry` (the pause after a failed
//!   check) to the delay_loop; HTTP_GET `path` to `/` and `status_code` to
//!   `[200]`.
//! - `inhibit_on_failure` of a real server overrides its virtual server's.
//! - FULLNAT (DPVS's keepalived): `lb_kind = "FNAT"`, the service's local
//!   addresses `laddrs = [{ address, port }]` (its `local_address_group`) and
//!   `client_addr` (`"none"`, `"toa"`, `"proxy-v1"`, `"proxy-v2"`; DPVS's
//!   `proxy_protocol`). Local addresses do not depend on health: they stay
//!   while the service exists.
//!
//! An operator's keepalived.conf (`rvs_cp::keepalived`) loads into the same
//! `CpConfig` through `from_config`, with keepalived's own defaults where
//! they differ from these (start state and `alpha`, `retry`,
//! `delay_before_retry`, `status_code`): its module doc lists them.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rvs_dp::config::{parse_client_addr, parse_endpoint, Config, ConfigError};
use rvs_proto::command::{DestSpec, LaddrSpec, ServiceSpec, SyncDaemonSpec};
use rvs_proto::types::{ForwardMethod, ServiceKey};
use serde::Deserialize;

pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9280";
const DEFAULT_CONNECT_TIMEOUT: f64 = 5.0;

/// A real server's identity: its service and (RIP, port).
pub type RealId = (ServiceKey, Ipv4Addr, u16);

/// rvs-cp's own settings, from `[control]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ControlSettings {
    /// None: no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    pub histogram_log: Option<PathBuf>,
    pub stats_interval: Duration,
    /// Zero: compare with rvs-dp only when something changed.
    pub resync_interval: Duration,
}

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings {
            metrics_listen: DEFAULT_METRICS_LISTEN.parse().ok(),
            histogram_log: None,
            stats_interval: Duration::from_secs(1),
            resync_interval: Duration::from_secs(30),
        }
    }
}

/// The three keepalived checkers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    Tcp,
    Http {
        path: String,
        status_codes: Vec<u16>,
        /// Lowercase MD5 hex of the body (keepalived's genhash).
        digest: Option<String>,
        /// Checked valid when the config was read.
        regex: Option<String>,
    },
    Misc {
        command: String,
        timeout: Duration,
    },
}

impl CheckKind {
    /// keepalived's name of the checker, used in log lines.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "TCP_CHECK",
            CheckKind::Http { .. } => "HTTP_GET",
            CheckKind::Misc { .. } => "MISC_CHECK",
        }
    }
}

/// How a checked real server starts, before its first result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartState {
    /// rvs.toml: DOWN, and its service's quorum is not judged until the
    /// first result (a server that never answered never gets traffic).
    Pending,
    /// keepalived.conf without `alpha`: UP, in the table at once.
    Up,
    /// keepalived.conf with `alpha`: DOWN, and counted as down for quorum.
    Down,
}

/// One health check, every default resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckDef {
    pub kind: CheckKind,
    pub start: StartState,
    pub target: SocketAddrV4,
    pub delay: Duration,
    /// Pause after a failed check before the next one.
    pub retry_delay: Duration,
    pub connect_timeout: Duration,
    pub fall: u32,
    pub rise: u32,
}

/// A real server as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealDef {
    pub dest: DestSpec,
    pub inhibit_on_failure: bool,
    pub check: Option<CheckDef>,
}

/// A virtual service as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDef {
    pub spec: ServiceSpec,
    pub quorum: u32,
    pub hysteresis: u32,
    /// Added (weight 1) while the quorum is lost.
    pub sorry: Option<DestSpec>,
    pub reals: Vec<RealDef>,
    /// FULLNAT local addresses, in the order configured (always in the
    /// service, whatever the health of its real servers).
    pub laddrs: Vec<LaddrSpec>,
}

impl ServiceDef {
    pub fn key(&self) -> ServiceKey {
        self.spec.key()
    }
}

/// Everything rvs-cp takes from the file.
#[derive(Clone, Debug, PartialEq)]
pub struct CpConfig {
    pub control: ControlSettings,
    /// `dataplane.ctl`, below `--ctl` and `$RVS_CTL`.
    pub ctl: Option<PathBuf>,
    pub services: Vec<ServiceDef>,
    /// keepalived.conf's `lvs_sync_daemon`: sync daemons rvs-cp keeps running
    /// in rvs-dp. Empty for rvs.toml, whose `[sync]` rvs-dp starts itself.
    pub sync: Vec<SyncDaemonSpec>,
}

impl CpConfig {
    /// Reads and validates `path` (both rvs-dp's checks and rvs-cp's).
    pub fn load(path: &Path) -> Result<CpConfig, ConfigError> {
        let cfg = Config::load(path)?;
        CpConfig::from_config(&cfg, &path.display().to_string())
    }

    pub fn from_str_named(text: &str, file: &str) -> Result<CpConfig, ConfigError> {
        let cfg = Config::from_str_named(text, file)?;
        CpConfig::from_config(&cfg, file)
    }

    pub fn from_config(cfg: &Config, file: &str) -> Result<CpConfig, ConfigError> {
        let bad = |key: String, problem: String| ConfigError::Invalid {
            file: file.to_string(),
            key,
            problem,
        };
        let control = control_settings(cfg.control.as_ref(), &bad)?;
        let mut services = Vec::new();
        for (i, vs) in cfg.virtual_server.iter().enumerate() {
            let k = |f: &str| format!("virtual_server[{i}] ({}:{}).{f}", vs.address, vs.port);
            // Protocol, lb_kind and sched_flags were validated by Config::load;
            // the spec is built the same way rvs-dp builds it at start.
            let kind: ForwardMethod = vs.lb_kind.parse().map_err(|p| bad(k("lb_kind"), p))?;
            if let Some(c) = &vs.client_addr {
                parse_client_addr(c).map_err(|p| bad(k("client_addr"), p))?;
            }
            let spec = vs.service_spec().map_err(|p| bad(k("protocol"), p))?;
            if let Some(t) = vs.persistence_timeout {
                if t == 0 || t > rvs_proto::command::MAX_TIMEOUT_S {
                    return Err(bad(k("persistence_timeout"), "must be 1..2678400 seconds".into()));
                }
            }
            let check_dest = |d: &DestSpec, what: String| -> Result<(), ConfigError> {
                if matches!(d.method, ForwardMethod::Dr | ForwardMethod::Tun) && d.port != vs.port {
                    return Err(bad(
                        what,
                        format!(
                            "port {} differs from the virtual port {}: only NAT and FNAT can change the port",
                            d.port, vs.port
                        ),
                    ));
                }
                Ok(())
            };
            let sorry = match &vs.sorry_server {
                None => None,
                Some(s) => {
                    let (ip, port) = parse_endpoint(s).map_err(|p| bad(k("sorry_server"), p))?;
                    let d = DestSpec::new(ip, port.unwrap_or(vs.port), kind);
                    check_dest(&d, k("sorry_server"))?;
                    Some(d)
                }
            };
            let mut reals = Vec::new();
            for (j, rs) in vs.real_server.iter().enumerate() {
                let rk = |f: &str| format!("virtual_server[{i}].real_server[{j}] ({}).{f}", rs.address);
                let dest = vs.dest_spec(rs).map_err(|p| bad(rk("lb_kind"), p))?;
                check_dest(&dest, rk("port"))?;
                if dest.l_threshold > dest.u_threshold {
                    return Err(bad(
                        rk("lthreshold"),
                        "needs an uthreshold at least as high (the kernel refuses it otherwise)".into(),
                    ));
                }
                if sorry
                    .as_ref()
                    .is_some_and(|s| s.rip == dest.rip && s.port == dest.port)
                {
                    return Err(bad(rk("address"), "is also the sorry_server".into()));
                }
                let checks = [
                    ("tcp_check", &rs.tcp_check),
                    ("http_get", &rs.http_get),
                    ("misc_check", &rs.misc_check),
                ];
                if checks.iter().filter(|(_, c)| c.is_some()).count() > 1 {
                    return Err(bad(
                        rk("tcp_check"),
                        "at most one health check per real server".into(),
                    ));
                }
                let mut check = None;
                for (name, c) in checks {
                    if let Some(c) = c {
                        let ck = |f: &str| rk(&format!("{name}.{f}"));
                        let c = CheckConfig::deserialize(toml::Value::Table(c.clone()))
                            .map_err(|e| bad(rk(name), e.message().to_string()))?;
                        check = Some(check_def(name, &c, &dest, vs.delay_loop, &ck, &bad)?);
                    }
                }
                reals.push(RealDef {
                    dest,
                    inhibit_on_failure: rs.inhibit_on_failure.unwrap_or(vs.inhibit_on_failure),
                    check,
                });
            }
            services.push(ServiceDef {
                spec,
                quorum: vs.quorum,
                hysteresis: vs.hysteresis,
                sorry,
                reals,
                laddrs: vs.laddr_specs(),
            });
        }
        Ok(CpConfig {
            control,
            ctl: cfg.dataplane.ctl.clone(),
            services,
            sync: Vec::new(),
        })
    }

    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceDef> {
        self.services.iter().find(|s| s.key() == *key)
    }

    /// Every real server by identity.
    pub fn reals(&self) -> BTreeMap<RealId, &RealDef> {
        let mut m = BTreeMap::new();
        for s in &self.services {
            for r in &s.reals {
                m.insert((s.key(), r.dest.rip, r.dest.port), r);
            }
        }
        m
    }
}

fn seconds(
    v: Option<f64>,
    default: f64,
    key: &str,
    bad: &dyn Fn(String, String) -> ConfigError,
) -> Result<Duration, ConfigError> {
    let s = v.unwrap_or(default);
    if !s.is_finite() || s <= 0.0 || s > 86400.0 {
        return Err(bad(
            key.to_string(),
            "must be a number of seconds in (0, 86400]".into(),
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

/// Health-check settings, shared by the three kinds.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    pub connect_ip: Option<Ipv4Addr>,
    pub connect_port: Option<u16>,
    pub connect_timeout: Option<f64>,
    pub delay_loop: Option<f64>,
    /// Failures in a row before a server is taken out (keepalived's `retry`/fall).
    pub retry: Option<u32>,
    pub fall: Option<u32>,
    /// Successes in a row before it is put back.
    pub rise: Option<u32>,
    pub delay_before_retry: Option<f64>,
    // HTTP_GET
    pub path: Option<String>,
    pub status_code: Option<Vec<u16>>,
    pub digest: Option<String>,
    pub regex: Option<String>,
    // MISC_CHECK
    pub misc_path: Option<String>,
    pub misc_timeout: Option<f64>,
}

fn check_def(
    name: &str,
    c: &CheckConfig,
    dest: &DestSpec,
    vs_delay: f64,
    key: &dyn Fn(&str) -> String,
    bad: &dyn Fn(String, String) -> ConfigError,
) -> Result<CheckDef, ConfigError> {
    if name == "misc_check" && c.misc_path.as_deref().unwrap_or("").is_empty() {
        return Err(bad(key("misc_path"), "is required".into()));
    }
    if name == "http_get" && c.path.as_ref().is_some_and(|p| !p.starts_with('/')) {
        return Err(bad(key("path"), "must start with '/'".into()));
    }
    let delay = seconds(c.delay_loop, vs_delay, &key("delay_loop"), bad)?;
    let retry_delay = match c.delay_before_retry {
        Some(d) => seconds(Some(d), 0.0, &key("delay_before_retry"), bad)?,
        None => delay,
    };
    let connect_timeout = seconds(
        c.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
        &key("connect_timeout"),
        bad,
    )?;
    let fall = c.fall.or(c.retry).unwrap_or(1);
    if fall == 0 {
        return Err(bad(
            key(if c.fall.is_some() { "fall" } else { "retry" }),
            "must be at least 1".into(),
        ));
    }
    let rise = c.rise.unwrap_or(1);
    if rise == 0 {
        return Err(bad(key("rise"), "must be at least 1".into()));
    }
    let port = c.connect_port.unwrap_or(dest.port);
    if port == 0 {
        return Err(bad(
            key("connect_port"),
            "is needed: the real server has port 0 (persistent service on every port)".into(),
        ));
    }
    let target = SocketAddrV4::new(c.connect_ip.unwrap_or(dest.rip), port);
    let kind = match name {
        "tcp_check" => CheckKind::Tcp,
        "http_get" => {
            let digest = match &c.digest {
                None => None,
                Some(d) => {
                    let d = d.trim().to_ascii_lowercase();
                    if d.len() != 32 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(bad(
                            key("digest"),
                            "must be an MD5 in hex (32 digits, as genhash prints)".into(),
                        ));
                    }
                    Some(d)
                }
            };
            if let Some(r) = &c.regex {
                regex::Regex::new(r).map_err(|e| bad(key("regex"), format!("invalid regex: {e}")))?;
            }
            let status_codes = c.status_code.clone().unwrap_or_else(|| vec![200]);
            if status_codes.is_empty() || status_codes.iter().any(|s| !(100..=599).contains(s)) {
                return Err(bad(
                    key("status_code"),
                    "must list HTTP status codes (100..599)".into(),
                ));
            }
            CheckKind::Http {
                path: c.path.clone().unwrap_or_else(|| "/".into()),
                status_codes,
                digest,
                regex: c.regex.clone(),
            }
        }
        _ => CheckKind::Misc {
            command: c.misc_path.clone().unwrap_or_default(),
            timeout: match c.misc_timeout {
                Some(t) => seconds(Some(t), 0.0, &key("misc_timeout"), bad)?,
                None => delay,
            },
        },
    };
    Ok(CheckDef {
        kind,
        start: StartState::Pending,
        target,
        delay,
        retry_delay,
        connect_timeout,
        fall,
        rise,
    })
}

fn control_settings(
    table: Option<&toml::Table>,
    bad: &dyn Fn(String, String) -> ConfigError,
) -> Result<ControlSettings, ConfigError> {
    let mut s = ControlSettings::default();
    let Some(t) = table else {
        return Ok(s);
    };
    let num = |k: &str, v: &toml::Value| -> Result<f64, ConfigError> {
        match v {
            toml::Value::Float(f) => Ok(*f),
            toml::Value::Integer(i) => Ok(*i as f64),
            _ => Err(bad(format!("control.{k}"), "must be a number of seconds".into())),
        }
    };
    let mut allow_remote = false;
    for (k, v) in t {
        let key = format!("control.{k}");
        match k.as_str() {
            "metrics_listen" => {
                let text = v
                    .as_str()
                    .ok_or_else(|| bad(key.clone(), "must be a string such as \"127.0.0.1:9280\" or \"off\"".into()))?;
                s.metrics_listen = if text == "off" {
                    None
                } else {
                    Some(text.parse().map_err(|_| {
                        bad(key.clone(), format!("'{text}' is not an ADDRESS:PORT (or \"off\")"))
                    })?)
                };
            }
            "metrics_allow_remote" => {
                allow_remote = v.as_bool().ok_or_else(|| bad(key.clone(), "must be true or false".into()))?;
            }
            "histogram_log" => {
                let p = v.as_str().ok_or_else(|| bad(key.clone(), "must be a file path".into()))?;
                if p.is_empty() {
                    return Err(bad(key, "must be a file path".into()));
                }
                s.histogram_log = Some(PathBuf::from(p));
            }
            "stats_interval" => {
                s.stats_interval = seconds(Some(num(k, v)?), 0.0, &key, bad)?;
            }
            "resync_interval" => {
                let f = num(k, v)?;
                s.resync_interval = if f == 0.0 {
                    Duration::ZERO
                } else {
                    seconds(Some(f), 0.0, &key, bad)?
                };
            }
            _ => {
                return Err(bad(
                    key,
                    "unknown key (known: metrics_listen, metrics_allow_remote, histogram_log, stats_interval, resync_interval)"
                        .into(),
                ))
            }
        }
    }
    if let Some(a) = s.metrics_listen {
        if !a.ip().is_loopback() && !allow_remote {
            return Err(bad(
                "control.metrics_listen".into(),
                format!("{a} is not a loopback address: set metrics_allow_remote = true to expose /metrics"),
            ));
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[control]
metrics_listen = "127.0.0.1:0"
stats_interval = 0.5
histogram_log = "/tmp/x.hlog"

[[virtual_server]]
address = "10.1.0.100"
port = 80
lb_algo = "wrr"
lb_kind = "DR"
persistence_timeout = 600
persistence_granularity = "255.255.255.0"
delay_loop = 2.0
quorum = 2
sorry_server = "10.2.0.99 80"

[[virtual_server.real_server]]
address = "10.2.0.11"
weight = 3
uthreshold = 100
lthreshold = 50
[virtual_server.real_server.http_get]
path = "/health"
retry = 3
digest = "D41D8CD98F00B204E9800998ECF8427E"

[[virtual_server.real_server]]
address = "10.2.0.12"
port = 8080
lb_kind = "NAT"
inhibit_on_failure = true
[virtual_server.real_server.tcp_check]
connect_port = 9000
delay_loop = 0.25
fall = 2
rise = 3
"#;

    #[test]
    fn keepalived_semantics_map_to_ipvs() {
        let c = CpConfig::from_str_named(CFG, "rvs.toml").unwrap();
        assert_eq!(c.control.stats_interval, Duration::from_millis(500));
        assert_eq!(c.control.histogram_log, Some(PathBuf::from("/tmp/x.hlog")));
        let s = &c.services[0];
        assert_eq!(s.spec.scheduler, "wrr");
        assert_eq!(s.spec.persistence, Some(600));
        assert_eq!(s.spec.netmask, Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(s.quorum, 2);
        let sorry = s.sorry.as_ref().unwrap();
        assert_eq!(
            (sorry.rip, sorry.port, sorry.weight),
            (Ipv4Addr::new(10, 2, 0, 99), 80, 1)
        );
        let r0 = &s.reals[0];
        assert_eq!(r0.dest.method, ForwardMethod::Dr);
        assert_eq!(
            (r0.dest.weight, r0.dest.u_threshold, r0.dest.l_threshold),
            (3, 100, 50)
        );
        assert!(!r0.inhibit_on_failure);
        let ch = r0.check.as_ref().unwrap();
        assert_eq!(ch.fall, 3, "retry is HTTP_GET's fall");
        assert_eq!(
            ch.delay,
            Duration::from_secs(2),
            "delay_loop from the virtual server"
        );
        assert_eq!(ch.connect_timeout, Duration::from_secs(5));
        assert_eq!(ch.target, "10.2.0.11:80".parse().unwrap());
        match &ch.kind {
            CheckKind::Http {
                path,
                status_codes,
                digest,
                ..
            } => {
                assert_eq!(path, "/health");
                assert_eq!(status_codes, &vec![200]);
                assert_eq!(digest.as_deref(), Some("d41d8cd98f00b204e9800998ecf8427e"));
            }
            k => panic!("{k:?}"),
        }
        let r1 = &s.reals[1];
        assert_eq!((r1.dest.method, r1.dest.port), (ForwardMethod::Nat, 8080));
        assert!(r1.inhibit_on_failure);
        let ch = r1.check.as_ref().unwrap();
        assert_eq!((ch.fall, ch.rise), (2, 3));
        assert_eq!(ch.target, "10.2.0.12:9000".parse().unwrap());
        assert_eq!(ch.delay, Duration::from_millis(250));
    }

    fn err(text: &str) -> String {
        CpConfig::from_str_named(text, "rvs.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_values_are_named() {
        let e = err(&CFG.replace("\"127.0.0.1:0\"", "\"0.0.0.0:9280\""));
        assert!(
            e.contains("control.metrics_listen") && e.contains("loopback"),
            "{e}"
        );
        let ok = CFG.replace("\"127.0.0.1:0\"", "\"0.0.0.0:9280\"\nmetrics_allow_remote = true");
        assert!(CpConfig::from_str_named(&ok, "rvs.toml").is_ok());
        let e = err(&CFG.replace("stats_interval = 0.5", "stats_intervall = 0.5"));
        assert!(e.contains("control.stats_intervall: unknown key"), "{e}");
        let e = err(&CFG.replace("stats_interval = 0.5", "stats_interval = -1"));
        assert!(e.contains("control.stats_interval"), "{e}");
        let e = err(&CFG.replace("D41D8CD98F00B204E9800998ECF8427E", "xyz"));
        assert!(e.contains("http_get.digest"), "{e}");
        let e = err(&CFG.replace("path = \"/health\"", "path = \"/health\"\nregex = \"(\""));
        assert!(e.contains("http_get.regex: invalid regex"), "{e}");
        let e = err(&CFG.replace("fall = 2", "fall = 0"));
        assert!(e.contains("tcp_check.fall"), "{e}");
        let e = err(&CFG.replace("\"10.2.0.99 80\"", "\"10.2.0.99 81\""));
        assert!(e.contains("sorry_server") && e.contains("only NAT"), "{e}");
        assert!(e.starts_with("rvs.toml: "), "{e}");
    }

    /// The health-check schema is rvs-cp's alone (rvs-dp only accepts the
    /// keys), so its checks must all be made here.
    #[test]
    fn health_check_schema_is_checked_by_rvs_cp() {
        let e = err(&CFG.replace("fall = 2", "fall = 2\nfalls = 3"));
        assert!(
            e.contains("tcp_check") && e.contains("unknown field `falls`"),
            "{e}"
        );
        let e = err(&CFG.replace("[virtual_server.real_server.http_get]", "[virtual_server.real_server.misc_check]\nmisc_timeout = 1.0\n[virtual_server.real_server.http_get]"));
        assert!(e.contains("at most one health check"), "{e}");
        let e = err(&CFG.replace("path = \"/health\"", "path = \"health\""));
        assert!(e.contains("http_get.path: must start with '/'"), "{e}");
        let e = err(&CFG.replace("[virtual_server.real_server.http_get]", "[virtual_server.real_server.misc_check]\nmisc_timeout = 1.0\n[virtual_server.real_server.http_getx]"));
        assert!(e.contains("http_getx"), "{e}");
        let e = err(&CFG.replace(
            "[virtual_server.real_server.tcp_check]",
            "[virtual_server.real_server.misc_check]",
        ));
        assert!(e.contains("misc_check.misc_path: is required"), "{e}");
        // rvs-dp, which runs no check, still reads the same file.
        assert!(rvs_dp::config::Config::from_str_named(CFG, "rvs.toml").is_ok());
    }

    const FNAT: &str = r#"
[[port]]
name = "outside"
device = "net_af_packet0,iface=veth0"
address = "10.1.0.1/24"
[[port]]
name = "inside"
device = "net_af_packet1,iface=veth1"
address = "10.2.0.1/24"

[[virtual_server]]
address = "10.1.0.100"
port = 80
lb_algo = "wrr"
lb_kind = "FNAT"
client_addr = "proxy-v2"
laddrs = [{ address = "10.2.0.201", port = "inside" }, { address = "10.2.0.202", port = "inside" }]
[[virtual_server.real_server]]
address = "10.2.0.11"
port = 8080
weight = 3

[[virtual_server]]
address = "10.1.0.100"
port = 53
protocol = "UDP"
lb_kind = "fullnat"
[[virtual_server.laddrs]]
address = "10.1.0.203"
port = "outside"
[[virtual_server.real_server]]
address = "10.2.0.11"
"#;

    /// FULLNAT in rvs.toml: FNAT real servers (which may change the port),
    /// the client address mode and the local addresses, in order.
    #[test]
    fn fullnat_services_carry_laddrs_and_client_addr() {
        use rvs_proto::command::ClientAddr;
        let c = CpConfig::from_str_named(FNAT, "rvs.toml").unwrap();
        let web = &c.services[0];
        assert_eq!(web.spec.client_addr, ClientAddr::ProxyV2);
        assert_eq!(web.reals[0].dest.method, ForwardMethod::FullNat);
        assert_eq!(web.reals[0].dest.port, 8080);
        let lips: Vec<(String, &str)> = (web.laddrs.iter())
            .map(|l| (l.addr.to_string(), l.port_name.as_str()))
            .collect();
        assert_eq!(
            lips,
            [("10.2.0.201".into(), "inside"), ("10.2.0.202".into(), "inside")]
        );
        let dns = &c.services[1];
        assert_eq!(dns.spec.client_addr, ClientAddr::None);
        assert_eq!(dns.reals[0].dest.method, ForwardMethod::FullNat);
        assert_eq!(dns.laddrs[0].port_name, "outside");
        // rvs-dp applies the same at start: the local addresses are in its commands.
        let dp = rvs_dp::config::Config::from_str_named(FNAT, "rvs.toml").unwrap();
        let adds = (dp.ipvs_commands().unwrap().into_iter())
            .filter(|(_, c)| matches!(c, rvs_proto::command::Command::AddLaddr(..)))
            .count();
        assert_eq!(adds, 3);
    }

    #[test]
    fn fullnat_errors_name_the_key() {
        let e = err(&FNAT.replace("\"proxy-v2\"", "\"proxy-v3\""));
        assert_eq!(
            e,
            "rvs.toml: virtual_server[0] (10.1.0.100:80).client_addr: unknown client_addr 'proxy-v3' (none, toa, proxy-v1 or proxy-v2)"
        );
        let e = err(&FNAT.replace("port = \"outside\"", "port = \"dmz\""));
        assert_eq!(
            e,
            "rvs.toml: virtual_server[1] (10.1.0.100:53).laddrs[0] (10.1.0.203).port: no [[port]] is named 'dmz'"
        );
        let e = err(&FNAT.replace("10.2.0.202", "10.3.0.202"));
        assert!(
            e.contains("virtual_server[0] (10.1.0.100:80).laddrs[1] (10.3.0.202).address")
                && e.contains("not on port 'inside''s subnet 10.2.0.1/24"),
            "{e}"
        );
        // One service per local address (the model's rule), named by key.
        let e = err(&FNAT.replace(
            "10.1.0.203\"\nport = \"outside\"",
            "10.2.0.201\"\nport = \"inside\"",
        ));
        assert!(
            e.contains("virtual_server[1] (10.1.0.100:53).laddrs[0] (10.2.0.201)")
                && e.contains("already used by service TCP 10.1.0.100:80"),
            "{e}"
        );
        let e = err(&FNAT.replace(
            "lb_kind = \"fullnat\"",
            "lb_kind = \"fullnat\"\nclient_addr = \"toa\"",
        ));
        assert!(e.contains("TCP only, not UDP"), "{e}");
        let e = err(&FNAT.replace("lb_kind = \"FNAT\"", "lb_kind = \"NAT\""));
        assert!(
            e.contains("virtual_server[0].real_server[0] (10.2.0.11)")
                && e.contains("need FULLNAT (-b) real servers"),
            "{e}"
        );
        let e = err(&FNAT.replace(
            "laddrs = [{ address = \"10.2.0.201\", port = \"inside\" }",
            "laddrs = [{ address = \"10.2.0.201\", port = \"inside\", weight = 1 }",
        ));
        assert!(e.contains("unknown field `weight`"), "{e}");
        let e = err(&FNAT.replace("lb_kind = \"FNAT\"", "lb_kind = \"SNAT\""));
        assert!(e.contains("lb_kind") && e.contains("fnat"), "{e}");
    }
}
