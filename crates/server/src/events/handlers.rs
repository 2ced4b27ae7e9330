//! `/api/v3/events/events/`.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::entities::event;
use super::service::{self, EventFilter};
use crate::db::pagination::{ListParams, Paginated};
use crate::error::{Error, Result};
use crate::http::auth::Principal;
use crate::http::query::ApiQuery;
use crate::state::AppState;

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events)).routes(routes!(retrieve_event))
}

/// authentik's `Event`.
#[derive(Serialize, ToSchema)]
pub struct EventOut {
    pub pk: Uuid,
    pub user: Value,
    pub action: String,
    pub app: String,
    pub context: Value,
    pub client_ip: Option<String>,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub brand: Value,
}

impl From<event::Model> for EventOut {
    fn from(e: event::Model) -> Self {
        Self {
            pk: e.event_uuid,
            user: e.user,
            action: e.action,
            app: e.app,
            context: e.context,
            client_ip: e.client_ip,
            created: e.created,
            expires: e.expires,
            brand: e.brand,
        }
    }
}

#[utoipa::path(get, path = "/api/v3/events/events/", tag = "events", params(ListParams, EventFilter),
    responses((status = 200, description = "A page of events", body = Paginated<EventOut>), (status = 403, description = "Permission denied")))]
async fn list_events(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
    ApiQuery(filter): ApiQuery<EventFilter>,
) -> Result<Json<Paginated<EventOut>>> {
    Ok(Json(service::list(&state, &principal.actor(), &filter, &params).await?.map(EventOut::from)))
}

#[utoipa::path(get, path = "/api/v3/events/events/{event_uuid}/", tag = "events", params(("event_uuid" = Uuid, Path, description = "Event uuid")),
    responses((status = 200, body = EventOut), (status = 404, description = "Not found")))]
async fn retrieve_event(State(state): State<AppState>, principal: Principal, Path(id): Path<String>) -> Result<Json<EventOut>> {
    let id = Uuid::parse_str(&id).map_err(|_| Error::NotFound)?;
    let event = service::get(&state, &principal.actor(), id).await?;
    Ok(Json(event.into()))
}
