//! `signer::csr::parse` and `signer::csr::fingerprint` on arbitrary bytes (the autosign hook's
//! stdin and the CA API's PEM). Seeds: PEM CSRs (see ../seed.sh).
#![no_main]

use libfuzzer_sys::fuzz_target;
use schemas::signer_config::Policy;
use std::sync::LazyLock;

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::default);

fuzz_target!(|data: &[u8]| {
    bootcfg_fuzz_check_csr(data, &POLICY);
});

/// The invariants every accepted CSR must keep, whatever the bytes were.
fn bootcfg_fuzz_check_csr(pem: &[u8], policy: &Policy) {
    let fp = signer::csr::fingerprint(pem);
    assert!(
        fp.len() == 64
            && fp
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "fingerprint is not lowercase hex SHA-256: {fp}"
    );
    let Ok(csr) = signer::csr::parse(pem, policy) else {
        return;
    };
    assert!(
        pem.len() <= policy.max_csr_bytes,
        "accepted over the size cap"
    );
    assert_eq!(
        csr.sha256,
        hex(&openssl::sha::sha256(&csr.der)),
        "Csr::sha256 is not the SHA-256 of Csr::der"
    );
    // The sweep re-fetches the PEM and compares `fingerprint` with the consumed registration's
    // `csr_sha256` (= Csr::sha256) before signing: they must agree on every accepted CSR.
    assert_eq!(
        fp, csr.sha256,
        "fingerprint(pem) differs from parse(pem).sha256"
    );
    assert!(csr.challenge_password().is_none() || csr.challenge_values == 1);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
