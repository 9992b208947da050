//! conductor: see `conductor --help` and the library docs.
fn main() -> std::process::ExitCode {
    conductor::main_entry()
}
