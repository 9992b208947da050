//! The normalised user-data model: what bootcfg applies.
//!
//! Both syntaxes, cloud-init's current `apt:` form and the original boot-time configuration RFC's
//! top-level keys (`apt_sources`, `apt_proxy`, …), are parsed and validated into this one model.
//! The agent never looks at raw keys. Every string in here has already been validated: file names
//! do not escape their directory, package names and versions follow Debian policy, `$VARIABLES`
//! in source lines are known, key blocks are real OpenPGP public keys, `ca_cert` is a real PEM
//! certificate, and puppet.conf values hold no newlines.
//!
//! This file is the contract between the parser (`userdata::parse`) and the agent (`bootcfg`).
//! Add fields freely; rename or remove only with both sides.

use serde::Serialize;
use std::collections::BTreeMap;

/// Everything bootcfg applies, in boot order: apt configuration, sources and keys, debconf,
/// update/upgrade/packages, then Puppet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserData {
    pub apt: Apt,
    pub packages: Packages,
    /// `None` when user-data has no `puppet:` key (the module does nothing).
    pub puppet: Option<Puppet>,
    /// Top-level keys of cloud-init modules bootcfg does not handle (`runcmd`, `users`, …):
    /// reported as "not handled by bootcfg" and ignored.
    pub not_handled: Vec<String>,
}

/// apt configuration, sources, keys and debconf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Apt {
    /// Keep the image's main sources list untouched. Default `true` (as Debian's packaged
    /// cloud-init configures it); when `false`, the main list is rendered from `sources_list`
    /// (or the built-in template) with `primary`/`security`.
    pub preserve_sources_list: bool,
    /// Template for the main sources list (`$MIRROR`, `$RELEASE`, `$PRIMARY`, `$SECURITY`): all
    /// one-line entries, or all deb822 stanzas ([`crate::userdata::checks::is_deb822`] tells
    /// which; validated not to mix them).
    pub sources_list: Option<String>,
    /// Mirror choices for the main archive; the first entry whose `arches` holds the machine's
    /// architecture (or `default`) wins.
    pub primary: Vec<Mirror>,
    pub security: Vec<Mirror>,
    /// Suites to comment out of the rendered main sources list (`updates`, `$RELEASE-backports`, …).
    pub disable_suites: Vec<String>,
    /// Verbatim apt.conf text (`apt.conf` in the `apt:` form).
    pub conf: Option<String>,
    /// apt.conf.d snippets from the RFC syntax's list of `{filename, content}`, in order.
    pub conf_files: Vec<AptConfFile>,
    /// Proxies, each protocol to its own setting (legacy `apt_https_proxy` → `https`, not swapped).
    pub proxy: Proxy,
    /// `Acquire::http::Pipeline-Depth`; `None` leaves apt's default (`os`).
    pub pipelining: Option<u8>,
    /// Extra sources, in the order given.
    pub sources: Vec<Source>,
    /// Source strings matching this regex go to `add-apt-repository` (e.g. `ppa:owner/name`).
    pub add_apt_repo_match: String,
    /// debconf selection sets, sorted by name, each one or more `pkg question type value` lines.
    pub debconf_selections: Vec<DebconfSet>,
    /// bootcfg extension (added by the agent, H4a): write `sources` entries as deb822
    /// `<stem>.sources` files instead of one-line `.list` files. Default `false` (cloud-init's
    /// format). Suggested user-data key: `apt.sources_format: deb822`.
    pub deb822: bool,
    /// bootcfg extension (added by the agent, H4a): after setting the selections,
    /// `dpkg-reconfigure` the already-installed packages they name (cloud-init only warns).
    /// Default `false`. Suggested user-data key: `apt.debconf_reconfigure: true`.
    pub debconf_reconfigure: bool,
}

impl Default for Apt {
    fn default() -> Self {
        Apt {
            preserve_sources_list: true,
            sources_list: None,
            primary: Vec::new(),
            security: Vec::new(),
            disable_suites: Vec::new(),
            conf: None,
            conf_files: Vec::new(),
            proxy: Proxy::default(),
            pipelining: None,
            sources: Vec::new(),
            add_apt_repo_match: DEFAULT_ADD_APT_REPO_MATCH.to_owned(),
            debconf_selections: Vec::new(),
            deb822: false,
            debconf_reconfigure: false,
        }
    }
}

/// cloud-init's default `add_apt_repo_match`.
pub const DEFAULT_ADD_APT_REPO_MATCH: &str = r"^[\w-]+:\w";
/// The keyserver used when a `keyid` names none.
pub const DEFAULT_KEYSERVER: &str = "keyserver.ubuntu.com";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AptConfFile {
    /// A bare file name under `/etc/apt/apt.conf.d/` (validated: no `/`, no `..`).
    pub filename: String,
    pub content: String,
}

/// Where bootcfg keeps each repository's signing key (`<stem>.gpg`, `<stem>` = the source's file
/// name without `.list`), referenced by `signed-by=` on that repository's lines only.
pub const KEYRING_DIR: &str = "/etc/apt/keyrings";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Proxy {
    /// `Acquire::http::Proxy` as apt uses it: `http_proxy` (`apt_http_proxy`), else `proxy`
    /// (`apt_proxy`).
    pub http: Option<String>,
    pub https: Option<String>,
    pub ftp: Option<String>,
    /// `proxy` (`apt_proxy`) when `http_proxy` (`apt_http_proxy`) is given too. cloud-init writes
    /// an `Acquire::http::Proxy` line for each, this one first, and apt uses the last one
    /// ([`Proxy::http`]); bootcfg writes the same two lines. It may hold credentials.
    pub http_overridden: Option<String>,
}

impl Proxy {
    /// Every proxy URL given (each may hold credentials, so each is a secret to redact).
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        [&self.http_overridden, &self.http, &self.ftp, &self.https]
            .into_iter()
            .flatten()
            .map(String::as_str)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Mirror {
    pub arches: Vec<String>,
    pub uri: Option<String>,
    pub search: Vec<String>,
    pub search_dns: bool,
    pub key: Option<KeySource>,
}

/// One extra apt source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// The `apt.sources` map key, or a generated name for an RFC-syntax list entry.
    pub name: String,
    /// File name under `/etc/apt/sources.list.d/`, always ending in `.list`; validated not to
    /// escape that directory. Defaults: the map key (`apt:` form), `cloud_config_sources.list` (RFC
    /// list form, cloud-init's name).
    pub filename: String,
    /// The source line; may hold `$RELEASE`, `$MIRROR`, `$PRIMARY`, `$SECURITY`, `$KEY_FILE`.
    /// `None`: key handling only, no file.
    pub source: Option<String>,
    pub key: Option<KeySource>,
    /// Append to the file (cloud-init's default) rather than replace it.
    pub append: bool,
}

/// Where a repository's signing key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// An ASCII-armored OpenPGP public key block (validated to be one).
    Armored(String),
    /// A key id or fingerprint (hex, spaces removed, uppercase) to fetch from `keyserver`.
    Keyid { id: String, keyserver: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DebconfSet {
    pub name: String,
    pub lines: String,
}

/// `package_update`/`apt_update`, `package_upgrade`/`apt_upgrade`, `packages`, reboot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Packages {
    pub update: bool,
    pub upgrade: bool,
    pub reboot_if_required: bool,
    pub install: Vec<Package>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    /// A Debian package name (policy §5.6.1), optionally with `:arch`.
    pub name: String,
    /// A Debian version string (policy §5.6.12), if pinned.
    pub version: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallType {
    /// The distribution's packages: Debian `puppet-agent`/`puppet`, paths under `/etc/puppet`.
    #[default]
    Packages,
    /// Puppet's all-in-one layout (`/opt/puppetlabs`, `/etc/puppetlabs`), also OpenVox.
    Aio,
}

/// The `puppet:` module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Puppet {
    pub install: bool,
    pub install_type: InstallType,
    /// `None`: `puppet-agent`, falling back to `puppet`.
    pub package_name: Option<String>,
    pub version: Option<String>,
    /// puppet.conf settings by section (`main`, `server`, `agent`, `user`), in the order given.
    /// Values are single-line strings; `certname` may hold `%i` (instance id) and `%f` (FQDN).
    pub conf: Vec<(String, Vec<(String, String)>)>,
    /// PEM CA certificate (validated), written to `<ssl_dir>/certs/ca.pem`.
    pub ca_cert: Option<String>,
    /// Absolute paths, if overridden; otherwise the layout's defaults.
    pub conf_file: Option<String>,
    pub ssl_dir: Option<String>,
    pub csr_attributes_path: Option<String>,
    pub csr_attributes: Option<CsrAttributes>,
    pub exec: bool,
    pub exec_args: Vec<String>,
    pub start_service: bool,
    /// bootcfg extension (`puppet.instance_identity`): put the AWS-signed instance identity
    /// document (IMDS `dynamic/instance-identity/rsa2048`, whitespace removed) into the CSR as
    /// custom attribute [`crate::oids::INSTANCE_IDENTITY`]. Default `false`. EC2 (IMDS) only:
    /// the agent refuses to plan it for a seed directory or `--user-data`.
    pub instance_identity: bool,
}

impl Default for Puppet {
    fn default() -> Self {
        Puppet {
            install: true,
            install_type: InstallType::Packages,
            package_name: None,
            version: None,
            conf: Vec::new(),
            ca_cert: None,
            conf_file: None,
            ssl_dir: None,
            csr_attributes_path: None,
            csr_attributes: None,
            exec: false,
            exec_args: vec!["--test".to_owned()],
            start_service: true,
            instance_identity: false,
        }
    }
}

/// `csr_attributes.yaml`: values are strings; `%i` in a value is the instance id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CsrAttributes {
    pub custom_attributes: BTreeMap<String, String>,
    pub extension_requests: BTreeMap<String, String>,
}
