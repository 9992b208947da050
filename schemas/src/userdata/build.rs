//! From the located YAML tree to [`UserData`]: reads both syntaxes (cloud-init's `apt:` form and
//! the original RFC's top-level keys), checks every value, and reports each problem at its place.
//! When both syntaxes set the same thing differently, both keys are named in one error.

use super::checks::{self, Problem};
use super::keys;
use super::model::*;
use super::yaml::{Kind, Node};
use crate::diag::{Diagnostic, Severity};
use crate::oids::{self, ExtensionClass};
use std::collections::BTreeMap;

pub(crate) struct Ctx {
    /// Diagnostic file name for each part (index = `Node::part`).
    pub labels: Vec<String>,
    pub diags: Vec<Diagnostic>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn idx(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

impl Ctx {
    fn push(
        &mut self,
        sev: Severity,
        node: &Node,
        path: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let file = self.labels.get(node.part).cloned().unwrap_or_default();
        let d = match sev {
            Severity::Error => Diagnostic::error(file, path, message, fix),
            Severity::Warning => Diagnostic::warning(file, path, message, fix),
        };
        self.diags.push(d.at(node.loc));
    }
    pub fn err(
        &mut self,
        node: &Node,
        path: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(Severity::Error, node, path, message, fix);
    }
    pub fn warn(
        &mut self,
        node: &Node,
        path: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(Severity::Warning, node, path, message, fix);
    }
    fn problem(&mut self, node: &Node, path: &str, p: Problem) {
        self.err(node, path, p.message, p.fix);
    }
    fn check(&mut self, node: &Node, path: &str, r: checks::Check) -> bool {
        match r {
            Ok(()) => true,
            Err(p) => {
                self.problem(node, path, p);
                false
            }
        }
    }
    fn at(&self, node: &Node) -> String {
        format!(
            "{}:{}",
            self.labels.get(node.part).map(String::as_str).unwrap_or(""),
            node.loc.line
        )
    }

    fn type_err(&mut self, node: &Node, path: &str, want: &str, fix: &str) {
        self.err(
            node,
            path,
            format!("expected {want}, found {}", node.type_name()),
            fix,
        );
    }

    /// A mapping whose keys must be in `allowed`; unknown keys are errors with a hint.
    fn map<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        allowed: &[&str],
    ) -> Option<Vec<(&'n str, &'n Node)>> {
        let Kind::Map(pairs) = &node.kind else {
            self.type_err(
                node,
                path,
                "a mapping (`key: value` lines)",
                "indent the keys below this one",
            );
            return None;
        };
        let mut out: Vec<(&str, &Node)> = Vec::new();
        for (k, v) in pairs {
            let Some(key) = k.as_text() else {
                self.err(
                    k,
                    path,
                    "mapping keys must be plain strings",
                    "use a simple word as the key",
                );
                continue;
            };
            let kp = join(path, key);
            if out.iter().any(|(seen, _)| *seen == key) {
                self.err(
                    k,
                    &kp,
                    format!("duplicate key `{key}`"),
                    "keep only one of them",
                );
                continue;
            }
            if !allowed.is_empty() && !allowed.contains(&key) {
                let hint = checks::did_you_mean(key, allowed.iter().copied());
                let fix = match hint {
                    Some(h) => format!("did you mean `{h}`?"),
                    None => format!("allowed keys here: {}", allowed.join(", ")),
                };
                self.err(k, &kp, format!("unknown key `{key}`"), fix);
                continue;
            }
            out.push((key, v));
        }
        Some(out)
    }

    /// A mapping with free-form keys (names of sources, debconf sets, …).
    fn any_map<'n>(&mut self, node: &'n Node, path: &str) -> Option<Vec<(&'n str, &'n Node)>> {
        self.map(node, path, &[])
    }

    fn seq<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.kind {
            Kind::Seq(items) => Some(items),
            _ => {
                self.type_err(
                    node,
                    path,
                    "a list (`- item` lines)",
                    "write each item on its own `- ` line",
                );
                None
            }
        }
    }

    fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        let b = node.as_bool();
        if b.is_none() {
            self.type_err(
                node,
                path,
                "a boolean",
                "write `true` or `false` (unquoted)",
            );
        }
        b
    }

    /// Any scalar's text. Null is `None` without an error (an absent value).
    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.kind {
            Kind::Scalar { .. } => node.as_text().map(str::to_owned),
            _ => {
                self.type_err(
                    node,
                    path,
                    "a string",
                    "write a single value (quote it if it has `:` or `#`)",
                );
                None
            }
        }
    }

    /// A required, non-empty string.
    fn req_string(&mut self, node: &Node, path: &str) -> Option<String> {
        let s = self.string(node, path);
        if s.is_none() && node.is_null() {
            self.err(
                node,
                path,
                "the value is empty",
                "give a value or remove the key",
            );
        }
        s
    }

    fn strings(&mut self, node: &Node, path: &str) -> Vec<String> {
        let Some(items) = self.seq(node, path) else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| self.req_string(n, &idx(path, i)))
            .collect()
    }
}

/// A value that two keys (one per syntax, or two aliases) may set: the second, if different,
/// is an error naming both.
struct Slot<T> {
    val: Option<T>,
    from: Option<(String, String)>,
}

impl<T: PartialEq> Slot<T> {
    fn new() -> Self {
        Slot {
            val: None,
            from: None,
        }
    }
    fn set(&mut self, ctx: &mut Ctx, node: &Node, path: &str, v: T) {
        if let (Some(old), Some((p, at))) = (&self.val, &self.from) {
            if *old != v {
                ctx.err(
                    node,
                    path,
                    format!("`{path}` and `{p}` (at {at}) both set this, to different values"),
                    "keep only one of them (the `apt:` form is preferred)",
                );
            }
            return;
        }
        self.from = Some((path.to_owned(), ctx.at(node)));
        self.val = Some(v);
    }
}

struct Deferred<'n> {
    source: usize,
    node: &'n Node,
    path: String,
    /// The entry names a key (valid or not: an invalid one is reported on its own).
    keyed: bool,
}

/// A proxy key's value, with where it was given.
struct ProxyKey<'n> {
    url: String,
    node: &'n Node,
    path: String,
}

/// A key that shapes the main sources list (`sources_list`, `disable_suites`, the mirrors): it
/// does nothing while `preserve_sources_list` stays true, so that gets a warning.
struct MainListKey<'n> {
    node: &'n Node,
    path: String,
    /// Given in the RFC's top-level syntax (the fix then names `apt_preserve_sources_list`).
    legacy: bool,
    /// A mirror (`primary`, `security`, `apt_mirror…`): still used by sources lines with
    /// `$MIRROR`, `$PRIMARY` or `$SECURITY`.
    mirror: bool,
}

struct State<'n> {
    /// `proxy` / `apt_proxy` and `http_proxy` / `apt_http_proxy`: both become
    /// `Acquire::http::Proxy` lines.
    proxy: Option<ProxyKey<'n>>,
    http_proxy: Option<ProxyKey<'n>>,
    https: Slot<String>,
    ftp: Slot<String>,
    preserve: Slot<bool>,
    sources_list: Slot<String>,
    repo_match: Slot<String>,
    primary: Slot<Vec<Mirror>>,
    sources: Slot<Vec<Source>>,
    debconf: Slot<Vec<DebconfSet>>,
    source_lines: Vec<Deferred<'n>>,
    main_list: Vec<MainListKey<'n>>,
    /// Source entries with a key and no `source`: (index in the sources, entry node, path).
    key_only: Vec<(usize, &'n Node, String)>,
}

/// Build the model from the merged root mapping.
pub(crate) fn build(ctx: &mut Ctx, root: &Node) -> UserData {
    let mut ud = UserData::default();
    let Kind::Map(pairs) = &root.kind else {
        ctx.type_err(
            root,
            "",
            "a mapping of cloud-config keys",
            "start with top-level keys such as `packages:` or `apt:`",
        );
        return ud;
    };
    let mut st = State {
        proxy: None,
        http_proxy: None,
        https: Slot::new(),
        ftp: Slot::new(),
        preserve: Slot::new(),
        sources_list: Slot::new(),
        repo_match: Slot::new(),
        primary: Slot::new(),
        sources: Slot::new(),
        debconf: Slot::new(),
        source_lines: Vec::new(),
        main_list: Vec::new(),
        key_only: Vec::new(),
    };
    // With `apt:` in the user-data, cloud-init ignores the old top-level apt keys.
    let apt_node = pairs
        .iter()
        .find(|(k, v)| k.as_text() == Some("apt") && !v.is_null())
        .map(|(_, v)| v);
    let mut seen: Vec<&str> = Vec::new();
    let mut legacy_mirror: Option<(&Node, Mirror)> = None;
    for (k, v) in pairs {
        let Some(key) = k.as_text() else {
            ctx.err(
                k,
                "",
                "top-level keys must be plain strings",
                "use a cloud-config key such as `packages`",
            );
            continue;
        };
        if seen.contains(&key) {
            ctx.err(
                k,
                key,
                format!("duplicate key `{key}`"),
                "keep only one of them",
            );
            continue;
        }
        seen.push(key);
        let path = key;
        if let Some(apt_node) = apt_node
            && let Some((_, new)) = keys::LEGACY_APT.iter().find(|(old, _)| *old == key)
        {
            legacy_beside_apt(ctx, k, v, key, *new, apt_node);
            continue;
        }
        match key {
            "apt" => apt(ctx, &mut st, &mut ud, v),
            "apt_pipelining" => ud.apt.pipelining = pipelining(ctx, v, path),
            "packages" => {
                if let Some(items) = ctx.seq(v, path) {
                    for (i, item) in items.iter().enumerate() {
                        package_item(ctx, item, &idx(path, i), &mut ud.packages.install);
                    }
                }
            }
            "package_update" | "apt_update" => {
                ud.packages.update |= ctx.bool(v, path).unwrap_or(false)
            }
            "package_upgrade" | "apt_upgrade" => {
                ud.packages.upgrade |= ctx.bool(v, path).unwrap_or(false)
            }
            "package_reboot_if_required" | "apt_reboot_if_required" => {
                ud.packages.reboot_if_required |= ctx.bool(v, path).unwrap_or(false)
            }
            "puppet" => ud.puppet = puppet(ctx, v, path),
            // The original RFC's top-level keys.
            "apt_sources" => {
                let list = match &v.kind {
                    Kind::Map(_) => source_map(ctx, &mut st, v, path),
                    _ => {
                        let mut out = Vec::new();
                        if let Some(items) = ctx.seq(v, path) {
                            for (i, item) in items.iter().enumerate() {
                                let p = idx(path, i);
                                if let Some(s) = source_entry(
                                    ctx,
                                    &mut st,
                                    item,
                                    &p,
                                    &p,
                                    keys::LEGACY_SOURCES_FILE,
                                    out.len(),
                                ) {
                                    out.push(s);
                                }
                            }
                        }
                        out
                    }
                };
                st.sources.set(ctx, v, path, list);
            }
            "apt_conf" => {
                if let Some(items) = ctx.seq(v, path) {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(f) = conf_file(ctx, item, &idx(path, i)) {
                            ud.apt.conf_files.push(f);
                        }
                    }
                }
            }
            "debconf_selections" => {
                if let Some(lines) = ctx.req_string(v, path)
                    && debconf_lines(ctx, v, path, &lines)
                {
                    st.debconf.set(
                        ctx,
                        v,
                        path,
                        vec![DebconfSet {
                            name: "debconf_selections".into(),
                            lines,
                        }],
                    );
                }
            }
            "apt_mirror" => {
                if let Some(uri) = ctx.string(v, path).filter(|s| !s.is_empty())
                    && ctx.check(v, path, checks::mirror_uri(&uri))
                {
                    legacy_mirror.get_or_insert((v, default_mirror())).1.uri = Some(uri);
                    st.main_list.push(MainListKey {
                        node: k,
                        path: path.into(),
                        legacy: true,
                        mirror: true,
                    });
                }
            }
            "apt_mirror_search" => {
                let list = ctx.strings(v, path);
                for (i, u) in list.iter().enumerate() {
                    ctx.check(v, &idx(path, i), checks::mirror_uri(u));
                }
                if !list.is_empty() {
                    legacy_mirror.get_or_insert((v, default_mirror())).1.search = list;
                    st.main_list.push(MainListKey {
                        node: k,
                        path: path.into(),
                        legacy: true,
                        mirror: true,
                    });
                }
            }
            "apt_mirror_search_dns" => {
                if ctx.bool(v, path) == Some(true) {
                    legacy_mirror
                        .get_or_insert((v, default_mirror()))
                        .1
                        .search_dns = true;
                    search_dns_warning(ctx, v, path);
                }
            }
            "apt_proxy" => proxy(ctx, &mut st.proxy, v, path),
            "apt_http_proxy" => proxy(ctx, &mut st.http_proxy, v, path),
            // Each to its own protocol: cloud-init swaps these two (a bug since 2016); we do not.
            "apt_https_proxy" => slot_proxy(ctx, &mut st.https, v, path),
            "apt_ftp_proxy" => slot_proxy(ctx, &mut st.ftp, v, path),
            "apt_preserve_sources_list" => {
                if let Some(b) = ctx.bool(v, path) {
                    st.preserve.set(ctx, v, path, b);
                }
            }
            "apt_custom_sources_list" => sources_list(ctx, &mut st, k, v, path, true),
            "add_apt_repo_match" => repo_match(ctx, &mut st, v, path),
            _ if keys::NOT_HANDLED.contains(&key) => {
                ctx.warn(
                    k,
                    path,
                    "not handled by bootcfg (a cloud-init module bootcfg does not run); ignored",
                    "remove it if nothing else on the machine runs it",
                );
                ud.not_handled.push(key.to_owned());
            }
            _ => {
                let fix = match checks::did_you_mean(
                    key,
                    keys::TOP_LEVEL.iter().chain(keys::NOT_HANDLED).copied(),
                ) {
                    Some(h) => format!("did you mean `{h}`?"),
                    None => format!(
                        "bootcfg handles {}; check the spelling",
                        keys::TOP_LEVEL.join(", ")
                    ),
                };
                ctx.err(k, path, format!("unknown key `{key}`"), fix);
            }
        }
    }
    if let Some((node, m)) = legacy_mirror {
        st.primary.set(ctx, node, "apt_mirror", vec![m]);
    }

    // Settle the slots into the model.
    let (http, http_overridden) = match (st.proxy.take(), st.http_proxy.take()) {
        (Some(p), Some(h)) => {
            if p.url != h.url {
                ctx.warn(
                    h.node,
                    &h.path,
                    format!(
                        "`{}` and `{}` (at {}) set different http proxies: like cloud-init, bootcfg writes an `Acquire::http::Proxy` line for each, `{}` last, and apt uses the last one",
                        h.path,
                        p.path,
                        ctx.at(p.node),
                        h.path
                    ),
                    format!("remove `{}`, or give both the same proxy", p.path),
                );
            }
            (Some(h.url), Some(p.url))
        }
        (p, h) => (h.or(p).map(|x| x.url), None),
    };
    ud.apt.proxy = Proxy {
        http,
        https: st.https.val,
        ftp: st.ftp.val,
        http_overridden,
    };
    if let Some(b) = st.preserve.val {
        ud.apt.preserve_sources_list = b;
    }
    ud.apt.sources_list = st.sources_list.val;
    if let Some(m) = st.repo_match.val {
        ud.apt.add_apt_repo_match = m;
    }
    if let Some(p) = st.primary.val {
        ud.apt.primary = p;
    }
    ud.apt.sources = st.sources.val.unwrap_or_default();
    ud.apt.debconf_selections = st.debconf.val.unwrap_or_default();

    // Source lines are checked last: whether a line is an `add-apt-repository` shortcut depends
    // on `add_apt_repo_match`, which may come after the sources.
    let repo_re = RepoMatch::new(&ud.apt.add_apt_repo_match);
    for d in &st.source_lines {
        if let Some(src) = ud.apt.sources.get(d.source)
            && let Some(line) = &src.source
        {
            source_line(ctx, d.node, &d.path, line, d.keyed, &repo_re);
        }
    }
    no_op_warnings(ctx, &st.main_list, &st.key_only, &ud);
    ud
}

/// Settings that would do nothing get a warning naming the key and the fix:
/// - main-list settings (`sources_list`, `disable_suites`, mirrors) while
///   `preserve_sources_list` stays true (bootcfg's default, as in Debian's cloud-init); a mirror
///   still counts when a source line uses `$MIRROR`, `$PRIMARY` or `$SECURITY`;
/// - a source entry with a key and no `source` whose keyring no source line and no
///   `sources_list` references: bootcfg trusts a key only for the lines that name its keyring.
fn no_op_warnings(
    ctx: &mut Ctx,
    main_list: &[MainListKey<'_>],
    key_only: &[(usize, &Node, String)],
    ud: &UserData,
) {
    let apt = &ud.apt;
    if apt.preserve_sources_list {
        let mirror_used = apt
            .sources
            .iter()
            .filter_map(|s| s.source.as_deref())
            .any(|l| {
                checks::variables(l)
                    .iter()
                    .any(|(_, v)| matches!(v.as_str(), "MIRROR" | "PRIMARY" | "SECURITY"))
            });
        for m in main_list {
            if m.mirror && mirror_used {
                continue;
            }
            let preserve = if m.legacy {
                "apt_preserve_sources_list"
            } else {
                "apt.preserve_sources_list"
            };
            let also = if m.mirror {
                " and no source line uses `$MIRROR`, `$PRIMARY` or `$SECURITY`"
            } else {
                ""
            };
            ctx.warn(
                m.node,
                &m.path,
                format!(
                    "`{}` has no effect: `{preserve}` is true (the default, as in Debian's cloud-init), so the image's main sources list is kept{also}",
                    m.path
                ),
                format!(
                    "set `{preserve}: false` to render /etc/apt/sources.list (or a deb822 `sources_list`) from it, or remove `{}`",
                    m.path
                ),
            );
        }
    }
    for (i, node, path) in key_only {
        let Some(src) = apt.sources.get(*i) else {
            continue;
        };
        let stem = src.filename.strip_suffix(".list").unwrap_or(&src.filename);
        let keyring = format!("{KEYRING_DIR}/{stem}.gpg");
        let referenced = apt
            .sources
            .iter()
            .filter_map(|s| s.source.as_deref())
            .chain(apt.sources_list.as_deref())
            .any(|l| l.contains(&keyring));
        if !referenced {
            ctx.warn(
                node,
                path,
                format!(
                    "`{path}` has a key but no `source`: bootcfg writes it to {keyring}, which apt trusts only for source lines that say `signed-by={keyring}`, and no source here does (cloud-init would trust it for every repository)"
                ),
                format!(
                    "move the key into the entry whose `source` it signs (bootcfg then adds `signed-by`), or add `[signed-by={keyring}]` to the lines it signs"
                ),
            );
        }
    }
}

/// An old top-level apt key beside `apt:`. cloud-init (`convert_v2_to_v3_apt_format`) then
/// ignores it, but fails its apt module when the key's `apt:` counterpart is set to another
/// value; a null or empty old key it drops silently. bootcfg: ignored with a warning, or an
/// error naming both keys.
fn legacy_beside_apt(ctx: &mut Ctx, k: &Node, v: &Node, key: &str, new: Option<&str>, apt: &Node) {
    if v.is_null() || v.as_text() == Some("") {
        return;
    }
    let counterpart = match (&apt.kind, new) {
        (Kind::Map(pairs), Some(n)) => pairs
            .iter()
            .find(|(ak, av)| ak.as_text() == Some(n) && !av.is_null())
            .map(|(_, av)| (n, av)),
        _ => None,
    };
    match counterpart {
        Some((_, av)) if same_value(v, av) => {}
        Some((n, av)) => {
            let at = ctx.at(av);
            ctx.err(
                k,
                key,
                format!(
                    "`{key}` and `apt.{n}` (at {at}) set different values: with `apt:` present the old key is ignored, and cloud-init's apt module fails (\"Old and New apt format defined with unequal values\")"
                ),
                format!("remove `{key}` (keep `apt.{n}`)"),
            );
        }
        None => {
            let fix = match (key, new) {
                ("apt_mirror", _) => "move it under `apt:` as `primary: [{arches: [default], uri: …}]`".to_owned(),
                ("apt_mirror_search", _) => "move it under `apt:` as `primary: [{arches: [default], search: […]}]`".to_owned(),
                ("apt_mirror_search_dns", _) => "remove it (bootcfg does not search DNS for mirrors); give `apt.primary` a `uri`".to_owned(),
                (_, Some(n)) => format!("move it under `apt:` as `{n}`"),
                (_, None) => "move it under `apt:`".to_owned(),
            };
            ctx.warn(
                k,
                key,
                format!(
                    "`{key}` has no effect: the user-data has `apt:`, and then the old top-level apt keys are ignored (as cloud-init does)"
                ),
                fix,
            );
        }
    }
}

/// Two YAML values are the same (locations aside; booleans by value, other scalars by text).
fn same_value(a: &Node, b: &Node) -> bool {
    match (&a.kind, &b.kind) {
        (Kind::Scalar { .. }, Kind::Scalar { .. }) => match (a.as_bool(), b.as_bool()) {
            (Some(x), Some(y)) => x == y,
            _ => a.as_text() == b.as_text(),
        },
        (Kind::Seq(x), Kind::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (Kind::Map(x), Kind::Map(y)) => {
            x.len() == y.len()
                && x.iter().all(|(xk, xv)| {
                    y.iter().any(|(yk, yv)| {
                        xk.as_text().is_some() && xk.as_text() == yk.as_text() && same_value(xv, yv)
                    })
                })
        }
        _ => false,
    }
}

fn search_dns_warning(ctx: &mut Ctx, v: &Node, path: &str) {
    ctx.warn(
        v,
        path,
        "bootcfg does not search DNS for a mirror (`<distro>-mirror.<domain>`); this setting is ignored",
        "give the mirror as `uri` (or a `search` list of URIs)",
    );
}

fn default_mirror() -> Mirror {
    Mirror {
        arches: vec!["default".into()],
        ..Mirror::default()
    }
}

fn apt<'n>(ctx: &mut Ctx, st: &mut State<'n>, ud: &mut UserData, node: &'n Node) {
    let Some(entries) = ctx.map(node, "apt", keys::APT) else {
        return;
    };
    let key_node = |key: &str| match &node.kind {
        Kind::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map_or(node, |(k, _)| k),
        _ => node,
    };
    for (key, v) in entries {
        let path = join("apt", key);
        let path = path.as_str();
        match key {
            "preserve_sources_list" => {
                if let Some(b) = ctx.bool(v, path) {
                    st.preserve.set(ctx, v, path, b);
                }
            }
            "primary" | "security" => {
                let mut list = Vec::new();
                if let Some(items) = ctx.seq(v, path) {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(m) = mirror(ctx, item, &idx(path, i)) {
                            list.push(m);
                        }
                    }
                }
                if !list.is_empty() {
                    st.main_list.push(MainListKey { node: key_node(key), path: path.into(), legacy: false, mirror: true });
                }
                if key == "primary" {
                    st.primary.set(ctx, v, path, list);
                } else {
                    ud.apt.security = list;
                }
            }
            "sources_list" => {
                sources_list(ctx, st, key_node(key), v, path, false)
            }
            "disable_suites" => {
                let list = ctx.strings(v, path);
                for (i, s) in list.iter().enumerate() {
                    let p = idx(path, i);
                    if s.chars().any(char::is_whitespace) {
                        ctx.err(
                            v,
                            &p,
                            format!("suite `{s}` contains whitespace"),
                            "give one suite name per item, e.g. `$RELEASE-backports`",
                        );
                    } else {
                        ctx.check(v, &p, checks::known_variables(s, &["RELEASE"]));
                    }
                }
                if !list.is_empty() {
                    st.main_list.push(MainListKey { node: key_node(key), path: path.into(), legacy: false, mirror: false });
                }
                ud.apt.disable_suites = list;
            }
            "conf" => {
                // Written verbatim, as cloud-init does; empty means none (the file is removed).
                if let Some(c) = ctx.req_string(v, path).filter(|c| !c.is_empty()) {
                    ud.apt.conf = Some(c);
                }
            }
            "proxy" => proxy(ctx, &mut st.proxy, v, path),
            "http_proxy" => proxy(ctx, &mut st.http_proxy, v, path),
            "https_proxy" => slot_proxy(ctx, &mut st.https, v, path),
            "ftp_proxy" => slot_proxy(ctx, &mut st.ftp, v, path),
            "add_apt_repo_match" => repo_match(ctx, st, v, path),
            "debconf_selections" => {
                let Some(sets) = ctx.any_map(v, path) else {
                    continue;
                };
                let mut sorted = BTreeMap::new();
                for (name, n) in sets {
                    let p = join(path, name);
                    if let Some(lines) = ctx.req_string(n, &p)
                        && debconf_lines(ctx, n, &p, &lines)
                    {
                        sorted.insert(name.to_owned(), lines);
                    }
                }
                let list = sorted
                    .into_iter()
                    .map(|(name, lines)| DebconfSet { name, lines })
                    .collect();
                st.debconf.set(ctx, v, path, list);
            }
            "sources" => {
                let list = source_map(ctx, st, v, path);
                st.sources.set(ctx, v, path, list);
            }
            "sources_format" => match ctx.req_string(v, path).as_deref() {
                Some("list") => ud.apt.deb822 = false,
                Some("deb822") => ud.apt.deb822 = true,
                Some(other) => ctx.err(
                    v,
                    path,
                    format!("unknown sources format `{other}`"),
                    "use `list` (one-line `.list` files, cloud-init's format) or `deb822` (`.sources` files)",
                ),
                None => {}
            },
            "debconf_reconfigure" => ud.apt.debconf_reconfigure = ctx.bool(v, path).unwrap_or(false),
            _ => {}
        }
    }
}

fn proxy<'n>(ctx: &mut Ctx, slot: &mut Option<ProxyKey<'n>>, v: &'n Node, path: &str) {
    if let Some(url) = ctx.string(v, path).filter(|s| !s.is_empty())
        && ctx.check(v, path, checks::proxy_url(&url))
    {
        *slot = Some(ProxyKey {
            url,
            node: v,
            path: path.to_owned(),
        });
    }
}

fn slot_proxy(ctx: &mut Ctx, slot: &mut Slot<String>, v: &Node, path: &str) {
    if let Some(url) = ctx.string(v, path).filter(|s| !s.is_empty())
        && ctx.check(v, path, checks::proxy_url(&url))
    {
        slot.set(ctx, v, path, url);
    }
}

/// A main sources list template (`apt.sources_list`, `apt_custom_sources_list`, whose key is
/// `k`): checked, kept, and noted as a main-list setting.
fn sources_list<'n>(
    ctx: &mut Ctx,
    st: &mut State<'n>,
    k: &'n Node,
    v: &Node,
    path: &str,
    legacy: bool,
) {
    let Some(text) = ctx.req_string(v, path) else {
        return;
    };
    if text
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("## template:jinja")
        || text
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("## template: jinja")
    {
        ctx.err(
            v,
            path,
            "Jinja templates are not supported by bootcfg",
            "use `$MIRROR`, `$RELEASE`, `$PRIMARY`, `$SECURITY` variables instead of `{{ … }}`",
        );
        return;
    }
    if ctx.check(
        v,
        path,
        checks::known_variables(&text, checks::SOURCES_LIST_VARS),
    ) && ctx.check(v, path, checks::sources_list_text(&text))
    {
        st.sources_list.set(ctx, v, path, text);
        st.main_list.push(MainListKey {
            node: k,
            path: path.into(),
            legacy,
            mirror: false,
        });
    }
}

fn repo_match(ctx: &mut Ctx, st: &mut State<'_>, v: &Node, path: &str) {
    let Some(re) = ctx.req_string(v, path) else {
        return;
    };
    match regex::Regex::new(&re) {
        Ok(_) => st.repo_match.set(ctx, v, path, re),
        Err(e) => ctx.err(
            v,
            path,
            format!("not a valid regular expression ({e})"),
            "use a regex such as `^[\\w-]+:\\w`",
        ),
    }
}

fn pipelining(ctx: &mut Ctx, v: &Node, path: &str) -> Option<u8> {
    let fix = "use `false` (disable pipelining), a depth from 0 to 5, or `os` (apt's default)";
    if let Some(b) = v.as_bool() {
        if b {
            ctx.err(
                v,
                path,
                "`true` is not a pipelining setting (cloud-init ignores it with a warning)",
                fix,
            );
        }
        return if b { None } else { Some(0) };
    }
    if let Some(n) = v.as_int() {
        if (0..=5).contains(&n) {
            return Some(n as u8);
        }
        ctx.err(v, path, format!("pipeline depth {n} is out of range"), fix);
        return None;
    }
    match v.as_text().map(str::to_ascii_lowercase).as_deref() {
        Some("os" | "none" | "unchanged") => None,
        _ => {
            ctx.err(
                v,
                path,
                format!("expected `false`, 0 to 5 or `os`, found {}", v.type_name()),
                fix,
            );
            None
        }
    }
}

fn key_source(ctx: &mut Ctx, entries: &[(&str, &Node)], path: &str) -> Option<KeySource> {
    let get = |k: &str| entries.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let keyserver = match get("keyserver") {
        Some(n) => {
            let p = join(path, "keyserver");
            ctx.req_string(n, &p)
                .filter(|ks| ctx.check(n, &p, checks::keyserver(ks)))
        }
        None => None,
    };
    if let Some(n) = get("key") {
        let p = join(path, "key");
        let block = ctx.req_string(n, &p)?;
        if !ctx.check(n, &p, checks::pgp_public_key(&block)) {
            return None;
        }
        if let Some(kid) = get("keyid") {
            ctx.warn(
                kid,
                &join(path, "keyid"),
                "`keyid` is ignored because `key` is given",
                "remove one of `key` and `keyid`",
            );
        }
        return Some(KeySource::Armored(block));
    }
    if let Some(n) = get("keyid") {
        let p = join(path, "keyid");
        let id = ctx.req_string(n, &p)?;
        let plaintext = plaintext_keyserver(ctx, entries, path, keyserver.as_deref());
        match checks::keyid(&id) {
            Ok((id, short)) => {
                if short {
                    ctx.warn(
                        n,
                        &p,
                        format!("`{id}` is a short (8-digit) key id; anyone can make a key with the same short id"),
                        "give the full 40-digit fingerprint (`gpg --fingerprint`)",
                    );
                }
                if !plaintext {
                    return None;
                }
                return Some(KeySource::Keyid {
                    id,
                    keyserver: keyserver.unwrap_or_else(|| DEFAULT_KEYSERVER.to_owned()),
                });
            }
            Err(e) => ctx.problem(n, &p, e),
        }
        return None;
    }
    if let Some(n) = get(keys::PLAINTEXT_KEYSERVER_OPT_IN) {
        let p = join(path, keys::PLAINTEXT_KEYSERVER_OPT_IN);
        if ctx.bool(n, &p).is_some() {
            ctx.warn(
                n,
                &p,
                format!(
                    "`{}` is ignored without `keyid`",
                    keys::PLAINTEXT_KEYSERVER_OPT_IN
                ),
                format!("remove `{}`", keys::PLAINTEXT_KEYSERVER_OPT_IN),
            );
        }
    }
    if let Some(n) = get("keyserver") {
        ctx.warn(
            n,
            &join(path, "keyserver"),
            "`keyserver` is ignored without `keyid`",
            "add the key's fingerprint as `keyid`, or remove `keyserver`",
        );
    }
    None
}

/// The plaintext-keyserver gate of a `keyid` entry: a plaintext keyserver (`hkp://`,
/// `http://`) is an error unless the entry says `allow_plaintext_keyserver: true`, and a
/// warning when it does (anyone on the path can change the answer; the agent still keeps only
/// the certificate whose primary key is the `keyid`). `false` when the entry is refused.
fn plaintext_keyserver(
    ctx: &mut Ctx,
    entries: &[(&str, &Node)],
    path: &str,
    keyserver: Option<&str>,
) -> bool {
    let get = |k: &str| entries.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let opt_in = keys::PLAINTEXT_KEYSERVER_OPT_IN;
    let allowed = match get(opt_in) {
        Some(n) => ctx.bool(n, &join(path, opt_in)).map(|b| (b, n)),
        None => None,
    };
    let plaintext = keyserver.is_some_and(checks::keyserver_is_plaintext);
    match (plaintext, allowed) {
        (true, Some((true, _))) => {
            let n = get("keyserver").expect("a keyserver was given");
            ctx.warn(
                n,
                &join(path, "keyserver"),
                format!(
                    "`{}` is a plaintext keyserver (allowed by `{opt_in}: true`): anyone on the path can read and change its answer",
                    keyserver.unwrap_or_default()
                ),
                "use an hkps:// keyserver if it offers TLS; bootcfg keeps only the certificate whose primary key is the `keyid`",
            );
            true
        }
        (true, _) => {
            let n = get("keyserver").expect("a keyserver was given");
            ctx.err(
                n,
                &join(path, "keyserver"),
                format!(
                    "`{}` is a plaintext keyserver: anyone on the path could change the key apt will trust for this repository",
                    keyserver.unwrap_or_default()
                ),
                format!(
                    "use `hkps://<host>` (or the bare host name: HTTPS); if this keyserver has no TLS, add `{opt_in}: true` to this entry"
                ),
            );
            false
        }
        (false, Some((true, n))) => {
            ctx.warn(
                n,
                &join(path, opt_in),
                format!("`{opt_in}` is ignored: the keyserver is not plaintext"),
                format!("remove `{opt_in}`"),
            );
            true
        }
        _ => true,
    }
}

fn mirror(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Mirror> {
    let entries = ctx.map(node, path, keys::MIRROR)?;
    let mut m = Mirror::default();
    let mut has_arches = false;
    for (k, v) in &entries {
        let p = join(path, k);
        match *k {
            "arches" => {
                has_arches = true;
                m.arches = ctx.strings(v, &p);
                for (i, a) in m.arches.iter().enumerate() {
                    if !a
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        || a.is_empty()
                    {
                        ctx.err(
                            v,
                            &idx(&p, i),
                            format!("`{a}` is not a Debian architecture"),
                            "use e.g. `amd64`, `arm64` or `default`",
                        );
                    }
                }
            }
            "uri" => {
                if let Some(u) = ctx.req_string(v, &p)
                    && ctx.check(v, &p, checks::mirror_uri(&u))
                {
                    m.uri = Some(u);
                }
            }
            "search" => {
                m.search = ctx.strings(v, &p);
                for (i, u) in m.search.iter().enumerate() {
                    ctx.check(v, &idx(&p, i), checks::mirror_uri(u));
                }
            }
            "search_dns" => {
                m.search_dns = ctx.bool(v, &p).unwrap_or(false);
                if m.search_dns {
                    search_dns_warning(ctx, v, &p);
                }
            }
            _ => {}
        }
    }
    if !has_arches {
        ctx.err(
            node,
            path,
            "a mirror entry needs `arches`",
            "add `arches: [default]` (or a list such as `[amd64, arm64]`)",
        );
    }
    m.key = key_source(ctx, &entries, path);
    Some(m)
}

fn source_map<'n>(ctx: &mut Ctx, st: &mut State<'n>, node: &'n Node, path: &str) -> Vec<Source> {
    let mut out = Vec::new();
    let Some(entries) = ctx.any_map(node, path) else {
        return out;
    };
    for (name, v) in entries {
        let p = join(path, name);
        if let Some(s) = source_entry(ctx, st, v, &p, name, name, out.len()) {
            out.push(s);
        }
    }
    out
}

/// One source entry of either syntax. `default_filename` is the map key (`apt:` form) or
/// `cloud_config_sources.list` (RFC list form).
fn source_entry<'n>(
    ctx: &mut Ctx,
    st: &mut State<'n>,
    node: &'n Node,
    path: &str,
    name: &str,
    default_filename: &str,
    index: usize,
) -> Option<Source> {
    let entries = ctx.map(node, path, keys::SOURCE)?;
    if entries.is_empty() {
        ctx.err(
            node,
            path,
            "the source entry is empty",
            "give at least `source:` or a key",
        );
        return None;
    }
    let mut src = Source {
        name: name.to_owned(),
        filename: String::new(),
        source: None,
        key: None,
        append: true,
    };
    let mut filename = default_filename.to_owned();
    let mut filename_node = node;
    let mut ok = true;
    for (k, v) in &entries {
        let p = join(path, k);
        match *k {
            "source" => {
                src.source = ctx.req_string(v, &p);
                if src.source.is_some() {
                    let keyed = entries.iter().any(|(k, _)| *k == "key" || *k == "keyid");
                    st.source_lines.push(Deferred {
                        source: index,
                        node: v,
                        path: p,
                        keyed,
                    });
                }
            }
            "filename" => {
                if let Some(f) = ctx.req_string(v, &p) {
                    filename = f;
                    filename_node = v;
                }
            }
            "append" => src.append = ctx.bool(v, &p).unwrap_or(true),
            _ => {}
        }
    }
    let fpath = if std::ptr::eq(filename_node, node) {
        path.to_owned()
    } else {
        join(path, "filename")
    };
    match checks::sources_file_name(&filename) {
        Ok(f) => src.filename = f,
        Err(e) => {
            ctx.problem(filename_node, &fpath, e);
            ok = false;
        }
    }
    src.key = key_source(ctx, &entries, path);
    if ok && src.source.is_none() && src.key.is_some() {
        st.key_only.push((index, node, path.to_owned()));
    }
    ok.then_some(src)
}

/// `add_apt_repo_match` as source lines are checked against it. The regex is compiled only
/// when a line needs it: cloud-init's default, `^[\w-]+:\w`, is decided without it for a line
/// that starts with ASCII (compiling its Unicode `\w` was a large part of `bootcfg validate`'s
/// time, issue 16). A pattern that does not compile matches nothing.
struct RepoMatch<'a> {
    pattern: &'a str,
    re: std::cell::OnceCell<Option<regex::Regex>>,
}

impl<'a> RepoMatch<'a> {
    fn new(pattern: &'a str) -> Self {
        RepoMatch {
            pattern,
            re: std::cell::OnceCell::new(),
        }
    }

    fn is_match(&self, line: &str) -> bool {
        if self.pattern == DEFAULT_ADD_APT_REPO_MATCH
            && let Some(m) = default_repo_match(line)
        {
            return m;
        }
        self.re
            .get_or_init(|| regex::Regex::new(self.pattern).ok())
            .as_ref()
            .is_some_and(|re| re.is_match(line))
    }
}

/// Whether `^[\w-]+:\w` matches `line`, when ASCII decides it: the run of `[A-Za-z0-9_-]` at
/// the start ends at an ASCII character (Unicode `\w` and ASCII agree on ASCII), and the
/// character after a `:` there is ASCII too. `None` when a non-ASCII character decides.
fn default_repo_match(line: &str) -> Option<bool> {
    let b = line.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let n = b.iter().take_while(|&&c| word(c) || c == b'-').count();
    match b.get(n) {
        Some(c) if !c.is_ascii() => None,
        Some(b':') if n > 0 => match b.get(n + 1) {
            Some(&c) if word(c) => Some(true),
            Some(c) if !c.is_ascii() => None,
            _ => Some(false),
        },
        _ => Some(false),
    }
}

fn source_line(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    line: &str,
    has_key: bool,
    repo_re: &RepoMatch<'_>,
) {
    if !ctx.check(
        node,
        path,
        checks::known_variables(line, checks::SOURCE_VARS),
    ) {
        return;
    }
    if checks::variables(line).iter().any(|(_, v)| v == "KEY_FILE") && !has_key {
        ctx.err(
            node,
            path,
            "the source uses `$KEY_FILE` but the entry has no `key` or `keyid`",
            "add the repository's signing key as `key:` (armored) or `keyid:` (fingerprint)",
        );
        return;
    }
    if repo_re.is_match(line) {
        // An add-apt-repository shortcut such as `ppa:user/name`: one argv word.
        if line.trim().contains(char::is_whitespace)
            || line.starts_with('-')
            || line.chars().any(char::is_control)
        {
            ctx.err(
                node,
                path,
                format!(
                    "`{}` is not a valid repository shortcut",
                    checks::shown(line)
                ),
                "write it as `ppa:owner/name` on one line",
            );
        }
        return;
    }
    for l in line.lines() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if !(t.starts_with("deb ")
            || t.starts_with("deb-src ")
            || t.starts_with("deb\t")
            || t.starts_with("deb-src\t"))
            || l.chars().any(|c| c.is_control() && c != '\t')
        {
            ctx.err(
                node,
                path,
                format!("`{}` is not a one-line apt source", checks::shown(l)),
                "write `deb [signed-by=$KEY_FILE] http://host/path suite component…` (see sources.list(5)), or `ppa:owner/name`",
            );
            return;
        }
    }
}

fn conf_file(ctx: &mut Ctx, node: &Node, path: &str) -> Option<AptConfFile> {
    let entries = ctx.map(node, path, keys::CONF_FILE)?;
    let mut f = AptConfFile {
        filename: keys::LEGACY_CONF_FILE.to_owned(),
        content: String::new(),
    };
    let mut has_content = false;
    for (k, v) in entries {
        let p = join(path, k);
        match k {
            "filename" => {
                let name = ctx.req_string(v, &p)?;
                if !ctx.check(v, &p, checks::apt_conf_file_name(&name)) {
                    return None;
                }
                f.filename = name;
            }
            "content" => {
                f.content = ctx.req_string(v, &p)?;
                has_content = true;
            }
            _ => {}
        }
    }
    if !has_content {
        ctx.err(
            node,
            path,
            "an apt configuration file needs `content`",
            "add `content: |` with the apt.conf lines",
        );
        return None;
    }
    Some(f)
}

fn debconf_lines(ctx: &mut Ctx, node: &Node, path: &str, lines: &str) -> bool {
    for (i, l) in lines.lines().enumerate() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.split_whitespace().count() < 3 {
            ctx.err(
                node,
                path,
                // The line itself is not echoed: debconf answers may be passwords.
                format!(
                    "line {} of the debconf selections is not `package question type value`",
                    i + 1
                ),
                "write e.g. `tzdata tzdata/Areas select Europe` (see debconf-set-selections(1))",
            );
            return false;
        }
    }
    true
}

fn package_item(ctx: &mut Ctx, node: &Node, path: &str, out: &mut Vec<Package>) {
    match &node.kind {
        Kind::Scalar { .. } => {
            let Some(text) = ctx.req_string(node, path) else {
                return;
            };
            let (name, version) = match text.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (text, None),
            };
            push_package(ctx, node, path, name, version, out);
        }
        Kind::Seq(items) => {
            if items.is_empty() || items.len() > 2 {
                ctx.err(
                    node,
                    path,
                    format!("a package list item has {} elements", items.len()),
                    "write `[name, version]` or just `name`",
                );
                return;
            }
            let Some(name) = ctx.req_string(&items[0], &idx(path, 0)) else {
                return;
            };
            let version = match items.get(1) {
                Some(v) => Some(ctx.req_string(v, &idx(path, 1))).flatten(),
                None => None,
            };
            push_package(ctx, node, path, name, version, out);
        }
        Kind::Map(_) => {
            let Some(entries) = ctx.map(node, path, &["apt", "snap"]) else {
                return;
            };
            for (k, v) in entries {
                let p = join(path, k);
                if k == "snap" {
                    ctx.warn(
                        v,
                        &p,
                        "snap packages are not handled by bootcfg; ignored",
                        "install them another way, or use apt packages",
                    );
                    continue;
                }
                if let Some(items) = ctx.seq(v, &p) {
                    for (i, item) in items.iter().enumerate() {
                        if let Kind::Map(_) = item.kind {
                            ctx.type_err(
                                item,
                                &idx(&p, i),
                                "a package name or `[name, version]`",
                                "write `- name` or `- [name, version]`",
                            );
                            continue;
                        }
                        package_item(ctx, item, &idx(&p, i), out);
                    }
                }
            }
        }
    }
}

fn push_package(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    name: String,
    version: Option<String>,
    out: &mut Vec<Package>,
) {
    let mut ok = ctx.check(node, path, checks::package_name(&name));
    if let Some(v) = &version {
        ok &= ctx.check(node, path, checks::package_version(v));
    }
    if ok {
        out.push(Package { name, version });
    }
}

fn puppet(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Puppet> {
    if node.is_null() {
        return Some(Puppet::default());
    }
    let entries = ctx.map(node, path, keys::PUPPET)?;
    let mut p = Puppet::default();
    for (k, v) in entries {
        let kp = join(path, k);
        let kp = kp.as_str();
        match k {
            "install" => p.install = ctx.bool(v, kp).unwrap_or(true),
            "install_type" => match ctx.req_string(v, kp).as_deref() {
                Some("packages") => p.install_type = InstallType::Packages,
                Some("aio") => p.install_type = InstallType::Aio,
                Some(other) => ctx.err(v, kp, format!("unknown install_type `{other}`"), "use `packages` (Debian's packages) or `aio` (Puppet's all-in-one layout)"),
                None => {}
            },
            "package_name" => {
                if let Some(n) = ctx.req_string(v, kp)
                    && ctx.check(v, kp, checks::package_name(&n)) {
                        p.package_name = Some(n);
                    }
            }
            "version" => {
                if let Some(n) = ctx.req_string(v, kp)
                    && ctx.check(v, kp, checks::package_version(&n)) {
                        p.version = Some(n);
                    }
            }
            "conf" => puppet_conf(ctx, v, kp, &mut p),
            "conf_file" | "ssl_dir" | "csr_attributes_path" => {
                if let Some(s) = ctx.req_string(v, kp)
                    && ctx.check(v, kp, checks::absolute_path(&s)) {
                        match k {
                            "conf_file" => p.conf_file = Some(s),
                            "ssl_dir" => p.ssl_dir = Some(s),
                            _ => p.csr_attributes_path = Some(s),
                        }
                    }
            }
            "csr_attributes" => p.csr_attributes = csr_attributes(ctx, v, kp),
            "exec" => p.exec = ctx.bool(v, kp).unwrap_or(false),
            "exec_args" => {
                let args = match &v.kind {
                    Kind::Seq(_) => ctx.strings(v, kp),
                    _ => ctx.string(v, kp).map(|s| s.split_whitespace().map(str::to_owned).collect()).unwrap_or_default(),
                };
                if args.iter().all(|a| ctx.check(v, kp, checks::single_line(a))) {
                    p.exec_args = args;
                }
            }
            "start_service" => p.start_service = ctx.bool(v, kp).unwrap_or(true),
            "instance_identity" => p.instance_identity = ctx.bool(v, kp).unwrap_or(false),
            "collection" | "aio_install_url" | "cleanup" => ctx.warn(
                v,
                kp,
                "not handled by bootcfg: it never downloads and runs Puppet's install script; ignored",
                "install Puppet from an apt source (add it under `apt.sources`) and remove this key",
            ),
            _ => {}
        }
    }
    if !p.install && p.version.is_some() {
        ctx.warn(
            node,
            path,
            "`version` is ignored because `install: false`",
            "remove `version` or set `install: true`",
        );
    }
    Some(p)
}

fn puppet_conf(ctx: &mut Ctx, node: &Node, path: &str, p: &mut Puppet) {
    let Some(sections) = ctx.map(node, path, keys::PUPPET_CONF) else {
        return;
    };
    for (section, v) in sections {
        let sp = join(path, section);
        if section == "ca_cert" {
            if let Some(pem) = ctx.req_string(v, &sp)
                && ctx.check(v, &sp, checks::pem_certificate(&pem))
            {
                p.ca_cert = Some(pem);
            }
            continue;
        }
        let Some(settings) = ctx.any_map(v, &sp) else {
            continue;
        };
        let mut out = Vec::new();
        for (name, val) in settings {
            let np = join(&sp, name);
            if !ctx.check(val, &np, checks::puppet_setting(name)) {
                continue;
            }
            let Some(text) = ctx.req_string(val, &np) else {
                continue;
            };
            if ctx.check(val, &np, checks::single_line(&text)) {
                out.push((name.to_owned(), text));
            }
        }
        p.conf.push((section.to_owned(), out));
    }
}

fn csr_attributes(ctx: &mut Ctx, node: &Node, path: &str) -> Option<CsrAttributes> {
    let entries = ctx.map(node, path, &["custom_attributes", "extension_requests"])?;
    let mut out = CsrAttributes::default();
    for (k, v) in entries {
        let kp = join(path, k);
        let Some(attrs) = ctx.any_map(v, &kp) else {
            continue;
        };
        let mut map = BTreeMap::new();
        for (name, val) in attrs {
            let np = join(&kp, name);
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            {
                ctx.err(val, &np, format!("`{name}` is not an attribute name or OID"), "use a name such as `pp_preshared_key` or an OID such as `1.3.6.1.4.1.34380.1.1.4`");
                continue;
            }
            let name_ok = if k == "extension_requests" {
                extension_request_name(ctx, val, &np, name)
            } else {
                custom_attribute_name(ctx, val, &np, name)
            };
            if !name_ok {
                continue;
            }
            let Some(text) = ctx.req_string(val, &np) else {
                continue;
            };
            if ctx.check(val, &np, checks::single_line(&text)) {
                map.insert(name.to_owned(), text);
            }
        }
        if k == "custom_attributes" {
            out.custom_attributes = map;
        } else {
            out.extension_requests = map;
        }
    }
    Some(out)
}

/// An `extension_requests` name must be one Puppet puts in a CSR: a short name or an OID under
/// `ppRegCertExt`, `ppPrivCertExt` or `ppAuthCertExt` (the shared table, [`crate::oids`]).
fn extension_request_name(ctx: &mut Ctx, node: &Node, path: &str, name: &str) -> bool {
    match oids::classify_extension(name) {
        ExtensionClass::Allowed(_) | ExtensionClass::Generated(_) => true,
        ExtensionClass::Authorization(_) => {
            ctx.warn(
                node,
                path,
                format!(
                    "`{name}` is an authorization extension: the bootcfg signer never signs ppAuthCertExt requests"
                ),
                "remove it, or sign this certificate by hand on the Puppet CA",
            );
            true
        }
        ExtensionClass::Unknown => {
            let hint = oids::suggest(name)
                .map(|s| format!("did you mean `{s}`? Otherwise use"))
                .unwrap_or_else(|| "use".into());
            ctx.err(
                node,
                path,
                format!("`{name}` is not an extension Puppet accepts in a CSR"),
                format!(
                    "{hint} a Puppet short name such as `pp_role`, or an OID (no leading zeros) under {}, {} or {}",
                    oids::ARC_PP_REG.trim_end_matches('.'),
                    oids::ARC_PP_PRIV.trim_end_matches('.'),
                    oids::ARC_PP_AUTH.trim_end_matches('.'),
                ),
            );
            false
        }
    }
}

/// A `custom_attributes` name must not be one Puppet refuses (the extension request attributes,
/// by OID or by OpenSSL's short name) nor bootcfg's own instance identity attribute.
fn custom_attribute_name(ctx: &mut Ctx, node: &Node, path: &str, name: &str) -> bool {
    if [
        oids::EXTENSION_REQUEST,
        oids::MS_EXTENSION_REQUEST,
        "extReq",
        "msExtReq",
    ]
    .contains(&name)
    {
        ctx.err(
            node,
            path,
            format!(
                "`{name}` is the CSR's extension request attribute; Puppet refuses it as a custom attribute"
            ),
            "put extensions under `puppet.csr_attributes.extension_requests` instead",
        );
        return false;
    }
    if name == oids::INSTANCE_IDENTITY {
        ctx.err(
            node,
            path,
            format!(
                "`{name}` is bootcfg's instance identity attribute; it cannot be written by hand"
            ),
            "set `puppet.instance_identity: true` instead; bootcfg fetches the document itself",
        );
        return false;
    }
    true
}

#[cfg(test)]
mod repo_match_tests {
    use super::*;

    /// The default `add_apt_repo_match` decided without the regex agrees with the regex.
    #[test]
    fn the_default_pattern_agrees_with_its_regex() {
        use proptest::prelude::*;
        let re = regex::Regex::new(DEFAULT_ADD_APT_REPO_MATCH).unwrap();
        let m = RepoMatch::new(DEFAULT_ADD_APT_REPO_MATCH);
        for line in [
            "",
            ":",
            "a:",
            "a:b",
            "ppa:owner/name",
            "-:x",
            "a-b:_",
            "a:-",
            "deb http://x y z",
            "deb-src http://x y",
            "cloud-archive:foo",
            "é:x",
            "a:é",
            "aé:x",
            "a:\u{300}",
            " a:b",
            "a\n:b",
            "a:\nb",
        ] {
            assert_eq!(m.is_match(line), re.is_match(line), "{line:?}");
        }
        proptest!(|(line in "[a-z_:é\u{300} /-]{0,12}")| {
            prop_assert_eq!(m.is_match(&line), re.is_match(&line));
        });
        // another pattern is its regex; one that does not compile matches nothing
        assert!(RepoMatch::new("^x").is_match("xy") && !RepoMatch::new("^x").is_match("yx"));
        assert!(!RepoMatch::new("(").is_match("("));
    }
}
