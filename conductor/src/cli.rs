//! Command-line arguments.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  conductor launch -c conductor.yaml --count 3
  conductor launch -c conductor.yaml --dry-run
  conductor register -c conductor.yaml --output json
  conductor list -c conductor.yaml
  conductor revoke -c conductor.yaml 0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11
  conductor prune -c conductor.yaml
  conductor reap -c conductor.yaml --dry-run
  conductor group create -c conductor.yaml web --image ami-0123456789abcdef0 --asg web-asg --max-members 20
  conductor group user-data -c conductor.yaml web > web-user-data.yaml

Exit codes:
  0  everything succeeded
  1  failed; nothing was launched or changed (or the command itself failed)
  2  bad usage or an invalid config file
  3  partial failure: some launches failed (see the result table)

AWS: the standard credential chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, ~/.aws, instance profile),
AWS_REGION, and AWS_ENDPOINT_URL for S3/EC2/STS-compatible endpoints. `launch` and `register` ask
sts:GetCallerIdentity for the account id unless `launch.instance_identity: false`.";

/// Launch EC2 instances that join Puppet by themselves: each gets a random certname and a
/// one-time secret in its user-data, registered (as a hash) where the signer looks.
#[derive(Debug, Parser)]
#[command(name = "conductor", version, after_help = EXAMPLES, max_term_width = 100)]
pub struct Cli {
    /// Output format of results (stdout); logs always go to stderr.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    pub output: Format,
    /// More logging on stderr (-v info, -vv debug); CONDUCTOR_LOG (or RUST_LOG) overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// AWS region (overrides `region:` in the config and AWS_REGION).
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// AWS named profile (overrides `profile:` in the config and AWS_PROFILE).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register and launch instances (registration first; undone if the launch fails).
    #[command(
        after_help = "Example:\n  conductor launch -c conductor.yaml --image ami-0123456789abcdef0 --count 10 --output json"
    )]
    Launch(LaunchArgs),
    /// Create registrations and print their user-data, for other launchers (Terraform, launch templates).
    ///
    /// With `launch.instance_identity` on (the default) each registration requires the AWS-signed
    /// instance identity document in the CSR and names the account (from sts:GetCallerIdentity),
    /// the region and the image (--image or `launch.image`; one is required), but no instance id,
    /// since the conductor does not launch the instance. That is a weaker binding than `launch`
    /// makes: the registration binds to the first valid identity document from this account,
    /// region and image whose pendingTime falls in the registration's lifetime; any instance
    /// launched from that image in that window, whose CSR also carries this registration's secret,
    /// could take it. Guard the user-data like a password and keep `registration_ttl` short.
    ///
    /// With `launch.instance_identity: false` the registration requires no proof at all: a CSR
    /// made anywhere that carries the secret gets the certificate.
    #[command(
        after_help = "Example:\n  conductor register -c conductor.yaml > user-data.yaml\n  conductor register -c conductor.yaml --count 5 --out-dir ./user-data"
    )]
    Register(RegisterArgs),
    /// Show registrations: state (pending, consumed, expired), whether the CSR must carry the
    /// instance identity proof (required, off, legacy), instance ids.
    #[command(after_help = "Example:\n  conductor list -c conductor.yaml --output json")]
    List(ConfigArg),
    /// Remove registrations, so the signer refuses their certnames.
    #[command(
        after_help = "Example:\n  conductor revoke -c conductor.yaml 0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11"
    )]
    Revoke(RevokeArgs),
    /// Remove expired registrations.
    #[command(after_help = "Example:\n  conductor prune -c conductor.yaml")]
    Prune(ConfigArg),
    /// Retire the registrations and group members whose instances EC2 reports terminated, so
    /// the signer refuses their certnames and `signer sweep` revokes their certificates.
    ///
    /// Asks EC2 (DescribeInstances, throttling retried) about every registration with an instance
    /// id and every group member first; if any call fails, nothing is retired. Only `terminated`
    /// is retired; pending, running, stopping, stopped and shutting-down instances are kept. An
    /// instance EC2 does not report at all is `missing`: kept, unless --retire-missing.
    #[command(after_help = REAP_HELP)]
    Reap(ReapArgs),
    /// Enrollment groups: instances launched by Auto Scaling or a launch template, which carry
    /// no per-instance secret, join Puppet with their AWS-signed identity document.
    #[command(subcommand, after_help = GROUP_HELP)]
    Group(GroupCommand),
}

const REAP_HELP: &str = "\
Examples:
  conductor reap -c conductor.yaml --dry-run
  conductor reap -c conductor.yaml --output json

Regions: a registration's is the one its identity binding names, else the configured one
(--region, `region:`, AWS_REGION); a member's is its group's. Each retirement is logged as an
`audit` line on stderr. Exit codes: 0 done, 1 an EC2 call failed (nothing was retired), 3 some
retirements could not be written (the others were).";

const GROUP_HELP: &str = "\
Examples:
  conductor group create -c conductor.yaml web --asg web-asg --max-members 20
  conductor group user-data -c conductor.yaml web > web-user-data.yaml
  conductor group show -c conductor.yaml web --output json
  conductor group revoke -c conductor.yaml web

A member's certname is `<group>-<instance-id>`; the signer needs `policy.groups.enabled: true`.";

const GROUP_CREATE_HELP: &str = "\
Example:
  conductor group create -c conductor.yaml web --image ami-0123456789abcdef0 \\
      --launch-template lt-0123456789abcdef0 --asg web-asg --max-members 20 --ttl 90d \\
      --extension pp_role=web --output json

The account is the caller's (sts:GetCallerIdentity) and the region the SDK's (--region,
`region:`, AWS_REGION). The signer signs a member only when its CSR carries an identity document
signed by AWS for that account and region, launched from one of the images after the group was
created, under the certname `<group>-<instance-id>`, and only once per instance; it needs
`policy.groups.enabled: true` in signer.yaml. A group is never changed after it is created
(except `revoke`) and its name is never reused.";

/// `conductor group …`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create an enrollment group (create-only: a name is never reused).
    #[command(after_help = GROUP_CREATE_HELP)]
    Create(GroupCreateArgs),
    /// List enrollment groups: state, members, images, expiry.
    #[command(after_help = "Example:\n  conductor group list -c conductor.yaml --output json")]
    List(ConfigArg),
    /// Show one enrollment group and its members (slot, instance id, certname, when, by whom).
    #[command(after_help = "Example:\n  conductor group show -c conductor.yaml web --output json")]
    Show(GroupNameArgs),
    /// Revoke an enrollment group: the signer refuses every member that has not enrolled yet.
    /// Certificates already issued stay valid; revoke them on the CA (`puppetserver ca revoke`).
    #[command(after_help = "Example:\n  conductor group revoke -c conductor.yaml web")]
    Revoke(GroupNameArgs),
    /// Print the cloud-config for the group's launch template: certname `<group>-%i`, the group
    /// attribute and `puppet.instance_identity: true`, and no secret (it can be read by anyone
    /// who can read the launch template, and that is fine).
    #[command(
        after_help = "Example:\n  conductor group user-data -c conductor.yaml web > web-user-data.yaml\n  conductor group user-data -c conductor.yaml web --output json"
    )]
    UserData(GroupNameArgs),
}

#[derive(Debug, Args)]
pub struct GroupNameArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The group's name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct GroupCreateArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The group's name: 1-40 lowercase letters, digits and `-`, starting with a letter. Members'
    /// certnames are `<NAME>-<instance-id>`.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// An AMI members may be launched from (repeat for several). Default: `launch.image`.
    #[arg(long = "image", value_name = "AMI")]
    pub images: Vec<String>,
    /// The launch template members are launched from (`lt-…`).
    #[arg(long, value_name = "ID")]
    pub launch_template: Option<String>,
    /// The Auto Scaling group members belong to.
    #[arg(long, value_name = "NAME")]
    pub asg: Option<String>,
    /// How many instances may ever join (slots are never given back).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_members: u32,
    /// How long instances may join: `30d`, `12h` (at most 365d).
    #[arg(long, default_value = "30d", value_name = "DURATION")]
    pub ttl: String,
    /// An extension members get, `NAME=VALUE` (repeat; replaces `puppet.extensions` of the
    /// config, which is the default).
    #[arg(long = "extension", value_name = "NAME=VALUE")]
    pub extensions: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The conductor config (see examples/conductor.yaml).
    #[arg(
        short = 'c',
        long = "config",
        env = "CONDUCTOR_CONFIG",
        value_name = "FILE"
    )]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct LaunchArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// AMI to launch (overrides `launch.image`).
    #[arg(long, value_name = "AMI")]
    pub image: Option<String>,
    /// Number of instances.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub count: u32,
    /// Print the user-data (secret redacted) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// AMI the instances will be launched from (overrides `launch.image`); the registrations bind
    /// to it. Required, here or in the config, while `launch.instance_identity` is on.
    #[arg(long, value_name = "AMI")]
    pub image: Option<String>,
    /// Number of registrations.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub count: u32,
    /// Write each user-data to DIR/CERTNAME.yaml (mode 0600) instead of stdout; needed for
    /// --count > 1 with text output.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Certnames to revoke.
    #[arg(required = true, value_name = "CERTNAME")]
    pub certnames: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ReapArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Ask EC2 and show what would be retired (`would-retire`); write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also retire records whose instance EC2 does not report at all (EC2 forgets terminated
    /// instances after about an hour), but only records older than 2 hours whose account is the
    /// caller's (sts:GetCallerIdentity).
    #[arg(long)]
    pub retire_missing: bool,
    /// Instance ids per DescribeInstances call (tests).
    #[arg(long, hide = true, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub batch_size: u32,
    /// Attempts per DescribeInstances call, the first included (tests).
    #[arg(long, hide = true, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub max_attempts: u32,
    /// Timeout of each DescribeInstances attempt, in milliseconds (tests).
    #[arg(long, hide = true, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub attempt_timeout_ms: u64,
}
