//! NIC flow rules that deliver FULLNAT replies (RIP:rport → LIP:lport)
//! straight to the worker owning `lport` (`laddr::owner_of_port`), so the
//! software redirect ring has nothing to do. Control side only: rules change
//! when a port's set of local addresses does, never per packet.
//!
//! Per port, a mode, found at run time and then remembered:
//!
//! - [`Mode::Classes`]: per (LIP, proto), rules on the destination port
//!   under a mask: with a power-of-two worker count, mask `workers - 1`, one
//!   rule per worker; otherwise mask `0x3f`, one rule per port class (64).
//! - [`Mode::Exact`]: NICs that match exact ports only (DPDK's net_tap: its
//!   TC flower backend takes no port mask): one rule per port of the local
//!   port range, per (LIP, proto), while the port's total stays within
//!   `max_rules`.
//! - [`Mode::None`]: no rules; the software redirect does it all.
//!
//! Classes first, then exact, then none. A mode that fails on any rule of a
//! port (validate or create) is given up for that port as a whole: every
//! rule made there is destroyed and the next mode is tried, so a LIP is never
//! left half steered. A device's refusal is for good on that port; a port
//! that fell to none only because exact rules would pass the cap gets them
//! back once its local addresses fit under it again. A rule only steers: whatever it misses, the redirect
//! still catches, so removing rules is never unsafe.
//!
//! The device is a trait ([`FlowDevice`]); `dpdk::flow` binds it to
//! `rte_flow`, the tests to a fake.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use super::laddr::owner_of_port;
use crate::flow::Proto;

/// The most rules `Mode::Exact` may install on one port, unless configured.
pub const DEFAULT_MAX_RULES: usize = 4096;

/// The port classes `owner_of_port` spreads over the workers.
const CLASSES: u16 = 64;

/// What one port steers: replies of `proto` to `lip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub lip: Ipv4Addr,
    pub proto: Proto,
}

/// One rule: ETH / IPV4 dst=`lip` / `proto` dst port `dport` under `mask`
/// → rx queue `queue` (worker w reads queue w of every port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRule {
    pub lip: Ipv4Addr,
    pub proto: Proto,
    pub dport: u16,
    pub mask: u16,
    pub queue: u16,
}

/// How a port steers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Classes,
    Exact,
    None,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Classes => "classes",
            Mode::Exact => "exact",
            Mode::None => "none",
        }
    }

    fn next(self) -> Mode {
        match self {
            Mode::Classes => Mode::Exact,
            Mode::Exact | Mode::None => Mode::None,
        }
    }
}

/// The rules of `t` under the masked mode: one per worker when the worker
/// count is a power of two (`lport & (w-1)` is then the owner), else one per
/// class of `lport & 0x3f`. Empty with one worker: nothing to steer.
pub fn class_rules(t: Target, workers: u16) -> Vec<FlowRule> {
    if workers <= 1 {
        return Vec::new();
    }
    let (n, mask) = if workers.is_power_of_two() && workers <= CLASSES {
        (workers, workers - 1)
    } else {
        (CLASSES, CLASSES - 1)
    };
    (0..n)
        .map(|c| FlowRule {
            lip: t.lip,
            proto: t.proto,
            dport: c,
            mask,
            queue: owner_of_port(c, workers),
        })
        .collect()
}

/// The rules of `t` under the exact mode: one per port of `ports`.
pub fn exact_rules(t: Target, ports: &RangeInclusive<u16>, workers: u16) -> Vec<FlowRule> {
    if workers <= 1 {
        return Vec::new();
    }
    ports
        .clone()
        .map(|p| FlowRule {
            lip: t.lip,
            proto: t.proto,
            dport: p,
            mask: u16::MAX,
            queue: owner_of_port(p, workers),
        })
        .collect()
}

/// How many rules `mode` takes per target.
pub fn rules_per_target(mode: Mode, ports: &RangeInclusive<u16>, workers: u16) -> usize {
    match mode {
        _ if workers <= 1 => 0,
        Mode::Classes if workers.is_power_of_two() && workers <= CLASSES => usize::from(workers),
        Mode::Classes => usize::from(CLASSES),
        Mode::Exact => ports.clone().count(),
        Mode::None => 0,
    }
}

fn rules(mode: Mode, t: Target, ports: &RangeInclusive<u16>, workers: u16) -> Vec<FlowRule> {
    match mode {
        Mode::Classes => class_rules(t, workers),
        Mode::Exact => exact_rules(t, ports, workers),
        Mode::None => Vec::new(),
    }
}

/// What a port should steer: port index → targets.
pub type Want = BTreeMap<u16, BTreeSet<Target>>;

/// The device rules go to. `port` is rvs-dp's port index.
pub trait FlowDevice {
    type Handle;
    /// Whether the device would take `rule` (nothing is installed).
    fn validate(&mut self, port: u16, rule: &FlowRule) -> Result<(), String>;
    fn create(&mut self, port: u16, rule: &FlowRule) -> Result<Self::Handle, String>;
    fn destroy(&mut self, port: u16, handle: Self::Handle) -> Result<(), String>;
}

/// Knobs of [`Steering`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SteerConfig {
    /// `flow_steering = false`: every port gets `Mode::None`.
    pub enabled: bool,
    pub workers: u16,
    /// The local port range (`[fullnat]`), which exact rules cover.
    pub ports: RangeInclusive<u16>,
    /// Most rules on one port in `Mode::Exact`.
    pub max_rules: usize,
}

/// A port's steering as an operator reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSteer {
    pub port: u16,
    pub mode: Mode,
    pub rules: usize,
    /// Why the port got `Mode::None`, or gave up classes for exact.
    pub reason: String,
}

impl fmt::Display for PortSteer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {} flow steering: ", self.port)?;
        match self.mode {
            Mode::None => write!(f, "none ({})", self.reason),
            m if self.reason.is_empty() => write!(f, "{}({} rules)", m.name(), self.rules),
            m => write!(f, "{}({} rules) ({})", m.name(), self.rules, self.reason),
        }
    }
}

struct PortState<H> {
    /// None until the port first had something to steer.
    mode: Option<Mode>,
    reason: String,
    installed: BTreeMap<Target, Vec<H>>,
    /// In `Mode::None` only for `max_rules`: the NIC took exact rules, so
    /// they are tried again once the port's targets fit under the cap.
    capped: bool,
}

impl<H> Default for PortState<H> {
    fn default() -> Self {
        PortState {
            mode: None,
            reason: String::new(),
            installed: BTreeMap::new(),
            capped: false,
        }
    }
}

impl<H> PortState<H> {
    fn rules(&self) -> usize {
        self.installed.values().map(Vec::len).sum()
    }
}

/// Why a mode could not steer a port's targets.
enum FillError {
    /// The device refused a rule.
    Device(String),
    /// Exact rules would pass `max_rules`.
    OverCap(String),
}

impl fmt::Display for FillError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FillError::Device(s) | FillError::OverCap(s) => f.write_str(s),
        }
    }
}

/// Every port's rules, kept in step with the local addresses.
pub struct Steering<D: FlowDevice> {
    dev: D,
    cfg: SteerConfig,
    ports: BTreeMap<u16, PortState<D::Handle>>,
}

impl<D: FlowDevice> Steering<D> {
    pub fn new(dev: D, cfg: SteerConfig) -> Self {
        Steering {
            dev,
            cfg,
            ports: BTreeMap::new(),
        }
    }

    /// Brings every port to `want` (ports absent from it steer nothing).
    /// Returns the ports whose mode was decided or changed, to log once.
    pub fn apply(&mut self, want: &Want) -> Vec<PortSteer> {
        let empty = BTreeSet::new();
        let ports: BTreeSet<u16> = self.ports.keys().chain(want.keys()).copied().collect();
        let mut changed = Vec::new();
        for port in ports {
            let w = want.get(&port).unwrap_or(&empty);
            if let Some(report) = self.apply_port(port, w) {
                changed.push(report);
            }
        }
        changed
    }

    fn apply_port(&mut self, port: u16, want: &BTreeSet<Target>) -> Option<PortSteer> {
        let mut st = self.ports.remove(&port).unwrap_or_default();
        // Targets that went: their rules go (they only steered).
        let gone: Vec<Target> = st
            .installed
            .keys()
            .filter(|t| !want.contains(t))
            .copied()
            .collect();
        for t in gone {
            if let Some(hs) = st.installed.remove(&t) {
                self.destroy_all(port, hs);
            }
        }
        let before = st.mode;
        if st.capped
            && !want.is_empty()
            && rules_per_target(Mode::Exact, &self.cfg.ports, self.cfg.workers) * want.len()
                <= self.cfg.max_rules
        {
            st.mode = Some(Mode::Exact);
            st.capped = false;
            st.reason = "exact rules fit under the cap again".into();
        }
        if !want.is_empty() {
            let mut mode = st.mode.unwrap_or(Mode::Classes);
            if st.mode.is_none() {
                if !self.cfg.enabled {
                    mode = Mode::None;
                    st.reason = "disabled by flow_steering = false".into();
                } else if self.cfg.workers <= 1 {
                    mode = Mode::None;
                    st.reason = "one worker: nothing to steer".into();
                }
            }
            loop {
                match self.fill(port, mode, &mut st, want) {
                    Ok(()) => break,
                    Err(why) => {
                        // Given up as a whole: nothing of this mode stays.
                        for (_, hs) in std::mem::take(&mut st.installed) {
                            self.destroy_all(port, hs);
                        }
                        st.capped = matches!(why, FillError::OverCap(_));
                        st.reason = match (mode, why) {
                            (Mode::Classes, why) => format!("classes refused: {why}"),
                            (_, why) => why.to_string(),
                        };
                        mode = mode.next();
                    }
                }
            }
            st.mode = Some(mode);
        }
        let report = (st.mode != before).then(|| self.report_of(port, &st));
        self.ports.insert(port, st);
        report
    }

    /// Installs, in `mode`, the rules of every target of `want` not yet
    /// steered. On an error, the rules made for the failing target are
    /// already destroyed; the caller destroys the rest.
    fn fill(
        &mut self,
        port: u16,
        mode: Mode,
        st: &mut PortState<D::Handle>,
        want: &BTreeSet<Target>,
    ) -> Result<(), FillError> {
        if mode == Mode::None {
            return Ok(());
        }
        let missing: Vec<Target> = want
            .iter()
            .filter(|t| !st.installed.contains_key(t))
            .copied()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let per = rules_per_target(mode, &self.cfg.ports, self.cfg.workers);
        let total = st.rules() + per * missing.len();
        if mode == Mode::Exact && total > self.cfg.max_rules {
            return Err(FillError::OverCap(format!(
                "exact port rules would be {total}, over the cap of {} per port",
                self.cfg.max_rules
            )));
        }
        let first_time = st.mode != Some(mode);
        for t in missing {
            let rs = rules(mode, t, &self.cfg.ports, self.cfg.workers);
            if first_time {
                if let Some(r) = rs.first() {
                    self.dev.validate(port, r).map_err(FillError::Device)?;
                }
            }
            let mut made = Vec::with_capacity(rs.len());
            for r in &rs {
                match self.dev.create(port, r) {
                    Ok(h) => made.push(h),
                    Err(e) => {
                        self.destroy_all(port, made);
                        return Err(FillError::Device(e));
                    }
                }
            }
            st.installed.insert(t, made);
        }
        Ok(())
    }

    fn destroy_all(&mut self, port: u16, hs: Vec<D::Handle>) {
        for h in hs {
            if let Err(e) = self.dev.destroy(port, h) {
                // The rule may still steer: harmless, the owner gets it.
                eprintln!("rvs-dp: port {port} flow steering: destroying a rule: {e}");
            }
        }
    }

    fn report_of(&self, port: u16, st: &PortState<D::Handle>) -> PortSteer {
        PortSteer {
            port,
            mode: st.mode.unwrap_or(Mode::None),
            rules: st.rules(),
            reason: st.reason.clone(),
        }
    }

    /// Every port that has had something to steer, as it stands.
    pub fn report(&self) -> Vec<PortSteer> {
        (self.ports.iter())
            .filter(|(_, st)| st.mode.is_some())
            .map(|(&p, st)| self.report_of(p, st))
            .collect()
    }

    /// Whether replies of `t` arriving on `port` are steered there by rules.
    pub fn steers(&self, port: u16, t: &Target) -> bool {
        self.ports
            .get(&port)
            .is_some_and(|st| st.installed.get(t).is_some_and(|hs| !hs.is_empty()))
    }

    /// Destroys every rule (at exit).
    pub fn clear(&mut self) {
        let ports: Vec<u16> = self.ports.keys().copied().collect();
        for p in ports {
            if let Some(st) = self.ports.get_mut(&p) {
                let inst = std::mem::take(&mut st.installed);
                for (_, hs) in inst {
                    self.destroy_all(p, hs);
                }
            }
        }
    }
}

/// The control plane's view of a [`Steering`], whatever its device.
pub trait Steer: Send {
    fn apply(&mut self, want: &Want) -> Vec<PortSteer>;
    fn steers(&self, port: u16, t: &Target) -> bool;
    fn report(&self) -> Vec<PortSteer>;
    fn clear(&mut self);
}

impl<D: FlowDevice + Send> Steer for Steering<D>
where
    D::Handle: Send,
{
    fn apply(&mut self, want: &Want) -> Vec<PortSteer> {
        Steering::apply(self, want)
    }
    fn steers(&self, port: u16, t: &Target) -> bool {
        Steering::steers(self, port, t)
    }
    fn report(&self) -> Vec<PortSteer> {
        Steering::report(self)
    }
    fn clear(&mut self) {
        Steering::clear(self)
    }
}

#[cfg(test)]
mod tests;
