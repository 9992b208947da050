//! Run-once markers and the result file.
//!
//! - `<root>/var/lib/bootcfg/instances/<instance-id>/<module>.done` is written **only after the
//!   module succeeded**, so `bootcfg run` retries a failed module at the next boot (deliberate
//!   difference from cloud-init, whose semaphore is written before the module runs and is kept on
//!   failure, so a failed module never runs again for that instance). A new instance id (an AMI
//!   made from a configured machine) gets a fresh directory, so everything runs again.
//! - `<root>/var/lib/bootcfg/result.json` (0644, atomic) records the last `run`/`apply`; the
//!   same document is what `--output json` prints. It holds no secrets (plan steps are redacted).

use crate::action::Step;
use crate::rootfs::{Root, RootError};
use serde::{Deserialize, Serialize};

pub const STATE_DIR: &str = "/var/lib/bootcfg";
pub const RESULT_FILE: &str = "/var/lib/bootcfg/result.json";
pub const RESULT_VERSION: u32 = 1;

/// Instance ids become directory names: allow what EC2 and NoCloud use, nothing that can escape.
pub fn valid_instance_id(iid: &str) -> bool {
    !iid.is_empty()
        && iid.len() <= 128
        && iid != "."
        && iid != ".."
        && iid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

pub fn marker_path(iid: &str, module: &str) -> String {
    format!("{STATE_DIR}/instances/{iid}/{module}.done")
}

pub fn is_done(root: &Root, iid: &str, module: &str) -> bool {
    root.exists(&marker_path(iid, module))
}

pub fn mark_done(root: &Root, iid: &str, module: &str) -> Result<(), RootError> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    root.write(
        &marker_path(iid, module),
        format!("{now}\n").as_bytes(),
        0o644,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModuleStatus {
    /// Ran and succeeded in this run.
    Done,
    /// Skipped: its marker says it already succeeded for this instance (`run` only).
    AlreadyDone,
    Failed,
    /// Not run: a module it needs failed, or another module cannot be planned (`reason`
    /// says which); it runs at the next attempt.
    NotRun,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleResult {
    pub name: String,
    pub status: ModuleStatus,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why a `not-run` module was not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Success,
    NoUserData,
    InvalidUserData,
    Failed,
}

/// The result of one `run`/`apply` (also `plan --output json`, with `command: plan`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub version: u32,
    pub command: String,
    pub outcome: Outcome,
    pub exit_code: u8,
    pub datasource: String,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    /// Wall time spent in child processes (apt, dpkg, puppet): `duration_ms - child_ms` is
    /// bootcfg's own overhead.
    pub child_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub reboot_required: bool,
    #[serde(default)]
    pub modules: Vec<ModuleResult>,
}

pub fn write_result(root: &Root, r: &RunResult) -> Result<(), RootError> {
    let mut json = serde_json::to_string_pretty(r).unwrap_or_default();
    json.push('\n');
    root.write(RESULT_FILE, json.as_bytes(), 0o644)
}

pub fn read_result(root: &Root) -> Result<Option<RunResult>, String> {
    match root.read(RESULT_FILE).map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{RESULT_FILE}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_ids_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let r = Root::new(d.path()).unwrap();
        assert!(!is_done(&r, "i-0abc", "puppet"));
        mark_done(&r, "i-0abc", "puppet").unwrap();
        assert!(is_done(&r, "i-0abc", "puppet"));
        assert!(
            d.path()
                .join("var/lib/bootcfg/instances/i-0abc/puppet.done")
                .is_file()
        );
        assert!(!is_done(&r, "i-other", "puppet"));
        assert!(valid_instance_id("i-0123456789abcdef0") && valid_instance_id("iid-feas-1"));
        assert!(!valid_instance_id("..") && !valid_instance_id("a/b") && !valid_instance_id(""));
    }
}
