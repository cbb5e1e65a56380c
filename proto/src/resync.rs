//! Full resync's wire (beyond IPVS): how a director's whole connection table
//! travels from its rvs-dp, through its rvs-cp and a TCP connection, to the
//! peer's rvs-cp and rvs-dp. rvs-cp speaks all of it without the forwarding
//! core: it frames and counts, it never reads an entry.
//!
//! # The entries
//! IPVS sync v1 messages (dp/src/sync: header, then entries with their
//! options), back to back, each delimited by its header's size field: the
//! codec every sync message already goes through, fuzzed, with every
//! refusal counted. An entry's timeout is the seconds it has left on the
//! sending director, so it expires on both at the same time. A page of
//! entries states how many it holds; rvs-dp refuses a page whose messages
//! hold another number, before installing any of it.
//!
//! # The TCP stream (listener → fetcher)
//! `STREAM_MAGIC`, then frames: a 12-byte header (`kind` u8, 3 zero bytes,
//! `count` u32, `len` u32, big-endian) and `len` bytes.
//! - `Entries`: `count` entries (1 or more) in `len` bytes of sync messages,
//!   at most `MAX_FRAME_BYTES`, at least `MIN_ENTRY_BYTES` per entry;
//! - `End`: the listing is whole; `count` entries were sent in all, `len` 0;
//! - `Error`: the listener failed or refused (`len` bytes of UTF-8 reason,
//!   `count` 0). `NOT_ALLOWED` is the refusal of a source not allowed.
//!
//! # On the control ring (rvs-cp ↔ rvs-dp)
//! Binary requests beside the JSON commands: they start with `BULK_MAGIC`,
//! which no JSON text does. `List` asks for a page of a listing (listing 0:
//! take a new one of every worker's table) and is answered with a
//! `ListPage` (or a JSON `Reply::Error`); `Install` hands a page of entries
//! to install and is answered with a JSON `Reply`.

/// The first bytes a resync listener sends: a peer of another version, or
/// something else listening there, is told apart at once.
pub const STREAM_MAGIC: [u8; 8] = *b"RVSRSYN1";
/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: usize = 12;
/// Largest frame payload: a page of about 29,000 entries, well inside the
/// control ring's largest message.
pub const MAX_FRAME_BYTES: u32 = 1 << 20;
/// The fixed part of an IPv4 sync v1 entry: no entry is shorter.
pub const MIN_ENTRY_BYTES: u32 = 36;
/// The reason text of an `Error` frame refusing a source not allowed.
pub const NOT_ALLOWED: &str = "not allowed";

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Entries = 1,
    End = 2,
    Error = 3,
}

/// A frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub count: u32,
    pub len: u32,
}

/// Why a frame header (or a control-ring message) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame of {0} bytes, over the {MAX_FRAME_BYTES}-byte limit")]
    TooLong(u32),
    #[error("frame claims {count} entries in {len} bytes")]
    BadCount { count: u32, len: u32 },
    #[error("malformed frame header")]
    BadHeader,
    #[error("malformed bulk message: {0}")]
    BadMessage(&'static str),
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_be_bytes(w)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        w.copy_from_slice(s);
    }
    u64::from_be_bytes(w)
}

/// Whether `count` entries can be in `len` bytes of sync messages.
pub fn plausible(count: u32, len: u32) -> bool {
    count >= 1 && u64::from(count) * u64::from(MIN_ENTRY_BYTES) <= u64::from(len)
}

impl FrameHeader {
    pub fn entries(count: u32, len: usize) -> Self {
        FrameHeader {
            kind: FrameKind::Entries,
            count,
            len: len as u32,
        }
    }

    pub fn to_bytes(self) -> [u8; FRAME_HEADER_LEN] {
        let mut out = [0u8; FRAME_HEADER_LEN];
        out[0] = self.kind as u8;
        out[4..8].copy_from_slice(&self.count.to_be_bytes());
        out[8..12].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    /// Reads and checks a header: a known kind, zero spare bytes, a length
    /// within `MAX_FRAME_BYTES`, and a count its kind allows.
    pub fn parse(b: &[u8; FRAME_HEADER_LEN]) -> Result<Self, FrameError> {
        let kind = match b[0] {
            1 => FrameKind::Entries,
            2 => FrameKind::End,
            3 => FrameKind::Error,
            k => return Err(FrameError::UnknownKind(k)),
        };
        if b[1..4] != [0, 0, 0] {
            return Err(FrameError::BadHeader);
        }
        let (count, len) = (be32(b, 4), be32(b, 8));
        if len > MAX_FRAME_BYTES {
            return Err(FrameError::TooLong(len));
        }
        let ok = match kind {
            FrameKind::Entries => plausible(count, len),
            FrameKind::End => len == 0,
            FrameKind::Error => count == 0,
        };
        if !ok {
            return Err(FrameError::BadCount { count, len });
        }
        Ok(FrameHeader { kind, count, len })
    }
}

/// The first bytes of every binary request and reply on the control ring.
pub const BULK_MAGIC: [u8; 8] = *b"RVSBULK1";
const OP_LIST: u8 = 1;
const OP_INSTALL: u8 = 2;
const OP_PAGE: u8 = 3;
const LIST_LEN: usize = 28;
const INSTALL_HDR: usize = 16;
const PAGE_HDR: usize = 32;

/// A binary request on the control ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkRequest<'a> {
    /// A page of listing `listing` (0: take a new listing of every worker's
    /// table) from entry `offset`, of at most `max_bytes` of entries.
    List {
        listing: u64,
        offset: u32,
        max_bytes: u32,
    },
    /// `count` entries to install, in `entries` (sync v1 messages).
    Install { count: u32, entries: &'a [u8] },
}

fn head(op: u8, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&BULK_MAGIC);
    v.extend_from_slice(&[op, 0, 0, 0]);
    v
}

/// The op byte of a bulk message, or None when `b` is not one.
fn op_of(b: &[u8]) -> Option<u8> {
    (b.get(..8) == Some(&BULK_MAGIC[..])).then(|| b.get(8).copied().unwrap_or(0))
}

impl<'a> BulkRequest<'a> {
    pub fn to_bytes(&self) -> Vec<u8> {
        match *self {
            BulkRequest::List {
                listing,
                offset,
                max_bytes,
            } => {
                let mut v = head(OP_LIST, LIST_LEN);
                v.extend_from_slice(&listing.to_be_bytes());
                v.extend_from_slice(&offset.to_be_bytes());
                v.extend_from_slice(&max_bytes.to_be_bytes());
                v
            }
            BulkRequest::Install { count, entries } => {
                let mut v = head(OP_INSTALL, INSTALL_HDR + entries.len());
                v.extend_from_slice(&count.to_be_bytes());
                v.extend_from_slice(entries);
                v
            }
        }
    }

    /// None: not a bulk request (a JSON command). Some(Err): one, malformed.
    pub fn parse(b: &'a [u8]) -> Option<Result<Self, FrameError>> {
        let op = op_of(b)?;
        Some(match op {
            OP_LIST if b.len() == LIST_LEN => Ok(BulkRequest::List {
                listing: be64(b, 12),
                offset: be32(b, 20),
                max_bytes: be32(b, 24),
            }),
            OP_INSTALL if b.len() >= INSTALL_HDR => {
                let entries = &b[INSTALL_HDR..];
                let count = be32(b, 12);
                if entries.len() > MAX_FRAME_BYTES as usize {
                    Err(FrameError::TooLong(entries.len() as u32))
                } else if !plausible(count, entries.len() as u32) {
                    Err(FrameError::BadCount {
                        count,
                        len: entries.len() as u32,
                    })
                } else {
                    Ok(BulkRequest::Install { count, entries })
                }
            }
            OP_LIST | OP_INSTALL => Err(FrameError::BadMessage("wrong length")),
            _ => Err(FrameError::BadMessage("unknown operation")),
        })
    }
}

/// rvs-dp's answer to `BulkRequest::List`: entries `offset..offset + count`
/// of listing `listing`, which holds `total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListPage<'a> {
    pub listing: u64,
    pub total: u32,
    pub offset: u32,
    pub count: u32,
    pub entries: &'a [u8],
}

impl<'a> ListPage<'a> {
    /// The reply's header; the entries follow it (`to_bytes` = header + entries).
    pub fn header(listing: u64, total: u32, offset: u32, count: u32, capacity: usize) -> Vec<u8> {
        let mut v = head(OP_PAGE, PAGE_HDR + capacity);
        v.extend_from_slice(&listing.to_be_bytes());
        v.extend_from_slice(&total.to_be_bytes());
        v.extend_from_slice(&offset.to_be_bytes());
        v.extend_from_slice(&count.to_be_bytes());
        v
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Self::header(
            self.listing,
            self.total,
            self.offset,
            self.count,
            self.entries.len(),
        );
        v.extend_from_slice(self.entries);
        v
    }

    /// None: not a page (a JSON reply, e.g. an error). Some(Err): one,
    /// malformed: a count past the total, or entries the count cannot be.
    pub fn parse(b: &'a [u8]) -> Option<Result<Self, FrameError>> {
        if op_of(b)? != OP_PAGE || b.len() < PAGE_HDR {
            return Some(Err(FrameError::BadMessage("not a listing page")));
        }
        let p = ListPage {
            listing: be64(b, 12),
            total: be32(b, 20),
            offset: be32(b, 24),
            count: be32(b, 28),
            entries: &b[PAGE_HDR..],
        };
        let end = u64::from(p.offset) + u64::from(p.count);
        let fits = p.entries.len() <= MAX_FRAME_BYTES as usize
            && (if p.count == 0 {
                p.entries.is_empty()
            } else {
                plausible(p.count, p.entries.len() as u32)
            });
        Some(if end > u64::from(p.total) || !fits {
            Err(FrameError::BadCount {
                count: p.count,
                len: p.entries.len() as u32,
            })
        } else {
            Ok(p)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever arrives: a header, a request or a page is read or refused,
        /// never a panic, and what is read is within its limits.
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), magic: bool) {
            let mut b = bytes.clone();
            if magic {
                b.splice(0..0, BULK_MAGIC);
            }
            if let Some(Ok(BulkRequest::Install { count, entries })) = BulkRequest::parse(&b) {
                prop_assert!(plausible(count, entries.len() as u32));
            }
            if let Some(Ok(p)) = ListPage::parse(&b) {
                prop_assert!(u64::from(p.offset) + u64::from(p.count) <= u64::from(p.total));
            }
            let mut h = [0u8; FRAME_HEADER_LEN];
            for (d, s) in h.iter_mut().zip(&bytes) {
                *d = *s;
            }
            if let Ok(f) = FrameHeader::parse(&h) {
                prop_assert!(f.len <= MAX_FRAME_BYTES);
                prop_assert_eq!(FrameHeader::parse(&f.to_bytes()), Ok(f));
            }
        }
    }

    #[test]
    fn frame_headers_round_trip_and_bad_ones_are_refused() {
        for h in [
            FrameHeader::entries(3, 108),
            FrameHeader {
                kind: FrameKind::End,
                count: 1 << 20,
                len: 0,
            },
            FrameHeader {
                kind: FrameKind::Error,
                count: 0,
                len: 11,
            },
        ] {
            assert_eq!(FrameHeader::parse(&h.to_bytes()), Ok(h));
        }
        let bad = |b: [u8; 12]| FrameHeader::parse(&b).unwrap_err();
        let mut b = FrameHeader::entries(3, 108).to_bytes();
        b[0] = 9;
        assert_eq!(bad(b), FrameError::UnknownKind(9));
        b[0] = 1;
        b[2] = 1;
        assert_eq!(bad(b), FrameError::BadHeader);
        assert_eq!(
            bad(FrameHeader::entries(4, 108).to_bytes()),
            FrameError::BadCount { count: 4, len: 108 },
            "4 entries cannot be in 108 bytes"
        );
        assert_eq!(
            bad(FrameHeader::entries(0, 0).to_bytes()),
            FrameError::BadCount { count: 0, len: 0 }
        );
        assert_eq!(
            bad(FrameHeader::entries(1, MAX_FRAME_BYTES as usize + 1).to_bytes()),
            FrameError::TooLong(MAX_FRAME_BYTES + 1)
        );
        let end = FrameHeader {
            kind: FrameKind::End,
            count: 1,
            len: 4,
        };
        assert!(matches!(bad(end.to_bytes()), FrameError::BadCount { .. }));
        // A huge count does not overflow the plausibility check.
        assert!(!plausible(u32::MAX, MAX_FRAME_BYTES));
    }

    #[test]
    fn bulk_requests_round_trip_and_json_is_not_one() {
        let entries = [7u8; 72];
        for r in [
            BulkRequest::List {
                listing: 42,
                offset: 500,
                max_bytes: MAX_FRAME_BYTES,
            },
            BulkRequest::Install {
                count: 2,
                entries: &entries,
            },
        ] {
            let b = r.to_bytes();
            assert_eq!(BulkRequest::parse(&b), Some(Ok(r)));
        }
        assert_eq!(BulkRequest::parse(br#"{"List":null}"#), None);
        assert_eq!(BulkRequest::parse(b"\"ListConns\""), None);
        let too_many = BulkRequest::Install {
            count: 3,
            entries: &entries,
        }
        .to_bytes();
        assert!(matches!(
            BulkRequest::parse(&too_many),
            Some(Err(FrameError::BadCount { .. }))
        ));
        let mut short = BulkRequest::List {
            listing: 0,
            offset: 0,
            max_bytes: 1,
        }
        .to_bytes();
        short.pop();
        assert!(matches!(BulkRequest::parse(&short), Some(Err(_))));
        for n in 0..INSTALL_HDR {
            let b = too_many[..n].to_vec();
            // Truncated anywhere: never a panic, never a request.
            assert!(!matches!(BulkRequest::parse(&b), Some(Ok(_))));
        }
    }

    #[test]
    fn list_pages_round_trip_and_bad_counts_are_refused() {
        let entries = [1u8; 36 * 3];
        let p = ListPage {
            listing: 9,
            total: 10,
            offset: 7,
            count: 3,
            entries: &entries,
        };
        assert_eq!(ListPage::parse(&p.to_bytes()), Some(Ok(p)));
        let empty = ListPage {
            total: 0,
            offset: 0,
            count: 0,
            entries: &[],
            ..p
        };
        assert_eq!(ListPage::parse(&empty.to_bytes()), Some(Ok(empty)));
        let past = ListPage { offset: 8, ..p };
        assert!(matches!(ListPage::parse(&past.to_bytes()), Some(Err(_))));
        let more = ListPage {
            count: 4,
            total: 20,
            ..p
        };
        assert!(matches!(ListPage::parse(&more.to_bytes()), Some(Err(_))));
        assert_eq!(ListPage::parse(br#"{"Error":"TableChanged"}"#), None);
    }
}
