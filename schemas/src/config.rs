//! What the conductor's and the signer's config files share: durations written the way operators
//! write them (`30m`, `5s`, `500ms`), and turning a serde/YAML error into a located diagnostic.

use crate::diag::{Diagnostic, Diagnostics, Location};
use std::time::Duration;

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
}
