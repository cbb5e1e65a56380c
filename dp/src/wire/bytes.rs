//! Total byte accessors. Out-of-range reads give 0 (or an empty slice) and out-of-range
//! writes do nothing, so the views built on them cannot panic whatever the buffer holds.
//! `wrapping_add` keeps the range arithmetic itself panic-free: a wrapped end is below its
//! start, and `get` refuses such a range.

pub(crate) type Field = core::ops::Range<usize>;

#[inline(always)]
pub(crate) fn get_u8(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

#[inline(always)]
pub(crate) fn get_u16(buf: &[u8], at: usize) -> u16 {
    match buf.get(at..at.wrapping_add(2)) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

#[inline(always)]
pub(crate) fn get_u32(buf: &[u8], at: usize) -> u32 {
    match buf.get(at..at.wrapping_add(4)) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// As `get_u16`, in the CPU's byte order: for ones' complement arithmetic,
/// which comes out the same in either order (RFC 1071) as long as every
/// word of it, the checksum too, is read and written in one order.
#[inline(always)]
pub(crate) fn get_ne16(buf: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(get_array(buf, at))
}

/// As `get_u32`, in the CPU's byte order (see `get_ne16`).
#[inline(always)]
pub(crate) fn get_ne32(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(get_array(buf, at))
}

#[inline(always)]
pub(crate) fn set_ne16(buf: &mut [u8], at: usize, v: u16) {
    set_array(buf, at, v.to_ne_bytes());
}

#[inline(always)]
pub(crate) fn set_ne32(buf: &mut [u8], at: usize, v: u32) {
    set_array(buf, at, v.to_ne_bytes());
}

#[inline(always)]
pub(crate) fn get_array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    buf.get(at..at.wrapping_add(N))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

#[inline(always)]
pub(crate) fn set_u8(buf: &mut [u8], at: usize, v: u8) {
    if let Some(b) = buf.get_mut(at) {
        *b = v;
    }
}

#[inline(always)]
pub(crate) fn set_u16(buf: &mut [u8], at: usize, v: u16) {
    set_array(buf, at, v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn set_u32(buf: &mut [u8], at: usize, v: u32) {
    set_array(buf, at, v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn set_array<const N: usize>(buf: &mut [u8], at: usize, v: [u8; N]) {
    if let Some(dst) = buf
        .get_mut(at..at.wrapping_add(N))
        .and_then(|s| <&mut [u8; N]>::try_from(s).ok())
    {
        *dst = v;
    }
}

/// `buf[range]`, or an empty slice when the range does not fit.
#[inline(always)]
pub(crate) fn slice(buf: &[u8], range: Field) -> &[u8] {
    buf.get(range).unwrap_or(&[])
}

#[inline(always)]
pub(crate) fn slice_mut(buf: &mut [u8], range: Field) -> &mut [u8] {
    buf.get_mut(range).unwrap_or(&mut [])
}

/// `buf[from..]`, or an empty slice.
#[inline(always)]
pub(crate) fn tail(buf: &[u8], from: usize) -> &[u8] {
    buf.get(from..).unwrap_or(&[])
}

#[inline(always)]
pub(crate) fn tail_mut(buf: &mut [u8], from: usize) -> &mut [u8] {
    buf.get_mut(from..).unwrap_or(&mut [])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_reads_zero_and_writes_nothing() {
        let mut b = [1u8, 2, 3];
        assert_eq!(get_u16(&b, 1), 0x0203);
        assert_eq!(get_u16(&b, 2), 0);
        assert_eq!(get_u32(&b, 0), 0);
        assert_eq!(get_u16(&b, usize::MAX), 0);
        assert_eq!(get_array::<2>(&b, usize::MAX - 1), [0, 0]);
        set_u32(&mut b, 0, 0xffff_ffff);
        set_u16(&mut b, usize::MAX, 0xffff);
        set_u8(&mut b, 3, 9);
        assert_eq!(b, [1, 2, 3]);
        set_u16(&mut b, 1, 0xaabb);
        assert_eq!(b, [1, 0xaa, 0xbb]);
        assert!(slice(&b, 2..5).is_empty());
        #[allow(clippy::reversed_empty_ranges)]
        let r = 3..1;
        assert!(slice(&b, r).is_empty());
        assert!(tail(&b, 4).is_empty());
        assert_eq!(tail(&b, 3).len(), 0);
    }
}
