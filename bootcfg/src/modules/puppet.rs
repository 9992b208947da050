//! The Puppet agent: install, `puppet.conf`, CA certificate, `csr_attributes.yaml`, service, exec.
//!
//! Layouts (`install_type`):
//! - `packages` (default, Debian): `/etc/puppet/puppet.conf`, ssldir `/var/lib/puppet/ssl`,
//!   `/etc/puppet/csr_attributes.yaml`, `puppet` on PATH; package `puppet` (cloud-init's
//!   default `package_name`; on Debian 12 it pulls in `puppet-agent`), falling back to
//!   `puppet-agent` when apt does not know `puppet`.
//! - `aio` (Puppet/OpenVox all-in-one): `/etc/puppetlabs/puppet/{puppet.conf,ssl,csr_attributes.yaml}`,
//!   `/opt/puppetlabs/bin/puppet`; package `puppet-agent` (or `openvox-agent`) from an apt
//!   repository you configure under `apt.sources`. Deliberate difference: cloud-init downloads
//!   and runs an install script without a checksum; bootcfg installs only through apt.
//!
//! `conf_file`, `ssl_dir` and `csr_attributes_path` override the layout's paths. Unlike
//! cloud-init, bootcfg never runs `puppet config print` to find them (so nothing runs before the
//! package is installed).
//!
//! Order, as in cloud-init: install → puppet.conf → ca.pem → csr_attributes.yaml →
//! `systemctl enable` → `puppet agent <exec_args>` → `systemctl start --no-block` (root `/` only).
//! - puppet.conf is *merged* ([`crate::ini`]): other keys, sections and comments are kept; no
//!   `puppet.conf.old` is left behind (cloud-init rewrites it sorted, comments dropped).
//!   `certname` (in any section) has `%i` → instance id and `%f` → FQDN, then is lower-cased.
//! - `ca_cert` → `<ssl_dir>/certs/ca.pem`, 0644, ssldir 0771 (owner root: the agent runs as root).
//! - `csr_attributes.yaml` is written **0600** (cloud-init: 0644) since it holds the challenge
//!   password; `%i` in its values is the instance id.
//! - `instance_identity: true` (bootcfg extension, default `false`): the AWS-signed instance
//!   identity document, the body of IMDS `dynamic/instance-identity/rsa2048` with all whitespace
//!   removed (one line: Puppet writes custom attributes as PrintableString, where a newline is
//!   illegal), goes into `csr_attributes.yaml` as custom attribute
//!   [`schemas::oids::INSTANCE_IDENTITY`] (the file is written even when user-data has no
//!   `csr_attributes`). The bootcfg signer requires it. Only EC2's IMDS serves the document: with
//!   a seed directory or `--user-data` the module cannot be planned (a clear error; a value is
//!   never made up). `plan`, results and logs show it shortened
//!   (`MIAGCSqGSIb3DQEHAqCAMIACAQExDzAN… (1484 characters)`); the file holds it in full.
//! - `exec`: exit code 2 ("changes applied" with `--test`/`--detailed-exitcodes`) is success
//!   (cloud-init treats it as failure, issue #5747).

use super::{Module, PlanState, apt_get};
use crate::action::{Action, Content, StepError};
use crate::ctx::{Ctx, Identity};
use crate::runner::{Cmd, programs};
use schemas::userdata::model::{InstallType, UserData};

pub struct Puppet;

/// Paths of one Puppet layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub conf_file: String,
    pub ssl_dir: String,
    pub csr_attributes: String,
    pub bin: &'static str,
    pub packages: Vec<String>,
    pub units: Vec<String>,
}

pub fn layout(p: &schemas::userdata::model::Puppet) -> Layout {
    let mut l = match p.install_type {
        InstallType::Packages => Layout {
            conf_file: "/etc/puppet/puppet.conf".into(),
            ssl_dir: "/var/lib/puppet/ssl".into(),
            csr_attributes: "/etc/puppet/csr_attributes.yaml".into(),
            bin: programs::PUPPET,
            // cloud-init installs `puppet` (its default package_name); the same packages end up
            // installed (corpus case ci-integ-puppet-service.yaml)
            packages: vec!["puppet".into(), "puppet-agent".into()],
            units: vec!["puppet-agent.service".into(), "puppet.service".into()],
        },
        InstallType::Aio => Layout {
            conf_file: "/etc/puppetlabs/puppet/puppet.conf".into(),
            ssl_dir: "/etc/puppetlabs/puppet/ssl".into(),
            csr_attributes: "/etc/puppetlabs/puppet/csr_attributes.yaml".into(),
            bin: programs::PUPPET_AIO,
            packages: vec!["puppet-agent".into(), "openvox-agent".into()],
            units: vec!["puppet.service".into()],
        },
    };
    if let Some(c) = &p.conf_file {
        l.conf_file = c.clone();
    }
    if let Some(s) = &p.ssl_dir {
        l.ssl_dir = s.trim_end_matches('/').to_owned();
    }
    if let Some(c) = &p.csr_attributes_path {
        l.csr_attributes = c.clone();
    }
    if let Some(n) = &p.package_name {
        l.packages = vec![n.clone()];
    }
    l
}

/// `%i` → instance id, `%f` → FQDN, lower-cased (cloud-init's certname rule).
pub fn certname(value: &str, ctx: &Ctx) -> String {
    value
        .replace("%i", &ctx.instance_id)
        .replace("%f", &ctx.fqdn)
        .to_lowercase()
}

/// `csr_attributes.yaml` with `%i` expanded in values; keys sorted; empty maps left out.
pub fn csr_yaml(csr: &schemas::userdata::model::CsrAttributes, ctx: &Ctx) -> String {
    use serde_yaml_ng::{Mapping, Value};
    let mut top = Mapping::new();
    for (name, map) in [
        ("custom_attributes", &csr.custom_attributes),
        ("extension_requests", &csr.extension_requests),
    ] {
        if map.is_empty() {
            continue;
        }
        let mut m = Mapping::new();
        for (k, v) in map {
            m.insert(
                Value::String(k.clone()),
                Value::String(v.replace("%i", &ctx.instance_id)),
            );
        }
        top.insert(Value::String(name.into()), Value::Mapping(m));
    }
    serde_yaml_ng::to_string(&Value::Mapping(top)).unwrap_or_default()
}

/// The instance identity attribute's value when `puppet.instance_identity` is set (`Ok(None)`
/// when it is not); an error naming the key, the reason and the fix when this run has no
/// identity document.
pub fn instance_identity(
    p: &schemas::userdata::model::Puppet,
    ctx: &Ctx,
) -> Result<Option<String>, StepError> {
    if !p.instance_identity {
        return Ok(None);
    }
    match &ctx.identity {
        Identity::Available(v) => Ok(Some(v.clone())),
        Identity::Unavailable(why) => Err(StepError::Invalid(format!(
            "puppet.instance_identity: the CSR must carry the AWS-signed instance identity \
             document, but there is none: {why}\n  fix: run bootcfg on EC2 with IMDSv2 \
             (its default datasource, or --imds-url), or remove `puppet.instance_identity` \
             from the user-data"
        ))),
    }
}

impl Module for Puppet {
    fn name(&self) -> &'static str {
        "puppet"
    }

    fn plan(&self, ud: &UserData, ctx: &Ctx, st: &mut PlanState) -> Result<Vec<Action>, StepError> {
        let Some(p) = &ud.puppet else {
            return Ok(Vec::new());
        };
        // before any action: without the document nothing of this module is planned
        let identity = instance_identity(p, ctx)?;
        let mut l = layout(p);
        // The package the release's cloud-init installs: `puppet` (Debian 12's 22.4; a
        // transitional package for `puppet-agent`), `puppet-agent` from Debian 13 on (25.1)
        if p.install_type == InstallType::Packages
            && p.package_name.is_none()
            && ctx.os_id == "debian"
            && ctx.version().is_some_and(|v| v >= (13, 0))
        {
            l.packages = vec!["puppet-agent".into(), "puppet".into()];
        }
        let mut a = Vec::new();
        if p.install {
            st.update_once(&mut a, ud);
            a.push(Action::InstallFirstKnown {
                candidates: l.packages.clone(),
                version: p.version.clone(),
                apt_get: apt_get(&["install"]),
            });
        }
        // Where the installed Puppet keeps its files is the package's to say (Debian's 7 and 8:
        // /etc/puppet, /var/lib/puppet/ssl): checked once it is installed, before any write.
        let mut expect = Vec::new();
        if p.conf_file.is_none()
            && let Some((dir, _)) = l.conf_file.rsplit_once('/')
        {
            expect.push(("confdir".to_owned(), dir.to_owned(), "conf_file".to_owned()));
        }
        if p.ssl_dir.is_none() && p.ca_cert.is_some() {
            expect.push(("ssldir".to_owned(), l.ssl_dir.clone(), "ssl_dir".to_owned()));
        }
        if p.csr_attributes_path.is_none() && (p.csr_attributes.is_some() || identity.is_some()) {
            expect.push((
                "csr_attributes".to_owned(),
                l.csr_attributes.clone(),
                "csr_attributes_path".to_owned(),
            ));
        }
        a.push(Action::CheckPuppetPaths {
            bin: l.bin.to_owned(),
            expect,
        });
        let settings: Vec<(String, Vec<(String, String)>)> = p
            .conf
            .iter()
            .map(|(sec, kvs)| {
                let kvs = kvs
                    .iter()
                    .map(|(k, v)| {
                        if k.eq_ignore_ascii_case("certname") {
                            (k.clone(), certname(v, ctx))
                        } else {
                            (k.clone(), v.clone())
                        }
                    })
                    .collect();
                (sec.clone(), kvs)
            })
            .collect();
        if !settings.is_empty() {
            a.push(Action::Write {
                path: l.conf_file.clone(),
                content: Content::IniMerge(settings),
                mode: 0o644,
            });
        }
        if let Some(ca) = &p.ca_cert {
            let mut pem = ca.trim_end().to_owned();
            pem.push('\n');
            a.push(Action::MkDir {
                path: l.ssl_dir.clone(),
                mode: 0o771,
            });
            a.push(Action::MkDir {
                path: format!("{}/certs", l.ssl_dir),
                mode: 0o755,
            });
            a.push(Action::Write {
                path: format!("{}/certs/ca.pem", l.ssl_dir),
                content: Content::Text(pem),
                mode: 0o644,
            });
        }
        let csr = match identity {
            Some(v) => {
                let mut csr = p.csr_attributes.clone().unwrap_or_default();
                csr.custom_attributes
                    .insert(schemas::oids::INSTANCE_IDENTITY.to_owned(), v);
                Some(csr)
            }
            None => p.csr_attributes.clone(),
        };
        if let Some(csr) = &csr {
            a.push(Action::Write {
                path: l.csr_attributes.clone(),
                content: Content::Text(csr_yaml(csr, ctx)),
                mode: 0o600,
            });
        }
        if p.start_service {
            a.push(Action::Service {
                units: l.units.clone(),
                enable: true,
                start: false,
            });
        }
        if p.exec {
            let mut argv = vec![l.bin.to_owned(), "agent".to_owned()];
            argv.extend(p.exec_args.iter().cloned());
            a.push(Action::Run {
                cmd: Cmd::new(argv).ok_codes(&[0, 2]),
            });
        }
        if p.start_service {
            a.push(Action::Service {
                units: l.units,
                enable: false,
                start: true,
            });
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testutil::*;
    use schemas::userdata::model::{CsrAttributes, Puppet as P};

    fn ud() -> UserData {
        let mut csr = CsrAttributes::default();
        csr.custom_attributes
            .insert("1.2.840.113549.1.9.7".into(), "s3cret-%i".into());
        csr.extension_requests
            .insert("pp_instance_id".into(), "%i".into());
        UserData {
            puppet: Some(P {
                conf: vec![
                    (
                        "main".into(),
                        vec![
                            ("server".into(), "puppet.example".into()),
                            ("certname".into(), "%i.%f".into()),
                        ],
                    ),
                    (
                        "agent".into(),
                        vec![("http_keepalive_timeout".into(), "0".into())],
                    ),
                ],
                ca_cert: Some(
                    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----".into(),
                ),
                csr_attributes: Some(csr),
                exec: true,
                exec_args: vec!["--test".into(), "--waitforcert".into(), "0".into()],
                ..P::default()
            }),
            ..UserData::default()
        }
    }

    #[test]
    fn writes_merged_conf_ca_and_0600_csr_and_runs_in_order() {
        let (d, ctx) = root();
        std::fs::create_dir_all(d.path().join("etc/puppet")).unwrap();
        std::fs::write(
            d.path().join("etc/puppet/puppet.conf"),
            "# Debian default\n[main]\nssldir = /var/lib/puppet/ssl\n",
        )
        .unwrap();
        let acts = Puppet.plan(&ud(), &ctx, &mut PlanState::default()).unwrap();
        let cmds = apply(&ctx, "puppet", &acts);
        assert_eq!(
            read(&d, "/etc/puppet/puppet.conf"),
            "# Debian default\n[main]\nssldir = /var/lib/puppet/ssl\nserver = puppet.example\ncertname = i-0abc.web-1.example.com\n\n[agent]\nhttp_keepalive_timeout = 0\n"
        );
        assert_eq!(
            read(&d, "/var/lib/puppet/ssl/certs/ca.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(mode(&d, "/var/lib/puppet/ssl/certs/ca.pem"), 0o644);
        assert_eq!(mode(&d, "/var/lib/puppet/ssl"), 0o771);
        assert_eq!(
            read(&d, "/etc/puppet/csr_attributes.yaml"),
            "custom_attributes:\n  1.2.840.113549.1.9.7: s3cret-i-0abc\nextension_requests:\n  pp_instance_id: i-0abc\n"
        );
        assert_eq!(mode(&d, "/etc/puppet/csr_attributes.yaml"), 0o600);
        let shown: Vec<String> = cmds.iter().map(|c| c.argv.join(" ")).collect();
        // recorder: apt-cache probe finds `puppet` (cloud-init's package) first
        assert!(
            shown[1].ends_with("apt-cache show --no-all-versions puppet"),
            "{shown:?}"
        );
        assert!(shown[2].ends_with("install --simulate puppet"), "{shown:?}");
        assert!(shown[3].ends_with("install puppet"), "{shown:?}");
        assert_eq!(shown.last().unwrap(), "puppet agent --test --waitforcert 0");
        assert_eq!(cmds.last().unwrap().ok_codes, [0, 2]);
    }

    #[test]
    fn plan_output_redacts_the_challenge_password() {
        let (_d, mut ctx) = root();
        let u = ud();
        for s in crate::modules::secrets(&u, &ctx.instance_id) {
            ctx.redactor.add(&s);
        }
        let rec = Recorder::default();
        let mut e = crate::engine::Engine::new(&ctx, &rec, crate::action::Mode::Plan);
        for a in Puppet.plan(&u, &ctx, &mut PlanState::default()).unwrap() {
            e.execute("puppet", &a).unwrap();
        }
        let text = crate::report::render_steps(&e.steps, crate::action::Mode::Plan);
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
        assert!(rec.cmds.borrow().is_empty(), "plan runs nothing");
    }

    /// A stand-in for an `rsa2048` body as bootcfg keeps it: 1484 base64 characters, one line.
    fn rsa2048() -> String {
        let mut v = "MIAGCSqGSIb3DQEHAqCAMIACAQExDzAN".to_owned();
        while v.len() < 1484 {
            v.push_str("BglghkgBZQMEAgEFADCABgkqhkiG9w0BBwGggCSABIIB+/");
        }
        v.truncate(1482);
        v.push_str("==");
        v
    }

    fn with_identity(csr: Option<CsrAttributes>) -> UserData {
        UserData {
            puppet: Some(P {
                install: false,
                start_service: false,
                csr_attributes: csr,
                instance_identity: true,
                ..P::default()
            }),
            ..UserData::default()
        }
    }

    const IID: &str = schemas::oids::INSTANCE_IDENTITY;
    const SHORT: &str = "MIAGCSqGSIb3DQEHAqCAMIACAQExDzAN… (1484 characters)";

    #[test]
    fn instance_identity_is_one_line_in_the_0600_csr_attributes() {
        let v = rsa2048();
        // no `csr_attributes` in user-data: the file is written for the identity alone
        let (d, mut ctx) = root();
        ctx.set_identity(Identity::Available(v.clone()));
        let acts = Puppet
            .plan(&with_identity(None), &ctx, &mut PlanState::default())
            .unwrap();
        apply(&ctx, "puppet", &acts);
        assert_eq!(
            read(&d, "/etc/puppet/csr_attributes.yaml"),
            format!("custom_attributes:\n  {IID}: {v}\n")
        );
        assert_eq!(mode(&d, "/etc/puppet/csr_attributes.yaml"), 0o600);
        // next to the user-data's own attributes
        let (d, mut ctx) = root();
        ctx.set_identity(Identity::Available(v.clone()));
        let csr = ud().puppet.unwrap().csr_attributes;
        let acts = Puppet
            .plan(&with_identity(csr), &ctx, &mut PlanState::default())
            .unwrap();
        apply(&ctx, "puppet", &acts);
        let text = read(&d, "/etc/puppet/csr_attributes.yaml");
        assert_eq!(
            text,
            format!(
                "custom_attributes:\n  1.2.840.113549.1.9.7: s3cret-i-0abc\n  {IID}: {v}\nextension_requests:\n  pp_instance_id: i-0abc\n"
            )
        );
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(parsed["custom_attributes"][IID].as_str(), Some(v.as_str()));
        // off (the default): nothing about the identity, and no file without csr_attributes
        let (d, mut ctx) = root();
        ctx.set_identity(Identity::Available(v));
        let mut u = with_identity(None);
        u.puppet.as_mut().unwrap().instance_identity = false;
        let acts = Puppet.plan(&u, &ctx, &mut PlanState::default()).unwrap();
        apply(&ctx, "puppet", &acts);
        assert!(!d.path().join("etc/puppet/csr_attributes.yaml").exists());
    }

    #[test]
    fn plan_output_shows_the_identity_only_shortened() {
        let v = rsa2048();
        let (d, mut ctx) = root();
        for s in crate::modules::secrets(&ud(), &ctx.instance_id) {
            ctx.redactor.add(&s);
        }
        ctx.set_identity(Identity::Available(v.clone()));
        let u = with_identity(ud().puppet.unwrap().csr_attributes);
        // an identity from an earlier boot already on disk: shown shortened as well
        let old = format!("MIAGoldoldold{}", "Q".repeat(1000));
        std::fs::create_dir_all(d.path().join("etc/puppet")).unwrap();
        std::fs::write(
            d.path().join("etc/puppet/csr_attributes.yaml"),
            format!("custom_attributes:\n  {IID}: {old}\n"),
        )
        .unwrap();
        let rec = Recorder::default();
        let mut e = crate::engine::Engine::new(&ctx, &rec, crate::action::Mode::Plan);
        for a in Puppet.plan(&u, &ctx, &mut PlanState::default()).unwrap() {
            e.execute("puppet", &a).unwrap();
        }
        let text = crate::report::render_steps(&e.steps, crate::action::Mode::Plan);
        assert!(text.contains(&format!("+  {IID}: {SHORT}")), "{text}");
        assert!(
            text.contains(&format!(
                "-  {IID}: MIAGoldoldold{}… (1013 characters)",
                "Q".repeat(19)
            )),
            "{text}"
        );
        assert!(
            !text.contains(&v[..100]) && !text.contains(&old[..100]),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
        // the steps (what --output json and result.json hold) never carry it either
        let json = serde_json::to_string(&e.steps).unwrap();
        assert!(!json.contains(&v[..100]) && json.contains(SHORT), "{json}");
        assert!(rec.cmds.borrow().is_empty(), "plan runs nothing");
        // and errors or logs that quote the value show it shortened
        assert_eq!(ctx.mask(&format!("bad: {v}")), format!("bad: {SHORT}"));
        // apply writes the full value, while its steps show it shortened
        let rec = Recorder::default();
        let mut e = crate::engine::Engine::new(&ctx, &rec, crate::action::Mode::Apply);
        for a in Puppet.plan(&u, &ctx, &mut PlanState::default()).unwrap() {
            e.execute("puppet", &a).unwrap();
        }
        assert!(read(&d, "/etc/puppet/csr_attributes.yaml").contains(&format!("{IID}: {v}\n")));
        let json = serde_json::to_string(&e.steps).unwrap();
        assert!(!json.contains(&v[..100]) && json.contains(SHORT), "{json}");
    }

    #[test]
    fn instance_identity_without_a_document_is_a_clear_error() {
        let (d, mut ctx) = root();
        ctx.set_identity(Identity::Unavailable(
            "the datasource is nocloud:/seed (a seed directory); only EC2's IMDS serves a signed instance identity document".into(),
        ));
        let e = Puppet
            .plan(&with_identity(None), &ctx, &mut PlanState::default())
            .unwrap_err()
            .to_string();
        for want in [
            "puppet.instance_identity:",
            "nocloud:/seed",
            "only EC2's IMDS serves a signed instance identity document",
            "fix: run bootcfg on EC2 with IMDSv2",
            "or remove `puppet.instance_identity`",
        ] {
            assert!(e.contains(want), "missing {want:?} in {e}");
        }
        // the default context (no datasource read) has none either; nothing is planned
        let (_d2, ctx) = root();
        assert!(matches!(ctx.identity, Identity::Unavailable(_)));
        assert!(
            Puppet
                .plan(&with_identity(None), &ctx, &mut PlanState::default())
                .is_err()
        );
        assert!(!d.path().join("etc/puppet").exists(), "nothing written");
    }

    /// What `puppet config print` answers, for the path check.
    struct ConfigPrint(&'static str);
    impl crate::runner::Runner for ConfigPrint {
        fn run(
            &self,
            cmd: &crate::runner::Cmd,
        ) -> Result<crate::runner::CmdOutput, crate::runner::RunError> {
            assert_eq!(
                cmd.argv[1..6],
                ["config", "print", "confdir", "ssldir", "csr_attributes"],
                "{cmd:?}"
            );
            Ok(crate::runner::CmdOutput {
                code: 0,
                stdout: self.0.to_owned(),
                stderr: String::new(),
                elapsed: Default::default(),
            })
        }
    }

    /// Issue 12: the paths come from the installed package; a Puppet that keeps them elsewhere
    /// stops the module before it writes anything, naming the key that overrides the path.
    #[test]
    fn installed_puppets_paths_are_checked_before_any_write() {
        let (d, ctx) = root();
        std::fs::create_dir_all(d.path().join("usr/bin")).unwrap();
        std::fs::write(d.path().join("usr/bin/puppet"), "").unwrap();
        let acts = Puppet.plan(&ud(), &ctx, &mut PlanState::default()).unwrap();
        let check = acts
            .iter()
            .position(|a| matches!(a, Action::CheckPuppetPaths { .. }))
            .expect("a path check");
        let first_write = acts
            .iter()
            .position(|a| matches!(a, Action::Write { .. } | Action::MkDir { .. }))
            .unwrap();
        assert!(check < first_write);

        let debian = "confdir = /etc/puppet\nssldir = /var/lib/puppet/ssl\ncsr_attributes = /etc/puppet/csr_attributes.yaml\n";
        let r = ConfigPrint(debian);
        let mut e = crate::engine::Engine::new(&ctx, &r, crate::action::Mode::Apply);
        e.execute("puppet", &acts[check]).unwrap();

        let moved = "confdir = /etc/puppet8\nssldir = /var/lib/puppet/ssl\ncsr_attributes = /etc/puppet8/csr_attributes.yaml\n";
        let r = ConfigPrint(moved);
        let mut e = crate::engine::Engine::new(&ctx, &r, crate::action::Mode::Apply);
        let err = e.execute("puppet", &acts[check]).unwrap_err().to_string();
        assert!(
            err.contains("confdir at /etc/puppet8, not /etc/puppet")
                && err.contains("puppet.conf_file"),
            "{err}"
        );
        // a missing setting is an error too, not a pass
        let r = ConfigPrint("confdir = /etc/puppet\n");
        let mut e = crate::engine::Engine::new(&ctx, &r, crate::action::Mode::Apply);
        assert!(e.execute("puppet", &acts[check]).is_err());
    }

    /// Debian 13's cloud-init installs `puppet-agent` (`puppet` is a transitional package there);
    /// Debian 12's installs `puppet`. bootcfg installs what the release's cloud-init does.
    #[test]
    fn the_puppet_package_follows_the_release() {
        let first = |os_release: &str| {
            let (_d, ctx) = root_of(os_release);
            let mut ud = ud();
            ud.puppet.as_mut().unwrap().install = true;
            let acts = Puppet.plan(&ud, &ctx, &mut PlanState::default()).unwrap();
            acts.iter()
                .find_map(|a| match a {
                    Action::InstallFirstKnown { candidates, .. } => Some(candidates[0].clone()),
                    _ => None,
                })
                .expect("an install")
        };
        assert_eq!(
            first("ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n"),
            "puppet"
        );
        assert_eq!(
            first("ID=debian\nVERSION_ID=\"13\"\nVERSION_CODENAME=trixie\n"),
            "puppet-agent"
        );
    }

    #[test]
    fn aio_layout_and_overrides() {
        let mut p = P {
            install_type: InstallType::Aio,
            ..P::default()
        };
        assert_eq!(layout(&p).conf_file, "/etc/puppetlabs/puppet/puppet.conf");
        assert_eq!(layout(&p).bin, "/opt/puppetlabs/bin/puppet");
        p.ssl_dir = Some("/srv/ssl/".into());
        p.package_name = Some("openvox-agent".into());
        assert_eq!(layout(&p).ssl_dir, "/srv/ssl");
        assert_eq!(layout(&p).packages, ["openvox-agent"]);
    }
}
