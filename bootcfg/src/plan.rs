//! Actions and the engine that either shows them (`plan`) or carries them out (`apply`).
//!
//! Each module turns the user-data into a list of [`Action`]s. The [`Engine`] walks that list
//! once; in [`Mode::Plan`] it computes the same file contents and diffs as `apply` would (against
//! what is on disk, plus what earlier planned actions would have written) and runs nothing. So
//! `plan` and `apply` share one code path: only the last step (write/run or not) differs.

use crate::rootfs::{Root, RootError};
use crate::runner::{Cmd, Redactor, RunError, Runner};
use serde::Serialize;
use std::collections::HashMap;

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
                if let Some(key) = source_key(line) {
                    let lines: Vec<&str> = cur.lines().collect();
                    if let Some(i) = lines
                        .iter()
                        .position(|l| source_key(l).as_ref() == Some(&key))
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

/// Packages dpkg's status file shows in a state only an interrupted run leaves: half-installed,
/// unpacked, half-configured. Read from the file, so `plan` needs no command.
fn broken_packages(root: &crate::rootfs::Root) -> Result<Vec<String>, RootError> {
    let status = root.read("/var/lib/dpkg/status")?.unwrap_or_default();
    let status = String::from_utf8_lossy(&status);
    let mut v: Vec<String> = status
        .split("\n\n")
        .filter_map(|stanza| {
            let name = stanza.lines().find_map(|l| l.strip_prefix("Package: "))?;
            let state = stanza.lines().find_map(|l| l.strip_prefix("Status: "))?;
            let last = state.split_whitespace().last()?;
            matches!(last, "half-installed" | "unpacked" | "half-configured")
                .then(|| name.trim().to_owned())
        })
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// `deb uri suite components…` of a one-line source, without its `[options]`: which repository
/// it names. `None` for comments and other lines.
fn source_key(line: &str) -> Option<String> {
    let t = line.trim();
    let (kind, rest) = t.split_once(char::is_whitespace)?;
    if kind != "deb" && kind != "deb-src" {
        return None;
    }
    let mut rest = rest.trim_start();
    if rest.starts_with('[') {
        rest = rest.split_once(']')?.1.trim_start();
    }
    let words: Vec<&str> = rest.split_whitespace().collect();
    (words.len() >= 2).then(|| format!("{kind} {}", words.join(" ")))
}

/// One step of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write a file (atomically, through [`Root::write`]).
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
    /// Repair an interrupted dpkg (`/var/lib/dpkg/updates` not empty, or packages left
    /// half-installed, unpacked or half-configured): `dpkg --configure -a`, and if that fails,
    /// purge the broken packages listed in `reinstall` (this run installs them again, after
    /// re-applying their debconf preseed) and configure the rest.
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

/// What one action did (apply) or would do (plan). Secrets are redacted.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Step {
    pub module: String,
    /// `write`, `remove`, `mkdir`, `run`, `fetch-key`, `note`.
    pub kind: String,
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
    /// dpkg architecture (`amd64`, `arm64`).
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
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "i386",
            "arm" => "armhf",
            "powerpc64" => "ppc64el",
            "s390x" => "s390x",
            other => other,
        }
        .to_owned();
        Ctx {
            root,
            instance_id: instance_id.to_owned(),
            fqdn: fqdn.to_owned(),
            os_id: get("ID").unwrap_or_else(|| "debian".to_owned()),
            release: get("VERSION_CODENAME").filter(|s| !s.is_empty()),
            arch,
            redactor: Redactor::default(),
            identity: Identity::default(),
            shortener: identity_shortener(),
        }
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

/// Carries out (or shows) actions. See the module docs.
pub struct Engine<'a> {
    pub ctx: &'a Ctx,
    pub runner: &'a dyn Runner,
    pub mode: Mode,
    /// Plan mode: what earlier actions would have written (`None` = removed).
    overlay: HashMap<String, Option<(Vec<u8>, u32)>>,
    pub steps: Vec<Step>,
    /// Set when a reboot was required but not done (root is not `/`).
    pub reboot_pending: bool,
}

impl<'a> Engine<'a> {
    pub fn new(ctx: &'a Ctx, runner: &'a dyn Runner, mode: Mode) -> Engine<'a> {
        Engine {
            ctx,
            runner,
            mode,
            overlay: HashMap::new(),
            steps: Vec::new(),
            reboot_pending: false,
        }
    }

    fn current(&self, path: &str) -> Result<Option<(Vec<u8>, u32)>, StepError> {
        if let Some(v) = self.overlay.get(path) {
            return Ok(v.clone());
        }
        let root = &self.ctx.root;
        Ok(match root.read(path)? {
            Some(b) => Some((b, root.mode(path)?.unwrap_or(0o644))),
            None => None,
        })
    }

    fn step(&self, module: &str, kind: &str) -> Step {
        Step {
            module: module.to_owned(),
            kind: kind.to_owned(),
            path: None,
            mode: None,
            command: None,
            diff: None,
            changed: true,
            note: None,
        }
    }

    fn show_cmd(&self, cmd: &Cmd) -> String {
        let mut s = self.ctx.mask(&cmd.display());
        if let Some(input) = &cmd.stdin {
            s.push_str(&format!("  <<< stdin: {} line(s)", input.lines().count()));
        }
        s
    }

    fn run(&mut self, module: &str, cmd: &Cmd) -> Result<(), StepError> {
        let mut st = self.step(module, "run");
        st.command = Some(self.show_cmd(cmd));
        if self.mode == Mode::Apply {
            let debconf = cmd
                .argv
                .first()
                .is_some_and(|p| p == crate::runner::programs::DEBCONF_SET_SELECTIONS);
            let before = if debconf {
                self.ctx.root.read(DEBCONF_DB).ok().flatten()
            } else {
                None
            };
            let out = self.runner.run(cmd)?;
            st.changed = if debconf {
                self.ctx.root.read(DEBCONF_DB).ok().flatten() != before
            } else {
                changed_by(cmd, &out)
            };
        }
        self.steps.push(st);
        Ok(())
    }

    /// Carry out (or show) one action of `module`.
    pub fn execute(&mut self, module: &str, action: &Action) -> Result<(), StepError> {
        match action {
            Action::Write {
                path,
                content,
                mode,
            } => {
                let cur = self.current(path)?;
                let new = content.render(cur.as_ref().map(|(b, _)| b.as_slice()));
                let same_bytes = cur.as_ref().is_some_and(|(b, _)| *b == new);
                let same_mode = cur.as_ref().is_some_and(|(_, m)| m == mode);
                let mut st = self.step(module, "write");
                st.path = Some(path.clone());
                st.mode = Some(format!("{mode:04o}"));
                st.changed = !(same_bytes && same_mode);
                st.diff = Some(self.diff(
                    path,
                    cur.as_ref().map(|(b, _)| b.as_slice()),
                    &new,
                    matches!(content, Content::Binary(_)),
                ));
                if same_bytes && !same_mode {
                    let old = cur.as_ref().map(|(_, m)| *m).unwrap_or(0);
                    st.note = Some(format!("mode {old:04o} -> {mode:04o}"));
                }
                if st.changed {
                    if self.mode == Mode::Apply {
                        self.ctx.root.write(path, &new, *mode)?;
                    } else {
                        self.overlay.insert(path.clone(), Some((new, *mode)));
                    }
                }
                self.steps.push(st);
            }
            Action::Remove { path } => {
                let cur = self.current(path)?;
                let mut st = self.step(module, "remove");
                st.path = Some(path.clone());
                if cur.is_some() {
                    if self.mode == Mode::Apply {
                        self.ctx.root.remove(path)?;
                    } else {
                        self.overlay.insert(path.clone(), None);
                    }
                    // nothing to show when the file is already absent
                    self.steps.push(st);
                }
            }
            Action::MkDir { path, mode } => {
                let cur = self.ctx.root.mode(path)?;
                let mut st = self.step(module, "mkdir");
                st.path = Some(path.clone());
                st.mode = Some(format!("{mode:04o}"));
                st.changed = cur != Some(*mode);
                if st.changed && self.mode == Mode::Apply {
                    self.ctx.root.ensure_dir(path, *mode)?;
                }
                self.steps.push(st);
            }
            Action::Run { cmd } => self.run(module, cmd)?,
            Action::RecoverDpkg { reinstall } => {
                let journal = !self.ctx.root.list_dir("/var/lib/dpkg/updates")?.is_empty();
                let broken = broken_packages(&self.ctx.root)?;
                let pending = journal || !broken.is_empty();
                let configure =
                    Cmd::new([crate::runner::programs::DPKG, "--configure", "-a"]).apt();
                let mut st = self.step(module, "run");
                st.command = Some(self.show_cmd(&configure));
                st.changed = pending;
                if !pending {
                    st.note = Some("skipped: dpkg was not interrupted".to_owned());
                    self.steps.push(st);
                    return Ok(());
                }
                st.note = Some(if broken.is_empty() {
                    "dpkg was interrupted (/var/lib/dpkg/updates is not empty)".to_owned()
                } else {
                    format!("dpkg was interrupted; left broken: {}", broken.join(", "))
                });
                if self.mode == Mode::Apply {
                    tracing::warn!("dpkg was interrupted earlier; running dpkg --configure -a");
                    if let Err(first) = self.runner.run(&configure) {
                        // A maintainer script killed half-way can leave state its next run cannot
                        // fix (locales: an emptied locale.gen resets the preseeded question).
                        // Start the packages this run installs again from scratch; anything else
                        // broken is the image's problem, reported as the error it is.
                        let left = broken_packages(&self.ctx.root)?;
                        let ours: Vec<String> = left
                            .iter()
                            .filter(|p| reinstall.contains(p))
                            .cloned()
                            .collect();
                        if ours.is_empty() {
                            return Err(first.into());
                        }
                        tracing::warn!(
                            packages = %ours.join(" "),
                            "dpkg --configure -a failed; purging the broken packages this run installs again"
                        );
                        let mut purge = vec![
                            crate::runner::programs::DPKG.to_owned(),
                            "--purge".to_owned(),
                            "--force-remove-reinstreq".to_owned(),
                        ];
                        purge.extend(ours.iter().cloned());
                        self.runner.run(&Cmd::new(purge).apt())?;
                        self.runner.run(&configure)?;
                        st.note = Some(format!(
                            "dpkg was interrupted; purged to install again: {}",
                            ours.join(", ")
                        ));
                    }
                    // an interrupted apt run may also have left half-unpacked packages
                    self.runner
                        .run(&Cmd::new(crate::modules::apt_get(&["install", "-f"])).apt())?;
                }
                self.steps.push(st);
            }
            Action::InstallFirstKnown {
                candidates,
                version,
                apt_get,
            } => {
                let mut st = self.step(module, "run");
                let chosen = if self.mode == Mode::Apply {
                    let mut chosen = None;
                    for c in candidates {
                        let probe = Cmd::new([
                            crate::runner::programs::APT_CACHE,
                            "show",
                            "--no-all-versions",
                            c.as_str(),
                        ]);
                        if self.runner.run(&probe).is_ok() {
                            chosen = Some(c.clone());
                            break;
                        }
                    }
                    Some(chosen.ok_or_else(|| {
                        StepError::Invalid(format!(
                            "apt knows none of the packages {}; add the repository that provides them under apt.sources",
                            candidates.join(", ")
                        ))
                    })?)
                } else {
                    None
                };
                let name = chosen.clone().unwrap_or_else(|| candidates[0].clone());
                let spec = match version {
                    Some(v) => format!("{name}={v}"),
                    None => name,
                };
                let mut argv = apt_get.clone();
                argv.push(spec);
                let cmd = Cmd::new(argv).apt();
                st.command = Some(self.show_cmd(&cmd));
                if candidates.len() > 1 && chosen.is_none() {
                    st.note = Some(format!("first of {} that apt knows", candidates.join(", ")));
                }
                if self.mode == Mode::Apply {
                    let out = self.runner.run(&cmd)?;
                    st.changed = changed_by(&cmd, &out);
                }
                self.steps.push(st);
            }
            Action::FetchKey { key, dest, proxy } => {
                let mut st = self.step(module, "fetch-key");
                st.path = Some(dest.clone());
                st.mode = Some("0644".to_owned());
                st.note = Some(match key {
                    KeyFetch::Keyid { id, keyserver } => {
                        format!("key {id} from {keyserver}, fingerprint checked")
                    }
                    KeyFetch::Launchpad { owner, name, .. } => format!(
                        "signing key of ppa:{owner}/{name} via Launchpad, fingerprint checked"
                    ),
                });
                if self.mode == Mode::Apply {
                    let bytes =
                        crate::keys::fetch(key, proxy.as_deref()).map_err(StepError::Key)?;
                    let cur = self.ctx.root.read(dest)?;
                    st.changed = cur.as_deref() != Some(bytes.as_slice());
                    if st.changed {
                        self.ctx.root.write(dest, &bytes, 0o644)?;
                    }
                }
                self.steps.push(st);
            }
            Action::Service {
                units,
                enable,
                start,
            } => {
                let unit_dirs = [
                    "/etc/systemd/system",
                    "/usr/lib/systemd/system",
                    "/lib/systemd/system",
                ];
                let found = units
                    .iter()
                    .find(|u| {
                        unit_dirs
                            .iter()
                            .any(|d| self.ctx.root.exists(&format!("{d}/{u}")))
                    })
                    .cloned();
                let has_systemctl = ["/usr/bin/systemctl", "/bin/systemctl"]
                    .iter()
                    .any(|p| self.ctx.root.exists(p));
                match (found, has_systemctl) {
                    (Some(unit), true) => {
                        if *enable {
                            self.run(
                                module,
                                &Cmd::new([
                                    crate::runner::programs::SYSTEMCTL,
                                    "enable",
                                    unit.as_str(),
                                ]),
                            )?;
                        }
                        if *start && self.ctx.root.is_host() {
                            // --no-block: bootcfg.service is ordered Before=puppet.service, so
                            // waiting for the start job here would deadlock.
                            self.run(
                                module,
                                &Cmd::new([
                                    crate::runner::programs::SYSTEMCTL,
                                    "start",
                                    "--no-block",
                                    unit.as_str(),
                                ]),
                            )?;
                        } else if *start {
                            self.note(module, format!("not starting {unit}: the root is not / (it starts at the image's next boot)"));
                        }
                    }
                    (None, _) if self.mode == Mode::Plan => {
                        if *enable {
                            self.note(
                                module,
                                format!(
                                    "systemctl enable {} (its unit file comes with the package)",
                                    units.join(" or ")
                                ),
                            );
                        } else if *start && self.ctx.root.is_host() {
                            self.note(
                                module,
                                format!("systemctl start --no-block {}", units.join(" or ")),
                            );
                        }
                    }
                    (None, _) if !*enable => {}
                    (Some(_), false) if !*enable => {}
                    (None, _) => {
                        let msg = format!(
                            "no unit file {} in the root; service not enabled",
                            units.join(" or ")
                        );
                        tracing::warn!("{msg}");
                        self.note(module, msg);
                    }
                    (Some(unit), false) => {
                        let msg = format!(
                            "systemctl is not installed in the root; {unit} keeps the state its package gave it"
                        );
                        tracing::warn!("{msg}");
                        self.note(module, msg);
                    }
                }
            }
            Action::RebootIfRequired => {
                let required = self.ctx.root.exists("/run/reboot-required")
                    || self.ctx.root.exists("/var/run/reboot-required");
                let mut st = self.step(module, "note");
                st.changed = required;
                st.note = Some(if !required {
                    "no reboot required".to_owned()
                } else if self.ctx.root.is_host() {
                    "reboot required: rebooting after this run".to_owned()
                } else {
                    "reboot required, but the root is not /: not rebooting".to_owned()
                });
                if required {
                    self.reboot_pending = true;
                }
                self.steps.push(st);
            }
            Action::Note { text } => self.note(module, text.clone()),
        }
        Ok(())
    }

    fn note(&mut self, module: &str, text: String) {
        let mut st = self.step(module, "note");
        st.changed = false;
        st.note = Some(text);
        self.steps.push(st);
    }

    fn diff(&self, path: &str, old: Option<&[u8]>, new: &[u8], binary: bool) -> String {
        if binary || std::str::from_utf8(new).is_err() {
            use sha2::Digest;
            let h = hex::encode(sha2::Sha256::digest(new));
            return match old {
                Some(o) if o == new => format!("binary, {} bytes, unchanged", new.len()),
                _ => format!("binary, {} bytes, sha256 {h}", new.len()),
            };
        }
        let old_s = old
            .map(|o| String::from_utf8_lossy(o).into_owned())
            .unwrap_or_default();
        let new_s = String::from_utf8_lossy(new);
        let old_s = self.ctx.mask(&old_s);
        let new_s = self.ctx.mask(&new_s);
        if old.is_some() && old_s == new_s {
            return "unchanged".to_owned();
        }
        let from = if old.is_some() {
            format!("a{path}")
        } else {
            "/dev/null".to_owned()
        };
        similar::TextDiff::from_lines(&old_s, &new_s)
            .unified_diff()
            .context_radius(3)
            .header(&from, &format!("b{path}"))
            .to_string()
    }
}

/// debconf's database of answers (compared before/after `debconf-set-selections`).
const DEBCONF_DB: &str = "/var/cache/debconf/config.dat";

/// Whether a command that ran changed the system, judged from its output, so that a rerun
/// reports `changed: false` for every step. Unknown commands count as a change.
pub fn changed_by(cmd: &Cmd, out: &crate::runner::CmdOutput) -> bool {
    use crate::runner::programs;
    let prog = cmd.argv.first().map(String::as_str).unwrap_or("");
    let sub = cmd
        .argv
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-') && !a.contains("::") && !a.contains('='));
    match (prog, sub.map(String::as_str)) {
        // refreshes apt's package lists (a cache), not the configuration
        (programs::APT_GET, Some("update")) => false,
        (programs::APT_GET, _) => apt_summary_changed(&out.stdout).unwrap_or(true),
        (programs::SYSTEMCTL, Some("enable")) => {
            out.stderr.contains("Created symlink") || out.stdout.contains("Created symlink")
        }
        // `puppet agent --test` (detailed exit codes): 2 = changes applied, 0 = none
        (programs::PUPPET | programs::PUPPET_AIO, _) => out.code == 2,
        _ => true,
    }
}

/// From `N upgraded, N newly installed, [N reinstalled, ]N downgraded, N to remove and N not
/// upgraded.`: whether any of the changing counts is non-zero. `None` if there is no summary.
fn apt_summary_changed(stdout: &str) -> Option<bool> {
    let line = stdout
        .lines()
        .find(|l| l.contains(" upgraded, ") && l.contains(" newly installed"))?;
    let mut any = false;
    for part in line.split([',', '.']) {
        let part = part.trim().trim_start_matches("and ");
        let Some((n, what)) = part.split_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        if what.starts_with("not upgraded") {
            continue;
        }
        any |= n > 0;
    }
    Some(any)
}

/// Text rendering of steps for `bootcfg plan` / `apply` output.
pub fn render_steps(steps: &[Step], mode: Mode) -> String {
    let mut out = String::new();
    let mut module = "";
    for s in steps {
        if s.module != module {
            module = &s.module;
            out.push_str(&format!("== {module}\n"));
        }
        match s.kind.as_str() {
            "run" => {
                out.push_str(&format!("  $ {}", s.command.as_deref().unwrap_or("")));
                if let Some(n) = &s.note {
                    out.push_str(&format!("    # {n}"));
                }
                out.push('\n');
            }
            "note" => out.push_str(&format!("  # {}\n", s.note.as_deref().unwrap_or(""))),
            kind => {
                let verb = match (kind, mode, s.changed) {
                    (_, _, false) => "unchanged",
                    ("write", Mode::Plan, _) => "would write",
                    ("write", Mode::Apply, _) => "wrote",
                    ("remove", Mode::Plan, _) => "would remove",
                    ("remove", Mode::Apply, _) => "removed",
                    ("mkdir", _, _) => "directory",
                    ("fetch-key", Mode::Plan, _) => "would fetch",
                    ("fetch-key", Mode::Apply, _) => "fetched",
                    _ => kind,
                };
                out.push_str(&format!("  {verb} {}", s.path.as_deref().unwrap_or("")));
                if let Some(m) = &s.mode {
                    out.push_str(&format!(" (mode {m})"));
                }
                if let Some(n) = &s.note {
                    out.push_str(&format!("  # {n}"));
                }
                out.push('\n');
                if let Some(d) = &s.diff {
                    if s.changed && d.contains('\n') {
                        for l in d.lines() {
                            out.push_str("    ");
                            out.push_str(l);
                            out.push('\n');
                        }
                    } else if s.changed {
                        out.push_str(&format!("    ({d})\n"));
                    }
                }
            }
        }
    }
    out
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
    fn apt_summary() {
        let none = "Reading package lists...\n0 upgraded, 0 newly installed, 0 to remove and 3 not upgraded.\n";
        assert_eq!(apt_summary_changed(none), Some(false));
        let some = "1 upgraded, 2 newly installed, 0 to remove and 0 not upgraded.\n";
        assert_eq!(apt_summary_changed(some), Some(true));
        assert_eq!(
            apt_summary_changed(
                "0 upgraded, 0 newly installed, 1 reinstalled, 0 to remove and 0 not upgraded."
            ),
            Some(true)
        );
        assert_eq!(
            apt_summary_changed("hello is already the newest version"),
            None
        );
    }

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
}
