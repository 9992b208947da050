//! The audit log: one JSON object per line and per decision. Never holds a secret: the
//! challengePassword is only ever hashed and compared, and reasons are written to avoid it.

use crate::decide::{Check, Mode};
use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What happened to one CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Hook: approved and consumed; Puppet signs on exit 0.
    Approved,
    /// Sweep: approved, consumed and signed through the CA.
    Signed,
    /// Sweep --dry-run: would have been signed.
    WouldSign,
    /// Refused; the CSR stays pending.
    Rejected,
    /// An infrastructure failure (registry/CA unreachable, deadline); nothing signed.
    Error,
}

/// One audit line.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub time: String,
    pub mode: Mode,
    pub certname: String,
    pub csr_sha256: String,
    pub decision: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Record {
    pub fn new(
        mode: Mode,
        certname: &str,
        csr_sha256: &str,
        decision: Outcome,
        check: Option<Check>,
        reason: Option<String>,
    ) -> Self {
        // The certname comes from argv or the CA listing: bound it before it is logged.
        let certname: String = certname.chars().take(255).collect();
        Record {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            mode,
            certname,
            csr_sha256: csr_sha256.to_owned(),
            decision,
            check,
            reason,
        }
    }
}

/// Appends records to a file (created 0640, parent directories created).
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    pub fn new(path: &Path) -> Self {
        AuditLog {
            path: path.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one line with a single `write` on an `O_APPEND` file, so concurrent writers
    /// (the hook and a sweep) never interleave within a line.
    pub fn write(&self, rec: &Record) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let mut line = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.path)?;
        f.write_all(&line)?;
        f.sync_data()
    }
}
