//! The whole flow end to end on one machine (issue 6): moto, a real Puppet Server whose autosign is
//! the signer, `conductor launch`, `bootcfg run` in a fresh Debian root against an IMDSv2
//! endpoint, the hook signing during submission, the catalog applied, the registration consumed,
//! and four attacks left unsigned (among them the EC2 API reader who races the instance with its
//! stolen user-data and a forged identity document, before the instance boots). The steps and their checks live in `testkit::scenario`
//! (shared with the `demo` walkthrough); this test re-checks what the report says.
//!
//! Needs root, `sudo tests/setup.sh`, and `cargo build --workspace` (the real binaries).

use testkit::scenario::{self, Options};

#[test]
fn conductor_bootcfg_signer_end_to_end_with_attacks() {
    let report = scenario::run(&Options {
        narrate: false,
        keep: std::env::var_os("BOOTCFG_TEST_KEEP").is_some_and(|v| v == "1"),
    })
    .unwrap_or_else(|e| panic!("end-to-end scenario failed: {e:#}"));
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
