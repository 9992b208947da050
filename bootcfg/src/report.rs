//! What bootcfg shows people: the step listing of `plan` and `apply` ([`render_steps`]) and the
//! run summary ([`summary`]) that `status` and `run`/`apply` print.

use crate::action::{Mode, Step, StepKind};
use crate::marker::{ModuleStatus, RunResult};

/// The human summary printed by `status` and at the end of `run`/`apply`.
pub fn summary(r: &RunResult) -> String {
    let mut s = format!(
        "{} {}: {:?} (exit {}), instance {}, host {}, from {}\n  {} -> {} ({:.1} s, {:.1} s of it in child processes)\n",
        "bootcfg",
        r.command,
        r.outcome,
        r.exit_code,
        r.instance_id.as_deref().unwrap_or("-"),
        r.hostname.as_deref().unwrap_or("-"),
        r.datasource,
        r.started_at,
        r.finished_at,
        r.duration_ms as f64 / 1000.0,
        r.child_ms as f64 / 1000.0
    );
    for m in &r.modules {
        let st = match m.status {
            ModuleStatus::Done => "done",
            ModuleStatus::AlreadyDone => "already done",
            ModuleStatus::Failed => "FAILED",
            ModuleStatus::NotRun => "not run",
        };
        let changed = m.steps.iter().filter(|s| s.changed).count();
        s.push_str(&format!(
            "  {:<12} {st:<12} {:>6} ms  {changed} change(s)\n",
            m.name, m.duration_ms
        ));
        if let Some(why) = &m.reason {
            s.push_str(&format!("      ({why})\n"));
        }
        if let Some(e) = &m.error {
            for l in e.lines() {
                s.push_str(&format!("      {l}\n"));
            }
        }
    }
    if let Some(e) = &r.error {
        s.push_str(&format!("  error: {e}\n"));
    }
    for w in &r.warnings {
        s.push_str(&format!("  warning: {w}\n"));
    }
    if r.reboot_required {
        s.push_str("  reboot required\n");
    }
    s
}

/// Text rendering of steps for `bootcfg plan` / `apply` output.
pub fn render_steps(steps: &[Step], mode: Mode) -> String {
    let mut out = String::new();
    let mut module = "";
    for s in steps {
        if s.module != module {
            module = &s.module;
            out.push_str(&format!("== {module}\n"));
        }
        match s.kind {
            StepKind::Run => {
                out.push_str(&format!("  $ {}", s.command.as_deref().unwrap_or("")));
                if let Some(n) = &s.note {
                    out.push_str(&format!("    # {n}"));
                }
                out.push('\n');
            }
            StepKind::Note => out.push_str(&format!("  # {}\n", s.note.as_deref().unwrap_or(""))),
            kind => {
                let verb = match (kind, mode, s.changed) {
                    (_, _, false) => "unchanged",
                    (StepKind::Write, Mode::Plan, _) => "would write",
                    (StepKind::Write, Mode::Apply, _) => "wrote",
                    (StepKind::Remove, Mode::Plan, _) => "would remove",
                    (StepKind::Remove, Mode::Apply, _) => "removed",
                    (StepKind::Mkdir, _, _) => "directory",
                    (StepKind::FetchKey, Mode::Plan, _) => "would fetch",
                    (StepKind::FetchKey, Mode::Apply, _) => "fetched",
                    (StepKind::Run | StepKind::Note, _, _) => "",
                };
                out.push_str(&format!("  {verb} {}", s.path.as_deref().unwrap_or("")));
                if let Some(m) = &s.mode {
                    out.push_str(&format!(" (mode {m})"));
                }
                if let Some(n) = &s.note {
                    out.push_str(&format!("  # {n}"));
                }
                out.push('\n');
                if let Some(d) = &s.diff {
                    if s.changed && d.contains('\n') {
                        for l in d.lines() {
                            out.push_str("    ");
                            out.push_str(l);
                            out.push('\n');
                        }
                    } else if s.changed {
                        out.push_str(&format!("    ({d})\n"));
                    }
                }
            }
        }
    }
    out
}
