//! How account identifiers (e-mail addresses, usernames) are compared: one canonical key per
//! identifier that people would read as the same, and a look-alike check beside it.
//!
//! The key is the identifier in NFKC, lower-cased, NFKC again: the idea of PRECIS's
//! UsernameCaseMapped profile, with Unicode's default lower-case mapping rather than full case
//! folding (so `ß` and `ss` stay different), so the Kelvin sign, fullwidth letters and case
//! variants all share the key of the plain ASCII spelling. Identifiers that still differ but look alike
//! (`admın`, Cyrillic `а`) are caught by the Unicode TR39 skeleton of the key, and labels that
//! mix scripts (`exаmple`, a Cyrillic `а` among Latin letters) are refused outright.

use unicode_normalization::UnicodeNormalization;
use unicode_security::MixedScript;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("Mixes letters of different scripts in one part; write each part in one script.")]
    MixedScripts,
    #[error("Holds invisible characters.")]
    Invisible,
    #[error("Use only ASCII letters, digits and punctuation.")]
    NotAscii,
}

/// An identifier as stored and shown: trimmed, in NFKC form, so compatibility look-alikes (the
/// Kelvin sign, fullwidth letters) are stored as the letters they stand for.
pub fn canonical_text(text: &str) -> String {
    text.trim().nfkc().collect()
}

/// The key an identifier is looked up and kept unique by: trimmed, NFKC, lower-cased, NFKC.
pub fn identifier_key(text: &str) -> String {
    let folded: String = text.trim().nfkc().flat_map(char::to_lowercase).collect();
    folded.nfkc().collect()
}

/// The TR39 skeleton of an identifier's key: identifiers that look alike share it.
pub fn identifier_skeleton(text: &str) -> String {
    let key = identifier_key(text);
    unicode_security::skeleton(&key).flat_map(char::to_lowercase).collect()
}

/// Checks an identifier as a whole: no invisible characters, each part (between `@`, `.`, `+`,
/// `-` and `_`) in one script, and only ASCII when `ascii_only`.
pub fn check_identifier(text: &str, ascii_only: bool) -> Result<(), IdentifierError> {
    if ascii_only && !text.is_ascii() {
        return Err(IdentifierError::NotAscii);
    }
    if text.chars().any(is_invisible) {
        return Err(IdentifierError::Invisible);
    }
    let key = identifier_key(text);
    if key.split(['@', '.', '+', '-', '_']).any(|part| !part.is_empty() && !part.is_single_script()) {
        return Err(IdentifierError::MixedScripts);
    }
    Ok(())
}

/// Characters that show nothing: format controls, joiners, variation selectors.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}' | '\u{FFA0}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_people_read_as_the_same_share_a_key() {
        assert_eq!(identifier_key("\u{212A}ate@Example.com"), "kate@example.com", "Kelvin sign");
        assert_eq!(identifier_key("ａｄｍｉｎ@example.com"), "admin@example.com", "fullwidth");
        assert_eq!(identifier_key("  Admin "), "admin");
        assert_ne!(identifier_key("admın"), "admin", "dotless i is another letter");
    }

    #[test]
    fn look_alikes_share_a_skeleton() {
        let admin = identifier_skeleton("admin@example.com");
        assert_eq!(identifier_skeleton("admın@example.com"), admin, "dotless i");
        assert_eq!(identifier_skeleton("\u{0430}dmin@example.com"), admin, "Cyrillic a");
        assert_ne!(identifier_skeleton("adman@example.com"), admin);
    }

    #[test]
    fn mixed_scripts_and_invisible_characters_are_refused() {
        assert_eq!(check_identifier("admin@ex\u{0430}mple.com", false), Err(IdentifierError::MixedScripts));
        assert_eq!(check_identifier("\u{0430}dmin", false), Err(IdentifierError::MixedScripts));
        assert_eq!(check_identifier("ad\u{200B}min", false), Err(IdentifierError::Invisible));
        assert_eq!(check_identifier("иван@example.com", false), Ok(()), "one script per part");
        assert_eq!(check_identifier("josé.garcía@example.es", false), Ok(()));
        assert_eq!(check_identifier("josé", true), Err(IdentifierError::NotAscii));
        assert_eq!(check_identifier("jose", true), Ok(()));
    }
}
