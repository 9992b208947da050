//! Debian knowledge in one place, read from files (so `plan` needs no command): dpkg's package
//! database ([`DpkgDb`], the one reader of `/var/lib/dpkg/status` and its journal), the one-line
//! apt source ([`SourceLine`]), the root's dpkg architecture and the `apt-get` options every
//! call uses. A leaf: it uses only [`crate::rootfs`] and [`crate::runner::programs`].

use crate::rootfs::{Root, RootError};
use crate::runner::programs;

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

    /// Whether a package of this name (any architecture) is fully installed.
    pub fn is_installed(&self, name: &str) -> bool {
        self.records
            .iter()
            .any(|r| r.name == name && r.status == "installed")
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

/// dpkg's answer to a conffile the image changed: keep it, without a prompt (there is no
/// terminal). Every dpkg run bootcfg causes uses it: through apt ([`apt_get`]) and directly
/// (the recovery's `dpkg --configure -a`).
pub const KEEP_CONFFILES: &str = "--force-confold";

/// dpkg's option not to fsync every file it unpacks (cloud-init passes it too, and debootstrap).
/// A kill loses nothing (the page cache survives it); the engine makes the result durable with
/// one `syncfs` of the root after each apt command succeeds, before anything records it done.
/// Without it dpkg's per-file fsyncs take most of a package install's time (measured with
/// `puppet-agent` and its 47 dependencies on this project's machines: about 3x).
pub const UNSAFE_IO: &str = "--force-unsafe-io";

/// `apt-get` with the options every call uses: keep existing conffiles, no per-file fsync by
/// dpkg ([`UNSAFE_IO`]), assume yes, quiet, and let apt retry each download 3 times.
/// `DEBIAN_FRONTEND=noninteractive` comes from the runner.
pub fn apt_get(args: &[&str]) -> Vec<String> {
    let keep = format!("Dpkg::Options::={KEEP_CONFFILES}");
    let unsafe_io = format!("Dpkg::Options::={UNSAFE_IO}");
    let mut v: Vec<String> = [
        programs::APT_GET,
        "-o",
        keep.as_str(),
        "-o",
        unsafe_io.as_str(),
        "-o",
        "Acquire::Retries=3",
        "--assume-yes",
        "--quiet",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.extend(args.iter().map(|s| (*s).to_owned()));
    v
}

/// One one-line apt source (`deb [options] uri suite [components…]`), split into its parts:
/// the one tokenizer of source lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLine {
    /// `deb` or `deb-src`.
    pub kind: String,
    /// What stands between `[` and `]`, trimmed (`None` without brackets).
    pub options: Option<String>,
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
}

impl SourceLine {
    /// `None` for comments, blank lines and lines that are not `deb`/`deb-src` with at least a
    /// URI and a suite.
    pub fn parse(line: &str) -> Option<SourceLine> {
        let t = line.trim();
        let (kind, rest) = t.split_once(char::is_whitespace)?;
        if kind != "deb" && kind != "deb-src" {
            return None;
        }
        let mut rest = rest.trim_start();
        let mut options = None;
        if let Some(after) = rest.strip_prefix('[') {
            let (opts, tail) = after.split_once(']')?;
            options = Some(opts.trim().to_owned());
            rest = tail.trim_start();
        }
        let mut words = rest.split_whitespace();
        let uri = words.next()?.to_owned();
        let suite = words.next()?.to_owned();
        Some(SourceLine {
            kind: kind.to_owned(),
            options,
            uri,
            suite,
            components: words.map(str::to_owned).collect(),
        })
    }

    /// `deb uri suite components…`, without the options: which repository the line names.
    pub fn repository(&self) -> String {
        let mut s = format!("{} {} {}", self.kind, self.uri, self.suite);
        for c in &self.components {
            s.push(' ');
            s.push_str(c);
        }
        s
    }
}

/// The root's dpkg architecture (`amd64`, `arm64`): the first line of `/var/lib/dpkg/arch`
/// (what `dpkg --print-architecture` prints in the root), else the architecture dpkg was built
/// for as this program knows it (the build host's).
pub fn dpkg_architecture(root: &Root) -> String {
    if let Ok(Some(b)) = root.read("/var/lib/dpkg/arch")
        && let Some(a) = String::from_utf8_lossy(&b)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
        && a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    {
        return a.to_owned();
    }
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        other => other,
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn source_lines_are_split_into_their_parts() {
        let l =
            SourceLine::parse("deb [arch=amd64 signed-by=/k.gpg] http://x bookworm main contrib")
                .unwrap();
        assert_eq!(l.options.as_deref(), Some("arch=amd64 signed-by=/k.gpg"));
        assert_eq!(l.repository(), "deb http://x bookworm main contrib");
        assert_eq!(
            SourceLine::parse("deb-src http://x sid")
                .unwrap()
                .repository(),
            "deb-src http://x sid"
        );
        for bad in [
            "# deb http://x y",
            "",
            "deb",
            "deb http://x",
            "deb [broken http://x y",
            "rpm http://x y",
        ] {
            assert_eq!(SourceLine::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_architecture_is_the_roots_not_the_hosts() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("var/lib/dpkg")).unwrap();
        std::fs::write(d.path().join("var/lib/dpkg/arch"), "arm64\ni386\n").unwrap();
        let root = Root::new(d.path()).unwrap();
        assert_eq!(dpkg_architecture(&root), "arm64");
        std::fs::write(d.path().join("var/lib/dpkg/arch"), "../x\n").unwrap();
        assert_ne!(dpkg_architecture(&root), "../x");
    }
}
