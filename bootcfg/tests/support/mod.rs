//! Shared by the end-to-end test binaries (`e2e_root`, `peer_cloudinit`): fixtures filled in with
//! the harness's apt repo and CA, and the bootcfg binary run on the host against a root inside the
//! namespace runner.
#![allow(dead_code)] // each test binary uses a different subset

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::aptrepo::AptRepo;
use testkit::chroot::{self, Output, Running};
use testkit::rootfs::Root;

/// One Debian release the end-to-end tests run on: its roots from tests/setup-roots.sh.
#[derive(Debug, Clone, Copy)]
pub struct Release {
    /// `Debian 12`
    pub name: &'static str,
    pub codename: &'static str,
    /// The minimal root bootcfg is applied into.
    pub base: &'static str,
    /// The same root with the release's cloud-init (the peer).
    pub cloudinit: &'static str,
    /// The cloud-init version that release ships.
    pub cloud_init: &'static str,
}

pub const BOOKWORM: Release = Release {
    name: "Debian 12",
    codename: "bookworm",
    base: "base",
    cloudinit: "cloudinit",
    cloud_init: "22.4",
};

pub const TRIXIE: Release = Release {
    name: "Debian 13",
    codename: "trixie",
    base: "base-trixie",
    cloudinit: "cloudinit-trixie",
    cloud_init: "25.1",
};

pub const BOOTCFG: &str = env!("CARGO_BIN_EXE_bootcfg");
/// Generous: a package install on a loaded 2-core machine.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(900);

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/agent")
}

pub fn fixture(name: &str) -> String {
    let p = fixture_dir().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading fixture {}: {e}", p.display()))
}

/// The CA certificate the fixtures carry as `ca_cert`.
pub fn ca_pem() -> String {
    fixture("ca.pem")
}

/// Replaces a placeholder that stands alone on its line with `text`, every line indented like it.
fn fill_block(template: &str, placeholder: &str, text: &str) -> String {
    let mut out = String::new();
    for line in template.lines() {
        if line.trim() == placeholder {
            let indent = &line[..line.len() - line.trim_start().len()];
            for l in text.trim_end().lines() {
                if l.is_empty() {
                    out.push('\n');
                } else {
                    out.push_str(indent);
                    out.push_str(l);
                    out.push('\n');
                }
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A fixture with `@REPO_URL@`, `@REPO_KEY@` and `@CA_CERT@` filled in.
pub fn user_data(name: &str, repo: Option<&AptRepo>) -> String {
    let mut t = fixture(name);
    if let Some(repo) = repo {
        t = t.replace("@REPO_URL@", &repo.url());
        t = fill_block(&t, "@REPO_KEY@", repo.armored_key());
    }
    t = fill_block(&t, "@CA_CERT@", &ca_pem());
    let unfilled = t
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .any(|l| {
            ["@REPO_URL@", "@REPO_KEY@", "@CA_CERT@"]
                .iter()
                .any(|p| l.contains(p))
        });
    assert!(
        !unfilled,
        "unfilled placeholder in fixture {name} (no repo given?):\n{t}"
    );
    t
}

/// Writes user-data next to (not inside) the root and returns its path.
pub fn write_user_data(root: &Root, text: &str) -> PathBuf {
    let p = root
        .path()
        .parent()
        .expect("root has a parent")
        .join("user-data.yaml");
    std::fs::write(&p, text).expect("writing user-data");
    p
}

/// `bootcfg <subcommand> --root ROOT --user-data FILE --instance-id ID --hostname HOST --output json`
/// as a host process inside the root's namespaces (it does its own `chroot` for commands).
pub fn bootcfg_cmd(
    sub: &str,
    root: &Root,
    user_data: &Path,
    instance_id: &str,
    hostname: &str,
) -> std::process::Command {
    let root_s = root.path().display().to_string();
    let ud = user_data.display().to_string();
    chroot::host_in_ns(
        root.path(),
        &["RUST_LOG=info".to_owned(), "RUST_BACKTRACE=1".to_owned()],
        &[
            BOOTCFG,
            sub,
            "--root",
            &root_s,
            "--user-data",
            &ud,
            "--instance-id",
            instance_id,
            "--hostname",
            hostname,
            "--output",
            "json",
        ],
    )
}

/// `bootcfg status --root ROOT --output json`, run to completion.
pub fn status(root: &Root) -> Output {
    let root_s = root.path().display().to_string();
    chroot::run(
        chroot::host_in_ns(
            root.path(),
            &[],
            &[BOOTCFG, "status", "--root", &root_s, "--output", "json"],
        ),
        Duration::from_secs(60),
    )
}

/// `bootcfg run --root ROOT --output json` (boot mode: the datasource is the root's NoCloud seed).
pub fn run_cmd(root: &Root) -> std::process::Command {
    let root_s = root.path().display().to_string();
    chroot::host_in_ns(
        root.path(),
        &["RUST_LOG=info".to_owned()],
        &[BOOTCFG, "run", "--root", &root_s, "--output", "json"],
    )
}

/// Runs `bootcfg apply` to completion.
pub fn apply(root: &Root, user_data: &Path, instance_id: &str, hostname: &str) -> Output {
    let t0 = Instant::now();
    let out = chroot::run(
        bootcfg_cmd("apply", root, user_data, instance_id, hostname),
        APPLY_TIMEOUT,
    );
    eprintln!(
        "[e2e] bootcfg apply: {:?} in {:.1?}",
        out.status,
        t0.elapsed()
    );
    out
}

/// Starts `bootcfg apply` without waiting.
pub fn spawn_apply(root: &Root, user_data: &Path, instance_id: &str, hostname: &str) -> Running {
    chroot::spawn(bootcfg_cmd("apply", root, user_data, instance_id, hostname))
}

/// Asserts exit 0 and parses stdout as the `--output json` document.
pub fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "bootcfg apply failed: {}\n{}",
        out.argv,
        out.report()
    );
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "bootcfg --output json printed something that is not JSON ({e}):\n{}",
            out.report()
        )
    })
}

/// Every `"changed": <bool>` in the document, with the object it belongs to.
pub fn changed_flags(v: &Value) -> Vec<(bool, Value)> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<(bool, Value)>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Bool(b)) = m.get("changed") {
                    out.push((*b, v.clone()));
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

/// `dpkg-query -W -f '${Status} ${Version}' PKG` inside the root.
pub fn dpkg_query(root: &Root, pkg: &str) -> String {
    let out = chroot::run(
        chroot::in_root(
            root.path(),
            &["dpkg-query", "-W", "-f", "${Status} ${Version}", pkg],
        ),
        Duration::from_secs(60),
    );
    out.stdout.trim().to_owned()
}

/// Asserts `pkg` is fully installed in the root (by dpkg-query run inside it).
pub fn assert_installed(root: &Root, pkg: &str) {
    let s = dpkg_query(root, pkg);
    assert!(
        s.starts_with("install ok installed "),
        "{pkg} is not installed in the root: dpkg-query says {s:?}"
    );
}

/// The bytes of a keyring file, dearmored with gpg on the host if it is ASCII-armored (`.asc`).
pub fn dearmored(bytes: &[u8]) -> Vec<u8> {
    if !bytes.starts_with(b"-----BEGIN PGP") {
        return bytes.to_vec();
    }
    use std::io::Write;
    let mut c = std::process::Command::new("gpg")
        .args(["--batch", "--dearmor"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gpg --dearmor");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write");
    let o = c.wait_with_output().expect("gpg --dearmor");
    assert!(o.status.success());
    o.stdout
}

/// The `signed-by=` path of the one `deb` line in a sources file.
pub fn signed_by(list: &str) -> Option<String> {
    let line = list.lines().find(|l| l.trim_start().starts_with("deb "))?;
    let opts = line.split_once('[')?.1.split_once(']')?.0;
    opts.split_whitespace()
        .find_map(|o| o.strip_prefix("signed-by="))
        .map(str::to_owned)
}

/// Samples the processes chrooted into the root every 50 ms while `running` lives, returning every
/// distinct command line seen (to prove what did or did not run inside).
pub fn watch_processes(
    root: &Root,
    mut running: Running,
    timeout: Duration,
) -> (Output, Vec<String>) {
    let mut seen = std::collections::BTreeSet::new();
    let t0 = Instant::now();
    loop {
        for (_, comm, cmdline) in chroot::processes_in(root.path()) {
            seen.insert(if cmdline.is_empty() { comm } else { cmdline });
        }
        if running.child.try_wait().expect("try_wait").is_some() || t0.elapsed() > timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        running.wait(Duration::from_secs(5)),
        seen.into_iter().collect(),
    )
}

/// A fresh base root whose image already has a puppet.conf, and user-data beside it (the kill
/// tests' starting point).
pub fn image_root(user_data: &str) -> (Root, PathBuf) {
    let root = Root::fresh("base");
    root.write(
        "etc/puppet/puppet.conf",
        fixture("image-puppet.conf"),
        0o644,
    );
    let ud = write_user_data(&root, user_data);
    (root, ud)
}

/// Backup copies the shadow tools keep (`/etc/passwd-` …) hold the state before the *last* edit,
/// which an interrupted-then-resumed run may legitimately reach by a different path. Measured: two
/// uninterrupted runs of full.yaml leave every other file in /etc identical (ld.so.cache included).
pub fn volatile(path: &str) -> bool {
    path.ends_with('-')
}

/// Signal the run's processes: its process group and (apt gives dpkg a session of its own, and
/// maintainer scripts are dpkg's children) every process chrooted into the root; scanned twice
/// so a child forked during the first pass is caught too.
pub fn signal_run(pgid: rustix::process::Pid, root: &Root, sig: rustix::process::Signal) {
    let _ = rustix::process::kill_process_group(pgid, sig);
    for _ in 0..2 {
        for (pid, _, _) in chroot::processes_in(root.path()) {
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, sig);
            }
        }
    }
}
