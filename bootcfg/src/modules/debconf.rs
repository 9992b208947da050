//! debconf selections, set before any package is installed.
//!
//! All selection sets (already sorted by name in the model, as cloud-init sorts them) are joined
//! and fed to `debconf-set-selections` on stdin. Like cloud-init, packages that are *already
//! installed* are not reconfigured unless `apt.debconf_reconfigure` asks for it (then
//! `dpkg-reconfigure --frontend=noninteractive` runs on them); otherwise the preseed takes effect
//! when a package is installed later, and
//! bootcfg names them in a note instead of a warning buried in a log.

use super::{Module, PlanState};
use crate::action::{Action, StepError};
use crate::ctx::Ctx;
use crate::runner::{Cmd, programs};
use schemas::userdata::model::UserData;

pub struct Debconf;

/// The package names the selection lines are about (first token, before `:`), sorted, unique.
pub fn packages_named(lines: &str) -> Vec<String> {
    let mut v: Vec<String> = lines
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(|c: char| c == ':' || c.is_whitespace()).next())
        .map(str::to_owned)
        .collect();
    v.sort();
    v.dedup();
    v
}

impl Module for Debconf {
    fn name(&self) -> &'static str {
        "debconf"
    }

    fn plan(&self, ud: &UserData, ctx: &Ctx, st: &mut PlanState) -> Result<Vec<Action>, StepError> {
        let sets = &ud.apt.debconf_selections;
        if sets.is_empty() {
            return Ok(Vec::new());
        }
        let mut input = String::new();
        for s in sets {
            input.push_str(s.lines.trim_end_matches('\n'));
            input.push('\n');
        }
        // Repair an interrupted dpkg first: its recovery may reset or purge these very questions.
        let mut a = Vec::new();
        st.check_dpkg(&mut a, ud);
        a.push(Action::Run {
            cmd: Cmd::new([programs::DEBCONF_SET_SELECTIONS]).stdin(input.clone()),
        });
        // dpkg's database read once (status file and journal), not once per package
        let db = crate::debian::DpkgDb::read(&ctx.root).unwrap_or_default();
        let installed: Vec<String> = packages_named(&input)
            .into_iter()
            .filter(|p| db.is_installed(p))
            .collect();
        if !installed.is_empty() && ud.apt.debconf_reconfigure {
            let mut argv = vec![
                programs::DPKG_RECONFIGURE.to_owned(),
                "--frontend=noninteractive".to_owned(),
            ];
            argv.extend(installed);
            a.push(Action::Run {
                cmd: Cmd::new(argv).apt(),
            });
        } else if !installed.is_empty() {
            a.push(Action::Note {
                text: format!(
                    "already installed, so the preseed reaches the debconf database but not the system until reconfigured: {}",
                    installed.join(", ")
                ),
            });
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recovery's configure command.
    const CONFIGURE: &str = "dpkg --force-confold --configure -a";
    use crate::modules::testutil::*;
    use schemas::userdata::model::DebconfSet;

    #[test]
    fn selections_fed_on_stdin_in_order() {
        let (d, ctx) = root();
        std::fs::create_dir_all(d.path().join("var/lib/dpkg")).unwrap();
        std::fs::write(d.path().join("var/lib/dpkg/status"), "Package: locales\nStatus: install ok installed\n\nPackage: tzdata\nStatus: deinstall ok config-files\n").unwrap();
        let mut ud = UserData::default();
        ud.apt.debconf_selections = vec![
            DebconfSet {
                name: "a".into(),
                lines: "locales locales/default_environment_locale select de_DE.UTF-8\n".into(),
            },
            DebconfSet {
                name: "b".into(),
                lines: "tzdata tzdata/Areas select Europe".into(),
            },
        ];
        let acts = Debconf.plan(&ud, &ctx, &mut PlanState::default()).unwrap();
        let cmds = apply(&ctx, "debconf", &acts);
        assert_eq!(cmds.len(), 1);
        assert_eq!(cmds[0].argv, ["debconf-set-selections"]);
        assert_eq!(
            cmds[0].stdin.as_deref().unwrap(),
            "locales locales/default_environment_locale select de_DE.UTF-8\ntzdata tzdata/Areas select Europe\n"
        );
        assert!(
            matches!(acts.last().unwrap(), Action::Note { text } if text.ends_with(": locales"))
        );
    }

    #[test]
    fn installed_packages_reconfigured_when_asked() {
        let (d, ctx) = root();
        std::fs::create_dir_all(d.path().join("var/lib/dpkg")).unwrap();
        std::fs::write(
            d.path().join("var/lib/dpkg/status"),
            "Package: locales\nStatus: install ok installed\n",
        )
        .unwrap();
        let mut ud = UserData::default();
        ud.apt.debconf_reconfigure = true;
        ud.apt.debconf_selections = vec![DebconfSet {
            name: "a".into(),
            lines: "locales locales/default_environment_locale select de_DE.UTF-8".into(),
        }];
        let cmds = apply(
            &ctx,
            "debconf",
            &Debconf.plan(&ud, &ctx, &mut PlanState::default()).unwrap(),
        );
        assert_eq!(
            cmds[1].argv,
            ["dpkg-reconfigure", "--frontend=noninteractive", "locales"]
        );
    }

    #[test]
    fn nothing_to_do_without_selections() {
        let (_d, ctx) = root();
        assert!(
            Debconf
                .plan(&UserData::default(), &ctx, &mut PlanState::default())
                .unwrap()
                .is_empty()
        );
    }

    /// A kill -9 inside a maintainer script (locales' postinst) left a package that
    /// `dpkg --configure -a` cannot fix. The run repairs dpkg *before* re-seeding debconf, purges
    /// only the broken package it installs again, and never touches other broken packages.
    #[test]
    fn interrupted_install_is_purged_before_the_preseed_and_reinstalled() {
        use crate::action::Mode;
        use crate::engine::Engine;
        use crate::runner::{CmdOutput, RunError, Runner};
        use schemas::userdata::model::Package;
        use std::cell::RefCell;

        struct FailFirstConfigure(RefCell<Vec<Vec<String>>>);
        impl Runner for FailFirstConfigure {
            fn run(&self, cmd: &Cmd) -> Result<CmdOutput, RunError> {
                let mut seen = self.0.borrow_mut();
                seen.push(cmd.argv.clone());
                let configures = seen.iter().filter(|a| a.join(" ") == CONFIGURE).count();
                if cmd.argv.join(" ") == CONFIGURE && configures == 1 {
                    return Err(RunError::Failed {
                        command: CONFIGURE.into(),
                        status: "exit status: 1".into(),
                        output: "update-locale: Error: invalid locale settings".into(),
                    });
                }
                Ok(CmdOutput {
                    code: 0,
                    stdout: String::new(),
                    stderr: String::new(),
                    elapsed: Default::default(),
                })
            }
        }

        let (d, ctx) = root();
        std::fs::create_dir_all(d.path().join("var/lib/dpkg/updates")).unwrap();
        std::fs::write(
            d.path().join("var/lib/dpkg/status"),
            "Package: locales\nStatus: install ok half-configured\n\nPackage: tzdata\nStatus: install ok unpacked\n\nPackage: hello\nStatus: install ok installed\n",
        )
        .unwrap();
        let mut ud = UserData::default();
        ud.apt.debconf_selections = vec![DebconfSet {
            name: "locales".into(),
            lines: "locales locales/default_environment_locale select de_DE.UTF-8\n".into(),
        }];
        ud.packages.install = vec![Package {
            name: "locales".into(),
            version: None,
        }];
        let actions = Debconf.plan(&ud, &ctx, &mut PlanState::default()).unwrap();
        let rec = FailFirstConfigure(RefCell::new(Vec::new()));
        let mut e = Engine::new(&ctx, &rec, Mode::Apply);
        for a in &actions {
            e.execute("debconf", a).unwrap();
        }
        let ran: Vec<String> = rec.0.into_inner().iter().map(|a| a.join(" ")).collect();
        let pos = |needle: &str| {
            ran.iter()
                .position(|c| c.contains(needle))
                .unwrap_or_else(|| panic!("{needle} not run: {ran:?}"))
        };
        assert!(
            ran.contains(&"dpkg --purge --force-remove-reinstreq locales".to_owned()),
            "{ran:?}"
        );
        assert!(
            !ran.iter()
                .any(|c| c.contains("--purge") && c.contains("tzdata")),
            "purged a package this run does not install: {ran:?}"
        );
        assert!(
            pos("--purge") < pos("debconf-set-selections"),
            "the preseed must come after the purge: {ran:?}"
        );
        assert_eq!(ran.iter().filter(|c| *c == CONFIGURE).count(), 2, "{ran:?}");
    }

    /// Without packages to reinstall, a failing repair is an error, not a purge.
    #[test]
    fn failed_repair_of_foreign_packages_is_an_error() {
        use crate::action::Mode;
        use crate::engine::Engine;
        use crate::runner::{CmdOutput, RunError, Runner};
        struct AlwaysFails;
        impl Runner for AlwaysFails {
            fn run(&self, cmd: &Cmd) -> Result<CmdOutput, RunError> {
                Err(RunError::Failed {
                    command: cmd.argv.join(" "),
                    status: "exit status: 1".into(),
                    output: String::new(),
                })
            }
        }
        let (d, ctx) = root();
        std::fs::create_dir_all(d.path().join("var/lib/dpkg")).unwrap();
        std::fs::write(
            d.path().join("var/lib/dpkg/status"),
            "Package: tzdata\nStatus: install ok half-configured\n",
        )
        .unwrap();
        let mut ud = UserData::default();
        ud.apt.debconf_selections = vec![DebconfSet {
            name: "t".into(),
            lines: "tzdata tzdata/Areas select Europe\n".into(),
        }];
        let actions = Debconf.plan(&ud, &ctx, &mut PlanState::default()).unwrap();
        let mut e = Engine::new(&ctx, &AlwaysFails, Mode::Apply);
        assert!(e.execute("debconf", &actions[0]).is_err());
    }
}
