//! `schemas::userdata::parse` on arbitrary bytes (IMDS user-data as delivered): strict base64,
//! gzip, MIME multipart, `#cloud-config` YAML, validation. Seeds: examples/userdata-*.yaml and
//! their gzip/base64/MIME forms (see ../seed.sh).
#![no_main]

use libfuzzer_sys::fuzz_target;
use schemas::diag::Diagnostic;

fuzz_target!(|data: &[u8]| {
    let first = schemas::userdata::parse("fuzz", data);
    match &first {
        Ok(parsed) => assert!(
            !parsed.warnings.iter().any(Diagnostic::is_error),
            "Ok with an error among the warnings"
        ),
        Err(diags) => assert!(
            diags.0.iter().any(Diagnostic::is_error),
            "Err without an error diagnostic"
        ),
    }
    // Deterministic: the same bytes give the same model and the same diagnostics, in order.
    assert_eq!(schemas::userdata::parse("fuzz", data), first);
});
