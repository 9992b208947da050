//! Property tests of the CSR parser on stable (they run in `cargo test --workspace`):
//! `signer::csr::parse` and `fingerprint` never panic, whatever the bytes; requests built by
//! `signer::craft` are accepted and read back as built; a valid request changed in any way is
//! refused, or accepted as exactly the bytes that were sent (never normalised, never with
//! different contents). Case counts are set per test to keep the file to a few seconds; the fuzz
//! targets in `fuzz/` (nightly, cargo-fuzz) explore the same entry points for longer.

use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use proptest::prelude::*;
use schemas::signer_config::Policy;
use signer::craft::{self, Spec};
use signer::csr::{self, Csr};
use std::sync::LazyLock;

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::default);
/// Generated once per test binary: RSA key generation is the slow part.
static RSA: LazyLock<PKey<Private>> = LazyLock::new(|| craft::rsa_key(2048));
static P256: LazyLock<PKey<Private>> = LazyLock::new(|| craft::ec_key(Nid::X9_62_PRIME256V1));

const UUID: &str = "6f0e3f4e-3c1b-4a43-9f0a-1d2e3c4b5a69";

/// A request like the one a bootcfg instance sends: certname, secret, pp_uuid.
fn puppet_like(key: &PKey<Private>) -> Vec<u8> {
    Spec::new("6f0e3f4e-3c1b-4a43-9f0a-1d2e3c4b5a69", "s3cret-0123456789")
        .ext(csr::OID_PP_UUID, craft::utf8_ext(UUID))
        .build_der(key)
}

static VALID_EC: LazyLock<Vec<u8>> = LazyLock::new(|| puppet_like(&P256));
static VALID_RSA: LazyLock<Vec<u8>> = LazyLock::new(|| puppet_like(&RSA));

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(bytes))
}

/// Parse, and check what must hold of any accepted request.
fn parse_checked(pem: &[u8]) -> Result<Csr, csr::CsrError> {
    let fp = csr::fingerprint(pem);
    assert_eq!(fp.len(), 64);
    let res = csr::parse(pem, &POLICY);
    if let Ok(c) = &res {
        assert_eq!(c.sha256, sha256_hex(&c.der), "sha256 is not SHA-256(der)");
        // The sweep compares `fingerprint` of the re-fetched PEM with the consumed
        // registration's `csr_sha256` (= Csr::sha256) before it signs.
        assert_eq!(fp, c.sha256, "fingerprint(pem) != parse(pem).sha256");
        assert!(c.challenge_password().is_none() || c.challenge_values == 1);
    }
    res
}

/// What a request says (CN, key, challengePassword and its count, extensions, identity values),
/// for comparing two of them.
type Contents = (
    String,
    String,
    Option<Vec<u8>>,
    usize,
    Vec<csr::ExtRequest>,
    Vec<Vec<u8>>,
);

fn contents(c: &Csr) -> Contents {
    (
        c.cn.clone(),
        c.key.clone(),
        c.challenge_password().map(<[u8]>::to_vec),
        c.challenge_values,
        c.extensions.clone(),
        c.identity.clone(),
    )
}

#[test]
fn valid_requests_parse() {
    for der in [&*VALID_EC, &*VALID_RSA] {
        let c = parse_checked(&craft::pem(der)).expect("a valid request");
        assert_eq!(&c.der, der);
        assert_eq!(c.challenge_password(), Some(&b"s3cret-0123456789"[..]));
    }
}

/// Every single-bit flip of a valid request, at every byte, is refused: whatever part of the
/// request it lands in (signed information, signature algorithm, signature value, or the DER
/// framing around them), an accepted request has one encoding only.
#[test]
fn every_bit_flip_of_a_valid_ec_request_is_refused() {
    let der = &*VALID_EC;
    for i in 0..der.len() {
        for bit in [0x01u8, 0x80] {
            let mut m = der.clone();
            m[i] ^= bit;
            if let Ok(c) = parse_checked(&craft::pem(&m)) {
                panic!(
                    "flipping bit {bit:#04x} of byte {i} still gives an accepted request: {c:?}"
                );
            }
        }
    }
}

/// Arbitrary edits: overwrite, insert, delete, truncate, append.
#[derive(Debug, Clone)]
enum Edit {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
    Truncate(prop::sample::Index),
    Append(Vec<u8>),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        2 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => any::<prop::sample::Index>().prop_map(Edit::Delete),
        1 => any::<prop::sample::Index>().prop_map(Edit::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(Edit::Append),
    ]
}

fn apply(der: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut m = der.to_vec();
    for e in edits {
        let n = m.len();
        match e {
            Edit::Set(i, b) if n > 0 => m[i.index(n)] = *b,
            Edit::Insert(i, b) => m.insert(i.index(n + 1), *b),
            Edit::Delete(i) if n > 0 => {
                m.remove(i.index(n));
            }
            Edit::Truncate(i) => m.truncate(i.index(n + 1)),
            Edit::Append(tail) => m.extend_from_slice(tail),
            _ => {}
        }
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
        parse_checked(&bytes).ok();
        parse_checked(&craft::pem(&bytes)).ok();
    }

    /// Not one PEM block: the fingerprint is the SHA-256 of the bytes themselves (documented).
    #[test]
    fn fingerprint_of_non_pem_is_sha256_of_the_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        prop_assume!(!bytes.windows(11).any(|w| w == b"-----BEGIN "));
        prop_assert_eq!(csr::fingerprint(&bytes), sha256_hex(&bytes));
    }

    /// Any edit of a valid request is refused, or accepted as exactly the edited bytes with the
    /// original's contents (only the unsigned framing could differ; it is refused in practice).
    #[test]
    fn edited_valid_request_is_refused_or_taken_verbatim(
        rsa in any::<bool>(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let der = if rsa { &*VALID_RSA } else { &*VALID_EC };
        let m = apply(der, &edits);
        prop_assume!(&m != der);
        if let Ok(c) = parse_checked(&craft::pem(&m)) {
            prop_assert_eq!(&c.der, &m, "accepted, but not as the bytes that were sent");
            let orig = parse_checked(&craft::pem(der)).expect("the valid request");
            prop_assert_eq!(contents(&c), contents(&orig));
        }
    }

    /// Edits of the PEM text: refused, or the same request (same fingerprint).
    #[test]
    fn edited_pem_is_refused_or_the_same_request(
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let pem = craft::pem(&VALID_EC);
        let m = apply(&pem, &edits);
        if let Ok(c) = parse_checked(&m) {
            prop_assert_eq!(&c.der, &*VALID_EC);
        }
    }
}

/// Printable ASCII, as the conductor's secrets and most hand-written ones are.
fn secret() -> impl Strategy<Value = String> {
    "[!-~]{1,64}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Well-formed requests from `craft` are accepted and read back as built.
    #[test]
    fn crafted_requests_read_back_as_built(
        rsa in any::<bool>(),
        cn in "[a-z0-9][a-z0-9.-]{0,62}",
        secret in secret(),
        uuid in prop::option::of("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
        san in prop::collection::vec("[a-z][a-z0-9-]{0,20}(\\.[a-z][a-z0-9-]{0,20}){0,3}", 0..4),
    ) {
        let key = if rsa { &*RSA } else { &*P256 };
        let mut spec = Spec::new(&cn, &secret);
        if let Some(u) = &uuid {
            spec = spec.ext(csr::OID_PP_UUID, craft::utf8_ext(u));
        }
        if !san.is_empty() {
            let names: Vec<&str> = san.iter().map(String::as_str).collect();
            spec = spec.ext(csr::OID_SUBJECT_ALT_NAME, craft::san_dns(&names));
        }
        let der = spec.build_der(key);
        let c = parse_checked(&craft::pem(&der));
        prop_assert!(c.is_ok(), "refused: {:?}", c.err());
        let c = c.unwrap();
        prop_assert_eq!(&c.der, &der);
        prop_assert_eq!(&c.cn, &cn);
        prop_assert_eq!(c.challenge_password(), Some(secret.as_bytes()));
        let want: Vec<(String, Vec<u8>)> = spec.extensions.clone();
        let got: Vec<(String, Vec<u8>)> = c.extensions.iter().map(|e| (e.oid.clone(), e.value.clone())).collect();
        prop_assert_eq!(got, want);
        prop_assert!(c.extensions.iter().all(|e| !e.critical));
        if !san.is_empty() {
            let sans = csr::san_dns_names(&c.extensions.last().unwrap().value);
            prop_assert_eq!(sans, Ok(san.clone()));
        }
        // The same request, parsed again: the same answer.
        let again = parse_checked(&craft::pem(&der)).unwrap();
        prop_assert_eq!(contents(&again), contents(&c));
    }
}

/// Not a test: writes the CSR seeds of the fuzz targets (fuzz/seeds/csr/).
/// `BOOTCFG_FUZZ_SEEDS=fuzz/seeds/csr cargo test -p signer --test prop_csr -- --ignored write_fuzz_seeds`
#[test]
#[ignore = "writes fuzz seed files; run by hand"]
fn write_fuzz_seeds() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("BOOTCFG_FUZZ_SEEDS").expect("BOOTCFG_FUZZ_SEEDS=<dir>"),
    );
    std::fs::create_dir_all(&dir).unwrap();
    let p384 = craft::ec_key(Nid::SECP384R1);
    let mut identity = Spec::new("i-0123456789abcdef0.example", "s3cret");
    identity.attributes.push((
        csr::OID_INSTANCE_IDENTITY.into(),
        craft::tlv(
            0x0c,
            b"MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwGggCSABIIB",
        ),
    ));
    let mut two_secrets = Spec::new("web-1.example", "one");
    two_secrets.challenge.push((0x0c, b"two".to_vec()));
    let mut bmp = Spec::new("web-2.example", "");
    bmp.challenge = vec![(
        0x1e,
        "s\u{e9}cret"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect(),
    )];
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("puppet-ec-p256.pem", craft::pem(&VALID_EC)),
        ("puppet-rsa2048.pem", craft::pem(&VALID_RSA)),
        (
            "utf8-secret-printablestring-p384.pem",
            Spec::new("web-3.example", "s\u{e9}cr\u{e8}t \u{2603}").build(&p384),
        ),
        (
            "san-ext-p256.pem",
            Spec::new("web-4.example", "s3cret")
                .ext(
                    csr::OID_SUBJECT_ALT_NAME,
                    craft::san_dns(&["web-4.example", "puppet"]),
                )
                .ext(
                    csr::OID_PP_INSTANCE_ID,
                    craft::utf8_ext("i-0123456789abcdef0"),
                )
                .ext("1.3.6.1.4.1.34380.1.2.1", craft::utf8_ext("auth"))
                .build(&*P256),
        ),
        ("identity-p256.pem", identity.build(&*P256)),
        ("two-secrets-p256.pem", two_secrets.build(&*P256)),
        ("bmp-secret-p256.pem", bmp.build(&*P256)),
    ];
    for (name, pem) in seeds {
        std::fs::write(dir.join(name), pem).unwrap();
    }
}
