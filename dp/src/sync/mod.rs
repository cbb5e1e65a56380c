//! Connection sync between directors: the IPVS sync protocol, version 1, byte for byte
//! as Linux speaks it (net/netfilter/ipvs/ip_vs_sync.c), so an rvs director can back
//! up a kernel LVS director and the other way round.
//!
//! # Where it lives
//! - The codec (`msg`, `repr`, `decode`, `encode`): no sockets, no timers, no table.
//! - `threshold`: which connections a master sends and when (the kernel's
//!   `sync_threshold`, state changes, `sync_refresh_period`, templates), applied by a
//!   `SyncTap` in each worker's `Forwarder` while a master daemon runs.
//! - `hub`: the per-worker rings between the workers and the sync threads, in
//!   `core::Shared`; `event`: the fixed-size `SyncEvent` they carry.
//! - `daemon`: the master and backup threads and their kernel UDP sockets.
//! - `bulk`: full resync in rvs-dp (`rvs_proto::resync`'s binary requests): the
//!   serving end lists every worker's table as sync messages, a page at a time;
//!   the fetching end checks each page whole and hands its entries to the same
//!   inbound rings. rvs-cp carries the pages between directors (`cp/src/resync.rs`).
//! - `install`: the worker's side, between bursts: its tap on or off, and the
//!   received entries installed in its table, or refused and counted.
//!
//! # What is carried
//! Per IPv4 connection or persistence template: protocol (TCP or UDP), client, virtual
//! and real server addresses and ports, forwarding method (NAT, DR, TUN), the template
//! and inactive flags, the state (IPVS's TCP state numbers, UDP's single state, or a
//! template's assured bit), the timeout in seconds, the packet mark, TCP sequence
//! adjustments (`IPVS_OPT_SEQ_DATA`: a SYN-proxied connection's offset, see
//! `repr::SeqAdjust`, with its window shifts in rvs's optional `RVS_OPT_SYNPROXY_WIN`),
//! and persistence engine name and data bytes.
//!
//! # What is not
//! - IPv6 entries: recognised by their type bit, skipped by their size, counted.
//! - Sync v0 (the pre-2.6.37 format): refused and counted; we never send it.
//! - fwmark services: rvs has none. The mark rides along but selects nothing.
//! - Persistence engines: their name and data are passed through as bytes, never
//!   interpreted.
//! - Flag bits outside the kernel's backup mask, `NO_CPORT` (FTP helper), `LOCALNODE`
//!   and `BYPASS` forwarding: dropped, or the entry is refused and counted.
//!
//! # Layout (all multi-byte fields big-endian)
//! A datagram is an 8-byte header, then `nr_conns` entries, each starting on a 4-byte
//! boundary counted from the start of the datagram.
//!
//! Header: `0` reserved, always 0 (it is where v0 kept the count, so a v0 receiver sees
//! an empty message) · `1` syncid · `2..4` size of the whole datagram · `4` nr_conns ·
//! `5` version = 1 · `6..8` spare, 0.
//!
//! IPv4 entry, 36 bytes before options: `0` type (0 = IPv4; bit 0 set = IPv6) ·
//! `1` IP protocol · `2..4` entry version (top 4 bits, 0) and entry size in bytes (low
//! 12 bits, options included, padding not) · `4..8` `IP_VS_CONN_F_*` flags · `8..10`
//! state · `10..12` client port · `12..14` virtual port · `14..16` real server port ·
//! `16..20` fwmark · `20..24` timeout in seconds · `24..28` client address · `28..32`
//! virtual address · `32..36` real server address. The IPv6 form is the same up to 24,
//! then three 16-byte addresses: 72 bytes.
//!
//! Options follow the fixed part inside the entry's size, as `[type][length][data]`
//! with no padding between them: sequence data (type 1, 24 bytes: in then out, each
//! init_seq, delta, previous_delta), PE data (type 2, up to 255 bytes), PE name (type 3,
//! up to 16 bytes). Type bit 6 marks an option a receiver may ignore if unknown:
//! rvs's own `RVS_OPT_SYNPROXY_WIN` (type 0x60, 4 bytes, after the sequence data) is one. Zero
//! bytes pad the entry to the next 4-byte boundary only when another entry follows:
//! the datagram's last entry is not padded.
//!
//! # Costs
//! The decoder borrows the datagram and allocates nothing: two passes over it (framing,
//! then entries), each entry's options walked in place. The encoder allocates its
//! message buffer once and reuses it.
//!
//! # Differences from the kernel, on purpose
//! - A datagram with any framing error (an entry or option running past its end, a bad
//!   entry version or type, a malformed option) is refused whole, before any entry is
//!   yielded. The kernel applies the entries before the bad one; we never act on a
//!   datagram we cannot read to the end.
//! - Templates must be TCP or UDP with state 0 or 1 (the kernel also takes fwmark
//!   templates, protocol 0 with the mark in the virtual address, and only logs other
//!   template states).
//! - The encoder never puts more than 255 entries in one message (the kernel's count
//!   byte would wrap on very large `sync_maxlen`), and never exceeds `sync_maxlen`.

pub mod bulk;
pub mod daemon;
pub mod decode;
pub mod encode;
pub mod event;
pub mod hub;
pub mod install;
pub mod msg;
pub mod repr;
pub mod threshold;

#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;

pub use daemon::{DaemonCounters, SyncDaemons};
pub use decode::{SyncCounters, SyncDecoder, SyncEntries};
pub use encode::SyncEncoder;
pub use event::SyncEvent;
pub use hub::SyncHub;
pub use install::worker_tick;
pub use msg::{SyncConnEntry, SyncMessage, SyncOption, SyncOptions};
pub use repr::{EmitError, PeParam, SeqAdjust, SeqDelta, SyncConn, SyncState};
pub use threshold::{SyncParams, SyncTap};

/// The version byte of the messages we send and accept.
pub const SYNC_PROTO_VER: u8 = 1;
/// Default multicast group (`IP_VS_SYNC_GROUP`) and base UDP port (`IP_VS_SYNC_PORT`;
/// sync thread `n` uses port + n).
pub const IP_VS_SYNC_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
pub const IP_VS_SYNC_PORT: u16 = 8848;

/// Why a datagram was refused, or one of its entries skipped. Stable order: counters
/// are indexed by the discriminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[repr(u8)]
pub enum SyncError {
    // --- The whole datagram is refused ---
    /// Shorter than the 8-byte header.
    #[error("sync message header truncated")]
    TruncatedHeader = 0,
    /// The header's size field is not the datagram's length.
    #[error("sync message size field disagrees with the datagram length")]
    BadSize,
    /// A syncid other than ours (when ours is not 0, which accepts any).
    #[error("sync message for another syncid")]
    WrongSyncId,
    /// A version 0 message (nonzero first byte: v0 keeps its entry count there).
    #[error("sync message is version 0")]
    Version0,
    /// First byte 0 but version not 1, or the spare bytes not 0.
    #[error("sync message of an unknown version")]
    UnknownVersion,
    /// `nr_conns` promises an entry where fewer than 36 bytes are left.
    #[error("sync message has fewer entries than its count")]
    CountPastEnd,
    /// An entry's size is below the fixed part of its type.
    #[error("sync entry smaller than its fixed part")]
    EntryTooSmall,
    /// An entry's size runs past the end of the datagram.
    #[error("sync entry runs past the datagram")]
    EntryTooLarge,
    /// Nonzero entry version in `ver_size`.
    #[error("sync entry of an unknown version")]
    BadEntryVersion,
    /// Entry type neither 0 (IPv4) nor with the IPv6 bit.
    #[error("sync entry of an unknown type")]
    UnknownEntryType,
    /// An option's header or data runs past its entry.
    #[error("sync option runs past its entry")]
    OptionOverrun,
    /// An option of length 0, sequence data not 24 bytes, a PE name over 16 bytes, or
    /// an option given twice.
    #[error("malformed sync option")]
    BadOption,
    // --- One entry is skipped, the rest of the datagram is used ---
    /// An IPv6 entry.
    #[error("IPv6 sync entry (unsupported)")]
    Ipv6Unsupported,
    /// A protocol other than TCP and UDP.
    #[error("sync entry for an unsupported protocol")]
    UnknownProtocol,
    /// A state number the protocol (or a template) does not have.
    #[error("sync entry with an invalid state")]
    InvalidState,
    /// Forwarding method local node, bypass, or an undefined one.
    #[error("sync entry with an unsupported forwarding method")]
    UnsupportedForward,
    /// An unknown option not marked optional.
    #[error("sync entry with an unknown mandatory option")]
    UnknownMandatoryOption,
    /// PE data without the PE name that says how to read it.
    #[error("sync entry with PE data but no PE name")]
    PeDataWithoutName,
}

// A reason added at the end without growing COUNT would go uncounted: refuse to build.
const _: () = assert!(SyncError::PeDataWithoutName as usize + 1 == SyncError::COUNT);

impl SyncError {
    pub const COUNT: usize = 18;

    pub const ALL: [SyncError; SyncError::COUNT] = [
        SyncError::TruncatedHeader,
        SyncError::BadSize,
        SyncError::WrongSyncId,
        SyncError::Version0,
        SyncError::UnknownVersion,
        SyncError::CountPastEnd,
        SyncError::EntryTooSmall,
        SyncError::EntryTooLarge,
        SyncError::BadEntryVersion,
        SyncError::UnknownEntryType,
        SyncError::OptionOverrun,
        SyncError::BadOption,
        SyncError::Ipv6Unsupported,
        SyncError::UnknownProtocol,
        SyncError::InvalidState,
        SyncError::UnsupportedForward,
        SyncError::UnknownMandatoryOption,
        SyncError::PeDataWithoutName,
    ];

    /// True when the error refuses the whole datagram, false when it skips one entry.
    pub fn drops_datagram(self) -> bool {
        (self as u8) < (SyncError::Ipv6Unsupported as u8)
    }

    /// A short snake_case name for counters and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncError::TruncatedHeader => "truncated_header",
            SyncError::BadSize => "bad_size",
            SyncError::WrongSyncId => "wrong_syncid",
            SyncError::Version0 => "version0",
            SyncError::UnknownVersion => "unknown_version",
            SyncError::CountPastEnd => "count_past_end",
            SyncError::EntryTooSmall => "entry_too_small",
            SyncError::EntryTooLarge => "entry_too_large",
            SyncError::BadEntryVersion => "bad_entry_version",
            SyncError::UnknownEntryType => "unknown_entry_type",
            SyncError::OptionOverrun => "option_overrun",
            SyncError::BadOption => "bad_option",
            SyncError::Ipv6Unsupported => "ipv6_unsupported",
            SyncError::UnknownProtocol => "unknown_protocol",
            SyncError::InvalidState => "invalid_state",
            SyncError::UnsupportedForward => "unsupported_forward",
            SyncError::UnknownMandatoryOption => "unknown_mandatory_option",
            SyncError::PeDataWithoutName => "pe_data_without_name",
        }
    }
}

/// Whether this director sends (master) or receives (backup) sync messages; the
/// kernel sizes messages differently for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncRole {
    Master,
    Backup,
}

/// Address family of the multicast group: it sets the IP + UDP header overhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McastFamily {
    Ipv4,
    Ipv6,
}

impl McastFamily {
    /// IP header + UDP header bytes in front of the sync payload.
    pub const fn header_overhead(self) -> u32 {
        match self {
            McastFamily::Ipv4 => 20 + 8,
            McastFamily::Ipv6 => 40 + 8,
        }
    }
}

/// The largest sync payload, as the kernel's `start_sync_thread` derives it.
///
/// A master assumes a 1500-byte MTU whatever its interface says, so that every backup
/// can take its messages unfragmented: 1472 bytes over IPv4. A backup sizes its
/// receive buffer from its interface MTU, at least 1500. A configured value (`0` = none)
/// is clamped to at least 1 (master) or 1024 (backup), and to what fits a 64 KiB IP
/// datagram.
pub fn sync_maxlen(role: SyncRole, family: McastFamily, dev_mtu: u32, configured: u32) -> usize {
    let hlen = family.header_overhead();
    let (mtu, min) = match role {
        SyncRole::Master => (1500, 1),
        SyncRole::Backup => (dev_mtu.clamp(1500, 65535), 1024),
    };
    let len = if configured != 0 {
        configured.clamp(min, 65535 - hlen)
    } else {
        mtu - hlen
    };
    len as usize
}
