//! The arguments of `run`, `plan`, `apply` and `status`, with their help texts and examples.

use std::path::PathBuf;

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
