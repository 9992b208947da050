//! `bootcfg run`, `plan`, `apply` and `status`: the agent, which goes fetch → parse → plan all →
//! execute.
//!
//! run/plan/apply go through one function (`execute`):
//! 1. **fetch** the user-data from the datasource ([`crate::datasource`]);
//! 2. **parse** and validate it ([`schemas::userdata`]);
//! 3. **plan every module** in boot order: each turns the user-data into [`Action`]s, and the
//!    [`Engine`] in plan mode turns those into steps (diffs, commands). If any module cannot be
//!    planned, every failure is reported and **nothing is changed**;
//! 4. **execute** (apply, run): the same actions, in the same order, through the engine in apply
//!    mode. A module's marker is written after it succeeded.
//!
//! `run` skips modules whose run-once marker exists for this instance; `apply` runs every module
//! (an operator asked for it) and writes markers too, so a later `run` does not repeat the work.
//! When a module fails, the modules that need it ([`modules::needs`]) are not run (`not-run`, with
//! the reason), and the others still run, as cloud-init runs every module; everything not done
//! is tried again at the next boot.
//!
//! Exit codes: [`crate::exit`].

use crate::action::{Action, Mode, Step};
use crate::args::{ApplyArgs, Common, Output, PlanArgs, RunArgs, SEED_DIR, SourceArgs, StatusArgs};
use crate::ctx::{Ctx, Identity};
use crate::datasource::{self, Datasource, FetchOptions};
use crate::engine::Engine;
use crate::exit;
use crate::marker::{self, ModuleResult, ModuleStatus, Outcome, RunResult};
use crate::modules::{self, PlanState};
use crate::report::{render_steps, summary};
use crate::rootfs::Root;
use crate::runner::{ChrootRunner, Cmd, Redactor, Runner, programs};
use schemas::userdata::model::UserData;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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

fn init_logging() {
    schemas::logging::init("BOOTCFG_LOG", "info");
}

pub fn run(args: RunArgs) -> u8 {
    init_logging();
    let ds = if let Some(d) = args.seed_dir {
        Datasource::Seed(d)
    } else if let Some(u) = args.imds_url {
        Datasource::Imds(u)
    } else {
        // The image's own seed, when its `meta-data` exists as the image sees it (a symlink
        // resolves inside the root, as on the instance); it is read through the root too.
        match Root::new(&args.common.root) {
            Ok(r) if r.exists(&format!("{SEED_DIR}/meta-data")) => {
                Datasource::RootSeed(r.path().join(SEED_DIR.trim_start_matches('/')))
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
            tracing::error!("--root: {e}");
            return exit::USAGE;
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
                exit::OK
            } else {
                exit::FAILED
            }
        }
        Ok(None) => {
            if args.output == Output::Json {
                println!("null");
            }
            tracing::error!(
                "no result yet ({} does not exist under {})",
                marker::RESULT_FILE,
                root.path().display()
            );
            exit::FAILED
        }
        Err(e) => {
            tracing::error!("{e}");
            exit::FAILED
        }
    }
}

/// Take `ROOT/var/lib/bootcfg/lock` (flock, non-blocking).
fn lock_root(root: &Root) -> Result<std::fs::File, String> {
    let path = format!("{}/lock", marker::STATE_DIR);
    root.ensure_dir(marker::STATE_DIR, 0o755)
        .map_err(|e| e.to_string())?;
    // opened through the root's confined lookup, like every other file
    let f = root
        .open_lock_file(&path, 0o644)
        .map_err(|e| e.to_string())?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|_| {
        format!(
            "another bootcfg is already working on this root ({path} in {} is locked); let it finish (`bootcfg status` shows its result), or find it with `fuser {path}` inside the root",
            root.path().display()
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
            tracing::error!("--root: {e}");
            return exit::USAGE;
        }
    };
    if let Some(i) = &job.instance_id
        && !marker::valid_instance_id(i)
    {
        tracing::error!("--instance-id `{i}`: use letters, digits, `-`, `_`, `.` and `:` only");
        return exit::USAGE;
    }
    let mut result = RunResult {
        version: marker::RESULT_VERSION,
        command: command.to_owned(),
        outcome: Outcome::Failed,
        exit_code: exit::FAILED,
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
                tracing::error!("{e}");
                return exit::FAILED;
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
        tracing::error!("writing {}: {e}", marker::RESULT_FILE);
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
        // fatal: through tracing, so journald records it at priority err
        tracing::error!("{e}");
    }
    if result.reboot_required && root.is_host() && job.kind != Kind::Plan && code == exit::OK {
        tracing::warn!("a reboot is required; rebooting");
        let runner = ChrootRunner::new(
            PathBuf::from("/"),
            Redactor::default(),
            Duration::from_secs(1),
        );
        if let Err(e) = runner.run(&Cmd::new([programs::SYSTEMCTL, "reboot"])) {
            tracing::error!("reboot: {e}");
            return exit::FAILED;
        }
    }
    code
}

/// What the datasource gave, ready to plan.
struct Input {
    iid: String,
    hostname: String,
    ud: UserData,
    identity: Option<String>,
}

/// Steps 1 and 2: fetch and parse. `Err` is the exit code (the reason is in `result`).
fn fetch_and_parse(job: &Job, root: &Root, result: &mut RunResult) -> Result<Input, u8> {
    let opts = FetchOptions {
        imds_budget: Duration::from_secs(job.common.imds_timeout),
        imds_request_timeout: Duration::from_secs(job.common.imds_request_timeout.max(1)),
    };
    tracing::info!(datasource = %job.ds.describe(), root = %root.path().display(), "fetching user-data");
    let fetched = datasource::fetch(&job.ds, root, &opts).map_err(|e| {
        result.error = Some(format!("datasource {}: {e}", job.ds.describe()));
        exit::FAILED
    })?;
    let Some(iid) = job.instance_id.clone().or(fetched.instance_id.clone()) else {
        result.error = Some("no instance id: pass --instance-id".into());
        return Err(exit::USAGE);
    };
    if !marker::valid_instance_id(&iid) {
        result.error = Some(format!(
            "instance id `{iid}` from {} is not usable as a directory name",
            job.ds.describe()
        ));
        return Err(exit::FAILED);
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
        return Err(exit::OK);
    }
    let parsed = schemas::userdata::parse(&fetched.name, &raw).map_err(|diags| {
        for d in &diags.0 {
            tracing::error!("{d}");
        }
        result.outcome = Outcome::InvalidUserData;
        result.error = Some(format!(
            "invalid user-data from {} ({} problem(s))",
            job.ds.describe(),
            diags.0.len()
        ));
        result.warnings = diags.0.iter().map(|d| d.to_string()).collect();
        exit::FAILED
    })?;
    // keys bootcfg does not handle (`runcmd`, …) are already among the parser's warnings
    for w in &parsed.warnings {
        tracing::warn!("{w}");
        result.warnings.push(w.to_string());
    }
    Ok(Input {
        iid,
        hostname,
        ud: parsed.config,
        identity: fetched.identity_rsa2048,
    })
}

/// One module after step 3.
pub struct Planned {
    pub name: &'static str,
    /// Skipped by `run`: its marker says it is done for this instance.
    pub already_done: bool,
    /// Its actions, or why it cannot be planned (masked).
    pub actions: Result<Vec<Action>, String>,
    /// What plan shows for it.
    pub steps: Vec<Step>,
}

/// Step 3: plan every module (those `skip` names are left out: done for this instance). One
/// plan-mode engine walks all of them, so a later module's diff is against what the earlier ones
/// would have written. Changes nothing; runs nothing.
pub fn plan_all(
    ud: &UserData,
    ctx: &Ctx,
    runner: &dyn Runner,
    skip: &dyn Fn(&str) -> bool,
) -> (Vec<Planned>, bool) {
    let mut engine = Engine::new(ctx, runner, Mode::Plan);
    let mut st = PlanState::default();
    let mut out = Vec::new();
    for m in modules::all() {
        let name = m.name();
        if skip(name) {
            out.push(Planned {
                name,
                already_done: true,
                actions: Ok(Vec::new()),
                steps: Vec::new(),
            });
            continue;
        }
        let first = engine.steps.len();
        let actions = m.plan(ud, ctx, &mut st).and_then(|actions| {
            for a in &actions {
                engine.execute(name, a)?;
            }
            Ok(actions)
        });
        out.push(Planned {
            name,
            already_done: false,
            actions: actions.map_err(|e| ctx.mask(&e.to_string())),
            steps: engine.steps[first..].to_vec(),
        });
    }
    (out, engine.reboot_pending)
}

fn execute_inner(
    job: &Job,
    root: &Root,
    result: &mut RunResult,
    child: &std::cell::Cell<Duration>,
) -> u8 {
    let input = match fetch_and_parse(job, root, result) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let Input {
        iid,
        hostname,
        ud,
        identity: rsa2048,
    } = input;
    let mut ctx = Ctx::new(root.clone(), &iid, &hostname);
    for s in modules::secrets(&ud, &iid) {
        ctx.redactor.add(&s);
    }
    ctx.set_identity(identity(&job.ds, rsa2048));
    let runner = ChrootRunner::new(
        root.path().to_owned(),
        ctx.redactor.clone(),
        Duration::from_secs(job.common.lock_timeout),
    );

    // 3. plan everything
    let skip = |name: &str| job.kind == Kind::Run && marker::is_done(root, &iid, name);
    let (planned, plan_reboot) = {
        let _g = tracing::info_span!("plan").entered();
        plan_all(&ud, &ctx, &runner, &skip)
    };
    let unplannable: Vec<(&str, &String)> = planned
        .iter()
        .filter_map(|p| p.actions.as_ref().err().map(|e| (p.name, e)))
        .collect();

    if job.kind == Kind::Plan {
        result.reboot_required = plan_reboot;
        for p in &planned {
            result.modules.push(ModuleResult {
                name: p.name.to_owned(),
                status: if p.actions.is_ok() {
                    ModuleStatus::Done
                } else {
                    ModuleStatus::Failed
                },
                duration_ms: 0,
                error: p.actions.as_ref().err().cloned(),
                reason: None,
                steps: p.steps.clone(),
            });
        }
        if job.common.output == Output::Text {
            print_plan(job, &iid, &hostname, root, result);
        }
        return if unplannable.is_empty() {
            result.outcome = Outcome::Success;
            exit::OK
        } else {
            result.error = Some(unplannable_error(&unplannable));
            exit::FAILED
        };
    }
    if !unplannable.is_empty() {
        for p in &planned {
            let failed = p.actions.is_err();
            result.modules.push(ModuleResult {
                name: p.name.to_owned(),
                status: if p.already_done {
                    ModuleStatus::AlreadyDone
                } else if failed {
                    ModuleStatus::Failed
                } else {
                    ModuleStatus::NotRun
                },
                duration_ms: 0,
                error: p.actions.as_ref().err().cloned(),
                reason: (!failed && !p.already_done)
                    .then(|| "nothing is changed while a module cannot be planned".to_owned()),
                steps: Vec::new(),
            });
        }
        result.error = Some(unplannable_error(&unplannable));
        return exit::FAILED;
    }

    // 4. execute
    let (modules, reboot) = execute_planned(planned, &ctx, &runner, &crate::keys::Keyservers);
    result.modules = modules;
    let failed = result
        .modules
        .iter()
        .any(|m| m.status == ModuleStatus::Failed);
    child.set(runner.child_time());
    result.reboot_required = reboot;
    if failed {
        let errors: Vec<String> = result
            .modules
            .iter()
            .filter_map(|m| {
                m.error
                    .as_ref()
                    .map(|e| format!("module {} failed: {e}", m.name))
            })
            .collect();
        result.error = Some(errors.join("; "));
        exit::FAILED
    } else {
        result.outcome = Outcome::Success;
        exit::OK
    }
}

/// Step 4: carry out the planned modules in order through one apply-mode engine, writing each
/// module's marker after it succeeded. A module whose needs ([`modules::needs`]) failed or were
/// not run is not run (with the reason); the others run. Returns each module's result and
/// whether a reboot is pending.
pub fn execute_planned(
    planned: Vec<Planned>,
    ctx: &Ctx,
    runner: &dyn Runner,
    keys: &dyn crate::action::KeySource,
) -> (Vec<ModuleResult>, bool) {
    let mut engine = Engine::new(ctx, runner, Mode::Apply).with_keys(keys);
    let mut results: Vec<ModuleResult> = Vec::new();
    for p in planned {
        let name = p.name;
        let mut mr = ModuleResult {
            name: name.to_owned(),
            status: ModuleStatus::Done,
            duration_ms: 0,
            error: None,
            reason: None,
            steps: Vec::new(),
        };
        if p.already_done {
            tracing::info!(module = name, "already done for this instance");
            mr.status = ModuleStatus::AlreadyDone;
            results.push(mr);
            continue;
        }
        let blocked: Vec<&str> = modules::needs(name)
            .iter()
            .copied()
            .filter(|n| {
                results.iter().any(|r| {
                    r.name == *n && matches!(r.status, ModuleStatus::Failed | ModuleStatus::NotRun)
                })
            })
            .collect();
        if !blocked.is_empty() {
            let why = format!(
                "it needs {}, which did not succeed; tried again at the next run",
                blocked.join(", ")
            );
            tracing::warn!(module = name, "not run: {why}");
            mr.status = ModuleStatus::NotRun;
            mr.reason = Some(why);
            results.push(mr);
            continue;
        }
        let t0 = Instant::now();
        let first = engine.steps.len();
        let outcome = {
            let _g = tracing::info_span!("module", name).entered();
            let mut res = Ok(());
            for a in p.actions.as_deref().unwrap_or_default() {
                if let Err(e) = engine.execute(name, a) {
                    res = Err(e);
                    break;
                }
            }
            res
        };
        mr.steps = engine.steps[first..].to_vec();
        mr.duration_ms = t0.elapsed().as_millis() as u64;
        match outcome {
            Ok(()) => {
                if let Err(e) = marker::mark_done(&ctx.root, &ctx.instance_id, name) {
                    mr.status = ModuleStatus::Failed;
                    mr.error = Some(format!("writing the marker: {e}"));
                    tracing::error!(module = name, "writing the marker: {e}");
                }
            }
            Err(e) => {
                let msg = ctx.mask(&e.to_string());
                tracing::error!(module = name, "{msg}");
                mr.status = ModuleStatus::Failed;
                mr.error = Some(msg);
            }
        }
        results.push(mr);
    }
    (results, engine.reboot_pending)
}

/// "module puppet cannot be planned (nothing was changed): …; module apt-sources …"
fn unplannable_error(failures: &[(&str, &String)]) -> String {
    failures
        .iter()
        .map(|(n, e)| format!("module {n} cannot be planned (nothing was changed): {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `plan`'s text page.
fn print_plan(job: &Job, iid: &str, hostname: &str, root: &Root, result: &RunResult) {
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
        (Datasource::Seed(_) | Datasource::RootSeed(_), _) => Identity::Unavailable(format!(
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

    use crate::modules::testutil::root;
    use crate::runner::{CmdOutput, RunError};

    const UD: &str = "#cloud-config
apt:
  sources:
    local:
      source: deb http://127.0.0.1:9/debian bookworm main
  debconf_selections:
    tz: tzdata tzdata/Areas select Europe
packages: [hello]
puppet:
  install: false
  start_service: false
  conf:
    main:
      server: puppet.example
";

    /// Fails every command whose argv contains `word`; the others succeed.
    struct FailOn(&'static str);
    impl Runner for FailOn {
        fn run(&self, cmd: &Cmd) -> Result<CmdOutput, RunError> {
            if cmd.argv.iter().any(|a| a == self.0) {
                return Err(RunError::Failed {
                    command: cmd.display(),
                    status: "exit status: 100".into(),
                    output: "E: failed".into(),
                });
            }
            Ok(CmdOutput {
                code: 0,
                stdout: String::new(),
                stderr: String::new(),
                elapsed: Default::default(),
            })
        }
    }

    fn statuses(r: &[ModuleResult]) -> Vec<(String, ModuleStatus)> {
        r.iter().map(|m| (m.name.clone(), m.status)).collect()
    }

    /// apt-sources fails: packages and puppet (which need it) are not run, with the reason;
    /// debconf (which does not) still runs; only the modules that succeeded have markers.
    #[test]
    fn a_failed_module_stops_only_the_modules_that_need_it() {
        let (d, ctx) = root();
        let ud = schemas::userdata::parse("ud", UD.as_bytes())
            .unwrap()
            .config;
        let runner = FailOn("update");
        let (planned, _) = plan_all(&ud, &ctx, &runner, &|_| false);
        assert!(planned.iter().all(|p| p.actions.is_ok()));
        let (res, _) = execute_planned(planned, &ctx, &runner, &crate::action::NoKeys);
        use ModuleStatus::*;
        let want = [
            ("apt-conf", Done),
            ("apt-sources", Failed),
            ("debconf", Done),
            ("packages", NotRun),
            ("puppet", NotRun),
        ];
        assert_eq!(
            statuses(&res),
            want.map(|(n, s)| (n.to_owned(), s)).to_vec()
        );
        let puppet = res.iter().find(|m| m.name == "puppet").unwrap();
        assert!(
            puppet.reason.as_deref().unwrap().contains("apt-sources"),
            "{puppet:?}"
        );
        let markers = d.path().join("var/lib/bootcfg/instances/i-0abc");
        for (name, status) in want {
            assert_eq!(
                markers.join(format!("{name}.done")).exists(),
                status == Done,
                "{name}"
            );
        }
        assert!(!d.path().join("etc/puppet/puppet.conf").exists());
    }

    /// Every module is planned before anything runs: an error that depends on the root (here
    /// `ppa:` on Debian) in one module and another in a later module are both reported, and
    /// nothing is planned to run after them.
    #[test]
    fn every_module_is_planned_and_every_failure_reported() {
        let (_d, ctx) = root();
        let ud = schemas::userdata::parse(
            "ud",
            b"#cloud-config\napt:\n  sources:\n    p:\n      source: ppa:owner/name\npuppet:\n  install: false\n  instance_identity: true\n",
        )
        .unwrap()
        .config;
        let (planned, _) = plan_all(&ud, &ctx, &FailOn("-"), &|_| false);
        let failed: Vec<&str> = planned
            .iter()
            .filter(|p| p.actions.is_err())
            .map(|p| p.name)
            .collect();
        assert_eq!(
            failed,
            ["apt-sources", "puppet"],
            "{:?}",
            planned.iter().map(|p| &p.actions).collect::<Vec<_>>()
        );
    }

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
