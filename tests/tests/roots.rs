//! Self-test of the root/namespace/apt-repo harness, without bootcfg: a fresh base root trusts the
//! harness's signed repo through a keyring of its own and installs the dummy package with apt.

use std::time::Duration;
use testkit::aptrepo::{AptRepo, DUMMY_FILE, DUMMY_PACKAGE, SUITE};
use testkit::chroot::{in_root, processes_in, run};
use testkit::rootfs::Root;

#[test]
fn signed_repo_installs_into_a_fresh_root_in_namespaces() {
    let repo = AptRepo::shared();
    let root = Root::fresh("base");
    root.write("etc/apt/keyrings/harness.gpg", repo.key_bytes(), 0o644);
    root.write(
        "etc/apt/sources.list.d/harness.list",
        format!(
            "deb [signed-by=/etc/apt/keyrings/harness.gpg] {} {SUITE} main\n",
            repo.url()
        ),
        0o644,
    );
    let _heavy = testkit::chroot::heavy_lock();
    let upd = run(
        in_root(root.path(), &["apt-get", "update", "-q"]),
        Duration::from_secs(300),
    );
    upd.assert_ok();
    assert!(
        !upd.stdout.contains("NO_PUBKEY") && !upd.stderr.contains("W:"),
        "{}",
        upd.report()
    );
    run(
        in_root(
            root.path(),
            &["apt-get", "install", "-y", "-q", DUMMY_PACKAGE],
        ),
        Duration::from_secs(300),
    )
    .assert_ok();
    assert!(root.dpkg_installed().contains_key(DUMMY_PACKAGE));
    assert!(root.exists(DUMMY_FILE));
    // The namespace is gone: nothing chrooted into the root survives, nothing is mounted there.
    assert!(processes_in(root.path()).is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    assert!(
        !mounts.contains(&root.path().display().to_string()),
        "a mount leaked: {mounts}"
    );
}

#[test]
fn a_daemon_started_in_the_root_dies_with_the_namespace() {
    let root = Root::fresh("base");
    let out = run(
        in_root(
            root.path(),
            &["sh", "-c", "sleep 300 & hostname ns-test; echo started"],
        ),
        Duration::from_secs(30),
    );
    out.assert_ok();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        processes_in(root.path()).is_empty(),
        "{:?}",
        processes_in(root.path())
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_ne!(
        host.trim(),
        "ns-test",
        "the hostname change leaked to the host"
    );
}
