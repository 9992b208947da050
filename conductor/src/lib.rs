//! conductor: launches EC2 instances that join Puppet by themselves.
//!
//! For each instance: a random UUID certname and a one-time secret; the registration (the
//! secret's SHA-256, never the secret) is written **first**, create-only; then `RunInstances`
//! with user-data carrying the secret; then the instance id is recorded in the registration with
//! a compare-and-swap. A failed launch removes its registration, and an instance whose
//! registration cannot be completed is terminated, so neither is left behind alone.
//!
//! With `launch.instance_identity` on (the default) each registration is created already bound
//! to the account (STS `GetCallerIdentity`, asked once per run before the first registration),
//! region and image, and the user-data makes the agent put the AWS-signed instance identity
//! document into its CSR; an instance EC2 reports in another account is terminated.
//!
//! Enrollment groups ([`group`]): `conductor group create` writes a group policy once; the
//! instances an Auto Scaling group or launch template starts carry `conductor group user-data`
//! (no secret) and prove who they are with their identity document alone.
//!
//! `conductor reap` ([`reap`]) retires the registrations and members whose instances EC2 reports
//! terminated; a running instance is never reaped.
//!
//! `main.rs` only calls [`main_entry`].

pub mod cli;
pub mod ec2;
pub mod group;
pub mod launch;
pub mod manage;
pub mod output;
pub mod reap;
pub mod render;
pub mod sts;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Command};
use schemas::conductor_config::ConductorConfig;
use schemas::registry::{Registry, RegistryOptions};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// Documented exit codes (also in `--help`).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const PARTIAL: u8 = 3;
}

/// An error the user fixes in the command line or the config file: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parse arguments, set up logging, run, and turn the result into an exit code.
pub fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("starting the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!("{e:#}");
            let code = if e.downcast_ref::<UsageError>().is_some() {
                exit::USAGE
            } else {
                exit::FAILED
            };
            ExitCode::from(code)
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // `reap`'s audit lines (target `audit`) are shown at every verbosity.
    schemas::logging::init("CONDUCTOR_LOG", &format!("{default},audit=info"));
}

/// Run one command; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let format = cli.output;
    match &cli.command {
        Command::Launch(args) => {
            let cfg = load_config(&args.config.config)?;
            launch::launch(&cfg, &cli, args, format).await
        }
        Command::Register(args) => {
            let cfg = load_config(&args.config.config)?;
            launch::register(&cfg, &cli, args, format).await
        }
        Command::List(args) => {
            let cfg = load_config(&args.config)?;
            manage::list(&open_registry(&cfg, &cli).await?, format).await
        }
        Command::Revoke(args) => {
            for name in &args.certnames {
                schemas::registration::check_certname(name)
                    .map_err(|e| UsageError(format!("revoke: {e}")))?;
            }
            let cfg = load_config(&args.config.config)?;
            manage::revoke(&open_registry(&cfg, &cli).await?, &args.certnames, format).await
        }
        Command::Prune(args) => {
            let cfg = load_config(&args.config)?;
            manage::prune(&open_registry(&cfg, &cli).await?, format).await
        }
        Command::Reap(args) => {
            let cfg = load_config(&args.config.config)?;
            reap::reap(&cfg, &cli, args, format).await
        }
        Command::Group(cmd) => group::run(&cli, cmd, format).await,
    }
}

pub(crate) fn load_config(path: &Path) -> anyhow::Result<ConductorConfig> {
    ConductorConfig::load(path).map_err(|d| UsageError(d.to_string()).into())
}

/// AWS settings: the command line wins over the config, which wins over the standard chain.
pub fn aws_options(cfg: &ConductorConfig, cli: &Cli) -> RegistryOptions {
    RegistryOptions {
        region: cli.region.clone().or_else(|| cfg.region.clone()),
        profile: cli.profile.clone().or_else(|| cfg.profile.clone()),
        endpoint_url: None,
    }
}

/// Open the registry and warn (on stderr) if it is exposed.
pub async fn open_registry(cfg: &ConductorConfig, cli: &Cli) -> anyhow::Result<Arc<dyn Registry>> {
    let registry: Arc<dyn Registry> =
        schemas::registry::open(&cfg.registry, &aws_options(cfg, cli))
            .await
            .map_err(|e| UsageError(format!("registry: {e}")))?
            .into();
    for warning in registry.exposure_warnings().await {
        tracing::warn!("{warning}");
    }
    Ok(registry)
}

/// `user@host`, recorded as who launched an instance.
pub fn launched_by() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// Check that the registry answers (bucket exists, credentials work) before anything is launched.
pub async fn preflight(registry: &dyn Registry) -> anyhow::Result<()> {
    let probe = render::new_certname();
    registry
        .get(&probe)
        .await
        .context("checking the registry before changing anything")?;
    Ok(())
}
