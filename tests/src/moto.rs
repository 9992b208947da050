//! A real moto server (S3 + EC2 over the AWS wire protocols) on 127.0.0.1, for the conductor and
//! signer tests.
//!
//! - [`shared`]: one server per test binary (started on first use). Tests isolate themselves with
//!   unique bucket names ([`unique_bucket`]) instead of `reset`, which is global.
//! - [`Moto::start`]: a private server, killed (and waited for) on drop.
//!
//! The server runs with `MOTO_ENABLE_AMI_VALIDATION=true` and
//! `MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION=true`, so an unknown AMI or instance type is refused
//! the way AWS refuses it; launch from [`AMI`], one of moto's built-in images.
//!
//! Code under test reaches the server only through the standard AWS environment variables
//! ([`Moto::env`], [`Moto::command`]): the same binary, the same code path as in production.
//!
//! A server that outlives its test binary would leak, and a `static` is never dropped, so the
//! server watches its stdin (a pipe from this process) and exits when it closes, i.e. when the
//! test process ends, however it ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A built-in moto AMI (present in every region's default image list of moto 5.2.5).
pub const AMI: &str = "ami-03cf127a";
/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// Starts moto's server, exiting when stdin reaches EOF (see the module docs).
const LAUNCHER: &str = r#"
import os, sys, threading
def watch():
    try:
        sys.stdin.buffer.read()
    finally:
        os._exit(0)
threading.Thread(target=watch, daemon=True).start()
from moto.server import main
sys.argv[0] = "moto_server"
sys.exit(main())
"#;

/// A running moto server.
pub struct Moto {
    child: Child,
    _stdin: ChildStdin,
    endpoint: String,
}

/// `$BOOTCFG_TEST_HOME` (default `/var/tmp/bootcfg-test`), where `tests/setup.sh` installs things.
pub fn test_home() -> PathBuf {
    std::env::var_os("BOOTCFG_TEST_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/bootcfg-test"))
}

/// The venv that holds moto (and, for the benchmark, awscli).
pub fn venv() -> PathBuf {
    test_home().join("venv")
}

/// The server shared by every test in this binary, started on first use.
pub fn shared() -> &'static Moto {
    static SHARED: OnceLock<Moto> = OnceLock::new();
    SHARED.get_or_init(|| Moto::start().unwrap_or_else(|e| panic!("{e:#}")))
}

/// A bucket name no other test in this run uses: `<stem>-<pid>-<n>`.
pub fn unique_bucket(stem: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{stem}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Moto {
    /// Start a private server on a free port; it is killed when the value is dropped.
    pub fn start() -> anyhow::Result<Moto> {
        Self::start_with(&[])
    }

    /// [`Moto::start`] with extra moto settings, e.g. `("MOTO_S3_DEFAULT_MAX_KEYS", "5")`.
    pub fn start_with(settings: &[(&str, &str)]) -> anyhow::Result<Moto> {
        let bin = venv().join("bin/moto_server");
        let python = venv().join("bin/python");
        if !bin.exists() || !python.exists() {
            anyhow::bail!(
                "moto is not installed ({} is missing); run `sudo tests/setup.sh` (set BOOTCFG_TEST_HOME if it installed elsewhere)",
                bin.display()
            );
        }
        let mut child = Command::new(&python)
            .args(["-c", LAUNCHER, "-H", "127.0.0.1", "-p", "0"])
            .env("MOTO_ENABLE_AMI_VALIDATION", "true")
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
            .envs(settings.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "starting {}: {e}; run `sudo tests/setup.sh`",
                    python.display()
                )
            })?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
        let mut endpoint = None;
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(i) = line.find("http://127.0.0.1:") {
                let rest = &line[i..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || ":/.".contains(c)))
                    .unwrap_or(rest.len());
                endpoint = Some(rest[..end].to_owned()); // strips the ANSI colour codes around it
                break;
            }
            seen.push(line);
        }
        let Some(endpoint) = endpoint else {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "moto_server exited before printing its address; its output:\n{}\nrun `sudo tests/setup.sh` to (re)install it",
                seen.join("\n")
            );
        };
        // Keep draining: moto logs one line per request, and a full pipe would block it.
        std::thread::spawn(move || for _ in lines {});
        Ok(Moto {
            child,
            _stdin: stdin,
            endpoint,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The environment that points an AWS SDK program at this server, and nowhere else.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// Variables that must not leak a developer's own AWS setup into a test.
    pub const SCRUBBED: &'static [&'static str] = &[
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ENDPOINT_URL_STS",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ];

    /// A command for `program` with [`Moto::env`] set and [`Moto::SCRUBBED`] removed.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        for var in Self::SCRUBBED {
            cmd.env_remove(var);
        }
        cmd.envs(self.env());
        cmd
    }

    /// Create a bucket (path-style `PUT /<name>`).
    pub fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        let (status, body) = self.http("PUT", &format!("/{name}"), b"")?;
        anyhow::ensure!(
            status == 200,
            "creating bucket {name} on moto: HTTP {status}: {body}"
        );
        Ok(())
    }

    /// A minimal HTTP/1.1 request to the server (no signing: moto does not check signatures).
    /// Returns the status and the body as text.
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
        self.http_with(method, path, &[], body)
    }

    /// [`Moto::http`] with extra request headers (e.g. `("x-amz-acl", "public-read")`).
    pub fn http_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<(u16, String)> {
        let hostport = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(hostport)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
            body.len()
        )?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("moto sent a malformed response: {text}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_serves_s3_and_stops() {
        let moto = Moto::start().unwrap_or_else(|e| panic!("{e:#}"));
        let bucket = unique_bucket("harness");
        moto.create_bucket(&bucket).unwrap();
        let (status, body) = moto
            .http("GET", &format!("/{bucket}?list-type=2"), b"")
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("<ListBucketResult"), "{body}");
        let pid = moto.child.id();
        drop(moto);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "moto ({pid}) outlived its guard"
        );
    }
}
