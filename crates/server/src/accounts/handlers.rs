//! HTTP handlers of `/api/v3/core/users/` and `/api/v3/core/groups/`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::api::{GroupOut, GroupWrite, PermissionOut, SessionUser, UserAccountRequest, UserOut, UserPasswordSetRequest, UserWrite};
use super::groups::{self, GroupFilter};
use super::password::Password;
use super::permissions::{self, PermissionFilter};
use super::users::{self, UserFilter};
use crate::db::pagination::{ListParams, Paginated};
use crate::endpoints::handlers::DirectoryReader;
use crate::error::{Error, Result};
use crate::http::auth::Principal;
use crate::http::json::ApiJson;
use crate::http::query::ApiQuery;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(me))
        .routes(routes!(service_account))
        .routes(routes!(retrieve_user, update_user, partial_update_user, delete_user))
        .routes(routes!(set_password))
        .routes(routes!(list_permissions))
        .routes(routes!(retrieve_permission))
        .routes(routes!(list_groups, create_group))
        .routes(routes!(retrieve_group, update_group, partial_update_group, delete_group))
        .routes(routes!(add_user))
        .routes(routes!(remove_user))
}

fn parse_user_id(text: &str) -> Result<i64> {
    text.parse().map_err(|_| Error::NotFound)
}

fn parse_group_id(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|_| Error::NotFound)
}

#[utoipa::path(get, path = "/api/v3/core/users/", tag = "core", params(ListParams, UserFilter),
    responses((status = 200, description = "A page of users", body = Paginated<UserOut>), (status = 403, description = "Permission denied")))]
async fn list_users(
    State(state): State<AppState>,
    reader: DirectoryReader,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<UserFilter>,
) -> Result<Json<Paginated<UserOut>>> {
    let (page, visible) = match reader {
        DirectoryReader::Principal(principal) => (users::list_users(&state, &principal.actor(), &filter, &params).await?, None),
        DirectoryReader::Agent(caller) => {
            let (page, visible) = crate::endpoints::directory::users(&state, &caller, &filter, &params).await?;
            (page, Some(visible))
        }
    };
    let mut results = super::api::render_users(&state, page.results).await?;
    if let Some(visible) = visible {
        results = results.into_iter().map(|user| user.within(&visible.groups)).collect();
    }
    Ok(Json(Paginated { pagination: page.pagination, results, autocomplete: page.autocomplete }))
}

#[utoipa::path(post, path = "/api/v3/core/users/", tag = "core", request_body = UserWrite,
    responses((status = 201, body = UserOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn create_user(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<UserWrite>,
) -> Result<(StatusCode, Json<UserOut>)> {
    let created = users::create_user(&state, &principal.actor(), body.into_new_user()?).await?;
    Ok((StatusCode::CREATED, Json(super::api::render_user(&state, created).await?)))
}

#[utoipa::path(get, path = "/api/v3/core/users/me/", tag = "core",
    responses((status = 200, body = SessionUser), (status = 401, description = "Not signed in")))]
async fn me(State(state): State<AppState>, principal: Principal) -> Result<impl IntoResponse> {
    let context = &principal.context;
    let body = context.own_view(|| super::api::render_self(&state.secret, &context.user, &context.permissions, &context.groups))?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body))
}

#[utoipa::path(get, path = "/api/v3/core/users/{id}/", tag = "core", params(("id" = i64, Path, description = "User pk")),
    responses((status = 200, body = UserOut), (status = 404, description = "Not found")))]
async fn retrieve_user(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<UserOut>> {
    let id = parse_user_id(&id)?;
    let user = users::get_user(&state, &principal.actor(), id).await?;
    Ok(Json(super::api::render_user(&state, user).await?))
}

async fn write_user(state: AppState, principal: Principal, id: String, body: UserWrite, full: bool) -> Result<Json<UserOut>> {
    let id = parse_user_id(&id)?;
    let updated = users::update_user(&state, &principal.actor(), id, body.into_changes(full)?).await?;
    Ok(Json(super::api::render_user(&state, updated).await?))
}

#[utoipa::path(put, path = "/api/v3/core/users/{id}/", tag = "core", params(("id" = i64, Path, description = "User pk")), request_body = UserWrite,
    responses((status = 200, body = UserOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn update_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UserWrite>,
) -> Result<Json<UserOut>> {
    write_user(state, principal, id, body, true).await
}

#[utoipa::path(patch, path = "/api/v3/core/users/{id}/", tag = "core", params(("id" = i64, Path, description = "User pk")), request_body = UserWrite,
    responses((status = 200, body = UserOut), (status = 400, description = "Invalid input"), (status = 404, description = "Not found")))]
async fn partial_update_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UserWrite>,
) -> Result<Json<UserOut>> {
    write_user(state, principal, id, body, false).await
}

#[utoipa::path(delete, path = "/api/v3/core/users/{id}/", tag = "core", params(("id" = i64, Path, description = "User pk")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not found")))]
async fn delete_user(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    let id = parse_user_id(&id)?;
    users::delete_user(&state, &principal.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v3/core/users/{id}/set_password/", tag = "core", params(("id" = i64, Path, description = "User pk")),
    request_body = UserPasswordSetRequest,
    responses((status = 204, description = "Successfully changed password"), (status = 400, description = "Bad request")))]
async fn set_password(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UserPasswordSetRequest>,
) -> Result<StatusCode> {
    let id = parse_user_id(&id)?;
    users::set_password(&state, &principal.actor(), id, Password::new(body.password), principal.session().map(|s| s.id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn render_groups(state: &AppState, groups: Vec<super::entities::group::Model>, include_users: bool) -> Result<Vec<GroupOut>> {
    let ids: Vec<Uuid> = groups.iter().map(|g| g.group_uuid).collect();
    let relations = groups::group_relations(&state.db, state.tenant, &ids, include_users).await?;
    Ok(groups.into_iter().map(|g| GroupOut::new(g, &relations, include_users, &state.secret)).collect())
}

async fn render_group(state: &AppState, group: super::entities::group::Model) -> Result<GroupOut> {
    render_groups(state, vec![group], true).await?.pop().ok_or_else(|| Error::internal("rendering lost a group"))
}

#[utoipa::path(get, path = "/api/v3/core/groups/", tag = "core", params(ListParams, GroupFilter),
    responses((status = 200, description = "A page of groups", body = Paginated<GroupOut>), (status = 403, description = "Permission denied")))]
async fn list_groups(
    State(state): State<AppState>,
    reader: DirectoryReader,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<GroupFilter>,
) -> Result<Json<Paginated<GroupOut>>> {
    let include_users = !matches!(filter.include_users.as_deref(), Some("false" | "False" | "0"));
    let (page, visible) = match reader {
        DirectoryReader::Principal(principal) => (groups::list_groups(&state, &principal.actor(), &filter, &params).await?, None),
        DirectoryReader::Agent(caller) => {
            let (page, visible) = crate::endpoints::directory::groups(&state, &caller, &filter, &params).await?;
            (page, Some(visible))
        }
    };
    let mut results = render_groups(&state, page.results, include_users).await?;
    if let Some(visible) = visible {
        results = results.into_iter().map(|group| group.within(&visible.users, &visible.groups)).collect();
    }
    Ok(Json(Paginated { pagination: page.pagination, results, autocomplete: page.autocomplete }))
}

#[utoipa::path(post, path = "/api/v3/core/groups/", tag = "core", request_body = GroupWrite,
    responses((status = 201, body = GroupOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn create_group(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<GroupWrite>,
) -> Result<(StatusCode, Json<GroupOut>)> {
    let created = groups::create_group(&state, &principal.actor(), body.into_new_group()?).await?;
    Ok((StatusCode::CREATED, Json(render_group(&state, created).await?)))
}

#[utoipa::path(get, path = "/api/v3/core/groups/{group_uuid}/", tag = "core", params(("group_uuid" = Uuid, Path, description = "Group uuid")),
    responses((status = 200, body = GroupOut), (status = 404, description = "Not found")))]
async fn retrieve_group(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<GroupOut>> {
    let id = parse_group_id(&id)?;
    let group = groups::get_group(&state, &principal.actor(), id).await?;
    Ok(Json(render_group(&state, group).await?))
}

async fn write_group(state: AppState, principal: Principal, id: String, body: GroupWrite, full: bool) -> Result<Json<GroupOut>> {
    let id = parse_group_id(&id)?;
    let updated = groups::update_group(&state, &principal.actor(), id, body.into_changes(full)?).await?;
    Ok(Json(render_group(&state, updated).await?))
}

#[utoipa::path(put, path = "/api/v3/core/groups/{group_uuid}/", tag = "core", params(("group_uuid" = Uuid, Path, description = "Group uuid")),
    request_body = GroupWrite, responses((status = 200, body = GroupOut), (status = 400, description = "Invalid input")))]
async fn update_group(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<GroupWrite>,
) -> Result<Json<GroupOut>> {
    write_group(state, principal, id, body, true).await
}

#[utoipa::path(patch, path = "/api/v3/core/groups/{group_uuid}/", tag = "core", params(("group_uuid" = Uuid, Path, description = "Group uuid")),
    request_body = GroupWrite, responses((status = 200, body = GroupOut), (status = 400, description = "Invalid input")))]
async fn partial_update_group(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<GroupWrite>,
) -> Result<Json<GroupOut>> {
    write_group(state, principal, id, body, false).await
}

#[utoipa::path(delete, path = "/api/v3/core/groups/{group_uuid}/", tag = "core", params(("group_uuid" = Uuid, Path, description = "Group uuid")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not found")))]
async fn delete_group(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    let id = parse_group_id(&id)?;
    groups::delete_group(&state, &principal.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn membership(state: AppState, principal: Principal, id: String, body: UserAccountRequest, add: bool) -> Result<StatusCode> {
    let id = parse_group_id(&id)?;
    groups::change_membership(&state, &principal.actor(), id, body.pk, add).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v3/core/groups/{group_uuid}/add_user/", tag = "core", params(("group_uuid" = Uuid, Path, description = "Group uuid")),
    request_body = UserAccountRequest, responses((status = 204, description = "User added"), (status = 404, description = "User not found")))]
async fn add_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UserAccountRequest>,
) -> Result<StatusCode> {
    membership(state, principal, id, body, true).await
}

#[utoipa::path(post, path = "/api/v3/core/groups/{group_uuid}/remove_user/", tag = "core", params(("group_uuid" = Uuid, Path, description = "Group uuid")),
    request_body = UserAccountRequest, responses((status = 204, description = "User removed"), (status = 404, description = "User not found")))]
async fn remove_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UserAccountRequest>,
) -> Result<StatusCode> {
    membership(state, principal, id, body, false).await
}

#[utoipa::path(post, path = "/api/v3/core/users/service_account/", tag = "core", request_body = super::api::UserServiceAccountRequest,
    responses((status = 200, body = super::api::UserServiceAccountResponse), (status = 400, description = "Invalid input"),
        (status = 403, description = "Permission denied")))]
async fn service_account(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<super::api::UserServiceAccountRequest>,
) -> Result<Json<super::api::UserServiceAccountResponse>> {
    let username = super::parse_username(&body.name).map_err(|m| Error::field("name", m))?;
    let created =
        crate::tokens::service_accounts::create(&state, &principal.actor(), username, body.create_group, body.expiring, body.expires)
            .await?;
    Ok(Json(super::api::UserServiceAccountResponse {
        username: created.user.username.clone(),
        token: created.key,
        user_uid: super::api::uid(&state.secret, &created.user),
        user_pk: created.user.id,
        group_pk: created.group.map(|g| g.group_uuid.to_string()),
    }))
}

#[utoipa::path(get, path = "/api/v3/rbac/permissions/", tag = "rbac", params(ListParams, PermissionFilter),
    responses((status = 200, description = "The permissions Gatehouse checks", body = Paginated<PermissionOut>), (status = 401, description = "Not signed in")))]
async fn list_permissions(
    State(state): State<AppState>,
    _principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<PermissionFilter>,
) -> Result<Json<Paginated<PermissionOut>>> {
    Ok(Json(permissions::list(&state.config.api, &filter, &params)?.map(PermissionOut::from)))
}

#[utoipa::path(get, path = "/api/v3/rbac/permissions/{id}/", tag = "rbac", params(("id" = u32, Path, description = "A unique integer value identifying this permission.")),
    responses((status = 200, body = PermissionOut), (status = 404, description = "Not found")))]
async fn retrieve_permission(_principal: Principal, Path(id): Path<String>) -> Result<Json<PermissionOut>> {
    let id: u32 = id.parse().map_err(|_| Error::NotFound)?;
    Ok(Json(permissions::get(id).ok_or(Error::NotFound)?.into()))
}
