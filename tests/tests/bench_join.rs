//! Benchmark, not a test: `bench/join.sh` runs it (see `testkit::joinbench`). Ignored, so the test
//! command only builds it.

#[test]
#[ignore = "benchmark; run with bench/join.sh"]
fn bench_first_boot_and_time_to_join() {
    let opts = testkit::joinbench::Options::from_env().unwrap_or_else(|e| panic!("{e:#}"));
    let report = testkit::joinbench::run(&opts).unwrap_or_else(|e| panic!("{e:#}"));
    println!("\n== first boot and time to join (bootcfg vs cloud-init, same hook, same mirror)");
    print!("{report}");
}
