//! Debian bookworm roots for end-to-end tests: a fresh copy of a snapshot per test, and readers for
//! what a test asserts on (files, modes, dpkg status, debconf's `config.dat`, manifests).
//!
//! The snapshots are built once per machine by `tests/setup-roots.sh` (called by `tests/setup.sh`)
//! under `$BOOTCFG_TEST_HOME/roots/` (default `/var/tmp/bootcfg-test/roots/`):
//! `base.tar` (debootstrap `--variant=minbase` + chroot fix-ups) and `cloudinit.tar` (base +
//! Debian's cloud-init + gnupg + harness config + `service`/`systemctl` stubs).
//!
//! ```no_run
//! let root = testkit::rootfs::Root::fresh("base");
//! assert!(root.path().join("etc/os-release").exists());
//! ```

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What to run when something the tests need is missing.
pub const SETUP_HINT: &str =
    "run `sudo tests/setup.sh` (it builds the Debian roots with tests/setup-roots.sh)";

/// `$BOOTCFG_TEST_HOME`, default `/var/tmp/bootcfg-test`.
pub fn test_home() -> PathBuf {
    std::env::var_os("BOOTCFG_TEST_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/bootcfg-test"))
}

/// Panics (the test fails, it never skips) unless the test runs as root: debootstrap'd roots,
/// chroot and mount namespaces need it.
pub fn require_root() {
    let status = fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("Uid: line in /proc/self/status");
    assert!(
        euid == "0",
        "the end-to-end tests need root (chroot, mount namespaces, files owned by root in the test roots): \
         run them as root, e.g. `sudo -E cargo test -p bootcfg`, after `sudo tests/setup.sh`"
    );
}

/// Panics naming the setup command when `tool` is not on PATH.
pub fn require_tool(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "`{tool}` is not installed; {SETUP_HINT}");
}

/// The snapshot `$BOOTCFG_TEST_HOME/roots/<name>.tar`; panics naming the setup command if missing.
pub fn snapshot(name: &str) -> PathBuf {
    let tar = test_home().join("roots").join(format!("{name}.tar"));
    assert!(
        tar.is_file(),
        "the test root snapshot {} is missing; {SETUP_HINT}",
        tar.display()
    );
    tar
}

/// A private copy of a root snapshot in a temp dir under `$BOOTCFG_TEST_HOME/tmp`, removed on drop
/// (kept when `BOOTCFG_TEST_KEEP=1`, for debugging; its path is printed).
pub struct Root {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    /// How long the copy took.
    pub copy_time: Duration,
}

impl Root {
    /// Untars `<name>.tar` into a fresh directory (about 0.5 s for base.tar).
    pub fn fresh(name: &str) -> Root {
        let tar = snapshot(name);
        Root::made(name, &format!("{name}.tar"), |path| {
            let mut c = Command::new("tar");
            c.arg("-C")
                .arg(path)
                .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xf"])
                .arg(&tar);
            c
        })
    }

    /// A private copy (`cp -a`) of an unpacked root `template` (a root a test or benchmark
    /// prepared once), like [`Root::fresh`] otherwise.
    pub fn copy_of(template: &Path, name: &str) -> Root {
        Root::made(name, &template.display().to_string(), |path| {
            let mut c = Command::new("cp");
            c.arg("-a")
                .arg(format!("{}/.", template.display()))
                .arg(path);
            c
        })
    }

    /// A fresh directory under `$BOOTCFG_TEST_HOME/tmp` filled by the command `fill` returns for
    /// it (copying `from`, which the log line and a failure name).
    fn made(name: &str, from: &str, fill: impl FnOnce(&Path) -> Command) -> Root {
        require_root();
        let tmp = test_home().join("tmp");
        fs::create_dir_all(&tmp).expect("creating $BOOTCFG_TEST_HOME/tmp");
        let dir = tempfile::Builder::new()
            .prefix(&format!("root-{name}-"))
            .tempdir_in(&tmp)
            .expect("creating a temp dir for the test root");
        let path = dir.path().join("root");
        fs::create_dir(&path).expect("creating the root dir");
        let t0 = Instant::now();
        let out = fill(&path).output().expect("running tar or cp");
        assert!(
            out.status.success(),
            "copying {from} into {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let copy_time = t0.elapsed();
        eprintln!(
            "[testkit] fresh root {} from {from} in {:.2?}",
            path.display(),
            copy_time
        );
        let mut root = Root {
            dir: Some(dir),
            path,
            copy_time,
        };
        if std::env::var_os("BOOTCFG_TEST_KEEP").is_some_and(|v| v == "1") {
            let dir = root.dir.take().expect("temp dir");
            eprintln!(
                "[testkit] BOOTCFG_TEST_KEEP=1: keeping {}",
                root.path.display()
            );
            let _ = dir.keep();
        }
        root
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` under the root (a leading `/` is allowed: `/etc/hosts` and `etc/hosts` are the same).
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel.trim_start_matches('/'))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.join(rel).symlink_metadata().is_ok()
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.join(rel)).unwrap_or_else(|e| panic!("reading {rel} in the test root: {e}"))
    }

    pub fn read_string(&self, rel: &str) -> String {
        String::from_utf8(self.read(rel))
            .unwrap_or_else(|e| panic!("{rel} in the test root is not UTF-8: {e}"))
    }

    /// Writes a file (creating parent dirs) with `mode`, owned by root.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>, mode: u32) {
        let p = self.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        fs::write(&p, contents).unwrap_or_else(|e| panic!("writing {rel} in the test root: {e}"));
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// Permission bits (`0o644`), not following symlinks.
    pub fn mode(&self, rel: &str) -> u32 {
        self.join(rel)
            .symlink_metadata()
            .unwrap_or_else(|e| panic!("stat {rel} in the test root: {e}"))
            .mode()
            & 0o7777
    }

    /// Names in a directory of the root, sorted (empty if it does not exist).
    pub fn list_dir(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = match fs::read_dir(self.join(rel)) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// Installed packages from `/var/lib/dpkg/status`: name (with `:arch` for foreign arches) →
    /// version, only stanzas whose Status is `install ok installed`.
    pub fn dpkg_installed(&self) -> BTreeMap<String, String> {
        parse_dpkg_status(&self.read_string("var/lib/dpkg/status"))
            .into_iter()
            .filter(|s| s.get("Status").map(String::as_str) == Some("install ok installed"))
            .map(|s| {
                (
                    s["Package"].clone(),
                    s.get("Version").cloned().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Every package stanza's Status (`install ok installed`, `install ok unpacked`, …).
    pub fn dpkg_statuses(&self) -> BTreeMap<String, String> {
        parse_dpkg_status(&self.read_string("var/lib/dpkg/status"))
            .into_iter()
            .map(|s| {
                (
                    s["Package"].clone(),
                    s.get("Status").cloned().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The debconf database entry for `question` (e.g. `locales/default_environment_locale`), from
    /// `var/cache/debconf/config.dat` (minbase has no debconf-get-selections).
    pub fn debconf(&self, question: &str) -> Option<BTreeMap<String, String>> {
        let text = self.read_string("var/cache/debconf/config.dat");
        parse_rfc822(&text)
            .into_iter()
            .find(|s| s.get("Name").map(String::as_str) == Some(question))
    }

    /// A manifest of every path under each of `rels` (directories recursed, symlinks not followed):
    /// relative path → `mode uid:gid sha256` for files, `-> target` for symlinks, `dir mode` for
    /// directories. Two roots with equal manifests hold the same bytes with the same modes.
    pub fn manifest(&self, rels: &[&str]) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for rel in rels {
            walk(&self.path, &self.join(rel), &mut out);
        }
        out
    }

    /// `user:group` of a path by the root's own /etc/passwd and /etc/group (numeric ids differ
    /// between roots with different packages; names do not).
    pub fn owner(&self, rel: &str) -> String {
        let md = self
            .join(rel)
            .symlink_metadata()
            .unwrap_or_else(|e| panic!("stat {rel} in the test root: {e}"));
        let name = |db: &str, id: u32| -> String {
            fs::read_to_string(self.join(db))
                .unwrap_or_default()
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() > 2 && f[2] == id.to_string()).then(|| f[0].to_owned())
                })
                .unwrap_or_else(|| id.to_string())
        };
        format!(
            "{}:{}",
            name("etc/passwd", md.uid()),
            name("etc/group", md.gid())
        )
    }

    /// The puppet.conf-style INI file at `rel` as section → key → value (comments dropped).
    pub fn ini(&self, rel: &str) -> BTreeMap<String, BTreeMap<String, String>> {
        parse_ini(&self.read_string(rel))
    }

    /// A YAML file of the root, as JSON (for comparing parsed content).
    pub fn yaml(&self, rel: &str) -> serde_json::Value {
        serde_yaml_ng::from_str(&self.read_string(rel))
            .unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
    }
}

fn walk(root: &Path, p: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(md) = p.symlink_metadata() else { return };
    let rel = format!("/{}", p.strip_prefix(root).expect("under root").display());
    let ft = md.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(p)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        out.insert(rel, format!("-> {target}"));
    } else if ft.is_dir() {
        out.insert(
            rel,
            format!("dir {:o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid()),
        );
        let mut entries: Vec<PathBuf> = fs::read_dir(p)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for e in entries {
            walk(root, &e, out);
        }
    } else if ft.is_file() {
        let bytes = fs::read(p).unwrap_or_default();
        let sum = hex::encode(Sha256::digest(&bytes));
        out.insert(
            rel,
            format!("{:o} {}:{} {sum}", md.mode() & 0o7777, md.uid(), md.gid()),
        );
    } else {
        out.insert(rel, format!("special {:o}", md.mode()));
    }
}

/// Differences between two manifests, one line per path (`+ added`, `- removed`, `~ changed`).
pub fn manifest_diff(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut d = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => d.push(format!("- {k}  ({v})")),
            Some(w) if w != v => d.push(format!("~ {k}  ({v} => {w})")),
            _ => {}
        }
    }
    for (k, v) in after {
        if !before.contains_key(k) {
            d.push(format!("+ {k}  ({v})"));
        }
    }
    d
}

/// RFC 822-style stanzas (dpkg status, debconf config.dat); continuation lines are appended.
pub fn parse_rfc822(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            last = None;
        } else if line.starts_with([' ', '\t']) {
            if let Some(k) = &last {
                let v = cur.entry(k.clone()).or_default();
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.insert(k.to_owned(), v.trim().to_owned());
            last = Some(k.to_owned());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn parse_dpkg_status(text: &str) -> Vec<BTreeMap<String, String>> {
    parse_rfc822(text)
        .into_iter()
        .filter(|s| s.contains_key("Package"))
        .collect()
}

/// puppet.conf INI: `[section]`, `key = value`, `#`/`;` comments; keys before any section go to `main`.
pub fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = "main".to_owned();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.trim().to_owned();
            out.entry(section.clone()).or_default();
        } else if let Some((k, v)) = l.split_once('=') {
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_keeps_sections_and_drops_comments() {
        let ini = parse_ini("# c\n[main]\nserver = a\n; x\n[agent]\nruninterval=5m\n");
        assert_eq!(ini["main"]["server"], "a");
        assert_eq!(ini["agent"]["runinterval"], "5m");
        assert_eq!(ini.len(), 2);
    }

    #[test]
    fn rfc822_stanzas_and_continuations() {
        let s = parse_rfc822(
            "Package: a\nStatus: install ok installed\nDescription: x\n more\n\nPackage: b\n",
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0]["Description"], "x\nmore");
        assert_eq!(s[1]["Package"], "b");
    }

    #[test]
    fn manifest_diff_reports_all_three_kinds() {
        let a: BTreeMap<String, String> =
            [("/x".into(), "1".into()), ("/y".into(), "2".into())].into();
        let b: BTreeMap<String, String> =
            [("/y".into(), "3".into()), ("/z".into(), "4".into())].into();
        let d = manifest_diff(&a, &b);
        assert_eq!(d.len(), 3, "{d:?}");
    }
}
