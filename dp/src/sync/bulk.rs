//! Full resync's receiving end (beyond IPVS): `Command::SyncInstall`, one page of a
//! peer director's connection listing (its `-L -c`, as the peer's rvs-cp read it and
//! this director's rvs-cp fetched it, `cp/src/resync.rs`), handed to the workers as
//! the backup thread hands them what it receives: each entry to the inbound ring of
//! the worker that owns its client, installed there between bursts
//! (`install::worker_tick`), bound to this director's configured real server.
//!
//! Unlike the backup thread, which drops an entry when a ring is full (multicast has
//! no back-pressure), a page waits for room, up to a bound: a resync must be whole.
//!
//! What a listing line gives: protocol, state name, seconds left, the three
//! addresses and ports. The state `NONE` is a persistence template (the only entries
//! listed with it) and so is a client port of 0 (a UDP template is listed as `UDP`;
//! no connection has client port 0); the forwarding method is not listed, and not needed: an entry is
//! installed with its real server's method here. The seconds left become the
//! entry's timeout, so it expires when the peer's would.

use std::thread;
use std::time::{Duration, Instant};

use rvs_proto::command::{ConnInfo, IpvsError};
use rvs_proto::types::{ForwardMethod, Proto};

use super::event::SyncEvent;
use super::repr::SyncState;
use crate::conn::TcpState;
use crate::core::{owner_of, Shared};

/// The entry `c` describes, or None for a state name rvs does not know.
pub fn event_of(c: &ConnInfo) -> Option<SyncEvent> {
    let state = match (c.proto, c.state.as_str()) {
        (_, "NONE") => SyncState::Template { assured: false },
        _ if c.cport == 0 => SyncState::Template { assured: false },
        (Proto::Udp, _) => SyncState::Udp,
        (Proto::Tcp, name) => SyncState::Tcp(TcpState::from_name(name)?),
    };
    Some(SyncEvent {
        cip: c.cip,
        vip: c.vip,
        rip: c.rip,
        // 0 would ask for the state's default timeout: one second is what is left.
        timeout: c.expires_s.max(1),
        fwmark: 0,
        cport: c.cport,
        vport: c.vport,
        rport: c.rport,
        proto: c.proto,
        fwd: ForwardMethod::Nat,
        inactive: !matches!(state, SyncState::Tcp(TcpState::Established)),
        state,
    })
}

/// Hands every entry of `conns` to its owner's inbound ring, waiting up to `wait`
/// in all for room. Entries with an unknown state are skipped (there are none in
/// an rvs listing).
pub fn install(shared: &Shared, conns: &[ConnInfo], wait: Duration) -> Result<(), IpvsError> {
    let deadline = Instant::now() + wait;
    let mask = shared.services.load().owner_mask();
    for e in conns.iter().filter_map(event_of) {
        let w = owner_of(e.cip, mask, shared.workers) as usize;
        let Some(ring) = shared.sync.inbound.get(w) else {
            continue;
        };
        while ring.push(e).is_err() {
            if Instant::now() >= deadline {
                return Err(IpvsError::SyncBusy);
            }
            thread::sleep(Duration::from_micros(200));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn info(proto: Proto, state: &str, expires_s: u32) -> ConnInfo {
        ConnInfo {
            proto,
            state: state.into(),
            expires_s,
            cip: Ipv4Addr::new(10, 1, 0, 10),
            cport: 40000,
            vip: Ipv4Addr::new(10, 1, 0, 100),
            vport: 80,
            rip: Ipv4Addr::new(10, 2, 0, 11),
            rport: 80,
            laddr: None,
        }
    }

    #[test]
    fn listing_lines_become_entries() {
        let e = event_of(&info(Proto::Tcp, "ESTABLISHED", 899)).unwrap();
        assert_eq!(e.state, SyncState::Tcp(TcpState::Established));
        assert_eq!((e.timeout, e.inactive), (899, false));
        assert_eq!((e.cport, e.vport, e.rport), (40000, 80, 80));
        let e = event_of(&info(Proto::Tcp, "FIN_WAIT", 0)).unwrap();
        assert_eq!(
            (e.state, e.timeout, e.inactive),
            (SyncState::Tcp(TcpState::FinWait), 1, true)
        );
        assert!(event_of(&info(Proto::Tcp, "NONE", 300)).unwrap().is_template());
        assert!(event_of(&info(Proto::Udp, "NONE", 300)).unwrap().is_template());
        assert_eq!(
            event_of(&info(Proto::Udp, "UDP", 300)).unwrap().state,
            SyncState::Udp
        );
        let udp_template = ConnInfo {
            cport: 0,
            ..info(Proto::Udp, "UDP", 300)
        };
        assert!(event_of(&udp_template).unwrap().is_template());
        assert_eq!(event_of(&info(Proto::Tcp, "BOGUS", 1)), None);
    }
}
