//! Assembles every domain's routes under the API conventions and middleware.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use super::middleware::{observe, record_route, refuse_control_characters, security_headers};
use super::openapi::{ApiDoc, swagger_asset, swagger_index};
use crate::error::Error;
use crate::state::AppState;

/// The public application.
pub fn app(state: AppState) -> Router {
    let (api, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::accounts::handlers::router())
        .merge(crate::sessions::handlers::router())
        .merge(crate::events::handlers::router())
        .merge(crate::tokens::handlers::router())
        .merge(crate::tasks::handlers::router())
        .merge(crate::mfa::handlers::router())
        .merge(crate::mappings::handlers::router())
        .merge(crate::crypto::handlers::router())
        .merge(crate::endpoints::handlers::router())
        .merge(crate::oauth::handlers::router())
        .merge(crate::oauth::api::router())
        .merge(crate::media::handlers::router(state.config.media.max_upload_bytes))
        .merge(crate::flows::executor_api::router())
        .merge(crate::flows::handlers::router())
        .merge(super::system::router())
        .split_for_parts();
    let mut document = crate::flows::handlers::document_stage_kinds(&document, &state.stages);
    super::openapi::document_errors(&mut document);
    let document = std::sync::Arc::new(document);
    let max_body = state.config.server.max_body_bytes;
    Router::new()
        .merge(api)
        .route(
            "/api/v3/schema/",
            get(move || {
                let document = document.clone();
                async move { axum::Json((*document).clone()) }
            }),
        )
        .route("/api/v3/", get(swagger_index))
        .route("/api/v3/{file}", get(swagger_asset))
        .merge(crate::ops::health_router())
        .merge(crate::media::handlers::files_router())
        .merge(crate::oauth::handlers::protocol_router())
        .merge(crate::oauth::pages::router())
        .merge(crate::endpoints::pages::router())
        .merge(pages())
        .fallback(|uri: axum::http::Uri| async move {
            if uri.path().starts_with("/api/") { Error::NotFound.into_response() } else { super::pages::error_page(Error::NotFound) }
        })
        .method_not_allowed_fallback(|| async {
            (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(serde_json::json!({"detail": "Method not allowed."})))
        })
        .route_layer(middleware::from_fn(record_route))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(refuse_control_characters))
        .layer(middleware::from_fn_with_state(state.clone(), security_headers))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// Pages for people (not part of the API document).
fn pages() -> Router<AppState> {
    Router::new()
        .route("/", get(super::pages::front_door))
        .route("/static/gatehouse.css", get(super::pages::stylesheet))
        .route("/if/flow/{slug}/", get(crate::flows::pages::show).post(crate::flows::pages::answer))
        .route("/flows/-/cancel/", get(crate::flows::pages::cancel))
        .route("/if/user/", get(crate::sessions::pages::show))
        .route("/if/user/sessions/{id}/end/", post(crate::sessions::pages::end_session))
        .route("/if/user/sessions/end-others/", post(crate::sessions::pages::end_other_sessions))
        .route("/if/user/devices/{kind}/{id}/remove/", post(crate::sessions::pages::remove_device))
        .route("/if/user/devices/{kind}/{id}/rename/", post(crate::sessions::pages::rename_device))
        .route("/if/user/consents/{id}/revoke/", post(crate::sessions::pages::revoke_consent))
}
