//! Value checks applied before anything is touched. Each returns the problem and its fix;
//! the caller adds the file, place and key path. Pure functions, so the agent can reuse them.

use std::sync::LazyLock;

/// What is wrong and what to do, without the place (the caller knows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub fix: String,
}

pub type Check<T = ()> = Result<T, Problem>;

fn problem(message: impl Into<String>, fix: impl Into<String>) -> Problem {
    Problem {
        message: message.into(),
        fix: fix.into(),
    }
}

/// A bare file name inside one directory: not empty, no `/`, not `.`/`..`, no NUL or control
/// characters, not starting with `-`.
pub fn file_name(name: &str) -> Check {
    let fix = "use a bare file name such as `example.list` (letters, digits, `-`, `_`, `.`)";
    if name.is_empty() {
        return Err(problem("the file name is empty", fix));
    }
    if name.contains('/') {
        return Err(problem(
            format!(
                "file name `{}` contains `/`, so it could escape its directory",
                shown(name)
            ),
            fix,
        ));
    }
    if name == "." || name == ".." || name.starts_with("..") {
        return Err(problem(
            format!("file name `{}` escapes its directory", shown(name)),
            fix,
        ));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(problem(
            "the file name contains a control character (NUL, newline, …)",
            fix,
        ));
    }
    if name.starts_with('-') {
        return Err(problem(
            format!("file name `{}` starts with `-`", shown(name)),
            fix,
        ));
    }
    Ok(())
}

/// apt only reads `apt.conf.d` files named with letters, digits, `_`, `-`, `.` and no extension
/// or `.conf` (apt.conf(5)); anything else is silently ignored, so it is an error here.
pub fn apt_conf_file_name(name: &str) -> Check {
    file_name(name)?;
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let ext_ok = match name.rsplit_once('.') {
        None => true,
        Some((_, ext)) => ext == "conf",
    };
    if !ok_chars || !ext_ok {
        return Err(problem(
            format!("apt ignores apt.conf.d files named like `{}`", shown(name)),
            "use letters, digits, `_`, `-` and `.`, with no extension or `.conf` (e.g. `00-boot-conf`)",
        ));
    }
    Ok(())
}

/// A sources file name: validated, then `.list` appended if missing (as cloud-init does).
pub fn sources_file_name(name: &str) -> Check<String> {
    file_name(name)?;
    Ok(if name.ends_with(".list") {
        name.to_owned()
    } else {
        format!("{name}.list")
    })
}

/// Debian policy §5.6.1: lowercase letters, digits, `+`, `-`, `.`; at least two characters;
/// starts with a letter or digit. An `:arch` qualifier is allowed.
pub fn package_name(name: &str) -> Check {
    let (base, arch) = match name.split_once(':') {
        Some((b, a)) => (b, Some(a)),
        None => (name, None),
    };
    let ok = base.len() >= 2
        && base
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && base
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
        && arch.is_none_or(|a| {
            !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    if !ok {
        return Err(problem(
            format!("`{}` is not a Debian package name", shown(name)),
            "use lowercase letters, digits, `+`, `-` and `.` (Debian policy 5.6.1), optionally `:arch`",
        ));
    }
    Ok(())
}

/// Debian policy §5.6.12: `[epoch:]upstream[-revision]`, upstream starting with a digit,
/// only alphanumerics and `.+-~` (and `:` when there is an epoch).
pub fn package_version(v: &str) -> Check {
    let fix =
        "use a Debian version such as `1.2.3-1` or `2:8.1.0-1+deb12u1` (Debian policy 5.6.12)";
    let bad = || problem(format!("`{}` is not a Debian version", shown(v)), fix);
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) => (Some(e), r),
        None => (None, v),
    };
    if let Some(e) = epoch
        && (e.is_empty() || !e.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(bad());
    }
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '.' | '+' | '-' | '~')
            || (epoch.is_some() && c == ':')
    };
    if rest.is_empty()
        || !rest.starts_with(|c: char| c.is_ascii_digit())
        || !rest.chars().all(allowed)
        || rest.ends_with('-')
    {
        return Err(bad());
    }
    Ok(())
}

/// Names `$VAR`/`${VAR}` may use in `apt.sources[].source` lines (cloud-init's `add_apt_sources`).
pub const SOURCE_VARS: &[&str] = &["RELEASE", "MIRROR", "PRIMARY", "SECURITY", "KEY_FILE"];
/// Names a `sources_list` template may use (cloud-init's `generate_sources_list`).
pub const SOURCES_LIST_VARS: &[&str] = &[
    "RELEASE",
    "codename",
    "MIRROR",
    "PRIMARY",
    "SECURITY",
    "mirror",
    "primary",
    "security",
    "primary_key",
    "security_key",
];

/// The `$VAR`/`${VAR}` names used in `text`, in order, with their byte offsets.
///
/// The regex is compiled once per process: compiling it on every call was most of
/// `bootcfg validate`'s time (issue 16).
pub fn variables(text: &str) -> Vec<(usize, String)> {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
            .expect("static regex")
    });
    RE.captures_iter(text)
        .map(|c| {
            let m = c.get(1).or_else(|| c.get(2)).expect("one group matches");
            (
                c.get(0).expect("whole match").start(),
                m.as_str().to_owned(),
            )
        })
        .collect()
}

/// Every `$VAR` in `text` is one of `known`.
pub fn known_variables(text: &str, known: &[&str]) -> Check {
    for (_, var) in variables(text) {
        if !known.contains(&var.as_str()) {
            let hint = did_you_mean(&var, known.iter().copied())
                .map(|s| format!("did you mean `${s}`? "))
                .unwrap_or_default();
            return Err(problem(
                format!("unknown variable `${var}`"),
                format!(
                    "{hint}known variables are {}",
                    known
                        .iter()
                        .map(|k| format!("`${k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A key id or fingerprint: 8, 16 or 40 hex digits (spaces and a `0x` prefix allowed).
/// Returns the normalised form (uppercase, no spaces) and whether it is a short (8-digit) id.
pub fn keyid(id: &str) -> Check<(String, bool)> {
    let s: String = id.chars().filter(|c| !c.is_whitespace()).collect();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(&s)
        .to_ascii_uppercase();
    if !s.chars().all(|c| c.is_ascii_hexdigit()) || ![8, 16, 40].contains(&s.len()) {
        return Err(problem(
            format!("`{}` is not a key id or fingerprint", shown(id)),
            "give the key's full fingerprint: 40 hex digits, e.g. from `gpg --fingerprint` (spaces allowed)",
        ));
    }
    let short = s.len() == 8;
    Ok((s, short))
}

/// A keyserver: a host name or an `hkp://`, `hkps://`, `http://`, `https://` URL.
pub fn keyserver(ks: &str) -> Check {
    let rest = ["hkps://", "hkp://", "https://", "http://"]
        .iter()
        .find_map(|p| ks.strip_prefix(p))
        .unwrap_or(ks);
    let ok = !rest.is_empty()
        && !ks.starts_with('-')
        && rest.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '/' | '_' | '[' | ']')
        });
    if !ok {
        return Err(problem(
            format!("`{}` is not a keyserver host name or URL", shown(ks)),
            "use a host name such as `keyserver.ubuntu.com` or a URL such as `hkps://keys.openpgp.org`",
        ));
    }
    Ok(())
}

/// Whether a keyserver is reached in plaintext (`hkp://`, `http://`): anyone on the path can
/// read and change its answer.
pub fn keyserver_is_plaintext(ks: &str) -> bool {
    let ks = ks.trim().to_ascii_lowercase();
    ks.starts_with("hkp://") || ks.starts_with("http://")
}

/// An ASCII-armored OpenPGP public key block.
pub fn pgp_public_key(block: &str) -> Check {
    crate::pgp::dearmor(block).map(|_| ()).map_err(|e| {
        problem(
            format!("not a valid OpenPGP public key block: {e}"),
            "paste the output of `gpg --armor --export <fingerprint>` (a PGP PUBLIC KEY BLOCK)",
        )
    })
}

/// One or more PEM X.509 certificates, nothing else (in particular no private key).
pub fn pem_certificate(pem: &str) -> Check {
    let fix = "paste the CA certificate in PEM form (`-----BEGIN CERTIFICATE-----` … `-----END CERTIFICATE-----`), e.g. from `puppetserver ca print` or /etc/puppetlabs/puppet/ssl/certs/ca.pem";
    if pem.contains("PRIVATE KEY-----") {
        return Err(problem(
            "the CA certificate text holds a PRIVATE KEY; never put keys in user-data",
            fix,
        ));
    }
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(problem(
            "not a PEM certificate (no `-----BEGIN CERTIFICATE-----` line)",
            fix,
        ));
    }
    match openssl::x509::X509::stack_from_pem(pem.as_bytes()) {
        Ok(certs)
            if !certs.is_empty()
                && certs.len() == pem.matches("-----BEGIN CERTIFICATE-----").count() =>
        {
            Ok(())
        }
        Ok(_) => Err(problem(
            "a certificate block in the PEM text cannot be parsed",
            fix,
        )),
        Err(e) => Err(problem(
            format!(
                "the PEM certificate cannot be parsed ({})",
                first_openssl_reason(&e)
            ),
            fix,
        )),
    }
}

fn first_openssl_reason(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .first()
        .and_then(|e| e.reason().map(str::to_owned))
        .unwrap_or_else(|| "invalid data".into())
}

/// A proxy URL for apt: `http://`, `https://`, `socks5h://` (or `DIRECT`), nothing that could
/// break out of the quoted apt.conf value.
pub fn proxy_url(url: &str) -> Check {
    if url == "DIRECT" {
        return Ok(());
    }
    let fix = "use a URL such as `http://proxy.example.com:3128/` (credentials as `http://user:pass@host:port/`)";
    let scheme_ok = ["http://", "https://", "socks5h://", "socks5://", "ftp://"]
        .iter()
        .any(|p| url.starts_with(p));
    if !scheme_ok {
        return Err(problem(
            format!(
                "proxy `{}` is not an http://, https:// or socks5h:// URL",
                redact(url)
            ),
            fix,
        ));
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | ';' | '\\' | '{' | '}'))
    {
        return Err(problem(
            format!(
                "proxy `{}` contains a space, quote, `;`, brace or control character",
                redact(url)
            ),
            fix,
        ));
    }
    Ok(())
}

/// A mirror URI: http, https, ftp, file or a local path; single line.
pub fn mirror_uri(uri: &str) -> Check {
    let ok = ["http://", "https://", "ftp://", "file:/", "mirror+", "/"]
        .iter()
        .any(|p| uri.starts_with(p))
        && !uri.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(problem(
            format!("`{}` is not a mirror URL", shown(uri)),
            "use a URL such as `http://deb.debian.org/debian`",
        ));
    }
    Ok(())
}

/// An absolute path with no `..` component and no control characters.
pub fn absolute_path(p: &str) -> Check {
    let fix = "use an absolute path such as `/etc/puppet/puppet.conf`";
    if !p.starts_with('/') {
        return Err(problem(
            format!("`{}` is not an absolute path", shown(p)),
            fix,
        ));
    }
    if p.split('/').any(|c| c == "..") || p.chars().any(char::is_control) {
        return Err(problem(
            format!(
                "path `{}` has a `..` component or a control character",
                shown(p)
            ),
            fix,
        ));
    }
    Ok(())
}

/// A puppet.conf setting name: `[a-z0-9_]+`.
pub fn puppet_setting(name: &str) -> Check {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(problem(
            format!("`{}` is not a puppet.conf setting name", shown(name)),
            "use lowercase letters, digits and `_` (e.g. `server`, `certname`, `environment`)",
        ));
    }
    Ok(())
}

/// A puppet.conf value: one line, so it cannot start a new section or setting.
pub fn single_line(v: &str) -> Check {
    if v.contains(['\n', '\r']) || v.chars().any(|c| c.is_control() && c != '\t') {
        return Err(problem(
            "the value contains a newline or control character, which would inject lines into the file",
            "put the value on one line",
        ));
    }
    Ok(())
}

/// The closest candidate by Jaro-Winkler similarity, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(s, _)| *s >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Every `user:password@` in URLs replaced by `***@`, so credentials never reach a log.
pub fn redact(text: &str) -> String {
    static RE: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"://[^/@\s]*@").expect("static regex"));
    RE.replace_all(text, "://***@").into_owned()
}

/// Values echoed in messages are cut short, stripped of control characters and of URL credentials.
pub fn shown(s: &str) -> String {
    let clean: String = redact(s)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.chars().count() > 60 {
        format!("{}…", clean.chars().take(60).collect::<String>())
    } else {
        clean
    }
}

/// Whether a rendered main sources list is deb822 (`Types:`/`URIs:` stanzas) rather than
/// one-line `deb` entries, decided as cloud-init 23.4 and later decide it
/// (`is_deb822_sources_format`): no line starts with `deb ` or `deb-src `, and some line starts
/// with `Types: `, `Suites: `, `Components: ` or `URIs: `. apt reads deb822 only from
/// `sources.list.d/*.sources`, one-line entries only from `sources.list` and `*.list`.
pub fn is_deb822(text: &str) -> bool {
    let starts = |prefixes: &[&str]| {
        text.lines()
            .any(|l| prefixes.iter().any(|p| l.starts_with(p)))
    };
    !starts(&["deb ", "deb-src "]) && starts(&["Types: ", "Suites: ", "Components: ", "URIs: "])
}

/// A `sources_list` template is all one-line entries or all deb822 stanzas, as apt needs for
/// the file it goes to: a mixture is an error (cloud-init would write it all to
/// `/etc/apt/sources.list`, where apt rejects the deb822 lines), and so is a line that is
/// neither a one-line entry, a comment nor (in deb822) a field, and a deb822 stanza without
/// `Types`, `URIs`, `Suites` (and `Components`, unless its suite is an exact path ending in `/`).
pub fn sources_list_text(text: &str) -> Check {
    let deb822 = is_deb822(text);
    // A field line: the name, and where the value starts. Compiled once per process.
    static FIELD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^([A-Za-z0-9][A-Za-z0-9-]*):(\s|$)").expect("static regex")
    });
    let field = |l: &str| {
        FIELD.captures(l).map(|c| {
            (
                c.get(1).expect("group 1").end(),
                c.get(0).expect("match").end(),
            )
        })
    };
    let one_line = |t: &str| {
        t.split_once([' ', '\t'])
            .is_some_and(|(k, _)| k == "deb" || k == "deb-src")
    };
    let fix822 = "write deb822 stanzas only (`Types: deb`, `URIs: …`, `Suites: …`, `Components: …`, a blank line between stanzas), see sources.list(5)";
    let fix_one = "write one-line entries only (`deb http://host/path suite component…`), or deb822 stanzas only, see sources.list(5)";
    if !deb822 {
        let has_one_line = text.lines().any(|l| one_line(l.trim()));
        for (i, l) in text.lines().enumerate() {
            let t = l.trim();
            if t.is_empty() || t.starts_with('#') || one_line(t) {
                continue;
            }
            if has_one_line && field(l).is_some() {
                return Err(problem(
                    format!(
                        "line {} (`{}`) is a deb822 field, but the template also has one-line `deb` entries: apt reads one format per file",
                        i + 1,
                        shown(l)
                    ),
                    fix_one,
                ));
            }
            return Err(problem(
                format!(
                    "line {} (`{}`) is not a one-line apt source",
                    i + 1,
                    shown(l)
                ),
                fix_one,
            ));
        }
        return Ok(());
    }
    // deb822: stanzas separated by blank lines; `#` comments; continuation lines indented.
    let mut stanza: Vec<(usize, String, String)> = Vec::new();
    let check = |stanza: &[(usize, String, String)]| -> Check {
        let Some((first, _, _)) = stanza.first() else {
            return Ok(());
        };
        let get = |name: &str| {
            stanza
                .iter()
                .find(|(_, k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, _, v)| v.as_str())
        };
        for need in ["Types", "URIs", "Suites"] {
            if get(need).is_none_or(|v| v.trim().is_empty()) {
                return Err(problem(
                    format!("the deb822 stanza at line {first} has no `{need}:` field"),
                    fix822,
                ));
            }
        }
        let exact_path =
            get("Suites").is_some_and(|v| v.split_whitespace().all(|s| s.ends_with('/')));
        if !exact_path && get("Components").is_none_or(|v| v.trim().is_empty()) {
            return Err(problem(
                format!("the deb822 stanza at line {first} has no `Components:` field"),
                fix822,
            ));
        }
        Ok(())
    };
    for (i, l) in text.lines().enumerate() {
        if l.starts_with('#') {
            continue;
        }
        if l.trim().is_empty() {
            check(&stanza)?;
            stanza.clear();
            continue;
        }
        if (l.starts_with(' ') || l.starts_with('\t'))
            && let Some(last) = stanza.last_mut()
        {
            last.2.push('\n');
            last.2.push_str(l.trim());
            continue;
        }
        match field(l) {
            Some((n, value_at)) => {
                let name = l[..n].to_owned();
                let value = l[value_at..].trim().to_owned();
                stanza.push((i + 1, name, value));
            }
            None => {
                return Err(problem(
                    format!(
                        "line {} (`{}`) is not a deb822 field (`Name: value`)",
                        i + 1,
                        shown(l)
                    ),
                    if one_line(l.trim()) { fix_one } else { fix822 },
                ));
            }
        }
    }
    check(&stanza)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        for ok in ["a.list", "00-boot-sources.list", "x_y.z"] {
            assert!(file_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", "..", ".", "a\0b", "-rf", "..hidden"] {
            assert!(file_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(sources_file_name("mirror").unwrap(), "mirror.list");
        assert!(apt_conf_file_name("00-boot-conf").is_ok());
        assert!(apt_conf_file_name("99proxy.conf").is_ok());
        assert!(apt_conf_file_name("proxy.txt").is_err());
    }

    #[test]
    fn packages_and_versions() {
        for ok in ["nginx", "libc6:amd64", "g++", "puppet-agent", "0ad"] {
            assert!(package_name(ok).is_ok(), "{ok}");
        }
        for bad in ["a;b", "Nginx", "x", "-x", "a b", "$(reboot)", "pkg:"] {
            assert!(package_name(bad).is_err(), "{bad}");
        }
        for ok in ["1.0", "2:8.1.0-1+deb12u1", "1.2~rc1-0ubuntu1", "7.26.0-1"] {
            assert!(package_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a1", "1.0;ls", "1 0", ":1", "x:1.0", "1.0-"] {
            assert!(package_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vars() {
        assert!(
            known_variables(
                "deb $MIRROR ${RELEASE} main [signed-by=$KEY_FILE]",
                SOURCE_VARS
            )
            .is_ok()
        );
        let e = known_variables("deb $MIROR $RELEASE main", SOURCE_VARS).unwrap_err();
        assert!(
            e.message.contains("$MIROR") && e.fix.contains("did you mean `$MIRROR`"),
            "{e:?}"
        );
    }

    #[test]
    fn keyids() {
        assert_eq!(
            keyid("B59D 5F15 97A5 04B7 E230  6DCA 0620 BBCF 0368 3F77").unwrap(),
            ("B59D5F1597A504B7E2306DCA0620BBCF03683F77".into(), false)
        );
        assert_eq!(keyid("03683f77").unwrap(), ("03683F77".into(), true));
        assert!(keyid("xyz").is_err());
        assert!(keyid("12345").is_err());
    }

    #[test]
    fn proxies_are_redacted() {
        assert!(proxy_url("http://u:p@proxy:3128/").is_ok());
        let e = proxy_url("gopher://user:secret@host/").unwrap_err();
        assert!(!e.message.contains("secret"), "{e:?}");
        assert!(proxy_url("http://host/\";evil").is_err());
        assert_eq!(redact("http://u:p@h:1/"), "http://***@h:1/");
        assert_eq!(
            redact("deb http://u:p@h/ d main # http://x@y/"),
            "deb http://***@h/ d main # http://***@y/"
        );
        let e = mirror_uri("htp://user:secret@mirror/").unwrap_err();
        assert!(!e.message.contains("secret"), "{e:?}");
    }

    #[test]
    fn puppet_values() {
        assert!(single_line("puppet.example.com").is_ok());
        assert!(single_line("x\n[main]\nserver=evil").is_err());
        assert!(puppet_setting("certname").is_ok());
        assert!(puppet_setting("Cert Name").is_err());
    }
}
