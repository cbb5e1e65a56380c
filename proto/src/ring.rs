//! The command ring (tools -> rvs-dp) and the reply ring (rvs-dp -> tools).
//!
//! Both rings are arrays of fixed-size slots; a message longer than one slot
//! is cut into fragments in consecutive positions. Positions are u64 that
//! never wrap in practice; position `p` lives in slot `p % slots`.
//!
//! # Command ring: many tool processes write, rvs-dp reads
//!
//! Writers serialise on `flock(LOCK_EX)` of the region file (the lock goes
//! away with a writer that dies). Slot `s`'s sequence word says whose turn it is:
//! `seq == p` means free for position `p`, `seq == p + 1` published at `p`;
//! rvs-dp consumes position `p` and sets `seq = p + slots` (free one lap on).
//! Under the lock a writer checks that all the slots its message needs are
//! free, fills them, publishes their sequences in order with Release, then
//! advances the shared `head`. A writer that dies before publishing leaves
//! nothing visible; one that dies between publishing and advancing `head`
//! leaves a stale `head`, which the next writer detects (`seq > head`) and
//! moves past. rvs-dp drops a message left incomplete by a dead writer when
//! the next message's first fragment arrives, and counts it in `cmd_dropped`.
//!
//! # Reply ring: rvs-dp writes, every tool reads
//!
//! Slot sequences are seqlock-style: `2p + 1` while position `p` is written,
//! `2p + 2` once published. A tool notes the ring's `head` before sending its
//! request (so it never mistakes an older reply with a recycled id for its
//! own), then scans forward from there, copies only fragments carrying its
//! request id, checks the sequence did not move during the copy, and marks
//! each fragment taken (`taken = p + 1`).
//!
//! rvs-dp overwrites a slot only if its reply was taken, or if the tool it was
//! for has stopped waiting: each request carries its tool's deadline
//! (CLOCK_MONOTONIC), replies inherit it (capped at `MAX_REPLY_HOLD` after
//! publication), and past it the reply is overwritten and counted in
//! `replies_lost`. While the next slot is held, replies queue inside
//! `CtlServer` and `poll_request` takes no new command (backpressure: tools
//! then see `Busy` instead of losing replies).
//!
//! # Restarts
//!
//! `CtlClient::request` checks before sending that the path still names its
//! region; if rvs-dp was restarted it re-opens the new region and returns
//! `RegionError::Restarted { sent: false }` without sending: the new rvs-dp has
//! none of the old configuration, so the caller decides (rvsadm simply
//! retries, rvs-cp pushes its whole configuration again). A restart noticed
//! while waiting for a reply gives `Restarted { sent: true }`.

use std::collections::{HashMap, VecDeque};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::region::{
    pid_alive, Geometry, Layout, Region, RegionError, Result, RING_CTL_BYTES, SLOT_HDR_BYTES,
};
use crate::statsarea::{monotonic_ns, KernelStatsWriter, StatsReader, StatsWriter};

/// Longest time rvs-dp keeps an untaken reply after publishing it, whatever
/// deadline its tool announced.
pub const MAX_REPLY_HOLD: Duration = Duration::from_secs(10);
/// Hold for a reply whose request rvs-dp never saw (or forgot).
const DEFAULT_REPLY_HOLD: Duration = Duration::from_secs(1);
/// Deadlines rvs-dp remembers for requests not yet answered.
const MAX_TRACKED_DEADLINES: usize = 4096;
/// How often a waiting tool checks that rvs-dp is still the same and alive.
const LIVENESS_EVERY: Duration = Duration::from_millis(20);

#[derive(Clone, Copy)]
enum Which {
    Cmd,
    Reply,
}

/// A view of one ring inside the region; offsets come from the validated geometry.
struct Ring<'a> {
    region: &'a Region,
    off: u64,
    slots: u64,
    stride: u64,
    slot_bytes: usize,
}

/// One slot's header fields and payload words.
struct Slot<'a> {
    seq: &'a AtomicU64,
    taken: &'a AtomicU64,
    id: &'a AtomicU64,
    total_len: &'a AtomicU32,
    frag_len: &'a AtomicU32,
    frag_idx: &'a AtomicU32,
    frag_count: &'a AtomicU32,
    /// Command: the tool's deadline. Reply: hold the slot until then.
    deadline_ns: &'a AtomicU64,
    data: &'a [AtomicU64],
}

impl<'a> Ring<'a> {
    fn of(region: &'a Region, which: Which) -> Ring<'a> {
        let g: &Geometry = region.geometry();
        let (off, slots) = match which {
            Which::Cmd => (g.cmd_off, g.layout.cmd_slots),
            Which::Reply => (g.reply_off, g.layout.reply_slots),
        };
        Ring {
            region,
            off,
            slots: slots as u64,
            stride: g.slot_stride,
            slot_bytes: g.layout.slot_bytes as usize,
        }
    }

    fn word(&self, off: u64) -> &'a AtomicU64 {
        // SAFETY: callers pass offsets inside this ring, which the geometry
        // places inside the mapping, 8-byte aligned.
        unsafe { &*(self.region.base().add((self.off + off) as usize) as *const AtomicU64) }
    }

    /// Next position to write.
    fn head(&self) -> &'a AtomicU64 {
        self.word(0)
    }

    /// Next position rvs-dp reads (command ring; informational).
    fn tail(&self) -> &'a AtomicU64 {
        self.word(64)
    }

    fn slot(&self, pos: u64) -> Slot<'a> {
        let base = self.off + RING_CTL_BYTES + (pos % self.slots) * self.stride;
        // SAFETY: the slot index is below `slots`, so the whole slot (header
        // and `slot_bytes` of payload) lies inside the ring; offsets are
        // 64-byte aligned; atomics have the layout of plain integers.
        unsafe {
            let p = self.region.base().add(base as usize);
            let u32_at = |o: usize| &*(p.add(o) as *const AtomicU32);
            let u64_at = |o: usize| &*(p.add(o) as *const AtomicU64);
            Slot {
                seq: u64_at(0),
                taken: u64_at(8),
                id: u64_at(16),
                total_len: u32_at(24),
                frag_len: u32_at(28),
                frag_idx: u32_at(32),
                frag_count: u32_at(36),
                deadline_ns: u64_at(40),
                data: std::slice::from_raw_parts(
                    p.add(SLOT_HDR_BYTES as usize) as *const AtomicU64,
                    self.slot_bytes / 8,
                ),
            }
        }
    }

    /// Fragments needed for a message of `len` bytes (an empty message takes one).
    fn frags(&self, len: usize) -> usize {
        len.div_ceil(self.slot_bytes).max(1)
    }
}

fn write_payload(dst: &[AtomicU64], bytes: &[u8]) {
    for (w, chunk) in dst.iter().zip(bytes.chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
    }
}

fn read_payload(src: &[AtomicU64], len: usize, out: &mut Vec<u8>) {
    let mut left = len;
    for w in src {
        if left == 0 {
            break;
        }
        let b = w.load(Ordering::Relaxed).to_ne_bytes();
        let n = left.min(8);
        out.extend_from_slice(&b[..n]);
        left -= n;
    }
}

/// A fragment header as read from a slot, checked against the ring's limits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Frag {
    id: u64,
    total: usize,
    len: usize,
    idx: u32,
    count: u32,
}

impl Frag {
    fn read(s: &Slot<'_>) -> Frag {
        Frag {
            id: s.id.load(Ordering::Relaxed),
            total: s.total_len.load(Ordering::Relaxed) as usize,
            len: s.frag_len.load(Ordering::Relaxed) as usize,
            idx: s.frag_idx.load(Ordering::Relaxed),
            count: s.frag_count.load(Ordering::Relaxed),
        }
    }

    /// Whether the header is self-consistent for this ring: a corrupt one must
    /// not make us read past the slot or allocate without bound.
    fn sane(&self, slot_bytes: usize, max_msg: usize) -> bool {
        if self.total > max_msg || self.len > slot_bytes || self.idx >= self.count {
            return false;
        }
        let count = self.total.div_ceil(slot_bytes).max(1);
        let start = self.idx as usize * slot_bytes;
        count == self.count as usize && self.len == self.total.saturating_sub(start).min(slot_bytes)
    }
}

/// A message being put together from fragments.
struct Assembly {
    id: u64,
    total: usize,
    count: u32,
    next: u32,
    deadline_ns: u64,
    buf: Vec<u8>,
}

impl Assembly {
    /// Feeds one fragment. Returns `Err(())` when the fragment does not
    /// continue the message (the caller drops both).
    fn push(slot: &Slot<'_>, f: Frag, asm: &mut Option<Assembly>) -> std::result::Result<(), ()> {
        if f.idx == 0 {
            *asm = Some(Assembly {
                id: f.id,
                total: f.total,
                count: f.count,
                next: 0,
                deadline_ns: slot.deadline_ns.load(Ordering::Relaxed),
                buf: Vec::with_capacity(f.total),
            });
        }
        let a = asm.as_mut().ok_or(())?;
        if a.id != f.id || a.total != f.total || a.count != f.count || a.next != f.idx {
            return Err(());
        }
        read_payload(slot.data, f.len, &mut a.buf);
        a.next += 1;
        Ok(())
    }

    fn complete(&self) -> bool {
        self.next == self.count && self.buf.len() == self.total
    }
}

/// Sets up the rings of a freshly created region (`Region::create`'s section initializer).
pub(crate) fn init_rings(region: &Region) {
    let cmd = Ring::of(region, Which::Cmd);
    for p in 0..cmd.slots {
        cmd.slot(p).seq.store(p, Ordering::Relaxed);
    }
    cmd.head().store(0, Ordering::Relaxed);
    cmd.tail().store(0, Ordering::Relaxed);
    // Reply slots start at sequence 0: never written. The file is zero-filled.
    Ring::of(region, Which::Reply).head().store(0, Ordering::Release);
}

struct PendingReply {
    id: u64,
    msg: Vec<u8>,
    hold_until_ns: u64,
    next_frag: usize,
}

/// rvs-dp's end: its control thread (never a worker) polls requests and replies.
pub struct CtlServer {
    region: Arc<Region>,
    /// Next command position to consume.
    tail: u64,
    /// Next reply position to write.
    reply_head: u64,
    assembly: Option<Assembly>,
    /// Deadline announced by each request not answered yet, by request id.
    deadlines: HashMap<u64, u64>,
    pending: VecDeque<PendingReply>,
}

impl CtlServer {
    /// Creates the region at `path` (see `Region::create`) and serves it.
    pub fn create(path: &Path, layout: Layout) -> Result<CtlServer> {
        let region = Arc::new(Region::create(path, layout, init_rings)?);
        Ok(CtlServer {
            region,
            tail: 0,
            reply_head: 0,
            assembly: None,
            deadlines: HashMap::new(),
            pending: VecDeque::new(),
        })
    }

    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    pub fn generation(&self) -> u64 {
        self.region.generation()
    }

    /// The stats slot of `worker`, for that worker alone to publish into.
    pub fn stats_writer(&self, worker: usize) -> Result<StatsWriter> {
        StatsWriter::new(self.region.clone(), worker)
    }

    /// The exception path's slot, for the one thread that moves frames
    /// between the ports and their kernel interfaces to publish into.
    pub fn kernel_writer(&self) -> KernelStatsWriter {
        KernelStatsWriter::new(self.region.clone())
    }

    fn max_msg(&self) -> usize {
        self.region.layout().max_msg_bytes as usize
    }

    /// The next complete request, if any: `(request id, payload)`. Malformed
    /// or abandoned fragments are skipped and counted in `cmd_dropped`. Takes
    /// no request while replies are still queued for a full reply ring.
    pub fn poll_request(&mut self) -> Option<(u64, Vec<u8>)> {
        if !self.flush_replies() {
            return None;
        }
        let region = self.region.clone();
        let ring = Ring::of(&region, Which::Cmd);
        let max_msg = self.max_msg();
        let dropped = &region.header().cmd_dropped;
        loop {
            let s = ring.slot(self.tail);
            if s.seq.load(Ordering::Acquire) != self.tail.wrapping_add(1) {
                return None;
            }
            let f = Frag::read(&s);
            let ok = f.sane(ring.slot_bytes, max_msg) && {
                if f.idx == 0 && self.assembly.is_some() {
                    // The previous message's writer died before finishing it.
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
                Assembly::push(&s, f, &mut self.assembly).is_ok()
            };
            s.seq.store(self.tail.wrapping_add(ring.slots), Ordering::Release);
            self.tail = self.tail.wrapping_add(1);
            ring.tail().store(self.tail, Ordering::Release);
            if !ok {
                self.assembly = None;
                dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if self.assembly.as_ref().is_some_and(Assembly::complete) {
                let a = self.assembly.take()?;
                self.remember_deadline(a.id, a.deadline_ns);
                return Some((a.id, a.buf));
            }
        }
    }

    fn remember_deadline(&mut self, id: u64, deadline_ns: u64) {
        if self.deadlines.len() >= MAX_TRACKED_DEADLINES {
            let now = monotonic_ns();
            self.deadlines.retain(|_, d| *d > now);
            if self.deadlines.len() >= MAX_TRACKED_DEADLINES {
                self.deadlines.clear();
            }
        }
        self.deadlines.insert(id, deadline_ns);
    }

    /// Sends the reply to request `id`. It is queued if the reply ring is held
    /// by replies not yet collected, and written by later `reply` /
    /// `poll_request` / `flush_replies` calls.
    pub fn reply(&mut self, id: u64, msg: &[u8]) -> Result<()> {
        let max = self.max_msg();
        if msg.len() > max {
            return Err(RegionError::TooLarge { len: msg.len(), max });
        }
        let now = monotonic_ns();
        let cap = now.saturating_add(MAX_REPLY_HOLD.as_nanos() as u64);
        let hold_until_ns = match self.deadlines.remove(&id) {
            Some(d) => d.min(cap),
            None => now.saturating_add(DEFAULT_REPLY_HOLD.as_nanos() as u64),
        };
        self.pending.push_back(PendingReply {
            id,
            msg: msg.to_vec(),
            hold_until_ns,
            next_frag: 0,
        });
        self.flush_replies();
        Ok(())
    }

    /// Replies still queued (the reply ring is held by uncollected replies).
    pub fn pending_replies(&self) -> usize {
        self.pending.len()
    }

    /// Writes queued replies as far as the reply ring allows; true when none is left.
    pub fn flush_replies(&mut self) -> bool {
        let region = self.region.clone();
        let ring = Ring::of(&region, Which::Reply);
        let mut now = None;
        while let Some(r) = self.pending.front_mut() {
            let count = ring.frags(r.msg.len());
            while r.next_frag < count {
                let p = self.reply_head;
                let s = ring.slot(p);
                let old = s.seq.load(Ordering::Relaxed);
                if old != 0 && old.is_multiple_of(2) {
                    let old_pos = old / 2 - 1;
                    if s.taken.load(Ordering::Relaxed) != old_pos.wrapping_add(1) {
                        let t = *now.get_or_insert_with(monotonic_ns);
                        if t < s.deadline_ns.load(Ordering::Relaxed) {
                            return false;
                        }
                        region.header().replies_lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
                s.seq.store(p.wrapping_mul(2).wrapping_add(1), Ordering::Relaxed);
                // Orders the odd sequence before the stores below (seqlock).
                fence(Ordering::Release);
                let start = r.next_frag * ring.slot_bytes;
                let part = &r.msg[start.min(r.msg.len())..(start + ring.slot_bytes).min(r.msg.len())];
                s.taken.store(0, Ordering::Relaxed);
                s.id.store(r.id, Ordering::Relaxed);
                s.total_len.store(r.msg.len() as u32, Ordering::Relaxed);
                s.frag_len.store(part.len() as u32, Ordering::Relaxed);
                s.frag_idx.store(r.next_frag as u32, Ordering::Relaxed);
                s.frag_count.store(count as u32, Ordering::Relaxed);
                s.deadline_ns.store(r.hold_until_ns, Ordering::Relaxed);
                write_payload(s.data, part);
                s.seq.store(p.wrapping_mul(2).wrapping_add(2), Ordering::Release);
                self.reply_head = p.wrapping_add(1);
                ring.head().store(self.reply_head, Ordering::Release);
                r.next_frag += 1;
            }
            self.pending.pop_front();
        }
        true
    }
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        // Tools stop sending at once, even while workers still hold stats writers.
        self.region.header().ready.store(0, Ordering::Release);
    }
}

/// Request ids: the pid in the high half, a per-process counter (starting at
/// a clock-derived value, so a recycled pid does not replay old ids) below.
fn next_request_id() -> u64 {
    static SALT: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let salt = *SALT.get_or_init(|| monotonic_ns() as u32 ^ (monotonic_ns() >> 32) as u32);
    let n = salt.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed));
    ((std::process::id() as u64) << 32) | n as u64
}

/// Holds `flock(LOCK_EX)` on the region file; unlocks on drop.
struct FileLock<'a>(&'a std::fs::File);

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // SAFETY: plain flock on a descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn try_lock(file: &std::fs::File) -> std::io::Result<Option<FileLock<'_>>> {
    // SAFETY: plain flock on a descriptor we own.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(Some(FileLock(file)));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => Ok(None),
        _ => Err(e),
    }
}

/// Short sleeps while polling: fast for the usual sub-millisecond answer,
/// without spinning a core the data plane might want.
struct Backoff(u32);

impl Backoff {
    fn wait(&mut self, deadline: Instant) {
        let us = 20u64 << self.0.min(6);
        self.0 += 1;
        let d = Duration::from_micros(us).min(deadline.saturating_duration_since(Instant::now()));
        std::thread::sleep(d);
    }
}

/// A tool's end. One request at a time per client (`&mut self`); threads or
/// processes that want to talk at once each open their own client.
pub struct CtlClient {
    path: PathBuf,
    region: Arc<Region>,
}

impl CtlClient {
    /// Maps the region rvs-dp serves at `path`; errors if there is none, if it
    /// speaks another ABI, is corrupt, or its rvs-dp is gone.
    pub fn open(path: &Path) -> Result<CtlClient> {
        let region = Region::open(path)?;
        let pid = region.dp_pid();
        if !pid_alive(pid) {
            return Err(RegionError::Stale {
                path: path.display().to_string(),
                pid,
            });
        }
        Ok(CtlClient {
            path: path.to_path_buf(),
            region: Arc::new(region),
        })
    }

    pub fn generation(&self) -> u64 {
        self.region.generation()
    }

    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// Largest request (and reply) the region carries.
    pub fn max_msg(&self) -> usize {
        self.region.layout().max_msg_bytes as usize
    }

    /// Read access to the workers' stats of the region currently mapped.
    pub fn stats(&self) -> StatsReader {
        StatsReader::new(self.region.clone())
    }

    /// Errors unless the mapped region is still the one rvs-dp serves. After
    /// a restart, re-opens the new region and returns `Restarted`.
    pub fn check_restart(&mut self, sent: bool) -> Result<()> {
        if self.region.is_current() && self.region.is_ready() {
            let pid = self.region.dp_pid();
            if !pid_alive(pid) {
                return Err(RegionError::Stale {
                    path: self.path.display().to_string(),
                    pid,
                });
            }
            return Ok(());
        }
        let old = self.region.generation();
        let fresh = CtlClient::open(&self.path)?;
        let new = fresh.generation();
        self.region = fresh.region;
        Err(RegionError::Restarted { old, new, sent })
    }

    /// Sends `msg` and waits up to `timeout` for rvs-dp's reply to it.
    pub fn request(&mut self, msg: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let max = self.max_msg();
        if msg.len() > max {
            return Err(RegionError::TooLarge { len: msg.len(), max });
        }
        self.check_restart(false)?;
        let started = Instant::now();
        let deadline = started + timeout;
        let deadline_ns = monotonic_ns().saturating_add(timeout.as_nanos().min(u64::MAX as u128) as u64);
        let id = next_request_id();
        let region = self.region.clone();
        // Replies to this request can only be published after this point.
        let mut scan = Ring::of(&region, Which::Reply).head().load(Ordering::Acquire);
        self.submit(&region, id, msg, deadline, deadline_ns, timeout)?;

        let reply = Ring::of(&region, Which::Reply);
        let mut asm: Option<Assembly> = None;
        let mut lost = false;
        let mut backoff = Backoff(0);
        let mut next_check = Instant::now() + LIVENESS_EVERY;
        loop {
            let head = reply.head().load(Ordering::Acquire);
            if head.wrapping_sub(scan) > reply.slots {
                scan = head.wrapping_sub(reply.slots);
            }
            while scan < head {
                let s = reply.slot(scan);
                let want = scan.wrapping_mul(2).wrapping_add(2);
                let before = s.seq.load(Ordering::Acquire);
                if before < want {
                    break;
                }
                if before > want {
                    scan += 1; // overwritten since; a newer lap holds it
                    continue;
                }
                let f = Frag::read(&s);
                if f.id == id && f.sane(reply.slot_bytes, max) {
                    let pushed = Assembly::push(&s, f, &mut asm);
                    fence(Ordering::Acquire);
                    if s.seq.load(Ordering::Relaxed) != before || pushed.is_err() {
                        // Overwritten under us (we were too slow) or out of order.
                        lost = true;
                        asm = None;
                    } else {
                        s.taken.store(scan.wrapping_add(1), Ordering::Relaxed);
                    }
                }
                scan += 1;
                if let Some(a) = asm.take_if(|a| a.complete()) {
                    return Ok(a.buf);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(if lost {
                    RegionError::ReplyLost
                } else {
                    RegionError::Timeout(timeout)
                });
            }
            if now >= next_check {
                next_check = now + LIVENESS_EVERY;
                self.check_restart(true)?;
            }
            backoff.wait(deadline);
        }
    }

    /// Puts the request into the command ring under the region file lock,
    /// retrying while the ring is full or another tool holds the lock.
    fn submit(
        &self,
        region: &Region,
        id: u64,
        msg: &[u8],
        deadline: Instant,
        deadline_ns: u64,
        timeout: Duration,
    ) -> Result<()> {
        let ring = Ring::of(region, Which::Cmd);
        let mut backoff = Backoff(0);
        loop {
            let lock = try_lock(region.file()).map_err(|err| RegionError::Io {
                op: "lock",
                path: self.path.display().to_string(),
                err,
            })?;
            if let Some(_held) = lock {
                if write_locked(&ring, id, msg, deadline_ns) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(RegionError::Busy(timeout));
            }
            backoff.wait(deadline);
        }
    }
}

/// Writes one message into the command ring; the caller holds the file lock.
/// False if the ring has no room for all its fragments yet.
fn write_locked(ring: &Ring<'_>, id: u64, msg: &[u8], deadline_ns: u64) -> bool {
    let mut head = ring.head().load(Ordering::Acquire);
    // A writer that died after publishing but before moving `head` left slots
    // that are already published (seq == head + 1) or even consumed
    // (seq == head + slots): skip them. Bounded, in case of garbage.
    for _ in 0..ring.slots {
        if ring.slot(head).seq.load(Ordering::Acquire) > head {
            head = head.wrapping_add(1);
        } else {
            break;
        }
    }
    ring.head().store(head, Ordering::Release);
    let count = ring.frags(msg.len());
    for i in 0..count as u64 {
        let p = head.wrapping_add(i);
        if ring.slot(p).seq.load(Ordering::Acquire) != p {
            return false;
        }
    }
    for (i, part) in (0..count).map(|i| (i, &msg[(i * ring.slot_bytes).min(msg.len())..])) {
        let part = &part[..part.len().min(ring.slot_bytes)];
        let s = ring.slot(head.wrapping_add(i as u64));
        s.id.store(id, Ordering::Relaxed);
        s.total_len.store(msg.len() as u32, Ordering::Relaxed);
        s.frag_len.store(part.len() as u32, Ordering::Relaxed);
        s.frag_idx.store(i as u32, Ordering::Relaxed);
        s.frag_count.store(count as u32, Ordering::Relaxed);
        s.deadline_ns.store(deadline_ns, Ordering::Relaxed);
        write_payload(s.data, part);
    }
    for i in 0..count as u64 {
        let p = head.wrapping_add(i);
        ring.slot(p).seq.store(p.wrapping_add(1), Ordering::Release);
    }
    ring.head()
        .store(head.wrapping_add(count as u64), Ordering::Release);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::Layout;

    fn temp(name: &str) -> PathBuf {
        let dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!(
            "rvs-unit-{}-{name}-{}.ctl",
            std::process::id(),
            monotonic_ns()
        ))
    }

    fn layout() -> Layout {
        Layout {
            cmd_slots: 8,
            reply_slots: 4,
            slot_bytes: 64,
            max_msg_bytes: 256,
            workers: 1,
        }
    }

    /// Publishes the first `publish` of a message's fragments, as a writer
    /// that dies before finishing would, without moving `head`.
    fn half_written(region: &Region, id: u64, msg: &[u8], publish: usize) {
        let ring = Ring::of(region, Which::Cmd);
        let head = ring.head().load(Ordering::Acquire);
        let count = ring.frags(msg.len());
        for (i, part) in msg.chunks(ring.slot_bytes).enumerate() {
            let s = ring.slot(head + i as u64);
            s.id.store(id, Ordering::Relaxed);
            s.total_len.store(msg.len() as u32, Ordering::Relaxed);
            s.frag_len.store(part.len() as u32, Ordering::Relaxed);
            s.frag_idx.store(i as u32, Ordering::Relaxed);
            s.frag_count.store(count as u32, Ordering::Relaxed);
            write_payload(s.data, part);
        }
        for i in 0..publish as u64 {
            ring.slot(head + i).seq.store(head + i + 1, Ordering::Release);
        }
    }

    #[test]
    fn a_writer_dying_mid_message_corrupts_nothing() {
        let path = temp("deadwriter");
        let mut server = CtlServer::create(&path, layout()).unwrap();
        let mut client = CtlClient::open(&path).unwrap();
        // Dead writer #1: published 2 of its 3 fragments, never moved head.
        half_written(server.region(), 7, &[0xaa; 150], 2);
        assert_eq!(
            server.poll_request(),
            None,
            "an incomplete message is not delivered"
        );
        // Dead writer #2 (later): wrote payload but published nothing.
        let t = std::thread::spawn(move || {
            let r = client.request(b"after the crash", Duration::from_secs(5));
            (client, r)
        });
        let (id, msg) = loop {
            if let Some(r) = server.poll_request() {
                break r;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(msg, b"after the crash");
        assert_ne!(id, 7);
        assert_eq!(
            server.region().cmd_dropped(),
            1,
            "the abandoned message is counted"
        );
        server.reply(id, b"ok").unwrap();
        let (mut client, r) = t.join().unwrap();
        assert_eq!(r.unwrap(), b"ok");

        // Unpublished leftovers are simply overwritten.
        half_written(server.region(), 8, &[0xbb; 100], 0);
        let t = std::thread::spawn(move || client.request(b"again", Duration::from_secs(5)));
        let (id, msg) = loop {
            if let Some(r) = server.poll_request() {
                break r;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(msg, b"again");
        server.reply(id, b"ok2").unwrap();
        assert_eq!(t.join().unwrap().unwrap(), b"ok2");
        assert_eq!(server.region().cmd_dropped(), 1);
        drop(server);
    }

    #[test]
    fn malformed_fragments_are_dropped_and_counted() {
        let path = temp("malformed");
        let mut server = CtlServer::create(&path, layout()).unwrap();
        let region = server.region().clone();
        let ring = Ring::of(&region, Which::Cmd);
        // Claims 1 MB in one 64-byte slot.
        let s = ring.slot(0);
        s.total_len.store(1 << 20, Ordering::Relaxed);
        s.frag_len.store(1 << 20, Ordering::Relaxed);
        s.frag_count.store(1, Ordering::Relaxed);
        s.seq.store(1, Ordering::Release);
        // A middle fragment with no first one.
        let s = ring.slot(1);
        s.total_len.store(100, Ordering::Relaxed);
        s.frag_len.store(36, Ordering::Relaxed);
        s.frag_idx.store(1, Ordering::Relaxed);
        s.frag_count.store(2, Ordering::Relaxed);
        s.seq.store(2, Ordering::Release);
        ring.head().store(2, Ordering::Release);
        assert_eq!(server.poll_request(), None);
        assert_eq!(region.cmd_dropped(), 2);
        // The ring still works afterwards: both slots were freed for the next lap.
        assert_eq!(ring.slot(0).seq.load(Ordering::Relaxed), 8);
        assert_eq!(ring.slot(1).seq.load(Ordering::Relaxed), 9);
    }

    #[test]
    fn uncollected_replies_hold_the_ring_until_their_tool_gives_up() {
        let path = temp("hold");
        let mut server = CtlServer::create(&path, layout()).unwrap();
        let region = server.region().clone();
        let soon = monotonic_ns() + 200_000_000;
        // Four one-slot replies nobody collects fill the 4-slot reply ring.
        for id in 1..=4 {
            server.remember_deadline(id, soon);
            server.reply(id, b"unread").unwrap();
        }
        assert_eq!(server.pending_replies(), 0);
        // The fifth must not overwrite them while their tools may still wait.
        server.reply(5, b"queued").unwrap();
        assert_eq!(server.pending_replies(), 1);
        assert_eq!(server.poll_request(), None);
        assert_eq!(region.replies_lost(), 0);
        std::thread::sleep(Duration::from_millis(250));
        assert!(server.flush_replies());
        assert_eq!(server.pending_replies(), 0);
        assert_eq!(region.replies_lost(), 1);

        // A taken reply frees its slot at once.
        let ring = Ring::of(&region, Which::Reply);
        let p = ring.head().load(Ordering::Acquire); // position 5 -> slot 1, holding reply 2
        let s = ring.slot(p);
        let old_pos = s.seq.load(Ordering::Relaxed) / 2 - 1;
        s.taken.store(old_pos + 1, Ordering::Relaxed);
        server.remember_deadline(6, u64::MAX);
        server.reply(6, b"x").unwrap();
        assert_eq!(server.pending_replies(), 0);
        assert_eq!(region.replies_lost(), 1);
    }

    #[test]
    fn request_ids_are_unique_and_carry_the_pid() {
        let ids: Vec<u64> = (0..1000).map(|_| next_request_id()).collect();
        let set: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
        assert!(ids.iter().all(|id| id >> 32 == std::process::id() as u64));
    }
}
