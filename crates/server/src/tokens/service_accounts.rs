//! Service accounts: a `service_account` user whose only way in is its app password, made in
//! one request as authentik's `service_account/` does.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::accounts::access::Actor;
use crate::accounts::entities::{group, user};
use crate::accounts::groups::{self, NewGroup};
use crate::accounts::users::{self, NewUser};
use crate::accounts::UserType;
use crate::error::{Error, Result};
use crate::state::AppState;

/// A new service account, its group when one was asked for, and its key (shown once).
pub struct ServiceAccount {
    pub user: user::Model,
    pub group: Option<group::Model>,
    pub key: String,
}

/// Creates a service account as authentik does: a `service_account` user named `username`,
/// optionally a group of the same name, and an app password valid for 360 days unless told
/// otherwise.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    username: String,
    create_group: bool,
    expiring: bool,
    expires: Option<DateTime<Utc>>,
) -> Result<ServiceAccount> {
    let identifier: String = format!("service-account-{username}-password")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    if super::service::find(&state.db, state.tenant, &identifier).await?.is_some() {
        return Err(Error::field("name", "A service account with this name existed before; its token identifier is taken."));
    }
    let mut new = NewUser::without_email();
    new.username = Some(username.clone());
    new.name = username.clone();
    new.user_type = UserType::ServiceAccount;
    new.path = "goauthentik.io/service-accounts".into();
    let user = users::create_user(state, actor, new).await.map_err(|e| match e {
        Error::Validation(errors) if errors.fields().contains_key("username") => {
            Error::field("name", "A user with that username already exists.")
        }
        other => other,
    })?;
    // The account, its group and its key are written by three services; should a later step
    // fail, the earlier ones are undone so the request leaves nothing behind.
    match finish_service_account(state, actor, &user, &username, identifier, create_group, expiring, expires).await {
        Ok((group, key)) => Ok(ServiceAccount { user, group, key }),
        Err(error) => {
            if let Err(cleanup) = users::delete_user(state, actor, user.id).await {
                tracing::error!(%cleanup, "could not undo a half-created service account");
            }
            Err(error)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn finish_service_account(
    state: &AppState,
    actor: &Actor,
    user: &user::Model,
    username: &str,
    identifier: String,
    with_group: bool,
    expiring: bool,
    expires: Option<DateTime<Utc>>,
) -> Result<(Option<group::Model>, String)> {
    let group = if with_group {
        let new = NewGroup { name: username.to_owned(), users: vec![user.id], attributes: json!({}), ..Default::default() };
        Some(groups::create_group(state, actor, new).await.map_err(|e| match e {
            Error::Validation(errors) if errors.fields().contains_key("name") => {
                Error::field("name", "A group with this name already exists.")
            }
            other => other,
        })?)
    } else {
        None
    };
    let token = super::service::NewToken {
        identifier,
        intent: super::service::Intent::AppPassword,
        user_id: user.id,
        name: String::new(),
        description: format!("App password of the service account {username}"),
        managed: None,
        expiring,
        expires: expires.or_else(|| expiring.then(|| Utc::now() + chrono::TimeDelta::days(360))),
        tags: Vec::new(),
    };
    let created = super::service::create(state, actor, token).await;
    match created {
        Ok((_, key)) => Ok((group, key.expose().to_owned())),
        Err(error) => {
            if let Some(group) = &group
                && let Err(cleanup) = groups::delete_group(state, actor, group.group_uuid).await
            {
                tracing::error!(%cleanup, "could not undo the group of a half-created service account");
            }
            Err(error)
        }
    }
}
