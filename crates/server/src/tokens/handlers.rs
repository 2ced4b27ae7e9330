//! `/api/v3/core/tokens/`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{TokenOut, TokenSetKeyRequest, TokenView, TokenWrite, UsedBy};
use super::entities::token;
use super::key::SecretKey;
use super::service::{self, TokenFilter};
use crate::accounts::api::render_users;
use crate::db::pagination::{ListParams, Paginated};
use crate::error::{Error, Result};
use crate::http::auth::Principal;
use crate::http::json::ApiJson;
use crate::http::query::ApiQuery;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(retrieve_token, update_token, partial_update_token, delete_token))
        .routes(routes!(view_key))
        .routes(routes!(set_key))
        .routes(routes!(rotate_key))
        .routes(routes!(used_by))
}

async fn render(state: &AppState, tokens: Vec<token::Model>) -> Result<Vec<TokenOut>> {
    let mut user_ids: Vec<i64> = tokens.iter().map(|t| t.user_id).collect();
    user_ids.sort_unstable();
    user_ids.dedup();
    let users = crate::accounts::users::find_users(&state.db, state.tenant, &user_ids).await?;
    let owners: std::collections::HashMap<i64, crate::accounts::api::UserOut> =
        render_users(state, users).await?.into_iter().map(|u| (u.pk, u)).collect();
    let token_ids: Vec<i64> = tokens.iter().map(|t| t.id).collect();
    let mut tags = service::tags_of(&state.db, state.tenant, &token_ids).await?;
    let mut out = Vec::with_capacity(tokens.len());
    for token in tokens {
        let user = owners.get(&token.user_id).cloned().ok_or_else(|| Error::internal("token without owner"))?;
        let token_tags = tags.remove(&token.id).unwrap_or_default();
        out.push(TokenOut::new(token, user, token_tags));
    }
    Ok(out)
}

async fn render_one(state: &AppState, token: token::Model) -> Result<TokenOut> {
    render(state, vec![token]).await?.pop().ok_or_else(|| Error::internal("rendering lost a token"))
}

#[utoipa::path(get, path = "/api/v3/core/tokens/", tag = "core", params(ListParams, TokenFilter),
    responses((status = 200, description = "A page of tokens: the caller's own, or all with authentik_core.view_token", body = Paginated<TokenOut>)))]
async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<TokenFilter>,
) -> Result<Json<Paginated<TokenOut>>> {
    let page = service::list(&state, &principal.actor(), &filter, &params).await?;
    let results = render(&state, page.results).await?;
    Ok(Json(Paginated { pagination: page.pagination, results, autocomplete: page.autocomplete }))
}

#[utoipa::path(post, path = "/api/v3/core/tokens/", tag = "core", request_body = TokenWrite,
    responses((status = 201, body = TokenOut), (status = 400, description = "Invalid input"), (status = 403, description = "Permission denied")))]
async fn create_token(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<TokenWrite>,
) -> Result<(StatusCode, Json<TokenOut>)> {
    let new = body.into_new_token(principal.user().id)?;
    let (created, _key) = service::create(&state, &principal.actor(), new).await?;
    Ok((StatusCode::CREATED, Json(render_one(&state, created).await?)))
}

#[utoipa::path(get, path = "/api/v3/core/tokens/{identifier}/", tag = "core", params(("identifier" = String, Path, description = "Token identifier")),
    responses((status = 200, body = TokenOut), (status = 404, description = "Not found")))]
async fn retrieve_token(State(state): State<AppState>, principal: Principal, Path(identifier): Path<String>) -> Result<Json<TokenOut>> {
    let token = service::get_visible(&state, &principal.actor(), &identifier).await?;
    Ok(Json(render_one(&state, token).await?))
}

async fn write(state: AppState, principal: Principal, identifier: String, body: TokenWrite, full: bool) -> Result<Json<TokenOut>> {
    let token = service::get_visible(&state, &principal.actor(), &identifier).await?;
    let changes = body.into_changes(&token, full)?;
    let updated = service::update(&state, &principal.actor(), &token, changes).await?;
    Ok(Json(render_one(&state, updated).await?))
}

#[utoipa::path(put, path = "/api/v3/core/tokens/{identifier}/", tag = "core", params(("identifier" = String, Path, description = "Token identifier")),
    request_body = TokenWrite, responses((status = 200, body = TokenOut), (status = 400, description = "Invalid input")))]
async fn update_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(identifier): Path<String>,
    ApiJson(body): ApiJson<TokenWrite>,
) -> Result<Json<TokenOut>> {
    write(state, principal, identifier, body, true).await
}

#[utoipa::path(patch, path = "/api/v3/core/tokens/{identifier}/", tag = "core", params(("identifier" = String, Path, description = "Token identifier")),
    request_body = TokenWrite, responses((status = 200, body = TokenOut), (status = 400, description = "Invalid input")))]
async fn partial_update_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(identifier): Path<String>,
    ApiJson(body): ApiJson<TokenWrite>,
) -> Result<Json<TokenOut>> {
    write(state, principal, identifier, body, false).await
}

#[utoipa::path(delete, path = "/api/v3/core/tokens/{identifier}/", tag = "core", params(("identifier" = String, Path, description = "Token identifier")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not found")))]
async fn delete_token(State(state): State<AppState>, principal: Principal, Path(identifier): Path<String>) -> Result<StatusCode> {
    let token = service::get_visible(&state, &principal.actor(), &identifier).await?;
    service::delete(&state, &principal.actor(), &token).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/core/tokens/{identifier}/view_key/", tag = "core", params(("identifier" = String, Path, description = "Token identifier")),
    responses((status = 200, body = TokenView), (status = 403, description = "Permission denied"), (status = 404, description = "Token not found or expired")))]
async fn view_key(State(state): State<AppState>, principal: Principal, Path(identifier): Path<String>) -> Result<Response> {
    let token = service::get_visible(&state, &principal.actor(), &identifier).await?;
    let key = service::view_key(&state, &principal.actor(), &token).await?;
    let mut response = Json(TokenView { key }).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[utoipa::path(post, path = "/api/v3/core/tokens/{identifier}/set_key/", tag = "core", params(("identifier" = String, Path, description = "Token identifier")),
    request_body = TokenSetKeyRequest,
    responses((status = 204, description = "Successfully changed key"), (status = 400, description = "Missing or malformed key"), (status = 404, description = "Token not found")))]
async fn set_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(identifier): Path<String>,
    ApiJson(body): ApiJson<TokenSetKeyRequest>,
) -> Result<StatusCode> {
    let token = service::get_visible(&state, &principal.actor(), &identifier).await?;
    if body.key.is_empty() {
        return Err(Error::field("key", "This field may not be blank."));
    }
    let key = SecretKey::parse(&body.key).map_err(|e| Error::field("key", e.to_string()))?;
    service::replace_key(&state, &principal.actor(), &token, Some(key)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v3/core/tokens/{identifier}/rotate/", tag = "core", params(("identifier" = String, Path, description = "Token identifier")),
    responses((status = 204, description = "A new key replaced the old one; read it with view_key/"), (status = 404, description = "Token not found")))]
async fn rotate_key(State(state): State<AppState>, principal: Principal, Path(identifier): Path<String>) -> Result<StatusCode> {
    let token = service::get_visible(&state, &principal.actor(), &identifier).await?;
    service::replace_key(&state, &principal.actor(), &token, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v3/core/tokens/{identifier}/used_by/", tag = "core", params(("identifier" = String, Path, description = "Token identifier")),
    responses((status = 200, body = [UsedBy]), (status = 404, description = "Not found")))]
async fn used_by(State(state): State<AppState>, principal: Principal, Path(identifier): Path<String>) -> Result<Json<Vec<UsedBy>>> {
    service::get_visible(&state, &principal.actor(), &identifier).await?;
    // Nothing in Gatehouse refers to a token yet.
    Ok(Json(Vec::new()))
}
