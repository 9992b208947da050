//! `bootcfg validate` and `bootcfg schema`, run as the real binary.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bootcfg");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run bootcfg")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Write `input` to a file, validate it, expect `code` and every string of `want` in the output.
fn check(input: &[u8], code: i32, want: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user-data");
    std::fs::write(&path, input).unwrap();
    let o = run(&["validate", path.to_str().unwrap()]);
    let out = text(&o).replace(path.to_str().unwrap(), "user-data");
    assert_eq!(
        o.status.code(),
        Some(code),
        "input:\n{}\noutput:\n{out}",
        String::from_utf8_lossy(input)
    );
    for w in want {
        assert!(out.contains(w), "missing {w:?} in:\n{out}");
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn every_userdata_example_is_valid() {
    let mut files: Vec<String> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("userdata-") && n.ends_with(".yaml")
        })
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "expected the user-data examples in examples/, found {files:?}"
    );
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for f in &files {
        assert!(text(&o).contains(&format!("{f}: valid")), "{}", text(&o));
    }
}

#[test]
fn bad_user_data_is_rejected_with_a_located_message() {
    let cases: &[(&str, &[&str])] = &[
        (
            "#cloud-config\npackages: [nginx\n",
            &[
                "user-data:3:1: error: YAML syntax error",
                "user-data: invalid (1 error",
            ],
        ),
        (
            "#cloud-config\npackage_upgrade: [yes]\n",
            &[
                "user-data:2:18: error: package_upgrade: expected a boolean, found a list",
                "fix: write `true` or `false`",
            ],
        ),
        (
            "#cloud-config\npakages: [nginx]\n",
            &[
                "user-data:2:1: error: pakages: unknown key `pakages`",
                "fix: did you mean `packages`?",
            ],
        ),
        (
            "#cloud-config\napt:\n  sources:\n    evil:\n      source: deb http://h/ d main\n      filename: ../../cron.d/evil\n",
            &[
                "user-data:6:17: error: apt.sources.evil.filename: file name `../../cron.d/evil` contains `/`",
            ],
        ),
        (
            "#cloud-config\npackages:\n  - \"nginx;reboot\"\n",
            &["user-data:3:5: error: packages[0]: `nginx;reboot` is not a Debian package name"],
        ),
        (
            "#cloud-config\napt_sources:\n  - source: deb http://h/ d main\n    key: |\n      -----BEGIN PGP PUBLIC KEY BLOCK-----\n\n      AAAAAAAAAAAAAAAA\n      -----END PGP PUBLIC KEY BLOCK-----\n",
            &["user-data:5:7: error: apt_sources[0].key: not a valid OpenPGP public key block"],
        ),
        (
            "#cloud-config\napt:\n  sources:\n    r:\n      source: deb $MIRROR $DISTRO main\n",
            &["user-data:5:15: error: apt.sources.r.source: unknown variable `$DISTRO`"],
        ),
        (
            "#cloud-config\npuppet:\n  conf:\n    agent:\n      certname: \"%i\\n[main]\\nserver = evil.example\"\n",
            &["user-data:5:17: error: puppet.conf.agent.certname: the value contains a newline"],
        ),
        (
            "#cloud-config\npuppet:\n  conf:\n    ca_cert: \"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n\"\n",
            &["puppet.conf.ca_cert: the PEM certificate cannot be parsed"],
        ),
        (
            "IyFjbG91ZC1jb25maWcKcGFja2FnZXM6IFtuZ2lueF0K%%%",
            &["user-data:1:1: error: user-data does not start with `#cloud-config`"],
        ),
        (
            "I2Nsb3VkLWNvbmZpZwpwYWNrYWdlczogW25naW54XQo=x==\n",
            &["user-data:1:1: error: user-data looks like base64 but is not valid base64"],
        ),
        (
            "#cloud-config\napt:\n  preserve_sources_list: false\n  sources_list: |\n    deb $MIRROR $RELEASE main\n    Types: deb\n    URIs: $MIRROR\n",
            &[
                "user-data:5:5: error: apt.sources_list: line 2 (`Types: deb`) is a deb822 field, but the template also has one-line `deb` entries: apt reads one format per file",
            ],
        ),
        (
            "MIME-Version: 1.0\nContent-Type: multipart/mixed\n\n--b\nContent-Type: text/cloud-config\n\n#cloud-config\npackages: [nginx]\n--b--\n",
            &[
                "user-data: error: MIME user-data is `multipart/mixed` but its Content-Type has no boundary",
            ],
        ),
    ];
    for (input, want) in cases {
        check(input.as_bytes(), 1, want);
    }
}

#[test]
fn non_utf8_is_rejected() {
    check(
        b"#cloud-config\npackages: [\xff]\n",
        1,
        &["user-data:2:12: error: user-data is not valid UTF-8"],
    );
}

#[test]
fn gzip_bomb_is_rejected_in_bounded_time() {
    // 256 MiB of zeros: about 256 KiB compressed. Rejected by the 1 MiB decompression cap.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    let t = Instant::now();
    check(
        &bomb,
        1,
        &["user-data: error: gzip data decompresses to more than 1024 KiB (a gzip bomb?)"],
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn gzip_mime_multipart_with_two_cloud_config_parts() {
    use base64::Engine as _;
    let second = base64::engine::general_purpose::STANDARD
        .encode("#cloud-config\npackages: [curl]\napt:\n  http_proxy: http://second:3128/\n");
    let mime = format!(
        "Content-Type: multipart/mixed; boundary=\"XYZ\"\nMIME-Version: 1.0\n\n\
--XYZ\nContent-Type: text/cloud-config\n\n#cloud-config\npackage_update: true\napt:\n  http_proxy: http://first:3128/\n\n\
--XYZ\nContent-Type: text/cloud-config\nContent-Transfer-Encoding: base64\n\n{second}\n\
--XYZ\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho hi\n\
--XYZ--\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user-data.gz");
    std::fs::write(&path, gzip(mime.as_bytes())).unwrap();
    let o = run(&["validate", "--output", "json", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["files"][0]["warnings"], 1);
    let msg = v["files"][0]["diagnostics"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("a script (`#!`) is not handled by bootcfg"),
        "{msg}"
    );
    assert!(
        v["files"][0]["diagnostics"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("(MIME part 3)")
    );
    // The merged model itself is checked in schemas' unit tests (later part wins per key).
}

/// Issue 13: user-data cloud-init accepts is accepted, and what bootcfg does differently or
/// what would do nothing is a warning naming the key and the fix.
#[test]
fn cloud_init_compatible_user_data_is_valid_and_no_ops_are_warned() {
    check(
        b"#cloud-config\napt:\n  proxy: http://a:3128/\n  http_proxy: http://b:3128/\n",
        0,
        &[
            "user-data:4:15: warning: apt.http_proxy: `apt.http_proxy` and `apt.proxy` (at user-data:3) set different http proxies",
            "user-data: valid (1 warning)",
        ],
    );
    check(
        b"#cloud-config\napt:\n  primary:\n    - arches: [default]\n      uri: http://m.example/debian\n",
        0,
        &["warning: apt.primary: `apt.primary` has no effect: `apt.preserve_sources_list` is true", "fix: set `apt.preserve_sources_list: false`"],
    );
    check(
        b"#cloud-config\napt:\n  conf: x\napt_sources:\n  - source: deb http://r.example/ d main\n",
        0,
        &[
            "user-data:4:1: warning: apt_sources: `apt_sources` has no effect: the user-data has `apt:`",
            "fix: move it under `apt:` as `sources`",
        ],
    );
    check(
        b"#cloud-config\napt:\n  preserve_sources_list: false\n  sources_list: |\n    Types: deb\n    URIs: $MIRROR\n    Suites: $RELEASE\n    Components: main\n",
        0,
        &["user-data: valid (0 warnings)"],
    );
}

/// Issue 13, item 2: a merger other than cloud-init's default, in a later MIME part (as YAML or
/// as a `Merge-Type` header), is refused naming the part.
#[test]
fn merge_how_other_than_the_default_is_refused_naming_the_part() {
    let mime = |headers: &str, body: &str| {
        format!(
            "Content-Type: multipart/mixed; boundary=\"XYZ\"\nMIME-Version: 1.0\n\n\
--XYZ\nContent-Type: text/cloud-config\n\n#cloud-config\napt:\n  conf: x\n\n\
--XYZ\nContent-Type: text/cloud-config\n{headers}\n#cloud-config\n{body}apt:\n  https_proxy: http://p:3128/\n\
--XYZ--\n"
        )
    };
    check(
        mime("", "merge_how: 'list(append)+dict(recurse_array)+str()'\n").as_bytes(),
        1,
        &[
            "user-data (MIME part 2):2:1: error: merge_how: `merge_how` asks for `list(append)+dict(recurse_array)+str()`, which bootcfg does not support",
            "fix: remove it and repeat the whole top-level key",
        ],
    );
    check(
        mime(
            "Merge-Type: dict(no_replace,recurse_list)+list(append)\n",
            "",
        )
        .as_bytes(),
        1,
        &[
            "user-data (MIME part 2): error: Merge-Type: the `Merge-Type` header asks for `dict(no_replace,recurse_list)+list(append)`",
        ],
    );
    check(
        mime("Merge-Type: dict(replace)+list()+str()\n", "").as_bytes(),
        0,
        &["user-data: valid (0 warnings)"],
    );
}

#[test]
fn strict_turns_warnings_into_errors() {
    let input = b"#cloud-config\nruncmd: [ls]\npackages: [nginx]\n";
    check(
        input,
        0,
        &[
            "user-data:2:1: warning: runcmd: not handled by bootcfg",
            "user-data: valid (1 warning)",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ud");
    std::fs::write(&path, input).unwrap();
    let o = run(&["validate", "--strict", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("error: runcmd: not handled by bootcfg"),
        "{}",
        text(&o)
    );
}

#[test]
fn json_output_lists_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, "#cloud-config\npackages: [nginx]\n").unwrap();
    let missing = dir.path().join("missing");
    let o = run(&[
        "validate",
        "--output",
        "json",
        good.to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["files"][0]["valid"], true);
    assert_eq!(v["files"][1]["valid"], false);
    let d = &v["files"][1]["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .starts_with("cannot read the file"),
        "{d}"
    );
}

#[test]
fn stdin_is_read_with_dash() {
    let mut child = Command::new(BIN)
        .args(["validate", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"#cloud-config\npackages: [\"a;b\"]\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("<stdin>:2:12: error: packages[0]"),
        "{}",
        text(&o)
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["validate"]).status.code(), Some(2));
    assert_eq!(
        run(&["validate", "--output", "yaml", "x"]).status.code(),
        Some(2)
    );
}

#[test]
fn schema_is_json_schema_with_every_handled_key() {
    let o = run(&["schema"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["$schema"], "http://json-schema.org/draft-07/schema#");
    for k in [
        "apt",
        "packages",
        "puppet",
        "apt_sources",
        "apt_conf",
        "debconf_selections",
        "runcmd",
    ] {
        assert!(
            v["properties"].get(k).is_some(),
            "{k} missing from the schema"
        );
    }
    assert_eq!(v["additionalProperties"], false);
}
