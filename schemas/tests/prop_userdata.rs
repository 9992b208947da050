//! Property tests of `schemas::userdata::parse` on stable (they run in `cargo test --workspace`):
//! it never panics, whatever the bytes; it is deterministic; and the transport encodings EC2
//! user-data arrives in (base64, gzip, MIME multipart) are transparent for the examples.
//! Case counts are set per test to keep the whole file to a few seconds; the fuzz targets in
//! `fuzz/` (nightly, cargo-fuzz) explore the same entry point for longer.

use base64::Engine as _;
use flate2::Compression;
use flate2::write::GzEncoder;
use proptest::prelude::*;
use schemas::diag::{Diagnostic, Diagnostics};
use schemas::userdata::{self, Parsed};
use std::io::Write as _;
use std::path::Path;
use std::sync::LazyLock;

/// examples/userdata-*.yaml: (file name, contents).
static EXAMPLES: LazyLock<Vec<(String, Vec<u8>)>> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("examples/ next to schemas/")
        .map(|e| e.expect("examples/ entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("userdata-") && n.ends_with(".yaml"))
        })
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read example"))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no examples/userdata-*.yaml");
    out
});

fn parse(raw: &[u8]) -> Result<Parsed, Diagnostics> {
    userdata::parse("prop", raw)
}

/// Parse twice (the second time must agree) and check the result is coherent.
fn parse_checked(raw: &[u8]) -> Result<Parsed, Diagnostics> {
    let first = parse(raw);
    match &first {
        Ok(p) => assert!(!p.warnings.iter().any(Diagnostic::is_error)),
        Err(d) => assert!(d.0.iter().any(Diagnostic::is_error), "Err without an error"),
    }
    assert_eq!(parse(raw), first, "parse is not deterministic");
    first
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn b64(data: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(data)
        .into_bytes()
}

/// A MIME multipart with `body` as its one cloud-config part, in the given transfer encoding.
fn mime(body: &[u8], cte: Cte) -> Vec<u8> {
    let (cte_header, body) = match cte {
        Cte::None => ("", body.to_vec()),
        Cte::Base64 => {
            let mut lines = Vec::new();
            for l in b64(body).chunks(76) {
                lines.extend_from_slice(l);
                lines.extend_from_slice(b"\n");
            }
            ("Content-Transfer-Encoding: base64\n", lines)
        }
        Cte::GzipBase64 => {
            let mut lines = Vec::new();
            for l in b64(&gzip(body)).chunks(76) {
                lines.extend_from_slice(l);
                lines.extend_from_slice(b"\n");
            }
            ("Content-Transfer-Encoding: base64\n", lines)
        }
    };
    let ctype = if cte == Cte::GzipBase64 {
        "application/x-gzip"
    } else {
        "text/cloud-config; charset=\"utf-8\""
    };
    let mut out = format!(
        "Content-Type: multipart/mixed; boundary=\"===b0und4ry===\"\nMIME-Version: 1.0\n\n\
         --===b0und4ry===\nContent-Type: {ctype}\nMIME-Version: 1.0\n{cte_header}\n"
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\n--===b0und4ry===--\n");
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cte {
    None,
    Base64,
    GzipBase64,
}

/// How a document is wrapped before it reaches the parser, innermost first.
#[derive(Debug, Clone, Copy)]
enum Wrap {
    Gzip,
    Base64,
}

fn wrap(doc: &[u8], layers: &[Wrap]) -> Vec<u8> {
    layers.iter().fold(doc.to_vec(), |acc, w| match w {
        Wrap::Gzip => gzip(&acc),
        Wrap::Base64 => b64(&acc),
    })
}

const KEYS: &[&str] = &[
    "apt",
    "packages",
    "package_update",
    "package_upgrade",
    "package_reboot_if_required",
    "apt_pipelining",
    "apt_preserve_sources_list",
    "apt_sources",
    "apt_proxy",
    "apt_http_proxy",
    "apt_mirror",
    "debconf_selections",
    "puppet",
    "preserve_sources_list",
    "sources_list",
    "sources",
    "source",
    "key",
    "keyid",
    "keyserver",
    "filename",
    "primary",
    "security",
    "uri",
    "search",
    "arches",
    "conf",
    "http_proxy",
    "disable_suites",
    "sources_format",
    "install",
    "install_type",
    "package_name",
    "version",
    "conf_file",
    "ssl_dir",
    "csr_attributes",
    "csr_attributes_path",
    "extension_requests",
    "custom_attributes",
    "pp_uuid",
    "challengePassword",
    "ca_cert",
    "main",
    "agent",
    "server",
    "certname",
    "start_service",
    "exec",
    "runcmd",
    "write_files",
    "<<",
    "? complex",
];

const SCALARS: &[&str] = &[
    "",
    "true",
    "false",
    "null",
    "~",
    "0",
    "-1",
    "0x1f",
    "1e400",
    ".nan",
    "[]",
    "{}",
    "[a, b, [c]]",
    "{a: 1, b: [x]}",
    "&a x",
    "*a",
    "!!binary aGVsbG8=",
    "!!str 3",
    "!custom x",
    "|",
    ">-",
    "'quoted: # x'",
    "\"esc \\u00e9 \\x00\"",
    "deb $MIRROR $RELEASE main",
    "deb [signed-by=$KEY_FILE] http://x/ $RELEASE main",
    "deb http://deb.debian.org/debian $RELEASE main",
    "-----BEGIN PGP PUBLIC KEY BLOCK-----",
    "-----BEGIN CERTIFICATE-----",
    "%i.example",
    "%f",
    "http://user:pw@proxy:3128/",
    "ppa:foo/bar",
    "web-1",
    "puppet-agent",
    "aio",
    "packages",
    "amd64",
    "tzdata tzdata/Areas select Europe",
    "/etc/puppet/puppet.conf",
    "../../etc/shadow",
    "\u{e9}\u{200b}",
    "# comment",
];

/// A YAML value: scalars from [`SCALARS`], sequences, mappings keyed from [`KEYS`].
#[derive(Debug, Clone)]
enum Yaml {
    Scalar(&'static str),
    Seq(Vec<Yaml>),
    Map(Vec<(&'static str, Yaml)>),
}

fn yaml_value() -> impl Strategy<Value = Yaml> {
    let leaf = prop::sample::select(SCALARS).prop_map(Yaml::Scalar);
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Yaml::Seq),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(Yaml::Map),
        ]
    })
}

fn emit_scalar(s: &str, indent: usize, out: &mut String) {
    out.push_str(s);
    out.push('\n');
    if s.starts_with('|') || s.starts_with('>') {
        // A block scalar's content, one level deeper.
        out.push_str(&" ".repeat(indent + 2));
        out.push_str("line one: with # and $RELEASE\n");
    }
}

/// Block-style YAML, indented correctly.
fn emit(v: &Yaml, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Yaml::Scalar(s) => {
            out.push_str(&pad);
            emit_scalar(s, indent, out);
        }
        Yaml::Seq(items) if items.is_empty() => out.push_str(&format!("{pad}[]\n")),
        Yaml::Map(entries) if entries.is_empty() => out.push_str(&format!("{pad}{{}}\n")),
        Yaml::Seq(items) => {
            for item in items {
                match item {
                    Yaml::Scalar(s) => {
                        out.push_str(&format!("{pad}- "));
                        emit_scalar(s, indent, out);
                    }
                    nested => {
                        out.push_str(&format!("{pad}-\n"));
                        emit(nested, indent + 2, out);
                    }
                }
            }
        }
        Yaml::Map(entries) => {
            for (k, v) in entries {
                match v {
                    Yaml::Scalar(s) => {
                        out.push_str(&format!("{pad}{k}: "));
                        emit_scalar(s, indent, out);
                    }
                    nested => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        emit(nested, indent + 2, out);
                    }
                }
            }
        }
    }
}

/// Line soup: keys and values at random indentation, mostly not valid YAML.
fn line_soup() -> impl Strategy<Value = String> {
    let line = (
        0usize..8,
        any::<bool>(),
        prop::sample::select(KEYS),
        prop::sample::select(SCALARS),
    )
        .prop_map(|(indent, dash, k, v)| {
            format!(
                "{}{}{k}: {v}",
                " ".repeat(indent),
                if dash { "- " } else { "" }
            )
        });
    prop::collection::vec(line, 0..24).prop_map(|lines| lines.join("\n"))
}

/// YAML-ish `#cloud-config` text: mostly well-formed YAML built from the keys bootcfg reads (and
/// some it does not) and awkward scalars (anchors, aliases, tags, flow collections, block
/// scalars, quotes, comments), the rest line soup.
fn yamlish() -> impl Strategy<Value = String> {
    let tree = prop::collection::vec((prop::sample::select(KEYS), yaml_value()), 0..6).prop_map(
        |entries| {
            let mut s = String::new();
            emit(&Yaml::Map(entries), 0, &mut s);
            s
        },
    );
    prop_oneof![4 => tree, 1 => line_soup()].prop_map(|body| format!("#cloud-config\n{body}"))
}

/// One example, mutated: random byte overwrites, insertions and deletions.
fn mutated_example() -> impl Strategy<Value = Vec<u8>> {
    let edit = (any::<prop::sample::Index>(), 0u8..3, any::<u8>());
    (0..EXAMPLES.len(), prop::collection::vec(edit, 1..6)).prop_map(|(i, edits)| {
        let mut doc = EXAMPLES[i].1.clone();
        for (at, kind, byte) in edits {
            let n = doc.len();
            match kind {
                0 if n > 0 => doc[at.index(n)] = byte,
                1 => doc.insert(at.index(n + 1), byte),
                _ if n > 0 => {
                    doc.remove(at.index(n));
                }
                _ => {}
            }
        }
        doc
    })
}

#[test]
fn examples_parse() {
    for (name, doc) in EXAMPLES.iter() {
        if let Err(d) = parse_checked(doc) {
            panic!("{name} does not parse: {d:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..2048)) {
        parse_checked(&raw).ok();
    }

    /// Bytes that pass the cheap early exits: a gzip header, one line of base64, a MIME header.
    #[test]
    fn arbitrary_bytes_behind_each_decoder_never_panic(
        kind in 0u8..4,
        raw in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let input = match kind {
            0 => [&[0x1f, 0x8b][..], &raw].concat(),
            1 => b64(&raw),
            2 => gzip(&raw),
            _ => [&b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=x\n\n--x\n"[..], &raw].concat(),
        };
        parse_checked(&input).ok();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn yamlish_text_never_panics(text in yamlish()) {
        parse_checked(text.as_bytes()).ok();
    }

    #[test]
    fn mutated_examples_never_panic(doc in mutated_example()) {
        parse_checked(&doc).ok();
    }

    /// A `#cloud-config` document (valid or not) means the same after gzip and/or base64.
    #[test]
    fn gzip_and_base64_are_transparent(
        text in yamlish(),
        layers in prop::sample::select(vec![
            vec![Wrap::Gzip],
            vec![Wrap::Base64],
            vec![Wrap::Gzip, Wrap::Base64],
        ]),
    ) {
        let plain = parse_checked(text.as_bytes());
        prop_assert_eq!(parse_checked(&wrap(text.as_bytes(), &layers)), plain);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every example gives the same model however it is wrapped (gzip, base64, a MIME part in
    /// each transfer encoding, base64 of a MIME message); only warnings name the MIME part.
    #[test]
    fn wrapped_examples_parse_to_the_same_model(
        i in 0..EXAMPLES.len(),
        layers in prop::sample::select(vec![
            vec![],
            vec![Wrap::Gzip],
            vec![Wrap::Base64],
            vec![Wrap::Gzip, Wrap::Base64],
        ]),
        cte in prop::option::of(prop::sample::select(vec![Cte::None, Cte::Base64, Cte::GzipBase64])),
        crlf in any::<bool>(),
    ) {
        let (name, doc) = &EXAMPLES[i];
        let want = parse_checked(doc).expect("example parses").config;
        let mut doc = doc.clone();
        if crlf {
            doc = String::from_utf8(doc).unwrap().replace('\n', "\r\n").into_bytes();
        }
        let inner = match cte {
            Some(cte) => mime(&doc, cte),
            None => doc,
        };
        let input = wrap(&inner, &layers);
        match parse_checked(&input) {
            Ok(p) => prop_assert_eq!(p.config, want, "{} wrapped as {:?} {:?} crlf={}", name, layers, cte, crlf),
            Err(d) => prop_assert!(false, "{} wrapped as {:?} {:?} crlf={} fails: {:?}", name, layers, cte, crlf, d),
        }
    }
}
