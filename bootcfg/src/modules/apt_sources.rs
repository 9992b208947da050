//! apt sources and their signing keys, then one `apt-get update`.
//!
//! - Source lines take `$RELEASE` (`VERSION_CODENAME` from the root's `/etc/os-release`),
//!   `$MIRROR`/`$PRIMARY` (the chosen primary mirror), `$SECURITY` and `$KEY_FILE`
//!   (`${NAME}` works too; an unknown `$NAME` is an error, as in cloud-init).
//! - Each source goes to `/etc/apt/sources.list.d/<filename>` with cloud-init's append semantics
//!   (entries sharing a file accumulate; `append: false` replaces the file), except that a line
//!   already in the file is not added again, so a rerun changes nothing, and a line for the same
//!   repository (`deb uri suite components`) with other options replaces that line instead of
//!   being added next to it (an image where cloud-init listed it without `signed-by` would
//!   otherwise make apt fail with conflicting `Signed-By` values).
//! - **A repository's key is trusted for that repository only** (deliberate difference from
//!   cloud-init, which puts keys in `/etc/apt/trusted.gpg.d/`, trusted for *every* repository,
//!   unless the line uses `$KEY_FILE`, and then uses `/etc/apt/cloud-init.gpg.d/`): the key is
//!   written as a binary keyring to `/etc/apt/keyrings/<stem>.gpg` (`<stem>` = the file name
//!   without `.list`) and `signed-by=<that path>` is put into the source line unless the line
//!   already has a `signed-by` option. `$KEY_FILE` expands to the same path.
//! - Inline armored keys are dearmored in-process (no `gpg` needed on the image); `keyid`s are
//!   fetched over HTTPS and their fingerprint is checked (see [`crate::keys`]).
//! - `ppa:owner/name` (Ubuntu only): written as a normal source for
//!   `https://ppa.launchpadcontent.net/owner/name/ubuntu`, its key looked up through the
//!   Launchpad API and fetched by full fingerprint, so it too is trusted for that PPA only.
//!   Other strings matching `add_apt_repo_match` (`cloud-archive:…`) go to
//!   `add-apt-repository --no-update`, as in cloud-init.
//! - `preserve_sources_list: false` renders the main list from `sources_list` (or a built-in
//!   template) and comments out `disable_suites`. One-line entries go to `/etc/apt/sources.list`;
//!   a deb822 template (`Types:`/`URIs:` stanzas, decided as cloud-init 23.4+ decides it) goes to
//!   `/etc/apt/sources.list.d/<distro>.sources`, where apt reads deb822, and then, as cloud-init
//!   24.1+ does, `/etc/apt/sources.list` is removed (Debian) or replaced with a pointer comment
//!   (Ubuntu), so the old main list does not stay active beside it. (cloud-init 22.4 writes deb822
//!   into `/etc/apt/sources.list`, where apt rejects it.)
//! - The built-in template is deb822 (cloud-init 25.1's `sources.list.<distro>.deb822.tmpl`,
//!   [`deb822_main_list`]) when the image keeps its main list in `<distro>.sources` (Debian 12
//!   and 13 images do) or its release ships a cloud-init that writes deb822 (Debian 13, Ubuntu
//!   24.04 and later); else cloud-init 22.4's one-line template. So on Debian 13 the mirrors and
//!   `disable_suites` edit `debian.sources` as cloud-init 25.1 does there, and on a Debian 12
//!   image with `debian.sources` the main list is not listed twice (Debian 12's cloud-init 22.4
//!   writes a one-line `sources.list` beside `debian.sources`: a documented difference).

use super::{Module, PlanState};
use crate::action::{Action, Content, KeyFetch, StepError};
use crate::ctx::Ctx;
use crate::debian::SourceLine;
use schemas::userdata::model::{KeySource, Mirror, UserData};

pub const KEYRING_DIR: &str = schemas::userdata::model::KEYRING_DIR;
pub const SOURCES_DIR: &str = "/etc/apt/sources.list.d";
pub const MAIN_LIST: &str = "/etc/apt/sources.list";
/// What cloud-init (24.1+) leaves in an Ubuntu `/etc/apt/sources.list` once the main list is
/// deb822 (`UBUNTU_DEFAULT_APT_SOURCES_LIST`).
const UBUNTU_MOVED_LIST: &str = "\
# Ubuntu sources have moved to the /etc/apt/sources.list.d/ubuntu.sources
# file, which uses the deb822 format. Use deb822-formatted .sources files
# to manage package sources in the /etc/apt/sources.list.d/ directory.
# See the sources.list(5) manual page for details.
";

pub struct AptSources;

struct Mirrors {
    primary: String,
    security: String,
}

fn default_mirrors(os_id: &str) -> Mirrors {
    if os_id == "ubuntu" {
        Mirrors {
            primary: "http://archive.ubuntu.com/ubuntu".into(),
            security: "http://security.ubuntu.com/ubuntu".into(),
        }
    } else {
        Mirrors {
            primary: "http://deb.debian.org/debian".into(),
            security: "http://deb.debian.org/debian-security".into(),
        }
    }
}

/// The mirror entry for this architecture (or `default`), and its URI: `uri`, else the first
/// `search` entry whose host resolves.
fn pick(list: &[Mirror], arch: &str) -> Option<String> {
    let m = list
        .iter()
        .find(|m| m.arches.iter().any(|a| a == arch))
        .or_else(|| {
            list.iter()
                .find(|m| m.arches.iter().any(|a| a == "default"))
        })?;
    if let Some(u) = &m.uri {
        return Some(u.clone());
    }
    m.search.iter().find(|u| resolves(u)).cloned()
}

/// Where this run writes the key of the `primary`/`security` mirror entry for `arch`, if it has one.
fn mirror_keyring(list: &[Mirror], name: &str, arch: &str) -> Option<String> {
    list.iter()
        .find(|m| m.arches.iter().any(|x| x == arch || x == "default"))
        .filter(|m| m.key.is_some())
        .map(|_| format!("{KEYRING_DIR}/{name}.gpg"))
}

fn resolves(url: &str) -> bool {
    use std::net::ToSocketAddrs;
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = rest.split('/').next().unwrap_or("");
    let hp = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    hp.to_socket_addrs()
        .map(|mut a| a.next().is_some())
        .unwrap_or(false)
}

/// Expand `$NAME` / `${NAME}` from `vars`; an unknown or unavailable name is an error.
pub fn render(template: &str, vars: &[(&str, Option<&str>)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(b) = after.strip_prefix('{') {
            let end = b
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{template}`"))?;
            (&b[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            return Err(format!("a lone `$` in `{template}`"));
        }
        let val = vars
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("unknown variable `${name}` in `{template}` (known: $RELEASE, $MIRROR, $PRIMARY, $SECURITY, $KEY_FILE)"))?
            .1
            .ok_or_else(|| match name.to_ascii_uppercase().as_str() {
                "KEY_FILE" => format!("`{template}` uses $KEY_FILE but the source has no key or keyid"),
                "RELEASE" => format!("`{template}` uses $RELEASE but the root's /etc/os-release has no VERSION_CODENAME"),
                _ => format!("`${name}` has no value here"),
            })?;
        out.push_str(val);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Put `signed-by=<keyring>` into a one-line `deb` / `deb-src` source unless it has one.
pub fn inject_signed_by(line: &str, keyring: &str) -> String {
    if line.to_ascii_lowercase().contains("signed-by") {
        return line.to_owned();
    }
    let trimmed = line.trim_start();
    let Some((kind, rest)) = trimmed.split_once(char::is_whitespace) else {
        return line.to_owned();
    };
    if kind != "deb" && kind != "deb-src" {
        return line.to_owned();
    }
    let rest = rest.trim_start();
    if let Some(opts) = rest.strip_prefix('[') {
        format!("{kind} [signed-by={keyring} {}", opts.trim_start())
    } else {
        format!("{kind} [signed-by={keyring}] {rest}")
    }
}

/// Convert a one-line `deb [opts] uri suite [components…]` source into a deb822 stanza.
pub fn to_deb822(line: &str) -> Result<String, String> {
    let src = SourceLine::parse(line)
        .ok_or_else(|| format!("`{line}` is not a `deb`/`deb-src` line with a URI and a suite"))?;
    let mut opts: Vec<(String, String)> = Vec::new();
    for o in src.options.as_deref().unwrap_or("").split_whitespace() {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| format!("option `{o}` in `{line}` is not key=value"))?;
        let key = match k {
            "arch" => "Architectures".to_owned(),
            "lang" => "Languages".to_owned(),
            "target" => "Targets".to_owned(),
            "signed-by" => "Signed-By".to_owned(),
            "trusted" => "Trusted".to_owned(),
            "pdiffs" => "PDiffs".to_owned(),
            "by-hash" => "By-Hash".to_owned(),
            "allow-insecure" => "Allow-Insecure".to_owned(),
            "check-valid-until" => "Check-Valid-Until".to_owned(),
            other => other
                .split('-')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("-"),
        };
        opts.push((key, v.replace(',', " ")));
    }
    let mut s = format!(
        "Types: {}\nURIs: {}\nSuites: {}\n",
        src.kind, src.uri, src.suite
    );
    if !src.components.is_empty() {
        s.push_str(&format!("Components: {}\n", src.components.join(" ")));
    }
    for (k, v) in opts {
        s.push_str(&format!("{k}: {v}\n"));
    }
    Ok(s)
}

/// The suite names `disable_suites` means (cloud-init's `map_known_suites`, `$RELEASE` expanded).
fn disabled_suite_names(suites: &[String], release: Option<&str>) -> Vec<String> {
    let rel = release.unwrap_or("");
    suites
        .iter()
        .map(|s| match s.as_str() {
            "release" => rel.to_owned(),
            "updates" | "backports" | "security" | "proposed" => format!("{rel}-{s}"),
            other => other.replace("$RELEASE", rel),
        })
        .collect()
}

/// `disable_suites` in a deb822 main list (as cloud-init 23.4+ `disable_suites_deb822` does):
/// the disabled suites are taken out of each stanza's `Suites:` line, the original line kept as a
/// comment; a stanza left with no suite is commented out whole.
fn disable_suites_deb822(text: &str, suites: &[String], release: Option<&str>) -> String {
    let wanted = disabled_suite_names(suites, release);
    let mut out = String::new();
    let mut stanza: Vec<String> = Vec::new();
    let flush = |stanza: &mut Vec<String>, out: &mut String| {
        if stanza.is_empty() {
            return;
        }
        let mut lines = Vec::new();
        let mut left: Option<usize> = None;
        for l in stanza.iter() {
            let Some(rest) = l.strip_prefix("Suites:") else {
                lines.push(l.clone());
                continue;
            };
            let orig: Vec<&str> = rest.split_whitespace().collect();
            let keep: Vec<&str> = orig
                .iter()
                .copied()
                .filter(|s| !wanted.iter().any(|w| w == s))
                .collect();
            left = Some(keep.len());
            if keep.len() == orig.len() {
                lines.push(l.clone());
            } else {
                lines.push(format!("# suites disabled by bootcfg: {l}"));
                if !keep.is_empty() {
                    lines.push(format!("Suites: {}", keep.join(" ")));
                }
            }
        }
        if left == Some(0) {
            out.push_str("## Entry disabled by bootcfg, due to disable_suites\n");
            for l in &lines {
                if l.starts_with('#') {
                    out.push_str(&format!("{l}\n"));
                } else {
                    out.push_str(&format!("# disabled by bootcfg: {l}\n"));
                }
            }
        } else {
            for l in &lines {
                out.push_str(&format!("{l}\n"));
            }
        }
        stanza.clear();
    };
    for l in text.lines() {
        if l.trim().is_empty() {
            flush(&mut stanza, &mut out);
            out.push_str(&format!("{l}\n"));
        } else if l.starts_with('#') && stanza.is_empty() {
            out.push_str(&format!("{l}\n"));
        } else {
            stanza.push(l.to_owned());
        }
    }
    flush(&mut stanza, &mut out);
    out
}

/// Comment out lines of a rendered main sources list whose suite is disabled.
fn disable_suites(text: &str, suites: &[String], release: Option<&str>) -> String {
    let wanted = disabled_suite_names(suites, release);
    text.lines()
        .map(|l| match SourceLine::parse(l) {
            Some(src) if wanted.contains(&src.suite) => {
                format!("# suite disabled by bootcfg: {l}\n")
            }
            _ => format!("{l}\n"),
        })
        .collect()
}

/// cloud-init 25.1's deb822 main-list templates, as they render: the `## template:jinja` line
/// dropped, `{{mirror}}`/`{{security}}`/`{{codename}}` as `$MIRROR`/`$SECURITY`/`$RELEASE`, and
/// `Signed-By` as `$PRIMARY_KEYRING`/`$SECURITY_KEYRING` (the mirror's key when it has one, else
/// the archive keyring, as the templates' `primary_key | default(...)` chain does).
const DEBIAN_DEB822: &str = include_str!("templates/debian.sources");
const UBUNTU_DEB822: &str = include_str!("templates/ubuntu.sources");

/// Whether the built-in main list is deb822 here: the image already keeps it in
/// `/etc/apt/sources.list.d/<distro>.sources`, or the release's own cloud-init writes deb822
/// (Debian 13+, Ubuntu 24.04+: `APT_DEB822_SOURCE_LIST_FILE` in cloud-init 25.1).
pub fn deb822_main_list(ctx: &Ctx) -> bool {
    if ctx
        .root
        .exists(&format!("{SOURCES_DIR}/{}.sources", ctx.os_id))
    {
        return true;
    }
    match (ctx.os_id.as_str(), ctx.version()) {
        ("debian", Some(v)) => v >= (13, 0),
        ("ubuntu", Some(v)) => v >= (24, 4),
        _ => false,
    }
}

fn default_template(os_id: &str) -> &'static str {
    if os_id == "ubuntu" {
        "deb $MIRROR $RELEASE main restricted universe multiverse\n\
         deb $MIRROR $RELEASE-updates main restricted universe multiverse\n\
         deb $MIRROR $RELEASE-backports main restricted universe multiverse\n\
         deb $SECURITY $RELEASE-security main restricted universe multiverse\n"
    } else {
        // cloud-init's templates/sources.list.debian.tmpl as it renders it (22.4 to 25.1): the
        // `## template:jinja` line dropped, `{{mirror}}`/`{{security}}`/`{{codename}}` as our
        // variables; the plan turns `$RELEASE-security` into `$RELEASE/updates` for buster and
        // stretch, as the template's `{% if %}` does.
        "## Note, this file is written by cloud-init on first boot of an instance\n\
         ## modifications made here will not survive a re-bundle.\n\
         ## if you wish to make changes you can:\n\
         ## a.) add 'apt_preserve_sources_list: true' to /etc/cloud/cloud.cfg\n\
         ##     or do the same in user-data\n\
         ## b.) add sources in /etc/apt/sources.list.d\n\
         ## c.) make changes to template file /etc/cloud/templates/sources.list.debian.tmpl\n\
         ###\n\
         \n\
         # See http://www.debian.org/releases/stable/i386/release-notes/ch-upgrading.html\n\
         # for how to upgrade to newer versions of the distribution.\n\
         deb $MIRROR $RELEASE main\n\
         deb-src $MIRROR $RELEASE main\n\
         \n\
         ## Major bug fix updates produced after the final release of the\n\
         ## distribution.\n\
         deb $SECURITY $RELEASE-security main\n\
         deb-src $SECURITY $RELEASE-security main\n\
         deb $MIRROR $RELEASE-updates main\n\
         deb-src $MIRROR $RELEASE-updates main\n\
         \n\
         ## Uncomment the following two lines to add software from the 'backports'\n\
         ## repository.\n\
         ## \n\
         ## N.B. software from this repository may not have been tested as\n\
         ## extensively as that contained in the main release, although it includes\n\
         ## newer versions of some applications which may provide useful features.\n\
         deb $MIRROR $RELEASE-backports main\n\
         deb-src $MIRROR $RELEASE-backports main\n"
    }
}

fn key_action(key: &KeySource, dest: &str, proxy: Option<&str>) -> Result<Action, StepError> {
    Ok(match key {
        KeySource::Armored(text) => {
            let bin = schemas::pgp::dearmor(text)
                .map_err(|e| StepError::Key(format!("key for {dest}: {e}")))?;
            Action::Write {
                path: dest.to_owned(),
                content: Content::Binary(bin),
                mode: 0o644,
            }
        }
        KeySource::Keyid { id, keyserver } => {
            crate::keys::warn_short_id(id);
            Action::FetchKey {
                key: KeyFetch::Keyid {
                    id: id.clone(),
                    keyserver: keyserver.clone(),
                },
                dest: dest.to_owned(),
                proxy: proxy.map(str::to_owned),
            }
        }
    })
}

impl Module for AptSources {
    fn name(&self) -> &'static str {
        "apt-sources"
    }

    fn plan(&self, ud: &UserData, ctx: &Ctx, st: &mut PlanState) -> Result<Vec<Action>, StepError> {
        let apt = &ud.apt;
        let mut a = Vec::new();
        let mut defaults = default_mirrors(&ctx.os_id);
        // As cloud-init does: the image's own cloud-init configuration gives the default mirrors
        // (`system_info.package_mirrors`: a resolvable `search` entry, else `failsafe`).
        let mut cfgs: Vec<String> = Vec::new();
        if let Ok(Some(b)) = ctx.root.read("/etc/cloud/cloud.cfg") {
            cfgs.push(String::from_utf8_lossy(&b).into_owned());
        }
        if let Ok(mut names) = ctx.root.list_dir("/etc/cloud/cloud.cfg.d") {
            names.sort();
            for n in names.iter().filter(|n| n.ends_with(".cfg")) {
                if let Ok(Some(b)) = ctx.root.read(&format!("/etc/cloud/cloud.cfg.d/{n}")) {
                    cfgs.push(String::from_utf8_lossy(&b).into_owned());
                }
            }
        }
        let cfg_refs: Vec<&str> = cfgs.iter().map(String::as_str).collect();
        if let Some(m) = schemas::userdata::image_cfg::package_mirrors(&cfg_refs, &ctx.arch) {
            if let Some(p) = m
                .search_primary
                .iter()
                .find(|u| resolves(u))
                .cloned()
                .or(m.primary)
            {
                defaults.primary = p;
            }
            if let Some(sec) = m
                .search_security
                .iter()
                .find(|u| resolves(u))
                .cloned()
                .or(m.security)
            {
                defaults.security = sec;
            }
        }
        let primary = pick(&apt.primary, &ctx.arch).unwrap_or(defaults.primary);
        let security = pick(&apt.security, &ctx.arch).unwrap_or_else(|| {
            if apt.primary.is_empty() {
                defaults.security.clone()
            } else {
                primary.clone()
            }
        });
        let release = ctx.release.as_deref();
        // keyserver fetches go through the apt proxy (HTTPS proxy first)
        let proxy = apt.proxy.https.as_deref().or(apt.proxy.http.as_deref());
        let mut changed_lists = false;

        // mirror keys
        for (name, list) in [("primary", &apt.primary), ("security", &apt.security)] {
            if let Some(m) = list
                .iter()
                .find(|m| m.arches.iter().any(|x| x == &ctx.arch || x == "default"))
            {
                if let Some(k) = &m.key {
                    a.push(key_action(k, &format!("{KEYRING_DIR}/{name}.gpg"), proxy)?);
                    a.push(Action::Note {
                        text: format!("{name} mirror key written to {KEYRING_DIR}/{name}.gpg; reference it with signed-by in sources_list"),
                    });
                }
                if m.search_dns {
                    a.push(Action::Note {
                        text: format!("{name}: search_dns is not supported by bootcfg; ignored"),
                    });
                }
            }
        }

        if !apt.preserve_sources_list {
            let deb822_default = apt.sources_list.is_none() && deb822_main_list(ctx);
            let tmpl: String = match apt.sources_list.as_deref() {
                Some(t) => t.to_owned(),
                None if deb822_default && ctx.os_id == "ubuntu" => UBUNTU_DEB822.to_owned(),
                // cloud-init's Debian deb822 template: `<codename>/updates` before bullseye
                None if deb822_default => {
                    if matches!(release, Some("buster" | "stretch")) {
                        DEBIAN_DEB822.replace("$RELEASE-security", "$RELEASE/updates")
                    } else {
                        DEBIAN_DEB822.to_owned()
                    }
                }
                // cloud-init's Debian template: `<codename>/updates` security suites before bullseye
                None if ctx.os_id != "ubuntu" && matches!(release, Some("buster" | "stretch")) => {
                    default_template(&ctx.os_id).replace("$RELEASE-security", "$RELEASE/updates")
                }
                None => default_template(&ctx.os_id).to_owned(),
            };
            let vars = [
                ("RELEASE", release),
                ("codename", release),
                ("MIRROR", Some(primary.as_str())),
                ("PRIMARY", Some(primary.as_str())),
                ("SECURITY", Some(security.as_str())),
            ];
            let mut text = if deb822_default {
                let archive = if ctx.os_id == "ubuntu" {
                    "/usr/share/keyrings/ubuntu-archive-keyring.gpg"
                } else {
                    "/usr/share/keyrings/debian-archive-keyring.gpg"
                };
                let primary_key = mirror_keyring(&apt.primary, "primary", &ctx.arch);
                let security_key = mirror_keyring(&apt.security, "security", &ctx.arch)
                    .or_else(|| primary_key.clone());
                let mut v = vars.to_vec();
                v.push((
                    "PRIMARY_KEYRING",
                    Some(primary_key.as_deref().unwrap_or(archive)),
                ));
                v.push((
                    "SECURITY_KEYRING",
                    Some(security_key.as_deref().unwrap_or(archive)),
                ));
                render(&tmpl, &v)
            } else {
                render(&tmpl, &vars)
            }
            .map_err(StepError::Invalid)?;
            let deb822 = schemas::userdata::checks::is_deb822(&text);
            if !apt.disable_suites.is_empty() {
                text = if deb822 {
                    disable_suites_deb822(&text, &apt.disable_suites, release)
                } else {
                    disable_suites(&text, &apt.disable_suites, release)
                };
            }
            if deb822 {
                a.push(Action::Write {
                    path: format!("{SOURCES_DIR}/{}.sources", ctx.os_id),
                    content: Content::Text(text),
                    mode: 0o644,
                });
                if ctx.os_id == "ubuntu" {
                    if ctx.root.read(MAIN_LIST).ok().flatten().is_some() {
                        a.push(Action::Write {
                            path: MAIN_LIST.into(),
                            content: Content::Text(UBUNTU_MOVED_LIST.into()),
                            mode: 0o644,
                        });
                    }
                } else {
                    a.push(Action::Remove {
                        path: MAIN_LIST.into(),
                    });
                }
            } else {
                a.push(Action::Write {
                    path: MAIN_LIST.into(),
                    content: Content::Text(text),
                    mode: 0o644,
                });
            }
            changed_lists = true;
        }

        let repo_re = regex::Regex::new(&apt.add_apt_repo_match)
            .map_err(|e| StepError::Invalid(format!("apt.add_apt_repo_match: {e}")))?;
        // Entries sharing a file (legacy `apt_sources` entries without `filename` all go to
        // cloud_config_sources.list) each get their own keyring: `<stem>.gpg`, `<stem>-2.gpg`, …
        // (cloud-init writes them all to one file, the last key replacing the others).
        let mut keyrings_per_stem: std::collections::HashMap<String, usize> =
            std::collections::HashMap::new();
        for s in &apt.sources {
            let stem = s
                .filename
                .strip_suffix(".list")
                .unwrap_or(&s.filename)
                .to_owned();
            if stem.is_empty() || stem.contains('/') || stem.starts_with('.') {
                return Err(StepError::Invalid(format!(
                    "apt.sources.{}: bad file name `{}`",
                    s.name, s.filename
                )));
            }
            let source = s.source.as_deref();
            let keyring = if s.key.is_some() || source.is_some_and(|x| x.starts_with("ppa:")) {
                let n = keyrings_per_stem.entry(stem.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    format!("{KEYRING_DIR}/{stem}.gpg")
                } else {
                    format!("{KEYRING_DIR}/{stem}-{n}.gpg")
                }
            } else {
                format!("{KEYRING_DIR}/{stem}.gpg")
            };
            if let Some(ppa) = source.and_then(|x| x.strip_prefix("ppa:")) {
                if ctx.os_id != "ubuntu" {
                    return Err(StepError::Invalid(format!(
                        "apt.sources.{}: `ppa:` sources are built for Ubuntu, and this root is `{}`; use a `deb …` line instead",
                        s.name, ctx.os_id
                    )));
                }
                let (owner, name) = ppa.split_once('/').ok_or_else(|| {
                    StepError::Invalid(format!(
                        "apt.sources.{}: `ppa:{ppa}` is not ppa:owner/name",
                        s.name
                    ))
                })?;
                let rel = release.ok_or_else(|| {
                    StepError::Invalid("the root's /etc/os-release has no VERSION_CODENAME".into())
                })?;
                a.push(Action::FetchKey {
                    key: KeyFetch::Launchpad {
                        owner: owner.into(),
                        name: name.into(),
                        keyserver: schemas::userdata::model::DEFAULT_KEYSERVER.into(),
                    },
                    dest: keyring.clone(),
                    proxy: proxy.map(str::to_owned),
                });
                let line = format!(
                    "deb [signed-by={keyring}] https://ppa.launchpadcontent.net/{owner}/{name}/ubuntu {rel} main"
                );
                a.push(Action::Write {
                    path: format!("{SOURCES_DIR}/{stem}.list"),
                    content: Content::Text(format!("{line}\n")),
                    mode: 0o644,
                });
                changed_lists = true;
                continue;
            }
            if let Some(k) = &s.key {
                a.push(key_action(k, &keyring, proxy)?);
            }
            let Some(src) = source else { continue };
            if repo_re.is_match(src) {
                a.push(Action::Run {
                    cmd: crate::runner::Cmd::new([
                        crate::runner::programs::ADD_APT_REPOSITORY,
                        "--no-update",
                        src,
                    ]),
                });
                changed_lists = true;
                continue;
            }
            let key_file = s.key.as_ref().map(|_| keyring.as_str());
            let vars = [
                ("RELEASE", release),
                ("MIRROR", Some(primary.as_str())),
                ("PRIMARY", Some(primary.as_str())),
                ("SECURITY", Some(security.as_str())),
                ("KEY_FILE", key_file),
            ];
            let mut line = render(src, &vars)
                .map_err(|e| StepError::Invalid(format!("apt.sources.{}.source: {e}", s.name)))?;
            if let Some(k) = key_file {
                line = inject_signed_by(&line, k);
            }
            let (path, content) = if apt.deb822 {
                let stanza = to_deb822(&line)
                    .map_err(|e| StepError::Invalid(format!("apt.sources.{}: {e}", s.name)))?;
                let path = format!("{SOURCES_DIR}/{stem}.sources");
                (
                    path,
                    if s.append {
                        Content::AppendBlock(stanza)
                    } else {
                        Content::Text(stanza)
                    },
                )
            } else {
                let path = format!("{SOURCES_DIR}/{}", s.filename);
                (
                    path,
                    if s.append {
                        Content::AppendLine(line)
                    } else {
                        Content::Text(format!("{line}\n"))
                    },
                )
            };
            a.push(Action::Write {
                path,
                content,
                mode: 0o644,
            });
            changed_lists = true;
        }
        if changed_lists {
            st.update_once(&mut a, ud);
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testutil::*;
    use schemas::userdata::model::Source;

    const KEY: &str = include_str!("../../tests/fixtures/repo-key.asc");

    fn src(name: &str, line: &str, key: Option<KeySource>) -> Source {
        Source {
            name: name.into(),
            filename: format!("{name}.list"),
            source: Some(line.into()),
            key,
            append: true,
        }
    }

    #[test]
    fn render_vars_and_errors() {
        let v = [
            ("RELEASE", Some("bookworm")),
            ("KEY_FILE", None),
            ("MIRROR", Some("http://m")),
        ];
        assert_eq!(
            render("deb $MIRROR ${RELEASE} main", &v).unwrap(),
            "deb http://m bookworm main"
        );
        assert!(
            render("deb $NOPE x", &v)
                .unwrap_err()
                .contains("unknown variable")
        );
        assert!(
            render("deb [signed-by=$KEY_FILE] x", &v)
                .unwrap_err()
                .contains("no key")
        );
    }

    #[test]
    fn signed_by_injection() {
        assert_eq!(
            inject_signed_by("deb http://x y main", "/k.gpg"),
            "deb [signed-by=/k.gpg] http://x y main"
        );
        assert_eq!(
            inject_signed_by("deb [arch=amd64] http://x y main", "/k.gpg"),
            "deb [signed-by=/k.gpg arch=amd64] http://x y main"
        );
        assert_eq!(
            inject_signed_by("deb [signed-by=/o.gpg] http://x y main", "/k.gpg"),
            "deb [signed-by=/o.gpg] http://x y main"
        );
    }

    #[test]
    fn keyed_source_gets_own_keyring_signed_by_and_one_update() {
        let (d, ctx) = root();
        let mut ud = UserData::default();
        let key = Some(KeySource::Armored(KEY.into()));
        ud.apt.sources = vec![
            src("local", "deb http://127.0.0.1:8089 $RELEASE main", key),
            src("local2", "deb http://127.0.0.1:8090 feas main", None),
        ];
        let mut st = PlanState::default();
        let acts = AptSources.plan(&ud, &ctx, &mut st).unwrap();
        assert!(st.apt_updated);
        let cmds = apply(&ctx, "apt-sources", &acts);
        let update: Vec<_> = cmds
            .iter()
            .filter(|c| c.argv.contains(&"update".to_owned()))
            .collect();
        assert_eq!(update.len(), 1, "one apt-get update");
        let list = read(&d, "/etc/apt/sources.list.d/local.list");
        assert_eq!(
            list,
            "deb [signed-by=/etc/apt/keyrings/local.gpg] http://127.0.0.1:8089 bookworm main\n"
        );
        assert_eq!(mode(&d, "/etc/apt/keyrings/local.gpg"), 0o644);
        let ring = std::fs::read(d.path().join("etc/apt/keyrings/local.gpg")).unwrap();
        let fpr = include_str!("../../tests/fixtures/repo-key.fpr").trim();
        assert_eq!(crate::keys::check_fingerprint(&ring, fpr).unwrap(), fpr);
        assert_eq!(
            read(&d, "/etc/apt/sources.list.d/local2.list"),
            "deb http://127.0.0.1:8090 feas main\n"
        );
        // rerun: the same line is not appended twice
        let acts = AptSources
            .plan(&ud, &ctx, &mut PlanState::default())
            .unwrap();
        apply(&ctx, "apt-sources", &acts);
        assert_eq!(
            read(&d, "/etc/apt/sources.list.d/local2.list"),
            "deb http://127.0.0.1:8090 feas main\n"
        );
    }

    #[test]
    fn entries_sharing_a_file_accumulate_and_append_false_replaces() {
        let (d, ctx) = root();
        let mut ud = UserData::default();
        let mut a = src("a", "deb http://a x main", None);
        a.filename = "shared.list".into();
        let mut b = src("b", "deb http://b x main", None);
        b.filename = "shared.list".into();
        ud.apt.sources = vec![a, b];
        apply(
            &ctx,
            "s",
            &AptSources
                .plan(&ud, &ctx, &mut PlanState::default())
                .unwrap(),
        );
        assert_eq!(
            read(&d, "/etc/apt/sources.list.d/shared.list"),
            "deb http://a x main\ndeb http://b x main\n"
        );
        ud.apt.sources[1].append = false;
        apply(
            &ctx,
            "s",
            &AptSources
                .plan(&ud, &ctx, &mut PlanState::default())
                .unwrap(),
        );
        assert_eq!(
            read(&d, "/etc/apt/sources.list.d/shared.list"),
            "deb http://b x main\n"
        );
    }

    #[test]
    fn deb822_output() {
        assert_eq!(
            to_deb822("deb [signed-by=/k.gpg arch=amd64,arm64] http://x bookworm main contrib")
                .unwrap(),
            "Types: deb\nURIs: http://x\nSuites: bookworm\nComponents: main contrib\nSigned-By: /k.gpg\nArchitectures: amd64 arm64\n"
        );
        let (d, ctx) = root();
        let mut ud = UserData::default();
        ud.apt.deb822 = true;
        ud.apt.sources = vec![src(
            "local",
            "deb http://127.0.0.1:8089 $RELEASE main",
            Some(KeySource::Armored(KEY.into())),
        )];
        for _ in 0..2 {
            apply(
                &ctx,
                "s",
                &AptSources
                    .plan(&ud, &ctx, &mut PlanState::default())
                    .unwrap(),
            );
        }
        assert_eq!(
            read(&d, "/etc/apt/sources.list.d/local.sources"),
            "Types: deb\nURIs: http://127.0.0.1:8089\nSuites: bookworm\nComponents: main\nSigned-By: /etc/apt/keyrings/local.gpg\n"
        );
        assert!(!d.path().join("etc/apt/sources.list.d/local.list").exists());
    }

    #[test]
    fn ppa_on_debian_is_a_clear_error() {
        let (_d, ctx) = root();
        let mut ud = UserData::default();
        ud.apt.sources = vec![src("p", "ppa:owner/name", None)];
        let err = AptSources
            .plan(&ud, &ctx, &mut PlanState::default())
            .unwrap_err();
        assert!(err.to_string().contains("built for Ubuntu"), "{err}");
    }

    #[test]
    fn main_list_rendered_with_disabled_suites() {
        let (d, ctx) = root();
        let mut ud = UserData::default();
        ud.apt.preserve_sources_list = false;
        ud.apt.primary = vec![Mirror {
            arches: vec!["default".into()],
            uri: Some("http://mirror.example/debian".into()),
            ..Default::default()
        }];
        ud.apt.disable_suites = vec!["updates".into()];
        apply(
            &ctx,
            "s",
            &AptSources
                .plan(&ud, &ctx, &mut PlanState::default())
                .unwrap(),
        );
        let text = read(&d, "/etc/apt/sources.list");
        assert!(
            text.contains("deb http://mirror.example/debian bookworm main\n"),
            "{text}"
        );
        assert!(text.contains("# suite disabled by bootcfg: deb http://mirror.example/debian bookworm-updates main"), "{text}");
    }

    /// Issue 13, item 4: without `sources_list`, the main list is cloud-init's Debian template as
    /// cloud-init renders it (deb-src lines, backports, its comments), `/updates` before bullseye.
    #[test]
    fn default_debian_main_list_is_cloud_inits_template() {
        let (d, ctx) = root();
        let mut ud = UserData::default();
        ud.apt.preserve_sources_list = false;
        ud.apt.primary = vec![Mirror {
            arches: vec!["default".into()],
            uri: Some("http://m/debian".into()),
            ..Default::default()
        }];
        ud.apt.security = vec![Mirror {
            arches: vec!["default".into()],
            uri: Some("http://s/debian-security".into()),
            ..Default::default()
        }];
        let acts = AptSources
            .plan(&ud, &ctx, &mut PlanState::default())
            .unwrap();
        apply(&ctx, "s", &acts);
        let text = read(&d, "/etc/apt/sources.list");
        assert!(
            text.starts_with(
                "## Note, this file is written by cloud-init on first boot of an instance\n"
            ),
            "{text}"
        );
        let active: Vec<&str> = text.lines().filter(|l| l.starts_with("deb")).collect();
        assert_eq!(
            active,
            [
                "deb http://m/debian bookworm main",
                "deb-src http://m/debian bookworm main",
                "deb http://s/debian-security bookworm-security main",
                "deb-src http://s/debian-security bookworm-security main",
                "deb http://m/debian bookworm-updates main",
                "deb-src http://m/debian bookworm-updates main",
                "deb http://m/debian bookworm-backports main",
                "deb-src http://m/debian bookworm-backports main",
            ]
        );
        assert!(text.ends_with("deb-src http://m/debian bookworm-backports main\n"));
        // buster: the security suite is `buster/updates`
        std::fs::write(
            d.path().join("etc/os-release"),
            "ID=debian\nVERSION_CODENAME=buster\n",
        )
        .unwrap();
        let ctx = Ctx::new(
            crate::rootfs::Root::new(d.path()).unwrap(),
            "i-0abc",
            "web-1.example.com",
        );
        apply(
            &ctx,
            "s",
            &AptSources
                .plan(&ud, &ctx, &mut PlanState::default())
                .unwrap(),
        );
        let text = read(&d, "/etc/apt/sources.list");
        assert!(
            text.contains("deb http://s/debian-security buster/updates main\n"),
            "{text}"
        );
    }

    /// Issue 13, item 5: with no mirror in the user-data, `$MIRROR` and `$SECURITY` come from the
    /// image's cloud-init configuration (Debian's cloud.cfg: https://deb.debian.org/...), the
    /// last cloud.cfg.d file that sets them winning; without one, http://deb.debian.org.
    #[test]
    fn default_mirrors_come_from_the_images_cloud_cfg() {
        let (d, ctx) = root();
        let mut ud = UserData::default();
        ud.apt.sources = vec![src("m", "deb $MIRROR $RELEASE main", None)];
        ud.apt
            .sources
            .push(src("s", "deb $SECURITY $RELEASE-security main", None));
        let plan_lists = |ctx: &Ctx| {
            apply(
                ctx,
                "s",
                &AptSources
                    .plan(&ud, ctx, &mut PlanState::default())
                    .unwrap(),
            );
            (
                read(&d, "/etc/apt/sources.list.d/m.list"),
                read(&d, "/etc/apt/sources.list.d/s.list"),
            )
        };
        let (m, s) = plan_lists(&ctx);
        assert_eq!(m, "deb http://deb.debian.org/debian bookworm main\n");
        assert_eq!(
            s,
            "deb http://deb.debian.org/debian-security bookworm-security main\n"
        );
        std::fs::create_dir_all(d.path().join("etc/cloud/cloud.cfg.d")).unwrap();
        std::fs::write(
            d.path().join("etc/cloud/cloud.cfg"),
            "system_info:\n   package_mirrors:\n     - arches: [default]\n       failsafe:\n         primary: https://deb.debian.org/debian\n         security: https://deb.debian.org/debian-security\n",
        )
        .unwrap();
        std::fs::remove_file(d.path().join("etc/apt/sources.list.d/m.list")).unwrap();
        std::fs::remove_file(d.path().join("etc/apt/sources.list.d/s.list")).unwrap();
        let (m, s) = plan_lists(&ctx);
        assert_eq!(m, "deb https://deb.debian.org/debian bookworm main\n");
        assert_eq!(
            s,
            "deb https://deb.debian.org/debian-security bookworm-security main\n"
        );
        std::fs::write(
            d.path().join("etc/cloud/cloud.cfg.d/90-mirror.cfg"),
            "system_info:\n  package_mirrors:\n    - arches: [default]\n      failsafe: {primary: 'http://mirror.internal/debian', security: 'http://mirror.internal/debian-security'}\n",
        )
        .unwrap();
        std::fs::remove_file(d.path().join("etc/apt/sources.list.d/m.list")).unwrap();
        std::fs::remove_file(d.path().join("etc/apt/sources.list.d/s.list")).unwrap();
        let (m, _) = plan_lists(&ctx);
        assert_eq!(m, "deb http://mirror.internal/debian bookworm main\n");
    }

    /// Two keyed legacy `apt_sources` entries without `filename` share cloud_config_sources.list;
    /// each key gets its own keyring (one file held only the last key, and the first repository's
    /// line named a keyring without its key).
    #[test]
    fn keyed_entries_sharing_a_file_get_a_keyring_each() {
        let (d, ctx) = root();
        let mut ud = UserData::default();
        let mut a = src(
            "a",
            "deb http://a x main",
            Some(KeySource::Armored(KEY.into())),
        );
        a.filename = "cloud_config_sources.list".into();
        let mut b = src(
            "b",
            "deb http://b x main",
            Some(KeySource::Armored(KEY.into())),
        );
        b.filename = "cloud_config_sources.list".into();
        ud.apt.sources = vec![a, b];
        apply(
            &ctx,
            "s",
            &AptSources
                .plan(&ud, &ctx, &mut PlanState::default())
                .unwrap(),
        );
        assert_eq!(
            read(&d, "/etc/apt/sources.list.d/cloud_config_sources.list"),
            "deb [signed-by=/etc/apt/keyrings/cloud_config_sources.gpg] http://a x main\n\
             deb [signed-by=/etc/apt/keyrings/cloud_config_sources-2.gpg] http://b x main\n"
        );
        assert!(
            d.path()
                .join("etc/apt/keyrings/cloud_config_sources.gpg")
                .exists()
        );
        assert!(
            d.path()
                .join("etc/apt/keyrings/cloud_config_sources-2.gpg")
                .exists()
        );
    }

    fn mirrors_ud() -> UserData {
        let mut ud = UserData::default();
        ud.apt.preserve_sources_list = false;
        ud.apt.primary = vec![Mirror {
            arches: vec!["default".into()],
            uri: Some("http://mirror.example/debian".into()),
            ..Default::default()
        }];
        ud.apt.security = vec![Mirror {
            arches: vec!["default".into()],
            uri: Some("http://mirror.example/debian-security".into()),
            ..Default::default()
        }];
        ud
    }

    /// Issue 12: Debian 13's cloud-init (25.1) renders its deb822 template into debian.sources
    /// and deletes sources.list; the stanzas below are what it wrote in a trixie root (the peer
    /// test compares the whole file byte for byte).
    #[test]
    fn debian_13_default_main_list_is_deb822_in_debian_sources() {
        let (d, ctx) = root_of("ID=debian\nVERSION_ID=\"13\"\nVERSION_CODENAME=trixie\n");
        std::fs::write(
            d.path().join("etc/apt/sources.list"),
            "deb http://old/ trixie main\n",
        )
        .unwrap();
        assert!(deb822_main_list(&ctx));
        let acts = AptSources
            .plan(&mirrors_ud(), &ctx, &mut PlanState::default())
            .unwrap();
        apply(&ctx, "s", &acts);
        let text = read(&d, "/etc/apt/sources.list.d/debian.sources");
        assert!(
            text.starts_with("## Note, this file is written by cloud-init"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "Types: deb deb-src\nURIs: http://mirror.example/debian\n\
                 Suites: trixie trixie-updates trixie-backports\nComponents: main\n\
                 Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                 ## Major bug fix updates produced after the final release of the distribution.\n\
                 Types: deb deb-src\nURIs: http://mirror.example/debian-security\n\
                 Suites: trixie-security\nComponents: main\n\
                 Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            ),
            "{text}"
        );
        assert!(!d.path().join("etc/apt/sources.list").exists());
        // disable_suites edits the deb822 stanza
        let mut ud = mirrors_ud();
        ud.apt.disable_suites = vec!["backports".into()];
        let acts = AptSources
            .plan(&ud, &ctx, &mut PlanState::default())
            .unwrap();
        apply(&ctx, "s", &acts);
        let text = read(&d, "/etc/apt/sources.list.d/debian.sources");
        assert!(text.contains("\nSuites: trixie trixie-updates\n"), "{text}");
        assert!(
            !text.contains("\nSuites: trixie trixie-updates trixie-backports\n"),
            "{text}"
        );
    }

    /// A mirror's own key signs that mirror's stanza (cloud-init 25.1's `primary_key` chain);
    /// security without a key falls back to the primary's.
    #[test]
    fn deb822_main_list_signed_by_the_mirror_key() {
        let (d, ctx) = root_of("ID=debian\nVERSION_ID=\"13\"\nVERSION_CODENAME=trixie\n");
        let mut ud = mirrors_ud();
        ud.apt.primary[0].key = Some(KeySource::Armored(
            include_str!("../../tests/fixtures/repo-key.asc").into(),
        ));
        let acts = AptSources
            .plan(&ud, &ctx, &mut PlanState::default())
            .unwrap();
        apply(&ctx, "s", &acts);
        let text = read(&d, "/etc/apt/sources.list.d/debian.sources");
        assert_eq!(
            text.matches("Signed-By: /etc/apt/keyrings/primary.gpg\n")
                .count(),
            2,
            "{text}"
        );
        assert!(d.path().join("etc/apt/keyrings/primary.gpg").exists());
    }

    /// Debian 12: one-line sources.list (cloud-init 22.4's template) unless the image keeps its
    /// main list in debian.sources; then deb822 there, not a second list beside it.
    #[test]
    fn debian_12_main_list_follows_the_image() {
        let (d, ctx) = root_of("ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n");
        assert!(!deb822_main_list(&ctx));
        let acts = AptSources
            .plan(&mirrors_ud(), &ctx, &mut PlanState::default())
            .unwrap();
        apply(&ctx, "s", &acts);
        assert!(
            read(&d, "/etc/apt/sources.list")
                .contains("\ndeb http://mirror.example/debian bookworm main\n")
        );
        assert!(
            !d.path()
                .join("etc/apt/sources.list.d/debian.sources")
                .exists()
        );

        let (d, ctx) = root_of("ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n");
        std::fs::write(
            d.path().join("etc/apt/sources.list.d/debian.sources"),
            "Types: deb\n",
        )
        .unwrap();
        assert!(deb822_main_list(&ctx));
        let acts = AptSources
            .plan(&mirrors_ud(), &ctx, &mut PlanState::default())
            .unwrap();
        apply(&ctx, "s", &acts);
        assert!(
            read(&d, "/etc/apt/sources.list.d/debian.sources")
                .contains("\nSuites: bookworm bookworm-updates bookworm-backports\n")
        );
        assert!(!d.path().join("etc/apt/sources.list").exists());
    }

    #[test]
    fn deb822_releases() {
        for (osr, want) in [
            ("ID=debian\nVERSION_ID=\"11\"\n", false),
            ("ID=debian\nVERSION_ID=\"13\"\n", true),
            ("ID=debian\nVERSION_ID=\"14\"\n", true),
            ("ID=debian\n", false),
            ("ID=ubuntu\nVERSION_ID=\"22.04\"\n", false),
            ("ID=ubuntu\nVERSION_ID=\"24.04\"\n", true),
            ("ID=ubuntu\nVERSION_ID=\"25.10\"\n", true),
        ] {
            let (_d, ctx) = root_of(osr);
            assert_eq!(deb822_main_list(&ctx), want, "{osr}");
        }
    }

    /// Issue 13, item 6: a deb822 `sources_list` goes where apt reads deb822, and the old main
    /// list goes (cloud-init 22.4 wrote it into /etc/apt/sources.list, where apt rejects it).
    #[test]
    fn deb822_main_list_goes_to_distro_sources_and_the_old_list_goes() {
        let (d, ctx) = root();
        std::fs::create_dir_all(d.path().join("etc/apt")).unwrap();
        std::fs::write(
            d.path().join("etc/apt/sources.list"),
            "deb http://old/ bookworm main\n",
        )
        .unwrap();
        let mut ud = UserData::default();
        ud.apt.preserve_sources_list = false;
        ud.apt.primary = vec![Mirror {
            arches: vec!["default".into()],
            uri: Some("http://mirror.example/debian".into()),
            ..Default::default()
        }];
        ud.apt.sources_list = Some(
            "# main\nTypes: deb\nURIs: $MIRROR\nSuites: $RELEASE $RELEASE-updates $RELEASE-backports\nComponents: main\n\nTypes: deb\nURIs: $SECURITY\nSuites: $RELEASE-backports\nComponents: main\n".into(),
        );
        ud.apt.disable_suites = vec!["backports".into()];
        let acts = AptSources
            .plan(&ud, &ctx, &mut PlanState::default())
            .unwrap();
        apply(&ctx, "s", &acts);
        assert_eq!(
            read(&d, "/etc/apt/sources.list.d/debian.sources"),
            "# main\nTypes: deb\nURIs: http://mirror.example/debian\n\
             # suites disabled by bootcfg: Suites: bookworm bookworm-updates bookworm-backports\n\
             Suites: bookworm bookworm-updates\nComponents: main\n\n\
             ## Entry disabled by bootcfg, due to disable_suites\n\
             # disabled by bootcfg: Types: deb\n\
             # disabled by bootcfg: URIs: http://mirror.example/debian\n\
             # suites disabled by bootcfg: Suites: bookworm-backports\n\
             # disabled by bootcfg: Components: main\n"
        );
        assert!(!d.path().join("etc/apt/sources.list").exists());
        // One-line templates still go to sources.list.
        ud.apt.sources_list = Some("deb $MIRROR $RELEASE main\n".into());
        ud.apt.disable_suites.clear();
        let acts = AptSources
            .plan(&ud, &ctx, &mut PlanState::default())
            .unwrap();
        apply(&ctx, "s", &acts);
        assert_eq!(
            read(&d, "/etc/apt/sources.list"),
            "deb http://mirror.example/debian bookworm main\n"
        );
    }
}
