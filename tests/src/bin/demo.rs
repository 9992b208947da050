//! The walkthrough behind `./demo.sh`: the end-to-end scenario (`testkit::scenario`), narrated.
//! Each step says what it does and shows the evidence. Needs root, `sudo tests/setup.sh` and
//! `cargo build --workspace --bins`; `demo.sh` does all three.
//!
//! Usage: demo [--keep]    (--keep: leave the work directory with configs, audit log and roots)

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "Usage: demo [--keep]\n\nRuns the whole bootcfg flow on this machine (moto, Puppet Server, conductor, bootcfg in a\nDebian root, signer) and shows the evidence of each step. Needs root and `sudo tests/setup.sh`.\n\nExample:\n  sudo ./demo.sh"
        );
        return;
    }
    let keep = args.iter().any(|a| a == "--keep");
    if let Some(bad) = args.iter().find(|a| *a != "--keep") {
        eprintln!("demo: unknown argument {bad:?}; usage: demo [--keep]");
        std::process::exit(2);
    }
    let t0 = Instant::now();
    match testkit::scenario::run(&testkit::scenario::Options {
        narrate: true,
        keep,
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
