//! Located diagnostics shared by every validator in the project.
//!
//! A [`Diagnostic`] names the input (file), the place (line and column, 1-based), the key path
//! (`apt.sources.mirror.filename`), what is wrong, and what to do about it. Validators collect all
//! of them instead of stopping at the first, so one run shows the user every problem.

use serde::Serialize;
use std::fmt;

/// How bad a finding is. `--strict` turns warnings into errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// A place in an input file. Lines and columns are 1-based; 0 means "unknown".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// One finding about one input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The input's name as the user gave it (a path, `<stdin>`, `imds:user-data`, `s3://…`).
    pub file: String,
    #[serde(flatten)]
    pub location: Location,
    /// Dotted key path, e.g. `apt.sources.mirror.filename` or `packages[2]`; empty for the whole document.
    pub key: String,
    /// What is wrong, in one sentence.
    pub message: String,
    /// What to do about it, in one sentence.
    pub fix: String,
}

impl Diagnostic {
    pub fn error(
        file: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.into(),
            location: Location::default(),
            key: key.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    pub fn warning(
        file: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, key, message, fix)
        }
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = location;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `file:line:col: error: key: message (fix: …)`, the shape compilers use, so editors can jump to it.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.location.line > 0 {
            write!(f, ":{}", self.location.line)?;
            if self.location.column > 0 {
                write!(f, ":{}", self.location.column)?;
            }
        }
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, ": {sev}: ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// A set of diagnostics that made an input unusable; the error type of every `load`/`parse` here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_key_and_fix() {
        let d = Diagnostic::error(
            "ud.yaml",
            "packages[0]",
            "`a;b` is not a Debian package name",
            "use lowercase letters, digits, `+`, `-` and `.`",
        )
        .at(Location { line: 3, column: 5 });
        assert_eq!(
            d.to_string(),
            "ud.yaml:3:5: error: packages[0]: `a;b` is not a Debian package name\n  fix: use lowercase letters, digits, `+`, `-` and `.`"
        );
    }
}
