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
    Run(crate::args::RunArgs),
    /// Show every file that would be written (with a diff) and every command that would run. Changes nothing.
    Plan(crate::args::PlanArgs),
    /// Carry out the plan.
    Apply(crate::args::ApplyArgs),
    /// Show the last run's result.
    Status(crate::args::StatusArgs),
    /// Write the man page and shell completions (used to build the Debian package).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Directory to write `bootcfg.1` and the completions (`bootcfg.bash`, `_bootcfg`, `bootcfg.fish`) into.
    #[arg(long, value_name = "DIR")]
    pub out_dir: std::path::PathBuf,
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
        Command::Generate(args) => match generate(&args) {
            Ok(()) => crate::exit::OK,
            Err(e) => {
                eprintln!("bootcfg generate: {e:#}");
                crate::exit::FAILED
            }
        },
    };
    ExitCode::from(code)
}

/// The man page and completions, from the same clap definitions `--help` uses.
fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    use clap::CommandFactory;
    schemas::clidocs::write(Cli::command(), "bootcfg", &args.out_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every subcommand's help fits in 80 columns, as a terminal shows it.
    #[test]
    fn help_fits_80_columns() {
        let mut cmd = Cli::command().term_width(80);
        let mut names = vec![None];
        names.extend(cmd.get_subcommands().map(|s| Some(s.get_name().to_owned())));
        for name in names {
            let help = match &name {
                None => cmd.render_long_help().to_string(),
                Some(n) => cmd
                    .find_subcommand_mut(n)
                    .unwrap()
                    .render_long_help()
                    .to_string(),
            };
            for line in help.lines() {
                assert!(
                    line.chars().count() <= 80,
                    "{name:?}: help line over 80 columns: {line:?}"
                );
            }
        }
    }
}
