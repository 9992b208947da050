//! Data-driven tests of `userdata::parse`: one `check(input, expected)` and many short cases.

use super::*;
use std::io::Write as _;

const KEY: &str = include_str!("../../../tests/fixtures/userdata/keys/ed25519-cv25519.asc");
const CA: &str = include_str!("../../../tests/fixtures/userdata/test-ca.pem");

fn indent(text: &str, n: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

/// Parse `input`; expect failure whose rendered diagnostics contain every string in `want`.
fn check_err(input: &[u8], want: &[&str]) {
    let e = match parse("ud.yaml", input) {
        Ok(p) => panic!(
            "expected an error containing {want:?}, parsed: {:#?}",
            p.config
        ),
        Err(e) => e.to_string(),
    };
    for w in want {
        assert!(e.contains(w), "missing {w:?} in:\n{e}");
    }
}

fn ok(input: &str) -> Parsed {
    match parse("ud.yaml", input.as_bytes()) {
        Ok(p) => p,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn rejects_bad_input_with_located_messages() {
    let cases: &[(&str, &[&str])] = &[
        // malformed YAML
        (
            "#cloud-config\npackages: [nginx\n",
            &["ud.yaml:", "YAML syntax error"],
        ),
        (
            "#cloud-config\napt:\n  conf: a\n   x: y\n",
            &["ud.yaml:4:", "YAML syntax error"],
        ),
        // a wrong type
        (
            "#cloud-config\npackage_update: sometimes\n",
            &[
                "ud.yaml:2:17: error: package_update: expected a boolean, found a string",
                "fix: write `true` or `false`",
            ],
        ),
        (
            "#cloud-config\npackages: nginx\n",
            &["ud.yaml:2:11: error: packages: expected a list"],
        ),
        (
            "#cloud-config\napt:\n  sources: [a, b]\n",
            &["ud.yaml:3:12: error: apt.sources: expected a mapping"],
        ),
        // a typo'd top-level key
        (
            "#cloud-config\npakages: [nginx]\n",
            &[
                "ud.yaml:2:1: error: pakages: unknown key `pakages`",
                "did you mean `packages`?",
            ],
        ),
        (
            "#cloud-config\napt:\n  prxy: http://p:3128\n",
            &[
                "ud.yaml:3:3: error: apt.prxy: unknown key `prxy`",
                "did you mean `proxy`?",
            ],
        ),
        (
            "#cloud-config\nxyzzy: 1\n",
            &["unknown key `xyzzy`", "bootcfg handles apt"],
        ),
        // a path-traversing filename
        (
            "#cloud-config\napt:\n  sources:\n    x:\n      source: deb http://h/ d main\n      filename: ../../etc/cron.d/evil\n",
            &["ud.yaml:6:17: error: apt.sources.x.filename:", "escape"],
        ),
        (
            "#cloud-config\napt_sources:\n  - source: deb http://h/ d main\n    filename: /etc/passwd\n",
            &[
                "ud.yaml:4:15: error: apt_sources[0].filename:",
                "contains `/`",
            ],
        ),
        (
            "#cloud-config\napt:\n  sources:\n    \"..\":\n      source: deb http://h/ d main\n",
            &["apt.sources...", "escapes its directory"],
        ),
        (
            "#cloud-config\napt_conf:\n  - filename: ../x\n    content: a\n",
            &["apt_conf[0].filename", "escape"],
        ),
        // a package name with `;`
        (
            "#cloud-config\npackages:\n  - nginx\n  - \"curl;reboot\"\n",
            &[
                "ud.yaml:4:5: error: packages[1]: `curl;reboot` is not a Debian package name",
                "policy",
            ],
        ),
        (
            "#cloud-config\npackages:\n  - [nginx, \"1.0;ls\"]\n",
            &["packages[0]: `1.0;ls` is not a Debian version"],
        ),
        (
            "#cloud-config\npackages:\n  - apt: [\"a b\"]\n",
            &["packages[0].apt[0]: `a b` is not a Debian package name"],
        ),
        // a fake PGP key block
        (
            "#cloud-config\napt:\n  sources:\n    r:\n      source: deb [signed-by=$KEY_FILE] http://h/ d main\n      key: |\n        -----BEGIN PGP PUBLIC KEY BLOCK-----\n\n        VGhpcyBpcyBub3QgYSBrZXk=\n        -----END PGP PUBLIC KEY BLOCK-----\n",
            &[
                "ud.yaml:7:9: error: apt.sources.r.key: not a valid OpenPGP public key block",
                "gpg --armor --export",
            ],
        ),
        (
            "#cloud-config\napt_sources:\n  - source: deb http://h/ d main\n    key: hello\n",
            &["apt_sources[0].key: not a valid OpenPGP public key block"],
        ),
        // an unknown $VAR
        (
            "#cloud-config\napt:\n  sources:\n    r:\n      source: deb $MIROR $RELEASE main\n",
            &[
                "ud.yaml:5:15: error: apt.sources.r.source: unknown variable `$MIROR`",
                "did you mean `$MIRROR`?",
            ],
        ),
        (
            "#cloud-config\napt:\n  sources_list: deb ${MIRRORS} $RELEASE main\n",
            &["apt.sources_list: unknown variable `$MIRRORS`"],
        ),
        (
            "#cloud-config\napt:\n  sources:\n    r:\n      source: deb [signed-by=$KEY_FILE] http://h/ d main\n",
            &[
                "apt.sources.r.source",
                "`$KEY_FILE` but the entry has no `key`",
            ],
        ),
        // a newline inside a puppet.conf value
        (
            "#cloud-config\npuppet:\n  conf:\n    agent:\n      server: \"p.example.com\\n[main]\\nserver = evil\"\n",
            &[
                "ud.yaml:5:15: error: puppet.conf.agent.server: the value contains a newline",
                "one line",
            ],
        ),
        (
            "#cloud-config\npuppet:\n  conf:\n    master:\n      server: x\n",
            &["puppet.conf.master: unknown key `master`"],
        ),
        (
            "#cloud-config\npuppet:\n  conf:\n    agent:\n      \"bad key\": x\n",
            &[
                "puppet.conf.agent.bad key",
                "not a puppet.conf setting name",
            ],
        ),
        (
            "#cloud-config\npuppet:\n  conf:\n    ca_cert: not a cert\n",
            &["puppet.conf.ca_cert: not a PEM certificate"],
        ),
        (
            "#cloud-config\npuppet:\n  csr_attributes:\n    other: {}\n",
            &["puppet.csr_attributes.other: unknown key"],
        ),
        // csr_attributes names checked against the shared OID table (schemas::oids)
        (
            "#cloud-config\npuppet:\n  csr_attributes:\n    extension_requests:\n      pp_rolle: web\n",
            &[
                "ud.yaml:5:17: error: puppet.csr_attributes.extension_requests.pp_rolle: `pp_rolle` is not an extension Puppet accepts in a CSR",
                "did you mean `pp_role`?",
                "1.3.6.1.4.1.34380.1.1, 1.3.6.1.4.1.34380.1.2 or 1.3.6.1.4.1.34380.1.3",
            ],
        ),
        (
            "#cloud-config\npuppet:\n  csr_attributes:\n    extension_requests:\n      2.5.29.17: \"DNS:evil.example\"\n",
            &[
                "puppet.csr_attributes.extension_requests.2.5.29.17: `2.5.29.17` is not an extension Puppet accepts in a CSR",
                "fix: use a Puppet short name such as `pp_role`",
            ],
        ),
        (
            "#cloud-config\npuppet:\n  csr_attributes:\n    extension_requests:\n      1.3.6.1.4.1.34380.1.2.07: x\n",
            &["`1.3.6.1.4.1.34380.1.2.07` is not an extension Puppet accepts in a CSR"],
        ),
        (
            "#cloud-config\npuppet:\n  csr_attributes:\n    custom_attributes:\n      1.2.840.113549.1.9.14: x\n",
            &[
                "ud.yaml:5:30: error: puppet.csr_attributes.custom_attributes.1.2.840.113549.1.9.14: `1.2.840.113549.1.9.14` is the CSR's extension request attribute; Puppet refuses it",
                "fix: put extensions under `puppet.csr_attributes.extension_requests`",
            ],
        ),
        (
            "#cloud-config\npuppet:\n  csr_attributes:\n    custom_attributes:\n      1.3.6.1.4.1.311.2.1.14: x\n",
            &[
                "custom_attributes.1.3.6.1.4.1.311.2.1.14: `1.3.6.1.4.1.311.2.1.14` is the CSR's extension request attribute; Puppet refuses it",
            ],
        ),
        (
            "#cloud-config\npuppet:\n  csr_attributes:\n    custom_attributes:\n      extReq: x\n",
            &["`extReq` is the CSR's extension request attribute"],
        ),
        (
            // schemas::oids::INSTANCE_IDENTITY, written by hand
            "#cloud-config\npuppet:\n  csr_attributes:\n    custom_attributes:\n      2.25.41049724980421354458196321678071596567: MIAGCSqGSIb3DQEHAqCAMIACAQExDzAN\n",
            &[
                "puppet.csr_attributes.custom_attributes.2.25.41049724980421354458196321678071596567: `2.25.41049724980421354458196321678071596567` is bootcfg's instance identity attribute",
                "fix: set `puppet.instance_identity: true` instead; bootcfg fetches the document itself",
            ],
        ),
        // the bootcfg extension `puppet.instance_identity`
        (
            "#cloud-config\npuppet:\n  instance_identity: please\n",
            &[
                "ud.yaml:3:22: error: puppet.instance_identity: expected a boolean, found a string",
                "fix: write `true` or `false`",
            ],
        ),
        (
            "#cloud-config\npuppet:\n  instance_identiy: true\n",
            &[
                "puppet.instance_identiy: unknown key `instance_identiy`",
                "did you mean `instance_identity`?",
            ],
        ),
        (
            "#cloud-config\npuppet:\n  conf_file: puppet.conf\n",
            &["puppet.conf_file: `puppet.conf` is not an absolute path"],
        ),
        // keys, proxies, misc
        (
            "#cloud-config\npuppet:\n  conf:\n    agent:\n      server:\n",
            &["ud.yaml:5:7: error: puppet.conf.agent.server: the value is empty"],
        ),
        (
            "#cloud-config\napt:\n  primary:\n    - uri: http://a/\n",
            &["ud.yaml:4:7: error: apt.primary[0]: a mirror entry needs `arches`"],
        ),
        (
            "#cloud-config\napt:\n  sources:\n    r:\n      keyid: nothex\n",
            &["apt.sources.r.keyid: `nothex` is not a key id"],
        ),
        (
            "#cloud-config\napt:\n  proxy: ftp//user:hunter2@p\n",
            &["apt.proxy: proxy `ftp//user:hunter2@p` is not"],
        ),
        (
            "#cloud-config\napt_pipelining: 9\n",
            &["apt_pipelining: pipeline depth 9 is out of range"],
        ),
        (
            "#cloud-config\napt:\n  sources:\n    r:\n      source: \"rm -rf /\"\n",
            &["apt.sources.r.source: `rm -rf /` is not a one-line apt source"],
        ),
        (
            "#cloud-config\npackages: [a1]\npackages: [b1]\n",
            &["ud.yaml:3:1: error: packages: duplicate key"],
        ),
        (
            "#cloud-config\n- a\n",
            &["expected a mapping of cloud-config keys"],
        ),
        (
            "#!/bin/sh\necho hi\n",
            &["user-data is a script (`#!`), which bootcfg does not handle"],
        ),
        (
            "packages: [a]\n",
            &["ud.yaml:1:1: error: user-data does not start with `#cloud-config`"],
        ),
        // both syntaxes set the same thing differently (cloud-init's apt module fails then)
        (
            "#cloud-config\napt:\n  proxy: http://a:3128/\napt_proxy: http://b:3128/\n",
            &[
                "ud.yaml:4:1: error: apt_proxy: `apt_proxy` and `apt.proxy` (at ud.yaml:3) set different values",
                "fix: remove `apt_proxy` (keep `apt.proxy`)",
            ],
        ),
        // a deb822 template mixed with one-line entries: apt reads one format per file
        (
            "#cloud-config\napt:\n  sources_list: |\n    deb $MIRROR $RELEASE main\n    Types: deb\n",
            &[
                "ud.yaml:4:5: error: apt.sources_list: line 2 (`Types: deb`) is a deb822 field, but the template also has one-line `deb` entries",
            ],
        ),
        (
            "#cloud-config\napt:\n  sources_list: |\n    Types: deb\n    URIs: $MIRROR\n    Suites: $RELEASE\n",
            &["apt.sources_list: the deb822 stanza at line 1 has no `Components:` field"],
        ),
        (
            "#cloud-config\napt:\n  sources_list: |\n    deb $MIRROR $RELEASE main\n    http://x/ y main\n",
            &["apt.sources_list: line 2 (`http://x/ y main`) is not a one-line apt source"],
        ),
        (
            "#cloud-config\napt:\n  preserve_sources_list: true\napt_preserve_sources_list: false\n",
            &["`apt_preserve_sources_list` and `apt.preserve_sources_list`"],
        ),
        (
            "#cloud-config\napt:\n  debconf_selections: {a: \"p q/r boolean true\"}\ndebconf_selections: \"p q/r boolean false\"\n",
            &["`debconf_selections` and `apt.debconf_selections`"],
        ),
        (
            "#cloud-config\napt:\n  sources:\n    a: {source: \"deb http://a/ d main\"}\napt_sources:\n  - source: deb http://b/ d main\n",
            &["`apt_sources` and `apt.sources`"],
        ),
        (
            "#cloud-config\ndebconf_selections: \"just two\"\n",
            &["debconf_selections", "is not `package question type value`"],
        ),
    ];
    for (input, want) in cases {
        check_err(input.as_bytes(), want);
    }
}

#[test]
fn oversized_input_is_rejected() {
    let mut big = b"#cloud-config\n".to_vec();
    big.resize(MAX_DECODED as usize + 1, b'#');
    check_err(&big, &["ud.yaml: error: user-data is larger than 1024 KiB"]);
}

#[test]
fn non_utf8_is_located() {
    check_err(
        b"#cloud-config\npackages:\n  - caf\xe9\n",
        &[
            "ud.yaml:3:8: error: user-data is not valid UTF-8",
            "save the file as UTF-8",
        ],
    );
}

#[test]
fn invalid_base64_is_rejected() {
    check_err(
        b"I2Nsb3VkLWNvbmZpZwpwYWNrYWdlczogW25naW54XQo=x==\n",
        &[
            "ud.yaml:1:1: error: user-data looks like base64 but is not valid base64",
            "base64 -w0",
        ],
    );
}

#[test]
fn mime_without_boundary_is_rejected() {
    let input = "MIME-Version: 1.0\nContent-Type: multipart/mixed\n\n--x\nContent-Type: text/cloud-config\n\n#cloud-config\npackages: [a1]\n--x--\n";
    check_err(
        input.as_bytes(),
        &[
            "ud.yaml: error: MIME user-data is `multipart/mixed` but its Content-Type has no boundary",
        ],
    );
}

#[test]
fn gzip_bomb_is_rejected_quickly() {
    // 64 MiB of zeros compresses to ~64 KiB; the cap stops decompression after 1 MiB.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    let t = std::time::Instant::now();
    check_err(&bomb, &["decompresses to more than 1024 KiB"]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn base64_gzip_and_plain_agree() {
    use base64::Engine as _;
    let plain = "#cloud-config\npackages: [nginx]\n";
    let want = ok(plain).config;
    let gz = gzip(plain.as_bytes());
    assert_eq!(parse("x", &gz).unwrap().config, want);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&gz);
    assert_eq!(parse("x", b64.as_bytes()).unwrap().config, want);
    assert_eq!(
        parse("x", format!("{b64}\n").as_bytes()).unwrap().config,
        want
    );
}

#[test]
fn gzip_mime_multipart_parts_are_merged() {
    use base64::Engine as _;
    let part2 = base64::engine::general_purpose::STANDARD.encode("#cloud-config\npackage_upgrade: true\napt:\n  proxy: http://second:3128/\npackages: [curl]\n");
    let mime = format!(
        "Content-Type: multipart/mixed; boundary=\"==BOUNDARY==\"\nMIME-Version: 1.0\n\n\
--==BOUNDARY==\nContent-Type: text/cloud-config; charset=\"us-ascii\"\nMIME-Version: 1.0\nContent-Transfer-Encoding: 7bit\n\n\
#cloud-config\npackage_update: true\napt:\n  proxy: http://first:3128/\n  conf: |\n    APT::Get::Assume-Yes \"true\";\npackages: [nginx, vim]\n\n\
--==BOUNDARY==\nContent-Type: text/cloud-config\nMIME-Version: 1.0\nContent-Transfer-Encoding: base64\n\n{part2}\n\n\
--==BOUNDARY==\nContent-Type: text/x-shellscript\nMIME-Version: 1.0\n\n#!/bin/sh\necho hi\n\n\
--==BOUNDARY==--\n"
    );
    let p = parse("ud.mime.gz", &gzip(mime.as_bytes())).unwrap();
    let c = p.config;
    assert!(c.packages.update && c.packages.upgrade);
    // Later part wins per key; lists are replaced, not appended.
    assert_eq!(
        c.packages.install,
        vec![Package {
            name: "curl".into(),
            version: None
        }]
    );
    assert_eq!(c.apt.proxy.http.as_deref(), Some("http://second:3128/"));
    // A later part's top-level key replaces the earlier one whole (cloud-init's default
    // `dict(replace)`): part 2's `apt:` drops part 1's `apt.conf`.
    assert_eq!(c.apt.conf, None);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].to_string().contains(
            "ud.mime.gz (MIME part 3): warning: a script (`#!`) is not handled by bootcfg"
        ),
        "{}",
        p.warnings[0]
    );
}

#[test]
fn apt_form_full() {
    let input = r#"#cloud-config
apt_pipelining: false
apt:
  preserve_sources_list: no
  primary:
    - arches: [amd64, default]
      uri: http://deb.debian.org/debian
      search: [http://mirror.example/debian]
      search_dns: off
  security:
    - arches: [default]
      uri: http://security.debian.org/debian-security
  sources_list: |
    deb $MIRROR $RELEASE main
    deb $SECURITY $RELEASE-security main
  disable_suites: [$RELEASE-backports]
  conf: 'APT::Install-Recommends "false";'
  proxy: http://user:pw@proxy:3128/
  https_proxy: https://proxy:3129/
  ftp_proxy: ftp://proxy:2121/
  debconf_selections:
    zz: tzdata tzdata/Areas select Europe
    aa: |
      debconf debconf/frontend select Noninteractive
  sources:
    puppet:
      source: deb [signed-by=$KEY_FILE] http://apt.puppet.example/ $RELEASE puppet8
      key: |
@@KEY@@    ppa:
      source: ppa:user/name
    fetched:
      keyid: B59D 5F15 97A5 04B7 E230  6DCA 0620 BBCF 0368 3F77
      keyserver: hkps://keys.openpgp.org
      filename: fetched.list
      append: false
"#
    .replace("@@KEY@@", &indent(KEY, 8));
    let p = ok(&input);
    let a = p.config.apt;
    assert!(!a.preserve_sources_list);
    assert_eq!(a.pipelining, Some(0));
    assert_eq!(a.primary[0].arches, ["amd64", "default"]);
    assert_eq!(a.primary[0].search, ["http://mirror.example/debian"]);
    assert_eq!(
        a.security[0].uri.as_deref(),
        Some("http://security.debian.org/debian-security")
    );
    assert_eq!(a.disable_suites, ["$RELEASE-backports"]);
    assert_eq!(
        a.proxy,
        Proxy {
            http: Some("http://user:pw@proxy:3128/".into()),
            https: Some("https://proxy:3129/".into()),
            ftp: Some("ftp://proxy:2121/".into()),
            http_overridden: None,
        }
    );
    assert_eq!(
        a.debconf_selections
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>(),
        ["aa", "zz"]
    );
    assert_eq!(a.sources.len(), 3);
    assert_eq!(a.sources[0].filename, "puppet.list");
    assert!(
        matches!(&a.sources[0].key, Some(KeySource::Armored(k)) if k.contains("BEGIN PGP PUBLIC KEY BLOCK"))
    );
    assert_eq!(a.sources[1].source.as_deref(), Some("ppa:user/name"));
    assert_eq!(
        a.sources[2].key,
        Some(KeySource::Keyid {
            id: "B59D5F1597A504B7E2306DCA0620BBCF03683F77".into(),
            keyserver: "hkps://keys.openpgp.org".into()
        })
    );
    assert!(!a.sources[2].append);
    // The key-only entry: its keyring is referenced by no source (bootcfg scopes keys).
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].to_string().starts_with(
            "ud.yaml:45:7: warning: apt.sources.fetched: `apt.sources.fetched` has a key but no `source`: bootcfg writes it to /etc/apt/keyrings/fetched.gpg"
        ),
        "{}",
        p.warnings[0]
    );
    // Secrets never appear in diagnostics.
    let bad = input.replace("http://user:pw@proxy:3128/", "socks4://user:pw@proxy:3128/");
    let e = parse("ud.yaml", bad.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("***@proxy") && !e.contains("pw@"), "{e}");
}

#[test]
fn packages_forms() {
    let p = ok(
        "#cloud-config\npackage_update: yes\npackage_upgrade: On\npackage_reboot_if_required: TRUE\npackages:\n  - nginx\n  - [libc6, 2.36-9]\n  - curl=7.88.1-10\n  - apt: [vim, [git, '1:2.39.2-1']]\n  - snap: [lxd]\n",
    );
    let pk = &p.config.packages;
    assert!(pk.update && pk.upgrade && pk.reboot_if_required);
    let got: Vec<_> = pk
        .install
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("nginx", None),
            ("libc6", Some("2.36-9")),
            ("curl", Some("7.88.1-10")),
            ("vim", None),
            ("git", Some("1:2.39.2-1"))
        ]
    );
    assert_eq!(p.warnings.len(), 1);
    assert!(p.warnings[0].message.contains("snap"));
}

#[test]
fn puppet_full() {
    let input = format!(
        "#cloud-config\npuppet:\n  install: true\n  install_type: aio\n  package_name: puppet-agent\n  version: 8.10.0-1bookworm\n  conf_file: /etc/puppetlabs/puppet/puppet.conf\n  ssl_dir: /etc/puppetlabs/puppet/ssl\n  csr_attributes_path: /etc/puppetlabs/puppet/csr_attributes.yaml\n  exec: true\n  exec_args: --test --waitforcert 10\n  start_service: false\n  conf:\n    agent:\n      server: puppet.example.com\n      certname: \"%i.%f\"\n      runinterval: 30m\n      usecacheonfailure: false\n    main:\n      environment: production\n    ca_cert: |\n{}  csr_attributes:\n    custom_attributes:\n      1.2.840.113549.1.9.7: s3cr3t\n    extension_requests:\n      pp_preshared_key: abc\n",
        indent(CA, 6)
    );
    let p = ok(&input).config.puppet.unwrap();
    assert_eq!(p.install_type, InstallType::Aio);
    assert_eq!(p.version.as_deref(), Some("8.10.0-1bookworm"));
    assert_eq!(p.exec_args, ["--test", "--waitforcert", "10"]);
    assert!(p.exec && !p.start_service);
    assert_eq!(p.conf[0].0, "agent");
    assert_eq!(p.conf[0].1[1], ("certname".into(), "%i.%f".into()));
    assert_eq!(p.conf[0].1[3], ("usecacheonfailure".into(), "false".into()));
    assert!(
        p.ca_cert
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    let csr = p.csr_attributes.unwrap();
    assert_eq!(csr.custom_attributes["1.2.840.113549.1.9.7"], "s3cr3t");
    assert_eq!(csr.extension_requests["pp_preshared_key"], "abc");
    // `puppet:` with no value installs with defaults.
    assert_eq!(
        ok("#cloud-config\npuppet:\n").config.puppet,
        Some(Puppet::default())
    );
}

#[test]
fn puppet_instance_identity_and_csr_attribute_names() {
    assert!(
        ok("#cloud-config\npuppet:\n  instance_identity: true\n")
            .config
            .puppet
            .unwrap()
            .instance_identity
    );
    assert!(
        !ok("#cloud-config\npuppet:\n  instance_identity: no\n")
            .config
            .puppet
            .unwrap()
            .instance_identity
    );
    // default: off
    assert!(
        !ok("#cloud-config\npuppet:\n  exec: true\n")
            .config
            .puppet
            .unwrap()
            .instance_identity
    );
    // Every class Puppet accepts: registered and private arcs, generated names, and
    // authorization extensions (a warning: the bootcfg signer never signs them).
    let p = ok(
        "#cloud-config\npuppet:\n  instance_identity: true\n  csr_attributes:\n    custom_attributes:\n      1.2.840.113549.1.9.7: s3cr3t\n    extension_requests:\n      pp_uuid: \"%i\"\n      pp_role: web\n      1.3.6.1.4.1.34380.1.2.7: blue\n      pp_authorization: admin\n",
    );
    let puppet = p.config.puppet.unwrap();
    assert!(puppet.instance_identity);
    let csr = puppet.csr_attributes.unwrap();
    assert_eq!(
        csr.extension_requests.keys().collect::<Vec<_>>(),
        [
            "1.3.6.1.4.1.34380.1.2.7",
            "pp_authorization",
            "pp_role",
            "pp_uuid"
        ]
    );
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    let w = p.warnings[0].to_string();
    assert!(
        w.starts_with("ud.yaml:11:25: warning: puppet.csr_attributes.extension_requests.pp_authorization: `pp_authorization` is an authorization extension: the bootcfg signer never signs ppAuthCertExt requests"),
        "{w}"
    );
}

#[test]
fn legacy_rfc_syntax() {
    let input = format!(
        "#cloud-config\napt_update: false\napt_upgrade: true\napt_mirror: http://deb.example/debian\napt_mirror_search: [http://m1.example/debian]\napt_mirror_search_dns: true\napt_preserve_sources_list: true\napt_custom_sources_list: |\n  deb $MIRROR $RELEASE main\napt_proxy: http://proxy:3128/\napt_https_proxy: https://sproxy:3129/\napt_ftp_proxy: ftp://fproxy:2121/\nadd_apt_repo_match: '^ppa:'\napt_sources:\n  - source: \"ppa:user/ppa\"\n  - source: \"deb http://archive.example.org bookworm main\"\n    keyid: 12345678\n    keyserver: keyserver.example.org\n    filename: 01-mirror-example.org.list\n  - source: \"deb http://mirror.example.net/karmic/ ./\"\n    key: |\n{}apt_conf:\n  - content: 'Acquire::Retries \"3\";'\n  - filename: 99-norecommends\n    content: 'APT::Install-Recommends \"false\";'\ndebconf_selections: |\n  debconf debconf/frontend select Noninteractive\n  tzdata tzdata/Areas select Europe\n",
        indent(KEY, 6)
    );
    let p = ok(&input);
    let c = p.config;
    assert!(!c.packages.update && c.packages.upgrade);
    assert_eq!(
        c.apt.primary,
        vec![Mirror {
            arches: vec!["default".into()],
            uri: Some("http://deb.example/debian".into()),
            search: vec!["http://m1.example/debian".into()],
            search_dns: true,
            key: None
        }]
    );
    assert!(c.apt.preserve_sources_list);
    assert_eq!(
        c.apt.sources_list.as_deref(),
        Some("deb $MIRROR $RELEASE main\n")
    );
    // Each proxy to its own protocol (cloud-init swaps https and ftp; we do not).
    assert_eq!(
        c.apt.proxy,
        Proxy {
            http: Some("http://proxy:3128/".into()),
            https: Some("https://sproxy:3129/".into()),
            ftp: Some("ftp://fproxy:2121/".into()),
            http_overridden: None,
        }
    );
    assert_eq!(c.apt.add_apt_repo_match, "^ppa:");
    // Entries without `filename` share cloud-init's file, `cloud_config_sources.list`.
    let files: Vec<_> = c.apt.sources.iter().map(|s| s.filename.as_str()).collect();
    assert_eq!(
        files,
        [
            "cloud_config_sources.list",
            "01-mirror-example.org.list",
            "cloud_config_sources.list"
        ]
    );
    assert_eq!(
        c.apt.sources[1].key,
        Some(KeySource::Keyid {
            id: "12345678".into(),
            keyserver: "keyserver.example.org".into()
        })
    );
    assert_eq!(c.apt.conf_files[0].filename, "00-boot-conf");
    assert_eq!(c.apt.conf_files[1].filename, "99-norecommends");
    assert_eq!(c.apt.debconf_selections.len(), 1);
    assert!(
        c.apt.debconf_selections[0]
            .lines
            .contains("tzdata tzdata/Areas select Europe")
    );
    // Warnings, not errors: the short key id, DNS mirror search (not supported), and the
    // mirror and template keys, which do nothing while `apt_preserve_sources_list` is true.
    let w: Vec<(&str, &str)> = p
        .warnings
        .iter()
        .map(|d| (d.key.as_str(), d.message.as_str()))
        .collect();
    assert_eq!(w.len(), 5, "{w:#?}");
    assert!(
        w.iter()
            .any(|(k, m)| *k == "apt_sources[1].keyid" && m.contains("short (8-digit) key id")),
        "{w:#?}"
    );
    assert!(
        w.iter()
            .any(|(k, m)| *k == "apt_mirror_search_dns" && m.contains("does not search DNS")),
        "{w:#?}"
    );
    for key in ["apt_mirror", "apt_mirror_search", "apt_custom_sources_list"] {
        assert!(
            w.iter().any(|(k, m)| *k == key
                && m.contains(&format!(
                    "`{key}` has no effect: `apt_preserve_sources_list` is true"
                ))),
            "{key}: {w:#?}"
        );
    }
    // Default keyserver.
    let c = ok("#cloud-config\napt_sources:\n  - source: deb http://a/ d main\n    keyid: B59D5F1597A504B7E2306DCA0620BBCF03683F77\n").config;
    assert_eq!(
        c.apt.sources[0].key,
        Some(KeySource::Keyid {
            id: "B59D5F1597A504B7E2306DCA0620BBCF03683F77".into(),
            keyserver: "keyserver.ubuntu.com".into()
        })
    );
}

#[test]
fn bootcfg_extensions() {
    let a = ok("#cloud-config\napt:\n  sources_format: deb822\n  debconf_reconfigure: yes\n")
        .config
        .apt;
    assert!(a.deb822 && a.debconf_reconfigure);
    let a = ok("#cloud-config\napt:\n  sources_format: list\n")
        .config
        .apt;
    assert!(!a.deb822 && !a.debconf_reconfigure);
    check_err(
        b"#cloud-config\napt:\n  sources_format: yaml\n",
        &["ud.yaml:3:19: error: apt.sources_format: unknown sources format `yaml`"],
    );
}

#[test]
fn same_value_in_both_syntaxes_is_fine() {
    let c = ok("#cloud-config\napt:\n  proxy: http://p:3128/\napt_proxy: http://p:3128/\n").config;
    assert_eq!(c.apt.proxy.http.as_deref(), Some("http://p:3128/"));
}

#[test]
fn not_handled_keys_are_warnings() {
    let p =
        ok("#cloud-config\nruncmd: [ls]\nusers: [default]\nwrite_files: []\npackages: [nginx]\n");
    assert_eq!(p.config.not_handled, ["runcmd", "users", "write_files"]);
    assert_eq!(p.warnings.len(), 3);
    assert!(
        p.warnings[0]
            .to_string()
            .starts_with("ud.yaml:2:1: warning: runcmd: not handled by bootcfg"),
        "{}",
        p.warnings[0]
    );
}

#[test]
fn empty_and_header_only() {
    assert_eq!(ok("").config, UserData::default());
    assert_eq!(ok("#cloud-config\n").config, UserData::default());
    assert_eq!(ok("#cloud-config\n# nothing\n").config, UserData::default());
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let e = parse(
        "ud.yaml",
        b"#cloud-config\npakages: [a]\npackage_update: maybe\npackages: [\"x;y\"]\n",
    )
    .unwrap_err();
    assert_eq!(e.0.len(), 3, "{e}");
}

/// A keyserver reached in plaintext can answer any key at all (or anyone on the path can):
/// refused unless the entry opts in, and a warning when it does.
#[test]
fn plaintext_keyservers_need_an_explicit_opt_in() {
    const FPR: &str = "8DDB97313824B2421BDF94C754BB42169D3B75D6";
    let src = |extra: &str| {
        format!(
            "#cloud-config\napt:\n  sources:\n    x:\n      source: deb http://repo.example bookworm main\n      keyid: {FPR}\n{extra}"
        )
    };
    for ks in [
        "hkp://keyserver.ubuntu.com",
        "http://keys.example:11371",
        "HTTP://k.example",
    ] {
        check_err(
            src(&format!("      keyserver: {ks}\n")).as_bytes(),
            &[
                &format!(
                    "ud.yaml:7:18: error: apt.sources.x.keyserver: `{ks}` is a plaintext keyserver"
                ),
                "add `allow_plaintext_keyserver: true` to this entry",
            ],
        );
        // `false` is no opt-in
        check_err(
            src(&format!(
                "      keyserver: {ks}\n      allow_plaintext_keyserver: false\n"
            ))
            .as_bytes(),
            &["is a plaintext keyserver"],
        );
        let p = ok(&src(&format!(
            "      keyserver: {ks}\n      allow_plaintext_keyserver: true\n"
        )));
        assert_eq!(
            p.config.apt.sources[0].key,
            Some(KeySource::Keyid {
                id: FPR.into(),
                keyserver: ks.into()
            })
        );
        let w: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            w.iter()
                .any(|w| w.contains("warning: apt.sources.x.keyserver:")
                    && w.contains(
                        "plaintext keyserver (allowed by `allow_plaintext_keyserver: true`)"
                    )),
            "{w:?}"
        );
    }
    // HTTPS keyservers need nothing; the opt-in is then pointless and says so
    for ks in [
        "hkps://keys.openpgp.org",
        "https://k.example",
        "keyserver.ubuntu.com",
    ] {
        let p = ok(&src(&format!("      keyserver: {ks}\n")));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }
    let p = ok(&src("      allow_plaintext_keyserver: true\n"));
    assert!(
        p.warnings[0]
            .to_string()
            .contains("`allow_plaintext_keyserver` is ignored: the keyserver is not plaintext"),
        "{}",
        p.warnings[0]
    );
    check_err(
        src("      keyserver: hkp://k\n      allow_plaintext_keyserver: sometimes\n").as_bytes(),
        &["apt.sources.x.allow_plaintext_keyserver: expected a boolean"],
    );
    // mirrors (primary/security) and the RFC's apt_sources list take the same switch
    check_err(
        format!("#cloud-config\napt:\n  primary:\n    - arches: [default]\n      uri: http://deb.example/debian\n      keyid: {FPR}\n      keyserver: hkp://k.example\n").as_bytes(),
        &["apt.primary[0].keyserver: `hkp://k.example` is a plaintext keyserver"],
    );
    ok(&format!(
        "#cloud-config\napt:\n  primary:\n    - arches: [default]\n      uri: http://deb.example/debian\n      keyid: {FPR}\n      keyserver: hkp://k.example\n      allow_plaintext_keyserver: true\n"
    ));
    check_err(
        format!("#cloud-config\napt_sources:\n  - source: deb http://repo.example bookworm main\n    keyid: {FPR}\n    keyserver: http://k.example\n").as_bytes(),
        &["is a plaintext keyserver"],
    );
    ok(&format!(
        "#cloud-config\napt_sources:\n  - source: deb http://repo.example bookworm main\n    keyid: {FPR}\n    keyserver: http://k.example\n    allow_plaintext_keyserver: yes\n"
    ));
}

fn warnings_of(p: &Parsed) -> Vec<String> {
    p.warnings.iter().map(|d| d.to_string()).collect()
}

/// Issue 13, item 1: cloud-init writes an `Acquire::http::Proxy` line for `proxy` and one for
/// `http_proxy` (in that order) and apt uses the last; bootcfg refused the user-data.
#[test]
fn proxy_and_http_proxy_with_different_values_are_both_kept_with_a_warning() {
    let p =
        ok("#cloud-config\napt:\n  http_proxy: http://b:3128/\n  proxy: http://u:secret@a:3128/\n");
    assert_eq!(p.config.apt.proxy.http.as_deref(), Some("http://b:3128/"));
    assert_eq!(
        p.config.apt.proxy.http_overridden.as_deref(),
        Some("http://u:secret@a:3128/")
    );
    let w = warnings_of(&p);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].starts_with("ud.yaml:3:15: warning: apt.http_proxy: `apt.http_proxy` and `apt.proxy` (at ud.yaml:4) set different http proxies")
            && w[0].contains("apt uses the last one")
            && !w[0].contains("secret"),
        "{}",
        w[0]
    );
    // The RFC's keys: the same two lines, the same warning.
    let p = ok("#cloud-config\napt_proxy: http://a:3128/\napt_http_proxy: http://b:3128/\n");
    assert_eq!(p.config.apt.proxy.http.as_deref(), Some("http://b:3128/"));
    assert_eq!(
        p.config.apt.proxy.http_overridden.as_deref(),
        Some("http://a:3128/")
    );
    assert!(
        warnings_of(&p)[0].contains("`apt_http_proxy` and `apt_proxy` (at ud.yaml:2)"),
        "{:?}",
        p.warnings
    );
    // The same value twice: cloud-init writes two identical lines, and so does bootcfg; no warning.
    let p = ok("#cloud-config\napt:\n  proxy: http://a:3128/\n  http_proxy: http://a:3128/\n");
    assert_eq!(
        p.config.apt.proxy.http_overridden.as_deref(),
        Some("http://a:3128/")
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    // Only one of them: one line, nothing overridden.
    let p = ok("#cloud-config\napt:\n  proxy: http://a:3128/\n");
    assert_eq!(p.config.apt.proxy.http.as_deref(), Some("http://a:3128/"));
    assert_eq!(p.config.apt.proxy.http_overridden, None);
}

fn mime(parts: &[(&str, &str)]) -> Vec<u8> {
    let mut m =
        String::from("Content-Type: multipart/mixed; boundary=\"XYZ\"\nMIME-Version: 1.0\n\n");
    for (headers, body) in parts {
        m.push_str(&format!(
            "--XYZ\nContent-Type: text/cloud-config\n{headers}\n{body}\n"
        ));
    }
    m.push_str("--XYZ--\n");
    m.into_bytes()
}

/// Issue 13, item 2: cloud-init's default merge (`dict(replace)+list()+str()`) replaces a
/// top-level key whole; bootcfg merged mappings recursively. Checked against Debian's
/// cloud-init 22.4: parts `apt: {conf, proxy}` then `apt: {http_proxy}` give
/// `apt: {http_proxy}` in its cloud-config.txt.
#[test]
fn a_later_part_replaces_a_top_level_key_whole() {
    let p = parse(
        "ud",
        &mime(&[
            (
                "",
                "#cloud-config\napt:\n  conf: 'APT::X \"1\";'\n  proxy: http://first:3128/\npackages: [curl]\npackage_update: true\n",
            ),
            ("", "#cloud-config\napt:\n  https_proxy: http://second:3128/\n"),
        ]),
    )
    .unwrap();
    let c = p.config;
    assert_eq!(
        c.apt.conf, None,
        "part 1's apt.conf is replaced with part 2's apt"
    );
    assert_eq!(c.apt.proxy.http, None);
    assert_eq!(c.apt.proxy.https.as_deref(), Some("http://second:3128/"));
    // Keys only part 1 has stay.
    assert!(c.packages.update);
    assert_eq!(c.packages.install[0].name, "curl");
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    // A key repeated inside one part is still a duplicate.
    let e = parse(
        "ud",
        &mime(&[
            ("", "#cloud-config\npackages: [curl]\n"),
            ("", "#cloud-config\npackages: [vim]\npackages: [git]\n"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("duplicate key `packages`"), "{e}");
}

/// `merge_how`/`merge_type` (in a part) and the `Merge-Type` header: the default form is
/// accepted, anything else is refused naming the part; in the first part it does nothing.
/// Checked against Debian's cloud-init 22.4 (its cloud-config.txt after four parts: part 1's
/// `merge_how` ignored, a `Merge-Type: list(append)+dict(recurse_array,no_replace)+str()`
/// header merging `apt` key by key and appending `packages`, `merge_type: dict(replace)+list(append)`
/// replacing `packages`).
#[test]
fn merge_how_default_form_is_accepted_others_are_refused_naming_the_part() {
    // The documented default, as YAML in a later part and as a header: same as no spec.
    for (headers, spec) in [
        ("", "merge_how: 'dict(replace)+list()+str()'\n"),
        ("", "merge_type: 'dict(replace)+list(append)'\n"),
        (
            "",
            "merge_how:\n  - name: list\n    settings: [append]\n  - name: dict\n    settings: [replace, recurse_list]\n",
        ),
        ("", "merge_how: [[dict, replace], [str]]\n"),
        ("Merge-Type: dict(replace)+list()+str()\n", ""),
        ("X-Merge-Type: Dict(Replace)+List()\n", ""),
    ] {
        let body = format!("#cloud-config\n{spec}apt:\n  https_proxy: http://second:3128/\n");
        let p = parse(
            "ud",
            &mime(&[
                ("", "#cloud-config\napt:\n  conf: 'APT::X \"1\";'\n"),
                (headers, &body),
            ]),
        )
        .unwrap_or_else(|e| panic!("{headers}{spec}: {e}"));
        assert_eq!(p.config.apt.conf, None, "{headers}{spec}");
        assert!(p.warnings.is_empty(), "{headers}{spec}: {:?}", p.warnings);
    }
    // Anything else: an error naming the part, what was asked and what bootcfg does.
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "",
            "merge_how: 'list(append)+dict(recurse_array)+str()'\n",
            &[
                "ud (MIME part 2):2:1: error: merge_how: `merge_how` asks for `list(append)+dict(recurse_array)+str()`, which bootcfg does not support",
                "each top-level key of a later part replaces the earlier part's value whole",
                "fix: remove it and repeat the whole top-level key",
            ],
        ),
        (
            "Merge-Type: list(append)+dict(recurse_array,no_replace)+str()\n",
            "",
            &[
                "ud (MIME part 2): error: Merge-Type: the `Merge-Type` header asks for `list(append)+dict(recurse_array,no_replace)+str()`",
            ],
        ),
        (
            "",
            "merge_how:\n  - name: dict\n    settings: [no_replace, recurse_list]\n",
            &[
                "ud (MIME part 2):2:1: error: merge_how: `merge_how` asks for `dict(no_replace,recurse_list)`",
            ],
        ),
        (
            "",
            "merge_type: 'dict(replace,allow_delete)'\n",
            &["`merge_type` asks for `dict(replace,allow_delete)`"],
        ),
        (
            "",
            "merge_how: 'list(append)'\n",
            &["`merge_how` asks for `list(append)`"],
        ),
        (
            "",
            "merge_how: 'dict replace'\n",
            &[
                "error: merge_how: `merge_how` is not a merger specification cloud-init can use: `dict replace` is not `name(options)`",
            ],
        ),
        (
            "",
            "merge_how: 'hash(replace)'\n",
            &["unknown merger `hash`"],
        ),
    ];
    for (headers, spec, want) in cases {
        let body = format!("#cloud-config\n{spec}apt:\n  https_proxy: http://second:3128/\n");
        let e = parse(
            "ud",
            &mime(&[("", "#cloud-config\npackages: [curl]\n"), (headers, &body)]),
        )
        .unwrap_err()
        .to_string();
        for w in *want {
            assert!(e.contains(w), "{headers}{spec}: missing {w:?} in:\n{e}");
        }
    }
    // In the first (or only) part there is nothing to merge into: a warning, as it does nothing.
    let p = ok(
        "#cloud-config\nmerge_how: 'list(append)+dict(recurse_array)+str()'\npackages: [curl]\n",
    );
    let w = warnings_of(&p);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("ud.yaml:2:1: warning: merge_how: `merge_how` has no effect: this is the first cloud-config part"),
        "{}",
        w[0]
    );
    let p = parse(
        "ud",
        &mime(&[(
            "Merge-Type: list(append)+dict(recurse_array)+str()\n",
            "#cloud-config\npackages: [curl]\n",
        )]),
    )
    .unwrap();
    assert!(
        warnings_of(&p)[0].starts_with(
            "ud (MIME part 1): warning: Merge-Type: the `Merge-Type` header has no effect"
        ),
        "{:?}",
        p.warnings
    );
}

/// With `apt:` in the user-data, cloud-init ignores the old top-level apt keys (and fails its apt
/// module when one conflicts with its `apt:` counterpart). Checked against Debian's cloud-init
/// 22.4: `apt: {conf}` + `apt_proxy` + `apt_sources` writes only 94cloud-init-config.
#[test]
fn old_apt_keys_beside_apt_are_ignored_with_a_warning() {
    let p = ok(
        "#cloud-config\napt:\n  conf: 'APT::X \"1\";'\napt_proxy: http://p:3128/\napt_sources:\n  - source: deb http://b/ d main\napt_mirror: http://m/debian\napt_http_proxy: ''\n",
    );
    let a = &p.config.apt;
    assert_eq!(a.proxy, Proxy::default());
    assert!(a.sources.is_empty());
    assert!(a.primary.is_empty());
    let w = warnings_of(&p);
    assert_eq!(w.len(), 3, "{w:#?}");
    assert!(
        w[0].starts_with(
            "ud.yaml:4:1: warning: apt_proxy: `apt_proxy` has no effect: the user-data has `apt:`"
        ),
        "{}",
        w[0]
    );
    assert!(
        w[0].contains("fix: move it under `apt:` as `proxy`"),
        "{}",
        w[0]
    );
    assert!(
        w[1].starts_with("ud.yaml:5:1: warning: apt_sources: `apt_sources` has no effect"),
        "{}",
        w[1]
    );
    assert!(
        w[1].contains("fix: move it under `apt:` as `sources`"),
        "{}",
        w[1]
    );
    assert!(
        w[2].contains("apt_mirror") && w[2].contains("primary: [{arches: [default], uri: …}]"),
        "{}",
        w[2]
    );
    // apt_sources beside an apt.sources with other entries: cloud-init fails; an error naming both.
    check_err(
        b"#cloud-config\napt:\n  sources:\n    a:\n      source: deb http://a/ d main\napt_sources:\n  - source: deb http://b/ d main\n",
        &["ud.yaml:6:1: error: apt_sources: `apt_sources` and `apt.sources` (at ud.yaml:4) set different values"],
    );
    // The mirror keys are not compared (cloud-init does not): ignored, with a warning.
    let p = ok(
        "#cloud-config\napt:\n  preserve_sources_list: false\n  primary: [{arches: [default], uri: \"http://a/\"}]\napt_mirror: http://b/\n",
    );
    assert_eq!(p.config.apt.primary[0].uri.as_deref(), Some("http://a/"));
    assert!(
        warnings_of(&p)[0].contains("`apt_mirror` has no effect"),
        "{:?}",
        p.warnings
    );
    // Equal values: nothing to say.
    assert!(
        ok("#cloud-config\napt:\n  proxy: http://p:3128/\napt_proxy: http://p:3128/\n")
            .warnings
            .is_empty()
    );
    check_err(
        b"#cloud-config\napt:\n  preserve_sources_list: true\napt_preserve_sources_list: false\n",
        &[
            "ud.yaml:4:1: error: apt_preserve_sources_list: `apt_preserve_sources_list` and `apt.preserve_sources_list` (at ud.yaml:3) set different values",
        ],
    );
}

/// Issue 13, item 7: settings that do nothing are warnings naming the key and the fix.
#[test]
fn silent_no_ops_are_warnings() {
    // Main-list settings while preserve_sources_list stays true (the default).
    let p = ok(
        "#cloud-config\napt:\n  primary:\n    - arches: [default]\n      uri: http://m/debian\n  sources_list: |\n    deb $MIRROR $RELEASE main\n  disable_suites: [updates]\n",
    );
    let w = warnings_of(&p);
    assert_eq!(w.len(), 3, "{w:#?}");
    assert!(w[0].starts_with("ud.yaml:3:3: warning: apt.primary: `apt.primary` has no effect: `apt.preserve_sources_list` is true"), "{}", w[0]);
    assert!(
        w[0].contains("no source line uses `$MIRROR`")
            && w[0].contains("fix: set `apt.preserve_sources_list: false`"),
        "{}",
        w[0]
    );
    assert!(
        w[1].contains("`apt.sources_list` has no effect"),
        "{}",
        w[1]
    );
    assert!(
        w[2].contains("`apt.disable_suites` has no effect"),
        "{}",
        w[2]
    );
    // Explicitly true: the same.
    assert_eq!(
        ok("#cloud-config\napt:\n  preserve_sources_list: true\n  sources_list: |\n    deb $MIRROR $RELEASE main\n").warnings.len(),
        1
    );
    // preserve_sources_list: false: they are used.
    let p = ok(
        "#cloud-config\napt:\n  preserve_sources_list: false\n  primary:\n    - arches: [default]\n      uri: http://m/debian\n  sources_list: |\n    deb $MIRROR $RELEASE main\n  disable_suites: [updates]\n",
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    // A mirror a source line uses is not a no-op.
    let p = ok(
        "#cloud-config\napt:\n  primary:\n    - arches: [default]\n      uri: http://m/debian\n  sources:\n    x:\n      source: deb $MIRROR $RELEASE contrib\n",
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);

    // A key-only entry whose keyring no source references.
    let key_only = |extra: &str| {
        format!(
            "#cloud-config\napt:\n  sources:\n    vendor-key:\n      key: |\n{}{extra}",
            indent(KEY, 8)
        )
    };
    let p = ok(&key_only(""));
    let w = warnings_of(&p);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].starts_with("ud.yaml:5:7: warning: apt.sources.vendor-key: `apt.sources.vendor-key` has a key but no `source`: bootcfg writes it to /etc/apt/keyrings/vendor-key.gpg")
            && w[0].contains("add `[signed-by=/etc/apt/keyrings/vendor-key.gpg]`"),
        "{}",
        w[0]
    );
    // Referenced by another entry's line: fine.
    let p = ok(&key_only(
        "    repo:\n      source: deb [signed-by=/etc/apt/keyrings/vendor-key.gpg] http://r/ d main\n",
    ));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);

    // A mirror that asks for a DNS search bootcfg does not do.
    let p = ok(
        "#cloud-config\napt:\n  preserve_sources_list: false\n  primary:\n    - arches: [default]\n      search_dns: true\n",
    );
    assert!(
        warnings_of(&p)[0].contains("apt.primary[0].search_dns: bootcfg does not search DNS"),
        "{:?}",
        p.warnings
    );
}

/// Issue 13, item 6: a deb822 `sources_list` is valid (bootcfg writes it where apt reads deb822).
#[test]
fn deb822_sources_list_is_accepted() {
    let p = ok(
        "#cloud-config\napt:\n  preserve_sources_list: false\n  sources_list: |\n    # main\n    Types: deb deb-src\n    URIs: $MIRROR\n    Suites: $RELEASE $RELEASE-updates\n    Components: main\n    Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n    Types: deb\n    URIs: $SECURITY\n    Suites: $RELEASE-security\n    Components: main\n\n    Types: deb\n    URIs: http://local/flat\n    Suites: ./\n",
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert!(checks::is_deb822(
        p.config.apt.sources_list.as_deref().unwrap()
    ));
    assert!(!checks::is_deb822("deb $MIRROR $RELEASE main\n"));
}
