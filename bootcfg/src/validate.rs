//! `bootcfg validate` and `bootcfg schema`.
//!
//! `validate` runs exactly the parser the agent runs at boot (`schemas::userdata::parse`), so a
//! file that passes here is one the agent accepts. Exit codes: 0 every file valid, 1 any file
//! invalid or unreadable (a missing file is reported like an invalid one, with its name), 2 usage
//! error (clap).

use crate::args::Output;
use schemas::diag::{Diagnostic, Severity};
use serde::Serialize;
use std::io::Read as _;
use std::path::PathBuf;

const VALIDATE_HELP: &str = "\
Examples:
  bootcfg validate examples/userdata-*.yaml
  bootcfg validate --strict --output json user-data.yaml
  base64 -w0 user-data.gz | bootcfg validate -

Input may be #cloud-config, gzip, one-line base64 or MIME multipart (as EC2 gives it).
conductor and signer configs and PEM certificates are recognised and checked too.
Exit codes: 0 all files valid, 1 a file is invalid or unreadable, 2 usage error.";

#[derive(Debug, clap::Args)]
#[command(after_help = VALIDATE_HELP)]
pub struct ValidateArgs {
    /// Files to check (`-` reads standard input): user-data, or a conductor/signer config or CA certificate.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Treat warnings (keys bootcfg does not handle, settings that do nothing, short key ids,
    /// ignored MIME parts) as errors.
    #[arg(long)]
    pub strict: bool,
    /// Output format: compiler-style text lines, or one JSON document for scripts.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

const SCHEMA_HELP: &str = "\
Example:
  bootcfg schema > bootcfg-userdata.schema.json
  # then, in user-data, right after #cloud-config:
  # yaml-language-server: $schema=./bootcfg-userdata.schema.json";

#[derive(Debug, clap::Args)]
#[command(after_help = SCHEMA_HELP)]
pub struct SchemaArgs {}

/// The result for one file (the JSON output is a list of these inside [`Report`]).
#[derive(Debug, Serialize)]
pub struct FileReport {
    pub file: String,
    pub kind: Kind,
    pub valid: bool,
    pub errors: usize,
    pub warnings: usize,
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub valid: bool,
    pub strict: bool,
    pub files: Vec<FileReport>,
}

/// Which of the project's documents a file is. `validate` checks user-data by default, and
/// recognises the other documents an operator keeps beside it (the conductor's and the signer's
/// configs, the Puppet CA certificate) so `bootcfg validate examples/*` checks every file with
/// the validator for its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    UserData,
    ConductorConfig,
    SignerConfig,
    Certificate,
}

/// The kind of a document. Anything that could be user-data (a `#cloud-config` header, gzip,
/// base64, MIME) is user-data; otherwise a PEM certificate, or a YAML mapping with the top-level
/// keys only a conductor config (`launch`) or a signer config (`registry` without `launch`) has.
/// Everything else is checked as user-data, so its error says what user-data must look like.
pub fn kind(raw: &[u8]) -> Kind {
    let text = match std::str::from_utf8(raw) {
        Ok(t) => t.trim_start(),
        Err(_) => return Kind::UserData,
    };
    if text.starts_with("-----BEGIN CERTIFICATE-----") {
        return Kind::Certificate;
    }
    if text.to_ascii_lowercase().starts_with("#cloud-config") {
        return Kind::UserData;
    }
    let Ok(serde_yaml_ng::Value::Mapping(map)) =
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text)
    else {
        return Kind::UserData;
    };
    let has = |k: &str| map.contains_key(serde_yaml_ng::Value::from(k));
    match (has("registry"), has("launch")) {
        (true, true) => Kind::ConductorConfig,
        (true, false) => Kind::SignerConfig,
        _ => Kind::UserData,
    }
}

/// Check one input. Pure: used by the command and by tests. `base` is the directory relative
/// paths in a conductor config are resolved against.
pub fn check(name: &str, raw: &[u8], strict: bool) -> FileReport {
    check_in(name, raw, strict, std::path::Path::new("."))
}

fn check_in(name: &str, raw: &[u8], strict: bool, base: &std::path::Path) -> FileReport {
    let kind = kind(raw);
    let text = || String::from_utf8_lossy(raw);
    let mut diags = match kind {
        Kind::UserData => match schemas::userdata::parse(name, raw) {
            Ok(p) => p.warnings,
            Err(e) => e.0,
        },
        Kind::ConductorConfig => {
            schemas::conductor_config::ConductorConfig::parse_at(name, &text(), base)
                .err()
                .map_or_else(Vec::new, |e| e.0)
        }
        Kind::SignerConfig => schemas::signer_config::SignerConfig::parse(name, &text())
            .err()
            .map_or_else(Vec::new, |e| e.0),
        Kind::Certificate => match schemas::userdata::checks::pem_certificate(&text()) {
            Ok(()) => Vec::new(),
            Err(p) => vec![Diagnostic::error(name, "", p.message, p.fix)],
        },
    };
    if strict {
        for d in &mut diags {
            d.severity = Severity::Error;
        }
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    FileReport {
        file: name.to_owned(),
        kind,
        valid: errors == 0,
        errors,
        warnings: diags.len() - errors,
        diagnostics: diags,
    }
}

fn read(path: &PathBuf) -> Result<(String, Vec<u8>), FileReport> {
    let (name, res) = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        (
            "<stdin>".to_owned(),
            std::io::stdin()
                .take(schemas::userdata::MAX_DECODED + 1)
                .read_to_end(&mut buf)
                .map(|_| buf),
        )
    } else {
        let name = path.display().to_string();
        // Read one byte past the decoder's cap, so an oversized file is reported as such
        // without reading all of it.
        let res = std::fs::File::open(path).and_then(|f| {
            let mut buf = Vec::new();
            f.take(schemas::userdata::MAX_DECODED + 1)
                .read_to_end(&mut buf)
                .map(|_| buf)
        });
        (name, res)
    };
    match res {
        Ok(raw) => Ok((name, raw)),
        Err(e) => {
            let d = Diagnostic::error(
                &name,
                "",
                format!("cannot read the file: {e}"),
                "check the path and its permissions",
            );
            Err(FileReport {
                file: name,
                kind: Kind::UserData,
                valid: false,
                errors: 1,
                warnings: 0,
                diagnostics: vec![d],
            })
        }
    }
}

pub fn validate(args: ValidateArgs) -> u8 {
    let files: Vec<FileReport> = args
        .files
        .iter()
        .map(|p| match read(p) {
            Ok((name, raw)) => {
                let base = p
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default();
                check_in(&name, &raw, args.strict, &base)
            }
            Err(r) => r,
        })
        .collect();
    let report = Report {
        valid: files.iter().all(|f| f.valid),
        strict: args.strict,
        files,
    };
    match args.output {
        Output::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("bootcfg: error: serialising the report: {e}");
                return 1;
            }
        },
        Output::Text => {
            for f in &report.files {
                for d in &f.diagnostics {
                    println!("{d}");
                }
                let plural =
                    |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
                let what = match f.kind {
                    Kind::UserData => String::new(),
                    Kind::ConductorConfig => " conductor config".to_owned(),
                    Kind::SignerConfig => " signer config".to_owned(),
                    Kind::Certificate => " certificate".to_owned(),
                };
                if f.valid {
                    println!(
                        "{}: valid{what} ({})",
                        f.file,
                        plural(f.warnings, "warning")
                    );
                } else {
                    println!(
                        "{}: invalid{what} ({}, {})",
                        f.file,
                        plural(f.errors, "error"),
                        plural(f.warnings, "warning")
                    );
                }
            }
        }
    }
    if report.valid { 0 } else { 1 }
}

pub fn schema(_args: SchemaArgs) -> u8 {
    match serde_json::to_string_pretty(&schemas::userdata::schema::json_schema()) {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(e) => {
            eprintln!("bootcfg: error: serialising the schema: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_turns_warnings_into_errors() {
        let input = b"#cloud-config\nruncmd: [ls]\n";
        let r = check("u", input, false);
        assert!(r.valid && r.warnings == 1);
        let r = check("u", input, true);
        assert!(!r.valid && r.errors == 1 && r.warnings == 0);
    }

    #[test]
    fn other_project_documents_are_checked_by_their_own_validator() {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        for (file, want) in [
            ("conductor.yaml", Kind::ConductorConfig),
            ("signer.yaml", Kind::SignerConfig),
            ("puppet-ca.pem", Kind::Certificate),
            ("userdata-apt.yaml", Kind::UserData),
        ] {
            let raw = std::fs::read(examples.join(file)).unwrap();
            assert_eq!(kind(&raw), want, "{file}");
            let r = check_in(file, &raw, false, &examples);
            assert!(r.valid, "{file}: {:?}", r.diagnostics);
        }
        // A signer config with a typo is invalid, with a located message from the signer's validator.
        let r = check("s.yaml", b"registry: file:///srv/reg\npolicyy: {}\n", false);
        assert_eq!(r.kind, Kind::SignerConfig);
        assert!(
            !r.valid && r.diagnostics[0].key.contains("policyy"),
            "{:?}",
            r.diagnostics
        );
        // A broken certificate is invalid; plain text stays user-data and says what user-data needs.
        let r = check(
            "c.pem",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            false,
        );
        assert!(r.kind == Kind::Certificate && !r.valid);
        let r = check("t.txt", b"hello\n", false);
        assert!(r.kind == Kind::UserData && !r.valid);
    }
}
