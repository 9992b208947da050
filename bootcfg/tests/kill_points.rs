//! Property-style kill -9 test: `bootcfg apply` of full.yaml (apt source + key, debconf preseed,
//! packages with dependencies from the Debian mirror and the harness's signed repo, puppet) is
//! SIGKILLed at 20+ points chosen by *event*, never by time, and after every kill a rerun must
//! converge to the end state of an uninterrupted run.
//!
//! 1. An uninterrupted reference run records the **event trace**: every record dpkg commits to its
//!    journal (`/var/lib/dpkg/updates/NNNN`: one unpack or configure step of one package,
//!    dependencies included), every file renamed into the directories bootcfg writes to (the apt
//!    source list and keyring, debconf's database, puppet.conf, csr_attributes.yaml, the CA
//!    certificate) and every module marker (`/var/lib/bootcfg/instances/<iid>/<module>.done`),
//!    all seen through inotify `IN_MOVED_TO` (every one of those writes is a rename into place).
//! 2. Kill points are picked from that trace: every marker, the source and keyring writes, the
//!    debconf database write, the puppet files, unpack and configure records of dependencies
//!    nobody asked for, and evenly spread events in between.
//! 3. For each point: a fresh root, `bootcfg apply`, and on the event the whole run is stopped
//!    (SIGSTOP, so the test looks at a still state), then SIGKILLed; no process may survive, the
//!    root must not be in the end state yet, and an uninterrupted rerun must reach exactly the
//!    reference's end state (see [`end_state`]). Every mismatch of every point is reported at the
//!    end, each with its kill point.
//!
//! A kill that lands a few events past its target (dpkg can commit two records within a
//! millisecond, before SIGSTOP reaches it) is tried again on a fresh root, up to [`ATTEMPTS`]
//! times; the last attempt counts wherever it landed (the log names where). Points are preferably
//! events after which the run works a while (an unpack, a postinst), where kills land exactly.
//!
//! Cost: one traced reference run, then per point a kill run and an uninterrupted rerun, each
//! about one full.yaml apply (roughly 10-15 s on an idle 2-core machine, 45 s with both cores
//! busy); roots are copied in the background. The log shows the time of every point.
//!
//! Needs root and `sudo tests/setup.sh`; apt-heavy, so it holds the harness's heavy lock throughout.
//!
//!   sudo -E cargo test -p bootcfg --test kill_points -- --nocapture
//!   BOOTCFG_KILL_POINTS='marker puppet,half-configured' BOOTCFG_TEST_KEEP=1 …   (only these points)

mod support;

use rustix::fs::inotify;
use rustix::process::{Pid, Signal};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;
use testkit::aptrepo::{AptRepo, DUMMY_FILE};
use testkit::chroot::{Output, heavy_lock, processes_in};
use testkit::rootfs::{Root, parse_rfc822};

const FIXTURE: &str = "full.yaml";
const IID: &str = "i-e2e-killpoints";
const HOST: &str = "e2e-killpoints";
/// What full.yaml asks apt for; every other newly installed package is a dependency.
const REQUESTED: &[&str] = &["hello", "bootcfg-test-dummy", "locales", "puppet-agent"];
/// The questions full.yaml preseeds.
const PRESEEDED: &[&str] = &[
    "locales/default_environment_locale",
    "locales/locales_to_be_generated",
];
const LIST: &str = "/etc/apt/sources.list.d/bootcfg-local.list";
const PUPPET_CONF: &str = "/etc/puppet/puppet.conf";
const CSR_ATTRIBUTES: &str = "/etc/puppet/csr_attributes.yaml";
const CA_PEM: &str = "/var/lib/puppet/ssl/certs/ca.pem";
const DEBCONF_DB: &str = "/var/cache/debconf/config.dat";
const RESULT: &str = "/var/lib/bootcfg/result.json";
const UPDATES: &str = "/var/lib/dpkg/updates";
/// bootcfg's atomic writer's temp files (`.bootcfg-XXXX`, renamed over the target).
const BOOTCFG_TEMP: &str = ".bootcfg-";
/// At least this many kill points (the floor); [`WANT_POINTS`] are chosen.
const MIN_POINTS: usize = 20;
const WANT_POINTS: usize = 20;
/// A kill that lands past its event (dpkg got further before it was stopped) is retried on a
/// fresh root this many times in all; the last attempt is kept wherever it landed.
const ATTEMPTS: usize = 3;

fn marker_dir() -> String {
    format!("/var/lib/bootcfg/instances/{IID}")
}

/// The directories whose renames are events (created during the run if missing: then watched
/// from the moment they appear, and what they already hold counts as events of that moment).
fn watched_dirs() -> Vec<String> {
    [
        UPDATES,
        "/etc/apt",
        "/etc/apt/sources.list.d",
        "/etc/apt/keyrings",
        "/etc/apt/apt.conf.d",
        "/etc/apt/trusted.gpg.d",
        "/etc/puppet",
        "/var/lib/puppet/ssl/certs",
        "/var/cache/debconf",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([marker_dir()])
    .collect()
}

// ------------------------------------------------------------------------------------------------
// Events

/// One observable event of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    /// dpkg committed a journal record: one status change of one package.
    Dpkg { package: String, status: String },
    /// A file was renamed into a watched directory (`dir/name`).
    Write(String),
    /// A module's marker was written.
    Marker(String),
}

impl Event {
    fn describe(&self) -> String {
        match self {
            Event::Dpkg { package, status } => format!("dpkg {package}: {status}"),
            Event::Write(p) => format!("write {p}"),
            Event::Marker(m) => format!("marker {m}"),
        }
    }
}

/// An event in a trace, with its key: the description, plus `#n` from its second occurrence on
/// (dpkg writes `install ok installed` twice for a package whose triggers it runs, debconf's
/// database is written many times, …). Keys identify kill points across runs.
#[derive(Clone, Debug)]
struct Traced {
    key: String,
    event: Event,
    at: Duration,
}

/// Keys events by occurrence.
#[derive(Default)]
struct Keyer(HashMap<String, usize>);

impl Keyer {
    fn key(&mut self, e: &Event) -> String {
        let d = e.describe();
        let n = self.0.entry(d.clone()).or_default();
        *n += 1;
        if *n == 1 { d } else { format!("{d} #{n}") }
    }
}

/// Live processes whose process group is `pgid` (`/proc/PID/stat` field 5), zombies aside.
fn processes_in_group(pgid: u32) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // A zombie is dead; the host's init reaps it when it gets to it.
        if f.get(2) == Some(&pgid.to_string().as_str()) && f.first() != Some(&"Z") {
            out.push(format!("{head}) {}", f.first().unwrap_or(&"?")));
        }
    }
    out
}

/// The inotify watches of one run.
struct Watcher<'a> {
    ino: &'a OwnedFd,
    root: &'a Root,
    wanted: Vec<String>,
    /// watch descriptor → directory (root-relative, leading `/`)
    wds: HashMap<i32, String>,
    /// Files found by a scan of a directory that appeared during the run: path → inode, so that
    /// an `IN_MOVED_TO` of that very file (already queued) is not counted twice.
    scanned: HashMap<String, u64>,
}

impl Watcher<'_> {
    /// Watches every wanted directory that exists, and the nearest existing ancestor of each one
    /// that does not (to see it appear). Returns the wanted directories watched by this call.
    fn refresh(&mut self) -> Vec<String> {
        let mut new = Vec::new();
        for dir in self.wanted.clone() {
            let mut d = dir.as_str();
            loop {
                let host = self.root.join(d);
                if host.is_dir() {
                    let flags = inotify::WatchFlags::MOVED_TO
                        | inotify::WatchFlags::CREATE
                        | inotify::WatchFlags::ONLYDIR;
                    if let Ok(wd) = inotify::add_watch(self.ino, &host, flags)
                        && self.wds.insert(wd, d.to_owned()).is_none()
                        && d == dir
                    {
                        new.push(dir.clone());
                    }
                    break;
                }
                match d.rfind('/') {
                    Some(i) if i > 0 => d = &d[..i],
                    _ => break,
                }
            }
        }
        new
    }

    /// The event a file renamed into (or found in) `dir` stands for, None if it is none.
    fn classify(&self, dir: &str, name: &str) -> Option<Event> {
        if !self.wanted.iter().any(|w| w == dir) || name.starts_with(BOOTCFG_TEMP) {
            return None;
        }
        if dir == UPDATES {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                return None; // tmp.i, being written
            }
            let record =
                std::fs::read_to_string(self.root.join(&format!("{UPDATES}/{name}"))).ok()?;
            let field = |f: &str| {
                record
                    .lines()
                    .find_map(|l| l.strip_prefix(f))
                    .unwrap_or("?")
                    .to_owned()
            };
            return Some(Event::Dpkg {
                package: field("Package: "),
                status: field("Status: "),
            });
        }
        if dir == marker_dir()
            && let Some(m) = name.strip_suffix(".done")
        {
            return Some(Event::Marker(m.to_owned()));
        }
        Some(Event::Write(format!("{dir}/{name}")))
    }

    /// The events a wanted directory that just appeared already holds (in name order).
    fn scan(&mut self, dir: &str) -> Vec<Event> {
        let mut names: Vec<(String, u64)> = std::fs::read_dir(self.root.join(dir))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter_map(|e| {
                        let ino = e.metadata().ok()?.ino();
                        Some((e.file_name().to_string_lossy().into_owned(), ino))
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let mut out = Vec::new();
        for (name, ino) in names {
            if let Some(e) = self.classify(dir, &name) {
                self.scanned.insert(format!("{dir}/{name}"), ino);
                out.push(e);
            }
        }
        out
    }

    /// Whether an `IN_MOVED_TO` of `dir/name` is a file a scan already counted.
    fn seen_by_scan(&mut self, dir: &str, name: &str) -> bool {
        let path = format!("{dir}/{name}");
        match self.scanned.remove(&path) {
            Some(ino) => self
                .root
                .join(&path)
                .symlink_metadata()
                .is_ok_and(|m| m.ino() == ino),
            None => false,
        }
    }
}

/// What one watched run did.
struct Watched {
    /// Every event up to the end of the run, or up to the kill.
    trace: Vec<Traced>,
    /// Killed at its target: the events dpkg & co. got through between the target and the stop
    /// (empty when the kill landed right on the target).
    overshoot: Option<Vec<Traced>>,
    out: Output,
    /// The run's process group.
    pgid_raw: u32,
    /// From the start to the end of the run (to its kill, when killed).
    elapsed: Duration,
    /// From the kill until the run's process had exited and closed its output.
    exit_time: Duration,
}

/// One raw inotify event, owned.
struct Raw {
    wd: i32,
    flags: inotify::ReadFlags,
    name: String,
}

fn next_raw(reader: &mut inotify::Reader<'_, &OwnedFd>) -> Raw {
    let ev = reader.next().expect("reading inotify events");
    let raw = Raw {
        wd: ev.wd(),
        flags: ev.events(),
        name: ev
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    assert!(
        !raw.flags.contains(inotify::ReadFlags::QUEUE_OVERFLOW),
        "inotify queue overflow: events were lost"
    );
    raw
}

/// Name of the file the run's waiter creates in the wake directory when the run ends.
const RUN_ENDED: &str = "run-ended";
/// Name of the file the test creates (and removes) in the wake directory to learn that it has
/// read every event queued before it.
const SYNC: &str = "sync";

/// Runs `bootcfg apply` while tracing events; with a `target` key, SIGKILLs the run at that
/// event.
///
/// How a kill lands on its event: the run is stopped (SIGSTOP to its process group and to every
/// process in the root) on each dpkg record before the record is read, on each new directory,
/// and on the target. It is continued only once every event queued so far has been read (a
/// `sync` file created in a watched directory marks that point in the queue), so the test never
/// falls behind the run: an event is looked at while the run is still stopped right after it,
/// give or take the few events dpkg commits before SIGSTOP reaches it, which are reported as
/// the kill's overshoot.
fn run_watched(root: &Root, ud: &Path, target: Option<&str>) -> Watched {
    let wake = tempfile::tempdir().expect("temp dir");
    let ino = inotify::init(inotify::CreateFlags::CLOEXEC).expect("inotify_init1");
    let wake_wd =
        inotify::add_watch(&ino, wake.path(), inotify::WatchFlags::CREATE).expect("watching");
    let sync_file = wake.path().join(SYNC);
    let sync = || {
        std::fs::write(&sync_file, b"").expect("writing the sync file");
        std::fs::remove_file(&sync_file).expect("removing the sync file");
    };
    let mut w = Watcher {
        ino: &ino,
        root,
        wanted: watched_dirs(),
        wds: HashMap::new(),
        scanned: HashMap::new(),
    };
    w.refresh();

    let running = spawn_apply(root, ud, IID, HOST);
    let pgid = Pid::from_raw(running.pid() as i32).expect("pid");
    // This thread must stop the run right at the event, even on a loaded machine: it runs at
    // the highest priority while it watches (restored below; the run keeps its own, lowering it
    // would starve it on a busy machine). On Linux this sets the calling thread's nice value.
    let own_nice = rustix::process::getpriority_process(None).unwrap_or(0);
    let _ = rustix::process::setpriority_process(None, -20);
    let t0 = Instant::now();
    let wake_file = wake.path().join(RUN_ENDED);
    let waiter = std::thread::spawn(move || {
        struct Wake(std::path::PathBuf);
        impl Drop for Wake {
            fn drop(&mut self) {
                let _ = std::fs::write(&self.0, b"");
            }
        }
        let _wake = Wake(wake_file);
        running.wait(APPLY_TIMEOUT)
    });

    let mut keyer = Keyer::default();
    let mut trace: Vec<Traced> = Vec::new();
    let mut hit = false;
    // The run is stopped, and a sync file is on its way through the queue.
    let mut stopped = false;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16384];
    let mut reader = inotify::Reader::new(&ino, &mut buf);
    'events: loop {
        let raw = next_raw(&mut reader);
        if raw.wd == wake_wd {
            if raw.name == RUN_ENDED {
                break;
            }
            if raw.name == SYNC && stopped {
                // Every event queued while the run was stopped has been read.
                signal_run(pgid, root, Signal::CONT);
                stopped = false;
            }
            continue;
        }
        let Some(dir) = w.wds.get(&raw.wd).cloned() else {
            continue;
        };
        let stop = |stopped: &mut bool| {
            if !*stopped {
                signal_run(pgid, root, Signal::STOP);
                *stopped = true;
                sync();
            }
        };
        let mut events = Vec::new();
        if raw.flags.contains(inotify::ReadFlags::ISDIR) {
            // A directory appeared (dpkg renames directories into place too): watch it (and
            // what now exists below it), and count what new wanted directories already hold.
            stop(&mut stopped);
            if raw.flags.contains(inotify::ReadFlags::MOVED_TO)
                && let Some(e) = w.classify(&dir, &raw.name)
            {
                events.push(e);
            }
            for d in w.refresh() {
                events.extend(w.scan(&d));
            }
        } else if raw.flags.contains(inotify::ReadFlags::MOVED_TO) {
            if w.seen_by_scan(&dir, &raw.name) {
                continue;
            }
            if dir == UPDATES && raw.name.bytes().all(|b| b.is_ascii_digit()) {
                // Before the record is read: dpkg gets no further while it is looked at.
                stop(&mut stopped);
            }
            events.extend(w.classify(&dir, &raw.name));
        }
        for e in events {
            let key = keyer.key(&e);
            let is_target = target == Some(key.as_str());
            trace.push(Traced {
                key,
                event: e,
                at: t0.elapsed(),
            });
            if is_target {
                stop(&mut stopped);
                hit = true;
                break 'events;
            }
        }
    }

    let mut overshoot = None;
    if hit {
        // Stopped at the target. What is queued up to the sync file happened between the event
        // and the stop: the kill lands after those events.
        let mut past = Vec::new();
        loop {
            let raw = next_raw(&mut reader);
            if raw.wd == wake_wd {
                if raw.name == SYNC {
                    break;
                }
                continue;
            }
            let Some(dir) = w.wds.get(&raw.wd).cloned() else {
                continue;
            };
            if raw.flags.contains(inotify::ReadFlags::MOVED_TO)
                && !w.seen_by_scan(&dir, &raw.name)
                && let Some(e) = w.classify(&dir, &raw.name)
            {
                past.push(Traced {
                    key: keyer.key(&e),
                    event: e,
                    at: t0.elapsed(),
                });
            }
        }
        overshoot = Some(past);
        let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
        signal_run(pgid, root, Signal::KILL);
    }
    let elapsed = t0.elapsed();
    let _ = rustix::process::setpriority_process(None, own_nice);
    let out = match waiter.join() {
        Ok(o) => o,
        Err(p) => std::panic::resume_unwind(p),
    };
    Watched {
        trace,
        overshoot,
        out,
        pgid_raw: pgid.as_raw_nonzero().get() as u32,
        exit_time: t0.elapsed() - elapsed,
        elapsed,
    }
}

// ------------------------------------------------------------------------------------------------
// End state

fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Mode and content (text if UTF-8, else a hash) of a file, or `missing`.
fn file_state(root: &Root, path: &str) -> String {
    if !root.exists(path) {
        return "missing".to_owned();
    }
    let bytes = root.read(path);
    match std::str::from_utf8(&bytes) {
        Ok(t) => format!("{:o} {t}", root.mode(path)),
        Err(_) => format!("{:o} sha256:{}", root.mode(path), sha(&bytes)),
    }
}

/// Everything a converged run is judged by, as key → value:
/// - every package in dpkg's status file (name, architecture → status, version), and how many
///   journal records are left unapplied;
/// - every path under /etc (type, mode, owner, SHA-256), volatile backups aside, and the full
///   text of the files bootcfg writes there; the keyring the source names; the files bootcfg and
///   the local package write outside /etc;
/// - debconf's value, owners and flags of each preseeded question;
/// - the module markers of the instance, and result.json's outcome and module statuses.
fn end_state(root: &Root, modules: &[String]) -> BTreeMap<String, String> {
    let mut s = BTreeMap::new();
    for st in parse_rfc822(&root.read_string("var/lib/dpkg/status")) {
        let Some(p) = st.get("Package") else { continue };
        let get = |k: &str| st.get(k).cloned().unwrap_or_default();
        s.insert(
            format!("dpkg {p}:{}", get("Architecture")),
            format!("{} {}", get("Status"), get("Version")),
        );
    }
    // apt's auto-installed marks (what `apt-mark showauto` lists): a rerun must leave the
    // dependencies automatic, as the uninterrupted run does
    let installed: BTreeSet<String> = parse_rfc822(&root.read_string("var/lib/dpkg/status"))
        .into_iter()
        .filter(|st| st.get("Status").is_some_and(|v| v.ends_with(" installed")))
        .filter_map(|st| st.get("Package").cloned())
        .collect();
    let auto: Vec<String> = if root.exists("var/lib/apt/extended_states") {
        parse_rfc822(&root.read_string("var/lib/apt/extended_states"))
            .into_iter()
            .filter(|st| st.get("Auto-Installed").is_some_and(|v| v == "1"))
            .filter_map(|st| st.get("Package").cloned())
            .filter(|p| installed.contains(p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    } else {
        Vec::new()
    };
    s.insert("apt auto-installed".to_owned(), auto.join(" "));
    let journal = root
        .list_dir(UPDATES)
        .iter()
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .count();
    s.insert("dpkg journal records".to_owned(), journal.to_string());
    for (k, v) in root.manifest(&["etc", "var/lib/puppet/ssl"]) {
        if !volatile(&k) {
            s.insert(format!("path {k}"), v);
        }
    }
    for p in [LIST, PUPPET_CONF, CSR_ATTRIBUTES, CA_PEM, DUMMY_FILE] {
        s.insert(format!("file {p}"), file_state(root, p));
    }
    if root.exists(LIST)
        && let Some(k) = signed_by(&root.read_string(LIST))
    {
        s.insert(format!("keyring {k}"), file_state(root, &k));
    }
    for q in PRESEEDED {
        let v = match root.debconf(q) {
            None => "missing".to_owned(),
            Some(e) => ["Value", "Owners", "Flags"]
                .iter()
                .map(|f| format!("{f}: {:?}", e.get(*f)))
                .collect::<Vec<_>>()
                .join("; "),
        };
        s.insert(format!("debconf {q}"), v);
    }
    let mdir = marker_dir();
    s.insert(
        "markers".to_owned(),
        root.list_dir(&mdir)
            .iter()
            .filter(|n| !n.starts_with(BOOTCFG_TEMP))
            .cloned()
            .collect::<Vec<_>>()
            .join(" "),
    );
    for m in modules {
        let present = root.exists(&format!("{mdir}/{m}.done"));
        s.insert(
            format!("marker {m}"),
            if present { "present" } else { "missing" }.to_owned(),
        );
    }
    let result = if root.exists(RESULT) {
        let v: serde_json::Value = serde_json::from_slice(&root.read(RESULT))
            .unwrap_or_else(|e| serde_json::json!({ "unreadable": e.to_string() }));
        let mods: Vec<String> = v["modules"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| format!("{}={}", m["name"], m["status"]))
                    .collect()
            })
            .unwrap_or_default();
        format!(
            "outcome {} instance {} modules [{}]",
            v["outcome"],
            v["instance_id"],
            mods.join(" ")
        )
    } else {
        "missing".to_owned()
    };
    s.insert("result.json".to_owned(), result);
    s
}

/// One line per key whose value differs.
fn state_diff(want: &BTreeMap<String, String>, got: &BTreeMap<String, String>) -> Vec<String> {
    want.keys()
        .chain(got.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| want.get(*k) != got.get(*k))
        .map(|k| {
            format!(
                "{k}:\n      uninterrupted: {:?}\n      killed+rerun:  {:?}",
                want.get(k),
                got.get(k)
            )
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Kill points

struct KillPoint {
    key: String,
    /// Why it was chosen.
    why: &'static str,
    /// Its index in the reference trace.
    index: usize,
}

/// Packages the reference run installed that the base image lacks and full.yaml does not name.
fn dependencies(base: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> Vec<String> {
    want.iter()
        .filter(|(k, v)| {
            k.starts_with("dpkg ")
                && v.starts_with("install ok installed")
                && !base.contains_key(*k)
        })
        .map(|(k, _)| {
            let pa = k.strip_prefix("dpkg ").unwrap_or(k);
            pa.split_once(':').map_or(pa, |(p, _)| p).to_owned()
        })
        .filter(|p| !REQUESTED.contains(&p.as_str()))
        .collect()
}

/// `n` items spread evenly over `v` (all of them if there are fewer).
fn spread<T: Clone>(v: &[T], n: usize) -> Vec<T> {
    if v.len() <= n {
        return v.to_vec();
    }
    (0..n)
        .map(|i| v[(2 * i + 1) * v.len() / (2 * n)].clone())
        .collect()
}

fn choose_points(r: &Reference) -> Vec<KillPoint> {
    let (trace, deps, modules) = (&r.trace, &r.deps, &r.modules);
    let last_marker = trace
        .iter()
        .rposition(|t| matches!(t.event, Event::Marker(_)))
        .expect("the reference run wrote no marker");
    // Killing after the last marker still interrupts the run (result.json is not written yet);
    // nothing observable comes after it but result.json itself.
    let usable = &trace[..=last_marker];
    let mut chosen: Vec<KillPoint> = Vec::new();
    let pick = |chosen: &mut Vec<KillPoint>, i: usize, why: &'static str| {
        if !chosen.iter().any(|c| c.index == i) {
            chosen.push(KillPoint {
                key: usable[i].key.clone(),
                why,
                index: i,
            });
        }
    };
    let find_write = |path: &str, last: bool| {
        let mut it = usable
            .iter()
            .enumerate()
            .filter(|(_, t)| t.event == Event::Write(path.to_owned()));
        let found = if last { it.next_back() } else { it.next() };
        found.map(|(i, _)| i).unwrap_or_else(|| {
            panic!(
                "the reference run never wrote {path}; its trace:\n{}",
                show_trace(trace)
            )
        })
    };

    // Every module marker.
    for m in modules {
        let i = usable
            .iter()
            .position(|t| t.event == Event::Marker(m.clone()))
            .unwrap_or_else(|| {
                panic!(
                    "the reference run wrote no marker for module {m}:\n{}",
                    show_trace(trace)
                )
            });
        pick(&mut chosen, i, "module marker");
    }
    // The apt source and its keyring, debconf's database, the puppet files.
    pick(&mut chosen, find_write(LIST, false), "apt source list");
    let keyring = usable
        .iter()
        .position(|t| matches!(&t.event, Event::Write(p) if p.starts_with("/etc/apt/keyrings/")))
        .unwrap_or_else(|| panic!("no keyring write in the trace:\n{}", show_trace(trace)));
    pick(&mut chosen, keyring, "apt source keyring");
    // debconf-set-selections: the first write of the database, before the debconf marker.
    let debconf = find_write(DEBCONF_DB, false);
    let debconf_marker = usable
        .iter()
        .position(|t| t.event == Event::Marker("debconf".to_owned()));
    assert!(
        debconf_marker.is_some_and(|m| debconf < m),
        "the first write of {DEBCONF_DB} is not before the debconf marker:\n{}",
        show_trace(trace)
    );
    pick(&mut chosen, debconf, "debconf database (the preseed)");
    // The puppet module's writes come after puppet-agent's install: the last ones.
    pick(
        &mut chosen,
        find_write(PUPPET_CONF, true),
        "puppet.conf merge",
    );
    pick(
        &mut chosen,
        find_write(CA_PEM, true),
        "puppet CA certificate",
    );
    pick(
        &mut chosen,
        find_write(CSR_ATTRIBUTES, true),
        "csr_attributes.yaml",
    );
    // Unpack and configure steps of dependencies, spread over the dependencies.
    let dep_records = |statuses: &[&str]| -> Vec<usize> {
        usable
            .iter()
            .enumerate()
            .filter(|(_, t)| match &t.event {
                Event::Dpkg { package, status } => {
                    deps.contains(package) && statuses.contains(&status.as_str())
                }
                _ => false,
            })
            .map(|(i, _)| i)
            .collect()
    };
    // Events after which a run works a while before the next one (dpkg unpacks after
    // `half-installed`, runs a postinst after `half-configured`; bootcfg's writes are followed by
    // fsyncs and commands): a kill there interrupts that work, and lands on its event even when
    // SIGSTOP takes a few milliseconds to arrive. Preferred where there are enough of them; by
    // event kind, so that the choice does not depend on the reference run's timing.
    let roomy = |i: usize| match &usable[i].event {
        Event::Dpkg { package, status } => {
            status == "install reinstreq half-installed"
                || (status == "install ok half-configured" && r.postinst.contains(package))
        }
        Event::Write(_) | Event::Marker(_) => true,
    };
    // `n` of `v`, roomy ones first, each kind spread over the run.
    let some = |v: Vec<usize>, n: usize| -> Vec<usize> {
        let (room, tight): (Vec<usize>, Vec<usize>) = v.into_iter().partition(|&i| roomy(i));
        let mut out = spread(&room, n);
        out.extend(spread(&tight, n - out.len()));
        out
    };
    // A dependency's unpack begins (half-installed) and ends (unpacked); its configure begins
    // (half-configured) and ends (installed).
    for (status, n, why) in [
        (
            "install reinstreq half-installed",
            2,
            "dependency unpack begins",
        ),
        (
            "install reinstreq unpacked",
            1,
            "dependency unpacked, reinstreq still set",
        ),
        (
            "install ok half-configured",
            2,
            "dependency configure begins",
        ),
        ("install ok installed", 1, "dependency configured"),
    ] {
        let found = dep_records(&[status]);
        assert!(
            found.len() >= n,
            "too few dependency records `{status}` (dependencies: {deps:?}):\n{}",
            show_trace(trace)
        );
        for i in some(found, n) {
            pick(&mut chosen, i, why);
        }
    }
    // Then events spread evenly over the rest of the run.
    let rest: Vec<usize> = (0..usable.len())
        .filter(|i| !chosen.iter().any(|c| c.index == *i))
        .collect();
    let missing = WANT_POINTS.saturating_sub(chosen.len());
    for i in some(rest, missing) {
        pick(&mut chosen, i, "spread over the run");
    }
    chosen.sort_by_key(|c| c.index);
    chosen
}

fn show_trace(trace: &[Traced]) -> String {
    trace
        .iter()
        .enumerate()
        .map(|(i, t)| format!("  {i:4} {:>9.3?} {}", t.at, t.key))
        .collect::<Vec<_>>()
        .join("\n")
}

// ------------------------------------------------------------------------------------------------
// The test

struct Reference {
    trace: Vec<Traced>,
    state: BTreeMap<String, String>,
    /// Module names, from the run's JSON output.
    modules: Vec<String>,
    /// Packages it installed that nobody asked for.
    deps: Vec<String>,
    /// Packages with a postinst (after which dpkg works a while before its next record).
    postinst: BTreeSet<String>,
}

/// The uninterrupted run: its trace and end state, and which packages are dependencies.
fn reference(roots: &mut Roots) -> Reference {
    let (root, ud) = roots.next();
    let base = end_state(&root, &[]);
    let w = run_watched(&root, &ud, None);
    let v = ok_json(&w.out);
    eprintln!(
        "[kill] reference run (uninterrupted, traced): {:.1?}, {} events",
        w.elapsed,
        w.trace.len()
    );
    let modules: Vec<String> = v["modules"]
        .as_array()
        .expect("modules in the JSON output")
        .iter()
        .map(|m| m["name"].as_str().expect("module name").to_owned())
        .collect();
    assert!(
        modules.len() >= 5,
        "the JSON output lists too few modules: {v:#}"
    );
    let state = end_state(&root, &modules);
    for m in &modules {
        assert_eq!(
            state[&format!("marker {m}")],
            "present",
            "the uninterrupted run left no marker for module {m}"
        );
    }
    assert!(
        state["result.json"].starts_with("outcome \"success\""),
        "{}",
        state["result.json"]
    );
    let deps = dependencies(&base, &state);
    let postinst = root
        .list_dir("var/lib/dpkg/info")
        .iter()
        .filter_map(|n| n.strip_suffix(".postinst"))
        .map(|n| n.split_once(':').map_or(n, |(p, _)| p).to_owned())
        .collect();
    Reference {
        trace: w.trace,
        state,
        modules,
        deps,
        postinst,
    }
}

/// The commands a run's JSON output shows, one per line, with the note of a failed one.
fn rerun_commands(v: &serde_json::Value) -> Vec<String> {
    v["modules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["steps"].as_array().into_iter().flatten())
        .filter_map(|s| {
            let c = s["command"].as_str()?;
            let note = s["note"].as_str().filter(|n| n.contains("failed"));
            Some(format!(
                "{}: {c}{}",
                s["module"].as_str().unwrap_or("?"),
                note.map(|n| format!("  ({})", tail_chars(n, 300)))
                    .unwrap_or_default()
            ))
        })
        .collect()
}

fn tail_chars(s: &str, n: usize) -> String {
    let c: Vec<char> = s.chars().collect();
    let skip = c.len().saturating_sub(n);
    let t: String = c[skip..].iter().collect();
    if skip > 0 { format!("…{t}") } else { t }
}

/// The WARN/ERROR lines of a bootcfg log, each with the command output that follows it.
fn warnings(log: &str) -> String {
    let mut out = Vec::new();
    let mut keep = false;
    for l in log.lines() {
        if l.contains(" WARN ") || l.contains(" ERROR ") {
            keep = true;
        } else if !l.trim_start().starts_with('|') {
            keep = false;
        }
        if keep {
            out.push(format!("      {}", tail_chars(l, 400)));
        }
    }
    const MAX: usize = 60;
    if out.len() > MAX {
        let cut = out.len() - MAX;
        out.drain(..cut);
        out.insert(0, format!("      … ({cut} lines before)"));
    }
    out.join("\n")
}

fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("      {}", tail_chars(l, 400)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Fresh image roots (see [`image_root`]), each copied in the background while the previous one
/// is in use (at normal priority: at a low one, a busy machine starves the copy for minutes).
struct Roots {
    ud_text: String,
    next: Option<std::thread::JoinHandle<(Root, std::path::PathBuf)>>,
}

impl Roots {
    fn new(ud_text: String) -> Roots {
        let mut r = Roots {
            ud_text,
            next: None,
        };
        r.prefetch();
        r
    }

    fn prefetch(&mut self) {
        let ud = self.ud_text.clone();
        self.next = Some(std::thread::spawn(move || image_root(&ud)));
    }

    /// The prepared root (waiting for its copy to finish), and the next one started.
    fn next(&mut self) -> (Root, std::path::PathBuf) {
        let r = match self.next.take().expect("a root is being prepared").join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        };
        self.prefetch();
        r
    }
}

impl Drop for Roots {
    /// Waits for the copy in progress, so that its root is removed rather than left behind by a
    /// test process that exits first.
    fn drop(&mut self) {
        if let Some(h) = self.next.take() {
            let _ = h.join();
        }
    }
}

/// Waits (up to 30 s: a loaded machine reaps slowly) until nothing of the run is left: no process
/// chrooted into the root, none in the run's process group.
fn survivors(root: &Root, pgid: u32) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let mut left: Vec<String> = processes_in(root.path())
            .into_iter()
            .map(|(pid, comm, cmd)| format!("{pid} {comm}: {cmd}"))
            .collect();
        left.extend(processes_in_group(pgid));
        if left.is_empty() || t0.elapsed() > Duration::from_secs(30) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills a run at `p` on a fresh root and reruns it; Err says what went wrong. Returns a line of
/// timings.
fn kill_and_rerun(r: &Reference, p: &KillPoint, roots: &mut Roots) -> Result<String, String> {
    for attempt in 1..=ATTEMPTS {
        let t_copy = Instant::now();
        let (root, ud) = roots.next();
        let copy = t_copy.elapsed();
        let w = run_watched(&root, &ud, Some(&p.key));
        let Some(over) = &w.overshoot else {
            return Err(format!(
                "the run ended ({:?}) without that event; its trace:\n{}\n{}",
                w.out.status,
                show_trace(&w.trace),
                w.out.report()
            ));
        };
        let t_gone = Instant::now();
        let left = survivors(&root, w.pgid_raw);
        let gone = t_gone.elapsed();
        if !left.is_empty() {
            return Err(format!("processes survived the kill: {left:#?}"));
        }
        let want: Vec<&str> = r.trace[..=p.index].iter().map(|t| t.key.as_str()).collect();
        let got: Vec<&str> = w.trace.iter().map(|t| t.key.as_str()).collect();
        if got != want {
            // Informational: the kill point is still the event with this key.
            let at = want.iter().zip(&got).position(|(a, b)| a != b);
            eprintln!(
                "[kill]   note: this run's events differ from the reference's before the kill point (first at {at:?}: {:?} vs {:?})",
                at.and_then(|i| want.get(i)),
                at.and_then(|i| got.get(i))
            );
        }
        let t_state = Instant::now();
        let killed = end_state(&root, &r.modules);
        let state_time = t_state.elapsed();
        // The run finished before SIGKILL reached it (the last marker is followed by nothing
        // but result.json): too late, like an overshoot.
        let too_late = w.out.status.success() || killed == r.state;
        if too_late && attempt == ATTEMPTS {
            return Err(format!(
                "the kill came too late to interrupt anything, {ATTEMPTS} times:\n{}",
                w.out.report()
            ));
        }
        if too_late {
            eprintln!("[kill]   attempt {attempt}: the run had finished; again on a fresh root");
            continue;
        }
        if !over.is_empty() && attempt < ATTEMPTS {
            eprintln!(
                "[kill]   attempt {attempt}: stopped only after {} more event(s) ({}); again on a fresh root",
                over.len(),
                over.iter()
                    .map(|t| t.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            continue;
        }
        let landed = over.last().map_or(p.key.as_str(), |t| t.key.as_str());
        let next = r
            .trace
            .iter()
            .position(|t| t.key == landed)
            .and_then(|i| r.trace.get(i + 1))
            .map_or("(end of trace)", |t| t.key.as_str());
        let t_re = Instant::now();
        let out = apply(&root, &ud, IID, HOST);
        let rerun = t_re.elapsed();
        let json: Option<serde_json::Value> = serde_json::from_str(out.stdout.trim()).ok();
        let ran = json.as_ref().map_or_else(
            || "(no JSON output)".to_owned(),
            |v| rerun_commands(v).join("\n      "),
        );
        if !out.status.success() {
            let error = json
                .as_ref()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(format!(
                "killed after `{landed}` (before `{next}`): the rerun failed ({:?}): {error}\n    the rerun ran:\n      {ran}\n    its log (tail):\n{}",
                out.status,
                tail_lines(&out.stderr, 30)
            ));
        }
        let d = state_diff(&r.state, &end_state(&root, &r.modules));
        if !d.is_empty() {
            return Err(format!(
                "killed after `{landed}` (before `{next}`): the rerun did not converge:\n    {}\n    the rerun ran:\n      {ran}\n    its warnings:\n{}",
                d.join("\n    "),
                warnings(&out.stderr)
            ));
        }
        let note = if over.is_empty() {
            String::new()
        } else {
            format!(", landed after `{landed}`")
        };
        return Ok(format!(
            "copy {copy:.1?}, killed after {:.1?} (before `{next}`{note}), exited in {:.1?}, reaped in {gone:.1?}, state read in {state_time:.1?}, rerun {rerun:.1?}, attempts {attempt}",
            w.elapsed, w.exit_time
        ));
    }
    unreachable!("the last attempt always returns")
}

#[test]
fn kill_9_at_twenty_events_then_every_rerun_converges() {
    let t_all = Instant::now();
    let _heavy = heavy_lock();
    let ud_text = user_data(FIXTURE, Some(AptRepo::shared()));
    for p in REQUESTED {
        assert!(
            ud_text
                .lines()
                .any(|l| l.split_whitespace().last() == Some(p)),
            "{FIXTURE} does not ask for {p}"
        );
    }
    for q in PRESEEDED {
        assert!(ud_text.contains(q), "{FIXTURE} does not preseed {q}");
    }
    let mut roots = Roots::new(ud_text);
    let r = reference(&mut roots);
    let points = choose_points(&r);
    eprintln!(
        "[kill] dependencies: {}\n[kill] reference trace:\n{}\n[kill] {} kill points:\n{}",
        r.deps.join(" "),
        show_trace(&r.trace),
        points.len(),
        points
            .iter()
            .map(|p| format!("  {:4} {} ({})", p.index, p.key, p.why))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        points.len() >= MIN_POINTS,
        "only {} kill points in a trace of {} events",
        points.len(),
        r.trace.len()
    );
    // BOOTCFG_KILL_POINTS=substring[,substring…]: only the points whose key contains one (to
    // debug one point; with BOOTCFG_TEST_KEEP=1 its root is kept).
    let only: Vec<String> = std::env::var("BOOTCFG_KILL_POINTS")
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let points: Vec<KillPoint> = points
        .into_iter()
        .filter(|p| only.is_empty() || only.iter().any(|o| p.key.contains(o.as_str())))
        .collect();
    if !only.is_empty() {
        eprintln!(
            "[kill] BOOTCFG_KILL_POINTS={only:?}: {} point(s)",
            points.len()
        );
        assert!(
            !points.is_empty(),
            "BOOTCFG_KILL_POINTS matches no kill point"
        );
    }
    let mut failures = Vec::new();
    for (n, p) in points.iter().enumerate() {
        let t0 = Instant::now();
        let res = kill_and_rerun(&r, p, &mut roots);
        let label = format!("[kill] {:2}/{} [{}]", n + 1, points.len(), p.key);
        match res {
            Ok(line) => eprintln!("{label} ok in {:.1?}: {line}", t0.elapsed()),
            Err(e) => {
                eprintln!("{label} FAILED in {:.1?}: {e}", t0.elapsed());
                failures.push(format!("[{}] ({}) {e}", p.key, p.why));
            }
        }
    }
    eprintln!(
        "[kill] {} kill points in {:.1?}",
        points.len(),
        t_all.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} kill points did not converge:\n\n{}",
        failures.len(),
        points.len(),
        failures.join("\n\n")
    );
}
