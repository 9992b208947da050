//! `signer::csr::parse` on arbitrary DER wrapped in PEM armour, so libFuzzer mutates the ASN.1
//! rather than the base64. Seeds: the DER of PEM CSRs (see ../seed.sh).
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use schemas::signer_config::Policy;
use std::sync::LazyLock;

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::default);

fuzz_target!(|der: &[u8]| {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE REQUEST-----\n");
    let pem = pem.into_bytes();

    let fp = signer::csr::fingerprint(&pem);
    let Ok(csr) = signer::csr::parse(&pem, &POLICY) else {
        return;
    };
    assert_eq!(
        fp, csr.sha256,
        "fingerprint(pem) differs from parse(pem).sha256"
    );
    assert_eq!(csr.sha256, hex(&openssl::sha::sha256(&csr.der)));
    assert!(csr.challenge_password().is_none() || csr.challenge_values == 1);
    // An accepted request is exactly the bytes that were sent: the fingerprint the signer
    // records (and Puppet shows) is the SHA-256 of what the requester submitted.
    assert!(
        csr.der == der,
        "accepted CSR's DER ({} bytes) is not the submitted DER ({} bytes)",
        csr.der.len(),
        der.len()
    );
});

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
