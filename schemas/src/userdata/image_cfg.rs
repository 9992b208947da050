//! The image's own cloud-init configuration, where bootcfg needs it to do what cloud-init does:
//! the default mirrors (`system_info.package_mirrors`) that `$MIRROR`, `$PRIMARY` and `$SECURITY`
//! mean when the user-data names none.
//!
//! cloud-init reads `/etc/cloud/cloud.cfg`, then `/etc/cloud/cloud.cfg.d/*.cfg` in lexical order,
//! and merges them; a list (as `package_mirrors` is) is replaced whole by a later file, so the last
//! file that sets `system_info.package_mirrors` wins. Its entry for the architecture (else the one
//! for `default`) gives `failsafe` mirrors, which a resolvable `search` entry overrides
//! (`Distro._get_package_mirror_info`). Search templates with `%(ec2_region)s`-style fields need
//! the datasource's region and are skipped.

use serde_json::Value;

/// The default mirrors an image's cloud-init configuration gives for one architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageMirrors {
    pub primary: Option<String>,
    pub security: Option<String>,
    /// `search.primary`, in order (to be checked for a resolvable host).
    pub search_primary: Vec<String>,
    /// `search.security`, in order.
    pub search_security: Vec<String>,
}

/// `system_info.package_mirrors` for `arch`, from the configuration files' texts in cloud-init's
/// order (`cloud.cfg` first). Files that are not YAML mappings are skipped, as cloud-init skips
/// them with a warning. `None` when no file sets it or no entry matches.
pub fn package_mirrors(files: &[&str], arch: &str) -> Option<ImageMirrors> {
    let mut list: Option<Vec<Value>> = None;
    for text in files {
        let Ok(v) = serde_yaml_ng::from_str::<Value>(text) else {
            continue;
        };
        if let Some(l) = v
            .get("system_info")
            .and_then(|s| s.get("package_mirrors"))
            .and_then(Value::as_array)
        {
            list = Some(l.clone());
        }
    }
    let list = list?;
    let arches = |e: &Value| -> Vec<String> {
        e.get("arches")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let entry = list
        .iter()
        .find(|e| arches(e).iter().any(|a| a == arch))
        .or_else(|| {
            list.iter()
                .find(|e| arches(e).iter().any(|a| a == "default"))
        })?;
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let search = |k: &str| -> Vec<String> {
        entry
            .get("search")
            .and_then(|s| s.get(k))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter(|t| !t.contains("%("))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    Some(ImageMirrors {
        primary: s(entry.get("failsafe").and_then(|f| f.get("primary"))),
        security: s(entry.get("failsafe").and_then(|f| f.get("security"))),
        search_primary: search("primary"),
        search_security: search("security"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "system_info:\n   distro: debian\n   package_mirrors:\n     - arches: [default]\n       failsafe:\n         primary: https://deb.debian.org/debian\n         security: https://deb.debian.org/debian-security\n";

    #[test]
    fn debian_cloud_cfg_failsafe() {
        let m = package_mirrors(&[DEBIAN], "amd64").unwrap();
        assert_eq!(m.primary.as_deref(), Some("https://deb.debian.org/debian"));
        assert_eq!(
            m.security.as_deref(),
            Some("https://deb.debian.org/debian-security")
        );
        assert!(m.search_primary.is_empty());
    }

    #[test]
    fn later_file_replaces_the_list_and_arch_entry_wins_over_default() {
        let later = "system_info:\n  package_mirrors:\n    - arches: [i386, amd64]\n      failsafe: {primary: 'http://a/ubuntu', security: 'http://s/ubuntu'}\n      search:\n        primary: ['http://%(ec2_region)s.ec2.archive.ubuntu.com/ubuntu/', 'http://m/ubuntu']\n        security: []\n    - arches: [default]\n      failsafe: {primary: 'http://ports/ubuntu-ports', security: 'http://ports/ubuntu-ports'}\n";
        let m = package_mirrors(&[DEBIAN, "not: [yaml", later], "amd64").unwrap();
        assert_eq!(m.primary.as_deref(), Some("http://a/ubuntu"));
        assert_eq!(m.search_primary, ["http://m/ubuntu"]);
        let m = package_mirrors(&[DEBIAN, later], "arm64").unwrap();
        assert_eq!(m.primary.as_deref(), Some("http://ports/ubuntu-ports"));
    }

    #[test]
    fn nothing_configured() {
        assert_eq!(package_mirrors(&["users: [default]\n"], "amd64"), None);
        assert_eq!(package_mirrors(&[], "amd64"), None);
    }
}
