//! The registration record: written by the conductor before an instance exists, consumed by the
//! signer exactly once. It holds the SHA-256 of the instance's one-time secret, **never the secret**.
//!
//! Stored as JSON (one object per certname). `version` is checked on read, so a future format is
//! refused with a clear error rather than misread.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

/// The record format this build writes. Version 2 added the instance identity binding
/// ([`Registration::identity`]) and the consumed instance id.
pub const REGISTRATION_VERSION: u32 = 2;
/// Records written before identity binding. Still read: they carry no binding, and the signer
/// accepts them without an identity proof only when its config allows legacy registrations.
pub const LEGACY_VERSION: u32 = 1;

/// One certname the conductor registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Always [`REGISTRATION_VERSION`] when written by this build.
    pub version: u32,
    /// A random UUID v4, lowercase; the Puppet certname and the CSR's subject CN.
    pub certname: String,
    /// Lowercase hex SHA-256 of the one-time secret the instance puts in its CSR's challengePassword.
    pub secret_sha256: String,
    /// The AMI the instance was launched from, if known.
    #[serde(default)]
    pub image_id: Option<String>,
    /// The EC2 instance id, filled in once `RunInstances` answered (`None` for `conductor register`).
    #[serde(default)]
    pub instance_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// After this the signer refuses the registration and `conductor prune` removes it.
    pub expires_at: DateTime<Utc>,
    /// Who launched it: the caller identity (ARN) or `user@host`.
    pub launched_by: String,
    /// Extension requests the CSR may carry, by short name (`pp_role`) or dotted OID, each with the
    /// exact value allowed. `pp_instance_id` is checked against `instance_id` and `pp_uuid` against
    /// `certname`; neither needs listing here. Anything the CSR asks for beyond this is refused.
    #[serde(default)]
    pub allowed_extensions: BTreeMap<String, String>,
    /// What the instance's AWS-signed identity document must show. `Some` means the CSR must
    /// carry the proof; `None` means the launcher turned the proof off (or, in a version 1
    /// record, that the record predates it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityBinding>,
    /// Set, with a conditional write, by the signer immediately before it signs.
    #[serde(default)]
    pub consumed: Option<Consumption>,
}

/// The account and region the identity document must name. The image is
/// [`Registration::image_id`] and the instance [`Registration::instance_id`]; a registration
/// without an instance id binds to the first valid document that matches the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityBinding {
    /// 12-digit AWS account id that owns the instance.
    pub account_id: String,
    /// AWS Region of the instance (`eu-west-1`).
    pub region: String,
}

/// When and by whom a registration was used up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumption {
    pub at: DateTime<Utc>,
    /// The signer that consumed it: `autosign@host` or `sweep@host`.
    pub by: String,
    /// Lowercase hex SHA-256 of the DER of the CSR that was signed (the bytes its PEM armours;
    /// `signer::csr::fingerprint`), so a re-wrapped PEM of the same request has the same hash.
    pub csr_sha256: String,
    /// The instance id of the identity document the CSR proved, when it carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

/// A registration's state at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Consumed,
    Expired,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Pending => "pending",
            State::Consumed => "consumed",
            State::Expired => "expired",
        })
    }
}

/// Why bytes could not be read as a registration.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("registration record is not valid JSON for format version {REGISTRATION_VERSION}: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "registration record has format version {found}, this build reads versions {LEGACY_VERSION} and {REGISTRATION_VERSION}; upgrade the signer/conductor"
    )]
    Version { found: u64 },
    #[error(
        "registration record for `{stored}` was found under the name `{requested}`; the registry has been tampered with or corrupted"
    )]
    NameMismatch { requested: String, stored: String },
}

impl Registration {
    /// A fresh, pending registration for `certname` whose secret hashes to `secret_sha256`.
    pub fn new(
        certname: &str,
        secret_sha256: &str,
        launched_by: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Self {
        Registration {
            version: REGISTRATION_VERSION,
            certname: certname.to_owned(),
            secret_sha256: secret_sha256.to_owned(),
            image_id: None,
            instance_id: None,
            created_at: now,
            expires_at: now + ttl,
            launched_by: launched_by.to_owned(),
            allowed_extensions: BTreeMap::new(),
            identity: None,
            consumed: None,
        }
    }

    /// A record written before identity binding (format version 1).
    pub fn is_legacy(&self) -> bool {
        self.version == LEGACY_VERSION
    }

    pub fn state(&self, now: DateTime<Utc>) -> State {
        if self.consumed.is_some() {
            State::Consumed
        } else if now >= self.expires_at {
            State::Expired
        } else {
            State::Pending
        }
    }

    /// Whether `secret` hashes to the registered hash; the comparison takes constant time.
    pub fn secret_matches(&self, secret: &[u8]) -> bool {
        let got = sha256_hex(secret);
        got.as_bytes().ct_eq(self.secret_sha256.as_bytes()).into()
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a registration always serialises");
        v.push(b'\n');
        v
    }

    /// Parse a stored record, checking its format version and that it is stored under its own name.
    pub fn from_json(requested: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let raw: serde_json::Value = serde_json::from_slice(bytes)?;
        let found = raw
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if found != u64::from(REGISTRATION_VERSION) && found != u64::from(LEGACY_VERSION) {
            return Err(RecordError::Version { found });
        }
        let reg: Registration = serde_json::from_value(raw)?;
        if reg.certname != requested {
            return Err(RecordError::NameMismatch {
                requested: requested.to_owned(),
                stored: reg.certname,
            });
        }
        Ok(reg)
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Certnames the conductor issues, and so the only ones the registry holds: lowercase UUIDs.
/// Checked before a certname is used as a registry key or a file name.
pub fn check_certname(name: &str) -> Result<(), String> {
    match uuid::Uuid::parse_str(name) {
        Ok(u) if u.hyphenated().to_string() == name => Ok(()),
        _ => Err(format!(
            "`{name}` is not a lowercase hyphenated UUID, the only certnames the conductor issues"
        )),
    }
}

/// EC2 instance ids: `i-` and 8 or 17 lowercase hex digits. Checked before an id from a
/// document or a CSR becomes a registry key.
pub fn check_instance_id(id: &str) -> Result<(), String> {
    if crate::config::is_aws_id(id, "i-") {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an EC2 instance id (`i-` and 8 or 17 lowercase hex digits)",
            id.chars().take(40).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registration {
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Registration::new(
            "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11",
            &sha256_hex(b"s3cret"),
            "ops@ws",
            now,
            chrono::Duration::minutes(30),
        )
    }

    #[test]
    fn round_trips_and_checks_name_and_version() {
        let r = reg();
        let back = Registration::from_json(&r.certname, &r.to_json()).unwrap();
        assert_eq!(back, r);
        assert!(matches!(
            Registration::from_json("other", &r.to_json()),
            Err(RecordError::NameMismatch { .. })
        ));
        let v3 = String::from_utf8(r.to_json())
            .unwrap()
            .replace("\"version\": 2", "\"version\": 3");
        assert!(matches!(
            Registration::from_json(&r.certname, v3.as_bytes()),
            Err(RecordError::Version { found: 3 })
        ));
        // A record from before identity binding is still read, and is marked legacy.
        let v1 = String::from_utf8(r.to_json())
            .unwrap()
            .replace("\"version\": 2", "\"version\": 1");
        let old = Registration::from_json(&r.certname, v1.as_bytes()).unwrap();
        assert!(old.is_legacy() && old.identity.is_none());
        assert!(!r.is_legacy());
    }

    #[test]
    fn state_follows_expiry_and_consumption() {
        let mut r = reg();
        assert_eq!(r.state(r.created_at), State::Pending);
        assert_eq!(r.state(r.expires_at), State::Expired);
        r.consumed = Some(Consumption {
            at: r.created_at,
            by: "t".into(),
            csr_sha256: "00".into(),
            instance_id: None,
        });
        assert_eq!(r.state(r.created_at), State::Consumed);
    }

    #[test]
    fn secret_is_checked_by_hash() {
        let r = reg();
        assert!(r.secret_matches(b"s3cret"));
        assert!(!r.secret_matches(b"s3cret "));
        assert!(!r.to_json().windows(6).any(|w| w == b"s3cret"));
    }

    #[test]
    fn certnames_must_be_lowercase_uuids() {
        assert!(check_certname("0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11").is_ok());
        assert!(check_certname("0B7D3C59-5B4F-4F8E-9F0E-2D7F1F1F4A11").is_err());
        assert!(check_certname("../etc/passwd").is_err());
    }
}
