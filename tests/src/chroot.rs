//! Running things against a test root inside private namespaces, so nothing leaks to the host:
//! `unshare --mount --uts --pid --fork --kill-child --propagation private`, with `proc`, `sysfs`
//! and `/dev/pts` mounted into the root only inside that mount namespace. No mount outlives the
//! command, a hostname change stays in the UTS namespace, and every process started inside (a
//! daemon a postinst or `service` starts) dies with the namespace's PID 1.
//!
//! Two shapes:
//! * [`in_root`]: `chroot ROOT /usr/bin/env -i PATH=… cmd…` (a command of the image itself);
//! * [`host_in_ns`]: a host program (the `bootcfg` binary under test) with the root's mounts
//!   prepared; it is given `--root ROOT` and does its own `chroot` for the commands it runs.
//!
//! Every spawned command leads its own process group, so [`Running::kill_all`] SIGKILLs the runner
//! and (through `--kill-child` and the PID namespace) everything inside.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The clean environment every command in a root gets (the host's PATH and variables never leak in).
pub const ROOT_ENV: &[&str] = &[
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "LANG=C.UTF-8",
    "TERM=dumb",
    "DEBIAN_FRONTEND=noninteractive",
];

/// Mounts proc, sysfs and devpts into `$R` inside the new namespaces, then execs the rest.
const NS_SCRIPT: &str = r#"R="$1"; shift
mount -t proc proc "$R/proc" && mount -t sysfs sysfs "$R/sys" && mount --bind /dev/pts "$R/dev/pts" || exit 125
exec "$@""#;

fn ns_command(root: &Path) -> Command {
    crate::rootfs::require_root();
    crate::rootfs::require_tool("unshare");
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--uts",
        "--pid",
        "--fork",
        "--kill-child",
        "--propagation",
        "private",
    ])
    .args(["/bin/sh", "-c", NS_SCRIPT, "ns-run"])
    .arg(root);
    c.process_group(0);
    c.stdin(Stdio::null());
    c
}

/// `argv` run as a command of the image: chrooted into `root`, clean environment.
pub fn in_root<S: AsRef<OsStr>>(root: &Path, argv: &[S]) -> Command {
    let mut c = ns_command(root);
    c.arg("chroot")
        .arg(root)
        .arg("/usr/bin/env")
        .arg("-i")
        .args(ROOT_ENV)
        .args(argv);
    c
}

/// A host program run inside the namespaces with the root's mounts in place (not chrooted), with a
/// clean environment plus `extra_env` (`KEY=VALUE`). `argv[0]` is an absolute path.
pub fn host_in_ns<S: AsRef<OsStr>>(root: &Path, extra_env: &[String], argv: &[S]) -> Command {
    let mut c = ns_command(root);
    c.arg("/usr/bin/env")
        .arg("-i")
        .args(ROOT_ENV)
        .args(extra_env)
        .args(argv);
    c
}

/// A finished command.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub argv: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    /// Panics with the command line, exit status and both streams unless it exited 0.
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "command failed: {}\n{}",
            self.argv,
            self.report()
        );
        self
    }
    pub fn report(&self) -> String {
        format!(
            "status: {:?} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.elapsed,
            tail(&self.stdout, 8000),
            tail(&self.stderr, 12000)
        )
    }
}

fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = s.len() - n;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// A command running in its own process group, with stdout/stderr collected by threads.
pub struct Running {
    pub child: Child,
    argv: String,
    started: Instant,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
}

fn collect(r: Option<impl Read + Send + 'static>) -> Option<std::thread::JoinHandle<String>> {
    r.map(|mut r| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
}

/// Starts `cmd` (stdout and stderr captured).
pub fn spawn(mut cmd: Command) -> Running {
    let argv = describe(&cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {argv}: {e}"));
    let out = collect(child.stdout.take());
    let err = collect(child.stderr.take());
    Running {
        child,
        argv,
        started: Instant::now(),
        out,
        err,
    }
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL the whole process group: the runner, and through `--kill-child` the namespace's
    /// PID 1, whose death kills every process in the PID namespace.
    pub fn kill_all(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.kill();
    }

    /// Waits up to `timeout`; on timeout kills everything and panics.
    pub fn wait(mut self, timeout: Duration) -> Output {
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for child") {
                return self.finish(status);
            }
            if self.started.elapsed() > timeout {
                self.kill_all();
                let status = self.child.wait().expect("reaping child");
                let o = self.finish(status);
                panic!("timed out after {timeout:?}: {}\n{}", o.argv, o.report());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn finish(&mut self, status: ExitStatus) -> Output {
        let stdout = self
            .out
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let stderr = self
            .err
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Output {
            status,
            stdout,
            stderr,
            elapsed: self.started.elapsed(),
            argv: self.argv.clone(),
        }
    }
}

/// Runs `cmd` to completion (killing everything after `timeout`).
pub fn run(cmd: Command, timeout: Duration) -> Output {
    spawn(cmd).wait(timeout)
}

/// Processes whose root directory is `root` (i.e. chrooted into it), as (pid, comm, cmdline).
pub fn processes_in(root: &Path) -> Vec<(u32, String, String)> {
    let want = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(r) = fs::read_link(e.path().join("root")) else {
            continue;
        };
        if r != want {
            continue;
        }
        let comm = fs::read_to_string(e.path().join("comm"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let cmdline = fs::read(e.path().join("cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        out.push((pid, comm, cmdline.trim().to_owned()));
    }
    out
}

static HEAVY: Mutex<()> = Mutex::new(());

/// Serialises apt/dpkg-heavy sections across the tests of one binary and, through a lock file in
/// `$BOOTCFG_TEST_HOME`, across test binaries (2 cores: parallel package installs thrash).
pub struct HeavyGuard {
    _m: MutexGuard<'static, ()>,
    _f: fs::File,
}

pub fn heavy_lock() -> HeavyGuard {
    let m = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let home = crate::rootfs::test_home();
    fs::create_dir_all(&home).expect("creating $BOOTCFG_TEST_HOME");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(home.join("heavy.lock"))
        .expect("opening heavy.lock");
    f.lock().expect("locking heavy.lock");
    HeavyGuard { _m: m, _f: f }
}

/// Converts strings to the `OsString`s `Command` wants (convenience for argv vectors).
pub fn os_args(a: &[&str]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}
