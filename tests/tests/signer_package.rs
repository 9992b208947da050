//! The signer's Debian package for the Puppet CA host (issue 15): `signer/dist/build-deb.sh`
//! builds it from the already built debug binary; it is installed with apt into a fresh
//! debootstrap root, first without a `puppet` user (the fallback: root owns the directories, and
//! the postinst says so), then reinstalled over a local edit of the config once a `puppet` user
//! exists. Asserted: files and modes, the conffile (registered, kept across the reinstall), the
//! directories' owner and mode, the binary and the autosign wrapper running inside the root as
//! `puppet` and failing closed (bogus certnames, option-like certnames, an empty CSR, an unreadable
//! config), the units present, hardened and not enabled, `remove` keeping the config and the audit
//! log, and `purge` taking away everything the package added (the audit log included).
//!
//! Needs root, `sudo tests/setup.sh` (the roots, dpkg-dev) and `cargo build -p signer`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::chroot::{self, Output, in_root};
use testkit::rootfs::{self, Root};

const TIMEOUT: Duration = Duration::from_secs(600);
const DEB_IN_ROOT: &str = "/tmp/bootcfg-signer.deb";
const CONF: &str = "etc/bootcfg/signer.yaml";
const WRAPPER: &str = "usr/lib/bootcfg-signer/autosign";
const LOGDIR: &str = "var/log/bootcfg-signer";
const STATEDIR: &str = "var/lib/bootcfg-signer";
const AUDIT: &str = "var/log/bootcfg-signer/audit.jsonl";
const UNITS: [&str; 3] = [
    "bootcfg-signer-watch.service",
    "bootcfg-signer-sweep.service",
    "bootcfg-signer-sweep.timer",
];
/// Where `systemctl enable` would put each installable unit's symlink.
const WANTS: [&str; 2] = [
    "etc/systemd/system/multi-user.target.wants/bootcfg-signer-watch.service",
    "etc/systemd/system/timers.target.wants/bootcfg-signer-sweep.timer",
];
const UUID: &str = "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11";

/// Builds the .deb with the package's script; returns its path.
fn build_deb(out: &Path) -> PathBuf {
    let deb = testkit::bins::build_deb("signer", out);
    assert!(
        deb.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("bootcfg-signer_"),
        "{deb:?}"
    );
    deb
}

fn run(root: &Root, argv: &[&str]) -> Output {
    chroot::run(in_root(root.path(), argv), TIMEOUT)
}

/// apt and dpkg in the root, one heavy job at a time.
fn apt(root: &Root, argv: &[&str]) -> Output {
    let _heavy = chroot::heavy_lock();
    let o = run(root, argv);
    o.assert_ok();
    o
}

/// `argv` inside the root as `user` (`user:group`, else `user:user`, plus its groups), as Puppet
/// Server runs the hook.
fn run_as(root: &Root, user: &str, argv: &[&str]) -> Output {
    let (user, group) = user.split_once(':').unwrap_or((user, user));
    let mut full = vec![
        "setpriv",
        "--reuid",
        user,
        "--regid",
        group,
        "--init-groups",
        "--",
    ];
    full.extend_from_slice(argv);
    run(root, &full)
}

/// The wrapper, as `puppet`, with empty stdin: must refuse (exit 1), naming why.
fn assert_hook_refuses(root: &Root, certname: &str, why: &str) {
    let o = run_as(root, "puppet", &[&format!("/{WRAPPER}"), certname]);
    assert_eq!(
        o.code(),
        Some(1),
        "the autosign wrapper did not refuse {certname:?} (exit 0 would make Puppet sign it):\n{}",
        o.report()
    );
    assert!(
        o.stderr.contains(&format!("rejected {certname}")) && o.stderr.contains(why),
        "the refusal of {certname:?} does not say `{why}`:\n{}",
        o.report()
    );
    assert!(
        !o.stdout.contains("Usage") && !o.stdout.contains("signer 0"),
        "{certname:?} was taken as an option:\n{}",
        o.report()
    );
}

fn enabled_state(root: &Root, unit: &str) -> String {
    let o = Command::new("systemctl")
        .arg(format!("--root={}", root.path().display()))
        .args(["is-enabled", unit])
        .output()
        .expect("running systemctl --root is-enabled");
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn signer_deb_installs_fails_closed_keeps_local_config_and_purges_cleanly() {
    rootfs::require_root();
    rootfs::require_tool("systemctl");
    rootfs::require_tool("systemd-analyze");
    let out = tempfile::tempdir().unwrap();
    let deb = build_deb(out.path());

    // What the package holds, and which file is a conffile, before installing it anywhere.
    let listing = Command::new("dpkg-deb")
        .arg("--contents")
        .arg(&deb)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for (path, mode) in [
        ("./usr/bin/signer", "-rwxr-xr-x root/root"),
        ("./usr/lib/bootcfg-signer/autosign", "-rwxr-xr-x root/root"),
        ("./etc/bootcfg/signer.yaml", "-rw-r----- root/root"),
        ("./etc/logrotate.d/bootcfg-signer", "-rw-r--r-- root/root"),
        (
            "./lib/systemd/system/bootcfg-signer-watch.service",
            "-rw-r--r-- root/root",
        ),
        (
            "./lib/systemd/system/bootcfg-signer-sweep.service",
            "-rw-r--r-- root/root",
        ),
        (
            "./lib/systemd/system/bootcfg-signer-sweep.timer",
            "-rw-r--r-- root/root",
        ),
        (
            "./usr/share/doc/bootcfg-signer/README.Debian",
            "-rw-r--r-- root/root",
        ),
        ("./usr/share/man/man1/signer.1.gz", "-rw-r--r-- root/root"),
        (
            "./usr/share/bash-completion/completions/signer",
            "-rw-r--r-- root/root",
        ),
        (
            "./usr/share/zsh/vendor-completions/_signer",
            "-rw-r--r-- root/root",
        ),
        (
            "./usr/share/fish/vendor_completions.d/signer.fish",
            "-rw-r--r-- root/root",
        ),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.ends_with(path) && l.starts_with(mode)),
            "{path} is not in the package as {mode}:\n{listing}"
        );
    }
    let info = Command::new("dpkg-deb")
        .arg("--field")
        .arg(&deb)
        .args(["Package", "Depends", "Recommends"])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("Package: bootcfg-signer") && info.contains("libssl3"),
        "control fields: {info}"
    );
    // apt installs Recommends: puppetserver there would pull a JVM onto every install.
    assert!(!info.contains("Recommends"), "control fields: {info}");

    // The units: no unknown keys or sections (the only complaint systemd-analyze may have on this
    // host is the missing /usr/bin/signer), and hardened.
    let units_dir = tempfile::tempdir().unwrap();
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(units_dir.path())
        .status()
        .unwrap();
    assert!(x.success(), "dpkg-deb -x failed");
    let unit_paths: Vec<PathBuf> = UNITS
        .iter()
        .map(|u| units_dir.path().join("lib/systemd/system").join(u))
        .collect();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .args(&unit_paths)
        .output()
        .unwrap();
    let verify_err = String::from_utf8_lossy(&verify.stderr);
    let complaints: Vec<&str> = verify_err
        .lines()
        .filter(|l| !l.contains("Command /usr/bin/signer is not executable"))
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify:\n{verify_err}"
    );
    for svc in [&unit_paths[0], &unit_paths[1]] {
        let sec = Command::new("systemd-analyze")
            .args(["security", "--offline=yes"])
            .arg(svc)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&sec.stdout);
        let level: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level for {svc:?}:\n{text}"));
        assert!(
            level <= 2.5,
            "{svc:?}: exposure {level} (hardening lost?):\n{text}"
        );
    }

    // 1. Install into a root with no `puppet` user: root keeps the directories, and says so.
    let root = Root::fresh("base");
    assert!(
        !root.join("etc/passwd").exists() || !root.read_string("etc/passwd").contains("\npuppet:"),
        "the base root already has a puppet user"
    );
    std::fs::copy(&deb, root.join(DEB_IN_ROOT)).expect("copying the .deb into the root");
    let first = apt(&root, &["apt-get", "install", "-y", "-q", DEB_IN_ROOT]);
    assert_eq!(
        root.dpkg_installed()
            .get("bootcfg-signer")
            .map(String::as_str),
        Some(env!("CARGO_PKG_VERSION")),
        "dpkg does not list bootcfg-signer as installed"
    );
    let said = format!("{}{}", first.stdout, first.stderr);
    assert!(
        said.contains("no 'puppet' user") && said.contains("dpkg-reconfigure bootcfg-signer"),
        "the postinst did not explain the missing puppet user:\n{}",
        first.report()
    );
    for d in [LOGDIR, STATEDIR] {
        assert_eq!(root.owner(d), "root:root", "/{d} without a puppet user");
        assert_eq!(root.mode(d), 0o750, "/{d}");
    }
    assert_eq!(root.mode("usr/bin/signer"), 0o755);
    assert_eq!(root.mode(WRAPPER), 0o755);
    assert_eq!(root.mode(CONF), 0o640);
    assert_eq!(root.owner(CONF), "root:root");
    let wrapper = root.read_string(WRAPPER);
    assert!(
        wrapper.starts_with("#!/bin/sh\n")
            && wrapper.contains(
                "exec /usr/bin/signer --config /etc/bootcfg/signer.yaml autosign -- \"$1\""
            ),
        "unexpected wrapper:\n{wrapper}"
    );
    let conffiles = run(
        &root,
        &["dpkg-query", "-W", "-f=${Conffiles}", "bootcfg-signer"],
    );
    conffiles.assert_ok();
    assert!(
        conffiles.stdout.contains("/etc/bootcfg/signer.yaml "),
        "/etc/bootcfg/signer.yaml is not a conffile: {:?}",
        conffiles.stdout
    );

    // Neither way of running the sweep is enabled by the package.
    for link in WANTS {
        assert!(!root.exists(link), "/{link} exists after install");
    }
    for unit in ["bootcfg-signer-watch.service", "bootcfg-signer-sweep.timer"] {
        assert_eq!(enabled_state(&root, unit), "disabled", "{unit}");
    }
    for unit in UNITS {
        let text = root.read_string(&format!("lib/systemd/system/{unit}"));
        if unit.ends_with(".service") {
            for line in [
                "User=puppet",
                "ProtectSystem=strict",
                "NoNewPrivileges=yes",
                "LogsDirectory=bootcfg-signer",
                "StateDirectory=bootcfg-signer",
            ] {
                assert!(text.lines().any(|l| l == line), "{unit} lacks {line}");
            }
        }
        let exec = text.lines().find(|l| l.starts_with("ExecStart="));
        match unit {
            "bootcfg-signer-watch.service" => assert_eq!(
                exec,
                Some(
                    "ExecStart=/usr/bin/signer --config /etc/bootcfg/signer.yaml sweep --watch --interval 5s"
                )
            ),
            "bootcfg-signer-sweep.service" => assert_eq!(
                exec,
                Some("ExecStart=/usr/bin/signer --config /etc/bootcfg/signer.yaml sweep")
            ),
            _ => assert!(text.contains("Conflicts=bootcfg-signer-watch.service")),
        }
    }
    let rotate = root.read_string("etc/logrotate.d/bootcfg-signer");
    assert!(
        rotate.contains("/var/log/bootcfg-signer/audit.jsonl {")
            && rotate.contains("su puppet puppet"),
        "{rotate}"
    );

    // The binary runs inside the root (its own libraries); the shipped config loads.
    // the man page documents the subcommands; the completions know them
    let man = run(&root, &["zcat", "/usr/share/man/man1/signer.1.gz"]);
    assert!(
        man.status.success()
            && man.stdout.contains(".TH signer")
            && man.stdout.contains("autosign"),
        "man page:\n{}",
        man.report()
    );
    assert!(
        root.read_string("usr/share/bash-completion/completions/signer")
            .contains("check-config")
    );
    let v = run(&root, &["signer", "--version"]);
    v.assert_ok();
    assert_eq!(
        v.stdout.trim(),
        format!("signer {}", env!("CARGO_PKG_VERSION")),
        "{}",
        v.report()
    );

    // 2. A local edit, a puppet user, then the same package again (as an upgrade would be).
    let edited = root.read_string(CONF).replace("  hook: 5s ", "  hook: 4s ")
        + "# local edit by the signer_package test\n";
    assert!(
        edited.contains("  hook: 4s "),
        "the config has no `hook: 5s`"
    );
    std::fs::write(root.join(CONF), &edited).unwrap();
    run(
        &root,
        &[
            "useradd",
            "--system",
            "--user-group",
            "--home-dir",
            "/var/lib/puppet",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "puppet",
        ],
    )
    .assert_ok();
    let again = apt(
        &root,
        &[
            "apt-get",
            "install",
            "--reinstall",
            "-y",
            "-q",
            "-o",
            "Dpkg::Options::=--force-confold",
            DEB_IN_ROOT,
        ],
    );
    assert!(
        again.stdout.contains("bootcfg-signer"),
        "apt did not reinstall the package:\n{}",
        again.report()
    );
    assert_eq!(
        root.read_string(CONF),
        edited,
        "the reinstall did not keep the local edit of /{CONF}"
    );
    assert_eq!(root.mode(CONF), 0o640);
    assert_eq!(root.owner(CONF), "root:puppet", "/{CONF}");
    for d in [LOGDIR, STATEDIR] {
        assert_eq!(root.owner(d), "puppet:puppet", "/{d}");
        assert_eq!(root.mode(d), 0o750, "/{d}");
    }

    // 3. As Puppet Server runs it: the config loads, and the hook fails closed.
    let check = run_as(
        &root,
        "puppet",
        &[
            "signer",
            "--config",
            "/etc/bootcfg/signer.yaml",
            "check-config",
        ],
    );
    check.assert_ok();
    assert!(
        check.stdout.contains("is valid")
            && check
                .stdout
                .contains("registry: file:///etc/bootcfg/registry-not-configured"),
        "{}",
        check.report()
    );
    root.write("tmp/bad.yaml", "registry: nowhere\n", 0o644);
    let bad = run(
        &root,
        &["signer", "--config", "/tmp/bad.yaml", "check-config"],
    );
    assert_eq!(
        bad.code(),
        Some(2),
        "a broken config passed:\n{}",
        bad.report()
    );

    assert_hook_refuses(
        &root,
        "not-a-certname",
        "is neither a lowercase hyphenated UUID",
    );
    // Certnames that look like options (Puppet allows `-` in certnames): `signer autosign --help`
    // would print help and exit 0, which Puppet takes as "sign".
    for opt in ["--help", "-h", "--version", "-V"] {
        assert_hook_refuses(&root, opt, "is neither a lowercase hyphenated UUID");
    }
    assert_hook_refuses(&root, UUID, "input is not a PEM certificate request");
    // Someone outside the puppet group cannot read the config: refused as a config error.
    let nobody = run_as(&root, "nobody:nogroup", &[&format!("/{WRAPPER}"), UUID]);
    assert_eq!(nobody.code(), Some(2), "{}", nobody.report());
    assert!(
        nobody.stderr.contains("cannot read the signer config"),
        "{}",
        nobody.report()
    );
    // Each refusal is in the audit log, written by puppet; nothing approved.
    assert_eq!(root.owner(AUDIT), "puppet:puppet");
    assert_eq!(root.mode(AUDIT), 0o640);
    let audit = root.read_string(AUDIT);
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
        .collect();
    assert_eq!(lines.len(), 6, "audit log:\n{audit}");
    assert!(
        lines.iter().all(|l| l["decision"] == "rejected"),
        "audit log:\n{audit}"
    );

    // The operator enables one way; purge must take that away too.
    let en = Command::new("systemctl")
        .arg(format!("--root={}", root.path().display()))
        .args(["enable", "bootcfg-signer-sweep.timer"])
        .output()
        .unwrap();
    assert!(
        en.status.success(),
        "{}",
        String::from_utf8_lossy(&en.stderr)
    );
    assert!(
        root.exists(WANTS[1]),
        "systemctl enable made no /{}",
        WANTS[1]
    );
    assert_eq!(
        enabled_state(&root, "bootcfg-signer-sweep.timer"),
        "enabled"
    );

    // 4. remove keeps the config and the audit log; purge takes everything the package added.
    apt(&root, &["apt-get", "remove", "-y", "-q", "bootcfg-signer"]);
    assert!(
        !root.exists("usr/bin/signer"),
        "remove left /usr/bin/signer"
    );
    assert!(!root.exists(WRAPPER), "remove left /{WRAPPER}");
    assert_eq!(root.read_string(CONF), edited, "remove changed /{CONF}");
    assert_eq!(
        root.read_string(AUDIT),
        audit,
        "remove changed the audit log"
    );
    apt(&root, &["apt-get", "purge", "-y", "-q", "bootcfg-signer"]);
    assert!(
        !root.dpkg_statuses().contains_key("bootcfg-signer")
            || root.dpkg_statuses()["bootcfg-signer"].contains("not-installed"),
        "dpkg still knows bootcfg-signer: {:?}",
        root.dpkg_statuses().get("bootcfg-signer")
    );
    for gone in [
        CONF,
        "etc/bootcfg",
        "etc/logrotate.d/bootcfg-signer",
        "usr/lib/bootcfg-signer",
        "usr/share/doc/bootcfg-signer",
        "lib/systemd/system/bootcfg-signer-watch.service",
        "lib/systemd/system/bootcfg-signer-sweep.service",
        "lib/systemd/system/bootcfg-signer-sweep.timer",
        LOGDIR,
        STATEDIR,
        WANTS[0],
        WANTS[1],
    ] {
        assert!(!root.exists(gone), "purge left /{gone}");
    }
}
