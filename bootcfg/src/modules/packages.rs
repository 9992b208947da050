//! `apt-get update` (once per run), `dist-upgrade`, package installs, reboot-if-required.
//!
//! Every apt call: `apt-get -o Dpkg::Options::=--force-confold -o
//! Dpkg::Options::=--force-unsafe-io -o Acquire::Retries=3 --assume-yes --quiet …` (the root
//! synced once the command succeeds: [`crate::debian::UNSAFE_IO`]) with `DEBIAN_FRONTEND=noninteractive`, after waiting for the dpkg/apt
//! locks (`--lock-timeout`); transient network failures are retried (see [`crate::runner`]).
//! Before the first apt call of a run, an interrupted dpkg (e.g. after a kill -9: its journal
//! `/var/lib/dpkg/updates` not empty, packages unpacked or flagged for a reinstall, whatever
//! installed them) is repaired: `dpkg --configure -a`, packages of any origin that dpkg flags
//! `reinstreq` are reinstalled from the archive, then `apt-get install -f`
//! (see [`crate::action::Action::RecoverDpkg`]; `plan` shows each command). Like cloud-init, upgrade is
//! `dist-upgrade`; `update` is implied by `upgrade` or `packages` and skipped when the sources
//! module already ran one in this run. cloud-init's snap fallback for unknown names is not
//! offered (Debian images have no snapd); an unknown package fails the module.

use super::{Module, PlanState, apt_get};
use crate::action::{Action, StepError};
use crate::ctx::Ctx;
use crate::runner::Cmd;
use schemas::userdata::model::UserData;

pub struct Packages;

impl Module for Packages {
    fn name(&self) -> &'static str {
        "packages"
    }

    fn plan(
        &self,
        ud: &UserData,
        _ctx: &Ctx,
        st: &mut PlanState,
    ) -> Result<Vec<Action>, StepError> {
        let p = &ud.packages;
        let mut a = Vec::new();
        if !(p.update || p.upgrade || !p.install.is_empty()) {
            return Ok(a);
        }
        st.update_once(&mut a, ud);
        if p.upgrade {
            a.push(Action::Run {
                cmd: Cmd::new(apt_get(&["dist-upgrade"])).apt(),
            });
        }
        if !p.install.is_empty() {
            let mut argv = apt_get(&["install"]);
            for pkg in &p.install {
                argv.push(match &pkg.version {
                    Some(v) => format!("{}={v}", pkg.name),
                    None => pkg.name.clone(),
                });
            }
            a.push(Action::Run {
                cmd: Cmd::new(argv).apt(),
            });
        }
        if p.reboot_if_required && (p.upgrade || !p.install.is_empty()) {
            a.push(Action::RebootIfRequired);
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
    use schemas::userdata::model::Package;

    #[test]
    fn update_upgrade_install_in_order_with_versions() {
        let (_d, ctx) = root();
        let mut ud = UserData::default();
        ud.packages.upgrade = true;
        ud.packages.install = vec![
            Package {
                name: "hello".into(),
                version: None,
            },
            Package {
                name: "jq".into(),
                version: Some("1.6-2.1".into()),
            },
        ];
        let cmds = apply(
            &ctx,
            "packages",
            &Packages.plan(&ud, &ctx, &mut PlanState::default()).unwrap(),
        );
        let subs: Vec<String> = cmds.iter().map(|c| c.argv[9..].join(" ")).collect();
        // the install is simulated first: what it is about to install is recorded for a rerun
        // after a kill (engine::APT_INTENT)
        assert_eq!(
            subs,
            [
                "update",
                "dist-upgrade",
                "install --simulate hello jq=1.6-2.1",
                "install hello jq=1.6-2.1"
            ]
        );
        assert!(cmds.iter().all(|c| {
            c.apt
                && c.argv
                    .contains(&"Dpkg::Options::=--force-confold".to_owned())
        }));
    }

    #[test]
    fn no_second_update_after_sources() {
        let (_d, ctx) = root();
        let mut ud = UserData::default();
        ud.packages.update = true;
        let mut st = PlanState {
            apt_updated: true,
            dpkg_checked: true,
        };
        assert!(Packages.plan(&ud, &ctx, &mut st).unwrap().is_empty());
    }

    /// A fake dpkg/apt over the temp root's status file, just faithful enough for recovery:
    /// `dpkg --configure -a` folds the journal into the status file and refuses (as dpkg does,
    /// "very bad inconsistent state") while a package flagged `reinstreq` is unpacked; apt
    /// refuses while the journal is not folded; `apt-get install --reinstall P` installs P.
    struct FakeDpkg {
        dir: std::path::PathBuf,
        ran: std::cell::RefCell<Vec<String>>,
    }
    impl FakeDpkg {
        fn write_status(&self, db: &crate::debian::DpkgDb) {
            let mut text = String::new();
            for r in &db.records {
                text.push_str(&format!("Package: {}\n", r.name));
                if let Some(a) = &r.arch {
                    text.push_str(&format!("Architecture: {a}\n"));
                }
                text.push_str(&format!("Status: {} {} {}\n\n", r.want, r.eflag, r.status));
            }
            std::fs::write(self.dir.join("var/lib/dpkg/status"), text).unwrap();
        }
    }
    impl crate::runner::Runner for FakeDpkg {
        fn run(&self, cmd: &Cmd) -> Result<crate::runner::CmdOutput, crate::runner::RunError> {
            use crate::debian::DpkgDb;
            self.ran.borrow_mut().push(cmd.argv.join(" "));
            let root = crate::rootfs::Root::new(&self.dir).unwrap();
            let mut db = DpkgDb::read(&root).unwrap();
            let fail = |msg: &str| {
                Err(crate::runner::RunError::Failed {
                    command: cmd.argv.join(" "),
                    status: "exit status: 1".into(),
                    output: msg.into(),
                })
            };
            let argv = cmd.argv.join(" ");
            if argv == CONFIGURE {
                self.write_status(&db);
                for f in root.list_dir("/var/lib/dpkg/updates").unwrap() {
                    std::fs::remove_file(self.dir.join("var/lib/dpkg/updates").join(f)).unwrap();
                }
                if let Some(r) = db
                    .records
                    .iter()
                    .find(|r| r.needs_reinstall() && r.unconfigured())
                {
                    return fail(&format!(
                        "dpkg: error processing package {} (--configure):\n package is in a very bad inconsistent state; you should\n reinstall it before attempting configuration",
                        r.name
                    ));
                }
                for r in db.records.iter_mut().filter(|r| r.unconfigured()) {
                    r.status = "installed".into();
                }
                self.write_status(&db);
            } else if cmd.argv[0] == "apt-get" {
                if db.journal {
                    return fail(
                        "E: dpkg was interrupted, you must manually run 'dpkg --configure -a' to correct the problem.",
                    );
                }
                if cmd.argv.contains(&"--reinstall".to_owned()) {
                    for r in db.records.iter_mut() {
                        if cmd
                            .argv
                            .iter()
                            .any(|a| a.split(':').next() == Some(r.name.as_str()))
                        {
                            r.eflag = "ok".into();
                            r.status = "installed".into();
                        }
                    }
                    self.write_status(&db);
                }
            }
            Ok(crate::runner::CmdOutput {
                code: 0,
                stdout: String::new(),
                stderr: String::new(),
                elapsed: Default::default(),
            })
        }
    }

    /// The issue-14 failure: a kill at the end of a *dependency's* unpack (libc-l10n, pulled in
    /// by locales, not requested) leaves it `install reinstreq unpacked`, recorded only in dpkg's
    /// journal. `dpkg --configure -a` then fails on it; the rerun reinstalls it from the archive,
    /// configures, and goes on. `plan` shows every one of those commands.
    #[test]
    fn a_dependency_left_needing_a_reinstall_is_reinstalled_from_the_archive() {
        use crate::action::Mode;
        use crate::engine::Engine;
        let (d, ctx) = root();
        let dpkg = d.path().join("var/lib/dpkg");
        std::fs::create_dir_all(dpkg.join("updates")).unwrap();
        std::fs::write(
            dpkg.join("status"),
            "Package: hello\nStatus: install ok installed\nArchitecture: amd64\n",
        )
        .unwrap();
        // the journal of the killed dpkg: the unpack began, then finished with the flag still set
        std::fs::write(
            dpkg.join("updates/0000"),
            "Package: libc-l10n\nStatus: install reinstreq half-installed\nArchitecture: all\n",
        )
        .unwrap();
        std::fs::write(
            dpkg.join("updates/0001"),
            "Package: libc-l10n\nStatus: install reinstreq unpacked\nArchitecture: all\n",
        )
        .unwrap();
        std::fs::write(dpkg.join("updates/tmp.i"), "").unwrap();
        let mut ud = UserData::default();
        ud.packages.install = vec![Package {
            name: "locales".into(),
            version: None,
        }];
        let actions = Packages.plan(&ud, &ctx, &mut PlanState::default()).unwrap();

        let cmds = |steps: &[crate::action::Step]| -> Vec<String> {
            steps
                .iter()
                .filter_map(|s| s.command.clone())
                .map(|c| c.replace("apt-get -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-unsafe-io -o Acquire::Retries=3 --assume-yes --quiet", "apt-get"))
                .collect()
        };
        let want = [
            CONFIGURE,
            "apt-get install -f --reinstall libc-l10n",
            CONFIGURE,
            "apt-get install -f",
            "apt-get update",
            "apt-get install locales",
        ];
        // plan also shows what runs only if the reinstall fails (apt's unmet dependencies)
        let mut want_plan = want.to_vec();
        want_plan.insert(2, "apt-get install -f");
        want_plan.insert(3, "apt-get install -f --reinstall libc-l10n");

        // plan: every recovery command is a step, read from the status file and the journal
        let rec = Recorder::default();
        let mut plan = Engine::new(&ctx, &rec, Mode::Plan);
        for a in &actions {
            plan.execute("packages", a).unwrap();
        }
        assert!(rec.cmds.borrow().is_empty(), "plan ran something");
        assert_eq!(cmds(&plan.steps), want_plan);
        let note = plan.steps[0].note.clone().unwrap();
        assert!(
            note.contains("libc-l10n (install reinstreq unpacked)"),
            "{note}"
        );

        // apply: the same commands, and dpkg ends up sane
        let fake = FakeDpkg {
            dir: d.path().to_owned(),
            ran: Default::default(),
        };
        let mut e = Engine::new(&ctx, &fake, Mode::Apply);
        for a in &actions {
            e.execute("packages", a).unwrap();
        }
        assert_eq!(cmds(&e.steps), want);
        assert!(
            e.steps[0]
                .note
                .as_deref()
                .unwrap()
                .contains("very bad inconsistent state"),
            "the expected first failure is shown: {:?}",
            e.steps[0]
        );
        assert!(e.steps[..4].iter().all(|s| s.changed), "{:?}", e.steps);
        let status = read(&d, "/var/lib/dpkg/status");
        assert!(
            status.contains("Package: libc-l10n\nArchitecture: all\nStatus: install ok installed"),
            "{status}"
        );
        assert!(
            !fake.ran.borrow().iter().any(|c| c.contains("--purge")),
            "purged something: {:?}",
            fake.ran.borrow()
        );
    }

    /// When the reinstall itself cannot work (no archive has the package), its error is the one
    /// reported, not dpkg's "very bad inconsistent state".
    #[test]
    fn a_reinstall_that_fails_is_the_reported_error() {
        use crate::action::Mode;
        use crate::engine::Engine;
        use crate::runner::{CmdOutput, RunError, Runner};
        struct NoArchive;
        impl Runner for NoArchive {
            fn run(&self, cmd: &Cmd) -> Result<CmdOutput, RunError> {
                let argv = cmd.argv.join(" ");
                if argv.contains("--reinstall") {
                    return Err(RunError::Failed {
                        command: argv,
                        status: "exit status: 100".into(),
                        output: "E: The package gone needs to be reinstalled, but I can't find an archive for it.".into(),
                    });
                }
                if argv == CONFIGURE {
                    return Err(RunError::Failed {
                        command: argv,
                        status: "exit status: 1".into(),
                        output: "package is in a very bad inconsistent state".into(),
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
        std::fs::create_dir_all(d.path().join("var/lib/dpkg")).unwrap();
        std::fs::write(
            d.path().join("var/lib/dpkg/status"),
            "Package: gone\nStatus: install reinstreq half-installed\n",
        )
        .unwrap();
        let mut ud = UserData::default();
        ud.packages.update = true;
        let actions = Packages.plan(&ud, &ctx, &mut PlanState::default()).unwrap();
        let mut e = Engine::new(&ctx, &NoArchive, Mode::Apply);
        let err = e.execute("packages", &actions[0]).unwrap_err().to_string();
        assert!(err.contains("can't find an archive"), "{err}");
        // the failed commands are steps too (result.json shows them): configure, reinstall,
        // apt's fix-broken, the reinstall again, configure
        assert_eq!(e.steps.len(), 5, "{:?}", e.steps);
        assert!(e.steps[1].note.as_deref().unwrap().contains("failed:"));
    }

    #[test]
    fn interrupted_dpkg_is_repaired_first() {
        let (d, ctx) = root();
        std::fs::create_dir_all(d.path().join("var/lib/dpkg/updates")).unwrap();
        std::fs::write(d.path().join("var/lib/dpkg/updates/0001"), "").unwrap();
        let mut ud = UserData::default();
        ud.packages.install = vec![Package {
            name: "hello".into(),
            version: None,
        }];
        let cmds = apply(
            &ctx,
            "packages",
            &Packages.plan(&ud, &ctx, &mut PlanState::default()).unwrap(),
        );
        assert_eq!(cmds[0].argv.join(" "), CONFIGURE);
        assert_eq!(cmds[1].argv[9..], ["install", "-f"]);
    }
}
