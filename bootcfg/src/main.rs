fn main() -> std::process::ExitCode {
    bootcfg::cli::main()
}
