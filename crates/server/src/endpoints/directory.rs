//! What a device's agent may read of the directory: the accounts its device admits (see
//! [`super::bindings::device_admits`]) and the groups they belong to, for mapping them to Unix
//! users and groups. authentik lets any agent read every account as a superuser; here an agent
//! reads no more than the people who may use its device, and nothing it could change.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::devices::AgentCaller;
use crate::accounts::entities::{group, user};
use crate::accounts::groups::{GroupFilter, groups_of_users, list_groups_of_members};
use crate::accounts::users::{UserFilter, list_users_among};
use crate::db::pagination::{ListParams, Paginated};
use crate::error::Result;
use crate::state::AppState;

/// The part of the directory one device may see.
#[derive(Debug, Clone, Default)]
pub struct Visible {
    /// The active accounts the device admits.
    pub users: BTreeSet<i64>,
    /// The groups those accounts belong to directly.
    pub groups: BTreeSet<Uuid>,
}

/// What `caller`'s device may see, read now (bindings can change between pages).
pub async fn visible_to(state: &AppState, caller: &AgentCaller) -> Result<Visible> {
    let users = super::bindings::admitted_users(&state.db, state.tenant, &caller.device).await?;
    let ids: Vec<i64> = users.iter().copied().collect();
    let groups = groups_of_users(&state.db, state.tenant, &ids).await?.into_values().flatten().map(|g| g.group_uuid).collect();
    Ok(Visible { users, groups })
}

/// One page of the users `caller`'s device admits, and what it may see.
pub async fn users(
    state: &AppState,
    caller: &AgentCaller,
    filter: &UserFilter,
    params: &ListParams,
) -> Result<(Paginated<user::Model>, Visible)> {
    let visible = visible_to(state, caller).await?;
    Ok((list_users_among(state, filter, params, &visible.users).await?, visible))
}

/// One page of the groups of the users `caller`'s device admits, and what it may see.
pub async fn groups(
    state: &AppState,
    caller: &AgentCaller,
    filter: &GroupFilter,
    params: &ListParams,
) -> Result<(Paginated<group::Model>, Visible)> {
    let visible = visible_to(state, caller).await?;
    Ok((list_groups_of_members(state, filter, params, &visible.users).await?, visible))
}
