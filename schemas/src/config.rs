//! What the conductor's and the signer's config files share: durations written the way operators
//! write them (`30m`, `5s`, `500ms`), and turning a serde/YAML error into a located diagnostic.

use crate::diag::{Diagnostic, Diagnostics, Location};
use std::time::Duration;

/// An EC2 resource id: `prefix` (`i-`, `ami-`, `subnet-`, `sg-`) and 8 or 17 lowercase hex digits.
pub fn is_aws_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// An AWS account id: 12 decimal digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `500ms`, `5s`, `30m`, `2h`, `1d` (also combinations such as `1h 30m`). A bare number is refused:
/// the unit is never guessed.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("`{s}` is not a duration ({e}); write e.g. `500ms`, `5s`, `30m`, `2h` or `1d`")
    })
}

/// `with = "schemas::config::duration"` for a `Duration` field written as text.
pub mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// A typed-deserialisation error of config file `name` as one located diagnostic; `example` is
/// the example file the fix points at (`examples/signer.yaml`).
pub fn yaml_error(
    name: &str,
    e: &serde_path_to_error::Error<serde_yaml_ng::Error>,
    example: &str,
) -> Diagnostics {
    let key = e.path().to_string();
    let inner = e.inner();
    let loc = inner
        .location()
        .map(|l| Location {
            line: l.line(),
            column: l.column(),
        })
        .unwrap_or_default();
    let msg = inner.to_string();
    // serde_yaml_ng appends " at line N column M"; the location is shown separately.
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
    let fix = if msg.contains("unknown field") {
        format!("remove or correct the key; the accepted keys are listed in {example}")
    } else if msg.contains("missing field") {
        format!("add the key; see {example}")
    } else {
        format!("correct the value; see {example}")
    };
    let key = if key == "." { String::new() } else { key };
    Diagnostics(vec![Diagnostic::error(name, key, msg, fix).at(loc)])
}

/// A parsed registry location, checked the same way by both config files and `registry::open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryLocation {
    /// `s3://bucket/prefix`; `prefix` has no leading or trailing `/` and may be empty.
    S3 { bucket: String, prefix: String },
    /// `file:///dir`; always absolute.
    File(std::path::PathBuf),
}

impl RegistryLocation {
    /// `None` when `location` is neither a valid `s3://BUCKET[/PREFIX]` (S3 bucket naming rules,
    /// no `.`/`..` in the prefix) nor an absolute `file:///DIR` without `..`.
    pub fn parse(location: &str) -> Option<RegistryLocation> {
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            // S3 bucket naming rules: 3-63 of [a-z0-9.-], starting and ending with a letter or digit.
            let ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                })
                && bucket
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
                && bucket
                    .bytes()
                    .last()
                    .is_some_and(|b| b.is_ascii_alphanumeric());
            let prefix = prefix.trim_matches('/');
            if !ok || prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
                return None;
            }
            Some(RegistryLocation::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            })
        } else if let Some(path) = location.strip_prefix("file://") {
            let path = std::path::Path::new(path);
            if !path.is_absolute()
                || path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return None;
            }
            Some(RegistryLocation::File(path.to_path_buf()))
        } else {
            None
        }
    }
}

/// The `registry:` value of a config file: `Some((message, fix))` when it is not a location.
pub fn check_registry(location: &str) -> Option<(String, String)> {
    RegistryLocation::parse(location).is_none().then(|| {
        (
            format!("`{location}` is not a registry location"),
            "use s3://BUCKET[/PREFIX] (a valid S3 bucket name) or file:///ABSOLUTE/DIR".to_owned(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        for (s, want) in [
            ("500ms", 500),
            ("5s", 5_000),
            ("30m", 1_800_000),
            ("1d", 86_400_000),
            ("1h 30m", 5_400_000),
        ] {
            assert_eq!(
                parse_duration(s).unwrap(),
                Duration::from_millis(want),
                "{s}"
            );
        }
        for bad in ["5", "m", "", "99999999999999999999h", "-5s"] {
            assert!(
                parse_duration(bad).unwrap_err().contains("write e.g."),
                "{bad}"
            );
        }
    }

    #[test]
    fn registry_locations_are_checked_alike_in_both_configs() {
        assert!(check_registry("s3://acme-bootcfg/prod").is_none());
        assert!(check_registry("file:///var/lib/bootcfg").is_none());
        for bad in [
            "s3://",
            "s3://Bad_Bucket",
            "s3://ok-bucket/../x",
            "file://relative",
            "file:///a/../b",
            "/srv/reg",
        ] {
            let (message, fix) = check_registry(bad).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(
                message.contains(bad) && fix.contains("s3://BUCKET"),
                "{bad}"
            );
        }
        let e = crate::signer_config::SignerConfig::parse("s.yaml", "registry: s3://Bad_Bucket\n")
            .unwrap_err();
        assert_eq!(
            (e.0[0].key.as_str(), e.0[0].location.line),
            ("registry", 1),
            "{e}"
        );
    }
}
