//! `apt-get update` (once per run), `dist-upgrade`, package installs, reboot-if-required.
//!
//! Every apt call: `apt-get -o Dpkg::Options::=--force-confold -o Acquire::Retries=3
//! --assume-yes --quiet …` with `DEBIAN_FRONTEND=noninteractive`, after waiting for the dpkg/apt
//! locks (`--lock-timeout`); transient network failures are retried (see [`crate::runner`]).
//! Before the first apt call of a run, an interrupted dpkg (`/var/lib/dpkg/updates` not empty,
//! e.g. after a kill -9) is repaired with `dpkg --configure -a`. Like cloud-init, upgrade is
//! `dist-upgrade`; `update` is implied by `upgrade` or `packages` and skipped when the sources
//! module already ran one in this run. cloud-init's snap fallback for unknown names is not
//! offered (Debian images have no snapd); an unknown package fails the module.

use super::{Module, PlanState, apt_get};
use crate::plan::{Action, Ctx, StepError};
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
        let subs: Vec<String> = cmds.iter().map(|c| c.argv[7..].join(" ")).collect();
        assert_eq!(subs, ["update", "dist-upgrade", "install hello jq=1.6-2.1"]);
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
        assert_eq!(cmds[0].argv, ["dpkg", "--configure", "-a"]);
        assert_eq!(cmds[1].argv[7..], ["install", "-f"]);
    }
}
