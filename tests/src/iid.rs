//! EC2 instance identity documents, signed the way EC2 signs them, by a key the harness makes.
//!
//! There is no EC2 to sign documents for the tests, so [`TestAws`] plays AWS: a self-signed
//! RSA-2048 certificate whose subject copies AWS's (`C=US, ST=Washington State, L=Seattle,
//! O=Amazon Web Services LLC`), and [`TestAws::sign`] produces what IMDS serves at
//! `dynamic/instance-identity/rsa2048`: base64 of a PKCS#7 SignedData with the document
//! embedded, SHA-256, no certificates inside, in 76-column lines without PEM armour. The signer
//! trusts [`TestAws::bundle_pem`] only in tests (`identity.certificates` in its config).
//! [`Doc::render`] writes the document as IMDS does: sorted keys, `"key" : value`, 2-space
//! indent, no trailing newline.

use chrono::{DateTime, SecondsFormat, Utc};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::{X509, X509Name};

/// The account moto reports as every instance's owner (`OwnerId`).
pub const MOTO_ACCOUNT: &str = "123456789012";

/// One identity document's fields (the ones the signer checks, plus realistic filler).
#[derive(Debug, Clone)]
pub struct Doc {
    pub account_id: String,
    pub region: String,
    pub image_id: String,
    pub instance_id: String,
    pub pending_time: DateTime<Utc>,
    pub instance_type: String,
}

impl Doc {
    pub fn new(instance_id: &str, image_id: &str, region: &str) -> Doc {
        Doc {
            account_id: MOTO_ACCOUNT.into(),
            region: region.into(),
            image_id: image_id.into(),
            instance_id: instance_id.into(),
            pending_time: Utc::now(),
            instance_type: "t3.micro".into(),
        }
    }

    /// The document as IMDS serves it (pretty JSON, `"key" : value`, keys sorted, no newline).
    pub fn render(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("json string");
        let fields = [
            ("accountId", q(&self.account_id)),
            ("architecture", q("x86_64")),
            ("availabilityZone", q(&format!("{}a", self.region))),
            ("billingProducts", "null".to_owned()),
            ("devpayProductCodes", "null".to_owned()),
            ("imageId", q(&self.image_id)),
            ("instanceId", q(&self.instance_id)),
            ("instanceType", q(&self.instance_type)),
            ("kernelId", "null".to_owned()),
            ("marketplaceProductCodes", "null".to_owned()),
            (
                "pendingTime",
                q(&self.pending_time.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ),
            ("privateIp", q("10.0.0.12")),
            ("ramdiskId", "null".to_owned()),
            ("region", q(&self.region)),
            ("version", q("2017-09-30")),
        ];
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("  \"{k}\" : {v}"))
            .collect();
        format!("{{\n{}\n}}", body.join(",\n"))
    }
}

/// A stand-in for AWS's per-Region RSA-2048 signing certificate.
pub struct TestAws {
    pub region: String,
    pub key: PKey<Private>,
    pub cert: X509,
}

impl TestAws {
    /// A fresh key and self-signed certificate with AWS's subject and a random serial.
    pub fn generate(region: &str) -> TestAws {
        let serial = {
            let mut bn = BigNum::new().expect("bn");
            bn.rand(63, MsbOption::MAYBE_ZERO, false).expect("rand");
            Asn1Integer::from_bn(&bn).expect("serial")
        };
        Self::with_serial(region, &serial)
    }

    /// Another key with the same subject *and serial* as `self`: what a forger who copies
    /// AWS's certificate details, but not its key, would make.
    pub fn impostor(&self) -> TestAws {
        let serial = self.cert.serial_number().to_bn().expect("bn");
        Self::with_serial(
            &self.region,
            &Asn1Integer::from_bn(&serial).expect("serial"),
        )
    }

    fn with_serial(region: &str, serial: &Asn1Integer) -> TestAws {
        let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).expect("rsa")).expect("pkey");
        let mut name = X509Name::builder().expect("name");
        for (k, v) in [
            ("C", "US"),
            ("ST", "Washington State"),
            ("L", "Seattle"),
            ("O", "Amazon Web Services LLC"),
        ] {
            name.append_entry_by_text(k, v).expect("name entry");
        }
        let name = name.build();
        let mut b = X509::builder().expect("x509");
        b.set_version(2).expect("version");
        b.set_serial_number(serial).expect("serial");
        b.set_subject_name(&name).expect("subject");
        b.set_issuer_name(&name).expect("issuer");
        b.set_pubkey(&key).expect("pubkey");
        b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
            .expect("nb");
        b.set_not_after(&Asn1Time::days_from_now(3650).expect("time"))
            .expect("na");
        b.sign(&key, MessageDigest::sha256()).expect("sign");
        TestAws {
            region: region.into(),
            key,
            cert: b.build(),
        }
    }

    /// The certificate in the signer's bundle format: a `# <region>` comment, then the PEM.
    pub fn bundle_pem(&self) -> String {
        format!(
            "# {} test certificate generated by testkit (trusted in tests only)\n{}",
            self.region,
            String::from_utf8(self.cert.to_pem().expect("pem")).expect("ascii")
        )
    }

    /// The `rsa2048` body for `document`: base64 PKCS#7, 76-column lines, no armour.
    pub fn sign(&self, document: &str) -> String {
        let certs = Stack::new().expect("stack");
        let p7 = Pkcs7::sign(
            &self.cert,
            &self.key,
            &certs,
            document.as_bytes(),
            Pkcs7Flags::BINARY | Pkcs7Flags::NOCERTS | Pkcs7Flags::NOSMIMECAP,
        )
        .expect("pkcs7 sign");
        imds_base64(&p7.to_der().expect("der"))
    }
}

/// Base64 in 76-column lines with no trailing newline, as IMDS serves PKCS#7 bodies.
pub fn imds_base64(der: &[u8]) -> String {
    let b64 = openssl::base64::encode_block(der).replace('\n', "");
    b64.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `rsa2048` with the embedded document edited after signing: `from` replaced by `to` (same
/// length) inside the DER, the signature left as it was.
pub fn tamper(rsa2048: &str, from: &str, to: &str) -> String {
    assert_eq!(from.len(), to.len(), "tamper keeps the length");
    let compact: String = rsa2048.split_whitespace().collect();
    let mut der = openssl::base64::decode_block(&compact).expect("base64");
    let pos = der
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .expect("text to tamper with is in the document");
    der[pos..pos + to.len()].copy_from_slice(to.as_bytes());
    imds_base64(&der)
}
