//! Phone numbers, kept in E.164 form.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A valid phone number in E.164 form (`+14155552671`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

/// Why a phone number was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Enter a valid phone number in international format, for example +14155552671.")]
pub struct PhoneError;

impl PhoneNumber {
    /// Parses a number written in international form (leading `+` and country code);
    /// spaces, dashes and brackets are allowed and dropped.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        if !trimmed.starts_with('+') || trimmed.len() > 32 {
            return Err(PhoneError);
        }
        let parsed = phonenumber::parse(None, trimmed).map_err(|_| PhoneError)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneError);
        }
        Ok(Self(parsed.format().mode(phonenumber::Mode::E164).to_string()))
    }

    /// The E.164 form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for PhoneNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_e164() {
        assert_eq!(PhoneNumber::parse("+1 (415) 555-2671").unwrap().as_str(), "+14155552671");
        assert_eq!(PhoneNumber::parse("+44 20 7946 0958").unwrap().as_str(), "+442079460958");
    }

    #[test]
    fn rejects_invalid() {
        for bad in ["", "4155552671", "+1", "+999 123", "hello", "+1 415 555 26719999"] {
            assert_eq!(PhoneNumber::parse(bad), Err(PhoneError), "{bad:?}");
        }
    }
}
