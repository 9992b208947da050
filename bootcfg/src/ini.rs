//! A small, order-preserving INI merge for `puppet.conf`.
//!
//! Deliberate difference from cloud-init (which parses with Python's ConfigParser, rewrites the
//! whole file with keys sorted, drops comments, and renames the original to `puppet.conf.old`):
//! bootcfg changes only the lines of the keys it sets. Comments, blank lines, other keys, other
//! sections and their order stay as they were. A key that is already set (its last occurrence
//! in its section) has its value replaced in place, keeping its indentation; a new key goes after
//! the last key of its section; a new section is appended at the end. Keys before any section
//! header count as `[main]` (as in Puppet) when there is no explicit `[main]`.

/// Merge `settings` (section → ordered key/value pairs) into `current` (the existing text).
pub fn merge(current: &str, settings: &[(String, Vec<(String, String)>)]) -> String {
    let mut lines: Vec<String> = current.lines().map(str::to_owned).collect();
    for (section, pairs) in settings {
        for (key, value) in pairs {
            set(&mut lines, section, key, value);
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn section_header(line: &str) -> Option<&str> {
    let t = line.trim();
    t.strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

fn key_of(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if t.starts_with('#') || t.starts_with(';') || t.starts_with('[') {
        return None;
    }
    let (k, _) = t.split_once('=')?;
    Some(k.trim())
}

/// Which section each line belongs to ("" for lines before the first header).
fn sections_of(lines: &[String]) -> Vec<String> {
    let mut cur = String::new();
    lines
        .iter()
        .map(|l| {
            if let Some(s) = section_header(l) {
                cur = s.to_owned();
            }
            cur.clone()
        })
        .collect()
}

fn set(lines: &mut Vec<String>, section: &str, key: &str, value: &str) {
    let secs = sections_of(lines);
    let has_explicit = lines.iter().any(|l| section_header(l) == Some(section));
    let in_section = |i: usize| -> bool {
        secs[i] == section || (section == "main" && !has_explicit && secs[i].is_empty())
    };
    // 1. replace the last occurrence in place
    if let Some(i) = (0..lines.len())
        .rev()
        .find(|&i| in_section(i) && key_of(&lines[i]).is_some_and(|k| k.eq_ignore_ascii_case(key)))
    {
        let indent: String = lines[i].chars().take_while(|c| c.is_whitespace()).collect();
        lines[i] = format!("{indent}{key} = {value}");
        return;
    }
    // 2. after the last key (or the header) of the section
    let anchor = (0..lines.len())
        .rev()
        .find(|&i| in_section(i) && key_of(&lines[i]).is_some())
        .or_else(|| {
            lines
                .iter()
                .position(|l| section_header(l) == Some(section))
        });
    if let Some(i) = anchor
        && (section_header(&lines[i]).is_none() || has_explicit)
    {
        lines.insert(i + 1, format!("{key} = {value}"));
        return;
    }
    // 3. a new section at the end
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    if !lines.is_empty() {
        lines.push(String::new());
    }
    lines.push(format!("[{section}]"));
    lines.push(format!("{key} = {value}"));
}

#[cfg(test)]
mod tests {
    use super::merge;

    fn s(sec: &str, kv: &[(&str, &str)]) -> (String, Vec<(String, String)>) {
        (
            sec.to_owned(),
            kv.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn keeps_comments_order_and_other_sections() {
        let cur = "# Debian's puppet.conf\n[main]\nssldir = /var/lib/puppet/ssl\n  # keep me\nvardir = /var/cache/puppet\n\n[server]\nvardir = /var/lib/puppetserver\n";
        let out = merge(
            cur,
            &[
                s("main", &[("server", "puppet.example"), ("vardir", "/x")]),
                s("agent", &[("certname", "abc")]),
            ],
        );
        assert_eq!(
            out,
            "# Debian's puppet.conf\n[main]\nssldir = /var/lib/puppet/ssl\n  # keep me\nvardir = /x\nserver = puppet.example\n\n[server]\nvardir = /var/lib/puppetserver\n\n[agent]\ncertname = abc\n"
        );
    }

    #[test]
    fn merge_is_idempotent() {
        let cur = "[main]\na = 1\n";
        let set = [
            s("main", &[("a", "2"), ("b", "3")]),
            s("agent", &[("x", "y")]),
        ];
        let once = merge(cur, &set);
        assert_eq!(merge(&once, &set), once);
    }

    #[test]
    fn empty_file_gets_sections() {
        assert_eq!(
            merge("", &[s("main", &[("server", "ps")])]),
            "[main]\nserver = ps\n"
        );
    }

    #[test]
    fn keys_before_any_header_are_main() {
        assert_eq!(
            merge("server = old\n", &[s("main", &[("server", "new")])]),
            "server = new\n"
        );
    }

    #[test]
    fn empty_section_gets_key_after_header() {
        assert_eq!(
            merge("[agent]\n# c\n[main]\n", &[s("agent", &[("k", "v")])]),
            "[agent]\nk = v\n# c\n[main]\n"
        );
    }
}
