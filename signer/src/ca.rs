//! Talking to the Puppet CA: the HTTP API v1 with a client certificate (preferred), or the
//! `puppetserver ca` CLI plus `$csrdir` where the API cannot be used.
//!
//! Paths come from the config, else from `puppet config print … --section server`, else from the
//! layout's defaults (Debian or AIO/OpenVox). Nothing is hard-coded beyond those defaults, except
//! that the CA's records of what it issued (`cert_inventory`, `signeddir`) are only ever taken
//! from Puppet itself: a guessed inventory that happens to exist could wrongly show "never issued".

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
    /// Why this listing entry cannot be handled at all (e.g. it has no name); the sweep reports
    /// and skips it. Names that are not plain are found by [`check_plain_name`].
    pub problem: Option<String>,
}

impl Pending {
    pub fn new(name: impl Into<String>, sha256: Option<String>) -> Self {
        Pending {
            name: name.into(),
            sha256,
            problem: None,
        }
    }
}

/// A failure that concerns one listed entry only (its request cannot be read, or the CA answers
/// an error status for that name): the sweep skips the entry and goes on with the others.
/// Anything else (the CA unreachable) stops the run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EntryError(pub String);

/// What the CA's own records say about certificates issued under a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issuance {
    /// The CA holds no certificate under the name and its inventory lists none ever issued.
    Never,
    /// A certificate was issued under the name (now or before a `clean`): the evidence.
    Issued(String),
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

/// What [`Ca::clean`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// The serial of the certificate it revoked (lowercase hex, no leading zeros), if the CA held
    /// a signed one.
    pub revoked_serial: Option<String>,
    /// The CA held something under the name (a certificate, revoked or not, or a request) and
    /// it is gone now.
    pub removed: bool,
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
    /// Whether a certificate was ever issued under `name`: the CA's status for the name, then its
    /// inventory (`$cert_inventory`, one line per certificate ever issued, kept across `clean`).
    /// `Err` when that cannot be established; callers then assume one was (fail closed).
    async fn issued(&self, name: &str) -> Result<Issuance> {
        bail!(
            "{} cannot tell which certificates it issued for {name}",
            self.describe()
        )
    }
    /// The PEM of the certificate the CA holds for `name`; `None` if it holds none.
    async fn certificate(&self, name: &str) -> Result<Option<Vec<u8>>> {
        bail!("{} cannot read the certificate of {name}", self.describe())
    }
    /// Revoke the certificate the CA holds for `name`. `Ok(false)` if it holds none.
    async fn revoke(&self, name: &str) -> Result<bool> {
        bail!(
            "{} cannot revoke the certificate of {name}",
            self.describe()
        )
    }
    /// For a retired certname: revoke its certificate (so the CRL lists the serial) and remove
    /// whatever the CA holds under the name, certificate or pending request. Nothing held is
    /// `Ok(Cleaned::default())`.
    async fn clean(&self, name: &str) -> Result<Cleaned> {
        bail!("{} cannot clean {name}", self.describe())
    }
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
    /// `puppet`, to ask for the settings below when [`resolve`] did not print them.
    pub puppet_bin: PathBuf,
    /// `cert_inventory` as `puppet config print` showed it; `None` when it did not run (then it is
    /// asked on first need). Never guessed.
    pub cert_inventory: Option<PathBuf>,
    /// `signeddir` as `puppet config print` showed it; `None` when it did not run.
    pub signeddir: Option<PathBuf>,
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
    "cert_inventory",
    "signeddir",
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
        cert_inventory: get("cert_inventory").map(PathBuf::from),
        signeddir: get("signeddir").map(PathBuf::from),
        puppet_bin: puppet,
    })
}

/// The CA's records of what it issued, located through Puppet: from [`resolve`]'s print, else by
/// asking `puppet config print` on first need (then remembered).
struct Records {
    paths: CaPaths,
    limit: Duration,
    asked: std::sync::Mutex<Option<BTreeMap<String, String>>>,
}

impl Records {
    fn new(paths: &CaPaths, limit: Duration) -> Self {
        Records {
            paths: paths.clone(),
            limit,
            asked: std::sync::Mutex::new(None),
        }
    }

    async fn setting(&self, key: &str) -> Result<PathBuf> {
        let known = match key {
            "cert_inventory" => &self.paths.cert_inventory,
            "signeddir" => &self.paths.signeddir,
            _ => bail!("unknown CA setting {key}"),
        };
        if let Some(p) = known {
            return Ok(p.clone());
        }
        let cached = self
            .asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let map = match cached {
            Some(m) => m,
            None => {
                let (bin, conf, limit) = (
                    self.paths.puppet_bin.clone(),
                    self.paths.puppet_conf.clone(),
                    self.limit,
                );
                let m = tokio::task::spawn_blocking(move || {
                    puppet_config_print(&bin, conf.as_deref(), limit)
                })
                .await
                .context("joining `puppet config print`")??;
                *self
                    .asked
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(m.clone());
                m
            }
        };
        map.get(key)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("`puppet config print {key}` printed nothing"))
    }

    /// What `$cert_inventory` lists for `name`. Fails when the inventory cannot be read or lists
    /// nothing at all (a CA's inventory holds at least its own certificates).
    async fn inventory(&self, name: &str) -> Result<Issuance> {
        let path = self.setting("cert_inventory").await?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the CA inventory {}", path.display()))?;
        inventory_issuance(&text, name, &path)
    }
}

/// Lines of Puppet's inventory are `SERIAL NOT_BEFORE NOT_AFTER /SUBJECT`. A line counts for
/// `name` when any of its space-, slash-, comma- or plus-separated tokens is `CN=<name>` (when in
/// doubt a line counts: that only ever refuses a retry).
fn inventory_issuance(text: &str, name: &str, path: &Path) -> Result<Issuance> {
    let want = format!("CN={name}");
    let mut lines = 0;
    let mut serials = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        lines += 1;
        if line.split([' ', '/', ',', '+']).any(|t| t == want) {
            serials.push(line.split(' ').next().unwrap_or("?").to_owned());
        }
    }
    if lines == 0 {
        bail!(
            "the CA inventory {} lists no certificate at all (not even the CA's own); it is not this CA's",
            path.display()
        );
    }
    Ok(if serials.is_empty() {
        Issuance::Never
    } else {
        Issuance::Issued(format!(
            "serial {} in {}",
            serials.join(", "),
            path.display()
        ))
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
            records: Records::new(paths, limit),
        }))
    }
}

/// Puppet CA HTTP API v1.
pub struct ApiCa {
    base: String,
    client: reqwest::Client,
    records: Records,
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
            records: Records::new(paths, limit),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }
}

/// `AB:CD:…` → `abcd…`.
pub fn normalise_fingerprint(fp: &str) -> String {
    fp.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Whether a listed certname is one the signer will address (in a URL path, a file name, a
/// command's argument): ASCII letters, digits, `-`, `_` and `.`, not starting with `.`. The CA
/// validates names it receives through its API, but it lists whatever is in its CSR directory.
pub fn check_plain_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        || name.starts_with('.')
        // an argument of `puppetserver ca … --certname NAME`: never one that reads as an option
        // (Puppet Server refuses such certnames at submission anyway)
        || name.starts_with('-')
        || name.len() > 255
    {
        return Err(format!(
            "CA listed a certname `{}` that is not a plain name (letters, digits, `-`, `_`, `.`; not starting with `.` or `-`)",
            shown_name(name)
        ));
    }
    Ok(())
}

/// A listed name as it may be shown in a log: control and non-ASCII characters escaped, bounded.
pub fn shown_name(name: &str) -> String {
    let s: String = name.escape_default().collect();
    if s.chars().count() > 255 {
        format!("{}…", s.chars().take(255).collect::<String>())
    } else {
        s
    }
}

fn url_segment(name: &str) -> Result<&str> {
    // Refuse anything that could change the path.
    check_plain_name(name).map_err(|e| anyhow::anyhow!(EntryError(e)))?;
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
        // Each entry on its own: one the signer cannot use is reported, not fatal to the rest.
        let list: Vec<serde_json::Value> = serde_json::from_str(&body)
            .with_context(|| format!("CA {url} sent unexpected JSON"))?;
        Ok(list
            .into_iter()
            .enumerate()
            .map(
                |(i, s)| match s.get("name").and_then(serde_json::Value::as_str) {
                    Some(name) => Pending::new(
                        name,
                        s.pointer("/fingerprints/SHA256")
                            .and_then(serde_json::Value::as_str)
                            .map(normalise_fingerprint),
                    ),
                    None => Pending {
                        name: format!("(listing entry {i})"),
                        sha256: None,
                        problem: Some(format!("CA {url} listed entry {i} without a name")),
                    },
                },
            )
            .collect())
    }

    async fn csr(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let (url, resp) = self
            .get(
                &format!("certificate_request/{}", url_segment(name)?),
                "text/plain",
            )
            .await?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(EntryError(format!("CA {url} answered {status}")).into());
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

    async fn issued(&self, name: &str) -> Result<Issuance> {
        let (url, status) = self.status(name).await?;
        if let Some(status) = status {
            match status["state"].as_str() {
                Some("requested") => {}
                Some(state @ ("signed" | "revoked")) => {
                    return Ok(Issuance::Issued(format!(
                        "the CA holds a {state} certificate, serial {}",
                        status["serial_number"]
                    )));
                }
                other => bail!("CA {url} reports an unknown state {other:?}"),
            }
        }
        // A cleaned certificate leaves no status (404), only its inventory line.
        self.records.inventory(name).await
    }

    async fn certificate(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let (url, resp) = self
            .get(&format!("certificate/{}", url_segment(name)?), "text/plain")
            .await?;
        match resp.status().as_u16() {
            404 => Ok(None),
            200..=299 => Ok(Some(
                resp.bytes()
                    .await
                    .with_context(|| format!("reading {url}"))?
                    .to_vec(),
            )),
            s => bail!("CA {url} answered {s}"),
        }
    }

    async fn revoke(&self, name: &str) -> Result<bool> {
        let (url, status, body) = self.put_state(name, "revoked").await?;
        match status.as_u16() {
            200..=299 => Ok(true),
            // 409: "Cannot revoke certificate for host … without a signed certificate".
            404 | 409 => Ok(false),
            _ => bail!("CA {url} answered {status} to revoking: {}", body.trim()),
        }
    }

    async fn clean(&self, name: &str) -> Result<Cleaned> {
        let (url, status) = self.status(name).await?;
        let Some(status) = status else {
            return Ok(Cleaned::default());
        };
        let revoked_serial = match status["state"].as_str() {
            Some("signed") => {
                let serial = match &status["serial_number"] {
                    serde_json::Value::Number(n) if n.as_u64().is_some() => {
                        format!("{:x}", n.as_u64().unwrap_or_default())
                    }
                    other => other.to_string(),
                };
                if !self.revoke(name).await? {
                    bail!("CA {url} shows a signed certificate but refused to revoke it");
                }
                Some(serial)
            }
            Some("revoked" | "requested") => None,
            other => bail!("CA {url} reports an unknown state {other:?}"),
        };
        self.delete_status(&url).await?;
        Ok(Cleaned {
            revoked_serial,
            removed: true,
        })
    }

    async fn sign(&self, name: &str) -> Result<SignOutcome> {
        let (url, status, body) = self.put_state(name, "signed").await?;
        match status.as_u16() {
            200..=299 => Ok(SignOutcome::Signed),
            404 => Ok(SignOutcome::Gone),
            409 => Ok(SignOutcome::Refused(body.trim().to_owned())),
            _ => bail!("CA {url} answered {status}: {}", body.trim()),
        }
    }
}

impl ApiCa {
    /// `PUT certificate_status/<name>` `{"desired_state": <state>}`: the URL, status and body.
    async fn put_state(
        &self,
        name: &str,
        state: &str,
    ) -> Result<(String, reqwest::StatusCode, String)> {
        let url = self.url(&format!("certificate_status/{}", url_segment(name)?));
        let resp = self
            .client
            .put(&url)
            .header("Content-Type", "application/json")
            .body(serde_json::json!({ "desired_state": state }).to_string())
            .send()
            .await
            .with_context(|| format!("CA {url} is unreachable"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        Ok((url, status, body))
    }

    /// `GET <path>` with `Accept: <accept>`: the URL and the response, whatever its status.
    async fn get(&self, path: &str, accept: &str) -> Result<(String, reqwest::Response)> {
        let url = self.url(path);
        let resp = self
            .client
            .get(&url)
            .header("Accept", accept)
            .send()
            .await
            .with_context(|| format!("CA {url} is unreachable"))?;
        Ok((url, resp))
    }

    /// `GET certificate_status/<name>` as JSON; `None` when the CA knows nothing of the name.
    async fn status(&self, name: &str) -> Result<(String, Option<serde_json::Value>)> {
        let (url, resp) = self
            .get(
                &format!("certificate_status/{}", url_segment(name)?),
                "application/json",
            )
            .await?;
        match resp.status().as_u16() {
            404 => Ok((url, None)),
            200..=299 => {
                let v = resp
                    .json()
                    .await
                    .with_context(|| format!("CA {url} sent unexpected JSON"))?;
                Ok((url, Some(v)))
            }
            s => bail!("CA {url} answered {s}"),
        }
    }

    /// `DELETE certificate_status/<name>`, which discards everything the CA holds for the name:
    /// so it is sent only after the status is confirmed `requested` (no certificate to lose).
    async fn delete_requested(&self, name: &str) -> Result<bool> {
        let (url, status) = self.status(name).await?;
        if status.is_none_or(|s| s["state"] != "requested") {
            return Ok(false);
        }
        self.delete_status(&url).await
    }

    /// `DELETE <url>` (a `certificate_status/<name>` URL): `Ok(false)` when the CA already held
    /// nothing (404).
    async fn delete_status(&self, url: &str) -> Result<bool> {
        let resp = self
            .client
            .delete(url)
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
    records: Records,
}

impl CliCa {
    fn csr_path(&self, name: &str) -> Result<PathBuf> {
        Ok(self
            .paths
            .csrdir
            .join(format!("{}.pem", url_segment(name)?)))
    }

    /// `$signeddir/<name>.pem`; `signeddir` from Puppet, else next to `$csrdir`.
    async fn cert_path(&self, name: &str) -> Result<PathBuf> {
        let seg = url_segment(name)?;
        let dir = match self.records.setting("signeddir").await {
            Ok(d) => d,
            Err(e) => {
                let guess = self
                    .paths
                    .csrdir
                    .parent()
                    .unwrap_or(Path::new("/"))
                    .join("signed");
                tracing::warn!("{e:#}; looking for certificates in {}", guess.display());
                guess
            }
        };
        Ok(dir.join(format!("{seg}.pem")))
    }

    /// `puppetserver ca <verb> --certname <name> [--config …]`.
    async fn ca_command(&self, verb: &str, name: &str) -> Result<std::process::Output> {
        let mut cmd = Command::new(&self.paths.puppetserver_bin);
        cmd.args(["ca", verb, "--certname", url_segment(name)?]);
        if let Some(conf) = &self.paths.puppet_conf {
            cmd.arg("--config").arg(conf);
        }
        let limit = self.limit;
        tokio::task::spawn_blocking(move || run(cmd, limit))
            .await
            .context("joining the CLI runner")?
    }
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{} {}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
    .trim()
    .to_owned()
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
                out.push(Pending::new(stem, None));
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
            Err(e) => Err(EntryError(format!("reading {}: {e}", path.display())).into()),
        }
    }

    async fn issued(&self, name: &str) -> Result<Issuance> {
        let cert = self.cert_path(name).await?;
        if cert.exists() {
            return Ok(Issuance::Issued(format!(
                "the CA holds a certificate, {}",
                cert.display()
            )));
        }
        self.records.inventory(name).await
    }

    async fn certificate(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.cert_path(name).await?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    async fn revoke(&self, name: &str) -> Result<bool> {
        if !self.cert_path(name).await?.exists() {
            return Ok(false);
        }
        let out = self.ca_command("revoke", name).await?;
        if out.status.success() {
            Ok(true)
        } else {
            bail!(
                "puppetserver ca revoke {name} failed: {}",
                output_text(&out)
            )
        }
    }

    async fn clean(&self, name: &str) -> Result<Cleaned> {
        let cert = self.cert_path(name).await?;
        let revoked_serial = match std::fs::read(&cert) {
            Ok(pem) => {
                let serial = openssl::x509::X509::from_pem(&pem)
                    .ok()
                    .and_then(|c| c.serial_number().to_bn().ok())
                    .and_then(|n| n.to_hex_str().ok())
                    .map(|h| h.to_ascii_lowercase().trim_start_matches('0').to_owned());
                let out = self.ca_command("clean", name).await?;
                if !out.status.success() {
                    bail!("puppetserver ca clean {name} failed: {}", output_text(&out));
                }
                serial.or_else(|| Some("unknown".into()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", cert.display())),
        };
        let request = self.remove_request(name).await?;
        Ok(Cleaned {
            removed: revoked_serial.is_some() || request,
            revoked_serial,
        })
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
        let out = self.ca_command("sign", name).await?;
        if out.status.success() {
            Ok(SignOutcome::Signed)
        } else {
            let text = output_text(&out);
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

/// How much of each output stream [`run`] keeps; the rest is read and dropped.
pub const OUTPUT_CAP: u64 = 8 << 20;

/// Run a command with stdin closed and a time limit; output captured (up to [`OUTPUT_CAP`] per
/// stream). Both streams are drained by their own threads while the child runs, so a child that
/// writes more than a pipe buffer never blocks on a full pipe.
pub fn run(mut cmd: Command, limit: Duration) -> Result<std::process::Output> {
    use std::io::Read;
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    let start = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::channel::<(bool, std::io::Result<Vec<u8>>)>();
    let pipes: [(bool, Option<Box<dyn Read + Send>>); 2] = [
        (true, child.stdout.take().map(|p| Box::new(p) as _)),
        (false, child.stderr.take().map(|p| Box::new(p) as _)),
    ];
    let mut readers = 0;
    for (is_stdout, pipe) in pipes {
        let Some(mut pipe) = pipe else { continue };
        let tx = tx.clone();
        readers += 1;
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = (&mut pipe)
                .take(OUTPUT_CAP)
                .read_to_end(&mut buf)
                .and_then(|_| std::io::copy(&mut pipe, &mut std::io::sink()))
                .map(|_| buf);
            let _ = tx.send((is_stdout, r));
        });
    }
    drop(tx);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            // The reader threads end when the last holder of the pipes does; not waited for.
            bail!("{shown} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for _ in 0..readers {
        // A process the child left running may hold a pipe open: wait no longer than the limit.
        let left = limit.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok((true, r)) => {
                stdout = r.with_context(|| format!("reading the output of {shown}"))?;
            }
            Ok((false, r)) => {
                stderr = r.with_context(|| format!("reading the errors of {shown}"))?;
            }
            Err(_) => bail!(
                "{shown} exited ({status}) but a process it started kept its output open past {limit:?}"
            ),
        }
    }
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    /// The neighbour of the hook's option-like certnames: the sweep's CLI method puts the name
    /// after `--certname` in `puppetserver ca sign`, so one that starts with `-` is refused
    /// before any command or URL is built.
    #[test]
    fn a_name_that_reads_as_an_option_is_not_plain() {
        for bad in [
            "--help",
            "-h",
            "--config=/x",
            "-",
            "..",
            ".x",
            "a/b",
            "a b",
            "",
        ] {
            assert!(super::check_plain_name(bad).is_err(), "{bad:?}");
            assert!(super::url_segment(bad).is_err(), "{bad:?}");
        }
        for good in ["web-1", "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11", "a.b_c"] {
            assert!(super::check_plain_name(good).is_ok(), "{good:?}");
        }
    }

    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn the_cli_runner_drains_stdout_and_stderr_while_it_waits() {
        // More than a pipe buffer on both streams: a runner that reads only after the exit
        // deadlocks with the child until its deadline.
        let script = "head -c 1500000 /dev/zero | tr '\\0' o; head -c 1200000 /dev/zero | tr '\\0' e >&2; echo done >&2";
        let limit = Duration::from_secs(10);
        let t = std::time::Instant::now();
        let out = run(sh(script), limit).expect("the child finishes well within its limit");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), 1_500_000);
        assert!(out.stdout.iter().all(|b| *b == b'o'));
        assert_eq!(out.stderr.len(), 1_200_000 + 5);
        assert!(out.stderr.ends_with(b"done\n"));
    }

    #[test]
    fn the_cli_runner_still_ends_a_child_at_its_deadline() {
        for script in ["sleep 30", "head -c 2000000 /dev/zero; sleep 30"] {
            let t = std::time::Instant::now();
            let e = run(sh(script), Duration::from_millis(300)).unwrap_err();
            assert!(e.to_string().contains("did not finish"), "{e:#}");
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{script}: took {:?}",
                t.elapsed()
            );
        }
    }
}
