//! MISC_CHECK: runs `misc_path` through `sh -c`; exit status 0 is healthy.
//! A script still running after misc_timeout is killed, with everything it
//! started (it runs in its own process group), and counts as a failure.
//! keepalived's `misc_dynamic` (exit status as a new weight) is not supported.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Outcome;

pub fn check(command: &str, timeout: Duration) -> Outcome {
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Outcome::down(format!("MISC_CHECK cannot run sh: {e}")),
    };
    let end = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                return match st.code() {
                    Some(0) => Outcome::up("MISC_CHECK exit status 0".into()),
                    Some(c) => Outcome::down(format!("MISC_CHECK exit status {c}")),
                    None => Outcome::down(format!("MISC_CHECK {st}")),
                }
            }
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                // SAFETY: kill(2) on the process group we created for the child.
                unsafe {
                    libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::down(format!("MISC_CHECK timed out after {timeout:?}, killed"));
            }
            Err(e) => return Outcome::down(format!("MISC_CHECK wait: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_and_timeout() {
        assert!(check("exit 0", Duration::from_secs(5)).ok);
        let o = check("exit 3", Duration::from_secs(5));
        assert_eq!(o, Outcome::down("MISC_CHECK exit status 3".into()));
        let t = Instant::now();
        let o = check("sleep 5", Duration::from_millis(200));
        assert!(!o.ok && o.detail.contains("timed out"), "{o:?}");
        assert!(t.elapsed() < Duration::from_secs(2), "killed, not waited for");
    }
}
