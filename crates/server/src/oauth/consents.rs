//! The consents people gave applications, as the API and the user page show them: everyone
//! sees and revokes their own. Other people's are seen with the view permission together with
//! the permission to view users (each consent shows its user as authentik's `User`), and revoked
//! with the delete permission and the right to act on that account.

use std::collections::HashMap;

use sea_orm::{QueryOrder, QuerySelect};
use serde_json::json;
use uuid::Uuid;

use super::applications::{ApplicationView, views_by_ids};
use crate::accounts::access::{Actor, may_act_on};
use crate::accounts::entities::user;
use crate::accounts::permissions::names;
use crate::db::pagination::{ListParams, Paginated, fetch_page};
use crate::error::{Error, Result};
use crate::events::{self, Action, ModelRef};
use crate::flows::consents::{self, ConsentQuery};
use crate::flows::entities::user_consent;
use crate::state::AppState;

/// Filters of the consent list.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsentFilter {
    /// The person's pk.
    pub user: Option<i64>,
    /// The application's pk.
    pub application: Option<Uuid>,
}

/// A consent with the person and the application it is about.
#[derive(Debug, Clone)]
pub struct ConsentView {
    pub consent: user_consent::Model,
    pub user: user::Model,
    pub application: ApplicationView,
}

fn consent_ref(consent: &user_consent::Model, application: &str) -> ModelRef {
    ModelRef { app: "authentik_stages_consent", model_name: "userconsent", pk: json!(consent.id), name: application.to_owned() }
}

/// Whether `actor` may see other people's consents (and the accounts they show).
fn sees_others(actor: &Actor) -> bool {
    actor.rights.has(names::VIEW_USER_CONSENT) && actor.rights.has(names::VIEW_USER)
}

/// Who `actor` is, for lists of their own.
fn signed_in(actor: &Actor) -> Result<&user::Model> {
    actor.user.as_ref().ok_or(Error::PermissionDenied)
}

/// One page of the consents that hold, newest first: the caller's own, or anyone's with the view
/// permission.
pub async fn list(state: &AppState, actor: &Actor, filter: &ConsentFilter, params: &ListParams) -> Result<Paginated<ConsentView>> {
    let me = signed_in(actor)?;
    let request = params.page_request(&state.config.api)?;
    let mut query = ConsentQuery { user: filter.user, application: filter.application };
    if !sees_others(actor) {
        match filter.user {
            Some(other) if other != me.id => return Ok(Paginated::new(request, 0, Vec::new())),
            _ => query.user = Some(me.id),
        }
    }
    let select =
        consents::select_holding(state.tenant, &query).order_by_desc(user_consent::Column::Created).order_by_desc(user_consent::Column::Id);
    let mut page = fetch_page(&state.db, select, request).await?;
    let rows = std::mem::take(&mut page.results);
    let views = render(state, rows).await?;
    Ok(Paginated { pagination: page.pagination, results: views, autocomplete: page.autocomplete })
}

/// The most consents a person's page lists.
const MOST_ON_A_PAGE: u64 = 200;

/// The consents of the person `actor` that hold, newest first, for their own page.
pub async fn own(state: &AppState, actor: &Actor) -> Result<Vec<ConsentView>> {
    let me = signed_in(actor)?;
    let rows = consents::select_holding(state.tenant, &ConsentQuery { user: Some(me.id), application: None })
        .order_by_desc(user_consent::Column::Created)
        .order_by_desc(user_consent::Column::Id)
        .limit(MOST_ON_A_PAGE)
        .all(&state.db)
        .await?;
    render(state, rows).await
}

/// The consents `rows` with their people and applications, in the same order (a row whose
/// person or application went meanwhile is left out).
async fn render(state: &AppState, rows: Vec<user_consent::Model>) -> Result<Vec<ConsentView>> {
    let user_ids: Vec<i64> = rows.iter().map(|c| c.user_id).collect();
    let application_ids: Vec<Uuid> = rows.iter().map(|c| c.application_id).collect();
    let users: HashMap<i64, user::Model> =
        crate::accounts::users::find_users(&state.db, state.tenant, &user_ids).await?.into_iter().map(|u| (u.id, u)).collect();
    let applications = views_by_ids(&state.db, state.tenant, &application_ids).await?;
    Ok(rows
        .into_iter()
        .filter_map(|consent| {
            let user = users.get(&consent.user_id)?.clone();
            let application = applications.get(&consent.application_id)?.clone();
            Some(ConsentView { consent, user, application })
        })
        .collect())
}

/// The consent `id`, if the caller may see it.
pub async fn get(state: &AppState, actor: &Actor, id: i64) -> Result<ConsentView> {
    let me = signed_in(actor)?;
    let consent = consents::find_holding(&state.db, state.tenant, id).await?.ok_or(Error::NotFound)?;
    if consent.user_id != me.id && !sees_others(actor) {
        return Err(Error::NotFound);
    }
    render(state, vec![consent]).await?.pop().ok_or(Error::NotFound)
}

/// Revokes the consent `id`: the caller's own, or another account's with the delete permission
/// and the right to act on that account. The application asks again next time.
pub async fn revoke(state: &AppState, actor: &Actor, id: i64) -> Result<()> {
    let view = get(state, actor, id).await?;
    if !actor.is(view.consent.user_id) {
        actor.require(names::DELETE_USER_CONSENT)?;
        may_act_on(&state.db, state, actor, view.consent.user_id).await?;
    }
    let txn = crate::db::begin_write(&state.db).await?;
    if !consents::forget(&txn, state.tenant, id).await? {
        return Err(Error::NotFound);
    }
    let event = actor
        .event(Action::ModelDeleted)
        .about(&consent_ref(&view.consent, &view.application.application.name))
        .with("user", json!({"pk": view.user.id, "username": view.user.username}));
    events::service::record(&txn, state, event).await?;
    txn.commit().await?;
    Ok(())
}
