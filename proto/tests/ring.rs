//! Requests and replies through the control rings, from threads and processes.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rvs_proto::region::{Layout, RegionError};
use rvs_proto::ring::{CtlClient, CtlServer};

mod common;
use common::TempPath;

/// A server thread that answers every request with `f(request)`, and records
/// every request id it saw, until stopped.
struct Echo {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<CtlServer>>,
    ids: Arc<Mutex<Vec<u64>>>,
}

impl Echo {
    fn start(server: CtlServer, f: fn(&[u8]) -> Vec<u8>) -> Echo {
        let stop = Arc::new(AtomicBool::new(false));
        let ids = Arc::new(Mutex::new(Vec::new()));
        let (stop2, ids2) = (stop.clone(), ids.clone());
        let handle = thread::spawn(move || {
            let mut server = server;
            while !stop2.load(Ordering::Relaxed) {
                match server.poll_request() {
                    Some((id, req)) => {
                        ids2.lock().unwrap().push(id);
                        server.reply(id, &f(&req)).unwrap();
                    }
                    None => thread::sleep(Duration::from_micros(50)),
                }
            }
            server
        });
        Echo {
            stop,
            handle: Some(handle),
            ids,
        }
    }

    fn stop(mut self) -> (CtlServer, Vec<u64>) {
        self.stop.store(true, Ordering::Relaxed);
        let server = self.handle.take().unwrap().join().unwrap();
        let ids = std::mem::take(&mut *self.ids.lock().unwrap());
        (server, ids)
    }
}

fn same(b: &[u8]) -> Vec<u8> {
    b.to_vec()
}

/// Deterministic payload for client `tag`, request `i`: its length varies from
/// empty to several slots, and every byte depends on (tag, i).
fn payload(tag: u64, i: u64, max: usize) -> Vec<u8> {
    let len = match i % 7 {
        0 => 0,
        1 => 1,
        2 => 511,
        3 => 512,
        4 => 513,
        5 => max,
        _ => (tag as usize * 977 + i as usize * 131) % max,
    };
    (0..len)
        .map(|k| (tag as usize * 31 + i as usize * 7 + k) as u8)
        .collect()
}

/// Small slots, so that most messages span several of them and the rings wrap often.
fn small_layout() -> Layout {
    Layout {
        cmd_slots: 16,
        reply_slots: 64,
        slot_bytes: 512,
        max_msg_bytes: 4096,
        workers: 1,
    }
}

const PER_CLIENT: u64 = 200;
const CHILD_ENV: &str = "RVS_CTL_TEST_CHILD_REGION";
const CHILD_TAG_ENV: &str = "RVS_CTL_TEST_CHILD_TAG";

fn run_client(path: &Path, tag: u64) {
    let mut c = CtlClient::open(path).unwrap();
    let max = c.max_msg();
    for i in 0..PER_CLIENT {
        let req = payload(tag, i, max);
        let mut rep = c
            .request(&req, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("client {tag} #{i}: {e}"));
        assert_eq!(rep.len(), req.len(), "client {tag} #{i}: length");
        assert!(
            rep == req,
            "client {tag} #{i}: got someone else's or a corrupt reply"
        );
        rep.clear();
    }
}

/// Entry point of the child processes of `threads_and_processes_each_get_their_own_replies`;
/// does nothing when run as an ordinary test.
#[test]
fn child_client() {
    let (Ok(path), Ok(tag)) = (std::env::var(CHILD_ENV), std::env::var(CHILD_TAG_ENV)) else {
        return;
    };
    run_client(Path::new(&path), tag.parse().unwrap());
}

#[test]
fn threads_and_processes_each_get_their_own_replies() {
    let p = TempPath::new("concurrent");
    let server = CtlServer::create(&p.0, small_layout()).unwrap();
    let region = server.region().clone();
    let echo = Echo::start(server, same);

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (100..102u64)
        .map(|tag| {
            Command::new(&exe)
                .args(["--exact", "child_client", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, &p.0)
                .env(CHILD_TAG_ENV, tag.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    let threads: Vec<_> = (0..4u64)
        .map(|tag| {
            let path = p.0.clone();
            thread::spawn(move || run_client(&path, tag))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for mut c in children {
        let st = c.wait().unwrap();
        assert!(st.success(), "child client failed: {st}");
    }
    let (_server, ids) = echo.stop();
    assert_eq!(
        ids.len(),
        6 * PER_CLIENT as usize,
        "each request reached rvs-dp exactly once"
    );
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "request ids are unique");
    assert_eq!(region.cmd_dropped(), 0);
    assert_eq!(region.replies_lost(), 0);
}

#[test]
fn round_trip_of_every_size_up_to_a_big_restore() {
    let p = TempPath::new("roundtrip");
    let server = CtlServer::create(&p.0, Layout::default()).unwrap();
    let echo = Echo::start(server, |b| b.iter().rev().copied().collect());
    let mut c = CtlClient::open(&p.0).unwrap();
    for len in [0usize, 1, 7, 8, 8191, 8192, 8193, 100_000, c.max_msg()] {
        let req: Vec<u8> = (0..len).map(|k| (k * 13 + len) as u8).collect();
        let rep = c.request(&req, Duration::from_secs(10)).unwrap();
        let want: Vec<u8> = req.iter().rev().copied().collect();
        assert!(rep == want, "len {len}");
    }
    let e = c
        .request(&vec![0; c.max_msg() + 1], Duration::from_secs(1))
        .unwrap_err();
    assert!(matches!(e, RegionError::TooLarge { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "message of {} bytes exceeds the control ring limit of {} bytes",
            c.max_msg() + 1,
            c.max_msg()
        )
    );
    let (mut server, _) = echo.stop();
    assert!(matches!(
        server.reply(1, &vec![0; c.max_msg() + 1]),
        Err(RegionError::TooLarge { .. })
    ));
}

#[test]
fn silent_rvs_dp_times_out_with_a_clear_error() {
    let p = TempPath::new("timeout");
    let _server = CtlServer::create(&p.0, Layout::default()).unwrap();
    let mut c = CtlClient::open(&p.0).unwrap();
    let t0 = std::time::Instant::now();
    let e = c.request(b"hello", Duration::from_millis(200)).unwrap_err();
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert!(matches!(e, RegionError::Timeout(_)), "{e:?}");
    assert_eq!(e.to_string(), "rvs-dp did not answer within 200ms");
}

#[test]
fn full_command_ring_reports_busy() {
    let p = TempPath::new("busy");
    let layout = Layout {
        cmd_slots: 2,
        reply_slots: 4,
        slot_bytes: 64,
        max_msg_bytes: 128,
        workers: 1,
    };
    let _server = CtlServer::create(&p.0, layout).unwrap();
    let mut c = CtlClient::open(&p.0).unwrap();
    // Nobody consumes: the first request fills both slots, the next cannot get in.
    assert!(matches!(
        c.request(&[1; 100], Duration::from_millis(50)),
        Err(RegionError::Timeout(_))
    ));
    let e = c.request(b"x", Duration::from_millis(50)).unwrap_err();
    assert!(matches!(e, RegionError::Busy(_)), "{e:?}");
}

#[test]
fn restart_is_detected_and_the_client_reconnects() {
    let p = TempPath::new("restart");
    let s1 = CtlServer::create(&p.0, Layout::default()).unwrap();
    let echo1 = Echo::start(s1, |_| b"one".to_vec());
    let mut c = CtlClient::open(&p.0).unwrap();
    assert_eq!(c.request(b"?", Duration::from_secs(5)).unwrap(), b"one");
    let g1 = c.generation();
    let (s1, _) = echo1.stop();

    // rvs-dp restarts: a new region replaces the old one at the same path.
    let s2 = CtlServer::create(&p.0, Layout::with_workers(2)).unwrap();
    assert_ne!(s2.generation(), g1);
    assert!(!s1.region().is_current());
    drop(s1); // the old rvs-dp going away must not remove the new region
    assert!(p.0.exists());
    let echo2 = Echo::start(s2, |_| b"two".to_vec());

    let e = c.request(b"?", Duration::from_secs(5)).unwrap_err();
    assert!(
        matches!(e, RegionError::Restarted { old, new, sent: false } if old == g1 && new != g1),
        "{e:?}"
    );
    assert!(e.to_string().contains("request was not sent"), "{e}");
    assert_ne!(c.generation(), g1);
    assert_eq!(c.region().layout().workers, 2);
    assert_eq!(c.request(b"?", Duration::from_secs(5)).unwrap(), b"two");
    let (s2, _) = echo2.stop();

    // rvs-dp stops for good.
    drop(s2);
    let e = c.request(b"?", Duration::from_secs(1)).unwrap_err();
    assert!(matches!(e, RegionError::NotRunning { .. }), "{e:?}");
}

#[test]
fn restart_while_waiting_is_reported_as_maybe_lost() {
    let p = TempPath::new("restart-wait");
    let s1 = CtlServer::create(&p.0, Layout::default()).unwrap();
    let mut c = CtlClient::open(&p.0).unwrap();
    let path = p.0.clone();
    let restarter = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        let s2 = CtlServer::create(&path, Layout::default()).unwrap();
        drop(s1);
        s2
    });
    let e = c.request(b"never answered", Duration::from_secs(5)).unwrap_err();
    assert!(matches!(e, RegionError::Restarted { sent: true, .. }), "{e:?}");
    let s2 = restarter.join().unwrap();
    assert_eq!(c.generation(), s2.generation());
}
