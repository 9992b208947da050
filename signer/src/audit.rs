//! The audit log: one JSON object per line and per decision. Never holds a secret: the
//! challengePassword is only ever hashed and compared, and reasons are written to avoid it.

use crate::decide::{Check, Mode};
use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What happened to one CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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
    /// Sweep: a rejected request squatting on a registered, still-pending certname was removed
    /// from the CA, so the instance the registration is for can submit its own.
    Evicted,
    /// Sweep: a listed entry that cannot be decided on its own terms (a certname that is not a
    /// plain name, an unreadable request); never signed, never touched, the rest goes on.
    Skipped,
    /// Sweep, security incident: the certificate the CA issued could not be shown to be for the
    /// CSR that was checked (its key differs: the pending request was replaced between the check
    /// and the signing; or it could not be read back). It is revoked at once; the reason says
    /// whether revoking worked.
    Incident,
    /// Sweep: the certname is retired (its instance terminated); its certificate was revoked
    /// and whatever the CA held under the name removed.
    Revoked,
    /// Sweep --dry-run: the certname is retired and the CA holds something under it that a
    /// sweep would revoke and remove.
    WouldRevoke,
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

    /// Whether the log's recent tail already holds the same rejection or skip (same certname,
    /// CSR, decision, check and reason). A sweep under cron or `--watch` meets a CSR it refuses
    /// (or an entry it skips) again at every interval; it writes the line once, not once a minute
    /// forever. Reading is bounded (the last [`DEDUP_WINDOW`] bytes); a log that cannot be read
    /// counts as "not logged".
    pub fn has_rejection(&self, rec: &Record) -> bool {
        use std::io::{Read, Seek, SeekFrom};
        if !matches!(rec.decision, Outcome::Rejected | Outcome::Skipped) {
            return false;
        }
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return false;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = len.saturating_sub(DEDUP_WINDOW);
        let mut tail = Vec::new();
        if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut tail).is_err() {
            return false;
        }
        let want = (
            rec.certname.as_str(),
            rec.csr_sha256.as_str(),
            rec.check,
            rec.reason.as_deref(),
        );
        tail.split(|b| *b == b'\n')
            .filter_map(|l| serde_json::from_slice::<Logged>(l).ok())
            .any(|l| {
                l.decision == rec.decision
                    && (
                        l.certname.as_str(),
                        l.csr_sha256.as_str(),
                        l.check,
                        l.reason.as_deref(),
                    ) == want
            })
    }
}

/// How much of the log's end [`AuditLog::has_rejection`] reads: about 4000 lines.
pub const DEDUP_WINDOW: u64 = 1 << 20;

/// The fields of a logged line that identify a decision (for de-duplication).
#[derive(serde::Deserialize)]
struct Logged {
    certname: String,
    csr_sha256: String,
    decision: Outcome,
    #[serde(default)]
    check: Option<Check>,
    #[serde(default)]
    reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(csr: &str, reason: &str) -> Record {
        Record::new(
            Mode::Sweep,
            "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11",
            csr,
            Outcome::Rejected,
            Some(Check::Secret),
            Some(reason.into()),
        )
    }

    #[test]
    fn a_repeated_rejection_is_recognised_and_anything_else_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(&dir.path().join("audit.jsonl"));
        let first = rejected("aa", "challengePassword does not match");
        assert!(!log.has_rejection(&first), "empty log");
        log.write(&first).unwrap();
        assert!(log.has_rejection(&rejected("aa", "challengePassword does not match")));
        // Another CSR, another reason, or another decision is new and gets its own line.
        assert!(!log.has_rejection(&rejected("bb", "challengePassword does not match")));
        assert!(!log.has_rejection(&rejected("aa", "no challengePassword")));
        let mut signed = rejected("aa", "challengePassword does not match");
        signed.decision = Outcome::Signed;
        assert!(!log.has_rejection(&signed));
        // Only the tail is read: a rejection pushed out of the window is written again.
        let filler = Record::new(
            Mode::Sweep,
            "x",
            "cc",
            Outcome::Error,
            None,
            Some("y".repeat(1000)),
        );
        for _ in 0..(DEDUP_WINDOW / 1000 + 10) {
            log.write(&filler).unwrap();
        }
        assert!(!log.has_rejection(&first));
    }
}
