//! What a token says about its user: the subject identifier each provider's `sub_mode` asks for,
//! and the claims its scope mappings give for the granted scopes.

use serde_json::{Map, Value, json};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::entities::{application, provider};
use super::model::SubMode;
use super::scopes::ScopeOffer;
use crate::accounts::entities::user;
use crate::error::Result;
use crate::state::AppState;

const SUBJECT_PURPOSE: &str = "oauth2-subject";

/// The claims the discovery document names: those every token carries, and those of the shipped
/// mappings.
pub const SUPPORTED_CLAIMS: [&str; 12] =
    ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "email", "email_verified", "name", "preferred_username"];

/// The most scopes one request may name.
const MOST_SCOPES: usize = 50;

/// A set of scopes, in the order they were asked for, without repeats.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(Vec<String>);

impl Scopes {
    /// The scopes `text` names (space-separated), the first [`MOST_SCOPES`] of them.
    pub fn parse(text: &str) -> Self {
        let mut scopes = Vec::new();
        for scope in text.split(' ').filter(|s| !s.is_empty()) {
            if scopes.len() < MOST_SCOPES && !scopes.iter().any(|g: &String| g == scope) {
                scopes.push(scope.to_owned());
            }
        }
        Self(scopes)
    }

    /// Those of the scopes `offer` offers: what a grant gives.
    pub fn offered_by(self, offer: &ScopeOffer) -> Self {
        Self(self.0.into_iter().filter(|scope| offer.offers(scope)).collect())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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

/// The claims `scopes` give about `user` through the scope mappings of `provider`, `sub` first.
pub async fn user_claims(
    db: &impl sea_orm::ConnectionTrait,
    state: &AppState,
    provider: &provider::Model,
    user: &user::Model,
    scopes: &Scopes,
) -> Result<Map<String, Value>> {
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(subject(state, provider, user)));
    let offer = ScopeOffer::of(db, state.tenant, provider).await?;
    let groups = crate::accounts::groups::groups_of_users(db, state.tenant, &[user.id]).await?;
    let groups: Vec<String> = groups.get(&user.id).map(|g| g.iter().map(|g| g.name.clone()).collect()).unwrap_or_default();
    let application = application::Entity::find()
        .filter(application::Column::TenantId.eq(state.tenant.0))
        .filter(application::Column::ProviderId.eq(provider.id))
        .one(db)
        .await?;
    let variables = super::scopes::variables(provider, application.as_ref(), user, &groups, scopes);
    claims.extend(offer.claims(scopes, variables).await);
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_read_once_each_in_the_order_asked_and_only_offered_ones_granted() {
        let asked = Scopes::parse("profile openid  admin email openid");
        assert_eq!(asked.as_text(), "profile openid admin email");
        let granted = asked.offered_by(&ScopeOffer::default());
        assert_eq!(granted.as_text(), "openid", "without mappings only openid is offered");
        assert!(Scopes::parse("openid").within(&granted));
        assert!(!Scopes::parse("openid offline_access").within(&granted));
        let many: String = (0..200).map(|i| format!("s{i} ")).collect();
        assert_eq!(Scopes::parse(&many).iter().count(), MOST_SCOPES);
    }
}
