use super::*;

/// A device that takes rules as a NIC might: masked rules only if `masks`,
/// any rule unless `refuse_create` (net_tap on a kernel without TC flower:
/// validate passes, create fails), and at most `capacity` rules at once.
#[derive(Default)]
struct Fake {
    masks: bool,
    refuse_create: bool,
    capacity: usize,
    next: u64,
    live: BTreeMap<u64, (u16, FlowRule)>,
    validated: usize,
    /// Ids destroyed, in order.
    destroyed: Vec<u64>,
}

impl Fake {
    fn nic(masks: bool) -> Fake {
        Fake {
            masks,
            capacity: usize::MAX,
            ..Fake::default()
        }
    }

    fn rules_on(&self, port: u16) -> Vec<FlowRule> {
        self.live
            .values()
            .filter(|(p, _)| *p == port)
            .map(|(_, r)| *r)
            .collect()
    }
}

impl FlowDevice for Fake {
    type Handle = u64;

    fn validate(&mut self, _port: u16, r: &FlowRule) -> Result<(), String> {
        self.validated += 1;
        if r.mask != u16::MAX && !self.masks {
            return Err("port masks not supported".into());
        }
        Ok(())
    }

    fn create(&mut self, port: u16, r: &FlowRule) -> Result<u64, String> {
        if self.refuse_create {
            return Err("kernel refused".into());
        }
        if r.mask != u16::MAX && !self.masks {
            return Err("port masks not supported".into());
        }
        if self.live.len() >= self.capacity {
            return Err("table full".into());
        }
        self.next += 1;
        self.live.insert(self.next, (port, *r));
        Ok(self.next)
    }

    fn destroy(&mut self, _port: u16, h: u64) -> Result<(), String> {
        self.live.remove(&h).ok_or_else(|| "no such rule".to_string())?;
        self.destroyed.push(h);
        Ok(())
    }
}

fn lip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 2, 0, 200 + n)
}

fn tcp(n: u8) -> Target {
    Target {
        lip: lip(n),
        proto: Proto::Tcp,
    }
}

fn udp(n: u8) -> Target {
    Target {
        lip: lip(n),
        proto: Proto::Udp,
    }
}

fn cfg(workers: u16, ports: RangeInclusive<u16>) -> SteerConfig {
    SteerConfig {
        enabled: true,
        workers,
        ports,
        max_rules: DEFAULT_MAX_RULES,
    }
}

fn want(port: u16, ts: &[Target]) -> Want {
    let mut w = Want::new();
    w.insert(port, ts.iter().copied().collect());
    w
}

/// Every rule sends each port it matches to that port's owner.
fn check_rules_route_to_owner(rules: &[FlowRule], workers: u16) {
    for r in rules {
        for p in [r.dport, r.dport | !r.mask, 1024, 40000, 65535] {
            if p & r.mask == r.dport & r.mask {
                assert_eq!(r.queue, owner_of_port(p, workers), "{r:?} port {p}");
            }
        }
    }
}

#[test]
fn class_rules_one_per_worker_for_a_power_of_two() {
    for w in [2u16, 4, 8, 64] {
        let rs = class_rules(tcp(1), w);
        assert_eq!(rs.len(), usize::from(w));
        assert!(rs.iter().all(|r| r.mask == w - 1 && r.lip == lip(1)));
        let queues: BTreeSet<u16> = rs.iter().map(|r| r.queue).collect();
        assert_eq!(queues.len(), usize::from(w), "each worker once");
        check_rules_route_to_owner(&rs, w);
        // Every port of the range is matched by exactly one rule.
        for p in (1024..=65535u16).step_by(97) {
            assert_eq!(rs.iter().filter(|r| p & r.mask == r.dport).count(), 1, "port {p}");
        }
    }
}

#[test]
fn class_rules_64_classes_otherwise() {
    for w in [3u16, 5, 6, 7] {
        let rs = class_rules(udp(2), w);
        assert_eq!(rs.len(), 64);
        assert!(rs.iter().all(|r| r.mask == 0x3f && r.proto == Proto::Udp));
        check_rules_route_to_owner(&rs, w);
        for p in (1024..=65535u16).step_by(89) {
            let hit: Vec<_> = rs.iter().filter(|r| p & r.mask == r.dport).collect();
            assert_eq!(hit.len(), 1);
            assert_eq!(hit[0].queue, owner_of_port(p, w));
        }
    }
    assert!(class_rules(tcp(1), 1).is_empty(), "one worker: nothing to steer");
    assert!(class_rules(tcp(1), 0).is_empty());
}

#[test]
fn exact_rules_cover_the_range() {
    let rs = exact_rules(tcp(1), &(5000..=5099), 2);
    assert_eq!(rs.len(), 100);
    assert_eq!((rs[0].dport, rs[99].dport), (5000, 5099));
    assert!(rs.iter().all(|r| r.mask == u16::MAX));
    check_rules_route_to_owner(&rs, 2);
    assert_eq!(rules_per_target(Mode::Exact, &(5000..=5099), 2), 100);
    assert_eq!(rules_per_target(Mode::Classes, &(5000..=5099), 2), 2);
    assert_eq!(rules_per_target(Mode::Classes, &(5000..=5099), 3), 64);
    assert_eq!(rules_per_target(Mode::None, &(5000..=5099), 3), 0);
    assert!(exact_rules(tcp(1), &(5000..=5099), 1).is_empty());
}

#[test]
fn a_masking_nic_gets_classes_and_follows_changes() {
    let mut s = Steering::new(Fake::nic(true), cfg(2, 1024..=65535));
    let r = s.apply(&want(0, &[tcp(1), tcp(2)]));
    assert_eq!(r.len(), 1, "decided once, reported once");
    assert_eq!((r[0].mode, r[0].rules), (Mode::Classes, 4));
    assert_eq!(r[0].to_string(), "port 0 flow steering: classes(4 rules)");
    assert!(s.steers(0, &tcp(1)) && s.steers(0, &tcp(2)));
    assert!(!s.steers(0, &udp(1)) && !s.steers(1, &tcp(1)));

    // A LIP added and one removed: only the difference is touched.
    let before: Vec<u64> = s.dev.live.keys().copied().collect();
    let r = s.apply(&want(0, &[tcp(2), udp(3)]));
    assert!(r.is_empty(), "same mode: nothing new to log");
    assert_eq!(s.dev.destroyed.len(), 2, "tcp(1)'s two rules");
    assert!(
        before.iter().filter(|h| s.dev.live.contains_key(h)).count() == 2,
        "tcp(2) kept"
    );
    assert!(!s.steers(0, &tcp(1)) && s.steers(0, &udp(3)));
    assert_eq!(s.dev.rules_on(0).len(), 4);
    assert_eq!(s.report()[0].rules, 4);
    let v = s.dev.validated;

    // Everything gone: no rules, the mode remembered, nothing revalidated.
    assert!(s.apply(&Want::new()).is_empty());
    assert!(s.dev.live.is_empty());
    assert_eq!(s.report()[0].mode, Mode::Classes);
    s.apply(&want(0, &[tcp(1)]));
    assert_eq!(s.dev.validated, v);
    assert_eq!(s.dev.rules_on(0).len(), 2);
    s.clear();
    assert!(s.dev.live.is_empty());
}

#[test]
fn an_exact_only_nic_gets_exact_rules_within_the_cap() {
    let mut s = Steering::new(Fake::nic(false), cfg(2, 20000..=20999));
    let r = s.apply(&want(1, &[tcp(1), udp(1)]));
    assert_eq!((r[0].mode, r[0].rules), (Mode::Exact, 2000));
    assert!(r[0]
        .to_string()
        .starts_with("port 1 flow steering: exact(2000 rules) (classes refused:"));
    check_rules_route_to_owner(&s.dev.rules_on(1), 2);
    // Two more targets fit (4000); a fifth would not: the port falls to none,
    // with every exact rule destroyed.
    assert!(s.apply(&want(1, &[tcp(1), udp(1), tcp(2), udp(2)])).is_empty());
    assert_eq!(s.dev.live.len(), 4000);
    let r = s.apply(&want(1, &[tcp(1), udp(1), tcp(2), udp(2), tcp(3)]));
    assert_eq!(r[0].mode, Mode::None);
    assert!(
        r[0].reason.contains("5000, over the cap of 4096"),
        "{}",
        r[0].reason
    );
    assert!(s.dev.live.is_empty());
    assert!(!s.steers(1, &tcp(1)));
    // Back under the cap: exact rules again (the NIC took them before).
    let r = s.apply(&want(1, &[tcp(1), udp(1)]));
    assert_eq!((r[0].mode, r[0].rules), (Mode::Exact, 2000), "{}", r[0]);
    assert!(s.steers(1, &tcp(1)) && s.steers(1, &udp(1)));
    assert_eq!(s.dev.live.len(), 2000);
}

#[test]
fn a_device_refusal_is_for_good_on_that_port() {
    // Validate passes, create fails: none, and never tried again.
    let mut s = Steering::new(
        Fake {
            refuse_create: true,
            ..Fake::nic(false)
        },
        cfg(2, 20000..=20063),
    );
    assert_eq!(s.apply(&want(0, &[tcp(1), tcp(2)]))[0].mode, Mode::None);
    assert!(s.apply(&want(0, &[tcp(1)])).is_empty());
    assert!(s.dev.live.is_empty() && !s.steers(0, &tcp(1)));
}

#[test]
fn the_default_range_is_over_the_cap_for_exact() {
    let mut s = Steering::new(Fake::nic(false), cfg(2, 1024..=65535));
    let r = s.apply(&want(0, &[tcp(1)]));
    assert_eq!(r[0].mode, Mode::None);
    assert!(r[0].reason.contains("64512"), "{}", r[0].reason);
    assert_eq!(
        s.dev.validated, 1,
        "classes validated, exact refused before any call"
    );
}

#[test]
fn validate_ok_create_refused_ends_in_none_with_nothing_left() {
    // net_tap without TC flower: rte_flow_validate passes, create fails.
    let dev = Fake {
        refuse_create: true,
        ..Fake::nic(true)
    };
    let mut s = Steering::new(dev, cfg(2, 30000..=30099));
    let r = s.apply(&want(0, &[tcp(1)]));
    assert_eq!(r[0].mode, Mode::None);
    assert_eq!(r[0].reason, "kernel refused");
    assert_eq!(r[0].to_string(), "port 0 flow steering: none (kernel refused)");
    assert!(s.dev.live.is_empty());
}

#[test]
fn a_partial_failure_unwinds_the_whole_port() {
    // Room for 3 class rules: the first LIP's two fit, the second's do not.
    let dev = Fake {
        capacity: 3,
        ..Fake::nic(true)
    };
    let mut s = Steering::new(dev, cfg(2, 40000..=40000));
    let r = s.apply(&want(0, &[tcp(1), tcp(2)]));
    // Classes failed half way: all destroyed; exact (1 port x 2) fits.
    assert_eq!((r[0].mode, r[0].rules), (Mode::Exact, 2));
    assert!(r[0].reason.contains("table full"));
    assert!(s.dev.rules_on(0).iter().all(|r| r.mask == u16::MAX));
    assert!(s.steers(0, &tcp(1)) && s.steers(0, &tcp(2)));

    // Later, in exact, a target that does not fit: the port gives up.
    let r = s.apply(&want(0, &[tcp(1), tcp(2), tcp(3), tcp(4)]));
    assert_eq!(r[0].mode, Mode::None);
    assert!(s.dev.live.is_empty(), "no LIP left half steered");
    assert!(!s.steers(0, &tcp(1)));
}

#[test]
fn ports_are_independent() {
    let mut s = Steering::new(Fake::nic(true), cfg(4, 1024..=65535));
    let mut w = want(0, &[tcp(1)]);
    w.insert(2, [udp(2)].into_iter().collect());
    let r = s.apply(&w);
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].port, r[1].port), (0, 2));
    assert_eq!(s.dev.rules_on(0).len(), 4);
    assert_eq!(s.dev.rules_on(2).len(), 4);
    // Port 2 loses its LIP, port 0 keeps its own.
    s.apply(&want(0, &[tcp(1)]));
    assert_eq!(s.dev.rules_on(2).len(), 0);
    assert_eq!(s.dev.rules_on(0).len(), 4);
}

#[test]
fn disabled_or_one_worker_installs_nothing() {
    let mut off = cfg(2, 1024..=65535);
    off.enabled = false;
    let mut s = Steering::new(Fake::nic(true), off);
    let r = s.apply(&want(0, &[tcp(1)]));
    assert_eq!(
        r[0].to_string(),
        "port 0 flow steering: none (disabled by flow_steering = false)"
    );
    assert_eq!((s.dev.validated, s.dev.live.len()), (0, 0));

    let mut s = Steering::new(Fake::nic(true), cfg(1, 1024..=65535));
    let r = s.apply(&want(0, &[tcp(1)]));
    assert_eq!(r[0].mode, Mode::None);
    assert_eq!((s.dev.validated, s.dev.live.len()), (0, 0));
}

#[test]
fn ports_without_lips_are_not_reported() {
    let mut s = Steering::new(Fake::nic(true), cfg(2, 1024..=65535));
    assert!(s.apply(&Want::new()).is_empty());
    assert!(s.apply(&want(3, &[])).is_empty());
    assert!(s.report().is_empty());
}
