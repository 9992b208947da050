//! The key names bootcfg knows, in one place: what it handles, what belongs to cloud-init
//! modules it does not run ("not handled", a warning), and therefore what is a typo (an error).

/// Top-level keys bootcfg handles: cloud-init's current syntax, then the RFC's older keys.
pub const TOP_LEVEL: &[&str] = &[
    "apt",
    "apt_pipelining",
    "packages",
    "package_update",
    "package_upgrade",
    "package_reboot_if_required",
    "puppet",
    // The original boot-time configuration RFC's keys (still found in the wild).
    "apt_update",
    "apt_upgrade",
    "apt_reboot_if_required",
    "apt_sources",
    "apt_conf",
    "debconf_selections",
    "apt_mirror",
    "apt_mirror_search",
    "apt_mirror_search_dns",
    "apt_proxy",
    "apt_http_proxy",
    "apt_https_proxy",
    "apt_ftp_proxy",
    "apt_preserve_sources_list",
    "apt_custom_sources_list",
    "add_apt_repo_match",
    "merge_how",
    "merge_type",
];

/// Keys under `apt:`.
pub const APT: &[&str] = &[
    "preserve_sources_list",
    "primary",
    "security",
    "sources_list",
    "disable_suites",
    "conf",
    "proxy",
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "add_apt_repo_match",
    "debconf_selections",
    "sources",
    // bootcfg extensions (cloud-init's schema does not know them; it warns and goes on).
    "sources_format",
    "debconf_reconfigure",
];

/// Keys of an `apt.sources` entry (and of an `apt_sources` list item).
pub const SOURCE: &[&str] = &[
    "source",
    "keyid",
    "key",
    "keyserver",
    "filename",
    "append",
    // bootcfg extension (cloud-init's schema does not know it; it warns and goes on).
    PLAINTEXT_KEYSERVER_OPT_IN,
];
/// Keys of an `apt.primary`/`apt.security` entry.
pub const MIRROR: &[&str] = &[
    "arches",
    "uri",
    "search",
    "search_dns",
    "keyid",
    "key",
    "keyserver",
    // bootcfg extension (cloud-init's schema does not know it; it warns and goes on).
    PLAINTEXT_KEYSERVER_OPT_IN,
];
/// The key of a source or mirror entry that lets its `keyid` be fetched from a plaintext
/// keyserver (`hkp://`, `http://`); without it such a keyserver is an error.
pub const PLAINTEXT_KEYSERVER_OPT_IN: &str = "allow_plaintext_keyserver";
/// Keys of an `apt_conf` list item.
pub const CONF_FILE: &[&str] = &["filename", "content"];
/// Keys under `puppet:`.
pub const PUPPET: &[&str] = &[
    "install",
    "install_type",
    "package_name",
    "version",
    "conf",
    "conf_file",
    "ssl_dir",
    "csr_attributes_path",
    "csr_attributes",
    "exec",
    "exec_args",
    "start_service",
    "collection",
    "aio_install_url",
    "cleanup",
    // bootcfg extension (cloud-init's schema does not know it; it warns and goes on).
    "instance_identity",
];
/// Keys under `puppet.conf:`: puppet.conf sections plus the CA certificate.
pub const PUPPET_CONF: &[&str] = &["main", "server", "agent", "user", "ca_cert"];

/// Default file of RFC-syntax `apt_sources` list entries without `filename`: cloud-init's
/// (`convert_v1_to_v2_apt_format`), so entries it wrote on an image and bootcfg's share one file.
pub const LEGACY_SOURCES_FILE: &str = "cloud_config_sources.list";

/// The old top-level apt keys cloud-init converts into `apt:` (`convert_v2_to_v3_apt_format`),
/// each with its `apt:` counterpart (`None`: the mirror keys, which become `apt.primary`).
/// When the user-data has `apt:`, cloud-init ignores them all; one whose counterpart is set to
/// another value makes its apt module fail. bootcfg maps `apt_https_proxy`/`apt_ftp_proxy` to
/// their own protocols (cloud-init swaps them).
pub const LEGACY_APT: &[(&str, Option<&str>)] = &[
    ("apt_sources", Some("sources")),
    ("apt_mirror", None),
    ("apt_mirror_search", None),
    ("apt_mirror_search_dns", None),
    ("apt_proxy", Some("proxy")),
    ("apt_http_proxy", Some("http_proxy")),
    ("apt_https_proxy", Some("https_proxy")),
    ("apt_ftp_proxy", Some("ftp_proxy")),
    ("apt_preserve_sources_list", Some("preserve_sources_list")),
    ("apt_custom_sources_list", Some("sources_list")),
    ("add_apt_repo_match", Some("add_apt_repo_match")),
];
/// Default file name of RFC-syntax `apt_conf` items without `filename`.
pub const LEGACY_CONF_FILE: &str = "00-boot-conf";

/// Top-level keys of cloud-init modules (and base settings) bootcfg does not handle. Taken from
/// cloud-init's `schema-cloud-config-v1.json` and base config reference.
pub const NOT_HANDLED: &[&str] = &[
    "allow_public_ssh_keys",
    "ansible",
    "apk_repos",
    "apt_get_command",
    "apt_get_upgrade_subcommand",
    "apt_get_wrapper",
    "authkey_hash",
    "autoinstall",
    "bootcmd",
    "byobu_by_default",
    "ca-certs",
    "ca_certs",
    "chef",
    "chpasswd",
    "cloud_config_modules",
    "cloud_final_modules",
    "cloud_init_modules",
    "create_hostname_file",
    "datasource",
    "datasource_list",
    "def_log_file",
    "device_aliases",
    "disable_ec2_metadata",
    "disable_root",
    "disable_root_opts",
    "disk_setup",
    "drivers",
    "fan",
    "final_message",
    "fqdn",
    "fs_setup",
    "groups",
    "growpart",
    "grub-dpkg",
    "grub_dpkg",
    "hostname",
    "hotplug",
    "keyboard",
    "landscape",
    "launch-index",
    "locale",
    "locale_configfile",
    "log_cfgs",
    "lxd",
    "manage_etc_hosts",
    "manage_resolv_conf",
    "manual_cache_clean",
    "mcollective",
    "mount_default_fields",
    "mounts",
    "network",
    "no_ssh_fingerprints",
    "ntp",
    "output",
    "package_mirrors",
    "password",
    "phone_home",
    "power_state",
    "prefer_fqdn_over_hostname",
    "preserve_hostname",
    "random_seed",
    "reporting",
    "resize_rootfs",
    "resize_rootfs_tmp",
    "resolv_conf",
    "rh_subscription",
    "rsyslog",
    "runcmd",
    "salt_minion",
    "snap",
    "snappy",
    "spacewalk",
    "ssh",
    "ssh_authorized_keys",
    "ssh_deletekeys",
    "ssh_fp_console_blacklist",
    "ssh_genkeytypes",
    "ssh_import_id",
    "ssh_key_console_blacklist",
    "ssh_keys",
    "ssh_publish_hostkeys",
    "ssh_pwauth",
    "ssh_quiet_keygen",
    "ssh_svcname",
    "swap",
    "syslog_fix_perms",
    "system_info",
    "timezone",
    "ubuntu_advantage",
    "ubuntu_drivers",
    "ubuntu_pro",
    "unverified_modules",
    "updates",
    "user",
    "users",
    "vendor_data",
    "warnings",
    "wireguard",
    "write_files",
    "yum_repo_dir",
    "yum_repos",
    "zypper",
];
