//! `bootcfg validate` and `bootcfg schema`.
//!
//! `validate` runs exactly the parser the agent runs at boot (`schemas::userdata::parse`), so a
//! file that passes here is one the agent accepts. With `--root DIR` it also plans every module
//! against that root, as the agent does before it changes anything ([`crate::agent::plan_all`]),
//! so what can only fail on a given machine (`ppa:` on Debian, a missing `$RELEASE`, an
//! unwritable path) is reported too. Exit codes: 0 every file valid, 1 any file
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

  bootcfg validate --root /mnt/image user-data.yaml   # also plan it against that root

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
    /// Also plan every module of valid user-data against this root (the machine or mounted
    /// image it is for), as the agent does first: reports what can only fail there. Changes
    /// nothing.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
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

/// The top-level key each module comes from, for the diagnostic's key path.
fn module_key(module: &str) -> &'static str {
    match module {
        "apt-conf" => "apt",
        "apt-sources" => "apt.sources",
        "debconf" => "apt.debconf_selections",
        "packages" => "packages",
        _ => "puppet",
    }
}

/// Runs nothing: planning never runs a command, and validation must not either.
struct NoCommands;

impl crate::runner::Runner for NoCommands {
    fn run(
        &self,
        cmd: &crate::runner::Cmd,
    ) -> Result<crate::runner::CmdOutput, crate::runner::RunError> {
        Err(crate::runner::RunError::Failed {
            command: cmd.display(),
            status: "not run".to_owned(),
            output: "bootcfg validate runs no command".to_owned(),
        })
    }
}

/// The root-dependent checks: plan every module of valid user-data against `root` and report
/// each module that cannot be planned as an error. Changes nothing under `root`.
pub fn check_on_root(report: &mut FileReport, raw: &[u8], root: &crate::rootfs::Root) {
    if report.kind != Kind::UserData || !report.valid {
        return;
    }
    let Ok(parsed) = schemas::userdata::parse(&report.file, raw) else {
        return;
    };
    let mut ctx = crate::ctx::Ctx::new(root.clone(), "i-validate", "validate.invalid");
    for s in crate::modules::secrets(&parsed.config, "i-validate") {
        ctx.redactor.add(&s);
    }
    // the identity document exists only at boot, from IMDS; its absence here is not an error
    ctx.set_identity(crate::ctx::Identity::Available(
        "validate-has-no-instance-identity".to_owned(),
    ));
    let (planned, _) = crate::agent::plan_all(&parsed.config, &ctx, &NoCommands, &|_| false);
    for p in planned {
        if let Err(e) = p.actions {
            report.diagnostics.push(Diagnostic::error(
                &report.file,
                module_key(p.name),
                format!(
                    "module {} cannot be planned on the root {}: {e}",
                    p.name,
                    root.path().display()
                ),
                "change the user-data, or check that the root is the machine or image it is for",
            ));
            report.errors += 1;
            report.valid = false;
        }
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
    let root = match args
        .root
        .as_deref()
        .map(crate::rootfs::Root::new)
        .transpose()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bootcfg validate: --root: {e}");
            return crate::exit::USAGE;
        }
    };
    let files: Vec<FileReport> = args
        .files
        .iter()
        .map(|p| match read(p) {
            Ok((name, raw)) => {
                let base = p
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default();
                let mut r = check_in(&name, &raw, args.strict, &base);
                if let Some(root) = &root {
                    check_on_root(&mut r, &raw, root);
                }
                r
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
                return crate::exit::FAILED;
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
    if report.valid {
        crate::exit::OK
    } else {
        crate::exit::FAILED
    }
}

pub fn schema(_args: SchemaArgs) -> u8 {
    match serde_json::to_string_pretty(&schemas::userdata::schema::json_schema()) {
        Ok(s) => {
            println!("{s}");
            crate::exit::OK
        }
        Err(e) => {
            eprintln!("bootcfg: error: serialising the schema: {e}");
            crate::exit::FAILED
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

    /// `ppa:` is valid user-data, but cannot be planned on Debian: `--root` reports it, at the
    /// key it comes from, and changes nothing in the root.
    #[test]
    fn with_a_root_what_cannot_be_planned_there_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/os-release"),
            "ID=debian\nVERSION_CODENAME=bookworm\n",
        )
        .unwrap();
        let root = crate::rootfs::Root::new(d.path()).unwrap();
        let raw = b"#cloud-config\napt:\n  sources:\n    p:\n      source: ppa:owner/name\npuppet:\n  install: false\n  instance_identity: true\n";
        let mut r = check("u.yaml", raw, false);
        assert!(r.valid, "{:?}", r.diagnostics);
        check_on_root(&mut r, raw, &root);
        assert!(!r.valid && r.errors == 1, "{:?}", r.diagnostics);
        assert_eq!(r.diagnostics[0].key, "apt.sources");
        assert!(r.diagnostics[0].message.contains("apt-sources"));
        let entries: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "only etc/ is there");
        // the same user-data on an Ubuntu root plans
        std::fs::write(
            d.path().join("etc/os-release"),
            "ID=ubuntu\nVERSION_CODENAME=noble\n",
        )
        .unwrap();
        let root = crate::rootfs::Root::new(d.path()).unwrap();
        let mut r = check("u.yaml", raw, false);
        check_on_root(&mut r, raw, &root);
        assert!(r.valid, "{:?}", r.diagnostics);
    }
}
