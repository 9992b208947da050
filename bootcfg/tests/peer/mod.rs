//! Peer comparison, run once per Debian release by a small test crate each (peer_cloudinit.rs for
//! Debian 12, peer_cloudinit_trixie.rs for Debian 13, which set [`crate::RELEASE`]): Debian's
//! cloud-init (22.4 / 25.1, in a copy of `cloudinit.tar` / `cloudinit-trixie.tar`) and bootcfg
//! (in a copy of `base.tar` / `base-trixie.tar`) apply the same user-data (tests/fixtures/agent/full.yaml: a signed local repo
//! with an inline key, a debconf preseed, packages, Puppet with `exec: false`). The test compares
//! what each left behind. Every difference must be one of [`ALLOWED`], the documented, deliberate
//! differences; everything else must be equal.
//!
//! Same starting point: Debian's cloud-init depends on `locales`, so the peer image already has it
//! and cloud-init only records the locales preseed in debconf ("installed and preseeded, but
//! cannot be unconfigured"); bootcfg's copy of base.tar gets the requested packages the peer image
//! already has installed first, so both tools face the same state. (That a preseed takes effect
//! when the package is installed afterwards is shown by e2e_root.rs.)
//!
//! Both boot from the same NoCloud seed in their image: cloud-init runs its real boot stages,
//! bootcfg runs `bootcfg run --root`, each inside the namespace runner; cloud-init with the
//! harness config from tests/setup-roots.sh (only apt-configure, package-update-upgrade-install and
//! puppet; no network or hostname changes) and `service`/`systemctl` stubs that record their argv.
//!
//!   sudo -E cargo test -p bootcfg --test peer_cloudinit -- --nocapture
//!   sudo -E cargo test -p bootcfg --test peer_cloudinit_trixie -- --nocapture

use crate::RELEASE;
use crate::support::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use testkit::aptrepo::AptRepo;
use testkit::chroot::{self, heavy_lock, in_root};
use testkit::rootfs::{Root, manifest_diff};

const INSTANCE_ID: &str = "i-0peer0cloudinit";
const HOSTNAME: &str = "peer-node";

/// A documented, deliberate difference between bootcfg and cloud-init 22.4 on the same user-data.
struct Allowed {
    key: &'static str,
    bootcfg: &'static str,
    cloud_init: &'static str,
    why: &'static str,
}

/// Every documented difference, one for one with the bullets of README's compatibility section
/// (each bullet names its key as "(allowance `key`)"; [`readme_lists_every_allowed_difference`]
/// checks both ways). The peer tests below check the ones they can observe.
const ALLOWED: &[Allowed] = &[
    Allowed {
        key: "keyring-scope",
        bootcfg: "key in /etc/apt/keyrings/<name>.gpg and `signed-by=` that file on the source line: trusted for that repo only",
        cloud_init: "key in /etc/apt/trusted.gpg.d/<name>.gpg, no signed-by (unless the line uses $KEY_FILE): trusted for every repo",
        why: "issue 3: a repo's key is trusted for that repo only; the key bytes (dearmored) are identical",
    },
    Allowed {
        key: "dpkg-repair",
        bootcfg: "a package left needing a reinstall by an interrupted dpkg is reinstalled from the archive, whatever its origin, then dpkg configures",
        cloud_init: "apt-get fails on the broken dpkg state and the module fails",
        why: "a boot interrupted during package installation must converge at the next boot",
    },
    Allowed {
        key: "puppet-conf-format",
        bootcfg: "puppet.conf merged in place: comments, key order and formatting of the image's file kept",
        cloud_init: "puppet.conf rewritten by ConfigParser (comments dropped), plus a puppet.conf.old backup (observed: an intermediate merge state, not the image's file)",
        why: "an image's hand-written puppet.conf stays readable; the effective settings are identical",
    },
    Allowed {
        key: "csr-mode",
        bootcfg: "csr_attributes.yaml mode 0600",
        cloud_init: "csr_attributes.yaml mode 0644",
        why: "it holds the challenge password, and files that hold secrets are 0600",
    },
    Allowed {
        key: "csr-percent-i",
        bootcfg: "%i in csr_attributes values expanded to the instance id",
        cloud_init: "%i left literal in csr_attributes (cloud-init expands %i/%f in certname only)",
        why: "issue 3: csr_attributes.yaml with %i expanded in its values",
    },
    Allowed {
        key: "csr-format",
        bootcfg: "csr_attributes.yaml serialised by serde_yaml_ng",
        cloud_init: "csr_attributes.yaml serialised by PyYAML's yaml.dump",
        why: "only the parsed content matters to Puppet",
    },
    Allowed {
        key: "proxy-mode",
        bootcfg: "90cloud-init-aptproxy mode 0600 when a proxy URL holds credentials",
        cloud_init: "90cloud-init-aptproxy mode 0644 always",
        why: "files that hold secrets are 0600; apt reads its configuration as root",
    },
    Allowed {
        key: "ssl-ownership",
        bootcfg: "ssldir keeps the package's owner (puppet:puppet); certs/ and ca.pem are created root:root (0755/0644)",
        cloud_init: "chowns ssldir, certs/ and ca.pem to puppet:root",
        why: "the agent runs as root and reads either; Puppet sets the owners of its ssldir files itself on its first run",
    },
    Allowed {
        key: "service-start",
        bootcfg: "the service is never started when --root is not / (enabled with systemctl when the image has it)",
        cloud_init: "`service puppet start` (recorded here by the harness stub) and START=yes sed on /etc/default/puppet",
        why: "configuring an image must not start daemons; the unit starts at the image's next boot",
    },
    Allowed {
        key: "puppet-exit-code",
        bootcfg: "`puppet agent` exit code 2 (changes applied) is success",
        cloud_init: "exit code 2 fails the puppet module (cloud-init #5747)",
        why: "2 is Puppet's code for a successful run that changed something",
    },
    Allowed {
        key: "pipelining-comment",
        bootcfg: "90cloud-init-pipelining's comment line says `Written by bootcfg`",
        cloud_init: "its comment line says `Written by cloud-init`",
        why: "the file says who wrote it; the setting line is identical",
    },
    Allowed {
        key: "disable-suites-comment",
        bootcfg: "disable_suites' comments in the rendered main list name bootcfg (`# suite disabled by bootcfg: …`)",
        cloud_init: "they name cloud-init (`# suite disabled by cloud-init: …`)",
        why: "the comment says who disabled the line; the active entries are identical",
    },
    Allowed {
        key: "legacy-proxy-swap",
        bootcfg: "legacy `apt_https_proxy` sets Acquire::https::Proxy, `apt_ftp_proxy` Acquire::ftp::Proxy",
        cloud_init: "the two are swapped (a bug in mapoldkeys since 2016)",
        why: "each key sets the protocol it names",
    },
    Allowed {
        key: "legacy-debconf-selections",
        bootcfg: "a top-level `debconf_selections` string is fed to debconf-set-selections",
        cloud_init: "ignored (dropped in 2016 without a conversion)",
        why: "the RFC syntax's preseed still works",
    },
    Allowed {
        key: "legacy-apt-conf",
        bootcfg: "the RFC's top-level `apt_conf` list of {filename, content} is written to /etc/apt/apt.conf.d/",
        cloud_init: "unknown key, ignored",
        why: "the RFC syntax's apt configuration files still work",
    },
    Allowed {
        key: "legacy-apt-keys",
        bootcfg: "without `apt:` in the user-data, the old top-level apt keys (apt_sources, apt_proxy, apt_mirror, …) are applied as upstream cloud-init converts them (apt_sources without filename → cloud_config_sources.list)",
        cloud_init: "Debian's packaged cloud-init (22.4 and 25.1) ignores them all, because its /etc/cloud/cloud.cfg sets `apt:` (22.4 also fails its apt module on apt_preserve_sources_list: false); upstream's configuration applies them as bootcfg does",
        why: "the RFC syntax is a documented input of bootcfg; observed in peer_legacy_apt_sources with both configurations",
    },
    Allowed {
        key: "deb822-sources-list",
        bootcfg: "a deb822 `sources_list` goes to /etc/apt/sources.list.d/<distro>.sources and /etc/apt/sources.list is removed (Ubuntu: replaced with a pointer comment), as cloud-init 23.4+/24.1+ do",
        cloud_init: "22.4 writes it into /etc/apt/sources.list, where apt rejects it",
        why: "apt reads deb822 only from .sources files; observed in peer_deb822_sources_list",
    },
    Allowed {
        key: "packages-newer-syntax",
        bootcfg: "`packages` entries `- apt: [...]` and `- snap: [...]` (cloud-init 23.2's form) are understood: the apt ones installed, the snap ones ignored with a warning",
        cloud_init: "22.4 fails its package module on them (`Invalid package type`) and installs nothing",
        why: "today's cloud-init documentation uses that form; observed in the corpus (ci-moddoc-packages-example1.yaml)",
    },
    Allowed {
        key: "unknown-packages",
        bootcfg: "all the packages in one `apt-get install`: when apt does not know one, nothing is installed and the module fails, naming it (retried at the next boot)",
        cloud_init: "25.1 (Debian 13) installs the packages apt knows, then fails its package module naming the rest, snap entries among them; 22.4 asks apt for all at once, as bootcfg",
        why: "a machine with only part of its packages runs in a state nobody asked for; observed in the Debian 13 corpus, where apt is stubbed and only cloud-init's refusal shows",
    },
    Allowed {
        key: "base64-user-data",
        bootcfg: "a whole user-data that is one line of base64 is decoded first (as when it was encoded once more on its way to the IMDS)",
        cloud_init: "NoCloud and EC2 hand it over as is; it is an unknown part type and nothing is applied",
        why: "a doubly encoded user-data is a common mistake with the EC2 API; observed in the corpus (enc-base64-update-packages.b64)",
    },
    Allowed {
        key: "strict-validation",
        bootcfg: "typos, duplicate keys, invalid values and mixed one-line/deb822 templates are errors; settings that would do nothing and keys of modules bootcfg does not run are warnings",
        cloud_init: "schema problems are logged and the modules run anyway",
        why: "everything from user-data is validated before anything is touched",
    },
    Allowed {
        key: "plan-then-apply",
        bootcfg: "every module is planned before anything changes (one that cannot be planned: nothing is written); a module that fails while applying stops only the modules that need it (modules::NEEDS), and markers are written only on success, so the next boot retries",
        cloud_init: "each module runs in turn whatever failed before it, and its semaphore is written even when it fails, so it never runs again for the instance",
        why: "issue 14 and issue 13 item 9: a machine half-configured in the wrong order (packages before their sources or preseed, Puppet before the packages) is worse than one not configured yet; shown by bootcfg's agent tests (a_failed_module_stops_only_the_modules_that_need_it)",
    },
    Allowed {
        key: "not-supported",
        bootcfg: "refused or ignored with a message: #include, Jinja templates, #cloud-config-archive, merge_how/Merge-Type other than the default merge, snap packages, DNS mirror search, puppet's AIO install script",
        cloud_init: "supported",
        why: "outside what bootcfg configures, or fetching and running code without verification",
    },
];

fn allowed(key: &str) -> String {
    let a = ALLOWED
        .iter()
        .find(|a| a.key == key)
        .expect("known allowed-difference key");
    format!(
        "[{}] bootcfg: {} | cloud-init: {} | why: {}",
        a.key, a.bootcfg, a.cloud_init, a.why
    )
}

/// Where each tool's changes are compared (relative to that root's own starting state).
const WATCH: &[&str] = &[
    "etc/apt",
    "etc/puppet",
    "var/lib/puppet",
    "etc/default/locale",
    "etc/locale.gen",
];
const LIST: &str = "/etc/apt/sources.list.d/bootcfg-local.list";
const BC_KEYRING: &str = "/etc/apt/keyrings/bootcfg-local.gpg";
const CI_KEYRING: &str = "/etc/apt/trusted.gpg.d/bootcfg-local.gpg";
const CONF: &str = "/etc/puppet/puppet.conf";
const CSR: &str = "/etc/puppet/csr_attributes.yaml";
const CA: &str = "/var/lib/puppet/ssl/certs/ca.pem";
const REQUESTED: &[&str] = &["hello", "bootcfg-test-dummy", "locales", "puppet-agent"];

/// Paths whose content each tool changed: added, modified (bytes, mode, owner) or removed.
fn changed_paths(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

fn timed<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let r = f();
    eprintln!("[peer] {name}: {:.1?}", t0.elapsed());
    r
}

#[test]
fn cloud_init_and_bootcfg_leave_the_same_state_but_for_documented_differences() {
    let repo = AptRepo::shared();
    let ud = user_data("full.yaml", Some(repo));
    let image_conf = fixture("image-puppet.conf");

    // --- cloud-init, the peer ------------------------------------------------------------------
    // Both images get the same NoCloud seed and boot from it (`cloud-init init…`, `bootcfg run`).
    let seed = |root: &Root| {
        root.write("var/lib/cloud/seed/nocloud/user-data", &ud, 0o600);
        root.write(
            "var/lib/cloud/seed/nocloud/meta-data",
            format!("instance-id: {INSTANCE_ID}\nlocal-hostname: {HOSTNAME}\n"),
            0o644,
        );
    };
    let ci = Root::fresh(RELEASE.cloudinit);
    ci.write("etc/puppet/puppet.conf", &image_conf, 0o644);
    seed(&ci);
    let ci_before = ci.manifest(WATCH);
    let ci_pkgs_before = ci.dpkg_installed();

    // --- bootcfg ----------------------------------------------------------------------------------
    let bc = Root::fresh(RELEASE.base);
    bc.write("etc/puppet/puppet.conf", &image_conf, 0o644);
    seed(&bc);

    let (seen, bc_before, bc_pkgs_before) = {
        let _heavy = heavy_lock();
        // Same starting point for what the user-data touches: Debian's cloud-init depends on
        // `locales`, so the peer image already has it; give bootcfg's image the requested
        // packages the peer image has (installed without preseed, as in the peer's image build).
        let pre: Vec<&str> = REQUESTED
            .iter()
            .copied()
            .filter(|p| ci_pkgs_before.contains_key(*p))
            .collect();
        if !pre.is_empty() {
            eprintln!("[peer] preinstalling in bootcfg's image, as in the peer image: {pre:?}");
            let mut argv = vec!["apt-get", "install", "-y", "-q"];
            argv.extend(&pre);
            chroot::run(in_root(bc.path(), &argv), APPLY_TIMEOUT).assert_ok();
        }
        let bc_before = bc.manifest(WATCH);
        let bc_pkgs_before = bc.dpkg_installed();
        let stages = "cloud-init init --local && cloud-init init && \
                      cloud-init modules --mode config && cloud-init modules --mode final";
        let out = timed("cloud-init (4 stages)", || {
            chroot::run(in_root(ci.path(), &["sh", "-c", stages]), APPLY_TIMEOUT)
        });
        let log = if ci.exists("var/log/cloud-init.log") {
            ci.read_string("var/log/cloud-init.log")
        } else {
            String::new()
        };
        let log_tail = &log[log.len().saturating_sub(6000)..];
        out.assert_ok();
        let result = ci.yaml("var/lib/cloud/data/result.json");
        assert_eq!(
            result["v1"]["errors"],
            serde_json::json!([]),
            "cloud-init reported errors:\n{log_tail}"
        );
        for m in ["apt-configure", "package-update-upgrade-install", "puppet"] {
            assert!(
                log.contains(&format!("Running module {m} ")),
                "cloud-init did not run {m}:\n{log_tail}"
            );
        }

        let t0 = Instant::now();
        let (out, seen) = watch_processes(&bc, chroot::spawn(run_cmd(&bc)), APPLY_TIMEOUT);
        eprintln!("[peer] bootcfg run: {:.1?}", t0.elapsed());
        let v = ok_json(&out);
        assert_eq!(
            v["instance_id"], INSTANCE_ID,
            "bootcfg run did not boot from the seed: {v:#}"
        );
        (seen, bc_before, bc_pkgs_before)
    };

    let ci_after = ci.manifest(WATCH);
    let bc_after = bc.manifest(WATCH);
    // Boot mode applies once per instance: a second boot from the same seed changes nothing.
    let again = timed("bootcfg run (second boot)", || {
        chroot::run(run_cmd(&bc), APPLY_TIMEOUT)
    });
    ok_json(&again);
    let d = manifest_diff(&bc_after, &bc.manifest(WATCH));
    assert!(
        d.is_empty(),
        "a second `bootcfg run` changed files:\n{}",
        d.join("\n")
    );
    let mut problems: Vec<String> = Vec::new();

    // 1. The same files changed, once bootcfg's keyring path is mapped onto cloud-init's.
    let to_ci = |p: &String| {
        if p == BC_KEYRING {
            CI_KEYRING.to_owned()
        } else {
            p.clone()
        }
    };
    let bc_changed: BTreeSet<String> = changed_paths(&bc_before, &bc_after)
        .iter()
        .map(to_ci)
        .collect();
    let mut ci_changed = changed_paths(&ci_before, &ci_after);
    // cloud-init's backup of the original puppet.conf.
    assert!(
        ci_changed.remove("/etc/puppet/puppet.conf.old"),
        "cloud-init no longer keeps puppet.conf.old: {}",
        allowed("puppet-conf-format")
    );
    assert!(!ci.read_string("etc/puppet/puppet.conf.old").is_empty());
    // Not a vacuous comparison: both tools wrote every file the user-data asks for.
    for p in [LIST, CI_KEYRING, CONF, CSR, CA] {
        assert!(
            bc_changed.contains(p) && ci_changed.contains(p),
            "{p} was not written by both tools (bootcfg: {}, cloud-init: {})",
            bc_changed.contains(p),
            ci_changed.contains(p)
        );
    }
    for p in bc_changed.symmetric_difference(&ci_changed) {
        let who = if bc_changed.contains(p) {
            "only bootcfg"
        } else {
            "only cloud-init"
        };
        problems.push(format!("{p}: changed by {who}"));
    }

    // 2. Files both changed: same bytes, mode and owner, except the documented differences.
    for p in bc_changed.intersection(&ci_changed) {
        let bp = if p == CI_KEYRING {
            BC_KEYRING
        } else {
            p.as_str()
        };
        if !bc.exists(bp) || !ci.exists(p) {
            if bc.exists(bp) != ci.exists(p) {
                problems.push(format!(
                    "{p}: exists after bootcfg: {}, after cloud-init: {}",
                    bc.exists(bp),
                    ci.exists(p)
                ));
            }
            continue;
        }
        let (bm, cm) = (bc.mode(bp), ci.mode(p));
        let (bo, co) = (bc.owner(bp), ci.owner(p));
        if p == CSR {
            assert_eq!(bm & 0o777, 0o600, "{}", allowed("csr-mode"));
            assert_eq!(
                cm & 0o777,
                0o644,
                "cloud-init's mode changed; update {}",
                allowed("csr-mode")
            );
        } else if bm != cm {
            problems.push(format!(
                "{p}: mode {bm:o} after bootcfg, {cm:o} after cloud-init"
            ));
        }
        let ssl_documented = p.starts_with("/var/lib/puppet/ssl")
            && co == "puppet:root"
            && (bo == "root:root" || bo == "puppet:puppet");
        if bo != co && !ssl_documented {
            problems.push(format!(
                "{p}: owner {bo} after bootcfg, {co} after cloud-init ({})",
                allowed("ssl-ownership")
            ));
        }
        if bc.join(bp).is_dir() || bc.join(bp).is_symlink() {
            if bc_after.get(bp).map(|v| v.starts_with("->")) == Some(true)
                && bc_after.get(bp) != ci_after.get(p)
            {
                problems.push(format!(
                    "{p}: symlink {:?} vs {:?}",
                    bc_after.get(bp),
                    ci_after.get(p)
                ));
            }
            continue;
        }
        let (bb, cb) = (bc.read(bp), ci.read(p));
        match p.as_str() {
            LIST => {
                // bootcfg adds `signed-by=` its keyring; otherwise the lines are the same.
                let bl = String::from_utf8_lossy(&bb).into_owned();
                let cl = String::from_utf8_lossy(&cb).into_owned();
                assert_eq!(
                    signed_by(&bl).as_deref(),
                    Some(BC_KEYRING),
                    "{}\n{bl}",
                    allowed("keyring-scope")
                );
                assert_eq!(
                    signed_by(&cl),
                    None,
                    "cloud-init now scopes the key; update {}\n{cl}",
                    allowed("keyring-scope")
                );
                let strip = |s: &str| -> Vec<String> {
                    s.lines()
                        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                        .map(|l| {
                            l.replace(&format!("[signed-by={BC_KEYRING}] "), "")
                                .trim()
                                .to_owned()
                        })
                        .collect()
                };
                if strip(&bl) != strip(&cl) {
                    problems.push(format!("{p}: source lines differ beyond signed-by:\nbootcfg:\n{bl}\ncloud-init:\n{cl}"));
                }
            }
            CI_KEYRING => {
                assert_eq!(
                    dearmored(&bb),
                    repo.key_bytes(),
                    "bootcfg's keyring is not the repo key"
                );
                if dearmored(&bb) != dearmored(&cb) {
                    problems.push(format!(
                        "{p}: keyring bytes differ after dearmor ({})",
                        allowed("keyring-scope")
                    ));
                }
            }
            CONF => {
                let (bi, ci_ini) = (bc.ini(bp), ci.ini(p));
                if bi != ci_ini {
                    problems.push(format!(
                        "{p}: effective settings differ:\nbootcfg: {bi:?}\ncloud-init: {ci_ini:?}"
                    ));
                }
                let first_comment = image_conf.lines().next().expect("comment line");
                assert!(
                    String::from_utf8_lossy(&bb).contains(first_comment),
                    "{}",
                    allowed("puppet-conf-format")
                );
            }
            CSR => {
                let bv = bc.yaml(bp);
                let cv = ci.yaml(p);
                let cv_expanded: serde_json::Value = serde_json::from_str(
                    &serde_json::to_string(&cv)
                        .expect("json")
                        .replace("%i", INSTANCE_ID),
                )
                .expect("json");
                assert_ne!(
                    cv,
                    cv_expanded,
                    "cloud-init now expands %i in csr_attributes; update {}",
                    allowed("csr-percent-i")
                );
                if bv != cv_expanded {
                    problems.push(format!(
                        "{p}: parsed content differs ({}):\nbootcfg: {bv}\ncloud-init: {cv}",
                        allowed("csr-format")
                    ));
                }
            }
            _ => {
                if bb != cb {
                    problems.push(format!(
                        "{p}: content differs:\n--- bootcfg\n{}\n--- cloud-init\n{}",
                        String::from_utf8_lossy(&bb),
                        String::from_utf8_lossy(&cb)
                    ));
                }
            }
        }
    }
    // bootcfg trusted nothing globally.
    assert!(
        !bc.exists(CI_KEYRING) && !bc.exists("etc/apt/trusted.gpg"),
        "{}",
        allowed("keyring-scope")
    );
    // The CA is byte-identical to the user-data's (already compared between the tools above).
    assert_eq!(bc.read_string(CA).trim(), ca_pem().trim());

    // 3. debconf: the preseeded questions' database entries.
    for q in [
        "locales/default_environment_locale",
        "locales/locales_to_be_generated",
    ] {
        let (b, c) = (bc.debconf(q), ci.debconf(q));
        assert!(b.is_some(), "bootcfg left no debconf entry for {q}");
        if b != c {
            problems.push(format!("debconf {q}:\nbootcfg: {b:?}\ncloud-init: {c:?}"));
        }
    }

    // 4. Packages: the requested ones at the same versions, and the same set of new packages
    //    (except what cloud-init's own image already had).
    let (bp, cp) = (bc.dpkg_installed(), ci.dpkg_installed());
    for pkg in REQUESTED {
        assert!(bp.contains_key(*pkg), "bootcfg did not install {pkg}");
        if bp.get(*pkg) != cp.get(*pkg) {
            problems.push(format!(
                "package {pkg}: {:?} after bootcfg, {:?} after cloud-init",
                bp.get(*pkg),
                cp.get(*pkg)
            ));
        }
    }
    let bc_new: BTreeSet<&String> = bp
        .keys()
        .filter(|k| !bc_pkgs_before.contains_key(*k))
        .collect();
    let ci_new: BTreeSet<&String> = cp
        .keys()
        .filter(|k| !ci_pkgs_before.contains_key(*k))
        .collect();
    for p in ci_new.difference(&bc_new) {
        problems.push(format!("package {p}: installed by cloud-init only"));
    }
    for p in bc_new.difference(&ci_new) {
        if !ci_pkgs_before.contains_key(*p) {
            problems.push(format!("package {p}: installed by bootcfg only"));
        }
    }
    let half: Vec<(String, String)> = bc
        .dpkg_statuses()
        .into_iter()
        .filter(|(_, s)| s != "install ok installed" && !s.starts_with("deinstall"))
        .collect();
    assert!(
        half.is_empty(),
        "packages left half-installed by bootcfg: {half:?}"
    );

    // 5. The service: cloud-init asked for a start (stubbed), bootcfg never ran a puppet agent.
    // (cloud-init 22.4 asks for `puppet`, 25.1 for the unit `puppet-agent.service` first)
    let stub = ci.read_string("var/log/service-stub.log");
    assert!(
        stub.lines().any(|l| {
            l.trim() == "service puppet start" || l.trim() == "service puppet-agent.service start"
        }),
        "{}; stub log: {stub}",
        allowed("service-start")
    );
    let agents: Vec<&String> = seen.iter().filter(|c| c.contains("puppet agent")).collect();
    assert!(
        agents.is_empty(),
        "bootcfg ran a puppet agent in the chroot: {agents:?} ({})",
        allowed("service-start")
    );

    eprintln!("[peer] allowed differences (all observed as documented):");
    for a in ALLOWED {
        eprintln!("  {}", allowed(a.key));
    }
    assert!(
        problems.is_empty(),
        "bootcfg and cloud-init differ beyond the documented differences:\n{}",
        problems.join("\n")
    );
}

/// README's compatibility section and [`ALLOWED`] list the same differences, one for one: each
/// bullet names exactly one allowance, as "(allowance `key`)", and every allowance has a bullet.
#[test]
fn readme_lists_every_allowed_difference() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .expect("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Compatibility with cloud-init"))
        .expect("README has a `## Compatibility with cloud-init` section");
    let marker = regex::Regex::new(r"\(allowance `([a-z0-9-]+)`\)").expect("regex");
    let mut bullets: Vec<String> = Vec::new();
    for line in section.lines() {
        if let Some(b) = line.strip_prefix("- ") {
            bullets.push(b.to_owned());
        } else if line.starts_with("  ") && !bullets.is_empty() {
            let last = bullets.last_mut().expect("a bullet");
            last.push(' ');
            last.push_str(line.trim());
        }
    }
    let mut in_readme: Vec<String> = Vec::new();
    for b in &bullets {
        let keys: Vec<String> = marker.captures_iter(b).map(|c| c[1].to_owned()).collect();
        assert_eq!(
            keys.len(),
            1,
            "each README difference names exactly one allowance: {b}"
        );
        in_readme.push(keys[0].clone());
    }
    let table: Vec<String> = ALLOWED.iter().map(|a| a.key.to_owned()).collect();
    let readme_set: BTreeSet<&String> = in_readme.iter().collect();
    assert_eq!(
        readme_set.len(),
        in_readme.len(),
        "a README allowance is listed twice: {in_readme:?}"
    );
    let table_set: BTreeSet<&String> = table.iter().collect();
    assert_eq!(table_set.len(), table.len(), "a key is in ALLOWED twice");
    assert_eq!(
        readme_set, table_set,
        "README's differences and ALLOWED differ (README: {in_readme:?}, ALLOWED: {table:?})"
    );
}

// ---- Peer cases for issue 13's incompatibilities (apt-configure only) ------------------------------

/// cloud-init's stages up to and including `apt-configure` (the harness config runs only it in
/// the config stage).
const CI_CONFIG_STAGES: &str =
    "cloud-init init --local && cloud-init init && cloud-init modules --mode config";

fn peer_fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/peer")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// `@REPO_URL@` and `@REPO_KEY@` filled in (as [`user_data`] does for the agent fixtures), and
/// `@REPO_KEY_DEB822@`: the armored key as a deb822 multi-line field value (each line indented
/// one more space, empty lines as ` .`).
fn fill_peer(text: &str, repo: &AptRepo) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        match line.trim() {
            "@REPO_KEY@" | "@REPO_KEY_DEB822@" => {
                let deb822 = line.trim() == "@REPO_KEY_DEB822@";
                for l in repo.armored_key().trim_end().lines() {
                    match (deb822, l.is_empty()) {
                        (true, true) => out.push_str(&format!("{indent} .\n")),
                        (true, false) => out.push_str(&format!("{indent} {l}\n")),
                        (false, true) => out.push('\n'),
                        (false, false) => out.push_str(&format!("{indent}{l}\n")),
                    }
                }
            }
            _ => {
                out.push_str(&line.replace("@REPO_URL@", &repo.url()));
                out.push('\n');
            }
        }
    }
    assert!(!out.contains("@REPO_"), "unfilled placeholder:\n{out}");
    out
}

fn seed(root: &Root, ud: &str) {
    root.write("var/lib/cloud/seed/nocloud/user-data", ud, 0o600);
    root.write(
        "var/lib/cloud/seed/nocloud/meta-data",
        format!("instance-id: {INSTANCE_ID}\nlocal-hostname: {HOSTNAME}\n"),
        0o644,
    );
}

/// Debian's packaged /etc/cloud/cloud.cfg sets `apt: {preserve_sources_list: true}`; upstream's
/// configuration (as on images built from cloud-init's own template) has no `apt:`.
fn use_upstream_cloud_cfg(ci: &Root) {
    let cfg = ci.read_string("etc/cloud/cloud.cfg");
    let debian = "apt:\n   # This prevents cloud-init from rewriting apt's sources.list file,\n   # which has been a source of surprise.\n   preserve_sources_list: true\n";
    assert!(
        cfg.contains(debian),
        "Debian's cloud.cfg no longer has its `apt:` block:\n{cfg}"
    );
    ci.write("etc/cloud/cloud.cfg", cfg.replace(debian, ""), 0o644);
}

/// One tool's changes under /etc/apt: path → manifest entry after (`None`: removed).
type Changes = BTreeMap<String, Option<String>>;

/// Runs cloud-init's stages in `ci` and `bootcfg run` in `bc` (both seeded with `ud`); returns
/// each one's changes under /etc/apt and cloud-init's log.
fn run_both(ci: &Root, bc: &Root, ud: &str) -> (Changes, Changes, String) {
    seed(ci, ud);
    seed(bc, ud);
    let (ci_before, bc_before) = (ci.manifest(&["etc/apt"]), bc.manifest(&["etc/apt"]));
    {
        let _heavy = heavy_lock();
        let out = timed("cloud-init (to apt-configure)", || {
            chroot::run(
                in_root(ci.path(), &["sh", "-c", CI_CONFIG_STAGES]),
                APPLY_TIMEOUT,
            )
        });
        out.assert_ok();
        let v = timed("bootcfg run", || chroot::run(run_cmd(bc), APPLY_TIMEOUT));
        let v = ok_json(&v);
        assert_eq!(v["instance_id"], INSTANCE_ID, "{v:#}");
    }
    let log = ci.read_string("var/log/cloud-init.log");
    assert!(
        log.contains("Running module apt-configure "),
        "cloud-init did not run apt-configure:\n{log}"
    );
    let changes = |before: &BTreeMap<String, String>, after: BTreeMap<String, String>| -> Changes {
        changed_paths(before, &after)
            .into_iter()
            .map(|p| {
                let v = after.get(&p).cloned();
                (p, v)
            })
            .collect()
    };
    (
        changes(&ci_before, ci.manifest(&["etc/apt"])),
        changes(&bc_before, bc.manifest(&["etc/apt"])),
        log,
    )
}

/// cloud-init's apt module ran without an error (its status.json for the config stage).
fn assert_no_ci_errors(ci: &Root, log: &str) {
    let status = ci.yaml("var/lib/cloud/data/status.json");
    assert_eq!(
        status["v1"]["modules-config"]["errors"],
        serde_json::json!([]),
        "cloud-init reported errors:\n{}",
        &log[log.len().saturating_sub(4000)..]
    );
}

/// Issue 13, item 1: `apt.proxy` and `apt.http_proxy` with different values. bootcfg refused the
/// user-data; cloud-init writes both lines. Now the proxy files are byte-identical.
#[test]
fn peer_proxy_and_http_proxy() {
    let ud = peer_fixture("proxy-and-http-proxy.yaml");
    let (ci, bc) = (Root::fresh(RELEASE.cloudinit), Root::fresh(RELEASE.base));
    let (ci_changes, bc_changes, log) = run_both(&ci, &bc, &ud);
    assert_no_ci_errors(&ci, &log);
    const PROXY: &str = "/etc/apt/apt.conf.d/90cloud-init-aptproxy";
    assert!(ci_changes.contains_key(PROXY), "{ci_changes:?}");
    assert_eq!(
        ci_changes, bc_changes,
        "the tools changed different files under /etc/apt"
    );
    assert_eq!(bc.read_string(PROXY), ci.read_string(PROXY));
    assert_eq!(
        bc.read_string(PROXY)
            .lines()
            .filter(|l| l.starts_with("Acquire::http::Proxy"))
            .count(),
        2,
        "both http proxy lines, as cloud-init writes them"
    );
}

/// Issue 13, item 2: a later MIME part's `apt:` replaces the earlier one whole (cloud-init's
/// default merge, here also spelled out as a `Merge-Type` header); bootcfg merged recursively and
/// kept part 1's `apt.conf` and proxy.
#[test]
fn peer_multipart_later_part_replaces_a_top_level_key() {
    let ud = peer_fixture("multipart-replace.mime");
    let (ci, bc) = (Root::fresh(RELEASE.cloudinit), Root::fresh(RELEASE.base));
    let (ci_changes, bc_changes, log) = run_both(&ci, &bc, &ud);
    assert_no_ci_errors(&ci, &log);
    let merged = ci.read_string(&format!(
        "var/lib/cloud/instances/{INSTANCE_ID}/cloud-config.txt"
    ));
    assert!(
        !merged.contains("conf:"),
        "cloud-init kept part 1's apt.conf:\n{merged}"
    );
    assert!(!ci.exists("etc/apt/apt.conf.d/94cloud-init-config"));
    assert_eq!(
        ci_changes, bc_changes,
        "the tools changed different files under /etc/apt"
    );
    const PROXY: &str = "/etc/apt/apt.conf.d/90cloud-init-aptproxy";
    assert_eq!(bc.read_string(PROXY), ci.read_string(PROXY));
    assert!(
        !bc.read_string(PROXY).contains("first"),
        "part 1's proxy survived in bootcfg"
    );
}

/// Issue 13, item 3: legacy `apt_sources` entries without `filename`. Upstream cloud-init puts
/// them in `cloud_config_sources.list`, and so does bootcfg now (it used `00-boot-sources.list`:
/// on an image cloud-init had configured, the same repository then appeared in two files with
/// different `Signed-By`, and apt refused every source). Debian's packaged cloud-init ignores the
/// old keys altogether (allowance `legacy-apt-keys`).
#[test]
fn peer_legacy_apt_sources() {
    let repo = AptRepo::shared();
    let ud = fill_peer(&peer_fixture("legacy-apt-sources.yaml"), repo);
    const LIST: &str = "/etc/apt/sources.list.d/cloud_config_sources.list";
    const CI_RING: &str = "/etc/apt/trusted.gpg.d/cloud_config_sources.gpg";
    const BC_RING: &str = "/etc/apt/keyrings/cloud_config_sources.gpg";

    // Debian's packaged cloud-init: nothing (its cloud.cfg has `apt:`, so the old keys are dropped).
    let (ci, bc) = (Root::fresh(RELEASE.cloudinit), Root::fresh(RELEASE.base));
    let (ci_changes, bc_changes, log) = run_both(&ci, &bc, &ud);
    assert_no_ci_errors(&ci, &log);
    assert!(
        // 22.4's message, then 25.1's
        log.contains("deprecated V1/2 and V3 format specified, preferring V3")
            || log.contains("Support for combined old and new apt module keys is deprecated"),
        "Debian's cloud-init no longer drops the old keys: update {}",
        allowed("legacy-apt-keys")
    );
    assert!(
        ci_changes.is_empty(),
        "{ci_changes:?}; {}",
        allowed("legacy-apt-keys")
    );
    let bc_paths: BTreeSet<&str> = bc_changes.keys().map(String::as_str).collect();
    assert_eq!(
        bc_paths,
        BTreeSet::from([LIST, BC_RING]),
        "{}",
        allowed("legacy-apt-keys")
    );
    drop(ci);

    // Upstream's configuration: the same file, the same line (bootcfg adds signed-by).
    let ci = Root::fresh(RELEASE.cloudinit);
    use_upstream_cloud_cfg(&ci);
    let bc2 = Root::fresh(RELEASE.base);
    let (ci_changes, bc_changes, log) = run_both(&ci, &bc2, &ud);
    assert_no_ci_errors(&ci, &log);
    let ci_paths: BTreeSet<&str> = ci_changes.keys().map(String::as_str).collect();
    assert_eq!(
        ci_paths,
        BTreeSet::from([LIST, CI_RING]),
        "cloud-init's changes"
    );
    let bc_paths: BTreeSet<&str> = bc_changes.keys().map(String::as_str).collect();
    assert_eq!(
        bc_paths,
        BTreeSet::from([LIST, BC_RING]),
        "{}",
        allowed("keyring-scope")
    );
    assert_eq!(dearmored(&bc2.read(BC_RING)), dearmored(&ci.read(CI_RING)));
    let (bl, cl) = (bc2.read_string(LIST), ci.read_string(LIST));
    assert_eq!(
        signed_by(&bl).as_deref(),
        Some(BC_RING),
        "{}",
        allowed("keyring-scope")
    );
    assert_eq!(
        bl.replace(&format!("[signed-by={BC_RING}] "), ""),
        cl,
        "the source lines differ beyond signed-by"
    );
    assert_eq!(bc2.mode(LIST), ci.mode(LIST));

    // And bootcfg on the image cloud-init configured: the same file, its line replaced with the
    // signed-by one (no second file naming the repository), and apt reads every source.
    let ud_path = write_user_data(&ci, &ud);
    let out = apply(&ci, &ud_path, "i-0after-cloud-init", HOSTNAME);
    ok_json(&out);
    let lists = ci.list_dir("etc/apt/sources.list.d");
    assert!(
        !lists.iter().any(|f| f.contains("boot-sources")),
        "bootcfg wrote a second list: {lists:?}"
    );
    let after = ci.read_string(LIST);
    assert_eq!(after.lines().count(), 1, "{after}");
    assert_eq!(signed_by(&after).as_deref(), Some(BC_RING), "{after}");
    chroot::run(
        in_root(ci.path(), &["apt-get", "update", "-q"]),
        APPLY_TIMEOUT,
    )
    .assert_ok();
}

/// Issue 13, item 6: a deb822 `sources_list` (cloud-init 23.4's documented example, pointed at
/// the harness repo). cloud-init 22.4 writes it into /etc/apt/sources.list, where apt rejects
/// it; bootcfg writes /etc/apt/sources.list.d/debian.sources (as cloud-init 23.4+ does), where
/// apt reads it (allowance `deb822-sources-list`, Debian 12 only). Debian 13's cloud-init 25.1
/// writes the same file as bootcfg.
#[test]
fn peer_deb822_sources_list() {
    let repo = AptRepo::shared();
    let ud = fill_peer(&peer_fixture("deb822-sources-list.yaml"), repo);
    const MAIN: &str = "/etc/apt/sources.list";
    const DEB822: &str = "/etc/apt/sources.list.d/debian.sources";
    let (ci, bc) = (Root::fresh(RELEASE.cloudinit), Root::fresh(RELEASE.base));
    let (ci_changes, bc_changes, log) = run_both(&ci, &bc, &ud);
    assert_no_ci_errors(&ci, &log);
    let ci_paths: BTreeSet<&str> = ci_changes.keys().map(String::as_str).collect();
    let bc_paths: BTreeSet<&str> = bc_changes.keys().map(String::as_str).collect();
    if RELEASE.codename != "bookworm" {
        assert_eq!(
            ci_paths,
            BTreeSet::from([DEB822]),
            "cloud-init 25.1 writes debian.sources"
        );
        assert_eq!(bc_paths, ci_paths);
        assert!(!bc.exists(MAIN) && !ci.exists(MAIN));
        assert_eq!(bc.read_string(DEB822), ci.read_string(DEB822));
        assert_eq!(bc.mode(DEB822), ci.mode(DEB822));
        // cloud-init's config stage does not update apt's lists here: update them, so that
        // apt reads both files the same way
        chroot::run(
            in_root(ci.path(), &["apt-get", "update", "-q"]),
            APPLY_TIMEOUT,
        )
        .assert_ok();
        for root in [&ci, &bc] {
            let policy = chroot::run(
                in_root(root.path(), &["apt-cache", "policy", "bootcfg-test-dummy"]),
                APPLY_TIMEOUT,
            );
            policy.assert_ok();
            assert!(policy.stdout.contains(&repo.url()), "{}", policy.report());
        }
        return;
    }
    assert_eq!(
        ci_paths,
        BTreeSet::from([MAIN]),
        "cloud-init 22.4 writes sources.list"
    );
    assert_eq!(
        bc_paths,
        BTreeSet::from([DEB822]),
        "{}",
        allowed("deb822-sources-list")
    );
    assert!(!bc.exists(MAIN));
    // The same rendered text, in the two places.
    assert_eq!(bc.read_string(DEB822), ci.read_string(MAIN));
    assert_eq!(bc.mode(DEB822), ci.mode(MAIN));
    // apt rejects cloud-init's file and reads bootcfg's (whose `apt-get update` already passed
    // inside `bootcfg run`): the harness repo's package is a candidate from it.
    let ci_policy = chroot::run(in_root(ci.path(), &["apt-cache", "policy"]), APPLY_TIMEOUT);
    assert!(
        !ci_policy.status.success() && ci_policy.stderr.contains("sources.list"),
        "apt accepted deb822 in sources.list?\n{}",
        ci_policy.report()
    );
    let bc_policy = chroot::run(
        in_root(bc.path(), &["apt-cache", "policy", "bootcfg-test-dummy"]),
        APPLY_TIMEOUT,
    );
    bc_policy.assert_ok();
    assert!(
        bc_policy.stdout.contains(&repo.url()) && !bc_policy.stdout.contains("Candidate: (none)"),
        "{}",
        bc_policy.report()
    );
}

// ---- The corpus: real cloud-config documents, each applied by both tools ---------------------------
//
// tests/fixtures/corpus/README.md indexes every case: file, origin, what it exercises, whether it
// needs the network, and the level it is compared at:
//
// - `files`: both tools boot from the case in a shared pair of roots (reset to the same state
//   before each case, puppet preinstalled in both, `apt-get` replaced by a stub that records its
//   argv): every change under [`CORPUS_WATCH`], the debconf entries of the questions the case
//   sets, and the package operations each tool asked apt for (packages not yet installed,
//   upgrade, update) are compared.
// - `install`: the same, in fresh roots with the real apt against the harness's Debian mirror;
//   dpkg's installed packages (name and version) are compared too.
// - `plan`: the case needs the network (a key server, a PPA, a real archive): bootcfg's
//   `plan --output json` (each file it would write, with its content) is compared with the files
//   cloud-init wrote before its network step failed.
// - `validation`: bootcfg refuses the case (validate or plan); cloud-init either refuses too
//   (schema errors or a failed module: "both reject") or applies it (a difference, named by
//   `strict-validation` or `not-supported`).
//
// Every difference must be one of [`ALLOWED`], matched by a narrow rule in [`explain`].

const CORPUS_WATCH: &[&str] = &[
    "etc/apt",
    "etc/puppet",
    "etc/puppetlabs",
    "etc/default/puppet",
    "var/lib/puppet/ssl",
];
/// What the shared roots reset between cases (besides [`CORPUS_WATCH`]).
const CORPUS_RESET: &[&str] = &[
    "etc/apt",
    "etc/puppet",
    "etc/puppetlabs",
    "etc/default",
    "var/lib/puppet",
    "var/cache/debconf",
    "var/lib/cloud",
    "var/lib/bootcfg",
    "var/log",
    "run/cloud-init",
    "etc/cloud",
];
const APT_STUB_LOG: &str = "var/log/apt-stub.log";
const APT_STUB: &str = "#!/bin/sh\n# bootcfg corpus test: records apt-get's argv, changes nothing.\necho \"$*\" >> /var/log/apt-stub.log\nexit 0\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Files,
    Install,
    Plan,
    Validation,
}

#[derive(Debug)]
struct Case {
    file: String,
    network: bool,
    level: Level,
}

fn corpus_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/corpus")
}

/// The index's table rows: `| file | origin | exercises | network | compared at |`.
fn corpus_index() -> Vec<Case> {
    let text = std::fs::read_to_string(corpus_dir().join("README.md")).expect("corpus README.md");
    let mut cases = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 7 || !cells[1].starts_with('`') {
            continue;
        }
        let file = cells[1].trim_matches('`').to_owned();
        let network = match cells[4] {
            "yes" => true,
            "no" => false,
            o => panic!("{file}: network must be yes/no, not {o:?}"),
        };
        let level = match cells[5] {
            "files" => Level::Files,
            "install" => Level::Install,
            "plan" => Level::Plan,
            "validation" => Level::Validation,
            o => panic!("{file}: unknown level {o:?}"),
        };
        cases.push(Case {
            file,
            network,
            level,
        });
    }
    cases
}

/// The case's cloud-config text(s), decoded (base64, gzip, MIME parts) with python3's email
/// package, for the rules that look at what the case asks (legacy keys, debconf questions).
fn decoded_text(raw: &[u8]) -> String {
    const PY: &str = r##"
import sys, base64, gzip, email, binascii
d = sys.stdin.buffer.read()
try:
    s = d.strip()
    if s and b"\n" not in s and not s.startswith(b"#"):
        d = base64.b64decode(s, validate=True)
except (binascii.Error, ValueError):
    pass
if d[:2] == b"\x1f\x8b":
    d = gzip.decompress(d)
out = []
if b"mime-version:" in d[:4096].lower():
    for p in email.message_from_bytes(d).walk():
        if p.is_multipart():
            continue
        b = p.get_payload(decode=True) or b""
        if b[:2] == b"\x1f\x8b":
            b = gzip.decompress(b)
        out.append(b.decode("utf-8", "replace"))
else:
    out.append(d.decode("utf-8", "replace"))
sys.stdout.write("\n".join(out))
"##;
    use std::io::Write;
    let mut c = std::process::Command::new("python3")
        .args(["-c", PY])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(raw)
        .expect("write");
    let o = c.wait_with_output().expect("python3");
    assert!(o.status.success(), "decoding the case failed");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn has_top_key(text: &str, key: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with(':'))
    })
}

const LEGACY_APT_KEYS: &[&str] = &[
    "apt_sources",
    "apt_proxy",
    "apt_http_proxy",
    "apt_https_proxy",
    "apt_ftp_proxy",
    "apt_mirror",
    "apt_mirror_search",
    "apt_mirror_search_dns",
    "apt_preserve_sources_list",
    "apt_custom_sources_list",
    "apt_conf",
];

/// debconf questions the case sets (`owner question type value` lines).
fn debconf_questions(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(
        r"(?m)^[\s\-|]*(?:set\d+:\s*)?\S+\s+(\S+/\S+)\s+(?:select|string|boolean|multiselect|password|note|text|seen|title)\b",
    )
    .expect("regex");
    re.captures_iter(text).map(|c| c[1].to_owned()).collect()
}

/// One file as a tool left it (or would leave it): mode, owner, bytes; `None`: removed.
#[derive(Debug, Clone, PartialEq)]
struct FileState {
    mode: u32,
    owner: String,
    bytes: Vec<u8>,
}
type CorpusChanges = BTreeMap<String, Option<FileState>>;

fn root_changes(root: &Root, before: &BTreeMap<String, String>) -> CorpusChanges {
    let after = root.manifest(CORPUS_WATCH);
    changed_paths(before, &after)
        .into_iter()
        .filter(|p| !after.get(p).is_some_and(|v| v.starts_with("dir ")))
        .map(|p| {
            let st = root.exists(&p).then(|| FileState {
                mode: root.mode(&p),
                owner: root.owner(&p),
                bytes: if root.join(&p).is_file() {
                    root.read(&p)
                } else {
                    Vec::new()
                },
            });
            (p, st)
        })
        .collect()
}

/// Applies a unified diff (as `bootcfg plan` shows it) to `old`.
fn apply_unified(old: &str, diff: &str) -> String {
    let old_lines: Vec<&str> = old.lines().collect();
    let mut out: Vec<String> = Vec::new();
    let mut at = 0usize;
    let hunk = regex::Regex::new(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@").expect("regex");
    let mut in_hunk = false;
    for l in diff.lines() {
        if let Some(c) = hunk.captures(l) {
            let start: usize = c[1].parse().expect("number");
            let len: usize = c.get(2).map_or(1, |m| m.as_str().parse().expect("number"));
            let start = if len == 0 { start } else { start - 1 };
            while at < start.min(old_lines.len()) {
                out.push(old_lines[at].to_owned());
                at += 1;
            }
            in_hunk = true;
            continue;
        }
        if !in_hunk {
            continue;
        }
        if let Some(r) = l.strip_prefix('+') {
            out.push(r.to_owned());
        } else if l.strip_prefix('-').is_some() {
            at += 1;
        } else if let Some(r) = l.strip_prefix(' ') {
            out.push(r.to_owned());
            at += 1;
        }
    }
    while at < old_lines.len() {
        out.push(old_lines[at].to_owned());
        at += 1;
    }
    let mut s = out.join("\n");
    if !s.is_empty() && !diff.contains("\\ No newline at end of file") {
        s.push('\n');
    }
    s
}

/// bootcfg's plan as the files it would leave: writes (content from the diff against the root's
/// file) and removes. Keys to fetch are listed separately (they need the network).
fn plan_changes(root: &Root, plan: &serde_json::Value) -> (CorpusChanges, Vec<String>) {
    let mut ch = CorpusChanges::new();
    let mut fetches = Vec::new();
    for m in plan["modules"].as_array().into_iter().flatten() {
        for s in m["steps"].as_array().into_iter().flatten() {
            let path = s["path"].as_str().unwrap_or_default().to_owned();
            let watched = CORPUS_WATCH
                .iter()
                .any(|w| path.trim_start_matches('/').starts_with(w));
            match s["kind"].as_str().unwrap_or_default() {
                "write" if watched => {
                    let old = if root.join(&path).is_file() {
                        root.read_string(&path)
                    } else {
                        String::new()
                    };
                    let diff = s["diff"].as_str().unwrap_or_default();
                    let mode =
                        u32::from_str_radix(s["mode"].as_str().unwrap_or("644"), 8).expect("mode");
                    ch.insert(
                        path,
                        Some(FileState {
                            mode,
                            owner: "root:root".into(),
                            bytes: apply_unified(&old, diff).into_bytes(),
                        }),
                    );
                }
                "remove" if watched && root.exists(&path) => {
                    ch.insert(path, None);
                }
                k if k.contains("key") => fetches.push(format!("{k} {path}")),
                _ => {}
            }
        }
    }
    (ch, fetches)
}

/// A difference, and the allowance that documents it (`None`: undocumented).
#[derive(Debug)]
struct Diff {
    what: String,
    allowance: Option<&'static str>,
}

fn strip_signed_by(line: &str) -> String {
    let re = regex::Regex::new(r"signed-by=\S+?(\s|\])").expect("regex");
    let s = re.replace_all(line, "$1").into_owned();
    s.replace("[] ", "")
        .replace("[ ", "[")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn text_of(f: &Option<FileState>) -> String {
    f.as_ref()
        .map(|f| String::from_utf8_lossy(&f.bytes).into_owned())
        .unwrap_or_default()
}

/// Compares what the two tools changed; every difference is matched against the allowances'
/// narrow rules. `text` is the decoded case; `bc_full` is false at plan level (bootcfg's
/// network steps are not carried out there, so only files cloud-init wrote are compared).
fn explain(
    text: &str,
    ci: &CorpusChanges,
    bc: &CorpusChanges,
    bc_full: bool,
    bc_fetches: &[String],
) -> Vec<Diff> {
    let legacy_only =
        !has_top_key(text, "apt") && LEGACY_APT_KEYS.iter().any(|k| has_top_key(text, k));
    let mut diffs = Vec::new();
    // bootcfg's keyring path → cloud-init's (trusted.gpg.d, or cloud-init.gpg.d for $KEY_FILE).
    let map_bc = |p: &str| -> Vec<String> {
        match p.strip_prefix("/etc/apt/keyrings/") {
            Some(n) => vec![
                format!("/etc/apt/trusted.gpg.d/{n}"),
                format!("/etc/apt/cloud-init.gpg.d/{n}"),
            ],
            None => vec![p.to_owned()],
        }
    };
    let mut matched_ci: BTreeSet<String> = BTreeSet::new();
    for (bp, bs) in bc {
        let cands = map_bc(bp);
        let Some(cp) = cands.iter().find(|c| ci.contains_key(*c)).cloned() else {
            if !bc_full {
                continue; // plan level: cloud-init stopped at its network step
            }
            let allowance = if legacy_only
                && (bp.starts_with("/etc/apt/sources.list")
                    || bp.starts_with("/etc/apt/keyrings/")
                    || bp == "/etc/apt/apt.conf.d/90cloud-init-aptproxy")
            {
                Some("legacy-apt-keys")
            } else if bp.starts_with("/etc/apt/apt.conf.d/") && has_top_key(text, "apt_conf") {
                Some("legacy-apt-conf")
            } else {
                None
            };
            diffs.push(Diff {
                what: format!("{bp}: changed by bootcfg only"),
                allowance,
            });
            continue;
        };
        matched_ci.insert(cp.clone());
        let cs = &ci[&cp];
        if cp != *bp {
            // Same key bytes, another place: the key is trusted for its repository only.
            let same = match (bs, cs) {
                (Some(b), Some(c)) => dearmored(&b.bytes) == dearmored(&c.bytes),
                _ => false,
            };
            diffs.push(Diff {
                what: format!("{bp} (bootcfg) / {cp} (cloud-init): keyring, same key: {same}"),
                allowance: same.then_some("keyring-scope"),
            });
            continue;
        }
        if bs == cs {
            continue;
        }
        let (bt, ct) = (text_of(bs), text_of(cs));
        let (bm, cm) = (
            bs.as_ref().map(|f| f.mode & 0o777),
            cs.as_ref().map(|f| f.mode & 0o777),
        );
        let mut rest: Vec<Diff> = Vec::new();
        if bm != cm {
            let a =
                if bp.ends_with("90cloud-init-aptproxy") && bm == Some(0o600) && ct.contains('@') {
                    Some("proxy-mode")
                } else if bp.ends_with("csr_attributes.yaml") && bm == Some(0o600) {
                    Some("csr-mode")
                } else {
                    None
                };
            rest.push(Diff {
                what: format!(
                    "{bp}: mode {} (bootcfg) vs {} (cloud-init)",
                    bm.map(|m| format!("{m:o}")).unwrap_or_default(),
                    cm.map(|m| format!("{m:o}")).unwrap_or_default()
                ),
                allowance: a,
            });
        }
        let (bo, co) = (
            bs.as_ref().map(|f| f.owner.clone()),
            cs.as_ref().map(|f| f.owner.clone()),
        );
        if bc_full && bo != co {
            rest.push(Diff {
                what: format!("{bp}: owner {bo:?} (bootcfg) vs {co:?} (cloud-init)"),
                allowance: bp
                    .starts_with("/var/lib/puppet/ssl")
                    .then_some("ssl-ownership"),
            });
        }
        if bt != ct {
            let lines = |s: &str| -> Vec<String> { s.lines().map(str::to_owned).collect() };
            let allowance = if bp.starts_with("/etc/apt/sources.list")
                && lines(&bt)
                    .iter()
                    .map(|l| strip_signed_by(l))
                    .eq(lines(&ct).iter().map(|l| strip_signed_by(l)))
            {
                Some("keyring-scope")
            } else if bp.ends_with("90cloud-init-pipelining")
                && bt.replace("Written by bootcfg", "Written by cloud-init") == ct
            {
                Some("pipelining-comment")
            } else if bp == "/etc/apt/sources.list"
                && bt.replace(
                    "# suite disabled by bootcfg: ",
                    "# suite disabled by cloud-init: ",
                ) == ct
            {
                Some("disable-suites-comment")
            } else if bp.ends_with("90cloud-init-aptproxy")
                && has_top_key(text, "apt_https_proxy") | has_top_key(text, "apt_ftp_proxy")
                && {
                    let swap = |s: &str| {
                        s.replace("::https::", "::TMP::")
                            .replace("::ftp::", "::https::")
                            .replace("::TMP::", "::ftp::")
                    };
                    let mut a = lines(&swap(&bt));
                    let mut b = lines(&ct);
                    a.sort();
                    b.sort();
                    a == b
                }
            {
                Some("legacy-proxy-swap")
            } else if bp.ends_with("puppet.conf") {
                let (bi, ci_) = (
                    testkit::rootfs::parse_ini(&bt),
                    testkit::rootfs::parse_ini(&ct),
                );
                (bi == ci_).then_some("puppet-conf-format")
            } else if bp.ends_with("csr_attributes.yaml") {
                let parse = |s: &str| -> serde_json::Value {
                    serde_yaml_ng::from_str(s).unwrap_or(serde_json::Value::Null)
                };
                (parse(&bt) == parse(&ct)).then_some("csr-format")
            } else if bp == "/etc/default/puppet" && bt.replace("START=no", "START=yes") == ct {
                Some("service-start")
            } else {
                None
            };
            rest.push(Diff {
                what: format!("{bp}: content differs\n--- bootcfg\n{bt}\n--- cloud-init\n{ct}"),
                allowance,
            });
        }
        diffs.extend(rest);
    }
    for (cp, cs) in ci {
        if matched_ci.contains(cp) {
            continue;
        }
        if cp == "/etc/puppet/puppet.conf.old" {
            diffs.push(Diff {
                what: format!("{cp}: cloud-init's backup of puppet.conf"),
                allowance: Some("puppet-conf-format"),
            });
            continue;
        }
        if !bc_full && !bc_fetches.is_empty() && cp.contains("gpg") {
            continue;
        }
        let allowance = if cp == "/etc/default/puppet" {
            Some("service-start")
        } else {
            None
        };
        diffs.push(Diff {
            what: format!(
                "{cp}: changed by cloud-init only{}",
                if cs.is_none() { " (removed)" } else { "" }
            ),
            allowance,
        });
    }
    diffs
}

/// The package operations a tool asked the apt-get stub for: update ran, upgrade ran, packages
/// to install that the root did not have yet.
fn apt_ops(root: &Root, installed: &BTreeMap<String, String>) -> (bool, bool, BTreeSet<String>) {
    let log = if root.exists(APT_STUB_LOG) {
        root.read_string(APT_STUB_LOG)
    } else {
        String::new()
    };
    let (mut update, mut upgrade, mut install) = (false, false, BTreeSet::new());
    for l in log.lines() {
        // Operands only: `-o VALUE` (bootcfg) and `--option=VALUE` (cloud-init) are options.
        let mut words: Vec<&str> = Vec::new();
        let mut it = l.split_whitespace();
        while let Some(w) = it.next() {
            if w == "-o" {
                it.next();
            } else if !w.starts_with('-') {
                words.push(w);
            }
        }
        match words.first().copied() {
            Some("update") => update = true,
            Some("upgrade") | Some("dist-upgrade") => upgrade = true,
            Some("install") => {
                for p in &words[1..] {
                    let name = p.split('=').next().unwrap_or(p);
                    if !installed.contains_key(name) {
                        install.insert((*p).to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    (update, upgrade, install)
}

/// The package names in cloud-init 25.1's `PackageInstallerError` ("Failed to install the
/// following packages: {'a', 'b=1.0'}"), without versions.
fn refused_packages(rejects: Option<&str>) -> BTreeSet<String> {
    let re =
        regex::Regex::new(r"Failed to install the following packages: \{([^}]*)\}").expect("regex");
    let Some(r) = rejects else {
        return BTreeSet::new();
    };
    re.captures_iter(r)
        .flat_map(|c| {
            c[1].split(',')
                .map(|p| {
                    let p = p
                        .trim()
                        .trim_matches(|ch| ch == '\'' || ch == '"' || ch == '\\');
                    p.split('=').next().unwrap_or(p).to_owned()
                })
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// The names listed under `- snap:` in a `packages` list.
fn snap_entries(text: &str) -> BTreeSet<String> {
    let doc: serde_json::Value = serde_yaml_ng::from_str(text).unwrap_or_default();
    let mut out = BTreeSet::new();
    for e in doc["packages"].as_array().into_iter().flatten() {
        for s in e["snap"].as_array().into_iter().flatten() {
            let name = s.as_str().or_else(|| s[0].as_str());
            out.extend(name.map(str::to_owned));
        }
    }
    out
}

/// Whether apt in `root` has `spec` (`name` or `name=version`) to install. (`apt-cache show`
/// takes a name with a `.` as a regex and exits 0 on no match: hence the anchored pattern and
/// the check of its output.)
fn apt_knows(root: &Root, spec: &str) -> bool {
    let (name, version) = match spec.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (spec, None),
    };
    let pattern = format!("^{}$", regex::escape(name));
    let out = chroot::run(
        in_root(root.path(), &["apt-cache", "show", &pattern]),
        APPLY_TIMEOUT,
    );
    let versions: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Version: "))
        .collect();
    out.status.success() && !versions.is_empty() && version.is_none_or(|v| versions.contains(&v))
}

/// cloud-init refused or failed: schema errors logged, or an error in status.json of one of the
/// modules bootcfg implements (a user-data that turns on other modules may fail those).
fn ci_rejected(ci: &Root) -> Option<String> {
    let log = if ci.exists("var/log/cloud-init.log") {
        ci.read_string("var/log/cloud-init.log")
    } else {
        String::new()
    };
    let mut why = Vec::new();
    if log.contains("Failed loading yaml blob") {
        why.push("YAML it cannot load".to_owned());
    }
    if log.contains("Invalid cloud-config provided") || log.contains("Invalid user-data") {
        // Only schema errors in the keys bootcfg implements count (`cloud-init schema --system`
        // lists them as `key.path: message, …`).
        let out = chroot::run(
            in_root(ci.path(), &["cloud-init", "schema", "--system"]),
            APPLY_TIMEOUT,
        );
        let text = out.stdout + &out.stderr;
        let ours = regex::Regex::new(
            r"(?:errors: |, )((?:apt|apt_\w+|packages|package_\w+|puppet|debconf_selections)\b[^:]*):",
        )
        .expect("regex");
        let keys: Vec<String> = ours.captures_iter(&text).map(|c| c[1].to_owned()).collect();
        if !keys.is_empty() {
            why.push(format!("schema errors in {}", keys.join(", ")));
        }
    }
    if ci.exists("var/lib/cloud/data/status.json") {
        let st = ci.yaml("var/lib/cloud/data/status.json");
        for stage in ["init-local", "init", "modules-config", "modules-final"] {
            let ours: Vec<serde_json::Value> = st["v1"][stage]["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| {
                    let e = e.to_string();
                    [
                        "'apt-configure'",
                        "'apt-pipelining'",
                        "'package-update-upgrade-install'",
                        "'puppet'",
                    ]
                    .iter()
                    .any(|m| e.contains(m))
                })
                .cloned()
                .collect();
            if !ours.is_empty() {
                why.push(format!("{stage}: {}", serde_json::Value::from(ours)));
            }
        }
    }
    (!why.is_empty()).then(|| why.join("; "))
}

struct CorpusRoots {
    ci: Root,
    bc: Root,
    saved: tempfile::TempDir,
}

impl CorpusRoots {
    /// The shared pair: puppet installed in both (cloud-init's puppet module needs `puppet config
    /// print`), then `apt-get` replaced by the recording stub; the reset dirs saved.
    fn new() -> CorpusRoots {
        let (ci, bc) = (Root::fresh(RELEASE.cloudinit), Root::fresh(RELEASE.base));
        {
            let _heavy = heavy_lock();
            for r in [&ci, &bc] {
                timed("installing puppet (shared corpus roots)", || {
                    chroot::run(
                        in_root(r.path(), &["apt-get", "install", "-y", "-q", "puppet"]),
                        APPLY_TIMEOUT,
                    )
                })
                .assert_ok();
                r.write("usr/local/sbin/apt-get", APT_STUB, 0o755);
            }
        }
        // Debian's cloud.cfg runs apt-pipelining before apt-configure; the harness config
        // (tests/setup-roots.sh) leaves it out, the corpus has cases for it.
        ci.write(
            "etc/cloud/cloud.cfg.d/99-zz-bootcfg-corpus.cfg",
            "# bootcfg corpus test: Debian's config-stage apt modules\ncloud_config_modules: [apt-pipelining, apt-configure]\n",
            0o644,
        );
        // The same image configuration in both: bootcfg reads the image's cloud-init mirrors.
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(ci.join("etc/cloud"))
            .arg(bc.join("etc/cloud"))
            .status()
            .expect("cp");
        assert!(st.success());
        let saved = tempfile::Builder::new()
            .prefix("corpus-saved-")
            .tempdir_in(testkit::rootfs::test_home().join("tmp"))
            .expect("temp dir");
        for (tag, r) in [("ci", &ci), ("bc", &bc)] {
            for d in CORPUS_RESET {
                if r.exists(d) {
                    let dest = saved.path().join(tag).join(d);
                    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
                    let st = std::process::Command::new("cp")
                        .arg("-a")
                        .arg(r.join(d))
                        .arg(&dest)
                        .status()
                        .expect("cp");
                    assert!(st.success());
                }
            }
        }
        CorpusRoots { ci, bc, saved }
    }

    fn reset(&self) {
        for (tag, r) in [("ci", &self.ci), ("bc", &self.bc)] {
            for d in CORPUS_RESET {
                let p = r.join(d);
                if p.symlink_metadata().is_ok() {
                    let st = std::process::Command::new("rm")
                        .arg("-rf")
                        .arg(&p)
                        .status()
                        .expect("rm");
                    assert!(st.success());
                }
                let src = self.saved.path().join(tag).join(d);
                if src.exists() {
                    let st = std::process::Command::new("cp")
                        .arg("-a")
                        .arg(&src)
                        .arg(&p)
                        .status()
                        .expect("cp");
                    assert!(st.success());
                }
            }
        }
    }
}

fn seed_bytes(root: &Root, ud: &[u8], instance_id: &str) {
    root.write("var/lib/cloud/seed/nocloud/user-data", ud, 0o600);
    root.write(
        "var/lib/cloud/seed/nocloud/meta-data",
        format!("instance-id: {instance_id}\nlocal-hostname: {HOSTNAME}\n"),
        0o644,
    );
}

const CI_ALL_STAGES: &str = "cloud-init init --local; cloud-init init; \
    cloud-init modules --mode config; cloud-init modules --mode final; true";

/// One case's outcome.
struct Outcome {
    file: String,
    level: Level,
    secs: f64,
    /// Of which waiting for the heavy lock (other tests' package installs).
    wait: f64,
    /// How an identical outcome looks at this level (`identical`, `both reject`, `both accept`).
    same: &'static str,
    allowances: BTreeSet<&'static str>,
    problems: Vec<String>,
}

fn run_case(case: &Case, roots: Option<&CorpusRoots>, n: usize) -> Outcome {
    let t0 = Instant::now();
    let raw = std::fs::read(corpus_dir().join(&case.file)).expect("case file");
    let text = decoded_text(&raw);
    let mut out = Outcome {
        file: case.file.clone(),
        level: case.level,
        secs: 0.0,
        wait: 0.0,
        same: "identical",
        allowances: BTreeSet::new(),
        problems: Vec::new(),
    };
    let instance_id = format!("i-0corpus{n:04}");
    // Validation first: the same for every level.
    let case_path = corpus_dir().join(&case.file);
    let v = std::process::Command::new(BOOTCFG)
        .arg("validate")
        .arg(&case_path)
        .output()
        .expect("bootcfg validate");
    let bc_rejects = !v.status.success();
    let validate_msg =
        String::from_utf8_lossy(&v.stdout).into_owned() + &String::from_utf8_lossy(&v.stderr);

    let fresh;
    let (ci, bc) = match roots {
        Some(r) => {
            r.reset();
            (&r.ci, &r.bc)
        }
        None => {
            fresh = (Root::fresh(RELEASE.cloudinit), Root::fresh(RELEASE.base));
            (&fresh.0, &fresh.1)
        }
    };
    seed_bytes(ci, &raw, &instance_id);
    seed_bytes(bc, &raw, &instance_id);
    let (ci_before, bc_before) = (ci.manifest(CORPUS_WATCH), bc.manifest(CORPUS_WATCH));
    let (ci_pkgs, bc_pkgs) = (ci.dpkg_installed(), bc.dpkg_installed());
    let ci_status_before = ci.read("var/lib/dpkg/status");
    let tw = Instant::now();
    let _heavy = heavy_lock();
    out.wait = tw.elapsed().as_secs_f64();
    let ci_out = chroot::run(
        in_root(ci.path(), &["sh", "-c", CI_ALL_STAGES]),
        APPLY_TIMEOUT,
    );
    assert!(ci_out.status.success(), "{}", ci_out.report());
    let ci_rejects = ci_rejected(ci);
    let ci_changes = root_changes(ci, &ci_before);

    // bootcfg: plan (always, for the plan level and to see a refusal at plan time), then run.
    let ud_path = write_user_data(bc, "");
    std::fs::write(&ud_path, &raw).expect("user-data");
    let plan_out = chroot::run(
        bootcfg_cmd("plan", bc, &ud_path, &instance_id, HOSTNAME),
        APPLY_TIMEOUT,
    );
    let plan_json: serde_json::Value =
        serde_json::from_str(plan_out.stdout.trim()).unwrap_or(serde_json::Value::Null);
    let bc_plan_rejects = !plan_out.status.success();
    let refused = bc_rejects || bc_plan_rejects;
    let expected_level = if refused {
        Level::Validation
    } else if case.network {
        Level::Plan
    } else if case.level == Level::Install {
        Level::Install
    } else {
        Level::Files
    };
    if expected_level != case.level {
        out.problems.push(format!(
            "the index says {:?}, the case is compared at {expected_level:?} (bootcfg refuses: {refused}; network: {})\n{validate_msg}\n{}",
            case.level,
            case.network,
            plan_out.report()
        ));
    }
    match expected_level {
        Level::Validation => {
            let why = if bc_rejects {
                validate_msg.clone()
            } else {
                plan_out.stdout.clone() + &plan_out.stderr
            };
            match &ci_rejects {
                Some(c) => {
                    out.same = "both reject";
                    eprintln!("[corpus]   both reject; cloud-init: {c}")
                }
                None => {
                    let a = if why.contains("not supported") || why.contains("does not support") {
                        "not-supported"
                    } else {
                        "strict-validation"
                    };
                    out.allowances.insert(a);
                    eprintln!("[corpus]   bootcfg refuses, cloud-init applies it ({a})");
                }
            }
        }
        Level::Plan => {
            let (bc_changes, fetches) = plan_changes(bc, &plan_json);
            if ci_changes.is_empty() {
                // Neither can apply it offline: compared at validation level (both accept).
                if ci_rejects
                    .as_deref()
                    .is_some_and(|r| r.contains("schema errors"))
                {
                    out.problems.push(format!(
                        "cloud-init's schema refuses what bootcfg plans: {:?}",
                        ci_rejects
                    ));
                }
                out.same = "both accept";
                eprintln!(
                    "[corpus]   cloud-init wrote nothing before its network step; both accept the case"
                );
            }
            for d in explain(&text, &ci_changes, &bc_changes, false, &fetches) {
                match d.allowance {
                    Some(a) => {
                        out.allowances.insert(a);
                    }
                    None => out.problems.push(d.what),
                }
            }
        }
        Level::Files | Level::Install => {
            let run = chroot::run(run_cmd(bc), APPLY_TIMEOUT);
            let bc_ok = run.status.success();
            let bc_changes = root_changes(bc, &bc_before);
            // Schema complaints are only logged by cloud-init; a failed module is a failure.
            let ci_failed = ci_rejects
                .as_deref()
                .is_some_and(|r| r.contains("modules-"));
            // cloud-init 25.1 (Debian 13) asks apt which packages it knows before installing:
            // it installs those, then fails its package module naming the rest (snap entries
            // too, the image having no snapd). bootcfg asks apt for all of them at once: with
            // apt stubbed here that "succeeds"; with the real apt nothing is installed and the
            // module fails (allowance `unknown-packages`; snap entries: `not-supported`).
            let refused = refused_packages(ci_rejects.as_deref());
            let snaps = snap_entries(&text);
            // what bootcfg asked apt for under that name (a pinned version included)
            let bc_specs = apt_ops(bc, &bc_pkgs).2;
            let spec = |p: &String| {
                bc_specs
                    .iter()
                    .find(|s| s.split('=').next() == Some(p.as_str()))
                    .cloned()
                    .unwrap_or_else(|| p.clone())
            };
            let refused_explained = !refused.is_empty()
                && refused
                    .iter()
                    .all(|p| snaps.contains(p) || !apt_knows(bc, &spec(p)));
            if bc_ok && ci_failed && refused_explained {
                out.allowances.insert("unknown-packages");
                if refused.iter().any(|p| snaps.contains(p)) {
                    out.allowances.insert("not-supported");
                }
            } else if bc_ok == ci_failed {
                if !refused.is_empty() {
                    let unexplained: Vec<&String> = refused
                        .iter()
                        .filter(|p| !snaps.contains(*p) && apt_knows(bc, &spec(p)))
                        .collect();
                    eprintln!(
                        "[corpus]   cloud-init refused {refused:?}; snap entries {snaps:?}; known to apt and not snaps: {unexplained:?}"
                    );
                }
                out.problems.push(format!(
                    "bootcfg run ok: {bc_ok}, cloud-init modules ok: {} ({ci_rejects:?})\n{}",
                    !ci_failed,
                    run.report()
                ));
            }
            for d in explain(&text, &ci_changes, &bc_changes, true, &[]) {
                match d.allowance {
                    Some(a) => {
                        out.allowances.insert(a);
                    }
                    None => out.problems.push(d.what),
                }
            }
            // debconf: the questions the case sets.
            for q in debconf_questions(&text) {
                let (b, c) = (bc.debconf(&q), ci.debconf(&q));
                if b != c {
                    if c.is_none() && has_top_key(&text, "debconf_selections") {
                        out.allowances.insert("legacy-debconf-selections");
                    } else {
                        out.problems
                            .push(format!("debconf {q}: bootcfg {b:?}, cloud-init {c:?}"));
                    }
                }
            }
            // Packages.
            if case.level == Level::Install {
                let (bp, cp) = (bc.dpkg_installed(), ci.dpkg_installed());
                let new = |now: &BTreeMap<String, String>, was: &BTreeMap<String, String>| {
                    now.iter()
                        .filter(|(k, v)| was.get(*k) != Some(*v))
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<BTreeSet<_>>()
                };
                let (bn, cn) = (new(&bp, &bc_pkgs), new(&cp, &ci_pkgs));
                // cloud-init's own image already has some of them (it depends on them).
                let bn: BTreeSet<String> = bn
                    .into_iter()
                    .filter(|p| {
                        let (k, v) = p.split_once('=').expect("k=v");
                        ci_pkgs.get(k).map(String::as_str) != Some(v)
                    })
                    .collect();
                if bn != cn {
                    out.problems.push(format!(
                        "dpkg: new packages differ: only bootcfg {:?}, only cloud-init {:?}",
                        bn.difference(&cn).collect::<Vec<_>>(),
                        cn.difference(&bn).collect::<Vec<_>>()
                    ));
                }
            } else {
                assert_eq!(
                    ci.read("var/lib/dpkg/status"),
                    ci_status_before,
                    "the stubbed case changed dpkg's status"
                );
                let (b, c) = (apt_ops(bc, &bc_pkgs), apt_ops(ci, &ci_pkgs));
                let legacy_only = !has_top_key(&text, "apt")
                    && LEGACY_APT_KEYS.iter().any(|k| has_top_key(&text, k));
                // bootcfg asked apt for the packages 25.1 refused besides the ones it installed
                let only_refused = refused_explained
                    && (b.0, b.1) == (c.0, c.1)
                    && c.2.is_subset(&b.2)
                    && b.2
                        .difference(&c.2)
                        .all(|p| refused.contains(p.split('=').next().unwrap_or(p)));
                if b != c && legacy_only && (b.1, &b.2) == (c.1, &c.2) {
                    // bootcfg's `apt-get update` after the old keys' sources
                    out.allowances.insert("legacy-apt-keys");
                } else if b != c && only_refused {
                    out.allowances.insert("unknown-packages");
                } else if b != c {
                    out.problems.push(format!(
                        "apt operations (update, upgrade, new packages): bootcfg {b:?}, cloud-init {c:?}"
                    ));
                }
            }
            // The service: cloud-init starts it (stub), bootcfg never does in an image.
            if ci.exists("var/log/service-stub.log")
                && ci
                    .read_string("var/log/service-stub.log")
                    .lines()
                    .any(|l| l.contains("puppet"))
            {
                out.allowances.insert("service-start");
            }
        }
    }
    // `packages` entries in cloud-init 23.2's form (`- apt: [...]`, `- snap: [...]`): bootcfg
    // installs the apt ones (snap ones are ignored with a warning); cloud-init 22.4 fails its
    // package module on them ("Invalid package type") before installing anything.
    let newer_packages = ci_rejects
        .as_deref()
        .is_some_and(|r| r.contains("Invalid package type"))
        && regex::Regex::new(r"(?m)^\s*-\s*(apt|snap):")
            .expect("regex")
            .is_match(&text);
    if newer_packages {
        let before = out.problems.len();
        out.problems
            .retain(|p| !p.starts_with("bootcfg run ok:") && !p.starts_with("apt operations"));
        if out.problems.len() != before {
            out.allowances.insert("packages-newer-syntax");
        }
    }
    // A whole user-data in base64 (one line): bootcfg decodes it, cloud-init does not (it logs
    // the blob as an unhandled non-multipart part and applies nothing).
    let raw_is_base64 = {
        let t = String::from_utf8_lossy(&raw);
        let t = t.trim();
        !t.is_empty()
            && !t.contains('\n')
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
    };
    let ci_log = if ci.exists("var/log/cloud-init.log") {
        ci.read_string("var/log/cloud-init.log")
    } else {
        String::new()
    };
    if raw_is_base64
        && ci_log.contains("Unhandled non-multipart (text/x-not-multipart) userdata")
        && !out.problems.is_empty()
    {
        out.allowances.insert("base64-user-data");
        out.problems.clear();
    }
    out.secs = t0.elapsed().as_secs_f64();
    out
}

/// Every case of the corpus through both tools (see the comment above [`CORPUS_WATCH`]). Prints
/// per-case timing and outcome, the corpus size and the equivalence rate.
#[test]
fn corpus_cases_match_cloud_init_or_differ_only_as_documented() {
    let t0 = Instant::now();
    let cases = corpus_index();
    // The index lists every file of the corpus, once.
    let mut files: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|f| f != "README.md")
        .collect();
    files.sort();
    let mut indexed: Vec<String> = cases.iter().map(|c| c.file.clone()).collect();
    indexed.sort();
    assert_eq!(
        files, indexed,
        "tests/fixtures/corpus/README.md must index every case once"
    );
    let only = std::env::var("BOOTCFG_CORPUS_ONLY").ok();
    let roots = CorpusRoots::new();
    eprintln!("[corpus] shared roots ready in {:.1?}", t0.elapsed());
    let mut outcomes = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        if only.as_deref().is_some_and(|o| !case.file.contains(o)) {
            continue;
        }
        let shared = (case.level != Level::Install).then_some(&roots);
        let o = run_case(case, shared, n);
        eprintln!(
            "[corpus] {:<44} {:<10} {:>5.1} s (+{:.1} s waiting)  {}{}",
            o.file,
            format!("{:?}", o.level).to_lowercase(),
            o.secs - o.wait,
            o.wait,
            if o.problems.is_empty() {
                if o.allowances.is_empty() {
                    o.same.to_owned()
                } else {
                    format!(
                        "documented: {}",
                        o.allowances.iter().copied().collect::<Vec<_>>().join(", ")
                    )
                }
            } else {
                "DIFFERS".to_owned()
            },
            o.problems
                .iter()
                .map(|p| format!("\n    - {}", p.replace('\n', "\n      ")))
                .collect::<String>()
        );
        outcomes.push(o);
    }
    let total = outcomes.len();
    let equivalent = outcomes.iter().filter(|o| o.problems.is_empty()).count();
    let identical = outcomes
        .iter()
        .filter(|o| o.problems.is_empty() && o.allowances.is_empty())
        .count();
    for o in &outcomes {
        for a in &o.allowances {
            assert!(
                ALLOWED.iter().any(|x| x.key == *a),
                "{}: unknown allowance {a}",
                o.file
            );
        }
    }
    let waited: f64 = outcomes.iter().map(|o| o.wait).sum();
    eprintln!(
        "[corpus] corpus size {total}; equivalent {equivalent}/{total} ({:.0}%): {identical} identical, {} differing only in documented ways; {:.0?} in all, of which {waited:.0} s waiting for other tests' heavy lock",
        100.0 * equivalent as f64 / total.max(1) as f64,
        equivalent - identical,
        t0.elapsed()
    );
    let bad: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.problems.is_empty())
        .map(|o| o.file.as_str())
        .collect();
    assert!(bad.is_empty(), "cases that differ beyond ALLOWED: {bad:?}");
}
