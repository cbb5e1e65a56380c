//! `SyncEvent`: one connection (or template) to send or to install, as a small `Copy`
//! value that fits the lock-free rings between the workers and the sync threads.
//!
//! It carries what the connection table can use of a `SyncConn`: of the sequence
//! adjustments only the SYN proxy's shift (`proxy`; rvs has no application helpers,
//! whose resizings the kernel's other adjustments describe), and no persistence
//! engine data (rvs has no persistence engines); a backup drops the rest, a master
//! never has it.

use std::net::Ipv4Addr;

use rvs_proto::types::{ForwardMethod, Proto};

use super::repr::{SeqAdjust, SeqDelta, SyncConn, SyncState};
use crate::conn::{Conn, TcpState};
use crate::synproxy::translate::SeqShift;

/// One synced connection or persistence template, by value. 44 bytes.
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
    /// A SYN-proxied connection's sequence and window translation, once its real
    /// server's handshake fixed it: the backup translates as the master did.
    pub proxy: Option<SeqShift>,
}

const _: () = assert!(std::mem::size_of::<SyncEvent>() <= 44);

/// The SYN proxy's shift as the sequence option carries it (see `SeqAdjust`).
pub fn seq_of_shift(s: &SeqShift) -> SeqAdjust {
    let d = s.delta.wrapping_neg();
    SeqAdjust {
        adjust_in: false,
        adjust_out: true,
        in_seq: SeqDelta::default(),
        out_seq: SeqDelta {
            init_seq: 0,
            delta: d,
            previous_delta: d,
        },
        windows: Some([s.rs_win.0, s.rs_win.1, s.client_win.0, s.client_win.1]),
    }
}

/// The SYN proxy's shift a sequence option describes: `OUT_SEQ` alone, with one
/// delta for every sequence number (delta = previous_delta). Any other adjustment
/// (an application helper's resizing on a kernel master) is not one rvs can apply:
/// None. Without rvs's window option the windows are left as they are.
pub fn shift_of_seq(a: &SeqAdjust) -> Option<SeqShift> {
    if !a.adjust_out || a.adjust_in || a.out_seq.delta != a.out_seq.previous_delta {
        return None;
    }
    let [r0, r1, c0, c1] = a.windows.unwrap_or_default();
    if [r0, r1, c0, c1].iter().any(|&w| w > 14) {
        return None;
    }
    Some(SeqShift {
        delta: a.out_seq.delta.wrapping_neg(),
        rs_win: (r0, r1),
        client_win: (c0, c1),
    })
}

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
            proxy: None,
        }
    }

    /// The entry a backup received, without its PE options, with its sequence
    /// option only if it is a SYN proxy's shift.
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
            proxy: match s.state {
                SyncState::Tcp(_) => s.seq.as_ref().and_then(shift_of_seq),
                _ => None,
            },
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
            seq: self.proxy.as_ref().map(seq_of_shift),
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
