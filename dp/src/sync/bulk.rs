//! Full resync in rvs-dp (beyond IPVS): both ends of a director's whole table
//! travelling to its peer, as IPVS sync v1 messages (`rvs_proto::resync`, which
//! rvs-cp carries over TCP without reading an entry).
//!
//! - Listing (`BulkRequest::List`, the serving director): listing 0 takes every
//!   worker's table at once (`hub::SyncDump`: each entry as the event a master
//!   sends, timeout = seconds left, a SYN proxy's shift in its sequence option)
//!   and keeps it; pages of it are encoded on request, in order, until the last
//!   one, which drops it (so does a new listing, or `LISTING_IDLE` without a page).
//! - Installing (`BulkRequest::Install`, the fetching director): a page is checked
//!   whole first: every message framed and validated by the sync decoder's rules,
//!   and their entries must be the number the page states. A page that fails is
//!   refused whole (`IpvsError::SyncPageRefused`) and counted by reason; nothing
//!   of it is installed. Then each entry goes to the inbound ring of the worker
//!   that owns its client, to be installed there between bursts
//!   (`install::worker_tick`) bound to this director's configured real server, as
//!   the backup thread hands over what it receives. Entries skipped one by one (an
//!   IPv6 entry, an unknown protocol...) are counted by the decoder's reasons.
//!
//! Unlike the backup thread, which drops an entry when a ring is full (multicast
//! has no back-pressure), a page waits for room, up to a bound: a resync must be
//! whole.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use rvs_proto::command::{IpvsError, Reply, SyncCountersInfo};
use rvs_proto::resync::{BulkRequest, FrameError, ListPage, MAX_FRAME_BYTES};

use super::decode::{validate, SyncDecoder};
use super::encode::{SyncEncoder, MAX_ENTRY_LEN, MAX_SYNC_MAXLEN, MIN_SYNC_MAXLEN};
use super::event::SyncEvent;
use super::msg::{header, SyncMessage};
use crate::core::{owner_of, Shared};

/// How long an install page waits for room in the workers' inbound rings.
pub const BULK_WAIT: Duration = Duration::from_secs(2);
/// How long a listing waits for every worker's part.
const DUMP_WAIT: Duration = Duration::from_secs(2);
/// A listing nobody asked a page of for this long is dropped (its fetcher died).
pub const LISTING_IDLE: Duration = Duration::from_secs(30);

/// A listing being paged out.
struct Listing {
    id: u64,
    events: Vec<SyncEvent>,
    last_step: Instant,
}

/// The control thread's full-resync state and counters.
#[derive(Default)]
pub struct Bulk {
    listing: Option<Listing>,
    next_id: u64,
    /// Per-entry skips and per-message refusals, by the sync decoder's reasons.
    decoder: SyncDecoder,
    /// Pages refused whole because their entries are not the number stated.
    count_mismatch: u64,
    /// Bulk requests that were not well formed (`FrameError`).
    malformed: u64,
    /// Pages refused whole (any reason).
    pages_refused: u64,
    /// Entries handed to the workers' rings.
    handed: u64,
}

impl std::fmt::Debug for Bulk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bulk")
            .field("listing", &self.listing.as_ref().map(|l| (l.id, l.events.len())))
            .field("pages_refused", &self.pages_refused)
            .finish()
    }
}

fn error(e: IpvsError) -> Vec<u8> {
    serde_json::to_vec(&Reply::Error(e)).unwrap_or_default()
}

fn ok() -> Vec<u8> {
    serde_json::to_vec(&Reply::Ok).unwrap_or_default()
}

impl Bulk {
    /// Answers a bulk request (`rvs_proto::resync`): a listing page, or the
    /// JSON reply to an install (or to a malformed request).
    pub fn serve(&mut self, shared: &Shared, req: Result<BulkRequest<'_>, FrameError>) -> Vec<u8> {
        match req {
            Ok(BulkRequest::List {
                listing,
                offset,
                max_bytes,
            }) => self.list(shared, listing, offset, max_bytes),
            Ok(BulkRequest::Install { count, entries }) => match self.install(shared, count, entries) {
                Ok(()) => ok(),
                Err(e) => error(e),
            },
            Err(e) => {
                self.malformed += 1;
                self.pages_refused += 1;
                error(IpvsError::SyncPageRefused(e.to_string()))
            }
        }
    }

    /// Drops a listing nobody pages any more.
    pub fn expire(&mut self, now: Instant) {
        if self
            .listing
            .as_ref()
            .is_some_and(|l| now.duration_since(l.last_step) >= LISTING_IDLE)
        {
            self.listing = None;
        }
    }

    fn list(&mut self, shared: &Shared, listing: u64, offset: u32, max_bytes: u32) -> Vec<u8> {
        if listing == 0 {
            self.listing = None;
            let Some(events) = shared.sync.dump.collect(DUMP_WAIT) else {
                return error(IpvsError::SyncPageRefused(
                    "a worker did not hand over its table (stopped?)".into(),
                ));
            };
            self.next_id += 1;
            self.listing = Some(Listing {
                id: self.next_id,
                events,
                last_step: Instant::now(),
            });
        }
        let Some(l) = self.listing.as_mut().filter(|l| l.id == listing || listing == 0) else {
            return error(IpvsError::SyncPageRefused(format!(
                "listing {listing} is gone (finished, replaced or idle); list again"
            )));
        };
        l.last_step = Instant::now();
        let total = l.events.len() as u32;
        if offset > total {
            return error(IpvsError::SyncPageRefused(format!(
                "offset {offset} past the listing's {total} entries"
            )));
        }
        let (count, bytes) = encode_page(&l.events[offset as usize..], max_bytes);
        let mut out = ListPage::header(l.id, total, offset, count, bytes.len());
        out.extend_from_slice(&bytes);
        if offset + count >= total {
            self.listing = None;
        }
        out
    }

    /// Checks a page whole, then hands its entries to the workers.
    fn install(&mut self, shared: &Shared, count: u32, entries: &[u8]) -> Result<(), IpvsError> {
        let refuse = |b: &mut Bulk, why: String| {
            b.pages_refused += 1;
            Err(IpvsError::SyncPageRefused(why))
        };
        let mut held = 0u64;
        for m in messages(entries) {
            match m.and_then(|m| validate(m, 0)) {
                Ok(n) => held += u64::from(n),
                Err(e) => {
                    self.decoder.counters_mut().record(e);
                    return refuse(self, format!("a message of the page: {e}"));
                }
            }
        }
        if held != u64::from(count) {
            self.count_mismatch += 1;
            return refuse(
                self,
                format!("the page states {count} entries, its messages hold {held}"),
            );
        }
        let deadline = Instant::now() + BULK_WAIT;
        let mask = shared.services.load().owner_mask();
        for m in messages(entries) {
            let Ok(m) = m else { continue };
            let Ok(conns) = self.decoder.decode(m) else {
                continue;
            };
            for c in conns {
                let Ok(c) = c else { continue };
                let e = SyncEvent::from_sync(&c);
                let w = owner_of(e.cip, mask, shared.workers) as usize;
                let Some(ring) = shared.sync.inbound.get(w) else {
                    continue;
                };
                let mut e = e;
                loop {
                    match ring.push(e) {
                        Ok(()) => break,
                        Err(back) => e = back,
                    }
                    if Instant::now() >= deadline {
                        return Err(IpvsError::SyncBusy);
                    }
                    thread::sleep(Duration::from_micros(100));
                }
                self.handed += 1;
            }
        }
        Ok(())
    }

    /// Adds the counters to the sync counters' refusals, as `resync_REASON`.
    pub fn add_to(&self, t: &mut SyncCountersInfo) {
        let mut add = |k: &str, n: u64| {
            if n > 0 {
                *t.refused.entry(format!("resync_{k}")).or_default() += n;
            }
        };
        add("pages_refused", self.pages_refused);
        add("count_mismatch", self.count_mismatch);
        add("malformed", self.malformed);
        for (e, n) in self.decoder.counters().iter() {
            add(e.as_str(), n);
        }
    }

    /// Counters for tests: refusals by key, as `add_to` writes them.
    pub fn refused(&self) -> BTreeMap<String, u64> {
        let mut t = SyncCountersInfo::default();
        self.add_to(&mut t);
        t.refused
    }

    /// Entries handed to the workers so far.
    pub fn handed(&self) -> u64 {
        self.handed
    }
}

/// The sync messages of a page, back to back, each cut by its header's size
/// field; a message that does not fit what is left is an error (and the last
/// item).
pub fn messages(mut b: &[u8]) -> impl Iterator<Item = Result<&[u8], super::SyncError>> {
    std::iter::from_fn(move || {
        if b.is_empty() {
            return None;
        }
        if b.len() < header::LEN {
            b = &[];
            return Some(Err(super::SyncError::TruncatedHeader));
        }
        let size = usize::from(SyncMessage::new_unchecked(b).size());
        if size < header::LEN || size > b.len() {
            b = &[];
            return Some(Err(super::SyncError::BadSize));
        }
        let (m, rest) = b.split_at(size);
        b = rest;
        Some(Ok(m))
    })
}

/// Encodes events from the start of `events` into sync messages of at most
/// `max_bytes` in all (capped at `MAX_FRAME_BYTES`); returns how many went.
pub fn encode_page(events: &[SyncEvent], max_bytes: u32) -> (u32, Vec<u8>) {
    // Never so small that no entry fits: a page must advance.
    let max = max_bytes.clamp(MIN_SYNC_MAXLEN as u32 * 2, MAX_FRAME_BYTES) as usize;
    let mut out = Vec::with_capacity(max.min(events.len() * 64 + 64));
    let mut enc = SyncEncoder::new(0, MAX_SYNC_MAXLEN);
    let mut n = 0u32;
    for e in events {
        // Room for the message so far, its padding and the largest entry.
        if out.len() + enc.len() + 3 + MAX_ENTRY_LEN > max {
            break;
        }
        // Cannot fail: our entries carry no persistence engine data.
        if enc.push(&e.to_sync(), |m| out.extend_from_slice(m)).is_ok() {
            n += 1;
        }
    }
    enc.flush(|m| out.extend_from_slice(m));
    (n, out)
}
