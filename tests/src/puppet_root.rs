//! Puppet 8 from a Debian 13 root: a fresh copy of `puppetserver-trixie.tar` (trixie's
//! `puppetserver` 8.x and `puppet-agent` 8.x, built by `tests/setup-roots.sh`), and the commands
//! that run its programs in private mount, UTS and PID namespaces with host directories
//! bind-mounted at their own paths.
//!
//! The same-path binds are what let the rest of the harness stay release-blind: every path in a
//! puppet.conf, a conf.d file or the signer's config, and every path a test reads, means the same
//! file inside the root and outside it. Nothing is bound but what is asked for (the server's temp
//! dir, the autosign executable's directory, an agent's temp dir, `extra_binds`).
//!
//! Also here: where a Debian `puppetserver` package put its files ([`Layout`]), read from the
//! package's own file list and configuration, in a root or on the host (`/`), so Puppet Server 8
//! is not started with 7.9's paths by assumption.

use crate::rootfs::{self, Root};
use anyhow::{Context, Result, bail, ensure};
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// The snapshot with trixie's puppetserver and puppet-agent.
pub const SNAPSHOT: &str = "puppetserver-trixie";

/// `unshare` options: a private mount namespace (the binds and proc/sys/devpts stay in it), its own
/// UTS and PID namespaces, and `--kill-child`: when `unshare` dies, however it dies, the
/// namespace's PID 1 gets SIGKILL, and with it every process in the namespace (the JVM, an
/// autosign hook it runs). util-linux 2.38's `unshare` blocks SIGTERM while it waits for its child,
/// so it is stopped with SIGKILL.
const UNSHARE: &[&str] = &[
    "--mount",
    "--uts",
    "--pid",
    "--fork",
    "--kill-child",
    "--propagation",
    "private",
];

/// `ns-run ROOT BIND… -- ARGV…`: mounts proc, sysfs and devpts into ROOT and each BIND at ROOT/BIND
/// (inside the new mount namespace only), then runs ARGV chrooted with a clean environment
/// ([`crate::chroot::ROOT_ENV`]); ARGV may start with `KEY=VALUE` words for `env`.
const NS_SCRIPT: &str = r#"R="$1"; shift
mount -t proc proc "$R/proc" && mount -t sysfs sysfs "$R/sys" && mount --bind /dev/pts "$R/dev/pts" || exit 125
while [ "$1" != -- ]; do
  mkdir -p "$R$1" && mount --bind "$1" "$R$1" || exit 125
  shift
done
shift
exec chroot "$R" /usr/bin/env -i "$@""#;

/// A fresh copy of [`SNAPSHOT`]. Fails naming the setup command when the snapshot is missing (a
/// test never skips).
pub fn fresh_root() -> Result<Root> {
    let tar = rootfs::test_home()
        .join("roots")
        .join(format!("{SNAPSHOT}.tar"));
    ensure!(
        tar.is_file(),
        "{} is missing (Debian 13 with puppetserver 8 and puppet-agent 8, for the Puppet 8 tests); \
         run `sudo tests/setup.sh` (it builds the roots with tests/setup-roots.sh)",
        tar.display()
    );
    Ok(Root::fresh(SNAPSHOT))
}

/// Whether `BOOTCFG_TEST_KEEP=1` asks to keep test roots (then [`Root`] keeps them, and so must
/// anything else that would remove one).
pub fn keep_roots() -> bool {
    std::env::var_os("BOOTCFG_TEST_KEEP").is_some_and(|v| v == "1")
}

/// A root copy and the host directories its commands see at their own paths.
#[derive(Clone)]
pub struct InRoot {
    root: Arc<Root>,
    binds: Vec<PathBuf>,
}

impl InRoot {
    /// Commands in `root` that see each of `binds` (host directories) at the same path. Parents
    /// are mounted before what lies below them; a bind whose path crosses a symlink of the root is
    /// refused (the root's absolute symlinks, `/var/run -> /run`, would lead `mkdir -p` and the
    /// mount out of the root, onto the host).
    pub fn new(root: Arc<Root>, binds: impl IntoIterator<Item = PathBuf>) -> Result<InRoot> {
        crate::rootfs::require_tool("unshare");
        let mut binds: Vec<PathBuf> = binds.into_iter().collect();
        binds.sort_by_key(|p| (p.components().count(), p.clone()));
        binds.dedup();
        for b in &binds {
            check_bind(root.path(), b)?;
        }
        Ok(InRoot { root, binds })
    }

    pub fn root(&self) -> &Arc<Root> {
        &self.root
    }

    /// The full argv that runs `argv` in the root: `unshare … sh -c NS_SCRIPT ns-run ROOT BINDS --
    /// ROOT_ENV… env… argv…`. `env` is all the environment the command gets besides
    /// [`crate::chroot::ROOT_ENV`] (nothing of the host's leaks in).
    pub fn argv<S: AsRef<OsStr>>(&self, env: &[(String, String)], argv: &[S]) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["unshare".into()];
        v.extend(UNSHARE.iter().map(OsString::from));
        v.extend(["/bin/sh", "-c", NS_SCRIPT, "ns-run"].map(OsString::from));
        v.push(self.root.path().into());
        v.extend(self.binds.iter().map(OsString::from));
        v.push("--".into());
        v.extend(crate::chroot::ROOT_ENV.iter().map(OsString::from));
        v.extend(
            env.iter()
                .map(|(k, val)| OsString::from(format!("{k}={val}"))),
        );
        v.extend(argv.iter().map(|a| a.as_ref().to_owned()));
        v
    }

    /// A host executable at `at` that runs the root's `program` with its arguments (for what
    /// expects a command path, such as the signer's `ca.puppet_bin` and `ca.puppetserver_bin`).
    pub fn write_wrapper(&self, at: &Path, program: &str) -> Result<()> {
        let mut script = format!(
            "#!/bin/sh\n# {program} from {} (testkit::puppet_root), in private namespaces.\nexec",
            self.root.path().display()
        );
        for a in self.argv::<&str>(&[], &[program]) {
            script.push(' ');
            script.push_str(&shell_quote(&a.to_string_lossy()));
        }
        script.push_str(" \"$@\"\n");
        std::fs::write(at, script).with_context(|| format!("writing {}", at.display()))?;
        std::fs::set_permissions(at, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .with_context(|| format!("chmod {}", at.display()))
    }
}

fn check_bind(root: &Path, bind: &Path) -> Result<()> {
    ensure!(
        bind.is_absolute()
            && bind
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
        "bind {}: must be an absolute path without `..`",
        bind.display()
    );
    ensure!(
        bind.is_dir(),
        "bind {}: not a directory on the host",
        bind.display()
    );
    let mut at = root.to_path_buf();
    for c in bind.components().skip(1) {
        at.push(c);
        match at.symlink_metadata() {
            Ok(md) if md.file_type().is_symlink() => bail!(
                "bind {}: {} is a symlink in the root; a mount there would leave the root",
                bind.display(),
                at.display()
            ),
            Ok(_) => {}
            Err(_) => break, // the rest does not exist yet: `mkdir -p` creates real directories
        }
    }
    Ok(())
}

/// `s` as one word for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Where a Debian `puppetserver` package put what the relocated server needs, read from the
/// package in `sysroot` (`/` for the host): its file list (what `dpkg -L puppetserver` shows),
/// its packaged `puppetserver.conf` and its `foreground` start script.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The server jar (`/usr/share/puppetserver/puppetserver-<version>.jar`).
    pub jar: PathBuf,
    /// The packaged conf.d (auth.conf, ca.conf, … are copied from it).
    pub conf_d: PathBuf,
    /// The trapperkeeper bootstrap config (`--bootstrap-config`).
    pub services_d: PathBuf,
    /// `-Djruby.lib=` as the package's `foreground` script passes it.
    pub jruby_lib: String,
    /// `ruby-load-path`, `gem-home` and `gem-path` of the packaged `jruby-puppet` block, verbatim
    /// (HOCON values: where the package put Puppet's Ruby code and the vendored gems).
    pub jruby_puppet: Vec<(String, String)>,
    /// The package version (`8.7.0-5`).
    pub version: String,
}

impl Layout {
    pub fn read(sysroot: &Path) -> Result<Layout> {
        let hint = "is puppetserver installed there? run `sudo tests/setup.sh`";
        let inside = |p: &str| sysroot.join(p.trim_start_matches('/'));
        let list_path = inside("/var/lib/dpkg/info/puppetserver.list");
        let list = std::fs::read_to_string(&list_path)
            .with_context(|| format!("reading {}; {hint}", list_path.display()))?;
        let files: Vec<&str> = list.lines().collect();
        let find = |what: &str, pred: &dyn Fn(&str) -> bool| -> Result<String> {
            let found: Vec<&&str> = files.iter().filter(|f| pred(f)).collect();
            match found.as_slice() {
                [one] => Ok((**one).to_owned()),
                _ => bail!(
                    "{}: expected one {what}, found {found:?}",
                    list_path.display()
                ),
            }
        };
        // The versioned jar itself, not the package's `puppetserver.jar` symlink to it.
        let jar = find("server jar", &|f| {
            f.starts_with("/usr/share/puppetserver/puppetserver")
                && f.ends_with(".jar")
                && inside(f).symlink_metadata().is_ok_and(|m| m.is_file())
        })?;
        let conf_d = find("conf.d", &|f| f.ends_with("/puppetserver/conf.d"))?;
        let services_d = find("services.d", &|f| f.ends_with("/puppetserver/services.d"))?;
        let foreground = find("foreground script", &|f| {
            f.ends_with("/cli/apps/foreground")
        })?;

        let fg_text = std::fs::read_to_string(inside(&foreground))
            .with_context(|| format!("reading {foreground} in {}", sysroot.display()))?;
        let jruby_lib = fg_text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("-Djruby.lib="))
            .map(str::to_owned)
            .with_context(|| format!("{foreground} passes no -Djruby.lib="))?;

        let conf = format!("{conf_d}/puppetserver.conf");
        let conf_text = std::fs::read_to_string(inside(&conf))
            .with_context(|| format!("reading {conf} in {}", sysroot.display()))?;
        let mut jruby_puppet = Vec::new();
        for key in ["ruby-load-path", "gem-home", "gem-path"] {
            let value = conf_text
                .lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix(key)?.trim_start().strip_prefix(':'))
                .with_context(|| format!("{conf} sets no {key}"))?;
            jruby_puppet.push((key.to_owned(), value.trim().to_owned()));
        }

        let status = std::fs::read_to_string(inside("/var/lib/dpkg/status"))
            .with_context(|| format!("reading the dpkg status of {}", sysroot.display()))?;
        let version = rootfs::parse_rfc822(&status)
            .into_iter()
            .find(|s| s.get("Package").map(String::as_str) == Some("puppetserver"))
            .and_then(|s| s.get("Version").cloned())
            .with_context(|| format!("no puppetserver in the dpkg status; {hint}"))?;

        let layout = Layout {
            jar: jar.into(),
            conf_d: conf_d.into(),
            services_d: services_d.into(),
            jruby_lib,
            jruby_puppet,
            version,
        };
        let load_path = &layout.jruby_puppet[0].1;
        for p in [&layout.jar, &layout.conf_d, &layout.services_d]
            .into_iter()
            .cloned()
            .chain(std::iter::once(PathBuf::from(&layout.jruby_lib)))
            .chain(
                load_path
                    .trim_matches(['[', ']'])
                    .split(',')
                    .map(|s| PathBuf::from(s.trim().trim_matches('"'))),
            )
        {
            ensure!(
                inside(&p.to_string_lossy()).exists(),
                "{} is missing in {}; {hint}",
                p.display(),
                sysroot.display()
            );
        }
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_survives_quotes() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn binds_through_a_symlink_of_the_root_are_refused() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("run")).unwrap();
        std::fs::create_dir(root.path().join("var")).unwrap();
        std::os::unix::fs::symlink("/run", root.path().join("var/run")).unwrap();
        let host = tempfile::tempdir().unwrap();
        assert!(check_bind(root.path(), host.path()).is_ok());
        let err = check_bind(root.path(), Path::new("/var/run")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(check_bind(root.path(), Path::new("relative")).is_err());
        assert!(check_bind(root.path(), Path::new("/tmp/../etc")).is_err());
    }
}
