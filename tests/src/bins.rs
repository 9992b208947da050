//! The workspace binaries under test (`bootcfg`, `conductor`, `signer`), found next to the running
//! executable: a test binary lives in `target/<profile>/deps/`, a `[[bin]]` of this crate (the demo)
//! in `target/<profile>/`, and the workspace binaries in `target/<profile>/`. Nothing is built here:
//! a missing binary is an error naming `cargo build --workspace`.

use anyhow::{Context, Result, ensure};
use std::path::PathBuf;

/// `target/<profile>/` of the running executable.
pub fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let mut dir = exe
        .parent()
        .context("the running executable has no parent directory")?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// The path of workspace binary `name` (`bootcfg`, `conductor`, `signer`), which must exist.
pub fn bin(name: &str) -> Result<PathBuf> {
    let dir = profile_dir()?;
    let path = dir.join(name);
    ensure!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` (same profile as this program: {}) first",
        path.display(),
        dir.display()
    );
    Ok(path)
}

/// Builds a workspace binary's Debian package with its own script (`<crate>/dist/build-deb.sh
/// BINARY OUT_DIR`, which prints the .deb's path) from the already built binary; panics with the
/// script's output when it fails. `crate_name` is the binary's name and its crate's directory.
pub fn build_deb(crate_name: &str, out: &std::path::Path) -> PathBuf {
    crate::rootfs::require_tool("dpkg-deb");
    let bin = bin(crate_name).unwrap_or_else(|e| panic!("{e:#}"));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_name)
        .join("dist/build-deb.sh");
    let o = std::process::Command::new(&script)
        .arg(&bin)
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        o.status.success(),
        "{} failed ({}):\n{}\n{}",
        script.display(),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    assert!(
        deb.is_file(),
        "{} printed {deb:?}, which is not a file",
        script.display()
    );
    deb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_dir_is_the_target_profile() {
        let dir = profile_dir().unwrap();
        assert!(dir.join("deps").is_dir(), "{} has no deps/", dir.display());
        let err = bin("no-such-binary-h6").unwrap_err().to_string();
        assert!(err.contains("cargo build --workspace"), "{err}");
    }
}
