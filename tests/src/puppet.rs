//! A real Puppet Server CA (Debian's `puppetserver` 7.9) as a relocatable instance under a temp
//! dir on 127.0.0.1, and real Puppet agents (`puppet ssl submit_request`) with their own confdir.
//!
//! Recipe (shared research, puppet-chroot-feasibility.md §1): `puppetserver ca setup` and
//! `ca generate --certname signer-admin --ca-client` while stopped, then the JVM with
//! `-XX:TieredStopAtLevel=1 -XX:+UseSerialGC` (~50 s to ready, ~600 MB), started under `setsid`
//! (not nohup), polled on `/status/v1/simple` with a 180 s budget. `autosign` points at a given
//! executable. One server per test binary ([`PuppetServer::start`] in a `OnceLock`).
//!
//! A `static` is never dropped, so the JVM runs under a tiny `sh` supervisor that reads its stdin
//! (a pipe from this process) and sends the JVM SIGTERM when it closes: when the value is dropped
//! or when the test process ends, however it ends.

use anyhow::{Context, Result, bail, ensure};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SETUP_HINT: &str = "run `sudo tests/setup.sh` (installs puppetserver and puppet-agent)";
const JAR: &str = "/usr/share/puppetserver/puppetserver.jar";
const PACKAGED_CONF_D: &str = "/etc/puppet/puppetserver/conf.d";
const SERVICES_D: &str = "/etc/puppet/puppetserver/services.d";

/// Supervisor: run the JVM ("$@") in the background, SIGTERM it when stdin closes.
const SUPERVISOR: &str = r#""$@" </dev/null &
pid=$!
echo "$pid" > "$PS_PIDFILE"
cat >/dev/null
kill -TERM "$pid" 2>/dev/null
wait "$pid"
"#;

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// The `autosign` setting: an executable (policy) or `false` (the default).
    pub autosign: Option<PathBuf>,
    /// Extra environment for the server process (the autosign executable inherits it).
    pub env: Vec<(String, String)>,
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
    child: Child,
    stdin: Option<ChildStdin>,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn check_installed() -> Result<()> {
    for p in [
        JAR,
        "/usr/bin/puppetserver",
        "/usr/bin/puppet",
        "/usr/bin/java",
        "/usr/bin/curl",
        PACKAGED_CONF_D,
    ] {
        ensure!(Path::new(p).exists(), "{p} is missing; {SETUP_HINT}");
    }
    Ok(())
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
    /// Set up a fresh CA and start the server; returns when it answers `running`.
    pub fn start(opts: &ServerOptions) -> Result<PuppetServer> {
        check_installed()?;
        let dir = tempfile::Builder::new().prefix("puppetserver-").tempdir()?;
        let ps = dir.path().to_path_buf();
        let port = free_port()?;
        for sub in ["conf.d", "etc", "code", "var", "run", "log", "ssl", "ca"] {
            std::fs::create_dir_all(ps.join(sub))?;
        }
        for f in ["auth.conf", "ca.conf", "metrics.conf", "web-routes.conf"] {
            std::fs::copy(
                Path::new(PACKAGED_CONF_D).join(f),
                ps.join("conf.d").join(f),
            )
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
        std::fs::write(
            ps.join("conf.d/puppetserver.conf"),
            format!(
                r#"jruby-puppet: {{
    ruby-load-path: [/usr/lib/puppetserver/ruby/vendor_ruby]
    gem-home: /var/lib/puppetserver/jruby-gems
    gem-path: [${{jruby-puppet.gem-home}}, "/usr/lib/puppetserver/vendored-jruby-gems"]
    server-conf-dir: "{etc}"
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
        run_ok(
            Command::new("puppetserver")
                .args(["ca", "setup", "--config"])
                .arg(&puppet_conf),
        )
        .context("puppetserver ca setup")?;
        run_ok(
            Command::new("puppetserver")
                .args([
                    "ca",
                    "generate",
                    "--certname",
                    "signer-admin",
                    "--ca-client",
                    "--config",
                ])
                .arg(&puppet_conf),
        )
        .context("puppetserver ca generate signer-admin")?;

        let log = std::fs::File::create(ps.join("log/stdout.log"))?;
        let pidfile = ps.join("run/java.pid");
        let mut cmd = Command::new("setsid");
        cmd.args([
            "sh",
            "-c",
            SUPERVISOR,
            "sh",
            "/usr/bin/java",
            "-Xms512m",
            "-Xmx1g",
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
        ])
        .args([
            "--add-opens",
            "java.base/sun.nio.ch=ALL-UNNAMED",
            "--add-opens",
            "java.base/java.io=ALL-UNNAMED",
        ])
        .args([
            "-Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger",
            "-Djruby.lib=/usr/share/jruby/lib",
            "-XX:+CrashOnOutOfMemoryError",
        ])
        .args(["-jar", JAR, "--config"])
        .arg(ps.join("conf.d"))
        .args(["--bootstrap-config", SERVICES_D])
        .env("PS_PIDFILE", &pidfile)
        .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
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
            child,
            stdin,
        };
        server.wait_ready(Duration::from_secs(180))?;
        Ok(server)
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
        // Closing the supervisor's stdin makes it SIGTERM the JVM (stops in ~1 s).
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

/// A Puppet agent node: its own confdir, vardir and ssldir under a temp dir.
pub struct Agent {
    _dir: tempfile::TempDir,
    pub confdir: PathBuf,
    pub ssldir: PathBuf,
    pub certname: String,
}

impl Agent {
    /// A node for `certname` talking to `server`; `csr_attributes` is the YAML of
    /// `csr_attributes.yaml` (or `None` for none); `extra_conf` adds `[main]` lines (e.g.
    /// `dns_alt_names = puppet`).
    pub fn new(
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
        Ok(Agent {
            _dir: dir,
            confdir,
            ssldir,
            certname: certname.to_owned(),
        })
    }

    fn puppet(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("puppet");
        cmd.args(args)
            .arg("--confdir")
            .arg(&self.confdir)
            .args(["--certname", &self.certname])
            .stdin(Stdio::null());
        cmd
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

    /// The CSR the agent submitted (PEM).
    pub fn csr_pem(&self) -> Result<Vec<u8>> {
        let p = self
            .ssldir
            .join(format!("certificate_requests/{}.pem", self.certname));
        std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
    }
}
