//! A browser's memory of a second factor: after a person proves a device at a validation stage
//! with a `last_auth_threshold`, their browser keeps a token saying so (in a cookie), and the
//! same stage lets the same account through without asking again while the stage's threshold
//! since that proof has not passed (the threshold as the stage says now, so shortening it takes
//! effect at once). The token
//! is signed with the server secret and names the account, the stage and the device, so it
//! vouches for nobody else, nowhere else, and for no device that is gone.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::secret::{ServerSecret, constant_time_eq};

/// The cookie the token lives in (`__Host-` prefixed when cookies are secure).
pub const COOKIE: &str = "gatehouse_mfa";

/// The longest token read at all.
const LONGEST_TOKEN: usize = 512;

/// What a browser remembers: which account proved which device at which stage, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    pub user: i64,
    pub stage: Uuid,
    /// authentik's device class (`sms`, `email`, `totp`).
    pub class: String,
    pub device: i64,
    pub proven: DateTime<Utc>,
}

impl Remembered {
    /// The token for the browser's cookie.
    pub fn issue(&self, secret: &ServerSecret) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default());
        let mac = URL_SAFE_NO_PAD.encode(secret.mac("remembered-device", payload.as_bytes()));
        format!("{payload}.{mac}")
    }

    /// The memory `token` holds, if the server signed it and its proof is less than `threshold`
    /// old at `now`.
    pub fn read(secret: &ServerSecret, token: &str, now: DateTime<Utc>, threshold: TimeDelta) -> Option<Self> {
        if token.len() > LONGEST_TOKEN {
            return None;
        }
        let (payload, mac) = token.split_once('.')?;
        let expected = URL_SAFE_NO_PAD.encode(secret.mac("remembered-device", payload.as_bytes()));
        if !constant_time_eq(expected.as_bytes(), mac.as_bytes()) {
            return None;
        }
        let remembered: Self = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (remembered.proven <= now && now < remembered.proven + threshold).then_some(remembered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_read_back_only_as_signed_and_before_it_expires() {
        let secret = ServerSecret::from_bytes(b"remembered-test-secret");
        let now = Utc::now();
        let hour = TimeDelta::hours(1);
        let memory = Remembered { user: 7, stage: Uuid::nil(), class: "totp".into(), device: 3, proven: now };
        let token = memory.issue(&secret);
        assert_eq!(Remembered::read(&secret, &token, now, hour), Some(memory.clone()));
        assert_eq!(Remembered::read(&secret, &token, now + hour, hour), None, "expired");
        assert_eq!(
            Remembered::read(&secret, &token, now + TimeDelta::minutes(30), TimeDelta::minutes(10)),
            None,
            "the threshold was shortened"
        );
        assert_eq!(Remembered::read(&ServerSecret::from_bytes(b"another"), &token, now, hour), None, "signed by another server");
        let forged = Remembered { user: 8, ..memory };
        let (_, mac) = token.split_once('.').unwrap();
        let (payload, _) = forged.issue(&secret).split_once('.').map(|(p, m)| (p.to_owned(), m.to_owned())).unwrap();
        assert_eq!(Remembered::read(&secret, &format!("{payload}.{mac}"), now, hour), None, "another account under the old signature");
        assert_eq!(Remembered::read(&secret, &"a".repeat(600), now, hour), None);
        assert_eq!(Remembered::read(&secret, "garbage", now, hour), None);
    }
}
