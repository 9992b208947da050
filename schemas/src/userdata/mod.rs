//! Cloud-config user-data: decoding (base64, gzip, MIME multipart, `#cloud-config`), parsing of both
//! syntaxes, validation, and normalisation into [`model::UserData`].

mod build;
pub mod checks;
mod decode;
pub mod keys;
pub mod model;
pub mod schema;
mod yaml;

pub use decode::MAX_DECODED;

pub use model::*;

use crate::diag::{Diagnostic, Diagnostics};

/// The result of a successful parse: the model to apply, plus warnings (which `--strict` makes errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub config: UserData,
    pub warnings: Vec<Diagnostic>,
}

/// Decode raw user-data bytes (as IMDS or a seed file delivers them), parse and validate them.
/// `name` is how diagnostics refer to the input (a path, `imds:user-data`, …).
/// Empty user-data parses to the default model (nothing to do).
///
/// Errors carry every problem found (not just the first), each located; warnings (keys of
/// cloud-init modules bootcfg does not handle, short key ids, ignored MIME parts) come back in
/// [`Parsed::warnings`] on success, and alongside the errors on failure.
pub fn parse(name: &str, raw: &[u8]) -> Result<Parsed, Diagnostics> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(Parsed {
            config: UserData::default(),
            warnings: Vec::new(),
        });
    }
    let (parts, mut diags) = decode::decode(name, raw).map_err(|d| Diagnostics(vec![d]))?;
    let mut labels = Vec::new();
    let mut merged: Option<yaml::Node> = None;
    for (i, part) in parts.iter().enumerate() {
        labels.push(part.label.clone());
        match yaml::parse(&part.text, i) {
            Ok(None) => {}
            Ok(Some(node)) if node.is_null() => {}
            Ok(Some(node)) => {
                merged = Some(match merged {
                    None => node,
                    Some(prev) => merge(prev, node),
                });
            }
            Err(e) => diags.push(
                Diagnostic::error(&part.label, "", format!("YAML syntax error: {}", e.message), "fix the YAML syntax here (indentation, `: ` after keys, quotes around values with `: ` or `#`)")
                    .at(e.loc),
            ),
        }
    }
    let mut ctx = build::Ctx { labels, diags };
    let config = match &merged {
        Some(root) if !ctx.diags.iter().any(Diagnostic::is_error) => build::build(&mut ctx, root),
        _ => UserData::default(),
    };
    let mut diags = ctx.diags;
    diags.sort_by(|a, b| {
        (&a.file, a.location.line, a.location.column).cmp(&(
            &b.file,
            b.location.line,
            b.location.column,
        ))
    });
    if diags.iter().any(Diagnostic::is_error) {
        return Err(Diagnostics(diags));
    }
    Ok(Parsed {
        config,
        warnings: diags,
    })
}

/// cloud-init's default merge of cloud-config parts (`dict(replace)+list()+str()`): mappings
/// merge key by key, recursively; anything else (lists, strings) from the later part replaces.
fn merge(a: yaml::Node, b: yaml::Node) -> yaml::Node {
    match (a.kind, b.kind) {
        (yaml::Kind::Map(mut left), yaml::Kind::Map(right)) => {
            for (k, v) in right {
                match left.iter().position(|(lk, _)| lk.as_text() == k.as_text()) {
                    Some(i) => {
                        let (lk, lv) = left.remove(i);
                        let _ = lk;
                        left.insert(i, (k, merge(lv, v)));
                    }
                    None => left.push((k, v)),
                }
            }
            yaml::Node {
                kind: yaml::Kind::Map(left),
                loc: b.loc,
                part: b.part,
            }
        }
        (_, kind) => yaml::Node {
            kind,
            loc: b.loc,
            part: b.part,
        },
    }
}

#[cfg(test)]
mod tests;
