//! Authenticator apps: time-based one-time passwords (RFC 6238: HMAC-SHA-1, 30-second steps,
//! one step of clock drift either way), the stage settings that enrol them, and the
//! `otpauth://` address an app scans.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::secret::{ServerSecret, constant_time_eq};

/// Seconds per step.
pub const STEP_SECONDS: u64 = 30;
/// Bytes of a new shared secret: 160 bits, as RFC 4226 recommends.
const SECRET_BYTES: usize = 20;
/// What a sealed secret is sealed for.
const SEAL_PURPOSE: &str = "totp-secret";

/// How many digits the app shows, as authentik spells them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Digits {
    #[default]
    #[serde(rename = "6")]
    Six,
    #[serde(rename = "8")]
    Eight,
}

impl Digits {
    /// The number of digits.
    pub fn count(self) -> usize {
        match self {
            Digits::Six => 6,
            Digits::Eight => 8,
        }
    }

    /// The digits a stored device was enrolled with (6 for anything unexpected).
    pub fn from_count(count: i32) -> Self {
        if count == 8 { Digits::Eight } else { Digits::Six }
    }
}

/// Settings of a TOTP authenticator setup stage, with authentik's names.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TotpStageSettings {
    pub digits: Digits,
    /// The flow a person uses to set this authenticator up themselves.
    pub configure_flow: Option<uuid::Uuid>,
    /// The name people see for this authenticator.
    pub friendly_name: String,
}

/// A shared secret: random bytes, never logged.
#[derive(Clone)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(********)")
    }
}

impl TotpSecret {
    /// A new secret from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; SECRET_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        Self(bytes)
    }

    /// The secret sealed for the account `user` (a sealed secret moved to another account's row
    /// does not open).
    pub fn seal(&self, secret: &ServerSecret, user: i64) -> Result<String> {
        secret.seal(SEAL_PURPOSE, &user.to_be_bytes(), &self.0)
    }

    /// Opens what [`TotpSecret::seal`] sealed for `user`.
    pub fn open(secret: &ServerSecret, user: i64, sealed: &str) -> Result<Self> {
        let bytes = secret.open(SEAL_PURPOSE, &user.to_be_bytes(), sealed)?;
        if bytes.len() < 16 {
            return Err(Error::internal("a TOTP secret is too short"));
        }
        Ok(Self(bytes))
    }

    fn totp(&self, digits: Digits, issuer: &str, account: &str) -> Result<totp_rs::TOTP> {
        // The otpauth label separates issuer and account with a colon, so neither may hold one.
        let clean = |text: &str| text.replace(':', " ");
        totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, digits.count(), 1, STEP_SECONDS, self.0.clone(), Some(clean(issuer)), clean(account))
            .map_err(|e| Error::internal(format!("TOTP parameters refused: {e}")))
    }

    /// The `otpauth://totp/…` address an authenticator app scans.
    pub fn config_url(&self, digits: Digits, issuer: &str, account: &str) -> Result<String> {
        Ok(self.totp(digits, issuer, account)?.get_url())
    }

    /// The secret in base32, for typing into an app by hand.
    pub fn base32(&self) -> String {
        totp_rs::Secret::Raw(self.0.clone()).to_encoded().to_string()
    }

    /// The time step whose code `code` is, among the step of `unix_time` and one either side;
    /// `None` when it is none of them. Every candidate is compared, in constant time.
    pub fn matching_step(&self, digits: Digits, code: &str, unix_time: u64) -> Option<u64> {
        let totp = self.totp(digits, "", "-").ok()?;
        let current = unix_time / STEP_SECONDS;
        let mut found = None;
        for step in [current.saturating_sub(1), current, current + 1] {
            let expected = totp.generate(step * STEP_SECONDS);
            if constant_time_eq(expected.as_bytes(), code.as_bytes()) && found.is_none() {
                found = Some(step);
            }
        }
        found
    }

    /// The code for `unix_time`, for tests and benchmarks that play the app.
    pub fn code_at(&self, digits: Digits, unix_time: u64) -> Result<String> {
        Ok(self.totp(digits, "", "-")?.generate(unix_time))
    }
}

/// A TOTP code as typed: digits with spaces allowed between them, of the device's length.
pub fn normalise_code(code: &str, digits: Digits) -> Option<String> {
    let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    (compact.len() == digits.count() && compact.bytes().all(|b| b.is_ascii_digit())).then_some(compact)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc_secret() -> TotpSecret {
        TotpSecret(b"12345678901234567890".to_vec())
    }

    #[test]
    fn codes_match_rfc_6238s_sha1_test_vectors() {
        // RFC 6238, appendix B (SHA-1, eight digits).
        for (time, code) in [(59, "94287082"), (1_111_111_109, "07081804"), (1_234_567_890, "89005924"), (2_000_000_000, "69279037")] {
            assert_eq!(rfc_secret().code_at(Digits::Eight, time).unwrap(), code, "at {time}");
            assert_eq!(rfc_secret().matching_step(Digits::Eight, code, time), Some(time / STEP_SECONDS));
        }
    }

    #[test]
    fn a_code_counts_one_step_either_side_and_no_further() {
        let secret = TotpSecret::generate();
        let now = 1_800_000_000;
        let code = secret.code_at(Digits::Six, now).unwrap();
        let step = now / STEP_SECONDS;
        assert_eq!(secret.matching_step(Digits::Six, &code, now), Some(step));
        assert_eq!(secret.matching_step(Digits::Six, &code, now + STEP_SECONDS), Some(step), "a step late");
        assert_eq!(secret.matching_step(Digits::Six, &code, now - STEP_SECONDS), Some(step), "a step early");
        assert_eq!(secret.matching_step(Digits::Six, &code, now + 2 * STEP_SECONDS), None);
        assert_eq!(secret.matching_step(Digits::Six, &code, now - 2 * STEP_SECONDS), None);
    }

    #[test]
    fn the_secret_is_sealed_for_its_account_and_the_address_carries_it() {
        let server = ServerSecret::from_bytes(b"totp-test-secret-that-is-long-enough");
        let secret = TotpSecret::generate();
        let sealed = secret.seal(&server, 7).unwrap();
        assert_eq!(TotpSecret::open(&server, 7, &sealed).unwrap().0, secret.0);
        assert!(TotpSecret::open(&server, 8, &sealed).is_err(), "bound to the account");
        let url = secret.config_url(Digits::Six, "Gatehouse", "olga@example.com").unwrap();
        assert!(url.starts_with("otpauth://totp/Gatehouse:olga%40example.com?"), "{url}");
        assert!(url.contains(&format!("secret={}", secret.base32())), "{url}");
        assert_eq!(format!("{secret:?}"), "TotpSecret(********)");
    }

    #[test]
    fn typed_codes_are_digits_of_the_right_length() {
        assert_eq!(normalise_code(" 123 456 ", Digits::Six).as_deref(), Some("123456"));
        assert_eq!(normalise_code("12345", Digits::Six), None);
        assert_eq!(normalise_code("12345a", Digits::Six), None);
        assert_eq!(normalise_code("12345678", Digits::Eight).as_deref(), Some("12345678"));
    }
}
