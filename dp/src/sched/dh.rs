//! Destination hashing (kernel ip_vs_dh.c): the destination address the
//! client asked for (the VIP; for a firewall-mark cache cluster, the origin
//! server) hashes into a 256-bucket table, so one destination always reaches
//! the same real server. As in the kernel the buckets are dealt to the servers
//! in turn, one each, whatever their weight; weight only says quiesced or not.
//! An unavailable hashed server refuses the connection.

use super::{hash_32, is_available, SchedKey, Scheduler};
use crate::dest::RealServer;

/// IP_VS_DH_TAB_BITS.
const DH_TAB_BITS: u32 = 8;
const DH_TAB_SIZE: usize = 1 << DH_TAB_BITS;
const NO_DEST: u32 = u32::MAX;

#[derive(Clone, Debug)]
pub struct Dh {
    buckets: [u32; DH_TAB_SIZE],
}

impl Dh {
    pub fn new(dests: &[RealServer]) -> Self {
        let mut buckets = [NO_DEST; DH_TAB_SIZE];
        if !dests.is_empty() {
            for (i, b) in buckets.iter_mut().enumerate() {
                *b = (i % dests.len()) as u32;
            }
        }
        Dh { buckets }
    }
}

impl Scheduler for Dh {
    fn name(&self) -> &'static str {
        "dh"
    }

    fn schedule(&mut self, dests: &[RealServer], key: &SchedKey) -> Option<usize> {
        let i = self.buckets[hash_32(u32::from(key.dst), DH_TAB_BITS) as usize];
        (i != NO_DEST && is_available(dests, i as usize)).then_some(i as usize)
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{key_vip, overload, servers};

    #[test]
    fn same_destination_same_server_whatever_the_client() {
        let d = servers(&[1, 1, 1]);
        let mut s = Dh::new(&d);
        let mut seen = [false; 3];
        for v in 0..100u32 {
            let first = s.schedule(&d, &key_vip(1, v)).unwrap();
            seen[first] = true;
            for c in 2..6 {
                assert_eq!(s.schedule(&d, &key_vip(c, v)), Some(first));
            }
        }
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn unavailable_hashed_server_refuses() {
        let d = servers(&[1, 1, 1]);
        let mut s = Dh::new(&d);
        let i = s.schedule(&d, &key_vip(1, 9)).unwrap();
        overload(&d[i]);
        assert_eq!(s.schedule(&d, &key_vip(1, 9)), None);
    }
}
