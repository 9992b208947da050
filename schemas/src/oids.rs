//! The one table of certificate OIDs bootcfg knows, and the one extension policy built on it.
//!
//! Used by the conductor (which extensions a launch may register), the signer (which CSR
//! extensions a registration allows, and which are never signed) and user-data validation
//! (which `csr_attributes` names Puppet will accept). Keeping one table means that whatever the
//! conductor accepts, the signer resolves to the same OID (tested below).
//!
//! Puppet's arcs (`lib/puppet/ssl/oids.rb`): `ppRegCertExt` 1.3.6.1.4.1.34380.1.1 (registered
//! short names), `ppPrivCertExt` 1.3.6.1.4.1.34380.1.2 (site-private), `ppAuthCertExt`
//! 1.3.6.1.4.1.34380.1.3 (authorization on the Puppet server: never auto-signed).

/// PKCS#9 challengePassword: the one-time secret.
pub const CHALLENGE_PASSWORD: &str = "1.2.840.113549.1.9.7";
/// PKCS#9 extensionRequest.
pub const EXTENSION_REQUEST: &str = "1.2.840.113549.1.9.14";
/// Microsoft's extensionRequest (Puppet refuses it as a custom attribute too).
pub const MS_EXTENSION_REQUEST: &str = "1.3.6.1.4.1.311.2.1.14";
/// X.509 subjectAltName.
pub const SUBJECT_ALT_NAME: &str = "2.5.29.17";

/// Puppet's registered extensions (`ppRegCertExt`), with a trailing dot.
pub const ARC_PP_REG: &str = "1.3.6.1.4.1.34380.1.1.";
/// Site-private extensions (`ppPrivCertExt`), with a trailing dot.
pub const ARC_PP_PRIV: &str = "1.3.6.1.4.1.34380.1.2.";
/// Authorization extensions (`ppAuthCertExt`), with a trailing dot: never signed automatically.
pub const ARC_PP_AUTH: &str = "1.3.6.1.4.1.34380.1.3.";
pub const PP_UUID: &str = "1.3.6.1.4.1.34380.1.1.1";
pub const PP_INSTANCE_ID: &str = "1.3.6.1.4.1.34380.1.1.2";

/// bootcfg's CSR attribute for the EC2 instance identity proof: the body of IMDS
/// `dynamic/instance-identity/rsa2048` (base64 of the AWS-signed PKCS#7, whitespace removed).
/// An *attribute*, not an extension request, so it never reaches the certificate.
/// A UUID-derived OID (ITU-T X.667, arc `2.25`), which needs no registration: the UUID is
/// `1ee1e3b3-5066-4209-93b4-4f76e2528617`.
pub const INSTANCE_IDENTITY: &str = "2.25.41049724980421354458196321678071596567";

/// bootcfg's CSR attribute naming the enrollment group a CSR asks to join (see
/// [`crate::group`]): one value, the group's name. An *attribute*, so it never reaches the
/// certificate. UUID-derived like [`INSTANCE_IDENTITY`]: `106fdf53-88c0-4ff8-8dd4-21f9e45d5e32` (below 2^127, as every OID arc the signer reads must be).
/// The agent writes it as a `csr_attributes.yaml` custom attribute (`conductor group user-data`).
pub const ENROLLMENT_GROUP: &str = "2.25.21848522479457575584705804499840491058";

/// Puppet's short names: `ppRegCertExt` 1–26 and the `ppAuthCertExt` names.
pub const PUPPET_SHORT_NAMES: &[(&str, &str)] = &[
    ("pp_uuid", "1.3.6.1.4.1.34380.1.1.1"),
    ("pp_instance_id", "1.3.6.1.4.1.34380.1.1.2"),
    ("pp_image_name", "1.3.6.1.4.1.34380.1.1.3"),
    ("pp_preshared_key", "1.3.6.1.4.1.34380.1.1.4"),
    ("pp_cost_center", "1.3.6.1.4.1.34380.1.1.5"),
    ("pp_product", "1.3.6.1.4.1.34380.1.1.6"),
    ("pp_project", "1.3.6.1.4.1.34380.1.1.7"),
    ("pp_application", "1.3.6.1.4.1.34380.1.1.8"),
    ("pp_service", "1.3.6.1.4.1.34380.1.1.9"),
    ("pp_employee", "1.3.6.1.4.1.34380.1.1.10"),
    ("pp_created_by", "1.3.6.1.4.1.34380.1.1.11"),
    ("pp_environment", "1.3.6.1.4.1.34380.1.1.12"),
    ("pp_role", "1.3.6.1.4.1.34380.1.1.13"),
    ("pp_software_version", "1.3.6.1.4.1.34380.1.1.14"),
    ("pp_department", "1.3.6.1.4.1.34380.1.1.15"),
    ("pp_cluster", "1.3.6.1.4.1.34380.1.1.16"),
    ("pp_provisioner", "1.3.6.1.4.1.34380.1.1.17"),
    ("pp_region", "1.3.6.1.4.1.34380.1.1.18"),
    ("pp_datacenter", "1.3.6.1.4.1.34380.1.1.19"),
    ("pp_zone", "1.3.6.1.4.1.34380.1.1.20"),
    ("pp_network", "1.3.6.1.4.1.34380.1.1.21"),
    ("pp_securitypolicy", "1.3.6.1.4.1.34380.1.1.22"),
    ("pp_cloudplatform", "1.3.6.1.4.1.34380.1.1.23"),
    ("pp_apptier", "1.3.6.1.4.1.34380.1.1.24"),
    ("pp_hostname", "1.3.6.1.4.1.34380.1.1.25"),
    ("pp_owner", "1.3.6.1.4.1.34380.1.1.26"),
    ("pp_authorization", "1.3.6.1.4.1.34380.1.3.1"),
    ("pp_auth_auto_renew", "1.3.6.1.4.1.34380.1.3.2"),
    ("pp_auth_role", "1.3.6.1.4.1.34380.1.3.13"),
    ("pp_cli_auth", "1.3.6.1.4.1.34380.1.3.39"),
];

/// The short name of an OID, if Puppet has one.
pub fn short_name(oid: &str) -> Option<&'static str> {
    PUPPET_SHORT_NAMES
        .iter()
        .find(|(_, o)| *o == oid)
        .map(|(n, _)| *n)
}

/// `oid` as `pp_role (1.3.6.1.4.1.34380.1.1.13)`, or just the OID.
pub fn label(oid: &str) -> String {
    short_name(oid).map_or_else(|| oid.to_owned(), |n| format!("{n} ({oid})"))
}

/// A dotted OID exactly as a DER decoder prints it: at least two arcs, decimal digits, no
/// leading zeros, first arc 0–2 (and second < 40 under 0 and 1). Anything else could name the
/// same OID in two spellings, and two spellings would compare unequal.
pub fn is_canonical_dotted(s: &str) -> bool {
    let arcs: Vec<&str> = s.split('.').collect();
    if arcs.len() < 2 {
        return false;
    }
    let canonical = |a: &&str| {
        !a.is_empty()
            && a.len() <= 39
            && a.bytes().all(|b| b.is_ascii_digit())
            && (a.len() == 1 || !a.starts_with('0'))
    };
    if !arcs.iter().all(canonical) {
        return false;
    }
    match arcs[0] {
        "0" | "1" => arcs[1].parse::<u32>().is_ok_and(|n| n < 40),
        "2" => true,
        _ => false,
    }
}

/// A short name or a dotted OID as a dotted OID (no policy applied).
pub fn resolve(name: &str) -> Option<String> {
    if let Some((_, oid)) = PUPPET_SHORT_NAMES.iter().find(|(n, _)| *n == name) {
        return Some((*oid).to_owned());
    }
    is_canonical_dotted(name).then(|| name.to_owned())
}

/// How an extension request name is treated by the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionClass {
    /// Registrable: a `ppRegCertExt` or `ppPrivCertExt` OID other than the two below.
    Allowed(String),
    /// `pp_uuid` / `pp_instance_id`: set for every instance from the certname and instance id.
    Generated(String),
    /// `ppAuthCertExt`: never signed automatically.
    Authorization(String),
    /// Not an extension Puppet will put in a CSR (unknown short name, other arc, bad spelling).
    Unknown,
}

/// Classify an extension request name (short name or dotted OID).
pub fn classify_extension(name: &str) -> ExtensionClass {
    let Some(oid) = resolve(name) else {
        return ExtensionClass::Unknown;
    };
    if oid == PP_UUID || oid == PP_INSTANCE_ID {
        ExtensionClass::Generated(oid)
    } else if oid.starts_with(ARC_PP_AUTH) {
        ExtensionClass::Authorization(oid)
    } else if oid.starts_with(ARC_PP_REG) || oid.starts_with(ARC_PP_PRIV) {
        ExtensionClass::Allowed(oid)
    } else {
        ExtensionClass::Unknown
    }
}

/// The OID a registration's `allowed_extensions` key stands for, if the policy lets a
/// registration allow it. The conductor registers only keys for which this is `Some`, and the
/// signer matches CSR extensions with it: one function, so the two cannot disagree.
pub fn registrable_extension(name: &str) -> Option<String> {
    match classify_extension(name) {
        ExtensionClass::Allowed(oid) => Some(oid),
        _ => None,
    }
}

/// The conductor's check of one configured extension: the name must be registrable and the
/// value a short single line. `Err((message, fix))`.
pub fn check_extension_request(name: &str, value: &str) -> Result<String, (String, String)> {
    let oid = match classify_extension(name) {
        ExtensionClass::Allowed(oid) => oid,
        ExtensionClass::Generated(_) => {
            return Err((
                format!("`{name}` is set by the conductor for every instance"),
                "remove it".into(),
            ));
        }
        ExtensionClass::Authorization(_) => {
            return Err((
                format!(
                    "`{name}` grants authorization on the Puppet server and is never auto-signed"
                ),
                "remove it; grant such certificates by hand".into(),
            ));
        }
        ExtensionClass::Unknown => {
            let hint = suggest(name)
                .map(|s| format!("did you mean `{s}`? Otherwise use"))
                .unwrap_or_else(|| "use".into());
            return Err((
                format!("`{name}` is not an extension request the signer can allow"),
                format!(
                    "{hint} a Puppet short name such as `pp_role`, or an OID written without leading zeros under {}* or {}*",
                    ARC_PP_REG, ARC_PP_PRIV
                ),
            ));
        }
    };
    if value.is_empty() || value.len() > 255 || value.chars().any(char::is_control) {
        return Err((
            format!("the value of `{name}` must be 1-255 characters on one line"),
            "write a short single-line value".into(),
        ));
    }
    Ok(oid)
}

/// The closest short name, for a did-you-mean hint.
pub fn suggest(name: &str) -> Option<&'static str> {
    PUPPET_SHORT_NAMES
        .iter()
        .map(|(n, _)| (*n, strsim::jaro_winkler(name, n)))
        .filter(|(_, s)| *s > 0.85)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name the conductor accepts resolves, for the signer, to the same OID; nothing the
    /// conductor refuses is resolvable by the signer.
    #[test]
    fn whatever_the_conductor_accepts_the_signer_resolves() {
        let mut names: Vec<String> = PUPPET_SHORT_NAMES
            .iter()
            .flat_map(|(n, o)| [(*n).to_owned(), (*o).to_owned()])
            .collect();
        for arc in [
            "1.3.6.1.4.1.34380.1.",
            "1.3.6.1.4.1.34380.1.1.",
            "1.3.6.1.4.1.34380.1.2.",
        ] {
            for tail in [
                "0",
                "7",
                "27",
                "99.1",
                "07",
                "4.",
                "",
                "1.0",
                "300000000000",
            ] {
                names.push(format!("{arc}{tail}"));
            }
        }
        names.extend(
            [
                "1.3.6.1.4.1.34380.1.4.1",
                "1.3.6.1.4.1.34380.1.30",
                "1.3.6.1.4.1.34380.1.31.5",
                "1.3.6.1.4.1.34380.1.3.9",
                "1.3.6.1.4.1.34380.2.1",
                "2.5.29.17",
                INSTANCE_IDENTITY,
                ENROLLMENT_GROUP,
                "pp_Role",
                "pp_rolee",
                " pp_role",
            ]
            .map(str::to_owned),
        );
        let mut accepted = 0;
        for n in &names {
            match check_extension_request(n, "v") {
                Ok(oid) => {
                    accepted += 1;
                    assert_eq!(
                        registrable_extension(n).as_deref(),
                        Some(oid.as_str()),
                        "{n}"
                    );
                    assert!(
                        oid.starts_with(ARC_PP_REG) || oid.starts_with(ARC_PP_PRIV),
                        "{n} -> {oid}"
                    );
                    assert!(oid != PP_UUID && oid != PP_INSTANCE_ID, "{n}");
                }
                Err(_) => assert_eq!(registrable_extension(n), None, "{n}"),
            }
        }
        assert!(accepted >= 30, "only {accepted} accepted");
    }

    #[test]
    fn neighbours_of_the_arcs_are_refused() {
        for n in [
            "1.3.6.1.4.1.34380.1.30",   // not the auth arc, not reg/priv either
            "1.3.6.1.4.1.34380.1.4.1",  // an arc Puppet never resolves
            "1.3.6.1.4.1.34380.1.2.07", // a second spelling of .2.7
            "1.3.6.1.4.1.34380.1.3.1",  // pp_authorization by OID
            "1.3.6.1.4.1.34380.1.1.2",  // pp_instance_id by OID
            "pp_cli_auth",
        ] {
            assert!(check_extension_request(n, "x").is_err(), "{n}");
        }
        assert_eq!(
            check_extension_request("1.3.6.1.4.1.34380.1.2.7", "blue").unwrap(),
            "1.3.6.1.4.1.34380.1.2.7"
        );
        assert!(check_extension_request("pp_role", "a\nb").is_err());
        let e = check_extension_request("pp_rolle", "x").unwrap_err();
        assert!(e.1.contains("pp_role"), "{e:?}");
    }

    #[test]
    fn canonical_dotted_oids() {
        assert!(is_canonical_dotted(INSTANCE_IDENTITY));
        assert!(is_canonical_dotted(ENROLLMENT_GROUP));
        assert_ne!(ENROLLMENT_GROUP, INSTANCE_IDENTITY);
        assert!(is_canonical_dotted("2.5.29.17"));
        for bad in ["1", "1..2", "1.02", "3.1", "1.40", ".1.2", "1.2.", "1.2.a"] {
            assert!(!is_canonical_dotted(bad), "{bad}");
        }
    }
}
