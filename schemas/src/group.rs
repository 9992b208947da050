//! Enrollment groups: instances that AWS launches (Auto Scaling groups, launch templates), which
//! nobody can hand a per-instance secret, join Puppet by proving who they are with their
//! AWS-signed identity document, under a policy the conductor writes once per group.
//!
//! Stored in the registry next to registrations (see [`crate::registry`]):
//! - `groups/<name>/group.json`: the [`EnrollmentGroup`], create-only; changed only by a
//!   compare-and-swap that revokes it.
//! - `groups/<name>/slots/<n>.json` for `n < max_members`: one [`Member`] each, create-only. The
//!   signer takes the lowest free slot; the first create of a slot wins, so however many signers
//!   race, a group never has more members than slots.
//! - `instances/<instance-id>`: the create-only claim shared with registrations, holding
//!   [`claim_holder`]: an instance enrolls once, whether through a registration or a group.
//!
//! **The certname scheme** lives here and nowhere else: a member's certname is
//! `<group>-<instance-id>` ([`member_certname`]); the user-data asks bootcfg for it with
//! `<group>-%i` ([`certname_template`]), and the signer derives it from the verified document.
//!
//! **Order of the signer's writes, and why it fails closed.** After every check passed: (1) claim
//! the instance id (create-only, a holder unique to this attempt), (2) take a slot (create-only),
//! (3) read the group again and refuse if it was revoked meanwhile, (4) sign. A crash or a refusal
//! between the steps leaves the claim (and maybe a slot) used without a certificate: the instance
//! is locked out and the group holds one member less than it could, never one more, and no
//! instance ever gets two certificates. Claiming first means that a second CSR for an enrolled
//! instance is refused before it can use up a slot, so replaying documents cannot fill a group.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The group record format this build writes and reads.
pub const GROUP_VERSION: u32 = 1;
/// The member record format this build writes and reads.
pub const MEMBER_VERSION: u32 = 1;
/// The largest `max_members` a group may have (each enrollment may try every free slot).
pub const MAX_MEMBERS_LIMIT: u32 = 10_000;

/// One enrollment group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentGroup {
    /// Always [`GROUP_VERSION`].
    pub version: u32,
    /// Lowercase letters, digits and `-` ([`check_group_name`]); part of every member's certname.
    pub name: String,
    /// The 12-digit AWS account whose instances may join (the document's `accountId`).
    pub account_id: String,
    /// The AWS Region (the document's `region`).
    pub region: String,
    /// AMIs members may be launched from (the document's `imageId`); at least one.
    pub image_ids: Vec<String>,
    /// The EC2 launch template the members come from (`lt-…`), for people and for the optional
    /// Auto Scaling membership check.
    #[serde(default)]
    pub launch_template_id: Option<String>,
    /// The Auto Scaling group the members come from.
    #[serde(default)]
    pub asg_name: Option<String>,
    /// Extension requests members may carry, by short name or dotted OID, each with its exact
    /// value ([`crate::oids::check_extension_request`]). `pp_instance_id` (the document's
    /// instance id) and `pp_uuid` (the certname) need no listing.
    #[serde(default)]
    pub extensions: BTreeMap<String, String>,
    /// How many instances may ever join (slots are never given back).
    pub max_members: u32,
    pub created_at: DateTime<Utc>,
    /// After this nobody joins; an instance must also have been launched (`pendingTime`)
    /// between `created_at` and this.
    pub expires_at: DateTime<Utc>,
    /// Who created it: `user@host`.
    pub created_by: String,
    /// Set by `conductor group revoke`; a revoked group is never un-revoked.
    #[serde(default)]
    pub revoked: Option<Revocation>,
}

/// When and by whom a group was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    pub at: DateTime<Utc>,
    pub by: String,
}

/// A group's state at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupState {
    Active,
    Expired,
    Revoked,
}

impl std::fmt::Display for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GroupState::Active => "active",
            GroupState::Expired => "expired",
            GroupState::Revoked => "revoked",
        })
    }
}

/// One enrolled instance: the content of its slot, written by the signer, create-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Always [`MEMBER_VERSION`].
    pub version: u32,
    pub group: String,
    pub slot: u32,
    pub instance_id: String,
    pub certname: String,
    /// The image the verified document names.
    pub image_id: String,
    /// The document's `pendingTime`.
    pub pending_time: DateTime<Utc>,
    /// Lowercase hex SHA-256 of the CSR's DER.
    pub csr_sha256: String,
    pub enrolled_at: DateTime<Utc>,
    /// `autosign@host` or `sweep@host`.
    pub by: String,
}

/// Why bytes could not be read as a group or member record.
#[derive(Debug, thiserror::Error)]
pub enum GroupRecordError {
    #[error("record is not valid JSON for format version 1: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "record has format version {found}, this build reads version 1; upgrade the signer/conductor"
    )]
    Version { found: u64 },
    #[error("record is invalid: {0}")]
    Invalid(String),
    #[error(
        "record for `{stored}` was found under `{requested}`; the registry has been tampered with or corrupted"
    )]
    NameMismatch { requested: String, stored: String },
}

fn version_of(bytes: &[u8]) -> Result<serde_json::Value, GroupRecordError> {
    let raw: serde_json::Value = serde_json::from_slice(bytes)?;
    let found = raw
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    if found != 1 {
        return Err(GroupRecordError::Version { found });
    }
    Ok(raw)
}

impl EnrollmentGroup {
    /// Every rule a stored or new group must meet; `Err` lists each problem with what to do.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.version != GROUP_VERSION {
            problems.push(format!("version must be {GROUP_VERSION}"));
        }
        if let Err(e) = check_group_name(&self.name) {
            problems.push(e);
        }
        if !crate::config::is_account_id(&self.account_id) {
            problems.push(format!(
                "account `{}` is not a 12-digit AWS account id",
                short(&self.account_id)
            ));
        }
        if !is_region(&self.region) {
            problems.push(format!(
                "region `{}` is not an AWS Region name such as eu-west-1",
                short(&self.region)
            ));
        }
        if self.image_ids.is_empty() {
            problems.push("at least one image id is required (--image ami-…)".into());
        }
        for image in &self.image_ids {
            if !crate::config::is_aws_id(image, "ami-") {
                problems.push(format!(
                    "image `{}` is not an AMI id (ami- followed by 8 or 17 hex digits)",
                    short(image)
                ));
            }
        }
        match (&self.launch_template_id, &self.asg_name) {
            (None, None) => problems.push(
                "name the launch template (--launch-template lt-…) and/or the Auto Scaling group (--asg NAME) the members come from".into(),
            ),
            (lt, asg) => {
                if let Some(lt) = lt
                    && !crate::config::is_aws_id(lt, "lt-")
                {
                    problems.push(format!(
                        "launch template `{}` is not a launch template id (lt- followed by 17 hex digits)",
                        short(lt)
                    ));
                }
                if let Some(asg) = asg
                    && !is_asg_name(asg)
                {
                    problems.push(format!(
                        "Auto Scaling group name `{}` must be 1-255 characters of letters, digits and -_.:/",
                        short(asg)
                    ));
                }
            }
        }
        for (k, v) in &self.extensions {
            if let Err((msg, fix)) = crate::oids::check_extension_request(k, v) {
                problems.push(format!("extension {msg}: {fix}"));
            }
        }
        if self.max_members == 0 || self.max_members > MAX_MEMBERS_LIMIT {
            problems.push(format!(
                "max members must be 1 to {MAX_MEMBERS_LIMIT}, not {}",
                self.max_members
            ));
        }
        if self.expires_at <= self.created_at {
            problems.push("the expiry must be after the creation time".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    pub fn state(&self, now: DateTime<Utc>) -> GroupState {
        if self.revoked.is_some() {
            GroupState::Revoked
        } else if now >= self.expires_at {
            GroupState::Expired
        } else {
            GroupState::Active
        }
    }

    /// The certname a member launched as `instance_id` must use.
    pub fn member_certname(&self, instance_id: &str) -> String {
        member_certname(&self.name, instance_id)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a group always serialises");
        v.push(b'\n');
        v
    }

    /// Parse a stored group, checking its version, its rules and that it is stored under its name.
    pub fn from_json(requested: &str, bytes: &[u8]) -> Result<Self, GroupRecordError> {
        let g: EnrollmentGroup = serde_json::from_value(version_of(bytes)?)?;
        if g.name != requested {
            return Err(GroupRecordError::NameMismatch {
                requested: requested.to_owned(),
                stored: g.name,
            });
        }
        g.validate().map_err(GroupRecordError::Invalid)?;
        Ok(g)
    }
}

impl Member {
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a member always serialises");
        v.push(b'\n');
        v
    }

    /// Parse a stored member, checking that it is stored in its own group and slot and that its
    /// certname follows the scheme.
    pub fn from_json(group: &str, slot: u32, bytes: &[u8]) -> Result<Self, GroupRecordError> {
        let m: Member = serde_json::from_value(version_of(bytes)?)?;
        if m.group != group || m.slot != slot {
            return Err(GroupRecordError::NameMismatch {
                requested: format!("{group}/slots/{slot}"),
                stored: format!("{}/slots/{}", m.group, m.slot),
            });
        }
        crate::registration::check_instance_id(&m.instance_id)
            .map_err(GroupRecordError::Invalid)?;
        if m.certname != member_certname(group, &m.instance_id) {
            return Err(GroupRecordError::Invalid(format!(
                "member certname `{}` is not `{}`",
                short(&m.certname),
                member_certname(group, &m.instance_id)
            )));
        }
        Ok(m)
    }
}

/// The one certname scheme: `<group>-<instance-id>`.
pub fn member_certname(group: &str, instance_id: &str) -> String {
    format!("{group}-{instance_id}")
}

/// The same scheme as the user-data writes it for bootcfg (`%i` is the instance id).
pub fn certname_template(group: &str) -> String {
    member_certname(group, "%i")
}

/// Group names: 1-40 characters, lowercase letters, digits and `-`, starting with a letter and
/// not ending with `-`. They become registry keys and part of Puppet certnames.
pub fn check_group_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "group name `{}` must be 1-40 lowercase letters, digits and `-`, starting with a letter and not ending with `-`",
            short(name)
        ))
    }
}

/// Split a member certname into (group, instance id) when it follows the scheme.
pub fn parse_member_certname(certname: &str) -> Option<(&str, &str)> {
    // Instance ids are `i-` + hex, so the last `-i-` separates them.
    let at = certname.rfind("-i-")?;
    let (group, iid) = (&certname[..at], &certname[at + 1..]);
    (check_group_name(group).is_ok() && crate::registration::check_instance_id(iid).is_ok())
        .then_some((group, iid))
}

/// What the signer writes into `instances/<instance-id>` for a group member: the certname and a
/// random nonce of this attempt, so that only the call that created the claim sees its own
/// holder (a second CSR for the same instance has the same certname, never the same nonce).
pub fn claim_holder(certname: &str, nonce: &str) -> String {
    format!("{certname} attempt={nonce}")
}

/// The holders a claim may have: a registration's certname (a UUID) or a [`claim_holder`].
/// Checked before a holder is written.
pub fn check_claim_holder(holder: &str) -> Result<(), String> {
    if crate::registration::check_certname(holder).is_ok() {
        return Ok(());
    }
    let ok = holder.split_once(" attempt=").is_some_and(|(c, nonce)| {
        parse_member_certname(c).is_some()
            && nonce.len() == 32
            && nonce
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is neither a registration's certname nor a group member's claim",
            short(holder)
        ))
    }
}

/// The certname inside a claim holder (the holder itself for registrations).
pub fn holder_certname(holder: &str) -> &str {
    holder.split_once(" attempt=").map_or(holder, |(c, _)| c)
}

fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    (3..=4).contains(&parts.len())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok_and(|n| n > 0)
}

fn is_asg_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b))
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> EnrollmentGroup {
        let now = DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        EnrollmentGroup {
            version: GROUP_VERSION,
            name: "web".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            image_ids: vec!["ami-03cf127a".into()],
            launch_template_id: Some("lt-0123456789abcdef0".into()),
            asg_name: None,
            extensions: [("pp_role".to_owned(), "web".to_owned())].into(),
            max_members: 8,
            created_at: now,
            expires_at: now + chrono::Duration::days(30),
            created_by: "ops@ws".into(),
            revoked: None,
        }
    }

    #[test]
    fn round_trips_and_refuses_unknown_fields_versions_and_other_names() {
        let g = group();
        assert_eq!(EnrollmentGroup::from_json("web", &g.to_json()).unwrap(), g);
        assert!(matches!(
            EnrollmentGroup::from_json("db", &g.to_json()),
            Err(GroupRecordError::NameMismatch { .. })
        ));
        let text = String::from_utf8(g.to_json()).unwrap();
        let v2 = text.replace("\"version\": 1", "\"version\": 2");
        assert!(matches!(
            EnrollmentGroup::from_json("web", v2.as_bytes()),
            Err(GroupRecordError::Version { found: 2 })
        ));
        let extra = text.replace("\"version\": 1,", "\"version\": 1, \"admin\": true,");
        assert!(EnrollmentGroup::from_json("web", extra.as_bytes()).is_err());
    }

    #[test]
    fn validation_names_every_problem() {
        let mut g = group();
        g.name = "Web".into();
        g.account_id = "1234".into();
        g.image_ids = vec!["ami-xyz".into()];
        g.launch_template_id = None;
        g.extensions.insert("pp_authorization".into(), "x".into());
        g.max_members = 0;
        let e = g.validate().unwrap_err();
        for want in [
            "group name",
            "12-digit",
            "AMI id",
            "launch template",
            "authorization",
            "max members",
        ] {
            assert!(e.contains(want), "{want}: {e}");
        }
        assert!(EnrollmentGroup::from_json("Web", &g.to_json()).is_err());
    }

    #[test]
    fn state_follows_revocation_and_expiry() {
        let mut g = group();
        assert_eq!(g.state(g.created_at), GroupState::Active);
        assert_eq!(g.state(g.expires_at), GroupState::Expired);
        g.revoked = Some(Revocation {
            at: g.created_at,
            by: "ops".into(),
        });
        assert_eq!(g.state(g.created_at), GroupState::Revoked);
    }

    #[test]
    fn the_certname_scheme_round_trips_and_is_unambiguous() {
        let c = member_certname("web", "i-0123456789abcdef0");
        assert_eq!(c, "web-i-0123456789abcdef0");
        assert_eq!(certname_template("web"), "web-%i");
        assert_eq!(
            parse_member_certname(&c),
            Some(("web", "i-0123456789abcdef0"))
        );
        assert_eq!(
            parse_member_certname("web-i-1-i-01234567"),
            Some(("web-i-1", "i-01234567"))
        );
        for bad in [
            "web",
            "i-0123456789abcdef0",
            "-i-01234567",
            "Web-i-01234567",
            "web-i-0123456",
            "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11",
        ] {
            assert_eq!(parse_member_certname(bad), None, "{bad}");
        }
        for bad in ["", "-a", "a-", "a_b", "a.b", "1ab", &"a".repeat(41)] {
            assert!(check_group_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn claim_holders_are_registrations_or_member_attempts() {
        let nonce = "0123456789abcdef0123456789abcdef";
        let h = claim_holder("web-i-0123456789abcdef0", nonce);
        assert!(check_claim_holder(&h).is_ok());
        assert_eq!(holder_certname(&h), "web-i-0123456789abcdef0");
        assert!(check_claim_holder("0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11").is_ok());
        for bad in [
            "web-i-0123456789abcdef0",
            "web-i-0123456789abcdef0 attempt=xyz",
            "../x attempt=0123456789abcdef0123456789abcdef",
            "web-i-0123456789abcdef0 attempt=0123456789abcdef0123456789abcdef\n",
        ] {
            assert!(check_claim_holder(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn members_are_checked_against_their_slot_and_the_scheme() {
        let m = Member {
            version: MEMBER_VERSION,
            group: "web".into(),
            slot: 3,
            instance_id: "i-0123456789abcdef0".into(),
            certname: "web-i-0123456789abcdef0".into(),
            image_id: "ami-03cf127a".into(),
            pending_time: group().created_at,
            csr_sha256: "00".into(),
            enrolled_at: group().created_at,
            by: "t".into(),
        };
        assert_eq!(Member::from_json("web", 3, &m.to_json()).unwrap(), m);
        assert!(Member::from_json("web", 4, &m.to_json()).is_err());
        assert!(Member::from_json("db", 3, &m.to_json()).is_err());
        let mut bad = m.clone();
        bad.certname = "web-i-99999999".into();
        assert!(Member::from_json("web", 3, &bad.to_json()).is_err());
    }
}
