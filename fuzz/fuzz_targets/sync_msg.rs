//! The sync v1 decoder (`rvs_dp::sync`) under arbitrary datagrams, as a backup
//! director receives them from the network.
//!
//! Beyond "no panic", every connection the decoder yields must be whole: emitted
//! again and parsed back, it comes out the same; and re-encoding all of a datagram's
//! connections gives messages that decode to the same list.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_dp::sync::{SyncConn, SyncConnEntry, SyncDecoder, SyncEncoder};

fuzz_target!(|data: &[u8]| {
    // syncid 0 accepts every syncid, so the syncid byte never hides the rest.
    let mut dec = SyncDecoder::new(0);
    let Ok(items) = dec.decode(data) else { return };
    let conns: Vec<SyncConn<'_>> = items
        .filter_map(|r| match r {
            Ok(c) => Some(c),
            Err(e) => {
                assert!(!e.drops_datagram(), "{e:?} yielded after validation");
                None
            }
        })
        .collect();
    for c in &conns {
        let mut buf = vec![0u8; c.buffer_len()];
        c.emit(&mut buf).expect("a parsed entry can be emitted");
        let e = SyncConnEntry::new_checked(&buf[..]).expect("emitted entry frames");
        assert_eq!(SyncConn::parse(&e).as_ref(), Ok(c));
    }
    let mut enc = SyncEncoder::new(0, 1472);
    let mut next = 0usize;
    enc.encode_all(&conns, |m| {
        assert!(m.len() <= 1472);
        let mut d = SyncDecoder::new(0);
        for r in d.decode(m).expect("our own message") {
            assert_eq!(r.expect("our own entry"), conns[next]);
            next += 1;
        }
    })
    .expect("parsed entries re-encode");
    assert_eq!(next, conns.len());
});
