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

/// Documents, on every operation, the error answers any operation can give, in authentik's error
/// shapes: 400 (`ValidationError`: messages by field), 401, 403, 404, 413 for bodies, 429 (limits
/// on guessing apply to every credential check) and 503 (password work is bounded) as
/// `GenericError` (`{"detail": …}`). An operation's own 400 schema stays, as one of the two
/// shapes its 400 may take.
pub fn document_errors(document: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let schemas = &mut document["components"]["schemas"];
    if let Some(schemas) = schemas.as_object_mut() {
        schemas.insert(
            "ValidationError".into(),
            json!({"type": "object", "description": "Messages by field: {\"field\": [\"message\"]}; problems of no single field under non_field_errors",
                   "properties": {"non_field_errors": {"type": "array", "items": {"type": "string"}}},
                   "additionalProperties": {"type": "array", "items": {"type": "string"}}}),
        );
        schemas.insert(
            "GenericError".into(),
            json!({"type": "object", "properties": {"detail": {"type": "string"}, "code": {"type": "string"}}, "required": ["detail"]}),
        );
    }
    let validation = json!({"$ref": "#/components/schemas/ValidationError"});
    let generic = json!({"$ref": "#/components/schemas/GenericError"});
    let Some(paths) = document["paths"].as_object_mut() else { return };
    for operations in paths.values_mut().filter_map(Value::as_object_mut) {
        for (method, operation) in operations.iter_mut() {
            if !matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                continue;
            }
            let has_body = operation.get("requestBody").is_some();
            let Some(responses) = operation["responses"].as_object_mut() else { continue };
            let bad_request = responses.entry("400").or_insert_with(|| json!({"description": "Invalid input"}));
            let own = bad_request.pointer("/content/application~1json/schema").cloned();
            let schema = match own {
                Some(own) if own != validation => json!({"anyOf": [own, validation]}),
                _ => validation.clone(),
            };
            bad_request["content"] = json!({"application/json": {"schema": schema}});
            let mut errors = vec![
                ("401", "Not authenticated"),
                ("403", "Permission denied"),
                ("404", "Not found"),
                ("429", "Too many failed attempts; see Retry-After"),
                ("503", "Busy; see Retry-After"),
            ];
            if has_body {
                errors.push(("413", "Request body too large"));
            }
            for (status, description) in errors {
                let response = responses.entry(status).or_insert_with(|| json!({"description": description}));
                if response.get("content").is_none() {
                    response["content"] = json!({"application/json": {"schema": generic.clone()}});
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn every_operation_documents_the_error_answers() {
        let mut document = json!({
            "paths": {"/a/": {
                "get": {"responses": {"200": {"description": "ok"}, "404": {"description": "No such thing"}}},
                "post": {"requestBody": {}, "responses": {"400": {"description": "own", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Own"}}}}}}
            }},
            "components": {"schemas": {}}
        });
        super::document_errors(&mut document);
        let get = &document["paths"]["/a/"]["get"]["responses"];
        assert_eq!(get["404"]["description"], "No such thing", "descriptions that exist stay");
        assert_eq!(get["404"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/GenericError");
        assert_eq!(get["400"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ValidationError");
        assert!(get.get("413").is_none(), "no body, no 413");
        let post = &document["paths"]["/a/"]["post"]["responses"];
        assert_eq!(post["400"]["content"]["application/json"]["schema"]["anyOf"][0]["$ref"], "#/components/schemas/Own");
        assert!(post["413"].is_object() && post["429"].is_object() && post["503"].is_object());
        assert!(document["components"]["schemas"]["ValidationError"].is_object());
    }
}
