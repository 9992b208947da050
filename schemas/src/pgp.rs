//! OpenPGP helpers shared by the user-data validator and the agent: ASCII-armor decoding (what
//! `gpg --dearmor` does, without gpg), a check that a block really is an OpenPGP *public* key,
//! and the fingerprints of its primary key and subkeys.
//!
//! This is a deliberately small packet reader (RFC 9580 §4–§6, §5.5.2, §5.5.4), not a crypto
//! library: it never verifies signatures (apt's `sqv`/`gpgv` does that at `apt-get update` time).
//! It checks what bootcfg needs before it writes a `signed-by` keyring: the armor and its CRC-24
//! are intact, every packet is well-formed, the first packet is a public key (not a secret key),
//! every key packet holds key material of the size its algorithm requires, and there is no
//! trailing garbage. A full OpenPGP crate (rPGP) would pull in a whole crypto stack (RSA, curves,
//! ciphers) only to read packet headers; SHA-1/SHA-256 for fingerprints come from `openssl`,
//! which the workspace already builds.

use base64::Engine as _;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PgpError {
    #[error("no `-----BEGIN PGP PUBLIC KEY BLOCK-----` line found")]
    NoArmor,
    #[error("this is a PGP PRIVATE KEY block; only public keys belong in user-data")]
    PrivateKey,
    #[error("armor type `{0}` is not a public key block")]
    WrongArmorType(String),
    #[error("the armored block has no `-----END PGP PUBLIC KEY BLOCK-----` line")]
    Unterminated,
    #[error("the armored block is not valid base64: {0}")]
    Base64(String),
    #[error("the armor checksum does not match (the block was altered or truncated)")]
    Checksum,
    #[error("the key data is empty")]
    Empty,
    #[error("malformed OpenPGP packet at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: String },
    #[error("the block holds a secret key packet; only public keys belong in user-data")]
    SecretKeyPacket,
    #[error("the first packet is a {0}, not a public key")]
    NotAKey(&'static str),
    #[error("unsupported key packet version {0} (only v4 and v6 keys are accepted)")]
    UnsupportedVersion(u8),
}

/// Decode one or more ASCII-armored `PGP PUBLIC KEY BLOCK`s into binary OpenPGP data (several
/// blocks are concatenated), as `gpg --dearmor` does. The result is usable as an apt `signed-by`
/// keyring file. The blocks are also checked with [`check_public_key`].
pub fn dearmor(armored: &str) -> Result<Vec<u8>, PgpError> {
    let mut out = Vec::new();
    let mut lines = armored
        .lines()
        .map(|l| l.trim_end_matches(['\r', ' ', '\t']));
    let mut found = false;
    while let Some(line) = lines.next() {
        let Some(kind) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|r| r.strip_suffix("-----"))
        else {
            continue;
        };
        match kind {
            "PGP PUBLIC KEY BLOCK" => {}
            "PGP PRIVATE KEY BLOCK" | "PGP SECRET KEY BLOCK" => return Err(PgpError::PrivateKey),
            other => return Err(PgpError::WrongArmorType(other.to_owned())),
        }
        found = true;
        // Armor headers (`Version: …`, `Comment: …`) run up to the first blank line. Some tools
        // omit the blank line when there are no headers, so a line without `: ` ends them too.
        let mut body = String::new();
        let mut crc: Option<String> = None;
        let mut in_headers = true;
        let mut ended = false;
        for line in lines.by_ref() {
            let line = line.trim();
            if in_headers {
                if line.is_empty() {
                    in_headers = false;
                    continue;
                }
                if line.contains(": ") && !line.starts_with("-----") {
                    continue;
                }
                in_headers = false;
            }
            if line == "-----END PGP PUBLIC KEY BLOCK-----" {
                ended = true;
                break;
            }
            if line.starts_with("-----") {
                return Err(PgpError::Unterminated);
            }
            if let Some(c) = line.strip_prefix('=')
                && line.len() == 5
            {
                crc = Some(c.to_owned());
                continue;
            }
            body.push_str(line);
        }
        if !ended {
            return Err(PgpError::Unterminated);
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| PgpError::Base64(e.to_string()))?;
        if let Some(crc) = crc {
            let want = base64::engine::general_purpose::STANDARD
                .decode(crc.as_bytes())
                .map_err(|e| PgpError::Base64(format!("checksum line: {e}")))?;
            let got = crc24(&data);
            if want != [(got >> 16) as u8, (got >> 8) as u8, got as u8] {
                return Err(PgpError::Checksum);
            }
        }
        check_public_key(&data)?;
        out.extend_from_slice(&data);
    }
    if !found {
        return Err(PgpError::NoArmor);
    }
    Ok(out)
}

/// Uppercase hex fingerprints (40 hex digits for v4 keys, 64 for v6) of every primary key and
/// subkey in binary OpenPGP data, in packet order. Fails on anything [`check_public_key`] rejects.
pub fn fingerprints(binary: &[u8]) -> Result<Vec<String>, PgpError> {
    check_public_key(binary)?;
    let mut out = Vec::new();
    for p in packets(binary)? {
        if p.tag == TAG_PUBLIC_KEY || p.tag == TAG_PUBLIC_SUBKEY {
            out.push(fingerprint(p.body));
        }
    }
    Ok(out)
}

/// One certificate (a transferable public key, RFC 9580 §10.1) in binary OpenPGP data: a primary
/// key packet and every packet after it (user ids, signatures, subkeys) up to the next primary
/// key packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The primary key's fingerprint (uppercase hex).
    pub fingerprint: String,
    /// The subkeys' fingerprints, in packet order.
    pub subkeys: Vec<String>,
    /// Where the certificate's packets are in the data it was read from.
    pub range: std::ops::Range<usize>,
}

/// The certificates in binary OpenPGP data, in order. Fails on anything [`check_public_key`]
/// rejects.
pub fn certificates(binary: &[u8]) -> Result<Vec<Certificate>, PgpError> {
    check_public_key(binary)?;
    let mut out: Vec<Certificate> = Vec::new();
    for p in packets(binary)? {
        if p.tag == TAG_PUBLIC_KEY {
            out.push(Certificate {
                fingerprint: fingerprint(p.body),
                subkeys: Vec::new(),
                range: p.offset..p.end,
            });
            continue;
        }
        // check_public_key: the first packet is a primary key, so there is a certificate
        let cert = out.last_mut().expect("a primary key comes first");
        if p.tag == TAG_PUBLIC_SUBKEY {
            cert.subkeys.push(fingerprint(p.body));
        }
        cert.range.end = p.end;
    }
    Ok(out)
}

/// ASCII armor for binary public key data (`gpg --armor --export` without the comment lines):
/// the inverse of [`dearmor`].
pub fn armor(binary: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(binary);
    let mut out = String::from("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    let crc = crc24(binary);
    out.push('=');
    out.push_str(&base64::engine::general_purpose::STANDARD.encode([
        (crc >> 16) as u8,
        (crc >> 8) as u8,
        crc as u8,
    ]));
    out.push_str("\n-----END PGP PUBLIC KEY BLOCK-----\n");
    out
}

/// Check that binary OpenPGP data is a transferable public key (or several): well-formed
/// packets, a public key first, no secret key packets, key material of plausible shape.
pub fn check_public_key(binary: &[u8]) -> Result<(), PgpError> {
    if binary.is_empty() {
        return Err(PgpError::Empty);
    }
    let packets = packets(binary)?;
    for p in &packets {
        if p.tag == TAG_SECRET_KEY || p.tag == TAG_SECRET_SUBKEY {
            return Err(PgpError::SecretKeyPacket);
        }
    }
    let first = &packets[0];
    if first.tag != TAG_PUBLIC_KEY {
        return Err(PgpError::NotAKey(tag_name(first.tag)));
    }
    for p in &packets {
        if p.tag == TAG_PUBLIC_KEY || p.tag == TAG_PUBLIC_SUBKEY {
            check_key_body(p.offset, p.body)?;
        }
    }
    Ok(())
}

/// `true` if `text` is an armored block that [`dearmor`] accepts.
pub fn is_public_key_block(text: &str) -> bool {
    dearmor(text).is_ok()
}

const TAG_SIGNATURE: u8 = 2;
const TAG_SECRET_KEY: u8 = 5;
const TAG_PUBLIC_KEY: u8 = 6;
const TAG_SECRET_SUBKEY: u8 = 7;
const TAG_TRUST: u8 = 12;
const TAG_USER_ID: u8 = 13;
const TAG_PUBLIC_SUBKEY: u8 = 14;
const TAG_USER_ATTRIBUTE: u8 = 17;

fn tag_name(tag: u8) -> &'static str {
    match tag {
        TAG_SIGNATURE => "signature",
        TAG_SECRET_KEY => "secret key",
        TAG_SECRET_SUBKEY => "secret subkey",
        TAG_TRUST => "trust packet",
        TAG_USER_ID => "user id",
        TAG_PUBLIC_SUBKEY => "public subkey",
        TAG_USER_ATTRIBUTE => "user attribute",
        1 => "public-key encrypted session key",
        3 => "symmetric-key encrypted session key",
        4 => "one-pass signature",
        8 => "compressed data packet",
        9 | 18 | 20 => "encrypted data packet",
        11 => "literal data packet (a signed or encrypted message?)",
        _ => "unknown packet",
    }
}

struct Packet<'a> {
    tag: u8,
    /// Where the packet (its header) starts.
    offset: usize,
    /// Just past the packet's body.
    end: usize,
    body: &'a [u8],
}

fn malformed(offset: usize, reason: impl Into<String>) -> PgpError {
    PgpError::Malformed {
        offset,
        reason: reason.into(),
    }
}

/// Split binary data into packets (both header formats, RFC 9580 §4.2). Partial body lengths
/// only occur in data packets, never in keys, so they are rejected.
fn packets(data: &[u8]) -> Result<Vec<Packet<'_>>, PgpError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let start = i;
        let ctb = data[i];
        if ctb & 0x80 == 0 {
            return Err(malformed(
                start,
                "not an OpenPGP packet header (bit 7 clear)",
            ));
        }
        i += 1;
        let need = |i: usize, n: usize| {
            if i + n > data.len() {
                Err(malformed(start, "truncated packet header"))
            } else {
                Ok(())
            }
        };
        let (tag, len) = if ctb & 0x40 != 0 {
            // New format.
            let tag = ctb & 0x3f;
            need(i, 1)?;
            let b0 = data[i] as usize;
            if b0 < 192 {
                i += 1;
                (tag, b0)
            } else if b0 < 224 {
                need(i, 2)?;
                let l = ((b0 - 192) << 8) + data[i + 1] as usize + 192;
                i += 2;
                (tag, l)
            } else if b0 == 255 {
                need(i, 5)?;
                let l = u32::from_be_bytes([data[i + 1], data[i + 2], data[i + 3], data[i + 4]])
                    as usize;
                i += 5;
                (tag, l)
            } else {
                return Err(malformed(start, "partial body length in a key packet"));
            }
        } else {
            // Legacy format.
            let tag = (ctb >> 2) & 0x0f;
            match ctb & 0x03 {
                0 => {
                    need(i, 1)?;
                    i += 1;
                    (tag, data[i - 1] as usize)
                }
                1 => {
                    need(i, 2)?;
                    i += 2;
                    (tag, u16::from_be_bytes([data[i - 2], data[i - 1]]) as usize)
                }
                2 => {
                    need(i, 4)?;
                    i += 4;
                    (
                        tag,
                        u32::from_be_bytes([data[i - 4], data[i - 3], data[i - 2], data[i - 1]])
                            as usize,
                    )
                }
                _ => return Err(malformed(start, "indeterminate length in a key packet")),
            }
        };
        if tag == 0 {
            return Err(malformed(start, "reserved packet tag 0"));
        }
        if len > data.len() - i {
            return Err(malformed(
                start,
                format!(
                    "packet claims {len} bytes but only {} remain",
                    data.len() - i
                ),
            ));
        }
        out.push(Packet {
            tag,
            offset: start,
            end: i + len,
            body: &data[i..i + len],
        });
        i += len;
    }
    if out.is_empty() {
        return Err(PgpError::Empty);
    }
    Ok(out)
}

/// Check a v4/v6 public key packet body: version, time, algorithm and algorithm-specific
/// public key material, consuming the body exactly.
fn check_key_body(offset: usize, body: &[u8]) -> Result<(), PgpError> {
    let version = *body
        .first()
        .ok_or_else(|| malformed(offset, "empty key packet"))?;
    let mut r = Reader {
        data: body,
        pos: 0,
        offset,
    };
    r.take(1)?;
    match version {
        4 => {
            r.take(4)?; // creation time
        }
        6 => {
            r.take(4)?;
            let _alg = r.peek()?;
            r.take(1)?;
            let len = u32::from_be_bytes(r.take(4)?.try_into().expect("4 bytes")) as usize;
            if len != body.len() - r.pos {
                return Err(malformed(
                    offset,
                    "v6 key material length does not match the packet",
                ));
            }
            return if len == 0 {
                Err(malformed(offset, "v6 key without key material"))
            } else {
                Ok(())
            };
        }
        v => return Err(PgpError::UnsupportedVersion(v)),
    }
    let alg = r.take(1)?[0];
    match alg {
        1..=3 => {
            r.mpi()?; // n
            r.mpi()?; // e
        }
        16 => {
            r.mpi()?;
            r.mpi()?;
            r.mpi()?;
        }
        17 => {
            for _ in 0..4 {
                r.mpi()?;
            }
        }
        18 => {
            r.oid()?;
            r.mpi()?;
            let kdf = r.take(1)?[0] as usize;
            r.take(kdf)?;
        }
        19 | 22 => {
            r.oid()?;
            r.mpi()?;
        }
        25 => {
            r.take(32)?;
        }
        26 => {
            r.take(56)?;
        }
        27 => {
            r.take(32)?;
        }
        28 => {
            r.take(57)?;
        }
        other => {
            return Err(malformed(
                offset,
                format!("unknown public key algorithm {other}"),
            ));
        }
    }
    if r.pos != body.len() {
        return Err(malformed(offset, "trailing bytes after the key material"));
    }
    Ok(())
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    offset: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Result<u8, PgpError> {
        self.data
            .get(self.pos)
            .copied()
            .ok_or_else(|| malformed(self.offset, "key packet is truncated"))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], PgpError> {
        if self.pos + n > self.data.len() {
            return Err(malformed(self.offset, "key packet is truncated"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn mpi(&mut self) -> Result<(), PgpError> {
        let bits = u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize;
        if bits == 0 {
            return Err(malformed(self.offset, "empty integer in key material"));
        }
        self.take(bits.div_ceil(8))?;
        Ok(())
    }
    fn oid(&mut self) -> Result<(), PgpError> {
        let len = self.take(1)?[0] as usize;
        if len == 0 || len == 0xff {
            return Err(malformed(self.offset, "bad curve OID length"));
        }
        self.take(len)?;
        Ok(())
    }
}

fn fingerprint(body: &[u8]) -> String {
    if body.first() == Some(&6) {
        let mut h = openssl::sha::Sha256::new();
        h.update(&[0x9b]);
        h.update(&(body.len() as u32).to_be_bytes());
        h.update(body);
        hex::encode_upper(h.finish())
    } else {
        let mut h = openssl::sha::Sha1::new();
        h.update(&[0x99]);
        h.update(&(body.len() as u16).to_be_bytes());
        h.update(body);
        hex::encode_upper(h.finish())
    }
}

/// The armor checksum (RFC 9580 §6.1).
fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0x00B7_04CE;
    for &b in data {
        crc ^= (b as u32) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4CFB;
            }
        }
    }
    crc & 0x00FF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = include_str!("../../tests/fixtures/userdata/keys/ed25519-cv25519.asc");
    const ED_FPR: &str = include_str!("../../tests/fixtures/userdata/keys/ed25519-cv25519.fpr");
    const RSA: &str = include_str!("../../tests/fixtures/userdata/keys/rsa2048.asc");
    const RSA_FPR: &str = include_str!("../../tests/fixtures/userdata/keys/rsa2048.fpr");

    fn expected(f: &str) -> Vec<String> {
        f.lines().map(str::to_owned).collect()
    }

    #[test]
    fn ed25519_key_with_subkey_matches_gpg_fingerprints() {
        let bin = dearmor(ED).unwrap();
        assert_eq!(fingerprints(&bin).unwrap(), expected(ED_FPR));
    }

    #[test]
    fn rsa_key_matches_gpg_fingerprint() {
        let bin = dearmor(RSA).unwrap();
        assert_eq!(fingerprints(&bin).unwrap(), expected(RSA_FPR));
    }

    #[test]
    fn dearmor_matches_gpg_dearmor_bytes() {
        // `gpg --dearmor` output is the base64 body: the packets, nothing else.
        let bin = dearmor(ED).unwrap();
        assert_eq!(
            bin[0], 0x98,
            "legacy-format public key packet header as gpg writes it"
        );
        assert!(check_public_key(&bin).is_ok());
    }

    #[test]
    fn two_blocks_are_concatenated() {
        let both = format!("{ED}\n{RSA}");
        let bin = dearmor(&both).unwrap();
        let mut want = expected(ED_FPR);
        want.extend(expected(RSA_FPR));
        assert_eq!(fingerprints(&bin).unwrap(), want);
    }

    #[test]
    fn certificates_are_split_at_primary_keys() {
        let ed = dearmor(ED).unwrap();
        let rsa = dearmor(RSA).unwrap();
        let both = [ed.clone(), rsa.clone()].concat();
        let certs = certificates(&both).unwrap();
        assert_eq!(certs.len(), 2);
        let ed_fprs = expected(ED_FPR);
        assert_eq!(certs[0].fingerprint, ed_fprs[0]);
        assert_eq!(certs[0].subkeys, ed_fprs[1..]);
        assert_eq!(certs[0].range, 0..ed.len());
        assert_eq!(certs[1].fingerprint, expected(RSA_FPR)[0]);
        assert_eq!(certs[1].range, ed.len()..both.len());
        assert_eq!(&both[certs[1].range.clone()], rsa.as_slice());
    }

    #[test]
    fn armor_round_trips() {
        let both = [dearmor(ED).unwrap(), dearmor(RSA).unwrap()].concat();
        let a = armor(&both);
        assert!(a.lines().all(|l| l.len() <= 64), "{a}");
        assert_eq!(dearmor(&a).unwrap(), both);
    }

    fn check(input: &str, want: PgpError) {
        assert_eq!(dearmor(input).unwrap_err(), want, "input: {input}");
    }

    #[test]
    fn rejects_bad_blocks() {
        check("hello", PgpError::NoArmor);
        check(
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nAAAA\n-----END PGP PRIVATE KEY BLOCK-----\n",
            PgpError::PrivateKey,
        );
        check(
            "-----BEGIN PGP MESSAGE-----\n\nAAAA\n-----END PGP MESSAGE-----\n",
            PgpError::WrongArmorType("PGP MESSAGE".into()),
        );
        check(
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEawMm\n",
            PgpError::Unterminated,
        );
        // A fake block: valid armor, garbage inside.
        let fake = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nVGhpcyBpcyBub3QgYSBrZXk=\n-----END PGP PUBLIC KEY BLOCK-----\n";
        assert!(matches!(
            dearmor(fake).unwrap_err(),
            PgpError::Malformed { .. }
        ));
        let not_b64 = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64 at all!\n-----END PGP PUBLIC KEY BLOCK-----\n";
        assert!(matches!(dearmor(not_b64).unwrap_err(), PgpError::Base64(_)));
    }

    #[test]
    fn altered_block_fails_checksum() {
        // Flip one base64 character in the body (keeps valid base64).
        let altered = ED.replacen("mDMEawMmtBYJ", "mDMEawMmtBYK", 1);
        assert_eq!(dearmor(&altered).unwrap_err(), PgpError::Checksum);
    }

    #[test]
    fn truncated_key_is_malformed() {
        let bin = dearmor(ED).unwrap();
        assert!(matches!(
            check_public_key(&bin[..40]).unwrap_err(),
            PgpError::Malformed { .. }
        ));
    }

    #[test]
    fn secret_key_packet_is_rejected() {
        let mut bin = dearmor(ED).unwrap();
        // Legacy header 0x98 = tag 6, 1-byte length; tag 5 (secret key) is 0x94.
        bin[0] = 0x94;
        assert_eq!(
            check_public_key(&bin).unwrap_err(),
            PgpError::SecretKeyPacket
        );
    }

    #[test]
    fn signature_first_is_not_a_key() {
        let bin = dearmor(ED).unwrap();
        // Drop the primary key and user id packets so that a signature comes first.
        let pk_len = 2 + bin[1] as usize;
        let uid_len = 2 + bin[pk_len + 1] as usize;
        assert_eq!(
            check_public_key(&bin[pk_len + uid_len..]).unwrap_err(),
            PgpError::NotAKey("signature")
        );
    }
}
