//! Retirement: the record that a certname's instance is gone (EC2 reports it terminated), written
//! by `conductor reap`, read by the signer.
//!
//! Stored create-only at `retired/<certname>.json` next to registrations and groups (see
//! [`crate::registry`]), so a retirement is never undone and a certname is retired once. The
//! signer refuses every CSR under a retired certname, whatever else it proves; `signer sweep`
//! revokes and cleans the certificate the CA holds for it and then records that in
//! [`Retirement::cleaned`] with a compare-and-swap.
//!
//! **Settling.** A signing that had passed every check a moment before the retirement was written
//! (the hook returns, and Puppet Server signs after it) can still issue a certificate. So the
//! sweep treats a retirement as done only once it was cleaned at least [`SETTLE`] after it was
//! written ([`Retirement::settled`]); until then every sweep checks the CA again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The record format this build writes and reads.
pub const RETIREMENT_VERSION: u32 = 1;

/// How long after the retirement a cleaning must have happened for the sweep to stop checking the
/// CA for the name: well beyond a hook's deadline plus Puppet Server's signing.
pub const SETTLE: chrono::Duration = chrono::Duration::minutes(5);

/// One retired certname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retirement {
    /// Always [`RETIREMENT_VERSION`].
    pub version: u32,
    /// A registration's certname (a UUID) or a group member's (`<group>-<instance-id>`).
    pub certname: String,
    /// The instance EC2 reported terminated.
    pub instance_id: String,
    /// The enrollment group, for a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// What EC2 said, for people: `EC2 reports i-… terminated`.
    pub reason: String,
    pub retired_at: DateTime<Utc>,
    /// `user@host` of the `conductor reap` that wrote it.
    pub retired_by: String,
    /// Set by the signer's sweep once the CA holds no certificate or request for the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleaned: Option<Cleaning>,
}

/// When and by whom the CA was cleaned of a retired certname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cleaning {
    pub at: DateTime<Utc>,
    /// `sweep@host`.
    pub by: String,
    /// The serial (as the CA shows it) of the certificate this cleaning revoked, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_serial: Option<String>,
}

/// Why bytes could not be read as a retirement.
#[derive(Debug, thiserror::Error)]
pub enum RetirementError {
    #[error("retirement record is not valid JSON for format version {RETIREMENT_VERSION}: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "retirement record has format version {0}, this build reads version {RETIREMENT_VERSION}; upgrade the signer/conductor"
    )]
    Version(u64),
    #[error("retirement record: {0}")]
    Invalid(String),
}

impl Retirement {
    /// A new retirement of `certname`, whose instance `instance_id` EC2 reports terminated.
    pub fn new(
        certname: &str,
        instance_id: &str,
        group: Option<&str>,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Self {
        Retirement {
            version: RETIREMENT_VERSION,
            certname: certname.to_owned(),
            instance_id: instance_id.to_owned(),
            group: group.map(str::to_owned),
            reason: reason.to_owned(),
            retired_at: now,
            retired_by: by.to_owned(),
            cleaned: None,
        }
    }

    /// Whether the sweep may stop checking the CA for this name: it was cleaned at least
    /// [`SETTLE`] after the retirement was written.
    pub fn settled(&self) -> bool {
        self.cleaned
            .as_ref()
            .is_some_and(|c| c.at >= self.retired_at + SETTLE)
    }

    /// The rules every stored record keeps; checked before a write and after a read.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != RETIREMENT_VERSION {
            return Err(format!(
                "version {} is not {RETIREMENT_VERSION}",
                self.version
            ));
        }
        check_retired_certname(&self.certname)?;
        crate::registration::check_instance_id(&self.instance_id)?;
        match (
            &self.group,
            crate::group::parse_member_certname(&self.certname),
        ) {
            (Some(g), Some((group, iid))) if g == group && iid == self.instance_id => {}
            (None, None) => {}
            _ => {
                return Err(format!(
                    "certname `{}` does not match group {:?} and instance `{}`",
                    self.certname, self.group, self.instance_id
                ));
            }
        }
        if self.reason.len() > 512 || self.reason.chars().any(char::is_control) {
            return Err("reason must be one line of at most 512 bytes".into());
        }
        Ok(())
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a retirement always serialises");
        v.push(b'\n');
        v
    }

    /// Parse a stored record, checking its version, its rules and that it is stored under its name.
    pub fn from_json(requested: &str, bytes: &[u8]) -> Result<Self, RetirementError> {
        let raw: serde_json::Value = serde_json::from_slice(bytes)?;
        let found = raw
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if found != u64::from(RETIREMENT_VERSION) {
            return Err(RetirementError::Version(found));
        }
        let r: Retirement = serde_json::from_value(raw)?;
        r.validate().map_err(RetirementError::Invalid)?;
        if r.certname != requested {
            return Err(RetirementError::Invalid(format!(
                "record for `{}` found under the name `{requested}`; the registry has been tampered with or corrupted",
                r.certname
            )));
        }
        Ok(r)
    }
}

/// The certnames that can be retired, and so become registry keys: a registration's (a lowercase
/// UUID) or a group member's (`<group>-<instance-id>`).
pub fn check_retired_certname(certname: &str) -> Result<(), String> {
    if crate::registration::check_certname(certname).is_ok()
        || crate::group::parse_member_certname(certname).is_some()
    {
        Ok(())
    } else {
        Err(format!(
            "`{}` is neither a registration's certname (a lowercase UUID) nor a group member's (`<group>-<instance-id>`)",
            certname.escape_default().take(80).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn member() -> Retirement {
        Retirement::new(
            "web-i-0123456789abcdef0",
            "i-0123456789abcdef0",
            Some("web"),
            "EC2 reports i-0123456789abcdef0 terminated",
            "ops@ws",
            at("2026-11-30T10:00:00Z"),
        )
    }

    #[test]
    fn round_trips_and_refuses_a_record_under_another_name() {
        let r = member();
        assert_eq!(Retirement::from_json(&r.certname, &r.to_json()).unwrap(), r);
        assert!(Retirement::from_json("web-i-0123456789abcdef1", &r.to_json()).is_err());
        let v2 = String::from_utf8(r.to_json())
            .unwrap()
            .replace("\"version\": 1", "\"version\": 2");
        assert!(matches!(
            Retirement::from_json(&r.certname, v2.as_bytes()),
            Err(RetirementError::Version(2))
        ));
    }

    #[test]
    fn a_member_record_must_agree_with_its_certname() {
        let mut r = member();
        r.instance_id = "i-0123456789abcdef1".into();
        assert!(r.validate().is_err());
        let mut r = member();
        r.group = None;
        assert!(r.validate().is_err());
        let mut r = member();
        r.certname = "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11".into();
        assert!(
            r.validate().is_err(),
            "a registration's record has no group"
        );
        r.group = None;
        assert!(r.validate().is_ok());
        for bad in ["../x", "web", "Web-i-0123456789abcdef0", ""] {
            r.certname = bad.into();
            assert!(r.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn settled_only_when_cleaned_after_the_settle_time() {
        let mut r = member();
        assert!(!r.settled());
        r.cleaned = Some(Cleaning {
            at: r.retired_at + chrono::Duration::seconds(30),
            by: "sweep@ca".into(),
            revoked_serial: Some("0x0A".into()),
        });
        assert!(!r.settled(), "cleaned too soon after the retirement");
        r.cleaned.as_mut().unwrap().at = r.retired_at + SETTLE;
        assert!(r.settled());
    }
}
