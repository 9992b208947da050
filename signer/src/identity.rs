//! The EC2 instance identity proof: verifying IMDS's `dynamic/instance-identity/rsa2048` body.
//!
//! The blob is base64 of a PKCS#7 SignedData (BER, indefinite lengths) holding the identity
//! document, signed with the Region's RSA-2048 key (SHA-256). It names its signer only by issuer
//! and serial, and every Region's certificate has the same issuer, so the serial picks the
//! Region. What is checked, following `shared/research/aws-identity-document.md` §5 and §7:
//! - size (<= [`MAX_BLOB`]) and strict base64, before any parsing;
//! - the signature, with `NOVERIFY | NOINTERN`: the signer certificate must come from the
//!   pinned bundle, never from the message (without `NOINTERN`, a message carrying its own
//!   self-signed "AWS" certificate verifies); no chain or date check (AWS's own recipe does
//!   none either: pinning replaces it);
//! - exactly one signer, byte-equal to one pinned certificate, whose Region equals the
//!   document's `region`;
//! - the document is parsed **only from the verified embedded bytes** (never from a second copy).
//!
//! The certificates are data: [`BUILTIN_BUNDLE`] (from AWS's documentation, see its header) or a
//! file in the same format named by `identity.certificates` in `signer.yaml`.

use base64::Engine;
use chrono::{DateTime, Utc};
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use serde::Deserialize;
use std::path::Path;

/// AWS's RSA-2048 certificates, one per Region, each after a `# <region> …` comment line.
pub const BUILTIN_BUNDLE: &str = include_str!("../data/aws-rsa2048-certs.pem");

/// The largest blob accepted (real ones are about 1.5 KB of base64).
pub const MAX_BLOB: usize = 4096;

/// Pinned signing certificates, each with the Region it signs for.
#[derive(Clone)]
pub struct TrustedCerts {
    certs: Vec<(String, X509)>,
    /// Where they came from, for messages.
    pub source: String,
}

impl std::fmt::Debug for TrustedCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedCerts({} from {})", self.certs.len(), self.source)
    }
}

fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    (3..=4).contains(&parts.len())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok_and(|n| n > 0)
}

impl TrustedCerts {
    /// The bundle compiled into the signer.
    pub fn builtin() -> TrustedCerts {
        Self::parse("built-in AWS RSA-2048 certificates", BUILTIN_BUNDLE)
            .expect("the built-in bundle parses (tested)")
    }

    /// `path`, or the built-in bundle when `None`.
    pub fn load(path: Option<&Path>) -> Result<TrustedCerts, String> {
        match path {
            None => Ok(Self::builtin()),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("identity.certificates {}: {e}", p.display()))?;
                Self::parse(&p.display().to_string(), &text)
            }
        }
    }

    /// A PEM bundle where each certificate follows a comment line `# <region> …`.
    pub fn parse(source: &str, text: &str) -> Result<TrustedCerts, String> {
        let mut certs = Vec::new();
        let mut region: Option<String> = None;
        let mut pem: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if let Some(p) = pem.as_mut() {
                p.push_str(line);
                p.push('\n');
                if line == "-----END CERTIFICATE-----" {
                    let Some(r) = region.take() else {
                        return Err(format!(
                            "{source}:{}: the certificate ending here has no `# <region>` comment line right before it; add one (e.g. `# eu-west-1`)",
                            n + 1
                        ));
                    };
                    let cert = X509::from_pem(p.as_bytes()).map_err(|e| {
                        format!(
                            "{source}:{}: certificate for {r} does not parse: {e}",
                            n + 1
                        )
                    })?;
                    certs.push((r, cert));
                    pem = None;
                }
            } else if line == "-----BEGIN CERTIFICATE-----" {
                pem = Some(format!("{line}\n"));
            } else if let Some(c) = line.strip_prefix('#') {
                let word = c.split_whitespace().next().unwrap_or("");
                region = is_region(word).then(|| word.to_owned());
            } else if !line.is_empty() {
                region = None;
            }
        }
        if pem.is_some() {
            return Err(format!("{source}: a certificate is not terminated"));
        }
        if certs.is_empty() {
            return Err(format!(
                "{source}: no certificates; each needs a `# <region>` line before its PEM block"
            ));
        }
        Ok(TrustedCerts {
            certs,
            source: source.to_owned(),
        })
    }

    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.certs.iter().map(|(r, _)| r.as_str())
    }

    pub fn len(&self) -> usize {
        self.certs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

/// The identity document fields the signer checks. Other fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityDocument {
    pub account_id: String,
    pub region: String,
    pub image_id: String,
    pub instance_id: String,
    pub pending_time: DateTime<Utc>,
}

/// A document whose signature verified against a pinned certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub doc: IdentityDocument,
    /// The Region of the pinned certificate that signed it.
    pub signer_region: String,
    /// That certificate's serial, uppercase hex.
    pub signer_serial: String,
}

/// Verify an `rsa2048` blob (whitespace allowed) against the pinned certificates.
pub fn verify(blob: &[u8], trust: &TrustedCerts) -> Result<Verified, String> {
    if blob.len() > MAX_BLOB {
        return Err(format!(
            "identity proof is {} bytes, over the {MAX_BLOB}-byte limit",
            blob.len()
        ));
    }
    let compact: Vec<u8> = blob
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|e| format!("identity proof is not base64: {e}"))?;
    let p7 = Pkcs7::from_der(&der)
        .map_err(|e| format!("identity proof is not a PKCS#7 structure: {}", reason(&e)))?;
    if p7.signed().is_none() {
        return Err("identity proof is not a PKCS#7 SignedData".into());
    }
    let mut stack = Stack::new().map_err(|e| reason(&e))?;
    for (_, c) in &trust.certs {
        stack.push(c.clone()).map_err(|e| reason(&e))?;
    }
    let store = X509StoreBuilder::new().map_err(|e| reason(&e))?.build();
    let flags = Pkcs7Flags::NOVERIFY | Pkcs7Flags::NOINTERN;
    let mut content = Vec::new();
    // indata = None: the embedded document is what is verified, and what is returned.
    p7.verify(&stack, &store, None, Some(&mut content), flags)
        .map_err(|e| {
            format!(
                "identity proof signature does not verify against the pinned AWS certificates ({}): {}; a forgery, or a Region certificate missing from the bundle (refresh policy.identity.certificates from AWS's regions-certs page)",
                trust.source,
                reason(&e)
            )
        })?;
    let signers = p7.signers(&stack, flags).map_err(|e| reason(&e))?;
    if signers.len() != 1 {
        return Err(format!(
            "identity proof has {} signers; exactly one is accepted",
            signers.len()
        ));
    }
    let signer_der = signers
        .get(0)
        .and_then(|c| c.to_der().ok())
        .ok_or("identity proof signer unreadable")?;
    let (signer_region, pinned) = trust
        .certs
        .iter()
        .find(|(_, c)| c.to_der().ok().as_deref() == Some(signer_der.as_slice()))
        .ok_or("identity proof signer is not one of the pinned certificates")?;
    let signer_serial = pinned
        .serial_number()
        .to_bn()
        .and_then(|b| b.to_hex_str().map(|s| s.to_string()))
        .unwrap_or_default();
    let doc: IdentityDocument = serde_json::from_slice(&content)
        .map_err(|e| format!("signed identity document is not the expected JSON: {e}"))?;
    if &doc.region != signer_region {
        return Err(format!(
            "signed identity document names region {} but was signed with the {signer_region} certificate (serial {signer_serial})",
            doc.region
        ));
    }
    Ok(Verified {
        doc,
        signer_region: signer_region.clone(),
        signer_serial,
    })
}

fn reason(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .first()
        .and_then(|x| x.reason().map(str::to_owned))
        .unwrap_or_else(|| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real AWS-signed samples (see tests/fixtures/aws-iid/README.md for sources and licences).
    fn fixture(rel: &str) -> Vec<u8> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/aws-iid")
            .join(rel);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn builtin_bundle_has_every_region_once() {
        let t = TrustedCerts::builtin();
        assert_eq!(t.len(), 38);
        let mut r: Vec<&str> = t.regions().collect();
        r.sort_unstable();
        r.dedup();
        assert_eq!(r.len(), 38);
        assert!(r.contains(&"us-east-1") && r.contains(&"ap-southeast-2"));
    }

    #[test]
    fn a_real_aws_document_verifies_with_the_builtin_certificates() {
        let dir = "ap-southeast-2-2026";
        let v = verify(
            &fixture(&format!("{dir}/rsa2048.b64")),
            &TrustedCerts::builtin(),
        )
        .unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(v.doc.region, "ap-southeast-2");
        assert_eq!(v.signer_region, "ap-southeast-2");
        assert_eq!(v.signer_serial, "BD9B3A06FE76AF6B");
        assert_eq!(v.doc.instance_id, "i-0c5541936caf78c12");
        assert_eq!(v.doc.account_id, "189292791360");
        let plain: IdentityDocument =
            serde_json::from_slice(&fixture(&format!("{dir}/document.json"))).unwrap();
        assert_eq!(v.doc, plain, "the verified bytes are the document");
    }

    #[test]
    fn real_document_fails_with_another_regions_certificate_only() {
        let all = TrustedCerts::builtin();
        let only = |region: &str| TrustedCerts {
            certs: all
                .certs
                .iter()
                .filter(|(r, _)| r == region)
                .cloned()
                .collect(),
            source: region.into(),
        };
        let blob = fixture("ap-southeast-2-2026/rsa2048.b64");
        assert!(verify(&blob, &only("ap-southeast-2")).is_ok());
        let e = verify(&blob, &only("us-east-1")).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
        // The same certificate filed under a wrong region label is caught by the region check.
        let mislabeled = TrustedCerts {
            certs: vec![(
                "eu-west-1".into(),
                only("ap-southeast-2").certs[0].1.clone(),
            )],
            source: "x".into(),
        };
        let e = verify(&blob, &mislabeled).unwrap_err();
        assert!(e.contains("names region ap-southeast-2"), "{e}");
    }

    #[test]
    fn a_forgery_embedding_its_own_aws_lookalike_certificate_is_refused() {
        let pem = String::from_utf8(fixture("negative/forged-embedded-selfsigned.p7.pem")).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let e = verify(body.as_bytes(), &TrustedCerts::builtin()).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
    }

    #[test]
    fn hostile_blobs_are_refused_before_or_while_parsing() {
        let t = TrustedCerts::builtin();
        for (blob, want) in [
            (vec![b'A'; MAX_BLOB + 1], "limit"),
            (b"not base64!".to_vec(), "base64"),
            (b"AAAA".to_vec(), "PKCS#7"),
            (
                base64::engine::general_purpose::STANDARD
                    .encode(b"\x30\x80\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01\x00\x00")
                    .into_bytes(),
                "",
            ),
        ] {
            let e = verify(&blob, &t).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        // An edited byte anywhere in a real blob is refused.
        let good: Vec<u8> = fixture("ap-southeast-2-2026/rsa2048.b64")
            .into_iter()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(&good)
            .unwrap();
        for i in (0..der.len()).step_by(37) {
            let mut d = der.clone();
            d[i] ^= 0x01;
            let b = base64::engine::general_purpose::STANDARD.encode(&d);
            assert!(
                verify(b.as_bytes(), &t).is_err(),
                "byte {i} flipped still verifies"
            );
        }
    }

    #[test]
    fn bundle_format_errors_are_located() {
        let pem = String::from_utf8(fixture(
            "ap-southeast-2-2026/aws-rsa2048-ap-southeast-2.pem",
        ))
        .unwrap();
        let e = TrustedCerts::parse("b.pem", &pem).unwrap_err();
        assert!(e.contains("b.pem:") && e.contains("# <region>"), "{e}");
        assert!(TrustedCerts::parse("b.pem", &format!("# ap-southeast-2 x\n{pem}")).is_ok());
        assert!(TrustedCerts::parse("b.pem", "").is_err());
    }
}
