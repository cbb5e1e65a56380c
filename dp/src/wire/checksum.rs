//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! A *partial sum* is a `u32` holding a ones-complement sum already folded to at most
//! 0xFFFF, so that several partial sums (pseudo-header + segment, say) can be added with
//! plain `+` and folded once at the end without any risk of overflow.

use std::net::Ipv4Addr;

/// Fold a 64-bit accumulator to a partial sum (<= 0xFFFF). 2^32 and 2^16 are both
/// congruent to 1 modulo 0xFFFF, so each step keeps the ones-complement value.
#[inline(always)]
fn fold64(s: u64) -> u32 {
    // Branch-free (the per-packet header check calls this): after the first
    // step s < 2^33, then < 2^18, then <= 0x10002, then <= 0xFFFF.
    let s = (s & 0xffff_ffff) + (s >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u32
}

/// Ones-complement sum of `data` as big-endian 16-bit words, as a partial sum.
///
/// An odd trailing byte counts as the high byte of a zero-padded word, so only the last
/// piece of a message may have odd length when summing it piecewise.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    // 64-bit words with end-around carry: 2^64 is congruent to 1 modulo 0xFFFF, so the
    // carry folds back in like a 16-bit one would, and no input length can overflow.
    #[inline(always)]
    fn add(acc: u64, x: u64) -> u64 {
        let (s, carry) = acc.overflowing_add(x);
        // With a carry, s < x <= u64::MAX, so adding 1 cannot overflow.
        s + u64::from(carry)
    }
    let (chunks, rest) = data.as_chunks::<8>();
    let mut acc: u64 = 0;
    for c in chunks {
        acc = add(acc, u64::from_be_bytes(*c));
    }
    let (quads, rest) = rest.as_chunks::<4>();
    for q in quads {
        acc = add(acc, u64::from(u32::from_be_bytes(*q)));
    }
    let (pairs, rest) = rest.as_chunks::<2>();
    for p in pairs {
        acc = add(acc, u64::from(u16::from_be_bytes(*p)));
    }
    if let Some(&last) = rest.first() {
        acc = add(acc, u64::from(last) << 8);
    }
    fold64(acc)
}

/// Fold a sum to 16 bits (end-around carry). Not inverted.
#[inline(always)]
pub fn fold(sum: u32) -> u16 {
    // Two steps reach 16 bits from any u32: 0xFFFF_FFFF -> 0x1_FFFE -> 0xFFFF.
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The checksum field value for a message whose sum is `sum`: `!fold(sum)`.
#[inline(always)]
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// Partial sum of the IPv4 pseudo-header used by TCP and UDP (RFC 793, RFC 768).
#[inline]
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    let total = (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + u32::from(proto) + u32::from(len);
    u32::from(fold(total))
}

/// RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), for one 16-bit word changed from `old` to
/// `new`. Works on any Internet checksum that covers the word (IP header, TCP, UDP,
/// ICMP). Gives the same value as a full recomputation whenever `csum` was valid for a
/// message that is not all zeros.
#[inline(always)]
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!csum) + u32::from(!old) + u32::from(new);
    !fold(s)
}

/// RFC 1624 eqn. 3 for a 32-bit value (an IPv4 address: in the IP header, or in the
/// TCP/UDP pseudo-header) changed from `old` to `new`.
#[inline(always)]
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!csum)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !fold(s)
}

/// The change of a 16-bit word from `old` to `new`, as a partial sum to add
/// to a checksum's complement (RFC 1624 eqn. 3 split in two, so several
/// changes to one checksum fold once: see `apply`).
#[inline(always)]
pub fn delta16(old: u16, new: u16) -> u32 {
    u32::from(!old) + u32::from(new)
}

/// As `delta16` for a 32-bit value (an IPv4 address).
#[inline(always)]
pub fn delta32(old: u32, new: u32) -> u32 {
    u32::from(!(old >> 16) as u16) + u32::from(!(old as u16)) + (new >> 16) + (new & 0xffff)
}

/// The `delta16` of the TTL/protocol word when the TTL drops by one (it
/// must be above 0), in the CPU's byte order, for arithmetic on words read
/// in that order (see `wire::bytes::get_ne16`): `!m + m'` with
/// m' = m - 0x0100 is 0xFEFF in network order, whatever m is.
pub const TTL_DECREMENT_NE: u32 = u16::from_ne_bytes(0xFEFFu16.to_be_bytes()) as u32;

/// The checksum after changes whose `delta16`/`delta32` sum to `delta` (at
/// most a few of them, so the u32 cannot overflow).
#[inline(always)]
pub fn apply(csum: u16, delta: u32) -> u16 {
    !fold(u32::from(!csum) + delta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious word-by-word definition, as the oracle for the fast `sum`.
    fn naive(data: &[u8]) -> u16 {
        let mut s: u64 = 0;
        for (i, b) in data.iter().enumerate() {
            s += if i % 2 == 0 {
                u64::from(*b) << 8
            } else {
                u64::from(*b)
            };
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: this sequence sums to ddf2.
        assert_eq!(
            fold(sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])),
            0xddf2
        );
    }

    #[test]
    fn known_ip_header() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(finish(sum(&h)), 0xb861);
        h[10] = 0xb8;
        h[11] = 0x61;
        assert_eq!(finish(sum(&h)), 0);
        assert_eq!(fold(sum(&h)), 0xffff);
    }

    #[test]
    fn odd_length_pads_low_byte() {
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0xab]), 0x1234 + 0xab00);
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn long_input_carries_wrap_around() {
        // All-ones words make the 64-bit accumulator carry on nearly every add.
        let mut v = vec![0xffu8; 100_003];
        v[7] = 0x12;
        v[50_000] = 0;
        assert_eq!(fold(sum(&v)), naive(&v));
    }

    #[test]
    fn fold_carries_around_twice() {
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0x0001_fffe), 0xffff);
        assert_eq!(fold(0x0002_0001), 0x0003);
        assert_eq!(finish(0), 0xffff);
    }

    #[test]
    fn pseudo_header_known() {
        let s = pseudo_header_sum(Ipv4Addr::new(192, 168, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 6, 40);
        let expect = naive(&[192, 168, 0, 1, 10, 0, 0, 2, 0, 6, 0, 40]);
        assert_eq!(s, u32::from(expect));
    }

    proptest! {
        #[test]
        fn fast_sum_matches_naive(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let s = sum(&data);
            prop_assert!(s <= 0xffff);
            prop_assert_eq!(fold(s), naive(&data));
        }

        #[test]
        fn partial_sums_add_at_even_splits(data in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..100) {
            let cut = (cut * 2).min(data.len() & !1);
            let (a, b) = data.split_at(cut);
            prop_assert_eq!(fold(sum(a) + sum(b)), fold(sum(&data)));
        }

        #[test]
        fn update16_matches_recompute(mut data in proptest::collection::vec(any::<u8>(), 4..64), word in 0usize..30, new in any::<u16>()) {
            // Byte 0 is forced non-zero below so the message is never all zeros.
            data[0] |= 1;
            let at = 2 + 2 * (word % ((data.len() - 2) / 2));
            let csum = finish(sum(&data));
            let old = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&new.to_be_bytes());
            prop_assert_eq!(update16(csum, old, new), finish(sum(&data)));
        }

        #[test]
        fn update32_matches_recompute(mut data in proptest::collection::vec(any::<u8>(), 6..64), word in 0usize..30, new in any::<u32>()) {
            data[0] |= 1;
            let at = 2 + 2 * (word % ((data.len() - 4) / 2));
            let csum = finish(sum(&data));
            let old = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            data[at..at + 4].copy_from_slice(&new.to_be_bytes());
            prop_assert_eq!(update32(csum, old, new), finish(sum(&data)));
        }

        /// Several changes folded once (`delta16`/`delta32` + `apply`) give
        /// the checksum a full recomputation gives.
        #[test]
        fn deltas_applied_at_once_match_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 12..64),
            w16 in 0usize..30, n16 in any::<u16>(), w32 in 0usize..30, n32 in any::<u32>(),
        ) {
            data[0] |= 1;
            let csum = finish(sum(&data));
            // A 16-bit word in the first half, a 32-bit one in the second.
            let half = (data.len() / 2) & !1;
            let at16 = 2 + 2 * (w16 % ((half - 2) / 2));
            let at32 = half + 2 * (w32 % ((data.len() - half - 2) / 2));
            let o16 = u16::from_be_bytes([data[at16], data[at16 + 1]]);
            data[at16..at16 + 2].copy_from_slice(&n16.to_be_bytes());
            let o32 = u32::from_be_bytes([data[at32], data[at32 + 1], data[at32 + 2], data[at32 + 3]]);
            data[at32..at32 + 4].copy_from_slice(&n32.to_be_bytes());
            let got = apply(csum, delta16(o16, n16) + delta32(o32, n32));
            prop_assert_eq!(got, finish(sum(&data)));
        }
    }
}
