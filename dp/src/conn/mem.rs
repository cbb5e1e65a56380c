//! The table's memory as the CPU sees it: huge pages under its big arrays,
//! and prefetches for the burst path.
//!
//! A lookup touches a bucket head and an entry at random across tens of
//! megabytes. With 4 KiB pages each of those is also a TLB miss, and in a VM
//! a nested page walk; 2 MiB pages cut the walks to a handful of entries.
//! The arrays ask for transparent huge pages, which the kernel grants on
//! request (`/sys/kernel/mm/transparent_hugepage/enabled` = madvise, Debian's
//! default). Measured with `benches/profile_core.rs` at 1M connections:
//! -14% per packet one by one, -11% through `process_burst`.

/// Below this the array fits in a few pages anyway.
const MIN_ADVISED_BYTES: usize = 4 << 20;
const HUGE_PAGE: usize = 2 << 20;

/// A boxed slice of `n` items from `fill`, whose pages the kernel is asked to
/// back with huge pages before they are first written.
pub(crate) fn boxed_table<T>(n: usize, fill: impl FnMut(usize) -> T) -> Box<[T]> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    advise_huge(v.as_ptr() as usize, n.saturating_mul(std::mem::size_of::<T>()));
    v.extend((0..n).map(fill));
    v.into_boxed_slice()
}

/// Marks the whole 2 MiB pages inside `[addr, addr + len)`. Only a hint:
/// when the kernel declines, the memory is ordinary pages, equally correct.
fn advise_huge(addr: usize, len: usize) {
    if len < MIN_ADVISED_BYTES {
        return;
    }
    let start = addr.next_multiple_of(HUGE_PAGE);
    let end = (addr + len) / HUGE_PAGE * HUGE_PAGE;
    if end <= start {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: the range lies inside an allocation this function's caller
    // owns and has not handed out; MADV_HUGEPAGE changes no contents and no
    // mapping, only how the kernel backs the pages on their first touch.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}

/// Asks the CPU to bring `r`'s cache line closer, without waiting for it:
/// the burst path requests a whole burst's table lines before touching any.
#[inline(always)]
pub(crate) fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and reads nothing into the program's
    // state; the pointer comes from a live reference anyway.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((r as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_in_order_at_any_size() {
        let small = boxed_table(3, |i| i as u32 * 7);
        assert_eq!(&*small, &[0, 7, 14]);
        let n = (MIN_ADVISED_BYTES / 4) * 3 + 5;
        let big = boxed_table(n, |i| i as u32);
        assert_eq!(big.len(), n);
        assert!(big.iter().enumerate().all(|(i, &x)| x == i as u32));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn big_tables_are_advised_for_huge_pages() {
        let big = boxed_table(16 << 20, |_| 1u8);
        assert!(big.iter().all(|&x| x == 1));
        // A kernel built without transparent huge pages refuses the advice
        // (the table is then ordinary memory, as the first assert shows).
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            return;
        }
        let start = (big.as_ptr() as usize).next_multiple_of(HUGE_PAGE);
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        // The VMA holding the table carries the `hg` (MADV_HUGEPAGE) flag.
        let mut in_vma = false;
        let mut found = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                        in_vma = a <= start && start < b;
                        continue;
                    }
                }
            }
            if in_vma && line.starts_with("VmFlags:") {
                found = line.split_whitespace().any(|f| f == "hg");
            }
        }
        assert!(found, "no MADV_HUGEPAGE on the table's mapping");
        assert!(big.iter().all(|&x| x == 1));
    }
}
