//! Where user-data and the instance's identity come from.
//!
//! - [`Datasource::File`]: `--user-data FILE` (instance id from `--instance-id`).
//! - [`Datasource::Seed`]: a NoCloud seed directory holding `user-data` and `meta-data`
//!   (YAML with `instance-id` and `local-hostname`) that the operator named (`--seed-dir`, a host
//!   path).
//! - [`Datasource::RootSeed`]: the image's own seed directory, `<root>/var/lib/cloud/seed/nocloud`,
//!   read through [`Root`] like every other file of the image: a symlink in it (to the host's
//!   files, say) is refused, never followed.
//! - [`Datasource::Imds`]: EC2 IMDSv2 ([`crate::imds`]).
//!
//! "No user-data" (IMDS 404, a missing seed `user-data` file, an empty file) is `None`, not an
//! error: bootcfg then has nothing to do and exits 0.

use crate::rootfs::Root;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datasource {
    File(PathBuf),
    Seed(PathBuf),
    /// [`crate::args::SEED_DIR`] inside the root; the path is how the host sees it (for messages).
    RootSeed(PathBuf),
    Imds(String),
}

impl Datasource {
    /// A short name for logs, diagnostics and the result file.
    pub fn describe(&self) -> String {
        match self {
            Datasource::File(p) => format!("file:{}", p.display()),
            Datasource::Seed(p) | Datasource::RootSeed(p) => format!("nocloud:{}", p.display()),
            Datasource::Imds(u) => format!("imds:{u}"),
        }
    }
}

/// What a datasource delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    /// How diagnostics name the user-data (`/path/user-data`, `imds:user-data`).
    pub name: String,
    pub user_data: Option<Vec<u8>>,
    pub instance_id: Option<String>,
    pub hostname: Option<String>,
    /// IMDS `dynamic/instance-identity/rsa2048` on one line (see [`crate::imds::Metadata`]);
    /// `None` for [`Datasource::File`] and [`Datasource::Seed`], and on an IMDS 404.
    pub identity_rsa2048: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasourceError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    MetaData { path: String, message: String },
    #[error(transparent)]
    Imds(#[from] crate::imds::ImdsError),
    #[error("the image's seed directory: {0}")]
    InRoot(#[from] crate::rootfs::RootError),
}

pub struct FetchOptions {
    pub imds_budget: Duration,
    pub imds_request_timeout: Duration,
}

fn read_opt(path: &std::path::Path) -> Result<Option<Vec<u8>>, DatasourceError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DatasourceError::Read {
            path: path.display().to_string(),
            source: e,
        }),
    }
}

/// Fetch from `ds`; `root` is the image, which [`Datasource::RootSeed`] reads through.
pub fn fetch(
    ds: &Datasource,
    root: &Root,
    opts: &FetchOptions,
) -> Result<Fetched, DatasourceError> {
    match ds {
        Datasource::File(p) => {
            let b = std::fs::read(p).map_err(|e| DatasourceError::Read {
                path: p.display().to_string(),
                source: e,
            })?;
            Ok(Fetched {
                name: p.display().to_string(),
                user_data: Some(b),
                instance_id: None,
                hostname: None,
                identity_rsa2048: None,
            })
        }
        Datasource::Seed(dir) => seed(&|f| dir.join(f).display().to_string(), &|f| {
            read_opt(&dir.join(f))
        }),
        Datasource::RootSeed(host) => seed(&|f| host.join(f).display().to_string(), &|f| {
            Ok(root.read(&format!("{}/{f}", crate::args::SEED_DIR))?)
        }),
        Datasource::Imds(url) => {
            let c = crate::imds::Imds::new(url, opts.imds_budget, opts.imds_request_timeout)?;
            let md = c.metadata()?;
            Ok(Fetched {
                name: "imds:user-data".into(),
                user_data: md.user_data,
                instance_id: Some(md.instance_id),
                hostname: md.local_hostname,
                identity_rsa2048: md.identity_rsa2048,
            })
        }
    }
}

/// Reads one file of a seed directory by name; `Ok(None)` when it is missing.
type SeedReader<'a> = dyn Fn(&str) -> Result<Option<Vec<u8>>, DatasourceError> + 'a;

/// A NoCloud seed: `user-data` (optional) and `meta-data` (required, with `instance-id`), read
/// with `read` and named in messages by `name`.
fn seed(name: &dyn Fn(&str) -> String, read: &SeedReader<'_>) -> Result<Fetched, DatasourceError> {
    let user_data = read("user-data")?;
    let md_path = name("meta-data");
    let md = read("meta-data")?.ok_or_else(|| DatasourceError::MetaData {
        path: md_path.clone(),
        message: "missing; a NoCloud seed needs `meta-data` with `instance-id: …`".into(),
    })?;
    let v: serde_yaml_ng::Value = if md.iter().all(u8::is_ascii_whitespace) {
        serde_yaml_ng::Value::Null
    } else {
        serde_yaml_ng::from_slice(&md).map_err(|e| DatasourceError::MetaData {
            path: md_path.clone(),
            message: format!("not YAML: {e}"),
        })?
    };
    let get = |k: &str| {
        v.get(k).and_then(|x| match x {
            serde_yaml_ng::Value::String(s) => Some(s.clone()),
            serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let instance_id = get("instance-id").ok_or_else(|| DatasourceError::MetaData {
        path: md_path.clone(),
        message: "no `instance-id`; add a line `instance-id: iid-…`".into(),
    })?;
    Ok(Fetched {
        name: name("user-data"),
        user_data,
        instance_id: Some(instance_id),
        hostname: get("local-hostname").or_else(|| get("hostname")),
        identity_rsa2048: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Root {
        Root::new(std::path::Path::new("/")).unwrap()
    }

    fn opts() -> FetchOptions {
        FetchOptions {
            imds_budget: Duration::from_secs(1),
            imds_request_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn seed_reads_meta_data_and_missing_user_data_is_none() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("meta-data"),
            "instance-id: iid-feas-1\nlocal-hostname: feas-node\n",
        )
        .unwrap();
        let f = fetch(&Datasource::Seed(d.path().into()), &host(), &opts()).unwrap();
        assert_eq!(f.instance_id.as_deref(), Some("iid-feas-1"));
        assert_eq!(f.hostname.as_deref(), Some("feas-node"));
        assert_eq!(f.user_data, None);
        assert_eq!(
            f.identity_rsa2048, None,
            "only IMDS serves an identity document"
        );
        std::fs::write(d.path().join("user-data"), "#cloud-config\n").unwrap();
        assert!(
            fetch(&Datasource::Seed(d.path().into()), &host(), &opts())
                .unwrap()
                .user_data
                .is_some()
        );
    }

    #[test]
    fn seed_without_instance_id_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("meta-data"), "local-hostname: x\n").unwrap();
        let e = fetch(&Datasource::Seed(d.path().into()), &host(), &opts())
            .unwrap_err()
            .to_string();
        assert!(e.contains("instance-id"), "{e}");
    }

    /// The image's own seed directory is read inside the root: a `user-data` or `meta-data`
    /// that is a symlink to an absolute path (as a hostile image would plant to make bootcfg read
    /// the host's files) resolves inside the image, as it would on the instance, never on the
    /// host.
    #[test]
    fn the_images_seed_is_read_through_the_root_never_the_host() {
        let r = tempfile::tempdir().unwrap();
        let dir = r.path().join("var/lib/cloud/seed/nocloud");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("meta-data"), "instance-id: iid-root-1\n").unwrap();
        std::fs::write(dir.join("user-data"), "#cloud-config\n").unwrap();
        let root = Root::new(r.path()).unwrap();
        let ds = Datasource::RootSeed(dir.clone());
        let f = fetch(&ds, &root, &opts()).unwrap();
        assert_eq!(f.instance_id.as_deref(), Some("iid-root-1"));
        assert_eq!(f.user_data.as_deref(), Some(&b"#cloud-config\n"[..]));

        // A host file the image's symlinks point at.
        let host_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(host_file.path(), "instance-id: host-secret\n").unwrap();
        std::fs::remove_file(dir.join("user-data")).unwrap();
        std::os::unix::fs::symlink(host_file.path(), dir.join("user-data")).unwrap();
        let f = fetch(&ds, &root, &opts()).unwrap();
        assert_eq!(f.user_data, None, "the host's file is not the image's");
        // The same path inside the image is what the instance would read.
        let inside = r.path().join(host_file.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::fs::write(&inside, "#cloud-config\n# the image's\n").unwrap();
        let f = fetch(&ds, &root, &opts()).unwrap();
        assert_eq!(
            f.user_data.as_deref(),
            Some(&b"#cloud-config\n# the image's\n"[..])
        );
        std::fs::remove_file(&inside).unwrap();

        std::fs::remove_file(dir.join("meta-data")).unwrap();
        std::os::unix::fs::symlink(host_file.path(), dir.join("meta-data")).unwrap();
        let e = fetch(&ds, &root, &opts()).unwrap_err().to_string();
        assert!(
            e.contains("meta-data") && e.contains("missing") && !e.contains("host-secret"),
            "{e}"
        );
    }
}
