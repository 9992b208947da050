//! The whole flow end to end on one machine (issue 6): moto, a real Puppet Server whose autosign is
//! the signer, `conductor launch`, `bootcfg run` in a fresh Debian root against an IMDSv2
//! endpoint, the hook signing during submission, the catalog applied, the registration consumed,
//! the instance terminated, reaped and its certificate revoked, and four attacks left unsigned (among them the EC2 API reader who races the instance with its
//! stolen user-data and a forged identity document, before the instance boots). The steps and their checks live in `testkit::scenario`
//! (shared with the `demo` walkthrough); this test re-checks what the report says.
//!
//! Needs root, `sudo tests/setup.sh`, and `cargo build --workspace` (the real binaries).

use testkit::scenario::{self, Debian, Options};

/// One scenario at a time (each starts its own Puppet Server and roots).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn conductor_bootcfg_signer_end_to_end_with_attacks_on_debian_12() {
    end_to_end(Debian::D12);
}

#[test]
fn conductor_bootcfg_signer_end_to_end_with_attacks_on_debian_13() {
    end_to_end(Debian::D13);
}

fn end_to_end(debian: Debian) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let report = scenario::run(&Options {
        narrate: false,
        keep: std::env::var_os("BOOTCFG_TEST_KEEP").is_some_and(|v| v == "1"),
        debian,
    })
    .unwrap_or_else(|e| panic!("end-to-end scenario on {} failed: {e:#}", debian.name()));
    assert!(
        uuid_like(&report.certname),
        "certname {} is not a UUID",
        report.certname
    );
    assert!(
        report.instance_id.starts_with("i-"),
        "{}",
        report.instance_id
    );
    // Debian 12: Puppet 7 agent and server; Debian 13: Puppet 8
    let major = match debian {
        Debian::D12 => "7.",
        Debian::D13 => "8.",
    };
    assert!(
        report.agent_version.starts_with(major) && report.server_version.starts_with(major),
        "{}: puppet-agent {}, puppetserver {}",
        debian.name(),
        report.agent_version,
        report.server_version
    );
    // Debian 13: the CA host as the README sets it up, from the signer's package.
    if debian == Debian::D13 {
        assert_eq!(
            report.autosign,
            std::path::Path::new("/usr/lib/bootcfg-signer/autosign")
        );
        assert_eq!(
            report.audit_log,
            std::path::Path::new("/var/log/bootcfg-signer/audit.jsonl")
        );
    }
    assert_eq!(report.approved["decision"], "approved");
    assert_eq!(report.approved["certname"], report.certname.as_str());
    let names: Vec<&str> = report.attacks.iter().map(|a| a.name).collect();
    assert_eq!(
        names,
        [
            "api reader",
            "replay",
            "wrong secret",
            "dns_alt_names=puppet"
        ]
    );
    assert_eq!(report.attacks[0].audit["check"], "identity");
    // Terminated, reaped and swept: its certificate revoked (the scenario checked the CRL), and
    // the replay of its user-data refused as retired.
    assert!(!report.revoked_serial.is_empty());
    assert_eq!(report.attacks[1].audit["check"], "retired");
    for a in &report.attacks {
        assert_eq!(a.ca_state.as_deref(), Some("requested"), "{a:?}");
        assert_eq!(a.audit["decision"], "rejected", "{a:?}");
        assert_ne!(a.bootcfg_exit, Some(0), "{a:?}");
        assert!(
            a.audit["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "an audit rejection needs a reason: {a:?}"
        );
    }
    for a in &report.attacks[..2] {
        assert_eq!(
            a.certname, report.certname,
            "the API reader and the replay target the first instance's certname"
        );
    }
    eprintln!("[e2e] timings: {:?}", report.timings);
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}
