//! The agent's Debian package (issue 6): `bootcfg/dist/build-deb.sh` builds it from the already
//! built debug binary (no extra cargo build); it is installed into a fresh debootstrap root with
//! apt (so its Depends resolve from the mirror, as on an image being baked), and then the unit is
//! enabled, `bootcfg --version` runs inside the root, the man page and completions are there, and
//! a purge takes the unit's enablement away again.
//!
//! Needs root, `sudo tests/setup.sh` (the roots, dpkg-dev) and `cargo build --workspace`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::chroot::{self, in_root};
use testkit::rootfs::Root;

const TIMEOUT: Duration = Duration::from_secs(600);
const WANTS: &str = "etc/systemd/system/multi-user.target.wants/bootcfg.service";

/// Builds the .deb with the package's script; returns its path.
fn build_deb(out: &Path) -> PathBuf {
    testkit::bins::build_deb("bootcfg", out)
}

#[test]
fn deb_installs_into_a_debian_root_with_its_unit_enabled() {
    let out = tempfile::tempdir().unwrap();
    let deb = build_deb(out.path());

    // What the package holds, before installing it anywhere.
    let listing = Command::new("dpkg-deb")
        .arg("--contents")
        .arg(&deb)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for path in [
        "./usr/bin/bootcfg",
        "./lib/systemd/system/bootcfg.service",
        "./usr/share/man/man1/bootcfg.1.gz",
        "./usr/share/bash-completion/completions/bootcfg",
        "./usr/share/zsh/vendor-completions/_bootcfg",
        "./usr/share/fish/vendor_completions.d/bootcfg.fish",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} is not in the package:\n{listing}"
        );
    }
    let info = Command::new("dpkg-deb")
        .arg("--field")
        .arg(&deb)
        .args(["Package", "Depends"])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("Package: bootcfg") && info.contains("libssl3"),
        "control fields: {info}"
    );

    let root = Root::fresh("base");
    assert!(
        !root.exists(WANTS),
        "the base root already has the unit enabled"
    );
    std::fs::copy(&deb, root.join("tmp/bootcfg.deb")).expect("copying the .deb into the root");
    {
        let _heavy = chroot::heavy_lock();
        chroot::run(
            in_root(
                root.path(),
                &["apt-get", "install", "-y", "-q", "/tmp/bootcfg.deb"],
            ),
            TIMEOUT,
        )
        .assert_ok();
    }
    assert_eq!(
        root.dpkg_installed().get("bootcfg").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION")),
        "dpkg does not list bootcfg as installed"
    );

    // Enabled: the wants symlink points at the packaged unit (resolved inside the root).
    let link = std::fs::read_link(root.join(WANTS))
        .unwrap_or_else(|e| panic!("/{WANTS} is not a symlink ({e}): the unit is not enabled"));
    assert!(
        link.ends_with("bootcfg.service"),
        "/{WANTS} -> {}",
        link.display()
    );
    let unit = root.read_string(&link.display().to_string());
    assert!(
        unit.contains("ExecStart=/usr/bin/bootcfg run")
            && unit.contains("WantedBy=multi-user.target"),
        "unexpected unit:\n{unit}"
    );

    // The binary runs inside the root, with the root's own libraries.
    let v = chroot::run(in_root(root.path(), &["bootcfg", "--version"]), TIMEOUT);
    v.assert_ok();
    assert_eq!(
        v.stdout.trim(),
        format!("bootcfg {}", env!("CARGO_PKG_VERSION")),
        "{}",
        v.report()
    );
    let help = chroot::run(
        in_root(root.path(), &["bootcfg", "validate", "--help"]),
        TIMEOUT,
    );
    help.assert_ok();

    // Man page and completions.
    let man = chroot::run(
        in_root(root.path(), &["zcat", "/usr/share/man/man1/bootcfg.1.gz"]),
        TIMEOUT,
    );
    man.assert_ok();
    assert!(
        man.stdout.contains(".TH bootcfg") || man.stdout.contains(".TH BOOTCFG"),
        "not a man page:\n{}",
        man.stdout
    );
    assert!(
        root.read_string("usr/share/bash-completion/completions/bootcfg")
            .contains("_bootcfg")
    );
    assert!(
        root.read_string("usr/share/zsh/vendor-completions/_bootcfg")
            .starts_with("#compdef bootcfg")
    );
    assert!(
        root.read_string("usr/share/fish/vendor_completions.d/bootcfg.fish")
            .contains("complete -c bootcfg")
    );

    // Purge: the binary and the enablement go.
    {
        let _heavy = chroot::heavy_lock();
        chroot::run(
            in_root(root.path(), &["apt-get", "purge", "-y", "-q", "bootcfg"]),
            TIMEOUT,
        )
        .assert_ok();
    }
    assert!(
        !root.exists("usr/bin/bootcfg"),
        "purge left /usr/bin/bootcfg"
    );
    assert!(!root.exists(WANTS), "purge left /{WANTS}");
}
