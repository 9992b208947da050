//! Per-instance identity (certname, one-time secret) and the user-data that carries it.
//!
//! The user-data is the config's template (a cloud-config mapping) with a generated `puppet:`
//! section merged in, in cloud-init's syntax:
//!
//! ```yaml
//! #cloud-config
//! puppet:
//!   conf:
//!     main: {server: puppet.example.net, serverport: "8140", certname: <uuid>}
//!     ca_cert: |
//!       -----BEGIN CERTIFICATE-----
//!   csr_attributes:
//!     custom_attributes: {1.2.840.113549.1.9.7: <secret>}      # challengePassword
//!     extension_requests: {pp_instance_id: "%i", pp_role: web}
//!   instance_identity: true      # only with `launch.instance_identity` on (the default)
//! ```
//!
//! `instance_identity` is a bootcfg extension to cloud-init's `puppet:` module: the agent fetches
//! the AWS-signed instance identity document from IMDS and puts it into the CSR, where the signer
//! checks it against the registration. With `launch.instance_identity: false` the key is left out.

use anyhow::Context;
use schemas::conductor_config::ConductorConfig;
use serde_yaml_ng::{Mapping, Value};
use std::io::Write;

/// EC2's limit on user-data, before base64.
pub const EC2_USER_DATA_LIMIT: usize = 16 * 1024;
/// What stands in for the secret in `--dry-run` output.
pub const REDACTED: &str = "<redacted>";
/// The challengePassword attribute (PKCS#9), where Puppet agents put `custom_attributes` secrets.
pub const CHALLENGE_PASSWORD_OID: &str = "1.2.840.113549.1.9.7";
/// Bytes of OS randomness in a secret (256 bits; the brief asks for at least 128).
pub const SECRET_BYTES: usize = 32;

/// A one-time secret: lowercase hex of [`SECRET_BYTES`] bytes from the OS RNG. Its `Debug` is
/// redacted, so it cannot reach a log by accident.
pub struct Secret(String);

impl Secret {
    pub fn generate() -> anyhow::Result<Secret> {
        let mut bytes = [0u8; SECRET_BYTES];
        getrandom::fill(&mut bytes)
            .map_err(|e| anyhow::anyhow!("reading the OS random number generator: {e}"))?;
        Ok(Secret(hex::encode(bytes)))
    }

    /// The secret itself: only for the user-data sent to EC2 and `conductor register` output.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the registration stores.
    pub fn sha256(&self) -> String {
        schemas::registration::sha256_hex(self.0.as_bytes())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A fresh certname: a random (v4) UUID, lowercase and hyphenated.
pub fn new_certname() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn mapping_mut<'a>(m: &'a mut Mapping, key: &str) -> &'a mut Mapping {
    let entry = m
        .entry(s(key))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if !entry.is_mapping() {
        *entry = Value::Mapping(Mapping::new());
    }
    entry.as_mapping_mut().expect("just made a mapping")
}

/// The complete `#cloud-config` document for one instance.
pub fn render(cfg: &ConductorConfig, certname: &str, challenge: &str) -> String {
    let mut doc = cfg.resolved.template.clone();
    let puppet = mapping_mut(&mut doc, "puppet");
    let conf = mapping_mut(puppet, "conf");
    let main = mapping_mut(conf, "main");
    main.insert(s("server"), s(&cfg.puppet.server));
    main.insert(s("serverport"), s(&cfg.puppet.port.to_string()));
    main.insert(s("certname"), s(certname));
    conf.insert(s("ca_cert"), s(&cfg.resolved.ca_cert));
    let mut custom = Mapping::new();
    custom.insert(s(CHALLENGE_PASSWORD_OID), s(challenge));
    let mut extensions = Mapping::new();
    extensions.insert(s("pp_instance_id"), s("%i"));
    for (k, v) in &cfg.puppet.extensions {
        extensions.insert(s(k), s(v));
    }
    let mut csr = Mapping::new();
    csr.insert(s("custom_attributes"), Value::Mapping(custom));
    csr.insert(s("extension_requests"), Value::Mapping(extensions));
    puppet.insert(s("csr_attributes"), Value::Mapping(csr));
    if cfg.launch.instance_identity {
        puppet.insert(s("instance_identity"), Value::Bool(true));
    }
    let body =
        serde_yaml_ng::to_string(&Value::Mapping(doc)).expect("a YAML mapping always serialises");
    format!("#cloud-config\n{body}")
}

/// The `#cloud-config` document for every member of enrollment group `group` (the launch
/// template's user-data): the same template and Puppet settings as [`render`], but the certname
/// is the group's scheme (`<group>-%i`, [`schemas::group::certname_template`]), the CSR names
/// the group (custom attribute [`schemas::oids::ENROLLMENT_GROUP`]) and carries the identity
/// proof, and there is **no secret**.
pub fn render_group(cfg: &ConductorConfig, group: &schemas::group::EnrollmentGroup) -> String {
    let mut doc = cfg.resolved.template.clone();
    let puppet = mapping_mut(&mut doc, "puppet");
    let conf = mapping_mut(puppet, "conf");
    let main = mapping_mut(conf, "main");
    main.insert(s("server"), s(&cfg.puppet.server));
    main.insert(s("serverport"), s(&cfg.puppet.port.to_string()));
    main.insert(
        s("certname"),
        s(&schemas::group::certname_template(&group.name)),
    );
    conf.insert(s("ca_cert"), s(&cfg.resolved.ca_cert));
    let mut custom = Mapping::new();
    custom.insert(s(schemas::oids::ENROLLMENT_GROUP), s(&group.name));
    let mut extensions = Mapping::new();
    extensions.insert(s("pp_instance_id"), s("%i"));
    for (k, v) in &group.extensions {
        extensions.insert(s(k), s(v));
    }
    let mut csr = Mapping::new();
    csr.insert(s("custom_attributes"), Value::Mapping(custom));
    csr.insert(s("extension_requests"), Value::Mapping(extensions));
    puppet.insert(s("csr_attributes"), Value::Mapping(csr));
    puppet.insert(s("instance_identity"), Value::Bool(true));
    let body =
        serde_yaml_ng::to_string(&Value::Mapping(doc)).expect("a YAML mapping always serialises");
    format!("#cloud-config\n{body}")
}

/// The bytes to send as EC2 user-data: the text itself, or gzipped when it would pass EC2's
/// 16 KB limit. Returns the bytes and whether they are gzipped.
pub fn encode_for_ec2(text: &str) -> anyhow::Result<(Vec<u8>, bool)> {
    if text.len() <= EC2_USER_DATA_LIMIT {
        return Ok((text.as_bytes().to_vec(), false));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(text.as_bytes())
        .context("compressing user-data")?;
    let bytes = gz.finish().context("compressing user-data")?;
    anyhow::ensure!(
        bytes.len() <= EC2_USER_DATA_LIMIT,
        "the user-data is {} bytes, {} gzipped, over EC2's 16384-byte limit; shorten the template (e.g. install files from a package)",
        text.len(),
        bytes.len()
    );
    Ok((bytes, true))
}

/// Check once, before anything is launched, that the user-data this config generates is what
/// the agent accepts. Returns the parser's warnings.
pub fn self_check(cfg: &ConductorConfig) -> Result<Vec<String>, String> {
    let text = render(
        cfg,
        "00000000-0000-4000-8000-000000000000",
        &"0".repeat(2 * SECRET_BYTES),
    );
    match schemas::userdata::parse("generated user-data", text.as_bytes()) {
        Ok(parsed) => Ok(parsed.warnings.iter().map(ToString::to_string).collect()),
        Err(d) => Err(d.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::conductor_config::ConductorConfig;

    fn cfg(template: &str) -> ConductorConfig {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let text = format!(
            "registry: file:///var/lib/bootcfg\nlaunch:\n  image: ami-0123456789abcdef0\npuppet:\n  server: puppet.example.net\n  ca_cert_file: puppet-ca.pem\n  extensions:\n    pp_role: web\n{template}"
        );
        ConductorConfig::parse_at("test.yaml", &text, &dir).unwrap_or_else(|d| panic!("{d}"))
    }

    #[test]
    fn secrets_are_long_random_hex_and_never_debug_printed() {
        let (a, b) = (Secret::generate().unwrap(), Secret::generate().unwrap());
        assert_eq!(a.expose().len(), 64);
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a.expose(), b.expose());
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_eq!(
            a.sha256(),
            schemas::registration::sha256_hex(a.expose().as_bytes())
        );
    }

    #[test]
    fn generated_section_merges_with_the_template() {
        let c = cfg(
            "user_data_template: |\n  #cloud-config\n  packages: [htop]\n  puppet:\n    package_name: puppet-agent\n    conf:\n      agent:\n        runinterval: 1h\n",
        );
        let text = render(&c, "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11", "feedface");
        assert!(text.starts_with("#cloud-config\n"), "{text}");
        let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(doc["packages"][0], s("htop"));
        let p = &doc["puppet"];
        assert_eq!(p["package_name"], s("puppet-agent"));
        assert_eq!(p["conf"]["agent"]["runinterval"], s("1h"));
        assert_eq!(p["conf"]["main"]["server"], s("puppet.example.net"));
        assert_eq!(p["conf"]["main"]["serverport"], s("8140"));
        assert_eq!(
            p["conf"]["main"]["certname"],
            s("0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11")
        );
        assert!(
            p["conf"]["ca_cert"]
                .as_str()
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        assert_eq!(
            p["csr_attributes"]["custom_attributes"][CHALLENGE_PASSWORD_OID],
            s("feedface")
        );
        assert_eq!(
            p["csr_attributes"]["extension_requests"]["pp_instance_id"],
            s("%i")
        );
        assert_eq!(
            p["csr_attributes"]["extension_requests"]["pp_role"],
            s("web")
        );
        assert_eq!(p["instance_identity"], Value::Bool(true), "on by default");
    }

    #[test]
    fn instance_identity_follows_the_config() {
        let mut c = cfg("");
        let certname = "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11";
        let on = render(&c, certname, "feedface");
        assert!(on.contains("instance_identity: true"), "{on}");
        c.launch.instance_identity = false;
        let off = render(&c, certname, "feedface");
        assert!(!off.contains("instance_identity"), "{off}");
        let doc: Value = serde_yaml_ng::from_str(&off).unwrap();
        assert!(doc["puppet"].get("instance_identity").is_none());
        let parsed = schemas::userdata::parse("generated", off.as_bytes())
            .unwrap_or_else(|d| panic!("{d}\n---\n{off}"));
        assert!(
            !parsed
                .config
                .puppet
                .expect("puppet section")
                .instance_identity
        );
        assert!(self_check(&c).is_ok());
    }

    #[test]
    fn group_user_data_names_the_group_and_carries_no_secret() {
        let c = cfg(
            "user_data_template: |\n  #cloud-config\n  packages: [htop]\n  puppet:\n    package_name: puppet-agent\n",
        );
        let now = chrono::Utc::now();
        let g = schemas::group::EnrollmentGroup {
            version: schemas::group::GROUP_VERSION,
            name: "web".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            image_ids: vec!["ami-0123456789abcdef0".into()],
            launch_template_id: Some("lt-0123456789abcdef0".into()),
            asg_name: None,
            extensions: [("pp_role".to_owned(), "web".to_owned())].into(),
            max_members: 3,
            created_at: now,
            expires_at: now + chrono::Duration::days(1),
            created_by: "t".into(),
            revoked: None,
        };
        let text = render_group(&c, &g);
        assert!(!text.contains(CHALLENGE_PASSWORD_OID), "{text}");
        let parsed = schemas::userdata::parse("group", text.as_bytes())
            .unwrap_or_else(|d| panic!("{d}\n---\n{text}"));
        let p = parsed.config.puppet.expect("puppet section");
        assert!(p.instance_identity);
        let main = p
            .conf
            .iter()
            .find(|(s, _)| s == "main")
            .map(|(_, kv)| kv.clone())
            .unwrap_or_default();
        assert!(
            main.contains(&("certname".to_owned(), "web-%i".to_owned())),
            "{main:?}"
        );
        let csr = p.csr_attributes.expect("csr_attributes");
        assert_eq!(
            csr.custom_attributes
                .get(schemas::oids::ENROLLMENT_GROUP)
                .map(String::as_str),
            Some("web")
        );
        assert_eq!(csr.custom_attributes.len(), 1, "no secret");
        assert_eq!(
            csr.extension_requests.get("pp_role").map(String::as_str),
            Some("web")
        );
        assert_eq!(
            csr.extension_requests
                .get("pp_instance_id")
                .map(String::as_str),
            Some("%i")
        );
    }

    #[test]
    fn large_user_data_is_gzipped_and_too_large_is_refused() {
        let small = "#cloud-config\n";
        assert_eq!(
            encode_for_ec2(small).unwrap(),
            (small.as_bytes().to_vec(), false)
        );
        let big = format!("#cloud-config\nwrite_files: []\n# {}\n", "x".repeat(40_000));
        let (bytes, gz) = encode_for_ec2(&big).unwrap();
        assert!(gz && bytes.len() < EC2_USER_DATA_LIMIT && bytes.starts_with(&[0x1f, 0x8b]));
        let mut random = vec![0u8; 20_000];
        getrandom::fill(&mut random).unwrap();
        assert!(encode_for_ec2(&hex::encode(random)).is_err());
    }

    /// The generated user-data must be accepted by the agent's parser, with the puppet section intact.
    #[test]
    fn generated_user_data_round_trips_through_the_agent_parser() {
        let c = cfg(
            "user_data_template: |\n  #cloud-config\n  packages: [htop]\n  puppet:\n    package_name: puppet-agent\n    exec: true\n    start_service: false\n",
        );
        let certname = "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11";
        let text = render(&c, certname, "feedface00112233445566778899aabb");
        let parsed = schemas::userdata::parse("generated", text.as_bytes())
            .unwrap_or_else(|d| panic!("{d}\n---\n{text}"));
        let p = parsed.config.puppet.expect("puppet section");
        let main = p
            .conf
            .iter()
            .find(|(s, _)| s == "main")
            .map(|(_, kv)| kv.clone())
            .unwrap_or_default();
        assert!(
            main.contains(&("certname".to_owned(), certname.to_owned())),
            "{main:?}"
        );
        assert!(
            main.contains(&("server".to_owned(), "puppet.example.net".to_owned())),
            "{main:?}"
        );
        assert!(
            p.ca_cert
                .as_deref()
                .is_some_and(|c| c.contains("BEGIN CERTIFICATE"))
        );
        let csr = p.csr_attributes.expect("csr_attributes");
        assert_eq!(
            csr.custom_attributes
                .get(CHALLENGE_PASSWORD_OID)
                .map(String::as_str),
            Some("feedface00112233445566778899aabb")
        );
        assert_eq!(
            csr.extension_requests
                .get("pp_instance_id")
                .map(String::as_str),
            Some("%i")
        );
        assert_eq!(
            csr.extension_requests.get("pp_role").map(String::as_str),
            Some("web")
        );
        assert_eq!(p.package_name.as_deref(), Some("puppet-agent"));
        assert!(p.exec && !p.start_service);
        assert!(
            p.instance_identity,
            "the agent will put the identity document into the CSR"
        );
        // gzipped, as EC2 would carry a large one
        let (gz, _) = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(text.as_bytes()).unwrap();
            (e.finish().unwrap(), true)
        };
        assert!(schemas::userdata::parse("generated.gz", &gz).is_ok());
    }
}
