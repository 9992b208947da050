//! `bootcfg validate` and `bootcfg schema`.
//!
//! `validate` runs exactly the parser the agent runs at boot (`schemas::userdata::parse`), so a
//! file that passes here is one the agent accepts. Exit codes: 0 every file valid, 1 any file
//! invalid or unreadable (a missing file is reported like an invalid one, with its name), 2 usage
//! error (clap).

use crate::agent::Output;
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
Exit codes: 0 all files valid, 1 a file is invalid or unreadable, 2 usage error.";

#[derive(Debug, clap::Args)]
#[command(after_help = VALIDATE_HELP)]
pub struct ValidateArgs {
    /// User-data files to check (`-` reads standard input).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Treat warnings (keys bootcfg does not handle, short key ids, ignored MIME parts) as errors.
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

/// Check one input. Pure: used by the command and by tests.
pub fn check(name: &str, raw: &[u8], strict: bool) -> FileReport {
    let mut diags = match schemas::userdata::parse(name, raw) {
        Ok(p) => p.warnings,
        Err(e) => e.0,
    };
    if strict {
        for d in &mut diags {
            d.severity = Severity::Error;
        }
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    FileReport {
        file: name.to_owned(),
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
            Ok((name, raw)) => check(&name, &raw, args.strict),
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
                if f.valid {
                    println!("{}: valid ({})", f.file, plural(f.warnings, "warning"));
                } else {
                    println!(
                        "{}: invalid ({}, {})",
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
}
