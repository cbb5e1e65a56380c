use std::ffi::{c_char, c_int, c_void, CString};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use dpdk_sys as sys;

use super::DpdkError;

/// An lcore id, as DPDK numbers them (`-l 0-3` gives 0..=3).
pub type Lcore = u32;

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// The initialised DPDK environment. One per process: `rte_eal_init` cannot be
/// called again, even after `rte_eal_cleanup`.
///
/// Dropping it waits for every worker lcore and then runs `rte_eal_cleanup`,
/// which releases the memory behind all mempools, rings and ports: keep it
/// alive (in `main`) for as long as those are used.
#[derive(Debug)]
pub struct Eal {
    args_consumed: usize,
    // Cleanup must run on the thread that initialised EAL (the main lcore).
    _not_send: PhantomData<*const ()>,
}

type Job = Box<dyn FnOnce() + Send + 'static>;

unsafe extern "C" fn run_job(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Job> leaked by `launch_on`, handed to exactly
    // one worker, so it is reclaimed exactly once.
    let job = unsafe { Box::from_raw(arg as *mut Job) };
    // A panic must not unwind into C; the worker reports -1 to `wait`.
    match catch_unwind(AssertUnwindSafe(job)) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

impl Eal {
    /// Runs `rte_eal_init` on `args`, which start with the program name like
    /// `std::env::args()`. EAL options stop at the first non-option or at
    /// `--`; the application's own arguments are then
    /// `&args[1 + eal.args_consumed()..]`.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::AlreadyInitialized);
        }
        let mut owned = Vec::with_capacity(args.len() + 1);
        if args.is_empty() {
            owned.push(CString::from(c"rvs"));
        }
        for a in args {
            match CString::new(a.as_str()) {
                Ok(c) => owned.push(c),
                Err(_) => {
                    INITIALISED.store(false, Ordering::SeqCst);
                    return Err(DpdkError::InvalidArgument(format!(
                        "EAL argument with NUL: {a:?}"
                    )));
                }
            }
        }
        // EAL permutes argv and may keep pointers into it (saved for
        // telemetry): give it storage that lives for the whole process.
        let strings: &'static mut [CString] = Vec::leak(owned);
        let mut argv: Vec<*mut c_char> = strings.iter().map(|c| c.as_ptr() as *mut c_char).collect();
        let argc = argv.len() as c_int;
        argv.push(std::ptr::null_mut());
        let argv: &'static mut [*mut c_char] = Vec::leak(argv);

        // SAFETY: argv is a NULL-terminated array of argc C strings that
        // outlive the process.
        let ret = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            let mut err = DpdkError::last("rte_eal_init");
            // EAL gives no reason code for its commonest failure, a second
            // primary process on the same runtime directory: name it.
            if err.errno() == Some(0) {
                err = DpdkError::EalInit(match config_lock_holder(args) {
                    Some((path, pid)) => format!(
                        "another DPDK primary process (pid {pid}) holds {path}: give each process its own --file-prefix (or --no-shconf)"
                    ),
                    None => "EAL gave no reason code; see its EAL: lines above".into(),
                });
            }
            // EAL resets its own once-flag on argument errors; let it decide
            // (it reports EALREADY) whether a second try is possible.
            INITIALISED.store(false, Ordering::SeqCst);
            return Err(err);
        }
        Ok(Eal {
            args_consumed: ret as usize,
            _not_send: PhantomData,
        })
    }

    /// How many arguments after the program name EAL consumed (including a
    /// `--` separator).
    pub fn args_consumed(&self) -> usize {
        self.args_consumed
    }

    pub fn main_lcore(&self) -> Lcore {
        // SAFETY: plain getter, valid after init.
        unsafe { sys::rte_get_main_lcore() }
    }

    pub fn lcore_count(&self) -> u32 {
        // SAFETY: plain getter, valid after init.
        unsafe { sys::rte_lcore_count() }
    }

    /// Enabled worker lcores (all but the main one), in id order.
    pub fn worker_lcores(&self) -> Vec<Lcore> {
        let mut out = Vec::new();
        let mut i = u32::MAX; // rte_get_next_lcore starts from i + 1, wrapping -1 to 0.
        loop {
            // SAFETY: plain iteration over the lcore config table.
            i = unsafe { sys::rte_get_next_lcore(i, 1, 0) };
            if i >= sys::RTE_MAX_LCORE {
                return out;
            }
            out.push(i);
        }
    }

    /// NUMA socket of an lcore (for per-socket mempools).
    pub fn lcore_socket(&self, lcore: Lcore) -> u32 {
        // SAFETY: out-of-range ids return an error value, not UB.
        unsafe { sys::rte_lcore_to_socket_id(lcore) }
    }

    /// Runs `f` on worker `lcore`, which must be idle. Use [`Eal::wait`] or
    /// [`Eal::wait_all`] to join it.
    pub fn launch_on<F>(&self, lcore: Lcore, f: F) -> Result<(), DpdkError>
    where
        F: FnOnce() + Send + 'static,
    {
        let job: Box<Job> = Box::new(Box::new(f));
        let arg = Box::into_raw(job) as *mut c_void;
        // SAFETY: run_job takes ownership of arg iff the launch succeeds.
        let ret = unsafe { sys::rte_eal_remote_launch(Some(run_job), arg, lcore) };
        if ret < 0 {
            // SAFETY: not launched, so we still own the job.
            drop(unsafe { Box::from_raw(arg as *mut Job) });
            return Err(DpdkError::from_ret("rte_eal_remote_launch", ret));
        }
        Ok(())
    }

    /// Waits for `lcore`'s job: 0 if it returned, -1 if it panicked, 0 at once
    /// if nothing was launched there.
    pub fn wait(&self, lcore: Lcore) -> i32 {
        // SAFETY: blocks on the lcore's state; any id is accepted.
        unsafe { sys::rte_eal_wait_lcore(lcore) }
    }

    /// Waits for every worker lcore.
    pub fn wait_all(&self) {
        // SAFETY: only blocks.
        unsafe { sys::rte_eal_mp_wait_lcore() }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        self.wait_all();
        // SAFETY: workers are idle; the caller keeps no DPDK object past here
        // (see the type's docs).
        unsafe {
            sys::rte_eal_cleanup();
        }
    }
}

/// The current lcore id; `u32::MAX` (LCORE_ID_ANY) on a thread DPDK did not
/// create.
pub fn lcore_id() -> Lcore {
    // SAFETY: reads a thread-local.
    unsafe { sys::rvs_lcore_id() }
}

/// TSC ticks per second (0 before EAL init).
pub fn tsc_hz() -> u64 {
    // SAFETY: plain getter.
    unsafe { sys::rte_get_tsc_hz() }
}

/// The CPU time-stamp counter, inlined (no call through the shim).
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    #[allow(unused_unsafe)]
    // SAFETY: RDTSC has no preconditions on x86_64.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: reads the cycle counter.
    unsafe {
        sys::rvs_rdtsc()
    }
}

/// The process holding the lock on EAL's shared config file for the
/// `--file-prefix` in `args` (root's runtime directory), if any.
fn config_lock_holder(args: &[String]) -> Option<(String, i32)> {
    let mut prefix = "rte".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if let Some(v) = a.strip_prefix("--file-prefix=") {
            prefix = v.to_string();
        } else if a == "--file-prefix" {
            prefix = it.next()?.clone();
        }
    }
    let path = format!("/var/run/dpdk/{prefix}/config");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .ok()?;
    let mut lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    // SAFETY: F_GETLK only fills in `lock`, which lives across the call; the
    // fd is open for as long as `file` is.
    let r = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_GETLK, &mut lock) };
    (r == 0 && lock.l_type != libc::F_UNLCK as libc::c_short).then_some((path, lock.l_pid))
}
