//! End-to-end: `bootcfg apply --root` with real user-data into fresh copies of a debootstrap'd
//! Debian bookworm root (`tests/setup-roots.sh`), real apt against the Debian mirror and a signed
//! repo on 127.0.0.1, real dpkg, debconf and Puppet packages. Needs root; `sudo tests/setup.sh`
//! first. Each test gets its own root copy; apt-heavy runs are serialised (2 cores).
//!
//!   sudo -E cargo test -p bootcfg --test e2e_root -- --nocapture

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::*;
use testkit::aptrepo::{AptRepo, DUMMY_FILE, DUMMY_PACKAGE, DUMMY_VERSION};
use testkit::chroot::{self, heavy_lock, in_root, processes_in};
use testkit::rootfs::{Root, manifest_diff};

const LIST: &str = "/etc/apt/sources.list.d/bootcfg-local.list";

fn timed<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let r = f();
    eprintln!("[e2e] {name}: {:.1?}", t0.elapsed());
    r
}

/// `bootcfg apply` under the apt-heavy lock, timed; panics unless it succeeds with JSON output.
fn apply_ok(
    label: &str,
    root: &Root,
    ud: &std::path::Path,
    id: &str,
    host: &str,
) -> serde_json::Value {
    let _heavy = heavy_lock();
    ok_json(&timed(label, || apply(root, ud, id, host)))
}

#[test]
fn local_signed_repo_is_trusted_through_its_own_keyring_only() {
    let repo = AptRepo::shared();
    let root = Root::fresh("base");
    let trusted_before = root.list_dir("etc/apt/trusted.gpg.d");
    let ud = write_user_data(&root, &user_data("local-repo.yaml", Some(repo)));
    apply_ok("local repo apply", &root, &ud, "i-e2e-repo", "e2e-repo");

    // The source line names its own keyring…
    let list = root.read_string(LIST);
    let lines: Vec<&str> = list
        .lines()
        .filter(|l| l.trim_start().starts_with("deb"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{LIST} should hold one source line:\n{list}"
    );
    assert!(
        lines[0].contains(&repo.url()) && lines[0].contains(" bootcfg-test main"),
        "{list}"
    );
    let keyring =
        signed_by(&list).unwrap_or_else(|| panic!("no signed-by= on the source line:\n{list}"));
    assert!(
        keyring.starts_with("/etc/apt/keyrings/"),
        "keyring {keyring} is not under /etc/apt/keyrings/"
    );
    assert_eq!(root.mode(&keyring) & 0o777, 0o644, "keyring mode");
    // …which holds exactly the repo's key (dearmored, whatever the file format)…
    assert_eq!(
        dearmored(&root.read(&keyring)),
        repo.key_bytes(),
        "{keyring} is not the repo's key"
    );
    // …and nothing was added to apt's global trust.
    assert_eq!(
        root.list_dir("etc/apt/trusted.gpg.d"),
        trusted_before,
        "something was added to trusted.gpg.d"
    );
    assert!(
        !root.exists("etc/apt/trusted.gpg"),
        "/etc/apt/trusted.gpg was created"
    );

    // apt verified the repo's signature and installed the package.
    assert_eq!(
        dpkg_query(&root, DUMMY_PACKAGE),
        format!("install ok installed {DUMMY_VERSION}")
    );
    assert!(root.exists(DUMMY_FILE));
}

#[test]
fn debconf_preseed_takes_effect_at_install_time() {
    let root = Root::fresh("base");
    assert!(
        !root.dpkg_installed().contains_key("locales"),
        "base root already has locales"
    );
    let ud = write_user_data(&root, &user_data("debconf-locales.yaml", None));
    apply_ok("debconf apply", &root, &ud, "i-e2e-debconf", "e2e-debconf");

    assert_installed(&root, "locales");
    // The package's postinst read the preseeded answers: the default locale and the generated one.
    let default_locale = root.read_string("etc/default/locale");
    assert!(
        default_locale
            .lines()
            .any(|l| l.trim() == "LANG=de_DE.UTF-8"),
        "/etc/default/locale does not set LANG=de_DE.UTF-8:\n{default_locale}"
    );
    let locale_gen = root.read_string("etc/locale.gen");
    assert!(
        locale_gen.lines().any(|l| l.trim() == "de_DE.UTF-8 UTF-8"),
        "/etc/locale.gen:\n{locale_gen}"
    );
    let la = chroot::run(
        in_root(root.path(), &["locale", "-a"]),
        Duration::from_secs(60),
    );
    la.assert_ok();
    assert!(
        la.stdout.lines().any(|l| l == "de_DE.utf8"),
        "locale -a: {}",
        la.stdout
    );
    // And debconf's database holds them.
    let q = root
        .debconf("locales/default_environment_locale")
        .expect("debconf entry");
    assert_eq!(q.get("Value").map(String::as_str), Some("de_DE.UTF-8"));
    let q = root
        .debconf("locales/locales_to_be_generated")
        .expect("debconf entry");
    assert_eq!(
        q.get("Value").map(String::as_str),
        Some("de_DE.UTF-8 UTF-8")
    );
}

#[test]
fn hello_is_installed_from_the_debian_mirror() {
    let root = Root::fresh("base");
    assert!(!root.dpkg_installed().contains_key("hello"));
    let ud = write_user_data(&root, &user_data("hello.yaml", None));
    apply_ok("hello apply", &root, &ud, "i-e2e-hello", "e2e-hello");
    assert_installed(&root, "hello");
    let run = chroot::run(in_root(root.path(), &["hello"]), Duration::from_secs(30));
    run.assert_ok();
    assert_eq!(run.stdout.trim(), "Hello, world!");

    // `bootcfg status` shows that run's result.
    let st = status(&root);
    let v = ok_json(&st);
    assert_eq!(v["command"], "apply", "{v:#}");
    assert_eq!(v["outcome"], "success", "{v:#}");
    assert_eq!(v["instance_id"], "i-e2e-hello", "{v:#}");
}

/// What `plan` must leave alone: configuration, package and debconf databases, bootcfg's state.
const PLAN_STATE: &[&str] = &[
    "etc",
    "var/lib/dpkg",
    "var/lib/apt",
    "var/cache/debconf",
    "var/lib/puppet",
    "var/lib/bootcfg",
];

#[test]
fn plan_shows_every_step_and_changes_nothing() {
    let repo = AptRepo::shared();
    let (root, ud) = image_root(&user_data("full.yaml", Some(repo)));
    let before = root.manifest(PLAN_STATE);
    let out = {
        let _heavy = heavy_lock();
        timed("full plan", || {
            chroot::run(
                bootcfg_cmd("plan", &root, &ud, "i-e2e-plan", "e2e-plan"),
                APPLY_TIMEOUT,
            )
        })
    };
    let v = ok_json(&out);
    let diff = manifest_diff(&before, &root.manifest(PLAN_STATE));
    assert!(
        diff.is_empty(),
        "plan changed the root:\n{}",
        diff.join("\n")
    );

    // Every file it would write and every command it would run, in module order.
    let flags = changed_flags(&v);
    let steps: Vec<&serde_json::Value> = flags.iter().map(|(_, s)| s).collect();
    let writes = |p: &str| steps.iter().any(|s| s["kind"] == "write" && s["path"] == p);
    let runs = |needle: &str| {
        steps.iter().any(|s| {
            s["kind"] == "run" && s["command"].as_str().is_some_and(|c| c.contains(needle))
        })
    };
    for p in [
        LIST,
        "/etc/puppet/puppet.conf",
        "/etc/puppet/csr_attributes.yaml",
        "/var/lib/puppet/ssl/certs/ca.pem",
    ] {
        assert!(writes(p), "plan does not show the write of {p}: {v:#}");
    }
    assert!(
        runs("debconf-set-selections"),
        "plan does not show debconf-set-selections: {v:#}"
    );
    assert!(
        runs("install hello bootcfg-test-dummy locales"),
        "plan does not show the package install: {v:#}"
    );
    assert!(
        runs("install puppet-agent"),
        "plan does not show the puppet-agent install: {v:#}"
    );
    // The diff against the image's puppet.conf is shown, and the secret is not.
    let conf = steps
        .iter()
        .find(|s| s["path"] == "/etc/puppet/puppet.conf")
        .expect("puppet.conf step");
    let diff = conf["diff"].as_str().unwrap_or_default();
    assert!(
        diff.contains("+server = puppet.bootcfg-e2e.invalid")
            || diff.contains("+certname = i-e2e-plan"),
        "no diff for puppet.conf: {conf:#}"
    );
    assert!(
        !out.stdout.contains("e2e-challenge-0123456789abcdef"),
        "plan output shows the challenge password"
    );
    assert!(
        !out.stderr.contains("e2e-challenge-0123456789abcdef"),
        "plan log shows the challenge password"
    );
}

#[test]
fn puppet_conf_is_merged_and_ca_and_csr_attributes_are_written() {
    let root = Root::fresh("base");
    // The image already has a puppet.conf with a comment and settings of its own.
    root.write(
        "etc/puppet/puppet.conf",
        fixture("image-puppet.conf"),
        0o644,
    );
    let ud = write_user_data(&root, &user_data("puppet.yaml", None));
    let running = {
        let _heavy = heavy_lock();
        // Like every EC2 image (and unlike minbase) it has systemd, so enabling can be checked.
        timed("installing systemd into the image", || {
            chroot::run(
                in_root(
                    root.path(),
                    &[
                        "apt-get",
                        "install",
                        "-y",
                        "-q",
                        "--no-install-recommends",
                        "systemd",
                    ],
                ),
                APPLY_TIMEOUT,
            )
            .assert_ok();
        });
        let t0 = Instant::now();
        let r = watch_processes(
            &root,
            spawn_apply(&root, &ud, "i-0e2e0puppet", "e2e-puppet"),
            APPLY_TIMEOUT,
        );
        eprintln!("[e2e] puppet apply: {:.1?}", t0.elapsed());
        r
    };
    let (out, seen) = running;
    ok_json(&out);

    assert_installed(&root, "puppet-agent");
    // Merged, not rewritten: the comment and the image's other keys and sections survive.
    let text = root.read_string("etc/puppet/puppet.conf");
    assert!(
        text.contains(
            "# Baked into the image by the platform team: this comment must survive the merge."
        ),
        "the image's comment was lost:\n{text}"
    );
    let conf = root.ini("etc/puppet/puppet.conf");
    let main = &conf["main"];
    assert_eq!(
        main.get("server").map(String::as_str),
        Some("puppet.bootcfg-e2e.invalid"),
        "{text}"
    );
    assert_eq!(
        main.get("certname").map(String::as_str),
        Some("i-0e2e0puppet.nodes.bootcfg-e2e.invalid"),
        "{text}"
    );
    assert_eq!(
        main.get("logdir").map(String::as_str),
        Some("/var/log/puppet"),
        "{text}"
    );
    assert_eq!(
        conf["agent"].get("runinterval").map(String::as_str),
        Some("4h"),
        "{text}"
    );
    assert_eq!(
        conf["agent"]
            .get("http_keepalive_timeout")
            .map(String::as_str),
        Some("0"),
        "{text}"
    );
    assert!(!text.contains("%i"), "%i was not substituted:\n{text}");

    // The CA certificate, world-readable.
    let ca = "var/lib/puppet/ssl/certs/ca.pem";
    assert_eq!(root.read_string(ca).trim(), ca_pem().trim(), "{ca} content");
    assert_eq!(root.mode(ca) & 0o777, 0o644, "{ca} mode");

    // The CSR attributes hold a secret (the challenge): 0600, %i expanded in values.
    let csr = "etc/puppet/csr_attributes.yaml";
    assert_eq!(
        root.mode(csr) & 0o777,
        0o600,
        "{csr} must be 0600: it holds the challenge password"
    );
    let v = root.yaml(csr);
    assert_eq!(
        v["custom_attributes"]["1.2.840.113549.1.9.7"], "e2e-challenge-0123456789abcdef",
        "{v}"
    );
    assert_eq!(
        v["extension_requests"]["pp_instance_id"], "i-0e2e0puppet",
        "{v}"
    );
    assert_eq!(v["extension_requests"]["pp_role"], "e2e-web", "{v}");

    // The service was not started in a chroot: no puppet agent ever ran inside the root.
    let agents: Vec<&String> = seen
        .iter()
        .filter(|c| c.contains("puppet agent") || c.contains("puppet/agent"))
        .collect();
    assert!(
        agents.is_empty(),
        "a puppet agent ran inside the chroot: {agents:?}"
    );
    // Enabled for the next (real) boot: the systemd wants-link for the unit the package ships.
    let unit = [
        "lib/systemd/system/puppet.service",
        "usr/lib/systemd/system/puppet.service",
    ]
    .into_iter()
    .find(|u| root.exists(u))
    .expect("puppet-agent ships puppet.service");
    let wants = root.list_dir("etc/systemd/system/multi-user.target.wants");
    assert!(
        wants.iter().any(|w| w == "puppet.service"),
        "puppet.service ({unit}) is not enabled: /etc/systemd/system/multi-user.target.wants holds {wants:?}"
    );
}

/// /etc and the dpkg database: what a rerun must leave byte-for-byte alone.
const STATE: &[&str] = &["etc", "var/lib/dpkg/status"];

#[test]
fn a_rerun_changes_nothing() {
    let repo = AptRepo::shared();
    let (root, ud) = image_root(&user_data("full.yaml", Some(repo)));
    let _heavy = heavy_lock();
    let first = ok_json(&timed("full apply (first)", || {
        apply(&root, &ud, "i-e2e-rerun", "e2e-rerun")
    }));
    let flags = changed_flags(&first);
    assert!(
        flags.iter().any(|(c, _)| *c),
        "the first run reports no change at all: {first:#}"
    );

    let before = root.manifest(STATE);
    let second_out = timed("full apply (rerun)", || {
        apply(&root, &ud, "i-e2e-rerun", "e2e-rerun")
    });
    let second = ok_json(&second_out);
    let after = root.manifest(STATE);

    let diff = manifest_diff(&before, &after);
    assert!(
        diff.is_empty(),
        "the rerun changed files:\n{}",
        diff.join("\n")
    );
    let flags = changed_flags(&second);
    assert!(
        !flags.is_empty(),
        "the rerun's JSON has no per-step `changed` flags to check: {second:#}"
    );
    let changed: Vec<&serde_json::Value> =
        flags.iter().filter(|(c, _)| *c).map(|(_, v)| v).collect();
    assert!(
        changed.is_empty(),
        "the rerun reports changes: {changed:#?}"
    );
}

/// The parts of the end state bootcfg is responsible for, compared between two roots.
fn end_state(root: &Root) -> BTreeMap<String, String> {
    let mut s = BTreeMap::new();
    for (pkg, status) in root.dpkg_statuses() {
        s.insert(format!("dpkg {pkg}"), status);
    }
    for (pkg, ver) in root.dpkg_installed() {
        s.insert(format!("version {pkg}"), ver);
    }
    for path in [
        LIST,
        "/etc/puppet/puppet.conf",
        "/etc/puppet/csr_attributes.yaml",
        "/var/lib/puppet/ssl/certs/ca.pem",
        "/etc/default/locale",
        "/etc/locale.gen",
        DUMMY_FILE,
    ] {
        let v = if root.exists(path) {
            format!(
                "{:o} {}",
                root.mode(path),
                String::from_utf8_lossy(&root.read(path))
            )
        } else {
            "missing".to_owned()
        };
        s.insert(path.to_owned(), v);
    }
    if let Some(k) = signed_by(&root.read_string(LIST)) {
        s.insert(format!("keyring {k}"), hex_of(&root.read(&k)));
    }
    for q in [
        "locales/default_environment_locale",
        "locales/locales_to_be_generated",
    ] {
        s.insert(
            format!("debconf {q}"),
            format!(
                "{:?}",
                root.debconf(q).and_then(|e| e.get("Value").cloned())
            ),
        );
    }
    s
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A fresh base root whose image already has a puppet.conf, and user-data beside it.
fn image_root(user_data: &str) -> (Root, std::path::PathBuf) {
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
fn volatile(path: &str) -> bool {
    path.ends_with('-')
}

/// Where the run is killed: the first dpkg process inside the root whose command line matches.
struct KillPoint {
    name: &'static str,
    /// Called with the root and a dpkg command line running inside it.
    matches: fn(&Root, &str) -> bool,
}

/// Whether this dpkg run handles puppet-agent: named on its command line, or (for long package
/// lists) among the links apt puts in the `--recursive` directory it passes.
fn dpkg_handles_puppet_agent(root: &Root, cmd: &str) -> bool {
    if cmd.contains("puppet-agent_") {
        return true;
    }
    let Some(dir) = cmd
        .split_whitespace()
        .find(|a| a.starts_with("/tmp/apt-dpkg-install-"))
    else {
        return false;
    };
    root.list_dir(dir)
        .iter()
        .any(|n| n.contains("puppet-agent_"))
}

const KILL_POINTS: &[KillPoint] = &[
    KillPoint {
        name: "dpkg unpacking the requested packages",
        matches: |_, cmd| cmd.contains("--unpack"),
    },
    KillPoint {
        name: "dpkg configuring (postinsts running)",
        matches: |_, cmd| cmd.contains("--configure"),
    },
    KillPoint {
        name: "dpkg unpacking puppet-agent (puppet module, before puppet.conf is merged)",
        matches: |root, cmd| cmd.contains("--unpack") && dpkg_handles_puppet_agent(root, cmd),
    },
];

/// The end state and /etc manifest of an uninterrupted run of full.yaml, computed once per test
/// binary (the root itself is dropped).
type Reference = (BTreeMap<String, String>, BTreeMap<String, String>);

fn strip_volatile(m: BTreeMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().filter(|(k, _)| !volatile(k)).collect()
}

fn reference() -> &'static Reference {
    static REF: std::sync::OnceLock<Reference> = std::sync::OnceLock::new();
    REF.get_or_init(|| {
        let (root, ud) = image_root(&user_data("full.yaml", Some(AptRepo::shared())));
        ok_json(&timed("reference apply (uninterrupted)", || {
            apply(&root, &ud, "i-e2e-kill", "e2e-kill")
        }));
        (end_state(&root), strip_volatile(root.manifest(&["etc"])))
    })
}

#[test]
fn kill_9_while_dpkg_unpacks_then_a_rerun_converges() {
    kill_9_then_rerun_converges(&KILL_POINTS[0]);
}

#[test]
fn kill_9_while_postinsts_run_then_a_rerun_converges() {
    kill_9_then_rerun_converges(&KILL_POINTS[1]);
}

#[test]
fn kill_9_while_puppet_agent_unpacks_then_a_rerun_converges() {
    kill_9_then_rerun_converges(&KILL_POINTS[2]);
}

/// Starts apply, SIGKILLs the whole namespace once dpkg matches `point` inside the root, checks
/// that the work was really interrupted, reruns, and compares with an uninterrupted run.
fn kill_9_then_rerun_converges(point: &KillPoint) {
    let _heavy = heavy_lock();
    let (want, want_etc) = reference();
    let ud_text = user_data("full.yaml", Some(AptRepo::shared()));
    let (root, ud) = image_root(&ud_text);
    let mut running = spawn_apply(&root, &ud, "i-e2e-kill", "e2e-kill");
    let t0 = Instant::now();
    let victim = loop {
        if let Some(p) = processes_in(root.path())
            .into_iter()
            .find(|(_, comm, cmd)| comm == "dpkg" && (point.matches)(&root, cmd))
        {
            break p;
        }
        if let Some(st) = running.child.try_wait().expect("try_wait") {
            let out = running.wait(Duration::from_secs(5));
            panic!(
                "[{}] bootcfg finished ({st:?}) before that dpkg run happened in the root:\n{}",
                point.name,
                out.report()
            );
        }
        assert!(
            t0.elapsed() < APPLY_TIMEOUT,
            "[{}] never reached",
            point.name
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300)); // well inside dpkg's work
    eprintln!(
        "[e2e] [{}] SIGKILL after {:.1?}, while running: {}",
        point.name,
        t0.elapsed(),
        victim.2
    );
    running.kill_all();
    let killed = running.wait(Duration::from_secs(30));
    assert!(
        !killed.status.success(),
        "[{}] the killed run reported success: {}",
        point.name,
        killed.report()
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        processes_in(root.path()).is_empty(),
        "[{}] processes survived the kill: {:?}",
        point.name,
        processes_in(root.path())
    );
    // The kill really interrupted the work: the root is not in the reference's end state.
    assert_ne!(
        &end_state(&root),
        want,
        "[{}] the kill came too late to interrupt anything",
        point.name
    );

    // The rerun converges to the uninterrupted run's end state.
    let rerun = timed("apply after kill -9", || {
        apply(&root, &ud, "i-e2e-kill", "e2e-kill")
    });
    ok_json(&rerun);
    let got = end_state(&root);
    let diff: Vec<String> = want
        .keys()
        .chain(got.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| want.get(*k) != got.get(*k))
        .map(|k| {
            format!(
                "{k}:\n  uninterrupted: {:?}\n  killed+rerun:  {:?}",
                want.get(k),
                got.get(k)
            )
        })
        .collect();
    assert!(
        diff.is_empty(),
        "[{}] the rerun after kill -9 did not converge:\n{}",
        point.name,
        diff.join("\n")
    );
    // And every other file in /etc matches too (path, mode, owner, bytes).
    let d = manifest_diff(want_etc, &strip_volatile(root.manifest(&["etc"])));
    assert!(
        d.is_empty(),
        "[{}] /etc differs from an uninterrupted run after kill -9 + rerun:\n{}",
        point.name,
        d.join("\n")
    );
}
