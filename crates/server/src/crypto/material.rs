//! Certificates and private keys as values that can only hold something usable: a parsed X.509
//! certificate with what the API shows of it, a private key in PKCS#8, and the generation of a
//! self-signed pair.

use std::fmt;

use chrono::{DateTime, Utc};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};
use sha2::Digest;
use x509_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::db::text_enum::text_enum;

text_enum!(
    /// The algorithm of a certificate's public key, in authentik's words.
    KeyType {
        Rsa => "rsa",
        Ec => "ec",
        Dsa => "dsa",
        Ed25519 => "ed25519",
        Ed448 => "ed448",
    }
);

/// The largest PEM text read, certificate or key: a 16,384-bit RSA key is about 13 KB.
pub const LONGEST_PEM: usize = 64 * 1024;

/// A certificate as imported or generated: its PEM text (one certificate, re-encoded from the
/// parsed DER so nothing but the certificate is kept) and what the API shows of it.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub pem: String,
    pub fingerprint_sha256: String,
    pub fingerprint_sha1: String,
    pub expiry: DateTime<Utc>,
    pub subject: String,
    pub key_type: Option<KeyType>,
    /// The DER of the certificate's SubjectPublicKeyInfo, to match a private key against.
    public_key_info: Vec<u8>,
}

impl Certificate {
    /// Parses the first certificate of a PEM text; the message names what is wrong.
    pub fn parse_pem(text: &str) -> Result<Self, String> {
        if text.len() > LONGEST_PEM {
            return Err(format!("The certificate is longer than {LONGEST_PEM} bytes."));
        }
        let block = ::pem::parse_many(text.as_bytes())
            .map_err(|_| "This is not a PEM-encoded certificate.".to_owned())?
            .into_iter()
            .find(|block| block.tag() == "CERTIFICATE")
            .ok_or_else(|| "No \"BEGIN CERTIFICATE\" block was found.".to_owned())?;
        Self::from_der(block.contents())
    }

    fn from_der(der: &[u8]) -> Result<Self, String> {
        let (rest, parsed) = X509Certificate::from_der(der).map_err(|_| "The certificate could not be parsed as X.509.".to_owned())?;
        if !rest.is_empty() {
            return Err("The certificate block holds more than one certificate.".into());
        }
        let expiry = DateTime::<Utc>::from_timestamp(parsed.validity().not_after.timestamp(), 0)
            .ok_or_else(|| "The certificate's expiry date is out of range.".to_owned())?;
        let key_type = match parsed.public_key().algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.113549.1.1.1" => Some(KeyType::Rsa),
            "1.2.840.10045.2.1" => Some(KeyType::Ec),
            "1.2.840.10040.4.1" => Some(KeyType::Dsa),
            "1.3.101.112" => Some(KeyType::Ed25519),
            "1.3.101.113" => Some(KeyType::Ed448),
            _ => None,
        };
        Ok(Self {
            pem: pem_text("CERTIFICATE", der),
            fingerprint_sha256: colon_hex(&sha2::Sha256::digest(der)),
            fingerprint_sha1: colon_hex(&sha1::Sha1::digest(der)),
            expiry,
            subject: rfc4514(parsed.subject()),
            key_type,
            public_key_info: parsed.public_key().raw.to_vec(),
        })
    }
}

/// PEM text with Unix line endings, as OpenSSL writes it.
fn pem_text(tag: &str, der: &[u8]) -> String {
    ::pem::encode_config(&::pem::Pem::new(tag, der.to_vec()), ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF))
}

/// Lower-case hex pairs joined by colons, as authentik shows fingerprints.
fn colon_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// A distinguished name as RFC 4514 writes it: the last relative name first, short attribute
/// names where there are any, special characters escaped.
fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let key = x509_parser::objects::oid2abbrev(attribute.attr_type(), registry)
                        .map(str::to_owned)
                        .unwrap_or_else(|_| attribute.attr_type().to_id_string());
                    let value = match attribute_text(attribute.attr_value()) {
                        Some(text) => escape_rfc4514(&text),
                        // Not text: RFC 4514's `#` and the hex of the value's whole encoding.
                        None => "#".to_owned() + &hex::encode(attribute.attr_value().to_der_vec().unwrap_or_default()),
                    };
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// The text of a name's attribute value in any of X.509's string types (Teletex read as Latin-1,
/// as OpenSSL and Python's cryptography read it), or `None` for what is not a string.
fn attribute_text(value: &Any<'_>) -> Option<String> {
    let data = value.data;
    match value.tag() {
        Tag::NumericString | Tag::PrintableString | Tag::Utf8String | Tag::Ia5String | Tag::VisibleString => {
            std::str::from_utf8(data).ok().map(str::to_owned)
        }
        Tag::BmpString if data.len().is_multiple_of(2) => {
            char::decode_utf16(data.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]]))).collect::<Result<String, _>>().ok()
        }
        Tag::UniversalString if data.len().is_multiple_of(4) => {
            data.chunks_exact(4).map(|four| char::from_u32(u32::from_be_bytes([four[0], four[1], four[2], four[3]]))).collect()
        }
        Tag::TeletexString => Some(data.iter().map(|&byte| char::from(byte)).collect()),
        _ => None,
    }
}

/// `value` with what RFC 4514 escapes escaped: the special characters, a leading space or `#`,
/// a trailing space, and NUL as `\00`.
fn escape_rfc4514(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        if c == '\0' {
            out.push_str("\\00");
            continue;
        }
        let leading = i == 0 && (c == ' ' || c == '#');
        let trailing = i == last && c == ' ';
        if leading || trailing || matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A private key in PKCS#8 PEM, checked to be a key this server can sign with. Its text is
/// wiped from memory when dropped and never printed.
pub struct PrivateKey {
    pem: Zeroizing<String>,
    key_pair: KeyPair,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

/// What to say about a key in a format that is not read.
const CONVERT: &str = "Only PKCS#8 (\"BEGIN PRIVATE KEY\") and PKCS#1 RSA (\"BEGIN RSA PRIVATE KEY\") keys are read; convert others with `openssl pkcs8 -topk8 -nocrypt -in key.pem`.";

impl PrivateKey {
    /// Parses an unencrypted private key (PKCS#8, or PKCS#1 for RSA); the message names what is
    /// wrong and never repeats the key.
    pub fn parse_pem(text: &str) -> Result<Self, String> {
        if text.len() > LONGEST_PEM {
            return Err(format!("The private key is longer than {LONGEST_PEM} bytes."));
        }
        let blocks = ::pem::parse_many(text.as_bytes()).map_err(|_| "This is not a PEM-encoded private key.".to_owned())?;
        let Some(block) = blocks.iter().find(|block| block.tag().ends_with("PRIVATE KEY")) else {
            return Err("No \"BEGIN PRIVATE KEY\" block was found.".into());
        };
        let pkcs8 = match block.tag() {
            "PRIVATE KEY" => Zeroizing::new(block.contents().to_vec()),
            "RSA PRIVATE KEY" => {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::RsaPrivateKey::from_pkcs1_der(block.contents())
                    .map_err(|_| "The RSA private key could not be read.".to_owned())?;
                let document = key.to_pkcs8_der().map_err(|_| "The RSA private key could not be read.".to_owned())?;
                Zeroizing::new(document.as_bytes().to_vec())
            }
            "ENCRYPTED PRIVATE KEY" => return Err("Encrypted private keys are not read; decrypt it first.".into()),
            _ => return Err(CONVERT.into()),
        };
        Self::from_pkcs8_der(&pkcs8)
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self, String> {
        let pem = Zeroizing::new(pem_text("PRIVATE KEY", der));
        let key_pair =
            KeyPair::from_pem(&pem).or_else(|_| KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)).map_err(|_| {
                "The private key is not one this server can sign with (RSA of 2048 bits or more, EC P-256 or P-384, or Ed25519).".to_owned()
            })?;
        Ok(Self { pem, key_pair })
    }

    /// The key's PKCS#8 PEM text.
    pub fn expose_pem(&self) -> &str {
        &self.pem
    }

    /// Whether `certificate` carries this key's public half.
    pub fn matches(&self, certificate: &Certificate) -> bool {
        self.key_pair.subject_public_key_info() == certificate.public_key_info
    }
}

text_enum!(
    /// The algorithms a new pair can be generated with; authentik's `alg`.
    Algorithm {
        Rsa => "rsa",
        Ecdsa => "ecdsa",
        Ed25519 => "ed25519",
        Ed448 => "ed448",
    }
);

/// What a new self-signed pair says and how long it lasts.
#[derive(Debug, Clone)]
pub struct Generation {
    pub common_name: String,
    /// DNS names and IP addresses, checked with [`subject_alt_name`]; empty for the common name
    /// alone.
    pub subject_alt_names: Vec<String>,
    pub validity_days: u32,
    pub algorithm: Algorithm,
    /// Bits of an RSA key.
    pub rsa_bits: usize,
}

/// Checks one subject alternative name: an IP address, or a DNS name (ASCII letters, digits,
/// `-`, `.` and a leading `*.`).
pub fn subject_alt_name(name: &str) -> Result<(), String> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    let labels_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
        });
    if labels_ok { Ok(()) } else { Err(format!("\"{name}\" is neither a DNS name nor an IP address.")) }
}

/// Generates a key and a self-signed certificate for it (slow for RSA: run it off the async
/// threads).
pub fn generate(request: &Generation) -> Result<(Certificate, PrivateKey), String> {
    let key = match request.algorithm {
        Algorithm::Rsa => {
            use rsa::pkcs8::EncodePrivateKey;
            let key =
                rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, request.rsa_bits).map_err(|e| format!("RSA key generation failed: {e}"))?;
            let der = key.to_pkcs8_der().map_err(|e| format!("RSA key encoding failed: {e}"))?;
            PrivateKey::from_pkcs8_der(der.as_bytes())?
        }
        Algorithm::Ecdsa => pkcs8_of(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256))?,
        Algorithm::Ed25519 => {
            let generated = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| format!("Key generation failed: {e}"))?;
            PrivateKey::from_pkcs8_der(&ed25519_version_1(&Zeroizing::new(generated.serialize_der()))?)?
        }
        Algorithm::Ed448 => return Err("Ed448 keys are not supported by this server; choose rsa, ecdsa or ed25519.".into()),
    };
    // Without names there is no extension, as authentik makes it; the common name may be any text.
    let mut params =
        CertificateParams::new(request.subject_alt_names.clone()).map_err(|e| format!("Invalid subject alternative name: {e}"))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, request.common_name.clone());
    name.push(DnType::OrganizationName, "Gatehouse");
    name.push(DnType::OrganizationalUnitName, "Self-signed");
    params.distinguished_name = name;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(i64::from(request.validity_days));
    let signed = params.self_signed(&key.key_pair).map_err(|e| format!("The certificate could not be signed: {e}"))?;
    Ok((Certificate::from_der(signed.der())?, key))
}

/// An Ed25519 key in PKCS#8 version 1 (RFC 8410): the seed alone. ring writes version 2, with
/// the public key, which OpenSSL 3.0 does not read.
fn ed25519_version_1(version_2: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    const VERSION_2_UP_TO_SEED: [u8; 16] = [0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    const VERSION_1_UP_TO_SEED: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    let seed = version_2
        .strip_prefix(&VERSION_2_UP_TO_SEED)
        .and_then(|rest| rest.get(..32))
        .ok_or_else(|| "The generated Ed25519 key was not in the expected encoding.".to_owned())?;
    let mut version_1 = Zeroizing::new(Vec::with_capacity(48));
    version_1.extend_from_slice(&VERSION_1_UP_TO_SEED);
    version_1.extend_from_slice(seed);
    Ok(version_1)
}

fn pkcs8_of(generated: Result<KeyPair, rcgen::Error>) -> Result<PrivateKey, String> {
    let key_pair = generated.map_err(|e| format!("Key generation failed: {e}"))?;
    PrivateKey::from_pkcs8_der(&key_pair.serialize_der())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(algorithm: Algorithm) -> Generation {
        Generation { common_name: "sso.example.com".into(), subject_alt_names: vec![], validity_days: 30, algorithm, rsa_bits: 2048 }
    }

    #[test]
    fn a_generated_pair_matches_and_reads_back() {
        for (algorithm, key_type) in
            [(Algorithm::Ecdsa, KeyType::Ec), (Algorithm::Ed25519, KeyType::Ed25519), (Algorithm::Rsa, KeyType::Rsa)]
        {
            let (certificate, key) = generate(&request(algorithm)).unwrap();
            assert_eq!(certificate.key_type, Some(key_type));
            assert!(key.matches(&certificate));
            assert_eq!(certificate.subject, "OU=Self-signed,O=Gatehouse,CN=sso.example.com");
            let again = Certificate::parse_pem(&certificate.pem).unwrap();
            assert_eq!(again.fingerprint_sha256, certificate.fingerprint_sha256);
            let key_again = PrivateKey::parse_pem(key.expose_pem()).unwrap();
            assert!(key_again.matches(&again));
        }
    }

    #[test]
    fn a_key_does_not_match_another_certificate() {
        let (certificate, _) = generate(&request(Algorithm::Ecdsa)).unwrap();
        let (_, other) = generate(&request(Algorithm::Ecdsa)).unwrap();
        assert!(!other.matches(&certificate));
    }

    #[test]
    fn distinguished_names_escape_what_rfc_4514_escapes() {
        assert_eq!(escape_rfc4514("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_rfc4514(" #x "), "\\ #x\\ ");
        assert_eq!(escape_rfc4514("#x"), "\\#x");
        assert_eq!(escape_rfc4514("a\0b"), "a\\00b");
    }

    #[test]
    fn refuses_what_is_not_a_usable_key_or_certificate() {
        assert!(Certificate::parse_pem("hello").is_err());
        assert!(PrivateKey::parse_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
        let long = "A".repeat(LONGEST_PEM + 1);
        assert!(Certificate::parse_pem(&long).unwrap_err().contains("longer"));
        assert!(
            PrivateKey::parse_pem("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n").unwrap_err().contains("PKCS#8")
        );
    }
}
