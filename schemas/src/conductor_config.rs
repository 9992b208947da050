//! The conductor's configuration file (`conductor.yaml`).
//!
//! ```yaml
//! registry: s3://acme-bootcfg/prod        # or file:///var/lib/bootcfg
//! region: eu-west-1                       # default: the AWS chain (AWS_REGION, profile)
//! registration_ttl: 30m                   # how long an instance has to get its certificate
//! concurrency: 8                          # launches in flight at once
//! launch:
//!   image: ami-0123456789abcdef0          # --image overrides
//!   instance_type: t3.small
//!   subnet_id: subnet-0123456789abcdef0
//!   security_group_ids: [sg-0123456789abcdef0]
//!   key_name: ops
//!   instance_profile: bootcfg-agent
//!   tags: {team: web}
//!   instance_identity: true               # default: CSRs must carry the AWS identity document
//! puppet:
//!   server: puppet.example.net
//!   port: 8140
//!   ca_cert_file: ca.pem                  # or ca_cert: | (inline PEM)
//!   extensions: {pp_role: web}            # extension requests the signer will accept
//! user_data_template: |                   # or user_data_template_file: user-data.yaml
//!   #cloud-config
//!   packages: [htop]
//!   puppet: {package_name: puppet-agent, exec: true, exec_args: [--onetime, --no-daemonize]}
//! ```
//!
//! The template is the instance's cloud-config minus what the conductor generates per instance:
//! in its `puppet:` section it may set how the agent is installed and run, but not `server`,
//! `certname`, `ca_cert`, `csr_attributes` or `instance_identity`, which the conductor writes.
//! Relative file paths are relative to the config file's directory.

use crate::config::is_aws_id;
use crate::diag::{Diagnostic, Diagnostics, Location};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole `conductor.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConductorConfig {
    /// Where registrations live: `s3://BUCKET[/PREFIX]` or `file:///ABSOLUTE/DIR`.
    pub registry: String,
    /// AWS region (EC2 and the bucket); default: the standard chain (AWS_REGION, profile).
    #[serde(default)]
    pub region: Option<String>,
    /// AWS named profile; default: the standard chain (AWS_PROFILE).
    #[serde(default)]
    pub profile: Option<String>,
    /// How long a registration stays usable: `30m`, `2h`. Between 1m and 7d.
    #[serde(default = "default_ttl", with = "crate::config::duration")]
    pub registration_ttl: Duration,
    /// Launches in flight at once (1..=64). The SDK retries throttled calls with backoff.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    pub launch: LaunchConfig,
    pub puppet: PuppetConfig,
    /// The cloud-config every instance gets, inline (starting with `#cloud-config`).
    #[serde(default)]
    pub user_data_template: Option<String>,
    /// ... or from a file.
    #[serde(default)]
    pub user_data_template_file: Option<PathBuf>,
    /// Filled in by [`ConductorConfig::parse_at`]: files read, template parsed.
    #[serde(skip)]
    pub resolved: Resolved,
}

/// What `RunInstances` gets besides the image and user-data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchConfig {
    /// The AMI; `--image` overrides it. One of the two is required.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    #[serde(default)]
    pub subnet_id: Option<String>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    #[serde(default)]
    pub key_name: Option<String>,
    /// IAM instance profile, by name or ARN.
    #[serde(default)]
    pub instance_profile: Option<String>,
    /// Extra tags for the instance. The conductor adds `certname` (and `Name`, unless set here).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Require the AWS-signed instance identity document in each instance's CSR; the signer then
    /// signs only a CSR made on that very instance. Turn off only for images without bootcfg's
    /// identity support.
    #[serde(default = "default_instance_identity")]
    pub instance_identity: bool,
}

/// The Puppet server the instances join, and what their CSRs may ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PuppetConfig {
    /// Host name of the Puppet server (and CA).
    pub server: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The Puppet CA certificate (PEM), inline ...
    #[serde(default)]
    pub ca_cert: Option<String>,
    /// ... or from a file.
    #[serde(default)]
    pub ca_cert_file: Option<PathBuf>,
    /// Extension requests each CSR carries and the signer accepts, by short name (`pp_role`) or
    /// dotted OID, with their exact values. `pp_instance_id` is always added (`%i`).
    #[serde(default)]
    pub extensions: BTreeMap<String, String>,
}

/// The parts of the config that come from other files or need parsing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// The CA certificate PEM.
    pub ca_cert: String,
    /// The template as a YAML mapping (empty when there is no template).
    pub template: serde_yaml_ng::Mapping,
}

fn default_ttl() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_concurrency() -> usize {
    8
}
fn default_instance_type() -> String {
    "t3.micro".into()
}
fn default_port() -> u16 {
    8140
}
fn default_instance_identity() -> bool {
    true
}

pub use crate::config::parse_duration;

/// Puppet config keys inside the template's `puppet:` section that the conductor writes itself.
const GENERATED_PUPPET_KEYS: &[&str] = &["ca_cert", "csr_attributes", "instance_identity"];
const GENERATED_CONF_KEYS: &[&str] = &[
    "server",
    "serverport",
    "masterport",
    "certname",
    "ca_server",
    "ca_port",
];

impl ConductorConfig {
    /// Read and validate a config file; relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic::error(
                &name,
                "",
                format!("cannot read the conductor config: {e}"),
                "pass an existing file with -c/--config (see examples/conductor.yaml)",
            )])
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse_at(&name, &text, &base)
    }

    /// Parse and validate config text; `name` is used in messages, `base` resolves relative paths.
    pub fn parse_at(name: &str, text: &str, base: &Path) -> Result<Self, Diagnostics> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let mut cfg: ConductorConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| crate::config::yaml_error(name, &e, "examples/conductor.yaml"))?;
        let mut v = Validator {
            name,
            text,
            diags: Vec::new(),
        };
        cfg.validate(&mut v, base);
        if v.diags.iter().any(Diagnostic::is_error) {
            Err(Diagnostics(v.diags))
        } else {
            Ok(cfg)
        }
    }

    fn validate(&mut self, v: &mut Validator<'_>, base: &Path) {
        if let Some((message, fix)) = crate::config::check_registry(&self.registry) {
            v.error(&["registry"], message, fix);
        }
        if self.registration_ttl < Duration::from_secs(60)
            || self.registration_ttl > Duration::from_secs(7 * 86400)
        {
            v.error(
                &["registration_ttl"],
                "the registration TTL must be between 1m and 7d",
                "use the time an instance needs from launch to its first Puppet run, with margin, e.g. `30m`",
            );
        }
        if !(1..=64).contains(&self.concurrency) {
            v.error(
                &["concurrency"],
                format!("{} is outside 1..=64", self.concurrency),
                "use e.g. 8; the SDK retries throttled calls",
            );
        }
        for (key, value) in [("region", &self.region), ("profile", &self.profile)] {
            if let Some(s) = value
                && (s.is_empty()
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
            {
                v.error(
                    &[key],
                    format!("`{s}` is not a valid AWS {key} name"),
                    format!("write the {key} name, e.g. `eu-west-1` / `ops`"),
                );
            }
        }
        self.validate_launch(v);
        self.validate_puppet(v, base);
        self.resolve_template(v, base);
    }

    fn validate_launch(&self, v: &mut Validator<'_>) {
        let l = &self.launch;
        if let Some(image) = &l.image
            && !is_aws_id(image, "ami-")
        {
            v.error(
                &["launch", "image"],
                format!("`{image}` is not an AMI id"),
                "write `ami-` followed by 8 or 17 hex digits",
            );
        }
        let itype_ok = l
            .instance_type
            .split_once('.')
            .is_some_and(|(family, size)| {
                !family.is_empty()
                    && !size.is_empty()
                    && l.instance_type.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                    })
            });
        if !itype_ok {
            v.error(
                &["launch", "instance_type"],
                format!("`{}` is not an instance type", l.instance_type),
                "write e.g. `t3.small`",
            );
        }
        if let Some(subnet) = &l.subnet_id
            && !is_aws_id(subnet, "subnet-")
        {
            v.error(
                &["launch", "subnet_id"],
                format!("`{subnet}` is not a subnet id"),
                "write `subnet-` followed by hex digits",
            );
        }
        for sg in &l.security_group_ids {
            if !is_aws_id(sg, "sg-") {
                v.error(
                    &["launch", "security_group_ids"],
                    format!("`{sg}` is not a security group id"),
                    "write `sg-` followed by hex digits",
                );
            }
        }
        if let Some(k) = &l.key_name
            && (k.is_empty() || k.len() > 255 || k.chars().any(char::is_control))
        {
            v.error(
                &["launch", "key_name"],
                "the key pair name is empty, too long or has control characters",
                "write the EC2 key pair's name",
            );
        }
        if let Some(p) = &l.instance_profile
            && (p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            v.error(
                &["launch", "instance_profile"],
                format!("`{p}` is not an instance profile name or ARN"),
                "write its name or its arn:aws:iam::…:instance-profile/… ARN",
            );
        }
        for (k, val) in &l.tags {
            if k.is_empty() || k.len() > 128 || val.len() > 256 || k.starts_with("aws:") {
                v.error(
                    &["launch", "tags", k],
                    "tag keys are 1-128 characters and not `aws:…`; values at most 256",
                    "shorten or rename the tag",
                );
            } else if k == "certname" {
                v.error(
                    &["launch", "tags", k],
                    "the conductor sets the `certname` tag itself",
                    "remove this tag",
                );
            }
        }
    }

    fn validate_puppet(&mut self, v: &mut Validator<'_>, base: &Path) {
        let p = &self.puppet;
        let host_ok = !p.server.is_empty()
            && p.server.len() <= 253
            && p.server.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !host_ok {
            v.error(
                &["puppet", "server"],
                format!("`{}` is not a host name", p.server),
                "write the Puppet server's DNS name, e.g. `puppet.example.net`",
            );
        }
        if p.port == 0 {
            v.error(
                &["puppet", "port"],
                "port 0 is not a port",
                "use 8140, Puppet's default",
            );
        }
        let pem = match (&p.ca_cert, &p.ca_cert_file) {
            (Some(pem), None) => Some(pem.clone()),
            (None, Some(file)) => {
                let path = base.join(file);
                match std::fs::read_to_string(&path) {
                    Ok(pem) => Some(pem),
                    Err(e) => {
                        v.error(&["puppet", "ca_cert_file"], format!("cannot read {}: {e}", path.display()), "copy the CA certificate from the CA host (`puppet config print localcacert`)");
                        None
                    }
                }
            }
            (Some(_), Some(_)) => {
                v.error(
                    &["puppet", "ca_cert"],
                    "both `ca_cert` and `ca_cert_file` are set",
                    "keep one of them",
                );
                None
            }
            (None, None) => {
                v.error(
                    &["puppet"],
                    "the Puppet CA certificate is missing: without it an instance trusts whatever answers as its Puppet server",
                    "add `ca_cert_file: /path/to/ca.pem` (from `puppet config print localcacert` on the CA host) or an inline `ca_cert: |` PEM",
                );
                None
            }
        };
        if let Some(pem) = pem {
            let key: &[&str] = if p.ca_cert.is_some() {
                &["puppet", "ca_cert"]
            } else {
                &["puppet", "ca_cert_file"]
            };
            match check_pem_certificate(&pem) {
                Ok(()) => self.resolved.ca_cert = pem,
                Err(msg) => v.error(key, msg, "use the Puppet CA's certificate in PEM form (`-----BEGIN CERTIFICATE-----`), never a key"),
            }
        }
        let mut seen: std::collections::BTreeMap<String, &str> = std::collections::BTreeMap::new();
        for (name, value) in &self.puppet.extensions {
            match crate::oids::check_extension_request(name, value) {
                Err((msg, fix)) => v.error(&["puppet", "extensions", name], msg, fix),
                Ok(oid) => {
                    if let Some(first) = seen.insert(oid.clone(), name) {
                        v.error(
                            &["puppet", "extensions", name],
                            format!("`{name}` and `{first}` are the same extension ({oid})"),
                            "keep one of them",
                        );
                    }
                }
            }
        }
    }

    fn resolve_template(&mut self, v: &mut Validator<'_>, base: &Path) {
        let (text, key, file) = match (&self.user_data_template, &self.user_data_template_file) {
            (None, None) => return,
            (Some(_), Some(_)) => {
                v.error(
                    &["user_data_template"],
                    "both `user_data_template` and `user_data_template_file` are set",
                    "keep one of them",
                );
                return;
            }
            (Some(t), None) => (t.clone(), "user_data_template", None),
            (None, Some(f)) => {
                let path = base.join(f);
                match std::fs::read_to_string(&path) {
                    Ok(t) => (t, "user_data_template_file", Some(path)),
                    Err(e) => {
                        v.error(
                            &["user_data_template_file"],
                            format!("cannot read {}: {e}", path.display()),
                            "point it at a #cloud-config file",
                        );
                        return;
                    }
                }
            }
        };
        let src = file
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("{}: {key}", v.name));
        if text.lines().next().map(str::trim_end) != Some("#cloud-config") {
            v.error(
                &[key],
                format!("the template ({src}) does not start with `#cloud-config`"),
                "make `#cloud-config` its first line",
            );
            return;
        }
        let doc: serde_yaml_ng::Value = match serde_yaml_ng::from_str(&text) {
            Ok(d) => d,
            Err(e) => {
                v.error(
                    &[key],
                    format!("the template ({src}) is not valid YAML: {e}"),
                    "fix the YAML; the template is a cloud-config document",
                );
                return;
            }
        };
        let map = match doc {
            serde_yaml_ng::Value::Mapping(m) => m,
            serde_yaml_ng::Value::Null => serde_yaml_ng::Mapping::new(),
            _ => {
                v.error(
                    &[key],
                    format!("the template ({src}) is not a mapping of cloud-config modules"),
                    "write `key: value` modules such as `packages:` and `puppet:`",
                );
                return;
            }
        };
        if let Some(puppet) = map.get("puppet") {
            let Some(puppet) = puppet.as_mapping() else {
                v.error(
                    &[key],
                    format!("`puppet:` in the template ({src}) is not a mapping"),
                    "write puppet settings as `key: value`",
                );
                return;
            };
            for k in GENERATED_PUPPET_KEYS {
                if puppet.contains_key(*k) {
                    let fix = if *k == "instance_identity" {
                        "remove `puppet.instance_identity`; the conductor sets it from `launch.instance_identity` in this config".to_owned()
                    } else {
                        format!(
                            "remove `puppet.{k}`; set the CA and extensions under `puppet:` in this config"
                        )
                    };
                    v.error(
                        &[key],
                        format!(
                            "the template ({src}) sets `puppet.{k}`, which the conductor generates"
                        ),
                        fix,
                    );
                }
            }
            if let Some(conf) = puppet.get("conf").and_then(|c| c.as_mapping()) {
                for (section, settings) in conf {
                    let section = section.as_str().unwrap_or("?");
                    if section == "ca_cert" {
                        v.error(&[key], format!("the template ({src}) sets `puppet.conf.ca_cert`, which the conductor generates"), "remove it; set `puppet.ca_cert_file` in this config");
                    }
                    for k in GENERATED_CONF_KEYS {
                        if settings.as_mapping().is_some_and(|s| s.contains_key(*k)) {
                            v.error(&[key], format!("the template ({src}) sets `puppet.conf.{section}.{k}`, which the conductor generates"), "remove it; set `puppet.server`/`puppet.port` in this config");
                        }
                    }
                }
            }
        }
        self.resolved.template = map;
    }
}

fn check_pem_certificate(pem: &str) -> Result<(), String> {
    if pem.contains("PRIVATE KEY-----") {
        return Err(
            "the CA certificate text holds a PRIVATE KEY; never put keys in user-data".into(),
        );
    }
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err("not a PEM certificate (no `-----BEGIN CERTIFICATE-----` line)".into());
    }
    match openssl::x509::X509::stack_from_pem(pem.as_bytes()) {
        Ok(certs)
            if !certs.is_empty()
                && certs.len() == pem.matches("-----BEGIN CERTIFICATE-----").count() =>
        {
            Ok(())
        }
        _ => Err("the PEM certificate cannot be parsed".into()),
    }
}

/// Collects diagnostics, locating keys in the text by their indentation.
struct Validator<'a> {
    name: &'a str,
    text: &'a str,
    diags: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn error(&mut self, path: &[&str], message: impl Into<String>, fix: impl Into<String>) {
        let loc = locate(self.text, path);
        self.diags
            .push(Diagnostic::error(self.name, path.join("."), message, fix).at(loc));
    }
}

/// The line of a nested key (`["launch", "tags", "team"]`), found by walking down the
/// indentation; the deepest key found if the full path is not written out (e.g. flow style).
pub fn locate(text: &str, path: &[&str]) -> Location {
    let mut best = Location::default();
    let mut start = 0;
    let mut parent_indent: Option<usize> = None;
    let lines: Vec<&str> = text.lines().collect();
    'seg: for seg in path {
        for (i, line) in lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if let Some(p) = parent_indent
                && indent <= p
            {
                break 'seg; // left the parent's block without finding the key
            }
            let key = trimmed.trim_start_matches("- ");
            let matches = key
                .strip_prefix(seg)
                .is_some_and(|rest| rest.starts_with(':'))
                || key
                    .strip_prefix(&format!("\"{seg}\""))
                    .is_some_and(|rest| rest.starts_with(':'));
            if matches {
                best = Location {
                    line: i + 1,
                    column: indent + 1,
                };
                parent_indent = Some(indent);
                start = i + 1;
                continue 'seg;
            }
        }
        break;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const CA: &str = include_str!("../../examples/puppet-ca.pem");

    fn parse(text: &str) -> Result<ConductorConfig, Diagnostics> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        ConductorConfig::parse_at("conductor.yaml", text, &dir)
    }

    fn minimal(extra: &str) -> String {
        format!(
            "registry: file:///var/lib/bootcfg\nlaunch:\n  image: ami-0123456789abcdef0\npuppet:\n  server: puppet.example.net\n  ca_cert_file: puppet-ca.pem\n{extra}"
        )
    }

    #[test]
    fn example_file_parses() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/conductor.yaml");
        let cfg = ConductorConfig::load(&path).unwrap_or_else(|d| panic!("{d}"));
        assert!(cfg.resolved.ca_cert.contains("BEGIN CERTIFICATE"));
        assert!(cfg.resolved.template.contains_key("puppet"));
        assert_eq!(cfg.registration_ttl, Duration::from_secs(1800));
        assert_eq!(
            cfg.puppet.extensions.get("pp_role").map(String::as_str),
            Some("web")
        );
        assert!(cfg.launch.instance_identity);
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let cfg = parse(&minimal("")).unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(cfg.concurrency, 8);
        assert_eq!(cfg.puppet.port, 8140);
        assert_eq!(cfg.launch.instance_type, "t3.micro");
        assert!(
            cfg.launch.instance_identity,
            "the identity proof is on by default"
        );
        assert_eq!(cfg.resolved.ca_cert, CA);
        assert!(cfg.resolved.template.is_empty());
    }

    #[test]
    fn instance_identity_parses_and_is_not_set_by_the_template() {
        let with = |value: &str| {
            minimal("").replace(
                "  image: ami-0123456789abcdef0\n",
                &format!("  image: ami-0123456789abcdef0\n  instance_identity: {value}\n"),
            )
        };
        let cfg = parse(&with("false")).unwrap_or_else(|d| panic!("{d}"));
        assert!(!cfg.launch.instance_identity);
        let cfg = parse(&with("true")).unwrap_or_else(|d| panic!("{d}"));
        assert!(cfg.launch.instance_identity);
        let err = parse(&with("sometimes")).unwrap_err();
        assert!(
            err.0[0].key.contains("instance_identity")
                || err.to_string().contains("instance_identity"),
            "{err}"
        );
        check(
            &minimal(
                "user_data_template: |\n  #cloud-config\n  puppet:\n    instance_identity: false\n",
            ),
            "user_data_template",
            7,
            "puppet.instance_identity",
        );
    }

    fn check(text: &str, key: &str, line: usize, message_part: &str) {
        let err = parse(text).expect_err("config should be refused");
        let d = err
            .0
            .iter()
            .find(|d| d.key == key)
            .unwrap_or_else(|| panic!("no diagnostic for {key}: {err}"));
        assert_eq!(d.location.line, line, "{err}");
        assert!(d.message.contains(message_part), "{err}");
        assert!(!d.fix.is_empty());
    }

    #[test]
    fn bad_values_are_located() {
        check(
            &minimal("  extensions:\n    pp_cli_auth: \"true\"\n"),
            "puppet.extensions.pp_cli_auth",
            8,
            "never auto-signed",
        );
        check(
            &minimal("  extensions:\n    pp_rolee: web\n"),
            "puppet.extensions.pp_rolee",
            8,
            "not an extension",
        );
        check(
            &minimal("registration_ttl: 10s\n"),
            "registration_ttl",
            7,
            "between 1m and 7d",
        );
        check(&minimal("concurrency: 0\n"), "concurrency", 7, "outside");
        check(
            &minimal("").replace("ami-0123456789abcdef0", "ami-XYZ"),
            "launch.image",
            3,
            "not an AMI id",
        );
        check(
            &minimal("").replace("puppet.example.net", "puppet example"),
            "puppet.server",
            5,
            "not a host name",
        );
        check(
            &minimal("").replace("  ca_cert_file: puppet-ca.pem\n", ""),
            "puppet",
            4,
            "CA certificate is missing",
        );
        check(
            &minimal("").replace("puppet-ca.pem", "conductor.yaml"),
            "puppet.ca_cert_file",
            6,
            "not a PEM certificate",
        );
        check(
            &minimal("user_data_template: \"packages: [a]\"\n"),
            "user_data_template",
            7,
            "#cloud-config",
        );
        check(
            &minimal("user_data_template: |\n  #cloud-config\n  puppet:\n    csr_attributes: {}\n"),
            "user_data_template",
            7,
            "puppet.csr_attributes",
        );
        check(
            &minimal(
                "user_data_template: |\n  #cloud-config\n  puppet:\n    conf: {agent: {certname: x}}\n",
            ),
            "user_data_template",
            7,
            "puppet.conf.agent.certname",
        );
    }

    #[test]
    fn unknown_keys_name_line_and_key() {
        let err = parse(&minimal("").replace("  image:", "  imag:")).unwrap_err();
        let d = &err.0[0];
        assert_eq!(d.location.line, 3, "{err}");
        assert!(d.message.contains("unknown field `imag`"), "{err}");
        assert!(d.fix.contains("examples/conductor.yaml"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("m").is_err());
    }
}
