//! Where registrations live. One trait, two backends with the same semantics:
//! `s3://bucket/prefix` (the official `aws-sdk-s3`, conditional writes) and `file:///dir`
//! (single-host setups and the local demo).
//!
//! Semantics every backend keeps (the conductor and signer rely on them):
//! - [`Registry::create`] is create-only: it never overwrites (S3 `If-None-Match: *`, `O_EXCL` on files).
//! - [`Registry::update`] is a compare-and-swap on the [`Version`] returned by `get`/`create`
//!   (S3 `If-Match: <etag>`); the signer consumes a registration with it, so two signers never both win.
//! - [`Registry::get`] of a missing certname is `Ok(None)`, not an error.
//! - [`Registry::delete`] of a missing certname succeeds.
//! - Certnames are checked with [`crate::registration::check_certname`] before they become keys.
//!
//! Key layout: `<prefix>/registrations/<certname>.json` (S3) or `<dir>/registrations/<certname>.json`;
//! instance claims (written by the signer) at `<prefix>/instances/<instance-id>` or
//! `<dir>/instances/<instance-id>`, holding the certname (or a group member's
//! [`crate::group::claim_holder`]); enrollment groups at `groups/<name>/group.json` (create-only,
//! revoked by compare-and-swap) and their members at `groups/<name>/slots/<n>.json`
//! (create-only; see [`crate::group`] for the order of the signer's writes); retirements (written
//! by `conductor reap`, see [`crate::retirement`]) at `retired/<certname>.json` (create-only,
//! changed only by the sweep's compare-and-swap that records the cleaning).
//!
//! Open one with [`open`]: `s3://bucket[/prefix]` or `file:///absolute/dir`. The bucket or the
//! directory must exist already (a missing one is [`RegistryError::NoSuchBucket`] on first use, so
//! a typo never silently starts a second, empty registry).
//!
//! How each backend keeps the semantics:
//! - S3: create = `PutObject` with `If-None-Match: *` (HTTP 412 `PreconditionFailed` means the
//!   certname exists); update = `PutObject` with `If-Match: <etag>`; list = `ListObjectsV2`,
//!   paginated. The ETag is the [`Version`].
//! - file: create = write a temp file (`O_EXCL`, mode 0600, fsync) then `link(2)` it to its name,
//!   which fails if the name exists, so a reader never sees a partial record and nothing is
//!   overwritten; update and delete take an exclusive lock on `registrations/.lock`, compare the
//!   SHA-256 of the current bytes (the [`Version`]) and then rename a fsynced temp file over it.

pub mod aws;
mod file;
mod s3;

pub use file::FileRegistry;
pub use s3::S3Registry;

use crate::group::{EnrollmentGroup, Member};
use crate::registration::Registration;
use crate::retirement::Retirement;
use async_trait::async_trait;

pub use crate::config::RegistryLocation as Location;

/// An opaque version token for compare-and-swap: the S3 ETag, or a digest of the file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(pub String);

/// What can go wrong talking to a registry. Each variant's message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registration `{0}` already exists; a certname is never registered twice")]
    AlreadyExists(String),
    #[error(
        "registration `{0}` changed since it was read (another signer or conductor wrote it); nothing was changed"
    )]
    Conflict(String),
    #[error("registration `{0}` does not exist")]
    NotFound(String),
    #[error(
        "registry {location}: bucket `{bucket}` does not exist; create it (aws s3 mb s3://{bucket}) or fix `registry:` in the config"
    )]
    NoSuchBucket { location: String, bucket: String },
    #[error(
        "registry {location}: access denied; the credentials in use need s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket on it"
    )]
    AccessDenied { location: String },
    #[error(
        "registry {location}: no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on a host with an instance profile"
    )]
    Credentials { location: String },
    #[error("registry {location} is unreachable: {reason}")]
    Unreachable { location: String, reason: String },
    #[error("registry {location}: stored record `{key}` is unreadable: {reason}")]
    Corrupt {
        location: String,
        key: String,
        reason: String,
    },
    #[error(
        "enrollment group `{0}` already exists; a group name is never reused (pick another name)"
    )]
    GroupExists(String),
    #[error(
        "enrollment group `{0}` changed since it was read (another conductor wrote it); nothing was changed, run the command again"
    )]
    GroupConflict(String),
    #[error("invalid registry location `{0}`: use s3://BUCKET[/PREFIX] or file:///ABSOLUTE/DIR")]
    BadLocation(String),
    #[error("registry {location}: {reason}")]
    Other { location: String, reason: String },
}

/// Options that apply to the S3 backend; the file backend ignores them.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// AWS region; default: the standard chain (AWS_REGION, profile).
    pub region: Option<String>,
    /// Named profile; default: the standard chain (AWS_PROFILE).
    pub profile: Option<String>,
    /// Endpoint override for S3-compatible servers; `AWS_ENDPOINT_URL` is honoured without it.
    pub endpoint_url: Option<String>,
}

/// A store of registrations.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Where this registry is, for messages: `s3://bucket/prefix` or `file:///dir`.
    fn location(&self) -> String;
    /// Create-only write. `Err(AlreadyExists)` if the certname is registered already.
    async fn create(&self, record: &Registration) -> Result<Version, RegistryError>;
    /// Read one registration and its version; `Ok(None)` if there is none.
    async fn get(&self, certname: &str) -> Result<Option<(Registration, Version)>, RegistryError>;
    /// Replace a registration only if it is still at `expected`; `Err(Conflict)` otherwise,
    /// `Err(NotFound)` if it was deleted meanwhile.
    async fn update(
        &self,
        record: &Registration,
        expected: &Version,
    ) -> Result<Version, RegistryError>;
    /// Remove a registration; succeeds if it is already gone.
    async fn delete(&self, certname: &str) -> Result<(), RegistryError>;
    /// Every registered certname, sorted.
    async fn list(&self) -> Result<Vec<String>, RegistryError>;
    /// Record, create-only, that EC2 instance `instance_id` enrolls as `certname`, so that one
    /// instance enrolls exactly once across all registrations and groups. Returns the holder of
    /// the claim: `certname` when this call made it (or an earlier call for the same certname did),
    /// another holder when the instance already enrolled under that one. The instance id is
    /// checked with [`crate::registration::check_instance_id`] before it becomes a key; `certname`
    /// is a registration's certname or a group member's [`crate::group::claim_holder`]
    /// ([`crate::group::check_claim_holder`]).
    async fn claim_instance(
        &self,
        instance_id: &str,
        certname: &str,
    ) -> Result<String, RegistryError>;
    /// Create-only write of a new enrollment group; `Err(GroupExists)` if the name is taken.
    /// The group is validated ([`EnrollmentGroup::validate`]) before anything is written.
    async fn create_group(&self, group: &EnrollmentGroup) -> Result<Version, RegistryError>;
    /// Read one group and its version; `Ok(None)` if there is none. A stored group that fails
    /// validation is `Err(Corrupt)`.
    async fn get_group(
        &self,
        name: &str,
    ) -> Result<Option<(EnrollmentGroup, Version)>, RegistryError>;
    /// Replace a group only if it is still at `expected` (`Err(GroupConflict)` otherwise): the
    /// conductor's revoke.
    async fn update_group(
        &self,
        group: &EnrollmentGroup,
        expected: &Version,
    ) -> Result<Version, RegistryError>;
    /// Every group name, sorted.
    async fn list_groups(&self) -> Result<Vec<String>, RegistryError>;
    /// Create-only write of `member` into slot `member.slot` of its group: `Ok(true)` when this
    /// call created it, `Ok(false)` when the slot was taken already (by anyone). The member is
    /// checked against the certname scheme first; the caller has read the group (the file
    /// backend also refuses a slot of a group it does not hold).
    async fn take_slot(&self, member: &Member) -> Result<bool, RegistryError>;
    /// The taken slot numbers of a group, sorted.
    async fn list_slots(&self, group: &str) -> Result<Vec<u32>, RegistryError>;
    /// One member record; `Ok(None)` when the slot is free.
    async fn get_member(&self, group: &str, slot: u32) -> Result<Option<Member>, RegistryError>;
    /// Create-only write of a retirement (validated first): `Ok(true)` when this call wrote it,
    /// `Ok(false)` when the certname was retired already. A retirement is never removed.
    async fn retire(&self, retirement: &Retirement) -> Result<bool, RegistryError>;
    /// Read one retirement and its version; `Ok(None)` if the certname is not retired. A stored
    /// record that fails validation is `Err(Corrupt)` (callers refuse to sign on any `Err`).
    async fn get_retirement(
        &self,
        certname: &str,
    ) -> Result<Option<(Retirement, Version)>, RegistryError>;
    /// Replace a retirement only if it is still at `expected` (`Err(Conflict)` otherwise): the
    /// sweep records the cleaning with it.
    async fn update_retirement(
        &self,
        retirement: &Retirement,
        expected: &Version,
    ) -> Result<Version, RegistryError>;
    /// Every retired certname, sorted.
    async fn list_retired(&self) -> Result<Vec<String>, RegistryError>;
    /// Ways in which this registry is exposed to people who should not read it (a bucket that
    /// can be read publicly, a world-readable directory), each a sentence with the fix. Checking
    /// is best-effort: a check the backend or the credentials cannot do is skipped (and logged
    /// at debug level), never an error.
    async fn exposure_warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Open the registry at `location`: `s3://BUCKET[/PREFIX]` or `file:///ABSOLUTE/DIR`.
///
/// Nothing is contacted yet (S3 credentials are resolved on the first call), so this only fails
/// on a malformed location.
pub async fn open(
    location: &str,
    opts: &RegistryOptions,
) -> Result<Box<dyn Registry>, RegistryError> {
    match Location::parse(location)
        .ok_or_else(|| RegistryError::BadLocation(location.to_owned()))?
    {
        Location::S3 { bucket, prefix } => {
            Ok(Box::new(S3Registry::open(bucket, prefix, opts).await))
        }
        Location::File(dir) => Ok(Box::new(FileRegistry::new(dir)?)),
    }
}

/// Refuse instance ids that are not `i-` + 8 or 17 lowercase hex digits before they become keys.
fn checked_instance(registry: &dyn Registry, instance_id: &str) -> Result<(), RegistryError> {
    crate::registration::check_instance_id(instance_id).map_err(|reason| RegistryError::Other {
        location: registry.location(),
        reason,
    })
}

/// Refuse claim holders other than registration certnames and group member attempts.
fn checked_holder(registry: &dyn Registry, holder: &str) -> Result<(), RegistryError> {
    crate::group::check_claim_holder(holder).map_err(|reason| RegistryError::Other {
        location: registry.location(),
        reason,
    })
}

/// Refuse group names that could not be keys.
fn checked_group(registry: &dyn Registry, name: &str) -> Result<(), RegistryError> {
    crate::group::check_group_name(name).map_err(|reason| RegistryError::Other {
        location: registry.location(),
        reason,
    })
}

/// Refuse a group that breaks the rules before it is written.
fn valid_group(registry: &dyn Registry, group: &EnrollmentGroup) -> Result<(), RegistryError> {
    group.validate().map_err(|reason| RegistryError::Other {
        location: registry.location(),
        reason: format!("enrollment group `{}`: {reason}", group.name),
    })
}

/// Refuse a member record that does not follow the scheme before it is written.
fn valid_member(registry: &dyn Registry, member: &Member) -> Result<(), RegistryError> {
    checked_group(registry, &member.group)?;
    Member::from_json(&member.group, member.slot, &member.to_json())
        .map(|_| ())
        .map_err(|e| RegistryError::Other {
            location: registry.location(),
            reason: format!("member of `{}`: {e}", member.group),
        })
}

/// Refuse a retirement that breaks the rules (or names a certname that could not be a key).
fn valid_retirement(registry: &dyn Registry, r: &Retirement) -> Result<(), RegistryError> {
    r.validate().map_err(|reason| RegistryError::Other {
        location: registry.location(),
        reason: format!("retirement of `{}`: {reason}", r.certname),
    })
}

/// Refuse names that can be neither a registration's nor a member's certname.
fn checked_retired(registry: &dyn Registry, certname: &str) -> Result<(), RegistryError> {
    crate::retirement::check_retired_certname(certname).map_err(|reason| RegistryError::Other {
        location: registry.location(),
        reason,
    })
}

/// Refuse certnames that are not lowercase UUIDs before they become keys or file names.
fn checked(registry: &dyn Registry, certname: &str) -> Result<(), RegistryError> {
    crate::registration::check_certname(certname).map_err(|reason| RegistryError::Other {
        location: registry.location(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        assert_eq!(
            Location::parse("s3://my-bucket/fleet/prod/").unwrap(),
            Location::S3 {
                bucket: "my-bucket".into(),
                prefix: "fleet/prod".into()
            }
        );
        assert_eq!(
            Location::parse("s3://my-bucket").unwrap(),
            Location::S3 {
                bucket: "my-bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            Location::parse("file:///var/lib/reg").unwrap(),
            Location::File("/var/lib/reg".into())
        );
        for bad in [
            "s3://",
            "s3://Upper",
            "s3://ab",
            "s3://b/../x",
            "file://relative",
            "file:///a/../b",
            "/var/lib/reg",
            "http://x",
        ] {
            assert!(Location::parse(bad).is_none(), "{bad}");
        }
    }
}
