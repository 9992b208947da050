//! The one way bootcfg runs programs: an argv vector, inside the root, with a clean environment.
//!
//! When the root is not `/` every command becomes
//! `chroot ROOT /usr/bin/env -i PATH=… DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 HOME=/root CMD…`.
//! On `/` the same clean environment is set directly. stdin is `/dev/null` unless the command
//! feeds data (debconf selections). The command line is logged (secrets redacted); stdout and
//! stderr are captured and shown only when the command fails.
//!
//! What the root must provide (bootcfg mounts nothing): `/usr/bin/env`, the programs named in
//! [`programs`], and whatever those need: apt and dpkg want `/proc` and `/dev/null`; puppet wants
//! `/proc`; name resolution wants `/etc/resolv.conf` and `/etc/hosts`. The test harness runs
//! bootcfg inside `unshare --mount --pid --fork` with `proc` mounted at `ROOT/proc`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every external program bootcfg runs, named in one place (black-box tests grep for these).
pub mod programs {
    pub const CHROOT: &str = "chroot";
    pub const ENV: &str = "/usr/bin/env";
    pub const APT_GET: &str = "apt-get";
    pub const APT_CACHE: &str = "apt-cache";
    pub const APT_MARK: &str = "apt-mark";
    pub const DPKG: &str = "dpkg";
    pub const DPKG_QUERY: &str = "dpkg-query";
    pub const DPKG_RECONFIGURE: &str = "dpkg-reconfigure";
    pub const DEBCONF_SET_SELECTIONS: &str = "debconf-set-selections";
    pub const ADD_APT_REPOSITORY: &str = "add-apt-repository";
    pub const SYSTEMCTL: &str = "systemctl";
    /// Debian's layout puts `puppet` on PATH; AIO/OpenVox uses [`PUPPET_AIO`].
    pub const PUPPET: &str = "puppet";
    pub const PUPPET_AIO: &str = "/opt/puppetlabs/bin/puppet";
}

/// The environment every command gets (nothing is inherited from bootcfg's own environment).
pub const CLEAN_ENV: &[&str] = &[
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND=noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN=true",
    "LANG=C.UTF-8",
    "HOME=/root",
];

/// One command: an argv vector plus how to judge it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Cmd {
    pub argv: Vec<String>,
    /// Data fed on stdin (shown in plans only as a byte count when `secret_stdin`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Exit codes that count as success (default `[0]`).
    pub ok_codes: Vec<i32>,
    /// An apt/dpkg command: wait for the dpkg locks first and retry transient failures.
    pub apt: bool,
}

impl Cmd {
    pub fn new<I, S>(argv: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd {
            argv: argv.into_iter().map(Into::into).collect(),
            stdin: None,
            ok_codes: vec![0],
            apt: false,
        }
    }
    pub fn stdin(mut self, data: impl Into<String>) -> Cmd {
        self.stdin = Some(data.into());
        self
    }
    pub fn ok_codes(mut self, codes: &[i32]) -> Cmd {
        self.ok_codes = codes.to_vec();
        self
    }
    pub fn apt(mut self) -> Cmd {
        self.apt = true;
        self
    }
    /// The command line for humans: shell-quoted where needed.
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn shell_quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        a.to_owned()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// Replaces every secret substring with `<redacted>` (proxy credentials, challenge passwords).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn add(&mut self, secret: &str) {
        if secret.len() >= 3 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_owned());
            // longest first, so a secret that contains another is redacted whole
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }
    pub fn apply(&self, text: &str) -> String {
        let mut t = text.to_owned();
        for s in &self.secrets {
            t = t.replace(s.as_str(), "<redacted>");
        }
        t
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CmdOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    #[serde(skip)]
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed with {status}\n{output}")]
    Failed {
        command: String,
        status: String,
        output: String,
    },
    #[error("{0}")]
    Lock(String),
}

/// Runs commands. [`ChrootRunner`] is the real one; tests substitute a recorder.
pub trait Runner {
    /// Run `cmd` inside the root. An exit code outside `cmd.ok_codes` is an error.
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, RunError>;
    /// Total wall time spent in child processes so far (for the overhead benchmark).
    fn child_time(&self) -> Duration {
        Duration::ZERO
    }
}

/// Runs commands in `root` via `chroot` (or directly when the root is `/`).
pub struct ChrootRunner {
    pub root: PathBuf,
    pub redactor: Redactor,
    pub lock_timeout: Duration,
    /// Sleep before each retry of a transiently failing apt command.
    pub retry_delays: Vec<Duration>,
    child: std::cell::Cell<Duration>,
}

impl ChrootRunner {
    pub fn new(root: PathBuf, redactor: Redactor, lock_timeout: Duration) -> ChrootRunner {
        ChrootRunner {
            root,
            redactor,
            lock_timeout,
            // apt-get already retries each download 3 times (-o Acquire::Retries=3); these delays
            // cover a network that is not up yet or a mirror that blips: 5 s, then 20 s.
            retry_delays: vec![Duration::from_secs(5), Duration::from_secs(20)],
            child: std::cell::Cell::new(Duration::ZERO),
        }
    }

    /// The host argv that runs `cmd` inside the root.
    pub fn host_argv(&self, cmd: &Cmd) -> Vec<String> {
        let mut v = Vec::new();
        if self.root != std::path::Path::new("/") {
            v.push(programs::CHROOT.to_owned());
            v.push(self.root.display().to_string());
        }
        v.push(programs::ENV.to_owned());
        v.push("-i".to_owned());
        v.extend(CLEAN_ENV.iter().map(|s| (*s).to_owned()));
        v.extend(cmd.argv.iter().cloned());
        v
    }

    fn run_once(&self, cmd: &Cmd) -> Result<CmdOutput, RunError> {
        let argv = self.host_argv(cmd);
        let shown = self.redactor.apply(&cmd.display());
        tracing::info!(command = %shown, "running");
        let start = Instant::now();
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| RunError::Spawn {
                command: shown.clone(),
                source: e,
            })?;
        if let Some(data) = &cmd.stdin {
            let mut sin = child.stdin.take().expect("piped stdin");
            let data = data.clone();
            // write from a thread so a child that fills its stdout pipe cannot deadlock us
            std::thread::spawn(move || {
                let _ = sin.write_all(data.as_bytes());
            });
        }
        let out = child.wait_with_output().map_err(|e| RunError::Spawn {
            command: shown.clone(),
            source: e,
        })?;
        let elapsed = start.elapsed();
        self.child.set(self.child.get() + elapsed);
        let code = out.status.code().unwrap_or(-1);
        let res = CmdOutput {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
        };
        tracing::debug!(command = %shown, code, elapsed_ms = elapsed.as_millis() as u64, "finished");
        if cmd.ok_codes.contains(&code) {
            Ok(res)
        } else {
            let status = match out.status.code() {
                Some(c) => format!("exit code {c}"),
                None => format!("{}", out.status),
            };
            Err(RunError::Failed {
                command: shown,
                status,
                output: self.redactor.apply(&tail(&res.stdout, &res.stderr, 60)),
            })
        }
    }
}

/// The last `n` lines of stdout and stderr, for error messages.
fn tail(stdout: &str, stderr: &str, n: usize) -> String {
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.extend(stderr.lines());
    let skip = lines.len().saturating_sub(n);
    let mut s = String::new();
    if skip > 0 {
        s.push_str(&format!("  … ({skip} earlier lines)\n"));
    }
    for l in &lines[skip..] {
        s.push_str("  | ");
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// Output that means apt/dpkg could not get its lock (someone else is running).
fn is_lock_failure(out: &str) -> bool {
    out.contains("Could not get lock") || out.contains("Unable to acquire the dpkg frontend lock")
}

/// Output that means the network or a mirror failed, worth retrying.
fn is_transient(out: &str) -> bool {
    [
        "Temporary failure resolving",
        "Could not resolve",
        "Could not connect to",
        "Connection timed out",
        "Connection failed",
        "Failed to fetch",
        "Unable to connect",
        "503  Service Unavailable",
        "Hash Sum mismatch",
        "Some index files failed to download",
    ]
    .iter()
    .any(|p| out.contains(p))
}

impl Runner for ChrootRunner {
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, RunError> {
        if !cmd.apt {
            return self.run_once(cmd);
        }
        let deadline = Instant::now() + self.lock_timeout;
        let mut retries = self.retry_delays.iter();
        loop {
            crate::locks::wait_for_dpkg_locks(&self.root, deadline, self.lock_timeout)
                .map_err(RunError::Lock)?;
            match self.run_once(cmd) {
                Ok(o) => return Ok(o),
                Err(RunError::Failed {
                    output,
                    command,
                    status,
                }) => {
                    if is_lock_failure(&output) && Instant::now() < deadline {
                        tracing::warn!(command = %command, "dpkg/apt lock taken by another process; waiting");
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                    if is_transient(&output)
                        && let Some(d) = retries.next()
                    {
                        tracing::warn!(command = %command, delay_s = d.as_secs(), "transient failure; retrying");
                        std::thread::sleep(*d);
                        continue;
                    }
                    return Err(RunError::Failed {
                        output,
                        command,
                        status,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn child_time(&self) -> Duration {
        self.child.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chroot_argv_has_clean_env_and_root() {
        let r = ChrootRunner::new(
            PathBuf::from("/mnt/r"),
            Redactor::default(),
            Duration::from_secs(1),
        );
        let argv = r.host_argv(&Cmd::new(["apt-get", "update"]));
        assert_eq!(&argv[..4], ["chroot", "/mnt/r", "/usr/bin/env", "-i"]);
        assert!(argv.contains(&"DEBIAN_FRONTEND=noninteractive".to_owned()));
        assert_eq!(&argv[argv.len() - 2..], ["apt-get", "update"]);
        let host = ChrootRunner::new(
            PathBuf::from("/"),
            Redactor::default(),
            Duration::from_secs(1),
        );
        assert_eq!(host.host_argv(&Cmd::new(["true"]))[0], "/usr/bin/env");
    }

    #[test]
    fn redactor_hides_secrets() {
        let mut r = Redactor::default();
        r.add("user:s3cret");
        r.add("s3cret");
        assert_eq!(
            r.apply("http://user:s3cret@proxy:3128 s3cret"),
            "http://<redacted>@proxy:3128 <redacted>"
        );
    }

    #[test]
    fn display_quotes_only_when_needed() {
        let c = Cmd::new(["puppet", "agent", "--test", "a b"]);
        assert_eq!(c.display(), "puppet agent --test 'a b'");
    }

    #[test]
    fn failure_shows_output_and_code() {
        let r = ChrootRunner::new(
            PathBuf::from("/"),
            Redactor::default(),
            Duration::from_secs(1),
        );
        let err = r
            .run(&Cmd::new(["sh", "-c", "echo visible-output; exit 3"]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("exit code 3") && msg.contains("visible-output"),
            "{msg}"
        );
        let ok = r
            .run(&Cmd::new(["sh", "-c", "exit 2"]).ok_codes(&[0, 2]))
            .unwrap();
        assert_eq!(ok.code, 2);
        let out = r.run(&Cmd::new(["cat"]).stdin("fed\n")).unwrap();
        assert_eq!(out.stdout, "fed\n");
    }
}
