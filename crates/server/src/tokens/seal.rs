//! Sealing keys for `view_key/`: AES-256-GCM under a key derived from the server secret, bound
//! to the token's uuid, so a copied database without the secret reveals no key and a sealed
//! key moved to another row does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rand::RngCore;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::secret::ServerSecret;

fn cipher(secret: &ServerSecret) -> Aes256Gcm {
    let key = secret.mac("token-sealing-key", b"");
    Aes256Gcm::new(&key.into())
}

/// Encrypts `key` for the token `token_uuid`: base64 of nonce and ciphertext.
pub fn seal(secret: &ServerSecret, token_uuid: Uuid, key: &str) -> Result<String> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let sealed = cipher(secret)
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: key.as_bytes(), aad: token_uuid.as_bytes() })
        .map_err(|_| Error::internal("sealing a key failed"))?;
    let mut out = nonce.to_vec();
    out.extend(sealed);
    Ok(STANDARD_NO_PAD.encode(out))
}

/// Decrypts what [`seal`] produced for the same token.
pub fn open(secret: &ServerSecret, token_uuid: Uuid, sealed: &str) -> Result<String> {
    let bytes = STANDARD_NO_PAD.decode(sealed).map_err(|_| Error::internal("a sealed key is not base64"))?;
    if bytes.len() < 12 + 16 {
        return Err(Error::internal("a sealed key is too short"));
    }
    let (nonce, ciphertext) = bytes.split_at(12);
    let plain = cipher(secret)
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: token_uuid.as_bytes() })
        .map_err(|_| Error::internal("a sealed key does not open with this server secret"))?;
    String::from_utf8(plain).map_err(|_| Error::internal("a sealed key is not text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_for_the_same_secret_and_token() {
        let secret = ServerSecret::from_bytes(b"one secret that is long enough for tests");
        let token = Uuid::new_v4();
        let sealed = seal(&secret, token, "gatehouse_api_key").unwrap();
        assert!(!sealed.contains("gatehouse"));
        assert_eq!(open(&secret, token, &sealed).unwrap(), "gatehouse_api_key");
        assert!(open(&secret, Uuid::new_v4(), &sealed).is_err(), "bound to the token");
        let other = ServerSecret::from_bytes(b"another secret that is long enough too");
        assert!(open(&other, token, &sealed).is_err(), "bound to the server secret");
        assert_ne!(seal(&secret, token, "x").unwrap(), seal(&secret, token, "x").unwrap(), "fresh nonce each time");
    }
}
