//! The engine: it interprets [`Action`]s, either showing them ([`Mode::Plan`]) or carrying them
//! out ([`Mode::Apply`]). In plan mode it computes the same file contents and diffs as apply
//! would (against what is on disk, plus what earlier planned actions would have written) and
//! runs nothing. So `plan` and `apply` share one code path: only the last step (write/run or
//! not) differs. Commands go through a [`Runner`], keys through a [`KeySource`]: the engine does
//! no I/O of its own beyond the root's files.

use crate::action::{
    Action, Content, KeyFetch, KeySource, Mode, NoKeys, Step, StepError, StepKind,
};
use crate::ctx::Ctx;
use crate::debian::{DpkgDb, DpkgRecord, KEEP_CONFFILES, apt_get};
use crate::runner::{Cmd, RunError, Runner};
use std::collections::HashMap;

/// Carries out (or shows) actions. See the module docs.
pub struct Engine<'a> {
    pub ctx: &'a Ctx,
    pub runner: &'a dyn Runner,
    /// Where [`Action::FetchKey`] gets its keys ([`NoKeys`] unless [`Engine::with_keys`]).
    keys: &'a dyn KeySource,
    pub mode: Mode,
    /// Plan mode: what earlier actions would have written (`None` = removed).
    overlay: HashMap<String, Option<(Vec<u8>, u32)>>,
    pub steps: Vec<Step>,
    /// Set when a reboot was required but not done (root is not `/`).
    pub reboot_pending: bool,
}

impl<'a> Engine<'a> {
    pub fn new(ctx: &'a Ctx, runner: &'a dyn Runner, mode: Mode) -> Engine<'a> {
        Engine {
            ctx,
            runner,
            keys: &NoKeys,
            mode,
            overlay: HashMap::new(),
            steps: Vec::new(),
            reboot_pending: false,
        }
    }

    /// Fetch keys from `keys` (apply).
    pub fn with_keys(mut self, keys: &'a dyn KeySource) -> Engine<'a> {
        self.keys = keys;
        self
    }

    fn current(&self, path: &str) -> Result<Option<(Vec<u8>, u32)>, StepError> {
        if let Some(v) = self.overlay.get(path) {
            return Ok(v.clone());
        }
        let root = &self.ctx.root;
        Ok(match root.read(path)? {
            Some(b) => Some((b, root.mode(path)?.unwrap_or(0o644))),
            None => None,
        })
    }

    fn step(&self, module: &str, kind: StepKind) -> Step {
        Step {
            module: module.to_owned(),
            kind,
            path: None,
            mode: None,
            command: None,
            diff: None,
            changed: true,
            note: None,
        }
    }

    fn show_cmd(&self, cmd: &Cmd) -> String {
        let mut s = self.ctx.mask(&cmd.display());
        if let Some(input) = &cmd.stdin {
            s.push_str(&format!("  <<< stdin: {} line(s)", input.lines().count()));
        }
        s
    }

    fn run(&mut self, module: &str, cmd: &Cmd) -> Result<(), StepError> {
        let mut st = self.step(module, StepKind::Run);
        st.command = Some(self.show_cmd(cmd));
        if self.mode == Mode::Apply {
            let debconf = cmd
                .argv
                .first()
                .is_some_and(|p| p == crate::runner::programs::DEBCONF_SET_SELECTIONS);
            let before = if debconf {
                self.ctx.root.read(DEBCONF_DB).ok().flatten()
            } else {
                None
            };
            let out = self.run_recorded(cmd)?;
            st.changed = if debconf {
                self.ctx.root.read(DEBCONF_DB).ok().flatten() != before
            } else {
                changed_by(cmd, &out)
            };
        }
        self.steps.push(st);
        Ok(())
    }

    /// One command of the dpkg recovery: shown (plan), or run and shown with how it went
    /// (apply). A failure is shown too (the step's note) and returned, for the caller to
    /// repair or report.
    fn recovery_step(&mut self, module: &str, cmd: &Cmd, note: String) -> Result<(), RunError> {
        let mut st = self.step(module, StepKind::Run);
        st.command = Some(self.show_cmd(cmd));
        st.note = Some(note);
        let mut res = Ok(());
        if self.mode == Mode::Apply {
            match self.run_durably(cmd) {
                Ok(out) => st.changed = changed_by(cmd, &out),
                Err(e) => {
                    let why = self.ctx.mask(&failure_digest(&e.to_string()));
                    tracing::warn!(command = %self.show_cmd(cmd), "{}", self.ctx.mask(&e.to_string()));
                    st.note = Some(format!(
                        "{}; failed: {why}",
                        st.note.take().unwrap_or_default()
                    ));
                    res = Err(e);
                }
            }
        }
        self.steps.push(st);
        res
    }

    /// [`Action::RecoverDpkg`]: every command it runs (or would run) is a step of its own.
    /// `plan` follows the path that `apply` takes when each command succeeds, and shows the
    /// purge that `apply` falls back to as a step marked "only if".
    fn recover_dpkg(&mut self, module: &str, ours: &[String]) -> Result<(), StepError> {
        use crate::runner::programs::DPKG;
        let db = DpkgDb::read(&self.ctx.root)?;
        // keep a conffile the image changed, as every apt-get call does: an interrupted unpack
        // leaves the prompt for the configure step, and with no terminal dpkg would fail ("end
        // of file on stdin at conffile prompt")
        let configure = Cmd::new([DPKG, KEEP_CONFFILES, "--configure", "-a"]).apt();
        if !db.pending() {
            let mut st = self.step(module, StepKind::Run);
            st.command = Some(self.show_cmd(&configure));
            st.changed = false;
            st.note = Some("skipped: dpkg was not interrupted".to_owned());
            self.steps.push(st);
            return self.restore_intent(module, ours);
        }
        let names = |v: &[&DpkgRecord]| {
            v.iter()
                .map(|r| r.describe())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let need = db.needs_reinstall();
        let mut what = Vec::new();
        if db.journal {
            what.push("its journal /var/lib/dpkg/updates is not empty".to_owned());
        }
        let left: Vec<&DpkgRecord> = db
            .records
            .iter()
            .filter(|r| (r.interrupted() || r.unconfigured()) && !r.needs_reinstall())
            .collect();
        if !left.is_empty() {
            what.push(format!("not configured: {}", names(&left)));
        }
        if !need.is_empty() {
            what.push(format!(
                "needing a reinstall: {} (dpkg refuses to configure them until they are unpacked again, so this may fail)",
                names(&need)
            ));
        }
        let note = format!("dpkg was interrupted; {}", what.join("; "));
        if self.mode == Mode::Apply {
            tracing::warn!("{note}; running dpkg --configure -a");
        }
        let mut failed = self.recovery_step(module, &configure, note).err();

        // Packages of any origin that dpkg wants unpacked again, as dpkg sees them now (the
        // configure above folded the journal): reinstall them from the archive. `--reinstall`
        // keeps apt's automatically-installed mark; `-f` lets apt finish the rest of
        // an interrupted batch (a package unpacked before its dependencies).
        let need: Vec<DpkgRecord> = if self.mode == Mode::Apply {
            DpkgDb::read(&self.ctx.root)?
                .needs_reinstall()
                .into_iter()
                .cloned()
                .collect()
        } else {
            need.into_iter().cloned().collect()
        };
        let mut reinstall_failed = None;
        if !need.is_empty() {
            let refs: Vec<&DpkgRecord> = need.iter().collect();
            let mut argv = apt_get(&["install", "-f", "--reinstall"]);
            argv.extend(need.iter().map(DpkgRecord::apt_name));
            if self.mode == Mode::Apply {
                tracing::warn!(packages = %names(&refs), "reinstalling packages an interrupted dpkg left half-installed");
            }
            let reinstall = Cmd::new(argv).apt();
            reinstall_failed = self
                .recovery_step(
                    module,
                    &reinstall,
                    format!(
                        "unpack again from the archive what the interruption left half-installed: {}",
                        names(&refs)
                    ),
                )
                .err();
            // apt refuses a reinstall while other packages of the interrupted batch have unmet
            // dependencies ("Unmet dependencies. Try 'apt --fix-broken install' with no
            // packages"): resolve those first, as apt advises, then reinstall again.
            if self.mode == Mode::Plan || reinstall_failed.is_some() {
                let when = if self.mode == Mode::Plan {
                    "only if that reinstall fails: "
                } else {
                    ""
                };
                let fixed = self.recovery_step(
                    module,
                    &Cmd::new(apt_get(&["install", "-f"])).apt(),
                    format!(
                        "{when}let apt finish the interrupted batch's unmet dependencies first"
                    ),
                );
                let still: Vec<String> = if self.mode == Mode::Apply {
                    DpkgDb::read(&self.ctx.root)?
                        .needs_reinstall()
                        .into_iter()
                        .map(DpkgRecord::apt_name)
                        .collect()
                } else {
                    need.iter().map(DpkgRecord::apt_name).collect()
                };
                if fixed.is_ok() && self.mode == Mode::Apply && still.is_empty() {
                    reinstall_failed = None;
                } else if self.mode == Mode::Plan || fixed.is_ok() {
                    let mut argv = apt_get(&["install", "-f", "--reinstall"]);
                    argv.extend(still);
                    reinstall_failed = self
                        .recovery_step(
                            module,
                            &Cmd::new(argv).apt(),
                            format!("{when}unpack again what still needs it"),
                        )
                        .err();
                }
            }
            failed = self
                .recovery_step(
                    module,
                    &configure,
                    "configure what waited for the reinstalled packages".to_owned(),
                )
                .err();
        }

        // Still failing: a maintainer script killed half-way can leave state its next run cannot
        // fix (locales: an emptied locale.gen resets the preseeded question). Start the packages
        // this run installs again from scratch; anything else is the error it is.
        let interrupted = if self.mode == Mode::Apply {
            if failed.is_some() {
                DpkgDb::read(&self.ctx.root)?.interrupted_names()
            } else {
                Vec::new()
            }
        } else {
            db.interrupted_names()
        };
        let purge: Vec<String> = interrupted
            .into_iter()
            .filter(|p| ours.contains(p))
            .collect();
        let failed_now = failed.is_some();
        if self.mode == Mode::Apply
            && let Some(e) = failed
        {
            if purge.is_empty() {
                // the reinstall's own error says more than dpkg's "very bad inconsistent state"
                let still = DpkgDb::read(&self.ctx.root)?;
                return Err(match reinstall_failed {
                    Some(r) if !still.needs_reinstall().is_empty() => r.into(),
                    _ => e.into(),
                });
            }
            tracing::warn!(
                packages = %purge.join(" "),
                "dpkg --configure -a failed; purging the broken packages this run installs again"
            );
        }
        let run_purge = !purge.is_empty() && (self.mode == Mode::Plan || failed_now);
        if run_purge {
            let mut argv = vec![
                DPKG.to_owned(),
                "--purge".to_owned(),
                "--force-remove-reinstreq".to_owned(),
            ];
            argv.extend(purge.iter().cloned());
            let when = if self.mode == Mode::Plan {
                "only if dpkg --configure -a still fails: "
            } else {
                ""
            };
            self.recovery_step(
                module,
                &Cmd::new(argv).apt(),
                format!(
                    "{when}purge to install again (this run re-applies their preseed and installs them): {}",
                    purge.join(", ")
                ),
            )?;
            let note = if self.mode == Mode::Plan {
                "only if dpkg --configure -a still failed: configure the rest after the purge"
            } else {
                "configure the rest after the purge"
            };
            self.recovery_step(module, &configure, note.to_owned())?;
        }
        // an interrupted apt run may also have left packages whose dependencies never came
        self.recovery_step(
            module,
            &Cmd::new(apt_get(&["install", "-f"])).apt(),
            "finish what the interrupted apt run left unresolved".to_owned(),
        )?;
        self.restore_intent(module, ours)
    }

    /// Run `cmd`. dpkg runs without per-file fsyncs ([`crate::debian::UNSAFE_IO`]): an apt
    /// command that succeeded is made durable with one sync of the root before anything (the
    /// intent's removal, the next step) builds on it.
    fn run_durably(&self, cmd: &Cmd) -> Result<crate::runner::CmdOutput, RunError> {
        let out = self.runner.run(cmd)?;
        if cmd.apt {
            self.ctx.root.sync().map_err(|e| RunError::Failed {
                command: format!("syncfs of the root after `{}`", self.show_cmd(cmd)),
                status: "an I/O error".to_owned(),
                output: e.to_string(),
            })?;
        }
        Ok(out)
    }

    /// Run `cmd`; an `apt-get install` with its intent recorded first and removed once apt
    /// returned, whatever it returned.
    fn run_recorded(&mut self, cmd: &Cmd) -> Result<crate::runner::CmdOutput, StepError> {
        let intent = match apt_install_packages(cmd) {
            Some(requested) => self.record_intent(cmd, requested)?,
            None => false,
        };
        let out = self.run_durably(cmd);
        // apt finished, well or not: only a kill leaves the intent behind (a failed install must
        // not be retried by the recovery of a later run whose user-data no longer asks for it)
        if intent {
            self.ctx.root.remove(APT_INTENT)?;
        }
        Ok(out?)
    }

    /// Before an `apt-get install` runs: what apt is about to install anew (`-s`), written to
    /// [`APT_INTENT`]. A kill anywhere in the transaction leaves it for [`Self::restore_intent`]:
    /// apt's own record of the transaction (its Recommends, its auto-installed marks in
    /// `extended_states`) is written only at its end. Returns whether an intent was written.
    fn record_intent(&mut self, cmd: &Cmd, requested: Vec<String>) -> Result<bool, StepError> {
        let mut sim = cmd.clone();
        if let Some(i) = sim.argv.iter().position(|a| a == "install") {
            sim.argv.insert(i + 1, "--simulate".to_owned());
        }
        let out = self.runner.run(&sim)?;
        let new = simulated_new(&out.stdout);
        if new.is_empty() {
            return Ok(false);
        }
        let intent = AptIntent { requested, new };
        let text = serde_json::to_string(&intent).map_err(|e| StepError::Invalid(e.to_string()))?;
        self.ctx.root.write(APT_INTENT, text.as_bytes(), 0o644)?;
        Ok(true)
    }

    /// After a kill during an `apt-get install` ([`APT_INTENT`] left behind): install what it
    /// was about to install for its packages and is still missing (Recommends among them), and
    /// mark those dependencies automatically installed again, as the uninterrupted run would
    /// have left them. The packages the command asked for, and `ours` (what this run installs
    /// itself), are left to this run's own install: it comes after the debconf module, so a
    /// package the recovery purged is installed again with its preseed, not before it. `plan`
    /// shows these steps when the file is there.
    fn restore_intent(&mut self, module: &str, ours: &[String]) -> Result<(), StepError> {
        let Some(bytes) = self.ctx.root.read(APT_INTENT)? else {
            return Ok(());
        };
        let intent: AptIntent = match serde_json::from_slice(&bytes) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("{APT_INTENT} is unreadable ({e}); removing it");
                if self.mode == Mode::Apply {
                    self.ctx.root.remove(APT_INTENT)?;
                }
                return Ok(());
            }
        };
        let db = DpkgDb::read(&self.ctx.root)?;
        let missing: Vec<String> = intent
            .new
            .iter()
            .filter(|p| !intent.requested.contains(p) && !ours.contains(p))
            .filter(|p| !db.is_installed(p))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let mut argv = apt_get(&["install"]);
            argv.extend(missing.iter().cloned());
            self.recovery_step(
                module,
                &Cmd::new(argv).apt(),
                format!(
                    "install what the interrupted apt run was about to install: {}",
                    missing.join(", ")
                ),
            )?;
        }
        let auto: Vec<String> = intent
            .new
            .iter()
            .filter(|p| !intent.requested.contains(p) && !ours.contains(p))
            .cloned()
            .collect();
        if !auto.is_empty() {
            let mut argv = vec![
                crate::runner::programs::APT_MARK.to_owned(),
                "auto".to_owned(),
            ];
            argv.extend(auto);
            self.recovery_step(
                module,
                &Cmd::new(argv).apt(),
                "mark its dependencies automatically installed, as apt would have".to_owned(),
            )?;
        }
        if self.mode == Mode::Apply {
            self.ctx.root.remove(APT_INTENT)?;
        }
        Ok(())
    }

    /// Carry out (or show) one action of `module`.
    pub fn execute(&mut self, module: &str, action: &Action) -> Result<(), StepError> {
        match action {
            Action::Write {
                path,
                content,
                mode,
            } => {
                let cur = self.current(path)?;
                let new = content.render(cur.as_ref().map(|(b, _)| b.as_slice()));
                let same_bytes = cur.as_ref().is_some_and(|(b, _)| *b == new);
                let same_mode = cur.as_ref().is_some_and(|(_, m)| m == mode);
                let mut st = self.step(module, StepKind::Write);
                st.path = Some(path.clone());
                st.mode = Some(format!("{mode:04o}"));
                st.changed = !(same_bytes && same_mode);
                st.diff = Some(self.diff(
                    path,
                    cur.as_ref().map(|(b, _)| b.as_slice()),
                    &new,
                    matches!(content, Content::Binary(_)),
                ));
                if same_bytes && !same_mode {
                    let old = cur.as_ref().map(|(_, m)| *m).unwrap_or(0);
                    st.note = Some(format!("mode {old:04o} -> {mode:04o}"));
                }
                if st.changed {
                    if self.mode == Mode::Apply {
                        self.ctx.root.write(path, &new, *mode)?;
                    } else {
                        self.overlay.insert(path.clone(), Some((new, *mode)));
                    }
                }
                self.steps.push(st);
            }
            Action::Remove { path } => {
                let cur = self.current(path)?;
                let mut st = self.step(module, StepKind::Remove);
                st.path = Some(path.clone());
                if cur.is_some() {
                    if self.mode == Mode::Apply {
                        self.ctx.root.remove(path)?;
                    } else {
                        self.overlay.insert(path.clone(), None);
                    }
                    // nothing to show when the file is already absent
                    self.steps.push(st);
                }
            }
            Action::MkDir { path, mode } => {
                let cur = self.ctx.root.mode(path)?;
                let mut st = self.step(module, StepKind::Mkdir);
                st.path = Some(path.clone());
                st.mode = Some(format!("{mode:04o}"));
                st.changed = cur != Some(*mode);
                if st.changed && self.mode == Mode::Apply {
                    self.ctx.root.ensure_dir(path, *mode)?;
                }
                self.steps.push(st);
            }
            Action::Run { cmd } => self.run(module, cmd)?,
            Action::RecoverDpkg { reinstall } => self.recover_dpkg(module, reinstall)?,
            Action::InstallFirstKnown {
                candidates,
                version,
                apt_get,
            } => {
                let mut st = self.step(module, StepKind::Run);
                let chosen = if self.mode == Mode::Apply {
                    let mut chosen = None;
                    for c in candidates {
                        let probe = Cmd::new([
                            crate::runner::programs::APT_CACHE,
                            "show",
                            "--no-all-versions",
                            c.as_str(),
                        ]);
                        if self.runner.run(&probe).is_ok() {
                            chosen = Some(c.clone());
                            break;
                        }
                    }
                    Some(chosen.ok_or_else(|| {
                        StepError::Invalid(format!(
                            "apt knows none of the packages {}; add the repository that provides them under apt.sources",
                            candidates.join(", ")
                        ))
                    })?)
                } else {
                    None
                };
                let name = chosen.clone().unwrap_or_else(|| candidates[0].clone());
                let spec = match version {
                    Some(v) => format!("{name}={v}"),
                    None => name,
                };
                let mut argv = apt_get.clone();
                argv.push(spec);
                let cmd = Cmd::new(argv).apt();
                st.command = Some(self.show_cmd(&cmd));
                if candidates.len() > 1 && chosen.is_none() {
                    st.note = Some(format!("first of {} that apt knows", candidates.join(", ")));
                }
                if self.mode == Mode::Apply {
                    let out = self.run_recorded(&cmd)?;
                    st.changed = changed_by(&cmd, &out);
                }
                self.steps.push(st);
            }
            Action::FetchKey { key, dest, proxy } => {
                let mut st = self.step(module, StepKind::FetchKey);
                st.path = Some(dest.clone());
                st.mode = Some("0644".to_owned());
                st.note = Some(match key {
                    KeyFetch::Keyid { id, keyserver } => {
                        format!("key {id} from {keyserver}, fingerprint checked")
                    }
                    KeyFetch::Launchpad { owner, name, .. } => format!(
                        "signing key of ppa:{owner}/{name} via Launchpad, fingerprint checked"
                    ),
                });
                if self.mode == Mode::Apply {
                    let bytes = self
                        .keys
                        .fetch(key, proxy.as_deref())
                        .map_err(StepError::Key)?;
                    let cur = self.ctx.root.read(dest)?;
                    st.changed = cur.as_deref() != Some(bytes.as_slice());
                    if st.changed {
                        self.ctx.root.write(dest, &bytes, 0o644)?;
                    }
                }
                self.steps.push(st);
            }
            Action::Service {
                units,
                enable,
                start,
            } => {
                let unit_dirs = [
                    "/etc/systemd/system",
                    "/usr/lib/systemd/system",
                    "/lib/systemd/system",
                ];
                let found = units
                    .iter()
                    .find(|u| {
                        unit_dirs
                            .iter()
                            .any(|d| self.ctx.root.exists(&format!("{d}/{u}")))
                    })
                    .cloned();
                let has_systemctl = ["/usr/bin/systemctl", "/bin/systemctl"]
                    .iter()
                    .any(|p| self.ctx.root.exists(p));
                match (found, has_systemctl) {
                    (Some(unit), true) => {
                        if *enable {
                            self.run(
                                module,
                                &Cmd::new([
                                    crate::runner::programs::SYSTEMCTL,
                                    "enable",
                                    unit.as_str(),
                                ]),
                            )?;
                        }
                        if *start && self.ctx.root.is_host() {
                            // --no-block: bootcfg.service is ordered Before=puppet.service, so
                            // waiting for the start job here would deadlock.
                            self.run(
                                module,
                                &Cmd::new([
                                    crate::runner::programs::SYSTEMCTL,
                                    "start",
                                    "--no-block",
                                    unit.as_str(),
                                ]),
                            )?;
                        } else if *start {
                            self.note(module, format!("not starting {unit}: the root is not / (it starts at the image's next boot)"));
                        }
                    }
                    (None, _) if self.mode == Mode::Plan => {
                        if *enable {
                            self.note(
                                module,
                                format!(
                                    "systemctl enable {} (its unit file comes with the package)",
                                    units.join(" or ")
                                ),
                            );
                        } else if *start && self.ctx.root.is_host() {
                            self.note(
                                module,
                                format!("systemctl start --no-block {}", units.join(" or ")),
                            );
                        }
                    }
                    (None, _) if !*enable => {}
                    (Some(_), false) if !*enable => {}
                    (None, _) => {
                        let msg = format!(
                            "no unit file {} in the root; service not enabled",
                            units.join(" or ")
                        );
                        tracing::warn!("{msg}");
                        self.note(module, msg);
                    }
                    (Some(unit), false) => {
                        let msg = format!(
                            "systemctl is not installed in the root; {unit} keeps the state its package gave it"
                        );
                        tracing::warn!("{msg}");
                        self.note(module, msg);
                    }
                }
            }
            Action::CheckPuppetPaths { bin, expect } => {
                self.check_puppet_paths(module, bin, expect)?
            }
            Action::RebootIfRequired => {
                let required = self.ctx.root.exists("/run/reboot-required")
                    || self.ctx.root.exists("/var/run/reboot-required");
                let mut st = self.step(module, StepKind::Note);
                st.changed = required;
                st.note = Some(if !required {
                    "no reboot required".to_owned()
                } else if self.ctx.root.is_host() {
                    "reboot required: rebooting after this run".to_owned()
                } else {
                    "reboot required, but the root is not /: not rebooting".to_owned()
                });
                if required {
                    self.reboot_pending = true;
                }
                self.steps.push(st);
            }
            Action::Note { text } => self.note(module, text.clone()),
        }
        Ok(())
    }

    /// [`Action::CheckPuppetPaths`].
    fn check_puppet_paths(
        &mut self,
        module: &str,
        bin: &str,
        expect: &[(String, String, String)],
    ) -> Result<(), StepError> {
        // Always the three settings: with only one, `puppet config print` prints the bare value
        // instead of `name = value`.
        let argv: Vec<String> = [
            bin,
            "config",
            "print",
            "confdir",
            "ssldir",
            "csr_attributes",
            "--section",
            "agent",
        ]
        .map(str::to_owned)
        .to_vec();
        let cmd = Cmd::new(argv);
        let mut st = self.step(module, StepKind::Run);
        st.command = Some(self.show_cmd(&cmd));
        st.changed = false;
        // `puppet` (Debian's, on PATH) or an absolute path (AIO)
        let installed = if bin.starts_with('/') {
            self.ctx.root.exists(bin)
        } else {
            ["/usr/bin", "/bin", "/usr/local/bin"]
                .iter()
                .any(|d| self.ctx.root.exists(&format!("{d}/{bin}")))
        };
        if self.mode == Mode::Plan || !installed {
            st.note = Some(if installed || self.mode == Mode::Plan {
                "once installed: the package's paths must be the ones written below".to_owned()
            } else {
                format!("{bin} is not installed: its paths are not checked")
            });
            self.steps.push(st);
            return Ok(());
        }
        let out = self.run_recorded(&cmd)?;
        let got: std::collections::BTreeMap<&str, &str> = out
            .stdout
            .lines()
            .filter_map(|l| l.split_once(" = "))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        for (setting, want, key) in expect {
            match got.get(setting.as_str()) {
                Some(v) if v == want => {}
                Some(v) => {
                    return Err(StepError::Invalid(format!(
                        "the installed Puppet keeps its {setting} at {v}, not {want}: set puppet.{key} in the user-data to match"
                    )));
                }
                None => {
                    return Err(StepError::Invalid(format!(
                        "`{}` did not report {setting}; cannot check where the installed Puppet keeps it (set puppet.{key} explicitly)",
                        cmd.display()
                    )));
                }
            }
        }
        st.note = Some("the installed package's paths match".to_owned());
        self.steps.push(st);
        Ok(())
    }

    fn note(&mut self, module: &str, text: String) {
        let mut st = self.step(module, StepKind::Note);
        st.changed = false;
        st.note = Some(text);
        self.steps.push(st);
    }

    fn diff(&self, path: &str, old: Option<&[u8]>, new: &[u8], binary: bool) -> String {
        if binary || std::str::from_utf8(new).is_err() {
            use sha2::Digest;
            let h = hex::encode(sha2::Sha256::digest(new));
            return match old {
                Some(o) if o == new => format!("binary, {} bytes, unchanged", new.len()),
                _ => format!("binary, {} bytes, sha256 {h}", new.len()),
            };
        }
        let old_s = old
            .map(|o| String::from_utf8_lossy(o).into_owned())
            .unwrap_or_default();
        let new_s = String::from_utf8_lossy(new);
        let old_s = self.ctx.mask(&old_s);
        let new_s = self.ctx.mask(&new_s);
        if old.is_some() && old_s == new_s {
            return "unchanged".to_owned();
        }
        let from = if old.is_some() {
            format!("a{path}")
        } else {
            "/dev/null".to_owned()
        };
        similar::TextDiff::from_lines(&old_s, &new_s)
            .unified_diff()
            .context_radius(3)
            .header(&from, &format!("b{path}"))
            .to_string()
    }
}

/// What an interrupted `apt-get install` was about to do (see `Engine::record_intent`).
pub const APT_INTENT: &str = "/var/lib/bootcfg/apt-intent.json";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct AptIntent {
    /// The packages the command named (installed as requested: manual).
    requested: Vec<String>,
    /// Everything it was about to install anew, dependencies and Recommends included.
    new: Vec<String>,
}

/// The packages of an `apt-get … install P…` that installs something (not `-f`, not
/// `--reinstall`), without versions and architectures.
fn apt_install_packages(cmd: &Cmd) -> Option<Vec<String>> {
    let argv = &cmd.argv;
    if argv.first()? != crate::runner::programs::APT_GET {
        return None;
    }
    let i = argv.iter().position(|a| a == "install")?;
    if argv
        .iter()
        .any(|a| a == "-f" || a == "--fix-broken" || a == "--reinstall" || a == "--simulate")
    {
        return None;
    }
    let pkgs: Vec<String> = argv[i + 1..]
        .iter()
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.split(['=', ':']).next().map(str::to_owned))
        .collect();
    (!pkgs.is_empty()).then_some(pkgs)
}

/// From `apt-get --simulate install`'s output: the packages installed anew
/// (`Inst NAME (VERSION …)`; an upgrade is `Inst NAME [OLD] (…)` and keeps its marks).
fn simulated_new(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut t = l.split_whitespace();
            (t.next()? == "Inst").then_some(())?;
            let name = t.next()?;
            if t.next().is_some_and(|v| v.starts_with('[')) {
                return None;
            }
            Some(name.split(':').next().unwrap_or(name).to_owned())
        })
        .collect()
}

/// A failed command's error on one line for a step's note: the first line (the command and its
/// exit status) and the lines of its output that say what went wrong, at most 600 characters.
fn failure_digest(err: &str) -> String {
    let mut lines = err.lines();
    let mut out = lines.next().unwrap_or_default().trim().to_owned();
    let mut in_error = false;
    for l in lines {
        let t = l.trim();
        let starts = t.starts_with("E: ") || t.starts_with("dpkg: error") || t.starts_with("error");
        // dpkg continues an error message on indented lines
        if starts || (in_error && l.starts_with(' ') && !t.is_empty()) {
            out.push(' ');
            out.push_str(t);
            in_error = true;
        } else {
            in_error = false;
        }
    }
    if out.chars().count() > 600 {
        out = out.chars().take(600).collect::<String>() + "…";
    }
    out
}

/// debconf's database of answers (compared before/after `debconf-set-selections`).
const DEBCONF_DB: &str = "/var/cache/debconf/config.dat";

/// Whether a command that ran changed the system, judged from its output, so that a rerun
/// reports `changed: false` for every step. Unknown commands count as a change.
pub fn changed_by(cmd: &Cmd, out: &crate::runner::CmdOutput) -> bool {
    use crate::runner::programs;
    let prog = cmd.argv.first().map(String::as_str).unwrap_or("");
    let sub = cmd
        .argv
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-') && !a.contains("::") && !a.contains('='));
    match (prog, sub.map(String::as_str)) {
        // refreshes apt's package lists (a cache), not the configuration
        (programs::APT_GET, Some("update")) => false,
        (programs::APT_GET, _) => apt_summary_changed(&out.stdout).unwrap_or(true),
        (programs::SYSTEMCTL, Some("enable")) => {
            out.stderr.contains("Created symlink") || out.stdout.contains("Created symlink")
        }
        // `puppet agent --test` (detailed exit codes): 2 = changes applied, 0 = none
        (programs::PUPPET | programs::PUPPET_AIO, _) => out.code == 2,
        _ => true,
    }
}

/// From `N upgraded, N newly installed, [N reinstalled, ]N downgraded, N to remove and N not
/// upgraded.`: whether any of the changing counts is non-zero. `None` if there is no summary.
fn apt_summary_changed(stdout: &str) -> Option<bool> {
    // apt 3.0's `apt` front end (and a terminal) summarises as `Upgrading: N, Installing: N,
    // Removing: N, Not Upgrading: N`; its `apt-get` without a terminal, as bootcfg runs it,
    // still prints the line below (both captured from Debian 13's apt 3.0.4 in the unit test).
    if let Some(line) = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("Upgrading: ") && l.contains("Installing: "))
    {
        return Some(line.split(',').any(|part| {
            let (what, n) = part.trim().split_once(": ").unwrap_or(("", ""));
            what != "Not Upgrading" && n.trim().parse::<u64>().is_ok_and(|n| n > 0)
        }));
    }
    let line = stdout
        .lines()
        .find(|l| l.contains(" upgraded, ") && l.contains(" newly installed"))?;
    let mut any = false;
    for part in line.split([',', '.']) {
        let part = part.trim().trim_start_matches("and ");
        let Some((n, what)) = part.split_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        if what.starts_with("not upgraded") {
            continue;
        }
        any |= n > 0;
    }
    Some(any)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testutil::root;
    use crate::runner::{CmdOutput, RunError};

    /// apt as far as the intent needs it: `--simulate` lists `new` as installs; the real
    /// install fails when `fail` is set; everything else succeeds. Records every argv.
    struct Apt {
        new: &'static [&'static str],
        fail: bool,
        ran: std::cell::RefCell<Vec<String>>,
    }
    impl Runner for Apt {
        fn run(&self, cmd: &Cmd) -> Result<CmdOutput, RunError> {
            let line = cmd.argv.join(" ");
            self.ran.borrow_mut().push(line.clone());
            let out = |stdout: String| CmdOutput {
                code: 0,
                stdout,
                stderr: String::new(),
                elapsed: Default::default(),
            };
            if line.contains("--simulate") {
                return Ok(out(self
                    .new
                    .iter()
                    .map(|p| format!("Inst {p} (1.0 Debian:12/stable [amd64])\n"))
                    .collect()));
            }
            if self.fail && line.contains(" install ") {
                return Err(RunError::Failed {
                    command: line,
                    status: "exit status: 100".into(),
                    output: "E: Unable to fetch".into(),
                });
            }
            Ok(out(String::new()))
        }
    }

    /// A failed (not killed) install leaves no intent: a later run must not install what it
    /// asked for; a left intent is restored (missing packages installed, dependencies marked
    /// automatic) and then removed, and `plan` shows those steps.
    #[test]
    fn an_apt_intent_survives_only_a_kill_and_is_restored_once() {
        let (d, ctx) = root();
        let install = Action::Run {
            cmd: Cmd::new(apt_get(&["install", "hello"])).apt(),
        };
        let apt = Apt {
            new: &["hello", "libhello1"],
            fail: true,
            ran: Default::default(),
        };
        let mut e = Engine::new(&ctx, &apt, Mode::Apply);
        assert!(e.execute("packages", &install).is_err());
        assert!(!d.path().join(APT_INTENT.trim_start_matches('/')).exists());

        // what a kill leaves behind
        // the killed command asked for hello; this run also installs locales itself (after its
        // preseed): only libhello1 is the intent's to restore
        ctx.root
            .write(
                APT_INTENT,
                br#"{"requested":["hello"],"new":["hello","libhello1","locales"]}"#,
                0o644,
            )
            .unwrap();
        let recover = Action::RecoverDpkg {
            reinstall: vec!["locales".into()],
        };
        let apt = Apt {
            new: &[],
            fail: false,
            ran: Default::default(),
        };
        let mut plan = Engine::new(&ctx, &apt, Mode::Plan);
        plan.execute("packages", &recover).unwrap();
        assert!(apt.ran.borrow().is_empty(), "plan ran something");
        let shown: Vec<String> = plan
            .steps
            .iter()
            .filter_map(|s| s.command.clone())
            .collect();
        assert!(
            shown.iter().any(|c| c.ends_with(" install libhello1")),
            "{shown:?}"
        );
        assert!(
            shown.iter().any(|c| c == "apt-mark auto libhello1"),
            "{shown:?}"
        );
        let synced = ctx.root.syncs.load(std::sync::atomic::Ordering::SeqCst);
        let mut e = Engine::new(&ctx, &apt, Mode::Apply);
        e.execute("packages", &recover).unwrap();
        let ran = apt.ran.borrow().clone();
        // the recovery's apt and dpkg commands are synced like any other
        assert!(
            ctx.root.syncs.load(std::sync::atomic::Ordering::SeqCst) > synced,
            "{ran:?}"
        );
        assert!(
            ran.iter().any(|c| c.ends_with(" install libhello1")),
            "{ran:?}"
        );
        assert!(
            ran.iter().any(|c| c == "apt-mark auto libhello1"),
            "{ran:?}"
        );
        assert!(!d.path().join(APT_INTENT.trim_start_matches('/')).exists());
    }

    /// dpkg runs without per-file fsyncs (`debian::UNSAFE_IO`): an apt command that succeeded is
    /// made durable with one sync of the root; a failed one and a command that is not apt's are
    /// not synced.
    #[test]
    fn a_succeeded_apt_command_is_synced_once() {
        let (_d, ctx) = root();
        let syncs = || ctx.root.syncs.load(std::sync::atomic::Ordering::SeqCst);
        let install = Action::Run {
            cmd: Cmd::new(apt_get(&["install", "hello"])).apt(),
        };
        let apt = Apt {
            new: &["hello"],
            fail: false,
            ran: Default::default(),
        };
        let mut e = Engine::new(&ctx, &apt, Mode::Apply);
        e.execute("packages", &install).unwrap();
        assert_eq!(syncs(), 1, "{:?}", apt.ran.borrow());
        e.execute(
            "puppet",
            &Action::Run {
                cmd: Cmd::new(["puppet", "agent", "--test"]),
            },
        )
        .unwrap();
        assert_eq!(syncs(), 1, "a command that is not apt's is not synced");
        let failing = Apt {
            new: &["hello"],
            fail: true,
            ran: Default::default(),
        };
        let mut e = Engine::new(&ctx, &failing, Mode::Apply);
        assert!(e.execute("packages", &install).is_err());
        assert_eq!(syncs(), 1, "a failed apt command is not synced");
        assert!(
            apt.ran
                .borrow()
                .iter()
                .any(|c| c.ends_with(" install hello")
                    && c.contains(" -o Dpkg::Options::=--force-unsafe-io ")),
            "{:?}",
            apt.ran.borrow()
        );
    }

    #[test]
    fn simulated_installs_are_the_new_packages_only() {
        let out = "NOTE: This is only a simulation!\nInst libfoo1 (1.0 Debian:12/stable [amd64])\nInst bar:amd64 [2.0] (2.1 Debian:12/stable [amd64])\nInst baz (3 Debian [all])\nConf libfoo1 (1.0 Debian:12/stable [amd64])\n";
        assert_eq!(simulated_new(out), ["libfoo1", "baz"]);
        let cmd = Cmd::new(apt_get(&["install", "hello=2.10-3", "puppet-agent:amd64"]));
        assert_eq!(
            apt_install_packages(&cmd).unwrap(),
            ["hello", "puppet-agent"]
        );
        assert!(apt_install_packages(&Cmd::new(apt_get(&["install", "-f"]))).is_none());
        assert!(apt_install_packages(&Cmd::new(apt_get(&["update"]))).is_none());
    }

    #[test]
    fn apt_summary() {
        let none = "Reading package lists...\n0 upgraded, 0 newly installed, 0 to remove and 3 not upgraded.\n";
        assert_eq!(apt_summary_changed(none), Some(false));
        let some = "1 upgraded, 2 newly installed, 0 to remove and 0 not upgraded.\n";
        assert_eq!(apt_summary_changed(some), Some(true));
        assert_eq!(
            apt_summary_changed(
                "0 upgraded, 0 newly installed, 1 reinstalled, 0 to remove and 0 not upgraded."
            ),
            Some(true)
        );
        assert_eq!(
            apt_summary_changed("hello is already the newest version"),
            None
        );
        // Debian 13's apt 3.0.4, `apt-get install -s hello` and an installed package, captured
        // from a trixie root (no terminal): the same summary line as apt 2.6
        let trixie_new = "Reading package lists...\nBuilding dependency tree...\nReading state information...\nThe following NEW packages will be installed:\n  hello\n0 upgraded, 1 newly installed, 0 to remove and 3 not upgraded.\nInst hello (2.10-5 Debian:13.8/stable [amd64])\nConf hello (2.10-5 Debian:13.8/stable [amd64])\n";
        assert_eq!(apt_summary_changed(trixie_new), Some(true));
        assert_eq!(simulated_new(trixie_new), ["hello"]);
        let trixie_none = "Building dependency tree...\nReading state information...\ncoreutils is already the newest version (9.7-3).\n0 upgraded, 0 newly installed, 0 to remove and 3 not upgraded.\n";
        assert_eq!(apt_summary_changed(trixie_none), Some(false));
        // apt 3.0's new summary (the `apt` front end)
        let apt3 = "Summary:\n  Upgrading: 0, Installing: 1, Removing: 0, Not Upgrading: 3\n";
        assert_eq!(apt_summary_changed(apt3), Some(true));
        let apt3_none = "Summary:\n  Upgrading: 0, Installing: 0, Removing: 0, Not Upgrading: 3\n";
        assert_eq!(apt_summary_changed(apt3_none), Some(false));
    }
}
