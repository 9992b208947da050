//! The vocabulary between the producers (the modules) and the engine: what a module asks for
//! ([`Action`], [`Content`], [`KeyFetch`]), what the engine reports ([`Step`], [`StepKind`]) and
//! the one seam for network I/O ([`KeySource`]). Uses only the leaves ([`crate::rootfs`],
//! [`crate::runner`], [`crate::ini`], [`crate::debian`]).

use crate::debian::SourceLine;
use crate::rootfs::RootError;
use crate::runner::{Cmd, RunError};
use serde::{Deserialize, Serialize};

/// Where a keyring comes from when it is fetched at apply time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFetch {
    /// A key id / fingerprint (uppercase hex) from a keyserver (host or URL).
    Keyid { id: String, keyserver: String },
    /// The signing key of a Launchpad PPA (its fingerprint comes from the Launchpad API).
    Launchpad {
        owner: String,
        name: String,
        keyserver: String,
    },
}

/// Where the engine gets keys that are fetched at apply time: the one place network I/O enters
/// the engine ([`crate::keys::Keyservers`] for real; tests pass a fake).
pub trait KeySource {
    /// The binary keyring holding only the certificate `key` names, checked.
    fn fetch(&self, key: &KeyFetch, proxy: Option<&str>) -> Result<Vec<u8>, String>;
}

/// A key source for runs that must not fetch (`plan`, tests): every fetch fails.
pub struct NoKeys;

impl KeySource for NoKeys {
    fn fetch(&self, key: &KeyFetch, _proxy: Option<&str>) -> Result<Vec<u8>, String> {
        Err(format!("no key source to fetch {key:?} from"))
    }
}

/// How the new content of a file is computed from its current content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Replace with this text.
    Text(String),
    /// Replace with these bytes (keyrings).
    Binary(Vec<u8>),
    /// cloud-init's `append: true`: add the line unless the file already holds it (idempotent).
    AppendLine(String),
    /// The same for a multi-line block (a deb822 stanza): appended after a blank line unless the
    /// file already holds it.
    AppendBlock(String),
    /// Merge these settings into an INI file (puppet.conf), keeping everything else.
    IniMerge(Vec<(String, Vec<(String, String)>)>),
}

impl Content {
    pub fn render(&self, current: Option<&[u8]>) -> Vec<u8> {
        match self {
            Content::Text(t) => t.as_bytes().to_vec(),
            Content::Binary(b) => b.clone(),
            Content::AppendLine(line) => {
                let cur = current
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .unwrap_or_default();
                if cur.lines().any(|l| l.trim() == line.trim()) {
                    return cur.into_bytes();
                }
                // The same repository already listed with other options (say, an image where
                // cloud-init wrote it without signed-by): replace that line instead of adding a
                // second one, which apt would reject ("Conflicting values set for option Signed-By").
                if let Some(key) = repository(line) {
                    let lines: Vec<&str> = cur.lines().collect();
                    if let Some(i) = lines
                        .iter()
                        .position(|l| repository(l).as_ref() == Some(&key))
                    {
                        let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
                        out[i] = line.clone();
                        let mut text = out.join("\n");
                        text.push('\n');
                        return text.into_bytes();
                    }
                }
                let mut out = cur;
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str(line);
                out.push('\n');
                out.into_bytes()
            }
            Content::AppendBlock(block) => {
                let cur = current
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .unwrap_or_default();
                let block = block.trim_end_matches('\n');
                let stanzas: Vec<&str> = cur.split("\n\n").map(|s| s.trim_matches('\n')).collect();
                if stanzas.contains(&block) {
                    return cur.into_bytes();
                }
                let mut out = cur.trim_end_matches('\n').to_owned();
                if !out.is_empty() {
                    out.push_str("\n\n");
                }
                out.push_str(block);
                out.push('\n');
                out.into_bytes()
            }
            Content::IniMerge(settings) => {
                let cur = current
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .unwrap_or_default();
                crate::ini::merge(&cur, settings).into_bytes()
            }
        }
    }
}

/// Which repository a one-line source names (its options left out), for replacing a line of
/// the same repository.
fn repository(line: &str) -> Option<String> {
    SourceLine::parse(line).map(|l| l.repository())
}

/// One step of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write a file (atomically, through [`crate::rootfs::Root::write`]).
    Write {
        path: String,
        content: Content,
        mode: u32,
    },
    /// Remove a file if present.
    Remove { path: String },
    /// Create a directory (and parents) with this mode.
    MkDir { path: String, mode: u32 },
    /// Run a command inside the root.
    Run { cmd: Cmd },
    /// Repair an interrupted dpkg (its journal `/var/lib/dpkg/updates` not empty, or packages
    /// left needing a reinstall, unpacked or half-configured), whatever installed them:
    /// 1. `dpkg --configure -a` folds the journal into the status file and configures what it
    ///    can (it fails while a package needs a reinstall; that is repaired next);
    /// 2. `apt-get install -f --reinstall P…` unpacks every package dpkg flags
    ///    `reinstreq` / half-installed again from the archive (any origin: a dependency, an
    ///    image package), then `dpkg --configure -a` again;
    /// 3. only if configuring still fails: purge the interrupted packages listed in
    ///    `reinstall` (the ones this run installs: it re-applies their debconf preseed and
    ///    installs them again; a killed maintainer script can leave state its next run cannot
    ///    fix) and configure again;
    /// 4. `apt-get install -f`.
    ///
    /// `plan` shows each of these commands as a step, from dpkg's status file and journal.
    RecoverDpkg { reinstall: Vec<String> },
    /// `apt-get install` the first of `candidates` that apt knows.
    InstallFirstKnown {
        candidates: Vec<String>,
        version: Option<String>,
        apt_get: Vec<String>,
    },
    /// Fetch a key over HTTPS, check its fingerprint, write it as a binary keyring to `dest`.
    FetchKey {
        key: KeyFetch,
        dest: String,
        proxy: Option<String>,
    },
    /// `systemctl enable` and/or `start --no-block` the first of `units` whose unit file exists;
    /// `start` only when the root is `/`.
    Service {
        units: Vec<String>,
        enable: bool,
        start: bool,
    },
    /// Read the paths the installed Puppet uses (`puppet config print`, i.e. the package's own
    /// defaults and the image's puppet.conf) and fail, before anything is written there, when
    /// one of `expect` (setting, path, the `puppet.` key that overrides it) differs. Skipped
    /// (a note) when `bin` is not in the root.
    CheckPuppetPaths {
        bin: String,
        expect: Vec<(String, String, String)>,
    },
    /// Reboot if `/run/reboot-required` exists (root `/` only).
    RebootIfRequired,
    /// Something worth showing that does nothing (a skipped feature, a warning).
    Note { text: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Plan,
    Apply,
}

/// What kind of step a [`Step`] is (`kind` in plan output and the result file).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    Write,
    Remove,
    Mkdir,
    Run,
    FetchKey,
    Note,
}

/// What one action did (apply) or would do (plan). Secrets are redacted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Step {
    pub module: String,
    pub kind: StepKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Unified diff (text files), or a summary for binary or unchanged files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    pub changed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Root(#[from] RootError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_line_is_idempotent() {
        let c = Content::AppendLine("deb http://x y main".into());
        let once = c.render(None);
        assert_eq!(once, b"deb http://x y main\n");
        assert_eq!(c.render(Some(&once)), once);
        let other = c.render(Some(b"deb http://a b c"));
        assert_eq!(other, b"deb http://a b c\ndeb http://x y main\n");
    }

    #[test]
    fn append_line_replaces_the_same_repo_with_other_options() {
        let c = Content::AppendLine(
            "deb [signed-by=/etc/apt/keyrings/x.gpg] http://x bookworm main".into(),
        );
        let out = c.render(Some(
            b"# keep\ndeb http://x bookworm main\ndeb http://y bookworm main\n",
        ));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# keep\ndeb [signed-by=/etc/apt/keyrings/x.gpg] http://x bookworm main\ndeb http://y bookworm main\n"
        );
    }

    #[test]
    fn append_block_is_idempotent() {
        let c = Content::AppendBlock("Types: deb\nURIs: http://x\n".into());
        let once = c.render(Some(b"Types: deb\nURIs: http://a\n"));
        assert_eq!(
            once,
            b"Types: deb\nURIs: http://a\n\nTypes: deb\nURIs: http://x\n"
        );
        assert_eq!(c.render(Some(&once)), once);
    }

    #[test]
    fn step_kinds_keep_their_names_in_json() {
        assert_eq!(
            serde_json::to_string(&StepKind::FetchKey).unwrap(),
            "\"fetch-key\""
        );
        assert_eq!(
            serde_json::to_string(&StepKind::Mkdir).unwrap(),
            "\"mkdir\""
        );
    }
}
