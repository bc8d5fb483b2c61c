//! What the access log and `x-forwarded-client-cert` say about a peer's certificate, read once
//! per TLS connection at the end of its handshake: the subject as an RFC 4514 string (the form
//! OpenSSL, and so Envoy, prints: the last RDN first, `CN=client,O=example`), its DNS and URI
//! SANs, its serial and SHA-256 fingerprint in lower-case hex.
//!
//! rustls-webpki parses the certificate (SANs, serial, the subject's raw bytes); the subject's
//! DER walk here is small and bounded: every length is checked against what is left, and a
//! malformed name yields `None`, never a panic. The same walk finds a certificate's public key
//! info ([`spki`]) for the certificates webpki refuses to read (X.509 v1), when a listener's
//! key is checked against its certificate at load.

use crate::text::hex;

/// The peer certificate's details.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCert {
    pub subject: String,
    pub uri_sans: Vec<String>,
    pub dns_sans: Vec<String>,
    /// The same, comma-separated (as the access log prints them).
    pub uri_san_list: String,
    pub dns_san_list: String,
    /// Lower-case hex, no separators.
    pub serial: String,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub fingerprint_256: String,
    /// The certificate as PEM (for `x-forwarded-client-cert`'s `Cert=`).
    pub pem: String,
}

impl PeerCert {
    /// Read `der`; `None` when webpki cannot parse it (the handshake verified it, so only a
    /// certificate accepted without verification can get here unparsed).
    pub fn parse(der: &[u8]) -> Option<PeerCert> {
        let c = rustls::pki_types::CertificateDer::from(der);
        let cert = webpki::EndEntityCert::try_from(&c).ok()?;
        let uri_sans: Vec<String> = cert.valid_uri_names().map(str::to_owned).collect();
        let dns_sans: Vec<String> = cert.valid_dns_names().map(str::to_owned).collect();
        Some(PeerCert {
            subject: dn_string(cert.subject()).unwrap_or_default(),
            uri_san_list: uri_sans.join(","),
            dns_san_list: dns_sans.join(","),
            uri_sans,
            dns_sans,
            serial: hex(strip_sign(cert.serial())),
            fingerprint_256: hex(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref()
            ),
            pem: pem(der),
        })
    }
}

/// A certificate's SubjectPublicKeyInfo (the whole DER element), found by walking the
/// certificate of any version. webpki reads X.509 v3 only; v1 certificates (which OpenSSL
/// still makes, and Envoy serves) are matched to their private key with this.
pub fn spki(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, cert, _) = tlv(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version: absent in v1.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        rest = tlv(rest)?.2;
    }
    let (0x30, _, after) = tlv(rest)? else {
        return None;
    };
    Some(&rest[..rest.len() - after.len()])
}

fn strip_sign(serial: &[u8]) -> &[u8] {
    match serial {
        [0, rest @ ..] if !rest.is_empty() => rest,
        s => s,
    }
}

fn pem(der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                b64.push(B64[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// One DER TLV at the start of `b`: (tag, value, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, b) = b.split_first()?;
    let (len, b) = if first < 0x80 {
        (usize::from(first), b)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || b.len() < n {
            return None;
        }
        let len = b[..n]
            .iter()
            .fold(0usize, |a, &x| (a << 8) | usize::from(x));
        (len, &b[n..])
    };
    if b.len() < len {
        return None;
    }
    Some((tag, &b[..len], &b[len..]))
}

/// Short names OpenSSL prints for the usual attribute types (by their DER-encoded OID).
fn short_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "street",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x0c] => "title",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

/// An OID in dotted form.
fn dotted(oid: &[u8]) -> Option<String> {
    let (&first, rest) = oid.split_first()?;
    let mut out = format!("{}.{}", first / 40, first % 40);
    let mut v: u64 = 0;
    for &b in rest {
        v = v.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            out.push('.');
            out.push_str(&v.to_string());
            v = 0;
        }
    }
    Some(out)
}

/// RFC 4514 escaping of an attribute value.
fn escape(v: &str, out: &mut String) {
    let n = v.chars().count();
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i + 1 == n && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The subject (or issuer) `Name`, given as webpki hands it (the RDNSequence's contents),
/// formatted RFC 4514 style: RDNs last first, `+` between the attributes of one RDN.
pub fn dn_string(name: &[u8]) -> Option<String> {
    let mut rdns = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let (tag, set, r) = tlv(rest)?;
        rest = r;
        if tag != 0x31 {
            return None;
        }
        let mut attrs = Vec::new();
        let mut s = set;
        while !s.is_empty() {
            let (tag, seq, r) = tlv(s)?;
            s = r;
            if tag != 0x30 {
                return None;
            }
            let (otag, oid, v) = tlv(seq)?;
            if otag != 0x06 {
                return None;
            }
            let (vtag, value, _) = tlv(v)?;
            let key = match short_name(oid) {
                Some(k) => k.to_owned(),
                None => dotted(oid)?,
            };
            let mut a = key;
            a.push('=');
            match vtag {
                // UTF8String, PrintableString, IA5String, T61String, VisibleString
                0x0c | 0x13 | 0x16 | 0x14 | 0x1a => {
                    escape(&String::from_utf8_lossy(value), &mut a);
                }
                // BMPString: UTF-16BE
                0x1e if value.len() % 2 == 0 => {
                    let units = value.chunks(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
                    let text: String = char::decode_utf16(units)
                        .map(|c| c.unwrap_or('\u{fffd}'))
                        .collect();
                    escape(&text, &mut a);
                }
                // Anything else: `#` and the DER value in hex (RFC 4514 §2.4).
                _ => {
                    a.push('#');
                    let whole_len = v.len() - tlv(v).map_or(0, |(_, _, r)| r.len());
                    a.push_str(&hex(&v[..whole_len]));
                }
            }
            attrs.push(a);
        }
        rdns.push(attrs.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv_of(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag, body.len() as u8];
        v.extend_from_slice(body);
        v
    }

    fn attr(oid: &[u8], tag: u8, v: &[u8]) -> Vec<u8> {
        tlv_of(0x30, &[tlv_of(0x06, oid), tlv_of(tag, v)].concat())
    }

    fn rdn(attrs: &[Vec<u8>]) -> Vec<u8> {
        tlv_of(0x31, &attrs.concat())
    }

    /// A certificate's outline: `version` (v3's `[0]`, or none for v1), five fields, the key
    /// info, then the signature parts.
    fn cert(version: bool, spki: &[u8]) -> Vec<u8> {
        let mut tbs = Vec::new();
        if version {
            tbs.extend(tlv_of(0xa0, &tlv_of(0x02, &[2])));
        }
        tbs.extend(tlv_of(0x02, &[7])); // serialNumber
        tbs.extend(tlv_of(0x30, &tlv_of(0x06, &[0x2a, 0x86]))); // signature
        tbs.extend(rdn(&[attr(&[0x55, 4, 3], 0x0c, b"ca")])); // issuer (a SET here: any TLV)
        tbs.extend(tlv_of(0x30, &[])); // validity
        tbs.extend(tlv_of(0x30, &[])); // subject
        tbs.extend_from_slice(spki);
        let mut body = tlv_of(0x30, &tbs);
        body.extend(tlv_of(0x30, &tlv_of(0x06, &[0x2a, 0x86])));
        body.extend(tlv_of(0x03, &[0, 1, 2]));
        tlv_of(0x30, &body)
    }

    #[test]
    fn the_public_key_info_is_found_in_v1_and_v3_certificates() {
        let spki_tlv = tlv_of(0x30, &[0x30, 0x00, 0x03, 0x02, 0x00, 0x04]);
        for version in [true, false] {
            let c = cert(version, &spki_tlv);
            assert_eq!(spki(&c), Some(spki_tlv.as_slice()), "version {version}");
            // Cut anywhere: never a panic, and no key info from half a certificate.
            for n in 0..c.len() {
                assert_eq!(spki(&c[..n]), None, "cut at {n}");
            }
        }
        // Not a SEQUENCE where the key info belongs.
        assert_eq!(spki(&cert(true, &tlv_of(0x04, &[1]))), None);
    }

    #[test]
    fn names_print_last_rdn_first_with_short_names_and_escapes() {
        let name = [
            rdn(&[attr(&[0x55, 4, 6], 0x13, b"US")]),
            rdn(&[attr(&[0x55, 4, 10], 0x0c, b"Acme, Inc.")]),
            rdn(&[
                attr(&[0x55, 4, 3], 0x0c, b"client"),
                attr(&[0x55, 4, 11], 0x0c, b"ops"),
            ]),
        ]
        .concat();
        assert_eq!(
            dn_string(&name).unwrap(),
            "CN=client+OU=ops,O=Acme\\, Inc.,C=US"
        );
    }

    #[test]
    fn unknown_types_print_dotted_and_odd_values_as_hex() {
        let name = rdn(&[attr(&[0x2b, 6, 1, 4, 1, 0x82, 0x37, 1], 0x02, &[5])]);
        assert_eq!(dn_string(&name).unwrap(), "1.3.6.1.4.1.311.1=#020105");
    }

    #[test]
    fn malformed_names_are_none_never_a_panic() {
        let good = rdn(&[attr(&[0x55, 4, 3], 0x0c, b"client")]);
        for cut in 0..good.len() {
            assert_eq!(
                dn_string(&good[..cut]).filter(|s| !s.is_empty()),
                None,
                "{cut}"
            );
        }
        assert_eq!(dn_string(&[0x31, 0x84, 1, 0, 0, 0]), None);
        assert_eq!(dn_string(&[0x30, 0]), None);
        // Every byte string up to 3 bytes: no panic.
        for a in 0..=255u8 {
            for b in [0u8, 1, 2, 0x80, 0x81, 0xff] {
                let _ = dn_string(&[a, b]);
                let _ = dn_string(&[0x31, a, b]);
            }
        }
    }

    #[test]
    fn pem_matches_base64_lines_of_64() {
        let der: Vec<u8> = (0..100u8).collect();
        let p = pem(&der);
        let body: String = p.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(p
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .all(|l| l.len() <= 64));
        assert_eq!(body.len(), 136);
        assert!(
            body.starts_with("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v")
        );
        assert!(body.ends_with("XV5fYGFiYw=="));
    }
}
