//! Duration strings in the `key=value;key=value` form used by authentik and the seeds
//! (`hours=8`, `minutes=30`, `days=1;hours=2`).
//!
//! Unlike authentik's parser, unknown units, duplicate units, negative, non-finite and
//! out-of-range values are rejected instead of being ignored or overflowing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The accepted format, quoted in every error message.
pub const FORMAT_HINT: &str = "'hours=3;minutes=1' (units: microseconds, milliseconds, seconds, minutes, hours, days, weeks)";

/// The largest accepted duration: 52,000 weeks (about 997 years).
const MAX_MICROS: i64 = 52_000 * 7 * 24 * 3600 * 1_000_000;

const UNITS: [(&str, f64); 7] = [
    ("weeks", 604_800_000_000.0),
    ("days", 86_400_000_000.0),
    ("hours", 3_600_000_000.0),
    ("minutes", 60_000_000.0),
    ("seconds", 1_000_000.0),
    ("milliseconds", 1_000.0),
    ("microseconds", 1.0),
];

/// A non-negative duration parsed from a duration string, with microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationString {
    micros: i64,
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("the duration is empty; expected the format {FORMAT_HINT}")]
    Empty,
    #[error("'{0}' is not a key=value pair; expected the format {FORMAT_HINT}")]
    NotAPair(String),
    #[error("'{0}' is not a known unit; expected the format {FORMAT_HINT}")]
    UnknownUnit(String),
    #[error("the unit '{0}' is given more than once; expected the format {FORMAT_HINT}")]
    DuplicateUnit(String),
    #[error("'{0}' is not a finite number; expected the format {FORMAT_HINT}")]
    InvalidNumber(String),
    #[error("'{0}' is negative; durations must be zero or more")]
    Negative(String),
    #[error("'{0}' is too long; the longest accepted duration is 52000 weeks")]
    OutOfRange(String),
}

impl DurationString {
    /// A duration of whole seconds.
    pub const fn from_secs(secs: i64) -> Self {
        Self { micros: secs * 1_000_000 }
    }

    /// The duration in microseconds.
    pub const fn as_micros(self) -> i64 {
        self.micros
    }

    /// The duration as a `std::time::Duration`.
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_micros(self.micros.unsigned_abs())
    }

    /// The duration as a `chrono::TimeDelta`.
    pub fn to_chrono(self) -> chrono::TimeDelta {
        chrono::TimeDelta::microseconds(self.micros)
    }

    /// Parses a duration string such as `days=1;hours=2`.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        if input.trim().is_empty() {
            return Err(DurationError::Empty);
        }
        let mut seen = [false; UNITS.len()];
        let mut total: i128 = 0;
        for pair in input.split(';') {
            let (key, value) =
                pair.split_once('=').filter(|(_, v)| !v.contains('=')).ok_or_else(|| DurationError::NotAPair(pair.to_owned()))?;
            let key_lower = key.trim().to_ascii_lowercase();
            let index = UNITS.iter().position(|(unit, _)| *unit == key_lower).ok_or_else(|| DurationError::UnknownUnit(key.to_owned()))?;
            if std::mem::replace(&mut seen[index], true) {
                return Err(DurationError::DuplicateUnit(key_lower));
            }
            let number: f64 =
                value.trim().parse().ok().filter(|n: &f64| n.is_finite()).ok_or_else(|| DurationError::InvalidNumber(value.to_owned()))?;
            if number < 0.0 {
                return Err(DurationError::Negative(pair.to_owned()));
            }
            // Whole numbers are summed exactly; fractions go through f64 and are rounded.
            let size = UNITS[index].1;
            // Each part is capped well past the largest duration (where f64 still tells them
            // apart), so the sum cannot overflow however large the numbers written.
            let cap = i128::from(MAX_MICROS) * 2;
            let part = match value.trim().parse::<i64>() {
                Ok(whole) => (i128::from(whole) * size as i128).min(cap),
                Err(_) => (number * size).round().min(cap as f64) as i128,
            };
            total = total.saturating_add(part);
            if total > i128::from(MAX_MICROS) {
                return Err(DurationError::OutOfRange(input.to_owned()));
            }
        }
        Ok(Self { micros: total as i64 })
    }
}

impl FromStr for DurationString {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for DurationString {
    /// Canonical form: the largest units first, zero units left out (`days=1;hours=2`); weeks
    /// only for a whole number of weeks, so a year reads `days=365`, not `weeks=52;days=1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.micros == 0 {
            return f.write_str("seconds=0");
        }
        let mut rest = self.micros;
        let mut first = true;
        for (unit, size) in UNITS {
            let size = size as i64;
            if unit == "weeks" && rest % size != 0 {
                continue;
            }
            let count = rest / size;
            if count > 0 {
                if !first {
                    f.write_str(";")?;
                }
                write!(f, "{unit}={count}")?;
                first = false;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for DurationString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A number too large for any unit, after another unit, once overflowed the sum: a panic
    /// in debug builds and a wrapped, wrong duration in release builds.
    #[test]
    fn a_huge_number_after_another_unit_is_out_of_range_not_an_overflow() {
        let huge = "weeks= 1 ;seconds=555555555000000000019053625041336 ;microseconds=16397105843297379215";
        assert!(matches!(DurationString::parse(huge), Err(DurationError::OutOfRange(_))));
        let huge_whole = "days=1;seconds=9223372036854775807;minutes=9223372036854775807";
        assert!(matches!(DurationString::parse(huge_whole), Err(DurationError::OutOfRange(_))));
    }

    #[test]
    fn parses_single_and_combined_units() {
        assert_eq!(DurationString::parse("hours=8").unwrap().as_micros(), 8 * 3_600_000_000);
        assert_eq!(DurationString::parse("minutes=30").unwrap(), DurationString::from_secs(1800));
        assert_eq!(DurationString::parse("days=1;hours=2").unwrap(), DurationString::from_secs(93_600));
        assert_eq!(DurationString::parse("Seconds=1.5").unwrap().as_micros(), 1_500_000);
        assert_eq!(DurationString::parse("milliseconds=2;microseconds=3").unwrap().as_micros(), 2003);
        assert_eq!(DurationString::parse("weeks= 1 ").unwrap(), DurationString::from_secs(604_800));
        assert_eq!(DurationString::from_secs(365 * 86_400).to_string(), "days=365");
        assert_eq!(DurationString::from_secs(14 * 86_400).to_string(), "weeks=2");
        assert_eq!(DurationString::from_secs(30 * 86_400 + 3600).to_string(), "days=30;hours=1");
    }

    #[test]
    fn rejects_bad_input_with_the_format_in_the_message() {
        for (input, expected) in [
            ("", DurationError::Empty),
            ("  ", DurationError::Empty),
            ("hours=1;", DurationError::NotAPair(String::new())),
            ("hours", DurationError::NotAPair("hours".into())),
            ("hours=1=2", DurationError::NotAPair("hours=1=2".into())),
            ("months=1", DurationError::UnknownUnit("months".into())),
            ("minute=1", DurationError::UnknownUnit("minute".into())),
            ("hours=1;hours=2", DurationError::DuplicateUnit("hours".into())),
            ("hours=nan", DurationError::InvalidNumber("nan".into())),
            ("hours=inf", DurationError::InvalidNumber("inf".into())),
            ("hours=abc", DurationError::InvalidNumber("abc".into())),
            ("hours=-1", DurationError::Negative("hours=-1".into())),
            ("days=1e10", DurationError::OutOfRange("days=1e10".into())),
        ] {
            assert_eq!(DurationString::parse(input), Err(expected.clone()), "input {input:?}");
            let message = expected.to_string();
            assert!(
                message.contains("hours=3;minutes=1") || message.contains("weeks") || message.contains("zero"),
                "message {message:?} does not explain the format"
            );
        }
    }

    #[test]
    fn serde_round_trip_and_errors() {
        let parsed: DurationString = serde_json::from_str("\"days=1\"").unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), "\"days=1\"");
        assert!(serde_json::from_str::<DurationString>("\"years=1\"").is_err());
    }

    proptest! {
        #[test]
        fn display_round_trips(micros in 0i64..MAX_MICROS) {
            let duration = DurationString { micros };
            prop_assert_eq!(DurationString::parse(&duration.to_string()), Ok(duration));
        }

        #[test]
        fn never_panics(input in ".{0,40}") {
            let _ = DurationString::parse(&input);
        }

        #[test]
        fn accepts_every_unit_and_sums(values in proptest::collection::vec(0u32..10_000, 7)) {
            let text = UNITS.iter().zip(&values).map(|((u, _), v)| format!("{u}={v}")).collect::<Vec<_>>().join(";");
            let expected: i64 = UNITS.iter().zip(&values).map(|((_, s), v)| (*s as i64) * i64::from(*v)).sum();
            prop_assert_eq!(DurationString::parse(&text).map(|d| d.as_micros()), Ok(expected));
        }
    }
}
