//! From configuration and health to the commands rvs-dp needs, by difference.
//!
//! `desired_service` says what one virtual service should look like now;
//! `plan` compares the wanted table with rvs-dp's (`Command::List`) and emits
//! only the commands that close the gap. Nothing that already matches is
//! touched, so connections to unchanged real servers live through reloads,
//! health changes and rvs-cp restarts. A restarted rvs-dp lists nothing, so
//! the same comparison re-applies everything.
//!
//! rvs-cp owns the services of its file: it adds, edits and deletes them,
//! their real servers and their FULLNAT local addresses (an extra real server
//! or local address added by hand to such a service is removed at the next
//! compare). Services not in the file are never touched,
//! except those it removed from the file (`retired`), which it deletes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use rvs_proto::command::{ClientAddr, Command, DestSpec, ServiceInfo, ServiceSpec};
use rvs_proto::ipvs::ServiceRules;
use rvs_proto::types::ServiceKey;

use crate::config::{CpConfig, RealId, ServiceDef, StartState};

pub type Table = BTreeMap<ServiceKey, ServiceRules>;

/// Sum of the weights of the real servers that are UP.
pub fn alive_weight(def: &ServiceDef, up: &dyn Fn(&RealId) -> bool) -> u64 {
    let key = def.key();
    def.reals
        .iter()
        .filter(|r| up(&(key, r.dest.rip, r.dest.port)))
        .map(|r| r.dest.weight as u64)
        .sum()
}

/// keepalived's quorum with hysteresis: an up service goes down when the
/// alive weight is 0 or below `quorum - hysteresis`; a down one comes back at
/// `quorum + hysteresis`.
pub fn quorum_next(def: &ServiceDef, alive: u64, was_up: bool) -> bool {
    let q = def.quorum as u64;
    let h = def.hysteresis as u64;
    if was_up {
        !(alive == 0 || alive < q.saturating_sub(h))
    } else {
        alive > 0 && alive >= q + h
    }
}

/// What the service should hold now. An UP real server is in with its
/// weight; a DOWN one is out, or in at weight 0 with inhibit_on_failure.
/// While the quorum is lost and there is a sorry server, the sorry server
/// replaces the real servers (keepalived removes the alive ones then).
pub fn desired_service(def: &ServiceDef, up: &dyn Fn(&RealId) -> bool, quorum_up: bool) -> ServiceRules {
    let key = def.key();
    let sorry_active = !quorum_up && def.sorry.is_some();
    let mut dests = Vec::new();
    if let (true, Some(s)) = (sorry_active, &def.sorry) {
        dests.push(s.clone());
    }
    for r in &def.reals {
        let is_up = up(&(key, r.dest.rip, r.dest.port));
        if is_up && !sorry_active {
            dests.push(r.dest.clone());
        } else if r.inhibit_on_failure {
            let mut d = r.dest.clone();
            d.weight = 0;
            dests.push(d);
        }
    }
    ServiceRules {
        spec: def.spec.clone(),
        dests,
        laddrs: def.laddrs.clone(),
    }
}

/// The table before any check result: each real server in its start state
/// (`CheckDef::start`), and the quorum judged where every start state is
/// known, as the daemon's first step judges it.
pub fn initial_table(cfg: &CpConfig) -> Table {
    let starts_up = |r: &crate::config::RealDef| r.check.as_ref().is_none_or(|c| c.start == StartState::Up);
    cfg.services
        .iter()
        .map(|s| {
            let key = s.key();
            let up = |id: &RealId| {
                s.reals
                    .iter()
                    .any(|r| (key, r.dest.rip, r.dest.port) == *id && starts_up(r))
            };
            let judged = s
                .reals
                .iter()
                .all(|r| r.check.as_ref().is_none_or(|c| c.start != StartState::Pending));
            let quorum_up = !judged || quorum_next(s, alive_weight(s, &up), true);
            (key, desired_service(s, &up, quorum_up))
        })
        .collect()
}

/// True if `want` asks more of the real servers than `have`: a SYN proxy
/// (NAT only) or a client address header (FULLNAT only) turned on. Such an
/// edit goes after the real servers' changes, every other edit before them.
fn demands_more(have: &ServiceSpec, want: &ServiceSpec) -> bool {
    (want.syn_proxy && !have.syn_proxy)
        || (want.client_addr != ClientAddr::None && have.client_addr == ClientAddr::None)
}

/// The commands that turn `current` into `desired` for the services rvs-cp
/// owns, and delete the `retired` ones. Order: local addresses removed
/// (those of retired services too, so an address can move to another
/// service in one reload), services added or edited, then real servers
/// added, edited, removed (adding before removing, so a swap to the sorry
/// server never leaves the service empty), the service edits that need the
/// new real servers (`demands_more`), local addresses added, and last the
/// retired services. A local address is matched by address and port name:
/// one that moves to another port is removed and added again.
pub fn plan(desired: &Table, current: &[ServiceInfo], retired: &BTreeSet<ServiceKey>) -> Vec<Command> {
    let now: BTreeMap<ServiceKey, &ServiceInfo> = current.iter().map(|s| (s.spec.key(), s)).collect();
    let (mut svc, mut add, mut edit, mut del, mut gone) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ldel, mut late, mut ladd) = (Vec::new(), Vec::new(), Vec::new());
    for (key, want) in desired {
        match now.get(key) {
            None => {
                svc.push(Command::AddService(want.spec.clone()));
                add.extend(want.dests.iter().map(|d| Command::AddDest(*key, d.clone())));
                ladd.extend(want.laddrs.iter().map(|l| Command::AddLaddr(*key, l.clone())));
            }
            Some(have) => {
                if have.spec != want.spec {
                    let edit = Command::EditService(want.spec.clone());
                    if demands_more(&have.spec, &want.spec) {
                        late.push(edit);
                    } else {
                        svc.push(edit);
                    }
                }
                for l in &have.laddrs {
                    if !want.laddrs.contains(l) {
                        ldel.push(Command::DelLaddr(*key, l.addr));
                    }
                }
                for l in &want.laddrs {
                    if !have.laddrs.contains(l) {
                        ladd.push(Command::AddLaddr(*key, l.clone()));
                    }
                }
                // Indexed by (RIP, port): a scan per real server would make a
                // 10,000-real-server service 10^8 comparisons.
                let had: HashMap<(Ipv4Addr, u16), &DestSpec> = have
                    .dests
                    .iter()
                    .map(|h| ((h.spec.rip, h.spec.port), &h.spec))
                    .collect();
                let wanted: HashSet<(Ipv4Addr, u16)> = want.dests.iter().map(|d| (d.rip, d.port)).collect();
                for d in &want.dests {
                    match had.get(&(d.rip, d.port)) {
                        None => add.push(Command::AddDest(*key, d.clone())),
                        Some(h) if *h != d => edit.push(Command::EditDest(*key, d.clone())),
                        Some(_) => {}
                    }
                }
                for h in &have.dests {
                    if !wanted.contains(&(h.spec.rip, h.spec.port)) {
                        del.push(Command::DelDest(*key, h.spec.rip, h.spec.port));
                    }
                }
            }
        }
    }
    for key in retired {
        if let (false, Some(have)) = (desired.contains_key(key), now.get(key)) {
            ldel.extend(have.laddrs.iter().map(|l| Command::DelLaddr(*key, l.addr)));
            gone.push(Command::DelService(*key));
        }
    }
    ldel.into_iter()
        .chain(svc)
        .chain(add)
        .chain(edit)
        .chain(del)
        .chain(late)
        .chain(ladd)
        .chain(gone)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CpConfig;
    use rvs_proto::ipvs::IpvsConfig;

    const CFG: &str = r#"
[[virtual_server]]
address = "10.1.0.100"
port = 80
lb_algo = "wrr"
quorum = 4
hysteresis = 1
sorry_server = "10.2.0.99"
[[virtual_server.real_server]]
address = "10.2.0.11"
weight = 3
[[virtual_server.real_server]]
address = "10.2.0.12"
weight = 2
inhibit_on_failure = true
"#;

    fn model_of(cmds: &[Command], m: &mut IpvsConfig) {
        for c in cmds {
            m.apply(c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        }
    }

    #[test]
    fn quorum_has_hysteresis() {
        let c = CpConfig::from_str_named(CFG, "t").unwrap();
        let d = &c.services[0];
        // quorum 4, hysteresis 1: lost below 3, regained at 5.
        assert!(quorum_next(d, 3, true));
        assert!(!quorum_next(d, 2, true));
        assert!(!quorum_next(d, 4, false));
        assert!(quorum_next(d, 5, false));
        assert!(!quorum_next(d, 0, true));
    }

    #[test]
    fn plan_reaches_the_desired_state_and_then_is_empty() {
        let c = CpConfig::from_str_named(CFG, "t").unwrap();
        let d = &c.services[0];
        let key = d.key();
        let all_up = |_: &RealId| true;
        let mut m = IpvsConfig::new();
        let mut want = Table::new();
        want.insert(key, desired_service(d, &all_up, true));
        let cmds = plan(&want, &m.list(), &BTreeSet::new());
        assert_eq!(cmds.len(), 3);
        model_of(&cmds, &mut m);
        assert!(plan(&want, &m.list(), &BTreeSet::new()).is_empty());

        // .11 fails: removed. .12 fails: weight 0 (inhibit). Quorum lost: sorry in.
        let none_up = |_: &RealId| false;
        want.insert(key, desired_service(d, &none_up, false));
        let cmds = plan(&want, &m.list(), &BTreeSet::new());
        model_of(&cmds, &mut m);
        let s = m.service(&key).unwrap();
        let w: Vec<_> = s.dests.iter().map(|d| (d.rip.to_string(), d.weight)).collect();
        assert_eq!(w, vec![("10.2.0.12".into(), 0), ("10.2.0.99".into(), 1)]);
        assert!(
            matches!(cmds[0], Command::AddDest(..)),
            "sorry added before removals: {cmds:?}"
        );

        // Scheduler change: one EditService, nothing else.
        want.get_mut(&key).unwrap().spec.scheduler = "rr".into();
        let cmds = plan(&want, &m.list(), &BTreeSet::new());
        assert!(
            matches!(&cmds[..], [Command::EditService(s)] if s.scheduler == "rr"),
            "{cmds:?}"
        );
        model_of(&cmds, &mut m);

        // Retired: deleted. Unknown services: untouched.
        let other = rvs_proto::command::ServiceSpec::new(
            rvs_proto::types::Proto::Udp,
            "10.9.9.9".parse().unwrap(),
            53,
        );
        m.apply(&Command::AddService(other)).unwrap();
        let cmds = plan(&Table::new(), &m.list(), &BTreeSet::from([key]));
        assert_eq!(cmds, vec![Command::DelService(key)]);
    }

    const FNAT: &str = r#"
[[port]]
name = "inside"
device = "net_af_packet1,iface=veth1"
address = "10.2.0.1/24"
[[virtual_server]]
address = "10.1.0.100"
port = 80
lb_kind = "FNAT"
client_addr = "proxy-v2"
laddrs = [{ address = "10.2.0.201", port = "inside" }, { address = "10.2.0.202", port = "inside" }]
[[virtual_server.real_server]]
address = "10.2.0.11"
[[virtual_server]]
address = "10.1.0.100"
port = 443
lb_kind = "FNAT"
laddrs = [{ address = "10.2.0.203", port = "inside" }]
[[virtual_server.real_server]]
address = "10.2.0.11"
"#;

    fn table(text: &str) -> Table {
        let c = CpConfig::from_str_named(text, "t").unwrap();
        let up = |_: &RealId| true;
        c.services
            .iter()
            .map(|s| (s.key(), desired_service(s, &up, true)))
            .collect()
    }

    /// Applies `plan` to `m` as rvs-cp does (one transaction) and checks
    /// that a second plan is empty.
    fn converge(want: &Table, m: &mut IpvsConfig, retired: &BTreeSet<ServiceKey>) -> Vec<Command> {
        let cmds = plan(want, &m.list(), retired);
        m.apply(&Command::Restore(cmds.clone()))
            .unwrap_or_else(|e| panic!("{cmds:?}: {e}"));
        assert!(plan(want, &m.list(), retired).is_empty(), "converged");
        cmds
    }

    #[test]
    fn local_addresses_are_desired_whatever_the_health() {
        let c = CpConfig::from_str_named(FNAT, "t").unwrap();
        let down = |_: &RealId| false;
        let d = desired_service(&c.services[0], &down, false);
        assert!(d.dests.is_empty());
        assert_eq!(d.laddrs, c.services[0].laddrs);
        assert_eq!(d.laddrs.len(), 2);
    }

    #[test]
    fn plan_adds_and_removes_local_addresses_by_difference() {
        let mut m = IpvsConfig::new();
        let want = table(FNAT);
        let cmds = converge(&want, &mut m, &BTreeSet::new());
        let adds = cmds.iter().filter(|c| matches!(c, Command::AddLaddr(..))).count();
        assert_eq!(adds, 3);
        let k80 = *want.keys().find(|k| k.port == 80).unwrap();
        let k443 = *want.keys().find(|k| k.port == 443).unwrap();

        // One address removed, one moved to the other service, one moved to
        // another port name: only those change; the rest is not touched.
        let next = FNAT
            .replace(", { address = \"10.2.0.202\", port = \"inside\" }]", "]")
            .replace(
                "laddrs = [{ address = \"10.2.0.203\", port = \"inside\" }]",
                "laddrs = [{ address = \"10.2.0.203\", port = \"inside\" }, { address = \"10.2.0.202\", port = \"inside\" }]",
            );
        let cmds = converge(&table(&next), &mut m, &BTreeSet::new());
        assert_eq!(
            cmds,
            vec![
                Command::DelLaddr(k80, "10.2.0.202".parse().unwrap()),
                Command::AddLaddr(
                    k443,
                    rvs_proto::command::LaddrSpec {
                        addr: "10.2.0.202".parse().unwrap(),
                        port_name: "inside".into()
                    }
                ),
            ]
        );
        // A service rvs-cp does not own keeps its local addresses.
        let other = rvs_proto::command::ServiceSpec::new(
            rvs_proto::types::Proto::Tcp,
            "10.9.9.9".parse().unwrap(),
            80,
        );
        let okey = other.key();
        m.apply(&Command::AddService(other)).unwrap();
        let lip = rvs_proto::command::LaddrSpec {
            addr: "10.2.0.250".parse().unwrap(),
            port_name: "inside".into(),
        };
        m.apply(&Command::AddLaddr(okey, lip.clone())).unwrap();
        assert!(plan(&table(&next), &m.list(), &BTreeSet::new()).is_empty());

        // A retired service's addresses are freed before they are given to
        // another service, in the same transaction.
        let moved = next.replace("10.2.0.201", "10.2.0.203").replace(
            "laddrs = [{ address = \"10.2.0.203\", port = \"inside\" }, { address = \"10.2.0.202\", port = \"inside\" }]\n[[virtual_server.real_server]]\naddress = \"10.2.0.11\"\n",
            "",
        );
        let mut only80 = table(&moved);
        only80.retain(|k, _| *k == k80);
        let cmds = converge(&only80, &mut m, &BTreeSet::from([k443]));
        let at = |want: &dyn Fn(&Command) -> bool| cmds.iter().position(want).unwrap();
        let freed =
            at(&|c| matches!(c, Command::DelLaddr(k, a) if *k == k443 && a.to_string() == "10.2.0.203"));
        let given =
            at(&|c| matches!(c, Command::AddLaddr(k, l) if *k == k80 && l.addr.to_string() == "10.2.0.203"));
        assert!(freed < given, "{cmds:?}");
        assert_eq!(cmds.last(), Some(&Command::DelService(k443)));
        assert_eq!(m.service(&k80).unwrap().laddrs[0].addr.to_string(), "10.2.0.203");
        assert_eq!(m.service(&okey).unwrap().laddrs, vec![lip]);
    }

    /// Turning PROXY protocol on while the real servers become FULLNAT:
    /// the service edit waits for them (the model refuses it before).
    #[test]
    fn a_client_address_header_is_turned_on_after_the_real_servers() {
        let nat = "[[virtual_server]]\naddress = \"10.1.0.100\"\nport = 80\nlb_kind = \"NAT\"\n[[virtual_server.real_server]]\naddress = \"10.2.0.11\"\n";
        let mut m = IpvsConfig::new();
        converge(&table(nat), &mut m, &BTreeSet::new());
        let fnat = nat.replace("\"NAT\"", "\"FNAT\"\nclient_addr = \"toa\"");
        let cmds = converge(&table(&fnat), &mut m, &BTreeSet::new());
        assert!(
            matches!(&cmds[..], [Command::EditDest(..), Command::EditService(_)]),
            "{cmds:?}"
        );
        // And back: the service edit goes first.
        let cmds = converge(&table(nat), &mut m, &BTreeSet::new());
        assert!(
            matches!(&cmds[..], [Command::EditService(_), Command::EditDest(..)]),
            "{cmds:?}"
        );
        // The same rule for a SYN proxy (NAT real servers only), from DR.
        let dr = nat.replace("\"NAT\"", "\"DR\"");
        converge(&table(&dr), &mut m, &BTreeSet::new());
        let proxied = nat.replace("port = 80\n", "port = 80\nsyn_proxy = true\n");
        let cmds = converge(&table(&proxied), &mut m, &BTreeSet::new());
        assert!(
            matches!(&cmds[..], [Command::EditDest(..), Command::EditService(s)] if s.syn_proxy),
            "{cmds:?}"
        );
    }
}
