//! Signed JSON Web Tokens from a pair's private key, and the pair's public half as a JSON Web Key
//! (RFC 7517) for those who check them. The algorithm follows the key: RS256 for RSA, ES256 or
//! ES384 for EC P-256 or P-384, EdDSA for Ed25519; nothing else signs.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Digest;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;
use zeroize::Zeroizing;

use super::entities::key_pair;
use crate::error::{Error, Result};
use crate::secret::ServerSecret;

const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";

/// The public half of a pair as the signing algorithm sees it.
enum PublicHalf {
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    Ec { curve: &'static str, algorithm: Algorithm, x: Vec<u8>, y: Vec<u8> },
    Ed25519 { x: Vec<u8> },
}

impl PublicHalf {
    fn algorithm(&self) -> Algorithm {
        match self {
            PublicHalf::Rsa { .. } => Algorithm::RS256,
            PublicHalf::Ec { algorithm, .. } => *algorithm,
            PublicHalf::Ed25519 { .. } => Algorithm::EdDSA,
        }
    }
}

/// The DER of the certificate in a stored pair.
fn certificate_der(pair: &key_pair::Model) -> Result<Vec<u8>> {
    ::pem::parse(pair.certificate_pem.as_bytes())
        .map(|block| block.into_contents())
        .map_err(|_| Error::internal("a stored certificate is not PEM"))
}

/// The key in the certificate of `pair`, or `None` for one that cannot sign tokens here (DSA,
/// Ed448, curves other than P-256 and P-384).
fn public_half(der: &[u8]) -> Result<Option<PublicHalf>> {
    let (_, certificate) = X509Certificate::from_der(der).map_err(|_| Error::internal("a stored certificate does not parse"))?;
    let info = certificate.public_key();
    let half = match info.parsed() {
        Ok(PublicKey::RSA(rsa)) => Some(PublicHalf::Rsa { modulus: unsigned(rsa.modulus), exponent: unsigned(rsa.exponent) }),
        Ok(PublicKey::EC(point)) => {
            let curve = info.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|oid| oid.to_id_string());
            let (curve, algorithm, size) = match curve.as_deref() {
                Some(P256) => ("P-256", Algorithm::ES256, 32),
                Some(P384) => ("P-384", Algorithm::ES384, 48),
                _ => return Ok(None),
            };
            // An uncompressed point: 0x04, then x and y.
            let data = point.data();
            if data.len() != 1 + 2 * size || data[0] != 4 {
                return Ok(None);
            }
            Some(PublicHalf::Ec { curve, algorithm, x: data[1..=size].to_vec(), y: data[1 + size..].to_vec() })
        }
        _ if info.algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            Some(PublicHalf::Ed25519 { x: info.subject_public_key.data.to_vec() })
        }
        _ => None,
    };
    Ok(half)
}

/// A big-endian integer without the leading zero DER adds to keep it positive.
fn unsigned(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len().saturating_sub(1));
    bytes[start..].to_vec()
}

/// The key id of a pair: the first half of its certificate's SHA-256 fingerprint, in hex, so it
/// changes with the certificate and never with a rename.
pub fn key_id(pair: &key_pair::Model) -> String {
    pair.fingerprint_sha256.replace(':', "")[..32].to_owned()
}

/// The algorithm tokens signed with `pair` carry, or `None` when its key cannot sign them.
pub fn algorithm_of(pair: &key_pair::Model) -> Result<Option<Algorithm>> {
    Ok(public_half(&certificate_der(pair)?)?.map(|half| half.algorithm()))
}

/// The public key of `pair` as a JWK with its certificate (`x5c`, `x5t`, `x5t#S256`), or `None`
/// for a key that cannot sign tokens.
pub fn public_jwk(pair: &key_pair::Model) -> Result<Option<Value>> {
    let der = certificate_der(pair)?;
    let Some(half) = public_half(&der)? else { return Ok(None) };
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let mut jwk = match &half {
        PublicHalf::Rsa { modulus, exponent } => json!({"kty": "RSA", "n": b64(modulus), "e": b64(exponent)}),
        PublicHalf::Ec { curve, x, y, .. } => json!({"kty": "EC", "crv": curve, "x": b64(x), "y": b64(y)}),
        PublicHalf::Ed25519 { x } => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(x)}),
    };
    if let Some(fields) = jwk.as_object_mut() {
        fields.insert("kid".into(), json!(key_id(pair)));
        fields.insert("alg".into(), json!(algorithm_name(half.algorithm())));
        fields.insert("use".into(), json!("sig"));
        fields.insert("x5c".into(), json!([STANDARD.encode(&der)]));
        fields.insert("x5t".into(), json!(b64(&sha1::Sha1::digest(&der))));
        fields.insert("x5t#S256".into(), json!(b64(&sha2::Sha256::digest(&der))));
    }
    Ok(Some(jwk))
}

/// The JOSE name of `algorithm`.
pub fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "none",
    }
}

/// A private key parsed once, ready to sign. ring holds every key type that signs tokens here
/// (it is the provider of the TLS stack and of the certificate generator, which already checked
/// every stored key with it), and signs RSA in a fraction of the time the pure-Rust `rsa` crate
/// needs.
enum SigningKey {
    Rsa(ring::signature::RsaKeyPair),
    Ecdsa(ring::signature::EcdsaKeyPair),
    Ed25519(ring::signature::Ed25519KeyPair),
}

/// A pair's private key ready to sign tokens, with the key id and algorithm they carry. Build it
/// once per pair and keep it: opening and parsing the key costs more than a signature.
pub struct Signer {
    key: SigningKey,
    algorithm: Algorithm,
    key_id: String,
    random: ring::rand::SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("algorithm", &self.algorithm).field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// The protected header of a compact JWS (RFC 7515 §4).
#[derive(Serialize)]
struct JoseHeader<'a> {
    alg: &'static str,
    kid: &'a str,
    typ: &'a str,
}

impl Signer {
    /// The signer of `pair`, opening its sealed key; `None` when the pair has no private key or
    /// one that cannot sign tokens.
    pub fn for_pair(secret: &ServerSecret, pair: &key_pair::Model) -> Result<Option<Self>> {
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
        let Some(half) = public_half(&certificate_der(pair)?)? else { return Ok(None) };
        let Some(pem) = super::service::open(secret, pair)? else { return Ok(None) };
        let pem = Zeroizing::new(pem);
        let block = ::pem::parse(pem.as_bytes()).map_err(|_| Error::internal("a sealed private key is not PEM"))?;
        let pkcs8 = Zeroizing::new(block.into_contents());
        let random = ring::rand::SystemRandom::new();
        let algorithm = half.algorithm();
        let refused = |_| Error::internal("a sealed private key cannot sign");
        let key = match (half, algorithm) {
            (PublicHalf::Rsa { .. }, _) => SigningKey::Rsa(RsaKeyPair::from_pkcs8(&pkcs8).map_err(refused)?),
            (PublicHalf::Ec { .. }, Algorithm::ES384) => {
                SigningKey::Ecdsa(EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &pkcs8, &random).map_err(refused)?)
            }
            (PublicHalf::Ec { .. }, _) => {
                SigningKey::Ecdsa(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &random).map_err(refused)?)
            }
            (PublicHalf::Ed25519 { .. }, _) => SigningKey::Ed25519(Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).map_err(refused)?),
        };
        Ok(Some(Self { key, algorithm, key_id: key_id(pair), random }))
    }

    /// The algorithm this signer's tokens carry.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key id this signer's tokens carry.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// `claims` as a compact JWS (RFC 7515 §7.1) with `alg`, `kid` and `typ` in the header.
    pub fn sign<T: Serialize>(&self, claims: &T, token_type: &str) -> Result<String> {
        let header = JoseHeader { alg: algorithm_name(self.algorithm), kid: &self.key_id, typ: token_type };
        let mut message = base64_json(&header)?;
        message.push('.');
        message.push_str(&base64_json(claims)?);
        let failed = |_| Error::internal("a token could not be signed");
        let signature = match &self.key {
            SigningKey::Rsa(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(&ring::signature::RSA_PKCS1_SHA256, &self.random, message.as_bytes(), &mut signature).map_err(failed)?;
                signature
            }
            SigningKey::Ecdsa(key) => key.sign(&self.random, message.as_bytes()).map_err(failed)?.as_ref().to_vec(),
            SigningKey::Ed25519(key) => key.sign(message.as_bytes()).as_ref().to_vec(),
        };
        message.push('.');
        message.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(message)
    }
}

/// `value` as JSON in unpadded base64url, as a JWS part.
fn base64_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let json = serde_json::to_vec(value).map_err(|_| Error::internal("a token part could not be encoded"))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// The claims of `token` if `pair` signed it for one of `audiences` as `issuer`, with the
/// algorithm the pair's key type fixes (never one the token's header names). Expiry is checked
/// unless `allow_expired` (an `id_token_hint` may have expired). `None` for anything else.
pub fn verify(pair: &key_pair::Model, token: &str, audiences: &[&str], issuer: &str, allow_expired: bool) -> Result<Option<Value>> {
    let Some(jwk) = public_jwk(pair)? else { return Ok(None) };
    let Ok(jwk) = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(jwk) else { return Ok(None) };
    let Ok(key) = jsonwebtoken::DecodingKey::from_jwk(&jwk) else { return Ok(None) };
    let Some(algorithm) = algorithm_of(pair)? else { return Ok(None) };
    let mut validation = jsonwebtoken::Validation::new(algorithm);
    validation.set_audience(audiences);
    validation.set_issuer(&[issuer]);
    validation.validate_exp = !allow_expired;
    validation.leeway = 60;
    Ok(jsonwebtoken::decode::<Value>(token, &key, &validation).ok().map(|data| data.claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::material::{self, Algorithm as KeyAlgorithm, Generation};
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{DecodingKey, Validation};

    fn pair_of(algorithm: KeyAlgorithm, secret: &ServerSecret) -> key_pair::Model {
        let generation = Generation { common_name: "test".into(), subject_alt_names: vec![], validity_days: 1, algorithm, rsa_bits: 2048 };
        let (certificate, key) = material::generate(&generation).expect("generated");
        let id = uuid::Uuid::new_v4();
        key_pair::Model {
            id,
            tenant_id: uuid::Uuid::nil(),
            name: "test".into(),
            private_key_sealed: Some(super::super::service::seal(secret, id, &key).expect("sealed")),
            key_type: certificate.key_type.map(|t| t.as_str().to_owned()),
            certificate_pem: certificate.pem,
            fingerprint_sha256: certificate.fingerprint_sha256,
            fingerprint_sha1: certificate.fingerprint_sha1,
            cert_expiry: certificate.expiry,
            cert_subject: certificate.subject,
            managed: None,
            created: chrono::Utc::now(),
            last_updated: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_token_signed_with_each_key_type_verifies_against_the_published_key_alone() {
        let secret = ServerSecret::from_bytes(&[7; 32]);
        for (algorithm, expected) in
            [(KeyAlgorithm::Rsa, Algorithm::RS256), (KeyAlgorithm::Ecdsa, Algorithm::ES256), (KeyAlgorithm::Ed25519, Algorithm::EdDSA)]
        {
            let pair = pair_of(algorithm, &secret);
            let signer = Signer::for_pair(&secret, &pair).expect("opened").expect("a signing key");
            assert_eq!(signer.algorithm(), expected);
            let token = signer.sign(&json!({"sub": "someone", "exp": 4_000_000_000u64}), "JWT").expect("signed");
            let jwk: Jwk = serde_json::from_value(public_jwk(&pair).expect("read").expect("a key")).expect("a JWK");
            assert_eq!(jwk.common.key_id.as_deref(), Some(key_id(&pair).as_str()));
            let header = jsonwebtoken::decode_header(&token).expect("a header");
            assert_eq!(header.kid.as_deref(), Some(key_id(&pair).as_str()));
            let claims = jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(&jwk).expect("a key"), &Validation::new(expected))
                .expect("verified")
                .claims;
            assert_eq!(claims["sub"], "someone");
            // Another pair's published key does not verify it.
            let other: Jwk = serde_json::from_value(public_jwk(&pair_of(algorithm, &secret)).unwrap().unwrap()).unwrap();
            assert!(jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(&other).unwrap(), &Validation::new(expected)).is_err());
        }
    }

    #[test]
    fn a_pair_without_a_private_key_gives_no_signer_but_still_a_public_key() {
        let secret = ServerSecret::from_bytes(&[7; 32]);
        let mut pair = pair_of(KeyAlgorithm::Ecdsa, &secret);
        pair.private_key_sealed = None;
        assert!(Signer::for_pair(&secret, &pair).unwrap().is_none());
        let jwk = public_jwk(&pair).unwrap().unwrap();
        assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str(), jwk["alg"].as_str()), (Some("EC"), Some("P-256"), Some("ES256")));
    }

    #[test]
    fn verification_takes_the_algorithm_from_the_key_and_checks_audience_issuer_and_expiry() {
        let secret = ServerSecret::from_bytes(&[7; 32]);
        let pair = pair_of(KeyAlgorithm::Ecdsa, &secret);
        let signer = Signer::for_pair(&secret, &pair).unwrap().unwrap();
        let claims = |exp: i64| json!({"iss": "https://id.example/", "aud": "client", "sub": "s", "exp": exp});
        let now = chrono::Utc::now().timestamp();
        let live = signer.sign(&claims(now + 600), "JWT").unwrap();
        assert!(verify(&pair, &live, &["client"], "https://id.example/", false).unwrap().is_some());
        assert!(verify(&pair, &live, &["other"], "https://id.example/", false).unwrap().is_none());
        assert!(verify(&pair, &live, &["client"], "https://elsewhere/", false).unwrap().is_none());
        let expired = signer.sign(&claims(now - 3600), "JWT").unwrap();
        assert!(verify(&pair, &expired, &["client"], "https://id.example/", false).unwrap().is_none());
        assert!(verify(&pair, &expired, &["client"], "https://id.example/", true).unwrap().is_some());
        // alg "none", or a token another key signed, is refused.
        let unsigned = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#), live.split('.').nth(1).unwrap());
        assert!(verify(&pair, &unsigned, &["client"], "https://id.example/", false).unwrap().is_none());
        let other = pair_of(KeyAlgorithm::Ecdsa, &secret);
        assert!(verify(&other, &live, &["client"], "https://id.example/", false).unwrap().is_none());
    }

    #[test]
    fn rsa_parameters_lose_the_sign_byte_der_adds() {
        assert_eq!(unsigned(&[0, 0x80, 1]), vec![0x80, 1]);
        assert_eq!(unsigned(&[1, 0, 1]), vec![1, 0, 1]);
        assert_eq!(unsigned(&[0]), vec![0]);
    }
}
