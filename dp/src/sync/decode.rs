//! Reading received sync datagrams.
//!
//! Two passes over the borrowed bytes, neither allocating: `validate` checks the header
//! and the framing of every entry (sizes, types, option TLVs), so that a datagram is
//! either refused whole or read to its end; `SyncEntries` then parses one entry per
//! step, yielding a `SyncConn` or the reason that one entry is skipped.

use super::msg::{SyncConnEntry, SyncMessage};
use super::repr::{scan_options, SyncConn};
use super::{SyncError, SYNC_PROTO_VER};

/// Counts by outcome. Not atomics: one decoder belongs to one thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncCounters {
    /// Datagrams accepted (their entries may still be skipped one by one).
    pub messages: u64,
    /// Entries yielded as connections.
    pub conns: u64,
    by_reason: [u64; SyncError::COUNT],
}

impl SyncCounters {
    #[inline]
    pub fn record(&mut self, e: SyncError) {
        self.by_reason[e as usize] += 1;
    }

    #[inline]
    pub fn get(&self, e: SyncError) -> u64 {
        self.by_reason[e as usize]
    }

    /// Every reason with its count, in discriminant order, for metrics.
    pub fn iter(&self) -> impl Iterator<Item = (SyncError, u64)> + '_ {
        SyncError::ALL.iter().map(|&e| (e, self.get(e)))
    }
}

/// Checks a datagram as a backup must before using any of it: header, size, syncid,
/// version, then the framing of all `nr_conns` entries. Returns the entry count.
///
/// `syncid` 0 accepts every syncid, as the kernel's backup does.
pub fn validate(datagram: &[u8], syncid: u8) -> Result<u8, SyncError> {
    let m = SyncMessage::new_checked(datagram)?;
    if syncid != 0 && m.syncid() != syncid {
        return Err(SyncError::WrongSyncId);
    }
    if !m.is_v1() {
        return Err(if m.reserved() != 0 {
            SyncError::Version0
        } else {
            SyncError::UnknownVersion
        });
    }
    debug_assert_eq!(m.version(), SYNC_PROTO_VER);
    let bytes = m.entries_bytes();
    let mut at = 0usize;
    for _ in 0..m.nr_conns() {
        let e = SyncConnEntry::new_checked(bytes.get(at..).unwrap_or(&[]))?;
        // IPv6 entries are skipped unread, so only IPv4 options must be well formed.
        if !e.is_inet6() {
            scan_options(&e)?;
        }
        at += e.padded_size();
    }
    // Bytes after the last entry are ignored, as the kernel ignores them.
    Ok(m.nr_conns())
}

/// A backup's reader: filters by syncid and counts every outcome.
#[derive(Debug, Clone, Default)]
pub struct SyncDecoder {
    syncid: u8,
    counters: SyncCounters,
}

impl SyncDecoder {
    /// `syncid` 0 accepts messages of every syncid.
    pub fn new(syncid: u8) -> Self {
        SyncDecoder {
            syncid,
            counters: SyncCounters::default(),
        }
    }

    pub fn counters(&self) -> &SyncCounters {
        &self.counters
    }

    pub fn counters_mut(&mut self) -> &mut SyncCounters {
        &mut self.counters
    }

    /// Validates the datagram whole, then iterates over its entries. A refused datagram
    /// is counted under its reason and yields nothing.
    pub fn decode<'a, 'd>(&'d mut self, datagram: &'a [u8]) -> Result<SyncEntries<'a, 'd>, SyncError> {
        match validate(datagram, self.syncid) {
            Ok(n) => {
                self.counters.messages += 1;
                Ok(SyncEntries {
                    bytes: datagram.get(super::msg::header::LEN..).unwrap_or(&[]),
                    at: 0,
                    left: n,
                    counters: &mut self.counters,
                })
            }
            Err(e) => {
                self.counters.record(e);
                Err(e)
            }
        }
    }
}

/// The entries of a validated datagram, in order. Each item is a whole connection or
/// the reason that entry is skipped; never part of one.
#[derive(Debug)]
pub struct SyncEntries<'a, 'd> {
    bytes: &'a [u8],
    at: usize,
    left: u8,
    counters: &'d mut SyncCounters,
}

impl<'a> Iterator for SyncEntries<'a, '_> {
    type Item = Result<SyncConn<'a>, SyncError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r = step(self.bytes, &mut self.at);
        if r.as_ref().is_err_and(|e| e.drops_datagram()) {
            // Cannot happen after `validate`; stop rather than read misframed bytes.
            self.left = 0;
        }
        match &r {
            Ok(_) => self.counters.conns += 1,
            Err(e) => self.counters.record(*e),
        }
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.left)))
    }
}

/// One step of the entry walk over the bytes after the header: parse the entry at
/// `at`, move `at` to the next 4-byte boundary past it.
fn step<'a>(bytes: &'a [u8], at: &mut usize) -> Result<SyncConn<'a>, SyncError> {
    let e = SyncConnEntry::new_checked(bytes.get(*at..).unwrap_or(&[]))?;
    *at += e.padded_size();
    SyncConn::parse(&e)
}

/// Decodes without counters: the validated entry iterator's items, for tests and tools.
pub fn entries(
    datagram: &[u8],
    syncid: u8,
) -> Result<impl Iterator<Item = Result<SyncConn<'_>, SyncError>>, SyncError> {
    let n = validate(datagram, syncid)?;
    let bytes = datagram.get(super::msg::header::LEN..).unwrap_or(&[]);
    let mut at = 0usize;
    Ok((0..n).map(move |_| step(bytes, &mut at)))
}
