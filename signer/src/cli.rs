//! Command line: `signer autosign CERTNAME` and `signer sweep`.

use crate::hook::exit;
use crate::sweep::Report;
use clap::{Parser, Subcommand, ValueEnum};
use schemas::signer_config::{SignerConfig, parse_duration};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  # Puppet Server policy executable (puppet.conf [server] autosign = /usr/local/sbin/bootcfg-autosign):
  #   #!/bin/sh
  #   exec /usr/bin/signer --config /etc/bootcfg/signer.yaml autosign -- \"$1\"
  signer --config /etc/bootcfg/signer.yaml autosign 0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11 < req.pem

  # cron, every minute: sign what the hook could not (CSRs that arrived before their registration)
  signer sweep --output json

  # systemd service: poll every 5 seconds
  signer sweep --watch --interval 5s

  # report what would be signed, sign nothing
  signer sweep --dry-run

Exit codes: 0 approved/ran, 1 rejected (autosign), 2 bad config or usage,
3 registry or CA unavailable (nothing signed), 4 autosign deadline ran out,
5 sweep: a certificate was issued for another CSR than the one checked (revoked: incident),
6 sweep: some pending entries could not be decided and were skipped (see `skipped`).";

/// Signs Puppet CSRs only for certnames the conductor registered, and only with the CSR proving
/// the registration's one-time secret. Anything else stays pending and is reported.
#[derive(Debug, Parser)]
#[command(name = "signer", version, after_help = EXAMPLES)]
pub struct Cli {
    /// The signer config (see examples/signer.yaml).
    #[arg(
        long,
        short,
        env = "SIGNER_CONFIG",
        default_value = "/etc/bootcfg/signer.yaml",
        global = true
    )]
    pub config: PathBuf,
    /// Output format of results on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Puppet's policy-based autosign executable: CSR PEM on stdin, exit 0 to sign.
    #[command(
        after_help = "Example:\n  signer autosign -- 0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11 < req.pem; echo $?\n\nThis help exits 1, a refusal: Puppet signs on exit 0, and a CSR may be named --help."
    )]
    Autosign {
        /// The certname Puppet asks about (its only argument to the executable).
        certname: String,
    },
    /// Decide every pending CSR through the CA API (or CLI) and sign the approved ones; revoke
    /// and remove the certificates of retired certnames (`conductor reap`).
    #[command(
        after_help = "Examples:\n  signer sweep --dry-run --output json\n  signer sweep --watch --interval 5s\n\nA retired certname (its instance terminated, see `conductor reap`) is never signed again; each\nsweep revokes its certificate, so the CRL lists the serial, and removes it and any request under\nthe name (audit decision `revoked`; `would_revoke` with --dry-run)."
    )]
    Sweep {
        /// Report decisions, sign nothing, consume nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep sweeping every --interval until stopped.
        #[arg(long)]
        watch: bool,
        /// Time between sweeps with --watch (`5s`, `1m`).
        #[arg(long, default_value = "5s", value_parser = parse_interval)]
        interval: Duration,
    },
    /// Validate the config file and print the resolved CA paths.
    #[command(after_help = "Example:\n  signer --config /etc/bootcfg/signer.yaml check-config")]
    CheckConfig,
    /// Write the man page and shell completions (used to build the Debian package); needs no
    /// config.
    #[command(hide = true)]
    Generate {
        /// Directory to write `signer.1`, `signer.bash`, `_signer` and `signer.fish` into.
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
    },
}

/// A command line clap did not turn into a command: help or version shown, or a usage error.
/// Puppet runs the autosign executable with the CSR's certname as its argument and signs on exit
/// 0, and a certname may start with `-`: help or version shown for an `autosign` command line is
/// therefore a refusal (exit 1), never 0. Anything else clap refuses is a usage error (exit 2).
fn parse_failure(e: &clap::Error, args: impl Iterator<Item = std::ffi::OsString>) -> ExitCode {
    use clap::error::ErrorKind;
    let _ = e.print();
    let shown = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    if !shown {
        return ExitCode::from(exit::CONFIG);
    }
    if args.into_iter().any(|a| a == "autosign") {
        eprintln!(
            "signer autosign: help or version shown instead of a decision: exit {} (refused; Puppet signs on 0)",
            exit::REJECTED
        );
        return ExitCode::from(exit::REJECTED);
    }
    ExitCode::SUCCESS
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

fn init_tracing(default: &str) {
    schemas::logging::init("SIGNER_LOG", default);
}

/// Entry point used by `main.rs`.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return parse_failure(&e, std::env::args_os().skip(1)),
    };
    if let Command::Generate { out_dir } = &cli.command {
        use clap::CommandFactory;
        return match schemas::clidocs::write(Cli::command(), "signer", out_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("signer generate: {e:#}");
                ExitCode::from(exit::CONFIG)
            }
        };
    }
    // The hook's stderr lands in the Puppet Server log at WARN: stay quiet unless asked.
    init_tracing(if matches!(cli.command, Command::Autosign { .. }) {
        "warn"
    } else {
        "info"
    });
    let cfg = match SignerConfig::load(&cli.config) {
        Ok(c) => c,
        Err(d) => {
            eprintln!("{d}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    // A bundle that does not load is a configuration error, found before any CSR is decided.
    let trust =
        match crate::identity::TrustedCerts::load(cfg.policy.identity.certificates.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!(
                    "{}: policy.identity.certificates: {e}",
                    cli.config.display()
                );
                return ExitCode::from(exit::CONFIG);
            }
        };
    match cli.command {
        Command::Autosign { certname } => ExitCode::from(crate::hook::run(&cfg, &trust, &certname)),
        Command::Sweep {
            dry_run,
            watch,
            interval,
        } => ExitCode::from(run_sweep(
            &cfg,
            cli.output,
            dry_run,
            watch.then_some(interval),
        )),
        Command::CheckConfig => match crate::ca::resolve(&cfg.ca, cfg.deadlines.ca) {
            Ok(p) => {
                println!(
                    "config {} is valid\nregistry: {}\nidentity: {} certificates ({}), accounts [{}]\nCA: {}\nclient cert: {}\nclient key: {}\nCA bundle: {}\nCSR dir: {}",
                    cli.config.display(),
                    cfg.registry,
                    trust.len(),
                    trust.source,
                    cfg.policy.identity.accounts.join(", "),
                    p.server_url,
                    p.client_cert.display(),
                    p.client_key.display(),
                    p.ca_bundle.display(),
                    p.csrdir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::from(exit::CONFIG)
            }
        },
        // handled above, before the config is read
        Command::Generate { .. } => ExitCode::SUCCESS,
    }
}

fn run_sweep(cfg: &SignerConfig, output: Output, dry_run: bool, watch: Option<Duration>) -> u8 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("starting the async runtime: {e}");
            return exit::UNAVAILABLE;
        }
    };
    rt.block_on(async {
        loop {
            let report = match crate::ca::resolve(&cfg.ca, cfg.deadlines.ca)
                .and_then(|paths| crate::ca::open(&cfg.ca, &paths, cfg.deadlines.ca))
            {
                Ok(ca) => crate::sweep::sweep_once(cfg, ca.as_ref(), dry_run).await,
                Err(e) => Report {
                    error: Some(format!("CA: {e:#}")),
                    ..Report::default()
                },
            };
            print_report(&report, output);
            let code = report.exit_code();
            let Some(every) = watch else { return code };
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!("installing the SIGTERM handler: {e}");
                        return exit::UNAVAILABLE;
                    }
                };
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = tokio::signal::ctrl_c() => return code,
                _ = term.recv() => return code,
            }
        }
    })
}

fn print_report(r: &Report, output: Output) {
    match output {
        Output::Json => println!("{}", serde_json::to_string(r).expect("a report serialises")),
        Output::Text => {
            if r.skipped_locked {
                println!("skipped: another sweep holds the lock");
                return;
            }
            for i in &r.items {
                let why = i
                    .reason
                    .as_deref()
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                println!(
                    "{:<10} {}{}",
                    format!("{:?}", i.decision).to_lowercase(),
                    i.certname,
                    why
                );
            }
            println!(
                "pending {}, signed {}, would sign {}, rejected {}, evicted {}, skipped {}, incidents {}, errors {}, retired revoked {}, would revoke {}",
                r.pending,
                r.signed,
                r.would_sign,
                r.rejected,
                r.evicted,
                r.skipped,
                r.incidents,
                r.errors,
                r.revoked,
                r.would_revoke
            );
        }
    }
    if let Some(e) = &r.error {
        // fatal for this sweep: through tracing, so journald records it at priority err
        tracing::error!("{e}; nothing more was signed in this run, the next run retries");
    }
    for i in r
        .items
        .iter()
        .filter(|i| i.decision == crate::audit::Outcome::Incident)
    {
        tracing::error!(
            certname = %i.certname,
            "SECURITY INCIDENT: {}",
            i.reason.as_deref().unwrap_or("")
        );
    }
}
