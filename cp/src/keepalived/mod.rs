//! The LVS part of an operator's own keepalived.conf, read as it is
//! (`rvs-cp --keepalived-conf FILE`), into the `CpConfig` that rvs.toml
//! also gives: reconcile, checks and metrics do not know which file it was.
//!
//! - `lexer`: words and lines (comments `#` `!`, quotes, braces, `@ID`).
//! - `include`: `include` patterns (globs, braces) expanded in place.
//! - `parse`: statements and `{ }` blocks.
//! - `sync`: `lvs_sync_daemon` in `global_defs`, the sync daemons to run.
//! - `lvs`: `virtual_server_group`, `virtual_server`, `real_server` and
//!   checkers mapped to `ServiceDef`s; what is read, skipped and refused.
//! - `diag`: errors and warnings with their file:line.
//!
//! Nothing is applied unless the whole file (with its includes) is good: a
//! load returns a complete `CpConfig` or an error, so a bad file at SIGHUP
//! leaves the running configuration as it is (daemon::reload).
//!
//! # keepalived semantics, where they differ from rvs.toml's
//!
//! rvs.toml documents keepalived's keywords (see `config`), with a few
//! defaults of its own. For a keepalived.conf, keepalived's rules hold
//! (keepalived.conf(5), version 2.2):
//!
//! - **Start state (`alpha`)**: a checked real server starts UP and is in the
//!   table at once, unless `alpha` is set (on the virtual server, the real
//!   server or the checker), when it starts DOWN. rvs.toml's servers start
//!   DOWN and wait for their first result (`StartState::Pending`).
//! - **Quorum at start**: since every start state is known, the quorum (with
//!   `hysteresis`) is judged at start: with `alpha` and a quorum, the
//!   service starts without quorum (the sorry server in), as keepalived's
//!   quorum sample says. The rule itself (lose below quorum - hysteresis,
//!   regain at quorum + hysteresis) is keepalived's for both files.
//! - **`retry`** (`nb_get_retry`) counts the checks made after a first
//!   failure: a server goes DOWN after retry + 1 failures in a row. Default
//!   retry 1 (MISC_CHECK: 0). rvs.toml's `retry` is the failure count itself.
//! - **`delay_before_retry`** defaults to 3 s for HTTP_GET and 1 s otherwise
//!   (rvs.toml: the delay_loop).
//! - **`status_code`** defaults to 200-299 (rvs.toml: 200); ranges are
//!   allowed.
//! - `connect_timeout` 5 s, `delay_loop` 60 s, `quorum` 1, `lb_kind` NAT,
//!   `protocol` TCP, `lb_algo` wlc, `persistence_timeout` without a value
//!   360 s, `weight` 1: the same in both.
//! - `connect_timeout`, `retry`, `delay_before_retry`, `delay_loop`, `alpha`
//!   given on a virtual server are the defaults of its real servers, and a
//!   real server's are the defaults of its checker.
//! - **`omega`** only makes keepalived run notify scripts at shutdown;
//!   rvs-cp runs none, so it is accepted and changes nothing.
//!
//! What is skipped, warned about and refused is listed in `lvs`.

mod diag;
mod include;
mod lexer;
mod lvs;
mod parse;
mod sync;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use diag::{KeepalivedError, Loc, Warning};

use crate::config::{ControlSettings, CpConfig};

/// A keepalived.conf read into rvs-cp's model.
#[derive(Clone, Debug)]
pub struct KeepalivedConf {
    /// `[control]`-like settings are not in keepalived.conf: defaults.
    pub config: CpConfig,
    pub warnings: Vec<Warning>,
}

/// `rvs-cp --config-id ID` (keepalived's `-i`): set once, at start.
static CONFIG_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the `@ID` of conditional lines for every later `load` (rvs-cp
/// `--config-id`). A second call changes nothing.
pub fn set_config_id(id: &str) {
    let _ = CONFIG_ID.set(id.to_string());
}

/// Reads `path` and its includes, with the id `set_config_id` gave, or else
/// the host name, as the `@ID` of conditional lines (as keepalived `-i`).
///
/// `lvs_sync_daemon` is the line to hide from keepalived this way
/// (`@rvs lvs_sync_daemon ...` with `rvs-cp --config-id rvs`): keepalived
/// would start the kernel's IPVS sync daemon on it, on the same group and
/// port, and without IPVS in the kernel its VRRP process dies (keepalived
/// 2.2.7: "Can't initialize ipvs", then SIGSEGV, respawned in a loop).
pub fn load(path: &Path) -> Result<KeepalivedConf, KeepalivedError> {
    match CONFIG_ID.get() {
        Some(id) => load_as(path, id),
        None => load_as(path, &short_hostname()),
    }
}

/// As `load`, with an explicit configuration id for `@ID` lines.
pub fn load_as(path: &Path, config_id: &str) -> Result<KeepalivedConf, KeepalivedError> {
    let mut warnings = Vec::new();
    let lines = include::read_all(path, config_id, &mut warnings)?;
    let stmts = parse::parse(lines)?;
    let services = lvs::services(&stmts, &mut warnings)?;
    let sync = sync::sync_daemons(&stmts)?;
    Ok(KeepalivedConf {
        config: CpConfig {
            control: ControlSettings::default(),
            ctl: None,
            services,
            sync,
        },
        warnings,
    })
}

/// The host name up to its first dot: keepalived's default config id.
fn short_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    name.split('.').next().unwrap_or("").to_string()
}
