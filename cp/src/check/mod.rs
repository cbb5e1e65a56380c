//! Health checks, keepalived's three kinds: TCP_CHECK (`tcp`), HTTP_GET
//! (`http`) and MISC_CHECK (`misc`).
//!
//! Each checked real server gets its own thread, so a slow or hung check
//! (a black-holed address, a script that sleeps) never delays another. A
//! thread only reports raw results; the daemon owns the fall/rise counting
//! (`Health`) so that every transition is decided, and logged, in one place.
//!
//! A checked real server starts as its `CheckDef::start` says: from rvs.toml
//! DOWN, waiting for its first result (a server that never answered never
//! receives traffic); from a keepalived.conf UP, or DOWN with `alpha`, as
//! keepalived does. It comes UP after `rise` successes in a row; an UP one
//! goes DOWN after `fall` failures in a row. A real server without a check
//! is UP.

pub mod http;
pub mod misc;
pub mod tcp;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{CheckDef, CheckKind, RealId, StartState};

/// The outcome of one check: healthy or not, and why (for the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    pub detail: String,
}

impl Outcome {
    pub fn up(detail: String) -> Outcome {
        Outcome { ok: true, detail }
    }
    pub fn down(detail: String) -> Outcome {
        Outcome { ok: false, detail }
    }
}

/// A check made ready to run repeatedly (the regex compiled once).
pub enum Prepared {
    Tcp,
    Http(http::HttpCheck),
    Misc { command: String, timeout: Duration },
}

impl Prepared {
    pub fn new(def: &CheckDef) -> Prepared {
        match &def.kind {
            CheckKind::Tcp => Prepared::Tcp,
            CheckKind::Http {
                path,
                status_codes,
                digest,
                regex,
            } => Prepared::Http(http::HttpCheck {
                path: path.clone(),
                status_codes: status_codes.clone(),
                digest: digest.clone(),
                // Validated when the config was read; an invalid one cannot get here.
                regex: regex.as_deref().and_then(|r| regex::Regex::new(r).ok()),
            }),
            CheckKind::Misc { command, timeout } => Prepared::Misc {
                command: command.clone(),
                timeout: *timeout,
            },
        }
    }
}

/// Runs one check now.
pub fn run_once(def: &CheckDef, prepared: &Prepared) -> Outcome {
    match prepared {
        Prepared::Tcp => tcp::check(def.target, def.connect_timeout),
        Prepared::Http(h) => h.check(def.target, def.connect_timeout),
        Prepared::Misc { command, timeout } => misc::check(command, *timeout),
    }
}

/// One result, sent by a check thread to the daemon.
#[derive(Clone, Debug)]
pub struct CheckEvent {
    pub id: RealId,
    /// Which incarnation of the check (a restarted check gets a new epoch,
    /// so late results of the old thread are ignored).
    pub epoch: u64,
    pub outcome: Outcome,
}

/// Stops its check thread when dropped. The thread is not joined: a check in
/// progress (up to its timeout) finishes on its own and its result is
/// discarded.
pub struct CheckHandle {
    stop: Arc<AtomicBool>,
    pub epoch: u64,
}

impl Drop for CheckHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sleeps up to `d`, waking early when `stop` is set.
fn pause(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// Starts the check thread of one real server: check, report, wait
/// `delay_loop` (or `delay_before_retry` after a failure), again.
pub fn spawn(id: RealId, epoch: u64, def: CheckDef, tx: Sender<CheckEvent>) -> std::io::Result<CheckHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let name = format!("check {}:{}", id.1, id.2);
    std::thread::Builder::new().name(name).spawn(move || {
        let prepared = Prepared::new(&def);
        while !flag.load(Ordering::Relaxed) {
            let outcome = run_once(&def, &prepared);
            let wait = if outcome.ok { def.delay } else { def.retry_delay };
            if flag.load(Ordering::Relaxed) || tx.send(CheckEvent { id, epoch, outcome }).is_err() {
                return;
            }
            pause(wait, &flag);
        }
    })?;
    Ok(CheckHandle { stop, epoch })
}

/// fall/rise bookkeeping of one real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    pub up: bool,
    /// At least one result came in (always true without a check).
    pub checked: bool,
    pub successes: u32,
    pub failures: u32,
}

impl Health {
    /// The health of a real server before any result: `check.start`, or UP
    /// without a check.
    pub fn of(check: Option<&CheckDef>) -> Health {
        Health::start(check.map_or(StartState::Up, |c| c.start))
    }

    fn start(s: StartState) -> Health {
        Health {
            up: s == StartState::Up,
            checked: s != StartState::Pending,
            successes: 0,
            failures: 0,
        }
    }

    /// Counts one result; returns the new state when it changes.
    pub fn observe(&mut self, ok: bool, fall: u32, rise: u32) -> Option<bool> {
        self.checked = true;
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if !self.up && self.successes >= rise {
                self.up = true;
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.up && self.failures >= fall {
                self.up = false;
                return Some(false);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_and_rise_count_results_in_a_row() {
        let mut h = Health::start(StartState::Pending);
        assert!(!h.up && !h.checked);
        assert_eq!(h.observe(true, 3, 2), None);
        assert!(h.checked);
        assert_eq!(h.observe(false, 3, 2), None, "a failure resets the rise count");
        assert_eq!(h.observe(true, 3, 2), None);
        assert_eq!(h.observe(true, 3, 2), Some(true));
        assert_eq!(h.observe(false, 3, 2), None);
        assert_eq!(h.observe(false, 3, 2), None);
        assert_eq!(h.observe(true, 3, 2), None, "a success resets the fall count");
        assert_eq!(h.observe(false, 3, 2), None);
        assert_eq!(h.observe(false, 3, 2), None);
        assert_eq!(h.observe(false, 3, 2), Some(false));
        assert_eq!(h.observe(false, 3, 2), None, "already down");
        assert!(Health::of(None).up && Health::of(None).checked);
        let up = Health::start(StartState::Up);
        assert!(up.up && up.checked, "keepalived without alpha: up, and judged");
        let down = Health::start(StartState::Down);
        assert!(!down.up && down.checked, "alpha: down, and judged");
    }
}
