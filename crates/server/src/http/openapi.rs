//! The OpenAPI document (generated from the handlers) and Swagger UI from vendored assets.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::Error;

/// Top-level document metadata.
#[derive(OpenApi)]
#[openapi(
    info(title = "Gatehouse", description = "Identity and access server with authentik-compatible /api/v3/ endpoints."),
    modifiers(&SecuritySchemes),
    components(schemas(crate::db::pagination::Pagination))
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("authentik", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

fn swagger_config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    static CONFIG: std::sync::OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| Arc::new(utoipa_swagger_ui::Config::new(["/api/v3/schema/"]))).clone()
}

fn serve_asset(tail: &str) -> Response {
    match utoipa_swagger_ui::serve(tail, swagger_config()) {
        Ok(Some(file)) => ([(header::CONTENT_TYPE, file.content_type)], file.bytes.into_owned()).into_response(),
        Ok(None) => Error::NotFound.into_response(),
        Err(error) => Error::internal(error).into_response(),
    }
}

/// Swagger UI's page.
pub async fn swagger_index() -> Response {
    serve_asset("index.html")
}

/// Swagger UI's scripts and styles.
pub async fn swagger_asset(Path(file): Path<String>) -> Response {
    serve_asset(&file)
}
