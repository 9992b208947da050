//! Facts about the machine being configured ([`Ctx`], read once), and how values are masked in
//! everything bootcfg shows: secrets redacted ([`Redactor`]), long values shortened
//! ([`Shortener`]).

use crate::rootfs::Root;
use crate::runner::Redactor;

/// Whether this run has the EC2 instance identity proof that `puppet.instance_identity` puts
/// into the CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The body of IMDS `dynamic/instance-identity/rsa2048` on one line (whitespace removed,
    /// checked to be base64 by [`crate::imds::identity_one_line`]).
    Available(String),
    /// Why there is none, e.g. "the datasource is nocloud:/seed; only EC2's IMDS serves a
    /// signed instance identity document".
    Unavailable(String),
}

impl Default for Identity {
    fn default() -> Self {
        Identity::Unavailable("no datasource was read".to_owned())
    }
}

/// Characters of a shortened value that stay visible.
pub const SHORTEN_KEEP: usize = 32;

/// `value` as its first [`SHORTEN_KEEP`] characters, `…` and its length:
/// `MIAGCSqGSIb3DQEHAqCAMIACAQExDzAN… (1484 characters)`.
pub fn shortened(value: &str) -> String {
    let n = value.chars().count();
    if n <= SHORTEN_KEEP {
        return value.to_owned();
    }
    let head: String = value.chars().take(SHORTEN_KEEP).collect();
    format!("{head}… ({n} characters)")
}

/// Long values that plan output, diffs, results and logs show shortened ([`shortened`]), never
/// in full: the instance identity proof. Works like [`Redactor`] (which hides secrets), with a
/// second kind of rule for values it was not given: whatever base64 follows a marker such as
/// `<oid>:` (an older identity in a file on disk).
#[derive(Debug, Clone, Default)]
pub struct Shortener {
    values: Vec<String>,
    markers: Vec<String>,
}

impl Shortener {
    /// Shorten `value` wherever it appears.
    pub fn add(&mut self, value: &str) {
        if value.chars().count() > SHORTEN_KEEP && !self.values.iter().any(|v| v == value) {
            self.values.push(value.to_owned());
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }
    /// Shorten the base64 run (optionally quoted) that follows `marker` on a line.
    pub fn add_marker(&mut self, marker: &str) {
        if !marker.is_empty() && !self.markers.iter().any(|m| m == marker) {
            self.markers.push(marker.to_owned());
        }
    }
    pub fn apply(&self, text: &str) -> String {
        let mut t = text.to_owned();
        for v in &self.values {
            if t.contains(v.as_str()) {
                t = t.replace(v.as_str(), &shortened(v));
            }
        }
        for m in &self.markers {
            t = shorten_after(&t, m);
        }
        t
    }
}

/// Every base64 run longer than [`SHORTEN_KEEP`] that follows `marker` (then spaces and an
/// optional quote), shortened.
fn shorten_after(text: &str, marker: &str) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        let after = i + marker.len();
        out.push_str(&rest[..after]);
        rest = &rest[after..];
        let lead = rest.len() - rest.trim_start_matches([' ', '\t', '"', '\'']).len();
        out.push_str(&rest[..lead]);
        rest = &rest[lead..];
        let run = rest.find(|c: char| !is_b64(c)).unwrap_or(rest.len());
        out.push_str(&shortened(&rest[..run]));
        rest = &rest[run..];
    }
    out.push_str(rest);
    out
}

/// Facts about the machine being configured, read once.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub root: Root,
    pub instance_id: String,
    /// The fully qualified host name (`%f`).
    pub fqdn: String,
    /// `ID` from the root's os-release (`debian`, `ubuntu`).
    pub os_id: String,
    /// `VERSION_CODENAME` from the root's os-release (`$RELEASE`).
    pub release: Option<String>,
    /// `VERSION_ID` from the root's os-release (`12`, `13`, `24.04`).
    pub version_id: Option<String>,
    /// The root's dpkg architecture (`amd64`, `arm64`): [`crate::debian::dpkg_architecture`].
    pub arch: String,
    pub redactor: Redactor,
    /// The EC2 instance identity proof for `puppet.instance_identity` (set with
    /// [`Ctx::set_identity`], which also registers it with `shortener`).
    pub identity: Identity,
    pub shortener: Shortener,
}

impl Ctx {
    pub fn new(root: Root, instance_id: &str, fqdn: &str) -> Ctx {
        let osr = root
            .read("/etc/os-release")
            .ok()
            .flatten()
            .or_else(|| root.read("/usr/lib/os-release").ok().flatten())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let get = |k: &str| {
            osr.lines().find_map(|l| {
                let v = l.strip_prefix(k)?.strip_prefix('=')?;
                Some(v.trim().trim_matches('"').trim_matches('\'').to_owned())
            })
        };
        let arch = crate::debian::dpkg_architecture(&root);
        Ctx {
            root,
            instance_id: instance_id.to_owned(),
            fqdn: fqdn.to_owned(),
            os_id: get("ID").unwrap_or_else(|| "debian".to_owned()),
            release: get("VERSION_CODENAME").filter(|s| !s.is_empty()),
            version_id: get("VERSION_ID").filter(|s| !s.is_empty()),
            arch,
            redactor: Redactor::default(),
            identity: Identity::default(),
            shortener: identity_shortener(),
        }
    }

    /// The major and minor numbers of `VERSION_ID` (`13` → (13, 0), `24.04` → (24, 4)).
    pub fn version(&self) -> Option<(u32, u32)> {
        let v = self.version_id.as_deref()?;
        let mut parts = v.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
        Some((major, minor))
    }

    /// Set the identity proof; an available one is shown shortened from now on.
    pub fn set_identity(&mut self, identity: Identity) {
        if let Identity::Available(v) = &identity {
            self.shortener.add(v);
        }
        self.identity = identity;
    }

    /// `text` as plan output, results and logs may show it: long values shortened, secrets
    /// redacted.
    pub fn mask(&self, text: &str) -> String {
        self.redactor.apply(&self.shortener.apply(text))
    }
}

/// A shortener that knows the instance identity attribute's line in `csr_attributes.yaml`.
fn identity_shortener() -> Shortener {
    let mut s = Shortener::default();
    s.add_marker(&format!("{}:", schemas::oids::INSTANCE_IDENTITY));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortener_shows_the_start_and_the_length() {
        let v = format!("MIAGCSqGSIb3DQEHAqCAMIACAQExDzAN{}", "A".repeat(1452));
        assert_eq!(
            shortened(&v),
            "MIAGCSqGSIb3DQEHAqCAMIACAQExDzAN… (1484 characters)"
        );
        assert_eq!(shortened("short"), "short");
        let mut s = Shortener::default();
        s.add(&v);
        assert_eq!(
            s.apply(&format!("a {v} b")),
            "a MIAGCSqGSIb3DQEHAqCAMIACAQExDzAN… (1484 characters) b"
        );
        // an older value after the marker, unknown to the shortener, is shortened too
        s.add_marker("2.25.1:");
        let old = format!(
            "x:\n  2.25.1: {}\n  2.25.1: \"{}\"\n  2.25.1: abc\n",
            "B".repeat(40),
            "C".repeat(40)
        );
        assert_eq!(
            s.apply(&old),
            format!(
                "x:\n  2.25.1: {}… (40 characters)\n  2.25.1: \"{}… (40 characters)\"\n  2.25.1: abc\n",
                "B".repeat(32),
                "C".repeat(32)
            )
        );
        // idempotent
        assert_eq!(s.apply(&s.apply(&old)), s.apply(&old));
    }
}
