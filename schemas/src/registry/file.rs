//! `file:///dir`: registrations as files under `<dir>/registrations/`, for single-host setups and
//! the local demo. The directory `<dir>` must exist; `registrations/` is created (mode 0700) on
//! the first write. Records are mode 0600.
//!
//! - create: temp file (`O_EXCL`, 0600, fsync), then `link(2)` to `<certname>.json`. `link` fails
//!   when the name exists, so two creators never both win and nothing is ever overwritten; readers
//!   see either no file or the whole record.
//! - update/delete: under an exclusive lock on `registrations/.lock` (`flock`), compare the SHA-256
//!   of the current bytes with the expected [`Version`], then rename a fsynced temp file over the
//!   record (or unlink it) and fsync the directory.

use super::{
    Registry, RegistryError, Version, checked, checked_group, checked_holder, checked_instance,
    checked_retired, valid_group, valid_member, valid_retirement,
};
use crate::group::{EnrollmentGroup, Member};
use crate::registration::{Registration, check_certname, sha256_hex};
use crate::retirement::Retirement;
use async_trait::async_trait;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The file backend. Cheap to clone; all I/O runs on tokio's blocking pool.
#[derive(Debug, Clone)]
pub struct FileRegistry {
    dir: PathBuf,
}

impl FileRegistry {
    /// A registry rooted at the absolute directory `dir` (not touched until first use).
    pub fn new(dir: PathBuf) -> Result<Self, RegistryError> {
        if !dir.is_absolute() {
            return Err(RegistryError::BadLocation(format!(
                "file://{}",
                dir.display()
            )));
        }
        Ok(FileRegistry { dir })
    }

    fn loc(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    fn regdir(&self) -> PathBuf {
        self.dir.join("registrations")
    }

    fn path(&self, certname: &str) -> PathBuf {
        self.regdir().join(format!("{certname}.json"))
    }

    fn io_err(&self, what: &str, path: &Path, e: std::io::Error) -> RegistryError {
        if e.kind() == ErrorKind::PermissionDenied {
            RegistryError::AccessDenied {
                location: self.loc(),
            }
        } else {
            RegistryError::Other {
                location: self.loc(),
                reason: format!("{what} {}: {e}", path.display()),
            }
        }
    }

    /// The base directory must exist: a typo in `registry:` must not start a second, empty registry.
    fn ensure_base(&self) -> Result<(), RegistryError> {
        match fs::metadata(&self.dir) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(RegistryError::Other {
                location: self.loc(),
                reason: format!("{} is not a directory", self.dir.display()),
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(RegistryError::Other {
                location: self.loc(),
                reason: format!(
                    "directory {} does not exist; create it (install -d -m 0700 {}) or fix `registry:` in the config",
                    self.dir.display(),
                    self.dir.display()
                ),
            }),
            Err(e) => Err(self.io_err("reading", &self.dir, e)),
        }
    }

    fn ensure_regdir(&self) -> Result<PathBuf, RegistryError> {
        self.ensure_base()?;
        let regdir = self.regdir();
        match DirBuilder::new().mode(0o700).create(&regdir) {
            Ok(()) => {
                fsync_dir(&self.dir).map_err(|e| self.io_err("syncing", &self.dir, e))?;
                Ok(regdir)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(regdir),
            Err(e) => Err(self.io_err("creating", &regdir, e)),
        }
    }

    /// Write `bytes` to a fresh temp file in `regdir` (0600, fsynced) and return its path.
    fn write_temp(
        &self,
        regdir: &Path,
        certname: &str,
        bytes: &[u8],
    ) -> Result<PathBuf, RegistryError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = regdir.join(format!(
            ".tmp-{certname}-{}-{n}-{nanos}",
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(self.io_err("writing", &tmp, e));
        }
        Ok(tmp)
    }

    /// An exclusive lock over updates and deletes, released when the returned file is dropped.
    fn lock(&self, regdir: &Path) -> Result<File, RegistryError> {
        let path = regdir.join(".lock");
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| self.io_err("opening", &path, e))?;
        f.lock().map_err(|e| self.io_err("locking", &path, e))?;
        Ok(f)
    }

    fn read(&self, certname: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let path = self.path(certname);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.ensure_base()?;
                Ok(None)
            }
            Err(e) => Err(self.io_err("reading", &path, e)),
        }
    }

    fn create_blocking(&self, record: &Registration) -> Result<Version, RegistryError> {
        checked(self, &record.certname)?;
        let regdir = self.ensure_regdir()?;
        let bytes = record.to_json();
        let tmp = self.write_temp(&regdir, &record.certname, &bytes)?;
        let dest = self.path(&record.certname);
        let linked = fs::hard_link(&tmp, &dest);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(RegistryError::AlreadyExists(record.certname.clone()));
            }
            Err(e) => return Err(self.io_err("creating", &dest, e)),
        }
        fsync_dir(&regdir).map_err(|e| self.io_err("syncing", &regdir, e))?;
        Ok(Version(sha256_hex(&bytes)))
    }

    fn claim_blocking(&self, instance_id: &str, certname: &str) -> Result<String, RegistryError> {
        checked_instance(self, instance_id)?;
        checked_holder(self, certname)?;
        self.ensure_base()?;
        let dir = self.dir.join("instances");
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => fsync_dir(&self.dir).map_err(|e| self.io_err("syncing", &self.dir, e))?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(self.io_err("creating", &dir, e)),
        }
        let dest = dir.join(instance_id);
        let tmp = self.write_temp(&dir, instance_id, certname.as_bytes())?;
        let linked = fs::hard_link(&tmp, &dest);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                fsync_dir(&dir).map_err(|e| self.io_err("syncing", &dir, e))?;
                Ok(certname.to_owned())
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => fs::read_to_string(&dest)
                .map(|h| h.trim().to_owned())
                .map_err(|e| self.io_err("reading", &dest, e)),
            Err(e) => Err(self.io_err("creating", &dest, e)),
        }
    }

    fn get_blocking(
        &self,
        certname: &str,
    ) -> Result<Option<(Registration, Version)>, RegistryError> {
        checked(self, certname)?;
        let Some(bytes) = self.read(certname)? else {
            return Ok(None);
        };
        let record =
            Registration::from_json(certname, &bytes).map_err(|e| RegistryError::Corrupt {
                location: self.loc(),
                key: self.path(certname).display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(Some((record, Version(sha256_hex(&bytes)))))
    }

    fn update_blocking(
        &self,
        record: &Registration,
        expected: &Version,
    ) -> Result<Version, RegistryError> {
        checked(self, &record.certname)?;
        let regdir = self.ensure_regdir()?;
        let _lock = self.lock(&regdir)?;
        let Some(current) = self.read(&record.certname)? else {
            return Err(RegistryError::NotFound(record.certname.clone()));
        };
        if sha256_hex(&current) != expected.0 {
            return Err(RegistryError::Conflict(record.certname.clone()));
        }
        let bytes = record.to_json();
        let tmp = self.write_temp(&regdir, &record.certname, &bytes)?;
        let dest = self.path(&record.certname);
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(self.io_err("replacing", &dest, e));
        }
        fsync_dir(&regdir).map_err(|e| self.io_err("syncing", &regdir, e))?;
        Ok(Version(sha256_hex(&bytes)))
    }

    fn delete_blocking(&self, certname: &str) -> Result<(), RegistryError> {
        checked(self, certname)?;
        let regdir = self.ensure_regdir()?;
        let _lock = self.lock(&regdir)?;
        let path = self.path(certname);
        match fs::remove_file(&path) {
            Ok(()) => fsync_dir(&regdir).map_err(|e| self.io_err("syncing", &regdir, e)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io_err("removing", &path, e)),
        }
    }

    fn list_blocking(&self) -> Result<Vec<String>, RegistryError> {
        self.ensure_base()?;
        let regdir = self.regdir();
        let entries = match fs::read_dir(&regdir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io_err("listing", &regdir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io_err("listing", &regdir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue; // .lock and in-flight temp files
            }
            match name.strip_suffix(".json") {
                Some(stem) if check_certname(stem).is_ok() => names.push(stem.to_owned()),
                _ => {
                    tracing::warn!(registry = %self.loc(), file = name, "ignoring a file that is not a registration")
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn groups_dir(&self) -> PathBuf {
        self.dir.join("groups")
    }

    /// Create `dir` (mode 0700) if it is missing, fsyncing its parent when it was created.
    fn private_dir(&self, dir: &Path) -> Result<(), RegistryError> {
        match DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {
                let parent = dir.parent().unwrap_or(&self.dir);
                fsync_dir(parent).map_err(|e| self.io_err("syncing", parent, e))
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(self.io_err("creating", dir, e)),
        }
    }

    /// Create-only: `bytes` at `dest` unless something is there (`Ok(false)`).
    fn create_file(&self, dest: &Path, label: &str, bytes: &[u8]) -> Result<bool, RegistryError> {
        let dir = dest.parent().expect("a registry file has a directory");
        let tmp = self.write_temp(dir, label, bytes)?;
        let linked = fs::hard_link(&tmp, dest);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                fsync_dir(dir).map_err(|e| self.io_err("syncing", dir, e))?;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.io_err("creating", dest, e)),
        }
    }

    fn read_optional(&self, path: &Path) -> Result<Option<Vec<u8>>, RegistryError> {
        match fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.ensure_base()?;
                Ok(None)
            }
            Err(e) => Err(self.io_err("reading", path, e)),
        }
    }

    fn group_path(&self, name: &str) -> PathBuf {
        self.groups_dir().join(name).join("group.json")
    }

    fn slot_path(&self, group: &str, slot: u32) -> PathBuf {
        self.groups_dir()
            .join(group)
            .join("slots")
            .join(format!("{slot}.json"))
    }

    fn create_group_blocking(&self, group: &EnrollmentGroup) -> Result<Version, RegistryError> {
        checked_group(self, &group.name)?;
        valid_group(self, group)?;
        self.ensure_base()?;
        self.private_dir(&self.groups_dir())?;
        self.private_dir(&self.groups_dir().join(&group.name))?;
        let bytes = group.to_json();
        if self.create_file(&self.group_path(&group.name), &group.name, &bytes)? {
            Ok(Version(sha256_hex(&bytes)))
        } else {
            Err(RegistryError::GroupExists(group.name.clone()))
        }
    }

    fn get_group_blocking(
        &self,
        name: &str,
    ) -> Result<Option<(EnrollmentGroup, Version)>, RegistryError> {
        checked_group(self, name)?;
        let path = self.group_path(name);
        let Some(bytes) = self.read_optional(&path)? else {
            return Ok(None);
        };
        let group =
            EnrollmentGroup::from_json(name, &bytes).map_err(|e| RegistryError::Corrupt {
                location: self.loc(),
                key: path.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(Some((group, Version(sha256_hex(&bytes)))))
    }

    fn update_group_blocking(
        &self,
        group: &EnrollmentGroup,
        expected: &Version,
    ) -> Result<Version, RegistryError> {
        checked_group(self, &group.name)?;
        valid_group(self, group)?;
        self.ensure_base()?;
        self.private_dir(&self.groups_dir())?;
        let _lock = self.lock(&self.groups_dir())?;
        let path = self.group_path(&group.name);
        self.replace_if(&path, &group.name, expected, &group.to_json())?
            .map_err(|cas| match cas {
                Cas::Missing => RegistryError::NotFound(format!("group {}", group.name)),
                Cas::Conflict => RegistryError::GroupConflict(group.name.clone()),
            })
    }

    /// Under the caller's lock: replace `path` with `bytes` if its current bytes are at
    /// `expected` (temp file, rename, fsync the directory).
    fn replace_if(
        &self,
        path: &Path,
        label: &str,
        expected: &Version,
        bytes: &[u8],
    ) -> Result<Result<Version, Cas>, RegistryError> {
        let Some(current) = self.read_optional(path)? else {
            return Ok(Err(Cas::Missing));
        };
        if sha256_hex(&current) != expected.0 {
            return Ok(Err(Cas::Conflict));
        }
        let dir = path.parent().expect("a registry file has a directory");
        let tmp = self.write_temp(dir, label, bytes)?;
        if let Err(e) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            return Err(self.io_err("replacing", path, e));
        }
        fsync_dir(dir).map_err(|e| self.io_err("syncing", dir, e))?;
        Ok(Ok(Version(sha256_hex(bytes))))
    }

    fn list_groups_blocking(&self) -> Result<Vec<String>, RegistryError> {
        self.ensure_base()?;
        let dir = self.groups_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io_err("listing", &dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io_err("listing", &dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            if crate::group::check_group_name(&name).is_ok() && self.group_path(&name).exists() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn take_slot_blocking(&self, member: &Member) -> Result<bool, RegistryError> {
        valid_member(self, member)?;
        self.ensure_base()?;
        let gdir = self.groups_dir().join(&member.group);
        if !self.group_path(&member.group).exists() {
            return Err(RegistryError::NotFound(format!("group {}", member.group)));
        }
        self.private_dir(&gdir.join("slots"))?;
        self.create_file(
            &self.slot_path(&member.group, member.slot),
            &format!("{}-{}", member.group, member.slot),
            &member.to_json(),
        )
    }

    fn list_slots_blocking(&self, group: &str) -> Result<Vec<u32>, RegistryError> {
        checked_group(self, group)?;
        self.ensure_base()?;
        let dir = self.groups_dir().join(group).join("slots");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io_err("listing", &dir, e)),
        };
        let mut slots = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io_err("listing", &dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(n) = name.strip_suffix(".json").and_then(parse_slot) {
                slots.push(n);
            }
        }
        slots.sort_unstable();
        Ok(slots)
    }

    fn get_member_blocking(&self, group: &str, slot: u32) -> Result<Option<Member>, RegistryError> {
        checked_group(self, group)?;
        let path = self.slot_path(group, slot);
        let Some(bytes) = self.read_optional(&path)? else {
            return Ok(None);
        };
        Member::from_json(group, slot, &bytes)
            .map(Some)
            .map_err(|e| RegistryError::Corrupt {
                location: self.loc(),
                key: path.display().to_string(),
                reason: e.to_string(),
            })
    }

    fn retired_dir(&self) -> PathBuf {
        self.dir.join("retired")
    }

    fn retired_path(&self, certname: &str) -> PathBuf {
        self.retired_dir().join(format!("{certname}.json"))
    }

    fn retire_blocking(&self, r: &Retirement) -> Result<bool, RegistryError> {
        valid_retirement(self, r)?;
        self.ensure_base()?;
        self.private_dir(&self.retired_dir())?;
        self.create_file(&self.retired_path(&r.certname), &r.certname, &r.to_json())
    }

    fn get_retirement_blocking(
        &self,
        certname: &str,
    ) -> Result<Option<(Retirement, Version)>, RegistryError> {
        checked_retired(self, certname)?;
        let path = self.retired_path(certname);
        let Some(bytes) = self.read_optional(&path)? else {
            return Ok(None);
        };
        let r = Retirement::from_json(certname, &bytes).map_err(|e| RegistryError::Corrupt {
            location: self.loc(),
            key: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Some((r, Version(sha256_hex(&bytes)))))
    }

    fn update_retirement_blocking(
        &self,
        r: &Retirement,
        expected: &Version,
    ) -> Result<Version, RegistryError> {
        valid_retirement(self, r)?;
        self.ensure_base()?;
        let dir = self.retired_dir();
        self.private_dir(&dir)?;
        let _lock = self.lock(&dir)?;
        let path = self.retired_path(&r.certname);
        self.replace_if(&path, &r.certname, expected, &r.to_json())?
            .map_err(|cas| match cas {
                Cas::Missing => RegistryError::NotFound(format!("retirement {}", r.certname)),
                Cas::Conflict => RegistryError::Conflict(r.certname.clone()),
            })
    }

    fn list_retired_blocking(&self) -> Result<Vec<String>, RegistryError> {
        self.ensure_base()?;
        let dir = self.retired_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io_err("listing", &dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io_err("listing", &dir, e))?;
            let name = entry.file_name();
            if let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".json"))
                && crate::retirement::check_retired_certname(n).is_ok()
            {
                names.push(n.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn exposure_blocking(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for dir in [self.dir.clone(), self.regdir()] {
            match fs::metadata(&dir) {
                Ok(m) if m.mode() & 0o007 != 0 => warnings.push(format!(
                    "registry directory {} is accessible to every local user (mode {:04o}); anyone who can list it can race a \
                     new instance for its certificate: chmod o-rwx {}",
                    dir.display(),
                    m.mode() & 0o7777,
                    dir.display()
                )),
                Ok(_) => {}
                Err(e) => tracing::debug!(dir = %dir.display(), error = %e, "exposure check skipped"),
            }
        }
        warnings
    }
}

/// Why a compare-and-swap wrote nothing.
enum Cas {
    Missing,
    Conflict,
}

/// A slot number as written in a key: decimal, no leading zeros.
pub(super) fn parse_slot(s: &str) -> Option<u32> {
    (!s.is_empty() && s.len() <= 5 && (s == "0" || !s.starts_with('0')))
        .then(|| s.parse().ok())
        .flatten()
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

async fn blocking<T: Send + 'static>(
    reg: &FileRegistry,
    f: impl FnOnce(FileRegistry) -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    let r = reg.clone();
    tokio::task::spawn_blocking(move || f(r))
        .await
        .unwrap_or_else(|e| {
            Err(RegistryError::Other {
                location: reg.loc(),
                reason: format!("registry task failed: {e}"),
            })
        })
}

#[async_trait]
impl Registry for FileRegistry {
    fn location(&self) -> String {
        self.loc()
    }

    async fn claim_instance(
        &self,
        instance_id: &str,
        certname: &str,
    ) -> Result<String, RegistryError> {
        let (i, c) = (instance_id.to_owned(), certname.to_owned());
        blocking(self, move |r| r.claim_blocking(&i, &c)).await
    }

    async fn create(&self, record: &Registration) -> Result<Version, RegistryError> {
        let record = record.clone();
        blocking(self, move |r| r.create_blocking(&record)).await
    }

    async fn get(&self, certname: &str) -> Result<Option<(Registration, Version)>, RegistryError> {
        let certname = certname.to_owned();
        blocking(self, move |r| r.get_blocking(&certname)).await
    }

    async fn update(
        &self,
        record: &Registration,
        expected: &Version,
    ) -> Result<Version, RegistryError> {
        let (record, expected) = (record.clone(), expected.clone());
        blocking(self, move |r| r.update_blocking(&record, &expected)).await
    }

    async fn delete(&self, certname: &str) -> Result<(), RegistryError> {
        let certname = certname.to_owned();
        blocking(self, move |r| r.delete_blocking(&certname)).await
    }

    async fn list(&self) -> Result<Vec<String>, RegistryError> {
        blocking(self, |r| r.list_blocking()).await
    }

    async fn create_group(&self, group: &EnrollmentGroup) -> Result<Version, RegistryError> {
        let group = group.clone();
        blocking(self, move |r| r.create_group_blocking(&group)).await
    }

    async fn get_group(
        &self,
        name: &str,
    ) -> Result<Option<(EnrollmentGroup, Version)>, RegistryError> {
        let name = name.to_owned();
        blocking(self, move |r| r.get_group_blocking(&name)).await
    }

    async fn update_group(
        &self,
        group: &EnrollmentGroup,
        expected: &Version,
    ) -> Result<Version, RegistryError> {
        let (group, expected) = (group.clone(), expected.clone());
        blocking(self, move |r| r.update_group_blocking(&group, &expected)).await
    }

    async fn list_groups(&self) -> Result<Vec<String>, RegistryError> {
        blocking(self, |r| r.list_groups_blocking()).await
    }

    async fn take_slot(&self, member: &Member) -> Result<bool, RegistryError> {
        let member = member.clone();
        blocking(self, move |r| r.take_slot_blocking(&member)).await
    }

    async fn list_slots(&self, group: &str) -> Result<Vec<u32>, RegistryError> {
        let group = group.to_owned();
        blocking(self, move |r| r.list_slots_blocking(&group)).await
    }

    async fn get_member(&self, group: &str, slot: u32) -> Result<Option<Member>, RegistryError> {
        let group = group.to_owned();
        blocking(self, move |r| r.get_member_blocking(&group, slot)).await
    }

    async fn retire(&self, retirement: &Retirement) -> Result<bool, RegistryError> {
        let r = retirement.clone();
        blocking(self, move |reg| reg.retire_blocking(&r)).await
    }

    async fn get_retirement(
        &self,
        certname: &str,
    ) -> Result<Option<(Retirement, Version)>, RegistryError> {
        let c = certname.to_owned();
        blocking(self, move |reg| reg.get_retirement_blocking(&c)).await
    }

    async fn update_retirement(
        &self,
        retirement: &Retirement,
        expected: &Version,
    ) -> Result<Version, RegistryError> {
        let (r, v) = (retirement.clone(), expected.clone());
        blocking(self, move |reg| reg.update_retirement_blocking(&r, &v)).await
    }

    async fn list_retired(&self) -> Result<Vec<String>, RegistryError> {
        blocking(self, |reg| reg.list_retired_blocking()).await
    }

    async fn exposure_warnings(&self) -> Vec<String> {
        blocking(self, |r| Ok(r.exposure_blocking()))
            .await
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::sha256_hex;

    fn record(certname: &str) -> Registration {
        Registration::new(
            certname,
            &sha256_hex(b"secret"),
            "test@host",
            chrono::Utc::now(),
            chrono::Duration::minutes(30),
        )
    }

    const NAME: &str = "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11";

    #[tokio::test]
    async fn records_are_private_and_temp_files_do_not_linger() {
        let dir = tempfile::tempdir().unwrap();
        let reg = FileRegistry::new(dir.path().to_path_buf()).unwrap();
        reg.create(&record(NAME)).await.unwrap();
        let regdir = dir.path().join("registrations");
        assert_eq!(fs::metadata(&regdir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(regdir.join(format!("{NAME}.json")))
                .unwrap()
                .mode()
                & 0o777,
            0o600
        );
        let (mut r, v) = reg.get(NAME).await.unwrap().unwrap();
        r.instance_id = Some("i-0123".into());
        reg.update(&r, &v).await.unwrap();
        let mut left: Vec<String> = fs::read_dir(&regdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec![".lock".to_string(), format!("{NAME}.json")]);
    }

    #[tokio::test]
    async fn a_missing_base_directory_is_an_error_not_a_new_registry() {
        let dir = tempfile::tempdir().unwrap();
        let reg = FileRegistry::new(dir.path().join("typo")).unwrap();
        let err = reg.create(&record(NAME)).await.unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(reg.list().await.is_err());
        assert!(!dir.path().join("typo").exists());
    }

    #[tokio::test]
    async fn world_readable_directory_is_reported() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let reg = FileRegistry::new(dir.path().to_path_buf()).unwrap();
        let w = reg.exposure_warnings().await;
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("chmod o-rwx"), "{w:?}");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        assert!(reg.exposure_warnings().await.is_empty());
    }
}
