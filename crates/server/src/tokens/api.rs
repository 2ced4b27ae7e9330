//! The API shapes of tokens: authentik's `Token`, plus Smarter's fields.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::entities::token;
use super::key::{masked, record_locator};
use super::service::{Intent, NewToken, TokenChanges, parse_identifier, parse_tag};
use crate::accounts::api::UserOut;
use crate::error::{FieldErrors, Result};

/// authentik's `Token` with Gatehouse's extra fields. Never carries the key.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenOut {
    pub pk: Uuid,
    pub managed: Option<String>,
    pub identifier: String,
    pub intent: String,
    pub user: i64,
    pub user_obj: UserOut,
    pub description: String,
    pub expires: Option<DateTime<Utc>>,
    pub expiring: bool,
    /// Smarter: the key's own id.
    pub key_id: Uuid,
    /// Smarter: a display name.
    pub name: String,
    /// Smarter: switched on or off.
    pub is_active: bool,
    /// Smarter: when the key last authenticated a request (recorded at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Smarter: `****` and the identifier's last four characters.
    pub masked_identifier: String,
    /// Smarter: the record locator of the token's id.
    pub hashed_id: String,
    /// Smarter: same as `hashed_id`.
    pub record_locator: String,
    pub tags: Vec<String>,
    pub created: DateTime<Utc>,
}

impl TokenOut {
    /// Builds the representation.
    pub fn new(token: token::Model, user_obj: UserOut, tags: Vec<String>) -> Self {
        let locator = record_locator(token.id);
        Self {
            pk: token.token_uuid,
            masked_identifier: masked(&token.identifier),
            managed: token.managed,
            identifier: token.identifier,
            intent: token.intent.as_str().to_owned(),
            user: token.user_id,
            user_obj,
            description: token.description,
            expires: token.expires,
            expiring: token.expiring,
            key_id: token.key_id,
            name: token.name,
            is_active: token.is_active,
            last_used_at: token.last_used_at,
            hashed_id: locator.clone(),
            record_locator: locator,
            tags,
            created: token.created,
        }
    }
}

/// authentik's `TokenRequest` / `PatchedTokenRequest`, plus Smarter's fields.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenWrite {
    pub identifier: Option<String>,
    pub intent: Option<String>,
    pub user: Option<i64>,
    pub description: Option<String>,
    pub expires: Option<Option<DateTime<Utc>>>,
    pub expiring: Option<bool>,
    pub managed: Option<Option<String>>,
    pub name: Option<String>,
    pub is_active: Option<bool>,
    pub tags: Option<Vec<String>>,
}

fn parse_tags(values: &[String], errors: &mut FieldErrors) -> Vec<String> {
    values.iter().filter_map(|t| parse_tag(t).map_err(|m| errors.add("tags", m)).ok()).collect()
}

impl TokenWrite {
    /// Parses a create request for `default_user`. Only `api` and `app_password` tokens can be
    /// created through the API.
    pub fn into_new_token(self, default_user: i64) -> Result<NewToken> {
        let mut errors = FieldErrors::new();
        let identifier = match self.identifier.as_deref() {
            None => {
                errors.add("identifier", "This field is required.");
                String::new()
            }
            Some(text) => parse_identifier(text).unwrap_or_else(|m| {
                errors.add("identifier", m);
                String::new()
            }),
        };
        let intent = match self.intent.as_deref() {
            None => Intent::Api,
            Some(text) => match Intent::parse(text) {
                Ok(intent @ (Intent::Api | Intent::AppPassword)) => intent,
                Ok(_) => {
                    errors.add("intent", "Only api and app_password tokens can be created here.");
                    Intent::Api
                }
                Err(message) => {
                    errors.add("intent", message);
                    Intent::Api
                }
            },
        };
        let tags = parse_tags(self.tags.as_deref().unwrap_or_default(), &mut errors);
        if self.is_active == Some(false) {
            errors.add("is_active", "A new token starts active; switch it off afterwards.");
        }
        errors.into_result()?;
        Ok(NewToken {
            identifier,
            intent,
            user_id: self.user.unwrap_or(default_user),
            name: self.name.unwrap_or_default(),
            description: self.description.unwrap_or_default(),
            managed: self.managed.flatten(),
            expiring: self.expiring.unwrap_or(true),
            expires: self.expires.flatten(),
            tags,
        })
    }

    /// Parses an update of `current`; `full` (PUT) requires `identifier`. The owner and the
    /// intent never change.
    pub fn into_changes(self, current: &token::Model, full: bool) -> Result<TokenChanges> {
        let mut errors = FieldErrors::new();
        if full && self.identifier.is_none() {
            errors.add("identifier", "This field is required.");
        }
        let identifier = self.identifier.as_deref().and_then(|t| parse_identifier(t).map_err(|m| errors.add("identifier", m)).ok());
        if self.user.is_some_and(|u| u != current.user_id) {
            errors.add("user", "The owner of a token cannot be changed.");
        }
        if self.intent.as_deref().is_some_and(|i| i != current.intent.as_str()) {
            errors.add("intent", "The intent of a token cannot be changed.");
        }
        let tags = self.tags.as_deref().map(|t| parse_tags(t, &mut errors));
        errors.into_result()?;
        Ok(TokenChanges {
            identifier,
            name: self.name,
            description: self.description,
            managed: self.managed,
            expiring: self.expiring,
            expires: self.expires,
            is_active: self.is_active,
            tags,
        })
    }
}

/// authentik's `TokenView`.
#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub key: String,
}

/// authentik's `TokenSetKeyRequest`.
#[derive(Deserialize, ToSchema)]
pub struct TokenSetKeyRequest {
    pub key: String,
}

/// authentik's `UsedBy`.
#[derive(Serialize, ToSchema)]
pub struct UsedBy {
    pub app: String,
    pub model_name: String,
    pub pk: String,
    pub name: String,
    pub action: String,
}
