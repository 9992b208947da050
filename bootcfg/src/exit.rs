//! bootcfg's exit codes: one table, which `--help` texts and the README repeat.

/// Success (also: no user-data, and `plan` shown).
pub const OK: u8 = 0;
/// A step failed, a module cannot be planned, or the user-data is invalid.
pub const FAILED: u8 = 1;
/// Usage: bad arguments, an unusable `--root` or `--instance-id`.
pub const USAGE: u8 = 2;

/// Every code with what it means.
pub const TABLE: &[(u8, &str)] = &[
    (OK, "success (also: no user-data)"),
    (
        FAILED,
        "a step failed, a module cannot be planned, or the user-data is invalid",
    ),
    (USAGE, "usage error (bad arguments, unusable --root)"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Each `--help` that lists exit codes names every code of [`TABLE`], and no other.
    #[test]
    fn every_help_lists_the_codes_of_the_table() {
        let mut cmd = crate::cli::Cli::command();
        let mut helps = vec![cmd.render_long_help().to_string()];
        for name in ["run", "plan", "apply", "status"] {
            helps.push(
                cmd.find_subcommand_mut(name)
                    .unwrap()
                    .render_long_help()
                    .to_string(),
            );
        }
        for h in helps {
            let line = h
                .split("Exit codes:")
                .nth(1)
                .unwrap_or_else(|| panic!("no `Exit codes:` in\n{h}"));
            let line: String = line.split("\n\n").next().unwrap().to_owned();
            for (code, _) in TABLE {
                assert!(line.contains(&format!("{code} ")), "{code} missing: {line}");
            }
            assert!(!line.contains("3 "), "a code outside the table: {line}");
        }
    }
}
