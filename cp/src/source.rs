//! The file rvs-cp reads: rvs.toml (`--config`) or an operator's
//! keepalived.conf (`--keepalived-conf`). Both load into one `CpConfig`,
//! complete or not at all, so that start, SIGHUP reload and the check modes
//! treat them alike.

use std::path::{Path, PathBuf};

use rvs_proto::command::Command;
use rvs_proto::ipvs::IpvsConfig;
use tracing::warn;

use crate::adm::format;
use crate::config::CpConfig;
use crate::keepalived;
use crate::reconcile::Table;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// rvs.toml, shared with rvs-dp.
    Rvs(PathBuf),
    /// keepalived.conf: its LVS blocks; `[control]` settings at their defaults.
    Keepalived(PathBuf),
}

impl ConfigSource {
    pub fn path(&self) -> &Path {
        match self {
            ConfigSource::Rvs(p) | ConfigSource::Keepalived(p) => p,
        }
    }

    /// Reads and validates the file. The error names the file and, for a
    /// keepalived.conf, the line. A keepalived.conf's warnings are logged.
    pub fn load(&self) -> Result<CpConfig, String> {
        let (cfg, warnings) = self.load_with_warnings()?;
        for w in warnings {
            warn!("{w}");
        }
        Ok(cfg)
    }

    /// As `load`, handing the warnings back instead of logging them.
    pub fn load_with_warnings(&self) -> Result<(CpConfig, Vec<String>), String> {
        match self {
            ConfigSource::Rvs(p) => CpConfig::load(p)
                .map(|c| (c, Vec::new()))
                .map_err(|e| e.to_string()),
            ConfigSource::Keepalived(p) => match keepalived::load(p) {
                Ok(k) => Ok((k.config, k.warnings.iter().map(ToString::to_string).collect())),
                Err(e) => Err(e.to_string()),
            },
        }
    }
}

/// `table` as `ipvsadm -S -n` prints it, through the ipvsadm model (which
/// refuses what ipvsadm would).
pub fn save_text(table: &Table) -> Result<String, String> {
    let mut ipvs = IpvsConfig::new();
    for rules in table.values() {
        let key = rules.spec.key();
        ipvs.apply(&Command::AddService(rules.spec.clone()))
            .map_err(|e| format!("{key}: {e}"))?;
        for d in &rules.dests {
            ipvs.apply(&Command::AddDest(key, d.clone()))
                .map_err(|e| format!("{key}: {}:{}: {e}", d.rip, d.port))?;
        }
        for l in &rules.laddrs {
            ipvs.apply(&Command::AddLaddr(key, l.clone()))
                .map_err(|e| format!("{key}: local address {}: {e}", l.addr))?;
        }
    }
    Ok(format::save(&ipvs.list()))
}
