//! Building certificate requests byte by byte, for tests and the benchmark: the `openssl` crate
//! cannot add attributes (challengePassword) to a request, and the adversarial cases (bad
//! signature, PrintableString carrying UTF-8, authorization extensions) need exact control.
//! The result is signed by `openssl` and is a well-formed PKCS#10 request unless asked otherwise.

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
        }
    }

    pub fn ext(mut self, oid: &str, value: Vec<u8>) -> Self {
        self.extensions.push((oid.into(), value));
        self
    }

    /// Build and sign; PEM.
    pub fn build(&self, key: &PKey<Private>) -> Vec<u8> {
        let der = self.build_der(key);
        let b64 = openssl::base64::encode_block(&der);
        let mut pem = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE REQUEST-----\n");
        pem.into_bytes()
    }

    /// Build and sign; DER.
    pub fn build_der(&self, key: &PKey<Private>) -> Vec<u8> {
        let mut name = X509Name::builder().expect("name builder");
        name.append_entry_by_nid(Nid::COMMONNAME, &self.cn)
            .expect("CN");
        let name = name.build().to_der().expect("name DER");
        let spki = key.public_key_to_der().expect("SPKI DER");

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
        let info = tlv(
            0x30,
            &[vec![0x02, 0x01, 0x00], name, spki, tlv(0xa0, &attrs)].concat(),
        );

        let alg = match key.id() {
            Id::RSA => [oid("1.2.840.113549.1.1.11"), vec![0x05, 0x00]].concat(),
            Id::EC => oid("1.2.840.10045.4.3.2"),
            other => panic!("craft: unsupported key type {other:?}"),
        };
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), key).expect("signer");
        signer.update(&info).expect("sign");
        let mut sig = signer.sign_to_vec().expect("sign");
        if self.corrupt_signature {
            let last = sig.len() - 1;
            sig[last] ^= 0x01;
        }
        let mut bits = vec![0x00];
        bits.extend(sig);
        tlv(0x30, &[info, tlv(0x30, &alg), tlv(0x03, &bits)].concat())
    }
}

/// A fresh RSA key of `bits`.
pub fn rsa_key(bits: u32) -> PKey<Private> {
    PKey::from_rsa(openssl::rsa::Rsa::generate(bits).expect("RSA keygen")).expect("pkey")
}

/// A fresh EC key on `nid` (e.g. `Nid::X9_62_PRIME256V1`).
pub fn ec_key(nid: Nid) -> PKey<Private> {
    let group = openssl::ec::EcGroup::from_curve_name(nid).expect("curve");
    PKey::from_ec_key(openssl::ec::EcKey::generate(&group).expect("EC keygen")).expect("pkey")
}
