//! The JSON Schema (draft-07, which yaml-language-server supports fully) of the user-data
//! bootcfg accepts. Written out rather than derived: the parser reads a located YAML tree, not
//! serde types, and the schema must describe YAML 1.1 booleans, the several `packages` forms and
//! the "not handled" cloud-init keys. A test keeps it in step with [`super::keys`].
//!
//! Use from an editor: put `# yaml-language-server: $schema=./bootcfg-userdata.schema.json`
//! after `#cloud-config`, with the file from `bootcfg schema > bootcfg-userdata.schema.json`.

use super::keys;
use serde_json::{Map, Value, json};

/// The schema as a JSON value.
pub fn json_schema() -> Value {
    // PyYAML (YAML 1.1) reads yes/no/on/off as booleans; yaml-language-server (YAML 1.2) sees strings.
    let boolean = json!({
        "anyOf": [
            {"type": "boolean"},
            {"type": "string", "pattern": "^([Yy][Ee][Ss]|[Nn][Oo]|[Oo][Nn]|[Oo][Ff][Ff]|[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$"}
        ]
    });
    let scalar = json!({"type": ["string", "number", "boolean"]});
    let string_list = json!({"type": "array", "items": {"type": "string"}});
    let key_fields = json!({
        "keyid": {"type": ["string", "number"], "description": "Key fingerprint (40 hex digits, spaces allowed) fetched from `keyserver`. 8-digit short ids are accepted with a warning."},
        "key": {"type": "string", "description": "ASCII-armored OpenPGP public key block (`gpg --armor --export <fingerprint>`)."},
        "keyserver": {"type": "string", "description": "Host name (HTTPS) or hkps:// / https:// URL; default keyserver.ubuntu.com. Plaintext hkp:// and http:// URLs are refused unless `allow_plaintext_keyserver: true`."},
        "allow_plaintext_keyserver": {"$ref": "#/definitions/boolean", "description": "bootcfg extension: allow `keyid` to be fetched from a plaintext (hkp:// or http://) `keyserver`, with a warning. Default false. bootcfg keeps only the certificate whose primary key is `keyid` either way."}
    });
    let with_keys = |mut props: Value| {
        props
            .as_object_mut()
            .expect("object")
            .extend(key_fields.as_object().expect("object").clone());
        props
    };
    let source = json!({
        "type": "object",
        "additionalProperties": false,
        "minProperties": 1,
        "properties": with_keys(json!({
            "source": {"type": "string", "description": "A sources.list line (`deb [signed-by=$KEY_FILE] URL suite component…`) or a repository shortcut such as `ppa:owner/name`. Variables: $RELEASE, $MIRROR, $PRIMARY, $SECURITY, $KEY_FILE."},
            "filename": {"type": "string", "description": "Bare file name under /etc/apt/sources.list.d/ (`.list` is appended if missing)."},
            "append": {"$ref": "#/definitions/boolean", "description": "Append to the file (default true) rather than replace it."}
        }))
    });
    let mirror = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["arches"],
        "properties": with_keys(json!({
            "arches": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "dpkg architectures this entry is for, or `default`."},
            "uri": {"type": "string", "format": "uri"},
            "search": {"type": "array", "items": {"type": "string"}},
            "search_dns": {"$ref": "#/definitions/boolean"}
        }))
    });
    let package = json!({
        "anyOf": [
            {"type": "string", "description": "`name` or `name=version`"},
            {"type": "array", "items": {"type": ["string", "number"]}, "minItems": 1, "maxItems": 2, "description": "[name, version]"},
            {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "apt": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": ["string", "number"]}, "minItems": 1, "maxItems": 2}]}},
                    "snap": {"description": "Not handled by bootcfg (ignored with a warning)."}
                }
            }
        ]
    });
    let conf_section = json!({
        "type": "object",
        "propertyNames": {"pattern": "^[a-z0-9_]+$"},
        "additionalProperties": {"type": ["string", "number", "boolean"]},
        "description": "puppet.conf settings; values are single-line. `certname` may hold %i (instance id) and %f (FQDN)."
    });
    let attrs = json!({"type": "object", "additionalProperties": scalar});

    let apt = json!({
        "type": "object",
        "additionalProperties": false,
        "description": "cloud-init's apt configuration (cc_apt_configure).",
        "properties": {
            "preserve_sources_list": {"$ref": "#/definitions/boolean", "description": "Keep the image's main sources list (default true, as in Debian's cloud-init); while true, sources_list, disable_suites and mirrors no source line uses do nothing (a warning)."},
            "primary": {"type": "array", "items": mirror, "minItems": 1},
            "security": {"type": "array", "items": mirror, "minItems": 1},
            "sources_list": {"type": "string", "description": "Template for the main sources list ($MIRROR, $RELEASE, $PRIMARY, $SECURITY): one-line entries (written to /etc/apt/sources.list) or deb822 stanzas (written to /etc/apt/sources.list.d/<distro>.sources, and /etc/apt/sources.list is removed), not both."},
            "disable_suites": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "conf": {"type": "string", "description": "apt.conf text written verbatim to /etc/apt/apt.conf.d/94cloud-init-config."},
            "proxy": {"type": "string", "description": "HTTP proxy URL. With http_proxy too, both `Acquire::http::Proxy` lines are written (proxy's first) and apt uses http_proxy's, as with cloud-init."},
            "http_proxy": {"type": "string"},
            "https_proxy": {"type": "string"},
            "ftp_proxy": {"type": "string"},
            "add_apt_repo_match": {"type": "string", "description": "Regex for sources handed to add-apt-repository; default `^[\\w-]+:\\w`."},
            "debconf_selections": {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1},
            "sources": {"type": "object", "additionalProperties": source},
            "sources_format": {"enum": ["list", "deb822"], "description": "bootcfg extension: write `sources` as one-line `.list` files (default, cloud-init's format) or deb822 `.sources` files."},
            "debconf_reconfigure": {"$ref": "#/definitions/boolean", "description": "bootcfg extension: dpkg-reconfigure already-installed packages named by debconf_selections (cloud-init only warns). Default false."}
        }
    });
    let puppet = json!({
        "type": ["object", "null"],
        "additionalProperties": false,
        "properties": {
            "install": {"$ref": "#/definitions/boolean"},
            "install_type": {"enum": ["packages", "aio"]},
            "package_name": {"type": "string"},
            "version": {"type": ["string", "number"]},
            "conf": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "main": conf_section, "server": conf_section, "agent": conf_section, "user": conf_section,
                    "ca_cert": {"type": "string", "description": "PEM CA certificate, written to <ssl_dir>/certs/ca.pem."}
                }
            },
            "conf_file": {"type": "string"},
            "ssl_dir": {"type": "string"},
            "csr_attributes_path": {"type": "string"},
            "csr_attributes": {
                "type": "object",
                "additionalProperties": false,
                "properties": {"custom_attributes": attrs, "extension_requests": attrs}
            },
            "exec": {"$ref": "#/definitions/boolean"},
            "exec_args": {"anyOf": [{"type": "string"}, string_list]},
            "start_service": {"$ref": "#/definitions/boolean"},
            "instance_identity": {"$ref": "#/definitions/boolean", "description": format!("bootcfg extension: Put the AWS-signed instance identity document (IMDS dynamic/instance-identity/rsa2048) into the CSR as custom attribute {}; the bootcfg signer requires it. EC2 only. Default false.", crate::oids::INSTANCE_IDENTITY)},
            "collection": {"description": "Not handled by bootcfg."},
            "aio_install_url": {"description": "Not handled by bootcfg."},
            "cleanup": {"description": "Not handled by bootcfg."}
        }
    });
    let legacy_source = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": with_keys(json!({
            "source": {"type": "string"},
            "filename": {"type": "string", "description": "Default cloud_config_sources.list (cloud-init's name)."}
        }))
    });

    let mut props = Map::new();
    let mut put = |k: &str, v: Value| {
        props.insert(k.to_owned(), v);
    };
    put("apt", apt);
    put(
        "apt_pipelining",
        json!({"anyOf": [{"$ref": "#/definitions/boolean"}, {"type": "integer", "minimum": 0, "maximum": 5}, {"enum": ["os", "none", "unchanged"]}]}),
    );
    put("packages", json!({"type": "array", "items": package}));
    for k in [
        "package_update",
        "package_upgrade",
        "package_reboot_if_required",
        "apt_update",
        "apt_upgrade",
        "apt_reboot_if_required",
        "apt_preserve_sources_list",
        "apt_mirror_search_dns",
    ] {
        put(k, json!({"$ref": "#/definitions/boolean"}));
    }
    put("puppet", puppet);
    put(
        "apt_sources",
        json!({"anyOf": [{"type": "array", "items": legacy_source}, {"type": "object", "additionalProperties": source}], "description": "RFC syntax: list of sources; default file cloud_config_sources.list. Ignored (a warning) when the user-data has `apt:`."}),
    );
    put(
        "apt_conf",
        json!({
            "type": "array",
            "description": "RFC syntax: apt.conf.d files; default filename 00-boot-conf.",
            "items": {"type": "object", "additionalProperties": false, "required": ["content"], "properties": {"filename": {"type": "string"}, "content": {"type": "string"}}}
        }),
    );
    put(
        "debconf_selections",
        json!({"type": "string", "description": "RFC syntax: debconf-set-selections lines (honoured by bootcfg; cloud-init ignores it)."}),
    );
    put("apt_mirror", json!({"type": "string"}));
    put("apt_mirror_search", string_list.clone());
    for k in [
        "apt_proxy",
        "apt_http_proxy",
        "apt_https_proxy",
        "apt_ftp_proxy",
        "apt_custom_sources_list",
        "add_apt_repo_match",
    ] {
        put(k, json!({"type": "string"}));
    }
    for k in ["merge_how", "merge_type"] {
        put(
            k,
            json!({"description": "Merger specification of a MIME part. Only the default behaviour is supported (`dict(replace)+list()+str()`: a later part's top-level key replaces the earlier one whole); other specifications are refused, and in the first part it has no effect (a warning)."}),
        );
    }
    for k in keys::NOT_HANDLED {
        put(
            k,
            json!({"description": "A cloud-init module key that bootcfg does not handle (ignored with a warning)."}),
        );
    }

    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://example.invalid/bootcfg/userdata.schema.json",
        "title": "bootcfg cloud-config user-data",
        "description": "The cloud-config keys bootcfg handles (apt, apt_pipelining, packages, puppet and the original RFC's apt_* keys). Other cloud-init keys are allowed and ignored; anything else is a typo.",
        "type": ["object", "null"],
        "additionalProperties": false,
        "properties": props,
        "definitions": {"boolean": boolean}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props<'a>(v: &'a Value, path: &[&str]) -> Vec<&'a str> {
        let mut v = v;
        for p in path {
            v = &v[p];
        }
        v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn schema_lists_exactly_the_known_keys() {
        let s = json_schema();
        let mut top: Vec<&str> = props(&s, &[]);
        let mut want: Vec<&str> = keys::TOP_LEVEL
            .iter()
            .chain(keys::NOT_HANDLED)
            .copied()
            .collect();
        top.sort();
        want.sort();
        assert_eq!(top, want);
        let mut apt = props(&s, &["properties", "apt"]);
        apt.sort();
        let mut want = keys::APT.to_vec();
        want.sort();
        assert_eq!(apt, want);
        let mut puppet = props(&s, &["properties", "puppet"]);
        puppet.sort();
        let mut want = keys::PUPPET.to_vec();
        want.sort();
        assert_eq!(puppet, want);
        let mut src = props(
            &s,
            &[
                "properties",
                "apt",
                "properties",
                "sources",
                "additionalProperties",
            ],
        );
        src.sort();
        let mut want = keys::SOURCE.to_vec();
        want.sort();
        assert_eq!(src, want);
    }

    #[test]
    fn instance_identity_is_described_as_a_bootcfg_extension() {
        let s = json_schema();
        let d = s["properties"]["puppet"]["properties"]["instance_identity"]["description"]
            .as_str()
            .unwrap();
        assert!(d.starts_with("bootcfg extension:"), "{d}");
        assert!(d.contains(crate::oids::INSTANCE_IDENTITY), "{d}");
        assert!(d.contains("EC2 only"), "{d}");
    }
}
