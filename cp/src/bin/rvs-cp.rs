//! rvs-cp: the keepalived-like control process of rvs.
//!
//! ```text
//! rvs-cp (--config rvs.toml | --keepalived-conf keepalived.conf) [--ctl PATH] [--check | --config-test]
//! ```
//!
//! - `--config FILE` (`-f FILE`): the shared rvs.toml.
//! - `--keepalived-conf FILE`: an operator's keepalived.conf instead: its
//!   LVS blocks are read, the rest skipped (see `rvs_cp::keepalived`).
//!   Exactly one of the two is given.
//! - `--ctl PATH`: rvs-dp's control region (else `$RVS_CTL`, else
//!   `dataplane.ctl`, else `/run/rvs/rvs.ctl`).
//! - `--check`: validate the file, print what it configures, and exit
//!   (0 valid, 1 invalid).
//! - `--ready-file PATH`: keep PATH at "0" while rvs-dp runs and holds the
//!   configuration, "1" otherwise: a keepalived `vrrp_track_file` with
//!   `weight 0`, so VRRP gives this director the VIPs only when it can serve
//!   them (see README, "High availability").
//! - `--config-id ID` (`-i ID`): keepalived's `-i`: the id of the
//!   conditional lines (`@ID ...`) of a keepalived.conf (default: the short
//!   host name). With `@rvs lvs_sync_daemon ...` and `--config-id rvs`, the
//!   line is rvs-cp's and keepalived never sees it (see `keepalived::load`).
//! - `--resync-listen ADDR:PORT`: serve this director's connection table to
//!   a peer's `--resync-from` (full resync, beyond IPVS; `rvs_cp::resync`).
//! - `--resync-allow ADDR[,ADDR...]`: the only sources `--resync-listen`
//!   answers (others get `ERR not allowed`, counted and logged); default: the
//!   backup sync daemon's peers (keepalived.conf's `sync_peer`), and with
//!   none of those, anyone.
//! - `--resync-from ADDR:PORT`: at start and after each rvs-dp restart,
//!   fetch the peer's table into rvs-dp before the ready file says 0.
//! - `--config-test` (`-t`): validate the file and print the rules it gives
//!   at start, before any check result, as `ipvsadm -S -n` prints them; exit
//!   0, or 1 with FILE:LINE and the problem on stderr (as `keepalived -t`).
//! - `$RVS_LOG`: log level (error, warn, info (default), debug, trace).
//!
//! Signals: SIGHUP reloads the file (an invalid file is refused and the
//! running configuration kept); SIGINT and SIGTERM stop rvs-cp and leave
//! rvs-dp's table as it is. Exit status: 0 after a signal stop, 1 when the
//! configuration cannot be used at start, 2 for a bad command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use rvs_cp::daemon::{Daemon, Options};
use rvs_cp::reconcile::initial_table;
use rvs_cp::source::{save_text, ConfigSource};

const USAGE: &str =
    "usage: rvs-cp (--config FILE | --keepalived-conf FILE) [--ctl PATH] [--metrics-listen ADDR:PORT|off] [--ready-file PATH] [--config-id ID] [--resync-listen ADDR:PORT] [--resync-allow ADDR[,ADDR...]] [--resync-from ADDR:PORT] [--check | --config-test]\n";

/// What to do once the file is known.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Run,
    Check,
    ConfigTest,
}

fn parse(args: &[String]) -> Result<(Options, Mode), String> {
    let mut config = None;
    let mut keepalived = None;
    let mut ctl = None;
    let mut metrics_listen = None;
    let mut ready_file = None;
    let mut resync_listen = None;
    let mut resync_from = None;
    let mut resync_allow = Vec::new();
    let mut mode = Mode::Run;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{what} needs a value"))
        };
        match name {
            "--config" | "-f" => config = Some(PathBuf::from(value(name)?)),
            "--keepalived-conf" => keepalived = Some(PathBuf::from(value(name)?)),
            "--ctl" => ctl = Some(PathBuf::from(value(name)?)),
            "--metrics-listen" => {
                metrics_listen = Some(match value(name)?.as_str() {
                    "off" => None,
                    a => Some(
                        a.parse()
                            .map_err(|_| format!("--metrics-listen: '{a}' is not ADDRESS:PORT or off"))?,
                    ),
                })
            }
            "--ready-file" => ready_file = Some(PathBuf::from(value(name)?)),
            "--config-id" | "-i" => rvs_cp::keepalived::set_config_id(&value(name)?),
            "--resync-allow" => {
                let v = value(name)?;
                for a in v.split(',') {
                    resync_allow.push(
                        a.trim()
                            .parse()
                            .map_err(|_| format!("--resync-allow: '{a}' is not an IP address"))?,
                    );
                }
            }
            "--resync-listen" | "--resync-from" => {
                let v = value(name)?;
                let a = v
                    .parse()
                    .map_err(|_| format!("{name}: '{v}' is not ADDRESS:PORT"))?;
                if name == "--resync-listen" {
                    resync_listen = Some(a);
                } else {
                    resync_from = Some(a);
                }
            }
            "--check" if mode != Mode::ConfigTest => mode = Mode::Check,
            "--config-test" | "-t" if mode != Mode::Check => mode = Mode::ConfigTest,
            "--check" | "--config-test" | "-t" => {
                return Err("--check and --config-test exclude each other".into())
            }
            "-h" | "--help" => return Err(String::new()),
            "-V" | "--version" => return Err(format!("rvs-cp {}", env!("CARGO_PKG_VERSION"))),
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    let config = match (config, keepalived) {
        (Some(p), None) => ConfigSource::Rvs(p),
        (None, Some(p)) => ConfigSource::Keepalived(p),
        (Some(_), Some(_)) => {
            return Err(
                "--config and --keepalived-conf exclude each other: give the one file rvs-cp reads".into(),
            )
        }
        (None, None) => return Err("--config FILE or --keepalived-conf FILE is required".into()),
    };
    Ok((
        Options {
            config,
            ctl,
            metrics_listen,
            ready_file,
            resync_listen,
            resync_from,
            resync_allow,
        },
        mode,
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, mode) = match parse(&args) {
        Ok(x) => x,
        Err(e) if e.starts_with("rvs-cp ") => {
            println!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("rvs-cp: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let level = std::env::var("RVS_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    if mode != Mode::Run {
        let (cfg, warnings) = match opts.config.load_with_warnings() {
            Ok(x) => x,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        };
        for w in warnings {
            eprintln!("{w}");
        }
        if mode == Mode::ConfigTest {
            return match save_text(&initial_table(&cfg)) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e}", opts.config.path().display());
                    ExitCode::from(1)
                }
            };
        }
        let reals: usize = cfg.services.iter().map(|s| s.reals.len()).sum();
        println!(
            "{}: OK, {} virtual services, {reals} real servers",
            opts.config.path().display(),
            cfg.services.len()
        );
        return ExitCode::SUCCESS;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [
        (signal_hook::consts::SIGHUP, &reload),
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGTERM, &stop),
    ] {
        if let Err(e) = signal_hook::flag::register(sig, flag.clone()) {
            eprintln!("rvs-cp: cannot handle signal {sig}: {e}");
            return ExitCode::from(1);
        }
    }
    let mut daemon = match Daemon::start(&opts) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::from(1);
        }
    };
    daemon.run(stop, &reload);
    ExitCode::SUCCESS
}
