//! The five modules, in boot order (the order cloud-init runs its equivalents: `apt_configure`
//! in the config stage, then `package_update_upgrade_install` and `puppet` in the final stage).
//!
//! Each module only *plans*: it turns the user-data into a list of [`Action`]s. The engine in
//! [`crate::engine`] shows or carries them out, so `plan` and `apply` share one code path.

pub mod apt_conf;
pub mod apt_sources;
pub mod debconf;
pub mod packages;
pub mod puppet;

use crate::action::{Action, StepError};
use crate::ctx::Ctx;
pub use crate::debian::apt_get;
use schemas::userdata::model::UserData;

/// State shared between modules while planning one run.
#[derive(Debug, Default)]
pub struct PlanState {
    /// An `apt-get update` is already planned in this run (after sources): do not repeat it.
    pub apt_updated: bool,
    /// A `dpkg --configure -a` check is already planned in this run.
    pub dpkg_checked: bool,
}

impl PlanState {
    /// The recovery check and `apt-get update`, unless already planned in this run.
    pub fn update_once(&mut self, actions: &mut Vec<Action>, ud: &UserData) {
        self.check_dpkg(actions, ud);
        if !self.apt_updated {
            actions.push(Action::Run {
                cmd: crate::runner::Cmd::new(apt_get(&["update"])).apt(),
            });
            self.apt_updated = true;
        }
    }
    /// Repair an interrupted dpkg before the first command that needs a sane package database
    /// (debconf or apt), once per run.
    pub fn check_dpkg(&mut self, actions: &mut Vec<Action>, ud: &UserData) {
        if !self.dpkg_checked {
            actions.push(Action::RecoverDpkg {
                reinstall: reinstalled(ud),
            });
            self.dpkg_checked = true;
        }
    }
}

/// The packages this run installs (`packages` and the Puppet package candidates): if an
/// interrupted earlier run left one of them broken beyond `dpkg --configure -a`, purging it is
/// safe, because this run re-applies its debconf preseed and installs it again.
pub fn reinstalled(ud: &UserData) -> Vec<String> {
    let mut v: Vec<String> = ud
        .packages
        .install
        .iter()
        .map(|p| p.name.split(':').next().unwrap_or(&p.name).to_owned())
        .collect();
    if let Some(p) = ud.puppet.as_ref().filter(|p| p.install) {
        v.extend(puppet::layout(p).packages);
    }
    v.sort();
    v.dedup();
    v
}

/// One step of first-boot configuration.
pub trait Module: Sync {
    /// Stable name: used in markers (`<name>.done`), the result file and plan output.
    fn name(&self) -> &'static str;
    /// The actions this module would carry out for `ud` on the machine described by `ctx`.
    fn plan(&self, ud: &UserData, ctx: &Ctx, st: &mut PlanState) -> Result<Vec<Action>, StepError>;
}

/// Every module, in boot order.
pub fn all() -> [&'static dyn Module; 5] {
    [
        &apt_conf::AptConf,
        &apt_sources::AptSources,
        &debconf::Debconf,
        &packages::Packages,
        &puppet::Puppet,
    ]
}

/// The modules each module needs, by name: when one of them fails (or is not run) in a run, the
/// module is not run either, and is tried again at the next run. The others still run, as
/// cloud-init runs every module. The reasons:
/// - `apt-sources` needs `apt-conf`: `apt-get update` goes through the configured proxy.
/// - `debconf` needs nothing: a preseed lands in debconf's database whatever apt can reach.
/// - `packages` needs all three before it: installing before the sources or the preseed are in
///   place installs the wrong thing, or with the wrong answers.
/// - `puppet` needs everything before it: a machine enrolls in Puppet only once it is
///   configured as asked.
pub const NEEDS: &[(&str, &[&str])] = &[
    ("apt-conf", &[]),
    ("apt-sources", &["apt-conf"]),
    ("debconf", &[]),
    ("packages", &["apt-conf", "apt-sources", "debconf"]),
    (
        "puppet",
        &["apt-conf", "apt-sources", "debconf", "packages"],
    ),
];

/// What `module` needs ([`NEEDS`]).
pub fn needs(module: &str) -> &'static [&'static str] {
    NEEDS
        .iter()
        .find(|(n, _)| *n == module)
        .map(|(_, v)| *v)
        .unwrap_or(&[])
}

/// Secrets that must never appear in logs or plan output: proxy credentials and CSR
/// attribute values (challengePassword, pre-shared keys).
pub fn secrets(ud: &UserData, instance_id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for p in ud.apt.proxy.urls() {
        if let Some(ui) = userinfo(p) {
            out.push(ui.to_owned());
        }
    }
    if let Some(csr) = ud.puppet.as_ref().and_then(|p| p.csr_attributes.as_ref()) {
        out.extend(
            csr.custom_attributes
                .values()
                .map(|v| v.replace("%i", instance_id)),
        );
        for (k, v) in &csr.extension_requests {
            let k = k.to_ascii_lowercase();
            if k.contains("preshared")
                || k.contains("password")
                || k.contains("secret")
                || k.contains("token")
            {
                out.push(v.replace("%i", instance_id));
            }
        }
    }
    out
}

/// The `user:password` part of a URL, if any.
pub fn userinfo(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next()?;
    authority.rsplit_once('@').map(|(ui, _)| ui)
}

#[cfg(test)]
pub(crate) mod testutil {
    use crate::action::{Action, Mode};
    use crate::ctx::Ctx;
    use crate::engine::Engine;
    use crate::rootfs::Root;
    use crate::runner::{Cmd, CmdOutput, RunError, Runner};
    use std::cell::RefCell;

    /// A runner that records commands and succeeds.
    #[derive(Default)]
    pub struct Recorder {
        pub cmds: RefCell<Vec<Cmd>>,
    }
    impl Runner for Recorder {
        fn run(&self, cmd: &Cmd) -> Result<CmdOutput, RunError> {
            self.cmds.borrow_mut().push(cmd.clone());
            Ok(CmdOutput {
                code: 0,
                stdout: String::new(),
                stderr: String::new(),
                elapsed: Default::default(),
            })
        }
    }

    /// A temp root with a Debian bookworm os-release.
    pub fn root() -> (tempfile::TempDir, Ctx) {
        root_of("ID=debian\nVERSION_CODENAME=bookworm\n")
    }

    /// A temp root with this os-release (and an empty /etc/apt/sources.list.d).
    pub fn root_of(os_release: &str) -> (tempfile::TempDir, Ctx) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/apt/sources.list.d")).unwrap();
        std::fs::write(d.path().join("etc/os-release"), os_release).unwrap();
        let ctx = Ctx::new(Root::new(d.path()).unwrap(), "i-0abc", "web-1.example.com");
        (d, ctx)
    }

    /// Apply actions with the recorder; return the commands run.
    pub fn apply(ctx: &Ctx, module: &str, actions: &[Action]) -> Vec<Cmd> {
        let rec = Recorder::default();
        let mut e = Engine::new(ctx, &rec, Mode::Apply);
        for a in actions {
            e.execute(module, a).unwrap();
        }
        rec.cmds.into_inner()
    }

    pub fn read(d: &tempfile::TempDir, p: &str) -> String {
        std::fs::read_to_string(d.path().join(p.trim_start_matches('/'))).unwrap()
    }
    pub fn mode(d: &tempfile::TempDir, p: &str) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(d.path().join(p.trim_start_matches('/')))
            .unwrap()
            .mode()
            & 0o7777
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::userdata::model::Proxy;

    /// Every proxy URL's credentials are redacted, including `proxy` when `http_proxy` overrides
    /// it (cloud-init writes both lines, so both reach the proxy file and the plan's diff).
    #[test]
    fn every_proxy_credential_is_a_secret() {
        let mut ud = UserData::default();
        ud.apt.proxy = Proxy {
            http: Some("http://a:one@h:3128".into()),
            https: Some("http://b:two@h:3128".into()),
            ftp: Some("ftp://c:three@h:21".into()),
            http_overridden: Some("http://d:four@h:3128".into()),
        };
        let s = secrets(&ud, "i-0");
        for ui in ["a:one", "b:two", "c:three", "d:four"] {
            assert!(s.iter().any(|x| x == ui), "{ui} missing from {s:?}");
        }
    }
}
