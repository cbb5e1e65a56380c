use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::owner_of;
use crate::service::{Persistence, Proto, ServiceKey, ServiceTable, VirtualService, WorkerTraffic};
use std::sync::Arc;

proptest! {
    /// The ownership rule: clients of one masked network share an owner, for
    /// any mask (contiguous or not) and any worker count.
    #[test]
    fn one_masked_network_one_owner(a: u32, host: u32, mask: u32, prefix in 0u8..=32, workers in 1u16..=64) {
        for m in [mask, if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) }] {
            let b = (a & m) | (host & !m);
            let (m, a, b) = (Ipv4Addr::from(m), Ipv4Addr::from(a), Ipv4Addr::from(b));
            let o = owner_of(a, m, workers);
            prop_assert!(o < workers);
            prop_assert_eq!(o, owner_of(b, m, workers));
        }
    }
}

fn service(port: u16, netmask: Option<Ipv4Addr>) -> VirtualService {
    let opts = crate::sched::SchedOptions::default();
    VirtualService {
        key: ServiceKey {
            proto: Proto::Tcp,
            vip: Ipv4Addr::new(10, 1, 0, 100),
            port,
        },
        sched_name: "rr".into(),
        sched: crate::sched::build("rr", &[], &opts).unwrap(),
        sched_opts: opts,
        persistence: netmask.map(|netmask| Persistence {
            timeout_s: 300,
            netmask,
        }),
        syn_proxy: false,
        dests: Vec::new(),
        laddrs: Vec::new(),
        client_addr: Default::default(),
        stats: Arc::new(WorkerTraffic::new(1)),
    }
}

#[test]
fn owner_mask_is_the_coarsest_persistence_netmask() {
    let t = |ms: &[Option<[u8; 4]>]| {
        let svcs = ms
            .iter()
            .enumerate()
            .map(|(i, m)| service(80 + i as u16, m.map(Ipv4Addr::from)))
            .collect();
        ServiceTable::new(1, svcs).owner_mask()
    };
    assert_eq!(ServiceTable::default().owner_mask(), Ipv4Addr::BROADCAST);
    assert_eq!(t(&[None, None]), Ipv4Addr::BROADCAST);
    assert_eq!(t(&[Some([255; 4])]), Ipv4Addr::BROADCAST);
    assert_eq!(
        t(&[
            None,
            Some([255, 255, 255, 0]),
            Some([255, 255, 0, 0]),
            Some([255; 4])
        ]),
        Ipv4Addr::new(255, 255, 0, 0)
    );
}
