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
        assert!(out.status.success(), "{args:?}");
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
