//! signer: thin entry point; the logic is in the library.
fn main() -> std::process::ExitCode {
    signer::cli::main()
}
