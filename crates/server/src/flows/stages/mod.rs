//! The stage kinds Gatehouse ships. Each owns its settings and its question.

pub mod authenticator_email;
pub mod authenticator_sms;
pub mod authenticator_static;
pub mod authenticator_totp;
pub mod authenticator_validate;
pub mod consent;
pub mod deny;
pub mod identification;
pub mod password;
pub mod user_login;
pub mod user_logout;

use serde_json::{Map, Value, json};

use super::factors::verified_for;
use super::stage::StageContext;
use crate::accounts::access::{Actor, Rights};
use crate::accounts::entities::user;
use crate::error::Result;

/// The kinds of stage that set up an authenticator: what a validation stage can send someone to,
/// and what a person's page links to.
pub const AUTHENTICATOR_SETUP_KINDS: &[&str] = &["authenticator_sms", "authenticator_email", "authenticator_totp", "authenticator_static"];

/// `pending_user` and `pending_user_avatar`, the challenge fields that say who is signing in.
/// They repeat what the person typed, so they look the same whether or not the account exists.
pub fn pending_user_fields(cx: &StageContext<'_>) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("pending_user".into(), json!(pending_user_text(cx)));
    fields.insert("pending_user_avatar".into(), json!(""));
    fields
}

/// Who is signing in, as the person typed it (or the signed-in user's username).
pub fn pending_user_text(cx: &StageContext<'_>) -> String {
    match (&cx.context.pending_user_identifier, &cx.current) {
        (Some(identifier), _) => identifier.clone(),
        (None, Some(current)) => current.user.username.clone(),
        (None, None) => String::new(),
    }
}

/// Whose authenticator a setup stage enrols: the signed-in person, or an account identified in
/// this run that proved a factor in it. An identified account that proved nothing gets no device
/// (a flow with a setup stage before the password would let anyone add a device to anyone's
/// account), and one that proved only its password may set up its first device but not add
/// another (the password alone would otherwise add a device the second factor then trusts).
pub async fn enrolling_account(cx: &mut StageContext<'_>) -> Result<Option<user::Model>> {
    match (cx.context.pending_user, cx.current.clone()) {
        (None, Some(current)) => Ok(Some(current.user.clone())),
        (Some(id), Some(current)) if current.user.id == id => Ok(Some(current.user.clone())),
        (Some(_), _) => {
            let factors = cx.context.factors.clone();
            let Some(account) = cx.pending_account().await?.filter(|a| verified_for(&factors, a.id, a.password_change_date)) else {
                return Ok(None);
            };
            let proved_second_factor = factors.iter().any(|f| f.user == account.id && f.kind.is_second_factor());
            if proved_second_factor || !crate::mfa::devices::has_sign_in_device(cx.state, account.id).await? {
                Ok(Some(account))
            } else {
                Ok(None)
            }
        }
        (None, None) => Ok(None),
    }
}

/// `account` acting for itself in a setup stage: it holds no rights there beyond its own devices.
pub fn acting_for_itself(cx: &StageContext<'_>, account: user::Model) -> Actor {
    Actor::user(account, Rights::default(), cx.client.clone(), None)
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use crate::flows::stage::StageKind;

    fn parse(kind: &dyn StageKind, settings: Value) -> Result<Value, Vec<String>> {
        let map: Map<String, Value> = settings.as_object().cloned().unwrap_or_default();
        kind.parse_settings(map).map_err(|errors| errors.fields().keys().cloned().collect())
    }

    #[test]
    fn defaults_fill_in_what_is_not_given() {
        let identification = parse(&super::identification::Identification, json!({})).unwrap();
        assert_eq!(identification["user_fields"], json!(["email", "username"]));
        assert_eq!(identification["pretend_user_exists"], true);
        let password = parse(&super::password::PasswordStage, json!({})).unwrap();
        assert_eq!(password["failed_attempts_before_cancel"], 5);
        let login = parse(&super::user_login::UserLogin, json!({"session_duration": "hours=8"})).unwrap();
        assert_eq!(login["session_duration"], "hours=8");
        assert_eq!(login["remember_me_offset"], "seconds=0");
    }

    #[test]
    fn bad_settings_name_their_field() {
        let cases: Vec<(&dyn StageKind, Value, &str)> = vec![
            (&super::identification::Identification, json!({"user_fields": ["phone"]}), "user_fields[0]"),
            (&super::identification::Identification, json!({"user_fields": []}), "user_fields"),
            (&super::identification::Identification, json!({"sources": ["7d0b5b5e-2b0a-4e8e-9f5e-0c1b0d1e2f3a"]}), "sources"),
            (&super::identification::Identification, json!({"surprise": true}), "surprise"),
            (&super::password::PasswordStage, json!({"backends": ["authentik.sources.ldap.auth.LDAPBackend"]}), "backends"),
            (&super::password::PasswordStage, json!({"backends": []}), "backends"),
            (&super::password::PasswordStage, json!({"failed_attempts_before_cancel": -1}), "failed_attempts_before_cancel"),
            (&super::user_login::UserLogin, json!({"session_duration": "fortnights=2"}), "session_duration"),
            (&super::user_login::UserLogin, json!({"network_binding": "bind_asn"}), "network_binding"),
            (&super::deny::Deny, json!({"deny_message": "x".repeat(1001)}), "deny_message"),
        ];
        for (kind, settings, field) in cases {
            assert_eq!(parse(kind, settings.clone()), Err(vec![field.to_owned()]), "{} {settings}", kind.kind());
        }
    }
}
