//! apt configuration: the `apt.conf` text, proxies, pipelining and RFC-style `apt.conf.d` snippets.
//!
//! File names are cloud-init's, so an image that ran cloud-init before keeps one file per
//! setting instead of two conflicting ones:
//! - `apt.conf`  → `/etc/apt/apt.conf.d/94cloud-init-config` (0644), verbatim; removed when not
//!   configured, as cloud-init does.
//! - proxies     → `/etc/apt/apt.conf.d/90cloud-init-aptproxy`, one `Acquire::<proto>::Proxy`
//!   line per key in cloud-init's order (`proxy`, `http_proxy`, `ftp_proxy`, `https_proxy`): with
//!   both `proxy` and `http_proxy` there are two `Acquire::http::Proxy` lines and apt uses the
//!   last, as with cloud-init (the parser warns when they differ); removed when none.
//!   **Mode 0600 when a proxy URL holds credentials**
//!   (cloud-init: 0644). apt reads its configuration as root before its download methods drop
//!   to `_apt` (the settings are passed to them over a pipe), so root-only is enough. Checked
//!   in a bookworm root: with a 0600 proxy file pointing at 127.0.0.1:9, `apt-get update` fails
//!   with "Could not connect to 127.0.0.1:9" (the `_apt` http method got the proxy), and an
//!   unprivileged `apt-cache policy` still works (it skips the file it cannot read).
//! - pipelining's file says "Written by bootcfg" where cloud-init's says "Written by cloud-init";
//!   the setting line is the same.
//! - pipelining  → `/etc/apt/apt.conf.d/90cloud-init-pipelining` (`Acquire::http::Pipeline-Depth`);
//!   left alone when `apt_pipelining` is absent or `os`.
//! - RFC `conf_files` → `/etc/apt/apt.conf.d/<filename>` (0644).

use super::{Module, PlanState};
use crate::action::{Action, Content, StepError};
use crate::ctx::Ctx;
use schemas::userdata::model::UserData;

pub const CONF_FILE: &str = "/etc/apt/apt.conf.d/94cloud-init-config";
pub const PROXY_FILE: &str = "/etc/apt/apt.conf.d/90cloud-init-aptproxy";
pub const PIPELINING_FILE: &str = "/etc/apt/apt.conf.d/90cloud-init-pipelining";

pub struct AptConf;

impl Module for AptConf {
    fn name(&self) -> &'static str {
        "apt-conf"
    }

    fn plan(
        &self,
        ud: &UserData,
        _ctx: &Ctx,
        _st: &mut PlanState,
    ) -> Result<Vec<Action>, StepError> {
        let apt = &ud.apt;
        let mut a = Vec::new();
        match &apt.conf {
            Some(text) => {
                a.push(Action::Write {
                    path: CONF_FILE.into(),
                    content: Content::Text(text.clone()),
                    mode: 0o644,
                });
            }
            None => a.push(Action::Remove {
                path: CONF_FILE.into(),
            }),
        }
        let mut lines = String::new();
        let mut secret = false;
        for (proto, v) in [
            ("http", &apt.proxy.http_overridden),
            ("http", &apt.proxy.http),
            ("ftp", &apt.proxy.ftp),
            ("https", &apt.proxy.https),
        ] {
            if let Some(url) = v {
                lines.push_str(&format!("Acquire::{proto}::Proxy \"{url}\";\n"));
                secret |= super::userinfo(url).is_some();
            }
        }
        if lines.is_empty() {
            a.push(Action::Remove {
                path: PROXY_FILE.into(),
            });
        } else {
            a.push(Action::Write {
                path: PROXY_FILE.into(),
                content: Content::Text(lines),
                mode: if secret { 0o600 } else { 0o644 },
            });
        }
        if let Some(depth) = apt.pipelining {
            a.push(Action::Write {
                path: PIPELINING_FILE.into(),
                content: Content::Text(format!(
                    "//Written by bootcfg per 'apt_pipelining'\nAcquire::http::Pipeline-Depth \"{depth}\";\n"
                )),
                mode: 0o644,
            });
        }
        for f in &apt.conf_files {
            if f.filename.contains('/') || f.filename.starts_with('.') || f.filename.is_empty() {
                return Err(StepError::Invalid(format!(
                    "apt conf file name `{}` must be a plain file name",
                    f.filename
                )));
            }
            let mut t = f.content.clone();
            if !t.ends_with('\n') {
                t.push('\n');
            }
            a.push(Action::Write {
                path: format!("/etc/apt/apt.conf.d/{}", f.filename),
                content: Content::Text(t),
                mode: 0o644,
            });
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testutil::*;
    use schemas::userdata::model::AptConfFile;

    #[test]
    fn proxy_with_credentials_is_0600_and_each_protocol_has_its_line() {
        let (d, ctx) = root();
        let mut ud = UserData::default();
        ud.apt.proxy.http = Some("http://u:pw@proxy:3128".into());
        ud.apt.proxy.https = Some("http://proxy:3129".into());
        ud.apt.conf = Some("APT::Get::Show-Versions \"true\";".into());
        ud.apt.pipelining = Some(0);
        ud.apt.conf_files = vec![AptConfFile {
            filename: "80retries".into(),
            content: "Acquire::Retries \"5\";".into(),
        }];
        let acts = AptConf.plan(&ud, &ctx, &mut PlanState::default()).unwrap();
        assert!(apply(&ctx, "apt-conf", &acts).is_empty());
        assert_eq!(
            read(&d, PROXY_FILE),
            "Acquire::http::Proxy \"http://u:pw@proxy:3128\";\nAcquire::https::Proxy \"http://proxy:3129\";\n"
        );
        assert_eq!(mode(&d, PROXY_FILE), 0o600);
        // Verbatim, as cloud-init writes it.
        assert_eq!(read(&d, CONF_FILE), "APT::Get::Show-Versions \"true\";");
        assert!(read(&d, PIPELINING_FILE).contains("Pipeline-Depth \"0\";"));
        assert_eq!(
            read(&d, "/etc/apt/apt.conf.d/80retries"),
            "Acquire::Retries \"5\";\n"
        );
    }

    /// Issue 13, item 1: `proxy` and `http_proxy` both given, with different values. The file
    /// Debian's cloud-init 22.4 wrote for `apt: {http_proxy: b, proxy: a, https_proxy: s,
    /// ftp_proxy: f}` (mode 0644), byte for byte.
    #[test]
    fn proxy_lines_are_cloud_inits_both_http_lines_in_its_order() {
        let (d, ctx) = root();
        let mut ud = UserData::default();
        ud.apt.proxy.http_overridden = Some("http://a.example:3128/".into());
        ud.apt.proxy.http = Some("http://b.example:3128/".into());
        ud.apt.proxy.https = Some("http://s.example:3128/".into());
        ud.apt.proxy.ftp = Some("ftp://f.example:21/".into());
        let acts = AptConf.plan(&ud, &ctx, &mut PlanState::default()).unwrap();
        apply(&ctx, "apt-conf", &acts);
        assert_eq!(
            read(&d, PROXY_FILE),
            "Acquire::http::Proxy \"http://a.example:3128/\";\n\
             Acquire::http::Proxy \"http://b.example:3128/\";\n\
             Acquire::ftp::Proxy \"ftp://f.example:21/\";\n\
             Acquire::https::Proxy \"http://s.example:3128/\";\n"
        );
        assert_eq!(mode(&d, PROXY_FILE), 0o644);
        // Credentials in the overridden line alone still make the file root-only.
        ud.apt.proxy.http_overridden = Some("http://u:pw@a.example:3128/".into());
        let acts = AptConf.plan(&ud, &ctx, &mut PlanState::default()).unwrap();
        apply(&ctx, "apt-conf", &acts);
        assert_eq!(mode(&d, PROXY_FILE), 0o600);
    }

    #[test]
    fn unconfigured_files_are_removed_and_plain_proxy_is_0644() {
        let (d, ctx) = root();
        std::fs::create_dir_all(d.path().join("etc/apt/apt.conf.d")).unwrap();
        std::fs::write(
            d.path().join("etc/apt/apt.conf.d/94cloud-init-config"),
            "old",
        )
        .unwrap();
        let mut ud = UserData::default();
        ud.apt.proxy.http = Some("http://proxy:3128".into());
        let acts = AptConf.plan(&ud, &ctx, &mut PlanState::default()).unwrap();
        apply(&ctx, "apt-conf", &acts);
        assert!(
            !d.path()
                .join("etc/apt/apt.conf.d/94cloud-init-config")
                .exists()
        );
        assert_eq!(mode(&d, PROXY_FILE), 0o644);
    }
}
