//! When a master sends a connection: the kernel's `ip_vs_sync_conn_needed`, in
//! seconds, and the worker's tap that applies it to each client → VIP packet.
//!
//! # The rule (net/netfilter/ipvs/ip_vs_sync.c, sysctls of ip-sysctl's IPVS section)
//! Counted on client → VIP packets only (the kernel's `in_pkts`):
//! - TCP is sent only in ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT and TIME_WAIT. A
//!   state other than the one last sent, if it is not ESTABLISHED, is sent at once.
//! - `sync_refresh_period` > 0 (seconds): nothing is sent again while the entry's end
//!   of life moved by less than min(refresh period, max(timeout / 2, 10 s)) since it
//!   was last sent (the kernel's `sync_endtime` test; its `sync_retries` are 0 here,
//!   the kernel's default).
//! - `sync_threshold` = (threshold, period), default (3, 50): with period > 0 a
//!   connection goes on its `threshold`-th packet and every `period` packets after
//!   (pkts % period == threshold); with period 0 and no refresh period, only on the
//!   `threshold`-th packet. Templates skip the packet test.
//! - Whenever a connection goes, the persistence template that scheduled it is
//!   tested next, with one more packet counted on the template.
//!
//! # What it costs
//! Nothing while no master daemon runs: the worker's `Forwarder::sync` is `None` and
//! the per-packet test is one branch on it. While one runs: a side array indexed by
//! connection slot (16 bytes per slot, allocated when the master starts) and one
//! more cache line touched per client → VIP packet. The `Conn` entry stays one cache
//! line: nothing of this lives there.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use rvs_proto::types::Proto;

use super::event::SyncEvent;
use crate::conn::{Conn, ConnId, ConnTable, TcpState};
use crate::core::{synced_shift, ProxySlot};

/// Worker → master thread, or backup thread → worker: bounded, lock-free, never waits.
pub type SyncRing = ArrayQueue<SyncEvent>;

/// Events each ring holds. A master thread drains every millisecond or so,
/// but on a busy box it may not run for several: a worker opening 2 M
/// connections a second hands it about 4 M events a second, and 65,536 of
/// them are 16 ms of that before anything is dropped (8,192 dropped a few
/// thousand a run in `scripts/bench.sh --only syncnew`). About 4 MB per
/// worker and direction.
pub const SYNC_RING_SIZE: usize = 65536;

/// The master's sysctls (`sync_threshold`, `sync_refresh_period`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncParams {
    pub threshold: u32,
    pub period: u32,
    /// Seconds; 0 = off (the kernel's default).
    pub refresh_period: u32,
}

impl Default for SyncParams {
    /// The kernel's defaults: `sync_threshold` = 3 50, `sync_refresh_period` = 0.
    fn default() -> Self {
        SyncParams {
            threshold: 3,
            period: 50,
            refresh_period: 0,
        }
    }
}

impl SyncParams {
    /// The kernel's check on `sync_threshold`: threshold below period, unless period is 0.
    pub fn valid(&self) -> bool {
        self.period == 0 || self.threshold < self.period
    }
}

/// What the master remembers of one slot's connection between its packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncMeta {
    /// Which connection the slot held when this was written (`tag`): a slot reused
    /// by another connection starts afresh.
    tag: u32,
    /// Client → VIP packets seen (the kernel's `in_pkts`).
    pub pkts: u32,
    /// `now + timeout` when it was last sent (the kernel's `sync_endtime`).
    sync_end: u32,
    /// The TCP state last sent (the kernel's `old_state`).
    old_state: u8,
    synced: bool,
}

/// The TCP states a master sends.
#[inline]
fn syncs_in(state: TcpState) -> bool {
    matches!(
        state,
        TcpState::Established
            | TcpState::FinWait
            | TcpState::Close
            | TcpState::CloseWait
            | TcpState::TimeWait
    )
}

/// What kind of entry is tested: its protocol and TCP state, or a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tcp(TcpState),
    Udp,
    Template,
}

impl Kind {
    pub fn of(c: &Conn) -> Kind {
        match (c.is_template(), c.proto()) {
            (true, _) => Kind::Template,
            (false, Proto::Tcp) => Kind::Tcp(c.state()),
            (false, Proto::Udp) => Kind::Udp,
        }
    }
}

/// Whether the entry goes now, `m.pkts` already counting this packet. Updates `m`
/// as sent when it does. `timeout` is the entry's full timeout in its state.
pub fn needed(p: &SyncParams, m: &mut SyncMeta, kind: Kind, timeout: u32, now: u32) -> bool {
    let end = now.saturating_add(timeout);
    if let Kind::Tcp(state) = kind {
        if !syncs_in(state) {
            return false;
        }
        // A new state goes at once, unless it is ESTABLISHED (then the packet
        // count decides, as for any packet of the connection).
        if state as u8 != m.old_state && state != TcpState::Established {
            return sent(m, state as u8, end);
        }
    }
    if p.refresh_period > 0 && m.synced {
        let diff = end.abs_diff(m.sync_end);
        let min_diff = (timeout / 2).max(10);
        if diff < p.refresh_period.min(min_diff) {
            return false;
        }
    }
    if p.period > 0 {
        if kind != Kind::Template && m.pkts % p.period != p.threshold {
            return false;
        }
    } else if p.refresh_period == 0 && m.pkts != p.threshold {
        return false;
    }
    let state = match kind {
        Kind::Tcp(s) => s as u8,
        _ => 0,
    };
    sent(m, state, end)
}

fn sent(m: &mut SyncMeta, state: u8, end: u32) -> bool {
    m.old_state = state;
    m.sync_end = end;
    m.synced = true;
    true
}

/// Tells one connection from another that took its slot since.
#[inline]
fn tag(c: &Conn) -> u32 {
    let x = u32::from(c.cip()) ^ u32::from(c.vip()).rotate_left(13);
    let y = (u32::from(c.cport()) << 16 | u32::from(c.vport()))
        ^ ((c.proto() as u32) << 1 | c.is_template() as u32);
    (x ^ y.wrapping_mul(0x9E37_79B1)).wrapping_mul(0x85EB_CA6B) | 1
}

/// One worker's producer end, in its `Forwarder` while a master daemon runs.
pub struct SyncTap {
    params: SyncParams,
    ring: Arc<SyncRing>,
    meta: Box<[SyncMeta]>,
    /// Events handed to the master thread since `take_counts`.
    pushed: u64,
    /// Events lost to a full ring (`sync_dropped`) since `take_counts`.
    dropped: u64,
}

impl SyncTap {
    /// A tap for a table of `capacity` slots.
    pub fn new(params: SyncParams, ring: Arc<SyncRing>, capacity: usize) -> Self {
        SyncTap {
            params,
            ring,
            meta: vec![SyncMeta::default(); capacity].into_boxed_slice(),
            pushed: 0,
            dropped: 0,
        }
    }

    pub fn params(&self) -> SyncParams {
        self.params
    }

    /// Events pushed and dropped since the last call.
    pub fn take_counts(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.pushed),
            std::mem::take(&mut self.dropped),
        )
    }

    /// The slot's memory, reset if another connection held the slot before.
    #[inline]
    fn meta(&mut self, id: ConnId, c: &Conn) -> Option<&mut SyncMeta> {
        let t = tag(c);
        let m = self.meta.get_mut(id.index() as usize)?;
        if m.tag != t {
            *m = SyncMeta {
                tag: t,
                ..SyncMeta::default()
            };
        }
        Some(m)
    }

    /// One client → VIP packet of connection `id`, its state and timeout already
    /// updated for it (`core::conn_packet`). `proxied`: the worker's SYN proxy
    /// slots, whose shift goes with a proxied connection.
    #[inline]
    pub fn on_input(&mut self, conns: &ConnTable, id: ConnId, now: u32, proxied: Option<&[ProxySlot]>) {
        let Some(c) = conns.get(id) else { return };
        // The sync v1 format has no field for a FULLNAT entry's local
        // address: FULLNAT connections are not synced (a backup taking over
        // has none of them; their clients reconnect).
        if c.method() == crate::service::ForwardMethod::FullNat {
            return;
        }
        let params = self.params;
        let timeout = c.expires().saturating_sub(now);
        let Some(m) = self.meta(id, c) else { return };
        m.pkts = m.pkts.wrapping_add(1);
        if !needed(&params, m, Kind::of(c), timeout, now) {
            return;
        }
        self.push(SyncEvent {
            proxy: synced_shift(proxied, id, c),
            ..SyncEvent::from_conn(c, timeout)
        });
        let Some(t) = c.template() else { return };
        let Some(tc) = conns.get(t) else { return };
        let timeout = tc.persistence_timeout();
        let Some(m) = self.meta(t, tc) else { return };
        m.pkts = m.pkts.wrapping_add(1);
        if needed(&params, m, Kind::Template, timeout, now) {
            self.push(SyncEvent::from_conn(tc, timeout));
        }
    }

    #[inline]
    fn push(&mut self, e: SyncEvent) {
        match self.ring.push(e) {
            Ok(()) => self.pushed += 1,
            Err(_) => self.dropped += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packets (1-based) on which an entry of `kind` goes, over `n` packets at
    /// one instant.
    fn sent_on(p: SyncParams, kinds: impl Fn(u32) -> Kind, n: u32, timeout: u32) -> Vec<u32> {
        let mut m = SyncMeta::default();
        (1..=n)
            .filter(|&i| {
                m.pkts = i;
                needed(&p, &mut m, kinds(i), timeout, 100)
            })
            .collect()
    }

    #[test]
    fn default_threshold_is_the_third_packet_then_every_fiftieth() {
        let p = SyncParams::default();
        assert_eq!(sent_on(p, |_| Kind::Udp, 160, 300), [3, 53, 103, 153]);
        assert_eq!(
            sent_on(p, |_| Kind::Tcp(TcpState::Established), 104, 900),
            [3, 53, 103]
        );
    }

    #[test]
    fn handshake_states_are_never_sent() {
        for s in [
            TcpState::None,
            TcpState::SynRecv,
            TcpState::SynSent,
            TcpState::LastAck,
        ] {
            assert!(sent_on(SyncParams::default(), |_| Kind::Tcp(s), 120, 60).is_empty());
        }
    }

    #[test]
    fn a_new_closing_state_goes_at_once_then_by_count() {
        // Established for 4 packets (sent on the 3rd), FIN_WAIT from the 5th: sent
        // at once, then only when the count comes round again; CLOSE_WAIT from the
        // 60th: at once.
        let kind = |i: u32| match i {
            1..=4 => Kind::Tcp(TcpState::Established),
            5..=59 => Kind::Tcp(TcpState::FinWait),
            _ => Kind::Tcp(TcpState::CloseWait),
        };
        assert_eq!(
            sent_on(SyncParams::default(), kind, 104, 120),
            [3, 5, 53, 60, 103]
        );
    }

    #[test]
    fn period_zero_sends_once_on_the_threshold() {
        let p = SyncParams {
            threshold: 2,
            period: 0,
            refresh_period: 0,
        };
        assert_eq!(sent_on(p, |_| Kind::Udp, 100, 300), [2]);
        assert_eq!(sent_on(p, |_| Kind::Template, 100, 300), [2]);
    }

    #[test]
    fn templates_skip_the_packet_count() {
        let all: Vec<u32> = (1..=10).collect();
        assert_eq!(sent_on(SyncParams::default(), |_| Kind::Template, 10, 300), all);
    }

    #[test]
    fn refresh_period_holds_back_until_the_end_of_life_moved_enough() {
        let p = SyncParams {
            threshold: 3,
            period: 0,
            refresh_period: 30,
        };
        let mut m = SyncMeta::default();
        let mut go = |now: u32| {
            m.pkts += 1;
            needed(&p, &mut m, Kind::Udp, 300, now)
        };
        assert!(go(100), "never sent: goes");
        assert!(!go(100));
        assert!(!go(129), "29 s later: below the refresh period");
        assert!(go(130), "30 s later");
        assert!(!go(131));
        // A short timeout caps the wait at max(timeout / 2, 10 s).
        let mut m = SyncMeta {
            pkts: 1,
            ..SyncMeta::default()
        };
        assert!(needed(&p, &mut m, Kind::Udp, 12, 0));
        assert!(!needed(&p, &mut m, Kind::Udp, 12, 9));
        assert!(needed(&p, &mut m, Kind::Udp, 12, 10));
    }

    #[test]
    fn kernel_sysctl_check_on_the_threshold() {
        assert!(SyncParams::default().valid());
        let bad = SyncParams {
            threshold: 50,
            period: 50,
            refresh_period: 0,
        };
        assert!(!bad.valid());
        assert!(SyncParams { period: 0, ..bad }.valid());
    }
}
