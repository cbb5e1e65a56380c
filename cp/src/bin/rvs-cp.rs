//! rvs-cp: the keepalived-like control process of rvs.
//!
//! ```text
//! rvs-cp --config rvs.toml [--ctl PATH] [--check]
//! ```
//!
//! - `--config FILE` (`-f FILE`): the shared rvs.toml (required).
//! - `--ctl PATH`: rvs-dp's control region (else `$RVS_CTL`, else
//!   `dataplane.ctl`, else `/dev/shm/rvs.ctl`).
//! - `--check`: validate the file, print what it configures, and exit
//!   (0 valid, 1 invalid).
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

use rvs_cp::config::CpConfig;
use rvs_cp::daemon::{Daemon, Options};

const USAGE: &str = "usage: rvs-cp --config FILE [--ctl PATH] [--check]\n";

fn parse(args: &[String]) -> Result<(Options, bool), String> {
    let mut config = None;
    let mut ctl = None;
    let mut check = false;
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
            "--ctl" => ctl = Some(PathBuf::from(value(name)?)),
            "--check" => check = true,
            "-h" | "--help" => return Err(String::new()),
            "-V" | "--version" => return Err(format!("rvs-cp {}", env!("CARGO_PKG_VERSION"))),
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    let config = config.ok_or("--config FILE is required")?;
    Ok((Options { config, ctl }, check))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, check) = match parse(&args) {
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

    if check {
        return match CpConfig::load(&opts.config) {
            Ok(c) => {
                let reals: usize = c.services.iter().map(|s| s.reals.len()).sum();
                println!(
                    "{}: OK, {} virtual services, {reals} real servers",
                    opts.config.display(),
                    c.services.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        };
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
