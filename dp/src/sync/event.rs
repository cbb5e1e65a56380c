//! `SyncEvent`: one connection (or template) to send or to install, as a small `Copy`
//! value that fits the lock-free rings between the workers and the sync threads.
//!
//! It carries what the connection table can use of a `SyncConn`: no sequence
//! adjustments (rvs has no application helpers) and no persistence engine data (rvs
//! has no persistence engines); a backup drops both, a master never has them.

use std::net::Ipv4Addr;

use rvs_proto::types::{ForwardMethod, Proto};

use super::repr::{SyncConn, SyncState};
use crate::conn::{Conn, TcpState};

/// One synced connection or persistence template, by value. 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SyncEvent {
    pub cip: Ipv4Addr,
    pub vip: Ipv4Addr,
    pub rip: Ipv4Addr,
    /// Seconds; 0 asks the receiver for its default for the state.
    pub timeout: u32,
    pub fwmark: u32,
    pub cport: u16,
    pub vport: u16,
    pub rport: u16,
    pub proto: Proto,
    pub fwd: ForwardMethod,
    pub state: SyncState,
    pub inactive: bool,
}

const _: () = assert!(std::mem::size_of::<SyncEvent>() <= 32);

impl SyncEvent {
    /// What a master sends for `c`, `timeout` seconds being its full timeout in its
    /// current state (the kernel sends `cp->timeout`, not what is left of it).
    pub fn from_conn(c: &Conn, timeout: u32) -> Self {
        let template = c.is_template();
        let state = match (template, c.proto()) {
            (true, _) => SyncState::Template { assured: false },
            (false, Proto::Tcp) => SyncState::Tcp(c.state()),
            (false, Proto::Udp) => SyncState::Udp,
        };
        SyncEvent {
            cip: c.cip(),
            vip: c.vip(),
            rip: c.rip(),
            timeout,
            fwmark: 0,
            cport: c.cport(),
            vport: c.vport(),
            rport: c.rport(),
            proto: c.proto(),
            fwd: c.method(),
            state,
            // As the kernel: every connection starts inactive, TCP leaves it on
            // ESTABLISHED; templates keep it.
            inactive: template || !c.is_active(),
        }
    }

    /// The entry a backup received, without its sequence and PE options.
    pub fn from_sync(s: &SyncConn<'_>) -> Self {
        SyncEvent {
            cip: s.cip,
            vip: s.vip,
            rip: s.rip,
            timeout: s.timeout,
            fwmark: s.fwmark,
            cport: s.cport,
            vport: s.vport,
            rport: s.rport,
            proto: s.proto,
            fwd: s.fwd,
            state: s.state,
            inactive: s.inactive,
        }
    }

    /// The entry to encode.
    pub fn to_sync(&self) -> SyncConn<'static> {
        SyncConn {
            proto: self.proto,
            cip: self.cip,
            cport: self.cport,
            vip: self.vip,
            vport: self.vport,
            rip: self.rip,
            rport: self.rport,
            fwd: self.fwd,
            state: self.state,
            inactive: self.inactive,
            timeout: self.timeout,
            fwmark: self.fwmark,
            seq: None,
            pe: None,
        }
    }

    pub fn is_template(&self) -> bool {
        self.state.is_template()
    }

    /// The TCP state the connection table keeps (NONE for UDP and templates).
    pub fn tcp_state(&self) -> TcpState {
        match self.state {
            SyncState::Tcp(s) => s,
            _ => TcpState::None,
        }
    }
}
