//! The signer binary's command line, without a Puppet server: help, config errors, and the hook
//! failing closed on its own (file:// registry, CSRs built in-process).

use schemas::registration::{Registration, sha256_hex};
use signer::craft::{self, Spec};
use std::io::Write;
use std::process::{Command, Output, Stdio};

const SIGNER: &str = env!("CARGO_BIN_EXE_signer");
const CN: &str = "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11";

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(SIGNER)
        .args(args)
        .env_remove("SIGNER_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn help_has_examples_and_fits_100_columns() {
    for args in [
        &["--help"][..],
        &["autosign", "--help"],
        &["sweep", "--help"],
        &["check-config", "--help"],
    ] {
        let out = run(args, b"");
        // autosign's help is a refusal (exit 1): Puppet signs on exit 0, and a CSR may be named
        // `--help` (see a_certname_that_looks_like_an_option_is_never_approved)
        let want = if args[0] == "autosign" {
            Some(1)
        } else {
            Some(0)
        };
        assert_eq!(out.status.code(), want, "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Example"), "{args:?}: {text}");
        for line in text.lines() {
            assert!(
                line.chars().count() <= 100,
                "{args:?}: line too long: {line}"
            );
        }
    }
}

#[test]
fn a_bad_config_names_file_line_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("signer.yaml");
    std::fs::write(&cfg, "registry: file:///x\ndeadlines:\n  hook: soon\n").unwrap();
    let out = run(&["--config", cfg.to_str().unwrap(), "autosign", CN], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("signer.yaml:3:") && err.contains("deadlines.hook") && err.contains("fix:"),
        "{err}"
    );
}

#[test]
fn the_hook_approves_once_and_fails_closed_when_it_cannot_audit() {
    let dir = tempfile::tempdir().unwrap();
    let reg_dir = dir.path().join("reg");
    std::fs::create_dir_all(&reg_dir).unwrap();
    let audit = dir.path().join("audit.jsonl");
    let cfg = dir.path().join("signer.yaml");
    let write_cfg = |audit: &std::path::Path| {
        std::fs::write(
            &cfg,
            format!(
                "registry: file://{}\naudit_log: {}\nlock_file: {}/lock\n",
                reg_dir.display(),
                audit.display(),
                dir.path().display()
            ),
        )
        .unwrap();
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let registry = rt
        .block_on(schemas::registry::open(
            &format!("file://{}", reg_dir.display()),
            &Default::default(),
        ))
        .unwrap();
    let reg = Registration::new(
        CN,
        &sha256_hex(b"s3cret"),
        "t",
        chrono::Utc::now(),
        chrono::Duration::minutes(5),
    );
    rt.block_on(registry.create(&reg)).unwrap();
    let pem = Spec::new(CN, "s3cret").build(&craft::rsa_key(2048));

    // The audit log's parent is a file: the decision cannot be recorded, so nothing is approved.
    std::fs::write(dir.path().join("blocker"), b"").unwrap();
    write_cfg(&dir.path().join("blocker/audit.jsonl"));
    let out = run(&["--config", cfg.to_str().unwrap(), "autosign", CN], &pem);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Audit log writable: this CSR is consumed already (by the run above), so the hook refuses;
    // only the sweep's same-CSR retry may sign it.
    write_cfg(&audit);
    let out = run(&["--config", cfg.to_str().unwrap(), "autosign", CN], &pem);
    assert_eq!(out.status.code(), Some(1));
    let consumed = rt
        .block_on(registry.get(CN))
        .unwrap()
        .unwrap()
        .0
        .consumed
        .unwrap();
    assert_eq!(consumed.csr_sha256, signer::csr::fingerprint(&pem));
    let line = std::fs::read_to_string(&audit).unwrap();
    assert!(
        line.contains("\"decision\":\"rejected\"") && line.contains("replay"),
        "{line}"
    );
    assert!(!line.contains("s3cret"));
}

/// The threat: Puppet runs the autosign executable with the CSR's certname as its only argument,
/// and Puppet accepts certnames that start with `-`. A CSR named like an option of the hook must
/// never make it exit 0 (Puppet's "sign"): not `--help` (clap's help exits 0 by default), not
/// `--version`, not a global option that swaps the config. Every such name, through the
/// documented wrapper's argv (with `--`) and without it, exits non-zero, with a CSR on stdin
/// that would prove nothing anyway and a config whose registry is empty.
#[test]
fn a_certname_that_looks_like_an_option_is_never_approved() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("reg");
    std::fs::create_dir_all(&reg).unwrap();
    let cfg = dir.path().join("signer.yaml");
    std::fs::write(
        &cfg,
        format!(
            "registry: file://{}\naudit_log: {}\n",
            reg.display(),
            dir.path().join("audit.jsonl").display()
        ),
    )
    .unwrap();
    // a permissive-looking second config the attacker might point at
    let other = dir.path().join("other.yaml");
    std::fs::write(&other, format!("registry: file://{}\n", reg.display())).unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let key = craft::rsa_key(2048);
    let names = [
        "--help".to_owned(),
        "-h".to_owned(),
        "--version".to_owned(),
        "-V".to_owned(),
        "-hV".to_owned(),
        "--output=json".to_owned(),
        "--config".to_owned(),
        format!("--config={}", other.display()),
        format!("-c{}", other.display()),
        "--".to_owned(),
        "-".to_owned(),
        "help".to_owned(),
    ];
    for name in &names {
        let pem = Spec::new(name, "s").build(&key);
        for with_dashdash in [true, false] {
            let mut args = vec!["--config", cfg_s, "autosign"];
            if with_dashdash {
                args.push("--");
            }
            args.push(name);
            let out = run(&args, &pem);
            assert_ne!(
                out.status.code(),
                Some(0),
                "certname {name:?} (with `--`: {with_dashdash}) was approved:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.code().is_some(), "killed by a signal: {name:?}");
        }
    }
}
