//! A director wired from its configuration: the mbuf pool, the ports with one
//! queue pair per worker, routes and static neighbours, the control plane
//! holding the configured virtual servers, the control region, the redirect
//! rings and the workers. `main.rs` parses arguments and starts what this
//! builds; every error names the config key it comes from.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use rvs_proto::command::{Command, WorkerLatency};
use rvs_proto::region::Layout;
use rvs_proto::ring::CtlServer;
use rvs_proto::statsarea::StatsReader;

use crate::addrwatch::Watched;
use crate::config::{parse_cidr, parse_mac, Config, PortSpec};
use crate::control::ControlPlane;
use crate::core::{CoreOptions, Forwarder, PortInfo, Shared};
use crate::dpdk::flow::FlowPorts;
use crate::dpdk::{spsc_ring, Eal, EthdevConf, Mempool, Port, RingConsumer, RingProducer};
use crate::fnat::steer::{SteerConfig, Steering};
use crate::kernel::{self, ExceptionPath, KernelPort, KernelTx};
use crate::route::RouteTable;
use crate::wire::ethernet::MacAddr;
use crate::worker::{ConnDump, Worker};

pub struct Director {
    pub ports: Vec<Port>,
    pub control: ControlPlane,
    pub server: CtlServer,
    pub workers: Vec<Worker>,
    pub dump: Arc<ConnDump>,
    /// Set to stop the workers and the control thread.
    pub stop: Arc<AtomicBool>,
    pub shared: Arc<Shared>,
    /// The exception path, when a port has a kernel interface: run it on a
    /// thread of its own, and `addrwatch::start` on `watched`.
    pub exception: Option<ExceptionPath>,
    pub watched: Vec<Watched>,
}

impl Director {
    /// Everything up to, not including, launching the workers. `file` names
    /// the config file in errors.
    pub fn build(
        cfg: &Config,
        port_specs: &[PortSpec],
        file: &str,
        eal: &Eal,
        ctl_path: &Path,
    ) -> Result<Director, String> {
        let lcores: Vec<u32> = {
            let mut v = eal.worker_lcores();
            v.push(eal.main_lcore());
            v
        };
        if let Some(w) = cfg.dataplane.workers.iter().find(|w| !lcores.contains(w)) {
            return Err(format!(
                "{file}: dataplane.workers: lcore {w} is not enabled in EAL (-l/--lcores); enabled: {lcores:?}"
            ));
        }
        let nworkers = cfg.dataplane.workers.len();
        let ring = cfg.dataplane.ring_size;
        let mbufs = if cfg.dataplane.mbufs > 0 {
            cfg.dataplane.mbufs
        } else {
            let per = (port_specs.len() * nworkers * (2 * ring as usize + 256)) + nworkers * (4 * 1024 + 512);
            (per as u32 + 4096).next_power_of_two() - 1
        };
        // Data room plus DPDK's 128-byte headroom (TUN prepends its header there).
        let pool = Mempool::create("rvs_pool", mbufs, 256, cfg.dataplane.mbuf_data_room + 128)
            .map_err(|e| format!("cannot create a pool of {mbufs} mbufs: {e}"))?;

        // Ports: probe, configure one RX/TX queue per worker, start.
        let mut ports = Vec::new();
        let mut infos = Vec::new();
        let mut rx_by_worker: Vec<Vec<_>> = (0..nworkers).map(|_| Vec::new()).collect();
        let mut tx_by_worker: Vec<Vec<_>> = (0..nworkers).map(|_| Vec::new()).collect();
        let mut kernel_ports = Vec::new();
        let mut kernel_to_worker0 = Vec::new();
        for (i, spec) in port_specs.iter().enumerate() {
            let key = |f: &str| format!("{file}: port[{i}] ({}).{f}", spec.name);
            let port = Port::probe(&spec.device).map_err(|e| format!("{}: {e}", key("device")))?;
            // The exception path transmits on a TX queue of its own when the
            // device has one to spare, else through worker 0's (see `kernel`).
            let spare_tx =
                spec.kernel_iface.is_some() && port.max_tx_queues().is_ok_and(|m| usize::from(m) > nworkers);
            let conf = EthdevConf {
                rx_queues: nworkers as u16,
                tx_queues: nworkers as u16 + u16::from(spare_tx),
                rx_desc: ring,
                tx_desc: ring,
                mtu: spec.mtu.ne(&1500).then_some(spec.mtu),
                rss: nworkers > 1,
            };
            // A pool too small for a pcap replay fails with a bare EINVAL: say why.
            let cannot = |e: crate::dpdk::DpdkError| {
                let hint = crate::vdev::pcap_pool_hint(&spec.device, mbufs, conf.rx_queues);
                let hint = hint.map(|h| format!(". {h}")).unwrap_or_default();
                format!("{}: cannot configure: {e}{hint}", key("device"))
            };
            let mut c = match port.configure(&conf, pool) {
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
                    port.configure(&EthdevConf { mtu: None, ..conf }, pool)
                        .map_err(cannot)?
                }
                Err(e) => return Err(cannot(e)),
            };
            let mac = match spec.mac {
                Some(m) => MacAddr(m),
                None => MacAddr(port.mac_addr().map_err(|e| e.to_string())?),
            };
            let _ = port.set_promiscuous(spec.mac.is_some());
            port.start()
                .map_err(|e| format!("{}: cannot start: {e}", key("device")))?;
            if let Some(iface) = &spec.kernel_iface {
                let devargs =
                    (spec.kernel_vdev.clone()).unwrap_or_else(|| kernel::tap_devargs(i, iface, mac));
                let (tap, tap_rx, tap_tx) = kernel::open(&devargs, pool, spec.mtu)
                    .map_err(|e| format!("{}: {e}", key("kernel_iface")))?;
                let spare = if spare_tx { c.tx.pop() } else { None };
                let out = match spare {
                    Some(q) => KernelTx::Queue(q),
                    None => {
                        let (p, cons) = spsc_ring(&format!("rvs_kd{i}"), kernel::RING_SIZE)
                            .map_err(|e| format!("kernel ring: {e}"))?;
                        kernel_to_worker0.push((i as u16, cons));
                        KernelTx::Worker(p)
                    }
                };
                eprintln!(
                    "rvs-dp: port {i} '{}': kernel interface {iface} ({devargs}), to the wire through {}",
                    spec.name,
                    match out {
                        KernelTx::Queue(_) => "its own TX queue",
                        KernelTx::Worker(_) => "worker 0 (no spare TX queue)",
                    }
                );
                kernel_ports.push(KernelPort {
                    port: i as u16,
                    dpdk_id: port.id(),
                    iface: iface.clone(),
                    tap,
                    tap_rx,
                    tap_tx,
                    out,
                    mtu: spec.mtu,
                    carrier: kernel::Carrier::for_port(port, &spec.device),
                    link_up: true,
                    counters: Default::default(),
                });
            }
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
            for (w, q) in c.rx.into_iter().enumerate() {
                rx_by_worker[w].push(q);
            }
            for (w, q) in c.tx.into_iter().enumerate() {
                tx_by_worker[w].push(q);
            }
            ports.push(port);
        }
        let max_id = ports.iter().map(|p| p.id() as usize).max().unwrap_or(0);
        let mut port_index = vec![0u16; max_id + 1];
        for (i, p) in ports.iter().enumerate() {
            port_index[p.id() as usize] = i as u16;
        }

        let mut routes = RouteTable::new();
        for (i, p) in infos.iter().enumerate() {
            // Route::matches masks both sides, so the port address names its subnet.
            routes
                .add_connected(p.addr, p.prefix_len, i as u16)
                .map_err(|e| e.to_string())?;
        }
        for (i, r) in cfg.route.iter().enumerate() {
            let (dst, len) = parse_cidr(&r.dst).map_err(|e| format!("{file}: route[{i}].dst: {e}"))?;
            routes
                .add_static(dst, len, r.via)
                .map_err(|e| format!("{file}: route[{i}].via: {e}"))?;
        }
        let opts = CoreOptions {
            expire_nodest_conn: cfg.dataplane.expire_nodest_conn,
            tcp_rst_no_dest: cfg.dataplane.tcp_rst_no_dest,
            conn_reuse_mode: cfg.dataplane.conn_reuse_mode,
            expire_quiescent_template: cfg.dataplane.expire_quiescent_template,
        };
        let kernel_mask: Vec<bool> = port_specs.iter().map(|s| s.kernel_iface.is_some()).collect();
        let shared = Arc::new(
            Shared::new(infos.clone(), routes, nworkers as u16, opts)
                .with_kernel_ports(&kernel_mask)
                .with_port_names(port_specs.iter().map(|s| s.name.clone()).collect())
                .with_laddr_config(
                    (cfg.fullnat.laddr_config(nworkers))
                        .map_err(|(key, problem)| format!("{file}: {key}: {problem}"))?,
                ),
        );
        for (i, n) in cfg.neighbor.iter().enumerate() {
            let mac = parse_mac(&n.mac).map_err(|e| format!("{file}: neighbor[{i}].mac: {e}"))?;
            shared.neigh.add_static(n.ip, MacAddr(mac));
        }
        let capacity = cfg.dataplane.conn_capacity;
        let mut control = ControlPlane::new(shared.clone(), capacity.saturating_mul(nworkers as u32));
        // Before the first commit, so the services of rvs.toml are steered too.
        control.set_steering(Box::new(Steering::new(
            FlowPorts::new(ports.clone()),
            SteerConfig {
                enabled: cfg.fullnat.flow_steering,
                workers: nworkers as u16,
                ports: shared.laddr.ports.clone(),
                max_rules: cfg.fullnat.flow_rules_max as usize,
            },
        )));
        control
            .apply(&Command::Restore(
                cfg.ipvs_commands()
                    .map_err(|(key, e)| format!("{file}: {key}: {e}"))?
                    .into_iter()
                    .map(|(_, c)| c)
                    .collect(),
            ))
            .map_err(|e| format!("{file}: virtual_server: {e}"))?;

        control.sync = crate::sync::SyncDaemons::new(
            shared.clone(),
            cfg.sync.params().map_err(|e| format!("{file}: {e}"))?,
        );
        for (key, spec) in cfg.sync.daemons().map_err(|e| format!("{file}: {e}"))? {
            control.sync.start(&spec).map_err(|e| {
                format!(
                    "{file}: {key}: cannot start the sync daemon on {}: {e}",
                    spec.mcast_ifn
                )
            })?;
            eprintln!("rvs-dp: {}", spec_line(&control, spec.role));
        }

        let server = CtlServer::create(ctl_path, Layout::with_workers(nworkers as u32))
            .map_err(|e| format!("control region {}: {e}", ctl_path.display()))?;

        let (mut producers, mut consumers) = redirect_rings(nworkers)?;
        let stop = Arc::new(AtomicBool::new(false));
        let dump = Arc::new(ConnDump::new(nworkers));
        // Two bounded rings from each worker to the exception path: one for
        // the control class (VRRP), one for everything else.
        let mut kernel_out = Vec::new();
        let mut from_workers = Vec::new();
        let mut kernel_ctl_out = Vec::new();
        let mut from_workers_ctl = Vec::new();
        if !kernel_ports.is_empty() {
            for w in 0..nworkers {
                let (p, c) = spsc_ring(&format!("rvs_k{w}"), kernel::RING_SIZE)
                    .map_err(|e| format!("kernel ring: {e}"))?;
                kernel_out.push(Some(p));
                from_workers.push(c);
                let (p, c) = spsc_ring(&format!("rvs_kc{w}"), kernel::CONTROL_RING_SIZE)
                    .map_err(|e| format!("kernel control ring: {e}"))?;
                kernel_ctl_out.push(Some(p));
                from_workers_ctl.push(c);
            }
        }
        let mut workers = Vec::new();
        for (w, (rx, tx)) in rx_by_worker.into_iter().zip(tx_by_worker).enumerate() {
            workers.push(Worker {
                id: w as u16,
                fwd: Forwarder::new(w as u16, shared.clone(), capacity),
                ports: infos.clone(),
                rx,
                tx,
                port_index: port_index.clone(),
                redirect_in: std::mem::take(&mut consumers[w]),
                redirect_out: std::mem::take(&mut producers[w]),
                pool,
                stats: server.stats_writer(w).ok(),
                stop: stop.clone(),
                idle_sleep_us: cfg.dataplane.idle_sleep_us,
                rx_burst: cfg.dataplane.rx_burst as usize,
                dump: dump.clone(),
                rx_csum: (port_specs.iter().enumerate())
                    .map(|(i, s)| crate::vdev::CsumSampler::for_port(i, &s.name, &s.device))
                    .collect(),
                tx_pkts: 0,
                tx_bytes: 0,
                kernel_out: kernel_out.get_mut(w).and_then(Option::take),
                kernel_ctl_out: kernel_ctl_out.get_mut(w).and_then(Option::take),
                kernel_in: if w == 0 {
                    std::mem::take(&mut kernel_to_worker0)
                } else {
                    Vec::new()
                },
            });
        }
        let watched = (port_specs.iter())
            .filter_map(|s| {
                Some(Watched {
                    iface: s.kernel_iface.clone()?,
                    addr: s.addr,
                    prefix_len: s.prefix_len,
                })
            })
            .collect();
        let exception = (!kernel_ports.is_empty()).then(|| ExceptionPath {
            ports: kernel_ports,
            from_workers,
            from_workers_ctl,
            rate_pps: cfg.dataplane.kernel_rate_pps,
            stop: stop.clone(),
            stats: Some(server.kernel_writer()),
        });
        Ok(Director {
            ports,
            control,
            server,
            workers,
            dump,
            stop,
            shared,
            exception,
            watched,
        })
    }

    /// The exception path and the address watcher, on threads of their own
    /// off the workers' lcores; `join` them after the workers stop.
    pub fn start_kernel_side(
        exception: Option<ExceptionPath>,
        watched: &[Watched],
        shared: &Arc<Shared>,
        stop: &Arc<AtomicBool>,
    ) -> Result<Vec<std::thread::JoinHandle<()>>, String> {
        let mut threads = Vec::new();
        if let Some(x) = exception {
            let t = std::thread::Builder::new()
                .name("rvs-kernel".into())
                .spawn(move || {
                    x.run();
                })
                .map_err(|e| format!("cannot start the exception path: {e}"))?;
            threads.push(t);
        }
        if !watched.is_empty() {
            let t = crate::addrwatch::start(watched, shared.clone(), stop.clone())
                .map_err(|e| format!("kernel interface addresses: {e}"))?;
            threads.push(t);
        }
        Ok(threads)
    }

    /// Prints each port's final counters and stops it.
    pub fn stop_ports(ports: &[Port]) {
        for (i, p) in ports.iter().enumerate() {
            if let Ok(s) = p.stats() {
                println!(
                    "port {i}: ipackets {} opackets {} ibytes {} obytes {} imissed {} ierrors {} oerrors {} rx_nombuf {}",
                    s.ipackets, s.opackets, s.ibytes, s.obytes, s.imissed, s.ierrors, s.oerrors, s.rx_nombuf
                );
            }
            let _ = p.stop();
        }
    }

    /// Per-worker latency summaries, from the stats area.
    pub fn latency(reader: &StatsReader, workers: usize) -> Vec<WorkerLatency> {
        (0..workers)
            .filter_map(|w| {
                let s = reader.read(w)?.latency.summary()?;
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
}

/// Producers and consumers per worker: one SPSC ring per ordered pair of
/// workers (`producers[from][to]`, None for `from == to`).
type RedirectRings = (Vec<Vec<Option<RingProducer>>>, Vec<Vec<RingConsumer>>);

fn redirect_rings(n: usize) -> Result<RedirectRings, String> {
    let mut producers: Vec<Vec<Option<RingProducer>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut consumers: Vec<Vec<RingConsumer>> = (0..n).map(|_| Vec::new()).collect();
    for (from, outs) in producers.iter_mut().enumerate() {
        for (to, ins) in consumers.iter_mut().enumerate() {
            if from != to {
                let (p, c) = spsc_ring(&format!("rvs_r{from}_{to}"), 4096)
                    .map_err(|e| format!("redirect ring: {e}"))?;
                outs[to] = Some(p);
                ins.push(c);
            }
        }
    }
    Ok((producers, consumers))
}

/// The `-L --daemon` line of the running daemon of `role`.
fn spec_line(control: &ControlPlane, role: rvs_proto::command::DaemonRole) -> String {
    (control.sync.list().into_iter())
        .find(|s| s.role == role)
        .map(|s| s.ipvsadm_line())
        .unwrap_or_default()
}
