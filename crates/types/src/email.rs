//! E-mail addresses, the identity of a Gatehouse user.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A syntactically valid e-mail address of at most 254 characters, trimmed.
///
/// Addresses compare case-insensitively for uniqueness through [`Email::normalized`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why an e-mail address was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("Enter a valid email address.")]
    Invalid,
    #[error("Ensure this field has no more than 254 characters.")]
    TooLong,
}

impl Email {
    /// Parses and trims an address, in its NFKC form (so compatibility look-alikes such as the
    /// Kelvin sign or fullwidth letters are stored as the letters they stand for).
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let normalised = crate::canonical_text(input);
        let trimmed = normalised.as_str();
        if trimmed.chars().count() > 254 {
            return Err(EmailError::TooLong);
        }
        // The crate accepts display-name forms and quoted local parts; an account identifier
        // must be a plain address, so those are refused here.
        if trimmed.contains(['<', '>', '"', ' ']) {
            return Err(EmailError::Invalid);
        }
        let parsed: email_address::EmailAddress = trimmed.parse().map_err(|_| EmailError::Invalid)?;
        if !parsed.domain().contains('.') && parsed.domain() != "localhost" {
            return Err(EmailError::Invalid);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The address as entered (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key that uniqueness and sign-in compare (see [`crate::identifier_key`]).
    pub fn normalized(&self) -> String {
        crate::identifier_key(&self.0)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Email {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalizes() {
        let email = Email::parse("  Alice@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "Alice@Example.COM");
        assert_eq!(email.normalized(), "alice@example.com");
    }

    #[test]
    fn rejects_invalid() {
        for bad in ["", "alice", "alice@", "@example.com", "a b@example.com", "Alice <a@example.com>", "a@nodot"] {
            assert_eq!(Email::parse(bad), Err(EmailError::Invalid), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
    }
}
