//! The whole flow on one machine (issue 6), as one function shared by the end-to-end test
//! (`tests/tests/e2e.rs`, silent) and the walkthrough (`demo`, narrated):
//!
//! 1. moto (EC2 + S3) and a relocatable Puppet Server whose `autosign` is the real
//!    `signer autosign` (through a two-line wrapper that passes its config); the registry is a
//!    bucket on that moto.
//! 2. `conductor launch` (the real binary, pointed at moto by `AWS_ENDPOINT_URL` only); the
//!    user-data EC2 stored for the instance (`DescribeInstanceAttribute`) is served by the fake
//!    IMDSv2 with the instance's id and private DNS name.
//!    Before the instance boots, an attacker who can only read the EC2 API (the user-data
//!    included) submits a CSR for it from its own root and its own fake IMDS: it cannot get the
//!    instance's AWS-signed identity document, so its forgery is refused, and `signer sweep`
//!    evicts the squatting request.
//! 3. `bootcfg run --imds-url …` in a fresh debootstrap root, whose IMDS serves the instance's
//!    identity document signed by the harness's stand-in for AWS ([`crate::iid`]): it installs
//!    Debian's `puppet-agent`, writes puppet.conf, ca.pem and csr_attributes.yaml (with the
//!    identity proof), and runs `puppet agent --test`.
//! 4. The hook signs during submission, the agent applies its catalog, the registration is
//!    consumed with the instance id recorded.
//! 5. The instance is terminated in EC2: `conductor reap` retires its certname, `signer sweep`
//!    revokes its certificate (the CA's CRL lists the serial) and removes it, and the old node's
//!    `puppet agent --test` can no longer fetch a catalog. Then three more attacks, each from its
//!    own root, each leaving its CSR pending with an audit line: a replay of the stolen user-data
//!    (refused as retired), a known certname with a wrong secret, and `dns_alt_names = puppet`
//!    with a valid registration.
//!
//! Every step is checked (`ensure!`): the test and the demo fail the same way.

use crate::chroot::{self, Output};
use crate::iid::{Doc, TestAws};
use crate::moto::Moto;
use crate::puppet::{PuppetServer, ServerOptions};
use crate::{bins, imds::FakeImds, rootfs};
use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The OID of the CSR attribute that carries the one-time secret.
pub const CHALLENGE_OID: &str = "1.2.840.113549.1.9.7";
/// The file the test catalog manages in every signed node.
pub const MANAGED_FILE: &str = "etc/bootcfg-e2e.txt";
const BOOTCFG_TIMEOUT: Duration = Duration::from_secs(900);
const BUCKET: &str = "bootcfg-e2e";

/// How to run the scenario.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Print each step and its evidence on stdout (the demo); otherwise only progress on stderr.
    pub narrate: bool,
    /// Keep the work directory (configs, audit log, roots) and print its path.
    pub keep: bool,
    /// The release of the instance's root (and of the Puppet it installs).
    pub debian: Debian,
}

/// The Debian release the instance runs (its root from tests/setup-roots.sh).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Debian {
    /// Debian 12 (bookworm), Puppet 7.
    D12,
    /// Debian 13 (trixie), Puppet 8: the current stable release.
    #[default]
    D13,
}

impl Debian {
    /// `12` or `13` (the demo's `--debian`).
    pub fn parse(s: &str) -> Option<Debian> {
        match s {
            "12" | "bookworm" => Some(Debian::D12),
            "13" | "trixie" => Some(Debian::D13),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Debian::D12 => "Debian 12",
            Debian::D13 => "Debian 13",
        }
    }
    /// The Puppet Server of that release (7.9 from the host's packages, 8.7 from a trixie root).
    pub fn puppet(self) -> crate::puppet::Release {
        match self {
            Debian::D12 => crate::puppet::Release::Puppet7,
            Debian::D13 => crate::puppet::Release::Puppet8,
        }
    }
    /// The snapshot the instance's root is a copy of.
    pub fn base_root(self) -> &'static str {
        match self {
            Debian::D12 => "base",
            Debian::D13 => "base-trixie",
        }
    }
}

/// What one attack left behind.
#[derive(Debug, Clone)]
pub struct Attack {
    pub name: &'static str,
    pub certname: String,
    /// The CA's state for the certname afterwards (`requested`: pending, unsigned).
    pub ca_state: Option<String>,
    /// bootcfg's exit code in the attacking root (non-zero: its puppet agent got no certificate).
    pub bootcfg_exit: Option<i32>,
    /// The signer's audit line for the attempt.
    pub audit: Value,
}

/// What the scenario saw; everything here has already been checked.
#[derive(Debug, Clone)]
pub struct Report {
    pub certname: String,
    pub instance_id: String,
    pub hostname: String,
    /// The approved audit line of the legitimate instance.
    pub approved: Value,
    pub attacks: Vec<Attack>,
    /// The serial of the first instance's certificate, which the CA's CRL listed after the
    /// instance was terminated, reaped and swept.
    pub revoked_serial: String,
    /// puppet.conf's `autosign` (the packaged wrapper on Debian 13) and the audit log the hook
    /// wrote the approval to, as the CA host sees them.
    pub autosign: PathBuf,
    pub audit_log: PathBuf,
    /// (step, wall time).
    pub timings: Vec<(String, Duration)>,
    /// Wall time of `bootcfg run` in the legitimate root (package install and puppet included).
    pub bootcfg_run: Duration,
    /// The `puppet-agent` version bootcfg installed in the instance's root (dpkg's).
    pub agent_version: String,
    /// The Puppet Server's package version.
    pub server_version: String,
}

struct Narrator {
    on: bool,
    t0: Instant,
}

impl Narrator {
    fn step(&self, n: &str, title: &str) {
        if self.on {
            println!("\n==> [{n}] {title}");
        } else {
            eprintln!(
                "[e2e {:>6.1}s] {n} {title}",
                self.t0.elapsed().as_secs_f64()
            );
        }
    }
    fn say(&self, text: &str) {
        if self.on {
            println!("    {text}");
        }
    }
    fn show(&self, label: &str, block: &str) {
        if self.on {
            println!("    {label}:");
            for l in block.trim_end().lines() {
                println!("      | {l}");
            }
        }
    }
}

/// The parts every step uses.
struct World {
    moto: Moto,
    server: PuppetServer,
    work: PathBuf,
    bootcfg: PathBuf,
    conductor: PathBuf,
    conductor_yaml: PathBuf,
    /// The workspace's signer binary (used by the ad-hoc layout).
    signer: PathBuf,
    layout: SignerLayout,
    /// The signer's audit log, as the host sees it.
    audit: PathBuf,
    /// Plays AWS: signs each instance's identity document; the signer trusts only it.
    aws: TestAws,
}

/// Run the scenario. Needs root, the Debian roots and the packages `sudo tests/setup.sh` installs,
/// and the workspace binaries (`cargo build --workspace`).
pub fn run(opts: &Options) -> Result<Report> {
    let n = Narrator {
        on: opts.narrate,
        t0: Instant::now(),
    };
    let mut timings = Vec::new();
    rootfs::require_root();
    rootfs::snapshot(opts.debian.base_root());
    let bootcfg = bins::bin("bootcfg")?;
    let conductor = bins::bin("conductor")?;
    let signer = bins::bin("signer")?;
    let tmp = rootfs::test_home().join("tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let work_dir = tempfile::Builder::new().prefix("e2e-").tempdir_in(&tmp)?;
    let work = work_dir.path().to_path_buf();

    // 1. The real parts.
    let t = Instant::now();
    n.step("1/6", "Start the real parts on 127.0.0.1: moto (EC2 + S3) and Puppet Server, whose autosign is the signer");
    let moto = Moto::start().context("starting moto")?;
    moto.create_bucket(BUCKET)?;
    n.say(&format!(
        "moto (EC2 and S3, no AWS account): {}; registry bucket s3://{BUCKET}/reg",
        moto.endpoint()
    ));
    // The agent root for the attacks (Debian's puppet-agent preinstalled) is built meanwhile.
    let template_dir = work.join("agent-template");
    let builder = {
        let (dir, debian) = (template_dir.clone(), opts.debian);
        std::thread::spawn(move || build_agent_template(&dir, debian))
    };
    let aws = TestAws::generate(crate::moto::REGION);
    let aws_bundle = work.join("aws-test-rsa2048.pem");
    write_file(&aws_bundle, &aws.bundle_pem(), 0o644)?;
    let (server, layout) = if opts.debian == Debian::D13 {
        // The CA host as an operator sets it up: the signer's Debian package installed in the
        // server's Debian 13 root, its wrapper and config paths.
        let deb = bins::build_deb("signer", &work.join("deb"));
        let server = PuppetServer::start(&ServerOptions {
            autosign: Some(PathBuf::from(PACKAGED_AUTOSIGN)),
            env: autosign_env(&moto),
            release: opts.debian.puppet(),
            extra_binds: vec![work.clone()],
            install: vec![deb],
        })
        .context("starting puppetserver with the signer package installed in its root")?;
        let sysroot = server
            .sysroot()
            .context("a Puppet 8 server runs in a root")?;
        (server, SignerLayout::Installed { sysroot })
    } else {
        let wrapper = work.join("autosign");
        let yaml = work.join("signer.yaml");
        let server = start_autosign_server(&wrapper, &signer, &yaml, &moto, opts.debian)?;
        let work = work.clone();
        (
            server,
            SignerLayout::Adhoc {
                wrapper,
                yaml,
                work,
            },
        )
    };
    let (audit_in_config, lock_in_config) = layout.audit_and_lock();
    write_file(
        &layout.config_on_host(),
        &signer_yaml(&server, &aws_bundle, &audit_in_config, &lock_in_config),
        0o640,
    )?;
    let audit = layout.audit_on_host();
    write_site_pp(&server)?;
    n.say(&format!(
        "Puppet Server {} (Debian package, relocatable instance): {} — CA state in {}",
        server.version,
        server.url,
        server.cadir.display()
    ));
    if let SignerLayout::Installed { .. } = &layout {
        n.say("The signer comes from its Debian package (bootcfg-signer), installed with dpkg -i in the server's Debian 13 root: /usr/bin/signer, the wrapper /usr/lib/bootcfg-signer/autosign, /etc/bootcfg/signer.yaml, the audit log in /var/log/bootcfg-signer.");
    }
    n.show(
        "puppet.conf [server] autosign",
        &format!(
            "autosign = {}\n# {}:\n{}",
            layout.autosign().display(),
            layout.autosign().display(),
            std::fs::read_to_string(layout.autosign_on_host())?
        ),
    );
    n.show(
        &layout.config_in_use().display().to_string(),
        &std::fs::read_to_string(layout.config_on_host())?,
    );
    timings.push(("start moto + puppetserver".to_owned(), t.elapsed()));

    let conductor_yaml = work.join("conductor.yaml");
    write_file(&conductor_yaml, &conductor_config(&server), 0o644)?;
    let w = World {
        moto,
        server,
        work: work.clone(),
        bootcfg,
        conductor,
        conductor_yaml,
        signer,
        layout,
        audit,
        aws,
    };

    // 2. Launch.
    let t = Instant::now();
    n.step("2/6", "conductor launch: register a random certname + one-time secret in S3, then RunInstances on moto");
    n.show(
        "conductor.yaml",
        &std::fs::read_to_string(&w.conductor_yaml)?,
    );
    let out = w.conductor(&["launch", "--count", "1"])?;
    n.show("conductor launch -c conductor.yaml", &out);
    let first = w.list()?;
    ensure!(
        first.len() == 1,
        "one launch must leave one registration, `conductor list` shows {first:?}"
    );
    let entry = &first[0];
    ensure!(
        entry["state"] == "pending",
        "a fresh registration must be pending: {entry}"
    );
    let certname = entry["certname"]
        .as_str()
        .context("list entry without certname")?
        .to_owned();
    let instance_id = entry["instance_id"]
        .as_str()
        .with_context(|| format!("registration {certname} has no instance id: {entry}"))?
        .to_owned();
    let user_data = w.user_data(&instance_id)?;
    let (ud_certname, secret) = identity(&user_data)?;
    ensure!(
        ud_certname == certname,
        "user-data of {instance_id} names certname {ud_certname}, the registry {certname}"
    );
    let hostname = w.private_dns_name(&instance_id)?;
    n.show("conductor list", &w.conductor(&["list"])?);
    n.show(
        &format!("user-data EC2 holds for {instance_id} (DescribeInstanceAttribute userData; secret redacted and certificates shortened here)"),
        &shorten_pem(&String::from_utf8_lossy(&user_data).replace(&secret, "<redacted>")),
    );
    timings.push(("conductor launch".to_owned(), t.elapsed()));

    // 2b. The API reader races the instance, before it boots.
    let t = Instant::now();
    let template = builder
        .join()
        .map_err(|_| anyhow::anyhow!("the agent-root builder panicked"))??;
    n.say("");
    n.say(&format!(
        "(d) API reader: right after the launch, someone allowed only ec2:DescribeInstanceAttribute has read {instance_id}'s user-data \
         (certname and one-time secret, above) and submits a CSR before the instance boots, from its own root and its own IMDS. \
         EC2 serves the signed identity document only to the instance itself, so the attacker signs one with its own key \
         (same subject and serial as AWS's certificate)"
    ));
    let forged_doc = Doc::new(&instance_id, crate::moto::AMI, crate::moto::REGION).render();
    let forged = (forged_doc.clone(), w.aws.impostor().sign(&forged_doc));
    let api_reader = w.attack(
        &n,
        &template,
        "api reader",
        &certname,
        &instance_id,
        "ip-10-6-6-6.ec2.internal",
        &user_data,
        Some(&forged),
        "identity",
    )?;
    let reason = api_reader.audit["reason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("does not verify"),
        "the API reader's forged document must fail verification, the audit says {}",
        api_reader.audit
    );
    let sweep = w.signer(&["sweep", "--output", "json"])?;
    let swept: Value = serde_json::from_str(&sweep)
        .with_context(|| format!("signer sweep printed no JSON: {sweep}"))?;
    ensure!(
        swept["evicted"] == 1 && swept["signed"] == 0,
        "the sweep must evict the API reader's request and sign nothing: {swept}"
    );
    ensure!(
        w.server.state(&certname)?.is_none(),
        "the API reader's request for {certname} is still at the CA after the sweep"
    );
    ensure!(
        w.entry(&certname)?["state"] == "pending",
        "the refused request must not consume {certname}'s registration"
    );
    let evicted = w
        .audit_for(&certname)
        .into_iter()
        .find(|l| l["decision"] == "evicted")
        .with_context(|| format!("no `evicted` audit line for {certname}"))?;
    n.show(
        "signer sweep --output json (the squatting request is evicted, so the instance can submit its own)",
        &sweep,
    );
    n.show("signer audit line", &evicted.to_string());
    let mut attacks = vec![api_reader];
    timings.push(("attack: API reader + sweep".to_owned(), t.elapsed()));

    // 3. First boot.
    let t = Instant::now();
    n.step("3/6", &format!("First boot: bootcfg run in a fresh {} root, user-data from an IMDSv2 endpoint on 127.0.0.1", opts.debian.name()));
    let imds = FakeImds::start(Some(&user_data));
    imds.set_instance_id(&instance_id);
    imds.set_local_hostname(&hostname);
    imds.set_region(crate::moto::REGION);
    let genuine = w.identity_of(&instance_id);
    imds.set_identity(&genuine.0, &genuine.1);
    n.say(&format!("IMDSv2 at {} serves instance-id {instance_id}, local-hostname {hostname}, the user-data, and the identity document with its rsa2048 signature (signed by the harness's stand-in for AWS, which the signer trusts in this test)", imds.url));
    let root = rootfs::Root::fresh(opts.debian.base_root());
    let plan = w.bootcfg(root.path(), "plan", &imds.url)?;
    ensure!(
        plan.status.success(),
        "bootcfg plan failed:\n{}",
        plan.report()
    );
    n.show(
        "bootcfg plan --root ROOT --imds-url URL (certificates shortened here)",
        &shorten_pem(&plan.stdout),
    );
    let (out, bootcfg_run) = {
        let _heavy = chroot::heavy_lock();
        let t_run = Instant::now();
        let out = w.bootcfg(root.path(), "run", &imds.url)?;
        (out, t_run.elapsed())
    };
    ensure!(
        out.status.success(),
        "bootcfg run in the legitimate root failed:\n{}\npuppetserver:\n{}",
        out.report(),
        w.server.log_tail()
    );
    let status = w.bootcfg(root.path(), "status", "")?;
    n.show(
        &format!(
            "bootcfg run took {:.1} s; bootcfg status --root ROOT",
            bootcfg_run.as_secs_f64()
        ),
        &status.stdout,
    );
    timings.push(("bootcfg run (legitimate)".to_owned(), t.elapsed()));

    // 4. Evidence.
    let t = Instant::now();
    n.step("4/6", "Check: signed during submission, certificate downloaded, catalog applied, registration consumed");
    let cert = format!("var/lib/puppet/ssl/certs/{certname}.pem");
    ensure!(
        root.exists(&cert),
        "the agent in the root holds no certificate ({cert} missing)"
    );
    ensure!(
        w.server.state(&certname)?.as_deref() == Some("signed"),
        "the CA does not say `signed` for {certname}: {:?}",
        w.server.state(&certname)?
    );
    let managed = root.read_string(MANAGED_FILE);
    ensure!(
        managed == format!("managed by Puppet for {certname}\n"),
        "the catalog's file in the root holds {managed:?}"
    );
    let agent_version = root
        .dpkg_installed()
        .get("puppet-agent")
        .cloned()
        .context("bootcfg did not install puppet-agent in the root")?;
    n.say(&format!(
        "puppet-agent {agent_version} in the {} root, Puppet Server {}",
        opts.debian.name(),
        w.server.version
    ));
    let summary_path = "var/cache/puppet/public/last_run_summary.yaml";
    ensure!(
        root.exists(summary_path),
        "no {summary_path} in the root: the agent applied no catalog"
    );
    let summary = root.yaml(summary_path);
    ensure!(
        summary["resources"]["failed"] == 0 && summary["events"]["failure"] == 0,
        "the Puppet run had failures: {summary}"
    );
    ensure!(
        summary["resources"]["changed"].as_u64().unwrap_or(0) >= 1,
        "the Puppet run changed nothing: {summary}"
    );
    let approved = w
        .audit_for(&certname)
        .into_iter()
        .find(|l| l["decision"] == "approved")
        .with_context(|| {
            format!(
                "no `approved` audit line for {certname} in {}",
                w.audit.display()
            )
        })?;
    ensure!(
        approved["mode"] == "hook",
        "{certname} was approved outside the hook: {approved}"
    );
    let consumed = w.entry(&certname)?;
    ensure!(
        consumed["state"] == "consumed",
        "the registration of {certname} is not consumed: {consumed}"
    );
    let reg = w.registration(&certname)?;
    ensure!(
        reg["consumed"]["instance_id"] == instance_id.as_str()
            && reg["identity"]["account_id"] == crate::iid::MOTO_ACCOUNT,
        "the registration must require the proof and record the proven instance id: {reg}"
    );
    let audit_text = std::fs::read_to_string(&w.audit)?;
    ensure!(
        !audit_text.contains(&secret),
        "the audit log holds the secret"
    );
    n.show("CA: certificate_status", &w.ca_status(&certname)?);
    n.show(
        &format!("the root: /{cert}"),
        &openssl_subject(&root.join(&cert))?,
    );
    n.show(
        &format!("the root: /{MANAGED_FILE} (from the catalog)"),
        &managed,
    );
    n.show(
        "the root: last_run_summary.yaml",
        &format!(
            "resources: {}\nevents: {}\nversion: {}",
            summary["resources"], summary["events"], summary["version"]
        ),
    );
    n.show("signer audit line", &approved.to_string());
    n.show(
        "registration (conductor list --output json)",
        &serde_json::to_string_pretty(&consumed)?,
    );
    timings.push(("checks".to_owned(), t.elapsed()));

    // 5. Attacks.
    let t = Instant::now();
    n.step(
        "5/6",
        "Attacks: each from its own root, each must stay unsigned with a clear audit line",
    );
    n.say("Two more instances are launched; their registrations are the targets of attacks (b) and (c).");
    let out = w.conductor(&["launch", "--count", "2"])?;
    n.show("conductor launch -c conductor.yaml --count 2", &out);
    let others: Vec<Value> = w
        .list()?
        .into_iter()
        .filter(|e| e["certname"] != certname.as_str())
        .collect();
    ensure!(
        others.len() == 2,
        "expected two new registrations, got {others:?}"
    );

    // (a) Replay after the instance is gone: terminated, reaped, its certificate revoked.
    n.say("");
    n.say(&format!("(a) replay: {instance_id} is terminated in EC2; `conductor reap` retires {certname}, `signer sweep` revokes its certificate; then its stolen user-data is replayed"));
    let serial = crate::puppet::serial_hex(
        &std::fs::read(root.join(&cert)).with_context(|| format!("reading /{cert} in the root"))?,
    )?;
    let terminated = w.ec2(&format!(
        "Action=TerminateInstances&InstanceId.1={instance_id}"
    ))?;
    ensure!(
        terminated.contains("terminated") || terminated.contains("shutting-down"),
        "TerminateInstances {instance_id}: {terminated}"
    );
    let reaped = w.conductor(&["reap", "--output", "json"])?;
    let reaped_v: Value = serde_json::from_str(reaped.trim())
        .with_context(|| format!("conductor reap printed no JSON: {reaped}"))?;
    let mine: Vec<&Value> = reaped_v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["action"] == "retired")
        .collect();
    ensure!(
        mine.len() == 1 && mine[0]["certname"] == certname.as_str(),
        "conductor reap must retire exactly {certname}: {reaped}"
    );
    n.show("conductor reap --output json", &reaped);
    let sweep = w.signer(&["--output", "json", "sweep"])?;
    let swept: Value = serde_json::from_str(sweep.trim())
        .with_context(|| format!("signer sweep printed no JSON: {sweep}"))?;
    ensure!(
        swept["revoked"] == 1,
        "signer sweep must revoke {certname}'s certificate: {sweep}"
    );
    ensure!(
        w.server.state(&certname)?.is_none(),
        "the CA still holds something for {certname} after the sweep"
    );
    let revoked = w.server.crl_serials()?;
    ensure!(
        revoked.contains(&serial),
        "the CRL must list {certname}'s serial {serial}: {revoked:?}"
    );
    n.show(
        "signer sweep --output json (the retired certname's certificate is revoked and removed)",
        &sweep,
    );
    n.say(&format!("the CA's CRL lists serial {serial}"));
    let again = {
        let _heavy = chroot::heavy_lock();
        chroot::run(
            chroot::in_root(
                root.path(),
                &[
                    "puppet",
                    "agent",
                    "--test",
                    "--noop",
                    "--detailed-exitcodes",
                ],
            ),
            Duration::from_secs(300),
        )
    };
    ensure!(
        !matches!(again.code(), Some(0 | 2))
            && (again.stdout.contains("Could not retrieve catalog")
                || again.stderr.contains("Could not retrieve catalog")),
        "the terminated node must no longer fetch a catalog:\n{}",
        again.report()
    );
    n.say("the old node's `puppet agent --test` is refused: Could not retrieve catalog (its certificate is revoked)");
    drop(root);
    attacks.push(w.attack(
        &n,
        &template,
        "replay",
        &certname,
        &instance_id,
        &hostname,
        &user_data,
        Some(&genuine),
        "retired",
    )?);
    let replay = attacks.last().expect("just pushed");
    let reason = replay.audit["reason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("never signed again"),
        "the replay must be refused as retired, the audit says {}",
        replay.audit
    );

    // (b) A known certname without its secret.
    let (b_name, b_iid, b_ud) = w.target(&others[0])?;
    let (_, b_secret) = identity(&b_ud)?;
    let forged = String::from_utf8(b_ud.clone())?.replace(&b_secret, &"0".repeat(b_secret.len()));
    n.say("");
    n.say(&format!("(b) wrong secret: {b_name} is registered; the attacker knows the certname but not the secret"));
    attacks.push(w.attack(
        &n,
        &template,
        "wrong secret",
        &b_name,
        &b_iid,
        "ip-10-9-9-9.ec2.internal",
        forged.as_bytes(),
        Some(&w.identity_of(&b_iid)),
        "secret",
    )?);

    // (c) dns_alt_names = puppet with a valid registration.
    let (c_name, c_iid, c_ud) = w.target(&others[1])?;
    let c_host = w.private_dns_name(&c_iid)?;
    let san = with_dns_alt_names(&c_ud, "puppet")?;
    n.say("");
    n.say(&format!("(c) SAN: {c_name}'s own valid user-data, plus `dns_alt_names = puppet` (to impersonate the Puppet server)"));
    attacks.push(w.attack(
        &n,
        &template,
        "dns_alt_names=puppet",
        &c_name,
        &c_iid,
        &c_host,
        san.as_bytes(),
        Some(&w.identity_of(&c_iid)),
        "forbidden",
    )?);

    // The refused attempts burned nothing: (b) and (c)'s registrations still wait for their instances.
    for name in [&b_name, &c_name] {
        let e = w.entry(name)?;
        ensure!(
            e["state"] == "pending",
            "a rejected CSR must not consume the registration of {name}: {e}"
        );
    }
    timings.push(("attacks".to_owned(), t.elapsed()));

    // 6. Summary.
    n.step("6/6", "Summary");
    let (code, statuses) = w.server.admin("GET", "certificate_statuses/any", None)?;
    ensure!(code == 200, "certificate_statuses: HTTP {code}: {statuses}");
    let statuses: Value = serde_json::from_str(&statuses)?;
    let mut table = String::new();
    for s in statuses.as_array().into_iter().flatten() {
        let _ = writeln!(
            table,
            "{:<38} {}",
            s["name"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?")
        );
    }
    n.show(
        "CA: every certificate and request (certificate_statuses)",
        &table,
    );
    n.show("conductor list", &w.conductor(&["list"])?);
    n.show("signer audit log", &std::fs::read_to_string(&w.audit)?);
    for (step, d) in &timings {
        n.say(&format!("{step:<28} {:>7.1} s", d.as_secs_f64()));
    }
    if opts.keep {
        let kept = work_dir.keep();
        n.say(&format!("work directory kept: {}", kept.display()));
        eprintln!("[e2e] work directory kept: {}", kept.display());
    }
    Ok(Report {
        certname,
        instance_id,
        hostname,
        approved,
        attacks,
        revoked_serial: serial,
        autosign: w.layout.autosign(),
        audit_log: w.layout.audit_and_lock().0,
        timings,
        bootcfg_run,
        agent_version,
        server_version: w.server.version.clone(),
    })
}

impl World {
    /// The conductor binary with moto's environment; its stdout, failing on a non-zero exit.
    fn conductor(&self, args: &[&str]) -> Result<String> {
        let out = self
            .moto
            .command(&self.conductor)
            .args(args)
            .arg("--config")
            .arg(&self.conductor_yaml)
            .stdin(std::process::Stdio::null())
            .output()
            .context("running conductor")?;
        ensure!(
            out.status.success(),
            "conductor {} failed ({}):\n{}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `signer --config signer.yaml <args>` with moto's environment; its stdout (exit 0 or 1).
    fn signer(&self, args: &[&str]) -> Result<String> {
        let out = match &self.layout {
            SignerLayout::Installed { .. } => {
                let mut argv = vec![PACKAGED_SIGNER, "--config", PACKAGED_CONFIG];
                argv.extend_from_slice(args);
                self.server
                    .command(&autosign_env(&self.moto), &argv)
                    .output()
            }
            SignerLayout::Adhoc { yaml, .. } => self
                .moto
                .command(&self.signer)
                .arg("--config")
                .arg(yaml)
                .args(args)
                .stdin(std::process::Stdio::null())
                .output(),
        }
        .context("running signer")?;
        ensure!(
            matches!(out.status.code(), Some(0 | 1)),
            "signer {} failed ({}):\n{}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The identity document EC2 would serve `instance_id` (launched now from the test AMI in
    /// moto's account and region) and its `rsa2048` signature by the stand-in for AWS.
    fn identity_of(&self, instance_id: &str) -> (String, String) {
        identity_of(&self.aws, instance_id)
    }

    /// The whole stored registration record (`conductor list --output json` shows a summary).
    fn registration(&self, certname: &str) -> Result<Value> {
        let (code, body) = self.aws_get(
            "s3",
            &format!("/{BUCKET}/reg/registrations/{certname}.json"),
        )?;
        ensure!(
            code == 200,
            "reading the registration of {certname}: HTTP {code}: {body}"
        );
        serde_json::from_str(&body).with_context(|| format!("registration is not JSON: {body}"))
    }

    /// `conductor list --output json`, as entries.
    fn list(&self) -> Result<Vec<Value>> {
        let text = self.conductor(&["list", "--output", "json"])?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("conductor list printed no JSON: {text}"))?;
        let arr = match v {
            Value::Array(a) => a,
            Value::Object(ref o) => o
                .values()
                .find_map(|x| x.as_array().cloned())
                .with_context(|| format!("no list in {v}"))?,
            _ => bail!("unexpected `conductor list` output: {v}"),
        };
        Ok(arr)
    }

    fn entry(&self, certname: &str) -> Result<Value> {
        self.list()?
            .into_iter()
            .find(|e| e["certname"] == certname)
            .with_context(|| format!("no registration for {certname}"))
    }

    /// (certname, instance id, user-data) of a registration.
    fn target(&self, entry: &Value) -> Result<(String, String, Vec<u8>)> {
        let name = entry["certname"].as_str().context("certname")?.to_owned();
        let iid = entry["instance_id"]
            .as_str()
            .with_context(|| format!("no instance id: {entry}"))?
            .to_owned();
        let ud = self.user_data(&iid)?;
        Ok((name, iid, ud))
    }

    fn aws_get(&self, service: &str, path: &str) -> Result<(u16, String)> {
        aws_get(&self.moto, service, path)
    }

    fn ec2(&self, query: &str) -> Result<String> {
        ec2_query(&self.moto, query)
    }

    fn user_data(&self, instance_id: &str) -> Result<Vec<u8>> {
        instance_user_data(&self.moto, instance_id)
    }

    fn private_dns_name(&self, instance_id: &str) -> Result<String> {
        let body = self.ec2(&format!(
            "Action=DescribeInstances&InstanceId.1={instance_id}"
        ))?;
        let name = xml_value(&body, "privateDnsName")
            .with_context(|| format!("no privateDnsName in {body}"))?;
        Ok(name.trim().to_owned())
    }

    /// `bootcfg <sub> --root ROOT [--imds-url URL] --output text|json` inside the root's namespaces.
    fn bootcfg(&self, root: &Path, sub: &str, imds_url: &str) -> Result<Output> {
        let r = root.display().to_string();
        let b = self.bootcfg.display().to_string();
        let mut argv = vec![b.as_str(), sub, "--root", r.as_str()];
        if !imds_url.is_empty() {
            argv.extend(["--imds-url", imds_url]);
        }
        let cmd = chroot::host_in_ns(root, &["BOOTCFG_LOG=info".to_owned()], &argv);
        Ok(chroot::run(cmd, BOOTCFG_TIMEOUT))
    }

    fn audit_for(&self, certname: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["certname"] == certname)
            .collect()
    }

    fn ca_status(&self, certname: &str) -> Result<String> {
        let (code, body) =
            self.server
                .admin("GET", &format!("certificate_status/{certname}"), None)?;
        ensure!(
            code == 200,
            "certificate_status/{certname}: HTTP {code}: {body}"
        );
        let v: Value = serde_json::from_str(&body)?;
        Ok(format!(
            "name: {}\nstate: {}\nfingerprint (SHA256): {}\nsubject_alt_names: {}",
            v["name"], v["state"], v["fingerprints"]["SHA256"], v["subject_alt_names"]
        ))
    }

    /// One attack: a copy of the agent root boots with `user_data`; the CSR must stay pending and
    /// the audit log must hold a rejection of `check` for it.
    #[allow(clippy::too_many_arguments)]
    fn attack(
        &self,
        n: &Narrator,
        template: &Path,
        name: &'static str,
        certname: &str,
        instance_id: &str,
        hostname: &str,
        user_data: &[u8],
        identity: Option<&(String, String)>,
        check: &str,
    ) -> Result<Attack> {
        let before = self.audit_for(certname).len();
        let root = self.work.join(format!(
            "root-{}",
            name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        ));
        copy_tree(template, &root)?;
        let imds = FakeImds::start(Some(user_data));
        imds.set_instance_id(instance_id);
        imds.set_local_hostname(hostname);
        imds.set_region(crate::moto::REGION);
        if let Some((doc, sig)) = identity {
            imds.set_identity(doc, sig);
        }
        let out = {
            let _heavy = chroot::heavy_lock();
            self.bootcfg(&root, "run", &imds.url)?
        };
        let state = self.server.state(certname)?;
        ensure!(
            state.as_deref() == Some("requested"),
            "attack `{name}`: the CA must hold a pending request for {certname}, it says {state:?}\nbootcfg:\n{}",
            out.report()
        );
        ensure!(
            !self.server.has_cert(certname)?,
            "attack `{name}`: {certname} has a certificate"
        );
        ensure!(
            !root
                .join(format!("var/lib/puppet/ssl/certs/{certname}.pem"))
                .exists(),
            "attack `{name}`: the attacking root holds a certificate"
        );
        ensure!(
            !out.status.success(),
            "attack `{name}`: bootcfg run must fail when its agent gets no certificate:\n{}",
            out.report()
        );
        let lines = self.audit_for(certname);
        let audit = lines[before..]
            .iter()
            .find(|l| l["decision"] == "rejected")
            .cloned()
            .with_context(|| format!("attack `{name}`: no rejection in the audit log for {certname}; lines: {lines:?}"))?;
        ensure!(
            audit["check"] == check,
            "attack `{name}`: expected the `{check}` check to refuse it, the audit says {audit}"
        );
        ensure!(
            !lines[before..].iter().any(|l| l["decision"] == "approved"),
            "attack `{name}`: the signer approved it: {lines:?}"
        );
        n.show("CA", &self.ca_status(certname)?);
        n.show(
            "signer audit line",
            &format!(
                "decision: {}\ncheck: {}\nreason: {}\ncsr_sha256: {}",
                audit["decision"], audit["check"], audit["reason"], audit["csr_sha256"]
            ),
        );
        n.say(&format!(
            "bootcfg run exited {:?} in the attacking root (its agent got no certificate)",
            out.code()
        ));
        let _ = std::fs::remove_dir_all(&root);
        Ok(Attack {
            name,
            certname: certname.to_owned(),
            ca_state: state,
            bootcfg_exit: out.code(),
            audit,
        })
    }
}

/// The signer's config for `server` with the registry in the scenario's bucket: the API method
/// with the server's admin credentials, identity documents checked against `aws_bundle` (the
/// harness's stand-in for AWS), short deadlines for a test machine.
pub fn signer_yaml(server: &PuppetServer, aws_bundle: &Path, audit: &Path, lock: &Path) -> String {
    let (server_url, admin_cert, admin_key, ca_bundle) = (
        &server.url,
        server.admin_cert.display(),
        server.admin_key.display(),
        server.ca_bundle.display(),
    );
    let (account, aws_bundle, audit, lock) = (
        crate::iid::MOTO_ACCOUNT,
        aws_bundle.display(),
        audit.display(),
        lock.display(),
    );
    format!(
        "registry: s3://{BUCKET}/reg\nca:\n  method: api\n  server_url: {server_url}\n  client_cert: {admin_cert}\n  client_key: {admin_key}\n  ca_bundle: {ca_bundle}\ndeadlines:\n  hook: 10s\n  registry: 5s\n  ca: 20s\npolicy:\n  identity:\n    accounts: [\"{account}\"]\n    # the harness's stand-in for AWS's RSA-2048 certificates (tests only)\n    certificates: {aws_bundle}\naudit_log: {audit}\nlock_file: {lock}\n"
    )
}

/// The catalog every node gets from `server`: one file, so "applied a catalog" is visible in the
/// node's root ([`MANAGED_FILE`], naming the node's certname).
pub fn write_site_pp(server: &PuppetServer) -> Result<()> {
    write_file(
        &server
            .root
            .join("code/environments/production/manifests/site.pp"),
        &format!(
            "node default {{\n  file {{ '/{MANAGED_FILE}':\n    ensure  => file,\n    mode    => '0644',\n    content => \"managed by Puppet for ${{trusted['certname']}}\\n\",\n  }}\n}}\n"
        ),
        0o644,
    )
}

/// The scenario's registry bucket (`s3://BUCKET/reg`).
pub const REGISTRY_BUCKET: &str = BUCKET;

/// `DescribeInstanceAttribute userData` of `instance_id` on `moto`, decoded (base64, then gunzip
/// if gzipped): the user-data EC2 serves the instance.
pub fn instance_user_data(moto: &Moto, instance_id: &str) -> Result<Vec<u8>> {
    let body = ec2_query(
        moto,
        &format!("Action=DescribeInstanceAttribute&InstanceId={instance_id}&Attribute=userData"),
    )?;
    let b64 = xml_value(&body, "userData")
        .and_then(|s| xml_value(s, "value"))
        .with_context(|| format!("no userData in {body}"))?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim())?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut text)?;
        return Ok(text);
    }
    Ok(raw)
}

/// A GET to moto for `service` (unsigned; the credential scope routes it).
fn aws_get(moto: &Moto, service: &str, path: &str) -> Result<(u16, String)> {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/{}/{service}/aws4_request, SignedHeaders=host, Signature=0",
        crate::moto::REGION
    );
    moto.http_with("GET", path, &[("Authorization", &auth)], b"")
}

/// An EC2 Query API call to moto.
fn ec2_query(moto: &Moto, query: &str) -> Result<String> {
    let (code, body) = aws_get(moto, "ec2", &format!("/?{query}&Version=2016-11-15"))?;
    ensure!(code == 200, "EC2 {query}: HTTP {code}: {body}");
    Ok(body)
}

/// The identity document EC2 would serve `instance_id` (launched from the test AMI in moto's
/// account and region) and its `rsa2048` signature by `aws`, the stand-in for AWS.
pub fn identity_of(aws: &TestAws, instance_id: &str) -> (String, String) {
    let doc = Doc::new(instance_id, crate::moto::AMI, crate::moto::REGION).render();
    let sig = aws.sign(&doc);
    (doc, sig)
}

/// conductor.yaml for the test server: the agent settings a chroot on a loaded machine needs
/// (no 30 s keep-alive stall, 2048-bit keys) and one foreground run that does not wait for a signer.
fn conductor_config(server: &PuppetServer) -> String {
    format!(
        r#"registry: s3://{BUCKET}/reg
registration_ttl: 30m
launch:
  image: {ami}
  instance_type: t3.micro
  tags:
    suite: e2e
puppet:
  server: localhost
  port: {port}
  ca_cert_file: {ca}
  extensions:
    pp_role: web
user_data_template: |
  #cloud-config
  package_update: true
  puppet:
    install: true
    package_name: puppet-agent
    start_service: false
    exec: true
    exec_args: [--test, --waitforcert, "0"]
    conf:
      main:
        http_keepalive_timeout: 0
        keylength: 2048
"#,
        ami = crate::moto::AMI,
        port = server.port,
        ca = server.ca_bundle.display()
    )
}

/// (certname, secret) as the agent reads them from the user-data.
pub fn identity(user_data: &[u8]) -> Result<(String, String)> {
    let v: serde_yaml_ng::Value =
        serde_yaml_ng::from_slice(user_data).context("user-data is not YAML")?;
    let p = &v["puppet"];
    let certname = p["conf"]
        .as_mapping()
        .into_iter()
        .flat_map(|m| m.values())
        .find_map(|section| section.get("certname").and_then(|c| c.as_str()))
        .context("user-data has no puppet.conf certname")?
        .to_owned();
    let secret = p["csr_attributes"]["custom_attributes"][CHALLENGE_OID]
        .as_str()
        .context("user-data has no challengePassword")?
        .to_owned();
    ensure!(
        secret.len() >= 32,
        "the one-time secret is too short ({} chars)",
        secret.len()
    );
    Ok((certname, secret))
}

/// The user-data with `dns_alt_names = <names>` added to puppet.conf `[main]`.
fn with_dns_alt_names(user_data: &[u8], names: &str) -> Result<String> {
    let mut v: serde_yaml_ng::Value = serde_yaml_ng::from_slice(user_data)?;
    let main = v["puppet"]["conf"]["main"]
        .as_mapping_mut()
        .context("user-data has no puppet.conf main section")?;
    main.insert("dns_alt_names".into(), names.into());
    Ok(format!("#cloud-config\n{}", serde_yaml_ng::to_string(&v)?))
}

/// Text with the base64 body of every PEM block replaced by one `… (N lines)` line.
fn shorten_pem(text: &str) -> String {
    let mut out = String::new();
    let mut body = 0usize;
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim_start_matches([' ', '+', '|']);
        if t.starts_with("-----BEGIN ") {
            inside = true;
            body = 0;
            out.push_str(line);
            out.push('\n');
        } else if t.starts_with("-----END ") {
            inside = false;
            let indent = &line[..line.len() - t.len()];
            let _ = writeln!(out, "{indent}… ({body} lines of base64)");
            out.push_str(line);
            out.push('\n');
        } else if inside {
            body += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn xml_value<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

pub(crate) fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn openssl_subject(cert: &Path) -> Result<String> {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-issuer", "-enddate", "-in"])
        .arg(cert)
        .output()
        .context("running openssl")?;
    ensure!(
        out.status.success(),
        "openssl x509 {}: {}",
        cert.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cp -a FROM TO`.
/// Puppet Server (with moto's environment) whose `autosign` is `wrapper`, a script written here
/// that runs `signer --config SIGNER_YAML autosign CERTNAME`. The caller writes `signer_yaml`
/// once the server's URL and admin credentials are known; the hook reads it at each request.
/// Where the signer's Debian package puts its programs and config (signer/dist).
const PACKAGED_AUTOSIGN: &str = "/usr/lib/bootcfg-signer/autosign";
const PACKAGED_SIGNER: &str = "/usr/bin/signer";
const PACKAGED_CONFIG: &str = "/etc/bootcfg/signer.yaml";

/// How the CA host runs the signer in this scenario.
enum SignerLayout {
    /// The signer's Debian package installed in the Puppet 8 server's root (`sysroot` on the
    /// host): the packaged wrapper, config, audit log and state directory.
    Installed { sysroot: PathBuf },
    /// Puppet 7 runs on the host, where the tests install no package: a wrapper script and a
    /// config in the work directory, the workspace's signer binary.
    Adhoc {
        wrapper: PathBuf,
        yaml: PathBuf,
        work: PathBuf,
    },
}

impl SignerLayout {
    /// The `autosign` setting of puppet.conf.
    fn autosign(&self) -> PathBuf {
        match self {
            SignerLayout::Installed { .. } => PathBuf::from(PACKAGED_AUTOSIGN),
            SignerLayout::Adhoc { wrapper, .. } => wrapper.clone(),
        }
    }

    fn on_host(&self, inside: &str) -> PathBuf {
        match self {
            SignerLayout::Installed { sysroot } => sysroot.join(inside.trim_start_matches('/')),
            SignerLayout::Adhoc { .. } => PathBuf::from(inside),
        }
    }

    fn autosign_on_host(&self) -> PathBuf {
        self.on_host(&self.autosign().display().to_string())
    }

    /// The config file as the signer is told it.
    fn config_in_use(&self) -> PathBuf {
        match self {
            SignerLayout::Installed { .. } => PathBuf::from(PACKAGED_CONFIG),
            SignerLayout::Adhoc { yaml, .. } => yaml.clone(),
        }
    }

    fn config_on_host(&self) -> PathBuf {
        self.on_host(&self.config_in_use().display().to_string())
    }

    /// `audit_log` and `lock_file` as the config names them.
    fn audit_and_lock(&self) -> (PathBuf, PathBuf) {
        match self {
            SignerLayout::Installed { .. } => (
                PathBuf::from("/var/log/bootcfg-signer/audit.jsonl"),
                PathBuf::from("/var/lib/bootcfg-signer/sweep.lock"),
            ),
            SignerLayout::Adhoc { work, .. } => {
                (work.join("audit.jsonl"), work.join("signer.lock"))
            }
        }
    }

    fn audit_on_host(&self) -> PathBuf {
        self.on_host(&self.audit_and_lock().0.display().to_string())
    }
}

/// The environment the autosign executable (and the scenario's sweeps) get: moto's.
fn autosign_env(moto: &Moto) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = moto
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.push(("SIGNER_LOG".into(), "info".into()));
    env
}

pub fn start_autosign_server(
    wrapper: &Path,
    signer: &Path,
    signer_yaml: &Path,
    moto: &Moto,
    debian: Debian,
) -> Result<PuppetServer> {
    write_file(
        wrapper,
        &format!(
            "#!/bin/sh\nexec '{}' --config '{}' autosign -- \"$1\"\n",
            signer.display(),
            signer_yaml.display()
        ),
        0o755,
    )?;
    PuppetServer::start(&ServerOptions {
        autosign: Some(wrapper.to_owned()),
        env: autosign_env(moto),
        release: debian.puppet(),
        // Puppet 8 runs in a Debian 13 root: the wrapper's directory (the work dir, with the
        // signer's config, audit log and AWS certificate) is bound by the harness, the signer
        // binary's directory here
        extra_binds: signer.parent().map(Path::to_path_buf).into_iter().collect(),
        install: Vec::new(),
    })
    .context("starting puppetserver")
}

pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .context("running cp")?;
    ensure!(
        out.status.success(),
        "cp -a {} {}: {}",
        from.display(),
        to.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A base root of `debian` with its `puppet-agent` installed (the attack roots start from copies,
/// so the package is installed once per run).
pub fn build_agent_template(dir: &Path, debian: Debian) -> Result<PathBuf> {
    let tar = rootfs::snapshot(debian.base_root());
    std::fs::create_dir_all(dir)?;
    let out = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xf"])
        .arg(&tar)
        .output()?;
    ensure!(
        out.status.success(),
        "unpacking {}: {}",
        tar.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let _heavy = chroot::heavy_lock();
    let out = chroot::run(
        chroot::in_root(
            dir,
            &[
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "-o",
                "Dpkg::Options::=--force-confold",
                "puppet-agent",
            ],
        ),
        BOOTCFG_TIMEOUT,
    );
    ensure!(
        out.status.success(),
        "installing puppet-agent into the attack template root failed ({}; is the Debian mirror reachable?):\n{}",
        rootfs::SETUP_HINT,
        out.report()
    );
    Ok(dir.to_path_buf())
}
