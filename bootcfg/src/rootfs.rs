//! The one way bootcfg touches files: paths are resolved *inside* `--root` the way the kernel
//! would resolve them after `chroot(root)`, and writes are atomic.
//!
//! Invariant: **bootcfg writes only under `--root`.**
//!
//! - Every path handed in is absolute *inside the root* (`/etc/apt/...`).
//! - [`Root`] holds a directory fd of the root, opened once in [`Root::new`]. Nothing after that
//!   looks up a host path: every lookup is an `*at()` call relative to that fd or to a directory
//!   fd reached from it.
//! - **Resolution (the walker).** The path is walked one component at a time from the root fd:
//!   each component is opened with `openat(dir, name, O_PATH | O_NOFOLLOW)` relative to the fd of
//!   the directory before it. A symlink is followed the way a chrooted process would see it: an
//!   absolute target is re-rooted (`/run` means `<root>/run`), a relative one is resolved from its
//!   directory. `..` pops the walker's own stack of fds; it is never looked up in the filesystem.
//!   A `..` that would climb above the root (through a symlink or in the path itself) is
//!   **refused** with [`RootError::Escape`] (the kernel would clamp it to the root; we refuse,
//!   because such a path in a Debian root is a bug or an attack). At most 40 symlinks are followed
//!   (the kernel's limit, [`RootError::Loop`]). Magic links (`/proc/<pid>/root`, `.../cwd`,
//!   `.../fd/N` when a procfs is mounted in the root) are treated as the plain symlinks
//!   `readlink` shows (so `/proc/self/root` means the root itself), never jumped through.
//!   A final symlink is followed too: writing `/etc/resolv.conf` replaces the file it points to.
//! - **The operation.** [`Root::read`], [`Root::write`], [`Root::remove`], [`Root::ensure_dir`],
//!   [`Root::mode`], [`Root::exists`], [`Root::list_dir`] and the lock-file openers act on the
//!   last resolved component with `openat`/`renameat`/`unlinkat`/`mkdirat`/`fstatat` (all with
//!   `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW` on that last name) relative to a directory fd of its
//!   parent. Where the kernel has `openat2(2)` (Linux 5.6+), that parent fd is opened with
//!   `openat2(root_fd, parent, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: whatever happens to the
//!   tree between the walk and the operation, the **kernel** keeps the lookup inside the root
//!   (a symlink swapped in meanwhile is resolved inside the root, `..` cannot climb out, magic
//!   links are refused). `RESOLVE_NO_XDEV` is deliberately not set: the root has `/proc`, `/sys`,
//!   `/dev` and `/run` mounted in it while commands run.
//! - [`Root::write`] writes a temp file (`O_CREAT | O_EXCL`, mode 0600) in the target directory,
//!   sets its owner (root:root, only when running as root) and then its mode explicitly, fsyncs
//!   it, `renameat`s it over the target, then fsyncs the directory. A kill -9 at any point leaves
//!   either the old or the new file; a leftover temp file is swept by the next write there.
//!
//! **Fallback.** Whether `openat2` works is probed once per process (on `ENOSYS`, on `EPERM` from
//! a seccomp filter, on `EINVAL`/`E2BIG` from a kernel that does not know the flags, the walker
//! is used for everything; the decision is cached). Without `openat2` the parent fd is the one the
//! walker itself opened (`O_NOFOLLOW`, relative to the previous fd), so swapping a directory for
//! a symlink between the walk and the operation still cannot redirect the operation: the fd keeps
//! pointing at the directory that was checked. Residual risk, in the fallback *and* with
//! `openat2` once the parent fd is open: a process that can **rename a directory of the root to a
//! place outside it** (same filesystem) while bootcfg holds an fd of that directory moves the
//! operation with it. `RESOLVE_IN_ROOT` only protects the lookup itself (it also re-checks `..`
//! against such renames during the lookup, which the walker does not need: it never looks up
//! `..`). At first boot nothing else writes into the root, and nothing can rename a directory of
//! the root out of it without write access outside the root.
//!
//! [`Root::resolve`] still returns a host path (for code that hands a path to another program);
//! using that path later is subject to the usual time-of-check/time-of-use race.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

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
    /// `O_PATH | O_DIRECTORY` fd of `root`; every lookup starts here.
    fd: Arc<OwnedFd>,
    /// Never use `openat2` (tests of the fallback).
    walker_only: bool,
    /// How many times [`Root::sync`] ran (the engine's tests check when it syncs).
    #[cfg(test)]
    pub(crate) syncs: Arc<std::sync::atomic::AtomicUsize>,
}

const MAX_SYMLINKS: usize = 40;

/// The `openat2` resolve flags: stay in the root (`..` and absolute symlinks cannot leave it) and
/// never jump through `/proc` magic links. Not `RESOLVE_NO_XDEV`: `/proc`, `/dev`, `/sys`, `/run`
/// are mounts inside the root.
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Whether `openat2` works here: 0 not probed yet, 1 yes, 2 no.
static OPENAT2: AtomicU8 = AtomicU8::new(0);

fn openat2_available(root_fd: BorrowedFd<'_>) -> bool {
    match OPENAT2.load(Ordering::Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rustix::fs::openat2(root_fd, ".", flags, Mode::empty(), RESOLVE) {
        Ok(_) => {
            OPENAT2.store(1, Ordering::Relaxed);
            true
        }
        // ENOSYS: kernel < 5.6; EPERM: a seccomp filter; EINVAL/E2BIG: flags or struct unknown.
        Err(e @ (Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::TOOBIG)) => {
            if OPENAT2.swap(2, Ordering::Relaxed) != 2 {
                tracing::info!(error = %e, "openat2 is unavailable; confining paths to the root with the userspace walker");
            }
            false
        }
        // Anything else is not about openat2 itself: do not cache, use the walker this time.
        Err(_) => false,
    }
}

/// The result of walking an in-root path.
struct Walk {
    /// Resolved components under the root: no `.`, `..` or symlinks (at the time of the walk).
    cur: Vec<OsString>,
    /// `fds[i]` is an `O_PATH` fd of `cur[..=i]`, opened `O_NOFOLLOW` relative to `fds[i - 1]`
    /// (or the root fd). Shorter than `cur` when a component is missing.
    fds: Vec<OwnedFd>,
}

impl Walk {
    /// Depth of the parent directory of the last component.
    fn parent_depth(&self) -> usize {
        self.cur.len().saturating_sub(1)
    }

    /// The last component (`.` for the root itself).
    fn name(&self) -> &OsStr {
        self.cur.last().map_or(OsStr::new("."), |s| s.as_os_str())
    }

    /// Whether the parent directory existed at walk time.
    fn parent_exists(&self) -> bool {
        self.fds.len() >= self.parent_depth()
    }
}

fn io_err(path: &str, e: impl Into<io::Error>) -> RootError {
    RootError::Io {
        path: path.to_owned(),
        source: e.into(),
    }
}

impl Root {
    /// `dir` must be an existing directory; it is canonicalized and opened once.
    pub fn new(dir: &Path) -> Result<Root, RootError> {
        let root = std::fs::canonicalize(dir).map_err(|e| RootError::BadRoot(dir.to_owned(), e))?;
        let fd = rustix::fs::open(
            &root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| RootError::BadRoot(root.clone(), e.into()))?;
        Ok(Root {
            root,
            fd: Arc::new(fd),
            walker_only: false,
            #[cfg(test)]
            syncs: Default::default(),
        })
    }

    /// The root directory on the host.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `true` when the root is `/` (the running machine itself).
    pub fn is_host(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Whether operations open their directories with `openat2(RESOLVE_IN_ROOT)` (else the
    /// walker's own fds are used).
    pub fn uses_openat2(&self) -> bool {
        !self.walker_only && openat2_available(self.fd.as_fd())
    }

    /// Resolve an in-root absolute path to a host path, following symlinks chroot-style.
    /// Missing trailing components are fine (they are what a write creates). The returned path
    /// is only a name: prefer the methods of [`Root`], which act through directory fds.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, RootError> {
        let w = self.walk(path)?;
        Ok(self.host_of(&w.cur))
    }

    /// The walker: see the module docs.
    fn walk(&self, path: &str) -> Result<Walk, RootError> {
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(RootError::NotAbsolute {
                path: path.to_owned(),
            });
        }
        let mut pending: Vec<OsString> = Vec::new(); // stack: last element is the next component
        push_components(&mut pending, p);
        let mut w = Walk {
            cur: Vec::new(),
            fds: Vec::new(),
        };
        let mut links = 0usize;
        while let Some(comp) = pending.pop() {
            if comp == "." {
                continue;
            }
            if comp == ".." {
                if w.cur.pop().is_none() {
                    return Err(RootError::Escape {
                        path: path.to_owned(),
                        root: self.root.clone(),
                    });
                }
                w.fds.truncate(w.cur.len());
                continue;
            }
            if w.fds.len() < w.cur.len() {
                // Below a missing component: nothing to look up.
                w.cur.push(comp);
                continue;
            }
            let dir = w.fds.last().map_or(self.fd.as_fd(), |f| f.as_fd());
            let fd = match rustix::fs::openat(
                dir,
                comp.as_os_str(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    w.cur.push(comp);
                    continue;
                }
                Err(e) => return Err(io_err(path, e)),
            };
            let st = rustix::fs::fstat(&fd).map_err(|e| io_err(path, e))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(RootError::Loop {
                        path: path.to_owned(),
                    });
                }
                let target =
                    rustix::fs::readlinkat(&fd, "", Vec::new()).map_err(|e| io_err(path, e))?;
                let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
                if target.is_absolute() {
                    w.cur.clear();
                    w.fds.clear();
                }
                push_components(&mut pending, &target);
            } else {
                w.cur.push(comp);
                w.fds.push(fd);
            }
        }
        Ok(w)
    }

    fn host_of(&self, comps: &[OsString]) -> PathBuf {
        let mut h = self.root.clone();
        for c in comps {
            h.push(c);
        }
        h
    }

    /// A readable directory fd (`O_RDONLY | O_DIRECTORY`) of `w.cur[..depth]`, which must exist.
    /// With `openat2` it is looked up again by the kernel, confined to the root; otherwise it is
    /// reopened from the walker's fd.
    fn dir_fd(&self, w: &Walk, depth: usize) -> Result<OwnedFd, Errno> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        if self.uses_openat2() {
            let rel: PathBuf = if depth == 0 {
                PathBuf::from(".")
            } else {
                w.cur[..depth].iter().collect()
            };
            let mut tries = 0;
            loop {
                match rustix::fs::openat2(self.fd.as_fd(), &rel, flags, Mode::empty(), RESOLVE) {
                    // The kernel saw a concurrent rename while resolving: try again.
                    Err(Errno::AGAIN) if tries < 8 => tries += 1,
                    r => return r,
                }
            }
        } else {
            let base = match depth {
                0 => self.fd.as_fd(),
                d => w.fds.get(d - 1).ok_or(Errno::NOENT)?.as_fd(),
            };
            rustix::fs::openat(base, ".", flags, Mode::empty())
        }
    }

    /// Create the missing directories of `w.cur[..upto]` (mode 0755 before the umask).
    fn ensure_dirs(&self, w: &mut Walk, upto: usize) -> Result<(), Errno> {
        while w.fds.len() < upto {
            let k = w.fds.len();
            let parent = self.dir_fd(w, k)?;
            match rustix::fs::mkdirat(&parent, w.cur[k].as_os_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e),
            }
            let fd = rustix::fs::openat(
                &parent,
                w.cur[k].as_os_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            w.fds.push(fd);
        }
        Ok(())
    }

    /// The parent directory of an existing-or-not target, for reading: `None` when missing.
    fn parent_for_lookup(&self, path: &str, w: &Walk) -> Result<Option<OwnedFd>, RootError> {
        if !w.parent_exists() {
            return Ok(None);
        }
        match self.dir_fd(w, w.parent_depth()) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(io_err(path, e)),
        }
    }

    /// Read a file; `Ok(None)` when it does not exist.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, RootError> {
        let w = self.walk(path)?;
        let Some(dir) = self.parent_for_lookup(path, &w)? else {
            return Ok(None);
        };
        let fd = match rustix::fs::openat(
            &dir,
            w.name(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(io_err(path, e)),
        };
        let mut buf = Vec::new();
        File::from(fd)
            .read_to_end(&mut buf)
            .map_err(|e| io_err(path, e))?;
        Ok(Some(buf))
    }

    /// `fstatat(AT_SYMLINK_NOFOLLOW)` of the resolved path; `None` when missing.
    fn stat(&self, path: &str) -> Result<Option<rustix::fs::Stat>, RootError> {
        let w = self.walk(path)?;
        let Some(dir) = self.parent_for_lookup(path, &w)? else {
            return Ok(None);
        };
        match rustix::fs::statat(&dir, w.name(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(io_err(path, e)),
        }
    }

    /// Permission bits of an existing file (`None` when missing).
    pub fn mode(&self, path: &str) -> Result<Option<u32>, RootError> {
        Ok(self.stat(path)?.map(|st| st.st_mode & 0o7777))
    }

    pub fn exists(&self, path: &str) -> bool {
        matches!(self.stat(path), Ok(Some(_)))
    }

    /// Names in a directory (empty when it does not exist).
    pub fn list_dir(&self, path: &str) -> Result<Vec<String>, RootError> {
        let w = self.walk(path)?;
        let Some(parent) = self.parent_for_lookup(path, &w)? else {
            return Ok(Vec::new());
        };
        let fd = match rustix::fs::openat(
            &parent,
            w.name(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(Vec::new()),
            Err(e) => return Err(io_err(path, e)),
        };
        let mut names = Vec::new();
        for ent in rustix::fs::Dir::new(fd).map_err(|e| io_err(path, e))? {
            let ent = ent.map_err(|e| io_err(path, e))?;
            let name = ent.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(String::from_utf8_lossy(name).into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Create a directory and its missing parents (parents 0755), then set `mode` on the last one.
    pub fn ensure_dir(&self, path: &str, mode: u32) -> Result<(), RootError> {
        let mut w = self.walk(path)?;
        let n = w.cur.len();
        self.ensure_dirs(&mut w, n).map_err(|e| io_err(path, e))?;
        let parent = self
            .dir_fd(&w, w.parent_depth())
            .map_err(|e| io_err(path, e))?;
        let fd = rustix::fs::openat(
            &parent,
            w.name(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(path, e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| io_err(path, e))?;
        if st.st_mode & 0o7777 != mode {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| io_err(path, e))?;
        }
        Ok(())
    }

    /// Replace `path` atomically with `data`, mode `mode`, owner root:root.
    pub fn write(&self, path: &str, data: &[u8], mode: u32) -> Result<(), RootError> {
        let mut w = self.walk(path)?;
        if w.cur.is_empty() {
            return Err(io_err(
                path,
                io::Error::new(io::ErrorKind::IsADirectory, "the root itself"),
            ));
        }
        let pd = w.parent_depth();
        self.ensure_dirs(&mut w, pd).map_err(|e| io_err(path, e))?;
        let dir = self.dir_fd(&w, pd).map_err(|e| io_err(path, e))?;
        sweep_stale_temps(&dir, &w.cur[..pd]);
        let (tmp, tmp_name) = create_temp(&dir).map_err(|e| io_err(path, e))?;
        let res = (|| -> io::Result<()> {
            if rustix::process::geteuid().is_root() {
                rustix::fs::fchown(
                    &tmp,
                    Some(rustix::process::Uid::ROOT),
                    Some(rustix::process::Gid::ROOT),
                )?;
            }
            // After the chown, which clears set-id bits.
            rustix::fs::fchmod(&tmp, Mode::from_raw_mode(mode))?;
            let mut f = File::from(tmp);
            f.write_all(data)?;
            f.sync_all()?;
            rustix::fs::renameat(&dir, &tmp_name, &dir, w.name())?;
            Ok(())
        })();
        if let Err(e) = res {
            let _ = rustix::fs::unlinkat(&dir, &tmp_name, AtFlags::empty());
            return Err(io_err(path, e));
        }
        rustix::fs::fsync(&dir).map_err(|e| io_err(path, e))?;
        Ok(())
    }

    /// Flush every write to the filesystem that holds the root (`syncfs`): one call that makes
    /// what a command wrote without fsyncing it (dpkg with `--force-unsafe-io`) durable.
    pub fn sync(&self) -> Result<(), RootError> {
        let dir = rustix::fs::openat(
            &*self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("/", e))?;
        rustix::fs::syncfs(&dir).map_err(|e| io_err("/", e))?;
        #[cfg(test)]
        self.syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Remove a file if it exists (the directory is fsynced).
    pub fn remove(&self, path: &str) -> Result<bool, RootError> {
        let w = self.walk(path)?;
        let Some(dir) = self.parent_for_lookup(path, &w)? else {
            return Ok(false);
        };
        match rustix::fs::unlinkat(&dir, w.name(), AtFlags::empty()) {
            Ok(()) => {
                let _ = rustix::fs::fsync(&dir);
                Ok(true)
            }
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(io_err(path, e)),
        }
    }

    /// Open a file for locking (read-write), creating it with exactly `mode` (and its missing
    /// parent directories, 0755) when it does not exist. Confined to the root like every other
    /// operation; the last component is opened `O_NOFOLLOW`.
    pub fn open_lock_file(&self, path: &str, mode: u32) -> Result<File, RootError> {
        self.open_rw(path, Some(mode))?.ok_or_else(|| {
            io_err(
                path,
                io::Error::new(io::ErrorKind::NotFound, "vanished while being created"),
            )
        })
    }

    /// Open an existing file for locking (read-write); `None` when it does not exist.
    pub fn open_existing_lock_file(&self, path: &str) -> Result<Option<File>, RootError> {
        self.open_rw(path, None)
    }

    fn open_rw(&self, path: &str, create: Option<u32>) -> Result<Option<File>, RootError> {
        let mut w = self.walk(path)?;
        let pd = w.parent_depth();
        let dir = match create {
            Some(_) => {
                self.ensure_dirs(&mut w, pd).map_err(|e| io_err(path, e))?;
                self.dir_fd(&w, pd).map_err(|e| io_err(path, e))?
            }
            None => match self.parent_for_lookup(path, &w)? {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC;
        for _ in 0..8 {
            match rustix::fs::openat(&dir, w.name(), flags, Mode::empty()) {
                Ok(fd) => return Ok(Some(File::from(fd))),
                Err(Errno::NOENT) => {}
                Err(e) => return Err(io_err(path, e)),
            }
            let Some(mode) = create else { return Ok(None) };
            match rustix::fs::openat(
                &dir,
                w.name(),
                flags | OFlags::CREATE | OFlags::EXCL,
                Mode::from_raw_mode(mode & 0o777),
            ) {
                Ok(fd) => {
                    // Exactly `mode`, whatever the umask.
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
                        .map_err(|e| io_err(path, e))?;
                    return Ok(Some(File::from(fd)));
                }
                Err(Errno::EXIST) => {} // created meanwhile: open it
                Err(e) => return Err(io_err(path, e)),
            }
        }
        Err(io_err(path, Errno::AGAIN))
    }
}

/// Temp files of [`Root::write`] start with this. One bootcfg runs per root at a time (a lock in
/// the agent), so any such file found in a directory is left over from a killed run.
pub const TEMP_PREFIX: &str = ".bootcfg-";

/// A new temp file in `dir`, `O_EXCL`, mode 0600.
fn create_temp(dir: &OwnedFd) -> Result<(OwnedFd, OsString), Errno> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = rustix::process::getpid().as_raw_nonzero();
    for _ in 0..64 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = OsString::from(format!("{TEMP_PREFIX}{pid:x}-{n:x}-{nanos:08x}"));
        match rustix::fs::openat(
            dir,
            name.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => return Ok((fd, name)),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::EXIST)
}

/// Remove temp files left in `dir` (whose in-root components are `comps`) by a killed run.
fn sweep_stale_temps(dir: &OwnedFd, comps: &[OsString]) {
    let Ok(entries) = rustix::fs::Dir::read_from(dir) else {
        return;
    };
    let mut stale = Vec::new();
    for ent in entries.flatten() {
        let name = ent.file_name();
        if name.to_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
            stale.push(OsString::from_vec(name.to_bytes().to_vec()));
        }
    }
    for name in stale {
        let is_file = rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile);
        if is_file {
            let shown: PathBuf = Path::new("/")
                .join(comps.iter().collect::<PathBuf>())
                .join(&name);
            tracing::info!(path = %shown.display(), "removing a temp file left by an interrupted run");
            let _ = rustix::fs::unlinkat(dir, name.as_os_str(), AtFlags::empty());
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
    use std::fs;
    use std::os::unix::fs::{MetadataExt, symlink};
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    fn root() -> (tempfile::TempDir, Root) {
        let d = tempfile::tempdir().unwrap();
        let r = Root::new(d.path()).unwrap();
        (d, r)
    }

    #[test]
    fn sync_works_from_the_roots_path_only_fd() {
        // syncfs refuses an O_PATH fd (EBADF): sync reopens the root for reading first
        let (_d, r) = root();
        assert_eq!(
            rustix::fs::syncfs(&*r.fd),
            Err(Errno::BADF),
            "the root's own fd is O_PATH"
        );
        r.write("/etc/x", b"data", 0o644).unwrap();
        r.sync().unwrap();
    }

    impl Root {
        /// Test-only switch: never use `openat2`, only the walker's fds.
        fn walker_only(mut self) -> Root {
            self.walker_only = true;
            self
        }
    }

    /// Every file under `dir`, recursively (symlinks not followed).
    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap().flatten() {
                out.push(e.path());
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
            }
        }
        out
    }

    /// Each test body runs twice: `kernel` (openat2 with RESOLVE_IN_ROOT; skipped with a message
    /// when the kernel lacks it) and `walker` (the fallback, forced).
    macro_rules! both_paths {
        ($(fn $name:ident($d:ident, $r:ident) $body:block)*) => {$(
            mod $name {
                use super::*;

                fn body($d: &Path, $r: Root) $body

                #[test]
                fn kernel() {
                    let (d, r) = root();
                    if !r.uses_openat2() {
                        eprintln!("openat2 is unavailable here: kernel variant skipped");
                        return;
                    }
                    body(d.path(), r);
                }

                #[test]
                fn walker() {
                    let (d, r) = root();
                    let r = r.walker_only();
                    assert!(!r.uses_openat2());
                    body(d.path(), r);
                }
            }
        )*};
    }

    #[test]
    fn openat2_is_detected_on_linux_5_6_and_later() {
        let (_d, r) = root();
        let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut v = release
            .split(['.', '-'])
            .map(|x| x.parse::<u32>().unwrap_or(0));
        let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
        if (major, minor) >= (5, 6) && r.uses_openat2() {
            assert_eq!(
                OPENAT2.load(Ordering::Relaxed),
                1,
                "the probe result is cached"
            );
        } else {
            eprintln!("kernel {release}: openat2 unavailable (or filtered), fallback in use");
        }
    }

    both_paths! {
        fn write_creates_parents_sets_mode_and_replaces(d, r) {
            r.write("/etc/apt/apt.conf.d/90x", b"one\n", 0o600).unwrap();
            let host = d.join("etc/apt/apt.conf.d/90x");
            assert_eq!(fs::read(&host).unwrap(), b"one\n");
            assert_eq!(fs::metadata(&host).unwrap().mode() & 0o7777, 0o600);
            r.write("/etc/apt/apt.conf.d/90x", b"two\n", 0o644).unwrap();
            assert_eq!(fs::read(&host).unwrap(), b"two\n");
            assert_eq!(fs::metadata(&host).unwrap().mode() & 0o7777, 0o644);
            // no temp files left behind
            let names = r.list_dir("/etc/apt/apt.conf.d").unwrap();
            assert_eq!(names, vec!["90x".to_owned()]);
        }

        fn temp_files_left_by_a_killed_run_are_swept(d, r) {
            fs::create_dir_all(d.join("etc")).unwrap();
            fs::write(d.join("etc/.bootcfg-AbC123"), "half").unwrap();
            r.write("/etc/x", b"x", 0o644).unwrap();
            assert_eq!(r.list_dir("/etc").unwrap(), vec!["x".to_owned()]);
        }

        fn relative_symlink_escaping_the_root_is_refused(d, r) {
            let outside = tempfile::tempdir().unwrap();
            fs::create_dir_all(d.join("etc/apt")).unwrap();
            // etc/apt/sources.list.d -> ../../../<outside>
            let depth = "../".repeat(d.components().count() + 2);
            symlink(
                format!("{depth}{}", outside.path().display()),
                d.join("etc/apt/sources.list.d"),
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

        fn dotdot_in_path_above_root_is_refused(_d, r) {
            assert!(matches!(
                r.resolve("/../etc/passwd"),
                Err(RootError::Escape { .. })
            ));
            assert!(matches!(
                r.resolve("etc/passwd"),
                Err(RootError::NotAbsolute { .. })
            ));
            assert!(matches!(
                r.write("/etc/../../tmp/x", b"x", 0o644),
                Err(RootError::Escape { .. })
            ));
            assert!(matches!(r.read("/../etc/passwd"), Err(RootError::Escape { .. })));
            assert!(!r.exists("/../etc/passwd"));
        }

        fn escape_by_dotdot_symlink_chain_is_refused(d, r) {
            let outside = tempfile::tempdir().unwrap();
            fs::create_dir_all(d.join("a/b/c")).unwrap();
            // up1 -> ../.. from /a/b: /; then up2 -> up1/.. climbs above the root.
            symlink("../..", d.join("a/b/up1")).unwrap();
            symlink("b/up1/..", d.join("a/up2")).unwrap();
            // chain of relative links, each one step up, one more step than the root is deep
            let deep = d.components().count() + 1;
            symlink("../../..", d.join("a/b/c/l0")).unwrap();
            for i in 1..deep {
                symlink(format!("l{}/..", i - 1), d.join(format!("a/b/c/l{i}"))).unwrap();
            }
            let last = format!("/a/b/c/l{}", deep - 1);
            let target = format!("{last}{}/x", outside.path().display());
            for p in ["/a/up2/x", "/a/up2/etc/passwd", &target] {
                let err = r.write(p, b"x", 0o644).unwrap_err();
                assert!(matches!(err, RootError::Escape { .. }), "{p}: {err}");
                assert!(matches!(r.read(p), Err(RootError::Escape { .. })), "{p}");
                assert!(matches!(r.ensure_dir(p, 0o755), Err(RootError::Escape { .. })));
                assert!(matches!(r.remove(p), Err(RootError::Escape { .. })));
            }
            assert!(files_under(outside.path()).is_empty(), "nothing written outside");
            // staying inside through `..` is fine: /a/b/up1 is the root itself
            r.write("/a/b/up1/inside", b"ok", 0o644).unwrap();
            assert_eq!(fs::read(d.join("inside")).unwrap(), b"ok");
        }

        fn absolute_symlink_is_rerooted_not_followed_to_the_host(d, r) {
            let outside = tempfile::tempdir().unwrap();
            fs::create_dir_all(d.join("etc")).unwrap();
            // etc/puppet -> /<outside>/puppet : inside a chroot that means <root>/<outside>/puppet
            symlink(outside.path().join("puppet"), d.join("etc/puppet")).unwrap();
            r.write("/etc/puppet/puppet.conf", b"[main]\n", 0o644)
                .unwrap();
            assert!(
                !outside.path().join("puppet").exists(),
                "host path untouched"
            );
            let inside = d
                .join(outside.path().strip_prefix("/").unwrap())
                .join("puppet/puppet.conf");
            assert_eq!(fs::read(inside).unwrap(), b"[main]\n");
        }

        fn escape_by_absolute_symlink_to_existing_host_dir_is_rerooted(d, r) {
            let outside = tempfile::tempdir().unwrap();
            fs::write(outside.path().join("secret"), "host").unwrap();
            fs::create_dir_all(d.join("etc")).unwrap();
            // /etc/foo -> <outside> (which exists on the host, not in the root)
            symlink(outside.path(), d.join("etc/foo")).unwrap();
            assert_eq!(r.read("/etc/foo/secret").unwrap(), None, "host file not read");
            assert!(!r.exists("/etc/foo/secret"));
            assert_eq!(r.mode("/etc/foo/secret").unwrap(), None);
            assert!(r.list_dir("/etc/foo").unwrap().is_empty());
            assert!(!r.remove("/etc/foo/secret").unwrap());
            r.write("/etc/foo/new", b"in", 0o644).unwrap();
            r.ensure_dir("/etc/foo/sub", 0o700).unwrap();
            r.open_lock_file("/etc/foo/lock", 0o600).unwrap();
            assert_eq!(
                fs::read_dir(outside.path()).unwrap().count(),
                1,
                "only the host's own file is there"
            );
            assert_eq!(fs::read_to_string(outside.path().join("secret")).unwrap(), "host");
            let inside = d.join(outside.path().strip_prefix("/").unwrap());
            assert_eq!(fs::read(inside.join("new")).unwrap(), b"in");
            assert!(inside.join("sub").is_dir());
            assert!(inside.join("lock").is_file());
            // and an absolute link to an in-root file works as in a chroot (/etc/foo -> /usr/share/foo)
            fs::create_dir_all(d.join("usr/share")).unwrap();
            fs::write(d.join("usr/share/foo"), "pkg").unwrap();
            symlink("/usr/share/foo", d.join("etc/bar")).unwrap();
            assert_eq!(r.read("/etc/bar").unwrap().unwrap(), b"pkg");
            r.write("/etc/bar", b"local", 0o644).unwrap();
            assert!(fs::symlink_metadata(d.join("etc/bar")).unwrap().file_type().is_symlink());
            assert_eq!(fs::read(d.join("usr/share/foo")).unwrap(), b"local");
        }

        fn escape_by_symlink_to_proc_self_root_stays_inside(d, r) {
            let outside = tempfile::tempdir().unwrap();
            fs::create_dir_all(d.join("etc")).unwrap();
            // etc/x -> /proc/self/root/<outside>: in the root, /proc/self/root is <root>/proc/...
            symlink(
                Path::new("/proc/self/root").join(outside.path().strip_prefix("/").unwrap()),
                d.join("etc/x"),
            )
            .unwrap();
            r.write("/etc/x/f", b"x", 0o644).unwrap();
            assert!(files_under(outside.path()).is_empty(), "nothing written outside");
            let inside = d
                .join("proc/self/root")
                .join(outside.path().strip_prefix("/").unwrap())
                .join("f");
            assert_eq!(fs::read(inside).unwrap(), b"x");
        }

        fn relative_symlink_inside_root_is_followed(d, r) {
            fs::create_dir_all(d.join("usr/lib")).unwrap();
            fs::write(d.join("usr/lib/os-release"), "ID=debian\n").unwrap();
            fs::create_dir_all(d.join("etc")).unwrap();
            symlink("../usr/lib/os-release", d.join("etc/os-release")).unwrap();
            assert_eq!(r.read("/etc/os-release").unwrap().unwrap(), b"ID=debian\n");
        }

        fn symlink_loop_is_an_error(d, r) {
            symlink("b", d.join("a")).unwrap();
            symlink("a", d.join("b")).unwrap();
            assert!(matches!(r.resolve("/a/x"), Err(RootError::Loop { .. })));
            assert!(matches!(r.write("/a/x", b"", 0o644), Err(RootError::Loop { .. })));
        }

        fn remove_and_read_missing(_d, r) {
            assert_eq!(r.read("/nope").unwrap(), None);
            assert_eq!(r.read("/nope/deeper").unwrap(), None);
            assert!(!r.remove("/nope").unwrap());
            r.write("/f", b"x", 0o644).unwrap();
            assert!(r.remove("/f").unwrap());
            assert!(!r.exists("/f"));
            assert!(r.exists("/"));
            assert_eq!(r.list_dir("/").unwrap(), Vec::<String>::new());
        }

        fn write_is_atomic_temp_then_rename(d, r) {
            r.write("/etc/hosts", b"old\n", 0o644).unwrap();
            let host = d.join("etc/hosts");
            let old_ino = fs::metadata(&host).unwrap().ino();
            let mut held = fs::File::open(&host).unwrap();
            r.write("/etc/hosts", b"new contents\n", 0o644).unwrap();
            // the old inode was never truncated or rewritten in place: it was replaced
            let mut s = String::new();
            held.read_to_string(&mut s).unwrap();
            assert_eq!(s, "old\n");
            assert_ne!(fs::metadata(&host).unwrap().ino(), old_ino);
            assert_eq!(fs::read(&host).unwrap(), b"new contents\n");
            // a failed rename (a directory in the way) leaves no temp file and nothing half-done
            fs::create_dir_all(d.join("etc/dir")).unwrap();
            assert!(r.write("/etc/dir", b"x", 0o644).is_err());
            assert_eq!(r.list_dir("/etc").unwrap(), vec!["dir".to_owned(), "hosts".to_owned()]);
            assert!(r.write("/", b"x", 0o644).is_err());
        }

        fn modes_are_exact_whatever_the_umask(d, r) {
            for mode in [0o600, 0o640, 0o644, 0o755, 0o700, 0o4755] {
                r.write("/usr/local/bin/x", b"#!/bin/sh\n", mode).unwrap();
                let md = fs::metadata(d.join("usr/local/bin/x")).unwrap();
                assert_eq!(md.mode() & 0o7777, mode, "{mode:o}");
                assert_eq!(r.mode("/usr/local/bin/x").unwrap(), Some(mode));
                if rustix::process::geteuid().is_root() {
                    assert_eq!((md.uid(), md.gid()), (0, 0));
                }
            }
            r.ensure_dir("/etc/ssl/private", 0o710).unwrap();
            assert_eq!(fs::metadata(d.join("etc/ssl/private")).unwrap().mode() & 0o7777, 0o710);
            assert_eq!(fs::metadata(d.join("etc/ssl")).unwrap().mode() & 0o7777, 0o755);
            r.ensure_dir("/etc/ssl/private", 0o700).unwrap();
            assert_eq!(r.mode("/etc/ssl/private").unwrap(), Some(0o700));
            assert_eq!(r.mode("/nope").unwrap(), None);
        }

        fn lock_file_is_created_with_its_mode_and_reopened(d, r) {
            let f = r.open_lock_file("/var/lib/bootcfg/lock", 0o600).unwrap();
            let host = d.join("var/lib/bootcfg/lock");
            assert_eq!(fs::metadata(&host).unwrap().mode() & 0o7777, 0o600);
            rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
            // a second open description of the same file conflicts (flock is per open file)
            let g = r.open_lock_file("/var/lib/bootcfg/lock", 0o644).unwrap();
            assert!(
                rustix::fs::flock(&g, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err()
            );
            assert_eq!(fs::metadata(&host).unwrap().mode() & 0o7777, 0o600, "mode kept");
            assert!(r.open_existing_lock_file("/var/lib/dpkg/lock").unwrap().is_none());
            assert!(!d.join("var/lib/dpkg").exists(), "nothing created for a missing lock");
            assert!(r.open_existing_lock_file("/var/lib/bootcfg/lock").unwrap().is_some());
        }

        fn escape_by_lock_file_symlink_to_host_file_is_rerooted(d, r) {
            let outside = tempfile::tempdir().unwrap();
            let host_file = outside.path().join("lock");
            fs::create_dir_all(d.join("var/lib/dpkg")).unwrap();
            symlink(&host_file, d.join("var/lib/dpkg/lock")).unwrap();
            assert!(r.open_existing_lock_file("/var/lib/dpkg/lock").unwrap().is_none());
            r.open_lock_file("/var/lib/dpkg/lock", 0o640).unwrap();
            assert!(!host_file.exists(), "no lock file created outside the root");
        }

        fn escape_by_dir_swapped_for_symlink_to_outside_races_writes(d, r) {
            race_dir_swapped_for_symlink(d, &r);
        }
    }

    /// A procfs mounted in the root (bootcfg mounts one for chrooted commands) holds magic links:
    /// `/proc/<pid>/root` jumps to the *host's* `/` whatever `readlink` says. Use `/proc/<pid>`
    /// itself as the root, so `/root` in it is such a link.
    fn magic_link_is_not_jumped_through(r: &Root) {
        // Jumping would reach the host's /proc/version; chroot-style it is <root>/proc/version.
        for p in [
            "/root/proc/version",
            "/cwd/proc/version",
            "/root/../root/proc/version",
        ] {
            assert!(
                !matches!(r.read(p), Ok(Some(_))),
                "{p}: read through a magic link"
            );
            assert!(!r.exists(p), "{p}");
        }
        assert!(r.list_dir("/root/proc").unwrap_or_default().is_empty());
    }

    #[test]
    fn escape_by_proc_self_root_magic_link_kernel() {
        let r = Root::new(Path::new("/proc/self")).unwrap();
        if !r.uses_openat2() {
            eprintln!("openat2 is unavailable here: kernel variant skipped");
            return;
        }
        magic_link_is_not_jumped_through(&r);
        // and the kernel itself refuses the magic link under RESOLVE_IN_ROOT | NO_MAGICLINKS
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        for p in ["root/proc", "root", "cwd"] {
            let res = rustix::fs::openat2(r.fd.as_fd(), p, flags, Mode::empty(), RESOLVE);
            assert!(res.is_err(), "{p}: openat2 went through a magic link");
        }
    }

    #[test]
    fn escape_by_proc_self_root_magic_link_walker() {
        let r = Root::new(Path::new("/proc/self")).unwrap().walker_only();
        magic_link_is_not_jumped_through(&r);
        // the walker reads the link as the plain symlink `/`: the root itself
        assert_eq!(r.resolve("/root/status").unwrap(), r.path().join("status"));
    }

    /// A directory component of the target is swapped (atomically, `RENAME_EXCHANGE`) with a
    /// symlink to a host directory outside the root, over and over, while another thread
    /// writes, creates, reads and removes through it. Nothing may ever land outside.
    fn race_dir_swapped_for_symlink(d: &Path, r: &Root) {
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.join("etc/apt")).unwrap();
        symlink(outside.path(), d.join("etc/apt.evil")).unwrap();
        let swap = |a: &Path, b: &Path| {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                a,
                rustix::fs::CWD,
                b,
                rustix::fs::RenameFlags::EXCHANGE,
            )
        };
        let (a, b) = (d.join("etc/apt"), d.join("etc/apt.evil"));
        if let Err(e) = swap(&a, &b) {
            eprintln!("renameat2(RENAME_EXCHANGE) unsupported here ({e}): race test skipped");
            return;
        }
        swap(&a, &b).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut swaps = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    swap(&a, &b).unwrap();
                    swaps += 1;
                }
                swaps
            })
        };
        let deadline = Instant::now() + Duration::from_millis(1500);
        let (mut i, mut ok) = (0u64, 0u64);
        while Instant::now() < deadline {
            let p = format!("/etc/apt/sources.list.d/f{}", i % 8);
            if r.write(&p, b"deb x\n", 0o644).is_ok() {
                ok += 1;
            }
            let _ = r.ensure_dir("/etc/apt/trusted.gpg.d", 0o755);
            let _ = r.open_lock_file("/etc/apt/lock", 0o640);
            let _ = r.read(&p);
            let _ = r.remove(&format!("/etc/apt/sources.list.d/f{}", (i + 3) % 8));
            i += 1;
            // nothing outside, checked as we go
            assert!(
                fs::read_dir(outside.path()).unwrap().next().is_none(),
                "a file landed outside the root after {i} rounds"
            );
        }
        stop.store(true, Ordering::Relaxed);
        let swaps = swapper.join().unwrap();
        assert!(
            files_under(outside.path()).is_empty(),
            "nothing written outside the root"
        );
        assert!(swaps > 100, "the swapper ran ({swaps} swaps)");
        assert!(ok > 0, "some writes went through ({ok} of {i})");
    }
}
