//! One-time codes sent to a device: six digits from the operating system's CSPRNG, kept only as
//! a keyed digest bound to what they were sent for, valid for a few minutes, good once, and
//! dropped after too many wrong answers.

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::secret::{ServerSecret, constant_time_eq};

/// How long a code is accepted after it was sent.
pub const CODE_LIFETIME: TimeDelta = TimeDelta::minutes(5);
/// The longest any code may be accepted, whatever a stage says.
pub const LONGEST_CODE_LIFETIME: TimeDelta = TimeDelta::minutes(10);
/// Wrong answers one code survives; the next one drops it and a new code must be sent.
pub const MAX_FAILURES_PER_CODE: u32 = 10;

/// A code that was sent and not yet used: its digest, its expiry and its wrong answers so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentCode {
    digest: String,
    valid_until: DateTime<Utc>,
    failures: u32,
}

/// What an answer to a sent code was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The code: it is used up now.
    Right,
    /// Not the code; it stays valid for more answers.
    Wrong,
    /// Not the code, and the code had taken all the wrong answers it takes.
    WrongAndSpent,
    /// The code expired; nothing was compared.
    Expired,
}

/// A new code bound to `binding` (what it was sent for: the flow run, the stage and the
/// number), returned in clear to be sent and as the record to keep.
pub fn new_code(secret: &ServerSecret, binding: &str, now: DateTime<Utc>) -> (String, SentCode) {
    new_code_valid_for(secret, binding, now, CODE_LIFETIME)
}

/// [`new_code`], accepted for `lifetime` (never more than [`LONGEST_CODE_LIFETIME`]).
pub fn new_code_valid_for(secret: &ServerSecret, binding: &str, now: DateTime<Utc>, lifetime: TimeDelta) -> (String, SentCode) {
    let lifetime = lifetime.min(LONGEST_CODE_LIFETIME);
    let code = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32));
    let sent = SentCode { digest: digest(secret, binding, &code), valid_until: now + lifetime, failures: 0 };
    (code, sent)
}

fn digest(secret: &ServerSecret, binding: &str, code: &str) -> String {
    secret.digest("one-time-code", format!("{binding}\n{code}").as_bytes())
}

impl SentCode {
    /// When the code stops being accepted.
    pub fn valid_until(&self) -> DateTime<Utc> {
        self.valid_until
    }

    /// Judges `answer` for `binding`, counting a wrong one. Surrounding spaces are ignored.
    pub fn answer(&mut self, secret: &ServerSecret, binding: &str, answer: &str, now: DateTime<Utc>) -> Answer {
        if now >= self.valid_until {
            return Answer::Expired;
        }
        // A spent code compares nothing, even if a run kept it.
        if self.failures >= MAX_FAILURES_PER_CODE {
            return Answer::WrongAndSpent;
        }
        if constant_time_eq(digest(secret, binding, answer.trim()).as_bytes(), self.digest.as_bytes()) {
            return Answer::Right;
        }
        self.failures += 1;
        if self.failures >= MAX_FAILURES_PER_CODE { Answer::WrongAndSpent } else { Answer::Wrong }
    }
}

/// Why a message with a code was not delivered: what the provider answered (shortened), or that it could
/// not be reached. Never shown to the person; recorded as a `configuration_error` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    pub status: Option<u16>,
    pub detail: String,
    pub kind: FailureKind,
}

/// What a failed send says about trying again: whether it could help, and whether it could
/// deliver the same code twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Nothing reached the provider, or it asked to come back later (HTTP 429 or 5xx, an SMTP
    /// 4xx reply): another try may succeed and cannot repeat a delivery.
    Transient,
    /// The provider refused this message, or the settings cannot work (HTTP 4xx, an SMTP 5xx
    /// reply, no relay): another try fails the same way.
    Refused,
    /// The message may have been taken (no answer in time, a connection lost after sending):
    /// another try could deliver it twice.
    Unknown,
}

impl SendFailure {
    /// A failure of the settings or the message itself, found before anything was sent.
    pub fn refused(detail: impl Into<String>) -> Self {
        Self { status: None, detail: detail.into(), kind: FailureKind::Refused }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_six_digits_bound_to_what_it_was_sent_for_and_expires() {
        let secret = ServerSecret::from_bytes(b"codes-test-secret");
        let now = Utc::now();
        let (code, sent) = new_code(&secret, "run-1", now);
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(sent.clone().answer(&secret, "run-1", &format!(" {code} "), now), Answer::Right);
        assert_eq!(sent.clone().answer(&secret, "run-2", &code, now), Answer::Wrong, "a code counts only for its own binding");
        assert_eq!(sent.clone().answer(&secret, "run-1", &code, now + CODE_LIFETIME), Answer::Expired);
    }

    #[test]
    fn a_code_takes_ten_wrong_answers_then_is_spent() {
        let secret = ServerSecret::from_bytes(b"codes-test-secret");
        let now = Utc::now();
        let (code, mut sent) = new_code(&secret, "run", now);
        let wrong = if code == "000000" { "000001" } else { "000000" };
        for _ in 1..MAX_FAILURES_PER_CODE {
            assert_eq!(sent.answer(&secret, "run", wrong, now), Answer::Wrong);
        }
        assert_eq!(sent.answer(&secret, "run", wrong, now), Answer::WrongAndSpent);
        assert_eq!(sent.answer(&secret, "run", &code, now), Answer::WrongAndSpent, "a spent code no longer takes the right answer");
    }
}
