//! Key material: the recognisable key format, and the record locators of Smarter's tokens.
//!
//! A key reads `gatehouse_<kind>_<random><checksum>`: a fixed prefix that names Gatehouse and
//! the key's purpose (so secret scanners can find leaked keys), 43 random base62 characters
//! (256 bits from the operating system's CSPRNG) and six base62 characters of CRC32 over
//! everything before them, so that a mistyped or truncated key is refused without a lookup.

use std::fmt;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

const PREFIX: &str = "gatehouse_";
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 43 base62 characters carry 256 bits.
const RANDOM_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
/// Characters of the random part in [`SecretKey::prefix`].
const PREFIX_CHARS: usize = 8;

/// What a key is for; its code is part of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Api,
    AppPassword,
    Recovery,
    Verification,
    /// An agent connector's enrollment token, which devices enrol with.
    Enrollment,
    /// A device token, which an enrolled device's agent calls with.
    Device,
}

impl KeyKind {
    const ALL: [KeyKind; 6] =
        [KeyKind::Api, KeyKind::AppPassword, KeyKind::Recovery, KeyKind::Verification, KeyKind::Enrollment, KeyKind::Device];

    /// The code in the key.
    pub fn code(self) -> &'static str {
        match self {
            KeyKind::Api => "api",
            KeyKind::AppPassword => "app",
            KeyKind::Recovery => "rec",
            KeyKind::Verification => "ver",
            KeyKind::Enrollment => "enr",
            KeyKind::Device => "dev",
        }
    }
}

/// A key in Gatehouse's format. Never printed: its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey {
    text: String,
    kind: KeyKind,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({PREFIX}{}_********)", self.kind.code())
    }
}

/// Why text is not a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a Gatehouse key: expected gatehouse_<api|app|rec|ver|enr|dev>_ followed by 49 letters and digits")]
    Format,
    #[error("the key's checksum does not match; it was mistyped or truncated")]
    Checksum,
}

fn checksum(text: &str) -> String {
    let mut value = crc32fast::hash(text.as_bytes());
    let mut digits = [b'0'; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

impl SecretKey {
    /// A new random key of `kind`.
    pub fn generate(kind: KeyKind) -> Self {
        let mut text = String::with_capacity(PREFIX.len() + 4 + RANDOM_LEN + CHECKSUM_LEN);
        text.push_str(PREFIX);
        text.push_str(kind.code());
        text.push('_');
        let mut produced = 0;
        let mut buffer = [0u8; 64];
        while produced < RANDOM_LEN {
            rand::rngs::OsRng.fill_bytes(&mut buffer);
            // Rejection sampling keeps every character equally likely.
            for byte in buffer {
                if produced < RANDOM_LEN && byte < 248 {
                    text.push(ALPHABET[usize::from(byte % 62)] as char);
                    produced += 1;
                }
            }
        }
        let sum = checksum(&text);
        text.push_str(&sum);
        Self { text, kind }
    }

    /// Checks the format and checksum, touching nothing else.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let rest = text.strip_prefix(PREFIX).ok_or(KeyError::Format)?;
        let (code, body) = rest.split_once('_').ok_or(KeyError::Format)?;
        let kind = KeyKind::ALL.into_iter().find(|k| k.code() == code).ok_or(KeyError::Format)?;
        if body.len() != RANDOM_LEN + CHECKSUM_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(KeyError::Format);
        }
        let (head, sum) = text.split_at(text.len() - CHECKSUM_LEN);
        if checksum(head) != sum {
            return Err(KeyError::Checksum);
        }
        Ok(Self { text: text.to_owned(), kind })
    }

    /// Whether the random part is plausibly random. A generated key shows about 31 distinct
    /// characters of 62 in its 43 (fewer than 20 happens to about 4 keys in 100 million), does not
    /// repeat itself, and has on average less than one neighbour pair that follows the alphabet;
    /// chosen keys (`aaaa…`, a word or a stretch of the alphabet repeated, `0123…xyz`) fail.
    pub fn looks_random(&self) -> bool {
        let body = &self.text.as_bytes()[self.text.len() - CHECKSUM_LEN - RANDOM_LEN..self.text.len() - CHECKSUM_LEN];
        let distinct = body.iter().collect::<std::collections::BTreeSet<_>>().len();
        let periodic = (1..=RANDOM_LEN / 2).any(|period| body.iter().zip(&body[period..]).all(|(a, b)| a == b));
        let position = |c: &u8| ALPHABET.iter().position(|a| a == c);
        let in_order =
            body.windows(2).filter(|pair| matches!((position(&pair[0]), position(&pair[1])), (Some(a), Some(b)) if b == a + 1)).count();
        distinct >= MIN_DISTINCT && !periodic && in_order <= MAX_IN_ORDER
    }

    /// The key's kind and the first characters of its random part: what someone completing a
    /// partly known key keeps fixed, so failures can be counted per prefix. Still secret (it is
    /// part of the key): store only a digest of it.
    pub fn prefix(&self) -> &str {
        &self.text[..self.text.len() - CHECKSUM_LEN - RANDOM_LEN + PREFIX_CHARS]
    }

    /// Another valid key of the same kind with the same [`SecretKey::prefix`]: what someone
    /// completing a partly known key would try.
    pub fn sibling(&self) -> Self {
        let fresh = Self::generate(self.kind);
        let split = self.prefix().len();
        let mut text = format!("{}{}", self.prefix(), &fresh.text[split..fresh.text.len() - CHECKSUM_LEN]);
        let sum = checksum(&text);
        text.push_str(&sum);
        Self { text, kind: self.kind }
    }

    /// What the key is for.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key itself, for hashing and for showing once.
    pub fn expose(&self) -> &str {
        &self.text
    }
}

/// Fewest distinct characters a supplied key's random part must show.
const MIN_DISTINCT: usize = 20;

/// Most neighbour pairs of a supplied key's random part that may follow the alphabet (a random
/// key has 42 pairs, each in order with probability 1/62).
const MAX_IN_ORDER: usize = 8;

const LOCATOR_OFFSET: i64 = 1_000_000;

/// Smarter's record locator of a token id: `r`, URL-safe base64 without padding of the decimal
/// string of `id + 1_000_000`, then `x`.
pub fn record_locator(id: i64) -> String {
    format!("r{}x", URL_SAFE_NO_PAD.encode((id + LOCATOR_OFFSET).to_string()))
}

/// The token id a record locator names; `None` for anything that is not exactly what
/// [`record_locator`] produces.
pub fn parse_record_locator(text: &str) -> Option<i64> {
    let inner = text.strip_prefix('r')?.strip_suffix('x')?;
    let decoded = URL_SAFE_NO_PAD.decode(inner).ok()?;
    let digits = std::str::from_utf8(&decoded).ok()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') || digits.len() > 18 {
        return None;
    }
    let id = digits.parse::<i64>().ok()? - LOCATOR_OFFSET;
    (id >= 1 && record_locator(id) == text).then_some(id)
}

/// Finds record locators in free text (log lines, support tickets).
pub fn find_record_locators(text: &str) -> Vec<i64> {
    static PATTERN: OnceLock<regex::Regex> = OnceLock::new();
    let pattern = PATTERN.get_or_init(|| regex::Regex::new(r"\br[A-Za-z0-9_-]{10,24}x\b").expect("constant pattern"));
    pattern.find_iter(text).filter_map(|m| parse_record_locator(m.as_str())).collect()
}

/// `****` and the last four characters of an identifier (never of the key).
pub fn masked(identifier: &str) -> String {
    let chars: Vec<char> = identifier.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("****{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn with_body(kind: KeyKind, body: &str) -> SecretKey {
        let head = format!("{PREFIX}{}_{body}", kind.code());
        SecretKey::parse(&format!("{head}{}", checksum(&head))).unwrap()
    }

    #[test]
    fn chosen_keys_without_entropy_are_told_apart_from_generated_ones() {
        for _ in 0..2_000 {
            assert!(SecretKey::generate(KeyKind::Api).looks_random());
        }
        assert!(!with_body(KeyKind::Api, &"a".repeat(RANDOM_LEN)).looks_random());
        assert!(!with_body(KeyKind::Api, &"password1".repeat(5)[..RANDOM_LEN]).looks_random());
        assert!(!with_body(KeyKind::Api, &"0123456789abcdefghi".repeat(3)[..RANDOM_LEN]).looks_random());
        assert!(!with_body(KeyKind::Api, &"0123456789abcdefghij".repeat(3)[..RANDOM_LEN]).looks_random());
        assert!(!with_body(KeyKind::Api, &String::from_utf8_lossy(&ALPHABET[5..5 + RANDOM_LEN])).looks_random());
        assert!(!with_body(KeyKind::Api, &"q8Xz3LmP0vKd7RwT2bYh".repeat(3)[..RANDOM_LEN]).looks_random());
    }

    #[test]
    fn siblings_share_the_prefix_and_nothing_after_it() {
        let key = SecretKey::generate(KeyKind::Api);
        assert_eq!(key.prefix().len(), "gatehouse_api_".len() + 8);
        let sibling = key.sibling();
        assert_eq!(sibling.prefix(), key.prefix());
        assert_ne!(sibling.expose(), key.expose());
        assert!(SecretKey::parse(sibling.expose()).is_ok(), "a sibling carries a valid checksum");
    }

    #[test]
    fn generated_keys_parse_and_carry_their_kind() {
        for kind in KeyKind::ALL {
            let key = SecretKey::generate(kind);
            assert!(key.expose().starts_with(&format!("gatehouse_{}_", kind.code())));
            assert_eq!(key.expose().len(), PREFIX.len() + 4 + RANDOM_LEN + CHECKSUM_LEN);
            assert_eq!(SecretKey::parse(key.expose()).unwrap(), key);
            assert!(!format!("{key:?}").contains(&key.expose()[14..]));
        }
        assert_ne!(SecretKey::generate(KeyKind::Api), SecretKey::generate(KeyKind::Api));
    }

    #[test]
    fn mistyped_keys_are_refused() {
        let key = SecretKey::generate(KeyKind::Api).expose().to_owned();
        let mut typo = key.clone().into_bytes();
        let position = 20;
        typo[position] = if typo[position] == b'a' { b'b' } else { b'a' };
        assert_eq!(SecretKey::parse(std::str::from_utf8(&typo).unwrap()), Err(KeyError::Checksum));
        assert_eq!(SecretKey::parse(&key[..key.len() - 1]), Err(KeyError::Format));
        assert_eq!(SecretKey::parse(&key.replace("_api_", "_xyz_")), Err(KeyError::Format));
        assert_eq!(SecretKey::parse(""), Err(KeyError::Format));
        assert_eq!(SecretKey::parse(&format!("{key}!")), Err(KeyError::Format));
        assert_eq!(SecretKey::parse(&key.replace("gatehouse_", "gatehouze_")), Err(KeyError::Format));
    }

    #[test]
    fn record_locators_round_trip_and_reject_malformed() {
        assert_eq!(record_locator(1), format!("r{}x", URL_SAFE_NO_PAD.encode("1000001")));
        assert_eq!(parse_record_locator(&record_locator(42)), Some(42));
        for bad in ["", "rx", "r", "x", "rMTAwMDA0Mg", "MTAwMDA0Mgx", "r!!!x", "rLTE=x", "rMDAwMDAwMQx"] {
            assert_eq!(parse_record_locator(bad), None, "{bad}");
        }
        // A locator of a number below the offset names no token.
        assert_eq!(parse_record_locator(&format!("r{}x", URL_SAFE_NO_PAD.encode("999999"))), None);
        let text = format!("ticket about {} and {} but not rABCx", record_locator(7), record_locator(123_456));
        assert_eq!(find_record_locators(&text), vec![7, 123_456]);
    }

    #[test]
    fn masked_identifier_shows_only_the_tail() {
        assert_eq!(masked("deploy-key-prod"), "****prod");
        assert_eq!(masked("ab"), "****ab");
    }

    proptest! {
        #[test]
        fn locator_round_trips(id in 1i64..1_000_000_000_000) {
            prop_assert_eq!(parse_record_locator(&record_locator(id)), Some(id));
        }

        #[test]
        fn parsing_never_panics(text in ".{0,80}") {
            let _ = SecretKey::parse(&text);
            let _ = parse_record_locator(&text);
        }
    }
}
