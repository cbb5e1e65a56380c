//! SYN cookies: the director answers a SYN with a SYN-ACK whose initial
//! sequence number carries what the handshake must remember, so a SYN costs
//! no table entry. Only an ACK that returns a valid cookie (as `ack - 1`)
//! creates a connection.
//!
//! Layout of the 32-bit cookie (low bits first):
//! - bits 0-3: the client's window shift, 15 = none offered;
//! - bit 4: the client offered SACK;
//! - bits 5-6: the client's MSS, as an index into `MSS_TABLE` (rounded down);
//! - bits 7-9: the 64-second time slot, modulo 8;
//! - bits 10-31: 22 bits of SipHash-1-3 under a random per-process key over
//!   the four-tuple, the client's ISN, the full slot and bits 0-9.
//!
//! A cookie is valid in its slot and the next one (64 to 128 s). A forged
//! ACK passes with probability 2^-22 per try; every failure is counted by the
//! caller. Timestamps are not used to carry more, so they are not negotiated.

use std::hash::Hasher;
use std::io::Read;
use std::net::Ipv4Addr;

use siphasher::sip::SipHasher13;

/// The MSS values a cookie can name; a client's MSS is rounded down to one.
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

const SLOT_SHIFT: u32 = 6;
const NO_WSCALE: u32 = 15;

/// The secret that makes cookies unforgeable; one per rvs-dp, shared by its
/// workers.
#[derive(Clone, Copy)]
pub struct CookieKey {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    /// A key from the kernel's random source.
    pub fn random() -> std::io::Result<CookieKey> {
        let mut b = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
        Ok(CookieKey::from_bytes(b))
    }

    /// `random`, or if the kernel's source cannot be read, std's
    /// randomly seeded hasher keys (also from the OS, by another way).
    pub fn random_or_seeded() -> CookieKey {
        CookieKey::random().unwrap_or_else(|_| {
            use std::hash::BuildHasher;
            let s = std::collections::hash_map::RandomState::new();
            CookieKey {
                k0: s.hash_one(0u8),
                k1: s.hash_one(1u8),
            }
        })
    }

    pub fn from_bytes(b: [u8; 16]) -> CookieKey {
        let (a, c) = b.split_at(8);
        CookieKey {
            k0: u64::from_le_bytes(a.try_into().unwrap_or_default()),
            k1: u64::from_le_bytes(c.try_into().unwrap_or_default()),
        }
    }
}

/// The four-tuple of a proxied handshake, as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub cip: Ipv4Addr,
    pub cport: u16,
    pub vip: Ipv4Addr,
    pub vport: u16,
    /// The client's initial sequence number (the SYN's seq).
    pub client_isn: u32,
}

/// What the cookie remembers of the client's SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieOptions {
    pub mss: u16,
    pub wscale: Option<u8>,
    pub sack: bool,
}

impl CookieOptions {
    /// What a SYN's options become once carried: the MSS rounded down to
    /// the table (536 when absent, as RFC 9293 says), the shift kept.
    pub fn from_syn(mss: Option<u16>, wscale: Option<u8>, sack: bool) -> CookieOptions {
        let mss = mss.unwrap_or(536);
        CookieOptions {
            mss: MSS_TABLE[mss_index(mss) as usize],
            wscale: wscale.map(|w| w.min(14)),
            sack,
        }
    }
}

fn mss_index(mss: u16) -> u32 {
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32
}

fn low_bits(o: &CookieOptions, slot: u32) -> u32 {
    let ws = o.wscale.map_or(NO_WSCALE, |w| u32::from(w.min(14)));
    ws | u32::from(o.sack) << 4 | mss_index(o.mss) << 5 | (slot & 7) << 7
}

fn mac(key: &CookieKey, h: &Handshake, slot: u32, low: u32) -> u32 {
    let mut s = SipHasher13::new_with_keys(key.k0, key.k1);
    s.write_u32(u32::from(h.cip));
    s.write_u32(u32::from(h.vip));
    s.write_u16(h.cport);
    s.write_u16(h.vport);
    s.write_u32(h.client_isn);
    s.write_u32(slot);
    s.write_u32(low);
    s.finish() as u32
}

/// The SYN-ACK's sequence number for this handshake at `now_s` (seconds).
pub fn make(key: &CookieKey, h: &Handshake, o: &CookieOptions, now_s: u32) -> u32 {
    let slot = now_s >> SLOT_SHIFT;
    let low = low_bits(o, slot);
    (mac(key, h, slot, low) << 10) | low
}

/// The options a returned cookie (`ack - 1` of the client's ACK) carries, if
/// it is one this director made for this handshake in the last two slots.
/// `h.client_isn` is the ACK's `seq - 1`.
pub fn check(key: &CookieKey, h: &Handshake, cookie: u32, now_s: u32) -> Option<CookieOptions> {
    let low = cookie & 0x3ff;
    let now = now_s >> SLOT_SHIFT;
    let slot = [now, now.wrapping_sub(1)]
        .into_iter()
        .find(|s| (s & 7) == (low >> 7) & 7)?;
    if mac(key, h, slot, low) << 10 != cookie & !0x3ff {
        return None;
    }
    let ws = low & 0xf;
    Some(CookieOptions {
        mss: MSS_TABLE[((low >> 5) & 3) as usize],
        wscale: (ws != NO_WSCALE).then_some(ws.min(14) as u8),
        sack: low & 0x10 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hs(isn: u32) -> Handshake {
        Handshake {
            cip: Ipv4Addr::new(198, 51, 100, 7),
            cport: 40_000,
            vip: Ipv4Addr::new(10, 1, 0, 100),
            vport: 80,
            client_isn: isn,
        }
    }

    const KEY: CookieKey = CookieKey { k0: 1, k1: 2 };

    #[test]
    fn options_survive_and_round_down() {
        let o = CookieOptions::from_syn(Some(1400), Some(7), true);
        assert_eq!(
            o,
            CookieOptions {
                mss: 1300,
                wscale: Some(7),
                sack: true
            }
        );
        assert_eq!(CookieOptions::from_syn(None, None, false).mss, 536);
        assert_eq!(
            CookieOptions::from_syn(Some(100), Some(30), false).wscale,
            Some(14)
        );
        assert_eq!(CookieOptions::from_syn(Some(100), None, false).mss, 536);
        assert_eq!(CookieOptions::from_syn(Some(9000), None, false).mss, 1460);
        let c = make(&KEY, &hs(5), &o, 1000);
        assert_eq!(check(&KEY, &hs(5), c, 1000), Some(o));
    }

    #[test]
    fn valid_for_its_slot_and_the_next_only() {
        let o = CookieOptions::from_syn(Some(1460), None, false);
        let c = make(&KEY, &hs(9), &o, 640); // slot 10
        assert!(check(&KEY, &hs(9), c, 640).is_some());
        assert!(check(&KEY, &hs(9), c, 767).is_some(), "slot 11");
        assert!(check(&KEY, &hs(9), c, 768).is_none(), "slot 12: expired");
        assert!(check(&KEY, &hs(9), c, 639).is_none(), "slot 9: from the future");
        assert!(
            check(&KEY, &hs(9), c, 640 + 8 * 64).is_none(),
            "same slot mod 8, later"
        );
    }

    #[test]
    fn another_tuple_isn_or_key_fails() {
        let o = CookieOptions::from_syn(Some(1460), Some(2), true);
        let c = make(&KEY, &hs(9), &o, 100);
        assert!(check(&KEY, &hs(10), c, 100).is_none());
        let mut other = hs(9);
        other.cport += 1;
        assert!(check(&KEY, &other, c, 100).is_none());
        let k2 = CookieKey { k0: 1, k1: 3 };
        assert!(check(&k2, &hs(9), c, 100).is_none());
        // Tampering with the carried options breaks the MAC.
        assert!(check(&KEY, &hs(9), c ^ 0x10, 100).is_none());
        assert!(check(&KEY, &hs(9), c ^ 0x60, 100).is_none());
    }

    #[test]
    fn random_keys_differ() {
        let a = CookieKey::random().unwrap();
        let b = CookieKey::random().unwrap();
        assert!(a.k0 != b.k0 || a.k1 != b.k1);
    }

    proptest! {
        #[test]
        fn round_trip_and_forgeries(isn: u32, now in 0u32..u32::MAX / 2, mss: Option<u16>,
                                    ws in proptest::option::of(0u8..20), sack: bool, guess: u32) {
            let o = CookieOptions::from_syn(mss, ws, sack);
            let c = make(&KEY, &hs(isn), &o, now);
            prop_assert_eq!(check(&KEY, &hs(isn), c, now), Some(o));
            prop_assert_eq!(check(&KEY, &hs(isn), c, now + 64), Some(o));
            if guess != c {
                // A random guess passes 1 time in 2^22 in theory; for a fixed
                // seed set, never.
                prop_assert_eq!(check(&KEY, &hs(isn), guess, now), None);
            }
        }
    }
}
