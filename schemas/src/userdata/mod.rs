//! Cloud-config user-data: decoding (base64, gzip, MIME multipart, `#cloud-config`), parsing of both
//! syntaxes, validation, and normalisation into [`model::UserData`].

pub mod model;

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
pub fn parse(name: &str, raw: &[u8]) -> Result<Parsed, Diagnostics> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(Parsed { config: UserData::default(), warnings: Vec::new() });
    }
    Err(Diagnostics(vec![Diagnostic::error(name, "", "user-data parsing is not built yet", "")]))
}
