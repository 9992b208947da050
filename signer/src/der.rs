//! A minimal, strict-length, lenient-content DER reader for the parts of a PKCS#10 request that
//! the `openssl` crate does not expose (attributes: challengePassword and extension requests).
//!
//! Why hand-written: the brief needs attribute values read as raw tag + bytes, because Puppet writes
//! a PrintableString tag around arbitrary UTF-8 and strict ASN.1 crates (`der`) reject it. The
//! `openssl` crate has no X509_REQ attribute accessors. Lengths are checked strictly; only the
//! string content is read leniently.

/// One tag-length-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
}

/// Why bytes are not DER.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed DER: {0}")]
pub struct DerError(pub &'static str);

pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
pub const OID: u8 = 0x06;
pub const OCTET_STRING: u8 = 0x04;
pub const BOOLEAN: u8 = 0x01;
pub const UTF8_STRING: u8 = 0x0c;
pub const PRINTABLE_STRING: u8 = 0x13;
pub const IA5_STRING: u8 = 0x16;
pub const BMP_STRING: u8 = 0x1e;
/// `[0]` constructed, the attributes of a CertificationRequestInfo.
pub const CONTEXT_0: u8 = 0xa0;

/// Read one TLV from the front of `input`; return it and the rest.
pub fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), DerError> {
    let (&tag, rest) = input
        .split_first()
        .ok_or(DerError("unexpected end of input"))?;
    if tag & 0x1f == 0x1f {
        return Err(DerError(
            "multi-byte tags are not used in certificate requests",
        ));
    }
    let (&first, mut rest) = rest.split_first().ok_or(DerError("missing length"))?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(DerError("indefinite or oversized length"));
        }
        if rest.len() < n {
            return Err(DerError("truncated length"));
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(DerError("value runs past the end of its container"));
    }
    let (value, rest) = rest.split_at(len);
    Ok((Tlv { tag, value }, rest))
}

/// Read one TLV that must have tag `tag`.
pub fn expect<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(Tlv<'a>, &'a [u8]), DerError> {
    let (tlv, rest) = read(input)?;
    if tlv.tag != tag {
        return Err(DerError(what));
    }
    Ok((tlv, rest))
}

/// Every TLV inside a constructed value.
pub fn children(mut value: &[u8]) -> Result<Vec<Tlv<'_>>, DerError> {
    let mut out = Vec::new();
    while !value.is_empty() {
        let (tlv, rest) = read(value)?;
        out.push(tlv);
        value = rest;
    }
    Ok(out)
}

/// The value must be exactly one TLV.
pub fn single(value: &[u8]) -> Result<Tlv<'_>, DerError> {
    let (tlv, rest) = read(value)?;
    if !rest.is_empty() {
        return Err(DerError("trailing bytes after a value"));
    }
    Ok(tlv)
}

/// Dotted form of an OBJECT IDENTIFIER's content octets.
pub fn oid_to_string(bytes: &[u8]) -> Result<String, DerError> {
    if bytes.is_empty() {
        return Err(DerError("empty OID"));
    }
    let mut arcs: Vec<u128> = Vec::new();
    let mut cur: u128 = 0;
    let mut in_arc = false;
    for &b in bytes {
        if !in_arc && b == 0x80 {
            return Err(DerError("non-minimal OID arc"));
        }
        if cur > (u128::MAX >> 8) {
            return Err(DerError("OID arc too large"));
        }
        cur = (cur << 7) | u128::from(b & 0x7f);
        in_arc = b & 0x80 != 0;
        if !in_arc {
            arcs.push(cur);
            cur = 0;
        }
    }
    if in_arc {
        return Err(DerError("truncated OID"));
    }
    let first = arcs[0];
    let (a, b) = if first < 40 {
        (0, first)
    } else if first < 80 {
        (1, first - 40)
    } else {
        (2, first - 80)
    };
    let mut s = format!("{a}.{b}");
    for arc in &arcs[1..] {
        s.push('.');
        s.push_str(&arc.to_string());
    }
    Ok(s)
}

/// A string value read leniently: PrintableString, UTF8String and IA5String give their raw
/// bytes (Puppet puts arbitrary UTF-8 in a PrintableString); BMPString is converted to UTF-8.
/// Any other tag is refused.
pub fn lenient_string(tlv: Tlv<'_>) -> Result<Vec<u8>, DerError> {
    match tlv.tag {
        UTF8_STRING | PRINTABLE_STRING | IA5_STRING => Ok(tlv.value.to_vec()),
        BMP_STRING => {
            if !tlv.value.len().is_multiple_of(2) {
                return Err(DerError("BMPString of odd length"));
            }
            let units: Vec<u16> = tlv
                .value
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units)
                .map(String::into_bytes)
                .map_err(|_| DerError("BMPString is not valid UTF-16"))
        }
        _ => Err(DerError(
            "value is not a PrintableString, UTF8String, IA5String or BMPString",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let (t, rest) = read(&[0x04, 0x02, 0xaa, 0xbb, 0x05]).unwrap();
        assert_eq!(
            (t.tag, t.value, rest),
            (0x04, &[0xaa, 0xbb][..], &[0x05][..])
        );
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7, 0x80));
        assert_eq!(read(&long).unwrap().0.value.len(), 0x80);
    }

    #[test]
    fn refuses_truncation_and_indefinite_lengths() {
        assert!(read(&[0x04, 0x05, 1, 2]).is_err());
        assert!(read(&[0x30, 0x80, 0, 0]).is_err());
        assert!(read(&[0x04, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(read(&[]).is_err());
        assert!(single(&[0x05, 0x00, 0x05, 0x00]).is_err());
    }

    #[test]
    fn oids() {
        // 1.2.840.113549.1.9.7 (challengePassword)
        assert_eq!(
            oid_to_string(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07]).unwrap(),
            "1.2.840.113549.1.9.7"
        );
        assert_eq!(oid_to_string(&[0x55, 0x1d, 0x11]).unwrap(), "2.5.29.17");
        assert!(oid_to_string(&[0x2a, 0x86]).is_err());
        assert!(oid_to_string(&[]).is_err());
    }

    #[test]
    fn strings_are_read_leniently() {
        // A PrintableString holding `_` and UTF-8, as Puppet writes it.
        let v = "a_b-é".as_bytes();
        assert_eq!(
            lenient_string(Tlv {
                tag: PRINTABLE_STRING,
                value: v
            })
            .unwrap(),
            v
        );
        assert_eq!(
            lenient_string(Tlv {
                tag: BMP_STRING,
                value: &[0, b'h', 0, b'i']
            })
            .unwrap(),
            b"hi"
        );
        assert!(
            lenient_string(Tlv {
                tag: OCTET_STRING,
                value: b"x"
            })
            .is_err()
        );
    }
}
