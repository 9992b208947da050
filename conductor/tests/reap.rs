//! `conductor reap` against a real moto server (EC2, S3, STS): only instances EC2 reports
//! terminated are retired, never a running one, and a failing or slow EC2 leaves everything as
//! it was (through `testkit::faultproxy` in front of moto).

mod common;

use chrono::Utc;
use common::{MOTO_ACCOUNT, conductor};
use schemas::group::{EnrollmentGroup, GROUP_VERSION, MEMBER_VERSION, Member};
use schemas::registration::{IdentityBinding, Registration};
use schemas::registry::{Registry, S3Registry};
use serde_json::Value;
use std::time::{Duration, Instant};
use testkit::faultproxy::{Fault, FaultProxy};
use testkit::moto::{self, Moto};

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}"))
}

/// A fresh bucket and a config for it: (tempdir, config path, bucket).
fn setup(stem: &str) -> (tempfile::TempDir, String, String) {
    let moto = moto::shared();
    let bucket = moto::unique_bucket(stem);
    moto.create_bucket(&bucket).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &format!("s3://{bucket}/fleet"), "");
    let cfg = cfg.to_str().unwrap().to_owned();
    (dir, cfg, bucket)
}

/// `conductor launch --count n`: (certname, instance id) of each.
fn launch(moto: &Moto, cfg: &str, n: u32) -> Vec<(String, String)> {
    let (code, stdout, stderr) = conductor(
        moto,
        &[
            "launch",
            "-c",
            cfg,
            "--count",
            &n.to_string(),
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0, "stderr:\n{stderr}\nstdout:\n{stdout}");
    json(&stdout)["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["certname"].as_str().unwrap().to_owned(),
                r["instance_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn state(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    out.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .unwrap()
        .as_str()
        .to_owned()
}

/// Terminate `id` in moto and wait until EC2 reports it `terminated`.
async fn terminate(ec2: &aws_sdk_ec2::Client, id: &str) {
    ec2.terminate_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = state(ec2, id).await;
        if s == "terminated" {
            return;
        }
        assert!(Instant::now() < deadline, "{id} is still {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The item for `certname` in a JSON report.
fn item<'a>(report: &'a Value, certname: &str) -> &'a Value {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["certname"] == certname)
        .unwrap_or_else(|| panic!("{certname} is not in the report:\n{report:#}"))
}

fn has_item(report: &Value, certname: &str) -> bool {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["certname"] == certname)
}

async fn retired(reg: &S3Registry, certname: &str) -> bool {
    reg.get_retirement(certname).await.unwrap().is_some()
}

#[test]
fn help_has_an_example_and_is_listed() {
    let moto = moto::shared();
    let (code, stdout, _) = conductor(moto, &["reap", "--help"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("conductor reap -c conductor.yaml --dry-run"),
        "{stdout}"
    );
    assert!(stdout.contains("--retire-missing") && stdout.contains("--dry-run"));
    for hidden in ["--batch-size", "--max-attempts", "--attempt-timeout-ms"] {
        assert!(!stdout.contains(hidden), "{hidden} is hidden:\n{stdout}");
    }
    assert!(
        stdout.lines().all(|l| l.chars().count() <= 100),
        "help fits 100 columns:\n{stdout}"
    );
    let (code, stdout, _) = conductor(moto, &["--help"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("conductor reap -c conductor.yaml"),
        "{stdout}"
    );
}

#[tokio::test]
async fn retires_exactly_the_terminated_instance() {
    let moto = moto::shared();
    let (_dir, cfg, bucket) = setup("reap");
    let launched = launch(moto, &cfg, 3);
    // A registration without an instance (made for another launcher).
    let (code, stdout, stderr) = conductor(moto, &["register", "-c", &cfg, "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let unlaunched = json(&stdout)[0]["certname"]
        .as_str()
        .unwrap_or_else(|| panic!("register --output json:\n{stdout}"))
        .to_owned();
    let ec2 = common::ec2(moto).await;
    let reg = common::s3_registry(moto, &bucket, "fleet").await;
    let (dead_cert, dead_id) = launched[0].clone();
    terminate(&ec2, &dead_id).await;

    // --dry-run: reports, writes nothing.
    let (code, stdout, stderr) =
        conductor(moto, &["reap", "-c", &cfg, "--dry-run", "--output", "json"]);
    assert_eq!(code, 0, "stderr:\n{stderr}\nstdout:\n{stdout}");
    let report = json(&stdout);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["would_retire"], 1, "{report:#}");
    assert_eq!(report["retired"], 0);
    assert_eq!(item(&report, &dead_cert)["action"], "would-retire");
    assert!(
        reg.list_retired().await.unwrap().is_empty(),
        "--dry-run writes nothing"
    );

    // The real run.
    let (code, stdout, stderr) = conductor(moto, &["reap", "-c", &cfg, "--output", "json"]);
    assert_eq!(code, 0, "stderr:\n{stderr}\nstdout:\n{stdout}");
    let report = json(&stdout);
    assert_eq!(report["retired"], 1, "{report:#}");
    assert_eq!(report["kept"], 2, "{report:#}");
    assert_eq!(report["missing"], 0, "{report:#}");
    assert_eq!(report["failed"], 0, "{report:#}");
    let dead = item(&report, &dead_cert);
    assert_eq!(dead["action"], "retired");
    assert_eq!(dead["ec2_state"], "terminated");
    assert_eq!(dead["instance_id"], dead_id.as_str());
    assert_eq!(dead["region"], moto::REGION);
    assert_eq!(dead["group"], Value::Null);
    assert_eq!(dead["reason"], format!("EC2 reports {dead_id} terminated"));
    for (cert, id) in &launched[1..] {
        let live = item(&report, cert);
        assert_eq!(live["action"], "keep", "{live:#}");
        assert!(
            ["pending", "running"].contains(&live["ec2_state"].as_str().unwrap()),
            "{live:#}"
        );
        assert_eq!(live["instance_id"], id.as_str());
        assert!(
            !retired(&reg, cert).await,
            "a running instance is never reaped"
        );
    }
    assert_eq!(item(&report, &unlaunched)["action"], "no-instance");
    assert_eq!(item(&report, &unlaunched)["instance_id"], Value::Null);
    assert!(!retired(&reg, &unlaunched).await);
    assert_eq!(report["no_instance"], 1);
    let (record, _) = reg.get_retirement(&dead_cert).await.unwrap().unwrap();
    assert_eq!(record.certname, dead_cert);
    assert_eq!(record.instance_id, dead_id);
    assert_eq!(record.group, None);
    assert_eq!(record.reason, format!("EC2 reports {dead_id} terminated"));
    assert!(record.retired_by.contains('@'), "{}", record.retired_by);
    assert_eq!(record.cleaned, None);
    assert_eq!(reg.list_retired().await.unwrap(), [dead_cert.as_str()]);
    // One audit line on stderr.
    let audit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("retired") && l.contains(&dead_cert))
        .collect();
    assert_eq!(audit.len(), 1, "one audit line:\n{stderr}");
    assert!(audit[0].contains(&dead_id), "{}", audit[0]);

    // Again: nothing new; the retired certname is no longer a candidate.
    let (code, stdout, stderr) = conductor(moto, &["reap", "-c", &cfg, "--output", "json"]);
    assert_eq!(code, 0, "stderr:\n{stderr}\nstdout:\n{stdout}");
    let report = json(&stdout);
    assert_eq!(report["retired"], 0, "{report:#}");
    assert_eq!(report["kept"], 2, "{report:#}");
    assert!(!has_item(&report, &dead_cert), "{report:#}");
    assert_eq!(reg.list_retired().await.unwrap(), [dead_cert.as_str()]);
    assert_eq!(
        reg.get_retirement(&dead_cert).await.unwrap().unwrap().0,
        record
    );

    // The text table.
    let (code, stdout, stderr) = conductor(moto, &["reap", "-c", &cfg]);
    assert_eq!(code, 0, "{stderr}");
    let header = stdout.lines().next().unwrap();
    for col in ["CERTNAME", "INSTANCE", "GROUP", "EC2 STATE", "ACTION"] {
        assert!(header.contains(col), "{stdout}");
    }
    assert!(
        stdout.contains(&launched[1].0) && stdout.contains("keep"),
        "{stdout}"
    );
    assert!(stderr.contains("0 retired"), "{stderr}");
}

fn group(name: &str) -> EnrollmentGroup {
    let now = Utc::now();
    EnrollmentGroup {
        version: GROUP_VERSION,
        name: name.into(),
        account_id: MOTO_ACCOUNT.into(),
        region: moto::REGION.into(),
        image_ids: vec![moto::AMI.into()],
        launch_template_id: None,
        asg_name: Some("web-asg".into()),
        extensions: [("pp_role".to_owned(), "web".to_owned())].into(),
        max_members: 5,
        created_at: now,
        expires_at: now + chrono::Duration::days(1),
        created_by: "suite@test".into(),
        revoked: None,
    }
}

fn member(group: &str, slot: u32, iid: &str) -> Member {
    Member {
        version: MEMBER_VERSION,
        group: group.into(),
        slot,
        certname: schemas::group::member_certname(group, iid),
        instance_id: iid.into(),
        image_id: moto::AMI.into(),
        pending_time: Utc::now(),
        csr_sha256: "ab".repeat(32),
        enrolled_at: Utc::now(),
        by: "suite@test".into(),
    }
}

async fn run_instance(ec2: &aws_sdk_ec2::Client) -> String {
    let out = ec2
        .run_instances()
        .image_id(moto::AMI)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    out.instances()[0].instance_id().unwrap().to_owned()
}

#[tokio::test]
async fn retires_a_terminated_group_member() {
    let moto = moto::shared();
    let (_dir, cfg, bucket) = setup("reap-group");
    let ec2 = common::ec2(moto).await;
    let reg = common::s3_registry(moto, &bucket, "fleet").await;
    reg.create_group(&group("web")).await.unwrap();
    let dead = run_instance(&ec2).await;
    let live = run_instance(&ec2).await;
    assert!(reg.take_slot(&member("web", 0, &dead)).await.unwrap());
    assert!(reg.take_slot(&member("web", 1, &live)).await.unwrap());
    terminate(&ec2, &dead).await;
    let dead_cert = format!("web-{dead}");
    let live_cert = format!("web-{live}");

    let (code, stdout, stderr) = conductor(moto, &["reap", "-c", &cfg, "--output", "json"]);
    assert_eq!(code, 0, "stderr:\n{stderr}\nstdout:\n{stdout}");
    let report = json(&stdout);
    assert_eq!(report["retired"], 1, "{report:#}");
    assert_eq!(report["kept"], 1, "{report:#}");
    let d = item(&report, &dead_cert);
    assert_eq!(d["action"], "retired");
    assert_eq!(d["group"], "web");
    assert_eq!(d["ec2_state"], "terminated");
    assert_eq!(item(&report, &live_cert)["action"], "keep");
    let (record, _) = reg.get_retirement(&dead_cert).await.unwrap().unwrap();
    assert_eq!(record.group.as_deref(), Some("web"));
    assert_eq!(record.instance_id, dead);
    assert!(
        !retired(&reg, &live_cert).await,
        "a running member is never reaped"
    );
}

/// A registration written directly, bound to moto's account, for an instance EC2 never had.
async fn ghost(reg: &S3Registry, age: chrono::Duration, account: &str) -> (String, String) {
    let certname = uuid::Uuid::new_v4().to_string();
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    let iid = format!("i-0{}", &hex::encode(bytes)[..16]);
    let now = Utc::now() - age;
    let mut r = Registration::new(
        &certname,
        &"cd".repeat(32),
        "suite@test",
        now,
        chrono::Duration::days(30),
    );
    r.instance_id = Some(iid.clone());
    r.image_id = Some(moto::AMI.into());
    r.identity = Some(IdentityBinding {
        account_id: account.into(),
        region: moto::REGION.into(),
    });
    reg.create(&r).await.unwrap();
    (certname, iid)
}

/// A `conductor register` registration names no instance until its CSR proves one (recorded at
/// consumption): reap asks EC2 about that instance, and retires the certname once it is
/// terminated; a running proven instance is kept.
#[tokio::test]
async fn a_registered_certname_is_reaped_by_the_instance_its_csr_proved() {
    use schemas::registration::Consumption;
    let moto = moto::shared();
    let (_dir, cfg, bucket) = setup("reap-proven");
    let reg = common::s3_registry(moto, &bucket, "fleet").await;
    let ec2 = common::ec2(moto).await;
    let mut names = Vec::new();
    for _ in 0..2 {
        let iid = run_instance(&ec2).await;
        let (certname, _) = ghost(&reg, chrono::Duration::minutes(5), MOTO_ACCOUNT).await;
        let (mut r, v) = reg.get(&certname).await.unwrap().unwrap();
        r.instance_id = None;
        r.consumed = Some(Consumption {
            at: Utc::now(),
            by: "autosign@ca".into(),
            csr_sha256: "ab".repeat(32),
            instance_id: Some(iid.clone()),
        });
        reg.update(&r, &v).await.unwrap();
        names.push((certname, iid));
    }
    terminate(&ec2, &names[0].1).await;
    let (code, stdout, stderr) = conductor(moto, &["reap", "-c", &cfg, "--output", "json"]);
    assert_eq!(code, 0, "stderr:\n{stderr}\nstdout:\n{stdout}");
    let report = json(&stdout);
    assert_eq!(
        item(&report, &names[0].0)["action"],
        "retired",
        "{report:#}"
    );
    assert_eq!(item(&report, &names[1].0)["action"], "keep", "{report:#}");
    assert_eq!(reg.list_retired().await.unwrap(), [names[0].0.as_str()]);
    assert_eq!(
        reg.get_retirement(&names[0].0)
            .await
            .unwrap()
            .unwrap()
            .0
            .instance_id,
        names[0].1
    );
}

#[tokio::test]
async fn missing_instances_are_kept_unless_retire_missing_and_old_and_ours() {
    let moto = moto::shared();
    let (_dir, cfg, bucket) = setup("reap-missing");
    let reg = common::s3_registry(moto, &bucket, "fleet").await;
    let (old, old_id) = ghost(&reg, chrono::Duration::hours(3), MOTO_ACCOUNT).await;
    let (young, _) = ghost(&reg, chrono::Duration::minutes(30), MOTO_ACCOUNT).await;
    let (foreign, _) = ghost(&reg, chrono::Duration::hours(3), "210987654321").await;

    let (code, stdout, stderr) = conductor(moto, &["reap", "-c", &cfg, "--output", "json"]);
    assert_eq!(code, 0, "stderr:\n{stderr}\nstdout:\n{stdout}");
    let report = json(&stdout);
    assert_eq!(report["missing"], 3, "{report:#}");
    for c in [&old, &young, &foreign] {
        assert_eq!(item(&report, c)["action"], "missing");
        assert_eq!(item(&report, c)["ec2_state"], Value::Null);
    }
    assert!(reg.list_retired().await.unwrap().is_empty());

    let (code, stdout, stderr) = conductor(
        moto,
        &["reap", "-c", &cfg, "--retire-missing", "--output", "json"],
    );
    assert_eq!(code, 0, "stderr:\n{stderr}\nstdout:\n{stdout}");
    let report = json(&stdout);
    assert_eq!(report["retired"], 1, "{report:#}");
    assert_eq!(item(&report, &old)["action"], "retired");
    let y = item(&report, &young);
    assert_eq!(y["action"], "missing");
    assert!(
        y["reason"]
            .as_str()
            .unwrap()
            .contains("younger than 2 hours"),
        "{y:#}"
    );
    let f = item(&report, &foreign);
    assert_eq!(f["action"], "missing");
    assert!(
        f["reason"].as_str().unwrap().contains("210987654321"),
        "{f:#}"
    );
    assert_eq!(reg.list_retired().await.unwrap(), [old.as_str()]);
    let (record, _) = reg.get_retirement(&old).await.unwrap().unwrap();
    assert_eq!(record.instance_id, old_id);
}

/// Launched instances, the one with the smallest instance id terminated (so with one id per
/// `DescribeInstances` call, its state is the first EC2 answers).
struct FaultSetup {
    _dir: tempfile::TempDir,
    cfg: String,
    reg: S3Registry,
    /// (certname, instance id), terminated.
    dead: (String, String),
    /// (certname, instance id) of the first live one.
    live: (String, String),
    /// Every launched one, by instance id.
    all: Vec<(String, String)>,
}

async fn fault_setup(stem: &str, n: u32) -> FaultSetup {
    let moto = moto::shared();
    let (dir, cfg, bucket) = setup(stem);
    let mut launched = launch(moto, &cfg, n);
    launched.sort_by(|a, b| a.1.cmp(&b.1));
    let ec2 = common::ec2(moto).await;
    terminate(&ec2, &launched[0].1).await;
    FaultSetup {
        _dir: dir,
        cfg,
        reg: common::s3_registry(moto, &bucket, "fleet").await,
        dead: launched[0].clone(),
        live: launched[1].clone(),
        all: launched,
    }
}

/// The conductor with every AWS call going through `proxy`.
fn conductor_via(proxy: &FaultProxy, args: &[&str]) -> (i32, String, String, Duration) {
    let started = Instant::now();
    let (code, stdout, stderr) = common::conductor_with_env(
        moto::shared(),
        &[("AWS_ENDPOINT_URL", proxy.endpoint())],
        args,
    );
    (code, stdout, stderr, started.elapsed())
}

/// Neither the live nor the terminated instance is retired: all or nothing.
async fn nothing_retired(s: &FaultSetup) {
    assert!(
        !retired(&s.reg, &s.live.0).await,
        "a running instance is never reaped"
    );
    assert!(
        !retired(&s.reg, &s.dead.0).await,
        "nothing is retired when an EC2 call failed"
    );
    for (cert, _) in &s.all {
        assert!(!retired(&s.reg, cert).await, "{cert} is not retired");
    }
    assert!(s.reg.list_retired().await.unwrap().is_empty());
}

#[tokio::test]
async fn throttled_twice_then_answered_retires_the_terminated_one() {
    let s = fault_setup("reap-throttle", 2).await;
    let proxy = FaultProxy::start(moto::shared().endpoint(), |n| {
        if n <= 2 { Fault::Throttle } else { Fault::Pass }
    })
    .unwrap();
    let (code, stdout, stderr, _) =
        conductor_via(&proxy, &["reap", "-c", &s.cfg, "--output", "json"]);
    assert_eq!(code, 0, "stderr:\n{stderr}\nstdout:\n{stdout}");
    assert_eq!(proxy.matched(), 3, "two throttled, one answered");
    let report = json(&stdout);
    assert_eq!(report["retired"], 1, "{report:#}");
    assert_eq!(item(&report, &s.dead.0)["action"], "retired");
    assert_eq!(item(&report, &s.live.0)["action"], "keep");
    assert!(retired(&s.reg, &s.dead.0).await);
    assert!(
        !retired(&s.reg, &s.live.0).await,
        "a running instance is never reaped"
    );
}

#[tokio::test]
async fn a_later_call_failing_for_good_retires_nothing() {
    let s = fault_setup("reap-fail", 3).await;
    // One id per call, so three calls: the first (the terminated instance) is answered, the
    // second and every retry of it fail.
    let proxy = FaultProxy::start(moto::shared().endpoint(), |n| {
        if n >= 2 { Fault::Fail500 } else { Fault::Pass }
    })
    .unwrap();
    let (code, stdout, stderr, _) = conductor_via(
        &proxy,
        &[
            "reap",
            "-c",
            &s.cfg,
            "--output",
            "json",
            "--batch-size",
            "1",
            "--max-attempts",
            "3",
        ],
    );
    assert_eq!(code, 1, "stderr:\n{stderr}\nstdout:\n{stdout}");
    assert_eq!(
        proxy.matched(),
        4,
        "the first call answered, the second tried 3 times, no third"
    );
    assert!(stderr.contains("nothing was retired"), "{stderr}");
    assert!(stderr.contains("DescribeInstances call 2 of 3"), "{stderr}");
    assert!(stdout.trim().is_empty(), "no report on failure:\n{stdout}");
    nothing_retired(&s).await;
}

#[tokio::test]
async fn a_slow_answer_beyond_the_timeout_retires_nothing() {
    let s = fault_setup("reap-slow", 2).await;
    let proxy = FaultProxy::start(moto::shared().endpoint(), |_| {
        Fault::Delay(Duration::from_secs(6))
    })
    .unwrap();
    let (code, stdout, stderr, took) = conductor_via(
        &proxy,
        &[
            "reap",
            "-c",
            &s.cfg,
            "--output",
            "json",
            "--attempt-timeout-ms",
            "1000",
            "--max-attempts",
            "2",
        ],
    );
    assert_eq!(code, 1, "stderr:\n{stderr}\nstdout:\n{stdout}");
    assert!(stderr.contains("nothing was retired"), "{stderr}");
    assert!(stderr.contains("in time"), "{stderr}");
    assert!(took < Duration::from_secs(20), "gave up in time: {took:?}");
    nothing_retired(&s).await;
    // The delayed requests may still reach moto after the conductor gave up; nothing changes.
    std::thread::sleep(Duration::from_secs(1));
    nothing_retired(&s).await;
}

#[tokio::test]
async fn a_failed_registry_write_is_reported_and_the_rest_go_on() {
    let s = fault_setup("reap-partial", 3).await;
    let ec2 = common::ec2(moto::shared()).await;
    let (dead2, dead2_id) = s.all[2].clone();
    terminate(&ec2, &dead2_id).await;
    let refused = format!("/retired/{}.json", s.dead.0);
    let proxy = FaultProxy::start_for(
        moto::shared().endpoint(),
        move |line, _| line.starts_with("PUT ") && line.contains(&refused),
        |_| Fault::Forbidden,
    )
    .unwrap();
    let (code, stdout, stderr, _) =
        conductor_via(&proxy, &["reap", "-c", &s.cfg, "--output", "json"]);
    assert_eq!(code, 3, "stderr:\n{stderr}\nstdout:\n{stdout}");
    assert_eq!(proxy.matched(), 1, "one write refused");
    let report = json(&stdout);
    assert_eq!(
        (&report["retired"], &report["failed"], &report["kept"]),
        (&Value::from(1), &Value::from(1), &Value::from(1)),
        "{report:#}"
    );
    let failed = item(&report, &s.dead.0);
    assert_eq!(failed["action"], "failed");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("writing the retirement failed"),
        "{failed:#}"
    );
    assert_eq!(item(&report, &dead2)["action"], "retired");
    assert_eq!(item(&report, &s.live.0)["action"], "keep");
    assert!(!retired(&s.reg, &s.dead.0).await);
    assert!(retired(&s.reg, &dead2).await);
    assert!(
        !retired(&s.reg, &s.live.0).await,
        "a running instance is never reaped"
    );
}
