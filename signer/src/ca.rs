//! Talking to the Puppet CA: the HTTP API v1 with a client certificate (preferred), or the
//! `puppetserver ca` CLI plus `$csrdir` where the API cannot be used.
//!
//! Paths come from the config, else from `puppet config print … --section server`, else from the
//! layout's defaults (Debian or AIO/OpenVox). Nothing is hard-coded beyond those defaults.

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use schemas::signer_config::{CaConfig, CaMethod};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// One pending CSR as the CA lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub name: String,
    /// Lowercase hex SHA-256 of the CSR's DER, when the CA gave one.
    pub sha256: Option<String>,
}

/// The CA's answer to a signing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignOutcome {
    Signed,
    /// The CA refused (HTTP 409 or CLI error): its reason.
    Refused(String),
    /// No such pending CSR any more (HTTP 404).
    Gone,
}

/// A Puppet CA.
#[async_trait]
pub trait Ca: Send + Sync {
    fn describe(&self) -> String;
    async fn pending(&self) -> Result<Vec<Pending>>;
    /// The PEM of a pending CSR; `None` if there is none.
    async fn csr(&self, name: &str) -> Result<Option<Vec<u8>>>;
    async fn sign(&self, name: &str) -> Result<SignOutcome>;
    /// Discard the pending request of `name` (never a certificate: a name without a pending
    /// request is left alone). `Ok(false)` if there was none.
    async fn remove_request(&self, name: &str) -> Result<bool>;
}

/// Resolved locations of everything the sweep needs.
#[derive(Debug, Clone, Default)]
pub struct CaPaths {
    pub server_url: String,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub ca_bundle: PathBuf,
    pub csrdir: PathBuf,
    pub puppet_conf: Option<PathBuf>,
    pub puppetserver_bin: PathBuf,
}

const SETTINGS: &[&str] = &[
    "confdir",
    "ssldir",
    "cadir",
    "csrdir",
    "certname",
    "hostcert",
    "hostprivkey",
    "localcacert",
    "ca_server",
    "ca_port",
];

/// `puppet config print SETTINGS --section server [--config FILE]` as a map.
pub fn puppet_config_print(
    puppet: &Path,
    puppet_conf: Option<&Path>,
    limit: Duration,
) -> Result<BTreeMap<String, String>> {
    let mut cmd = Command::new(puppet);
    cmd.args(["config", "print"])
        .args(SETTINGS)
        .args(["--section", "server"]);
    if let Some(conf) = puppet_conf {
        cmd.arg("--config").arg(conf);
    }
    let out =
        run(cmd, limit).with_context(|| format!("running {} config print", puppet.display()))?;
    if !out.status.success() {
        bail!(
            "{} config print failed: {}",
            puppet.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(" = ")
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect())
}

/// Fill in every path the config leaves out.
pub fn resolve(cfg: &CaConfig, limit: Duration) -> Result<CaPaths> {
    let layout = cfg.layout;
    let puppet = cfg
        .puppet_bin
        .clone()
        .unwrap_or_else(|| PathBuf::from(layout.puppet_bin()));
    let complete = cfg.server_url.is_some()
        && cfg.client_cert.is_some()
        && cfg.client_key.is_some()
        && cfg.ca_bundle.is_some()
        && (cfg.csrdir.is_some() || cfg.method == CaMethod::Api);
    let printed = if complete {
        BTreeMap::new()
    } else {
        match puppet_config_print(&puppet, cfg.puppet_conf.as_deref(), limit) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("{e:#}; using the {layout:?} layout's default paths");
                BTreeMap::new()
            }
        }
    };
    let get = |k: &str| printed.get(k).filter(|v| !v.is_empty()).cloned();
    let ssldir = get("ssldir").unwrap_or_else(|| layout.ssldir().to_owned());
    let cadir = get("cadir").unwrap_or_else(|| layout.cadir().to_owned());
    let certname = get("certname").unwrap_or_else(hostname);
    Ok(CaPaths {
        server_url: cfg.server_url.clone().unwrap_or_else(|| {
            format!(
                "https://{}:{}",
                get("ca_server").unwrap_or_else(|| "puppet".into()),
                get("ca_port").unwrap_or_else(|| "8140".into())
            )
        }),
        client_cert: cfg
            .client_cert
            .clone()
            .or_else(|| get("hostcert").map(PathBuf::from))
            .unwrap_or_else(|| Path::new(&ssldir).join(format!("certs/{certname}.pem"))),
        client_key: cfg
            .client_key
            .clone()
            .or_else(|| get("hostprivkey").map(PathBuf::from))
            .unwrap_or_else(|| Path::new(&ssldir).join(format!("private_keys/{certname}.pem"))),
        ca_bundle: cfg
            .ca_bundle
            .clone()
            .or_else(|| get("localcacert").map(PathBuf::from))
            .unwrap_or_else(|| Path::new(&ssldir).join("certs/ca.pem")),
        csrdir: cfg
            .csrdir
            .clone()
            .or_else(|| get("csrdir").map(PathBuf::from))
            .unwrap_or_else(|| Path::new(&cadir).join("requests")),
        puppet_conf: cfg.puppet_conf.clone(),
        puppetserver_bin: cfg
            .puppetserver_bin
            .clone()
            .unwrap_or_else(|| PathBuf::from(layout.puppetserver_bin())),
    })
}

/// The host's name, for defaults and the consumption record.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// Open the CA the config asks for: the API, the CLI, or (auto) the API when its client
/// certificate and key exist, else the CLI.
pub fn open(cfg: &CaConfig, paths: &CaPaths, limit: Duration) -> Result<Box<dyn Ca>> {
    let use_api = match cfg.method {
        CaMethod::Api => true,
        CaMethod::Cli => false,
        CaMethod::Auto => {
            paths.client_cert.exists() && paths.client_key.exists() && paths.ca_bundle.exists()
        }
    };
    if use_api {
        Ok(Box::new(ApiCa::new(paths, limit)?))
    } else {
        tracing::info!(
            "using the puppetserver CLI and {} (no API client certificate at {})",
            paths.csrdir.display(),
            paths.client_cert.display()
        );
        Ok(Box::new(CliCa {
            paths: paths.clone(),
            limit,
        }))
    }
}

/// Puppet CA HTTP API v1.
pub struct ApiCa {
    base: String,
    client: reqwest::Client,
}

impl ApiCa {
    pub fn new(paths: &CaPaths, limit: Duration) -> Result<Self> {
        let read = |p: &Path, what: &str| {
            std::fs::read(p).with_context(|| format!("reading the CA {what} {}", p.display()))
        };
        let cert = read(&paths.client_cert, "client certificate")?;
        let key = read(&paths.client_key, "client key")?;
        // reqwest wants PKCS#8; Puppet writes PKCS#1 ("RSA PRIVATE KEY") keys.
        let key = openssl::pkey::PKey::private_key_from_pem(&key)
            .and_then(|k| k.private_key_to_pem_pkcs8())
            .with_context(|| {
                format!(
                    "client key {} is not a PEM private key",
                    paths.client_key.display()
                )
            })?;
        let identity = reqwest::Identity::from_pkcs8_pem(&cert, &key).with_context(|| {
            format!(
                "client certificate {} with key {}: not a PEM certificate and its matching key",
                paths.client_cert.display(),
                paths.client_key.display()
            )
        })?;
        let bundle = read(&paths.ca_bundle, "bundle")?;
        let roots = reqwest::Certificate::from_pem_bundle(&bundle)
            .with_context(|| format!("CA bundle {} is not PEM", paths.ca_bundle.display()))?;
        if roots.is_empty() {
            bail!(
                "CA bundle {} holds no certificate",
                paths.ca_bundle.display()
            );
        }
        let client = reqwest::Client::builder()
            .identity(identity)
            .tls_certs_only(roots)
            .timeout(limit)
            .connect_timeout(limit)
            .build()
            .context("building the CA HTTP client")?;
        Ok(ApiCa {
            base: format!("{}/puppet-ca/v1", paths.server_url.trim_end_matches('/')),
            client,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }
}

#[derive(serde::Deserialize)]
struct Status {
    name: String,
    #[serde(default)]
    fingerprints: BTreeMap<String, String>,
}

/// `AB:CD:…` → `abcd…`.
pub fn normalise_fingerprint(fp: &str) -> String {
    fp.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_ascii_lowercase()
}

fn url_segment(name: &str) -> Result<&str> {
    // The CA validated names; still refuse anything that could change the path.
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        || name.starts_with('.')
    {
        bail!("CA listed a certname `{name}` that is not a plain name");
    }
    Ok(name)
}

#[async_trait]
impl Ca for ApiCa {
    fn describe(&self) -> String {
        self.base.clone()
    }

    async fn pending(&self) -> Result<Vec<Pending>> {
        let url = self.url("certificate_statuses/any?state=requested");
        let resp = self
            .client
            .get(&url)
            .header("Accept", "application/json")
            .send()
            .await
            .with_context(|| format!("CA {url} is unreachable"))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .with_context(|| format!("reading {url}"))?;
        if status == reqwest::StatusCode::FORBIDDEN {
            bail!(
                "CA {url} answered 403: the client certificate lacks pp_cli_auth (make one with `puppetserver ca generate --certname signer --ca-client` while the server is stopped) or auth.conf does not allow it"
            );
        }
        if !status.is_success() {
            bail!("CA {url} answered {status}: {}", body.trim());
        }
        let list: Vec<Status> = serde_json::from_str(&body)
            .with_context(|| format!("CA {url} sent unexpected JSON"))?;
        Ok(list
            .into_iter()
            .map(|s| Pending {
                sha256: s
                    .fingerprints
                    .get("SHA256")
                    .map(|f| normalise_fingerprint(f)),
                name: s.name,
            })
            .collect())
    }

    async fn csr(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let url = self.url(&format!("certificate_request/{}", url_segment(name)?));
        let resp = self
            .client
            .get(&url)
            .header("Accept", "text/plain")
            .send()
            .await
            .with_context(|| format!("CA {url} is unreachable"))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            bail!("CA {url} answered {status}");
        }
        Ok(Some(
            resp.bytes()
                .await
                .with_context(|| format!("reading {url}"))?
                .to_vec(),
        ))
    }

    async fn remove_request(&self, name: &str) -> Result<bool> {
        self.delete_requested(name).await
    }

    async fn sign(&self, name: &str) -> Result<SignOutcome> {
        let url = self.url(&format!("certificate_status/{}", url_segment(name)?));
        let resp = self
            .client
            .put(&url)
            .header("Content-Type", "application/json")
            .body(r#"{"desired_state":"signed"}"#)
            .send()
            .await
            .with_context(|| format!("CA {url} is unreachable"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        match status.as_u16() {
            200..=299 => Ok(SignOutcome::Signed),
            404 => Ok(SignOutcome::Gone),
            409 => Ok(SignOutcome::Refused(body.trim().to_owned())),
            _ => bail!("CA {url} answered {status}: {}", body.trim()),
        }
    }
}

impl ApiCa {
    /// `DELETE certificate_status/<name>`, which discards everything the CA holds for the name:
    /// so it is sent only after the status is confirmed `requested` (no certificate to lose).
    async fn delete_requested(&self, name: &str) -> Result<bool> {
        let seg = url_segment(name)?;
        let url = self.url(&format!("certificate_status/{seg}"));
        let resp = self
            .client
            .get(&url)
            .header("Accept", "application/json")
            .send()
            .await
            .with_context(|| format!("CA {url} is unreachable"))?;
        match resp.status().as_u16() {
            404 => return Ok(false),
            200..=299 => {}
            s => bail!("CA {url} answered {s}"),
        }
        let status: serde_json::Value = resp
            .json()
            .await
            .with_context(|| format!("CA {url} sent unexpected JSON"))?;
        if status["state"] != "requested" {
            return Ok(false);
        }
        let resp = self
            .client
            .delete(&url)
            .send()
            .await
            .with_context(|| format!("CA {url} is unreachable"))?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            s => bail!(
                "CA {url} answered {s} to DELETE: {}",
                resp.text().await.unwrap_or_default().trim()
            ),
        }
    }
}

/// `puppetserver ca sign` plus reading `$csrdir`: for CA hosts where no API client certificate
/// is available (the CLI then uses the server's own host certificate).
pub struct CliCa {
    paths: CaPaths,
    limit: Duration,
}

impl CliCa {
    fn csr_path(&self, name: &str) -> Result<PathBuf> {
        Ok(self
            .paths
            .csrdir
            .join(format!("{}.pem", url_segment(name)?)))
    }
}

#[async_trait]
impl Ca for CliCa {
    fn describe(&self) -> String {
        format!(
            "{} ca (CSRs in {})",
            self.paths.puppetserver_bin.display(),
            self.paths.csrdir.display()
        )
    }

    async fn pending(&self) -> Result<Vec<Pending>> {
        let dir = &self.paths.csrdir;
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)
            .with_context(|| format!("reading the CSR directory {}", dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".pem") {
                out.push(Pending {
                    name: stem.to_owned(),
                    sha256: None,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn csr(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.csr_path(name)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    async fn remove_request(&self, name: &str) -> Result<bool> {
        let path = self.csr_path(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }

    async fn sign(&self, name: &str) -> Result<SignOutcome> {
        if !self.csr_path(name)?.exists() {
            return Ok(SignOutcome::Gone);
        }
        let mut cmd = Command::new(&self.paths.puppetserver_bin);
        cmd.args(["ca", "sign", "--certname", url_segment(name)?]);
        if let Some(conf) = &self.paths.puppet_conf {
            cmd.arg("--config").arg(conf);
        }
        let limit = self.limit;
        let out = tokio::task::spawn_blocking(move || run(cmd, limit))
            .await
            .context("joining the CLI runner")??;
        if out.status.success() {
            Ok(SignOutcome::Signed)
        } else {
            let text = format!(
                "{} {}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            if text.contains("Could not")
                || text.contains("nable to connect")
                || text.contains("Connection refused")
            {
                bail!("puppetserver ca sign {name} failed: {}", text.trim());
            }
            Ok(SignOutcome::Refused(text.trim().to_owned()))
        }
    }
}

/// Run a command with stdin closed and a time limit; output captured.
pub fn run(mut cmd: Command, limit: Duration) -> Result<std::process::Output> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    let start = std::time::Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            return child
                .wait_with_output()
                .with_context(|| format!("reading the output of {shown}"));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{shown} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
