//! The walkthrough behind `./demo.sh`: the end-to-end scenario (`testkit::scenario`), narrated.
//! Each step says what it does and shows the evidence. Needs root, `sudo tests/setup.sh` and
//! `cargo build --workspace --bins`; `demo.sh` does all three.
//!
//! Usage: demo [--debian 12|13] [--keep]    (--keep: leave the work directory with configs, audit
//! log and roots; --debian: the instance's release, default 13)

use std::time::Instant;

const USAGE: &str = "usage: demo [--debian 12|13] [--keep]";

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut keep, mut debian) = (false, testkit::scenario::Debian::default());
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!(
                    "Usage: demo [--debian 12|13] [--keep]\n\nRuns the whole bootcfg flow on this machine (moto, Puppet Server, conductor, bootcfg in a\nDebian root, signer) and shows the evidence of each step. Needs root and `sudo tests/setup.sh`.\n\n  --debian 12|13  the instance's release: 13 (trixie, Puppet 8; the default, Debian's current\n                  stable release) or 12 (bookworm, Puppet 7)\n  --keep          keep the work directory (configs, audit log, roots) and print its path\n\nExample:\n  sudo ./demo.sh --debian 12"
                );
                return;
            }
            "--keep" => keep = true,
            "--debian" => {
                let v = args.next().unwrap_or_default();
                debian = testkit::scenario::Debian::parse(&v).unwrap_or_else(|| {
                    eprintln!("demo: --debian takes 12 or 13, not {v:?}; {USAGE}");
                    std::process::exit(2);
                });
            }
            bad => {
                eprintln!("demo: unknown argument {bad:?}; {USAGE}");
                std::process::exit(2);
            }
        }
    }
    let t0 = Instant::now();
    match testkit::scenario::run(&testkit::scenario::Options {
        narrate: true,
        keep,
        debian,
    }) {
        Ok(r) => {
            println!(
                "\nOK: {} joined Puppet with no human signing; {} attacks stayed unsigned. Scenario: {:.0} s (bootcfg run: {:.0} s).",
                r.certname,
                r.attacks.len(),
                t0.elapsed().as_secs_f64(),
                r.bootcfg_run.as_secs_f64()
            );
        }
        Err(e) => {
            eprintln!(
                "\ndemo FAILED after {:.0} s: {e:#}",
                t0.elapsed().as_secs_f64()
            );
            std::process::exit(1);
        }
    }
}
