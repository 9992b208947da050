//! Raw user-data bytes to cloud-config texts, the way cloud-init's `user_data.py` does it:
//! strict single-line base64 → gzip → MIME multipart (per-part Content-Transfer-Encoding and
//! gzip) → the `#cloud-config` header. Decompression is capped at [`MAX_DECODED`] and read
//! through a `Take`, so a gzip bomb is rejected after reading at most that much.

use crate::diag::{Diagnostic, Location};
use base64::Engine as _;
use mailparse::MailHeaderMap as _;
use std::io::Read;

/// Largest decompressed user-data (whole blob or one part) bootcfg accepts.
pub const MAX_DECODED: u64 = 1024 * 1024;

/// One cloud-config document, ready for the YAML parser.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    /// How diagnostics name this part's origin: the input name, plus ` (MIME part N)` for multipart.
    pub label: String,
    pub text: String,
    /// The part's `Merge-Type` (or `X-Merge-Type`) MIME header: how cloud-init merges it into
    /// the parts before it.
    pub merge_type: Option<String>,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const GZIP_TYPES: &[&str] = &[
    "application/gzip",
    "application/gzip-compressed",
    "application/gzipped",
    "application/x-compress",
    "application/x-compressed",
    "application/x-gunzip",
    "application/x-gzip",
    "application/x-gzip-compressed",
];

/// Decode `raw` into cloud-config parts (in order) plus warnings for parts bootcfg ignores.
pub(crate) fn decode(name: &str, raw: &[u8]) -> Result<(Vec<Part>, Vec<Diagnostic>), Diagnostic> {
    let mut warnings = Vec::new();
    if raw.len() as u64 > MAX_DECODED {
        return Err(Diagnostic::error(
            name,
            "",
            format!("user-data is larger than {} KiB", MAX_DECODED / 1024),
            "keep user-data under 1 MiB (EC2 allows 16 KiB; compress it with gzip)",
        ));
    }
    let data = maybe_base64(name, raw)?;
    let data = if data.starts_with(&GZIP_MAGIC) {
        gunzip(name, "", &data)?
    } else {
        data
    };
    let head = &data[..data.len().min(4096)];
    let is_mime = String::from_utf8_lossy(head)
        .to_ascii_lowercase()
        .contains("mime-version:");
    let mut parts = Vec::new();
    if is_mime {
        mime_parts(name, &data, &mut parts, &mut warnings)?;
        if parts.is_empty() {
            return Err(Diagnostic::error(
                name,
                "",
                "the MIME multipart user-data has no cloud-config part",
                "add a part with `Content-Type: text/cloud-config` whose body starts with `#cloud-config`",
            ));
        }
    } else {
        let text = utf8(name, &data)?;
        match sniff(&text) {
            Kind::CloudConfig => parts.push(Part {
                label: name.to_owned(),
                text,
                merge_type: None,
            }),
            Kind::Other(what) => {
                return Err(Diagnostic::error(
                    name,
                    "",
                    format!("user-data is {what}, which bootcfg does not handle"),
                    "give bootcfg a `#cloud-config` document (or a MIME multipart with one)",
                )
                .at(Location { line: 1, column: 1 }));
            }
            Kind::Unknown => {
                // A MIME message without its MIME-Version header is not taken as MIME (as in
                // cloud-init); say so rather than asking for `#cloud-config`.
                let fix = if text
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("content-type:")
                {
                    "this looks like MIME: add a `MIME-Version: 1.0` header line at the top"
                } else {
                    "make `#cloud-config` the very first line"
                };
                return Err(Diagnostic::error(
                    name,
                    "",
                    "user-data does not start with `#cloud-config` and is not gzip, base64 or MIME multipart",
                    fix,
                )
                .at(Location { line: 1, column: 1 }));
            }
        }
    }
    Ok((parts, warnings))
}

/// cloud-init's `maybe_b64decode`: decode only if the *whole* payload is strict base64 on one line.
/// We also accept one trailing newline (editors add it; cloud-init would not decode then). A
/// payload that is one line of base64 characters but fails to decode is an error, not text.
fn maybe_base64(name: &str, raw: &[u8]) -> Result<Vec<u8>, Diagnostic> {
    let trimmed = raw
        .strip_suffix(b"\r\n")
        .or_else(|| raw.strip_suffix(b"\n"))
        .unwrap_or(raw);
    let is_b64_alphabet = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    if trimmed.is_empty() || !trimmed.iter().all(is_b64_alphabet) {
        return Ok(raw.to_vec());
    }
    match base64::engine::general_purpose::STANDARD.decode(trimmed) {
        Ok(d) => {
            // Tiny alphabet-only payloads such as `true` decode into garbage in cloud-init;
            // only take the decoded form when it is something we can use.
            let usable = d.starts_with(&GZIP_MAGIC) || d.trim_ascii_start().starts_with(b"#") || {
                let head = String::from_utf8_lossy(&d[..d.len().min(4096)]).to_ascii_lowercase();
                head.contains("mime-version:")
            };
            Ok(if usable { d } else { raw.to_vec() })
        }
        Err(e) if trimmed.len() >= 16 => Err(Diagnostic::error(
            name,
            "",
            format!("user-data looks like base64 but is not valid base64 ({e})"),
            "encode it again with `base64 -w0` (one line, standard alphabet, with `=` padding)",
        )
        .at(Location { line: 1, column: 1 })),
        Err(_) => Ok(raw.to_vec()),
    }
}

fn gunzip(name: &str, what: &str, data: &[u8]) -> Result<Vec<u8>, Diagnostic> {
    let mut out = Vec::new();
    let mut rd = flate2::read::GzDecoder::new(data).take(MAX_DECODED + 1);
    if let Err(e) = rd.read_to_end(&mut out) {
        return Err(Diagnostic::error(
            name,
            "",
            format!("{what}gzip data is corrupt ({e})"),
            "compress it again with `gzip -c user-data`",
        ));
    }
    if out.len() as u64 > MAX_DECODED {
        return Err(Diagnostic::error(
            name,
            "",
            format!(
                "{what}gzip data decompresses to more than {} KiB (a gzip bomb?)",
                MAX_DECODED / 1024
            ),
            "keep decompressed user-data under 1 MiB",
        ));
    }
    Ok(out)
}

fn utf8(label: &str, data: &[u8]) -> Result<String, Diagnostic> {
    match std::str::from_utf8(data) {
        Ok(s) => Ok(s.strip_prefix('\u{feff}').unwrap_or(s).to_owned()),
        Err(e) => {
            let good = &data[..e.valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            let col = good.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
            Err(Diagnostic::error(
                label,
                "",
                format!(
                    "user-data is not valid UTF-8 (byte {} cannot be decoded)",
                    e.valid_up_to()
                ),
                "save the file as UTF-8",
            )
            .at(Location { line, column: col }))
        }
    }
}

enum Kind {
    CloudConfig,
    Other(&'static str),
    Unknown,
}

/// cloud-init's type sniffing (`handlers/__init__.py` `type_from_starts_with`), longest prefix first.
fn sniff(text: &str) -> Kind {
    let start = text.trim_start().to_ascii_lowercase();
    const OTHERS: &[(&str, &str)] = &[
        (
            "#cloud-config-archive",
            "a cloud-config archive (`#cloud-config-archive`)",
        ),
        (
            "#cloud-config-jsonp",
            "a JSON patch (`#cloud-config-jsonp`)",
        ),
        ("#include-once", "an include list (`#include-once`)"),
        ("#include", "an include list (`#include`)"),
        ("#part-handler", "a part handler (`#part-handler`)"),
        ("#cloud-boothook", "a boothook (`#cloud-boothook`)"),
        (
            "## template: jinja",
            "a Jinja template (`## template: jinja`)",
        ),
        (
            "## template:jinja",
            "a Jinja template (`## template: jinja`)",
        ),
        ("#!", "a script (`#!`)"),
    ];
    for (prefix, what) in OTHERS {
        if start.starts_with(prefix) {
            return Kind::Other(what);
        }
    }
    if start.starts_with("#cloud-config") {
        Kind::CloudConfig
    } else {
        Kind::Unknown
    }
}

fn mime_parts(
    name: &str,
    data: &[u8],
    parts: &mut Vec<Part>,
    warnings: &mut Vec<Diagnostic>,
) -> Result<(), Diagnostic> {
    let mail = mailparse::parse_mail(data).map_err(|e| {
        Diagnostic::error(
            name,
            "",
            format!("MIME user-data cannot be parsed ({e})"),
            "build it with `cloud-init devel make-mime` or Python's email.mime",
        )
    })?;
    let mut index = 0;
    walk(name, &mail, parts, warnings, &mut index)
}

fn walk(
    name: &str,
    mail: &mailparse::ParsedMail<'_>,
    parts: &mut Vec<Part>,
    warnings: &mut Vec<Diagnostic>,
    index: &mut usize,
) -> Result<(), Diagnostic> {
    let mime = mail.ctype.mimetype.to_ascii_lowercase();
    if mime.starts_with("multipart/") {
        if !mail.ctype.params.contains_key("boundary") {
            return Err(Diagnostic::error(
                name,
                "",
                format!("MIME user-data is `{mime}` but its Content-Type has no boundary"),
                "add `; boundary=\"…\"` to the Content-Type header and separate the parts with `--…` lines",
            ));
        }
        if mail.subparts.is_empty() {
            return Err(Diagnostic::error(
                name,
                "",
                format!("MIME user-data `{mime}` has no parts (is the boundary right?)"),
                "separate the parts with `--<boundary>` lines and end with `--<boundary>--`",
            ));
        }
        for sub in &mail.subparts {
            walk(name, sub, parts, warnings, index)?;
        }
        return Ok(());
    }
    *index += 1;
    let label = format!("{name} (MIME part {index})");
    let body = mail.get_body_raw().map_err(|e| {
        Diagnostic::error(
            &label,
            "",
            format!("cannot decode the part's Content-Transfer-Encoding ({e})"),
            "use base64, quoted-printable, 7bit or 8bit",
        )
    })?;
    let body = if GZIP_TYPES.contains(&mime.as_str()) || body.starts_with(&GZIP_MAGIC) {
        gunzip(&label, "the part's ", &body)?
    } else {
        body
    };
    let text = utf8(&label, &body)?;
    // cloud-init reads `Merge-Type`, then `X-Merge-Type`; an empty value counts as absent.
    let merge_type = ["Merge-Type", "X-Merge-Type"].iter().find_map(|h| {
        mail.headers
            .get_first_value(h)
            .filter(|v| !v.trim().is_empty())
    });
    match sniff(&text) {
        Kind::CloudConfig => parts.push(Part {
            label,
            text,
            merge_type,
        }),
        _ if mime == "text/cloud-config" => parts.push(Part {
            label,
            text,
            merge_type,
        }),
        Kind::Other(what) => warnings.push(Diagnostic::warning(
            &label,
            "",
            format!("{what} is not handled by bootcfg and is ignored"),
            "move what it does into cloud-config keys bootcfg handles, or let cloud-init run it",
        )),
        Kind::Unknown => warnings.push(Diagnostic::warning(
            &label,
            "",
            format!("a `{mime}` part without a `#cloud-config` header is not handled by bootcfg and is ignored"),
            "start the part with `#cloud-config` or give it `Content-Type: text/cloud-config`",
        )),
    }
    Ok(())
}
