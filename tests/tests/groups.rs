//! Enrollment groups end to end (issue 11), with real parts: moto (S3 registry, EC2, Auto
//! Scaling), the relocatable Puppet Server whose `autosign` is the real `signer`, real
//! `conductor group …` commands, real Puppet agents, and bootcfg in one Debian root.
//!
//! 1. `conductor group create web --asg web-asg --max-members 8`; `conductor group user-data web`
//!    goes into a launch template; an Auto Scaling group of 5 is created from it on moto.
//! 2. Member 1 boots for real: `bootcfg run` in a Debian root (puppet-agent preinstalled), its
//!    user-data read from EC2 (what the launch template gave the instance), its fake IMDSv2
//!    serving its own signed identity document. Its agent is signed during submission and
//!    applies the catalog.
//! 3. Members 2-5: real `puppet ssl submit_request` agents, concurrently (so several hook
//!    processes race for slots), each with the `csr_attributes.yaml` bootcfg writes from the
//!    same user-data and its own signed document. (bootcfg in five roots would cost about a
//!    minute each on a 2-core machine; one root shows the user-data works end to end.)
//! 4. Attacks, each left unsigned with its audit line: a second CSR for an enrolled instance
//!    (its certificate cleaned first, as for a decommissioned node), another image, another
//!    account, a revoked group, an instance from the group's image outside the ASG (the signer
//!    runs with `policy.groups.asg_membership` and asks moto's Auto Scaling), a certname that
//!    does not match the document; then, after the group scaled out to 8 (the 3 new instances
//!    join), a 9th instance: the group is full.
//! 5. `conductor group show` and `conductor list` show the 8 members; a final `signer sweep`
//!    signs nothing more.
//!
//! Needs root, `sudo tests/setup.sh` and `cargo build --workspace`.

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::autoscaling::AutoScaling;
use testkit::iid::{Doc, MOTO_ACCOUNT, TestAws};
use testkit::imds::FakeImds;
use testkit::moto::{AMI, Moto, REGION};
use testkit::puppet::{Agent, PuppetServer};
use testkit::{bins, chroot, rootfs, scenario};

const BUCKET: &str = "bootcfg-groups";
const GROUP: &str = "web";
const ASG: &str = "web-asg";
/// The bootcfg group attribute and identity attribute, from the one OID table.
const ENROLLMENT_GROUP_OID: &str = schemas::oids::ENROLLMENT_GROUP;
const INSTANCE_IDENTITY_OID: &str = schemas::oids::INSTANCE_IDENTITY;
const OTHER_AMI: &str = "ami-0fedcba9876543210";
const OTHER_ACCOUNT: &str = "210987654321";

struct World {
    moto: Moto,
    server: PuppetServer,
    work: PathBuf,
    conductor: PathBuf,
    conductor_yaml: PathBuf,
    signer: PathBuf,
    signer_yaml: PathBuf,
    audit: PathBuf,
    aws: TestAws,
}

impl World {
    fn run(&self, bin: &Path, args: &[&str]) -> Result<String> {
        let out = self
            .moto
            .command(bin)
            .args(args)
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        ensure!(
            out.status.success(),
            "{} {args:?} failed ({}):\n{}\n{}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn conductor(&self, args: &[&str]) -> Result<String> {
        let mut a = args.to_vec();
        let cfg = self.conductor_yaml.display().to_string();
        a.extend(["-c", cfg.as_str()]);
        self.run(&self.conductor, &a)
    }

    fn conductor_json(&self, args: &[&str]) -> Result<Value> {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let text = self.conductor(&a)?;
        serde_json::from_str(&text).with_context(|| format!("conductor {args:?}: {text}"))
    }

    fn audit_for(&self, certname: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["certname"] == certname)
            .collect()
    }

    /// The signed identity document of `doc` (document, rsa2048 body).
    fn signed(&self, doc: &Doc) -> (String, String) {
        let text = doc.render();
        let sig = self.aws.sign(&text);
        (text, sig)
    }
}

/// Certname and csr_attributes.yaml as bootcfg writes them from the group's user-data for
/// `instance_id` (`%i` expanded), with the identity proof `rsa2048` added.
fn agent_inputs(user_data: &str, instance_id: &str, rsa2048: &str) -> Result<(String, String)> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(user_data)?;
    let p = &v["puppet"];
    let certname = p["conf"]["main"]["certname"]
        .as_str()
        .context("user-data has no puppet.conf certname")?
        .replace("%i", instance_id);
    let mut attrs = serde_yaml_ng::Mapping::new();
    for key in ["custom_attributes", "extension_requests"] {
        let mut m = serde_yaml_ng::Mapping::new();
        for (k, val) in p["csr_attributes"][key].as_mapping().into_iter().flatten() {
            let val = val.as_str().context("csr attribute value")?;
            m.insert(k.clone(), val.replace("%i", instance_id).into());
        }
        if key == "custom_attributes" {
            let compact: String = rsa2048.split_whitespace().collect();
            m.insert(INSTANCE_IDENTITY_OID.into(), compact.into());
        }
        attrs.insert(key.into(), serde_yaml_ng::Value::Mapping(m));
    }
    Ok((certname, serde_yaml_ng::to_string(&attrs)?))
}

/// A real agent submitting a CSR with these attributes; the CA state afterwards, and how many
/// audit lines the certname had before.
fn submit(w: &World, certname: &str, attrs: &str) -> Result<(Option<String>, usize)> {
    let before = w.audit_for(certname).len();
    let agent = Agent::new(&w.server, certname, Some(attrs), "")?;
    let out = agent.submit_request()?;
    let state = w.server.state(certname)?;
    if state.as_deref() != Some("signed") {
        eprintln!(
            "[groups] {certname}: {state:?}; agent said:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((state, before))
}

/// An attack: it must stay pending, unsigned, with a rejection of `check` whose reason holds `why`.
fn refused(
    w: &World,
    name: &str,
    certname: &str,
    (state, before): (Option<String>, usize),
    check: &str,
    why: &str,
) -> Result<()> {
    ensure!(
        state.as_deref() == Some("requested") && !w.server.has_cert(certname)?,
        "attack `{name}`: {certname} must stay pending and unsigned, the CA says {state:?}"
    );
    let lines = w.audit_for(certname).split_off(before);
    ensure!(
        !lines.iter().any(|l| l["decision"] == "approved"),
        "attack `{name}`: approved: {lines:?}"
    );
    let last = lines
        .last()
        .with_context(|| format!("attack `{name}`: no audit line for {certname}"))?;
    ensure!(
        last["decision"] == "rejected"
            && last["check"] == check
            && last["reason"].as_str().is_some_and(|r| r.contains(why)),
        "attack `{name}`: expected a `{check}` rejection containing {why:?}, the audit says {last}"
    );
    eprintln!(
        "[groups] attack {name}: refused by `{check}`: {}",
        last["reason"]
    );
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[test]
fn auto_scaling_group_members_enroll_exactly_once_and_attacks_stay_unsigned() {
    if let Err(e) = scenario_groups() {
        panic!("group enrollment scenario failed: {e:#}");
    }
}

fn scenario_groups() -> Result<()> {
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("[groups {:>6.1}s] {what}", t0.elapsed().as_secs_f64());
    rootfs::require_root();
    rootfs::snapshot("base");
    let (bootcfg, conductor, signer) = (
        bins::bin("bootcfg")?,
        bins::bin("conductor")?,
        bins::bin("signer")?,
    );
    let tmp = rootfs::test_home().join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let work_dir = tempfile::Builder::new()
        .prefix("groups-")
        .tempdir_in(&tmp)?;
    let work = work_dir.path().to_path_buf();

    // The member root (puppet-agent preinstalled) is built while the servers start.
    let template_dir = work.join("agent-template");
    let builder = {
        let dir = template_dir.clone();
        std::thread::spawn(move || scenario::build_agent_template(&dir, scenario::Debian::D12))
    };
    step("start moto and puppetserver");
    let moto = Moto::start()?;
    moto.create_bucket(BUCKET)?;
    let aws = TestAws::generate(REGION);
    let bundle = work.join("aws-test-rsa2048.pem");
    write(&bundle, &aws.bundle_pem(), 0o644)?;
    let signer_yaml = work.join("signer.yaml");
    let audit = work.join("audit.jsonl");
    let server = scenario::start_autosign_server(
        &work.join("autosign"),
        &signer,
        &signer_yaml,
        &moto,
        scenario::Debian::D12,
    )?;
    write(
        &signer_yaml,
        &format!(
            "registry: s3://{BUCKET}/reg\nca:\n  method: api\n  server_url: {}\n  client_cert: {}\n  client_key: {}\n  ca_bundle: {}\ndeadlines:\n  hook: 15s\n  registry: 5s\n  ca: 20s\npolicy:\n  identity:\n    accounts: [\"{MOTO_ACCOUNT}\", \"{OTHER_ACCOUNT}\"]\n    certificates: {}\n  groups:\n    enabled: true\n    asg_membership: true\naudit_log: {}\nlock_file: {}\n",
            server.url,
            server.admin_cert.display(),
            server.admin_key.display(),
            server.ca_bundle.display(),
            bundle.display(),
            audit.display(),
            work.join("signer.lock").display()
        ),
        0o600,
    )?;
    write(
        &server
            .root
            .join("code/environments/production/manifests/site.pp"),
        "node default {\n  file { '/etc/bootcfg-group.txt':\n    ensure  => file,\n    content => \"member ${trusted['certname']} role ${trusted['extensions']['pp_role']}\\n\",\n  }\n}\n",
        0o644,
    )?;
    let conductor_yaml = work.join("conductor.yaml");
    write(
        &conductor_yaml,
        &format!(
            r#"registry: s3://{BUCKET}/reg
launch:
  image: {AMI}
puppet:
  server: localhost
  port: {port}
  ca_cert_file: {ca}
  extensions:
    pp_role: web
user_data_template: |
  #cloud-config
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
            port = server.port,
            ca = server.ca_bundle.display()
        ),
        0o644,
    )?;
    let w = World {
        moto,
        server,
        work: work.clone(),
        conductor,
        conductor_yaml,
        signer,
        signer_yaml,
        audit,
        aws,
    };
    let timings_start = t0.elapsed();

    step("conductor group create / user-data; launch template; Auto Scaling group of 5");
    let created = w.conductor_json(&[
        "group",
        "create",
        GROUP,
        "--asg",
        ASG,
        "--max-members",
        "8",
        "--ttl",
        "1d",
    ])?;
    ensure!(
        created["account_id"] == MOTO_ACCOUNT
            && created["region"] == REGION
            && created["state"] == "active",
        "group create: {created}"
    );
    ensure!(
        created["image_ids"][0] == AMI,
        "the image defaults to launch.image: {created}"
    );
    let user_data = w.conductor(&["group", "user-data", GROUP])?;
    ensure!(
        user_data.contains("certname: web-%i")
            && user_data.contains(ENROLLMENT_GROUP_OID)
            && user_data.contains("instance_identity: true")
            && !user_data.contains("1.2.840.113549.1.9.7"),
        "group user-data: {user_data}"
    );
    // A second group, revoked, for the revoked-group attack.
    w.conductor(&[
        "group",
        "create",
        "old",
        "--asg",
        "old-asg",
        "--max-members",
        "5",
    ])?;
    let revoked = w.conductor_json(&["group", "revoke", "old"])?;
    ensure!(revoked["result"] == "revoked", "{revoked}");
    let asg = AutoScaling::new(&w.moto);
    let lt = asg.create_launch_template("web-lt", AMI, &user_data)?;
    asg.create_group(ASG, &lt, 5)?;
    let first = asg.instances(ASG)?;
    ensure!(first.len() == 5, "the ASG has {} instances", first.len());
    for i in &first {
        ensure!(
            i.image_id == AMI && i.owner_id == MOTO_ACCOUNT,
            "ASG instance from the launch template: {i:?}"
        );
    }

    step("member 1: bootcfg run in a Debian root (user-data from EC2, its own signed document)");
    let template = builder
        .join()
        .map_err(|_| anyhow::anyhow!("the root builder panicked"))??;
    step("member root ready");
    let m1 = &first[0];
    let ec2_user_data = asg.user_data(&m1.instance_id)?;
    ensure!(
        ec2_user_data == user_data.as_bytes(),
        "EC2 must hold the launch template's user-data for {}",
        m1.instance_id
    );
    let root = work.join("root-member-1");
    scenario::copy_tree(&template, &root)?;
    let imds = FakeImds::start(Some(&ec2_user_data));
    imds.set_instance_id(&m1.instance_id);
    imds.set_local_hostname("ip-10-0-1-11.ec2.internal");
    imds.set_region(REGION);
    let (doc, sig) = w.signed(&Doc::new(&m1.instance_id, AMI, REGION));
    imds.set_identity(&doc, &sig);
    let t_boot = Instant::now();
    let out = {
        let _heavy = chroot::heavy_lock();
        let argv = [
            bootcfg.display().to_string(),
            "run".into(),
            "--root".into(),
            root.display().to_string(),
            "--imds-url".into(),
            imds.url.clone(),
        ];
        chroot::run(
            chroot::host_in_ns(&root, &["BOOTCFG_LOG=info".to_owned()], &argv),
            Duration::from_secs(600),
        )
    };
    let boot_time = t_boot.elapsed();
    let c1 = format!("{GROUP}-{}", m1.instance_id);
    ensure!(
        out.status.success(),
        "bootcfg run for member 1 failed:\n{}\npuppetserver:\n{}",
        out.report(),
        w.server.log_tail()
    );
    ensure!(
        root.join(format!("var/lib/puppet/ssl/certs/{c1}.pem"))
            .exists(),
        "member 1's root holds no certificate for {c1}"
    );
    let managed = std::fs::read_to_string(root.join("etc/bootcfg-group.txt"))
        .context("member 1 applied no catalog")?;
    ensure!(
        managed == format!("member {c1} role web\n"),
        "the catalog saw {managed:?}: the certificate must carry pp_role=web"
    );
    let _ = std::fs::remove_dir_all(&root);

    step("members 2-5: real agents, concurrently");
    let enroll = |list: &[testkit::autoscaling::Instance]| -> Result<Vec<String>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = list
                .iter()
                .map(|i| {
                    s.spawn(|| -> Result<String> {
                        let (_, sig) = w.signed(&Doc::new(&i.instance_id, &i.image_id, REGION));
                        let (certname, attrs) = agent_inputs(&user_data, &i.instance_id, &sig)?;
                        let (state, _) = submit(&w, &certname, &attrs)?;
                        ensure!(
                            state.as_deref() == Some("signed"),
                            "member {certname} must be signed, the CA says {state:?}"
                        );
                        Ok(certname)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| anyhow::anyhow!("an agent thread panicked"))?
                })
                .collect()
        })
    };
    let mut members = vec![c1.clone()];
    members.extend(enroll(&first[1..])?);

    step("attacks");
    // (1) A second CSR for an enrolled instance: member 2 is decommissioned (cleaned at the CA),
    // and whoever kept its document submits a new CSR under its name.
    let m2 = &first[1];
    let c2 = format!("{GROUP}-{}", m2.instance_id);
    let (code, body) = w.server.admin(
        "PUT",
        "clean",
        Some(&format!("{{\"certnames\":[\"{c2}\"]}}")),
    )?;
    ensure!((200..300).contains(&code), "clean {c2}: {code} {body}");
    let (_, sig) = w.signed(&Doc::new(&m2.instance_id, AMI, REGION));
    let (name, attrs) = agent_inputs(&user_data, &m2.instance_id, &sig)?;
    let state = submit(&w, &name, &attrs)?;
    refused(
        &w,
        "second CSR for an enrolled instance",
        &c2,
        state,
        "consume",
        "already enrolled",
    )?;
    // (2) An instance launched from another image (its genuine document says so).
    let other = "i-0a0000000000000b1";
    let (_, sig) = w.signed(&Doc::new(other, OTHER_AMI, REGION));
    let (name, attrs) = agent_inputs(&user_data, other, &sig)?;
    let state = submit(&w, &name, &attrs)?;
    refused(
        &w,
        "another image",
        &name,
        state,
        "identity",
        "imageId `ami-0fedcba9876543210`",
    )?;
    // (3) A document from another account (one the signer accepts for other purposes).
    let other = "i-0a0000000000000b2";
    let mut d = Doc::new(other, AMI, REGION);
    d.account_id = OTHER_ACCOUNT.into();
    let (_, sig) = w.signed(&d);
    let (name, attrs) = agent_inputs(&user_data, other, &sig)?;
    let state = submit(&w, &name, &attrs)?;
    refused(
        &w,
        "another account",
        &name,
        state,
        "identity",
        "accountId `210987654321`",
    )?;
    // (4) A revoked group: a genuine ASG instance asks to join `old`.
    let i3 = &first[2];
    let (_, sig) = w.signed(&Doc::new(&i3.instance_id, AMI, REGION));
    let old_ud = user_data.replace("web-%i", "old-%i").replace(
        &format!("{ENROLLMENT_GROUP_OID}: web"),
        &format!("{ENROLLMENT_GROUP_OID}: old"),
    );
    let (name, attrs) = agent_inputs(&old_ud, &i3.instance_id, &sig)?;
    ensure!(
        name.starts_with("old-") && attrs.contains(": old"),
        "{name} {attrs}"
    );
    let state = submit(&w, &name, &attrs)?;
    refused(
        &w,
        "revoked group",
        &name,
        state,
        "group",
        "enrollment group `old` was revoked",
    )?;

    // (5) An instance launched from the group's own image, in the account and Region, but
    // outside the Auto Scaling group: its document is genuine; Auto Scaling says no.
    let stray = asg.run_instance(AMI)?;
    let (_, sig) = w.signed(&Doc::new(&stray, AMI, REGION));
    let (name, attrs) = agent_inputs(&user_data, &stray, &sig)?;
    let state = submit(&w, &name, &attrs)?;
    refused(
        &w,
        "instance outside the ASG",
        &name,
        state,
        "group",
        "is in no Auto Scaling group",
    )?;

    step("scale out to 8");
    asg.set_desired(ASG, 8)?;
    let now_in: Vec<_> = asg.instances(ASG)?;
    let old_ids: BTreeSet<&str> = first.iter().map(|i| i.instance_id.as_str()).collect();
    let new: Vec<_> = now_in
        .iter()
        .filter(|i| !old_ids.contains(i.instance_id.as_str()))
        .cloned()
        .collect();
    ensure!(new.len() == 3, "scale-out launched {} instances", new.len());
    // (6) A certname that does not match the document: new instance A's genuine document under
    // new instance B's name (before either enrolled; neither is locked out by it).
    let (_, sig) = w.signed(&Doc::new(&new[0].instance_id, AMI, REGION));
    let (_, attrs) = agent_inputs(&user_data, &new[0].instance_id, &sig)?;
    // The attributes stay instance A's (pp_instance_id, proof); only the certname is B's.
    let wrong = format!("{GROUP}-{}", new[1].instance_id);
    let state = submit(&w, &wrong, &attrs)?;
    refused(
        &w,
        "certname not matching the document",
        &wrong,
        state,
        "identity",
        &format!("is not `web-{}`", new[0].instance_id),
    )?;
    // The pending squatter is evicted by the sweep so that instance B can submit its own.
    let sweep: Value = serde_json::from_str(&w.run(
        &w.signer,
        &[
            "--config",
            &w.signer_yaml.display().to_string(),
            "sweep",
            "--output",
            "json",
        ],
    )?)?;
    ensure!(
        sweep["signed"] == 0,
        "the sweep must sign no attack: {sweep}"
    );
    ensure!(
        w.server.state(&wrong)?.is_none(),
        "the squatting request for {wrong} must be evicted: {sweep}"
    );
    members.extend(enroll(&new)?);

    // (7) A full group: a 9th instance.
    asg.set_desired(ASG, 9)?;
    let ninth: Vec<_> = asg
        .instances(ASG)?
        .into_iter()
        .filter(|i| !members.iter().any(|c| c.ends_with(&i.instance_id)))
        .collect();
    ensure!(ninth.len() == 1, "scale to 9: {ninth:?}");
    let (_, sig) = w.signed(&Doc::new(&ninth[0].instance_id, AMI, REGION));
    let (name, attrs) = agent_inputs(&user_data, &ninth[0].instance_id, &sig)?;
    let state = submit(&w, &name, &attrs)?;
    refused(
        &w,
        "full group",
        &name,
        state,
        "group",
        "is full (8 of 8 members)",
    )?;

    step("evidence: signed exactly once; conductor group show / list; a sweep signs nothing");
    for c in &members {
        let approvals = w
            .audit_for(c)
            .iter()
            .filter(|l| l["decision"] == "approved" || l["decision"] == "signed")
            .count();
        ensure!(approvals == 1, "{c} was approved {approvals} times");
        if *c != c2 {
            ensure!(
                w.server.state(c)?.as_deref() == Some("signed"),
                "{c} is not signed at the CA"
            );
        }
    }
    let show = w.conductor_json(&["group", "show", GROUP])?;
    let list = show["member_list"]
        .as_array()
        .context("group show: no member_list")?;
    let slots: BTreeSet<u64> = list.iter().filter_map(|m| m["slot"].as_u64()).collect();
    let names: BTreeSet<&str> = list.iter().filter_map(|m| m["certname"].as_str()).collect();
    let want: BTreeSet<&str> = members.iter().map(String::as_str).collect();
    ensure!(
        show["members"] == 8 && slots == (0..8).collect() && names == want,
        "group show must list the 8 members in slots 0..8: {show}"
    );
    let listed = w.conductor_json(&["list"])?;
    let in_list: BTreeSet<&str> = listed
        .as_array()
        .context("conductor list is a list")?
        .iter()
        .filter(|e| e["group"] == GROUP)
        .filter_map(|e| e["certname"].as_str())
        .collect();
    ensure!(
        in_list == want,
        "conductor list must show the members: {listed}"
    );
    let text = w.conductor(&["group", "show", GROUP])?;
    ensure!(text.contains("8 of 8") && text.contains(&c1), "{text}");
    let sweep: Value = serde_json::from_str(&w.run(
        &w.signer,
        &[
            "--config",
            &w.signer_yaml.display().to_string(),
            "sweep",
            "--output",
            "json",
        ],
    )?)?;
    ensure!(
        sweep["signed"] == 0,
        "a final sweep must sign nothing: {sweep}"
    );
    eprintln!(
        "[groups] done in {:.1}s (parts started in {:.1}s; bootcfg run {:.1}s); work dir {}",
        t0.elapsed().as_secs_f64(),
        timings_start.as_secs_f64(),
        boot_time.as_secs_f64(),
        w.work.display()
    );
    Ok(())
}
