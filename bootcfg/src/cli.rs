//! The command table: one arm per subcommand, nothing else. Exit codes are documented in `--help`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

const AFTER_HELP: &str = "\
Examples:
  bootcfg validate examples/*.yaml
  bootcfg plan --root /mnt/image --user-data user-data.yaml --instance-id i-0123 --hostname web-1
  bootcfg run                       # at first boot, from EC2 IMDSv2 or the NoCloud seed

Exit codes: 0 success, 1 invalid input or a failed step, 2 usage error.";

#[derive(Debug, Parser)]
#[command(name = "bootcfg", version, about = "Configure a Debian machine at first boot from cloud-config user-data: apt, debconf, packages, Puppet", after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check user-data files without touching anything.
    Validate(crate::validate::ValidateArgs),
    /// Print the JSON Schema of the user-data bootcfg accepts (for yaml-language-server and editors).
    Schema(crate::validate::SchemaArgs),
    /// Boot mode: pick the datasource, apply once per instance, write a result file.
    Run(crate::agent::RunArgs),
    /// Show every file that would be written (with a diff) and every command that would run. Changes nothing.
    Plan(crate::agent::PlanArgs),
    /// Carry out the plan.
    Apply(crate::agent::ApplyArgs),
    /// Show the last run's result.
    Status(crate::agent::StatusArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code: u8 = match cli.command {
        Command::Validate(args) => crate::validate::validate(args),
        Command::Schema(args) => crate::validate::schema(args),
        Command::Run(args) => crate::agent::run(args),
        Command::Plan(args) => crate::agent::plan(args),
        Command::Apply(args) => crate::agent::apply(args),
        Command::Status(args) => crate::agent::status(args),
    };
    ExitCode::from(code)
}
