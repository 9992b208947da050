//! `bootcfg run`, `plan`, `apply` and `status`.
//!
//! All three of run/plan/apply go through one function (`execute`): fetch user-data from the datasource,
//! parse and validate it, then for each module in boot order build its actions and hand them
//! to the [`Engine`] in plan or apply mode. `run` additionally skips modules whose run-once
//! marker exists for this instance; `apply` always runs every module (an operator asked for it)
//! and writes markers too, so a later `run` does not repeat the work. The first module that fails
//! stops the run: later modules are recorded as `not-run` and are tried again next time (a
//! machine half-configured in the wrong order — say packages installed before their debconf
//! preseed — is worse than one that is not configured yet).
//!
//! Exit codes: 0 success (also: no user-data), 1 a step failed or the user-data is invalid,
//! 2 usage (bad arguments, unusable `--root`).

use crate::datasource::{self, Datasource, FetchOptions};
use crate::marker::{self, ModuleResult, ModuleStatus, Outcome, RunResult};
use crate::modules::{self, PlanState};
use crate::plan::{Ctx, Engine, Identity, Mode, render_steps};
use crate::rootfs::Root;
use crate::runner::{ChrootRunner, Cmd, Redactor, Runner, programs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the seed lives inside the root (NoCloud layout).
pub const SEED_DIR: &str = "/var/lib/cloud/seed/nocloud";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Options shared by every subcommand that touches a root.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Root directory of the system to configure; commands run in it with chroot (bootcfg mounts
    /// nothing: mount /proc in it first).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Longest wait for the dpkg/apt locks (held by unattended-upgrades at first boot), seconds.
    #[arg(
        long,
        value_name = "SECS",
        env = "BOOTCFG_LOCK_TIMEOUT",
        default_value_t = 300
    )]
    pub lock_timeout: u64,
    /// Total time budget for reaching IMDS (retries with backoff), seconds.
    #[arg(
        long,
        value_name = "SECS",
        env = "BOOTCFG_IMDS_TIMEOUT",
        default_value_t = 120
    )]
    pub imds_timeout: u64,
    /// Timeout of each single IMDS request, seconds.
    #[arg(
        long,
        value_name = "SECS",
        env = "BOOTCFG_IMDS_REQUEST_TIMEOUT",
        default_value_t = 5
    )]
    pub imds_request_timeout: u64,
    /// Output format on stdout (logs always go to stderr; BOOTCFG_LOG=debug for more).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Where user-data comes from, for `plan` and `apply` (exactly one).
#[derive(Debug, Clone, clap::Args)]
#[group(id = "datasource", required = true, multiple = false)]
pub struct SourceArgs {
    /// A user-data file (needs --instance-id).
    #[arg(long, value_name = "FILE", requires = "instance_id")]
    pub user_data: Option<PathBuf>,
    /// A NoCloud seed directory on the host holding `user-data` and `meta-data`.
    #[arg(long, value_name = "DIR")]
    pub seed_dir: Option<PathBuf>,
    /// EC2 instance metadata (IMDSv2) base URL, e.g. http://169.254.169.254.
    #[arg(long, value_name = "URL")]
    pub imds_url: Option<String>,
}

/// Identity overrides for `plan` and `apply`.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
    /// Instance id (`%i`, run-once markers); default: from the seed's meta-data or IMDS.
    #[arg(long, value_name = "ID")]
    pub instance_id: Option<String>,
    /// Fully qualified host name (`%f`); default: the datasource's local-hostname, else the
    /// root's /etc/hostname, else `localhost`.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
}

const RUN_HELP: &str = "\
Picks the datasource: the NoCloud seed ROOT/var/lib/cloud/seed/nocloud/{user-data,meta-data} if
it exists, else EC2 IMDSv2 at http://169.254.169.254. Each module runs once per instance: a
marker ROOT/var/lib/bootcfg/instances/<id>/<module>.done is written after it succeeds, so a
failed module is retried at the next boot. The result goes to ROOT/var/lib/bootcfg/result.json.

Examples:
  bootcfg run
  bootcfg run --root /mnt/image --seed-dir /tmp/seed --output json

Exit codes: 0 success or no user-data, 1 a step failed or invalid user-data, 2 usage error.
Environment: BOOTCFG_LOCK_TIMEOUT, BOOTCFG_IMDS_TIMEOUT, BOOTCFG_IMDS_REQUEST_TIMEOUT,
BOOTCFG_LOG (tracing filter, default info).";

#[derive(Debug, clap::Args)]
#[command(after_help = RUN_HELP)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// Use this NoCloud seed directory (on the host) instead of looking for one.
    #[arg(long, value_name = "DIR", conflicts_with = "imds_url")]
    pub seed_dir: Option<PathBuf>,
    /// IMDS base URL (default http://169.254.169.254).
    #[arg(long, value_name = "URL")]
    pub imds_url: Option<String>,
}

const PLAN_HELP: &str = "\
Prints every file that would be written, with a unified diff against what is in the root,
and every command that would run, in order. Secrets are shown as <redacted>, the instance
identity proof (puppet.instance_identity) shortened. Nothing changes (keys named by keyid are
not fetched: the plan says where they would come from).

Examples:
  bootcfg plan --root /mnt/image --user-data ud.yaml --instance-id i-0123 --hostname web-1.example.com
  bootcfg plan --seed-dir /var/lib/cloud/seed/nocloud --output json

Exit codes: 0 plan shown, 1 invalid user-data or a module cannot be planned, 2 usage error.";

#[derive(Debug, clap::Args)]
#[command(after_help = PLAN_HELP)]
pub struct PlanArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

const APPLY_HELP: &str = "\
Carries out the plan: every module runs (markers are ignored, then written on success), and
the result is written to ROOT/var/lib/bootcfg/result.json.

Examples:
  bootcfg apply --root /mnt/image --user-data ud.yaml --instance-id i-0123 --hostname web-1.example.com
  BOOTCFG_LOCK_TIMEOUT=30 bootcfg apply --root /srv/r --seed-dir /tmp/seed --output json

Exit codes: 0 success or no user-data, 1 a step failed or invalid user-data, 2 usage error.";

#[derive(Debug, clap::Args)]
#[command(after_help = APPLY_HELP)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

const STATUS_HELP: &str = "\
Shows ROOT/var/lib/bootcfg/result.json, the result of the last run or apply.

Examples:
  bootcfg status
  bootcfg status --root /mnt/image --output json

Exit codes: 0 last run succeeded (or had no user-data), 1 it failed or there is no result yet,
2 usage error.";

#[derive(Debug, clap::Args)]
#[command(after_help = STATUS_HELP)]
pub struct StatusArgs {
    /// Root directory whose result to show.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Logs go to stderr. Under systemd (`JOURNAL_STREAM` set: stderr is a journal stream) each line
/// starts with a `<N>` syslog priority, which journald turns into the entry's priority
/// (`SyslogLevelPrefix=`, on by default), so `journalctl -u bootcfg -p warning` works without
/// a journald client library.
fn init_logging() {
    // BOOTCFG_LOG, else RUST_LOG, else `info`
    let filter = tracing_subscriber::EnvFilter::try_from_env("BOOTCFG_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder
            .with_ansi(false)
            .event_format(JournalFormat)
            .try_init()
    } else {
        builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}

/// `<priority>span{fields}: message fields` (no timestamp: the journal adds one).
struct JournalFormat;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JournalFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let prio = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{prio}>")?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                match ext.get::<tracing_subscriber::fmt::FormattedFields<N>>() {
                    Some(f) if !f.is_empty() => write!(writer, "{}{{{f}}}: ", span.name())?,
                    _ => write!(writer, "{}: ", span.name())?,
                }
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Run,
    Plan,
    Apply,
}

struct Job {
    kind: Kind,
    common: Common,
    ds: Datasource,
    instance_id: Option<String>,
    hostname: Option<String>,
}

fn source_of(s: &SourceArgs) -> Datasource {
    if let Some(f) = &s.user_data {
        Datasource::File(f.clone())
    } else if let Some(d) = &s.seed_dir {
        Datasource::Seed(d.clone())
    } else {
        Datasource::Imds(
            s.imds_url
                .clone()
                .unwrap_or_else(|| crate::imds::DEFAULT_URL.to_owned()),
        )
    }
}

pub fn run(args: RunArgs) -> u8 {
    init_logging();
    let ds = if let Some(d) = args.seed_dir {
        Datasource::Seed(d)
    } else if let Some(u) = args.imds_url {
        Datasource::Imds(u)
    } else {
        match Root::new(&args.common.root) {
            Ok(r)
                if r.resolve(SEED_DIR)
                    .map(|p| p.join("meta-data").exists())
                    .unwrap_or(false) =>
            {
                Datasource::Seed(r.resolve(SEED_DIR).expect("resolved above"))
            }
            _ => Datasource::Imds(crate::imds::DEFAULT_URL.to_owned()),
        }
    };
    execute(Job {
        kind: Kind::Run,
        common: args.common,
        ds,
        instance_id: None,
        hostname: None,
    })
}

pub fn plan(args: PlanArgs) -> u8 {
    init_logging();
    let ds = source_of(&args.source);
    execute(Job {
        kind: Kind::Plan,
        common: args.common,
        ds,
        instance_id: args.identity.instance_id,
        hostname: args.identity.hostname,
    })
}

pub fn apply(args: ApplyArgs) -> u8 {
    init_logging();
    let ds = source_of(&args.source);
    execute(Job {
        kind: Kind::Apply,
        common: args.common,
        ds,
        instance_id: args.identity.instance_id,
        hostname: args.identity.hostname,
    })
}

pub fn status(args: StatusArgs) -> u8 {
    init_logging();
    let root = match Root::new(&args.root) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bootcfg: --root: {e}");
            return 2;
        }
    };
    match marker::read_result(&root) {
        Ok(Some(r)) => {
            match args.output {
                Output::Json => {
                    println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default())
                }
                Output::Text => print!("{}", summary(&r)),
            }
            if matches!(r.outcome, Outcome::Success | Outcome::NoUserData) {
                0
            } else {
                1
            }
        }
        Ok(None) => {
            if args.output == Output::Json {
                println!("null");
            }
            eprintln!(
                "bootcfg: no result yet ({} does not exist under {})",
                marker::RESULT_FILE,
                root.path().display()
            );
            1
        }
        Err(e) => {
            eprintln!("bootcfg: {e}");
            1
        }
    }
}

/// The human summary printed by `status` and at the end of `run`/`apply`.
pub fn summary(r: &RunResult) -> String {
    let mut s = format!(
        "{} {}: {:?} (exit {}), instance {}, host {}, from {}\n  {} -> {} ({:.1} s, {:.1} s of it in child processes)\n",
        "bootcfg",
        r.command,
        r.outcome,
        r.exit_code,
        r.instance_id.as_deref().unwrap_or("-"),
        r.hostname.as_deref().unwrap_or("-"),
        r.datasource,
        r.started_at,
        r.finished_at,
        r.duration_ms as f64 / 1000.0,
        r.child_ms as f64 / 1000.0
    );
    for m in &r.modules {
        let st = match m.status {
            ModuleStatus::Done => "done",
            ModuleStatus::AlreadyDone => "already done",
            ModuleStatus::Failed => "FAILED",
            ModuleStatus::NotRun => "not run",
        };
        let changed = m.steps.iter().filter(|s| s.changed).count();
        s.push_str(&format!(
            "  {:<12} {st:<12} {:>6} ms  {changed} change(s)\n",
            m.name, m.duration_ms
        ));
        if let Some(e) = &m.error {
            for l in e.lines() {
                s.push_str(&format!("      {l}\n"));
            }
        }
    }
    if let Some(e) = &r.error {
        s.push_str(&format!("  error: {e}\n"));
    }
    for w in &r.warnings {
        s.push_str(&format!("  warning: {w}\n"));
    }
    if r.reboot_required {
        s.push_str("  reboot required\n");
    }
    s
}

/// Take `ROOT/var/lib/bootcfg/lock` (flock, non-blocking).
fn lock_root(root: &Root) -> Result<std::fs::File, String> {
    let path = format!("{}/lock", marker::STATE_DIR);
    root.ensure_dir(marker::STATE_DIR, 0o755)
        .map_err(|e| e.to_string())?;
    let host = root.resolve(&path).map_err(|e| e.to_string())?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&host)
        .map_err(|e| format!("{}: {e}", host.display()))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|_| {
        format!(
            "another bootcfg is already working on this root ({} is locked)",
            host.display()
        )
    })?;
    Ok(f)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn execute(job: Job) -> u8 {
    let started = Instant::now();
    let command = match job.kind {
        Kind::Run => "run",
        Kind::Plan => "plan",
        Kind::Apply => "apply",
    };
    let root = match Root::new(&job.common.root) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bootcfg: --root: {e}");
            return 2;
        }
    };
    if let Some(i) = &job.instance_id
        && !marker::valid_instance_id(i)
    {
        eprintln!("bootcfg: --instance-id `{i}`: use letters, digits, `-`, `_`, `.` and `:` only");
        return 2;
    }
    let mut result = RunResult {
        version: marker::RESULT_VERSION,
        command: command.to_owned(),
        outcome: Outcome::Failed,
        exit_code: 1,
        datasource: job.ds.describe(),
        instance_id: None,
        hostname: None,
        started_at: now(),
        finished_at: String::new(),
        duration_ms: 0,
        child_ms: 0,
        error: None,
        warnings: Vec::new(),
        reboot_required: false,
        modules: Vec::new(),
    };
    // one bootcfg at a time per root (released by the kernel if we are killed)
    let _lock = if job.kind == Kind::Plan {
        None
    } else {
        match lock_root(&root) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("bootcfg: {e}");
                return 1;
            }
        }
    };
    let runner_time = std::cell::Cell::new(Duration::ZERO);
    let code = execute_inner(&job, &root, &mut result, &runner_time);
    result.exit_code = code;
    result.finished_at = now();
    result.duration_ms = started.elapsed().as_millis() as u64;
    result.child_ms = runner_time.get().as_millis() as u64;
    if job.kind != Kind::Plan
        && let Err(e) = marker::write_result(&root, &result)
    {
        eprintln!("bootcfg: writing {}: {e}", marker::RESULT_FILE);
    }
    match (job.common.output, job.kind) {
        (Output::Json, _) => println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        ),
        (Output::Text, Kind::Plan) => {}
        (Output::Text, _) => print!("{}", summary(&result)),
    }
    if let Some(e) = &result.error {
        eprintln!("bootcfg: error: {e}");
    }
    if result.reboot_required && root.is_host() && job.kind != Kind::Plan && code == 0 {
        tracing::warn!("a reboot is required; rebooting");
        let runner = ChrootRunner::new(
            PathBuf::from("/"),
            Redactor::default(),
            Duration::from_secs(1),
        );
        if let Err(e) = runner.run(&Cmd::new([programs::SYSTEMCTL, "reboot"])) {
            eprintln!("bootcfg: reboot: {e}");
            return 1;
        }
    }
    code
}

fn execute_inner(
    job: &Job,
    root: &Root,
    result: &mut RunResult,
    child: &std::cell::Cell<Duration>,
) -> u8 {
    let opts = FetchOptions {
        imds_budget: Duration::from_secs(job.common.imds_timeout),
        imds_request_timeout: Duration::from_secs(job.common.imds_request_timeout.max(1)),
    };
    tracing::info!(datasource = %job.ds.describe(), root = %root.path().display(), "fetching user-data");
    let fetched = match datasource::fetch(&job.ds, &opts) {
        Ok(f) => f,
        Err(e) => {
            result.error = Some(format!("datasource {}: {e}", job.ds.describe()));
            return 1;
        }
    };
    let iid = job.instance_id.clone().or(fetched.instance_id.clone());
    let Some(iid) = iid else {
        result.error = Some("no instance id: pass --instance-id".into());
        return 2;
    };
    if !marker::valid_instance_id(&iid) {
        result.error = Some(format!(
            "instance id `{iid}` from {} is not usable as a directory name",
            job.ds.describe()
        ));
        return 1;
    }
    let hostname = job
        .hostname
        .clone()
        .or(fetched.hostname.clone())
        .or_else(|| {
            root.read("/etc/hostname")
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_owned());
    result.instance_id = Some(iid.clone());
    result.hostname = Some(hostname.clone());

    let raw = fetched.user_data.unwrap_or_default();
    if raw.iter().all(u8::is_ascii_whitespace) {
        tracing::info!("no user-data: nothing to do");
        result.outcome = Outcome::NoUserData;
        if job.kind == Kind::Plan && job.common.output == Output::Text {
            println!("No user-data from {}: nothing to do.", job.ds.describe());
        }
        return 0;
    }
    let parsed = match schemas::userdata::parse(&fetched.name, &raw) {
        Ok(p) => p,
        Err(diags) => {
            for d in &diags.0 {
                eprintln!("{d}");
            }
            result.outcome = Outcome::InvalidUserData;
            result.error = Some(format!(
                "invalid user-data from {} ({} problem(s))",
                job.ds.describe(),
                diags.0.len()
            ));
            result.warnings = diags.0.iter().map(|d| d.to_string()).collect();
            return 1;
        }
    };
    for w in &parsed.warnings {
        tracing::warn!("{w}");
        result.warnings.push(w.to_string());
    }
    let ud = parsed.config;
    // keys bootcfg does not handle (`runcmd`, …) are already among the parser's warnings
    let mut ctx = Ctx::new(root.clone(), &iid, &hostname);
    for s in modules::secrets(&ud, &iid) {
        ctx.redactor.add(&s);
    }
    ctx.set_identity(identity(&job.ds, fetched.identity_rsa2048));
    let runner = ChrootRunner::new(
        root.path().to_owned(),
        ctx.redactor.clone(),
        Duration::from_secs(job.common.lock_timeout),
    );
    let mode = if job.kind == Kind::Plan {
        Mode::Plan
    } else {
        Mode::Apply
    };
    // `puppet.instance_identity` without a document: refuse before anything is touched (apply
    // would otherwise configure apt and packages, then stop at the puppet module every boot).
    // `plan` shows it as the puppet module's error instead.
    if mode == Mode::Apply
        && !(job.kind == Kind::Run && marker::is_done(root, &iid, "puppet"))
        && let Some(p) = &ud.puppet
        && let Err(e) = modules::puppet::instance_identity(p, &ctx)
    {
        let msg = ctx.mask(&e.to_string());
        tracing::error!(module = "puppet", "{msg}");
        for m in modules::all() {
            let puppet = m.name() == "puppet";
            result.modules.push(ModuleResult {
                name: m.name().to_owned(),
                status: if puppet {
                    ModuleStatus::Failed
                } else {
                    ModuleStatus::NotRun
                },
                duration_ms: 0,
                error: puppet.then(|| msg.clone()),
                steps: Vec::new(),
            });
        }
        result.error = Some(format!(
            "module puppet cannot run (nothing was changed): {msg}"
        ));
        return 1;
    }
    let mut engine = Engine::new(&ctx, &runner, mode);
    let mut st = PlanState::default();
    let mut failed = false;
    for m in modules::all() {
        let name = m.name();
        let t0 = Instant::now();
        let mut mr = ModuleResult {
            name: name.to_owned(),
            status: ModuleStatus::Done,
            duration_ms: 0,
            error: None,
            steps: Vec::new(),
        };
        // plan shows every module even after one cannot be planned; apply stops
        if failed && mode == Mode::Apply {
            mr.status = ModuleStatus::NotRun;
            result.modules.push(mr);
            continue;
        }
        if job.kind == Kind::Run && marker::is_done(root, &iid, name) {
            tracing::info!(module = name, "already done for this instance");
            mr.status = ModuleStatus::AlreadyDone;
            result.modules.push(mr);
            continue;
        }
        let first_step = engine.steps.len();
        let span = tracing::info_span!("module", name);
        let _g = span.enter();
        let outcome = m.plan(&ud, &ctx, &mut st).and_then(|actions| {
            for a in &actions {
                engine.execute(name, a)?;
            }
            Ok(())
        });
        mr.steps = engine.steps[first_step..].to_vec();
        mr.duration_ms = t0.elapsed().as_millis() as u64;
        match outcome {
            Ok(()) => {
                if mode == Mode::Apply
                    && let Err(e) = marker::mark_done(root, &iid, name)
                {
                    mr.status = ModuleStatus::Failed;
                    mr.error = Some(format!("writing the marker: {e}"));
                    failed = true;
                }
            }
            Err(e) => {
                let msg = ctx.mask(&e.to_string());
                tracing::error!(module = name, "{msg}");
                mr.status = ModuleStatus::Failed;
                mr.error = Some(msg);
                failed = true;
            }
        }
        result.modules.push(mr);
    }
    child.set(runner.child_time());
    result.reboot_required = engine.reboot_pending;
    if job.kind == Kind::Plan && job.common.output == Output::Text {
        println!(
            "Plan for instance {iid} (host {hostname}) from {}, root {}:",
            job.ds.describe(),
            root.path().display()
        );
        for m in &result.modules {
            if let Some(e) = &m.error {
                println!("== {}: cannot be planned: {e}", m.name);
            } else if m.steps.is_empty() {
                println!("== {}: nothing to do", m.name);
            } else {
                print!("{}", render_steps(&m.steps, Mode::Plan));
            }
        }
        for w in &result.warnings {
            println!("# warning: {w}");
        }
    }
    if failed {
        result.error = result.modules.iter().find_map(|m| {
            m.error
                .as_ref()
                .map(|e| format!("module {} failed: {e}", m.name))
        });
        1
    } else {
        result.outcome = Outcome::Success;
        0
    }
}

/// What this run has for `puppet.instance_identity`: IMDS's `rsa2048` body, or why there is none.
fn identity(ds: &Datasource, rsa2048: Option<String>) -> Identity {
    const ONLY_IMDS: &str = "only EC2's IMDS serves a signed instance identity document";
    match (ds, rsa2048) {
        (Datasource::Imds(_), Some(v)) => Identity::Available(v),
        (Datasource::Imds(url), None) => Identity::Unavailable(format!(
            "IMDS at {url} answered 404 for {}/{}",
            crate::imds::API_VERSION,
            crate::imds::IDENTITY_RSA2048
        )),
        (Datasource::Seed(_), _) => Identity::Unavailable(format!(
            "the datasource is {} (a seed directory); {ONLY_IMDS}",
            ds.describe()
        )),
        (Datasource::File(p), _) => Identity::Unavailable(format!(
            "the user-data comes from --user-data {}; {ONLY_IMDS}",
            p.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_available_only_from_imds() {
        let imds = Datasource::Imds("http://169.254.169.254".into());
        assert_eq!(
            identity(&imds, Some("MIAG".into())),
            Identity::Available("MIAG".into())
        );
        let Identity::Unavailable(why) = identity(&imds, None) else {
            panic!("no body, no identity")
        };
        assert!(why.contains("404") && why.contains("rsa2048"), "{why}");
        let seed = Datasource::Seed("/seed".into());
        let Identity::Unavailable(why) = identity(&seed, Some("MIAG".into())) else {
            panic!("a seed never has one")
        };
        assert!(
            why.contains("nocloud:/seed") && why.contains("only EC2's IMDS"),
            "{why}"
        );
        let file = Datasource::File("/tmp/ud.yaml".into());
        let Identity::Unavailable(why) = identity(&file, None) else {
            panic!("a file never has one")
        };
        assert!(why.contains("--user-data /tmp/ud.yaml"), "{why}");
    }
}
