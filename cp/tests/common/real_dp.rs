//! rvs-dp without ports, shared by the big-table tests and the apply
//! benchmark (`cp/examples/apply_bench.rs` includes this file by path): the
//! real `ControlPlane` serving the real ring, and one worker switching to each
//! new snapshot as a real one does between bursts.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rvs_dp::control::ControlPlane;
use rvs_dp::core::{CoreOptions, Forwarder, Shared};
use rvs_dp::route::RouteTable;
use rvs_proto::region::Layout;
use rvs_proto::ring::CtlServer;

pub struct RealDp {
    pub path: PathBuf,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl RealDp {
    /// Serves a region at `path`; the worker looks for a new snapshot every
    /// `refresh` (a real one does between bursts).
    pub fn start(path: PathBuf, refresh: Duration) -> RealDp {
        let shared = Arc::new(Shared::new(vec![], RouteTable::new(), 1, CoreOptions::default()));
        let mut server = CtlServer::create(&path, Layout::with_workers(1)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (s1, s2) = (stop.clone(), stop.clone());
        let sh = shared.clone();
        let worker = std::thread::spawn(move || {
            let mut fwd = Forwarder::new(0, sh, 64);
            while !s1.load(Ordering::Relaxed) {
                fwd.refresh();
                std::thread::sleep(refresh);
            }
        });
        let control = std::thread::spawn(move || {
            let mut cp = ControlPlane::new(shared, 1024);
            cp.run(&mut server, || s2.load(Ordering::Relaxed), Vec::new, Vec::new);
        });
        RealDp {
            path,
            stop,
            threads: vec![worker, control],
        }
    }
}

impl Drop for RealDp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
