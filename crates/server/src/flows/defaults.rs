//! The flows and stages a fresh server starts with, as authentik ships them: sign-in
//! (identification, password, a second factor for those who set one up, login), sign-out,
//! setting up an authenticator app with recovery codes, and authorizing an application without
//! asking (implicit consent) or after asking (explicit consent). They are ordinary rows an administrator
//! may change; a default flow that is missing is created again at start, with its stages.
//!
//! The sign-in's validation stage lets people without an authenticator through; switching
//! `not_configured_action` to `configure` requires one of everybody (they are sent to set up an
//! app at their next sign-in).

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use serde_json::{Map, Value, json};
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
    authentication: AuthenticationRequirement,
    stages: &'static [(&'static str, &'static str, i32)],
}

/// The flow people set up an authenticator app and recovery codes with.
pub const AUTHENTICATOR_SETUP_FLOW: &str = "default-authenticator-setup";
/// The authorization flow without stages: a signed-in person is sent back to the application at
/// once (authentik's implicit consent).
pub const IMPLICIT_CONSENT_FLOW: &str = "default-provider-authorization-implicit-consent";
/// The authorization flow that asks people whether the application may have what it asks for
/// (authentik's explicit consent); its consent stage asks every time, as authentik's does.
pub const EXPLICIT_CONSENT_FLOW: &str = "default-provider-authorization-explicit-consent";
/// The flow that makes a new set of recovery codes alone.
pub const RECOVERY_CODES_FLOW: &str = "default-authenticator-static-setup";
/// The sign-in's validation stage, whose `not_configured_action` is the "require MFA" switch.
pub const MFA_VALIDATION_STAGE: &str = "default-authentication-mfa-validation";
const TOTP_SETUP_STAGE: &str = "default-authenticator-totp-setup";
const STATIC_SETUP_STAGE: &str = "default-authenticator-static-setup";

// The setup flows come first, the codes alone before the app and codes together: each setup
// stage's configure_flow is the flow it is made for, and the sign-in's validation stage names the
// app stage.
const DEFAULTS: [DefaultFlow; 6] = [
    DefaultFlow {
        slug: RECOVERY_CODES_FLOW,
        name: "New recovery codes",
        title: "New recovery codes",
        designation: Designation::StageConfiguration,
        authentication: AuthenticationRequirement::RequireAuthenticated,
        stages: &[(STATIC_SETUP_STAGE, "authenticator_static", 0)],
    },
    DefaultFlow {
        slug: AUTHENTICATOR_SETUP_FLOW,
        name: "Set up an authenticator",
        title: "Set up an authenticator app",
        designation: Designation::StageConfiguration,
        authentication: AuthenticationRequirement::RequireAuthenticated,
        stages: &[(TOTP_SETUP_STAGE, "authenticator_totp", 10), (STATIC_SETUP_STAGE, "authenticator_static", 20)],
    },
    DefaultFlow {
        slug: DEFAULT_AUTHENTICATION_FLOW,
        name: "Welcome to Gatehouse!",
        title: "Welcome to Gatehouse!",
        designation: Designation::Authentication,
        authentication: AuthenticationRequirement::None,
        stages: &[
            ("default-authentication-identification", "identification", 10),
            ("default-authentication-password", "password", 20),
            (MFA_VALIDATION_STAGE, "authenticator_validate", 30),
            ("default-authentication-login", "user_login", 100),
        ],
    },
    DefaultFlow {
        slug: IMPLICIT_CONSENT_FLOW,
        name: "Authorize Application",
        title: "Redirecting to the application",
        designation: Designation::Authorization,
        authentication: AuthenticationRequirement::RequireAuthenticated,
        stages: &[],
    },
    DefaultFlow {
        slug: EXPLICIT_CONSENT_FLOW,
        name: "Authorize Application",
        title: "Authorize the application",
        designation: Designation::Authorization,
        authentication: AuthenticationRequirement::RequireAuthenticated,
        stages: &[("default-provider-authorization-consent", "consent", 0)],
    },
    DefaultFlow {
        slug: DEFAULT_INVALIDATION_FLOW,
        name: "Default invalidation flow",
        title: "Signing out",
        designation: Designation::Invalidation,
        authentication: AuthenticationRequirement::None,
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
            Ok(()) => super::plans::commit_change(state, txn).await?,
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
    ensure_mfa_validation(state, tenant).await
}

/// A sign-in flow made before the validation stage existed gets it: the stage is created (when
/// missing, like every default) and, unless the flow already has a validation stage of its own,
/// bound after the password, so that authenticators people set up are asked for.
async fn ensure_mfa_validation(state: &AppState, tenant: TenantId) -> Result<()> {
    let stage_exists = stage::Entity::find()
        .filter(stage::Column::TenantId.eq(tenant.0))
        .filter(stage::Column::Name.eq(MFA_VALIDATION_STAGE))
        .one(&state.db)
        .await?;
    if stage_exists.is_some() {
        return Ok(());
    }
    let Some(sign_in) = flow::Entity::find()
        .filter(flow::Column::TenantId.eq(tenant.0))
        .filter(flow::Column::Slug.eq(DEFAULT_AUTHENTICATION_FLOW))
        .one(&state.db)
        .await?
    else {
        return Ok(());
    };
    let txn = crate::db::begin_write(&state.db).await?;
    let added = async {
        let validation = stage_named(&txn, state, tenant, MFA_VALIDATION_STAGE, "authenticator_validate", sign_in.id).await?;
        let bound = binding::Entity::find()
            .find_also_related(stage::Entity)
            .filter(binding::Column::TenantId.eq(tenant.0))
            .filter(binding::Column::FlowId.eq(sign_in.id))
            .all(&txn)
            .await?;
        if !bound.iter().any(|(_, stage)| stage.as_ref().is_some_and(|s| s.kind == "authenticator_validate")) {
            bind(&txn, tenant, sign_in.id, validation, 30).await?;
        }
        Ok::<(), crate::error::Error>(())
    }
    .await;
    match added {
        Ok(()) => super::plans::commit_change(state, txn).await?,
        // Another process added it at the same moment: its copy stands.
        Err(error) => {
            txn.rollback().await?;
            let now_exists = stage::Entity::find()
                .filter(stage::Column::TenantId.eq(tenant.0))
                .filter(stage::Column::Name.eq(MFA_VALIDATION_STAGE))
                .one(&state.db)
                .await?;
            if now_exists.is_none() {
                return Err(error);
            }
        }
    }
    Ok(())
}

/// The id of the stage `name`, made of `kind` with its default settings when missing (`flow` is
/// the default flow it is made for).
async fn stage_named(db: &impl ConnectionTrait, state: &AppState, tenant: TenantId, name: &str, kind: &str, flow: Uuid) -> Result<Uuid> {
    let existing = stage::Entity::find().filter(stage::Column::TenantId.eq(tenant.0)).filter(stage::Column::Name.eq(name)).one(db).await?;
    if let Some(stage) = existing {
        return Ok(stage.id);
    }
    let kind_impl = state.stages.get(kind).ok_or_else(|| crate::error::Error::internal(format!("no stage kind {kind}")))?;
    let settings = kind_impl
        .parse_settings(default_settings(db, tenant, name, flow).await?)
        .map_err(|e| crate::error::Error::internal(format!("default settings of {kind}: {e:?}")))?;
    let now = Utc::now();
    let created = stage::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(tenant.0),
        name: Set(name.into()),
        kind: Set(kind.into()),
        settings: Set(settings),
        created: Set(now),
        last_updated: Set(now),
    }
    .insert(db)
    .await?;
    Ok(created.id)
}

/// Binds `stage` to `flow` at `order`, with the defaults authentik gives a binding.
async fn bind(db: &impl ConnectionTrait, tenant: TenantId, flow: Uuid, stage: Uuid, order: i32) -> Result<()> {
    binding::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(tenant.0),
        flow_id: Set(flow),
        stage_id: Set(stage),
        binding_order: Set(order),
        evaluate_on_plan: Set(false),
        re_evaluate_policies: Set(true),
        policy_engine_mode: Set(PolicyEngineMode::Any.as_str().into()),
        invalid_response_action: Set(InvalidResponseAction::Retry.as_str().into()),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// The settings a default stage starts with, beyond its kind's defaults.
async fn default_settings(db: &impl ConnectionTrait, tenant: TenantId, name: &str, flow: Uuid) -> Result<Map<String, Value>> {
    let mut settings = Map::new();
    match name {
        TOTP_SETUP_STAGE => {
            settings.insert("configure_flow".into(), json!(flow));
            settings.insert("friendly_name".into(), json!("Authenticator app"));
        }
        STATIC_SETUP_STAGE => {
            // Made with the codes-alone flow: someone with an app makes new codes without adding
            // another app.
            settings.insert("configure_flow".into(), json!(flow));
            settings.insert("friendly_name".into(), json!("Recovery codes"));
        }
        MFA_VALIDATION_STAGE => {
            settings.insert("device_classes".into(), json!(["totp", "static", "sms", "email"]));
            settings.insert("not_configured_action".into(), json!("skip"));
            let app_setup = stage::Entity::find()
                .filter(stage::Column::TenantId.eq(tenant.0))
                .filter(stage::Column::Name.eq(TOTP_SETUP_STAGE))
                .one(db)
                .await?;
            settings.insert("configuration_stages".into(), json!(app_setup.map(|s| vec![s.id]).unwrap_or_default()));
        }
        _ => {}
    }
    Ok(settings)
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
        authentication: Set(default.authentication.as_str().into()),
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
        let stage_id = stage_named(db, state, tenant, name, kind, flow.id).await?;
        bind(db, tenant, flow.id, stage_id, *order).await?;
    }
    Ok(())
}
