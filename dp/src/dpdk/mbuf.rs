use std::ffi::{c_uint, CString};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use dpdk_sys as sys;

use super::DpdkError;

/// Default burst size for rx/tx, ring transfers and bulk frees.
pub const BURST: usize = 32;

/// A packet-mbuf pool (`rte_pktmbuf_pool_create`).
///
/// Pools are never freed: ports and in-flight mbufs keep pointers into them
/// for the life of the data plane, and `rte_eal_cleanup` (on [`super::Eal`]
/// drop) releases their memory at exit. The handle is therefore `Copy`.
#[derive(Debug, Clone, Copy)]
pub struct Mempool {
    raw: NonNull<sys::rte_mempool>,
}

// SAFETY: rte_mempool get/put are thread-safe (per-lcore caches plus a
// lock-free ring); the handle is only a pointer to shared EAL memory.
unsafe impl Send for Mempool {}
unsafe impl Sync for Mempool {}

impl Mempool {
    /// `n` mbufs of `data_room` bytes (including the 128-byte headroom; use
    /// `RTE_MBUF_DEFAULT_BUF_SIZE` = 2176 for 2048-byte frames), with a
    /// per-lcore cache of `cache`, on the caller's NUMA socket. `n` should
    /// exceed the sum of all RX rings plus what vdevs preload, or RX stalls
    /// silently.
    pub fn create(name: &str, n: u32, cache: u32, data_room: u16) -> Result<Mempool, DpdkError> {
        // SAFETY: plain getter.
        let socket = unsafe { sys::rte_socket_id() } as i32;
        Self::create_on_socket(name, n, cache, data_room, socket)
    }

    pub fn create_on_socket(
        name: &str,
        n: u32,
        cache: u32,
        data_room: u16,
        socket: i32,
    ) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name)
            .map_err(|_| DpdkError::InvalidArgument(format!("mempool name with NUL: {name:?}")))?;
        // SAFETY: valid C string; DPDK copies the name.
        let raw = unsafe { sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, socket) };
        NonNull::new(raw)
            .map(|raw| Mempool { raw })
            .ok_or_else(|| DpdkError::last("rte_pktmbuf_pool_create"))
    }

    pub fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.raw.as_ptr()
    }

    /// One fresh mbuf (reset, empty, default headroom), or None if exhausted.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid for the process lifetime.
        let m = unsafe { sys::rvs_pktmbuf_alloc(self.raw.as_ptr()) };
        NonNull::new(m).map(Mbuf)
    }

    /// Appends `n` fresh mbufs to `burst`, all or nothing.
    pub fn alloc_bulk<const N: usize>(&self, burst: &mut MbufBurst<N>, n: usize) -> Result<(), DpdkError> {
        if n > N - burst.len {
            return Err(DpdkError::InvalidArgument(format!(
                "alloc_bulk of {n} into a burst with room for {}",
                N - burst.len
            )));
        }
        // SAFETY: the slots [len, len + n) are in bounds; on success DPDK
        // fills all n with valid mbufs, on failure it writes none we keep.
        let ret = unsafe {
            sys::rvs_pktmbuf_alloc_bulk(
                self.raw.as_ptr(),
                burst.ptrs.as_mut_ptr().add(burst.len),
                n as c_uint,
            )
        };
        DpdkError::check("rte_pktmbuf_alloc_bulk", ret)?;
        burst.len += n;
        Ok(())
    }

    /// Free mbufs (approximate while other lcores are allocating).
    pub fn available(&self) -> u32 {
        // SAFETY: read-only walk of the pool's counters.
        unsafe { sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    pub fn in_use(&self) -> u32 {
        // SAFETY: as above.
        unsafe { sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }
}

/// An owned packet mbuf, freed on drop. Methods see the first segment: rvs
/// receives single-segment frames (no scatter RX), so `data()` is the frame.
///
/// Accessors read the `rte_mbuf` fields directly: no call per packet.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an Mbuf is the unique owner of its buffer; mbufs move between
// lcores through rings by design.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `m` must be a valid mbuf that nothing else will use or free, with a
    /// reference count of 1 and a direct (non-attached) buffer.
    pub unsafe fn from_raw(m: *mut sys::rte_mbuf) -> Option<Mbuf> {
        NonNull::new(m).map(Mbuf)
    }

    /// Gives up ownership without freeing.
    pub fn into_raw(self) -> *mut sys::rte_mbuf {
        ManuallyDrop::new(self).0.as_ptr()
    }

    pub fn as_ptr(&self) -> *mut sys::rte_mbuf {
        self.0.as_ptr()
    }

    #[inline(always)]
    fn m(&self) -> &sys::rte_mbuf {
        // SAFETY: we own a valid mbuf.
        unsafe { self.0.as_ref() }
    }

    #[inline(always)]
    fn m_mut(&mut self) -> &mut sys::rte_mbuf {
        // SAFETY: we own a valid mbuf, uniquely.
        unsafe { self.0.as_mut() }
    }

    /// Bytes in the first segment.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.m().data_len as usize
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.m().data_len == 0
    }

    /// Bytes in the whole chain.
    #[inline(always)]
    pub fn pkt_len(&self) -> usize {
        self.m().pkt_len as usize
    }

    #[inline(always)]
    pub fn nb_segs(&self) -> u16 {
        self.m().nb_segs
    }

    /// Free bytes in front of the data (room for `prepend`).
    #[inline(always)]
    pub fn headroom(&self) -> usize {
        self.m().data_off as usize
    }

    /// Free bytes after the data in the first segment.
    #[inline(always)]
    pub fn tailroom(&self) -> usize {
        let m = self.m();
        (m.buf_len as usize).saturating_sub(m.data_off as usize + m.data_len as usize)
    }

    /// Input port set by the PMD on RX.
    #[inline(always)]
    pub fn port(&self) -> u16 {
        self.m().port
    }

    /// The NIC's RSS hash, if it computed one.
    #[inline(always)]
    pub fn rss_hash(&self) -> Option<u32> {
        let m = self.m();
        // SAFETY: every member of the hash union is plain integers, so the
        // u32 view is always initialised; it means the RSS hash only when
        // the PMD sets RX_RSS_HASH.
        let hash = unsafe { m.__bindgen_anon_2.hash.rss };
        (m.ol_flags & sys::RTE_MBUF_F_RX_RSS_HASH != 0).then_some(hash)
    }

    /// What the PMD found of the IPv4 header checksum: `Some(true)` for
    /// RX_IP_CKSUM_GOOD, `Some(false)` for RX_IP_CKSUM_BAD, `None` when it
    /// did not check (UNKNOWN) or says NONE (the header is intact but its
    /// checksum field is not filled in: verified in software, as before).
    #[inline(always)]
    pub fn rx_ip_csum(&self) -> Option<bool> {
        match self.m().ol_flags & sys::RTE_MBUF_F_RX_IP_CKSUM_MASK {
            sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD => Some(true),
            sys::RTE_MBUF_F_RX_IP_CKSUM_BAD => Some(false),
            _ => None,
        }
    }

    /// `rx_ip_csum`'s verdict where the PMD gives one (GOOD or BAD), else
    /// `software`'s: two compares of the flags, no `Option` in between.
    #[inline(always)]
    pub fn ip_csum_ok(&self, software: impl FnOnce() -> bool) -> bool {
        let f = self.m().ol_flags & sys::RTE_MBUF_F_RX_IP_CKSUM_MASK;
        if f == sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD {
            true
        } else if f == sys::RTE_MBUF_F_RX_IP_CKSUM_BAD {
            false
        } else {
            software()
        }
    }

    /// As `rx_ip_csum`, for the TCP or UDP checksum (RX_L4_CKSUM_*).
    #[inline(always)]
    pub fn rx_l4_csum(&self) -> Option<bool> {
        match self.m().ol_flags & sys::RTE_MBUF_F_RX_L4_CKSUM_MASK {
            sys::RTE_MBUF_F_RX_L4_CKSUM_GOOD => Some(true),
            sys::RTE_MBUF_F_RX_L4_CKSUM_BAD => Some(false),
            _ => None,
        }
    }

    #[inline(always)]
    fn data_ptr(&self) -> *mut u8 {
        let m = self.m();
        // SAFETY: buf_addr + data_off stays inside the mbuf's buffer.
        unsafe { (m.buf_addr as *mut u8).add(m.data_off as usize) }
    }

    /// The frame bytes (first segment).
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        // SAFETY: [data_off, data_off + data_len) lies in the buffer, which
        // this Mbuf owns for as long as the borrow lasts.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), self.len()) }
    }

    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `data`, and `&mut self` makes the access unique
        // (refcnt is 1 by the type's invariant).
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), self.len()) }
    }

    /// Grows the data by `n` bytes at the front (for an outer header) and
    /// returns the whole data, whose first `n` bytes are the new,
    /// uninitialised-by-us room. None (nothing changed) without headroom.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.headroom() {
            return None;
        }
        let m = self.m_mut();
        // n <= data_off <= u16::MAX, and data_len + n <= buf_len.
        m.data_off -= n as u16;
        m.data_len += n as u16;
        m.pkt_len += n as u32;
        Some(self.data_mut())
    }

    /// Drops `n` bytes from the front (to strip a header) and returns the
    /// remaining data. None (nothing changed) if the segment is shorter.
    #[inline]
    pub fn adj(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.len() {
            return None;
        }
        let m = self.m_mut();
        m.data_off += n as u16;
        m.data_len -= n as u16;
        m.pkt_len -= n as u32;
        Some(self.data_mut())
    }

    /// Drops `n` bytes from the end. False (nothing changed) if the last
    /// segment is shorter.
    #[inline]
    pub fn trim(&mut self, n: usize) -> bool {
        let last = self.last_seg();
        // SAFETY: `last` is a segment of the chain we own.
        let last = unsafe { &mut *last };
        if n > last.data_len as usize {
            return false;
        }
        last.data_len -= n as u16;
        self.m_mut().pkt_len -= n as u32;
        true
    }

    /// Grows the data by `n` bytes at the end of the last segment and returns
    /// those bytes. None (nothing changed) without tailroom.
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let last = self.last_seg();
        // SAFETY: `last` is a segment of the chain we own.
        let l = unsafe { &mut *last };
        let end = l.data_off as usize + l.data_len as usize;
        if n > (l.buf_len as usize).saturating_sub(end) {
            return None;
        }
        l.data_len += n as u16;
        // SAFETY: [end, end + n) is inside the last segment's buffer.
        let tail = unsafe { std::slice::from_raw_parts_mut((l.buf_addr as *mut u8).add(end), n) };
        self.m_mut().pkt_len += n as u32;
        Some(tail)
    }

    fn last_seg(&mut self) -> *mut sys::rte_mbuf {
        let mut seg = self.0.as_ptr();
        // SAFETY: `next` links segments of the chain we own; NULL ends it.
        unsafe {
            while !(*seg).next.is_null() {
                seg = (*seg).next;
            }
        }
        seg
    }

    /// Reference count (1 for any mbuf this layer hands out).
    pub fn refcnt(&self) -> u16 {
        // SAFETY: atomic read of our mbuf's counter.
        unsafe { sys::rvs_mbuf_refcnt_read(self.0.as_ptr()) }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; nothing uses it after this.
        unsafe { sys::rvs_pktmbuf_free(self.0.as_ptr()) }
    }
}

/// Up to `N` owned mbufs in a fixed array: the unit of rx/tx, ring transfer
/// and bulk free. No allocation; dropping it frees what is left in one
/// `rte_pktmbuf_free_bulk`.
pub struct MbufBurst<const N: usize = BURST> {
    // Invariant: ptrs[..len] are valid mbufs owned by this burst.
    pub(super) ptrs: [*mut sys::rte_mbuf; N],
    pub(super) len: usize,
}

// SAFETY: it owns its mbufs exactly as a [Mbuf; N] would.
unsafe impl<const N: usize> Send for MbufBurst<N> {}

impl<const N: usize> Default for MbufBurst<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> std::fmt::Debug for MbufBurst<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MbufBurst")
            .field("len", &self.len)
            .field("capacity", &N)
            .finish()
    }
}

impl<const N: usize> MbufBurst<N> {
    pub const fn new() -> Self {
        MbufBurst {
            ptrs: [std::ptr::null_mut(); N],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == N
    }

    pub const fn capacity(&self) -> usize {
        N
    }

    pub fn as_slice(&self) -> &[Mbuf] {
        // SAFETY: Mbuf is a transparent non-null pointer, and ptrs[..len] are
        // non-null mbufs we own.
        unsafe { std::slice::from_raw_parts(self.ptrs.as_ptr() as *const Mbuf, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: as `as_slice`; the slice borrow keeps the burst unchanged.
        unsafe { std::slice::from_raw_parts_mut(self.ptrs.as_mut_ptr() as *mut Mbuf, self.len) }
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Mbuf> {
        self.as_mut_slice().iter_mut()
    }

    /// Adds `m`, or hands it back if the burst is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == N {
            return Err(m);
        }
        self.ptrs[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// Adds `m` to a batch kept for freeing, first freeing the batch in bulk
    /// if it is full. For dropped packets on the fast path.
    #[inline]
    pub fn push_for_free(&mut self, m: Mbuf) {
        if self.len == N {
            self.free_all();
        }
        self.ptrs[self.len] = m.into_raw();
        self.len += 1;
    }

    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        Some(Mbuf(NonNull::new(self.ptrs[self.len])?))
    }

    /// Frees every mbuf in one `rte_pktmbuf_free_bulk` call.
    pub fn free_all(&mut self) {
        if self.len > 0 {
            // SAFETY: ptrs[..len] are owned mbufs; the burst forgets them.
            unsafe { sys::rte_pktmbuf_free_bulk(self.ptrs.as_mut_ptr(), self.len as c_uint) };
            self.len = 0;
        }
    }

    /// Moves the mbufs out in order, emptying the burst. Those not taken
    /// when the iterator drops are freed in bulk.
    pub fn drain(&mut self) -> Drain<'_, N> {
        let end = self.len;
        self.len = 0;
        Drain {
            burst: self,
            next: 0,
            end,
            _p: PhantomData,
        }
    }

    /// Forgets the first `n` mbufs (now owned by someone else, e.g. the NIC
    /// after tx) and moves the rest to the front.
    pub(super) fn consume_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.ptrs.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

impl<const N: usize> Drop for MbufBurst<N> {
    fn drop(&mut self) {
        self.free_all();
    }
}

/// Iterator from [`MbufBurst::drain`].
pub struct Drain<'a, const N: usize> {
    burst: &'a mut MbufBurst<N>,
    next: usize,
    end: usize,
    _p: PhantomData<Mbuf>,
}

impl<const N: usize> Iterator for Drain<'_, N> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next == self.end {
            return None;
        }
        let p = self.burst.ptrs[self.next];
        self.next += 1;
        NonNull::new(p).map(Mbuf)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl<const N: usize> Drop for Drain<'_, N> {
    fn drop(&mut self) {
        let rest = self.end - self.next;
        if rest > 0 {
            // SAFETY: ptrs[next..end] are still owned and not yet handed out.
            unsafe {
                sys::rte_pktmbuf_free_bulk(self.burst.ptrs.as_mut_ptr().add(self.next), rest as c_uint)
            };
        }
    }
}
