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

use crate::config::{parse_cidr, parse_mac, Config, PortSpec};
use crate::control::ControlPlane;
use crate::core::{CoreOptions, Forwarder, PortInfo, Shared};
use crate::dpdk::{spsc_ring, Eal, EthdevConf, Mempool, Port, RingConsumer, RingProducer};
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
        for (i, spec) in port_specs.iter().enumerate() {
            let key = |f: &str| format!("{file}: port[{i}] ({}).{f}", spec.name);
            let port = Port::probe(&spec.device).map_err(|e| format!("{}: {e}", key("device")))?;
            let conf = EthdevConf {
                rx_queues: nworkers as u16,
                tx_queues: nworkers as u16,
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
        let shared = Arc::new(Shared::new(infos.clone(), routes, nworkers as u16, opts));
        for (i, n) in cfg.neighbor.iter().enumerate() {
            let mac = parse_mac(&n.mac).map_err(|e| format!("{file}: neighbor[{i}].mac: {e}"))?;
            shared.neigh.add_static(n.ip, MacAddr(mac));
        }
        let capacity = cfg.dataplane.conn_capacity;
        let mut control = ControlPlane::new(shared.clone(), capacity.saturating_mul(nworkers as u32));
        control
            .apply(&Command::Restore(startup_commands(cfg, file)?))
            .map_err(|e| format!("{file}: virtual_server: {e}"))?;

        let server = CtlServer::create(ctl_path, Layout::with_workers(nworkers as u32))
            .map_err(|e| format!("control region {}: {e}", ctl_path.display()))?;

        let (mut producers, mut consumers) = redirect_rings(nworkers)?;
        let stop = Arc::new(AtomicBool::new(false));
        let dump = Arc::new(ConnDump::new(nworkers));
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
            });
        }
        Ok(Director {
            ports,
            control,
            server,
            workers,
            dump,
            stop,
        })
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

/// The timeouts and virtual servers of rvs.toml, as one all-or-nothing restore.
fn startup_commands(cfg: &Config, file: &str) -> Result<Vec<Command>, String> {
    let t = cfg.dataplane.timeouts;
    let mut cmds = vec![Command::SetTimeouts {
        tcp: t.tcp,
        tcpfin: t.tcpfin,
        udp: t.udp,
    }];
    for vs in &cfg.virtual_server {
        let spec = vs
            .service_spec()
            .map_err(|e| format!("{file}: virtual_server: {e}"))?;
        let key = spec.key();
        cmds.push(Command::AddService(spec));
        for rs in &vs.real_server {
            let d = vs
                .dest_spec(rs)
                .map_err(|e| format!("{file}: real_server: {e}"))?;
            cmds.push(Command::AddDest(key, d));
        }
    }
    Ok(cmds)
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
