//! The one way bootcfg touches files: paths are resolved *inside* `--root` the way the kernel
//! would resolve them after `chroot(root)`, and writes are atomic.
//!
//! Invariant: **bootcfg writes only under `--root`.**
//!
//! - Every path handed in is absolute *inside the root* (`/etc/apt/...`).
//! - [`Root::resolve`] walks it one component at a time with `lstat`. A symlink is followed the
//!   way a chrooted process would see it: an absolute target is re-rooted (`/run` means
//!   `<root>/run`), a relative one is resolved from its directory. A `..` that would climb above
//!   the root (through a symlink or in the path itself) is **refused** with
//!   [`RootError::Escape`]. At most 40 symlinks are followed (the kernel's limit).
//! - [`Root::write`] writes a temp file in the target directory, sets its mode and owner
//!   explicitly (root:root, only when running as root), fsyncs it, renames it over the target,
//!   then fsyncs the directory. A kill -9 at any point leaves either the old or the new file.
//!
//! Residual risk (documented): resolution and the rename are separate steps, so a process that
//! races to swap a directory for a symlink between them could redirect the write. At first boot
//! nothing else writes into the root; bootcfg does not defend against a concurrent attacker there.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("root directory {0}: {1}")]
    BadRoot(PathBuf, io::Error),
    #[error("{path}: not an absolute path inside the root")]
    NotAbsolute { path: String },
    #[error(
        "{path}: escapes the root {root} (through `..` or a symlink pointing outside); refusing"
    )]
    Escape { path: String, root: PathBuf },
    #[error("{path}: too many levels of symbolic links")]
    Loop { path: String },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

/// A root directory that every file operation stays inside.
#[derive(Debug, Clone)]
pub struct Root {
    root: PathBuf,
}

const MAX_SYMLINKS: usize = 40;

impl Root {
    /// `dir` must be an existing directory; it is canonicalized once.
    pub fn new(dir: &Path) -> Result<Root, RootError> {
        let root = fs::canonicalize(dir).map_err(|e| RootError::BadRoot(dir.to_owned(), e))?;
        if !root.is_dir() {
            return Err(RootError::BadRoot(
                root,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Ok(Root { root })
    }

    /// The root directory on the host.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `true` when the root is `/` (the running machine itself).
    pub fn is_host(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Resolve an in-root absolute path to a host path, following symlinks chroot-style.
    /// Missing trailing components are fine (they are what a write creates).
    pub fn resolve(&self, path: &str) -> Result<PathBuf, RootError> {
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(RootError::NotAbsolute {
                path: path.to_owned(),
            });
        }
        let mut pending: Vec<OsString> = Vec::new(); // stack: last element is the next component
        push_components(&mut pending, p);
        let mut cur: Vec<OsString> = Vec::new();
        let mut links = 0usize;
        let mut missing = false;
        while let Some(comp) = pending.pop() {
            if comp == "." {
                continue;
            }
            if comp == ".." {
                if cur.pop().is_none() {
                    return Err(RootError::Escape {
                        path: path.to_owned(),
                        root: self.root.clone(),
                    });
                }
                continue;
            }
            let mut host = self.host_of(&cur);
            host.push(&comp);
            if missing {
                cur.push(comp);
                continue;
            }
            match fs::symlink_metadata(&host) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    missing = true;
                    cur.push(comp);
                }
                Err(e) => {
                    return Err(RootError::Io {
                        path: path.to_owned(),
                        source: e,
                    });
                }
                Ok(md) if md.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(RootError::Loop {
                            path: path.to_owned(),
                        });
                    }
                    let target = fs::read_link(&host).map_err(|e| RootError::Io {
                        path: path.to_owned(),
                        source: e,
                    })?;
                    if target.is_absolute() {
                        cur.clear();
                    }
                    push_components(&mut pending, &target);
                }
                Ok(_) => cur.push(comp),
            }
        }
        Ok(self.host_of(&cur))
    }

    fn host_of(&self, comps: &[OsString]) -> PathBuf {
        let mut h = self.root.clone();
        for c in comps {
            h.push(c);
        }
        h
    }

    /// Read a file; `Ok(None)` when it does not exist.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, RootError> {
        let host = self.resolve(path)?;
        match fs::read(&host) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RootError::Io {
                path: path.to_owned(),
                source: e,
            }),
        }
    }

    /// Permission bits of an existing file (`None` when missing).
    pub fn mode(&self, path: &str) -> Result<Option<u32>, RootError> {
        let host = self.resolve(path)?;
        match fs::metadata(&host) {
            Ok(md) => Ok(Some(md.mode() & 0o7777)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RootError::Io {
                path: path.to_owned(),
                source: e,
            }),
        }
    }

    pub fn exists(&self, path: &str) -> bool {
        self.resolve(path).map(|h| h.exists()).unwrap_or(false)
    }

    /// Names in a directory (empty when it does not exist).
    pub fn list_dir(&self, path: &str) -> Result<Vec<String>, RootError> {
        let host = self.resolve(path)?;
        let rd = match fs::read_dir(&host) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(RootError::Io {
                    path: path.to_owned(),
                    source: e,
                });
            }
        };
        let mut names = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| RootError::Io {
                path: path.to_owned(),
                source: e,
            })?;
            names.push(ent.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Create a directory and its missing parents (parents 0755), then set `mode` on the last one.
    pub fn ensure_dir(&self, path: &str, mode: u32) -> Result<(), RootError> {
        let host = self.resolve(path)?;
        let io_err = |e| RootError::Io {
            path: path.to_owned(),
            source: e,
        };
        if !host.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&host)
                .map_err(io_err)?;
        }
        let md = fs::metadata(&host).map_err(io_err)?;
        if md.mode() & 0o7777 != mode {
            fs::set_permissions(&host, fs::Permissions::from_mode(mode)).map_err(io_err)?;
        }
        Ok(())
    }

    /// Replace `path` atomically with `data`, mode `mode`, owner root:root.
    pub fn write(&self, path: &str, data: &[u8], mode: u32) -> Result<(), RootError> {
        let host = self.resolve(path)?;
        let io_err = |e| RootError::Io {
            path: path.to_owned(),
            source: e,
        };
        let dir = host.parent().ok_or_else(|| RootError::NotAbsolute {
            path: path.to_owned(),
        })?;
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(io_err)?;
        }
        sweep_stale_temps(dir);
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(io_err)?;
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::fchown(tmp.as_file(), Some(0), Some(0)).map_err(io_err)?;
        }
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err)?;
        tmp.write_all(data).map_err(io_err)?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(&host).map_err(|e| io_err(e.error))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err)?;
        Ok(())
    }

    /// Remove a file if it exists (the directory is fsynced).
    pub fn remove(&self, path: &str) -> Result<bool, RootError> {
        let host = self.resolve(path)?;
        match fs::remove_file(&host) {
            Ok(()) => {
                if let Some(dir) = host.parent() {
                    let _ = fs::File::open(dir).and_then(|d| d.sync_all());
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(RootError::Io {
                path: path.to_owned(),
                source: e,
            }),
        }
    }
}

use std::os::unix::fs::DirBuilderExt;

/// Temp files of [`Root::write`] start with this. One bootcfg runs per root at a time (a lock in
/// the agent), so any such file found in a directory is left over from a killed run.
pub const TEMP_PREFIX: &str = ".bootcfg-";

fn sweep_stale_temps(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for ent in rd.flatten() {
        let name = ent.file_name();
        if name.to_string_lossy().starts_with(TEMP_PREFIX)
            && ent.file_type().is_ok_and(|t| t.is_file())
        {
            tracing::info!(path = %ent.path().display(), "removing a temp file left by an interrupted run");
            let _ = fs::remove_file(ent.path());
        }
    }
}

/// Push `p`'s components onto the stack so that the first component is popped first.
fn push_components(stack: &mut Vec<OsString>, p: &Path) {
    let comps: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::CurDir => Some(OsString::from(".")),
            Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    stack.extend(comps.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, Root) {
        let d = tempfile::tempdir().unwrap();
        let r = Root::new(d.path()).unwrap();
        (d, r)
    }

    #[test]
    fn write_creates_parents_sets_mode_and_replaces() {
        let (_d, r) = root();
        r.write("/etc/apt/apt.conf.d/90x", b"one\n", 0o600).unwrap();
        let host = r.path().join("etc/apt/apt.conf.d/90x");
        assert_eq!(fs::read(&host).unwrap(), b"one\n");
        assert_eq!(fs::metadata(&host).unwrap().mode() & 0o7777, 0o600);
        r.write("/etc/apt/apt.conf.d/90x", b"two\n", 0o644).unwrap();
        assert_eq!(fs::read(&host).unwrap(), b"two\n");
        assert_eq!(fs::metadata(&host).unwrap().mode() & 0o7777, 0o644);
        // no temp files left behind
        let names = r.list_dir("/etc/apt/apt.conf.d").unwrap();
        assert_eq!(names, vec!["90x".to_owned()]);
    }

    #[test]
    fn temp_files_left_by_a_killed_run_are_swept() {
        let (d, r) = root();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        fs::write(d.path().join("etc/.bootcfg-AbC123"), "half").unwrap();
        r.write("/etc/x", b"x", 0o644).unwrap();
        assert_eq!(r.list_dir("/etc").unwrap(), vec!["x".to_owned()]);
    }

    #[test]
    fn relative_symlink_escaping_the_root_is_refused() {
        let (d, r) = root();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc/apt")).unwrap();
        // etc/apt/sources.list.d -> ../../../<outside>
        let depth = "../".repeat(d.path().components().count() + 2);
        symlink(
            format!("{depth}{}", outside.path().display()),
            d.path().join("etc/apt/sources.list.d"),
        )
        .unwrap();
        let err = r
            .write("/etc/apt/sources.list.d/x.list", b"deb x\n", 0o644)
            .unwrap_err();
        assert!(matches!(err, RootError::Escape { .. }), "{err}");
        assert!(
            fs::read_dir(outside.path()).unwrap().next().is_none(),
            "nothing written outside"
        );
    }

    #[test]
    fn dotdot_in_path_above_root_is_refused() {
        let (_d, r) = root();
        assert!(matches!(
            r.resolve("/../etc/passwd"),
            Err(RootError::Escape { .. })
        ));
        assert!(matches!(
            r.resolve("etc/passwd"),
            Err(RootError::NotAbsolute { .. })
        ));
    }

    #[test]
    fn absolute_symlink_is_rerooted_not_followed_to_the_host() {
        let (d, r) = root();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        // etc/puppet -> /<outside>/puppet : inside a chroot that means <root>/<outside>/puppet
        symlink(outside.path().join("puppet"), d.path().join("etc/puppet")).unwrap();
        r.write("/etc/puppet/puppet.conf", b"[main]\n", 0o644)
            .unwrap();
        assert!(
            !outside.path().join("puppet").exists(),
            "host path untouched"
        );
        let inside = d
            .path()
            .join(outside.path().strip_prefix("/").unwrap())
            .join("puppet/puppet.conf");
        assert_eq!(fs::read(inside).unwrap(), b"[main]\n");
    }

    #[test]
    fn relative_symlink_inside_root_is_followed() {
        let (d, r) = root();
        fs::create_dir_all(d.path().join("usr/lib")).unwrap();
        fs::write(d.path().join("usr/lib/os-release"), "ID=debian\n").unwrap();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        symlink("../usr/lib/os-release", d.path().join("etc/os-release")).unwrap();
        assert_eq!(r.read("/etc/os-release").unwrap().unwrap(), b"ID=debian\n");
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let (d, r) = root();
        symlink("b", d.path().join("a")).unwrap();
        symlink("a", d.path().join("b")).unwrap();
        assert!(matches!(r.resolve("/a/x"), Err(RootError::Loop { .. })));
    }

    #[test]
    fn remove_and_read_missing() {
        let (_d, r) = root();
        assert_eq!(r.read("/nope").unwrap(), None);
        assert!(!r.remove("/nope").unwrap());
        r.write("/f", b"x", 0o644).unwrap();
        assert!(r.remove("/f").unwrap());
        assert!(!r.exists("/f"));
    }
}
