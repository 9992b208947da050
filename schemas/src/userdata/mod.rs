//! Cloud-config user-data: decoding (base64, gzip, MIME multipart, `#cloud-config`), parsing of both
//! syntaxes, validation, and normalisation into [`model::UserData`].

mod build;
pub mod checks;
mod decode;
pub mod image_cfg;
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
            Ok(Some(mut node)) => {
                merge_specs(&mut diags, part, &mut node, merged.is_none());
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

/// cloud-init's default merge of cloud-config parts, `dict(replace)+list()+str()`
/// (`handlers/cloud_config.py` `DEF_MERGERS`): each top-level key of the later part replaces
/// the earlier part's value whole (no recursion: a later `apt:` drops every `apt` setting of the
/// parts before it); keys only the earlier part has are kept. Checked against Debian's
/// cloud-init 22.4 (`/var/lib/cloud/instance/cloud-config.txt`). A key repeated inside one part
/// stays repeated, so it is still reported as a duplicate.
fn merge(a: yaml::Node, b: yaml::Node) -> yaml::Node {
    match (a.kind, b.kind) {
        (yaml::Kind::Map(mut left), yaml::Kind::Map(right)) => {
            let earlier = left.len();
            let mut replaced = vec![false; earlier];
            for (k, v) in right {
                let same = |lk: &yaml::Node| lk.as_text().is_some() && lk.as_text() == k.as_text();
                match (0..earlier).find(|&i| !replaced[i] && same(&left[i].0)) {
                    Some(i) => {
                        replaced[i] = true;
                        left[i] = (k, v);
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

/// One merger of a `merge_how` specification: its name and options, lower-cased.
type Merger = (String, Vec<String>);
/// A part's merger specification: the key (or header) that gave it, where, and what it says.
type Spec = (
    String,
    Option<crate::diag::Location>,
    Result<Vec<Merger>, String>,
);

/// A part's merger specification (`merge_how`/`merge_type` in its YAML, which cloud-init removes
/// from the config, or its `Merge-Type` header): checked, then dropped.
///
/// - In the first cloud-config part it has no effect (cloud-init merges that part into an empty
///   mapping): a warning.
/// - In a later part, a specification that merges top-level keys the default way
///   (`dict(replace…)`, without `allow_delete`; `list`/`str` options never matter then) is
///   accepted. Anything else (recursive `no_replace` merges, appended lists, …) is an error:
///   bootcfg merges only the default way.
fn merge_specs(
    diags: &mut Vec<Diagnostic>,
    part: &decode::Part,
    node: &mut yaml::Node,
    first: bool,
) {
    let label = part.label.as_str();
    let mut specs: Vec<Spec> = Vec::new();
    if let yaml::Kind::Map(pairs) = &mut node.kind {
        let mut i = 0;
        while i < pairs.len() {
            let key = pairs[i].0.as_text();
            if matches!(key, Some("merge_how" | "merge_type")) {
                let (k, v) = pairs.remove(i);
                let key = k.as_text().unwrap_or_default().to_owned();
                specs.push((key, Some(k.loc), yaml_mergers(&v)));
            } else {
                i += 1;
            }
        }
    }
    if let Some(h) = &part.merge_type {
        specs.push(("Merge-Type".into(), None, string_mergers(h)));
    }
    for (key, loc, spec) in specs {
        let what = if loc.is_some() {
            format!("`{key}`")
        } else {
            format!("the `{key}` header")
        };
        let d = match spec {
            Err(e) => Some(Diagnostic::error(
                label,
                &key,
                format!("{what} is not a merger specification cloud-init can use: {e}"),
                "remove it (cloud-init's default merge: a top-level key of a later part replaces the earlier one), or write e.g. `dict(replace)+list()+str()`",
            )),
            Ok(_) if first => Some(Diagnostic::warning(
                label,
                &key,
                format!(
                    "{what} has no effect: this is the first cloud-config part, so there is nothing before it to merge into (cloud-init ignores it too)"
                ),
                "remove it",
            )),
            Ok(m) if replaces_top_level_keys(&m) => None,
            Ok(m) => Some(Diagnostic::error(
                label,
                &key,
                format!(
                    "{what} asks for `{}`, which bootcfg does not support: it merges cloud-config parts only the way cloud-init does by default (`dict(replace)+list()+str()`), where each top-level key of a later part replaces the earlier part's value whole",
                    m.iter()
                        .map(|(n, o)| format!("{n}({})", o.join(",")))
                        .collect::<Vec<_>>()
                        .join("+")
                ),
                "remove it and repeat the whole top-level key (all of `apt:`, all of `packages:`) in this part, or merge the parts into one document",
            )),
        };
        if let Some(d) = d {
            diags.push(match loc {
                Some(l) => d.at(l),
                None => d,
            });
        }
    }
}

/// cloud-init's `string_extract_mergers`: `name(opt,opt)+name()…`.
fn string_mergers(spec: &str) -> Result<Vec<Merger>, String> {
    let mut out = Vec::new();
    for m in spec.split('+') {
        let m = m.trim().to_ascii_lowercase().replace('-', "_");
        if m.is_empty() {
            continue;
        }
        let (name, rest) = m
            .split_once('(')
            .filter(|(n, r)| {
                r.ends_with(')')
                    && n.chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            .ok_or_else(|| format!("`{}` is not `name(options)`", checks::shown(&m)))?;
        let opts = rest[..rest.len() - 1]
            .split(',')
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        out.push((name.to_owned(), opts));
    }
    check_merger_names(out)
}

/// cloud-init's `dict_extract_mergers`: a string, or a list of `{name, settings}` mappings or
/// `[name, option…]` lists.
fn yaml_mergers(v: &yaml::Node) -> Result<Vec<Merger>, String> {
    let texts = |n: &yaml::Node| -> Result<Vec<String>, String> {
        match &n.kind {
            yaml::Kind::Seq(items) => items
                .iter()
                .map(|i| {
                    i.as_text()
                        .map(|t| t.trim().to_ascii_lowercase())
                        .ok_or_else(|| "merger options must be strings".to_owned())
                })
                .collect(),
            _ => Err("merger options must be a list of strings".into()),
        }
    };
    match &v.kind {
        yaml::Kind::Scalar { .. } => string_mergers(v.as_text().unwrap_or_default()),
        yaml::Kind::Seq(items) => {
            let mut out = Vec::new();
            for item in items {
                match &item.kind {
                    yaml::Kind::Map(pairs) => {
                        let get = |k: &str| {
                            pairs
                                .iter()
                                .find(|(pk, _)| pk.as_text() == Some(k))
                                .map(|(_, pv)| pv)
                        };
                        let name = get("name")
                            .and_then(yaml::Node::as_text)
                            .ok_or("a merger mapping needs `name`")?;
                        let settings =
                            get("settings").ok_or("a merger mapping needs `settings`")?;
                        out.push((
                            name.trim().to_ascii_lowercase().replace('-', "_"),
                            texts(settings)?,
                        ));
                    }
                    yaml::Kind::Seq(parts) if !parts.is_empty() => {
                        let all = texts(item)?;
                        out.push((all[0].clone(), all[1..].to_vec()));
                    }
                    _ => return Err(
                        "each merger is `{name: dict, settings: [replace]}` or `[dict, replace]`"
                            .into(),
                    ),
                }
            }
            check_merger_names(out)
        }
        yaml::Kind::Map(_) => Err("expected a string or a list of mergers, found a mapping".into()),
    }
}

fn check_merger_names(mergers: Vec<Merger>) -> Result<Vec<Merger>, String> {
    let mut out = Vec::new();
    for (name, opts) in mergers {
        let name = name.strip_prefix("m_").unwrap_or(&name).to_owned();
        if !["dict", "list", "str"].contains(&name.as_str()) {
            return Err(format!(
                "unknown merger `{}` (cloud-init has `dict`, `list` and `str`)",
                checks::shown(&name)
            ));
        }
        out.push((name, opts));
    }
    Ok(out)
}

/// Whether these mergers merge two cloud-config mappings the default way. cloud-init merges
/// the top-level mappings with the first `dict` merger: with `replace` (and no `allow_delete`)
/// a later key's value replaces the earlier one whole, so nothing else matters; without a
/// `dict` merger, the later part is dropped.
fn replaces_top_level_keys(mergers: &[Merger]) -> bool {
    mergers
        .iter()
        .find(|(n, _)| n == "dict")
        .is_some_and(|(_, o)| {
            o.iter().any(|x| x == "replace") && !o.iter().any(|x| x == "allow_delete")
        })
}

#[cfg(test)]
mod tests;
