//! Reading a PKCS#10 certificate signing request: size cap, PEM, self-signature, key strength,
//! subject, and the attributes the signer cares about (challengePassword, extension requests, the
//! instance identity proof). One byte string: the PEM is decoded strictly to DER, the DER must be
//! strict throughout, OpenSSL gets exactly those bytes (and must re-encode them unchanged), and
//! every check reads those same bytes. `openssl` does the cryptography; [`crate::der`] reads the
//! structure strictly and string content leniently.

use crate::der;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::x509::X509Req;
use schemas::signer_config::{EcCurve, Policy};

pub use schemas::oids::{
    ARC_PP_AUTH, CHALLENGE_PASSWORD as OID_CHALLENGE_PASSWORD,
    ENROLLMENT_GROUP as OID_ENROLLMENT_GROUP, EXTENSION_REQUEST as OID_EXTENSION_REQUEST,
    INSTANCE_IDENTITY as OID_INSTANCE_IDENTITY, MS_EXTENSION_REQUEST as OID_MS_EXTENSION_REQUEST,
    PP_INSTANCE_ID as OID_PP_INSTANCE_ID, PP_UUID as OID_PP_UUID,
    SUBJECT_ALT_NAME as OID_SUBJECT_ALT_NAME,
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
    /// Values of the enrollment group attribute ([`OID_ENROLLMENT_GROUP`]), across all such
    /// attributes. A CSR with any is decided as a group member (exactly one is accepted).
    pub group: Vec<Vec<u8>>,
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
            .field("group_values", &self.group.len())
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
    /// Not one strict PEM block of a strict DER PKCS#10 request (or OpenSSL reads it otherwise).
    #[error("input is not a PEM certificate request: {0}")]
    Malformed(String),
    #[error("CSR self-signature does not verify")]
    BadSignature,
    /// The key is refused by the key policy: (key described, why).
    #[error("CSR key {0} is refused: {1}")]
    WeakKey(String, String),
    /// The self-signature's algorithm or hash is refused by the signature policy.
    #[error("CSR signature algorithm is refused: {0}")]
    SignatureAlgorithm(String),
    #[error(
        "CSR subject must be exactly one RDN holding one CN (UTF8String or PrintableString): {0}"
    )]
    Subject(String),
}

fn malformed(e: impl std::fmt::Display) -> CsrError {
    CsrError::Malformed(e.to_string())
}

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE REQUEST-----";
const PEM_END: &str = "-----END CERTIFICATE REQUEST-----";

/// The DER inside a PEM CSR, read strictly: exactly one `CERTIFICATE REQUEST` block with only
/// whitespace around it, lines of standard base64 (canonical padding and trailing bits) ended by
/// LF or CRLF, no headers, no blank lines. Puppet agents and the CA write exactly this.
pub fn pem_to_der(pem: &[u8]) -> Result<Vec<u8>, CsrError> {
    use base64::Engine;
    let text = std::str::from_utf8(pem)
        .ok()
        .filter(|t| t.is_ascii())
        .ok_or_else(|| malformed("not ASCII text"))?;
    let block = || {
        malformed(
            "expected exactly one `-----BEGIN CERTIFICATE REQUEST-----` block and nothing but whitespace around it",
        )
    };
    let body = text
        .trim_matches([' ', '\t', '\r', '\n'])
        .strip_prefix(PEM_BEGIN)
        .and_then(|b| b.strip_suffix(PEM_END))
        .ok_or_else(block)?;
    let body = body
        .strip_prefix("\r\n")
        .or_else(|| body.strip_prefix('\n'))
        .and_then(|b| b.strip_suffix('\n'))
        .ok_or_else(block)?;
    let mut b64 = String::with_capacity(body.len());
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty()
            || !line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
        {
            return Err(malformed(
                "the PEM body holds something other than lines of base64 (blank line, header, space or a second block?)",
            ));
        }
        b64.push_str(line);
    }
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| malformed(format!("the PEM body is not strict base64: {e}")))
}

/// SHA-256 (lowercase hex) of the DER inside a PEM CSR (the bytes [`parse`] verifies: Puppet's
/// fingerprint), or of the input itself when it is not one strict PEM block.
pub fn fingerprint(pem: &[u8]) -> String {
    match pem_to_der(pem) {
        Ok(der) => hex::encode(openssl::sha::sha256(&der)),
        Err(_) => hex::encode(openssl::sha::sha256(pem)),
    }
}

/// Parse and verify a PEM CSR. The size cap is applied before anything is parsed.
///
/// There is one byte string: the DER decoded from the PEM. It must be strict DER throughout
/// ([`der::strict`]); OpenSSL is given exactly those bytes and must encode what it read back to
/// the same bytes; the key, the signature algorithm, the subject and the attributes are all read
/// from those bytes, and the self-signature OpenSSL verifies is over them.
pub fn parse(pem: &[u8], policy: &Policy) -> Result<Csr, CsrError> {
    if pem.len() > policy.max_csr_bytes {
        return Err(CsrError::TooLarge(pem.len(), policy.max_csr_bytes));
    }
    let der = pem_to_der(pem)?;
    let parts = Parts::read(&der).map_err(malformed)?;
    let req = X509Req::from_der(&der).map_err(|e| malformed(first_openssl_reason(&e)))?;
    // OpenSSL keeps the signed part's encoding as it was read, so this compares the rest (the
    // signature algorithm and value); the signed part is held to DER by `Parts::read`.
    if req.to_der().ok().as_deref() != Some(der.as_slice()) {
        return Err(malformed(
            "OpenSSL reads the request differently from its bytes",
        ));
    }
    let sha256 = hex::encode(openssl::sha::sha256(&der));

    // Key and signature policy, from the bytes, before OpenSSL decodes the key or verifies.
    let key = check_key(&parts.spki, policy)?;
    check_signature_algorithm(&parts.signature_algorithm, &key, policy)?;
    let pkey = req
        .public_key()
        .map_err(|e| malformed(format!("public key: {}", first_openssl_reason(&e))))?;
    key.matches_openssl(&parts.spki, &pkey)?;
    // The signature value, held to its exact form too: an RSA signature as long as the modulus
    // (RFC 8017, 8.2.2), an ECDSA signature one DER SEQUENCE of two INTEGERs.
    let exact = match key.kind {
        KeyKind::Rsa { bytes } => parts.signature.len() == bytes,
        KeyKind::Ec { .. } => der::strict(parts.signature).is_ok_and(|sig| {
            sig.tag == der::SEQUENCE
                && der::children(sig.value)
                    .is_ok_and(|rs| rs.len() == 2 && rs.iter().all(|i| i.tag == der::INTEGER))
        }),
    };
    if !exact {
        return Err(CsrError::BadSignature);
    }
    if !req.verify(&pkey).unwrap_or(false) {
        return Err(CsrError::BadSignature);
    }

    let cn = check_subject(parts.subject)?;
    let entries: Vec<_> = req.subject_name().entries().collect();
    if entries.len() != 1
        || entries[0].object().nid() != Nid::COMMONNAME
        || entries[0].data().as_slice() != cn.as_bytes()
    {
        return Err(CsrError::Subject(
            "a subject OpenSSL reads differently from its bytes".into(),
        ));
    }

    let attrs = read_attributes(parts.attributes).map_err(malformed)?;
    Ok(Csr {
        der,
        sha256,
        cn,
        key: key.desc,
        challenge_password: attrs.challenge,
        challenge_values: attrs.challenge_values,
        extensions: attrs.extensions,
        identity: attrs.identity,
        group: attrs.group,
    })
}

fn first_openssl_reason(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .first()
        .and_then(|x| x.reason().map(str::to_owned))
        .unwrap_or_else(|| "unparseable".into())
}

/// An AlgorithmIdentifier: OID and optional parameters.
struct AlgorithmId<'a> {
    oid: String,
    params: Option<der::Tlv<'a>>,
}

impl<'a> AlgorithmId<'a> {
    fn read(t: der::Tlv<'a>) -> Result<Self, der::DerError> {
        if t.tag != der::SEQUENCE {
            return Err(der::DerError("AlgorithmIdentifier is not a SEQUENCE"));
        }
        match der::children(t.value)?.as_slice() {
            [oid] if oid.tag == der::OID => Ok(AlgorithmId {
                oid: der::oid_to_string(oid.value)?,
                params: None,
            }),
            [oid, params] if oid.tag == der::OID => Ok(AlgorithmId {
                oid: der::oid_to_string(oid.value)?,
                params: Some(*params),
            }),
            _ => Err(der::DerError("AlgorithmIdentifier has the wrong shape")),
        }
    }

    fn params_null_or_absent(&self) -> bool {
        self.params
            .is_none_or(|p| p.tag == der::NULL && p.value.is_empty())
    }
}

/// A SubjectPublicKeyInfo: its whole encoding, algorithm, and key bits.
struct Spki<'a> {
    raw: &'a [u8],
    algorithm: AlgorithmId<'a>,
    key: &'a [u8],
}

/// CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature }
/// CertificationRequestInfo ::= SEQUENCE { version INTEGER (0), subject Name,
///   subjectPKInfo SubjectPublicKeyInfo, attributes [0] IMPLICIT SET OF Attribute }
struct Parts<'a> {
    subject: der::Tlv<'a>,
    spki: Spki<'a>,
    attributes: der::Tlv<'a>,
    signature_algorithm: AlgorithmId<'a>,
    signature: &'a [u8],
}

impl<'a> Parts<'a> {
    fn read(bytes: &'a [u8]) -> Result<Self, der::DerError> {
        let outer = der::strict(bytes)?;
        if outer.tag != der::SEQUENCE {
            return Err(der::DerError("CSR is not a SEQUENCE"));
        }
        let [info, alg, sig] = der::children(outer.value)?[..] else {
            return Err(der::DerError("CertificationRequest has the wrong shape"));
        };
        if info.tag != der::SEQUENCE {
            return Err(der::DerError("CertificationRequestInfo is not a SEQUENCE"));
        }
        let [version, subject, spki, attributes] = der::children(info.value)?[..] else {
            return Err(der::DerError(
                "CertificationRequestInfo has the wrong shape (version, subject, key, attributes)",
            ));
        };
        if version.tag != der::INTEGER || version.value != [0] {
            return Err(der::DerError(
                "CertificationRequestInfo version is not 0 (v1)",
            ));
        }
        if subject.tag != der::SEQUENCE {
            return Err(der::DerError("subject is not a SEQUENCE"));
        }
        if attributes.tag != der::CONTEXT_0 {
            return Err(der::DerError(
                "CertificationRequestInfo lacks its attributes field",
            ));
        }
        if spki.tag != der::SEQUENCE {
            return Err(der::DerError("SubjectPublicKeyInfo is not a SEQUENCE"));
        }
        let [key_alg, key] = der::children(spki.value)?[..] else {
            return Err(der::DerError("SubjectPublicKeyInfo has the wrong shape"));
        };
        Ok(Parts {
            subject,
            spki: Spki {
                raw: spki.raw,
                algorithm: AlgorithmId::read(key_alg)?,
                key: der::octet_aligned_bits(key)?,
            },
            attributes,
            signature_algorithm: AlgorithmId::read(alg)?,
            signature: der::octet_aligned_bits(sig)?,
        })
    }
}

const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_ED448: &str = "1.3.101.113";

/// RSA moduli above this are refused: Puppet's default is 4096, and the primality test costs
/// one full-size modular exponentiation (about 0.1 s at 8192 bits, near 1 s at 16384 on a small
/// CA host), which a flood of huge keys must not be able to buy.
pub const MAX_RSA_BITS: u32 = Policy::MAX_RSA_BITS;
/// RSA public exponents must stay below 2^256 (FIPS 186-5, A.1.1).
pub const MAX_RSA_EXPONENT_BITS: i32 = 256;
/// Trial division of RSA moduli: by every prime below this.
pub const TRIAL_DIVISION_BOUND: u32 = 65536;
/// Fermat's method: this many steps from ⌈√n⌉.
pub const FERMAT_STEPS: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// `bytes`: the modulus length, which an RSA signature must have.
    Rsa {
        bytes: usize,
    },
    Ec {
        nid: Nid,
    },
}

/// A key the policy accepts.
struct Key {
    kind: KeyKind,
    /// `RSA-4096`, `EC-P-256`.
    desc: String,
}

impl Key {
    /// OpenSSL's view of the key must be the bytes that were checked.
    fn matches_openssl(&self, spki: &Spki<'_>, pkey: &PKey<Public>) -> Result<(), CsrError> {
        let same_type = match self.kind {
            KeyKind::Rsa { .. } => pkey.id() == Id::RSA,
            KeyKind::Ec { nid } => {
                pkey.id() == Id::EC
                    && pkey
                        .ec_key()
                        .is_ok_and(|ec| ec.group().curve_name() == Some(nid))
            }
        };
        if !same_type || pkey.public_key_to_der().ok().as_deref() != Some(spki.raw) {
            return Err(malformed(
                "OpenSSL reads the public key differently from its bytes",
            ));
        }
        if let KeyKind::Ec { .. } = self.kind {
            let ec = pkey
                .ec_key()
                .map_err(|e| malformed(first_openssl_reason(&e)))?;
            if ec.check_key().is_err() {
                return Err(CsrError::WeakKey(
                    self.desc.clone(),
                    "the public point is not a valid point of the curve".into(),
                ));
            }
        }
        Ok(())
    }
}

fn check_key(spki: &Spki<'_>, policy: &Policy) -> Result<Key, CsrError> {
    let alg = &spki.algorithm;
    match alg.oid.as_str() {
        OID_RSA_ENCRYPTION => {
            if !alg
                .params
                .is_some_and(|p| p.tag == der::NULL && p.value.is_empty())
            {
                return Err(malformed("rsaEncryption parameters are not NULL"));
            }
            check_rsa(spki.key, policy)
        }
        OID_EC_PUBLIC_KEY => check_ec(alg, spki.key, policy),
        OID_ED25519 | OID_ED448 => {
            let name = if alg.oid == OID_ED25519 {
                "Ed25519"
            } else {
                "Ed448"
            };
            Err(CsrError::WeakKey(
                name.into(),
                format!(
                    "{name} keys are not accepted: Puppet agents make RSA or EC keys, and the signer accepts only those"
                ),
            ))
        }
        OID_RSASSA_PSS => Err(CsrError::WeakKey(
            "RSASSA-PSS".into(),
            "RSASSA-PSS keys are not accepted; use an rsaEncryption key".into(),
        )),
        other => Err(CsrError::WeakKey(
            format!("of algorithm {other}"),
            "only RSA (rsaEncryption) and EC (named curves) keys are accepted".into(),
        )),
    }
}

fn bn(bytes: &[u8]) -> Result<openssl::bn::BigNum, CsrError> {
    openssl::bn::BigNum::from_slice(bytes).map_err(|e| malformed(first_openssl_reason(&e)))
}

/// The RSA key policy: size, exponent, and moduli whose factors are public knowledge.
fn check_rsa(key: &[u8], policy: &Policy) -> Result<Key, CsrError> {
    use openssl::bn::BigNumContext;
    let seq = der::strict(key).map_err(malformed)?;
    let [n, e] = der::children(seq.value).map_err(malformed)?[..] else {
        return Err(malformed("RSAPublicKey has the wrong shape"));
    };
    if seq.tag != der::SEQUENCE || n.tag != der::INTEGER || e.tag != der::INTEGER {
        return Err(malformed("RSAPublicKey has the wrong field types"));
    }
    if n.value[0] & 0x80 != 0 || e.value[0] & 0x80 != 0 {
        return Err(malformed("RSA modulus or exponent is negative"));
    }
    let (n, e) = (bn(n.value)?, bn(e.value)?);
    let bits = u32::try_from(n.num_bits()).unwrap_or(0);
    let desc = format!("RSA-{bits}");
    let weak = |why: String| Err(CsrError::WeakKey(desc.clone(), why));
    if bits < policy.min_rsa_bits {
        return weak(format!("policy.min_rsa_bits is {}", policy.min_rsa_bits));
    }
    if bits > MAX_RSA_BITS {
        return weak(format!(
            "RSA keys over {MAX_RSA_BITS} bits are not accepted"
        ));
    }

    // The exponent: below 2^256, odd, at least the floor (never below 3).
    if e.num_bits() > MAX_RSA_EXPONENT_BITS {
        return weak(format!(
            "the public exponent is 2^{MAX_RSA_EXPONENT_BITS} or more ({} bits)",
            e.num_bits()
        ));
    }
    let e_text = e
        .to_dec_str()
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "?".into());
    if !e.is_odd() {
        return weak(format!("the public exponent {e_text} is even"));
    }
    let floor = policy.rsa_min_exponent.max(3);
    if e.num_bits() <= 64 && e_text.parse::<u64>().is_ok_and(|v| v < floor) {
        return weak(if e_text == "1" {
            "the public exponent is 1: anyone can forge its signatures".into()
        } else {
            format!("the public exponent {e_text} is below policy.rsa_min_exponent ({floor})")
        });
    }

    // The modulus: odd, no factor below the trial-division bound, not prime, not a prime
    // power, not two primes close enough for Fermat's method.
    let fact = |why: String| Err(CsrError::WeakKey(desc.clone(), why));
    if !n.is_odd() {
        return fact("the modulus is even".into());
    }
    let mut ctx = BigNumContext::new().map_err(|e| malformed(first_openssl_reason(&e)))?;
    let ossl = |e: openssl::error::ErrorStack| malformed(first_openssl_reason(&e));
    if let Some(p) = small_factor(&n, &mut ctx).map_err(ossl)? {
        return fact(format!("the modulus has the small factor {p}"));
    }
    if n.is_prime(0, &mut ctx).map_err(ossl)? {
        return fact("the modulus is prime, so its private exponent is public".into());
    }
    if let Some(k) = perfect_power(&n, &mut ctx).map_err(ossl)? {
        return fact(format!(
            "the modulus is a perfect power (a {k}th power), so its factors are public"
        ));
    }
    if fermat_factors(&n, &mut ctx).map_err(ossl)? {
        return fact(format!(
            "the modulus is a product of close primes (Fermat's method factors it in under {FERMAT_STEPS} steps)"
        ));
    }
    Ok(Key {
        kind: KeyKind::Rsa {
            bytes: (bits as usize).div_ceil(8),
        },
        desc,
    })
}

/// The primes below [`TRIAL_DIVISION_BOUND`], odd ones (2 is the evenness check).
fn small_primes() -> &'static [u32] {
    static P: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let n = TRIAL_DIVISION_BOUND as usize;
        let mut composite = vec![false; n];
        let mut out = Vec::new();
        for i in 2..n {
            if !composite[i] {
                if i > 2 {
                    out.push(i as u32);
                }
                for j in (i * i..n).step_by(i) {
                    composite[j] = true;
                }
            }
        }
        out
    })
}

type Bn = openssl::bn::BigNum;
type BnCtx = openssl::bn::BigNumContextRef;

/// The smallest odd prime below [`TRIAL_DIVISION_BOUND`] dividing n. One gcd with the product
/// of all of them answers "none" (the common case) without 6,500 divisions.
fn small_factor(
    n: &openssl::bn::BigNumRef,
    ctx: &mut BnCtx,
) -> Result<Option<u32>, openssl::error::ErrorStack> {
    static PRODUCT: std::sync::OnceLock<Option<Bn>> = std::sync::OnceLock::new();
    let product = PRODUCT.get_or_init(|| {
        let mut p = Bn::from_u32(1).ok()?;
        for &q in small_primes() {
            p.mul_word(q).ok()?;
        }
        Some(p)
    });
    if let Some(product) = product {
        // Reduce first: OpenSSL's gcd is constant-time, slow on the 94,000-bit product itself.
        let mut r = Bn::new()?;
        r.nnmod(product, n, ctx)?;
        let mut g = Bn::new()?;
        g.gcd(n, &r, ctx)?;
        if g == Bn::from_u32(1)? {
            return Ok(None);
        }
    }
    for &p in small_primes() {
        if n.mod_word(p)? == 0 {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// ⌊n^(1/k)⌋ for n > 0, k >= 2: Newton's method from a floating-point estimate just above.
fn iroot(
    n: &openssl::bn::BigNumRef,
    k: u32,
    ctx: &mut BnCtx,
) -> Result<Bn, openssl::error::ErrorStack> {
    let bits = n.num_bits();
    if bits == 0 {
        return Bn::new();
    }
    let shift = (bits - 64).max(0);
    let mut top = Bn::new()?;
    top.rshift(n, shift)?;
    let top = top
        .to_vec()
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let log2 = (f64::from(shift) + (top as f64).log2()) / f64::from(k);
    let s = (log2.floor() as i32 - 52).max(0);
    let m = (2f64.powf(log2 - f64::from(s)) * (1.0 + 2f64.powi(-30))).ceil() as u64 + 1;
    let mut x = Bn::from_slice(&m.to_be_bytes())?;
    let mut t = Bn::new()?;
    t.lshift(&x, s)?;
    x = t;
    let (k_bn, km1) = (Bn::from_u32(k)?, Bn::from_u32(k - 1)?);
    loop {
        // y = ((k - 1)·x + n / x^(k-1)) / k
        let mut pow = Bn::new()?;
        pow.exp(&x, &km1, ctx)?;
        let mut q = Bn::new()?;
        q.checked_div(n, &pow, ctx)?;
        let mut a = Bn::new()?;
        a.checked_mul(&x, &km1, ctx)?;
        let mut sum = Bn::new()?;
        sum.checked_add(&a, &q)?;
        let mut y = Bn::new()?;
        y.checked_div(&sum, &k_bn, ctx)?;
        if y >= x {
            return Ok(x);
        }
        x = y;
    }
}

/// `Some(k)` when n = r^k for a prime k (every perfect power is one of a prime power). Only
/// k up to bits/16 matter: n has no prime factor below 2^16 by then.
fn perfect_power(
    n: &openssl::bn::BigNumRef,
    ctx: &mut BnCtx,
) -> Result<Option<u32>, openssl::error::ErrorStack> {
    let max_k = u32::try_from(n.num_bits() / 16).unwrap_or(0);
    for k in (2..=max_k).filter(|&k| (2..k).take_while(|d| d * d <= k).all(|d| k % d != 0)) {
        let r = iroot(n, k, ctx)?;
        let mut pow = Bn::new()?;
        let k_bn = Bn::from_u32(k)?;
        pow.exp(&r, &k_bn, ctx)?;
        if pow == *n {
            return Ok(Some(k));
        }
    }
    Ok(None)
}

/// Fermat's method for [`FERMAT_STEPS`] steps: is a² − n a square for some a from ⌈√n⌉ on?
/// Residues modulo 64·63·65·11 rule out almost every a without touching a big number.
fn fermat_factors(
    n: &openssl::bn::BigNumRef,
    ctx: &mut BnCtx,
) -> Result<bool, openssl::error::ErrorStack> {
    const M: u32 = 64 * 63 * 65 * 11;
    let mut a = iroot(n, 2, ctx)?;
    a.add_word(1)?;
    let rn = n.mod_word(M)?;
    let mut ra = a.mod_word(M)?;
    for i in 0..FERMAT_STEPS {
        let rb = (ra * ra + u64::from(M) - rn) % u64::from(M);
        if maybe_square(rb) {
            let mut ai = a.to_owned()?;
            ai.add_word(i)?;
            let mut a2 = Bn::new()?;
            a2.sqr(&ai, ctx)?;
            let mut b2 = Bn::new()?;
            b2.checked_sub(&a2, n)?;
            let r = iroot(&b2, 2, ctx)?;
            let mut r2 = Bn::new()?;
            r2.sqr(&r, ctx)?;
            if r2 == b2 {
                return Ok(true);
            }
        }
        ra = (ra + 1) % u64::from(M);
    }
    Ok(false)
}

/// Can a number with residue `r` modulo 64·63·65·11 be a square?
fn maybe_square(r: u64) -> bool {
    const MODULI: [u64; 4] = [64, 63, 65, 11];
    static SQUARES: std::sync::OnceLock<Vec<Vec<bool>>> = std::sync::OnceLock::new();
    let squares = SQUARES.get_or_init(|| {
        MODULI
            .iter()
            .map(|&m| (0..m).map(|x| (0..m).any(|i| i * i % m == x)).collect())
            .collect()
    });
    MODULI
        .iter()
        .zip(squares)
        .all(|(&m, table)| table[(r % m) as usize])
}

/// The named curves the signer knows: OID, policy name, OpenSSL NID, field size in bytes.
const CURVES: [(&str, EcCurve, Nid, usize, &str); 3] = [
    (
        "1.2.840.10045.3.1.7",
        EcCurve::P256,
        Nid::X9_62_PRIME256V1,
        32,
        "P-256",
    ),
    ("1.3.132.0.34", EcCurve::P384, Nid::SECP384R1, 48, "P-384"),
    ("1.3.132.0.35", EcCurve::P521, Nid::SECP521R1, 66, "P-521"),
];

/// The EC key policy: a named curve on `policy.ec_curves`, a well-formed point that is not the
/// point at infinity (OpenSSL then checks it lies on the curve).
fn check_ec(alg: &AlgorithmId<'_>, point: &[u8], policy: &Policy) -> Result<Key, CsrError> {
    let curve_oid = match alg.params {
        Some(p) if p.tag == der::OID => der::oid_to_string(p.value).map_err(malformed)?,
        Some(p) if p.tag == der::SEQUENCE => {
            return Err(CsrError::WeakKey(
                "EC-explicit-parameters".into(),
                "explicit curve parameters are not accepted, even those of a listed curve: only the named curves on policy.ec_curves".into(),
            ));
        }
        _ => {
            return Err(CsrError::WeakKey(
                "EC".into(),
                "the key names no curve (only the named curves on policy.ec_curves)".into(),
            ));
        }
    };
    let Some(&(_, curve, nid, size, name)) = CURVES.iter().find(|c| c.0 == curve_oid) else {
        return Err(CsrError::WeakKey(
            format!("EC-{curve_oid}"),
            "curve not on policy.ec_curves".into(),
        ));
    };
    let desc = format!("EC-{name}");
    if !policy.ec_curves.contains(&curve) {
        return Err(CsrError::WeakKey(
            desc,
            "curve not on policy.ec_curves".into(),
        ));
    }
    let ok = match point.first() {
        Some(0x04) => point.len() == 1 + 2 * size,
        Some(0x02 | 0x03) => point.len() == 1 + size,
        _ => false,
    };
    if !ok {
        let why = if point == [0x00] {
            "the public point is the point at infinity".into()
        } else {
            "the public point is not an uncompressed or compressed point of the curve".into()
        };
        return Err(CsrError::WeakKey(desc, why));
    }
    Ok(Key {
        kind: KeyKind::Ec { nid },
        desc,
    })
}

/// The self-signature's algorithm, read from the verified bytes: RSA PKCS#1 v1.5 or ECDSA,
/// matching the key, with the right parameters and a hash on `policy.signature_hashes`.
fn check_signature_algorithm(
    alg: &AlgorithmId<'_>,
    key: &Key,
    policy: &Policy,
) -> Result<(), CsrError> {
    use schemas::signer_config::SignatureHash as H;
    let refuse = |why: String| Err(CsrError::SignatureAlgorithm(why));
    // (is RSA, hash name, the hash if it may be allowed at all)
    let (rsa, name, hash) = match alg.oid.as_str() {
        "1.2.840.113549.1.1.2" => (true, "MD2", None),
        "1.2.840.113549.1.1.3" => (true, "MD4", None),
        "1.2.840.113549.1.1.4" | "1.3.14.3.2.3" => (true, "MD5", None),
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => (true, "SHA-1", None),
        "1.2.840.113549.1.1.14" => (true, "SHA-224", None),
        "1.2.840.113549.1.1.11" => (true, "SHA-256", Some(H::Sha256)),
        "1.2.840.113549.1.1.12" => (true, "SHA-384", Some(H::Sha384)),
        "1.2.840.113549.1.1.13" => (true, "SHA-512", Some(H::Sha512)),
        "1.2.840.10045.4.1" => (false, "SHA-1", None),
        "1.2.840.10045.4.3.1" => (false, "SHA-224", None),
        "1.2.840.10045.4.3.2" => (false, "SHA-256", Some(H::Sha256)),
        "1.2.840.10045.4.3.3" => (false, "SHA-384", Some(H::Sha384)),
        "1.2.840.10045.4.3.4" => (false, "SHA-512", Some(H::Sha512)),
        OID_RSASSA_PSS => {
            return refuse(
                "RSASSA-PSS (1.2.840.113549.1.1.10) is not accepted: Puppet agents sign with PKCS#1 v1.5 or ECDSA".into(),
            );
        }
        OID_ED25519 | OID_ED448 => {
            return refuse(format!("EdDSA ({}) is not accepted", alg.oid));
        }
        other => return refuse(format!("unknown signature algorithm {other}")),
    };
    let family = if rsa { "RSA" } else { "ECDSA" };
    match (key.kind, rsa) {
        (KeyKind::Rsa { .. }, true) | (KeyKind::Ec { .. }, false) => {}
        (KeyKind::Rsa { .. }, false) => {
            return refuse(format!("{family} with {name} does not fit an RSA key"));
        }
        (KeyKind::Ec { .. }, true) => {
            return refuse(format!("{family} with {name} does not fit an EC key"));
        }
    }
    // RFC 4055: NULL or absent for PKCS#1 v1.5; RFC 5758: absent for ECDSA.
    if (rsa && !alg.params_null_or_absent()) || (!rsa && alg.params.is_some()) {
        return refuse(format!(
            "{family} with {name} has parameters it must not have"
        ));
    }
    match hash {
        Some(h) if policy.signature_hashes.contains(&h) => Ok(()),
        Some(_) => refuse(format!(
            "{family} with {name}: {name} is not on policy.signature_hashes"
        )),
        None => refuse(format!(
            "{family} with {name}: {name} is too weak for signatures (policy.signature_hashes)"
        )),
    }
}

fn attribute_label(oid: &str) -> String {
    match oid {
        "2.5.4.3" => "CN".into(),
        "2.5.4.6" => "C".into(),
        "2.5.4.10" => "O".into(),
        "2.5.4.11" => "OU".into(),
        other => other.into(),
    }
}

/// The subject: exactly one RDN holding exactly one attribute, a non-empty CN written as a
/// UTF8String (valid UTF-8) or a PrintableString (its alphabet only). Returns the CN.
fn check_subject(name: der::Tlv<'_>) -> Result<String, CsrError> {
    let mut rdns: Vec<Vec<(String, der::Tlv<'_>)>> = Vec::new();
    for rdn in der::children(name.value).map_err(malformed)? {
        if rdn.tag != der::SET {
            return Err(malformed("subject RDN is not a SET"));
        }
        let mut atvs = Vec::new();
        for atv in der::children(rdn.value).map_err(malformed)? {
            match der::children(atv.value).map_err(malformed)?[..] {
                [oid, value] if atv.tag == der::SEQUENCE && oid.tag == der::OID => {
                    atvs.push((der::oid_to_string(oid.value).map_err(malformed)?, value));
                }
                _ => return Err(malformed("subject attribute has the wrong shape")),
            }
        }
        rdns.push(atvs);
    }
    let describe = |why: &str| {
        let shown: String = rdns
            .iter()
            .map(|atvs| {
                atvs.iter()
                    .map(|(oid, v)| {
                        let text: String =
                            String::from_utf8_lossy(v.value).chars().take(64).collect();
                        format!("{}={}", attribute_label(oid), text.escape_debug())
                    })
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect::<Vec<_>>()
            .join(",");
        CsrError::Subject(format!("`{shown}`: {why}"))
    };
    let value = match rdns.as_slice() {
        [atvs] => match atvs.as_slice() {
            [(oid, value)] if oid == OID_COMMON_NAME => *value,
            [_] => return Err(describe("the one attribute is not CN")),
            [] => return Err(describe("an empty RDN")),
            _ => return Err(describe("a multi-valued RDN")),
        },
        [] => return Err(describe("an empty subject")),
        _ => return Err(describe("more than one RDN")),
    };
    let cn = match value.tag {
        der::UTF8_STRING => String::from_utf8(value.value.to_vec())
            .map_err(|_| describe("the CN UTF8String is not UTF-8"))?,
        der::PRINTABLE_STRING if value.value.iter().all(|&b| is_printable(b)) => {
            String::from_utf8_lossy(value.value).into_owned()
        }
        der::PRINTABLE_STRING => {
            return Err(describe(
                "the CN PrintableString has characters outside its alphabet",
            ));
        }
        tag => {
            return Err(describe(&format!(
                "the CN is written with string tag 0x{tag:02x}, not UTF8String or PrintableString"
            )));
        }
    };
    if cn.is_empty() {
        return Err(describe("an empty CN"));
    }
    Ok(cn)
}

const OID_COMMON_NAME: &str = "2.5.4.3";

/// X.680's PrintableString alphabet.
fn is_printable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b)
}

struct Attributes {
    challenge: Option<Vec<u8>>,
    challenge_values: usize,
    extensions: Vec<ExtRequest>,
    identity: Vec<Vec<u8>>,
    group: Vec<Vec<u8>>,
}

/// The attributes `[0]` of the CertificationRequestInfo (already checked for DER).
fn read_attributes(field: der::Tlv<'_>) -> Result<Attributes, der::DerError> {
    let mut out = Attributes {
        challenge: None,
        challenge_values: 0,
        extensions: Vec::new(),
        identity: Vec::new(),
        group: Vec::new(),
    };
    // `[0] IMPLICIT SET OF Attribute`: a SET OF under another tag, so sorted too.
    let attrs = der::children(field.value)?;
    der::check_set_order(&attrs)?;
    for attr in attrs {
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
            OID_ENROLLMENT_GROUP => {
                for v in values {
                    out.group.push(der::lenient_string(v)?);
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
        [oid, crit, value] if crit.tag == der::BOOLEAN && crit.value == [0xff] => {
            (oid, true, value)
        }
        [_, crit, _] if crit.tag == der::BOOLEAN => {
            return Err(der::DerError(
                "extension writes out critical FALSE, a default DER omits",
            ));
        }
        _ => return Err(der::DerError("extension has the wrong shape")),
    };
    if oid.tag != der::OID || value.tag != der::OCTET_STRING {
        return Err(der::DerError("extension has the wrong field types"));
    }
    // The CA copies the value into the certificate: it must be one DER value, as Puppet writes.
    der::strict(value.value)?;
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

#[cfg(test)]
mod tests {
    //! The threat classes of the adversarial review, each with its neighbours: every request
    //! below verifies (or is made to look as if it would) and must still be refused, with the
    //! specific error that sends it to the right check.
    use super::*;
    use crate::craft::{self, Hash, InfinityEc, Length, RawRsa, SigningKey, Spec};
    use openssl::bn::BigNum;
    use openssl::pkey::Private;
    use schemas::signer_config::SignatureHash;
    use std::sync::OnceLock;

    const CN: &str = "0b7d3c59-5b4f-4f8e-9f0e-2d7f1f1f4a11";
    const O_CN: &str = "2.5.4.3";

    fn rsa() -> &'static PKey<Private> {
        static K: OnceLock<PKey<Private>> = OnceLock::new();
        K.get_or_init(|| craft::rsa_key(2048))
    }

    fn p256() -> &'static PKey<Private> {
        static K: OnceLock<PKey<Private>> = OnceLock::new();
        K.get_or_init(|| craft::ec_key(Nid::X9_62_PRIME256V1))
    }

    fn spec() -> Spec {
        Spec::new(CN, "s3cret")
    }

    fn e(v: u32) -> BigNum {
        BigNum::from_u32(v).unwrap()
    }

    fn parse_default(pem: &[u8]) -> Result<Csr, CsrError> {
        parse(pem, &Policy::default())
    }

    #[track_caller]
    fn weak_key(r: Result<Csr, CsrError>, why: &str) {
        match r {
            Err(CsrError::WeakKey(_, ref m)) if m.contains(why) => {}
            other => panic!("expected WeakKey({why:?}), got {other:?}"),
        }
    }

    #[track_caller]
    fn weak_signature(r: Result<Csr, CsrError>, why: &str) {
        match r {
            Err(CsrError::SignatureAlgorithm(ref m)) if m.contains(why) => {}
            other => panic!("expected SignatureAlgorithm({why:?}), got {other:?}"),
        }
    }

    #[track_caller]
    fn subject(r: Result<Csr, CsrError>) {
        assert!(matches!(r, Err(CsrError::Subject(_))), "{r:?}");
    }

    #[track_caller]
    fn malformed(r: Result<Csr, CsrError>, why: &str) {
        match r {
            Err(CsrError::Malformed(ref m)) if m.contains(why) => {}
            other => panic!("expected Malformed({why:?}), got {other:?}"),
        }
    }

    #[test]
    fn what_puppet_agents_send_is_accepted() {
        for (key, hash) in [
            (rsa(), Hash::Sha256),
            (rsa(), Hash::Sha384),
            (rsa(), Hash::Sha512),
            (p256(), Hash::Sha256),
            (p256(), Hash::Sha384),
        ] {
            let mut s = spec();
            s.hash = hash;
            let der = s.build_der(key);
            let c = parse_default(&craft::pem(&der)).unwrap_or_else(|e| panic!("{hash:?}: {e}"));
            assert_eq!(c.der, der);
            assert_eq!(c.sha256, hex::encode(openssl::sha::sha256(&der)));
            assert_eq!(c.sha256, fingerprint(&craft::pem(&der)));
            assert_eq!(c.cn, CN);
        }
        let c = parse_default(&spec().build(&craft::ec_key(Nid::SECP384R1))).unwrap();
        assert!(c.key.starts_with("EC-"), "{}", c.key);
        // A PrintableString CN (older OpenSSL string masks), CRLF line endings, no final newline.
        let mut s = spec();
        s.subject = Some(craft::name(&[&[(O_CN, 0x13, CN.as_bytes())]]));
        let pem = String::from_utf8(s.build(rsa())).unwrap();
        let crlf = pem.trim_end().replace('\n', "\r\n");
        assert_eq!(parse_default(crlf.as_bytes()).unwrap().cn, CN);
        // The hand-made RSA signer makes what OpenSSL makes.
        let raw = RawRsa::with_exponent(2048, &e(65537));
        assert!(parse_default(&spec().build(&raw)).is_ok());
    }

    // ---- RSA exponent ----

    #[test]
    fn rsa_exponent_one_is_refused() {
        // Anyone can "sign" for e = 1: the signature is the padded digest. No private key exists.
        let forged = RawRsa::exponent_one(2048);
        weak_key(parse_default(&spec().build(&forged)), "exponent");
    }

    #[test]
    fn rsa_exponents_below_the_floor_even_or_huge_are_refused() {
        let three = RawRsa::with_exponent(2048, &e(3));
        let pem = spec().build(&three);
        weak_key(parse_default(&pem), "rsa_min_exponent");
        let lax = Policy {
            rsa_min_exponent: 3,
            ..Policy::default()
        };
        assert!(parse(&pem, &lax).is_ok(), "the floor is configurable");
        // Larger odd exponents pass.
        assert!(parse_default(&spec().build(&RawRsa::with_exponent(2048, &e(65539)))).is_ok());
        // 2^256 + 1: odd, valid signature, above FIPS 186-5's ceiling.
        let mut huge = BigNum::new().unwrap();
        huge.set_bit(256).unwrap();
        huge.add_word(1).unwrap();
        let pem = spec().build(&RawRsa::with_exponent(2048, &huge));
        weak_key(parse_default(&pem), "2^256");
        weak_key(parse(&pem, &lax), "2^256");
        // Even exponents (no valid signature can be made; the key alone is refused).
        let n = RawRsa::with_exponent(2048, &e(65537)).n;
        let even = RawRsa::new(n, e(65538), e(1));
        weak_key(parse_default(&spec().build(&even)), "even");
        weak_key(parse(&spec().build(&even), &lax), "even");
    }

    // ---- RSA modulus ----

    fn f4() -> BigNum {
        e(65537)
    }

    #[test]
    fn rsa_moduli_with_a_small_factor_are_refused() {
        // n = 3·p·q, 2048 bits, validly signed: its factorisation is easy, the key worthless.
        let (p, q) = (craft::prime(1023, &f4()), craft::prime(1024, &f4()));
        let three = e(3);
        let k = RawRsa::from_factors(&[&three, &p, &q], &f4());
        assert!(k.n.num_bits() >= 2048);
        weak_key(parse_default(&spec().build(&k)), "factor 3");
        // 9973, the largest prime below 10000.
        let f = e(9973);
        let (p, q) = (craft::prime(1020, &f4()), craft::prime(1020, &f4()));
        let k = RawRsa::from_factors(&[&f, &p, &q], &f4());
        weak_key(parse_default(&spec().build(&k)), "factor 9973");
    }

    #[test]
    fn even_rsa_moduli_are_refused() {
        let (p, q) = (craft::prime(1024, &f4()), craft::prime(1024, &f4()));
        let two = e(2);
        let k = RawRsa::from_factors(&[&two, &p, &q], &f4());
        weak_key(parse_default(&spec().build(&k)), "even");
    }

    #[test]
    fn prime_moduli_and_prime_powers_are_refused() {
        // n = p: d = e⁻¹ mod (p − 1) is public knowledge.
        let p = craft::prime(2048, &f4());
        weak_key(
            parse_default(&spec().build(&RawRsa::from_factors(&[&p], &f4()))),
            "prime",
        );
        // n = p², n = p³: the root gives p.
        let p = craft::prime(1025, &f4());
        weak_key(
            parse_default(&spec().build(&RawRsa::from_factors(&[&p, &p], &f4()))),
            "power",
        );
        let p = craft::prime(690, &f4());
        weak_key(
            parse_default(&spec().build(&RawRsa::from_factors(&[&p, &p, &p], &f4()))),
            "power",
        );
    }

    #[test]
    fn rsa_moduli_of_close_primes_are_refused() {
        // q = the next prime after p: Fermat's method factors n at once.
        let p = craft::prime(1024, &f4());
        let q = craft::next_prime(&p, &f4());
        weak_key(
            parse_default(&spec().build(&RawRsa::from_factors(&[&p, &q], &f4()))),
            "close",
        );
    }

    #[test]
    fn rsa_size_limits() {
        weak_key(
            parse_default(&spec().build(&craft::rsa_key(1024))),
            "min_rsa_bits",
        );
        // Over 8192 bits: refused before any primality test or verification is attempted.
        let mut n = BigNum::new().unwrap();
        n.set_bit(8200).unwrap();
        n.add_word(0x1_0001).unwrap();
        let big = RawRsa::new(n, f4(), e(1));
        let mut s = spec();
        s.corrupt_signature = true;
        weak_key(parse_default(&s.build(&big)), "8192");
    }

    // ---- EC ----

    #[test]
    fn explicit_ec_curve_parameters_are_refused() {
        for nid in [Nid::X9_62_PRIME256V1, Nid::SECP384R1] {
            let k = craft::ec_key_explicit(nid);
            assert!(
                k.public_key_to_der().unwrap().len() > 200,
                "the key carries the curve parameters"
            );
            weak_key(parse_default(&spec().build(&k)), "explicit");
        }
    }

    #[test]
    fn ec_point_at_infinity_is_refused() {
        let inf = InfinityEc {
            curve: Nid::X9_62_PRIME256V1,
        };
        weak_key(parse_default(&spec().build(&inf)), "point");
    }

    fn p256_spki(point: &[u8]) -> Vec<u8> {
        craft::tlv(
            0x30,
            &[
                craft::tlv(
                    0x30,
                    &[
                        craft::oid("1.2.840.10045.2.1"),
                        craft::oid("1.2.840.10045.3.1.7"),
                    ]
                    .concat(),
                ),
                craft::bit_string(point),
            ]
            .concat(),
        )
    }

    #[test]
    fn ec_points_must_be_points_of_the_curve() {
        let ec = p256().ec_key().unwrap();
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let mut point = |form| {
            ec.public_key()
                .to_bytes(ec.group(), form, &mut ctx)
                .unwrap()
        };
        let uncompressed = point(openssl::ec::PointConversionForm::UNCOMPRESSED);
        let compressed = point(openssl::ec::PointConversionForm::COMPRESSED);
        let hybrid = point(openssl::ec::PointConversionForm::HYBRID);
        let build = |p: &[u8]| {
            spec().build(&craft::ForeignSpki {
                spki: p256_spki(p),
                key: p256(),
            })
        };
        assert!(parse_default(&build(&uncompressed)).is_ok());
        // The compressed form of the same point is the same key.
        assert!(parse_default(&build(&compressed)).is_ok());
        weak_key(parse_default(&build(&hybrid)), "point");
        // Off the curve, truncated, or the other curve's size.
        let mut off = uncompressed.clone();
        off[64] ^= 1;
        assert!(parse_default(&build(&off)).is_err());
        weak_key(parse_default(&build(&uncompressed[..64])), "point");
        weak_key(
            parse_default(&build(&[&uncompressed[..], &[0u8; 32]].concat())),
            "point",
        );
        // No curve named, or NULL (implicitlyCA) instead of one.
        for params in [vec![], vec![0x05, 0x00]] {
            let spki = craft::tlv(
                0x30,
                &[
                    craft::tlv(0x30, &[craft::oid("1.2.840.10045.2.1"), params].concat()),
                    craft::bit_string(&uncompressed),
                ]
                .concat(),
            );
            let pem = spec().build(&craft::ForeignSpki { spki, key: p256() });
            weak_key(parse_default(&pem), "names no curve");
        }
    }

    #[test]
    fn ec_curves_follow_the_policy() {
        weak_key(
            parse_default(&spec().build(&craft::ec_key(Nid::SECP256K1))),
            "ec_curves",
        );
        weak_key(
            parse_default(&spec().build(&craft::ec_key(Nid::SECP224R1))),
            "ec_curves",
        );
        let only_384 = Policy {
            ec_curves: vec![EcCurve::P384],
            ..Policy::default()
        };
        weak_key(parse(&spec().build(p256()), &only_384), "ec_curves");
    }

    // ---- signature algorithm ----

    #[test]
    fn md5_and_sha1_self_signatures_are_refused() {
        for (key, hash, name) in [
            (rsa(), Hash::Md5, "MD5"),
            (rsa(), Hash::Sha1, "SHA-1"),
            (p256(), Hash::Sha1, "SHA-1"),
        ] {
            let mut s = spec();
            s.hash = hash;
            weak_signature(parse_default(&s.build(key)), name);
        }
    }

    #[test]
    fn other_weak_or_unknown_signature_algorithms_are_refused() {
        // SHA-224, RSA and ECDSA: validly signed.
        for key in [rsa(), p256()] {
            let mut s = spec();
            s.hash = Hash::Sha224;
            weak_signature(parse_default(&s.build(key)), "SHA-224");
        }
        // MD2, MD4 (OpenSSL 3 cannot even compute them), the OIW SHA-1 OID, RSASSA-PSS,
        // SHA-3 and unknown OIDs: refused by name, before verification.
        for (alg, why) in [
            (
                craft::tlv(
                    0x30,
                    &[craft::oid("1.2.840.113549.1.1.2"), vec![5, 0]].concat(),
                ),
                "MD2",
            ),
            (
                craft::tlv(
                    0x30,
                    &[craft::oid("1.2.840.113549.1.1.3"), vec![5, 0]].concat(),
                ),
                "MD4",
            ),
            (
                craft::tlv(0x30, &[craft::oid("1.3.14.3.2.29"), vec![5, 0]].concat()),
                "SHA-1",
            ),
            (
                craft::tlv(
                    0x30,
                    &[
                        craft::oid("1.2.840.113549.1.1.10"),
                        craft::tlv(
                            0x30,
                            &craft::tlv(
                                0xa0,
                                &craft::tlv(0x30, &craft::oid("2.16.840.1.101.3.4.2.1")),
                            ),
                        ),
                    ]
                    .concat(),
                ),
                "RSASSA-PSS",
            ),
            (
                craft::tlv(0x30, &craft::oid("2.16.840.1.101.3.4.3.14")),
                "unknown",
            ),
            (craft::tlv(0x30, &craft::oid("1.2.3.4")), "unknown"),
            // An ECDSA algorithm on an RSA key.
            (
                craft::tlv(0x30, &craft::oid("1.2.840.10045.4.3.2")),
                "RSA key",
            ),
            // sha256WithRSAEncryption with parameters other than NULL.
            (
                craft::tlv(
                    0x30,
                    &[craft::oid("1.2.840.113549.1.1.11"), vec![2, 1, 0]].concat(),
                ),
                "parameters",
            ),
        ] {
            let mut s = spec();
            s.signature_algorithm = Some(alg);
            weak_signature(parse_default(&s.build(rsa())), why);
        }
        // ecdsa-with-SHA256 with parameters (they must be absent).
        let mut s = spec();
        s.signature_algorithm = Some(craft::tlv(
            0x30,
            &[craft::oid("1.2.840.10045.4.3.2"), vec![5, 0]].concat(),
        ));
        weak_signature(parse_default(&s.build(p256())), "parameters");
        // sha256WithRSAEncryption without its NULL is accepted (RFC 4055 allows both).
        let mut s = spec();
        s.signature_algorithm = Some(craft::tlv(0x30, &craft::oid("1.2.840.113549.1.1.11")));
        assert!(parse_default(&s.build(rsa())).is_ok());
    }

    #[test]
    fn signature_hashes_follow_the_policy() {
        let only_384 = Policy {
            signature_hashes: vec![SignatureHash::Sha384],
            ..Policy::default()
        };
        weak_signature(parse(&spec().build(rsa()), &only_384), "signature_hashes");
        let mut s = spec();
        s.hash = Hash::Sha384;
        assert!(parse(&s.build(rsa()), &only_384).is_ok());
        assert!(parse(&s.build(p256()), &only_384).is_ok());
    }

    /// `der` with its signature value replaced by `f(value)`.
    fn with_signature(der: &[u8], f: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let outer = crate::der::single(der).unwrap();
        let [info, alg, sig] = crate::der::children(outer.value).unwrap()[..] else {
            panic!("not a request")
        };
        craft::tlv(
            0x30,
            &[info.raw, alg.raw, &craft::bit_string(&f(&sig.value[1..]))].concat(),
        )
    }

    #[test]
    fn signature_values_must_have_their_exact_form() {
        // RSA: one zero octet more in front is the same number, and not a PKCS#1 signature.
        let der = with_signature(&spec().build_der(rsa()), |s| [&[0u8][..], s].concat());
        let r = parse_default(&craft::pem(&der));
        assert!(matches!(r, Err(CsrError::BadSignature)), "{r:?}");
        // ECDSA: bytes after the Ecdsa-Sig-Value, or a non-minimal INTEGER in it.
        let der = with_signature(&spec().build_der(p256()), |s| [s, &[0u8][..]].concat());
        let r = parse_default(&craft::pem(&der));
        assert!(matches!(r, Err(CsrError::BadSignature)), "{r:?}");
        let der = with_signature(&spec().build_der(p256()), |s| {
            let seq = crate::der::single(s).unwrap();
            let rs = crate::der::children(seq.value).unwrap();
            let r0 = craft::tlv(0x02, &[&[0u8][..], rs[0].value].concat());
            craft::tlv(0x30, &[r0, rs[1].raw.to_vec()].concat())
        });
        let r = parse_default(&craft::pem(&der));
        assert!(matches!(r, Err(CsrError::BadSignature)), "{r:?}");
    }

    #[test]
    fn ed25519_and_ed448_are_refused() {
        weak_key(
            parse_default(&spec().build(&craft::ed25519_key())),
            "Ed25519",
        );
        weak_key(parse_default(&spec().build(&craft::ed448_key())), "Ed448");
    }

    // ---- subject ----

    fn with_subject(rdns: &[&[craft::Atv<'_>]]) -> Vec<u8> {
        let mut s = spec();
        s.subject = Some(craft::name(rdns));
        s.build(rsa())
    }

    #[test]
    fn an_empty_rdn_beside_the_cn_is_refused() {
        let cn: craft::Atv<'_> = (O_CN, 0x0c, CN.as_bytes());
        subject(parse_default(&with_subject(&[&[], &[cn]])));
        subject(parse_default(&with_subject(&[&[cn], &[]])));
    }

    #[test]
    fn subject_neighbours_are_refused() {
        let cn: craft::Atv<'_> = (O_CN, 0x0c, CN.as_bytes());
        let o: craft::Atv<'_> = ("2.5.4.10", 0x0c, b"acme");
        // multi-valued RDNs, duplicate CN RDNs, other attributes, no RDN at all
        subject(parse_default(&with_subject(&[&[cn, cn]])));
        subject(parse_default(&with_subject(&[&[cn, o]])));
        subject(parse_default(&with_subject(&[&[cn], &[cn]])));
        subject(parse_default(&with_subject(&[&[o], &[cn]])));
        subject(parse_default(&with_subject(&[&[o]])));
        subject(parse_default(&with_subject(&[])));
        // an empty CN
        subject(parse_default(&with_subject(&[&[(O_CN, 0x0c, b"")]])));
        // other string types: BMPString, TeletexString, IA5String, UniversalString
        let bmp: Vec<u8> = CN.encode_utf16().flat_map(u16::to_be_bytes).collect();
        subject(parse_default(&with_subject(&[&[(O_CN, 0x1e, &bmp)]])));
        for tag in [0x14, 0x16] {
            subject(parse_default(&with_subject(&[&[(
                O_CN,
                tag,
                CN.as_bytes(),
            )]])));
        }
        let ucs4: Vec<u8> = CN.chars().flat_map(|c| (c as u32).to_be_bytes()).collect();
        subject(parse_default(&with_subject(&[&[(O_CN, 0x1c, &ucs4)]])));
        // a PrintableString outside its alphabet, a UTF8String that is not UTF-8
        subject(parse_default(&with_subject(&[&[(O_CN, 0x13, b"a_b")]])));
        // (OpenSSL itself already refuses to read a UTF8String that is not UTF-8.)
        let r = parse_default(&with_subject(&[&[(O_CN, 0x0c, b"\xff\xfe")]]));
        assert!(
            matches!(r, Err(CsrError::Subject(_)) | Err(CsrError::Malformed(_))),
            "{r:?}"
        );
    }

    // ---- PEM and DER ----

    #[test]
    fn pem_must_be_exactly_one_strict_block() {
        let pem = String::from_utf8(spec().build(rsa())).unwrap();
        assert!(parse_default(pem.as_bytes()).is_ok());
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        for (what, input) in [
            ("garbage before", format!("Subject: x\n{pem}")),
            ("garbage after", format!("{pem}trailing words\n")),
            ("two blocks", format!("{pem}{pem}")),
            (
                "a second block of another kind",
                format!("{pem}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            ),
            (
                "the NEW label",
                pem.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"),
            ),
            (
                "no END line",
                pem.replace("-----END CERTIFICATE REQUEST-----\n", ""),
            ),
            (
                "an encapsulated header",
                pem.replacen("-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1),
            ),
            (
                "a space inside the base64",
                pem.replacen("\n", "\n ", 2)
                    .replacen("\n -----BEGIN", "\n-----BEGIN", 1),
            ),
            (
                "an empty line inside",
                pem.replacen("\n", "\n\n", 2).replacen("\n\n", "\n", 1),
            ),
            (
                "a character outside the alphabet",
                pem.replacen(&body[10..11], "*", 1),
            ),
            (
                "one line, no line breaks",
                format!(
                    "-----BEGIN CERTIFICATE REQUEST-----{body}-----END CERTIFICATE REQUEST-----"
                ),
            ),
        ] {
            let r = parse_default(input.as_bytes());
            assert!(matches!(r, Err(CsrError::Malformed(_))), "{what}: {r:?}");
        }
        // Non-canonical base64: the unused low bits of the last symbol set.
        let der = spec().build_der(rsa());
        let mut b64 = openssl::base64::encode_block(&der);
        let pad = b64.bytes().filter(|&b| b == b'=').count();
        assert!(pad > 0 || der.len().is_multiple_of(3));
        let mut der2 = der.clone();
        let mut s = spec();
        // Find a request whose length leaves unused bits.
        let mut i = 0;
        while der2.len().is_multiple_of(3) {
            i += 1;
            s.challenge = vec![(0x13, format!("s3cret{}", "x".repeat(i)).into_bytes())];
            der2 = s.build_der(rsa());
        }
        b64 = openssl::base64::encode_block(&der2);
        let pos = b64.find('=').unwrap() - 1;
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let v = alphabet
            .iter()
            .position(|&c| c == b64.as_bytes()[pos])
            .unwrap();
        let bumped = alphabet[v | 1] as char;
        b64.replace_range(pos..=pos, &bumped.to_string());
        let text = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n"
        );
        malformed(parse_default(text.as_bytes()), "base64");
    }

    #[test]
    fn non_der_encodings_are_refused() {
        let good = spec().build_der(rsa());
        // Outside the signature: the outer SEQUENCE's length, trailing bytes.
        for (what, outer, trailing) in [
            ("indefinite outer length", Length::Indefinite, vec![]),
            ("long-form outer length", Length::Long(3), vec![]),
            ("trailing data", Length::Minimal, vec![0x05, 0x00]),
            ("trailing zero", Length::Minimal, vec![0x00]),
        ] {
            let mut s = spec();
            s.outer_length = outer;
            s.trailing = trailing;
            let der = s.build_der(rsa());
            assert_ne!(der, good, "{what}");
            let r = parse_default(&craft::pem(&der));
            assert!(matches!(r, Err(CsrError::Malformed(_))), "{what}: {r:?}");
        }
        // Inside the signed CertificationRequestInfo.
        for (what, info) in [
            ("indefinite info length", Length::Indefinite),
            ("long-form info length", Length::Long(4)),
        ] {
            let mut s = spec();
            s.info_length = info;
            let r = parse_default(&s.build(rsa()));
            assert!(matches!(r, Err(CsrError::Malformed(_))), "{what}: {r:?}");
        }
        // Inside an attribute: a non-minimal length, a constructed (BER) string, an explicit
        // default (critical FALSE), an unsorted SET OF, a non-DER extension value.
        let ext = |inner: Vec<u8>| (OID_EXTENSION_REQUEST.to_owned(), craft::tlv(0x30, &inner));
        for (what, attr) in [
            (
                "long-form length in an attribute",
                (
                    "2.5.4.41".to_owned(),
                    vec![0x0c, 0x81, 0x03, b'a', b'b', b'c'],
                ),
            ),
            (
                "constructed string",
                (
                    "2.5.4.41".to_owned(),
                    craft::tlv(0x2c, &craft::tlv(0x0c, b"abc")),
                ),
            ),
            (
                "critical FALSE written out",
                ext(craft::tlv(
                    0x30,
                    &[
                        craft::oid(OID_PP_UUID),
                        vec![0x01, 0x01, 0x00],
                        craft::tlv(0x04, &craft::utf8_ext(CN)),
                    ]
                    .concat(),
                )),
            ),
            (
                "BOOLEAN other than 00/FF",
                ext(craft::tlv(
                    0x30,
                    &[
                        craft::oid(OID_PP_UUID),
                        vec![0x01, 0x01, 0x01],
                        craft::tlv(0x04, &craft::utf8_ext(CN)),
                    ]
                    .concat(),
                )),
            ),
            (
                "extension value with a long-form length",
                ext(craft::tlv(
                    0x30,
                    &[
                        craft::oid(OID_PP_UUID),
                        craft::tlv(0x04, &craft::tlv_with(0x0c, CN.as_bytes(), Length::Long(2))),
                    ]
                    .concat(),
                )),
            ),
            (
                "extension value with trailing bytes",
                ext(craft::tlv(
                    0x30,
                    &[
                        craft::oid(OID_PP_UUID),
                        craft::tlv(0x04, &[craft::utf8_ext(CN), vec![0x05, 0x00]].concat()),
                    ]
                    .concat(),
                )),
            ),
            (
                "non-minimal OID arc",
                ("2.5.4.41".to_owned(), craft::tlv(0x06, &[0x2a, 0x80, 0x01])),
            ),
            (
                "non-minimal INTEGER",
                ("2.5.4.41".to_owned(), vec![0x02, 0x02, 0x00, 0x01]),
            ),
        ] {
            let mut s = spec();
            s.attributes.push(attr);
            let r = parse_default(&s.build(rsa()));
            assert!(matches!(r, Err(CsrError::Malformed(_))), "{what}: {r:?}");
        }
        // Two values of one attribute in the wrong order (DER sorts a SET OF).
        let mut s = spec();
        s.attributes.push((
            "2.5.4.41".into(),
            [craft::tlv(0x0c, b"b"), craft::tlv(0x0c, b"a")].concat(),
        ));
        malformed(parse_default(&s.build(rsa())), "SET");
        // Two attributes in the wrong order: build, then swap them inside the signed bytes.
        let mut s = spec();
        s.attributes
            .push(("2.5.4.41".into(), craft::tlv(0x0c, b"zz")));
        let sorted = s.build_der(rsa());
        let a = craft::tlv(
            0x30,
            &[
                craft::oid("1.2.840.113549.1.9.7"),
                craft::tlv(0x31, &craft::tlv(0x13, b"s3cret")),
            ]
            .concat(),
        );
        let b = craft::tlv(
            0x30,
            &[
                craft::oid("2.5.4.41"),
                craft::tlv(0x31, &craft::tlv(0x0c, b"zz")),
            ]
            .concat(),
        );
        // DER puts the shorter encoding (b) first; write them the other way round.
        let both = [b.clone(), a.clone()].concat();
        let at = sorted
            .windows(both.len())
            .position(|w| w == both.as_slice())
            .expect("sorted attributes");
        let mut info = sorted.clone();
        info.splice(at..at + both.len(), [a, b].concat());
        // Re-sign the swapped info.
        let info_tlv = crate::der::single(&info).unwrap();
        let (_, rest) = crate::der::read(info_tlv.value).unwrap();
        let tbs = info_tlv.value[..info_tlv.value.len() - rest.len()].to_vec();
        let sig = rsa().sign(Hash::Sha256, &tbs);
        let der = craft::tlv(
            0x30,
            &[
                tbs,
                rsa().signature_algorithm(Hash::Sha256),
                craft::bit_string(&sig),
            ]
            .concat(),
        );
        malformed(parse_default(&craft::pem(&der)), "SET");
        // A version other than 0 (v1).
        let mut s = spec();
        s.version = 1;
        assert!(parse_default(&s.build(rsa())).is_err());
    }

    #[test]
    fn openssl_alone_would_keep_ber_in_the_signed_part() {
        // Why the comparison with OpenSSL's re-encoding is not enough by itself: OpenSSL keeps
        // the CertificationRequestInfo's encoding as it was read (BER included), re-encodes it
        // unchanged and verifies the signature over it. Only the strict walk refuses it.
        for info in [Length::Long(3), Length::Indefinite] {
            let mut s = spec();
            s.info_length = info;
            let der = s.build_der(rsa());
            let req = X509Req::from_der(&der).unwrap();
            assert_eq!(req.to_der().unwrap(), der, "{info:?}");
            assert!(req.verify(&req.public_key().unwrap()).unwrap(), "{info:?}");
            malformed(parse_default(&craft::pem(&der)), "DER");
        }
    }

    #[test]
    fn the_fingerprint_is_of_the_bytes_that_were_verified() {
        let der = spec().build_der(rsa());
        let pem = craft::pem(&der);
        let sha = hex::encode(openssl::sha::sha256(&der));
        assert_eq!(fingerprint(&pem), sha);
        assert_eq!(parse_default(&pem).unwrap().sha256, sha);
        // A BER variant of the same request has another fingerprint than the DER one.
        let mut s = spec();
        s.outer_length = Length::Long(3);
        assert_ne!(fingerprint(&s.build(rsa())), sha);
        assert_eq!(
            fingerprint(b"not a csr"),
            hex::encode(openssl::sha::sha256(b"not a csr"))
        );
    }
}
