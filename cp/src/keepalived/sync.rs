//! `lvs_sync_daemon` in `global_defs`: the connection sync daemons rvs-cp
//! starts in rvs-dp (`Command::StartDaemon`, as `rvsadm --start-daemon`).
//!
//! ```text
//! lvs_sync_daemon IF VRRP_INSTANCE [id N] [maxlen L] [port P] [ttl T] [group A]
//! ```
//!
//! As keepalived.conf(5): IF is the interface the sync traffic rides (for
//! rvs, a kernel interface of the exception path, e.g. `outside0`), the
//! instance must be a `vrrp_instance` of the file, and `id` defaults to that
//! instance's `virtual_router_id`.
//!
//! Where rvs-cp differs from keepalived: keepalived runs the master daemon
//! while the instance is MASTER and the backup daemon while it is BACKUP;
//! rvs-cp does not see VRRP states (keepalived --vrrp runs apart), so it
//! starts both roles on every director, which IPVS allows: the director that
//! forwards sends, the other installs what it receives.
//!
//! An rvs extension beside it, in `global_defs`:
//!
//! ```text
//! sync_peer ADDR [ADDR ...]
//! ```
//!
//! The source addresses the backup daemon accepts sync messages from (rvs.toml's
//! `[sync.backup] peers`): a datagram from any other source is counted
//! (`foreign_peer`) and ignored. Without it, any source is accepted, as with
//! IPVS. It may be given on several lines (they add up) and needs an
//! `lvs_sync_daemon`. keepalived does not know it: hide it as
//! `@rvs sync_peer ...` with `rvs-cp --config-id rvs`, as `lvs_sync_daemon`.
//!
//! Also skipped in `global_defs`: everything else (VRRP's and mail's settings).

use std::net::Ipv4Addr;

use rvs_proto::command::{DaemonRole, SyncDaemonSpec};

use super::diag::KeepalivedError;
use super::parse::Stmt;

/// The largest `maxlen`: a UDP payload in one IPv4 datagram.
const MAX_MAXLEN: u32 = 65507;

/// The sync daemons `global_defs` asks for: none, or master and backup with
/// the same settings.
pub fn sync_daemons(top: &[Stmt]) -> Result<Vec<SyncDaemonSpec>, KeepalivedError> {
    let mut found: Option<&Stmt> = None;
    let mut peers: Vec<Ipv4Addr> = Vec::new();
    let mut peer_stmt: Option<&Stmt> = None;
    for g in top.iter().filter(|s| s.name() == "global_defs") {
        for s in g.block.as_deref().unwrap_or(&[]) {
            if s.name() == "sync_peer" {
                parse_peers(s, &mut peers)?;
                peer_stmt = peer_stmt.or(Some(s));
                continue;
            }
            if s.name() != "lvs_sync_daemon" {
                continue;
            }
            if let Some(first) = found {
                return Err(err(
                    s,
                    format!("lvs_sync_daemon is already given at {}", first.loc()),
                ));
            }
            found = Some(s);
        }
    }
    let Some(s) = found else {
        return match peer_stmt {
            Some(p) => Err(err(
                p,
                "sync_peer without lvs_sync_daemon: it filters what the backup sync daemon receives",
            )),
            None => Ok(Vec::new()),
        };
    };
    let spec = parse(s, top)?;
    let mut backup = spec.clone();
    backup.role = DaemonRole::Backup;
    backup.peers = peers;
    Ok(vec![spec, backup])
}

/// One `sync_peer` line's addresses, added to `peers` (each once).
fn parse_peers(s: &Stmt, peers: &mut Vec<Ipv4Addr>) -> Result<(), KeepalivedError> {
    if s.block.is_some() {
        return Err(err(s, "sync_peer takes no { } block"));
    }
    if s.args.is_empty() {
        return Err(err(
            s,
            "sync_peer needs at least one address: sync_peer ADDR [ADDR ...]",
        ));
    }
    for w in &s.args {
        let a: Ipv4Addr = w
            .text
            .parse()
            .map_err(|_| err(s, format!("sync_peer: '{}' is not an IPv4 address", w.text)))?;
        if a.is_unspecified() || a.is_multicast() || a.is_broadcast() {
            return Err(err(s, format!("sync_peer: {a} is no director's address")));
        }
        if !peers.contains(&a) {
            peers.push(a);
        }
    }
    Ok(())
}

fn err(s: &Stmt, msg: impl Into<String>) -> KeepalivedError {
    KeepalivedError::at(s.loc(), msg)
}

/// One `lvs_sync_daemon` line, as its master's spec.
fn parse(s: &Stmt, top: &[Stmt]) -> Result<SyncDaemonSpec, KeepalivedError> {
    let words: Vec<&str> = s.args.iter().map(|w| w.text.as_str()).collect();
    let [ifname, instance, opts @ ..] = words.as_slice() else {
        return Err(err(
            s,
            "lvs_sync_daemon needs an interface and a vrrp_instance: lvs_sync_daemon IF VI_1 [id N] [maxlen L] [port P] [ttl T] [group A]",
        ));
    };
    if s.block.is_some() {
        return Err(err(s, "lvs_sync_daemon takes no { } block"));
    }
    let mut spec = SyncDaemonSpec::new(DaemonRole::Master, ifname);
    let mut id = None;
    let mut it = opts.iter();
    while let Some(key) = it.next() {
        let Some(val) = it.next() else {
            return Err(err(s, format!("lvs_sync_daemon: '{key}' needs a value")));
        };
        let range = |lo: u32, hi: u32| {
            val.parse::<u32>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| {
                    err(
                        s,
                        format!("lvs_sync_daemon: {key} '{val}' is not a whole number {lo}..{hi}"),
                    )
                })
        };
        match *key {
            "id" => id = Some(range(0, 255)? as u8),
            "maxlen" => spec.sync_maxlen = range(1, MAX_MAXLEN)?,
            "port" => spec.mcast_port = range(1, 65535)? as u16,
            "ttl" => spec.mcast_ttl = range(1, 255)? as u8,
            "group" => {
                let a: Ipv4Addr = val.parse().map_err(|_| {
                    err(
                        s,
                        format!("lvs_sync_daemon: group '{val}' is not an IPv4 address"),
                    )
                })?;
                if !a.is_multicast() {
                    return Err(err(
                        s,
                        format!("lvs_sync_daemon: group {a} is not a multicast group"),
                    ));
                }
                spec.mcast_group = Some(a);
            }
            other => {
                return Err(err(
                    s,
                    format!("lvs_sync_daemon: unknown option '{other}' (id, maxlen, port, ttl, group)"),
                ))
            }
        }
    }
    spec.syncid = match id {
        Some(n) => n,
        None => vrid_of(instance, top).ok_or_else(|| {
            err(
                s,
                format!("lvs_sync_daemon: no vrrp_instance {instance} with a virtual_router_id in the file (the default id is its virtual_router_id)"),
            )
        })?,
    };
    if id.is_some() && !top.iter().any(|t| is_instance(t, instance)) {
        return Err(err(
            s,
            format!("lvs_sync_daemon: no vrrp_instance {instance} in the file"),
        ));
    }
    Ok(spec)
}

fn is_instance(t: &Stmt, name: &str) -> bool {
    t.name() == "vrrp_instance" && t.args.first().is_some_and(|a| a.text == name)
}

/// The `virtual_router_id` of `vrrp_instance NAME`, if it is in 0..=255.
fn vrid_of(name: &str, top: &[Stmt]) -> Option<u8> {
    top.iter()
        .filter(|t| is_instance(t, name))
        .flat_map(|t| t.block.as_deref().unwrap_or(&[]))
        .find(|s| s.name() == "virtual_router_id")
        .and_then(|s| s.args.first())
        .and_then(|a| a.text.parse::<u8>().ok())
}
