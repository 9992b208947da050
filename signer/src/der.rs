//! A small, strict DER reader for the parts of a PKCS#10 request that the `openssl` crate does
//! not expose or that must be read from exactly the bytes OpenSSL verified (structure, subject,
//! key and signature algorithm identifiers, attributes: challengePassword, extension requests).
//!
//! Why hand-written: Puppet writes a PrintableString tag around arbitrary UTF-8 in its
//! attributes, and the `openssl` crate has no X509_REQ attribute accessors. Encodings are
//! checked strictly ([`strict`]: definite minimal lengths, no end-of-contents, primitive strings,
//! minimal INTEGERs and OIDs, DER BOOLEANs and BIT STRINGs, sorted SET OFs); only the content of
//! strings is read leniently ([`lenient_string`]).

/// One tag-length-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
    /// The whole encoding: tag, length and value.
    pub raw: &'a [u8],
}

/// Why bytes are not DER.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed DER: {0}")]
pub struct DerError(pub &'static str);

pub const BOOLEAN: u8 = 0x01;
pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const UTF8_STRING: u8 = 0x0c;
pub const PRINTABLE_STRING: u8 = 0x13;
pub const IA5_STRING: u8 = 0x16;
pub const BMP_STRING: u8 = 0x1e;
pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
/// `[0]` constructed, the attributes of a CertificationRequestInfo.
pub const CONTEXT_0: u8 = 0xa0;

/// Deeper nesting than this is refused (a CSR nests about 8 deep).
pub const MAX_DEPTH: usize = 32;

/// Read one TLV from the front of `input`; return it and the rest. Only DER lengths are
/// accepted: definite, and in the shortest form.
pub fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), DerError> {
    let (&tag, rest) = input
        .split_first()
        .ok_or(DerError("unexpected end of input"))?;
    if tag & 0x1f == 0x1f {
        return Err(DerError(
            "multi-byte tags are not used in certificate requests",
        ));
    }
    if tag == 0 {
        return Err(DerError(
            "end-of-contents octets (BER indefinite length) are not DER",
        ));
    }
    let (&first, mut rest) = rest.split_first().ok_or(DerError("missing length"))?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        if first == 0x80 {
            return Err(DerError("indefinite length is not DER"));
        }
        let n = usize::from(first & 0x7f);
        if n > 4 {
            return Err(DerError("oversized length"));
        }
        if rest.len() < n {
            return Err(DerError("truncated length"));
        }
        if rest[0] == 0 {
            return Err(DerError("non-minimal length (leading zero octet)"));
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        if len < 0x80 {
            return Err(DerError("non-minimal length (long form for a short value)"));
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(DerError("value runs past the end of its container"));
    }
    let header = input.len() - rest.len();
    let (value, rest) = rest.split_at(len);
    Ok((
        Tlv {
            tag,
            value,
            raw: &input[..header + len],
        },
        rest,
    ))
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

/// `input` is exactly one TLV and its whole tree is DER: every constructed value is walked
/// (to [`MAX_DEPTH`]); universal types are checked for their DER form: SEQUENCE and SET
/// constructed, everything else primitive (no constructed strings), BOOLEAN `00`/`FF`, minimal
/// INTEGER, empty NULL, minimal OID, BIT STRING with zero unused bits beyond its last octet, and
/// the elements of every SET in ascending order. The content of strings is not checked (see
/// [`lenient_string`]); primitive values of other classes are opaque.
pub fn strict(input: &[u8]) -> Result<Tlv<'_>, DerError> {
    let tlv = single(input)?;
    check_tree(tlv, 0)?;
    Ok(tlv)
}

fn check_tree(tlv: Tlv<'_>, depth: usize) -> Result<(), DerError> {
    if depth > MAX_DEPTH {
        return Err(DerError("nested too deeply"));
    }
    let constructed = tlv.tag & 0x20 != 0;
    let universal = tlv.tag & 0xc0 == 0;
    let v = tlv.value;
    if constructed {
        if universal && tlv.tag != SEQUENCE && tlv.tag != SET {
            return Err(DerError(
                "constructed encoding of a primitive type (BER) is not DER",
            ));
        }
        let kids = children(v)?;
        for &k in &kids {
            check_tree(k, depth + 1)?;
        }
        if tlv.tag == SET {
            check_set_order(&kids)?;
        }
        return Ok(());
    }
    if !universal {
        return Ok(());
    }
    match tlv.tag {
        0x10 | 0x11 => Err(DerError("SEQUENCE or SET in primitive form")),
        BOOLEAN if v != [0x00] && v != [0xff] => Err(DerError("BOOLEAN is not 00 or FF")),
        INTEGER | 0x0a => check_integer(v),
        NULL if !v.is_empty() => Err(DerError("NULL with content")),
        OID => oid_to_string(v).map(drop),
        BIT_STRING => bit_string(tlv).map(drop),
        _ => Ok(()),
    }
}

fn check_integer(v: &[u8]) -> Result<(), DerError> {
    match v {
        [] => Err(DerError("empty INTEGER")),
        [0x00, b, ..] if b & 0x80 == 0 => Err(DerError("non-minimal INTEGER")),
        [0xff, b, ..] if b & 0x80 != 0 => Err(DerError("non-minimal INTEGER")),
        _ => Ok(()),
    }
}

/// The elements of a SET OF must appear in ascending order of their encodings, compared as
/// octet strings with the shorter one padded with zero octets (X.690 11.6).
pub fn check_set_order(elements: &[Tlv<'_>]) -> Result<(), DerError> {
    let padded_le = |a: &[u8], b: &[u8]| {
        let n = a.len().max(b.len());
        let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
        (0..n).map(|i| at(a, i).cmp(&at(b, i))).find(|o| o.is_ne())
            != Some(std::cmp::Ordering::Greater)
    };
    if elements.windows(2).all(|w| padded_le(w[0].raw, w[1].raw)) {
        Ok(())
    } else {
        Err(DerError("SET OF elements are not in DER order"))
    }
}

/// The bits of a DER BIT STRING whose length is a whole number of octets (keys, signatures).
pub fn octet_aligned_bits(tlv: Tlv<'_>) -> Result<&[u8], DerError> {
    if tlv.tag != BIT_STRING {
        return Err(DerError("not a BIT STRING"));
    }
    match bit_string(tlv)? {
        (0, bits) => Ok(bits),
        _ => Err(DerError("BIT STRING has unused bits")),
    }
}

/// (unused bits, content) of a BIT STRING, checked for DER: at most 7 unused bits, none when
/// empty, and the unused bits zero.
fn bit_string(tlv: Tlv<'_>) -> Result<(u8, &[u8]), DerError> {
    let (&unused, bits) = tlv
        .value
        .split_first()
        .ok_or(DerError("empty BIT STRING"))?;
    if unused > 7 || (bits.is_empty() && unused != 0) {
        return Err(DerError("BIT STRING with an impossible unused-bit count"));
    }
    if let Some(&last) = bits.last()
        && last & ((1u8 << unused) - 1) != 0
    {
        return Err(DerError("BIT STRING with unused bits set"));
    }
    Ok((unused, bits))
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
    fn refuses_non_minimal_lengths_and_end_of_contents() {
        let mut five = vec![0x04, 0x81, 0x05];
        five.extend([1; 5]);
        assert_eq!(
            read(&five).unwrap_err().0,
            "non-minimal length (long form for a short value)"
        );
        let mut long = vec![0x04, 0x82, 0x00, 0x80];
        long.extend([7; 0x80]);
        assert_eq!(
            read(&long).unwrap_err().0,
            "non-minimal length (leading zero octet)"
        );
        assert!(
            read(&[0x30, 0x80, 0x05, 0x00, 0x00, 0x00])
                .unwrap_err()
                .0
                .contains("indefinite")
        );
        assert!(
            read(&[0x00, 0x00])
                .unwrap_err()
                .0
                .contains("end-of-contents")
        );
    }

    #[test]
    fn strict_walks_the_whole_tree() {
        let ok: &[&[u8]] = &[
            &[0x30, 0x00],
            &[0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0x80],
            &[0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02],
            &[0x30, 0x04, 0x03, 0x02, 0x04, 0xf0],
            &[0xa0, 0x02, 0x05, 0x00],
            &[0x02, 0x02, 0x00, 0x80],
            &[0x02, 0x02, 0xff, 0x7f],
        ];
        for der in ok {
            assert!(strict(der).is_ok(), "{der:02x?}");
        }
        let bad: &[(&[u8], &str)] = &[
            (&[0x30, 0x03, 0x01, 0x01, 0x01], "BOOLEAN"),
            (&[0x30, 0x04, 0x02, 0x02, 0x00, 0x01], "non-minimal INTEGER"),
            (&[0x02, 0x02, 0xff, 0x80], "non-minimal INTEGER"),
            (&[0x02, 0x00], "empty INTEGER"),
            (&[0x30, 0x03, 0x05, 0x01, 0x00], "NULL"),
            (&[0x24, 0x03, 0x04, 0x01, 0x61], "constructed encoding"),
            (&[0x2c, 0x03, 0x0c, 0x01, 0x61], "constructed encoding"),
            (&[0x10, 0x00], "primitive form"),
            (
                &[0x31, 0x06, 0x02, 0x01, 0x02, 0x02, 0x01, 0x01],
                "DER order",
            ),
            (&[0x03, 0x02, 0x04, 0xf1], "unused bits set"),
            (&[0x03, 0x01, 0x01], "impossible"),
            (&[0x03, 0x00], "empty BIT STRING"),
            (&[0x06, 0x02, 0x80, 0x01], "non-minimal OID"),
            (&[0x30, 0x03, 0x05, 0x00], "value runs past"),
            (&[0x30, 0x00, 0x00], "trailing"),
            (&[0x30, 0x04, 0x30, 0x80, 0x00, 0x00], "indefinite"),
        ];
        for (der, why) in bad {
            let e = strict(der).unwrap_err();
            assert!(e.0.contains(why), "{der:02x?}: {e} (wanted {why})");
        }
        // Nesting bomb: refused, not a stack overflow.
        let mut bomb: Vec<u8> = Vec::new();
        for _ in 0..(MAX_DEPTH + 2) {
            bomb.extend([0x30, 0x80]);
        }
        assert!(strict(&bomb).is_err());
        let mut nested = vec![0x05, 0x00];
        for _ in 0..(MAX_DEPTH + 2) {
            let mut outer = vec![0xa0];
            let n = nested.len();
            if n < 0x80 {
                outer.push(n as u8);
            } else {
                outer.extend([0x81, n as u8]);
            }
            outer.extend(nested);
            nested = outer;
        }
        assert_eq!(strict(&nested).unwrap_err().0, "nested too deeply");
        // SET order pads the shorter encoding with zeros.
        let a = read(&[0x04, 0x01, 0x01]).unwrap().0;
        let b = read(&[0x04, 0x02, 0x01, 0x00]).unwrap().0;
        assert!(check_set_order(&[a, b]).is_ok());
        assert!(check_set_order(&[b, a]).is_err());
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
                value: v,
                raw: &[]
            })
            .unwrap(),
            v
        );
        assert_eq!(
            lenient_string(Tlv {
                tag: BMP_STRING,
                value: &[0, b'h', 0, b'i'],
                raw: &[]
            })
            .unwrap(),
            b"hi"
        );
        assert!(
            lenient_string(Tlv {
                tag: OCTET_STRING,
                value: b"x",
                raw: &[]
            })
            .is_err()
        );
    }
}
