//! The per-worker connection table, after the kernel's ip_vs_conn.c.
//!
//! Each worker owns one `ConnTable`: no locks, no atomics on lookups. The
//! table is a slab of fixed-size `Conn` entries (64 bytes, one cache line)
//! preallocated at start, with a free list and two intrusive hash indexes:
//!
//! - IN, keyed by (proto, CIP, cport, VIP, vport): client → VIP packets, and
//!   the persistence templates (keyed by the client's masked network, port 0);
//! - OUT, keyed by (proto, RIP, rport, CIP, cport): real-server replies. Only
//!   LVS-NAT and FULLNAT connections are in it; with DR and TUN the replies
//!   bypass us. A FULLNAT entry is keyed by (proto, RIP, rport, LIP, lport),
//!   what its replies carry; its LIP:lport lives in a side array indexed by
//!   the same slot (`fnat::side`), touched by FULLNAT packets only.
//!
//! After `ConnTable::new` nothing allocates: insert pops the free list, expiry
//! pushes onto it. Expiry is lazy (a lookup ignores an entry whose time is
//! up) and incremental (`expire` examines a bounded number of slots per call
//! from a moving cursor), so no call scans the whole table.
//!
//! Full table: new entries first reclaim expired ones, then take the slot of
//! the oldest *embryonic* connection, a TCP connection that has never been
//! ESTABLISHED (SYN_RECV and the like: no proof yet that its client exists).
//! These wait in a FIFO queue threaded through their entries (two links that
//! only templates use otherwise); a connection leaves it when it is freed,
//! or, lazily, once established (at the queue's head, or when `expire`
//! passes it), so the established packet's path pays nothing for it. So a
//! random-source SYN flood recycles its own entries, oldest first, and cannot
//! lock real clients out; established connections are never evicted, and
//! only a table full of them refuses a new one (`ConnError::TableFull`). The
//! kernel instead drops random entries under memory pressure (drop_entry)
//! and shortens timeouts (secure_tcp); DPVS answers SYNs itself (SYN proxy).
//!
//! Ids: a `ConnId` is the slot index. It is valid from `insert` until the
//! entry is removed or expired. Using an id after that never panics: `get`
//! returns `None` while the slot is free, but once the slot is reused the id
//! names the new entry. Ids must therefore not be kept across `expire` or
//! `remove` calls (the worker holds them only for the packet at hand).
//!
//! Clock: `now` is a coarse clock in whole seconds. An entry is alive while
//! `now <= expires`, so it lives at least its full timeout.

use std::net::Ipv4Addr;
use std::sync::Arc;

pub use crate::flow::FlowKey;
use crate::service::{DestStats, ForwardMethod, WorkerTraffic};

mod mem;
mod table;
pub mod tcp;
pub mod timeout;

#[cfg(test)]
mod tests;

pub use table::{Bucket, Conn, ConnTable, INITIAL_TIMEOUT};
pub use tcp::{next_state, StateTable, TcpEvent, TcpState};
pub use timeout::Timeouts;

/// A slot of the connection table; see the module docs for how long it is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) u32);

impl ConnId {
    pub fn index(self) -> u32 {
        self.0
    }
}

/// Which way a packet travels on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → VIP (towards the real server).
    Input,
    /// Real server → client (a NAT reply).
    Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    /// Every slot is taken by a live entry. Nothing in the table changed.
    #[error("connection table full")]
    TableFull,
    /// A FULLNAT connection without its local address (see `insert_fnat`).
    #[error("FULLNAT connection without a local address")]
    NoLocalAddress,
}

/// Everything a new connection is made of.
#[derive(Clone, Debug)]
pub struct NewConn {
    /// CIP:cport → VIP:vport.
    pub flow: FlowKey,
    pub rip: Ipv4Addr,
    pub rport: u16,
    pub method: ForwardMethod,
    /// The real server's counters; the connection is counted there until it ends.
    pub dest: Option<Arc<DestStats>>,
    /// The virtual service's traffic counters.
    pub svc: Option<Arc<WorkerTraffic>>,
    /// The persistence template that chose the real server, if any.
    pub template: Option<ConnId>,
}

/// A persistence template (ipvsadm `-p`): it pins a client network to a real
/// server for a virtual service.
#[derive(Clone, Debug)]
pub struct NewTemplate {
    /// Client network:0 → VIP:vport, the client address already masked with
    /// the service's `-M` netmask (see `client_net`).
    pub flow: FlowKey,
    pub rip: Ipv4Addr,
    pub rport: u16,
    pub method: ForwardMethod,
    pub dest: Option<Arc<DestStats>>,
}

/// The client network a persistence template is keyed by: CIP & netmask.
#[inline]
pub fn client_net(cip: Ipv4Addr, netmask: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cip) & u32::from(netmask))
}
