//! The worker's side of sync, run between bursts (`worker_tick`): switch the master
//! tap on or off as the hub says, publish its counters, install the entries the
//! backup thread (or a full resync, `bulk`) routed to this worker, and answer a full
//! resync's listing (`hub::SyncDump`).
//!
//! An entry is installed bound to the real server this director has configured for
//! it, with that server's forwarding method (as a kernel backup does), or refused and
//! counted: no virtual service for its VIP:port, no such real server in it, a
//! template for a service without persistence, a real server this director
//! forwards by FULLNAT (sync v1 carries no local address, so the entry could
//! not be rebuilt: the sending side does not send FULLNAT entries either), or
//! a full table. Installing is one table operation: an entry is either wholly
//! there or not at all. A SYN-proxied connection's shift is set with it, before
//! any packet of it is forwarded here.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::event::SyncEvent;
use super::hub::SyncHub;
use super::threshold::SyncTap;
use crate::conn::{FlowKey, NewConn, NewTemplate, TcpState, Timeouts};
use crate::core::{synced_shift, Forwarder};
use crate::service::{Proto, ServiceTable};

/// Entries installed per tick at most, so a burst of sync traffic cannot hold a
/// worker off its queues for long (the rest wait in the ring for the next tick).
pub const INSTALL_BUDGET: usize = 1024;

/// Why a received entry was kept out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    UnknownService,
    UnknownDest,
    /// The real server is FULLNAT here: no local address to install it with.
    FullNat,
    TableFull,
}

/// What became of an installed entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Installed {
    New,
    Updated,
}

/// Installs one received entry in `fwd`'s table.
pub fn install(fwd: &mut Forwarder, e: &SyncEvent) -> Result<Installed, Refused> {
    let snap = fwd.services().clone();
    let timeouts = fwd.shared().timeouts.load_full();
    install_with(fwd, &snap, &timeouts, e)
}

/// `install` with the service table and timeouts already loaded (once per batch).
fn install_with(
    fwd: &mut Forwarder,
    snap: &ServiceTable,
    timeouts: &Timeouts,
    e: &SyncEvent,
) -> Result<Installed, Refused> {
    let svc = snap
        .lookup(e.proto, e.vip, e.vport)
        .and_then(|i| snap.get(i))
        .ok_or(Refused::UnknownService)?;
    // A port-0 service's real servers have port 0 and keep the client's port.
    let d = svc
        .dests
        .iter()
        .find(|d| d.rip == e.rip && (d.port == e.rport || d.port == 0))
        .ok_or(Refused::UnknownDest)?;
    if d.method == crate::service::ForwardMethod::FullNat {
        return Err(Refused::FullNat);
    }
    let now = fwd.now();
    let r = if e.is_template() {
        let p = svc.persistence.ok_or(Refused::UnknownService)?;
        let timeout = if e.timeout == 0 { p.timeout_s } else { e.timeout };
        fwd.conns.install_synced_template(
            NewTemplate {
                flow: FlowKey::new(e.proto, e.cip, e.cport, e.vip, e.vport),
                rip: e.rip,
                rport: e.rport,
                method: d.method,
                dest: Some(d.stats.clone()),
            },
            timeout,
            now,
        )
    } else {
        let state = e.tcp_state();
        let timeout = match (e.timeout, e.proto) {
            (0, Proto::Tcp) => timeouts.tcp(state),
            (0, Proto::Udp) => timeouts.udp,
            (t, _) => t,
        };
        fwd.conns.install_synced(
            NewConn {
                flow: FlowKey::new(e.proto, e.cip, e.cport, e.vip, e.vport),
                rip: e.rip,
                rport: e.rport,
                method: d.method,
                dest: Some(d.stats.clone()),
                svc: Some(svc.stats.clone()),
                template: None,
            },
            if e.proto == Proto::Tcp {
                state
            } else {
                TcpState::None
            },
            timeout,
            now,
        )
    };
    if let (Ok((id, _)), Some(shift)) = (&r, e.proxy) {
        fwd.set_synced_shift(*id, shift);
    }
    match r {
        Ok((_, true)) => Ok(Installed::New),
        Ok((_, false)) => Ok(Installed::Updated),
        Err(_) => Err(Refused::TableFull),
    }
}

/// Between bursts: the master tap follows the hub's flag, its counters are
/// published, and up to `INSTALL_BUDGET` received entries are installed.
pub fn worker_tick(fwd: &mut Forwarder) {
    let shared = fwd.shared().clone();
    let hub: &SyncHub = &shared.sync;
    let w = fwd.worker as usize;
    let Some(stats) = hub.stats.get(w) else { return };
    if let Some(t) = fwd.sync.as_deref_mut() {
        let (pushed, dropped) = t.take_counts();
        stats.pushed.fetch_add(pushed, Ordering::Relaxed);
        stats.dropped.fetch_add(dropped, Ordering::Relaxed);
    }
    let on = hub.master_on();
    let stale = fwd.sync.as_ref().is_some_and(|t| t.params() != hub.params());
    if !on {
        fwd.sync = None;
    } else if fwd.sync.is_none() || stale {
        if let Some(ring) = hub.out.get(w) {
            let tap = SyncTap::new(hub.params(), Arc::clone(ring), fwd.conns.capacity());
            fwd.sync = Some(Box::new(tap));
        }
    }
    answer_dump(fwd, hub, w);
    let Some(ring) = hub.inbound.get(w) else { return };
    if ring.is_empty() {
        return;
    }
    let snap = fwd.services().clone();
    let timeouts = fwd.shared().timeouts.load_full();
    for _ in 0..INSTALL_BUDGET {
        let Some(e) = ring.pop() else { break };
        let c = match install_with(fwd, &snap, &timeouts, &e) {
            Ok(Installed::New) => &stats.installed,
            Ok(Installed::Updated) => &stats.updated,
            Err(Refused::UnknownService) => &stats.unknown_service,
            Err(Refused::UnknownDest) => &stats.unknown_dest,
            Err(Refused::TableFull) => &stats.table_full,
            Err(Refused::FullNat) => &stats.fullnat,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A full resync's listing asked for (`hub::SyncDump`): every live entry of this
/// worker's table but FULLNAT ones, as the event a master sends, with the seconds it has left
/// (at least 1: 0 would ask the receiver for its default) and a proxied
/// connection's shift.
fn answer_dump(fwd: &Forwarder, hub: &SyncHub, w: usize) {
    let Some((seen, slot)) = hub.dump.slots.get(w) else {
        return;
    };
    let req = hub.dump.request.load(Ordering::Acquire);
    if seen.load(Ordering::Relaxed) == req {
        return;
    }
    let now = fwd.now();
    let proxied = fwd.proxy_slots();
    // FULLNAT connections stay out, as the master's tap leaves them out: sync
    // v1 has no field for their local address.
    let list: Vec<SyncEvent> = (fwd.conns.iter())
        .filter(|(_, c)| !c.is_expired(now) && c.method() != crate::service::ForwardMethod::FullNat)
        .map(|(id, c)| SyncEvent {
            proxy: synced_shift(proxied, id, c),
            ..SyncEvent::from_conn(c, c.remaining(now).max(1))
        })
        .collect();
    if let Ok(mut g) = slot.lock() {
        *g = list;
    }
    seen.store(req, Ordering::Release);
}
