//! rvs-dp: the DPDK poll-mode director.
//!
//!     rvs-dp [EAL args] -- --config rvs.toml [--ctl PATH]
//!
//! The main thread starts EAL, has `Director` build the rest from the config,
//! launches one pinned worker per configured lcore (the main lcore too, if
//! listed), the kernel side and the control thread (`ControlPlane::run`), and
//! on SIGINT/SIGTERM stops them all and prints the final counters.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rvs_dp::config::{Config, DEFAULT_CTL_PATH};
use rvs_dp::director::Director;
use rvs_dp::dpdk::Eal;
use rvs_proto::statsarea::StatsReader;

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
    let (mut config, mut ctl) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned()).map(PathBuf::from);
        match flag {
            "--config" | "-c" => config = value(),
            "--ctl" => ctl = value(),
            "-h" | "--help" => usage(),
            _ => {
                eprintln!("rvs-dp: unknown argument '{a}'");
                usage();
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
    let (eal_args, app_args) = match argv.iter().position(|a| a == "--") {
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
    let d = Director::build(&cfg, &port_specs, &file, &eal, &ctl_path).unwrap_or_else(|e| fail(e));
    let (stop, dump, mut control, mut server) = (d.stop, d.dump, d.control, d.server);

    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let (nworkers, main_lcore, mut on_main) = (d.workers.len(), eal.main_lcore(), None);
    for (w, worker) in d.workers.into_iter().enumerate() {
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
        cfg.dataplane.conn_capacity,
        ctl_path.display()
    );

    let kernel_side =
        Director::start_kernel_side(d.exception, &d.watched, &d.shared, &stop).unwrap_or_else(|e| {
            stop.store(true, Ordering::SeqCst);
            fail(e)
        });
    let ctl_stop = stop.clone();
    let ctl = std::thread::Builder::new()
        .name("rvs-ctl".into())
        .spawn(move || {
            let reader = StatsReader::new(server.region().clone());
            let should_stop = || {
                if STOP.load(Ordering::Relaxed) {
                    ctl_stop.store(true, Ordering::SeqCst);
                }
                ctl_stop.load(Ordering::Relaxed)
            };
            control.run(
                &mut server,
                should_stop,
                || dump.collect(),
                || Director::latency(&reader, nworkers),
            );
            // Before the ports stop: rules go with their port anyway.
            control.clear_steering();
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
    for t in kernel_side {
        let _ = t.join();
    }
    Director::stop_ports(&d.ports);
    drop(eal);
}
