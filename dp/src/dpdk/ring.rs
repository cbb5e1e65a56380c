use std::ffi::{c_uint, c_void, CString};
use std::ptr::NonNull;
use std::sync::Arc;

use dpdk_sys as sys;

use super::{DpdkError, Mbuf, MbufBurst};

/// An `rte_ring` created single-producer/single-consumer, carrying owned
/// mbufs between two lcores. Freed (with any mbufs still inside) when both
/// halves are dropped.
#[derive(Debug)]
struct Ring {
    raw: NonNull<sys::rte_ring>,
}

// SAFETY: the ring lives in shared EAL memory; the SP/SC discipline is
// enforced by giving out exactly one producer and one consumer half.
unsafe impl Send for Ring {}
unsafe impl Sync for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        // Both halves are gone, so nobody else touches the ring now.
        let mut rest: MbufBurst = MbufBurst::new();
        loop {
            let n = dequeue(self.raw, &mut rest);
            rest.free_all();
            if n == 0 {
                break;
            }
        }
        // SAFETY: created by rte_ring_create, freed once.
        unsafe { sys::rte_ring_free(self.raw.as_ptr()) }
    }
}

/// The only enqueuer of an SPSC ring. Movable to another lcore, not shareable.
#[derive(Debug)]
pub struct RingProducer {
    ring: Arc<Ring>,
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

/// The only dequeuer of an SPSC ring.
#[derive(Debug)]
pub struct RingConsumer {
    ring: Arc<Ring>,
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

/// Creates an SPSC ring holding at least `count` mbufs (any count; DPDK sizes
/// the ring to the next power of two) on the caller's NUMA socket. `name`
/// must be unique in the process (at most 29 bytes).
pub fn spsc_ring(name: &str, count: u32) -> Result<(RingProducer, RingConsumer), DpdkError> {
    let cname = CString::new(name)
        .map_err(|_| DpdkError::InvalidArgument(format!("ring name with NUL: {name:?}")))?;
    let flags = sys::RING_F_SP_ENQ | sys::RING_F_SC_DEQ | sys::RING_F_EXACT_SZ;
    // SAFETY: plain getter, then a valid C string that DPDK copies.
    let raw = unsafe {
        let socket = sys::rte_socket_id() as i32;
        sys::rte_ring_create(cname.as_ptr(), count, socket, flags)
    };
    let raw = NonNull::new(raw).ok_or_else(|| DpdkError::last("rte_ring_create"))?;
    let ring = Arc::new(Ring { raw });
    Ok((
        RingProducer {
            ring: ring.clone(),
            _not_sync: Default::default(),
        },
        RingConsumer {
            ring,
            _not_sync: Default::default(),
        },
    ))
}

fn dequeue<const N: usize>(raw: NonNull<sys::rte_ring>, burst: &mut MbufBurst<N>) -> usize {
    let room = (N - burst.len) as c_uint;
    // SAFETY: writes at most `room` pointers into the free slots; the ring
    // only ever holds owned mbufs put there by the producer half.
    let n = unsafe {
        sys::rvs_ring_sc_dequeue_burst(
            raw.as_ptr(),
            burst.ptrs.as_mut_ptr().add(burst.len) as *mut *mut c_void,
            room,
            std::ptr::null_mut(),
        )
    } as usize;
    burst.len += n;
    n
}

impl RingProducer {
    /// Moves mbufs from the front of `burst` into the ring, as many as fit;
    /// the rest stay in the burst. Returns how many moved.
    #[inline]
    pub fn enqueue_burst<const N: usize>(&mut self, burst: &mut MbufBurst<N>) -> usize {
        // SAFETY: ptrs[..len] are owned mbufs; the ring takes the first `n`.
        let n = unsafe {
            sys::rvs_ring_sp_enqueue_burst(
                self.ring.raw.as_ptr(),
                burst.ptrs.as_ptr() as *const *mut c_void,
                burst.len as c_uint,
                std::ptr::null_mut(),
            )
        } as usize;
        burst.consume_front(n);
        n
    }

    /// Enqueues one mbuf, or hands it back if the ring is full.
    pub fn enqueue(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        let mut one: MbufBurst<1> = MbufBurst::new();
        // Cannot fail: the burst is empty.
        let _ = one.push(m);
        self.enqueue_burst(&mut one);
        match one.pop() {
            Some(back) => Err(back),
            None => Ok(()),
        }
    }
}

impl RingConsumer {
    /// Moves up to the burst's free room out of the ring, appending.
    /// Returns how many arrived.
    #[inline]
    pub fn dequeue_burst<const N: usize>(&mut self, burst: &mut MbufBurst<N>) -> usize {
        dequeue(self.ring.raw, burst)
    }

    /// Mbufs waiting in the ring.
    pub fn len(&self) -> usize {
        // SAFETY: reads the ring's head/tail indices.
        unsafe { sys::rvs_ring_count(self.ring.raw.as_ptr()) as usize }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
