//! Service accounts: a `service_account` user whose only way in is its app password, made in
//! one request as authentik's `service_account/` does.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::accounts::UserType;
use crate::accounts::access::Actor;
use crate::accounts::entities::{group, user};
use crate::accounts::groups::{self, NewGroup};
use crate::accounts::permissions::names;
use crate::accounts::users::{self, NewUser};
use crate::credentials::cache::Affected;
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
/// otherwise. Needs `add_user`, `add_group` when it creates the group, and `add_token`.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    username: String,
    create_group: bool,
    expiring: bool,
    expires: Option<DateTime<Utc>>,
) -> Result<ServiceAccount> {
    // Everything a service account is made of, asked up front: a user, maybe a group, a token.
    actor.require(names::ADD_USER)?;
    if create_group {
        actor.require(names::ADD_GROUP)?;
    }
    actor.require(names::ADD_TOKEN)?;
    let identifier: String = format!("{}{username}-password", super::service::SERVICE_ACCOUNT_PREFIX)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    // One transaction for the account, its group and its key: a refusal or failure at any step
    // leaves nothing behind.
    let txn = crate::db::begin_write(&state.db).await?;
    if super::service::find(&txn, state.tenant, &identifier).await?.is_some() {
        return Err(Error::field("name", "A service account with this name existed before; its token identifier is taken."));
    }
    let mut new = NewUser::without_email();
    new.username = Some(username.clone());
    new.name = username.clone();
    new.user_type = UserType::ServiceAccount;
    new.path = "goauthentik.io/service-accounts".into();
    let user = users::create_user_in(&txn, state, actor, new).await.map_err(|e| match e {
        Error::Validation(errors) if errors.fields().contains_key("username") => {
            Error::field("name", "A user with that username already exists.")
        }
        other => other,
    })?;
    let group = if create_group {
        let new = NewGroup { name: username.clone(), users: vec![user.id], attributes: json!({}), ..Default::default() };
        Some(groups::create_group_in(&txn, state, actor, new).await.map_err(|e| match e {
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
    let superuser = crate::accounts::access::is_superuser_now(&txn, state, actor).await?;
    let (_, key) = super::service::insert_in(&txn, state, superuser, actor, token).await?;
    crate::credentials::revoke::commit_invalidating(state, txn, Affected::user(user.id)).await?;
    Ok(ServiceAccount { user, group, key: key.expose().to_owned() })
}
