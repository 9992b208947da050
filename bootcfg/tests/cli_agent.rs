//! The `bootcfg run/plan/apply/status` CLI contract on roots that need no chroot: the user-data
//! here only writes files (apt conf, puppet.conf, ca.pem, csr_attributes.yaml), so no command
//! runs and no root privileges or debootstrap tree are needed.

use std::path::Path;
use std::process::{Command, Output};

const USER_DATA: &str = r#"#cloud-config
apt:
  proxy: http://proxyuser:Pr0xyPassw0rd@proxy.example:3128
  conf: |
    Acquire::Retries "5";
puppet:
  install: false
  start_service: false
  conf:
    main:
      server: puppet.example
      certname: "%i.%f"
  csr_attributes:
    custom_attributes:
      1.2.840.113549.1.9.7: "ChallengeSecret0123"
    extension_requests:
      pp_instance_id: "%i"
"#;

fn bootcfg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bootcfg"))
        .args(args)
        .output()
        .unwrap()
}

fn debian_root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("etc/puppet")).unwrap();
    std::fs::write(
        d.path().join("etc/os-release"),
        "ID=debian\nVERSION_CODENAME=bookworm\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("etc/puppet/puppet.conf"),
        "# from the image\n[main]\nssldir = /var/lib/puppet/ssl\n",
    )
    .unwrap();
    d
}

fn seed(root: &Path, user_data: &str, iid: &str) {
    let s = root.join("var/lib/cloud/seed/nocloud");
    std::fs::create_dir_all(&s).unwrap();
    std::fs::write(s.join("user-data"), user_data).unwrap();
    std::fs::write(
        s.join("meta-data"),
        format!("instance-id: {iid}\nlocal-hostname: node-1.example.com\n"),
    )
    .unwrap();
}

/// Every file under `dir` with its bytes and mode.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                stack.push(e.path());
            } else {
                out.push((
                    e.path().display().to_string(),
                    std::fs::read(e.path()).unwrap(),
                    md.mode(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn plan_changes_nothing_shows_diffs_and_redacts_secrets() {
    let root = debian_root();
    let r = root.path().to_str().unwrap();
    let ud_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ud_file.path(), USER_DATA).unwrap();
    let ud = ud_file.path().to_owned();
    let before = snapshot(root.path());
    let out = bootcfg(&[
        "plan",
        "--root",
        r,
        "--user-data",
        ud.to_str().unwrap(),
        "--instance-id",
        "i-0abc",
        "--hostname",
        "web-1.example.com",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(snapshot(root.path()), before, "plan changed the root");
    let all = text(&out);
    assert!(
        all.contains("+certname = i-0abc.web-1.example.com"),
        "{all}"
    );
    assert!(
        all.contains("+++ b/etc/apt/apt.conf.d/90cloud-init-aptproxy"),
        "{all}"
    );
    assert!(all.contains("mode 0600"), "{all}");
    assert!(
        !all.contains("Pr0xyPassw0rd") && !all.contains("ChallengeSecret0123"),
        "secret in plan output:\n{all}"
    );
}

#[test]
fn run_uses_the_seed_in_the_root_and_keeps_secrets_out_of_the_result() {
    let root = debian_root();
    let r = root.path().to_str().unwrap();
    seed(root.path(), USER_DATA, "iid-seed-1");
    let out = bootcfg(&["run", "--root", r, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "success");
    assert_eq!(v["instance_id"], "iid-seed-1");
    assert_eq!(v["hostname"], "node-1.example.com");
    assert!(v["datasource"].as_str().unwrap().starts_with("nocloud:"));
    let conf = std::fs::read_to_string(root.path().join("etc/puppet/puppet.conf")).unwrap();
    assert_eq!(
        conf,
        "# from the image\n[main]\nssldir = /var/lib/puppet/ssl\nserver = puppet.example\ncertname = iid-seed-1.node-1.example.com\n"
    );
    let csr = root.path().join("etc/puppet/csr_attributes.yaml");
    assert_eq!(
        std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&csr).unwrap()) & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(&csr)
            .unwrap()
            .contains("pp_instance_id: iid-seed-1")
    );
    let result = std::fs::read_to_string(root.path().join("var/lib/bootcfg/result.json")).unwrap();
    assert!(
        !result.contains("Pr0xyPassw0rd") && !result.contains("ChallengeSecret0123"),
        "secret in result.json:\n{result}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Pr0xyPassw0rd"),
        "secret in the log"
    );
    for m in ["apt-conf", "apt-sources", "debconf", "packages", "puppet"] {
        assert!(
            root.path()
                .join(format!("var/lib/bootcfg/instances/iid-seed-1/{m}.done"))
                .is_file(),
            "{m} marker"
        );
    }
    // status, text and JSON
    let st = bootcfg(&["status", "--root", r, "--output", "json"]);
    assert_eq!(st.status.code(), Some(0));
    let s: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(s["instance_id"], "iid-seed-1");
}

#[test]
fn invalid_user_data_exits_1_and_is_recorded() {
    let root = debian_root();
    let r = root.path().to_str().unwrap();
    seed(
        root.path(),
        "#cloud-config\npackages: [\"bad;name\"]\n",
        "iid-bad",
    );
    let out = bootcfg(&["run", "--root", r, "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "invalid-user-data");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("user-data"),
        "{}",
        text(&out)
    );
    let st = bootcfg(&["status", "--root", r]);
    assert_eq!(st.status.code(), Some(1), "status of a failed run is 1");
}

#[test]
fn usage_errors_exit_2() {
    let root = debian_root();
    let r = root.path().to_str().unwrap();
    // --user-data needs --instance-id
    assert_eq!(
        bootcfg(&["apply", "--root", r, "--user-data", "/dev/null"])
            .status
            .code(),
        Some(2)
    );
    // exactly one datasource
    assert_eq!(bootcfg(&["apply", "--root", r]).status.code(), Some(2));
    // a root that does not exist
    assert_eq!(
        bootcfg(&[
            "apply",
            "--root",
            "/nonexistent/root",
            "--seed-dir",
            "/tmp",
            "--instance-id",
            "i-1"
        ])
        .status
        .code(),
        Some(2)
    );
    // an instance id that would escape the state directory
    assert_eq!(
        bootcfg(&[
            "apply",
            "--root",
            r,
            "--user-data",
            "/dev/null",
            "--instance-id",
            "../x"
        ])
        .status
        .code(),
        Some(2)
    );
}

#[test]
fn empty_user_data_is_nothing_to_do() {
    let root = debian_root();
    let r = root.path().to_str().unwrap();
    let out = bootcfg(&[
        "apply",
        "--root",
        r,
        "--user-data",
        "/dev/null",
        "--instance-id",
        "i-1",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "no-user-data");
}

#[test]
fn a_second_bootcfg_on_the_same_root_is_refused() {
    let root = debian_root();
    let r = root.path().to_str().unwrap();
    std::fs::create_dir_all(root.path().join("var/lib/bootcfg")).unwrap();
    let lock = root.path().join("var/lib/bootcfg/lock");
    std::fs::write(&lock, "").unwrap();
    // hold the lock from another process for a few seconds
    let mut holder = Command::new("flock")
        .args([lock.to_str().unwrap(), "sleep", "5"])
        .spawn()
        .expect("flock(1) from util-linux");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = bootcfg(&[
        "apply",
        "--root",
        r,
        "--user-data",
        "/dev/null",
        "--instance-id",
        "i-1",
    ]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("another bootcfg"), "{}", text(&out));
}

/// A module that cannot be planned on this root (puppet.conf's directory is a file) stops the
/// run before anything is touched: every module is planned first. No marker, no file, and the
/// next run, after the cause is fixed, does everything.
#[test]
fn a_module_that_cannot_be_planned_changes_nothing_and_the_next_run_does_everything() {
    let root = debian_root();
    let r = root.path().to_str().unwrap();
    seed(root.path(), USER_DATA, "iid-retry");
    // make puppet.conf unwritable: /etc/puppet is a file, not a directory
    std::fs::remove_dir_all(root.path().join("etc/puppet")).unwrap();
    std::fs::write(root.path().join("etc/puppet"), "not a directory").unwrap();
    let before = snapshot(&root.path().join("etc"));
    let out = bootcfg(&["run", "--root", r, "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "failed");
    let module = |v: &serde_json::Value, m: &str| {
        v["modules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == m)
            .unwrap()
            .clone()
    };
    let status =
        |v: &serde_json::Value, m: &str| module(v, m)["status"].as_str().unwrap().to_owned();
    assert_eq!(status(&v, "puppet"), "failed");
    assert_eq!(status(&v, "apt-conf"), "not-run");
    assert!(
        module(&v, "apt-conf")["reason"]
            .as_str()
            .unwrap()
            .contains("cannot be planned"),
        "{v}"
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("module puppet cannot be planned (nothing was changed)"),
        "{v}"
    );
    assert_eq!(
        snapshot(&root.path().join("etc")),
        before,
        "nothing under /etc changed"
    );
    let markers = root.path().join("var/lib/bootcfg/instances/iid-retry");
    assert!(!markers.exists(), "no marker at all");
    // the cause is fixed; the next boot does everything
    std::fs::remove_file(root.path().join("etc/puppet")).unwrap();
    let out = bootcfg(&["run", "--root", r, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status(&v, "apt-conf"), "done");
    assert_eq!(status(&v, "puppet"), "done");
    assert!(markers.join("apt-conf.done").is_file() && markers.join("puppet.done").is_file());
    // and a third run finds everything done
    let out = bootcfg(&["run", "--root", r, "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status(&v, "puppet"), "already-done", "{v}");
}

#[test]
fn under_systemd_log_lines_carry_syslog_priorities() {
    let root = debian_root();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_bootcfg"))
        .args([
            "run",
            "--root",
            root.path().to_str().unwrap(),
            "--imds-url",
            &format!("http://127.0.0.1:{port}"),
            "--imds-timeout",
            "1",
        ])
        .env("JOURNAL_STREAM", "8:12345")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().any(|l| l.starts_with("<6>fetching user-data")),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("<4>IMDS not answering yet")),
        "{err}"
    );
    // the fatal error reaches the journal at priority err
    assert!(
        err.lines()
            .any(|l| l.starts_with("<3>datasource imds:") && l.contains("127.0.0.1")),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no ANSI colours in the journal: {err}"
    );
}
