//! Test support: an in-process fake rvs-dp built on the real control-region
//! code (`CtlServer`), answering through `rvs_proto::serve` with the same
//! `IpvsConfig` model as the data plane, and small local servers for health checks.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rvs_proto::command::{Command, ConnInfo, IpvsError, OwnedAddrs, Reply, ServiceInfo, WorkerLatency};
use rvs_proto::ipvs::{IpvsConfig, Limits, ServiceRules};
use rvs_proto::region::Layout;
use rvs_proto::ring::CtlServer;
use rvs_proto::serve::{self, DataPlane, Sessions};
use rvs_proto::statsarea::{KernelStatsBlock, KernelStatsWriter, StatsWriter, WorkerStatsBlock};
use rvs_proto::types::{ServiceKey, TrafficTotals};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique name for this process and call.
pub fn unique(name: &str) -> String {
    format!(
        "rvs-test-{}-{name}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A directory removed with everything in it when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(name));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Default)]
pub struct Counters {
    pub services: HashMap<ServiceKey, TrafficTotals>,
    /// (service, rip, rport) -> (active, inactive, traffic)
    pub dests: HashMap<(ServiceKey, Ipv4Addr, u16), (u32, u32, TrafficTotals)>,
}

struct Shared {
    model: Mutex<Model>,
    counters: Mutex<Counters>,
    /// What the fake says it owns.
    owned: Mutex<OwnedAddrs>,
    log: Mutex<Vec<Command>>,
    /// Table limits of the model (a new one at each restart).
    limits: Limits,
    /// `Restore` requests received (rvs-cp sends its changes in these).
    restores: AtomicU64,
    /// Requests that change the table (or try to), however packed.
    changes: AtomicU64,
}

/// The fake's table: the configuration model, a generation and the paging
/// and restore sessions `rvs_proto::serve` keeps.
struct Model {
    config: IpvsConfig,
    generation: u64,
    sessions: Sessions,
}

impl Model {
    fn new(limits: Limits) -> Model {
        Model {
            config: IpvsConfig::with_limits(limits),
            generation: 0,
            sessions: Sessions::default(),
        }
    }
}

/// The fake data plane.
pub struct FakeDp {
    pub path: PathBuf,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    writers: Vec<StatsWriter>,
    kernel_writer: Option<KernelStatsWriter>,
    pub workers: u32,
}

/// The fake as `rvs_proto::serve` sees it while it answers one command.
struct Serving<'a> {
    model: &'a mut Model,
    counters: &'a Counters,
    owned: OwnedAddrs,
    log: &'a Mutex<Vec<Command>>,
}

impl DataPlane for Serving<'_> {
    fn model(&self) -> &IpvsConfig {
        &self.model.config
    }
    fn generation(&self) -> u64 {
        self.model.generation
    }
    fn sessions(&mut self) -> &mut Sessions {
        &mut self.model.sessions
    }
    fn fill_counters(&self, services: &mut [ServiceInfo]) {
        for s in services.iter_mut() {
            let k = s.spec.key();
            if let Some(t) = self.counters.services.get(&k) {
                s.stats = *t;
            }
            for d in s.dests.iter_mut() {
                if let Some((a, i, t)) = self.counters.dests.get(&(k, d.spec.rip, d.spec.port)) {
                    d.active = *a;
                    d.inactive = *i;
                    d.stats = *t;
                }
            }
        }
    }
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
        self.owned.clone()
    }
    fn commit(&mut self, next: IpvsConfig, cmds: &[Command]) -> Result<u64, IpvsError> {
        self.model.config = next;
        self.model.generation += 1;
        // The log holds what was applied, command by command, however it came.
        let mut log = self.log.lock().unwrap();
        for c in cmds {
            match c {
                Command::Restore(inner) => log.extend(inner.iter().cloned()),
                c => log.push(c.clone()),
            }
        }
        Ok(self.model.generation)
    }
}

fn handle(shared: &Shared, msg: &[u8]) -> Reply {
    let cmd: Command = match serde_json::from_slice(msg) {
        Ok(c) => c,
        Err(e) => return Reply::Error(IpvsError::Unsupported(format!("bad request: {e}"))),
    };
    if let Command::Restore(_) = cmd {
        shared.restores.fetch_add(1, Ordering::Relaxed);
    }
    if !cmd.is_query() {
        shared.changes.fetch_add(1, Ordering::Relaxed);
    }
    let mut model = shared.model.lock().unwrap();
    let counters = shared.counters.lock().unwrap();
    let mut dp = Serving {
        model: &mut model,
        counters: &counters,
        owned: shared.owned.lock().unwrap().clone(),
        log: &shared.log,
    };
    serve::handle(&mut dp, &cmd).0
}

impl FakeDp {
    pub fn start(name: &str) -> FakeDp {
        FakeDp::start_with_limits(name, Limits::default())
    }

    /// A fake whose table refuses more than `limits` ("Memory allocation problem").
    pub fn start_with_limits(name: &str, limits: Limits) -> FakeDp {
        let dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let shared = Arc::new(Shared {
            model: Mutex::new(Model::new(limits)),
            counters: Mutex::new(Counters::default()),
            owned: Mutex::new(OwnedAddrs::all()),
            log: Mutex::new(Vec::new()),
            limits,
            restores: AtomicU64::new(0),
            changes: AtomicU64::new(0),
        });
        let mut dp = FakeDp {
            path: dir.join(format!("{}.ctl", unique(name))),
            shared,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
            writers: Vec::new(),
            kernel_writer: None,
            workers: 2,
        };
        dp.serve();
        dp
    }

    fn serve(&mut self) {
        let mut server = CtlServer::create(&self.path, Layout::with_workers(self.workers)).unwrap();
        self.writers = (0..self.workers as usize)
            .map(|w| server.stats_writer(w).unwrap())
            .collect();
        self.kernel_writer = Some(server.kernel_writer());
        let stop = Arc::new(AtomicBool::new(false));
        self.stop = stop.clone();
        let shared = self.shared.clone();
        self.thread = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match server.poll_request() {
                    Some((id, msg)) => {
                        let reply = handle(&shared, &msg);
                        server.reply(id, &serde_json::to_vec(&reply).unwrap()).unwrap();
                    }
                    None => {
                        server.flush_replies();
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            }
            drop(server);
        }));
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.writers.clear();
        self.kernel_writer = None;
    }

    /// rvs-dp restarted: a new region (new generation) and an empty table.
    pub fn restart(&mut self) {
        self.halt();
        *self.shared.model.lock().unwrap() = Model::new(self.shared.limits);
        self.serve();
    }

    pub fn generation(&self) -> u64 {
        rvs_proto::ring::CtlClient::open(&self.path).unwrap().generation()
    }

    pub fn service(&self, key: &ServiceKey) -> Option<ServiceRules> {
        self.shared.model.lock().unwrap().config.service(key).cloned()
    }

    pub fn services(&self) -> Vec<ServiceRules> {
        self.shared.model.lock().unwrap().config.services().to_vec()
    }

    /// `Restore` requests received so far.
    pub fn restores(&self) -> u64 {
        self.shared.restores.load(Ordering::Relaxed)
    }

    /// Change requests received so far.
    pub fn changes(&self) -> u64 {
        self.shared.changes.load(Ordering::Relaxed)
    }

    /// The change commands applied since the last call.
    pub fn take_log(&self) -> Vec<Command> {
        std::mem::take(&mut *self.shared.log.lock().unwrap())
    }

    pub fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.shared.counters.lock().unwrap()
    }

    pub fn publish(&self, worker: usize, block: &WorkerStatsBlock) {
        self.writers[worker].publish(block);
    }

    /// Publishes the exception path's counters, as rvs-dp's kernel thread does.
    pub fn publish_kernel(&self, block: &KernelStatsBlock) {
        if let Some(w) = &self.kernel_writer {
            w.publish(block);
        }
    }

    /// Sets what the fake owns (rvs-dp: the addresses on its kernel interfaces).
    pub fn set_owned(&self, owned: OwnedAddrs) {
        *self.shared.owned.lock().unwrap() = owned;
    }
}

impl Drop for FakeDp {
    fn drop(&mut self) {
        self.halt();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Polls `cond` every 10 ms for up to `timeout`.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A TCP port that accepts (and drops) connections until closed.
pub struct TcpUp {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpUp {
    pub fn start(port: u16) -> TcpUp {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => drop(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TcpUp {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops listening: connections are refused from now on.
    pub fn close(mut self) -> u16 {
        self.halt();
        self.port
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for TcpUp {
    fn drop(&mut self) {
        self.halt();
    }
}

/// An HTTP server answering every request with the current status and body.
pub struct HttpUp {
    pub port: u16,
    pub status: Arc<AtomicU16>,
    pub hits: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpUp {
    pub fn start(body: &'static str) -> HttpUp {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicU64::new(0));
        let (flag, st, h) = (stop.clone(), status.clone(), hits.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                        let mut buf = [0u8; 2048];
                        let mut got = Vec::new();
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                        h.fetch_add(1, Ordering::Relaxed);
                        let code = st.load(Ordering::Relaxed);
                        let _ = write!(
                            s,
                            "HTTP/1.0 {code} X\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        HttpUp {
            port,
            status,
            hits,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpUp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// GET `path` from a local HTTP server; (status, body).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}
