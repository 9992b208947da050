//! Building certificate requests byte by byte, for tests and the benchmark: the `openssl` crate
//! cannot add attributes (challengePassword) to a request, and the adversarial cases (bad
//! signature, PrintableString carrying UTF-8, authorization extensions, weak keys, weak hashes,
//! odd subjects, non-DER encodings) need exact control.
//! The result is a well-formed, DER-encoded PKCS#10 request signed with SHA-256 unless asked
//! otherwise. Keys are [`SigningKey`]s: an OpenSSL key, or hand-made RSA numbers ([`RawRsa`]) and
//! EC points ([`InfinityEc`]) that OpenSSL would never generate.

use openssl::bn::{BigNum, BigNumContext, BigNumRef};
use openssl::ec::{Asn1Flag, EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::x509::X509Name;

/// DER: tag, definite length, content.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// DER OBJECT IDENTIFIER from dotted form. Panics on a malformed OID (test input only).
pub fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u128> = dotted
        .split('.')
        .map(|a| a.parse().expect("numeric OID arc"))
        .collect();
    let mut body = Vec::new();
    let mut push = |mut v: u128| {
        let mut tmp = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        body.extend(tmp);
    };
    push(arcs[0] * 40 + arcs[1]);
    for &a in &arcs[2..] {
        push(a);
    }
    tlv(0x06, &body)
}

/// An extension request value the way Puppet writes it: OCTET STRING content = DER UTF8String.
pub fn utf8_ext(value: &str) -> Vec<u8> {
    tlv(0x0c, value.as_bytes())
}

/// A subjectAltName value with the given DNS names.
pub fn san_dns(names: &[&str]) -> Vec<u8> {
    let entries: Vec<u8> = names.iter().flat_map(|n| tlv(0x82, n.as_bytes())).collect();
    tlv(0x30, &entries)
}

/// A DER INTEGER holding a non-negative big number.
pub fn integer(n: &BigNumRef) -> Vec<u8> {
    let mut v = n.to_vec();
    if v.first().is_none_or(|b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    tlv(0x02, &v)
}

/// A DER BIT STRING with no unused bits.
pub fn bit_string(content: &[u8]) -> Vec<u8> {
    tlv(0x03, &[&[0u8][..], content].concat())
}

/// One AttributeTypeAndValue: (dotted OID, string tag, value).
pub type Atv<'a> = (&'a str, u8, &'a [u8]);

/// A Name from RDNs, each a SET of AttributeTypeAndValue (sorted, as DER requires). An empty
/// slice is an empty RDN.
pub fn name(rdns: &[&[Atv<'_>]]) -> Vec<u8> {
    let rdns: Vec<u8> = rdns
        .iter()
        .flat_map(|rdn| {
            let mut atvs: Vec<Vec<u8>> = rdn
                .iter()
                .map(|(o, tag, v)| tlv(0x30, &[oid(o), tlv(*tag, v)].concat()))
                .collect();
            atvs.sort();
            tlv(0x31, &atvs.concat())
        })
        .collect();
    tlv(0x30, &rdns)
}

/// PEM of a DER request, with 64-character lines, as Puppet writes it.
pub fn pem(der: &[u8]) -> Vec<u8> {
    let b64 = openssl::base64::encode_block(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE REQUEST-----\n");
    pem.into_bytes()
}

/// How a length is written: DER's minimal form, or one of BER's other forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Length {
    #[default]
    Minimal,
    /// Long form with this many length octets (leading zeros), even where fewer would do.
    Long(u8),
    /// Indefinite length, closed by end-of-contents octets (constructed values only).
    Indefinite,
}

/// Tag, length in the given form, content.
pub fn tlv_with(tag: u8, content: &[u8], length: Length) -> Vec<u8> {
    match length {
        Length::Minimal => tlv(tag, content),
        Length::Long(n) => {
            let bytes = content.len().to_be_bytes();
            let n = usize::from(n).max(1);
            assert!(
                bytes[..bytes.len() - n.min(bytes.len())]
                    .iter()
                    .all(|&b| b == 0),
                "length does not fit"
            );
            let mut out = vec![tag, 0x80 | n as u8];
            for i in (0..n).rev() {
                out.push(if i < bytes.len() {
                    bytes[bytes.len() - 1 - i]
                } else {
                    0
                });
            }
            out.extend_from_slice(content);
            out
        }
        Length::Indefinite => [&[tag, 0x80][..], content, &[0, 0]].concat(),
    }
}

/// The hash of a request's self-signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hash {
    Md5,
    Sha1,
    Sha224,
    #[default]
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub fn digest(self) -> MessageDigest {
        match self {
            Hash::Md5 => MessageDigest::md5(),
            Hash::Sha1 => MessageDigest::sha1(),
            Hash::Sha224 => MessageDigest::sha224(),
            Hash::Sha256 => MessageDigest::sha256(),
            Hash::Sha384 => MessageDigest::sha384(),
            Hash::Sha512 => MessageDigest::sha512(),
        }
    }

    /// The hash's own OID (in a PKCS#1 DigestInfo).
    pub fn oid(self) -> &'static str {
        match self {
            Hash::Md5 => "1.2.840.113549.2.5",
            Hash::Sha1 => "1.3.14.3.2.26",
            Hash::Sha224 => "2.16.840.1.101.3.4.2.4",
            Hash::Sha256 => "2.16.840.1.101.3.4.2.1",
            Hash::Sha384 => "2.16.840.1.101.3.4.2.2",
            Hash::Sha512 => "2.16.840.1.101.3.4.2.3",
        }
    }

    /// `<hash>WithRSAEncryption`.
    pub fn rsa_oid(self) -> &'static str {
        match self {
            Hash::Md5 => "1.2.840.113549.1.1.4",
            Hash::Sha1 => "1.2.840.113549.1.1.5",
            Hash::Sha224 => "1.2.840.113549.1.1.14",
            Hash::Sha256 => "1.2.840.113549.1.1.11",
            Hash::Sha384 => "1.2.840.113549.1.1.12",
            Hash::Sha512 => "1.2.840.113549.1.1.13",
        }
    }

    /// `ecdsa-with-<hash>`; MD5 has none.
    pub fn ecdsa_oid(self) -> &'static str {
        match self {
            Hash::Md5 => panic!("craft: there is no ECDSA with MD5"),
            Hash::Sha1 => "1.2.840.10045.4.1",
            Hash::Sha224 => "1.2.840.10045.4.3.1",
            Hash::Sha256 => "1.2.840.10045.4.3.2",
            Hash::Sha384 => "1.2.840.10045.4.3.3",
            Hash::Sha512 => "1.2.840.10045.4.3.4",
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        openssl::hash::hash(self.digest(), data)
            .expect("hash")
            .to_vec()
    }
}

/// What signs a request: its SubjectPublicKeyInfo, its signature AlgorithmIdentifier and the
/// signature value.
pub trait SigningKey {
    /// DER SubjectPublicKeyInfo.
    fn spki(&self) -> Vec<u8>;
    /// DER AlgorithmIdentifier of a signature with `hash`.
    fn signature_algorithm(&self, hash: Hash) -> Vec<u8>;
    /// The signature of `tbs` (the content of the BIT STRING after its unused-bits octet).
    fn sign(&self, hash: Hash, tbs: &[u8]) -> Vec<u8>;
}

impl SigningKey for PKey<Private> {
    fn spki(&self) -> Vec<u8> {
        self.public_key_to_der().expect("SPKI DER")
    }

    fn signature_algorithm(&self, hash: Hash) -> Vec<u8> {
        match self.id() {
            Id::RSA => tlv(0x30, &[oid(hash.rsa_oid()), vec![0x05, 0x00]].concat()),
            Id::EC => tlv(0x30, &oid(hash.ecdsa_oid())),
            Id::ED25519 => tlv(0x30, &oid("1.3.101.112")),
            Id::ED448 => tlv(0x30, &oid("1.3.101.113")),
            other => panic!("craft: unsupported key type {other:?}"),
        }
    }

    fn sign(&self, hash: Hash, tbs: &[u8]) -> Vec<u8> {
        if matches!(self.id(), Id::ED25519 | Id::ED448) {
            let mut signer = openssl::sign::Signer::new_without_digest(self).expect("signer");
            return signer.sign_oneshot_to_vec(tbs).expect("sign");
        }
        let mut signer = openssl::sign::Signer::new(hash.digest(), self).expect("signer");
        signer.update(tbs).expect("sign");
        signer.sign_to_vec().expect("sign")
    }
}

/// RSA from bare numbers, signed by hand (PKCS#1 v1.5: `EM^d mod n`), so tests can make the keys
/// OpenSSL refuses to generate: exponent 1, even exponents, even moduli, moduli with small
/// factors, prime moduli, prime powers, close primes.
pub struct RawRsa {
    pub n: BigNum,
    pub e: BigNum,
    d: BigNum,
}

impl RawRsa {
    pub fn new(n: BigNum, e: BigNum, d: BigNum) -> Self {
        RawRsa { n, e, d }
    }

    /// `e` over the product of `factors` (repeats allowed, each a prime). Panics when `e` has
    /// no inverse modulo φ(n).
    pub fn from_factors(factors: &[&BigNumRef], e: &BigNumRef) -> Self {
        let mut ctx = BigNumContext::new().expect("ctx");
        let mut n = BigNum::from_u32(1).expect("bn");
        let mut phi = BigNum::from_u32(1).expect("bn");
        let mut seen: Vec<&BigNumRef> = Vec::new();
        for &p in factors {
            let mut t = BigNum::new().expect("bn");
            t.checked_mul(&n, p, &mut ctx).expect("mul");
            n = t;
            // φ(p^k) = p^(k-1)·(p-1): the first p contributes p-1, each further one p.
            let mut f = p.to_owned().expect("bn");
            if !seen.contains(&p) {
                f.sub_word(1).expect("sub");
                seen.push(p);
            }
            let mut t = BigNum::new().expect("bn");
            t.checked_mul(&phi, &f, &mut ctx).expect("mul");
            phi = t;
        }
        let mut d = BigNum::new().expect("bn");
        d.mod_inverse(e, &phi, &mut ctx)
            .expect("e is invertible modulo φ(n)");
        RawRsa {
            n,
            e: e.to_owned().expect("bn"),
            d,
        }
    }

    /// Exponent 1 over a genuine modulus: no private key exists or is needed, the "signature"
    /// is the padded digest itself.
    pub fn exponent_one(bits: u32) -> Self {
        let rsa = openssl::rsa::Rsa::generate(bits).expect("RSA keygen");
        RawRsa {
            n: rsa.n().to_owned().expect("bn"),
            e: BigNum::from_u32(1).expect("bn"),
            d: BigNum::from_u32(1).expect("bn"),
        }
    }

    /// Two fresh primes of `bits / 2` and the exponent `e` (odd; retried until invertible).
    pub fn with_exponent(bits: u32, e: &BigNumRef) -> Self {
        let p = prime(bits / 2, e);
        let q = prime(bits - bits / 2, e);
        Self::from_factors(&[&p, &q], e)
    }

    fn bytes(&self) -> usize {
        (self.n.num_bits() as usize).div_ceil(8)
    }
}

/// A random prime of `bits` bits with `gcd(p - 1, e) = 1`.
pub fn prime(bits: u32, e: &BigNumRef) -> BigNum {
    let mut ctx = BigNumContext::new().expect("ctx");
    loop {
        let mut p = BigNum::new().expect("bn");
        p.generate_prime(bits as i32, false, None, None)
            .expect("prime");
        let mut pm1 = p.to_owned().expect("bn");
        pm1.sub_word(1).expect("sub");
        let mut g = BigNum::new().expect("bn");
        g.gcd(&pm1, e, &mut ctx).expect("gcd");
        if g == BigNum::from_u32(1).expect("bn") {
            return p;
        }
    }
}

/// The smallest prime above `p` with `gcd(q - 1, e) = 1`.
pub fn next_prime(p: &BigNumRef, e: &BigNumRef) -> BigNum {
    let mut ctx = BigNumContext::new().expect("ctx");
    let mut q = p.to_owned().expect("bn");
    loop {
        let step = if q.is_odd() { 2 } else { 1 };
        q.add_word(step).expect("add");
        if q.is_prime(0, &mut ctx).expect("is_prime") {
            let mut qm1 = q.to_owned().expect("bn");
            qm1.sub_word(1).expect("sub");
            let mut g = BigNum::new().expect("bn");
            g.gcd(&qm1, e, &mut ctx).expect("gcd");
            if g == BigNum::from_u32(1).expect("bn") {
                return q;
            }
        }
    }
}

/// EMSA-PKCS1-v1_5 encoding of `digest` for a `k`-byte modulus.
pub fn pkcs1_v15(hash: Hash, digest: &[u8], k: usize) -> Vec<u8> {
    let info = tlv(
        0x30,
        &[
            tlv(0x30, &[oid(hash.oid()), vec![0x05, 0x00]].concat()),
            tlv(0x04, digest),
        ]
        .concat(),
    );
    assert!(k >= info.len() + 11, "modulus too short for the digest");
    let mut em = vec![0x00, 0x01];
    em.extend(std::iter::repeat_n(0xff, k - info.len() - 3));
    em.push(0x00);
    em.extend(info);
    em
}

impl SigningKey for RawRsa {
    fn spki(&self) -> Vec<u8> {
        let key = tlv(0x30, &[integer(&self.n), integer(&self.e)].concat());
        tlv(
            0x30,
            &[
                tlv(
                    0x30,
                    &[oid("1.2.840.113549.1.1.1"), vec![0x05, 0x00]].concat(),
                ),
                bit_string(&key),
            ]
            .concat(),
        )
    }

    fn signature_algorithm(&self, hash: Hash) -> Vec<u8> {
        tlv(0x30, &[oid(hash.rsa_oid()), vec![0x05, 0x00]].concat())
    }

    fn sign(&self, hash: Hash, tbs: &[u8]) -> Vec<u8> {
        let k = self.bytes();
        let em = BigNum::from_slice(&pkcs1_v15(hash, &hash.hash(tbs), k)).expect("bn");
        let mut ctx = BigNumContext::new().expect("ctx");
        let mut s = BigNum::new().expect("bn");
        s.mod_exp(&em, &self.d, &self.n, &mut ctx).expect("mod_exp");
        s.to_vec_padded(k as i32).expect("pad")
    }
}

/// An EC "public key" that is the point at infinity (encoded as the single octet 0x00) on a
/// named curve. Its ECDSA signatures need no private key: with `Q = O`, verification computes
/// `R = u1·G`, so choosing `k` and `s = e/k` makes any message verify.
pub struct InfinityEc {
    pub curve: Nid,
}

impl SigningKey for InfinityEc {
    fn spki(&self) -> Vec<u8> {
        let curve_oid = match self.curve {
            Nid::X9_62_PRIME256V1 => "1.2.840.10045.3.1.7",
            Nid::SECP384R1 => "1.3.132.0.34",
            Nid::SECP521R1 => "1.3.132.0.35",
            other => panic!("craft: no OID for {other:?}"),
        };
        tlv(
            0x30,
            &[
                tlv(0x30, &[oid("1.2.840.10045.2.1"), oid(curve_oid)].concat()),
                bit_string(&[0x00]),
            ]
            .concat(),
        )
    }

    fn signature_algorithm(&self, hash: Hash) -> Vec<u8> {
        tlv(0x30, &oid(hash.ecdsa_oid()))
    }

    fn sign(&self, hash: Hash, tbs: &[u8]) -> Vec<u8> {
        let group = EcGroup::from_curve_name(self.curve).expect("curve");
        let mut ctx = BigNumContext::new().expect("ctx");
        let mut order = BigNum::new().expect("bn");
        group.order(&mut order, &mut ctx).expect("order");
        let bits = order.num_bits();
        // e: the leftmost `bits` bits of the digest (SEC 1, 4.1.3).
        let digest = hash.hash(tbs);
        let mut e = BigNum::from_slice(&digest).expect("bn");
        let excess = digest.len() as i32 * 8 - bits;
        if excess > 0 {
            let mut t = BigNum::new().expect("bn");
            t.rshift(&e, excess).expect("shift");
            e = t;
        }
        loop {
            let mut k = BigNum::new().expect("bn");
            order.rand_range(&mut k).expect("rand");
            let mut point = EcPoint::new(&group).expect("point");
            point.mul_generator2(&group, &k, &mut ctx).expect("kG");
            let (mut x, mut y) = (BigNum::new().expect("bn"), BigNum::new().expect("bn"));
            point
                .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
                .expect("affine");
            let mut r = BigNum::new().expect("bn");
            r.nnmod(&x, &order, &mut ctx).expect("mod");
            let mut kinv = BigNum::new().expect("bn");
            kinv.mod_inverse(&k, &order, &mut ctx).expect("inverse");
            let mut s = BigNum::new().expect("bn");
            s.mod_mul(&e, &kinv, &order, &mut ctx).expect("mul");
            if r.num_bits() == 0 || s.num_bits() == 0 {
                continue;
            }
            return EcdsaSig::from_private_components(r, s)
                .expect("sig")
                .to_der()
                .expect("sig DER");
        }
    }
}

/// A key that signs like `key` but presents `spki` as its SubjectPublicKeyInfo (another curve
/// point, other parameters, another encoding of the same key).
pub struct ForeignSpki<'a, K: ?Sized> {
    pub spki: Vec<u8>,
    pub key: &'a K,
}

impl<K: SigningKey + ?Sized> SigningKey for ForeignSpki<'_, K> {
    fn spki(&self) -> Vec<u8> {
        self.spki.clone()
    }

    fn signature_algorithm(&self, hash: Hash) -> Vec<u8> {
        self.key.signature_algorithm(hash)
    }

    fn sign(&self, hash: Hash, tbs: &[u8]) -> Vec<u8> {
        self.key.sign(hash, tbs)
    }
}

/// What to put in a request.
#[derive(Clone)]
pub struct Spec {
    pub cn: String,
    /// challengePassword: (string tag, bytes). Puppet uses 0x13 (PrintableString) for any bytes.
    pub challenge: Vec<(u8, Vec<u8>)>,
    /// (dotted OID, extnValue content) in one extReq attribute.
    pub extensions: Vec<(String, Vec<u8>)>,
    /// Further raw attributes: (dotted OID, DER of the single value).
    pub attributes: Vec<(String, Vec<u8>)>,
    /// Flip a bit of the signature so it no longer verifies.
    pub corrupt_signature: bool,
    /// The hash of the self-signature (SHA-256 unless set).
    pub hash: Hash,
    /// The DER Name to use instead of `CN=<cn>` (see [`name`]).
    pub subject: Option<Vec<u8>>,
    /// The DER signature AlgorithmIdentifier to write instead of the key's own for `hash`
    /// (the signature is still made with `hash`).
    pub signature_algorithm: Option<Vec<u8>>,
    /// The CertificationRequestInfo version (0, v1, is the only one defined).
    pub version: u8,
    /// How the length of the CertificationRequestInfo (signed) is written.
    pub info_length: Length,
    /// How the length of the outer CertificationRequest (not signed) is written.
    pub outer_length: Length,
    /// Bytes appended after the outer SEQUENCE.
    pub trailing: Vec<u8>,
}

impl Spec {
    /// A request for `cn` with `secret` as challengePassword (PrintableString, as Puppet does).
    pub fn new(cn: &str, secret: &str) -> Self {
        Spec {
            cn: cn.into(),
            challenge: vec![(0x13, secret.as_bytes().to_vec())],
            extensions: Vec::new(),
            attributes: Vec::new(),
            corrupt_signature: false,
            hash: Hash::Sha256,
            subject: None,
            signature_algorithm: None,
            version: 0,
            info_length: Length::Minimal,
            outer_length: Length::Minimal,
            trailing: Vec::new(),
        }
    }

    pub fn ext(mut self, oid: &str, value: Vec<u8>) -> Self {
        self.extensions.push((oid.into(), value));
        self
    }

    /// Build and sign; PEM.
    pub fn build<K: SigningKey + ?Sized>(&self, key: &K) -> Vec<u8> {
        pem(&self.build_der(key))
    }

    /// Build and sign; DER (unless asked for other length forms or trailing bytes).
    pub fn build_der<K: SigningKey + ?Sized>(&self, key: &K) -> Vec<u8> {
        let name = match &self.subject {
            Some(n) => n.clone(),
            None => {
                let mut name = X509Name::builder().expect("name builder");
                name.append_entry_by_nid(Nid::COMMONNAME, &self.cn)
                    .expect("CN");
                name.build().to_der().expect("name DER")
            }
        };
        let spki = key.spki();

        // DER orders the elements of a SET OF by their encodings; the CA re-encodes CSRs in DER,
        // so an unsorted set would no longer match its signature once stored.
        let mut attrs: Vec<Vec<u8>> = Vec::new();
        for (tag, value) in &self.challenge {
            attrs.push(tlv(
                0x30,
                &[oid("1.2.840.113549.1.9.7"), tlv(0x31, &tlv(*tag, value))].concat(),
            ));
        }
        if !self.extensions.is_empty() {
            let exts: Vec<u8> = self
                .extensions
                .iter()
                .flat_map(|(o, v)| tlv(0x30, &[oid(o), tlv(0x04, v)].concat()))
                .collect();
            attrs.push(tlv(
                0x30,
                &[oid("1.2.840.113549.1.9.14"), tlv(0x31, &tlv(0x30, &exts))].concat(),
            ));
        }
        for (o, v) in &self.attributes {
            attrs.push(tlv(0x30, &[oid(o), tlv(0x31, v)].concat()));
        }
        attrs.sort();
        let attrs = attrs.concat();
        let info = tlv_with(
            0x30,
            &[
                vec![0x02, 0x01, self.version],
                name,
                spki,
                tlv(0xa0, &attrs),
            ]
            .concat(),
            self.info_length,
        );

        let alg = self
            .signature_algorithm
            .clone()
            .unwrap_or_else(|| key.signature_algorithm(self.hash));
        let mut sig = key.sign(self.hash, &info);
        if self.corrupt_signature {
            let last = sig.len() - 1;
            sig[last] ^= 0x01;
        }
        let mut out = tlv_with(
            0x30,
            &[info, alg, bit_string(&sig)].concat(),
            self.outer_length,
        );
        out.extend_from_slice(&self.trailing);
        out
    }
}

/// A fresh RSA key of `bits`.
pub fn rsa_key(bits: u32) -> PKey<Private> {
    PKey::from_rsa(openssl::rsa::Rsa::generate(bits).expect("RSA keygen")).expect("pkey")
}

/// A fresh EC key on `nid` (e.g. `Nid::X9_62_PRIME256V1`).
pub fn ec_key(nid: Nid) -> PKey<Private> {
    let group = EcGroup::from_curve_name(nid).expect("curve");
    PKey::from_ec_key(EcKey::generate(&group).expect("EC keygen")).expect("pkey")
}

/// A fresh EC key on `nid` whose public key is written with the explicit curve parameters
/// (prime, coefficients, base point, order) instead of the curve's name.
pub fn ec_key_explicit(nid: Nid) -> PKey<Private> {
    let mut group = EcGroup::from_curve_name(nid).expect("curve");
    group.set_asn1_flag(Asn1Flag::EXPLICIT_CURVE);
    PKey::from_ec_key(EcKey::generate(&group).expect("EC keygen")).expect("pkey")
}

/// A fresh Ed25519 key.
pub fn ed25519_key() -> PKey<Private> {
    PKey::generate_ed25519().expect("Ed25519 keygen")
}

/// A fresh Ed448 key.
pub fn ed448_key() -> PKey<Private> {
    PKey::generate_ed448().expect("Ed448 keygen")
}
