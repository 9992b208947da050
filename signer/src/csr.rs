//! Reading a PKCS#10 certificate signing request: size cap, PEM, self-signature, key strength,
//! subject, and the two attributes the signer cares about (challengePassword, extension requests).
//! `openssl` does the cryptography; [`crate::der`] reads the attributes leniently.

use crate::der;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::x509::X509Req;
use schemas::signer_config::{EcCurve, Policy};

pub use schemas::oids::{
    ARC_PP_AUTH, CHALLENGE_PASSWORD as OID_CHALLENGE_PASSWORD,
    EXTENSION_REQUEST as OID_EXTENSION_REQUEST, INSTANCE_IDENTITY as OID_INSTANCE_IDENTITY,
    MS_EXTENSION_REQUEST as OID_MS_EXTENSION_REQUEST, PP_INSTANCE_ID as OID_PP_INSTANCE_ID,
    PP_UUID as OID_PP_UUID, SUBJECT_ALT_NAME as OID_SUBJECT_ALT_NAME,
};

/// One requested extension: its OID and the content of its extnValue OCTET STRING.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtRequest {
    pub oid: String,
    pub critical: bool,
    pub value: Vec<u8>,
}

/// A CSR that parsed, whose self-signature verified and whose key meets the policy.
/// Holds the challenge password, so `Debug` is hand-written and never shows it.
pub struct Csr {
    /// The DER encoding; its SHA-256 is Puppet's CSR fingerprint.
    pub der: Vec<u8>,
    /// Lowercase hex SHA-256 of [`Csr::der`].
    pub sha256: String,
    /// The subject's only CN.
    pub cn: String,
    /// `RSA-4096`, `EC-P-256`, …
    pub key: String,
    challenge_password: Option<Vec<u8>>,
    /// How many challengePassword attributes/values there were (exactly one is accepted).
    pub challenge_values: usize,
    pub extensions: Vec<ExtRequest>,
    /// Values of the instance identity attribute ([`OID_INSTANCE_IDENTITY`]), across all such
    /// attributes: exactly one is accepted. Public data (the signed document), not a secret.
    pub identity: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Csr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Csr")
            .field("sha256", &self.sha256)
            .field("cn", &self.cn)
            .field("key", &self.key)
            .field(
                "challenge_password",
                &self.challenge_password.as_ref().map(|_| "<redacted>"),
            )
            .field("extensions", &self.extensions)
            .field("identity_values", &self.identity.len())
            .finish()
    }
}

impl Csr {
    /// The challengePassword bytes, when exactly one was given.
    pub fn challenge_password(&self) -> Option<&[u8]> {
        if self.challenge_values == 1 {
            self.challenge_password.as_deref()
        } else {
            None
        }
    }
}

/// Why a CSR was refused before any registration was looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("CSR is {0} bytes, over the {1}-byte limit")]
    TooLarge(usize, usize),
    #[error("input is not a PEM certificate request: {0}")]
    Malformed(String),
    #[error("CSR self-signature does not verify")]
    BadSignature,
    #[error(
        "CSR key is {0}, policy requires RSA >= {1} bits or EC P-256/P-384/P-521 as configured"
    )]
    WeakKey(String, u32),
    #[error("CSR subject must be exactly one CN; found `{0}`")]
    Subject(String),
}

/// SHA-256 (lowercase hex) of the DER inside a PEM CSR, or of the bytes themselves if they are not PEM.
pub fn fingerprint(pem: &[u8]) -> String {
    match X509Req::from_pem(pem).and_then(|r| r.to_der()) {
        Ok(der) => hex::encode(openssl::sha::sha256(&der)),
        Err(_) => hex::encode(openssl::sha::sha256(pem)),
    }
}

/// Parse and verify a PEM CSR. The size cap is applied before anything is parsed.
pub fn parse(pem: &[u8], policy: &Policy) -> Result<Csr, CsrError> {
    if pem.len() > policy.max_csr_bytes {
        return Err(CsrError::TooLarge(pem.len(), policy.max_csr_bytes));
    }
    let text =
        std::str::from_utf8(pem).map_err(|_| CsrError::Malformed("not ASCII text".into()))?;
    let begins = text.matches("-----BEGIN ").count();
    if begins != 1
        || !(text.contains("-----BEGIN CERTIFICATE REQUEST-----")
            || text.contains("-----BEGIN NEW CERTIFICATE REQUEST-----"))
    {
        return Err(CsrError::Malformed(
            "expected exactly one `-----BEGIN CERTIFICATE REQUEST-----` block".into(),
        ));
    }
    let req = X509Req::from_pem(pem).map_err(|e| CsrError::Malformed(first_openssl_reason(&e)))?;
    let der = req
        .to_der()
        .map_err(|e| CsrError::Malformed(first_openssl_reason(&e)))?;
    let sha256 = hex::encode(openssl::sha::sha256(&der));

    let pkey = req
        .public_key()
        .map_err(|e| CsrError::Malformed(format!("public key: {}", first_openssl_reason(&e))))?;
    let key = check_key(&pkey, policy)?;
    if !req.verify(&pkey).unwrap_or(false) {
        return Err(CsrError::BadSignature);
    }

    let subject = req.subject_name();
    let entries: Vec<_> = subject.entries().collect();
    let describe = || {
        entries
            .iter()
            .map(|e| {
                format!(
                    "{}={}",
                    e.object().nid().short_name().unwrap_or("?"),
                    e.data().to_string().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    if entries.len() != 1 || entries[0].object().nid() != Nid::COMMONNAME {
        return Err(CsrError::Subject(describe()));
    }
    let cn = entries[0]
        .data()
        .to_string()
        .map_err(|_| CsrError::Subject(describe()))?;

    let attrs = read_attributes(&der).map_err(|e| CsrError::Malformed(e.to_string()))?;
    Ok(Csr {
        der,
        sha256,
        cn,
        key,
        challenge_password: attrs.challenge,
        challenge_values: attrs.challenge_values,
        extensions: attrs.extensions,
        identity: attrs.identity,
    })
}

fn first_openssl_reason(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .first()
        .and_then(|x| x.reason().map(str::to_owned))
        .unwrap_or_else(|| "unparseable".into())
}

fn check_key(pkey: &PKey<Public>, policy: &Policy) -> Result<String, CsrError> {
    match pkey.id() {
        Id::RSA => {
            let bits = pkey.bits();
            let desc = format!("RSA-{bits}");
            if bits < policy.min_rsa_bits {
                return Err(CsrError::WeakKey(desc, policy.min_rsa_bits));
            }
            Ok(desc)
        }
        Id::EC => {
            let ec = pkey
                .ec_key()
                .map_err(|e| CsrError::Malformed(first_openssl_reason(&e)))?;
            let nid = ec.group().curve_name();
            let curve = match nid {
                Some(Nid::X9_62_PRIME256V1) => Some(EcCurve::P256),
                Some(Nid::SECP384R1) => Some(EcCurve::P384),
                Some(Nid::SECP521R1) => Some(EcCurve::P521),
                _ => None,
            };
            let name = nid
                .and_then(|n| n.short_name().ok())
                .unwrap_or("explicit-curve");
            let desc = format!("EC-{name}");
            match curve {
                Some(c) if policy.ec_curves.contains(&c) => Ok(desc),
                _ => Err(CsrError::WeakKey(desc, policy.min_rsa_bits)),
            }
        }
        other => Err(CsrError::WeakKey(
            format!("key type {}", other.as_raw()),
            policy.min_rsa_bits,
        )),
    }
}

struct Attributes {
    challenge: Option<Vec<u8>>,
    challenge_values: usize,
    extensions: Vec<ExtRequest>,
    identity: Vec<Vec<u8>>,
}

/// Walk CertificationRequest → CertificationRequestInfo → attributes `[0]`.
fn read_attributes(der_bytes: &[u8]) -> Result<Attributes, der::DerError> {
    let outer = der::single(der_bytes)?;
    if outer.tag != der::SEQUENCE {
        return Err(der::DerError("CSR is not a SEQUENCE"));
    }
    let (info, _) = der::expect(
        outer.value,
        der::SEQUENCE,
        "CertificationRequestInfo is not a SEQUENCE",
    )?;
    let fields = der::children(info.value)?;
    // version, subject, subjectPKInfo, [0] attributes
    if fields.len() != 4 || fields[3].tag != der::CONTEXT_0 {
        return Err(der::DerError(
            "CertificationRequestInfo lacks its attributes field",
        ));
    }
    let mut out = Attributes {
        challenge: None,
        challenge_values: 0,
        extensions: Vec::new(),
        identity: Vec::new(),
    };
    for attr in der::children(fields[3].value)? {
        if attr.tag != der::SEQUENCE {
            return Err(der::DerError("attribute is not a SEQUENCE"));
        }
        let (oid, rest) = der::expect(attr.value, der::OID, "attribute type is not an OID")?;
        let oid = der::oid_to_string(oid.value)?;
        let values = der::single(rest)?;
        if values.tag != der::SET {
            return Err(der::DerError("attribute values are not a SET"));
        }
        let values = der::children(values.value)?;
        match oid.as_str() {
            OID_CHALLENGE_PASSWORD => {
                for v in values {
                    out.challenge_values += 1;
                    out.challenge = Some(der::lenient_string(v)?);
                }
            }
            OID_EXTENSION_REQUEST | OID_MS_EXTENSION_REQUEST => {
                for v in values {
                    if v.tag != der::SEQUENCE {
                        return Err(der::DerError("extension request is not a SEQUENCE"));
                    }
                    for ext in der::children(v.value)? {
                        out.extensions.push(read_extension(ext)?);
                    }
                }
            }
            OID_INSTANCE_IDENTITY => {
                for v in values {
                    out.identity.push(der::lenient_string(v)?);
                }
            }
            // Other custom attributes never reach the certificate.
            _ => {}
        }
    }
    Ok(out)
}

fn read_extension(ext: der::Tlv<'_>) -> Result<ExtRequest, der::DerError> {
    if ext.tag != der::SEQUENCE {
        return Err(der::DerError("extension is not a SEQUENCE"));
    }
    let parts = der::children(ext.value)?;
    let (oid, critical, value) = match parts.as_slice() {
        [oid, value] => (oid, false, value),
        [oid, crit, value] if crit.tag == der::BOOLEAN && crit.value.len() == 1 => {
            (oid, crit.value[0] != 0, value)
        }
        _ => return Err(der::DerError("extension has the wrong shape")),
    };
    if oid.tag != der::OID || value.tag != der::OCTET_STRING {
        return Err(der::DerError("extension has the wrong field types"));
    }
    Ok(ExtRequest {
        oid: der::oid_to_string(oid.value)?,
        critical,
        value: value.value.to_vec(),
    })
}

/// The dNSName entries of a subjectAltName value, or an error naming the first non-DNS entry.
pub fn san_dns_names(value: &[u8]) -> Result<Vec<String>, String> {
    let seq = der::single(value).map_err(|e| e.to_string())?;
    if seq.tag != der::SEQUENCE {
        return Err("subjectAltName is not a SEQUENCE".into());
    }
    let mut names = Vec::new();
    for gn in der::children(seq.value).map_err(|e| e.to_string())? {
        if gn.tag != 0x82 {
            return Err(format!(
                "subjectAltName has a non-DNS entry (tag 0x{:02x})",
                gn.tag
            ));
        }
        names.push(String::from_utf8_lossy(gn.value).into_owned());
    }
    Ok(names)
}

/// The string inside an extension value as Puppet writes it (a DER UTF8String, or another string type).
pub fn ext_string(value: &[u8]) -> Option<Vec<u8>> {
    der::single(value)
        .ok()
        .and_then(|t| der::lenient_string(t).ok())
}
