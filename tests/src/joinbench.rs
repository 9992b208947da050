//! Benchmark, not a test (`bench/join.sh` runs it through the ignored test in
//! `tests/tests/bench_join.rs`): a full first boot and the time to join, bootcfg against Debian's
//! cloud-init 22.4, with the same signer hook, the same user-data and the same local mirror.
//!
//! * **The image:** a copy of `cloudinit.tar` (Debian 12 with cloud-init, Recommends included),
//!   set to use only the local mirror (its `sources.list` emptied and its package lists removed,
//!   outside the timing). Both tools boot identical copies.
//! * **The local mirror:** the real Debian packages the boot installs (`puppet-agent`, `jq` and
//!   everything they pull in, Recommends included, downloaded once from the Debian archive before
//!   the timing) in a signed repo on 127.0.0.1 ([`AptRepo::start_with`]); the user-data adds it
//!   with its key.
//! * **The CA:** a real Puppet Server 7.9 whose `autosign` is `signer autosign` (the hook), the
//!   registry on moto S3; `conductor launch` registers every instance and stores its user-data in
//!   EC2; the harness's stand-in for AWS signs each instance's identity document.
//! * **A run:** bootcfg reads the instance's user-data and identity document from the fake IMDSv2
//!   (`bootcfg run --root`); cloud-init runs its four boot stages from a NoCloud seed holding the
//!   same user-data. cloud-init cannot fetch the identity document nor expand `%i` in
//!   `csr_attributes`, so its seed carries both, filled in before the timing: it does less work.
//!   Each run: apt sources and key, `apt-get update` from the mirror, `jq`, `puppet-agent`,
//!   puppet.conf, CA certificate, `csr_attributes.yaml`, `puppet agent --onetime --no-daemonize`
//!   (key, CSR, the hook signs during submission, certificate, catalog applied).
//! * **Measured:** the wall time of the whole boot, and from the same start, the moment
//!   `puppet-agent` was installed, the signed certificate written and the first catalog applied
//!   (file modification times in the root). Rounds interleave the two tools, the order alternating.
//!   Every run is checked: certificate, catalog file, no Puppet failure, packages, the hook's
//!   `approved` audit line.

use crate::aptrepo::{AptRepo, SUITE};
use crate::chroot;
use crate::iid::TestAws;
use crate::imds::FakeImds;
use crate::moto::Moto;
use crate::rootfs::{self, Root};
use crate::scenario::{self, CHALLENGE_OID, Debian, MANAGED_FILE};
use anyhow::{Context, Result, ensure};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Packages the boot installs besides `puppet-agent` (which the puppet module installs).
const PACKAGES: &[&str] = &["jq"];
/// The Puppet run both tools make (`--test` would exit 2 on changes, which cloud-init 22.4 counts
/// as a failed module).
const EXEC_ARGS: &[&str] = &[
    "--onetime",
    "--no-daemonize",
    "--no-splay",
    "--no-usecacheonfailure",
    "--waitforcert",
    "0",
];
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// What to compare.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runs of each tool (interleaved).
    pub rounds: usize,
    pub bootcfg: PathBuf,
    /// The signer binary the hook runs.
    pub signer: PathBuf,
    pub conductor: PathBuf,
}

impl Options {
    /// `JOIN_ROUNDS` (10), `BENCH_BOOTCFG` and `BENCH_SIGNER` (default: the workspace's binaries of
    /// this profile), the workspace's conductor.
    pub fn from_env() -> Result<Options> {
        let bin = |var: &str, name: &str| -> Result<PathBuf> {
            match std::env::var_os(var) {
                Some(p) => Ok(PathBuf::from(p)),
                None => crate::bins::bin(name),
            }
        };
        let rounds = match std::env::var("JOIN_ROUNDS") {
            Ok(v) => v
                .parse()
                .with_context(|| format!("JOIN_ROUNDS={v:?} is not a number"))?,
            Err(_) => 10,
        };
        Ok(Options {
            rounds,
            bootcfg: bin("BENCH_BOOTCFG", "bootcfg")?,
            signer: bin("BENCH_SIGNER", "signer")?,
            conductor: crate::bins::bin("conductor")?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tool {
    Bootcfg,
    CloudInit,
}

/// One boot, seconds from its start.
#[derive(Debug, Clone)]
struct Boot {
    wall: f64,
    installed: f64,
    signed: f64,
    applied: f64,
    new_packages: usize,
}

/// Runs the benchmark; returns its report (plain text, the last line JSON).
pub fn run(opts: &Options) -> Result<String> {
    ensure!(opts.rounds >= 1, "JOIN_ROUNDS must be at least 1");
    rootfs::require_root();
    let tmp = rootfs::test_home().join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let work_dir = tempfile::Builder::new()
        .prefix("bench-join-")
        .tempdir_in(&tmp)?;
    let work = work_dir.path();
    let t_setup = Instant::now();

    // The image and the mirror (not timed).
    eprintln!("[join] image: cloudinit.tar; downloading the boot's packages for the local mirror");
    let image = Root::fresh("cloudinit");
    let debs = download(image.path(), &work.join("debs"))?;
    use_only_the_mirror(image.path())?;
    let base_packages = image.dpkg_installed();
    let repo = AptRepo::start_with(&debs);
    eprintln!(
        "[join] local mirror {} with {} packages",
        repo.url(),
        debs.len()
    );

    // The CA host and EC2.
    let moto = Moto::start().context("starting moto")?;
    moto.create_bucket(scenario::REGISTRY_BUCKET)?;
    let aws = TestAws::generate(crate::moto::REGION);
    let bundle = work.join("aws-test-rsa2048.pem");
    scenario::write_file(&bundle, &aws.bundle_pem(), 0o644)?;
    let (wrapper, yaml, audit) = (
        work.join("autosign"),
        work.join("signer.yaml"),
        work.join("audit.jsonl"),
    );
    let server =
        scenario::start_autosign_server(&wrapper, &opts.signer, &yaml, &moto, Debian::D12)?;
    scenario::write_file(
        &yaml,
        &scenario::signer_yaml(&server, &bundle, &audit, &work.join("signer.lock")),
        0o640,
    )?;
    scenario::write_site_pp(&server)?;

    // Every instance registered and launched up front.
    let template = work.join("user-data-template.yaml");
    scenario::write_file(&template, &user_data_template(&repo), 0o644)?;
    let conductor_yaml = work.join("conductor.yaml");
    scenario::write_file(
        &conductor_yaml,
        &conductor_yaml_text(&server, &template),
        0o644,
    )?;
    let conductor = |args: &[&str]| -> Result<String> {
        let out = moto
            .command(&opts.conductor)
            .args(args)
            .arg("--config")
            .arg(&conductor_yaml)
            .stdin(std::process::Stdio::null())
            .output()
            .context("running conductor")?;
        ensure!(
            out.status.success(),
            "conductor {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let count = (2 * opts.rounds).to_string();
    conductor(&["launch", "--count", &count])?;
    let listed: Value = serde_json::from_str(&conductor(&["list", "--output", "json"])?)?;
    let mut instances: Vec<(String, String)> = listed
        .as_array()
        .context("conductor list --output json is not an array")?
        .iter()
        .map(|e| {
            Ok((
                e["certname"].as_str().context("certname")?.to_owned(),
                e["instance_id"].as_str().context("instance_id")?.to_owned(),
            ))
        })
        .collect::<Result<_>>()?;
    ensure!(
        instances.len() == 2 * opts.rounds,
        "launched {count}, conductor lists {}",
        instances.len()
    );
    let imds = FakeImds::start(None);
    imds.set_region(crate::moto::REGION);
    let setup_s = t_setup.elapsed().as_secs_f64();

    let load_start = loadavg();
    let (mut b, mut c) = (Vec::new(), Vec::new());
    for round in 0..opts.rounds {
        let order = if round % 2 == 0 {
            [Tool::Bootcfg, Tool::CloudInit]
        } else {
            [Tool::CloudInit, Tool::Bootcfg]
        };
        for tool in order {
            let (certname, instance_id) = instances.pop().context("out of instances")?;
            let ud = scenario::instance_user_data(&moto, &instance_id)?;
            let (doc, sig) = scenario::identity_of(&aws, &instance_id);
            let root = Root::copy_of(image.path(), "join");
            let boot = match tool {
                Tool::Bootcfg => {
                    imds.set_user_data(Some(&ud));
                    imds.set_instance_id(&instance_id);
                    imds.set_local_hostname(&format!("ip-10-9-0-{round}.ec2.internal"));
                    imds.set_identity(&doc, &sig);
                    boot_bootcfg(opts, &root, &imds.url)?
                }
                Tool::CloudInit => {
                    let seeded = cloud_init_user_data(&ud, &instance_id, &sig)?;
                    boot_cloud_init(&root, &seeded, &instance_id, round)?
                }
            };
            let boot = check(&root, tool, &certname, &audit, &base_packages, boot)?;
            eprintln!(
                "[join] round {}/{}: {tool:?} {:.1} s (installed {:.1}, signed {:.1}, applied {:.1}; {} new packages)",
                round + 1,
                opts.rounds,
                boot.wall,
                boot.installed,
                boot.signed,
                boot.applied,
                boot.new_packages
            );
            match tool {
                Tool::Bootcfg => b.push(boot),
                Tool::CloudInit => c.push(boot),
            }
        }
    }
    let load_end = loadavg();
    Ok(report(
        opts,
        &b,
        &c,
        &load_start,
        &load_end,
        setup_s,
        &server.version,
        debs.len(),
    ))
}

/// Downloads what the boot installs into `image` (Debian's archive, as the image's sources
/// say), moves the .debs to `to` and empties apt's cache. Returns the .debs.
fn download(image: &Path, to: &Path) -> Result<Vec<PathBuf>> {
    let mut argv = vec![
        "apt-get",
        "install",
        "--download-only",
        "-y",
        "-q",
        "puppet-agent",
    ];
    argv.extend_from_slice(PACKAGES);
    let out = chroot::run(chroot::in_root(image, &argv), RUN_TIMEOUT);
    ensure!(
        out.status.success(),
        "downloading the boot's packages failed (is Debian's archive reachable? {}):\n{}",
        rootfs::SETUP_HINT,
        out.report()
    );
    std::fs::create_dir_all(to)?;
    let cache = image.join("var/cache/apt/archives");
    let mut debs = Vec::new();
    for e in std::fs::read_dir(&cache)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "deb") {
            let dest = to.join(p.file_name().context("file name")?);
            std::fs::rename(&p, &dest)?;
            debs.push(dest);
        }
    }
    ensure!(
        debs.len() > 10,
        "only {} packages downloaded for puppet-agent {PACKAGES:?}: is puppet-agent already in the image?",
        debs.len()
    );
    debs.sort();
    Ok(debs)
}

/// The image as an operator would build one for a private network: no package source but what
/// the user-data adds, and no package lists yet.
fn use_only_the_mirror(image: &Path) -> Result<()> {
    std::fs::write(
        image.join("etc/apt/sources.list"),
        "# this image takes its packages from the mirror its user-data adds\n",
    )?;
    for dir in ["etc/apt/sources.list.d", "var/lib/apt/lists"] {
        for e in std::fs::read_dir(image.join(dir))? {
            let p = e?.path();
            if p.is_file() {
                std::fs::remove_file(&p)?;
            }
        }
    }
    Ok(())
}

/// The cloud-config both tools get (the conductor adds the certname, secret, server and CA).
fn user_data_template(repo: &AptRepo) -> String {
    let mut t = String::from(
        "#cloud-config\napt:\n  preserve_sources_list: true\n  sources:\n    bench-mirror:\n",
    );
    let _ = writeln!(t, "      source: \"deb {} {SUITE} main\"", repo.url());
    t.push_str("      key: |\n");
    for l in repo.armored_key().lines() {
        let _ = writeln!(t, "        {l}");
    }
    t.push_str("package_update: true\npackages:\n");
    for p in PACKAGES {
        let _ = writeln!(t, "  - {p}");
    }
    t.push_str("puppet:\n  install: true\n  package_name: puppet-agent\n  start_service: false\n  exec: true\n  exec_args:\n");
    for a in EXEC_ARGS {
        let _ = writeln!(t, "    - \"{a}\"");
    }
    t.push_str("  conf:\n    main:\n      http_keepalive_timeout: 0\n      keylength: 2048\n");
    t
}

fn conductor_yaml_text(server: &crate::puppet::PuppetServer, template: &Path) -> String {
    format!(
        "registry: s3://{}/reg\nregistration_ttl: 3h\nlaunch:\n  image: {}\n  instance_type: t3.micro\npuppet:\n  server: localhost\n  port: {}\n  ca_cert_file: {}\nuser_data_template_file: {}\n",
        scenario::REGISTRY_BUCKET,
        crate::moto::AMI,
        server.port,
        server.ca_bundle.display(),
        template.display()
    )
}

/// The instance's user-data as cloud-init's seed: `%i` filled in and the identity document's
/// signature added as the CSR attribute bootcfg writes itself.
fn cloud_init_user_data(ud: &[u8], instance_id: &str, rsa2048: &str) -> Result<String> {
    let text = String::from_utf8(ud.to_vec())?.replace("%i", instance_id);
    let mut v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)?;
    let attrs = v["puppet"]["csr_attributes"]["custom_attributes"]
        .as_mapping_mut()
        .context("the conductor's user-data has no puppet.csr_attributes.custom_attributes")?;
    ensure!(
        attrs.contains_key(CHALLENGE_OID),
        "no challengePassword in the user-data"
    );
    attrs.insert(
        schemas::oids::INSTANCE_IDENTITY.into(),
        rsa2048.split_whitespace().collect::<String>().into(),
    );
    Ok(format!("#cloud-config\n{}", serde_yaml_ng::to_string(&v)?))
}

/// bootcfg's boot: `bootcfg run --root ROOT --imds-url URL` in the root's namespaces.
fn boot_bootcfg(opts: &Options, root: &Root, imds_url: &str) -> Result<(SystemTime, f64)> {
    let r = root.path().display().to_string();
    let b = opts.bootcfg.display().to_string();
    let argv = [
        b.as_str(),
        "run",
        "--root",
        r.as_str(),
        "--imds-url",
        imds_url,
    ];
    let cmd = chroot::host_in_ns(root.path(), &["BOOTCFG_LOG=info".to_owned()], &argv);
    let (start, wall, out) = timed(cmd);
    ensure!(
        out.status.success(),
        "bootcfg run failed:\n{}",
        out.report()
    );
    Ok((start, wall))
}

/// Runs one boot under the heavy lock: (its start, its wall seconds, its output).
fn timed(cmd: std::process::Command) -> (SystemTime, f64, chroot::Output) {
    let _heavy = chroot::heavy_lock();
    let (start, t) = (SystemTime::now(), Instant::now());
    let out = chroot::run(cmd, RUN_TIMEOUT);
    (start, t.elapsed().as_secs_f64(), out)
}

/// cloud-init's boot: its four stages in the root, from the NoCloud seed.
fn boot_cloud_init(
    root: &Root,
    user_data: &str,
    instance_id: &str,
    round: usize,
) -> Result<(SystemTime, f64)> {
    root.write("var/lib/cloud/seed/nocloud/user-data", user_data, 0o600);
    root.write(
        "var/lib/cloud/seed/nocloud/meta-data",
        format!("instance-id: {instance_id}\nlocal-hostname: ip-10-9-1-{round}\n"),
        0o644,
    );
    let cmd = chroot::in_root(
        root.path(),
        &[
            "sh",
            "-c",
            "cloud-init init --local && cloud-init init && cloud-init modules --mode config && cloud-init modules --mode final",
        ],
    );
    let (start, wall, out) = timed(cmd);
    ensure!(
        out.status.success(),
        "cloud-init's stages failed:\n{}\n{}",
        out.report(),
        root.read_string("var/log/cloud-init.log")
            .lines()
            .filter(|l| l.contains("WARNING") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let result = root.yaml("var/lib/cloud/data/result.json");
    ensure!(
        result["v1"]["errors"] == serde_json::json!([]),
        "cloud-init reported errors: {result}"
    );
    Ok((start, wall))
}

/// Checks that the boot did all the work and turns its marks into seconds from its start.
fn check(
    root: &Root,
    tool: Tool,
    certname: &str,
    audit: &Path,
    base: &std::collections::BTreeMap<String, String>,
    (start, wall): (SystemTime, f64),
) -> Result<Boot> {
    let since = |rel: &str| -> Result<f64> {
        let m = std::fs::metadata(root.join(rel))
            .with_context(|| format!("{tool:?} left no {rel}"))?
            .modified()?;
        Ok(m.duration_since(start).unwrap_or_default().as_secs_f64())
    };
    let installed = root.dpkg_installed();
    for p in PACKAGES.iter().chain(&["puppet-agent"]) {
        ensure!(installed.contains_key(*p), "{tool:?} did not install {p}");
    }
    let lists: Vec<String> = root.list_dir("var/lib/apt/lists");
    ensure!(
        lists.iter().all(|l| !l.contains("debian.org")),
        "{tool:?} fetched package lists from outside the mirror: {lists:?}"
    );
    let managed = root.read_string(MANAGED_FILE);
    ensure!(
        managed == format!("managed by Puppet for {certname}\n"),
        "{tool:?}: the catalog's file holds {managed:?}"
    );
    let summary = root.yaml("var/cache/puppet/public/last_run_summary.yaml");
    ensure!(
        summary["resources"]["failed"] == 0 && summary["events"]["failure"] == 0,
        "{tool:?}: the Puppet run had failures: {summary}"
    );
    let approved = std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|v| v["certname"] == certname && v["decision"] == "approved" && v["mode"] == "hook");
    ensure!(
        approved,
        "{tool:?}: no `approved` hook audit line for {certname}"
    );
    Ok(Boot {
        wall,
        installed: since("var/lib/dpkg/info/puppet-agent.list")?,
        signed: since(&format!("var/lib/puppet/ssl/certs/{certname}.pem"))?,
        applied: since("var/cache/puppet/public/last_run_summary.yaml")?,
        new_packages: installed.keys().filter(|k| !base.contains_key(*k)).count(),
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn mmm(xs: impl Iterator<Item = f64>) -> (f64, f64, f64) {
    let v: Vec<f64> = xs.collect();
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, median(v), max)
}

#[allow(clippy::too_many_arguments)]
fn report(
    opts: &Options,
    b: &[Boot],
    c: &[Boot],
    load_start: &str,
    load_end: &str,
    setup_s: f64,
    server_version: &str,
    debs: usize,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} interleaved rounds (order alternating), one boot of each tool a round, each on its own instance (conductor launch), fresh copies of the same image; local mirror of {debs} Debian packages on 127.0.0.1; Puppet Server {server_version}, hook: signer autosign ({}); load average (1, 5, 15 min) start {load_start}, end {load_end}; set-up (not timed) {setup_s:.0} s",
        opts.rounds,
        opts.signer.display()
    );
    let _ = writeln!(s, "seconds from the start of the boot, min / median / max:");
    let _ = writeln!(
        s,
        "                          puppet-agent installed   certificate signed        catalog applied (joined)   whole boot (process end)   new packages"
    );
    let mut medians = Vec::new();
    for (name, rows) in [("bootcfg run", b), ("cloud-init 22.4 (4 stages)", c)] {
        let cols = [
            mmm(rows.iter().map(|r| r.installed)),
            mmm(rows.iter().map(|r| r.signed)),
            mmm(rows.iter().map(|r| r.applied)),
            mmm(rows.iter().map(|r| r.wall)),
        ];
        let _ = write!(s, "{name:26}");
        for (lo, mid, hi) in cols {
            let _ = write!(s, "{:>26}", format!("{lo:.1} / {mid:.1} / {hi:.1}"));
        }
        let pk = median(rows.iter().map(|r| r.new_packages as f64).collect());
        let _ = writeln!(s, "   {pk:.0}");
        medians.push(cols.map(|(_, m, _)| m));
    }
    let (mb, mc) = (medians[0], medians[1]);
    let _ = writeln!(
        s,
        "ratio (cloud-init/bootcfg), full first boot (whole process, of medians): {:.2}x",
        mc[3] / mb[3]
    );
    let _ = writeln!(
        s,
        "ratio (cloud-init/bootcfg), time to join (first catalog applied, of medians): {:.2}x; certificate signed {:.2}x; puppet-agent installed {:.2}x",
        mc[2] / mb[2],
        mc[1] / mb[1],
        mc[0] / mb[0]
    );
    let _ = writeln!(
        s,
        "(the same packages from the same mirror; cloud-init's seed carries the identity proof and the instance id the hook needs, which bootcfg fetches from IMDSv2 itself; both run dpkg with --force-unsafe-io; cloud-init 22.4 also runs apt-get under eatmydata, which the image has (no fsync at all), while bootcfg syncs the filesystem once after each apt command)"
    );
    let _ = writeln!(
        s,
        "{}",
        serde_json::json!({
            "bootcfg_join_s": mb[2], "cloudinit_join_s": mc[2],
            "bootcfg_boot_s": mb[3], "cloudinit_boot_s": mc[3],
        })
    );
    s
}
