//! The IMDSv2 client against a local server that follows the protocol (testkit::imds), and the
//! `bootcfg` binary's IMDS path end to end (a root that needs no chroot: apt conf only).

use bootcfg::imds::{API_VERSION, Imds, ImdsError, TOKEN_TTL_SECONDS};
use std::time::{Duration, Instant};
use testkit::imds::FakeImds;

fn client(url: &str, budget_s: u64, per_request_ms: u64) -> Imds {
    Imds::new(
        url,
        Duration::from_secs(budget_s),
        Duration::from_millis(per_request_ms),
    )
    .unwrap()
}

#[test]
fn token_first_then_pinned_reads_with_the_token() {
    let fake = FakeImds::start(Some(b"#cloud-config\npackages: [hello]\n"));
    let md = client(&fake.url, 10, 2000).metadata().unwrap();
    assert_eq!(
        md.user_data.as_deref(),
        Some(&b"#cloud-config\npackages: [hello]\n"[..])
    );
    assert_eq!(md.instance_id, "i-0123456789abcdef0");
    assert_eq!(
        md.local_hostname.as_deref(),
        Some("ip-10-0-0-12.eu-west-1.compute.internal")
    );
    assert_eq!(md.region.as_deref(), Some("eu-west-1"));
    let log = fake.log();
    assert_eq!(log[0].method, "PUT");
    assert_eq!(log[0].path, "/latest/api/token");
    assert_eq!(
        log[0].ttl.as_deref(),
        Some(TOKEN_TTL_SECONDS.to_string().as_str())
    );
    let token = log[0].token.clone();
    assert_eq!(token, None, "the PUT carries no token");
    assert_eq!(
        log.iter().filter(|s| s.method == "PUT").count(),
        1,
        "one token for all reads"
    );
    for s in &log[1..] {
        assert_eq!(s.method, "GET");
        assert!(
            s.path.starts_with(&format!("/{API_VERSION}/")),
            "pinned version: {}",
            s.path
        );
        // no signed identity set on the fake: its rsa2048 is 404
        let want = if s.path.ends_with("/rsa2048") {
            404
        } else {
            200
        };
        assert!(s.token.is_some() && s.status == want, "{s:?}");
    }
    assert_eq!(md.identity_rsa2048, None);
}

#[test]
fn identity_rsa2048_comes_back_on_one_line_and_404_is_none() {
    let fake = FakeImds::start(None);
    let aws = testkit::iid::TestAws::generate("eu-west-1");
    let doc = testkit::iid::Doc::new("i-0123456789abcdef0", "ami-0123456789abcdef0", "eu-west-1")
        .render();
    let body = aws.sign(&doc);
    assert!(
        body.lines().count() > 10 && body.lines().all(|l| l.len() <= 76),
        "the fake serves 76-column lines: {body}"
    );
    fake.set_identity(&doc, &format!("{body}\n"));
    let md = client(&fake.url, 10, 2000).metadata().unwrap();
    let one = md.identity_rsa2048.expect("rsa2048 served");
    assert_eq!(one, body.split_whitespace().collect::<String>());
    assert!(!one.chars().any(char::is_whitespace), "{one}");
    assert!(one.starts_with("MI"), "base64 of a DER SEQUENCE: {one}");
    assert!(
        fake.log()
            .iter()
            .any(|s| s.path == format!("/{API_VERSION}/dynamic/instance-identity/rsa2048")),
        "read at the pinned version"
    );
    // 404: no identity, not an error
    fake.clear_identity();
    let md = client(&fake.url, 10, 2000).metadata().unwrap();
    assert_eq!(md.identity_rsa2048, None);
    assert_eq!(md.instance_id, "i-0123456789abcdef0");
}

#[test]
fn identity_rsa2048_that_is_not_base64_is_refused_naming_the_url() {
    let fake = FakeImds::start(None);
    fake.set_identity(
        "{}",
        "-----BEGIN PKCS7-----\nMIAGCSqGSIb3DQEHAqCAMIACAQExDzAN\n-----END PKCS7-----\n",
    );
    let err = client(&fake.url, 10, 2000).metadata().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "/{API_VERSION}/dynamic/instance-identity/rsa2048: "
        )) && msg.contains("not base64"),
        "{msg}"
    );
    fake.set_identity("{}", &"QUFB".repeat(1025));
    let msg = client(&fake.url, 10, 2000)
        .metadata()
        .unwrap_err()
        .to_string();
    assert!(msg.contains("4100 bytes, more than the 4096"), "{msg}");
}

#[test]
fn missing_user_data_is_none_not_an_error() {
    let fake = FakeImds::start(None);
    let md = client(&fake.url, 10, 2000).metadata().unwrap();
    assert_eq!(md.user_data, None);
    assert_eq!(md.instance_id, "i-0123456789abcdef0");
}

#[test]
fn get_without_a_token_is_401_on_the_fake() {
    // the fake really enforces IMDSv2: a plain GET is refused
    let fake = FakeImds::start(Some(b"x"));
    let r = reqwest::blocking::get(format!("{}/latest/user-data", fake.url)).unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[test]
fn retries_503_with_backoff_then_succeeds() {
    let fake = FakeImds::start(Some(b"ud"));
    fake.fail_next(3, None);
    let t = Instant::now();
    let md = client(&fake.url, 20, 2000).metadata().unwrap();
    let took = t.elapsed();
    assert_eq!(md.user_data.as_deref(), Some(&b"ud"[..]));
    let n503 = fake.log().iter().filter(|s| s.status == 503).count();
    assert_eq!(n503, 3);
    // 0.25 + 0.5 + 1 s of backoff
    assert!(
        took >= Duration::from_millis(1700),
        "backoff was applied: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
}

#[test]
fn honours_retry_after_on_503() {
    let fake = FakeImds::start(Some(b"ud"));
    fake.fail_next(1, Some(2));
    let t = Instant::now();
    client(&fake.url, 20, 2000).metadata().unwrap();
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn expired_token_gets_a_fresh_one() {
    let fake = FakeImds::start(Some(b"ud"));
    let c = client(&fake.url, 10, 2000);
    assert!(c.get("user-data").unwrap().is_some());
    fake.expire_tokens();
    assert_eq!(
        c.get("meta-data/instance-id").unwrap().as_deref(),
        Some(&b"i-0123456789abcdef0"[..])
    );
    let log = fake.log();
    let statuses: Vec<(String, u16)> = log.iter().map(|s| (s.method.clone(), s.status)).collect();
    assert_eq!(
        statuses,
        [
            ("PUT".into(), 200),
            ("GET".into(), 200),
            ("GET".into(), 401),
            ("PUT".into(), 200),
            ("GET".into(), 200)
        ]
    );
    assert_ne!(log[1].token, log[4].token, "a new token was used");
}

#[test]
fn short_lived_tokens_are_renewed() {
    let fake = FakeImds::start(Some(b"ud"));
    fake.set_token_ttl(Some(Duration::from_millis(300)));
    let c = client(&fake.url, 10, 2000);
    c.get("user-data").unwrap();
    std::thread::sleep(Duration::from_millis(400));
    c.get("user-data").unwrap();
    assert_eq!(fake.log().iter().filter(|s| s.method == "PUT").count(), 2);
}

#[test]
fn forbidden_is_a_clear_error_without_retries() {
    let fake = FakeImds::start(Some(b"ud"));
    fake.set_forbidden(true);
    let t = Instant::now();
    let err = client(&fake.url, 30, 2000).metadata().unwrap_err();
    assert!(matches!(err, ImdsError::Forbidden { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("403") && msg.contains("modify-instance-metadata-options"),
        "{msg}"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "no retries on 403");
    assert_eq!(fake.log().len(), 1);
}

#[test]
fn slow_answers_within_the_request_timeout_are_fine() {
    let fake = FakeImds::start(Some(b"ud"));
    fake.set_delay(Duration::from_millis(300));
    let md = client(&fake.url, 10, 2000).metadata().unwrap();
    assert_eq!(md.user_data.as_deref(), Some(&b"ud"[..]));
}

#[test]
fn hung_server_is_bounded_by_the_total_budget() {
    let fake = FakeImds::start(Some(b"ud"));
    fake.set_delay(Duration::from_secs(30));
    let t = Instant::now();
    let err = client(&fake.url, 3, 500).metadata().unwrap_err();
    let took = t.elapsed();
    assert!(matches!(err, ImdsError::Exhausted { .. }), "{err}");
    assert!(took < Duration::from_secs(5), "bounded: {took:?}");
    assert!(
        took >= Duration::from_secs(2),
        "kept retrying within the budget: {took:?}"
    );
}

#[test]
fn unreachable_endpoint_is_bounded_by_the_total_budget() {
    // a port nobody listens on: bind, note the port, close
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Instant::now();
    let err = client(&format!("http://127.0.0.1:{port}"), 2, 500)
        .metadata()
        .unwrap_err();
    assert!(matches!(err, ImdsError::Exhausted { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

// ---- the binary, through the CLI contract ----

fn bootcfg() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_bootcfg"))
}

fn debian_root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("etc")).unwrap();
    std::fs::write(
        d.path().join("etc/os-release"),
        "ID=debian\nVERSION_CODENAME=bookworm\n",
    )
    .unwrap();
    d
}

#[test]
fn cli_no_user_data_exits_0_and_records_it() {
    let fake = FakeImds::start(None);
    let root = debian_root();
    let out = bootcfg()
        .args([
            "run",
            "--root",
            root.path().to_str().unwrap(),
            "--imds-url",
            &fake.url,
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "no-user-data");
    assert_eq!(v["instance_id"], "i-0123456789abcdef0");
    let saved: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.path().join("var/lib/bootcfg/result.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["outcome"], "no-user-data");
}

#[test]
fn cli_run_applies_once_per_instance_from_imds() {
    let fake = FakeImds::start(Some(
        b"#cloud-config\napt:\n  conf: |\n    APT::Acquire::Retries \"5\";\n",
    ));
    let root = debian_root();
    let r = root.path().to_str().unwrap();
    let run = || {
        bootcfg()
            .args([
                "run",
                "--root",
                r,
                "--imds-url",
                &fake.url,
                "--output",
                "json",
            ])
            .output()
            .unwrap()
    };
    let out = run();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/apt/apt.conf.d/94cloud-init-config"))
            .unwrap(),
        "APT::Acquire::Retries \"5\";\n"
    );
    assert!(
        root.path()
            .join("var/lib/bootcfg/instances/i-0123456789abcdef0/apt-conf.done")
            .is_file()
    );
    // second boot: every module already done
    let out = run();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["modules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "already-done"),
        "{v}"
    );
    // a new instance id (image copied) runs again
    fake.set_instance_id("i-0fedcba9876543210");
    let v: serde_json::Value = serde_json::from_slice(&run().stdout).unwrap();
    assert_eq!(v["modules"][0]["status"], "done");
    // status shows the last result
    let st = bootcfg().args(["status", "--root", r]).output().unwrap();
    assert_eq!(st.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&st.stdout).contains("i-0fedcba9876543210"));
}

#[test]
fn cli_imds_403_fails_with_exit_1_and_a_clear_message() {
    let fake = FakeImds::start(Some(b"#cloud-config\n"));
    fake.set_forbidden(true);
    let root = debian_root();
    let out = bootcfg()
        .args([
            "run",
            "--root",
            root.path().to_str().unwrap(),
            "--imds-url",
            &fake.url,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("403 Forbidden"), "{err}");
}

const IDENTITY_UD: &[u8] =
    b"#cloud-config\npuppet:\n  install: false\n  start_service: false\n  instance_identity: true\n";

#[test]
fn cli_plan_shows_the_identity_shortened_and_apply_writes_it_whole() {
    let fake = FakeImds::start(Some(IDENTITY_UD));
    let aws = testkit::iid::TestAws::generate("eu-west-1");
    let doc = testkit::iid::Doc::new("i-0123456789abcdef0", "ami-0123456789abcdef0", "eu-west-1")
        .render();
    let body = aws.sign(&doc);
    fake.set_identity(&doc, &body);
    let one: String = body.split_whitespace().collect();
    let short = format!("{}… ({} characters)", &one[..32], one.chars().count());
    let iid = schemas::oids::INSTANCE_IDENTITY;
    let root = debian_root();
    let r = root.path().to_str().unwrap();
    let out = bootcfg()
        .args(["plan", "--root", r, "--imds-url", &fake.url])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("+  {iid}: {short}")), "{stdout}");
    assert!(
        !stdout.contains(&one[..64]) && !stderr.contains(&one[..64]),
        "{stdout}\n{stderr}"
    );
    let out = bootcfg()
        .args([
            "apply",
            "--root",
            r,
            "--imds-url",
            &fake.url,
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains(&one[..64]) && stdout.contains(&short),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/puppet/csr_attributes.yaml")).unwrap(),
        format!("custom_attributes:\n  {iid}: {one}\n")
    );
    let saved = std::fs::read_to_string(root.path().join("var/lib/bootcfg/result.json")).unwrap();
    assert!(!saved.contains(&one[..64]), "{saved}");
}

#[test]
fn cli_instance_identity_from_a_seed_fails_before_touching_anything() {
    let root = debian_root();
    let seed = tempfile::tempdir().unwrap();
    std::fs::write(
        seed.path().join("user-data"),
        [
            &b"#cloud-config\napt:\n  conf: |\n    APT::Acquire::Retries \"5\";\n"[..],
            &IDENTITY_UD[b"#cloud-config\n".len()..],
        ]
        .concat(),
    )
    .unwrap();
    std::fs::write(seed.path().join("meta-data"), "instance-id: iid-seed-1\n").unwrap();
    let r = root.path().to_str().unwrap();
    let s = seed.path().to_str().unwrap();
    for cmd in ["plan", "apply"] {
        let out = bootcfg()
            .args([cmd, "--root", r, "--seed-dir", s])
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{cmd}: {all}");
        for want in [
            "puppet.instance_identity:",
            &format!("nocloud:{s}"),
            "only EC2's IMDS serves a signed instance identity document",
            "run bootcfg on EC2 with IMDSv2",
        ] {
            assert!(all.contains(want), "{cmd}: missing {want:?} in {all}");
        }
    }
    assert!(
        !root
            .path()
            .join("etc/apt/apt.conf.d/94cloud-init-config")
            .exists(),
        "apply changed nothing"
    );
}
