//! rvs-dp: the DPDK poll-mode director.
//!
//!     rvs-dp [EAL args] -- --config rvs.toml [--ctl PATH]
//!
//! The main thread sets up EAL, ports, the shared state and the control
//! region, launches one pinned worker per configured lcore (the main lcore
//! too, if listed), runs the control thread, and on SIGINT/SIGTERM stops the
//! workers, prints the final counters and releases the ports.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rvs_dp::config::{parse_cidr, parse_mac, Config, DEFAULT_CTL_PATH};
use rvs_dp::control::ControlPlane;
use rvs_dp::core::{CoreOptions, Forwarder, PortInfo, Shared};
use rvs_dp::ctl::command::{Command, ConnInfo, CtlError, Reply, WorkerLatency};
use rvs_dp::ctl::region::Layout;
use rvs_dp::ctl::ring::CtlServer;
use rvs_dp::ctl::statsarea::StatsReader;
use rvs_dp::dpdk::{spsc_ring, Eal, Mempool, Port, PortConfig, RingConsumer, RingProducer};
use rvs_dp::route::RouteTable;
use rvs_dp::wire::ethernet::MacAddr;
use rvs_dp::worker::{ConnDump, Worker};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn usage() -> ! {
    eprintln!("usage: rvs-dp [EAL args] -- --config rvs.toml [--ctl PATH]");
    std::process::exit(2);
}

struct AppArgs {
    config: PathBuf,
    ctl: Option<PathBuf>,
}

fn parse_app_args(args: &[String]) -> AppArgs {
    let mut config = None;
    let mut ctl = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-c" => config = it.next().map(PathBuf::from),
            "--ctl" => ctl = it.next().map(PathBuf::from),
            "-h" | "--help" => usage(),
            other => {
                if let Some(v) = other.strip_prefix("--config=") {
                    config = Some(PathBuf::from(v));
                } else if let Some(v) = other.strip_prefix("--ctl=") {
                    ctl = Some(PathBuf::from(v));
                } else {
                    eprintln!("rvs-dp: unknown argument '{other}'");
                    usage();
                }
            }
        }
    }
    let Some(config) = config else { usage() };
    AppArgs { config, ctl }
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("rvs-dp: {msg}");
    std::process::exit(1);
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let split = argv.iter().position(|a| a == "--");
    let (eal_args, app_args) = match split {
        Some(i) => (argv[..i].to_vec(), argv[i + 1..].to_vec()),
        None => (vec![argv[0].clone()], argv[1..].to_vec()),
    };
    let app = parse_app_args(&app_args);
    let cfg = Config::load(&app.config).unwrap_or_else(|e| fail(e));
    let file = app.config.display().to_string();
    let port_specs = cfg.ports(&file).unwrap_or_else(|e| fail(e));
    if port_specs.is_empty() {
        fail(format!("{file}: port: at least one [[port]] is needed"));
    }
    let ctl_path = app
        .ctl
        .or_else(|| std::env::var_os("RVS_CTL").map(PathBuf::from))
        .or_else(|| cfg.dataplane.ctl.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CTL_PATH));

    let eal = Eal::init(&eal_args).unwrap_or_else(|e| fail(format!("EAL init failed: {e}")));
    let lcores: Vec<u32> = {
        let mut v = eal.worker_lcores();
        v.push(eal.main_lcore());
        v
    };
    for w in &cfg.dataplane.workers {
        if !lcores.contains(w) {
            fail(format!(
                "{file}: dataplane.workers: lcore {w} is not enabled in EAL (-l/--lcores); enabled: {lcores:?}"
            ));
        }
    }
    let nworkers = cfg.dataplane.workers.len();
    let ring = cfg.dataplane.ring_size;
    let nports = port_specs.len();
    let mbufs = if cfg.dataplane.mbufs > 0 {
        cfg.dataplane.mbufs
    } else {
        let per = (nports * nworkers * (2 * ring as usize + 256)) + nworkers * (4 * 1024 + 512);
        (per as u32 + 4096).next_power_of_two() - 1
    };
    // Data room plus DPDK's 128-byte headroom (TUN prepends its header there).
    let pool = Mempool::create("rvs_pool", mbufs, 256, cfg.dataplane.mbuf_data_room + 128)
        .unwrap_or_else(|e| fail(format!("cannot create a pool of {mbufs} mbufs: {e}")));

    // Ports: probe, configure one RX/TX queue per worker, start.
    let mut dpdk_ports = Vec::new();
    let mut infos = Vec::new();
    let mut rx_queues = Vec::new();
    let mut tx_queues = Vec::new();
    for (i, spec) in port_specs.iter().enumerate() {
        let key = |f: &str| format!("{file}: port[{i}] ({}).{f}", spec.name);
        let port = Port::probe(&spec.device).unwrap_or_else(|e| fail(format!("{}: {e}", key("device"))));
        let conf = PortConfig {
            rx_queues: nworkers as u16,
            tx_queues: nworkers as u16,
            rx_desc: ring,
            tx_desc: ring,
            mtu: spec.mtu.ne(&1500).then_some(spec.mtu),
            rss: nworkers > 1,
        };
        // A pool too small for a pcap replay fails with a bare EINVAL: say why.
        let cannot = |e: rvs_dp::dpdk::DpdkError| -> ! {
            let hint = rvs_dp::vdev::pcap_pool_hint(&spec.device, mbufs, conf.rx_queues);
            let hint = hint.map(|h| format!(". {h}")).unwrap_or_default();
            fail(format!("{}: cannot configure: {e}{hint}", key("device")))
        };
        let c = match port.configure(&conf, pool) {
            Ok(c) => c,
            // Some PMDs (af_packet) cap the frame size below a jumbo-ish MTU
            // such as 1520 for a TUN lab, yet transmit such frames fine: keep
            // the device default and use the configured MTU for our own
            // path-MTU decisions.
            Err(e) if conf.mtu.is_some() => {
                eprintln!(
                    "rvs-dp: {}: device refused mtu {}: {e}; keeping its default",
                    key("mtu"),
                    spec.mtu
                );
                port.configure(&PortConfig { mtu: None, ..conf }, pool)
                    .unwrap_or_else(|e| cannot(e))
            }
            Err(e) => cannot(e),
        };
        let mac = match spec.mac {
            Some(m) => MacAddr(m),
            None => MacAddr(port.mac_addr().unwrap_or_else(|e| fail(e))),
        };
        let _ = port.set_promiscuous(spec.mac.is_some());
        port.start()
            .unwrap_or_else(|e| fail(format!("{}: cannot start: {e}", key("device"))));
        eprintln!(
            "rvs-dp: port {i} '{}' {} mac {} addr {}/{} mtu {} queues {} rss {:#x}",
            spec.name, spec.device, mac, spec.addr, spec.prefix_len, spec.mtu, nworkers, c.rss_hf
        );
        infos.push(PortInfo {
            mac,
            addr: spec.addr,
            prefix_len: spec.prefix_len,
            mtu: spec.mtu,
        });
        rx_queues.push(c.rx);
        tx_queues.push(c.tx);
        dpdk_ports.push(port);
    }
    let max_id = dpdk_ports.iter().map(|p| p.id() as usize).max().unwrap_or(0);
    let mut port_index = vec![0u16; max_id + 1];
    for (i, p) in dpdk_ports.iter().enumerate() {
        port_index[p.id() as usize] = i as u16;
    }

    // Routes and shared state.
    let mut routes = RouteTable::new();
    for (i, p) in infos.iter().enumerate() {
        // Route::matches masks both sides, so the port address names its subnet.
        routes
            .add_connected(p.addr, p.prefix_len, i as u16)
            .unwrap_or_else(|e| fail(e));
    }
    for (i, r) in cfg.route.iter().enumerate() {
        let (dst, len) = parse_cidr(&r.dst).unwrap_or_else(|e| fail(format!("{file}: route[{i}].dst: {e}")));
        routes
            .add_static(dst, len, r.via)
            .unwrap_or_else(|e| fail(format!("{file}: route[{i}].via: {e}")));
    }
    let opts = CoreOptions {
        expire_nodest_conn: cfg.dataplane.expire_nodest_conn,
        tcp_rst_no_dest: cfg.dataplane.tcp_rst_no_dest,
    };
    let shared = Arc::new(Shared::new(infos.clone(), routes, nworkers as u16, opts));
    for (i, n) in cfg.neighbor.iter().enumerate() {
        let mac = parse_mac(&n.mac).unwrap_or_else(|e| fail(format!("{file}: neighbor[{i}].mac: {e}")));
        shared.neigh.add_static(n.ip, MacAddr(mac));
    }
    let capacity = cfg.dataplane.conn_capacity;
    let mut control = ControlPlane::new(shared.clone(), capacity.saturating_mul(nworkers as u32));
    {
        let t = cfg.dataplane.timeouts;
        let mut cmds = vec![Command::SetTimeouts {
            tcp: t.tcp,
            tcpfin: t.tcpfin,
            udp: t.udp,
        }];
        for vs in &cfg.virtual_server {
            let spec = vs
                .service_spec()
                .unwrap_or_else(|e| fail(format!("{file}: virtual_server: {e}")));
            let key = spec.key();
            cmds.push(Command::AddService(spec));
            for rs in &vs.real_server {
                let d = vs
                    .dest_spec(rs)
                    .unwrap_or_else(|e| fail(format!("{file}: real_server: {e}")));
                cmds.push(Command::AddDest(key, d));
            }
        }
        if let Err(e) = control.apply(&Command::Restore(cmds)) {
            fail(format!("{file}: virtual_server: {e}"));
        }
    }

    let mut server = CtlServer::create(&ctl_path, Layout::with_workers(nworkers as u32))
        .unwrap_or_else(|e| fail(format!("control region {}: {e}", ctl_path.display())));

    // Redirect rings: one SPSC ring per ordered pair of workers.
    let mut producers: Vec<Vec<Option<RingProducer>>> = (0..nworkers)
        .map(|_| (0..nworkers).map(|_| None).collect())
        .collect();
    let mut consumers: Vec<Vec<RingConsumer>> = (0..nworkers).map(|_| Vec::new()).collect();
    for (from, outs) in producers.iter_mut().enumerate() {
        for (to, ins) in consumers.iter_mut().enumerate() {
            if from == to {
                continue;
            }
            let (p, c) = spsc_ring(&format!("rvs_r{from}_{to}"), 4096)
                .unwrap_or_else(|e| fail(format!("redirect ring: {e}")));
            outs[to] = Some(p);
            ins.push(c);
        }
    }

    // SAFETY of the handler: it only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let dump = Arc::new(ConnDump::new(nworkers));
    let mut rx_by_worker: Vec<Vec<_>> = (0..nworkers).map(|_| Vec::new()).collect();
    let mut tx_by_worker: Vec<Vec<_>> = (0..nworkers).map(|_| Vec::new()).collect();
    for (rxs, txs) in rx_queues.into_iter().zip(tx_queues) {
        for (w, q) in rxs.into_iter().enumerate() {
            rx_by_worker[w].push(q);
        }
        for (w, q) in txs.into_iter().enumerate() {
            tx_by_worker[w].push(q);
        }
    }
    let mut workers = Vec::new();
    for (w, ((rx, tx), (outs, ins))) in rx_by_worker
        .into_iter()
        .zip(tx_by_worker)
        .zip(producers.into_iter().zip(consumers))
        .enumerate()
    {
        workers.push(Worker {
            id: w as u16,
            fwd: Forwarder::new(w as u16, shared.clone(), capacity),
            ports: infos.clone(),
            rx,
            tx,
            port_index: port_index.clone(),
            redirect_in: ins,
            redirect_out: outs,
            pool,
            stats: server.stats_writer(w).ok(),
            stop: stop.clone(),
            idle_sleep_us: cfg.dataplane.idle_sleep_us,
            rx_burst: cfg.dataplane.rx_burst as usize,
            dump: dump.clone(),
            rx_csum: (port_specs.iter().enumerate())
                .map(|(i, s)| rvs_dp::vdev::CsumSampler::for_port(i, &s.name, &s.device))
                .collect(),
            tx_pkts: 0,
            tx_bytes: 0,
        });
    }
    let main_lcore = eal.main_lcore();
    let mut on_main = None;
    for (w, worker) in workers.into_iter().enumerate() {
        let lcore = cfg.dataplane.workers[w];
        if lcore == main_lcore {
            on_main = Some(worker);
        } else {
            eal.launch_on(lcore, move || worker.run())
                .unwrap_or_else(|e| fail(format!("cannot launch worker {w} on lcore {lcore}: {e}")));
        }
    }
    eprintln!(
        "rvs-dp: {} worker(s) on lcores {:?}, {} connections each, control region {}",
        nworkers,
        cfg.dataplane.workers,
        capacity,
        ctl_path.display()
    );

    // The control thread.
    let ctl_stop = stop.clone();
    let ctl_shared = shared.clone();
    let ctl_dump = dump.clone();
    let ctl = std::thread::Builder::new()
        .name("rvs-ctl".into())
        .spawn(move || {
            let reader = StatsReader::new(server.region().clone());
            let mut last_est = Instant::now();
            while !ctl_stop.load(Ordering::Relaxed) {
                if STOP.load(Ordering::Relaxed) {
                    ctl_stop.store(true, Ordering::SeqCst);
                    break;
                }
                server.flush_replies();
                if last_est.elapsed() >= Duration::from_secs(2) {
                    control.estimate();
                    last_est = Instant::now();
                }
                let Some((id, bytes)) = server.poll_request() else {
                    std::thread::sleep(Duration::from_micros(500));
                    continue;
                };
                let reply = match serde_json::from_slice::<Command>(&bytes) {
                    Ok(cmd) => {
                        let (reply, wait) = control.handle(
                            &cmd,
                            || collect_conns(&ctl_dump),
                            || collect_latency(&reader, nworkers),
                        );
                        if let Some(gen) = wait {
                            // Reply once every worker runs the new snapshot.
                            let t0 = Instant::now();
                            while !ctl_shared.all_workers_seen(gen) && t0.elapsed() < Duration::from_secs(2) {
                                std::thread::sleep(Duration::from_micros(100));
                            }
                        }
                        reply
                    }
                    Err(e) => Reply::Error(CtlError::Unsupported(format!("malformed request: {e}"))),
                };
                let out = serde_json::to_vec(&reply).unwrap_or_default();
                if let Err(e) = server.reply(id, &out) {
                    eprintln!("rvs-dp: reply failed: {e}");
                }
            }
            drop(server);
        })
        .unwrap_or_else(|e| fail(format!("cannot start the control thread: {e}")));

    if let Some(w) = on_main {
        w.run();
    } else {
        while !stop.load(Ordering::Relaxed) && !STOP.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    stop.store(true, Ordering::SeqCst);
    eal.wait_all();
    let _ = ctl.join();
    for (i, p) in dpdk_ports.iter().enumerate() {
        if let Ok(s) = p.stats() {
            println!(
                "port {i}: ipackets {} opackets {} ibytes {} obytes {} imissed {} ierrors {} oerrors {} rx_nombuf {}",
                s.ipackets, s.opackets, s.ibytes, s.obytes, s.imissed, s.ierrors, s.oerrors, s.rx_nombuf
            );
        }
        let _ = p.stop();
    }
    drop(eal);
}

fn collect_conns(dump: &ConnDump) -> Vec<ConnInfo> {
    let req = dump.request.fetch_add(1, Ordering::AcqRel) + 1;
    let t0 = Instant::now();
    while dump
        .slots
        .iter()
        .any(|(seen, _)| seen.load(Ordering::Acquire) < req)
        && t0.elapsed() < Duration::from_secs(2)
    {
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut out = Vec::new();
    for (_, slot) in &dump.slots {
        if let Ok(mut g) = slot.lock() {
            out.append(&mut g);
        }
    }
    out
}

fn collect_latency(reader: &StatsReader, workers: usize) -> Vec<WorkerLatency> {
    (0..workers)
        .filter_map(|w| {
            let b = reader.read(w)?;
            let s = b.latency.summary()?;
            Some(WorkerLatency {
                worker: w as u32,
                p50: s.p50,
                p90: s.p90,
                p99: s.p99,
                p999: s.p999,
                max: s.max,
                count: s.count,
            })
        })
        .collect()
}
