//! Waiting for the dpkg/apt locks inside the root.
//!
//! At first boot `unattended-upgrades` (apt-daily-upgrade) may hold them. apt and dpkg take
//! POSIX `fcntl(F_SETLK)` write locks on these files; we probe with the same kind of lock,
//! non-blocking, and release it immediately (closing the file), once a second, until the deadline.
//! cloud-init waits a hard-coded 30 s; ours is `--lock-timeout` / `BOOTCFG_LOCK_TIMEOUT`
//! (default 300 s).
//!
//! The lock files are opened with [`crate::rootfs::Root::open_existing_lock_file`], so the lookup
//! is confined to the root like every other file operation (a symlinked lock file cannot make us
//! open, or lock, a file outside it).

use std::path::Path;
use std::time::{Duration, Instant};

/// The lock files, in the order apt takes them.
pub const DPKG_LOCKS: &[&str] = &[
    "/var/lib/dpkg/lock-frontend",
    "/var/lib/dpkg/lock",
    "/var/cache/apt/archives/lock",
    "/var/lib/apt/lists/lock",
];

/// `Some(path)` of the first lock someone holds right now.
pub fn held_lock(root: &Path) -> Result<Option<&'static str>, String> {
    let root = crate::rootfs::Root::new(root).map_err(|e| e.to_string())?;
    for l in DPKG_LOCKS {
        // Opened through the root's confined lookup (never created: a missing lock is not held).
        let Some(f) = root.open_existing_lock_file(l).map_err(|e| e.to_string())? else {
            continue;
        };
        match rustix::fs::fcntl_lock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => drop(f), // closing releases our probe lock
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS => {
                return Ok(Some(l));
            }
            Err(e) => return Err(format!("{} (in {}): {e}", l, root.path().display())),
        }
    }
    Ok(None)
}

/// Wait until no dpkg/apt lock is held, or fail at `deadline`.
pub fn wait_for_dpkg_locks(
    root: &Path,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), String> {
    let mut warned = false;
    loop {
        match held_lock(root)? {
            None => return Ok(()),
            Some(l) => {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "{l} is still held by another process after {} s (unattended-upgrades or another apt run); \
                         raise --lock-timeout / BOOTCFG_LOCK_TIMEOUT or stop that process",
                        timeout.as_secs()
                    ));
                }
                if !warned {
                    tracing::warn!(
                        lock = l,
                        timeout_s = timeout.as_secs(),
                        "waiting for the dpkg/apt lock"
                    );
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_lock_is_seen_and_times_out() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("var/lib/dpkg")).unwrap();
        let lock = d.path().join("var/lib/dpkg/lock-frontend");
        std::fs::write(&lock, "").unwrap();
        assert_eq!(held_lock(d.path()).unwrap(), None);
        // hold it from another process (POSIX locks are per process) with flock(1)? No: use python's lockf
        // via a child that keeps the lock for 3 s.
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import fcntl,sys,time;f=open(sys.argv[1],'r+');fcntl.lockf(f,fcntl.LOCK_EX);print('locked',flush=True);time.sleep(3)",
                lock.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 is needed for this test (sudo tests/setup.sh)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "locked");
        assert_eq!(
            held_lock(d.path()).unwrap(),
            Some("/var/lib/dpkg/lock-frontend")
        );
        let t = Duration::from_millis(600);
        let err = wait_for_dpkg_locks(d.path(), Instant::now() + t, t).unwrap_err();
        assert!(err.contains("still held"), "{err}");
        // and once the holder exits the wait succeeds
        wait_for_dpkg_locks(
            d.path(),
            Instant::now() + Duration::from_secs(10),
            Duration::from_secs(10),
        )
        .unwrap();
        child.wait().unwrap();
    }
}
