//! Zero-copy views over a sync v1 datagram: the message header, one connection entry,
//! and the option TLVs that follow an entry's fixed part.
//!
//! Same contract as `crate::wire`: `new_checked` validates lengths once, after which no
//! accessor or setter can panic (the byte helpers read 0 and write nothing out of range).
//! Setters exist only when `T: AsMut<[u8]>`. Semantic checks (version, syncid,
//! protocol, state) belong to `decode` and `SyncConn::parse`, not to the views.

use std::net::Ipv4Addr;

use crate::wire::bytes::{get_u16, get_u32, get_u8, set_u16, set_u32, set_u8, slice};

use super::SyncError;

/// Byte offsets of the message header (the kernel's `struct ip_vs_sync_mesg`).
pub mod header {
    /// Always 0 in v1. A v0 header has its connection count here, so a v0-only
    /// receiver reads a v1 message as "no connections" and drops nothing by mistake.
    pub const RESERVED: usize = 0;
    pub const SYNCID: usize = 1;
    /// Whole datagram length, header included, big-endian.
    pub const SIZE: usize = 2;
    pub const NR_CONNS: usize = 4;
    pub const VERSION: usize = 5;
    /// Two bytes, must be 0 for the kernel to take the message as v1.
    pub const SPARE: usize = 6;
    pub const LEN: usize = 8;
}

/// Byte offsets of one connection entry in IPv4 form (`struct ip_vs_sync_v4`).
/// The first 24 bytes are shared with the IPv6 form; only the addresses differ.
pub mod conn {
    pub const TYPE: usize = 0;
    pub const PROTOCOL: usize = 1;
    /// Entry version in the top 4 bits (0 today), entry size in the low 12.
    pub const VER_SIZE: usize = 2;
    pub const FLAGS: usize = 4;
    pub const STATE: usize = 8;
    pub const CPORT: usize = 10;
    pub const VPORT: usize = 12;
    pub const DPORT: usize = 14;
    pub const FWMARK: usize = 16;
    /// Seconds, not jiffies: the two directors need not share HZ.
    pub const TIMEOUT: usize = 20;
    pub const CADDR: usize = 24;
    pub const VADDR: usize = 28;
    pub const DADDR: usize = 32;
    /// Fixed part of an IPv4 entry; options follow.
    pub const V4_LEN: usize = 36;
    /// Fixed part of an IPv6 entry (three 16-byte addresses from offset 24).
    pub const V6_LEN: usize = 72;
}

/// Bit of the entry type byte that marks the IPv6 form (`STYPE_F_INET6`).
pub const STYPE_F_INET6: u8 = 1;
/// `ver_size` split: entry version above, entry size below.
pub const SVER_SHIFT: u16 = 12;
pub const SVER_MASK: u16 = 0x0fff;

/// Option types (`IPVS_OPT_*`). An option whose type has `IPVS_OPT_F_PARAM` set is
/// optional: a receiver that does not know it skips it instead of the whole entry.
pub const IPVS_OPT_SEQ_DATA: u8 = 1;
pub const IPVS_OPT_PE_DATA: u8 = 2;
pub const IPVS_OPT_PE_NAME: u8 = 3;
pub const IPVS_OPT_F_PARAM: u8 = 1 << (7 - 1);
/// rvs's own option, optional (`IPVS_OPT_F_PARAM` set: a kernel skips it): the
/// window shifts of a SYN-proxied connection, 4 bytes, beside its sequence data
/// (`repr::SeqAdjust::windows`). 32 is far from the kernel's numbers (1 to 3).
pub const RVS_OPT_SYNPROXY_WIN: u8 = IPVS_OPT_F_PARAM | 32;
/// Length of `RVS_OPT_SYNPROXY_WIN`'s data.
pub const SYNPROXY_WIN_LEN: usize = 4;

/// Length of the sequence option's data: `in_seq` then `out_seq`, each
/// `{init_seq, delta, previous_delta}` as three big-endian u32.
pub const SEQ_DATA_LEN: usize = 24;
/// Longest persistence engine name the kernel accepts (`IP_VS_PENAME_MAXLEN`).
pub const PE_NAME_MAXLEN: usize = 16;
/// Longest persistence engine data (`IP_VS_PEDATA_MAXLEN`), also the TLV length limit.
pub const PE_DATA_MAXLEN: usize = 255;

/// Rounds an entry size up to the 4-byte boundary where the next entry starts.
#[inline]
pub const fn padded(size: usize) -> usize {
    (size + 3) & !3
}

/// A view over a whole sync message (header and entries).
#[derive(Debug, Clone)]
pub struct SyncMessage<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SyncMessage<T> {
    /// Wrap without validation. Accessors stay total; missing fields read as zero.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        SyncMessage { buffer }
    }

    /// Wrap after checking that the header is whole and that its size field equals the
    /// datagram length, as the kernel insists (a datagram is never cut or padded).
    pub fn new_checked(buffer: T) -> Result<Self, SyncError> {
        let m = Self::new_unchecked(buffer);
        let len = m.buffer.as_ref().len();
        if len < header::LEN {
            return Err(SyncError::TruncatedHeader);
        }
        if usize::from(m.size()) != len {
            return Err(SyncError::BadSize);
        }
        Ok(m)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn reserved(&self) -> u8 {
        get_u8(self.buffer.as_ref(), header::RESERVED)
    }

    #[inline]
    pub fn syncid(&self) -> u8 {
        get_u8(self.buffer.as_ref(), header::SYNCID)
    }

    #[inline]
    pub fn size(&self) -> u16 {
        get_u16(self.buffer.as_ref(), header::SIZE)
    }

    #[inline]
    pub fn nr_conns(&self) -> u8 {
        get_u8(self.buffer.as_ref(), header::NR_CONNS)
    }

    #[inline]
    pub fn version(&self) -> u8 {
        get_u8(self.buffer.as_ref(), header::VERSION)
    }

    #[inline]
    pub fn spare(&self) -> u16 {
        get_u16(self.buffer.as_ref(), header::SPARE)
    }

    /// The kernel's own test for a v1 message; anything else it hands to its v0 parser.
    #[inline]
    pub fn is_v1(&self) -> bool {
        self.version() == super::SYNC_PROTO_VER && self.reserved() == 0 && self.spare() == 0
    }

    /// The bytes after the header, where the entries start.
    #[inline]
    pub fn entries_bytes(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        slice(b, header::LEN..b.len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SyncMessage<T> {
    /// Writes an empty v1 header: reserved 0, version 1, spare 0, no entries, size 8.
    pub fn init_v1(&mut self, syncid: u8) {
        let b = self.buffer.as_mut();
        set_u8(b, header::RESERVED, 0);
        set_u8(b, header::SYNCID, syncid);
        set_u16(b, header::SIZE, header::LEN as u16);
        set_u8(b, header::NR_CONNS, 0);
        set_u8(b, header::VERSION, super::SYNC_PROTO_VER);
        set_u16(b, header::SPARE, 0);
    }

    #[inline]
    pub fn set_reserved(&mut self, v: u8) {
        set_u8(self.buffer.as_mut(), header::RESERVED, v)
    }

    #[inline]
    pub fn set_syncid(&mut self, v: u8) {
        set_u8(self.buffer.as_mut(), header::SYNCID, v)
    }

    #[inline]
    pub fn set_size(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), header::SIZE, v)
    }

    #[inline]
    pub fn set_nr_conns(&mut self, v: u8) {
        set_u8(self.buffer.as_mut(), header::NR_CONNS, v)
    }

    #[inline]
    pub fn set_version(&mut self, v: u8) {
        set_u8(self.buffer.as_mut(), header::VERSION, v)
    }

    #[inline]
    pub fn set_spare(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), header::SPARE, v)
    }
}

/// A view over one connection entry. The buffer starts at the entry and may run on past
/// it (the rest of the datagram); `size()` says where the entry ends.
#[derive(Debug, Clone)]
pub struct SyncConnEntry<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SyncConnEntry<T> {
    /// Wrap without validation. Accessors stay total; missing fields read as zero.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        SyncConnEntry { buffer }
    }

    /// Wrap after the kernel's framing checks, in its order: room for an IPv4 fixed
    /// part, a size that stays inside the buffer, entry version 0, a known type, and a
    /// size that covers the fixed part of that type.
    pub fn new_checked(buffer: T) -> Result<Self, SyncError> {
        let e = Self::new_unchecked(buffer);
        let len = e.buffer.as_ref().len();
        // The kernel asks for a v4-sized fixed part before it even reads the type.
        if len < conn::V4_LEN {
            return Err(SyncError::CountPastEnd);
        }
        if e.size() > len {
            return Err(SyncError::EntryTooLarge);
        }
        if e.entry_version() != 0 {
            return Err(SyncError::BadEntryVersion);
        }
        let fixed = e.fixed_len().ok_or(SyncError::UnknownEntryType)?;
        if e.size() < fixed {
            return Err(SyncError::EntryTooSmall);
        }
        Ok(e)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    #[inline]
    pub fn entry_type(&self) -> u8 {
        get_u8(self.b(), conn::TYPE)
    }

    /// The kernel tests only this bit: any type with it set is an IPv6 entry.
    #[inline]
    pub fn is_inet6(&self) -> bool {
        self.entry_type() & STYPE_F_INET6 != 0
    }

    /// Length of the fixed part for this entry's type, or `None` for an unknown type.
    #[inline]
    pub fn fixed_len(&self) -> Option<usize> {
        match self.entry_type() {
            t if t & STYPE_F_INET6 != 0 => Some(conn::V6_LEN),
            0 => Some(conn::V4_LEN),
            _ => None,
        }
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        get_u8(self.b(), conn::PROTOCOL)
    }

    #[inline]
    pub fn ver_size(&self) -> u16 {
        get_u16(self.b(), conn::VER_SIZE)
    }

    #[inline]
    pub fn entry_version(&self) -> u16 {
        self.ver_size() >> SVER_SHIFT
    }

    /// Entry length in bytes, options included, padding excluded.
    #[inline]
    pub fn size(&self) -> usize {
        usize::from(self.ver_size() & SVER_MASK)
    }

    /// Where the next entry starts, relative to this one.
    #[inline]
    pub fn padded_size(&self) -> usize {
        padded(self.size())
    }

    /// Raw `IP_VS_CONN_F_*` bits as sent (the sender only clears `HASHED`).
    #[inline]
    pub fn flags(&self) -> u32 {
        get_u32(self.b(), conn::FLAGS)
    }

    #[inline]
    pub fn state(&self) -> u16 {
        get_u16(self.b(), conn::STATE)
    }

    #[inline]
    pub fn cport(&self) -> u16 {
        get_u16(self.b(), conn::CPORT)
    }

    #[inline]
    pub fn vport(&self) -> u16 {
        get_u16(self.b(), conn::VPORT)
    }

    #[inline]
    pub fn dport(&self) -> u16 {
        get_u16(self.b(), conn::DPORT)
    }

    #[inline]
    pub fn fwmark(&self) -> u32 {
        get_u32(self.b(), conn::FWMARK)
    }

    #[inline]
    pub fn timeout(&self) -> u32 {
        get_u32(self.b(), conn::TIMEOUT)
    }

    /// Client address (IPv4 form only: meaningless on an IPv6 entry).
    #[inline]
    pub fn caddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_u32(self.b(), conn::CADDR))
    }

    #[inline]
    pub fn vaddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_u32(self.b(), conn::VADDR))
    }

    #[inline]
    pub fn daddr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_u32(self.b(), conn::DADDR))
    }

    /// The option TLVs: the bytes between the fixed part and the entry's size.
    #[inline]
    pub fn options(&self) -> SyncOptions<'_> {
        let from = self.fixed_len().unwrap_or(conn::V4_LEN);
        SyncOptions {
            rest: slice(self.b(), from..self.size()),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SyncConnEntry<T> {
    #[inline]
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    #[inline]
    pub fn set_entry_type(&mut self, v: u8) {
        set_u8(self.bm(), conn::TYPE, v)
    }

    #[inline]
    pub fn set_protocol(&mut self, v: u8) {
        set_u8(self.bm(), conn::PROTOCOL, v)
    }

    #[inline]
    pub fn set_ver_size(&mut self, v: u16) {
        set_u16(self.bm(), conn::VER_SIZE, v)
    }

    #[inline]
    pub fn set_flags(&mut self, v: u32) {
        set_u32(self.bm(), conn::FLAGS, v)
    }

    #[inline]
    pub fn set_state(&mut self, v: u16) {
        set_u16(self.bm(), conn::STATE, v)
    }

    #[inline]
    pub fn set_cport(&mut self, v: u16) {
        set_u16(self.bm(), conn::CPORT, v)
    }

    #[inline]
    pub fn set_vport(&mut self, v: u16) {
        set_u16(self.bm(), conn::VPORT, v)
    }

    #[inline]
    pub fn set_dport(&mut self, v: u16) {
        set_u16(self.bm(), conn::DPORT, v)
    }

    #[inline]
    pub fn set_fwmark(&mut self, v: u32) {
        set_u32(self.bm(), conn::FWMARK, v)
    }

    #[inline]
    pub fn set_timeout(&mut self, v: u32) {
        set_u32(self.bm(), conn::TIMEOUT, v)
    }

    #[inline]
    pub fn set_caddr(&mut self, a: Ipv4Addr) {
        set_u32(self.bm(), conn::CADDR, a.into())
    }

    #[inline]
    pub fn set_vaddr(&mut self, a: Ipv4Addr) {
        set_u32(self.bm(), conn::VADDR, a.into())
    }

    #[inline]
    pub fn set_daddr(&mut self, a: Ipv4Addr) {
        set_u32(self.bm(), conn::DADDR, a.into())
    }
}

/// One option TLV: its raw type byte (the `IPVS_OPT_F_PARAM` bit included) and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOption<'a> {
    pub kind: u8,
    pub data: &'a [u8],
}

impl SyncOption<'_> {
    /// The type with the "optional" bit masked off, as the kernel dispatches on it.
    #[inline]
    pub fn base_kind(&self) -> u8 {
        self.kind & !IPVS_OPT_F_PARAM
    }

    #[inline]
    pub fn is_optional(&self) -> bool {
        self.kind & IPVS_OPT_F_PARAM != 0
    }
}

/// Iterator over an entry's option TLVs: `[type u8][length u8][data; length]`, back to
/// back, no padding between them. A malformed TLV ends the walk with one error.
#[derive(Debug, Clone)]
pub struct SyncOptions<'a> {
    rest: &'a [u8],
}

impl<'a> SyncOptions<'a> {
    /// Walks `bytes` as back-to-back TLVs (an entry's bytes past its fixed part).
    #[inline]
    pub const fn new(bytes: &'a [u8]) -> Self {
        SyncOptions { rest: bytes }
    }
}

impl<'a> Iterator for SyncOptions<'a> {
    type Item = Result<SyncOption<'a>, SyncError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (kind, len, after) = match self.rest {
            [] => return None,
            [kind, len, after @ ..] => (*kind, usize::from(*len), after),
            // A lone byte: a TLV header cut by the entry end.
            [_] => {
                self.rest = &[];
                return Some(Err(SyncError::OptionOverrun));
            }
        };
        if len == 0 {
            // The kernel refuses empty options outright; nothing carries zero bytes.
            self.rest = &[];
            return Some(Err(SyncError::BadOption));
        }
        let Some((data, rest)) = after.split_at_checked(len) else {
            self.rest = &[];
            return Some(Err(SyncError::OptionOverrun));
        };
        self.rest = rest;
        Some(Ok(SyncOption { kind, data }))
    }
}

/// Writes one TLV at the start of `buf`; returns its length (2 + data). Writes nothing
/// and returns 0 if it does not fit or the data is empty or over 255 bytes.
pub fn emit_option(buf: &mut [u8], kind: u8, data: &[u8]) -> usize {
    let Ok(len) = u8::try_from(data.len()) else {
        return 0;
    };
    if len == 0 {
        return 0;
    }
    let Some(dst) = buf.get_mut(..2 + data.len()) else {
        return 0;
    };
    dst[0] = kind;
    dst[1] = len;
    dst[2..].copy_from_slice(data);
    dst.len()
}
