//! What a person proved during a flow run. A session is only ever started for an account with a
//! factor verified in the same run, whatever the flow's stages and bindings say: the order of
//! stages is an administrator's choice, the facts recorded here are not.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// A way of proving who one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorKind {
    /// The account's own password.
    Password,
    /// One of the account's app passwords, accepted where the stage allows them.
    AppPassword,
    /// A one-time code sent by text message to one of the account's phones.
    Sms,
    /// A code of one of the account's authenticator apps.
    Totp,
    /// One of the account's recovery codes.
    RecoveryCode,
    /// A one-time code sent by e-mail to one of the account's e-mail authenticators.
    Email,
}

impl FactorKind {
    /// Whether this kind proves a device beside the password.
    pub fn is_second_factor(self) -> bool {
        matches!(self, FactorKind::Sms | FactorKind::Totp | FactorKind::RecoveryCode | FactorKind::Email)
    }
}

/// A factor verified in this run: what, for which account, by which stage, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedFactor {
    pub kind: FactorKind,
    /// The account it was verified for; a factor never counts for another account.
    pub user: i64,
    pub stage: Uuid,
    pub at: DateTime<Utc>,
}

/// Whether any of `factors` was verified for account `user` since `password_changed`: a factor
/// proven before a password change or reset (with the old password, or an app password the
/// reset ended) proves nothing now.
pub fn verified_for(factors: &[VerifiedFactor], user: i64, password_changed: DateTime<Utc>) -> bool {
    factors.iter().any(|factor| factor.user == user && factor.at >= password_changed)
}

/// Reads the stored factors, dropping entries this version cannot read (such as the bare stage
/// names older runs kept): an unreadable entry proves nothing, so the run has to prove it again.
pub fn deserialize_lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<VerifiedFactor>, D::Error> {
    let values = Vec::<serde_json::Value>::deserialize(deserializer)?;
    Ok(values.into_iter().filter_map(|value| serde_json::from_value(value).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        #[serde(deserialize_with = "deserialize_lenient")]
        factors: Vec<VerifiedFactor>,
    }

    #[test]
    fn factors_count_only_for_their_own_account_and_old_entries_prove_nothing() {
        let at = Utc::now();
        let stage = Uuid::new_v4();
        let stored = serde_json::json!({"factors": [
            "password",
            {"kind": "password", "user": 7, "stage": stage, "at": at},
            {"kind": "telepathy", "user": 8, "stage": stage, "at": at},
        ]});
        let holder: Holder = serde_json::from_value(stored).unwrap();
        assert_eq!(holder.factors, vec![VerifiedFactor { kind: FactorKind::Password, user: 7, stage, at }]);
        let before = at - chrono::TimeDelta::minutes(1);
        assert!(verified_for(&holder.factors, 7, before));
        assert!(!verified_for(&holder.factors, 8, before));
        assert!(!verified_for(&[], 7, before));
        assert!(!verified_for(&holder.factors, 7, at + chrono::TimeDelta::seconds(1)), "the password changed since");
    }
}
