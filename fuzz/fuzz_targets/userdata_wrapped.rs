//! `schemas::userdata::parse` on fuzzer text wrapped the ways EC2 user-data arrives (gzip, base64,
//! base64 of gzip, MIME multipart with each Content-Transfer-Encoding, gzip parts), so the YAML
//! and validation code is reached through every decoding path. Wrapping a `#cloud-config` text
//! in gzip and/or base64 must not change the result.
#![no_main]

use base64::Engine as _;
use flate2::Compression;
use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;
use std::io::Write as _;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).expect("gzip to memory");
    enc.finish().expect("gzip to memory")
}

fn b64(data: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(data)
        .into_bytes()
}

/// Base64 in 76-column lines, as MIME writes it.
fn b64_lines(data: &[u8]) -> Vec<u8> {
    let one = b64(data);
    let mut out = Vec::new();
    for line in one.chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn mime(parts: &[(&str, &str, Vec<u8>)]) -> Vec<u8> {
    let mut out =
        b"Content-Type: multipart/mixed; boundary=\"==BOUNDARY==\"\nMIME-Version: 1.0\n\n".to_vec();
    for (ctype, cte, body) in parts {
        out.extend_from_slice(b"--==BOUNDARY==\n");
        out.extend_from_slice(format!("Content-Type: {ctype}; charset=\"us-ascii\"\n").as_bytes());
        out.extend_from_slice(b"MIME-Version: 1.0\n");
        if !cte.is_empty() {
            out.extend_from_slice(format!("Content-Transfer-Encoding: {cte}\n").as_bytes());
        }
        out.extend_from_slice(b"\n");
        out.extend_from_slice(body);
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"--==BOUNDARY==--\n");
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut text = b"#cloud-config\n".to_vec();
    text.extend_from_slice(rest);
    let wrapped = match mode % 9 {
        0 => text.clone(),
        1 => gzip(&text),
        2 => b64(&text),
        3 => b64(&gzip(&text)),
        4 => mime(&[("text/cloud-config", "7bit", text.clone())]),
        5 => mime(&[("text/cloud-config", "base64", b64_lines(&text))]),
        6 => mime(&[("application/x-gzip", "base64", b64_lines(&gzip(&text)))]),
        7 => {
            // Two cloud-config parts are merged; split the fuzzer's text in two.
            let cut = rest.len() / 2;
            let mut second = b"#cloud-config\n".to_vec();
            second.extend_from_slice(&rest[cut..]);
            let mut first = b"#cloud-config\n".to_vec();
            first.extend_from_slice(&rest[..cut]);
            mime(&[
                ("text/cloud-config", "", first),
                ("text/x-shellscript", "", b"#!/bin/sh\ntrue".to_vec()),
                ("text/cloud-config", "quoted-printable", second),
            ])
        }
        _ => b64(&mime(&[("text/cloud-config", "", text.clone())])),
    };
    let got = schemas::userdata::parse("fuzz", &wrapped);
    assert_eq!(
        schemas::userdata::parse("fuzz", &wrapped),
        got,
        "not deterministic"
    );
    if matches!(mode % 9, 1..=3) {
        // Transport encodings are transparent for a `#cloud-config` text.
        assert_eq!(
            got,
            schemas::userdata::parse("fuzz", &text),
            "gzip/base64 changed the result (mode {})",
            mode % 9
        );
    }
});
