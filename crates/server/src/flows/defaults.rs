//! The flows and stages a fresh server starts with: sign-in (identification, password, login) and
//! sign-out. They are ordinary rows an administrator may change; a default flow that is missing
//! is created again at start, with its stages.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use uuid::Uuid;

use super::entities::{binding, flow, stage};
use super::model::{AuthenticationRequirement, DeniedAction, Designation, InvalidResponseAction, Layout, PolicyEngineMode};
use crate::config::{DEFAULT_AUTHENTICATION_FLOW, DEFAULT_INVALIDATION_FLOW};
use crate::error::Result;
use crate::state::AppState;
use crate::tenants::TenantId;

struct DefaultFlow {
    slug: &'static str,
    name: &'static str,
    title: &'static str,
    designation: Designation,
    stages: &'static [(&'static str, &'static str, i32)],
}

const DEFAULTS: [DefaultFlow; 2] = [
    DefaultFlow {
        slug: DEFAULT_AUTHENTICATION_FLOW,
        name: "Welcome to Gatehouse!",
        title: "Welcome to Gatehouse!",
        designation: Designation::Authentication,
        stages: &[
            ("default-authentication-identification", "identification", 10),
            ("default-authentication-password", "password", 20),
            ("default-authentication-login", "user_login", 100),
        ],
    },
    DefaultFlow {
        slug: DEFAULT_INVALIDATION_FLOW,
        name: "Default invalidation flow",
        title: "Signing out",
        designation: Designation::Invalidation,
        stages: &[("default-invalidation-logout", "user_logout", 0)],
    },
];

/// Creates the default flows that are missing.
pub async fn ensure(state: &AppState, tenant: TenantId) -> Result<()> {
    for default in &DEFAULTS {
        let exists = flow::Entity::find()
            .filter(flow::Column::TenantId.eq(tenant.0))
            .filter(flow::Column::Slug.eq(default.slug))
            .one(&state.db)
            .await?;
        if exists.is_some() {
            continue;
        }
        let txn = crate::db::begin_write(&state.db).await?;
        let created = create(&txn, state, tenant, default).await;
        match created {
            Ok(()) => txn.commit().await?,
            // Another process created it at the same moment: its copy stands.
            Err(error) => {
                txn.rollback().await?;
                let now_exists = flow::Entity::find()
                    .filter(flow::Column::TenantId.eq(tenant.0))
                    .filter(flow::Column::Slug.eq(default.slug))
                    .one(&state.db)
                    .await?;
                if now_exists.is_none() {
                    return Err(error);
                }
            }
        }
    }
    Ok(())
}

async fn create(db: &impl ConnectionTrait, state: &AppState, tenant: TenantId, default: &DefaultFlow) -> Result<()> {
    let now = Utc::now();
    let flow = flow::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(tenant.0),
        slug: Set(default.slug.into()),
        name: Set(default.name.into()),
        title: Set(default.title.into()),
        designation: Set(default.designation.as_str().into()),
        authentication: Set(AuthenticationRequirement::None.as_str().into()),
        denied_action: Set(DeniedAction::MessageContinue.as_str().into()),
        layout: Set(Layout::Stacked.as_str().into()),
        policy_engine_mode: Set(PolicyEngineMode::Any.as_str().into()),
        compatibility_mode: Set(false),
        background: Set(String::new()),
        created: Set(now),
        last_updated: Set(now),
    }
    .insert(db)
    .await?;
    for (name, kind, order) in default.stages {
        let existing =
            stage::Entity::find().filter(stage::Column::TenantId.eq(tenant.0)).filter(stage::Column::Name.eq(*name)).one(db).await?;
        let stage_id = match existing {
            Some(stage) => stage.id,
            None => {
                let kind_impl = state.stages.get(kind).ok_or_else(|| crate::error::Error::internal(format!("no stage kind {kind}")))?;
                let settings = kind_impl
                    .parse_settings(serde_json::Map::new())
                    .map_err(|e| crate::error::Error::internal(format!("default settings of {kind}: {e:?}")))?;
                stage::ActiveModel {
                    id: Set(Uuid::new_v4()),
                    tenant_id: Set(tenant.0),
                    name: Set((*name).into()),
                    kind: Set((*kind).into()),
                    settings: Set(settings),
                    created: Set(now),
                    last_updated: Set(now),
                }
                .insert(db)
                .await?
                .id
            }
        };
        binding::ActiveModel {
            id: Set(Uuid::new_v4()),
            tenant_id: Set(tenant.0),
            flow_id: Set(flow.id),
            stage_id: Set(stage_id),
            binding_order: Set(*order),
            evaluate_on_plan: Set(false),
            re_evaluate_policies: Set(true),
            policy_engine_mode: Set(PolicyEngineMode::Any.as_str().into()),
            invalid_response_action: Set(InvalidResponseAction::Retry.as_str().into()),
        }
        .insert(db)
        .await?;
    }
    Ok(())
}
