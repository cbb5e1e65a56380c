//! How a data plane answers the control protocol, written once: which
//! commands are queries and which change the table, paged listings, and
//! staged restores. rvs-dp's `ControlPlane` and rvsadm's in-process
//! `LocalTransport` both implement `DataPlane` and hand every command to
//! `handle`, so the two cannot drift apart.
//!
//! A change never edits the live model: `handle` validates it against a copy
//! (`IpvsConfig::apply`) and gives the data plane the finished copy to commit
//! as one transaction, or an error and nothing moved.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::command::{
    Command, ConnInfo, IpvsError, LaddrInfo, OwnedAddrs, PortFlowInfo, Reply, ServiceInfo, VipOwned,
    WorkerLatency, CONNS_PAGE, LIST_PAGE, RESTORE_IDLE_S,
};
use crate::ipvs::IpvsConfig;
use crate::types::ServiceKey;

/// What `handle` needs from a data plane.
pub trait DataPlane {
    /// The configuration in force.
    fn model(&self) -> &IpvsConfig;
    /// Changes each time a commit replaces the model; listings are paged at one.
    fn generation(&self) -> u64;
    /// The paged listings and staged restores in progress.
    fn sessions(&mut self) -> &mut Sessions;
    /// Fills live counters, connection counts and rates into listed services.
    fn fill_counters(&self, services: &mut [ServiceInfo]);
    /// Every connection (and template) of every worker.
    fn conns(&mut self) -> Vec<ConnInfo>;
    fn latency(&mut self) -> Vec<WorkerLatency>;
    fn conn_tab_size(&self) -> u32;
    /// The addresses owned now (`OwnedAddrs::all()` without kernel interfaces).
    fn owned(&self) -> OwnedAddrs;
    /// Puts `next` (already validated) in force as one transaction; `cmds` are
    /// the commands that made it (for what the model does not hold, such as
    /// `-Z`). Returns the generation to wait for before replying.
    fn commit(&mut self, next: IpvsConfig, cmds: &[Command]) -> Result<u64, IpvsError>;
    /// Fills the live use of a service's local addresses (`-G`); a data
    /// plane without FULLNAT leaves the zeros.
    fn fill_laddrs(&self, _key: &ServiceKey, _laddrs: &mut [LaddrInfo]) {}
    /// Each port's flow steering; none without NIC rules.
    fn flow_steering(&self) -> Vec<PortFlowInfo> {
        Vec::new()
    }
}

/// A restore being staged.
#[derive(Clone, Debug)]
struct Staging {
    /// The model at `RestoreBegin` with every staged command applied: the
    /// result, if nothing else changed the table before the commit.
    model: IpvsConfig,
    /// The generation `model` was taken at.
    generation: u64,
    commands: Vec<Command>,
    last_step: Instant,
}

/// At most this many restores are staged at once; a new one evicts the
/// longest idle (which then fails with `NoSuchRestore` at its next step).
const MAX_STAGED: usize = 4;

/// The listings and restores in progress, between requests.
#[derive(Clone, Debug)]
pub struct Sessions {
    /// The last connection listing, served a page at a time.
    conn_listing: Option<(u64, Vec<ConnInfo>)>,
    next_listing: u64,
    restores: HashMap<u64, Staging>,
    next_restore: u64,
    /// How long a staged restore may wait for its next step.
    pub restore_idle: Duration,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            conn_listing: None,
            next_listing: 1,
            restores: HashMap::new(),
            next_restore: 1,
            restore_idle: Duration::from_secs(RESTORE_IDLE_S),
        }
    }
}

impl Sessions {
    /// Drops staged restores idle past `restore_idle`. `handle` does it at
    /// every request; a control loop may also call it while idle, to free
    /// the memory of a dead tool's restore.
    pub fn expire(&mut self, now: Instant) {
        let idle = self.restore_idle;
        self.restores
            .retain(|_, s| now.saturating_duration_since(s.last_step) <= idle);
    }

    /// Staged restores now held.
    pub fn restores_staged(&self) -> usize {
        self.restores.len()
    }
}

/// Answers one command. A change returns the generation to wait for (every
/// worker running it) before the reply goes out; queries answer at once.
pub fn handle(dp: &mut impl DataPlane, cmd: &Command) -> (Reply, Option<u64>) {
    let now = Instant::now();
    dp.sessions().expire(now);
    let done = |r: Result<u64, IpvsError>| match r {
        Ok(gen) => (Reply::Ok, Some(gen)),
        Err(e) => (Reply::Error(e), None),
    };
    match cmd {
        Command::List => {
            let mut all = dp.model().list();
            dp.fill_counters(&mut all);
            mark_owned(&dp.owned(), &mut all);
            (Reply::Services(all), None)
        }
        Command::ListPage { generation, from } => {
            let current = dp.generation();
            if generation.is_some_and(|g| g != current) {
                return (Reply::Error(IpvsError::TableChanged), None);
            }
            let (mut services, next) = dp.model().list_page(*from, LIST_PAGE as usize);
            dp.fill_counters(&mut services);
            mark_owned(&dp.owned(), &mut services);
            let page = Reply::ServicesPage {
                generation: current,
                services,
                next,
            };
            (page, None)
        }
        Command::ListConns => (Reply::Conns(dp.conns()), None),
        Command::ListConnsPage {
            listing,
            offset,
            limit,
        } => (conns_page(dp, *listing, *offset, *limit), None),
        Command::GetTimeouts => {
            let t = dp.model().timeouts();
            let r = Reply::Timeouts {
                tcp: t.tcp,
                tcpfin: t.tcpfin,
                udp: t.udp,
            };
            (r, None)
        }
        Command::Latency => (Reply::Latency(dp.latency()), None),
        Command::GetInfo => (
            Reply::Info {
                conn_tab_size: dp.conn_tab_size(),
            },
            None,
        ),
        Command::FlowSteering => (Reply::FlowSteering(dp.flow_steering()), None),
        Command::GetLaddr(key) => {
            let Some(svc) = dp.model().service(key) else {
                return (Reply::Error(IpvsError::NoSuchService), None);
            };
            let mut laddrs: Vec<LaddrInfo> = (svc.laddrs.iter())
                .map(|l| LaddrInfo {
                    spec: l.clone(),
                    conns: 0,
                    exhausted: 0,
                })
                .collect();
            dp.fill_laddrs(key, &mut laddrs);
            (Reply::Laddrs(laddrs), None)
        }
        Command::Ownership => {
            let owned = dp.owned();
            let vips: BTreeSet<_> = dp.model().services().iter().map(|s| s.spec.vip).collect();
            let vips = (vips.into_iter())
                .map(|vip| VipOwned {
                    vip,
                    owned: owned.owns(vip),
                })
                .collect();
            (Reply::Ownership { owned, vips }, None)
        }
        Command::RestoreBegin => {
            let staging = Staging {
                model: dp.model().clone(),
                generation: dp.generation(),
                commands: Vec::new(),
                last_step: now,
            };
            let s = dp.sessions();
            if s.restores.len() >= MAX_STAGED {
                let oldest = s
                    .restores
                    .iter()
                    .min_by_key(|(_, st)| st.last_step)
                    .map(|(id, _)| *id);
                if let Some(id) = oldest {
                    s.restores.remove(&id);
                }
            }
            let restore = s.next_restore;
            s.next_restore += 1;
            s.restores.insert(restore, staging);
            (Reply::RestoreStaged { restore }, None)
        }
        Command::RestoreChunk { restore, commands } => {
            let s = dp.sessions();
            let Some(st) = s.restores.get_mut(restore) else {
                return (Reply::Error(IpvsError::NoSuchRestore(*restore)), None);
            };
            st.last_step = now;
            let base = st.commands.len();
            // Checked as they arrive, so a bad line fails the restore at once
            // rather than after the last chunk.
            match apply_all(&mut st.model, commands, base) {
                Ok(()) => {
                    st.commands.extend(commands.iter().cloned());
                    (Reply::Ok, None)
                }
                Err(e) => {
                    s.restores.remove(restore);
                    (Reply::Error(e), None)
                }
            }
        }
        Command::RestoreCommit { restore } => {
            let Some(st) = dp.sessions().restores.remove(restore) else {
                return (Reply::Error(IpvsError::NoSuchRestore(*restore)), None);
            };
            let next = if st.generation == dp.generation() {
                st.model
            } else {
                // The table changed since the restore began: its commands run
                // against the table as it is now, as one transaction still.
                let mut next = dp.model().clone();
                if let Err(e) = apply_all(&mut next, &st.commands, 0) {
                    return (Reply::Error(e), None);
                }
                next
            };
            done(dp.commit(next, &st.commands))
        }
        Command::RestoreAbort { restore } => {
            dp.sessions().restores.remove(restore);
            (Reply::Ok, None)
        }
        change => {
            let mut next = dp.model().clone();
            if let Err(e) = next.apply(change) {
                return (Reply::Error(e), None);
            }
            done(dp.commit(next, std::slice::from_ref(change)))
        }
    }
}

/// Says of each listed service whether its VIP is owned.
fn mark_owned(owned: &OwnedAddrs, services: &mut [ServiceInfo]) {
    for s in services {
        s.owned = Some(owned.owns(s.spec.vip));
    }
}

/// Applies restore commands `base..` to `model`, stopping at the first error
/// (which names its index in the whole restore). A nested restore is refused
/// as `IpvsConfig`'s own `Restore` refuses it.
fn apply_all(model: &mut IpvsConfig, cmds: &[Command], base: usize) -> Result<(), IpvsError> {
    for (i, c) in cmds.iter().enumerate() {
        let index = base + i;
        let r = match c {
            Command::Restore(_) => Err(IpvsError::Unsupported("restore inside a restore".into())),
            c => model.apply(c),
        };
        r.map_err(|error| IpvsError::Restore {
            index,
            error: Box::new(error),
        })?;
    }
    Ok(())
}

fn conns_page(dp: &mut impl DataPlane, listing: u64, offset: u32, limit: u32) -> Reply {
    if listing == 0 {
        let all = dp.conns();
        let s = dp.sessions();
        s.conn_listing = Some((s.next_listing, all));
        s.next_listing += 1;
    }
    match &dp.sessions().conn_listing {
        Some((id, all)) if listing == 0 || listing == *id => {
            let start = (offset as usize).min(all.len());
            let end = start
                .saturating_add(limit.min(CONNS_PAGE) as usize)
                .min(all.len());
            Reply::ConnsPage {
                listing: *id,
                total: all.len() as u32,
                conns: all[start..end].to_vec(),
            }
        }
        _ => Reply::Error(IpvsError::Unsupported(
            "the connection listing changed while it was read; list again".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{DestSpec, ListCursor, ServiceSpec};
    use crate::types::{ForwardMethod, Proto, ServiceKey};
    use std::net::Ipv4Addr;

    /// The smallest data plane: the model and nothing live.
    #[derive(Default)]
    struct Bare {
        model: IpvsConfig,
        generation: u64,
        sessions: Sessions,
        /// None: everything owned.
        owned: Option<OwnedAddrs>,
    }

    impl DataPlane for Bare {
        fn model(&self) -> &IpvsConfig {
            &self.model
        }
        fn generation(&self) -> u64 {
            self.generation
        }
        fn sessions(&mut self) -> &mut Sessions {
            &mut self.sessions
        }
        fn fill_counters(&self, _: &mut [ServiceInfo]) {}
        fn conns(&mut self) -> Vec<ConnInfo> {
            Vec::new()
        }
        fn latency(&mut self) -> Vec<WorkerLatency> {
            Vec::new()
        }
        fn conn_tab_size(&self) -> u32 {
            4096
        }
        fn owned(&self) -> OwnedAddrs {
            self.owned.clone().unwrap_or_else(OwnedAddrs::all)
        }
        fn commit(&mut self, next: IpvsConfig, _: &[Command]) -> Result<u64, IpvsError> {
            self.model = next;
            self.generation += 1;
            Ok(self.generation)
        }
    }

    fn key(i: u32) -> ServiceKey {
        ServiceKey {
            proto: Proto::Tcp,
            vip: Ipv4Addr::from(0x0a01_0000 + i),
            port: 80,
        }
    }

    fn add_svc(i: u32) -> Command {
        Command::AddService(ServiceSpec::new(Proto::Tcp, key(i).vip, 80))
    }

    fn add_dest(svc: u32, i: u32) -> Command {
        let mut d = DestSpec::new(Ipv4Addr::from(0x0b00_0000 + i), 8080, ForwardMethod::Nat);
        // Counters and weights at their widest, for the page-size bound.
        d.weight = 65535;
        d.u_threshold = i32::MAX as u32;
        d.l_threshold = i32::MAX as u32;
        Command::AddDest(key(svc), d)
    }

    fn ok(dp: &mut Bare, cmd: &Command) -> Reply {
        let (r, _) = handle(dp, cmd);
        assert!(!matches!(r, Reply::Error(_)), "{cmd:?}: {r:?}");
        r
    }

    #[test]
    fn get_laddr_lists_the_services_local_addresses() {
        let mut dp = Bare::default();
        assert_eq!(
            handle(&mut dp, &Command::GetLaddr(key(1))).0,
            Reply::Error(IpvsError::NoSuchService)
        );
        ok(&mut dp, &add_svc(1));
        assert_eq!(ok(&mut dp, &Command::GetLaddr(key(1))), Reply::Laddrs(vec![]));
        let spec = crate::command::LaddrSpec {
            addr: Ipv4Addr::new(10, 9, 0, 1),
            port_name: "inside".into(),
        };
        ok(&mut dp, &Command::AddLaddr(key(1), spec.clone()));
        assert_eq!(
            ok(&mut dp, &Command::GetLaddr(key(1))),
            Reply::Laddrs(vec![LaddrInfo {
                spec,
                conns: 0,
                exhausted: 0
            }])
        );
        assert!(Command::GetLaddr(key(1)).is_query());
    }

    /// Listings say of each service whether its VIP is owned, and
    /// `Ownership` lists the owned addresses and each configured VIP once.
    #[test]
    fn ownership_is_listed_and_queried() {
        let mut dp = Bare::default();
        for i in [2, 1, 2] {
            let mut spec = ServiceSpec::new(Proto::Tcp, key(i).vip, 80);
            if let Reply::Error(_) = handle(&mut dp, &Command::AddService(spec.clone())).0 {
                spec.port = 443;
                ok(&mut dp, &Command::AddService(spec));
            }
        }
        let owned_flags = |dp: &mut Bare| match ok(dp, &Command::List) {
            Reply::Services(s) => s.iter().map(|s| (s.spec.vip, s.owned)).collect::<Vec<_>>(),
            r => panic!("{r:?}"),
        };
        let (a, b) = (key(1).vip, key(2).vip);
        // No kernel interface: everything is owned.
        assert!(owned_flags(&mut dp).iter().all(|(_, o)| *o == Some(true)));
        let want_vips =
            |oa: bool, ob: bool| vec![VipOwned { vip: a, owned: oa }, VipOwned { vip: b, owned: ob }];
        assert_eq!(
            ok(&mut dp, &Command::Ownership),
            Reply::Ownership {
                owned: OwnedAddrs::all(),
                vips: want_vips(true, true)
            }
        );
        // The kernel holds b and a port address: a is not owned.
        let port_addr = Ipv4Addr::new(10, 9, 0, 1);
        dp.owned = Some(OwnedAddrs::only([b, port_addr, b]));
        assert_eq!(dp.owned().addresses, vec![b, port_addr], "sorted, deduplicated");
        let flags = owned_flags(&mut dp);
        assert_eq!(flags.len(), 3);
        for (vip, o) in flags {
            assert_eq!(o, Some(vip == b), "{vip}");
        }
        assert_eq!(
            ok(&mut dp, &Command::Ownership),
            Reply::Ownership {
                owned: OwnedAddrs::only([port_addr, b]),
                vips: want_vips(false, true)
            }
        );
        let Reply::ServicesPage { services, .. } = ok(
            &mut dp,
            &Command::ListPage {
                generation: None,
                from: ListCursor::default(),
            },
        ) else {
            panic!()
        };
        assert!(services.iter().all(|s| s.owned == Some(s.spec.vip == b)));
        assert!(Command::Ownership.is_query());
    }

    /// Lists `dp` page by page as rvsadm does; also returns the biggest page in bytes.
    fn paged(dp: &mut Bare) -> (Vec<ServiceInfo>, usize) {
        let (mut out, mut biggest) = (Vec::<ServiceInfo>::new(), 0);
        let (mut generation, mut from) = (None, ListCursor::default());
        loop {
            let r = ok(dp, &Command::ListPage { generation, from });
            biggest = biggest.max(serde_json::to_vec(&r).unwrap().len());
            let Reply::ServicesPage {
                generation: g,
                services,
                next,
            } = r
            else {
                panic!()
            };
            generation = Some(g);
            let mut page = services.into_iter();
            if from.dest > 0 {
                out.last_mut().unwrap().dests.extend(page.next().unwrap().dests);
            }
            out.extend(page);
            match next {
                Some(n) => from = n,
                None => return (out, biggest),
            }
        }
    }

    #[test]
    fn listing_pages_cover_the_table_at_the_model_limits() {
        // One service of 65,536 real servers, then 65,536 services: the
        // whole listing was 25 MB, ten times the ring's 2 MiB message limit.
        let mut dp = Bare::default();
        let mut cmds = vec![add_svc(0)];
        cmds.extend((0..65536).map(|i| add_dest(0, i)));
        cmds.extend((1..65536).map(add_svc));
        ok(&mut dp, &Command::Restore(cmds));
        assert_eq!(dp.model.services().len(), 65536);
        assert_eq!(dp.model.dest_count(), 65536);
        let (listed, biggest) = paged(&mut dp);
        let mut whole = dp.model.list();
        mark_owned(&dp.owned(), &mut whole);
        assert!(listed == whole, "pages put together are the whole listing");
        assert!(biggest < 512 << 10, "a page of {biggest} bytes");
    }

    /// Local addresses ride with their service's heading: a service with
    /// more local addresses than a page has rows still lists whole, and the
    /// pages put together are `list()`.
    #[test]
    fn listing_pages_carry_the_local_addresses() {
        let mut dp = Bare::default();
        let laddr = |i: u32| crate::command::LaddrSpec {
            addr: Ipv4Addr::from(0x0c00_0000 + i),
            port_name: "inside".into(),
        };
        let mut cmds = vec![add_svc(0)];
        cmds.extend((0..LIST_PAGE + 5).map(|i| Command::AddLaddr(key(0), laddr(i))));
        cmds.extend((0..LIST_PAGE + 5).map(|i| add_dest(0, i)));
        cmds.push(add_svc(1));
        cmds.push(Command::AddLaddr(key(1), laddr(100_000)));
        cmds.extend((1..3).map(|i| add_dest(1, i)));
        ok(&mut dp, &Command::Restore(cmds));
        let (listed, _) = paged(&mut dp);
        let mut whole = dp.model.list();
        mark_owned(&dp.owned(), &mut whole);
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].laddrs.len(), LIST_PAGE as usize + 5);
        assert_eq!(listed[1].laddrs, vec![laddr(100_000)]);
        assert!(listed == whole, "pages put together are the whole listing");
    }

    #[test]
    fn a_listing_the_table_changed_under_is_refused() {
        let mut dp = Bare::default();
        ok(&mut dp, &add_svc(0));
        ok(
            &mut dp,
            &Command::Restore((0..1000).map(|i| add_dest(0, i)).collect()),
        );
        let Reply::ServicesPage { generation, next, .. } = ok(
            &mut dp,
            &Command::ListPage {
                generation: None,
                from: ListCursor::default(),
            },
        ) else {
            panic!()
        };
        let next = next.expect("1000 real servers take more than one page");
        ok(&mut dp, &add_dest(0, 5000));
        let (r, _) = handle(
            &mut dp,
            &Command::ListPage {
                generation: Some(generation),
                from: next,
            },
        );
        assert_eq!(r, Reply::Error(IpvsError::TableChanged));
    }

    fn begin(dp: &mut Bare) -> u64 {
        match ok(dp, &Command::RestoreBegin) {
            Reply::RestoreStaged { restore } => restore,
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn staged_restore_is_one_transaction_and_errors_name_the_whole_index() {
        let mut dp = Bare::default();
        ok(&mut dp, &add_svc(0));
        let before = (dp.model.clone(), dp.generation);
        let r = begin(&mut dp);
        for chunk in 0..3 {
            let cmds = (0..1000).map(|i| add_dest(0, chunk * 1000 + i)).collect();
            ok(
                &mut dp,
                &Command::RestoreChunk {
                    restore: r,
                    commands: cmds,
                },
            );
            assert_eq!(
                (dp.model.clone(), dp.generation),
                before,
                "nothing applied before the commit"
            );
        }
        // The same real server again, as command 3000 + 7 of the restore.
        let mut bad: Vec<Command> = (3000..3010).map(|i| add_dest(0, i)).collect();
        bad[8] = add_dest(0, 3);
        let (e, _) = handle(
            &mut dp,
            &Command::RestoreChunk {
                restore: r,
                commands: bad,
            },
        );
        assert_eq!(
            e,
            Reply::Error(IpvsError::Restore {
                index: 3008,
                error: Box::new(IpvsError::DestExists)
            })
        );
        assert_eq!(dp.sessions.restores_staged(), 0, "a failed restore is discarded");
        let (e, _) = handle(&mut dp, &Command::RestoreCommit { restore: r });
        assert_eq!(e, Reply::Error(IpvsError::NoSuchRestore(r)));
        assert_eq!((dp.model.clone(), dp.generation), before);

        // A good one: one commit, one generation.
        let r = begin(&mut dp);
        let cmds: Vec<Command> = (0..2500).map(|i| add_dest(0, i)).collect();
        for c in cmds.chunks(1000) {
            ok(
                &mut dp,
                &Command::RestoreChunk {
                    restore: r,
                    commands: c.to_vec(),
                },
            );
        }
        let (done, wait) = handle(&mut dp, &Command::RestoreCommit { restore: r });
        assert_eq!((done, wait), (Reply::Ok, Some(before.1 + 1)));
        assert_eq!(dp.model.dest_count(), 2500);
    }

    #[test]
    fn staged_restore_replays_on_a_changed_table_and_expires_when_idle() {
        let mut dp = Bare::default();
        let r = begin(&mut dp);
        ok(
            &mut dp,
            &Command::RestoreChunk {
                restore: r,
                commands: vec![add_svc(0), add_dest(0, 1)],
            },
        );
        // Another tool adds the same service meanwhile: the commit runs the
        // restore against the table as it is, and refuses it whole.
        ok(&mut dp, &add_svc(0));
        let (e, _) = handle(&mut dp, &Command::RestoreCommit { restore: r });
        assert_eq!(
            e,
            Reply::Error(IpvsError::Restore {
                index: 0,
                error: Box::new(IpvsError::ServiceExists)
            })
        );
        assert_eq!(dp.model.dest_count(), 0);

        // A tool that goes quiet mid-way: its staging is dropped.
        dp.sessions.restore_idle = Duration::from_millis(20);
        let r = begin(&mut dp);
        ok(
            &mut dp,
            &Command::RestoreChunk {
                restore: r,
                commands: vec![add_dest(0, 1)],
            },
        );
        std::thread::sleep(Duration::from_millis(40));
        dp.sessions.expire(Instant::now());
        assert_eq!(dp.sessions.restores_staged(), 0);
        let (e, _) = handle(&mut dp, &Command::RestoreCommit { restore: r });
        assert_eq!(e, Reply::Error(IpvsError::NoSuchRestore(r)));
        assert!(e_text(&e).contains("nothing of it was applied"));
        assert_eq!(dp.model.dest_count(), 0);

        // Aborted: gone too.
        let r = begin(&mut dp);
        ok(&mut dp, &Command::RestoreAbort { restore: r });
        assert_eq!(dp.sessions.restores_staged(), 0);
    }

    fn e_text(r: &Reply) -> String {
        match r {
            Reply::Error(e) => e.to_string(),
            _ => String::new(),
        }
    }
}
