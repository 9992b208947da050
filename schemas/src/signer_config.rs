//! The signer's configuration file (`signer.yaml`).
//!
//! Everything has a default except `registry`. Paths of the Puppet CA (client certificate, key,
//! CA bundle, CSR directory, server URL) are optional: when absent, the signer asks
//! `puppet config print … --section server` and falls back to the layout named by `ca.layout`
//! (Debian by default: `/etc/puppet`, `/var/lib/puppet/ssl`, `/etc/puppet/puppetserver/ca`;
//! `aio` for Puppet/OpenVox packages under `/etc/puppetlabs`).
//!
//! ```yaml
//! registry: s3://acme-bootcfg/prod
//! region: eu-west-1
//! ca:
//!   server_url: https://puppet.example.net:8140
//!   client_cert: /etc/puppet/bootcfg-signer/signer.pem
//!   client_key: /etc/puppet/bootcfg-signer/signer.key
//!   ca_bundle: /var/lib/puppet/ssl/certs/ca.pem
//! deadlines:
//!   hook: 5s
//! policy:
//!   min_rsa_bits: 2048
//! audit_log: /var/log/bootcfg-signer/audit.jsonl
//! ```

use crate::diag::{Diagnostic, Diagnostics, Location};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole `signer.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerConfig {
    /// Where registrations live: `s3://BUCKET[/PREFIX]` or `file:///ABSOLUTE/DIR`.
    pub registry: String,
    /// AWS region of the bucket; default: the standard AWS chain (AWS_REGION, profile).
    #[serde(default)]
    pub region: Option<String>,
    /// AWS named profile; default: the standard AWS chain (AWS_PROFILE).
    #[serde(default)]
    pub profile: Option<String>,
    /// How to reach the Puppet CA.
    #[serde(default)]
    pub ca: CaConfig,
    #[serde(default)]
    pub deadlines: Deadlines,
    #[serde(default)]
    pub policy: Policy,
    /// One JSON line per decision (time, certname, CSR SHA-256, decision, reason). Never secrets.
    #[serde(default = "default_audit_log")]
    pub audit_log: PathBuf,
    /// Exclusive lock that keeps overlapping sweeps apart.
    #[serde(default = "default_lock_file")]
    pub lock_file: PathBuf,
}

/// Which packaging's default paths to assume when `puppet config print` is unavailable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Debian/Ubuntu packages: `/etc/puppet`, `/var/lib/puppet/ssl`, `/etc/puppet/puppetserver/ca`.
    #[default]
    Debian,
    /// Puppet AIO and OpenVox packages: `/etc/puppetlabs/puppet`, `/etc/puppetlabs/puppetserver/ca`.
    Aio,
}

impl Layout {
    pub fn confdir(self) -> &'static str {
        match self {
            Layout::Debian => "/etc/puppet",
            Layout::Aio => "/etc/puppetlabs/puppet",
        }
    }
    pub fn ssldir(self) -> &'static str {
        match self {
            Layout::Debian => "/var/lib/puppet/ssl",
            Layout::Aio => "/etc/puppetlabs/puppet/ssl",
        }
    }
    pub fn cadir(self) -> &'static str {
        match self {
            Layout::Debian => "/etc/puppet/puppetserver/ca",
            Layout::Aio => "/etc/puppetlabs/puppetserver/ca",
        }
    }
    /// The `puppet` command of this packaging.
    pub fn puppet_bin(self) -> &'static str {
        match self {
            Layout::Debian => "/usr/bin/puppet",
            Layout::Aio => "/opt/puppetlabs/bin/puppet",
        }
    }
    /// The `puppetserver` command of this packaging.
    pub fn puppetserver_bin(self) -> &'static str {
        match self {
            Layout::Debian => "/usr/bin/puppetserver",
            Layout::Aio => "/opt/puppetlabs/bin/puppetserver",
        }
    }
}

/// How the sweep talks to the CA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaMethod {
    /// The HTTP API when a client certificate is configured or found, else the CLI.
    #[default]
    Auto,
    /// Puppet CA HTTP API v1 with a client certificate carrying `pp_cli_auth`.
    Api,
    /// `puppetserver ca list/sign` plus reading `$csrdir` (needs root or the puppet user on the CA host).
    Cli,
}

/// Access to the Puppet CA. Every path is optional and discovered when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    #[serde(default)]
    pub layout: Layout,
    #[serde(default)]
    pub method: CaMethod,
    /// The puppet.conf to read settings from (passed to `puppet config print --config`).
    #[serde(default)]
    pub puppet_conf: Option<PathBuf>,
    /// `https://HOST:PORT`; default `https://<ca_server>:<ca_port>` from puppet.conf.
    #[serde(default)]
    pub server_url: Option<String>,
    /// Client certificate with `pp_cli_auth` (`puppetserver ca generate --ca-client`); default `hostcert`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Its private key; default `hostprivkey`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// CA certificates to verify the server with (may be a chain); default `localcacert`.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    /// Pending CSRs on disk (CLI method); default `csrdir`.
    #[serde(default)]
    pub csrdir: Option<PathBuf>,
    /// The `puppet` command; default per layout.
    #[serde(default)]
    pub puppet_bin: Option<PathBuf>,
    /// The `puppetserver` command; default per layout.
    #[serde(default)]
    pub puppetserver_bin: Option<PathBuf>,
}

/// Time limits. Written as `5s`, `500ms`, `2m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadlines {
    /// The whole autosign hook run; when it runs out the CSR is rejected (left pending).
    #[serde(default = "default_hook", with = "crate::config::duration")]
    pub hook: Duration,
    /// One registry call.
    #[serde(default = "default_registry", with = "crate::config::duration")]
    pub registry: Duration,
    /// One CA HTTP request or CLI call.
    #[serde(default = "default_ca", with = "crate::config::duration")]
    pub ca: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            hook: default_hook(),
            registry: default_registry(),
            ca: default_ca(),
        }
    }
}

/// What a CSR must look like beyond matching its registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Smallest RSA modulus accepted, 2048 to [`Policy::MAX_RSA_BITS`] (larger keys are refused).
    #[serde(default = "default_min_rsa_bits")]
    pub min_rsa_bits: u32,
    /// Smallest RSA public exponent accepted; must be odd and at least 3. Whatever the floor,
    /// an exponent is refused when it is even, or 2^256 or more (FIPS 186-5's ceiling).
    #[serde(default = "default_rsa_min_exponent")]
    pub rsa_min_exponent: u64,
    /// EC curves accepted, by NIST name: `P-256`, `P-384`, `P-521`. Only named curves: a key
    /// carrying explicit curve parameters is refused even when they are those of a listed curve.
    #[serde(default = "default_ec_curves")]
    pub ec_curves: Vec<EcCurve>,
    /// Hashes accepted in the CSR's self-signature (RSA PKCS#1 v1.5 or ECDSA): `sha256`,
    /// `sha384`, `sha512`. MD2, MD4, MD5, SHA-1, SHA-224, RSASSA-PSS, Ed25519, Ed448 and unknown
    /// algorithms are always refused.
    #[serde(default = "default_signature_hashes")]
    pub signature_hashes: Vec<SignatureHash>,
    /// Accept a `pp_instance_id` extension when the registration has no instance id
    /// (`conductor register` without a launch). Off by default: the value could not be checked.
    #[serde(default)]
    pub instance_id_without_registered: bool,
    /// Largest CSR accepted, in bytes of PEM; larger input is refused before parsing.
    #[serde(default = "default_max_csr_bytes")]
    pub max_csr_bytes: usize,
    /// The EC2 instance identity proof (see signer/README.md, "Instance identity").
    #[serde(default)]
    pub identity: IdentityPolicy,
    /// Sweep: remove from the CA a request that was refused although its certname has a
    /// pending registration (wrong secret, forbidden or unregistered extensions, no or a bad
    /// identity proof). Otherwise whoever submits first blocks the instance the registration
    /// is for: the CA accepts no second request for a name while one is pending.
    #[serde(default = "yes")]
    pub evict_squatting_requests: bool,
    /// Enrollment groups (Auto Scaling groups, launch templates; see signer/README.md,
    /// "Enrollment groups").
    #[serde(default)]
    pub groups: GroupPolicy,
}

/// How CSRs that name an enrollment group are treated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPolicy {
    /// Sign members of enrollment groups at all. Off by default: a CSR naming a group is then
    /// refused whatever the registry holds. Group members always need the identity proof, from
    /// an account on `policy.identity.accounts`.
    #[serde(default)]
    pub enabled: bool,
    /// Also require that Auto Scaling (`DescribeAutoScalingInstances`, in the group's Region)
    /// shows the instance `Pending` or `InService` in the group's Auto Scaling group, launched
    /// from its launch template when the group names one. Groups without `--asg` are then
    /// refused. Needs `autoscaling:DescribeAutoScalingInstances`; a failed call signs nothing.
    #[serde(default)]
    pub asg_membership: bool,
}

impl Policy {
    /// RSA moduli over this many bits are refused whatever the policy: checking a modulus for
    /// known factors costs a full-size exponentiation, which grows with the cube of its size.
    pub const MAX_RSA_BITS: u32 = 8192;
}

fn yes() -> bool {
    true
}

/// How the instance identity proof in a CSR is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityPolicy {
    /// AWS account ids (12 digits) whose instances may enroll. A proof from any other account is
    /// refused; empty refuses every proof, so registrations that require one can never be signed.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// PEM bundle of AWS RSA-2048 signing certificates, each after a `# <region>` comment line.
    /// Default: the bundle built into the signer (from AWS's documentation).
    #[serde(default)]
    pub certificates: Option<PathBuf>,
    /// Allowed difference between this host's clock and AWS's when `pendingTime` is compared
    /// with the registration's lifetime.
    #[serde(default = "default_clock_skew", with = "crate::config::duration")]
    pub clock_skew: Duration,
    /// Refuse every registration that does not require the proof (one written with the
    /// conductor's `launch.instance_identity: false`). With it on, someone who can write to the
    /// registry still needs an instance in an allowed account to get a certificate.
    #[serde(default)]
    pub require_proof: bool,
    /// Sign CSRs without a proof for registrations written before identity binding existed
    /// (format version 1). Off by default; each such signing says so in the audit log.
    #[serde(default)]
    pub accept_legacy_registrations: bool,
}

impl Default for IdentityPolicy {
    fn default() -> Self {
        IdentityPolicy {
            accounts: Vec::new(),
            certificates: None,
            clock_skew: default_clock_skew(),
            require_proof: false,
            accept_legacy_registrations: false,
        }
    }
}

fn default_clock_skew() -> Duration {
    Duration::from_secs(120)
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_rsa_bits: default_min_rsa_bits(),
            rsa_min_exponent: default_rsa_min_exponent(),
            ec_curves: default_ec_curves(),
            signature_hashes: default_signature_hashes(),
            instance_id_without_registered: false,
            max_csr_bytes: default_max_csr_bytes(),
            identity: IdentityPolicy::default(),
            evict_squatting_requests: true,
            groups: GroupPolicy::default(),
        }
    }
}

/// EC curves of at least 128-bit strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EcCurve {
    #[serde(rename = "P-256")]
    P256,
    #[serde(rename = "P-384")]
    P384,
    #[serde(rename = "P-521")]
    P521,
}

/// Hashes a CSR's self-signature may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureHash {
    Sha256,
    Sha384,
    Sha512,
}

fn default_audit_log() -> PathBuf {
    PathBuf::from("/var/log/bootcfg-signer/audit.jsonl")
}
fn default_lock_file() -> PathBuf {
    PathBuf::from("/run/lock/bootcfg-signer.lock")
}
fn default_hook() -> Duration {
    Duration::from_secs(5)
}
fn default_registry() -> Duration {
    Duration::from_secs(3)
}
fn default_ca() -> Duration {
    Duration::from_secs(10)
}
fn default_min_rsa_bits() -> u32 {
    2048
}
fn default_rsa_min_exponent() -> u64 {
    65537
}
fn default_ec_curves() -> Vec<EcCurve> {
    vec![EcCurve::P256, EcCurve::P384, EcCurve::P521]
}
fn default_signature_hashes() -> Vec<SignatureHash> {
    vec![
        SignatureHash::Sha256,
        SignatureHash::Sha384,
        SignatureHash::Sha512,
    ]
}
fn default_max_csr_bytes() -> usize {
    64 * 1024
}

pub use crate::config::parse_duration;

impl SignerConfig {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic::error(
                &name,
                "",
                format!("cannot read the signer config: {e}"),
                "pass an existing file with --config or SIGNER_CONFIG (see examples/signer.yaml)",
            )])
        })?;
        Self::parse(&name, &text)
    }

    /// Parse and validate config text; `name` is used in messages.
    pub fn parse(name: &str, text: &str) -> Result<Self, Diagnostics> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let cfg: SignerConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| crate::config::yaml_error(name, &e, "examples/signer.yaml"))?;
        let mut diags = Vec::new();
        let line_of = |key: &str| -> Location {
            text.lines()
                .position(|l| l.trim_start().starts_with(&format!("{key}:")))
                .map(|i| Location {
                    line: i + 1,
                    column: 1,
                })
                .unwrap_or_default()
        };
        if let Some((message, fix)) = crate::config::check_registry(&cfg.registry) {
            diags.push(Diagnostic::error(name, "registry", message, fix).at(line_of("registry")));
        }
        if cfg.policy.min_rsa_bits < 2048 {
            diags.push(
                Diagnostic::error(
                    name,
                    "policy.min_rsa_bits",
                    format!(
                        "{} bits is weaker than the 2048-bit floor",
                        cfg.policy.min_rsa_bits
                    ),
                    "use 2048 or more",
                )
                .at(line_of("min_rsa_bits")),
            );
        }
        if cfg.policy.min_rsa_bits > Policy::MAX_RSA_BITS {
            diags.push(
                Diagnostic::error(
                    name,
                    "policy.min_rsa_bits",
                    format!(
                        "{} bits is over the {}-bit ceiling, so every RSA key would be refused",
                        cfg.policy.min_rsa_bits,
                        Policy::MAX_RSA_BITS
                    ),
                    "use 2048, 3072 or 4096",
                )
                .at(line_of("min_rsa_bits")),
            );
        }
        if cfg.policy.rsa_min_exponent < 3 || cfg.policy.rsa_min_exponent.is_multiple_of(2) {
            diags.push(
                Diagnostic::error(
                    name,
                    "policy.rsa_min_exponent",
                    format!(
                        "{} is not an odd exponent of at least 3 (exponent 1 lets anyone forge the self-signature; RSA exponents are odd)",
                        cfg.policy.rsa_min_exponent
                    ),
                    "use the default 65537",
                )
                .at(line_of("rsa_min_exponent")),
            );
        }
        if cfg.policy.signature_hashes.is_empty() {
            diags.push(
                Diagnostic::error(
                    name,
                    "policy.signature_hashes",
                    "no signature hash is allowed, so no CSR could ever be signed",
                    "use the default [sha256, sha384, sha512]",
                )
                .at(line_of("signature_hashes")),
            );
        }
        if cfg.policy.max_csr_bytes < 1024 || cfg.policy.max_csr_bytes > 1024 * 1024 {
            diags.push(
                Diagnostic::error(
                    name,
                    "policy.max_csr_bytes",
                    format!("{} is outside 1024..=1048576", cfg.policy.max_csr_bytes),
                    "use the default 65536 unless CSRs carry large attributes",
                )
                .at(line_of("max_csr_bytes")),
            );
        }
        if cfg.deadlines.hook.is_zero() || cfg.deadlines.hook > Duration::from_secs(60) {
            diags.push(
                Diagnostic::error(name, "deadlines.hook", "the hook deadline must be between 1ms and 60s: the CA blocks an HTTP thread while the hook runs", "use a few seconds, e.g. `5s`")
                    .at(line_of("hook")),
            );
        }
        for a in &cfg.policy.identity.accounts {
            if !crate::config::is_account_id(a) {
                diags.push(
                    Diagnostic::error(
                        name,
                        "policy.identity.accounts",
                        format!("`{a}` is not a 12-digit AWS account id"),
                        "write each account id as a quoted 12-digit string, e.g. \"123456789012\"",
                    )
                    .at(line_of("accounts")),
                );
            }
        }
        if cfg.policy.identity.clock_skew > Duration::from_secs(900) {
            diags.push(
                Diagnostic::error(
                    name,
                    "policy.identity.clock_skew",
                    "a clock skew over 15m widens the launch window past its purpose",
                    "keep the host clock in sync (chrony) and use the default `2m`",
                )
                .at(line_of("clock_skew")),
            );
        }
        if let Some(p) = &cfg.policy.identity.certificates
            && !p.is_absolute()
        {
            diags.push(
                Diagnostic::error(
                    name,
                    "policy.identity.certificates",
                    format!("`{}` is not an absolute path", p.display()),
                    "write the absolute path of the PEM bundle",
                )
                .at(line_of("certificates")),
            );
        }
        if let Some(url) = &cfg.ca.server_url
            && !url.starts_with("https://")
        {
            diags.push(
                Diagnostic::error(
                    name,
                    "ca.server_url",
                    format!("`{url}` is not an https:// URL"),
                    "write https://HOST:PORT of the Puppet CA",
                )
                .at(line_of("server_url")),
            );
        }
        if diags.is_empty() {
            Ok(cfg)
        } else {
            Err(Diagnostics(diags))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = SignerConfig::parse("s.yaml", "registry: file:///var/lib/reg\n").unwrap();
        assert_eq!(c.deadlines.hook, Duration::from_secs(5));
        assert_eq!(c.policy.min_rsa_bits, 2048);
        assert_eq!(
            c.policy.ec_curves,
            vec![EcCurve::P256, EcCurve::P384, EcCurve::P521]
        );
        assert_eq!(c.ca.layout, Layout::Debian);
        assert!(!c.policy.instance_id_without_registered);
        assert_eq!(c.policy.rsa_min_exponent, 65537);
        assert_eq!(
            c.policy.signature_hashes,
            vec![
                SignatureHash::Sha256,
                SignatureHash::Sha384,
                SignatureHash::Sha512
            ]
        );
        assert_eq!(c.policy, Policy::default());
    }

    #[test]
    fn key_and_signature_policy_is_validated() {
        let ok = SignerConfig::parse(
            "s.yaml",
            "registry: file:///x\npolicy:\n  rsa_min_exponent: 3\n  signature_hashes: [sha384]\n",
        )
        .unwrap();
        assert_eq!(ok.policy.rsa_min_exponent, 3);
        assert_eq!(ok.policy.signature_hashes, vec![SignatureHash::Sha384]);
        for (exp, line) in [("1", 3), ("65538", 3), ("0", 3)] {
            let e = SignerConfig::parse(
                "s.yaml",
                &format!("registry: file:///x\npolicy:\n  rsa_min_exponent: {exp}\n"),
            )
            .unwrap_err();
            assert_eq!(e.0[0].key, "policy.rsa_min_exponent", "{e}");
            assert_eq!(e.0[0].location.line, line);
        }
        let e = SignerConfig::parse(
            "s.yaml",
            "registry: file:///x\npolicy:\n  min_rsa_bits: 16384\n",
        )
        .unwrap_err();
        assert_eq!(e.0[0].key, "policy.min_rsa_bits", "{e}");
        assert!(e.0[0].message.contains("8192"), "{e}");
        let e = SignerConfig::parse(
            "s.yaml",
            "registry: file:///x\npolicy:\n  signature_hashes: []\n",
        )
        .unwrap_err();
        assert_eq!(e.0[0].key, "policy.signature_hashes", "{e}");
        // Weak or unknown hashes cannot even be named.
        for h in ["sha1", "md5", "sha224", "SHA-256"] {
            let e = SignerConfig::parse(
                "s.yaml",
                &format!("registry: file:///x\npolicy:\n  signature_hashes: [{h}]\n"),
            )
            .unwrap_err();
            assert!(
                e.0[0].key.starts_with("policy.signature_hashes"),
                "{h}: {e}"
            );
        }
        let e = SignerConfig::parse(
            "s.yaml",
            "registry: file:///x\npolicy:\n  rsa_min_exponent: -3\n",
        )
        .unwrap_err();
        assert!(e.0[0].key.starts_with("policy.rsa_min_exponent"), "{e}");
    }

    #[test]
    fn unknown_key_is_located() {
        let e = SignerConfig::parse(
            "s.yaml",
            "registry: file:///x\npolicy:\n  min_rsa_bitz: 4096\n",
        )
        .unwrap_err();
        let d = &e.0[0];
        assert_eq!(d.key, "policy.min_rsa_bitz");
        assert_eq!(d.location.line, 3);
        assert!(d.message.contains("unknown field `min_rsa_bitz`"), "{d}");
    }

    #[test]
    fn bad_values_are_refused_with_a_fix() {
        let e = SignerConfig::parse(
            "s.yaml",
            "registry: http://x\npolicy:\n  min_rsa_bits: 1024\n",
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("s.yaml:1:1: error: registry:"), "{s}");
        assert!(s.contains("s.yaml:3:1: error: policy.min_rsa_bits"), "{s}");
        let e = SignerConfig::parse(
            "s.yaml",
            "registry: file:///x\ndeadlines:\n  hook: 5 parsecs\n",
        )
        .unwrap_err();
        assert_eq!(e.0[0].key, "deadlines.hook");
        assert_eq!(e.0[0].location.line, 3);
        let e = SignerConfig::parse(
            "s.yaml",
            "registry: file:///x\npolicy:\n  ec_curves: [P-192]\n",
        )
        .unwrap_err();
        assert!(e.0[0].key.starts_with("policy.ec_curves"), "{}", e.0[0]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn examples_signer_yaml_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/signer.yaml");
        let c = SignerConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.registry, "s3://acme-bootcfg/prod");
        assert_eq!(c.ca.method, CaMethod::Auto);
        assert_eq!(c.deadlines.ca, Duration::from_secs(10));
    }
}
