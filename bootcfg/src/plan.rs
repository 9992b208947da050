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

/// One package record of dpkg's database: `Package`, `Architecture` and the three words of
/// `Status:` (`want eflag status`, e.g. `install reinstreq half-installed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpkgRecord {
    pub name: String,
    pub arch: Option<String>,
    pub want: String,
    pub eflag: String,
    pub status: String,
}

impl DpkgRecord {
    /// dpkg will not configure (nor remove) it until it is unpacked again: the `reinstreq` flag
    /// (`dpkg -l` shows `..R`), which a kill anywhere inside an unpack leaves, with the status
    /// `half-installed` *or* `unpacked`/`half-configured` (the last steps of an unpack, and the
    /// prerm of an upgrade, run with the flag still set). `dpkg --configure -a` then fails with
    /// "package is in a very bad inconsistent state; you should reinstall it".
    pub fn needs_reinstall(&self) -> bool {
        self.eflag == "reinstreq" || self.status == "half-installed"
    }
    /// Unpacked but not (fully) configured: what `dpkg --configure -a` finishes.
    pub fn unconfigured(&self) -> bool {
        matches!(
            self.status.as_str(),
            "unpacked" | "half-configured" | "triggers-awaited" | "triggers-pending"
        )
    }
    /// Left half-way by an interrupted unpack, configure or removal.
    pub fn interrupted(&self) -> bool {
        self.needs_reinstall() || matches!(self.status.as_str(), "unpacked" | "half-configured")
    }
    /// The name apt takes: `name:arch` for an architecture-specific package, so that a foreign
    /// architecture's copy is the one reinstalled.
    pub fn apt_name(&self) -> String {
        match self.arch.as_deref() {
            Some(a) if !a.is_empty() && a != "all" => format!("{}:{a}", self.name),
            _ => self.name.clone(),
        }
    }
    /// `name (want eflag status)` for notes and logs.
    pub fn describe(&self) -> String {
        format!(
            "{} ({} {} {})",
            self.apt_name(),
            self.want,
            self.eflag,
            self.status
        )
    }
}

/// dpkg's package database as dpkg itself would see it: `/var/lib/dpkg/status` with the
/// journal of an interrupted run (`/var/lib/dpkg/updates/NNNN`, one record per file, applied in
/// order) laid over it. A kill leaves the latest states only in the journal, so reading the
/// status file alone would miss exactly the packages the kill broke. Read from files, so `plan`
/// needs no command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DpkgDb {
    pub records: Vec<DpkgRecord>,
    /// The journal holds records that dpkg has not folded into the status file yet (apt
    /// refuses to run until a dpkg command does: "dpkg was interrupted").
    pub journal: bool,
}

impl DpkgDb {
    pub const STATUS: &'static str = "/var/lib/dpkg/status";
    pub const UPDATES: &'static str = "/var/lib/dpkg/updates";

    pub fn read(root: &Root) -> Result<DpkgDb, RootError> {
        let status = root.read(Self::STATUS)?.unwrap_or_default();
        let mut records: Vec<DpkgRecord> = Vec::new();
        let mut put = |r: DpkgRecord| match records
            .iter_mut()
            .find(|o| o.name == r.name && o.arch == r.arch)
        {
            Some(o) => *o = r,
            None => records.push(r),
        };
        for r in parse_dpkg_records(&String::from_utf8_lossy(&status)) {
            put(r);
        }
        // dpkg applies only the files named by digits (`tmp.i` is the record being written),
        // in name order (zero-padded, so numeric order).
        let mut journal = false;
        for name in root.list_dir(Self::UPDATES)? {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            journal = true;
            let text = root
                .read(&format!("{}/{name}", Self::UPDATES))?
                .unwrap_or_default();
            for r in parse_dpkg_records(&String::from_utf8_lossy(&text)) {
                put(r);
            }
        }
        records.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        Ok(DpkgDb { records, journal })
    }

    /// Packages dpkg must unpack again before it can configure them (any origin).
    pub fn needs_reinstall(&self) -> Vec<&DpkgRecord> {
        self.records
            .iter()
            .filter(|r| r.needs_reinstall())
            .collect()
    }

    /// Whether an interrupted dpkg left anything to repair.
    pub fn pending(&self) -> bool {
        self.journal
            || self
                .records
                .iter()
                .any(|r| r.interrupted() || r.unconfigured())
    }

    /// Names (without architecture) of the packages left half-way, sorted, unique.
    pub fn interrupted_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .records
            .iter()
            .filter(|r| r.interrupted())
            .map(|r| r.name.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// The package records (with a `Status:` line) of a dpkg status file or journal record.
fn parse_dpkg_records(text: &str) -> Vec<DpkgRecord> {
    text.split("\n\n")
        .filter_map(|stanza| {
            let field = |k: &str| {
                stanza.lines().find_map(|l| {
                    l.strip_prefix(k)
                        .and_then(|r| r.strip_prefix(':'))
                        .map(|v| v.trim().to_owned())
                })
            };
            let name = field("Package").filter(|n| !n.is_empty())?;
            let status = field("Status")?;
            let words: Vec<&str> = status.split_whitespace().collect();
            let [want, eflag, status] = words[..] else {
                return None;
            };
            Some(DpkgRecord {
                name,
                arch: field("Architecture"),
                want: want.to_owned(),
                eflag: eflag.to_owned(),
                status: status.to_owned(),
            })
        })
        .collect()
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

    /// One command of the dpkg recovery: shown (plan), or run and shown with how it went
    /// (apply). A failure is shown too (the step's note) and returned, for the caller to
    /// repair or report.
    fn recovery_step(&mut self, module: &str, cmd: &Cmd, note: String) -> Result<(), RunError> {
        let mut st = self.step(module, "run");
        st.command = Some(self.show_cmd(cmd));
        st.note = Some(note);
        let mut res = Ok(());
        if self.mode == Mode::Apply {
            match self.runner.run(cmd) {
                Ok(out) => st.changed = changed_by(cmd, &out),
                Err(e) => {
                    let why = self.ctx.mask(&failure_digest(&e.to_string()));
                    tracing::warn!(command = %self.show_cmd(cmd), "{}", self.ctx.mask(&e.to_string()));
                    st.note = Some(format!(
                        "{}; failed: {why}",
                        st.note.take().unwrap_or_default()
                    ));
                    res = Err(e);
                }
            }
        }
        self.steps.push(st);
        res
    }

    /// [`Action::RecoverDpkg`]: every command it runs (or would run) is a step of its own.
    /// `plan` follows the path that `apply` takes when each command succeeds, and shows the
    /// purge that `apply` falls back to as a step marked "only if".
    fn recover_dpkg(&mut self, module: &str, ours: &[String]) -> Result<(), StepError> {
        use crate::runner::programs::DPKG;
        let db = DpkgDb::read(&self.ctx.root)?;
        let configure = Cmd::new([DPKG, "--configure", "-a"]).apt();
        if !db.pending() {
            let mut st = self.step(module, "run");
            st.command = Some(self.show_cmd(&configure));
            st.changed = false;
            st.note = Some("skipped: dpkg was not interrupted".to_owned());
            self.steps.push(st);
            return Ok(());
        }
        let names = |v: &[&DpkgRecord]| {
            v.iter()
                .map(|r| r.describe())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let need = db.needs_reinstall();
        let mut what = Vec::new();
        if db.journal {
            what.push("its journal /var/lib/dpkg/updates is not empty".to_owned());
        }
        let left: Vec<&DpkgRecord> = db
            .records
            .iter()
            .filter(|r| (r.interrupted() || r.unconfigured()) && !r.needs_reinstall())
            .collect();
        if !left.is_empty() {
            what.push(format!("not configured: {}", names(&left)));
        }
        if !need.is_empty() {
            what.push(format!(
                "needing a reinstall: {} (dpkg refuses to configure them until they are unpacked again, so this may fail)",
                names(&need)
            ));
        }
        let note = format!("dpkg was interrupted; {}", what.join("; "));
        if self.mode == Mode::Apply {
            tracing::warn!("{note}; running dpkg --configure -a");
        }
        let mut failed = self.recovery_step(module, &configure, note).err();

        // Packages of any origin that dpkg wants unpacked again, as dpkg sees them now (the
        // configure above folded the journal): reinstall them from the archive. `--reinstall`
        // keeps apt's automatically-installed mark; `-f` lets apt finish the rest of
        // an interrupted batch (a package unpacked before its dependencies).
        let need: Vec<DpkgRecord> = if self.mode == Mode::Apply {
            DpkgDb::read(&self.ctx.root)?
                .needs_reinstall()
                .into_iter()
                .cloned()
                .collect()
        } else {
            need.into_iter().cloned().collect()
        };
        let mut reinstall_failed = None;
        if !need.is_empty() {
            let refs: Vec<&DpkgRecord> = need.iter().collect();
            let mut argv = crate::modules::apt_get(&["install", "-f", "--reinstall"]);
            argv.extend(need.iter().map(DpkgRecord::apt_name));
            if self.mode == Mode::Apply {
                tracing::warn!(packages = %names(&refs), "reinstalling packages an interrupted dpkg left half-installed");
            }
            reinstall_failed = self
                .recovery_step(
                    module,
                    &Cmd::new(argv).apt(),
                    format!(
                        "unpack again from the archive what the interruption left half-installed: {}",
                        names(&refs)
                    ),
                )
                .err();
            failed = self
                .recovery_step(
                    module,
                    &configure,
                    "configure what waited for the reinstalled packages".to_owned(),
                )
                .err();
        }

        // Still failing: a maintainer script killed half-way can leave state its next run cannot
        // fix (locales: an emptied locale.gen resets the preseeded question). Start the packages
        // this run installs again from scratch; anything else is the error it is.
        let interrupted = if self.mode == Mode::Apply {
            if failed.is_some() {
                DpkgDb::read(&self.ctx.root)?.interrupted_names()
            } else {
                Vec::new()
            }
        } else {
            db.interrupted_names()
        };
        let purge: Vec<String> = interrupted
            .into_iter()
            .filter(|p| ours.contains(p))
            .collect();
        let failed_now = failed.is_some();
        if self.mode == Mode::Apply
            && let Some(e) = failed
        {
            if purge.is_empty() {
                // the reinstall's own error says more than dpkg's "very bad inconsistent state"
                let still = DpkgDb::read(&self.ctx.root)?;
                return Err(match reinstall_failed {
                    Some(r) if !still.needs_reinstall().is_empty() => r.into(),
                    _ => e.into(),
                });
            }
            tracing::warn!(
                packages = %purge.join(" "),
                "dpkg --configure -a failed; purging the broken packages this run installs again"
            );
        }
        let run_purge = !purge.is_empty() && (self.mode == Mode::Plan || failed_now);
        if run_purge {
            let mut argv = vec![
                DPKG.to_owned(),
                "--purge".to_owned(),
                "--force-remove-reinstreq".to_owned(),
            ];
            argv.extend(purge.iter().cloned());
            let when = if self.mode == Mode::Plan {
                "only if dpkg --configure -a still fails: "
            } else {
                ""
            };
            self.recovery_step(
                module,
                &Cmd::new(argv).apt(),
                format!(
                    "{when}purge to install again (this run re-applies their preseed and installs them): {}",
                    purge.join(", ")
                ),
            )?;
            let note = if self.mode == Mode::Plan {
                "only if dpkg --configure -a still failed: configure the rest after the purge"
            } else {
                "configure the rest after the purge"
            };
            self.recovery_step(module, &configure, note.to_owned())?;
        }
        // an interrupted apt run may also have left packages whose dependencies never came
        self.recovery_step(
            module,
            &Cmd::new(crate::modules::apt_get(&["install", "-f"])).apt(),
            "finish what the interrupted apt run left unresolved".to_owned(),
        )?;
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
            Action::RecoverDpkg { reinstall } => self.recover_dpkg(module, reinstall)?,
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

/// A failed command's error on one line for a step's note: the first line (the command and its
/// exit status) and the lines of its output that say what went wrong, at most 600 characters.
fn failure_digest(err: &str) -> String {
    let mut lines = err.lines();
    let mut out = lines.next().unwrap_or_default().trim().to_owned();
    let mut in_error = false;
    for l in lines {
        let t = l.trim();
        let starts = t.starts_with("E: ") || t.starts_with("dpkg: error") || t.starts_with("error");
        // dpkg continues an error message on indented lines
        if starts || (in_error && l.starts_with(' ') && !t.is_empty()) {
            out.push(' ');
            out.push_str(t);
            in_error = true;
        } else {
            in_error = false;
        }
    }
    if out.chars().count() > 600 {
        out = out.chars().take(600).collect::<String>() + "…";
    }
    out
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
    fn dpkg_db_lays_the_journal_over_the_status_file() {
        let d = tempfile::tempdir().unwrap();
        let dpkg = d.path().join("var/lib/dpkg");
        std::fs::create_dir_all(dpkg.join("updates")).unwrap();
        std::fs::write(
            dpkg.join("status"),
            "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nDescription: x\n Package: not-a-field\n\n\
             Package: libc6\nStatus: install ok installed\nArchitecture: i386\n\n\
             Package: tzdata\nStatus: install ok installed\nArchitecture: all\n",
        )
        .unwrap();
        let root = Root::new(d.path()).unwrap();
        let db = DpkgDb::read(&root).unwrap();
        assert!(!db.pending() && !db.journal, "{db:?}");
        assert_eq!(db.records.len(), 3);
        // journal records win, in name order; tmp.i (being written) is not one
        for (f, text) in [
            (
                "0001",
                "Package: tzdata\nStatus: install reinstreq unpacked\nArchitecture: all\n",
            ),
            (
                "0000",
                "Package: tzdata\nStatus: install reinstreq half-configured\nArchitecture: all\n",
            ),
            (
                "0002",
                "Package: libc6\nStatus: install reinstreq half-installed\nArchitecture: i386\n",
            ),
            (
                "tmp.i",
                "Package: tzdata\nStatus: install ok installed\nArchitecture: all\n",
            ),
        ] {
            std::fs::write(dpkg.join("updates").join(f), text).unwrap();
        }
        let db = DpkgDb::read(&root).unwrap();
        assert!(db.journal && db.pending());
        let need: Vec<String> = db.needs_reinstall().iter().map(|r| r.describe()).collect();
        assert_eq!(
            need,
            [
                "libc6:i386 (install reinstreq half-installed)",
                "tzdata (install reinstreq unpacked)"
            ]
        );
        assert_eq!(db.interrupted_names(), ["libc6", "tzdata"]);
        let amd64 = db
            .records
            .iter()
            .find(|r| r.arch.as_deref() == Some("amd64"))
            .unwrap();
        assert!(!amd64.needs_reinstall() && !amd64.unconfigured());
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
