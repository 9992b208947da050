//! The conductor binary against a real moto server (S3 + EC2), configured only through the
//! standard AWS environment variables.

mod common;

use base64::Engine;
use common::{MOTO_ACCOUNT, conductor};
use schemas::registration::{IdentityBinding, REGISTRATION_VERSION};
use schemas::registry::Registry;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use testkit::moto::{self, Moto};

const CHALLENGE: &str = "1.2.840.113549.1.9.7";

/// The user-data EC2 holds for an instance, decoded (base64, then gzip if it is gzipped).
async fn user_data(ec2: &aws_sdk_ec2::Client, instance_id: &str) -> Vec<u8> {
    let out = ec2
        .describe_instance_attribute()
        .instance_id(instance_id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let b64 = out
        .user_data()
        .and_then(|v| v.value())
        .expect("instance has user-data");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut text).unwrap();
        text
    } else {
        raw
    }
}

/// (certname, secret, pp_role) as the agent would read them from the user-data.
fn identity(user_data: &[u8]) -> (String, String, String) {
    let parsed =
        schemas::userdata::parse("instance user-data", user_data).unwrap_or_else(|d| panic!("{d}"));
    let p = parsed.config.puppet.expect("puppet section");
    let certname = p
        .conf
        .iter()
        .flat_map(|(_, kv)| kv.iter())
        .find(|(k, _)| k == "certname")
        .map(|(_, v)| v.clone())
        .expect("certname");
    let csr = p.csr_attributes.expect("csr_attributes");
    assert_eq!(
        csr.extension_requests
            .get("pp_instance_id")
            .map(String::as_str),
        Some("%i")
    );
    (
        certname,
        csr.custom_attributes[CHALLENGE].clone(),
        csr.extension_requests["pp_role"].clone(),
    )
}

/// Whether the agent would put the instance identity document into its CSR.
fn asks_for_identity_proof(user_data: &[u8]) -> bool {
    let parsed =
        schemas::userdata::parse("instance user-data", user_data).unwrap_or_else(|d| panic!("{d}"));
    parsed
        .config
        .puppet
        .expect("puppet section")
        .instance_identity
}

/// The binding every registration against moto gets with the proof on.
fn moto_binding() -> IdentityBinding {
    IdentityBinding {
        account_id: MOTO_ACCOUNT.into(),
        region: moto::REGION.into(),
    }
}

/// Help text with its line wrapping undone.
fn unwrapped(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}"))
}

async fn instances(ec2: &aws_sdk_ec2::Client) -> Vec<aws_sdk_ec2::types::Instance> {
    let mut pages = ec2.describe_instances().into_paginator().send();
    let mut all = Vec::new();
    while let Some(page) = pages.next().await {
        for r in page.unwrap().reservations() {
            all.extend(r.instances().iter().cloned());
        }
    }
    all
}

#[tokio::test]
async fn launch_20_distinct_instances_with_matching_registrations() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("launch20");
    moto.create_bucket(&bucket).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &format!("s3://{bucket}/fleet"), "");
    let (code, stdout, stderr) = conductor(
        moto,
        &[
            "launch",
            "-c",
            cfg.to_str().unwrap(),
            "--count",
            "20",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0, "stderr:\n{stderr}\nstdout:\n{stdout}");
    let out = json(&stdout);
    assert_eq!(out["launched"], 20);
    assert_eq!(out["failed"], 0);
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 20);

    let ec2 = common::ec2(moto).await;
    let reg = common::s3_registry(moto, &bucket, "fleet").await;
    let (mut certnames, mut secrets) = (BTreeSet::new(), BTreeSet::new());
    for r in results {
        let id = r["instance_id"].as_str().expect("instance id");
        let (certname, secret, role) = identity(&user_data(&ec2, id).await);
        assert_eq!(certname, r["certname"].as_str().unwrap());
        assert_eq!(role, "web");
        assert!(
            secret.len() >= 32 && secret.bytes().all(|b| b.is_ascii_hexdigit()),
            "secret is ≥128 bits of hex"
        );
        assert!(
            !stdout.contains(&secret) && !stderr.contains(&secret),
            "the secret never reaches the output"
        );
        let (record, _) = reg
            .get(&certname)
            .await
            .unwrap()
            .expect("registration exists");
        assert!(
            record.secret_matches(secret.as_bytes()),
            "registration hash matches the instance's secret"
        );
        assert!(
            !record
                .to_json()
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "only the hash is stored"
        );
        assert_eq!(record.instance_id.as_deref(), Some(id));
        assert_eq!(record.image_id.as_deref(), Some(moto::AMI));
        assert_eq!(
            record.allowed_extensions.get("pp_role").map(String::as_str),
            Some("web")
        );
        // Bound to the STS account, the region, the image and the instance: the proof is required.
        assert_eq!(record.version, REGISTRATION_VERSION);
        assert_eq!(record.identity, Some(moto_binding()));
        assert!(asks_for_identity_proof(&user_data(&ec2, id).await));
        certnames.insert(certname);
        secrets.insert(secret);
    }
    assert_eq!(certnames.len(), 20, "certnames are distinct");
    assert_eq!(secrets.len(), 20, "secrets are distinct");
    assert_eq!(
        reg.list()
            .await
            .unwrap()
            .into_iter()
            .collect::<BTreeSet<_>>(),
        certnames,
        "20 registrations, no more"
    );

    // Each instance is tagged with its certname (and Name, and the configured tags).
    let ours: Vec<_> = instances(&ec2)
        .await
        .into_iter()
        .filter(|i| {
            i.tags()
                .iter()
                .any(|t| t.key() == Some("certname") && certnames.contains(t.value().unwrap_or("")))
        })
        .collect();
    assert_eq!(ours.len(), 20);
    for i in &ours {
        let tags: BTreeMap<_, _> = i
            .tags()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap()))
            .collect();
        assert_eq!(tags["Name"], tags["certname"]);
        assert_eq!(tags["suite"], "conductor");
        assert_eq!(i.image_id(), Some(moto::AMI));
    }
}

#[tokio::test]
async fn invalid_ami_leaves_no_registration() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("badami");
    moto.create_bucket(&bucket).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &format!("s3://{bucket}"), "");
    let (code, stdout, stderr) = conductor(
        moto,
        &[
            "launch",
            "-c",
            cfg.to_str().unwrap(),
            "--image",
            "ami-12345678",
            "--count",
            "3",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 1, "all launches failed: exit 1\n{stderr}\n{stdout}");
    let out = json(&stdout);
    assert_eq!(out["failed"], 3);
    let errors: Vec<&str> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"].as_str().unwrap())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("InvalidAMIID") && e.contains("check the AMI id")),
        "{errors:?}"
    );
    assert!(
        out["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["instance_id"].is_null())
    );
    let reg = common::s3_registry(moto, &bucket, "").await;
    assert!(
        reg.list().await.unwrap().is_empty(),
        "no registration left behind"
    );
}

#[tokio::test]
async fn invalid_instance_type_is_explained_and_leaves_nothing() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("badtype");
    moto.create_bucket(&bucket).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &format!("s3://{bucket}"), "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("t3.micro", "t3.enormous");
    std::fs::write(&cfg, text).unwrap();
    let (code, stdout, stderr) = conductor(moto, &["launch", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}\n{stdout}");
    assert!(stderr.contains("instance_type"), "{stderr}");
    assert!(
        common::s3_registry(moto, &bucket, "")
            .await
            .list()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn missing_bucket_launches_no_instance() {
    let moto = Moto::start().unwrap_or_else(|e| panic!("{e:#}")); // private: count every instance
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), "s3://no-such-bucket-anywhere/x", "");
    let (code, stdout, stderr) = conductor(
        &moto,
        &["launch", "-c", cfg.to_str().unwrap(), "--count", "5"],
    );
    assert_eq!(code, 1, "{stderr}\n{stdout}");
    assert!(
        stderr.contains("no-such-bucket-anywhere") && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(
        instances(&common::ec2(&moto).await).await.is_empty(),
        "no instance was launched"
    );
}

#[tokio::test]
async fn missing_credentials_are_explained() {
    let moto = moto::shared();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), "s3://any-bucket", "");
    let out = moto
        .command(env!("CARGO_BIN_EXE_conductor"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("HOME", dir.path()) // no ~/.aws
        .args(["launch", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no AWS credentials"), "{stderr}");
    // A file registry needs none, but the account id for the identity binding does.
    let regdir = dir.path().join("registry");
    std::fs::create_dir(&regdir).unwrap();
    let cfg = common::write_config(dir.path(), &format!("file://{}", regdir.display()), "");
    let out = moto
        .command(env!("CARGO_BIN_EXE_conductor"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("HOME", dir.path())
        .args(["register", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no AWS credentials"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&regdir).unwrap().count(),
        0,
        "nothing registered"
    );
}

#[tokio::test]
async fn dry_run_redacts_the_secret_and_changes_nothing() {
    let moto = Moto::start().unwrap_or_else(|e| panic!("{e:#}"));
    moto.create_bucket("dry").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), "s3://dry", "");
    let (code, stdout, stderr) = conductor(
        &moto,
        &[
            "launch",
            "-c",
            cfg.to_str().unwrap(),
            "--dry-run",
            "--count",
            "2",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let out = json(&stdout);
    let launches = out["launches"].as_array().unwrap();
    assert_eq!(launches.len(), 2);
    for l in launches {
        let (certname, secret, _) = identity(l["user_data"].as_str().unwrap().as_bytes());
        assert_eq!(certname, l["certname"].as_str().unwrap());
        assert_eq!(secret, "<redacted>");
    }
    let (code, stdout, _) = conductor(&moto, &["launch", "-c", cfg.to_str().unwrap(), "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("#cloud-config\n") && stdout.contains("<redacted>"),
        "{stdout}"
    );
    assert!(
        common::s3_registry(&moto, "dry", "")
            .await
            .list()
            .await
            .unwrap()
            .is_empty()
    );
    assert!(instances(&common::ec2(&moto).await).await.is_empty());
}

#[tokio::test]
async fn register_prints_user_data_whose_secret_matches() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("register");
    moto.create_bucket(&bucket).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &format!("s3://{bucket}"), "");
    let (code, stdout, stderr) = conductor(
        moto,
        &[
            "register",
            "-c",
            cfg.to_str().unwrap(),
            "--count",
            "2",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let reg = common::s3_registry(moto, &bucket, "").await;
    for item in json(&stdout).as_array().unwrap() {
        let user_data = item["user_data"].as_str().unwrap().as_bytes();
        let (certname, secret, _) = identity(user_data);
        let (record, _) = reg.get(&certname).await.unwrap().unwrap();
        assert!(record.secret_matches(secret.as_bytes()));
        assert_eq!(record.instance_id, None);
        // `launch.image` from the config, since there is no --image
        assert_eq!(record.image_id.as_deref(), Some(moto::AMI));
        assert_eq!(record.identity, Some(moto_binding()));
        assert!(asks_for_identity_proof(user_data));
    }
    // text output of one registration is the user-data itself
    let (code, stdout, _) = conductor(moto, &["register", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 0);
    let (certname, secret, _) = identity(stdout.as_bytes());
    assert!(
        reg.get(&certname)
            .await
            .unwrap()
            .unwrap()
            .0
            .secret_matches(secret.as_bytes())
    );
    // several in text form need --out-dir; the files are private
    let (code, _, stderr) = conductor(
        moto,
        &["register", "-c", cfg.to_str().unwrap(), "--count", "2"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--out-dir"), "{stderr}");
    let out_dir = dir.path().join("ud");
    std::fs::create_dir(&out_dir).unwrap();
    let (code, stdout, stderr) = conductor(
        moto,
        &[
            "register",
            "-c",
            cfg.to_str().unwrap(),
            "--count",
            "2",
            "--out-dir",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 2);
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        use std::os::unix::fs::MetadataExt;
        let entry = entry.unwrap();
        assert_eq!(entry.metadata().unwrap().mode() & 0o777, 0o600);
        identity(&std::fs::read(entry.path()).unwrap());
    }
    assert_eq!(reg.list().await.unwrap().len(), 5);
}

#[tokio::test]
async fn list_revoke_and_prune() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("manage");
    moto.create_bucket(&bucket).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &format!("s3://{bucket}/m"), "");
    let cfg = cfg.to_str().unwrap();
    let (code, stdout, stderr) = conductor(
        moto,
        &["launch", "-c", cfg, "--count", "3", "--output", "json"],
    );
    assert_eq!(code, 0, "{stderr}");
    let launched: Vec<String> = json(&stdout)["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["certname"].as_str().unwrap().to_owned())
        .collect();

    // two expired registrations and one consumed one, written as the signer and time would leave them
    let reg = common::s3_registry(moto, &bucket, "m").await;
    let old = chrono::Utc::now() - chrono::Duration::hours(2);
    let mut expired = Vec::new();
    for i in 0..2 {
        let name = uuid::Uuid::new_v4().to_string();
        let mut r = schemas::registration::Registration::new(
            &name,
            &"0".repeat(64),
            "old@host",
            old,
            chrono::Duration::minutes(30),
        );
        if i == 1 {
            r.version = schemas::registration::LEGACY_VERSION; // from before identity binding
        }
        reg.create(&r).await.unwrap();
        expired.push(name);
    }
    let (mut consumed, v) = reg.get(&launched[0]).await.unwrap().unwrap();
    consumed.consumed = Some(schemas::registration::Consumption {
        at: chrono::Utc::now(),
        by: "sweep@ca".into(),
        csr_sha256: "00".into(),
        instance_id: None,
    });
    reg.update(&consumed, &v).await.unwrap();

    let (code, stdout, _) = conductor(moto, &["list", "-c", cfg, "--output", "json"]);
    assert_eq!(code, 0);
    let listed: BTreeMap<String, Value> = json(&stdout)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["certname"].as_str().unwrap().into(), e.clone()))
        .collect();
    let states: BTreeMap<&str, &str> = listed
        .iter()
        .map(|(k, e)| (k.as_str(), e["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states.len(), 5);
    assert_eq!(states[launched[0].as_str()], "consumed");
    assert_eq!(states[launched[1].as_str()], "pending");
    assert_eq!(states[expired[0].as_str()], "expired");
    // whether each requires the identity proof, and what the proof must show
    let pending = &listed[&launched[1]];
    assert_eq!(pending["proof"], "required", "{stdout}");
    assert_eq!(pending["version"], 2);
    assert_eq!(pending["identity"]["account_id"], MOTO_ACCOUNT);
    assert_eq!(pending["identity"]["region"], moto::REGION);
    assert_eq!(pending["image_id"], moto::AMI);
    assert!(pending["instance_id"].is_string());
    assert_eq!(listed[&expired[0]]["proof"], "off");
    assert!(listed[&expired[0]]["identity"].is_null());
    assert_eq!(listed[&expired[1]]["proof"], "legacy");
    assert_eq!(listed[&expired[1]]["version"], 1);
    let (code, table, _) = conductor(moto, &["list", "-c", cfg]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("CERTNAME") && table.lines().count() == 6,
        "{table}"
    );
    let proof_of = |name: &str| {
        let line = table.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(2).unwrap().to_owned()
    };
    assert!(table.lines().next().unwrap().contains("PROOF"), "{table}");
    assert_eq!(proof_of(&launched[1]), "required", "{table}");
    assert_eq!(proof_of(&expired[0]), "off", "{table}");
    assert_eq!(proof_of(&expired[1]), "legacy", "{table}");

    let (code, stdout, stderr) = conductor(moto, &["prune", "-c", cfg, "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let pruned: BTreeSet<String> = json(&stdout)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["certname"].as_str().unwrap().into())
        .collect();
    assert_eq!(pruned, expired.iter().cloned().collect());
    assert_eq!(
        reg.list().await.unwrap().len(),
        3,
        "pending and consumed ones stay"
    );

    let (code, stdout, stderr) = conductor(moto, &["revoke", "-c", cfg, &launched[1], &expired[0]]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("{}\trevoked", launched[1]))
            && stdout.contains(&format!("{}\tnot registered", expired[0])),
        "{stdout}"
    );
    assert!(reg.get(&launched[1]).await.unwrap().is_none());
    assert_eq!(reg.list().await.unwrap().len(), 2);

    let (code, _, stderr) = conductor(moto, &["revoke", "-c", cfg, "../../etc/passwd"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("not a lowercase hyphenated UUID"),
        "{stderr}"
    );
}

#[tokio::test]
async fn large_user_data_is_gzipped_and_still_parses() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("gzip");
    moto.create_bucket(&bucket).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let packages: String = (0..1200)
        .map(|i| format!("  - example-package-{i:05}\n"))
        .collect();
    let cfg = common::write_config(
        dir.path(),
        &format!("s3://{bucket}"),
        &format!(
            "user_data_template: |\n  #cloud-config\n  packages:\n{}",
            packages.replace("  - ", "    - ")
        ),
    );
    let (code, stdout, stderr) = conductor(
        moto,
        &["launch", "-c", cfg.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(code, 0, "{stderr}");
    let id = json(&stdout)["results"][0]["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ec2 = common::ec2(moto).await;
    let out = ec2
        .describe_instance_attribute()
        .instance_id(&id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(out.user_data().unwrap().value().unwrap())
        .unwrap();
    assert!(
        raw.starts_with(&[0x1f, 0x8b]) && raw.len() <= 16384,
        "gzipped under EC2's limit"
    );
    let text = user_data(&ec2, &id).await;
    assert!(text.len() > 16384);
    let parsed = schemas::userdata::parse("gzipped", &raw).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(parsed.config.packages.install.len(), 1200);
    identity(&text);
}

#[test]
fn bad_config_is_located_and_exits_2() {
    let moto = moto::shared();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), "s3://bad-config", "registration_ttl: 10s\n");
    let (code, _, stderr) = conductor(moto, &["launch", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("conductor.yaml:12")
            && stderr.contains("registration_ttl")
            && stderr.contains("fix:"),
        "{stderr}"
    );
    let (code, _, stderr) = conductor(
        moto,
        &[
            "launch",
            "-c",
            dir.path().join("nope.yaml").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn every_command_has_help_with_an_example() {
    let moto = moto::shared();
    for cmd in [
        vec!["--help"],
        vec!["launch", "--help"],
        vec!["register", "--help"],
        vec!["list", "--help"],
        vec!["revoke", "--help"],
        vec!["prune", "--help"],
    ] {
        let (code, stdout, _) = conductor(moto, &cmd);
        assert_eq!(code, 0);
        assert!(
            stdout.contains("Example") && stdout.contains("conductor "),
            "{cmd:?}: {stdout}"
        );
        assert!(
            stdout.lines().all(|l| l.chars().count() <= 100),
            "{cmd:?} help fits 100 columns:\n{stdout}"
        );
    }
    let (_, stdout, _) = conductor(moto, &["--help"]);
    assert!(stdout.contains("Exit codes") && stdout.contains("partial failure"));
    // `register` says exactly what its weaker binding (no instance id) guarantees
    let (_, stdout, _) = conductor(moto, &["register", "--help"]);
    assert!(
        unwrapped(&stdout).contains(
            "the registration binds to the first valid identity document from this account, region \
             and image whose pendingTime falls in the registration's lifetime; any instance launched \
             from that image in that window, whose CSR also carries this registration's secret, \
             could take it"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("--image <AMI>"), "{stdout}");
}

#[tokio::test]
async fn launch_with_a_file_registry() {
    let moto = moto::shared();
    let dir = tempfile::tempdir().unwrap();
    let regdir = dir.path().join("registry");
    std::fs::create_dir(&regdir).unwrap();
    let cfg = common::write_config(dir.path(), &format!("file://{}", regdir.display()), "");
    let (code, stdout, stderr) = conductor(
        moto,
        &["launch", "-c", cfg.to_str().unwrap(), "--count", "2"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("CERTNAME") && stdout.lines().count() == 3,
        "{stdout}"
    );
    let reg = schemas::registry::FileRegistry::new(regdir.clone()).unwrap();
    let names = reg.list().await.unwrap();
    assert_eq!(names.len(), 2);
    let ec2 = common::ec2(moto).await;
    for name in names {
        let (record, _) = reg.get(&name).await.unwrap().unwrap();
        let (certname, secret, _) =
            identity(&user_data(&ec2, record.instance_id.as_deref().unwrap()).await);
        assert_eq!(certname, name);
        assert!(record.secret_matches(secret.as_bytes()));
    }
    // a registry directory that does not exist launches nothing
    let cfg = common::write_config(
        dir.path(),
        &format!("file://{}", dir.path().join("typo").display()),
        "",
    );
    let (code, _, stderr) = conductor(moto, &["launch", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[tokio::test]
async fn endpoint_by_host_name_uses_path_style() {
    // `localhost` (not an IP literal) would make the SDK address `<bucket>.localhost`; an endpoint
    // override must switch the registry to path-style addressing.
    let moto = moto::shared();
    let bucket = moto::unique_bucket("pathstyle");
    moto.create_bucket(&bucket).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &format!("s3://{bucket}"), "");
    let out = moto
        .command(env!("CARGO_BIN_EXE_conductor"))
        .env(
            "AWS_ENDPOINT_URL",
            moto.endpoint().replace("127.0.0.1", "localhost"),
        )
        .args(["register", "-c", cfg.to_str().unwrap(), "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        common::s3_registry(moto, &bucket, "")
            .await
            .list()
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn access_denied_and_rejected_keys_are_explained() {
    // moto with IAM enforcement after 3 requests: a bucket, a user without policies, its key.
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "3")])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let script = r#"
import boto3, sys
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
boto3.client("s3", **kw).create_bucket(Bucket="denied")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="nobody")
k = iam.create_access_key(UserName="nobody")["AccessKey"]
print(k["AccessKeyId"], k["SecretAccessKey"])
"#;
    let out = std::process::Command::new(moto::venv().join("bin/python"))
        .args(["-c", script, moto.endpoint()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = String::from_utf8(out.stdout).unwrap();
    let (id, secret) = keys.trim().split_once(' ').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), "s3://denied", "");
    let run = |id: &str, secret: &str| {
        let out = moto
            .command(env!("CARGO_BIN_EXE_conductor"))
            .env("AWS_ACCESS_KEY_ID", id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .args(["launch", "-c", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(id, secret);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("access denied") && stderr.contains("s3:PutObject"),
        "{stderr}"
    );
    let (code, stderr) = run("AKIAUNKNOWNKEY000000", "nope");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("AWS rejected the credentials (InvalidAccessKeyId)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn partial_failure_is_reported_per_launch_and_exits_3() {
    // moto lets the first 9 requests through and then enforces IAM, where the test keys do not
    // exist: 1 CreateBucket + 3 exposure checks + 1 preflight + 1 sts:GetCallerIdentity (once per
    // run, before any registration) + 3 calls of the first launch (create the registration,
    // RunInstances, record the instance id). So with one launch at a time, launch 1 succeeds
    // and launches 2 and 3 are refused at their first call (creating the registration).
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "9")])
        .unwrap_or_else(|e| panic!("{e:#}"));
    moto.create_bucket("partial").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), "s3://partial", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("concurrency: 8", "concurrency: 1");
    std::fs::write(&cfg, text).unwrap();
    let (code, stdout, stderr) = conductor(
        &moto,
        &[
            "launch",
            "-c",
            cfg.to_str().unwrap(),
            "--count",
            "3",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 3, "partial failure exits 3\n{stderr}\n{stdout}");
    let out = json(&stdout);
    assert_eq!(
        (out["launched"].as_u64(), out["failed"].as_u64()),
        (Some(1), Some(2)),
        "{stdout}"
    );
    // Results are listed by certname, not in launch order: find the one that got through.
    let results = out["results"].as_array().unwrap();
    let (ok, failed): (Vec<_>, Vec<_>) = results.iter().partition(|r| r["error"].is_null());
    assert_eq!((ok.len(), failed.len()), (1, 2), "{stdout}");
    assert!(ok[0]["instance_id"].is_string(), "{stdout}");
    for r in failed {
        let error = r["error"].as_str().unwrap();
        assert!(error.contains("InvalidAccessKeyId"), "{stdout}");
        assert!(
            error.starts_with("registering:"),
            "refused at its first call: {stdout}"
        );
        assert!(r["instance_id"].is_null());
        assert_eq!(r["state"], "failed", "{stdout}");
    }
}

#[tokio::test]
async fn proof_off_writes_no_binding_and_no_user_data_key() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("proofoff");
    moto.create_bucket(&bucket).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &format!("s3://{bucket}"), "");
    common::identity_off(&cfg);
    // With the proof off the conductor has no use for the account id and never asks STS.
    let run = |args: &[&str]| {
        let out = moto
            .command(env!("CARGO_BIN_EXE_conductor"))
            .env("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&["launch", "-c", cfg.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code, Some(0), "{stderr}\n{stdout}");
    assert!(
        stderr.contains("`launch.instance_identity` is off"),
        "{stderr}"
    );
    let id = json(&stdout)["results"][0]["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ec2 = common::ec2(moto).await;
    let text = user_data(&ec2, &id).await;
    assert!(
        !String::from_utf8_lossy(&text).contains("instance_identity"),
        "{}",
        String::from_utf8_lossy(&text)
    );
    assert!(!asks_for_identity_proof(&text));
    let (certname, _, _) = identity(&text);
    let reg = common::s3_registry(moto, &bucket, "").await;
    let (record, _) = reg.get(&certname).await.unwrap().unwrap();
    assert_eq!(record.version, REGISTRATION_VERSION);
    assert_eq!(record.identity, None);
    assert_eq!(record.image_id.as_deref(), Some(moto::AMI));
    assert_eq!(record.instance_id.as_deref(), Some(id.as_str()));

    // `register` needs no image then, and binds nothing.
    common::no_image(&cfg);
    let (code, stdout, stderr) =
        run(&["register", "-c", cfg.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let item = &json(&stdout)[0];
    assert!(
        item["identity"].is_null() && item["image_id"].is_null(),
        "{stdout}"
    );
    let user_data = item["user_data"].as_str().unwrap();
    assert!(!user_data.contains("instance_identity"), "{user_data}");
    let (certname, _, _) = identity(user_data.as_bytes());
    let (record, _) = reg.get(&certname).await.unwrap().unwrap();
    assert_eq!((record.identity, record.image_id), (None, None));

    let (code, table, _) = run(&["list", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert_eq!(
        table
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().nth(2).unwrap())
            .collect::<Vec<_>>(),
        ["off", "off"],
        "{table}"
    );
}

#[tokio::test]
async fn register_with_image_binds_account_region_and_image_but_no_instance() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("regimage");
    moto.create_bucket(&bucket).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &format!("s3://{bucket}"), "");
    common::no_image(&cfg);
    let ami = "ami-0123456789abcdef0"; // registering launches nothing: any AMI id will do
    let (code, stdout, stderr) = conductor(
        moto,
        &[
            "register",
            "-c",
            cfg.to_str().unwrap(),
            "--image",
            ami,
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let item = &json(&stdout)[0];
    assert_eq!(item["image_id"], ami, "{stdout}");
    assert_eq!(item["identity"]["account_id"], MOTO_ACCOUNT, "{stdout}");
    assert_eq!(item["identity"]["region"], moto::REGION, "{stdout}");
    let user_data = item["user_data"].as_str().unwrap().as_bytes();
    assert!(asks_for_identity_proof(user_data));
    let (certname, _, _) = identity(user_data);
    let (record, _) = common::s3_registry(moto, &bucket, "")
        .await
        .get(&certname)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.version, REGISTRATION_VERSION);
    assert_eq!(record.identity, Some(moto_binding()));
    assert_eq!(record.image_id.as_deref(), Some(ami));
    assert_eq!(record.instance_id, None, "no instance: the weaker binding");

    let (code, _, stderr) = conductor(
        moto,
        &[
            "register",
            "-c",
            cfg.to_str().unwrap(),
            "--image",
            "ami-XYZ",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not an AMI id"), "{stderr}");
}

#[tokio::test]
async fn register_without_an_image_is_a_usage_error() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("regnoimage");
    moto.create_bucket(&bucket).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &format!("s3://{bucket}"), "");
    common::no_image(&cfg);
    let (code, stdout, stderr) = conductor(moto, &["register", "-c", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("--image AMI")
            && stderr.contains("`launch.image`")
            && stderr.contains("`launch.instance_identity: false`"),
        "{stderr}"
    );
    assert!(
        common::s3_registry(moto, &bucket, "")
            .await
            .list()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn instance_owned_by_another_account_is_terminated_and_unregistered() {
    // STS (a second moto, in another account) and EC2 disagree on the account: the instance's
    // identity document could never match its registration.
    let moto = moto::shared();
    let sts = Moto::start_with(&[("MOTO_ACCOUNT_ID", "111122223333")])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let bucket = moto::unique_bucket("otheraccount");
    moto.create_bucket(&bucket).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &format!("s3://{bucket}"), "");
    common::edit_config(&cfg, "concurrency: 8", "concurrency: 1");
    let out = moto
        .command(env!("CARGO_BIN_EXE_conductor"))
        .env("AWS_ENDPOINT_URL_STS", sts.endpoint())
        .args([
            "launch",
            "-c",
            cfg.to_str().unwrap(),
            "--count",
            "2",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}\n{stdout}");
    let out = json(&stdout);
    assert_eq!(out["failed"], 2, "{stdout}");
    let results = out["results"].as_array().unwrap();
    let launched: Vec<&Value> = results
        .iter()
        .filter(|r| r["instance_id"].is_string())
        .collect();
    assert_eq!(
        launched.len(),
        1,
        "the first launch stops the rest: {stdout}"
    );
    let error = launched[0]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("owned by account {MOTO_ACCOUNT}"))
            && error.contains("binds to account 111122223333")
            && error.contains("the instance was terminated"),
        "{error}"
    );
    assert!(
        results
            .iter()
            .any(|r| r["state"] == "skipped"
                && r["error"].as_str().unwrap().contains("not attempted")),
        "{stdout}"
    );
    let id = launched[0]["instance_id"].as_str().unwrap();
    let instance = instances(&common::ec2(moto).await)
        .await
        .into_iter()
        .find(|i| i.instance_id() == Some(id))
        .expect("the instance exists");
    assert!(
        matches!(
            instance.state().and_then(|s| s.name()).map(|n| n.as_str()),
            Some("shutting-down" | "terminated")
        ),
        "{instance:?}"
    );
    assert!(
        common::s3_registry(moto, &bucket, "")
            .await
            .list()
            .await
            .unwrap()
            .is_empty(),
        "no registration left behind"
    );
}

/// A stand-in for STS that refuses every request the way AWS does when an SCP, permissions
/// boundary or VPC endpoint policy denies `sts:GetCallerIdentity` (moto, like IAM, never does).
/// Returns its endpoint; the server thread lives as long as the test process.
fn sts_denying_everything() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let xml = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/ops is not authorized to perform: sts:GetCallerIdentity with an explicit deny in a service control policy</Message></Error><RequestId>4a5b6c</RequestId></ErrorResponse>";
            let response = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            );
            let _ = reader.get_mut().write_all(response.as_bytes());
        }
    });
    endpoint
}

#[tokio::test]
async fn sts_access_denied_is_explained_before_anything_is_registered() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("stsdenied");
    moto.create_bucket(&bucket).unwrap();
    let sts = sts_denying_everything();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), &format!("s3://{bucket}"), "");
    for cmd in ["launch", "register"] {
        let out = moto
            .command(env!("CARGO_BIN_EXE_conductor"))
            .env("AWS_ENDPOINT_URL_STS", &sts)
            .args([cmd, "-c", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {stderr}");
        assert!(
            stderr.contains("AWS denied sts:GetCallerIdentity (AccessDenied")
                && stderr.contains("need `sts:GetCallerIdentity`")
                && stderr.contains("`launch.instance_identity: false`"),
            "{cmd}: {stderr}"
        );
    }
    assert!(
        common::s3_registry(moto, &bucket, "")
            .await
            .list()
            .await
            .unwrap()
            .is_empty(),
        "nothing was registered"
    );
}
