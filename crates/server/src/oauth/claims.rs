//! What a token says about its user: the subject identifier each provider's `sub_mode` asks for,
//! and the claims of the scopes authentik ships mappings for (`openid`, `email`, `profile`,
//! `offline_access`), built in until scope mappings can be written.

use serde_json::{Map, Value, json};

use super::entities::provider;
use super::model::SubMode;
use crate::accounts::entities::user;
use crate::error::Result;
use crate::state::AppState;

const SUBJECT_PURPOSE: &str = "oauth2-subject";

/// The scopes a provider grants; others asked for are left out of the grant.
pub const SUPPORTED_SCOPES: [&str; 4] = ["openid", "email", "profile", "offline_access"];

/// What a scope lets an application see, as a consent page says it (authentik's descriptions of
/// its default mappings); `None` for scopes people are not asked about (`openid`).
pub fn scope_description(scope: &str) -> Option<&'static str> {
    match scope {
        "email" => Some("Email address"),
        "profile" => Some("General Profile Information"),
        "offline_access" => Some("Access to request new tokens without interaction"),
        _ => None,
    }
}

/// The claims each scope gives, for the discovery document.
pub const SUPPORTED_CLAIMS: [&str; 11] =
    ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "email", "email_verified", "name", "preferred_username"];

/// A set of granted scopes, in the order they were asked for, without repeats.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(Vec<String>);

impl Scopes {
    /// The supported scopes among those `requested` (space-separated).
    pub fn granted_from(requested: &str) -> Self {
        let mut granted = Vec::new();
        for scope in requested.split(' ').filter(|s| !s.is_empty()) {
            if SUPPORTED_SCOPES.contains(&scope) && !granted.iter().any(|g: &String| g == scope) {
                granted.push(scope.to_owned());
            }
        }
        Self(granted)
    }

    /// Whether `scope` was granted.
    pub fn has(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }

    /// The scopes separated by spaces, as tokens and responses carry them.
    pub fn as_text(&self) -> String {
        self.0.join(" ")
    }

    /// The granted scopes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Whether every scope of `self` is in `other` (a refresh may narrow, never widen).
    pub fn within(&self, other: &Scopes) -> bool {
        self.0.iter().all(|s| other.has(s))
    }
}

/// The `sub` of `user` at `provider`.
pub fn subject(state: &AppState, provider: &provider::Model, user: &user::Model) -> String {
    match SubMode::parse(&provider.sub_mode).unwrap_or(SubMode::HashedUserId) {
        // Keyed, so one provider's subjects cannot be linked to accounts by anyone without the
        // server secret.
        SubMode::HashedUserId => state.secret.digest(SUBJECT_PURPOSE, user.uuid.as_bytes()),
        SubMode::UserId => user.id.to_string(),
        SubMode::UserUuid => user.uuid.to_string(),
        SubMode::UserUsername => user.username.clone(),
        SubMode::UserEmail => user.email.clone(),
        SubMode::UserUpn => user.attributes.get("upn").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| user.email.clone()),
    }
}

/// The claims `scopes` give about `user`, `sub` first.
pub async fn user_claims(
    db: &impl sea_orm::ConnectionTrait,
    state: &AppState,
    provider: &provider::Model,
    user: &user::Model,
    scopes: &Scopes,
) -> Result<Map<String, Value>> {
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(subject(state, provider, user)));
    if scopes.has("email") {
        claims.insert("email".into(), json!(user.email));
        // authentik's default mapping says so too: addresses are entered by administrators or
        // proven by enrolment.
        claims.insert("email_verified".into(), json!(true));
    }
    if scopes.has("profile") {
        claims.insert("name".into(), json!(user.name));
        claims.insert("given_name".into(), json!(user.name));
        claims.insert("preferred_username".into(), json!(user.username));
        claims.insert("nickname".into(), json!(user.username));
        let groups = crate::accounts::groups::groups_of_users(db, state.tenant, &[user.id]).await?;
        let names: Vec<String> = groups.get(&user.id).map(|g| g.iter().map(|g| g.name.clone()).collect()).unwrap_or_default();
        claims.insert("groups".into(), json!(names));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_supported_scopes_are_granted_once_each_in_the_order_asked() {
        let granted = Scopes::granted_from("profile openid  admin email openid");
        assert_eq!(granted.as_text(), "profile openid email");
        assert!(granted.has("openid") && !granted.has("admin"));
        assert!(Scopes::granted_from("openid").within(&granted));
        assert!(!Scopes::granted_from("openid offline_access").within(&granted));
    }
}
