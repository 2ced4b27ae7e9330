//! Recovery codes: a set of single-use codes shown once, kept only as keyed digests, for the day
//! a person's other devices are lost.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::FieldErrors;
use crate::secret::ServerSecret;

/// The characters of a code: lower-case letters and digits without the look-alikes 0, 1, i, l
/// and o, so that a code copied from paper is typed right.
const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
/// The fewest characters a code may have: 31^10 is about 2^49.
pub const MIN_LENGTH: u32 = 10;
/// The most a code may have, as authentik's schema allows.
pub const MAX_LENGTH: u32 = 100;
/// The most codes one set may have.
pub const MAX_COUNT: u32 = 50;

/// Settings of a static (recovery code) authenticator setup stage, with authentik's names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StaticStageSettings {
    /// How many codes a set has.
    pub token_count: u32,
    /// How many characters each code has.
    pub token_length: u32,
    /// The flow a person uses to set this authenticator up themselves.
    pub configure_flow: Option<uuid::Uuid>,
    /// The name people see for this authenticator.
    pub friendly_name: String,
}

impl Default for StaticStageSettings {
    fn default() -> Self {
        Self { token_count: 10, token_length: 12, configure_flow: None, friendly_name: String::new() }
    }
}

impl StaticStageSettings {
    /// Checks the counts serde cannot.
    pub fn check(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        if !(1..=MAX_COUNT).contains(&self.token_count) {
            errors.add("token_count", format!("Ensure this value is between 1 and {MAX_COUNT}."));
        }
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&self.token_length) {
            errors
                .add("token_length", format!("Ensure this value is between {MIN_LENGTH} and {MAX_LENGTH}: shorter codes can be guessed."));
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// `count` new codes of `length` characters from the operating system's CSPRNG.
pub fn new_codes(count: u32, length: u32) -> Vec<String> {
    let mut rng = rand::rngs::OsRng;
    (0..count).map(|_| (0..length).map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())])).collect()).collect()
}

/// A code as typed: lower case, without the spaces and dashes people add; `None` when it holds
/// anything else or is too long to be a code.
pub fn normalise(code: &str) -> Option<String> {
    let compact: String = code.chars().filter(|c| !c.is_whitespace() && *c != '-').flat_map(char::to_lowercase).collect();
    let fits = (MIN_LENGTH as usize..=MAX_LENGTH as usize).contains(&compact.len());
    (fits && compact.bytes().all(|b| ALPHABET.contains(&b))).then_some(compact)
}

/// The keyed digest a code of `user`'s is kept as.
pub fn digest(secret: &ServerSecret, user: i64, code: &str) -> String {
    secret.digest("recovery-code", format!("{user}\n{code}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_the_unambiguous_alphabet_and_are_normalised_as_typed() {
        let codes = new_codes(10, 12);
        assert_eq!(codes.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 12);
            assert!(!code.contains(['0', '1', 'i', 'l', 'o']), "{code}");
            let typed = format!("{}-{} ", code[..6].to_uppercase(), &code[6..]);
            assert_eq!(normalise(&typed).as_deref(), Some(code.as_str()));
        }
        assert_eq!(normalise("short"), None);
        assert_eq!(normalise("abcdefghjk0"), None, "0 is not in the alphabet");
    }

    #[test]
    fn digests_are_per_account() {
        let secret = ServerSecret::from_bytes(b"recovery-test-secret");
        assert_ne!(digest(&secret, 1, "abcdefghjkmn"), digest(&secret, 2, "abcdefghjkmn"));
    }

    #[test]
    fn settings_refuse_codes_short_enough_to_guess() {
        let settings = StaticStageSettings { token_length: 6, token_count: 0, ..StaticStageSettings::default() };
        let errors = settings.check().unwrap_err();
        assert!(errors.fields().contains_key("token_length"));
        assert!(errors.fields().contains_key("token_count"));
        assert!(StaticStageSettings::default().check().is_ok());
    }
}
