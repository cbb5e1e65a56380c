//! rvs-cp's main loop: health results in, quorum decided, rvs-dp's table
//! reconciled by difference; reloads on SIGHUP; the metrics endpoint and the
//! stats thread on the side.
//!
//! When rvs-cp stops (SIGINT / SIGTERM) it leaves rvs-dp's table as it is,
//! so traffic keeps flowing while rvs-cp restarts (as keepalived does with
//! `--dont-release-ipvs`); the next rvs-cp compares and fixes only what
//! differs. To empty the table, use `rvsadm -C`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rvs_proto::command::{Command, IpvsError, Reply, SyncDaemonSpec, RESTORE_CHUNK};
use rvs_proto::types::ServiceKey;
use tracing::{error, info, warn};

use crate::adm::exchange::list_services;
use crate::check::{self, CheckEvent, CheckHandle, Health};
use crate::config::{ControlSettings, CpConfig, RealDef, RealId};
use crate::metrics::{MetricsServer, MetricsState, RealStatus};
use crate::ready::ReadyFile;
use crate::reconcile::{alive_weight, desired_service, plan, quorum_next, Table};
use crate::resync;
use crate::source::ConfigSource;
use crate::stats::StatsThread;
use crate::transport::{resolve_ctl_path, ShmTransport};

/// Pause before retrying a reconcile that failed; it doubles with each
/// failure in a row, up to `RETRY_MAX`, so a file rvs-dp cannot take does
/// not keep both busy.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Commands sent per `Restore`: rvs-dp builds a whole new service table per
/// request, so one per real server made a 10,000-real-server apply take
/// minutes; a batch is one table. A batch of `RESTORE_CHUNK` fits a message.
pub const APPLY_BATCH: usize = RESTORE_CHUNK;

/// How rvs-cp was started.
#[derive(Clone, Debug)]
pub struct Options {
    pub config: ConfigSource,
    /// `--ctl`: wins over `$RVS_CTL` and `dataplane.ctl`.
    pub ctl: Option<PathBuf>,
    /// `--metrics-listen ADDR|off`: wins over `control.metrics_listen`, and
    /// is the only way to move /metrics for a keepalived.conf.
    pub metrics_listen: Option<Option<SocketAddr>>,
    /// `--ready-file PATH`: see `ready`.
    pub ready_file: Option<PathBuf>,
    /// `--resync-listen ADDR:PORT`: serve this director's table to a peer
    /// that resyncs (see `resync`).
    pub resync_listen: Option<SocketAddr>,
    /// `--resync-from ADDR:PORT`: fetch the peer's table at start and after
    /// each rvs-dp restart, before reporting ready.
    pub resync_from: Option<SocketAddr>,
    /// `--resync-allow ADDR[,ADDR...]`: who may fetch from `resync_listen`;
    /// empty: the backup sync daemon's peers (keepalived.conf's `sync_peer`),
    /// and if there are none, anyone.
    pub resync_allow: Vec<std::net::IpAddr>,
}

/// Fetches of a peer's table that broke off before the director reports
/// ready without it.
const RESYNC_TRIES: u32 = 3;
/// The pause between two such fetches.
const RESYNC_RETRY: Duration = Duration::from_millis(500);

/// The file's configuration with the command line's overrides.
fn load(source: &ConfigSource, metrics_listen: Option<Option<SocketAddr>>) -> Result<CpConfig, String> {
    let mut cfg = source.load()?;
    if let Some(m) = metrics_listen {
        cfg.control.metrics_listen = m;
    }
    Ok(cfg)
}

struct RealState {
    def: RealDef,
    health: Health,
    check: Option<CheckHandle>,
}

pub struct Daemon {
    metrics_override: Option<Option<SocketAddr>>,
    source: ConfigSource,
    cfg: CpConfig,
    transport: ShmTransport,
    reals: BTreeMap<RealId, RealState>,
    quorum: BTreeMap<ServiceKey, bool>,
    /// Services removed from the file but maybe still in rvs-dp.
    retired: BTreeSet<ServiceKey>,
    tx: Sender<CheckEvent>,
    rx: Receiver<CheckEvent>,
    next_epoch: u64,
    dirty: bool,
    retry_at: Option<Instant>,
    /// The pause after the last failed reconcile (None after a success).
    retry_delay: Option<Duration>,
    /// What the last failed reconcile said, so the same failure is logged
    /// once, not at every retry.
    last_failure: Option<String>,
    refusals: BTreeSet<String>,
    /// Set by SIGINT / SIGTERM: a long apply stops between batches.
    stop: Arc<AtomicBool>,
    last_sync: Option<Instant>,
    generation: Option<u64>,
    dp_error: Option<String>,
    metrics_state: Arc<MetricsState>,
    metrics: Option<MetricsServer>,
    settings: Arc<Mutex<ControlSettings>>,
    ready: Option<ReadyFile>,
    _stats: Option<StatsThread>,
    resync_from: Option<SocketAddr>,
    /// A full resync is owed (at start, after an rvs-dp restart): not ready
    /// until it is done or given up.
    resync_pending: bool,
    resync_failures: u32,
    resync_at: Option<Instant>,
    /// When rvs-dp's sync counters were last fetched for /metrics.
    sync_counters_at: Option<Instant>,
    _resync_server: Option<std::thread::JoinHandle<()>>,
    /// The serving thread's and the fetches' counters (/metrics).
    resync_stats: Arc<resync::ResyncStats>,
}

fn rid((k, ip, port): &RealId) -> String {
    format!("real server {ip}:{port} of {k}")
}

/// Whether a running daemon (as `-L --daemon` lists it, defaults resolved)
/// is the configured one (defaults left at 0 or None).
fn same_daemon(running: &SyncDaemonSpec, want: &SyncDaemonSpec) -> bool {
    running.role == want.role
        && running.mcast_ifn == want.mcast_ifn
        && running.syncid == want.syncid
        && (want.sync_maxlen == 0 || running.sync_maxlen == want.sync_maxlen)
        && running.group() == want.group()
        && running.port() == want.port()
        && running.ttl() == want.ttl()
        && running.peers == want.peers
}

/// A short description of a command for the log.
pub fn describe(c: &Command) -> String {
    match c {
        Command::AddService(s) => format!("add service {} ({})", s.key(), s.scheduler),
        Command::EditService(s) => format!("edit service {} ({})", s.key(), s.scheduler),
        Command::DelService(k) => format!("delete service {k}"),
        Command::AddDest(k, d) => format!("add {}:{} to {k} (weight {})", d.rip, d.port, d.weight),
        Command::EditDest(k, d) => format!("edit {}:{} of {k} (weight {})", d.rip, d.port, d.weight),
        Command::DelDest(k, ip, port) => format!("remove {ip}:{port} from {k}"),
        Command::AddLaddr(k, l) => format!("add local address {} (port {}) to {k}", l.addr, l.port_name),
        Command::DelLaddr(k, ip) => format!("remove local address {ip} from {k}"),
        other => format!("{other:?}"),
    }
}

impl Daemon {
    /// Reads the config, starts the checks, the metrics endpoint and the
    /// stats thread. rvs-dp need not be running yet.
    pub fn start(opts: &Options) -> anyhow::Result<Daemon> {
        let cfg = load(&opts.config, opts.metrics_listen).map_err(anyhow::Error::msg)?;
        let path = resolve_ctl_path(opts.ctl.as_deref(), cfg.ctl.as_deref());
        let metrics_state = Arc::new(MetricsState::default());
        let metrics = match cfg.control.metrics_listen {
            Some(a) => Some(
                MetricsServer::start(a, metrics_state.clone())
                    .map_err(|e| anyhow::anyhow!("control.metrics_listen {a}: {e}"))?,
            ),
            None => None,
        };
        if let Some(m) = &metrics {
            info!("serving /metrics on http://{}/metrics", m.local_addr());
        }
        let settings = Arc::new(Mutex::new(cfg.control.clone()));
        let published = metrics_state.clone();
        let stats = StatsThread::start(ShmTransport::new(&path), settings.clone(), move |s| {
            published.set_snapshot(s)
        })?;
        let resync_allow = if opts.resync_allow.is_empty() {
            cfg.sync
                .iter()
                .flat_map(|d| d.peers.iter().map(|a| std::net::IpAddr::V4(*a)))
                .collect()
        } else {
            opts.resync_allow.clone()
        };
        let resync_stats = Arc::new(resync::ResyncStats::default());
        if opts.resync_listen.is_some() || opts.resync_from.is_some() {
            metrics_state.set_resync(resync_stats.clone());
        }
        let (tx, rx) = channel();
        let mut d = Daemon {
            source: opts.config.clone(),
            metrics_override: opts.metrics_listen,
            transport: ShmTransport::new(&path),
            reals: BTreeMap::new(),
            quorum: cfg.services.iter().map(|s| (s.key(), true)).collect(),
            retired: BTreeSet::new(),
            cfg,
            tx,
            rx,
            next_epoch: 0,
            dirty: true,
            retry_at: None,
            retry_delay: None,
            last_failure: None,
            refusals: BTreeSet::new(),
            stop: Arc::new(AtomicBool::new(false)),
            last_sync: None,
            generation: None,
            dp_error: None,
            metrics_state,
            metrics,
            settings,
            ready: opts.ready_file.as_deref().map(ReadyFile::new),
            _stats: Some(stats),
            resync_from: opts.resync_from,
            resync_pending: opts.resync_from.is_some(),
            resync_failures: 0,
            resync_at: None,
            sync_counters_at: None,
            _resync_server: match opts.resync_listen {
                Some(a) => Some(
                    resync::serve(a, path.clone(), resync_allow, resync_stats.clone())
                        .map_err(|e| anyhow::anyhow!("--resync-listen {a}: {e}"))?,
                ),
                None => None,
            },
            resync_stats,
        };
        let reals: Vec<(RealId, RealDef)> = d.cfg.reals().into_iter().map(|(k, v)| (k, v.clone())).collect();
        for (id, def) in reals {
            let st = d.new_real(id, def);
            d.reals.insert(id, st);
        }
        info!(
            "rvs-cp started: {} virtual services, {} real servers from {}; control region {}",
            d.cfg.services.len(),
            d.reals.len(),
            d.source.path().display(),
            path.display()
        );
        d.publish_health();
        Ok(d)
    }

    fn new_real(&mut self, id: RealId, def: RealDef) -> RealState {
        let health = Health::of(def.check.as_ref());
        let check = def.check.clone().and_then(|c| {
            self.next_epoch += 1;
            match check::spawn(id, self.next_epoch, c, self.tx.clone()) {
                Ok(h) => Some(h),
                Err(e) => {
                    error!("{}: cannot start its check thread: {e}", rid(&id));
                    None
                }
            }
        });
        RealState { def, health, check }
    }

    pub fn config(&self) -> &CpConfig {
        &self.cfg
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::local_addr)
    }

    /// The health verdict of a configured real server.
    pub fn is_up(&self, id: &RealId) -> Option<bool> {
        self.reals.get(id).map(|r| r.health.up)
    }

    pub fn quorum_up(&self, key: &ServiceKey) -> Option<bool> {
        self.quorum.get(key).copied()
    }

    /// The table rvs-cp wants rvs-dp to hold now.
    pub fn desired(&self) -> Table {
        let up = |id: &RealId| self.reals.get(id).is_some_and(|r| r.health.up);
        self.cfg
            .services
            .iter()
            .map(|s| {
                let q = self.quorum.get(&s.key()).copied().unwrap_or(true);
                (s.key(), desired_service(s, &up, q))
            })
            .collect()
    }

    fn on_event(&mut self, ev: CheckEvent) {
        let Some(st) = self.reals.get_mut(&ev.id) else {
            return;
        };
        let Some(def) = &st.def.check else { return };
        if st.check.as_ref().map(|c| c.epoch) != Some(ev.epoch) {
            return; // a result of a check that was restarted since
        }
        let (fall, rise) = (def.fall, def.rise);
        if let Some(now_up) = st.health.observe(ev.outcome.ok, fall, rise) {
            let h = st.health;
            if now_up {
                info!(
                    "{} UP: {} (rise {}/{})",
                    rid(&ev.id),
                    ev.outcome.detail,
                    h.successes.min(rise),
                    rise
                );
            } else {
                warn!(
                    "{} DOWN: {} (fall {}/{})",
                    rid(&ev.id),
                    ev.outcome.detail,
                    h.failures.min(fall),
                    fall
                );
            }
            self.dirty = true;
        }
    }

    fn update_quorum(&mut self) {
        for s in &self.cfg.services {
            let key = s.key();
            let reals = &self.reals;
            let settled = s.reals.iter().all(|r| {
                reals
                    .get(&(key, r.dest.rip, r.dest.port))
                    .is_some_and(|st| st.health.checked)
            });
            if !settled {
                continue; // first verdicts pending: judging now would flap the sorry server
            }
            let up = |id: &RealId| reals.get(id).is_some_and(|r| r.health.up);
            let alive = alive_weight(s, &up);
            let was = self.quorum.get(&key).copied().unwrap_or(true);
            let now = quorum_next(s, alive, was);
            if now != was {
                let sorry = match (&s.sorry, now) {
                    (Some(d), false) => format!("; sorry server {}:{} put in", d.rip, d.port),
                    (Some(d), true) => format!("; sorry server {}:{} taken out", d.rip, d.port),
                    (None, _) => String::new(),
                };
                if now {
                    info!(
                        "{key} regained quorum: alive weight {alive} >= quorum {} + hysteresis {}{sorry}",
                        s.quorum, s.hysteresis
                    );
                } else {
                    warn!(
                        "{key} lost quorum: alive weight {alive} < quorum {} - hysteresis {}{sorry}",
                        s.quorum, s.hysteresis
                    );
                }
                self.quorum.insert(key, now);
                self.dirty = true;
            }
        }
    }

    fn check_dp(&mut self) {
        match self.transport.check() {
            Ok(g) => {
                if self.dp_error.take().is_some() || self.generation.is_none() {
                    info!("connected to rvs-dp at {}", self.transport.path().display());
                }
                match self.generation {
                    Some(old) if old != g => {
                        warn!(
                            "rvs-dp restarted (generation {old:#x} -> {g:#x}): re-applying the whole configuration, \
                             health checks start over"
                        );
                        self.dirty = true;
                        self.restart_checks();
                        self.owe_resync();
                    }
                    None => self.dirty = true,
                    _ => {}
                }
                self.generation = Some(g);
            }
            Err(e) => {
                let msg = e.to_string();
                if self.dp_error.as_ref() != Some(&msg) {
                    warn!("{msg}; will apply the configuration when it is back");
                    self.dp_error = Some(msg);
                }
            }
        }
    }

    /// Compares rvs-dp's table with the wanted one and sends the difference,
    /// `APPLY_BATCH` commands per request. A command rvs-dp refuses is
    /// logged (once while it keeps being refused) and skipped; the others
    /// still go in. Returns the number of commands applied.
    pub fn reconcile(&mut self) -> Result<usize, String> {
        let current = list_services(&mut self.transport).map_err(|e| format!("list: {e}"))?;
        let desired = self.desired();
        let cmds = plan(&desired, &current, &self.retired);
        let mut refused = BTreeSet::new();
        let mut applied = 0;
        for (n, batch) in cmds.chunks(APPLY_BATCH).enumerate() {
            if self.stop.load(Ordering::Relaxed) {
                return Err(format!("stopped after {applied} of {} commands", cmds.len()));
            }
            applied += self.apply_batch(batch, &mut refused)?;
            if cmds.len() > APPLY_BATCH {
                info!("applied batch {} of {}", n + 1, cmds.len().div_ceil(APPLY_BATCH));
            }
        }
        applied += self.reconcile_sync(&mut refused)?;
        for r in refused.difference(&self.refusals) {
            // Most likely another tool changed the same service just now;
            // the retry compares again.
            warn!("{r}");
        }
        self.refusals = refused;
        let listed: BTreeSet<ServiceKey> = current.iter().map(|s| s.spec.key()).collect();
        let dels: BTreeSet<ServiceKey> = cmds
            .iter()
            .filter_map(|c| match c {
                Command::DelService(k) => Some(*k),
                _ => None,
            })
            .collect();
        // Forget retired services that are gone (or were not there).
        self.retired.retain(|k| listed.contains(k) && !dels.contains(k));
        if !self.refusals.is_empty() {
            // Without the total: the same refusals are the same failure
            // (logged once) whatever else went in alongside.
            return Err(format!("{} commands refused", self.refusals.len()));
        }
        Ok(applied)
    }

    /// Starts each configured sync daemon (keepalived.conf's
    /// `lvs_sync_daemon`) that rvs-dp does not run as configured: at the
    /// first connection, after an rvs-dp restart (which runs none), after a
    /// reload that changed them. A role the configuration does not name is
    /// left as it is (rvsadm's, or rvs.toml's `[sync]`). Returns the number
    /// started; a refusal goes into `refused` and is retried.
    fn reconcile_sync(&mut self, refused: &mut BTreeSet<String>) -> Result<usize, String> {
        if self.cfg.sync.is_empty() {
            return Ok(0);
        }
        let running = match self.transport.send(&Command::ListDaemons) {
            Ok(Reply::Daemons(d)) => d,
            Ok(other) => return Err(format!("list sync daemons: unexpected reply {other:?}")),
            Err(e) => return Err(format!("list sync daemons: {e}")),
        };
        let mut started = 0;
        for want in self.cfg.sync.clone() {
            if running.iter().any(|r| same_daemon(r, &want)) {
                continue;
            }
            let role = want.role.as_str();
            if running.iter().any(|r| r.role == want.role) {
                match self.transport.send(&Command::StopDaemon(want.role)) {
                    Ok(Reply::Ok) => info!("stopped the {role} sync daemon (its settings changed)"),
                    Ok(other) => warn!("stop the {role} sync daemon: {other:?}"),
                    Err(e) => return Err(format!("stop the {role} sync daemon: {e}")),
                }
            }
            match self.transport.send(&Command::StartDaemon(want.clone())) {
                Ok(Reply::Ok) => {
                    info!(
                        "started the {role} sync daemon (mcast={}, syncid={})",
                        want.mcast_ifn, want.syncid
                    );
                    started += 1;
                }
                Ok(Reply::Error(e)) => {
                    refused.insert(format!("rvs-dp refused to start the {role} sync daemon: {e}"));
                }
                Ok(other) => {
                    return Err(format!(
                        "start the {role} sync daemon: unexpected reply {other:?}"
                    ))
                }
                Err(e) => return Err(format!("start the {role} sync daemon: {e}")),
            }
        }
        Ok(started)
    }

    /// Sends `batch` as one `Restore`. When rvs-dp refuses command i, the
    /// commands before it (which passed) go in one more `Restore` and the
    /// rest carry on, so a refusal costs two requests, not one per command.
    fn apply_batch(&mut self, batch: &[Command], refused: &mut BTreeSet<String>) -> Result<usize, String> {
        let mut applied = 0;
        let mut rest = batch;
        while !rest.is_empty() {
            let (ok, failed_at) = match self.send_all(rest)? {
                Ok(()) => (rest.len(), None),
                Err(IpvsError::Restore { index, error }) if index < rest.len() => {
                    refused.insert(format!("rvs-dp refused to {}: {error}", describe(&rest[index])));
                    let head = &rest[..index];
                    match self.send_all(head)? {
                        Ok(()) => (head.len(), Some(index)),
                        Err(e) => {
                            refused.insert(format!("rvs-dp refused {} commands: {e}", head.len()));
                            (0, Some(index))
                        }
                    }
                }
                Err(e) => {
                    refused.insert(format!("rvs-dp refused {} commands: {e}", rest.len()));
                    (0, None)
                }
            };
            for c in &rest[..ok] {
                info!("applied: {}", describe(c));
            }
            applied += ok;
            rest = match failed_at {
                Some(i) => &rest[i + 1..],
                None => &[],
            };
        }
        Ok(applied)
    }

    /// One `Restore` of `cmds`: Ok(Ok) applied, Ok(Err) refused, Err when
    /// rvs-dp could not be asked.
    fn send_all(&mut self, cmds: &[Command]) -> Result<Result<(), IpvsError>, String> {
        if cmds.is_empty() {
            return Ok(Ok(()));
        }
        match self.transport.send(&Command::Restore(cmds.to_vec())) {
            Ok(Reply::Ok) => Ok(Ok(())),
            Ok(Reply::Error(e)) => Ok(Err(e)),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(e) => Err(format!("{}: {e}", describe(&cmds[0]))),
        }
    }

    fn maybe_reconcile(&mut self) {
        if self.generation.is_none() || self.dp_error.is_some() {
            return;
        }
        let now = Instant::now();
        let resync = self
            .settings
            .lock()
            .map(|s| s.resync_interval)
            .unwrap_or_default();
        // While a failure waits for its retry, the periodic resync must not
        // retry early (with no success yet, it would be due at every step).
        let resync_due = self.retry_at.is_none()
            && !resync.is_zero()
            && self.last_sync.is_none_or(|t| now.duration_since(t) >= resync);
        let due = self.dirty || self.retry_at.is_some_and(|t| now >= t) || resync_due;
        if !due {
            return;
        }
        self.dirty = false;
        match self.reconcile() {
            Ok(_) => {
                if self.last_failure.take().is_some() {
                    info!("reconcile complete: rvs-dp holds the configuration");
                }
                self.retry_at = None;
                self.retry_delay = None;
                self.last_sync = Some(now);
            }
            Err(_) if self.stop.load(Ordering::Relaxed) => {}
            Err(e) => {
                let delay = self.retry_delay.map_or(RETRY_FIRST, |d| (d * 2).min(RETRY_MAX));
                if self.last_failure.as_ref() != Some(&e) {
                    warn!("reconcile incomplete, retrying in {delay:?} (and less often while it fails): {e}");
                    self.last_failure = Some(e);
                } else {
                    tracing::debug!("reconcile still incomplete, retrying in {delay:?}: {e}");
                }
                self.retry_delay = Some(delay);
                self.retry_at = Some(Instant::now() + delay);
            }
        }
    }

    /// rvs-dp's sync counters for /metrics, once a second while it runs.
    fn publish_sync_counters(&mut self) {
        if self.metrics.is_none() || self.generation.is_none() || self.dp_error.is_some() {
            return;
        }
        if self
            .sync_counters_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.sync_counters_at = Some(Instant::now());
        if let Ok(Reply::SyncCounters(c)) = self.transport.send(&Command::SyncCounters) {
            self.metrics_state.set_sync(c);
        }
    }

    fn publish_health(&self) {
        let h = self
            .reals
            .iter()
            .map(|(id, r)| RealStatus {
                id: *id,
                up: r.health.up,
            })
            .collect();
        self.metrics_state.set_health(h);
    }

    /// Starts every check afresh, from its initial verdict. After an rvs-dp
    /// restart, the failures seen while it was gone (its kernel interfaces
    /// vanished with it) say nothing about the real servers, and keeping
    /// them would leave the restarted director without real servers until
    /// each check passes again.
    fn restart_checks(&mut self) {
        let ids: Vec<RealId> = self.reals.keys().copied().collect();
        for id in ids {
            if let Some(def) = self.reals.get(&id).map(|r| r.def.clone()) {
                let st = self.new_real(id, def);
                self.reals.insert(id, st);
            }
        }
    }

    /// A restarted rvs-dp has an empty table: fetch the peer's again.
    fn owe_resync(&mut self) {
        self.resync_pending = self.resync_from.is_some();
        self.resync_failures = 0;
        self.resync_at = None;
    }

    /// Whether rvs-dp holds the configuration: nothing pending, nothing
    /// failed since the last full reconcile.
    fn configured(&self) -> bool {
        self.generation.is_some()
            && self.dp_error.is_none()
            && !self.dirty
            && self.retry_at.is_none()
            && self.last_sync.is_some()
    }

    /// Once rvs-dp holds the configuration (services to install into, the
    /// sync daemons running), fetches the peer's table and hands it over in
    /// pages. A fetch that breaks off is retried; after `RESYNC_TRIES` the
    /// director reports ready without it (logged).
    fn maybe_resync(&mut self) {
        let Some(peer) = self.resync_from else { return };
        if !self.resync_pending || !self.configured() || self.resync_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let t0 = Instant::now();
        // Each page goes to rvs-dp as it arrives (`resync::fetch`).
        let t = &mut self.transport;
        let r = resync::fetch(peer, |count, entries| resync::install_page(t, count, entries));
        if r.is_err() {
            self.resync_failures += 1;
        }
        self.resync_stats
            .count_fetch(&r, self.resync_failures >= RESYNC_TRIES);
        match r {
            Ok(None) => info!("full resync: no peer at {peer}, nothing to resync"),
            Ok(Some(n)) => info!(
                "full resync from {peer}: {n} entries in {} ms",
                t0.elapsed().as_millis()
            ),
            Err(e) => {
                if self.resync_failures < RESYNC_TRIES {
                    warn!(
                        "full resync from {peer}: {e}; retrying (failed fetch {} of {RESYNC_TRIES})",
                        self.resync_failures
                    );
                    self.resync_at = Some(Instant::now() + RESYNC_RETRY);
                    return;
                }
                error!(
                    "full resync from {peer}: {e}; giving up after {RESYNC_TRIES} tries, ready without it"
                );
            }
        }
        self.resync_pending = false;
        self.resync_at = None;
    }

    /// Whether this director can serve: rvs-dp runs and holds the wanted
    /// configuration (nothing pending, nothing failed since the last full
    /// reconcile), with `--resync-from` the peer's table, and every service
    /// is served (`served`).
    pub fn is_ready(&self) -> bool {
        self.configured() && !self.resync_pending && self.served()
    }

    /// Every service has its quorum of healthy real servers, or a sorry
    /// server to fall back on. A director whose checks cannot reach the
    /// real servers (its link to them is down, say) must not take the VIPs
    /// from a peer that can.
    fn served(&self) -> bool {
        self.cfg
            .services
            .iter()
            .all(|s| s.sorry.is_some() || self.quorum.get(&s.key()).copied().unwrap_or(true))
    }

    /// One turn of the loop: waits up to `max_wait` for check results, then
    /// decides quorum, notices an rvs-dp restart and reconciles if needed.
    pub fn step(&mut self, max_wait: Duration) {
        if let Ok(ev) = self.rx.recv_timeout(max_wait.min(Duration::from_millis(100))) {
            self.on_event(ev);
            while let Ok(ev) = self.rx.try_recv() {
                self.on_event(ev);
            }
        }
        self.update_quorum();
        self.check_dp();
        self.maybe_reconcile();
        self.maybe_resync();
        self.publish_health();
        self.publish_sync_counters();
        let ready = self.is_ready();
        if let Some(r) = self.ready.as_mut() {
            r.set(ready);
        }
    }

    /// Steps until `done` holds or `timeout` passes; true if it held.
    pub fn run_until(&mut self, timeout: Duration, mut done: impl FnMut(&Daemon) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            self.step(Duration::from_millis(20));
        }
    }

    /// The flag that stops `run` (and a long apply between two batches).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Runs until `stop` is set (SIGINT / SIGTERM), reloading whenever
    /// `reload` is set. A long apply checks `stop` between its batches.
    pub fn run(&mut self, stop: Arc<AtomicBool>, reload: &AtomicBool) {
        self.stop = stop;
        while !self.stop.load(Ordering::Relaxed) {
            if reload.swap(false, Ordering::Relaxed) {
                let _ = self.reload();
            }
            self.step(Duration::from_millis(100));
        }
        info!("rvs-cp stopping; rvs-dp keeps its table as it is");
    }

    /// Re-reads the config file. An invalid file changes nothing (the error,
    /// naming file, key and line, is logged and returned). A valid one is
    /// applied by difference: checks restart only for real servers whose
    /// check changed; health of the others carries over.
    pub fn reload(&mut self) -> Result<(), String> {
        self.reload_from(&self.source.clone())
    }

    /// As `reload`, from `source` (rvs.toml or keepalived.conf alike).
    pub fn reload_from(&mut self, source: &ConfigSource) -> Result<(), String> {
        let new = match load(source, self.metrics_override) {
            Ok(c) => c,
            Err(e) => {
                error!("reload refused, keeping the running configuration: {e}");
                return Err(e);
            }
        };
        let old_keys: BTreeSet<ServiceKey> = self.cfg.services.iter().map(|s| s.key()).collect();
        let new_keys: BTreeSet<ServiceKey> = new.services.iter().map(|s| s.key()).collect();
        let added = new_keys.difference(&old_keys).count();
        let removed: Vec<ServiceKey> = old_keys.difference(&new_keys).copied().collect();
        let changed = new
            .services
            .iter()
            .filter(|s| self.cfg.service(&s.key()).is_some_and(|o| o != *s))
            .count();
        for k in &removed {
            self.retired.insert(*k);
            self.quorum.remove(k);
        }
        for k in &new_keys {
            self.retired.remove(k);
            self.quorum.entry(*k).or_insert(true);
        }

        let wanted: BTreeMap<RealId, RealDef> =
            new.reals().into_iter().map(|(k, v)| (k, v.clone())).collect();
        self.reals.retain(|id, _| wanted.contains_key(id));
        let mut restarted = 0;
        for (id, def) in wanted {
            match self.reals.get_mut(&id) {
                Some(st) if st.def.check == def.check => st.def = def,
                Some(_) => {
                    restarted += 1;
                    let st = self.new_real(id, def);
                    self.reals.insert(id, st);
                }
                None => {
                    let st = self.new_real(id, def);
                    self.reals.insert(id, st);
                }
            }
        }

        if new.control.metrics_listen != self.cfg.control.metrics_listen {
            self.metrics = None;
            if let Some(a) = new.control.metrics_listen {
                match MetricsServer::start(a, self.metrics_state.clone()) {
                    Ok(m) => {
                        info!("serving /metrics on http://{}/metrics", m.local_addr());
                        self.metrics = Some(m);
                    }
                    Err(e) => error!("control.metrics_listen {a}: {e}; /metrics is off"),
                }
            }
        }
        if let Ok(mut s) = self.settings.lock() {
            *s = new.control.clone();
        }
        if new.ctl != self.cfg.ctl {
            warn!("dataplane.ctl changed: restart rvs-cp to use the new control region");
        }
        self.cfg = new;
        self.dirty = true;
        info!(
            "reloaded {}: {added} services added, {} removed, {changed} changed; {restarted} checks restarted",
            source.path().display(),
            removed.len()
        );
        self.publish_health();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_address_commands_are_logged_by_name() {
        let k = rvs_proto::types::ServiceKey {
            proto: rvs_proto::types::Proto::Tcp,
            vip: "10.1.0.100".parse().unwrap(),
            port: 80,
        };
        let l = rvs_proto::command::LaddrSpec {
            addr: "10.2.0.201".parse().unwrap(),
            port_name: "inside".into(),
        };
        assert_eq!(
            describe(&Command::AddLaddr(k, l)),
            "add local address 10.2.0.201 (port inside) to TCP 10.1.0.100:80"
        );
        assert_eq!(
            describe(&Command::DelLaddr(k, "10.2.0.201".parse().unwrap())),
            "remove local address 10.2.0.201 from TCP 10.1.0.100:80"
        );
    }

    /// `--metrics-listen` wins over the file, for either kind of file.
    #[test]
    fn command_line_metrics_listen_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("rvs-cp-override-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kc = dir.join("keepalived.conf");
        std::fs::write(
            &kc,
            "virtual_server 10.1.0.1 80 {\n  real_server 10.2.0.1 80 {\n  }\n}\n",
        )
        .unwrap();
        let source = ConfigSource::Keepalived(kc);
        let default = load(&source, None).unwrap().control.metrics_listen;
        assert_eq!(default, "127.0.0.1:9280".parse().ok());
        assert_eq!(load(&source, Some(None)).unwrap().control.metrics_listen, None);
        let a: SocketAddr = "127.0.0.1:9999".parse().unwrap();
        assert_eq!(
            load(&source, Some(Some(a))).unwrap().control.metrics_listen,
            Some(a)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
