//! Where user-data and the instance's identity come from.
//!
//! - [`Datasource::File`]: `--user-data FILE` (instance id from `--instance-id`).
//! - [`Datasource::Seed`]: a NoCloud seed directory holding `user-data` and `meta-data`
//!   (YAML with `instance-id` and `local-hostname`), by default
//!   `<root>/var/lib/cloud/seed/nocloud`.
//! - [`Datasource::Imds`]: EC2 IMDSv2 ([`crate::imds`]).
//!
//! "No user-data" (IMDS 404, a missing seed `user-data` file, an empty file) is `None`, not an
//! error: bootcfg then has nothing to do and exits 0.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datasource {
    File(PathBuf),
    Seed(PathBuf),
    Imds(String),
}

impl Datasource {
    /// A short name for logs, diagnostics and the result file.
    pub fn describe(&self) -> String {
        match self {
            Datasource::File(p) => format!("file:{}", p.display()),
            Datasource::Seed(p) => format!("nocloud:{}", p.display()),
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

pub fn fetch(ds: &Datasource, opts: &FetchOptions) -> Result<Fetched, DatasourceError> {
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
        Datasource::Seed(dir) => {
            let ud_path = dir.join("user-data");
            let md_path = dir.join("meta-data");
            let user_data = read_opt(&ud_path)?;
            let md = read_opt(&md_path)?.ok_or_else(|| DatasourceError::MetaData {
                path: md_path.display().to_string(),
                message: "missing; a NoCloud seed needs `meta-data` with `instance-id: …`".into(),
            })?;
            let v: serde_yaml_ng::Value = if md.iter().all(u8::is_ascii_whitespace) {
                serde_yaml_ng::Value::Null
            } else {
                serde_yaml_ng::from_slice(&md).map_err(|e| DatasourceError::MetaData {
                    path: md_path.display().to_string(),
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
                path: md_path.display().to_string(),
                message: "no `instance-id`; add a line `instance-id: iid-…`".into(),
            })?;
            Ok(Fetched {
                name: ud_path.display().to_string(),
                user_data,
                instance_id: Some(instance_id),
                hostname: get("local-hostname").or_else(|| get("hostname")),
                identity_rsa2048: None,
            })
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let f = fetch(&Datasource::Seed(d.path().into()), &opts()).unwrap();
        assert_eq!(f.instance_id.as_deref(), Some("iid-feas-1"));
        assert_eq!(f.hostname.as_deref(), Some("feas-node"));
        assert_eq!(f.user_data, None);
        assert_eq!(
            f.identity_rsa2048, None,
            "only IMDS serves an identity document"
        );
        std::fs::write(d.path().join("user-data"), "#cloud-config\n").unwrap();
        assert!(
            fetch(&Datasource::Seed(d.path().into()), &opts())
                .unwrap()
                .user_data
                .is_some()
        );
    }

    #[test]
    fn seed_without_instance_id_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("meta-data"), "local-hostname: x\n").unwrap();
        let e = fetch(&Datasource::Seed(d.path().into()), &opts())
            .unwrap_err()
            .to_string();
        assert!(e.contains("instance-id"), "{e}");
    }
}
