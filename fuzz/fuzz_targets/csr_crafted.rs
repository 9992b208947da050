//! Structure-aware: requests built by `signer::craft::Spec` from fuzzer-chosen fields (subject,
//! challengePassword tags and bytes, extension requests, raw attributes) and *validly signed*,
//! so the attribute reader behind the signature check is reached with arbitrary content.
//! Checks that what `parse` reports is what was put in.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use schemas::signer_config::Policy;
use signer::craft::{self, Spec};
use signer::csr;
use std::sync::LazyLock;

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::default);
static RSA: LazyLock<PKey<Private>> = LazyLock::new(|| craft::rsa_key(2048));
static P256: LazyLock<PKey<Private>> = LazyLock::new(|| craft::ec_key(Nid::X9_62_PRIME256V1));
static P384: LazyLock<PKey<Private>> = LazyLock::new(|| craft::ec_key(Nid::SECP384R1));
/// Refused by the default policy (RSA < 2048 bits, curve not allowed).
static RSA1024: LazyLock<PKey<Private>> = LazyLock::new(|| craft::rsa_key(1024));
static K256: LazyLock<PKey<Private>> = LazyLock::new(|| craft::ec_key(Nid::SECP256K1));

#[derive(Arbitrary, Debug)]
enum Key {
    P256,
    P384,
    Rsa2048,
    Rsa1024,
    Secp256k1,
}

/// An OID as arcs; `dotted` makes it well-formed (first arc 0..=2, second < 40 under 0 and 1).
#[derive(Arbitrary, Debug)]
struct Oid {
    first: u8,
    second: u32,
    rest: Vec<u64>,
    /// Use one of the OIDs the parser looks for instead.
    known: Option<u8>,
}

const KNOWN: &[&str] = &[
    csr::OID_CHALLENGE_PASSWORD,
    csr::OID_EXTENSION_REQUEST,
    csr::OID_MS_EXTENSION_REQUEST,
    csr::OID_INSTANCE_IDENTITY,
    csr::OID_PP_UUID,
    csr::OID_PP_INSTANCE_ID,
    csr::OID_SUBJECT_ALT_NAME,
];

impl Oid {
    fn dotted(&self) -> String {
        if let Some(k) = self.known {
            return KNOWN[usize::from(k) % KNOWN.len()].to_owned();
        }
        let first = self.first % 3;
        let second = if first < 2 {
            self.second % 40
        } else {
            self.second
        };
        let mut s = format!("{first}.{second}");
        for arc in self.rest.iter().take(12) {
            s.push_str(&format!(".{arc}"));
        }
        s
    }
}

/// A DER value: raw bytes (mostly not DER), a string TLV with any tag, or a subjectAltName.
#[derive(Arbitrary, Debug)]
enum Value {
    Raw(Vec<u8>),
    Str(u8, Vec<u8>),
    San(Vec<String>),
}

impl Value {
    fn der(&self) -> Vec<u8> {
        match self {
            Value::Raw(b) => b.clone(),
            Value::Str(tag, b) => craft::tlv(*tag, b),
            Value::San(names) => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                craft::san_dns(&names)
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    key: Key,
    cn: String,
    /// challengePassword values: (string tag, bytes), each its own attribute.
    challenge: Vec<(u8, Vec<u8>)>,
    /// One extReq attribute with these (OID, extnValue content).
    extensions: Vec<(Oid, Value)>,
    /// Further attributes: (OID, DER of the single value).
    attributes: Vec<(Oid, Value)>,
    corrupt_signature: bool,
}

fuzz_target!(|input: Input| {
    // craft's name builder refuses (panics on) an empty CN or one over 64 characters: a limit of
    // the test helper, not of the parser.
    let cn: String = input.cn.chars().take(64).collect();
    if cn.is_empty() {
        return;
    }
    let mut spec = Spec::new(&cn, "");
    spec.challenge = input.challenge.iter().take(4).cloned().collect();
    spec.extensions = input
        .extensions
        .iter()
        .take(8)
        .map(|(o, v)| (o.dotted(), v.der()))
        .collect();
    spec.attributes = input
        .attributes
        .iter()
        .take(4)
        .map(|(o, v)| (o.dotted(), v.der()))
        .collect();
    spec.corrupt_signature = input.corrupt_signature;
    let (key, acceptable) = match input.key {
        Key::P256 => (&*P256, true),
        Key::P384 => (&*P384, true),
        Key::Rsa2048 => (&*RSA, true),
        Key::Rsa1024 => (&*RSA1024, false),
        Key::Secp256k1 => (&*K256, false),
    };
    let der = spec.build_der(key);
    // Once: ECDSA signatures are randomised, so `build` would give other bytes.
    let pem = craft::pem(&der);
    let fp = csr::fingerprint(&pem);
    let parsed = csr::parse(&pem, &POLICY);
    let Ok(c) = parsed else {
        return;
    };
    assert!(acceptable, "accepted a key the policy refuses: {}", c.key);
    assert!(
        !spec.corrupt_signature,
        "accepted a request whose signature was corrupted"
    );
    assert_eq!(
        fp, c.sha256,
        "fingerprint(pem) differs from parse(pem).sha256"
    );
    assert!(
        c.der == der,
        "accepted CSR's DER is not the DER that was built"
    );
    assert_eq!(c.cn, cn, "the CN read back is not the CN written");

    // What the attributes say, when no raw attribute reuses an OID the parser reads.
    let raw_known = spec.attributes.iter().any(|(o, _)| {
        [
            csr::OID_CHALLENGE_PASSWORD,
            csr::OID_EXTENSION_REQUEST,
            csr::OID_MS_EXTENSION_REQUEST,
            csr::OID_INSTANCE_IDENTITY,
        ]
        .contains(&o.as_str())
    });
    if raw_known {
        return;
    }
    assert_eq!(c.challenge_values, spec.challenge.len());
    if let [(tag, bytes)] = spec.challenge.as_slice() {
        // Read leniently: the raw bytes of a PrintableString, UTF8String or IA5String (Puppet
        // puts any UTF-8 in a PrintableString), a BMPString as UTF-8; any other tag is refused.
        let want = match tag {
            0x0c | 0x13 | 0x16 => bytes.clone(),
            0x1e => {
                let units: Vec<u16> = bytes
                    .chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
                    .collect();
                String::from_utf16(&units)
                    .expect("accepted a BMPString that is not UTF-16")
                    .into_bytes()
            }
            other => panic!("accepted a challengePassword with tag 0x{other:02x}"),
        };
        assert_eq!(c.challenge_password(), Some(want.as_slice()));
    } else {
        assert_eq!(c.challenge_password(), None);
    }
    let want: Vec<(String, bool, Vec<u8>)> = spec
        .extensions
        .iter()
        .map(|(o, v)| (o.clone(), false, v.clone()))
        .collect();
    let got: Vec<(String, bool, Vec<u8>)> = c
        .extensions
        .iter()
        .map(|e| (e.oid.clone(), e.critical, e.value.clone()))
        .collect();
    assert_eq!(got, want, "extension requests read back differ");
    assert!(c.identity.is_empty());
});
