//! `SyncConn`: one synced connection in rvs's own terms, parsed from and emitted to
//! a sync entry.

use std::net::Ipv4Addr;

use rvs_proto::types::{ForwardMethod, Proto};

use crate::conn::TcpState;

use super::msg::{
    self, conn, emit_option, SyncConnEntry, IPVS_OPT_PE_DATA, IPVS_OPT_PE_NAME, IPVS_OPT_SEQ_DATA,
    PE_DATA_MAXLEN, PE_NAME_MAXLEN, RVS_OPT_SYNPROXY_WIN, SEQ_DATA_LEN, SYNPROXY_WIN_LEN,
};
use super::SyncError;

/// `IP_VS_CONN_F_*` bits that matter to sync (include/uapi/linux/ip_vs.h).
pub mod flags {
    pub const FWD_MASK: u32 = 0x0007;
    pub const MASQ: u32 = 0x0000;
    pub const LOCALNODE: u32 = 0x0001;
    pub const TUNNEL: u32 = 0x0002;
    pub const DROUTE: u32 = 0x0003;
    pub const BYPASS: u32 = 0x0004;
    /// DPVS's value for FULLNAT; the kernel has none. Sent so that a peer
    /// can tell such an entry apart (v1 carries no local address, so rvs
    /// installs none: see `SyncError::UnsupportedForward`).
    pub const FULLNAT: u32 = 0x0005;
    pub const SYNC: u32 = 0x0020;
    pub const HASHED: u32 = 0x0040;
    pub const NOOUTPUT: u32 = 0x0080;
    pub const INACTIVE: u32 = 0x0100;
    pub const OUT_SEQ: u32 = 0x0200;
    pub const IN_SEQ: u32 = 0x0400;
    pub const SEQ_MASK: u32 = 0x0600;
    pub const NO_CPORT: u32 = 0x0800;
    pub const TEMPLATE: u32 = 0x1000;
    pub const ONE_PACKET: u32 = 0x2000;
    /// What a backup keeps of the received flags; everything else is dropped silently.
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
}

/// The state word of an entry, read according to what the entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncState {
    /// A TCP connection.
    /// A TCP connection, in IPVS's numbering (`IP_VS_TCP_S_*`), which the
    /// connection table's own state follows.
    Tcp(TcpState),
    /// A UDP connection: IPVS has one UDP state (`IP_VS_UDP_S_NORMAL` = 0).
    Udp,
    /// A persistence template (`IP_VS_CONN_F_TEMPLATE`): client address to real server
    /// binding for `-p`. Its state word is `IP_VS_CTPL_S_NONE` (0) or `_ASSURED` (1).
    Template { assured: bool },
}

impl SyncState {
    pub fn is_template(self) -> bool {
        matches!(self, SyncState::Template { .. })
    }

    /// The number on the wire.
    pub fn number(self) -> u16 {
        match self {
            SyncState::Tcp(s) => s as u16,
            SyncState::Udp => 0,
            SyncState::Template { assured } => u16::from(assured),
        }
    }
}

/// One direction's TCP sequence adjustment (`struct ip_vs_seq`), kept by NAT when an
/// application helper resized the payload. Carried so a backup can keep adjusting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SeqDelta {
    /// Sequence number from which `delta` applies.
    pub init_seq: u32,
    pub delta: u32,
    /// The delta before the last resized packet (for retransmits of it).
    pub previous_delta: u32,
}

/// The `IPVS_OPT_SEQ_DATA` option, with the flag bits that say which direction the
/// master actually adjusts (`IP_VS_CONN_F_IN_SEQ` / `_OUT_SEQ`).
///
/// rvs's SYN proxy rides on it (`event::SyncEvent::proxy`): its offset `D`
/// (real server's ISN minus the cookie) is `OUT_SEQ` with `out_seq.delta` and
/// `previous_delta` both `-D`, which in the kernel's semantics shifts every RS
/// → client sequence number by `-D` and every client → RS acknowledgment by `+D`
/// whatever `init_seq`; the window shifts go in `windows`, an option of rvs's
/// own that a kernel skips.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SeqAdjust {
    pub adjust_in: bool,
    pub adjust_out: bool,
    pub in_seq: SeqDelta,
    pub out_seq: SeqDelta,
    /// `RVS_OPT_SYNPROXY_WIN`: a SYN-proxied connection's window shifts (RS's
    /// own, client's reading, client's own, RS's reading). Read only beside
    /// sequence data; sent only with it.
    pub windows: Option<[u8; SYNPROXY_WIN_LEN]>,
}

impl SeqAdjust {
    fn parse(d: &[u8]) -> (SeqDelta, SeqDelta) {
        let w = |i: usize| crate::wire::bytes::get_u32(d, i * 4);
        (
            SeqDelta {
                init_seq: w(0),
                delta: w(1),
                previous_delta: w(2),
            },
            SeqDelta {
                init_seq: w(3),
                delta: w(4),
                previous_delta: w(5),
            },
        )
    }

    fn to_bytes(self) -> [u8; SEQ_DATA_LEN] {
        let mut out = [0u8; SEQ_DATA_LEN];
        let words = [
            self.in_seq.init_seq,
            self.in_seq.delta,
            self.in_seq.previous_delta,
            self.out_seq.init_seq,
            self.out_seq.delta,
            self.out_seq.previous_delta,
        ];
        for (dst, w) in out.chunks_exact_mut(4).zip(words) {
            dst.copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

/// Persistence engine parameters (`IPVS_OPT_PE_DATA` + `IPVS_OPT_PE_NAME`), borrowed
/// from the datagram. rvs has no persistence engines: they are carried, not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeParam<'a> {
    /// Engine name, e.g. `sip`; 1 to 16 bytes, not NUL-terminated.
    pub name: &'a [u8],
    /// Engine data (for `sip`, the Call-ID); 1 to 255 bytes.
    pub data: &'a [u8],
}

/// One synced connection or persistence template, IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SyncConn<'a> {
    pub proto: Proto,
    pub cip: Ipv4Addr,
    pub cport: u16,
    pub vip: Ipv4Addr,
    pub vport: u16,
    /// The real server (the kernel's `daddr`/`dport`).
    pub rip: Ipv4Addr,
    pub rport: u16,
    /// From the flags' forwarding bits. A kernel backup overrides it with its own real
    /// server's method when it finds one; it matters only for unbound entries.
    pub fwd: ForwardMethod,
    pub state: SyncState,
    /// `IP_VS_CONN_F_INACTIVE`: counted in the real server's inactive connections
    /// (TCP not established, every UDP connection, every template).
    pub inactive: bool,
    /// Seconds left; 0 asks the receiver to use its default for the state.
    pub timeout: u32,
    /// The packet mark the master saw. rvs has no fwmark services and never looks a
    /// service up by it; kept so an entry passes through unchanged.
    pub fwmark: u32,
    pub seq: Option<SeqAdjust>,
    pub pe: Option<PeParam<'a>>,
}

/// What an entry's option walk found, before any semantic check.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScannedOptions<'a> {
    pub seq: Option<&'a [u8]>,
    pub pe_data: Option<&'a [u8]>,
    pub pe_name: Option<&'a [u8]>,
    pub windows: Option<&'a [u8]>,
    /// An option the kernel does not know and that is not marked optional: the kernel
    /// skips the entry there and reads no further options of it.
    pub unknown_mandatory: bool,
}

/// Walks an entry's options with the kernel's rules: a malformed TLV, a sequence option
/// of the wrong length, a name over 16 bytes or a repeated option poisons the whole
/// datagram; an unknown mandatory option only its entry.
pub(crate) fn scan_options<'a>(e: &SyncConnEntry<&'a [u8]>) -> Result<ScannedOptions<'a>, SyncError> {
    let from = e.fixed_len().unwrap_or(conn::V4_LEN);
    let bytes: &'a [u8] = e.clone().into_inner();
    let opts = msg::SyncOptions::new(bytes.get(from..e.size()).unwrap_or(&[]));
    let mut s = ScannedOptions::default();
    for o in opts {
        let o = o?;
        let slot = match o.base_kind() {
            IPVS_OPT_SEQ_DATA if o.data.len() == SEQ_DATA_LEN => &mut s.seq,
            IPVS_OPT_SEQ_DATA => return Err(SyncError::BadOption),
            IPVS_OPT_PE_DATA => &mut s.pe_data,
            IPVS_OPT_PE_NAME if o.data.len() <= PE_NAME_MAXLEN => &mut s.pe_name,
            IPVS_OPT_PE_NAME => return Err(SyncError::BadOption),
            _ if o.kind == RVS_OPT_SYNPROXY_WIN && o.data.len() == SYNPROXY_WIN_LEN => &mut s.windows,
            _ if o.kind == RVS_OPT_SYNPROXY_WIN => return Err(SyncError::BadOption),
            _ if o.is_optional() => continue,
            _ => {
                s.unknown_mandatory = true;
                return Ok(s);
            }
        };
        if slot.replace(o.data).is_some() {
            return Err(SyncError::BadOption);
        }
    }
    Ok(s)
}

impl<'a> SyncConn<'a> {
    /// Reads one entry. The entry view must have passed `new_checked` (the decoder's
    /// framing pass does that); errors are then only the "skip this entry" kind, unless
    /// its options are malformed.
    pub fn parse(e: &SyncConnEntry<&'a [u8]>) -> Result<Self, SyncError> {
        if e.is_inet6() {
            // Skipped whole, like a kernel built without IPv6: no option is read.
            return Err(SyncError::Ipv6Unsupported);
        }
        let opts = scan_options(e)?;
        if opts.unknown_mandatory {
            return Err(SyncError::UnknownMandatoryOption);
        }
        let f = e.flags() & flags::BACKUP_MASK;
        let template = f & flags::TEMPLATE != 0;
        let proto = Proto::from_ip_proto(e.protocol()).ok_or(SyncError::UnknownProtocol)?;
        let n = e.state();
        let state = match (template, proto) {
            (true, _) if n <= 1 => SyncState::Template { assured: n == 1 },
            (false, Proto::Tcp) => {
                SyncState::Tcp(
                    // Past `IP_VS_TCP_S_LAST` is refused, as the kernel does.
                    TcpState::ALL
                        .get(usize::from(n))
                        .copied()
                        .ok_or(SyncError::InvalidState)?,
                )
            }
            (false, Proto::Udp) if n == 0 => SyncState::Udp,
            _ => return Err(SyncError::InvalidState),
        };
        let fwd = match f & flags::FWD_MASK {
            flags::MASQ => ForwardMethod::Nat,
            flags::TUNNEL => ForwardMethod::Tun,
            flags::DROUTE => ForwardMethod::Dr,
            _ => return Err(SyncError::UnsupportedForward),
        };
        let pe = match (opts.pe_data, opts.pe_name) {
            (Some(data), Some(name)) => Some(PeParam { name, data }),
            (Some(_), None) => return Err(SyncError::PeDataWithoutName),
            // A name without data means nothing to the kernel either.
            (None, _) => None,
        };
        let seq = opts.seq.map(|d| {
            let (in_seq, out_seq) = SeqAdjust::parse(d);
            SeqAdjust {
                adjust_in: f & flags::IN_SEQ != 0,
                adjust_out: f & flags::OUT_SEQ != 0,
                in_seq,
                out_seq,
                windows: opts.windows.and_then(|w| w.try_into().ok()),
            }
        });
        Ok(SyncConn {
            proto,
            cip: e.caddr(),
            cport: e.cport(),
            vip: e.vaddr(),
            vport: e.vport(),
            rip: e.daddr(),
            rport: e.dport(),
            fwd,
            state,
            inactive: f & flags::INACTIVE != 0,
            timeout: e.timeout(),
            fwmark: e.fwmark(),
            seq,
            pe,
        })
    }

    /// The flags word as the kernel would send it for this connection. `NOOUTPUT`
    /// follows the forwarding method, as the kernel sets it for every non-NAT server.
    pub fn flags(&self) -> u32 {
        let mut f = match self.fwd {
            ForwardMethod::Nat => flags::MASQ,
            ForwardMethod::Tun => flags::TUNNEL | flags::NOOUTPUT,
            ForwardMethod::Dr => flags::DROUTE | flags::NOOUTPUT,
            ForwardMethod::FullNat => flags::FULLNAT,
        };
        if self.state.is_template() {
            f |= flags::TEMPLATE;
        }
        if self.inactive {
            f |= flags::INACTIVE;
        }
        if let Some(s) = self.seq {
            if s.adjust_in {
                f |= flags::IN_SEQ;
            }
            if s.adjust_out {
                f |= flags::OUT_SEQ;
            }
        }
        f
    }

    /// Bytes this entry takes, options included, padding excluded (its `ver_size` size).
    pub fn buffer_len(&self) -> usize {
        let mut n = conn::V4_LEN;
        if let Some(s) = self.seq {
            n += 2 + SEQ_DATA_LEN;
            if s.windows.is_some() {
                n += 2 + SYNPROXY_WIN_LEN;
            }
        }
        if let Some(pe) = self.pe {
            n += 2 + pe.data.len() + 2 + pe.name.len();
        }
        n
    }

    /// Whether `emit` can write this entry: PE name and data of lengths a receiver takes.
    pub fn check_emit(&self) -> Result<(), EmitError> {
        match self.pe {
            Some(pe)
                if !(1..=PE_NAME_MAXLEN).contains(&pe.name.len())
                    || !(1..=PE_DATA_MAXLEN).contains(&pe.data.len()) =>
            {
                Err(EmitError::BadPeParam)
            }
            _ => Ok(()),
        }
    }

    /// Writes the entry at the start of `buf`; returns `buffer_len()`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        self.check_emit()?;
        let len = self.buffer_len();
        let Some(out) = buf.get_mut(..len) else {
            return Err(EmitError::BufferTooSmall);
        };
        let mut e = SyncConnEntry::new_unchecked(&mut *out);
        e.set_entry_type(0);
        e.set_protocol(self.proto as u8);
        // Entry version 0 in the top bits; len < 4096 always (at most 36+26+6+257+18).
        e.set_ver_size(len as u16 & msg::SVER_MASK);
        e.set_flags(self.flags());
        e.set_state(self.state.number());
        e.set_cport(self.cport);
        e.set_vport(self.vport);
        e.set_dport(self.rport);
        e.set_fwmark(self.fwmark);
        e.set_timeout(self.timeout);
        e.set_caddr(self.cip);
        e.set_vaddr(self.vip);
        e.set_daddr(self.rip);
        // Options in the kernel's order: sequence data (then rvs's window shifts),
        // then PE data, then PE name.
        let mut at = conn::V4_LEN;
        if let Some(s) = self.seq {
            at += emit_option(
                out.get_mut(at..).unwrap_or(&mut []),
                IPVS_OPT_SEQ_DATA,
                &s.to_bytes(),
            );
            if let Some(w) = s.windows {
                at += emit_option(out.get_mut(at..).unwrap_or(&mut []), RVS_OPT_SYNPROXY_WIN, &w);
            }
        }
        if let Some(pe) = self.pe {
            at += emit_option(out.get_mut(at..).unwrap_or(&mut []), IPVS_OPT_PE_DATA, pe.data);
            at += emit_option(out.get_mut(at..).unwrap_or(&mut []), IPVS_OPT_PE_NAME, pe.name);
        }
        debug_assert_eq!(at, len);
        Ok(len)
    }
}

/// Why an entry could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The output buffer is shorter than `buffer_len()`.
    #[error("output buffer too small for the sync entry")]
    BufferTooSmall,
    /// PE name not 1..=16 bytes, or PE data not 1..=255 bytes: no kernel would accept it.
    #[error("persistence engine name or data of an impossible length")]
    BadPeParam,
}
