//! A real Puppet Server CA as a relocatable instance under a temp dir on 127.0.0.1, and real
//! Puppet agents (`puppet ssl submit_request`) with their own confdir, for two releases
//! ([`Release`]): Puppet 7 is Debian 12's `puppetserver` 7.9 and `puppet-agent` 7 from the host's
//! packages; Puppet 8 is Debian 13's `puppetserver` 8.x and `puppet-agent` 8.x, run from a fresh
//! copy of the `puppetserver-trixie` root in private namespaces ([`crate::puppet_root`]), with the
//! server's temp dir, the autosign executable's directory and any `extra_binds` mounted at their
//! own paths, so every path below is the same file for the server, the agents and the tests.
//!
//! Recipe (shared research, puppet-chroot-feasibility.md §1): `puppetserver ca setup` and
//! `ca generate --certname signer-admin --ca-client` while stopped, then the JVM with
//! `-XX:TieredStopAtLevel=1 -XX:+UseSerialGC` (~50 s to ready, ~600 MB; the same flags on
//! OpenJDK 21 for Puppet 8), started under `setsid` (not nohup), polled on `/status/v1/simple`
//! with a 180 s budget. `autosign` points at a given executable. One server per test binary
//! ([`PuppetServer::start`] in a `OnceLock`). The jar, the packaged conf.d and the JRuby paths are
//! read from the installed package ([`Layout`]), not assumed.
//!
//! A `static` is never dropped, so the JVM runs under a tiny `sh` supervisor that reads its stdin
//! (a pipe from this process) and stops the JVM when it closes: when the value is dropped or when
//! the test process ends, however it ends. For Puppet 8 it SIGKILLs `unshare --kill-child`, which
//! kills the PID namespace (the JVM is its PID 1) and then removes the root copy, which a `static`
//! would otherwise leave behind.

use crate::puppet_root::{self, InRoot, Layout};
use anyhow::{Context, Result, bail, ensure};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SETUP_HINT: &str = "run `sudo tests/setup.sh` (installs puppetserver and puppet-agent)";

/// Supervisor: run the JVM ("$@") in the background, stop it when stdin closes (SIGTERM, or
/// `$PS_STOP_SIGNAL`), then remove `$PS_CLEANUP` if set.
const SUPERVISOR: &str = r#""$@" </dev/null &
pid=$!
echo "$pid" > "$PS_PIDFILE"
cat >/dev/null
kill -"${PS_STOP_SIGNAL:-TERM}" "$pid" 2>/dev/null
wait "$pid"
[ -z "$PS_CLEANUP" ] || rm -rf "$PS_CLEANUP"
"#;

/// Which Puppet: the server and the agents of one test can be of different releases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Release {
    /// Debian 12 (bookworm): `puppetserver` 7.9 and `puppet-agent` 7, the host's packages.
    #[default]
    Puppet7,
    /// Debian 13 (trixie): `puppetserver` 8.x and `puppet-agent` 8.x, from a fresh copy of the
    /// `puppetserver-trixie` root (`tests/setup-roots.sh`).
    Puppet8,
}

impl Release {
    /// The major version of its `puppetserver` and `puppet-agent`.
    pub fn major(self) -> u32 {
        match self {
            Release::Puppet7 => 7,
            Release::Puppet8 => 8,
        }
    }
}

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// The `autosign` setting: an executable (policy) or `false` (the default).
    pub autosign: Option<PathBuf>,
    /// Extra environment for the server process (the autosign executable inherits it).
    pub env: Vec<(String, String)>,
    /// Which puppetserver (Puppet 7, the host's, by default).
    pub release: Release,
    /// Puppet 8: host directories the server (and its autosign executable) must see besides its
    /// temp dir and the autosign executable's directory, such as where the program an autosign
    /// wrapper script `exec`s lives. Puppet 7 runs on the host and sees everything.
    pub extra_binds: Vec<PathBuf>,
    /// Puppet 8: Debian packages (`.deb` files on the host) installed with `dpkg -i` into the
    /// server's root before it starts, so `autosign` can be a path the package installed there
    /// (`/usr/lib/bootcfg-signer/autosign`). Puppet 7 runs on the host: refused there.
    pub install: Vec<PathBuf>,
}

/// Where a release's Puppet programs run: the host, or a Debian root in namespaces.
enum Runner {
    Host,
    Root(InRoot),
}

impl Runner {
    /// `argv` with `env` added: on the host, the host's environment plus `env`; in a root, only
    /// the root's clean environment plus `env`.
    fn command(&self, env: &[(String, String)], argv: &[OsString]) -> Command {
        let (program, args) = match self {
            Runner::Host => (argv[0].clone(), argv[1..].to_vec()),
            Runner::Root(r) => {
                let full = r.argv(env, argv);
                (full[0].clone(), full[1..].to_vec())
            }
        };
        let mut cmd = Command::new(program);
        cmd.args(args);
        if let Runner::Host = self {
            cmd.envs(env.iter().map(|(k, v)| (k, v)));
        }
        cmd
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// A running relocatable Puppet Server with its CA.
pub struct PuppetServer {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub port: u16,
    /// `https://localhost:PORT` (the server certificate has `DNS:localhost`).
    pub url: String,
    pub puppet_conf: PathBuf,
    pub ssldir: PathBuf,
    pub cadir: PathBuf,
    /// Client certificate with `pp_cli_auth` (`signer-admin`).
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// The CA bundle (two certificates: root and intermediate).
    pub ca_bundle: PathBuf,
    pub release: Release,
    /// The `puppetserver` package version (`7.9.5-2+deb12u1`, `8.7.0-5`).
    pub version: String,
    /// The release's `puppet` and `puppetserver` commands as host executables (for the signer's
    /// CLI method): `/usr/bin/…` for Puppet 7, wrappers into the root for Puppet 8.
    pub puppet_bin: PathBuf,
    pub puppetserver_bin: PathBuf,
    runner: Runner,
    child: Child,
    stdin: Option<ChildStdin>,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What runs on the host for every release (curl polls and queries the server; Puppet 7 is the
/// host's own packages).
fn check_installed(release: Release) -> Result<()> {
    let mut needed = vec!["/usr/bin/curl"];
    if release == Release::Puppet7 {
        needed.extend(["/usr/bin/puppetserver", "/usr/bin/puppet", "/usr/bin/java"]);
    }
    for p in needed {
        ensure!(Path::new(p).exists(), "{p} is missing; {SETUP_HINT}");
    }
    Ok(())
}

/// The serial of a PEM certificate: lowercase hex without leading zeros.
pub fn serial_hex(cert_pem: &[u8]) -> Result<String> {
    asn1_hex(openssl::x509::X509::from_pem(cert_pem)?.serial_number())
}

fn asn1_hex(n: &openssl::asn1::Asn1IntegerRef) -> Result<String> {
    Ok(n.to_bn()?
        .to_hex_str()?
        .to_ascii_lowercase()
        .trim_start_matches('0')
        .to_owned())
}

/// `dpkg -i` of the host file `deb` inside `root` (through a copy in the root's `/tmp`).
fn install_deb(root: &Arc<crate::rootfs::Root>, deb: &Path) -> Result<()> {
    let name = deb
        .file_name()
        .with_context(|| format!("{} has no file name", deb.display()))?;
    let inside = Path::new("/tmp").join(name);
    let copy = root.path().join("tmp").join(name);
    std::fs::copy(deb, &copy)
        .with_context(|| format!("copying {} into {}", deb.display(), root.path().display()))?;
    let runner = InRoot::new(Arc::clone(root), Vec::<PathBuf>::new())?;
    let argv = runner.argv(
        &[],
        &[OsStr::new("dpkg"), OsStr::new("-i"), inside.as_os_str()],
    );
    let result = run_ok(Command::new(&argv[0]).args(&argv[1..]));
    let _ = std::fs::remove_file(&copy);
    result
        .map(|_| ())
        .with_context(|| format!("installing {} into the Puppet 8 root", deb.display()))
}

/// Run a command, failing with its output when it fails.
pub fn run_ok(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

impl PuppetServer {
    /// Set up a fresh CA and start `opts.release`'s server; returns when it answers `running`.
    pub fn start(opts: &ServerOptions) -> Result<PuppetServer> {
        let release = opts.release;
        check_installed(release)?;
        let dir = tempfile::Builder::new().prefix("puppetserver-").tempdir()?;
        let ps = dir.path().to_path_buf();
        let (runner, sysroot) = match release {
            Release::Puppet7 if !opts.install.is_empty() => {
                bail!(
                    "installing packages for the server needs its own root (Puppet 8); Puppet 7 runs on the host"
                )
            }
            Release::Puppet7 => (Runner::Host, PathBuf::from("/")),
            Release::Puppet8 => {
                let root = Arc::new(puppet_root::fresh_root()?);
                for deb in &opts.install {
                    install_deb(&root, deb)?;
                }
                let mut binds = vec![ps.clone()];
                // An autosign executable from an installed package is the root's own.
                if opts.install.is_empty()
                    && let Some(dir) = opts.autosign.as_ref().and_then(|a| a.parent())
                {
                    binds.push(dir.to_path_buf());
                }
                binds.extend(opts.extra_binds.iter().cloned());
                let sysroot = root.path().to_path_buf();
                (Runner::Root(InRoot::new(root, binds)?), sysroot)
            }
        };
        let layout = Layout::read(&sysroot)
            .with_context(|| format!("reading the {release:?} puppetserver package"))?;
        eprintln!(
            "[testkit] puppetserver {} ({release:?}) from {}",
            layout.version,
            sysroot.display()
        );
        let port = free_port()?;
        for sub in [
            "conf.d", "etc", "code", "var", "run", "log", "ssl", "ca", "bin",
        ] {
            std::fs::create_dir_all(ps.join(sub))?;
        }
        let packaged_conf_d = sysroot.join(layout.conf_d.strip_prefix("/")?);
        for f in ["auth.conf", "ca.conf", "metrics.conf", "web-routes.conf"] {
            std::fs::copy(packaged_conf_d.join(f), ps.join("conf.d").join(f))
                .with_context(|| format!("copying {f}; {SETUP_HINT}"))?;
        }
        let p = |s: &str| ps.join(s).display().to_string();
        std::fs::write(
            ps.join("conf.d/global.conf"),
            format!("global: {{ logging-config: \"{}\" }}\n", p("logback.xml")),
        )?;
        std::fs::write(
            ps.join("conf.d/webserver.conf"),
            format!("webserver: {{ client-auth: want, ssl-host: 127.0.0.1, ssl-port: {port} }}\n"),
        )?;
        let jruby_paths: String = layout
            .jruby_puppet
            .iter()
            .map(|(k, v)| format!("    {k}: {v}\n"))
            .collect();
        std::fs::write(
            ps.join("conf.d/puppetserver.conf"),
            format!(
                r#"jruby-puppet: {{
{jruby_paths}    server-conf-dir: "{etc}"
    server-code-dir: "{code}"
    server-var-dir: "{var}"
    server-run-dir: "{run}"
    server-log-dir: "{log}"
    max-active-instances: 1
}}
http-client: {{}}
profiler: {{}}
"#,
                etc = p("etc"),
                code = p("code"),
                var = p("var"),
                run = p("run"),
                log = p("log")
            ),
        )?;
        std::fs::write(
            ps.join("logback.xml"),
            format!(
                r#"<configuration scan="false">
  <appender name="F" class="ch.qos.logback.core.FileAppender">
    <file>{}</file><append>true</append>
    <encoder><pattern>%d %-5p [%t] [%c{{2}}] %m%n</pattern></encoder>
  </appender>
  <root level="info"><appender-ref ref="F"/></root>
</configuration>
"#,
                p("log/puppetserver.log")
            ),
        )?;
        let autosign = opts
            .autosign
            .as_ref()
            .map_or_else(|| "false".to_owned(), |a| a.display().to_string());
        let puppet_conf = ps.join("etc/puppet.conf");
        std::fs::write(
            &puppet_conf,
            format!(
                "[main]\nserver = localhost\nserverport = {port}\ncertname = localhost\ndns_alt_names = localhost\nssldir = {ssl}\nvardir = {var}\nlogdir = {log}\nrundir = {run}\ncodedir = {code}\n\n[server]\ncadir = {ca}\nautosign = {autosign}\n",
                ssl = p("ssl"),
                var = p("var"),
                log = p("log"),
                run = p("run"),
                code = p("code"),
                ca = p("ca"),
            ),
        )?;
        let (puppet_bin, puppetserver_bin) = match &runner {
            Runner::Host => ("/usr/bin/puppet".into(), "/usr/bin/puppetserver".into()),
            Runner::Root(r) => {
                let (puppet, puppetserver) = (ps.join("bin/puppet"), ps.join("bin/puppetserver"));
                r.write_wrapper(&puppet, "puppet")?;
                r.write_wrapper(&puppetserver, "puppetserver")?;
                (puppet, puppetserver)
            }
        };
        let conf = puppet_conf.clone().into_os_string();
        let ca_cli = |args: &[&str]| {
            let mut argv = os(&["puppetserver", "ca"]);
            argv.extend(os(args));
            argv.extend(["--config".into(), conf.clone()]);
            runner.command(&[], &argv)
        };
        run_ok(&mut ca_cli(&["setup"])).context("puppetserver ca setup")?;
        run_ok(&mut ca_cli(&[
            "generate",
            "--certname",
            "signer-admin",
            "--ca-client",
        ]))
        .context("puppetserver ca generate signer-admin")?;

        let mut java = os(&[
            "/usr/bin/java",
            "-Xms512m",
            "-Xmx1g",
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "--add-opens",
            "java.base/sun.nio.ch=ALL-UNNAMED",
            "--add-opens",
            "java.base/java.io=ALL-UNNAMED",
            "-Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger",
        ]);
        java.push(format!("-Djruby.lib={}", layout.jruby_lib).into());
        java.extend(os(&["-XX:+CrashOnOutOfMemoryError", "-jar"]));
        java.push(layout.jar.clone().into());
        java.push("--config".into());
        java.push(ps.join("conf.d").into());
        java.push("--bootstrap-config".into());
        java.push(layout.services_d.clone().into());
        let jvm = runner.command(&opts.env, &java);

        let log = std::fs::File::create(ps.join("log/stdout.log"))?;
        let pidfile = ps.join("run/java.pid");
        let mut cmd = Command::new("setsid");
        cmd.args(["sh", "-c", SUPERVISOR, "sh"])
            .arg(jvm.get_program())
            .args(jvm.get_args())
            .env("PS_PIDFILE", &pidfile);
        for (k, v) in jvm.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        if let Runner::Root(r) = &runner {
            // unshare blocks SIGTERM; SIGKILL makes --kill-child take the namespace down.
            cmd.env("PS_STOP_SIGNAL", "KILL");
            if !puppet_root::keep_roots() {
                let copy = r
                    .root()
                    .path()
                    .parent()
                    .context("the root copy's temp dir")?;
                cmd.env("PS_CLEANUP", copy);
            }
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let mut child = cmd
            .spawn()
            .context("starting puppetserver (setsid sh java …)")?;
        let stdin = child.stdin.take();
        let root = ps.clone();
        let mut server = PuppetServer {
            _dir: dir,
            root: root.clone(),
            port,
            url: format!("https://localhost:{port}"),
            puppet_conf,
            ssldir: root.join("ssl"),
            cadir: root.join("ca"),
            admin_cert: root.join("ssl/certs/signer-admin.pem"),
            admin_key: root.join("ssl/private_keys/signer-admin.pem"),
            ca_bundle: root.join("ca/ca_crt.pem"),
            release,
            version: layout.version,
            puppet_bin,
            puppetserver_bin,
            runner,
            child,
            stdin,
        };
        server.wait_ready(Duration::from_secs(180))?;
        Ok(server)
    }

    /// The Debian root a `release` agent can share with this server (its own, when it runs that
    /// release from a root).
    /// Puppet 8: the host path of the server's root (where [`ServerOptions::install`] put its
    /// packages); `None` for Puppet 7, which runs on the host.
    pub fn sysroot(&self) -> Option<PathBuf> {
        match &self.runner {
            Runner::Root(r) => Some(r.root().path().to_path_buf()),
            Runner::Host => None,
        }
    }

    /// `argv` as the server's own programs run: in its root (with its binds, a clean environment
    /// plus `env`) for Puppet 8, on the host for Puppet 7.
    pub fn command(&self, env: &[(String, String)], argv: &[&str]) -> Command {
        let mut cmd = self.runner.command(env, &os(argv));
        cmd.stdin(Stdio::null());
        cmd
    }

    fn shared_root(&self, release: Release) -> Option<Arc<crate::rootfs::Root>> {
        match &self.runner {
            Runner::Root(r) if release == self.release => Some(r.root().clone()),
            _ => None,
        }
    }

    /// Whether the supervised process (the JVM, or `unshare` around it) has exited: the
    /// supervisor waits on its stdin, not on the JVM, so a JVM that dies at start-up shows only
    /// as a zombie child of it.
    fn jvm_exited(&self) -> bool {
        let Some(pid) = std::fs::read_to_string(self.root.join("run/java.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            return false;
        };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // `pid (comm) S …`: the state follows the last `)`.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }

    fn wait_ready(&mut self, budget: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "puppetserver exited ({status}) before it was ready; log tail:\n{}",
                    self.log_tail()
                );
            }
            if self.jvm_exited() {
                bail!(
                    "puppetserver's JVM exited before it was ready; log tail:\n{}",
                    self.log_tail()
                );
            }
            let out = Command::new("curl")
                .args(["-sk", "--max-time", "2"])
                .arg(format!("{}/status/v1/simple", self.url))
                .stdin(Stdio::null())
                .output()?;
            if out.stdout == b"running" {
                return Ok(());
            }
            if start.elapsed() > budget {
                bail!(
                    "puppetserver was not ready within {budget:?}; log tail:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The last lines of the server's logs.
    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        for f in ["log/stdout.log", "log/puppetserver.log"] {
            let text = std::fs::read_to_string(self.root.join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            s.push_str(&format!(
                "== {f}\n{}\n",
                lines[lines.len().saturating_sub(40)..].join("\n")
            ));
        }
        s
    }

    /// curl with the admin client certificate against `/puppet-ca/v1/<path>`; (HTTP status, body).
    pub fn admin(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "--max-time",
            "30",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
            "--cacert",
        ])
        .arg(&self.ca_bundle)
        .arg("--cert")
        .arg(&self.admin_cert)
        .arg("--key")
        .arg(&self.admin_key)
        .args(["-H", "Accept: application/json"]);
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data", b]);
        }
        cmd.arg(format!("{}/puppet-ca/v1/{path}", self.url));
        curl_result(cmd)
    }

    /// Unauthenticated request (`certificate_request` PUT/GET, `certificate` GET); (status, body).
    pub fn anon(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, String)> {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "--max-time",
            "60",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
            "--cacert",
        ])
        .arg(&self.ca_bundle);
        let tmp;
        if let Some(b) = body {
            tmp = tempfile::NamedTempFile::new()?;
            std::fs::write(tmp.path(), b)?;
            cmd.args(["-H", "Content-Type: text/plain", "--data-binary"])
                .arg(format!("@{}", tmp.path().display()));
        }
        cmd.arg(format!("{}/puppet-ca/v1/{path}", self.url));
        curl_result(cmd)
    }

    /// Submit a CSR the way an agent does (`PUT certificate_request/<name>`); runs the autosign hook.
    /// The serials the CA's CRL lists (`certificate_revocation_list/ca`), as [`serial_hex`] writes
    /// them.
    pub fn crl_serials(&self) -> Result<Vec<String>> {
        let (code, pem) = self.anon("GET", "certificate_revocation_list/ca", None)?;
        ensure!(code == 200, "CRL: HTTP {code}: {pem}");
        let crl = openssl::x509::X509Crl::from_pem(pem.as_bytes())?;
        crl.get_revoked()
            .into_iter()
            .flatten()
            .map(|r| asn1_hex(r.serial_number()))
            .collect()
    }

    /// An environment `production` with an empty `node default {}`, so agents can fetch a
    /// catalog (kept if a test already wrote one).
    pub fn ensure_production(&self) -> Result<()> {
        let manifests = self.root.join("code/environments/production/manifests");
        std::fs::create_dir_all(&manifests)?;
        let site = manifests.join("site.pp");
        if !site.exists() {
            std::fs::write(&site, "node default {}\n")?;
        }
        Ok(())
    }

    pub fn submit_csr(&self, name: &str, pem: &[u8]) -> Result<(u16, String)> {
        self.anon("PUT", &format!("certificate_request/{name}"), Some(pem))
    }

    /// `requested`, `signed`, `revoked`, or `None` when the CA has nothing for the name.
    pub fn state(&self, name: &str) -> Result<Option<String>> {
        let (code, body) = self.admin("GET", &format!("certificate_status/{name}"), None)?;
        if code == 404 {
            return Ok(None);
        }
        ensure!(
            code == 200,
            "certificate_status/{name}: HTTP {code}: {body}"
        );
        let v: serde_json::Value = serde_json::from_str(&body)?;
        Ok(v.get("state").and_then(|s| s.as_str()).map(str::to_owned))
    }

    /// Whether anyone can download a signed certificate for `name`.
    pub fn has_cert(&self, name: &str) -> Result<bool> {
        let (code, _) = self.anon("GET", &format!("certificate/{name}"), None)?;
        Ok(code == 200)
    }

    /// Everything in the server log mentioning `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(self.root.join("log/puppetserver.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

fn curl_result(mut cmd: Command) -> Result<(u16, String)> {
    let out = cmd.stdin(Stdio::null()).output().context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code: u16 = code.trim().parse().with_context(|| {
        format!(
            "curl gave no HTTP status ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((code, body.to_owned()))
}

impl Drop for PuppetServer {
    fn drop(&mut self) {
        // Closing the supervisor's stdin makes it stop the JVM (SIGTERM, stops in ~1 s; Puppet 8:
        // SIGKILL to `unshare --kill-child`) and, for Puppet 8, remove the root copy.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Puppet agent node: its own confdir, vardir and ssldir under a temp dir. A Puppet 8 agent
/// runs trixie's `puppet` in a Debian 13 root (the server's, when the server is Puppet 8 too; else
/// a fresh copy of its own) that sees the temp dir at its own path.
pub struct Agent {
    _dir: tempfile::TempDir,
    pub confdir: PathBuf,
    pub ssldir: PathBuf,
    pub certname: String,
    pub release: Release,
    runner: Runner,
}

impl Agent {
    /// A node for `certname` talking to `server`, of the server's release; `csr_attributes` is
    /// the YAML of `csr_attributes.yaml` (or `None` for none); `extra_conf` adds `[main]` lines
    /// (e.g. `dns_alt_names = puppet`).
    pub fn new(
        server: &PuppetServer,
        certname: &str,
        csr_attributes: Option<&str>,
        extra_conf: &str,
    ) -> Result<Agent> {
        Self::with_release(server.release, server, certname, csr_attributes, extra_conf)
    }

    /// [`Agent::new`] with a `release` of its own (a Puppet 8 agent against the 7.9 server, a
    /// Puppet 7 agent against 8.x).
    pub fn with_release(
        release: Release,
        server: &PuppetServer,
        certname: &str,
        csr_attributes: Option<&str>,
        extra_conf: &str,
    ) -> Result<Agent> {
        let dir = tempfile::Builder::new().prefix("agent-").tempdir()?;
        let confdir = dir.path().join("conf");
        let var = dir.path().join("var");
        std::fs::create_dir_all(&confdir)?;
        std::fs::create_dir_all(&var)?;
        let ssldir = var.join("ssl");
        let mut conf = std::fs::File::create(confdir.join("puppet.conf"))?;
        write!(
            conf,
            "[main]\ncertname = {certname}\nserver = localhost\nserverport = {port}\nca_port = {port}\nvardir = {var}\nssldir = {ssl}\nlogdir = {var}/log\nrundir = {var}/run\nhttp_keepalive_timeout = 0\nkeylength = 2048\n{extra_conf}\n",
            port = server.port,
            var = var.display(),
            ssl = ssldir.display(),
        )?;
        if let Some(attrs) = csr_attributes {
            std::fs::write(confdir.join("csr_attributes.yaml"), attrs)?;
        }
        let runner = match release {
            Release::Puppet7 => Runner::Host,
            Release::Puppet8 => {
                let root = match server.shared_root(release) {
                    Some(root) => root,
                    None => Arc::new(puppet_root::fresh_root()?),
                };
                Runner::Root(InRoot::new(root, [dir.path().to_path_buf()])?)
            }
        };
        Ok(Agent {
            _dir: dir,
            confdir,
            ssldir,
            certname: certname.to_owned(),
            release,
            runner,
        })
    }

    fn puppet(&self, args: &[&str]) -> Command {
        let mut argv = os(&["puppet"]);
        argv.extend(os(args));
        argv.push("--confdir".into());
        argv.push(self.confdir.clone().into());
        argv.extend(os(&["--certname", &self.certname]));
        let mut cmd = self.runner.command(&[], &argv);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// `puppet --version` of this agent's release (`7.23.0`, `8.10.0`).
    pub fn version(&self) -> Result<String> {
        let out = run_ok(&mut self.runner.command(&[], &os(&["puppet", "--version"])))
            .context("puppet --version")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// `puppet ssl submit_request`: generates a key and CSR and PUTs it (autosign runs now).
    pub fn submit_request(&self) -> Result<Output> {
        let out = self
            .puppet(&["ssl", "submit_request"])
            .output()
            .context("running puppet ssl submit_request")?;
        Ok(out)
    }

    /// `puppet ssl download_cert`; true when the agent now holds its signed certificate.
    pub fn download_cert(&self) -> Result<bool> {
        let _ = self
            .puppet(&["ssl", "download_cert"])
            .output()
            .context("running puppet ssl download_cert")?;
        Ok(self
            .ssldir
            .join(format!("certs/{}.pem", self.certname))
            .exists())
    }

    /// `puppet agent --test --noop`: fetch and compile this node's catalog with its certificate
    /// (the server needs an environment `production`, see [`PuppetServer::ensure_production`]).
    pub fn fetch_catalog(&self) -> Result<Output> {
        self.puppet(&["agent", "--test", "--noop", "--detailed-exitcodes"])
            .output()
            .context("running puppet agent --test --noop")
    }

    /// The CSR the agent submitted (PEM).
    pub fn csr_pem(&self) -> Result<Vec<u8>> {
        let p = self
            .ssldir
            .join(format!("certificate_requests/{}.pem", self.certname));
        std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
    }
}
