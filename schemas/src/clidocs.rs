//! A tool's man page and shell completions, generated from the same clap definition its `--help`
//! uses, for its Debian package (`bootcfg generate`, `signer generate`; the packages' build-deb.sh
//! scripts call them).

use anyhow::Context;
use clap_complete::Shell;
use std::path::Path;

/// Writes `<name>.1`, `<name>.bash`, `_<name>` (zsh) and `<name>.fish` into `dir`.
pub fn write(mut cmd: clap::Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut man = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut man)
        .context("rendering the man page")?;
    let page = dir.join(format!("{name}.1"));
    std::fs::write(&page, man).with_context(|| format!("writing {}", page.display()))?;
    for (shell, file) in [
        (Shell::Bash, format!("{name}.bash")),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, name, &mut out);
        let path = dir.join(&file);
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_the_page_and_three_completions() {
        let d = tempfile::tempdir().unwrap();
        let cmd = clap::Command::new("tool")
            .about("does things")
            .arg(clap::Arg::new("flag").long("flag"));
        super::write(cmd, "tool", d.path()).unwrap();
        let page = std::fs::read_to_string(d.path().join("tool.1")).unwrap();
        assert!(page.contains(".TH tool") && page.contains("flag"), "{page}");
        for f in ["tool.bash", "_tool", "tool.fish"] {
            let text = std::fs::read_to_string(d.path().join(f)).unwrap();
            assert!(text.contains("flag"), "{f}: {text}");
        }
    }
}
