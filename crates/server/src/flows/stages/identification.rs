//! The identification stage: who is signing in (by e-mail or username), optionally with the
//! password on the same form.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::password::{PasswordSettings, check_password};
use crate::error::{FieldErrors, NON_FIELD_ERRORS, Result};
use crate::flows::stage::{Form, Input, InputKind, Prompt, StageContext, StageKind, StageReference, Step, parse_typed, text_field};

/// What identification failures say, whatever failed.
pub const IDENTIFICATION_FAILED: &str = "Failed to authenticate.";

/// The user fields an identifier may match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserField {
    Email,
    Username,
}

/// Settings of an identification stage, with authentik's names. Links to other flows, sources,
/// captcha and passkeys are accepted for compatibility and must stay empty until those exist.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentificationSettings {
    pub user_fields: Vec<UserField>,
    /// A password stage whose check runs on this form (no separate password step).
    pub password_stage: Option<Uuid>,
    pub captcha_stage: Option<Uuid>,
    pub case_insensitive_matching: bool,
    pub show_matched_user: bool,
    pub enrollment_flow: Option<Uuid>,
    pub recovery_flow: Option<Uuid>,
    pub passwordless_flow: Option<Uuid>,
    pub sources: Vec<Uuid>,
    pub show_source_labels: bool,
    /// Unknown identifiers continue as if they existed, so the flow does not tell who has an
    /// account. Turning it off makes the stage say so at once.
    pub pretend_user_exists: bool,
    pub enable_remember_me: bool,
    pub webauthn_stage: Option<Uuid>,
}

impl Default for IdentificationSettings {
    fn default() -> Self {
        Self {
            user_fields: vec![UserField::Email, UserField::Username],
            password_stage: None,
            captcha_stage: None,
            case_insensitive_matching: true,
            show_matched_user: false,
            enrollment_flow: None,
            recovery_flow: None,
            passwordless_flow: None,
            sources: Vec::new(),
            show_source_labels: false,
            pretend_user_exists: true,
            enable_remember_me: false,
            webauthn_stage: None,
        }
    }
}

/// Asks for an e-mail address or username.
pub struct Identification;

impl Identification {
    fn label(settings: &IdentificationSettings) -> &'static str {
        match (settings.user_fields.contains(&UserField::Email), settings.user_fields.contains(&UserField::Username)) {
            (true, true) => "E-mail or username",
            (true, false) => "E-mail",
            (false, true) => "Username",
            (false, false) => "Identifier",
        }
    }
}

#[async_trait::async_trait]
impl StageKind for Identification {
    fn kind(&self) -> &'static str {
        "identification"
    }
    fn component(&self) -> &'static str {
        "ak-stage-identification"
    }
    fn verbose_name(&self) -> &'static str {
        "Identification Stage"
    }
    fn meta_model_name(&self) -> &'static str {
        "authentik_stages_identification.identificationstage"
    }

    fn references(&self) -> &'static [StageReference] {
        // Captcha and WebAuthn stages are refused by the settings until those kinds exist.
        &[StageReference { field: "password_stage", target_kinds: &["password"] }]
    }

    fn parse_settings(&self, settings: Map<String, Value>) -> Result<Value, FieldErrors> {
        let (typed, value): (IdentificationSettings, Value) = parse_typed(settings)?;
        let mut errors = FieldErrors::new();
        if typed.user_fields.is_empty() && typed.password_stage.is_none() {
            errors.add("user_fields", "Select at least one user field or a password stage.");
        }
        let unsupported = [
            ("captcha_stage", typed.captcha_stage.is_some()),
            ("enrollment_flow", typed.enrollment_flow.is_some()),
            ("recovery_flow", typed.recovery_flow.is_some()),
            ("passwordless_flow", typed.passwordless_flow.is_some()),
            ("sources", !typed.sources.is_empty()),
            ("webauthn_stage", typed.webauthn_stage.is_some()),
        ];
        for (field, set) in unsupported {
            if set {
                errors.add(field, "Not supported by this server yet; leave empty.");
            }
        }
        if errors.is_empty() { Ok(value) } else { Err(errors) }
    }

    async fn enter(&self, cx: &mut StageContext<'_>) -> Result<Step> {
        let settings: IdentificationSettings = cx.settings()?;
        let password_fields = settings.password_stage.is_some();
        let mut inputs = Vec::new();
        if !settings.user_fields.is_empty() {
            inputs.push(Input {
                name: "uid_field",
                label: Self::label(&settings).to_owned(),
                kind: if settings.user_fields == [UserField::Email] { InputKind::Email } else { InputKind::Text },
                autocomplete: "username",
                value: cx.context.pending_user_identifier.clone().unwrap_or_default(),
                required: true,
                autofocus: true,
            });
        }
        if password_fields {
            inputs.push(Input {
                name: "password",
                label: "Password".into(),
                kind: InputKind::Password,
                autocomplete: "current-password",
                value: String::new(),
                required: true,
                autofocus: settings.user_fields.is_empty(),
            });
        }
        let mut fields = Map::new();
        fields.insert("user_fields".into(), json!(settings.user_fields));
        fields.insert("pending_user_identifier".into(), json!(cx.context.pending_user_identifier));
        fields.insert("password_fields".into(), json!(password_fields));
        fields.insert("allow_show_password".into(), json!(false));
        fields.insert("flow_designation".into(), json!(cx.flow.designation));
        fields.insert("captcha_stage".into(), Value::Null);
        fields.insert("primary_action".into(), json!(if password_fields { "Log in" } else { "Continue" }));
        fields.insert("sources".into(), json!([]));
        fields.insert("show_source_labels".into(), json!(settings.show_source_labels));
        fields.insert("enable_remember_me".into(), json!(settings.enable_remember_me));
        fields.insert("passkey_challenge".into(), Value::Null);
        let submit = if password_fields { "Log in" } else { "Continue" };
        Ok(Step::Challenge(Prompt {
            fields,
            form: Form { intro: None, inputs, submit: submit.into(), links: Vec::new(), ..Form::default() },
        }))
    }

    async fn solve(&self, cx: &mut StageContext<'_>, response: &Map<String, Value>) -> Result<Step> {
        let settings: IdentificationSettings = cx.settings()?;
        let identifier = text_field(response, "uid_field").map(str::trim).unwrap_or_default();
        let mut errors = FieldErrors::new();
        if !settings.user_fields.is_empty() {
            if identifier.is_empty() {
                errors.add("uid_field", "This field is required.");
            } else if identifier.chars().count() > 254 {
                errors.add("uid_field", "Ensure this field has no more than 254 characters.");
            }
        }
        let password = text_field(response, "password").unwrap_or_default();
        if settings.password_stage.is_some() && password.is_empty() {
            errors.add("password", "This field is required.");
        }
        if !errors.is_empty() {
            return Ok(Step::Invalid(errors));
        }
        let by_email = settings.user_fields.contains(&UserField::Email);
        let by_username = settings.user_fields.contains(&UserField::Username);
        let candidate = crate::accounts::users::find_user_by_identifier(
            &cx.state.db,
            cx.state.tenant,
            identifier,
            by_email,
            by_username,
            !settings.case_insensitive_matching,
        )
        .await?;
        cx.context.pending_user_identifier = Some(identifier.to_owned());
        cx.context.pending_user = None;
        if let Some(account) = &candidate {
            cx.set_pending_account(account.clone());
        }
        if let Some(password_stage) = settings.password_stage {
            let password_settings = inline_password_settings(cx, password_stage).await?;
            return Ok(match check_password(cx, &password_settings, candidate, password).await? {
                Ok(()) => Step::Passed,
                Err(message) => Step::Invalid(FieldErrors::single(NON_FIELD_ERRORS, message)),
            });
        }
        if candidate.is_none() && !settings.pretend_user_exists {
            return Ok(Step::Invalid(FieldErrors::single(NON_FIELD_ERRORS, IDENTIFICATION_FAILED)));
        }
        Ok(Step::Passed)
    }
}

/// The settings of the password stage an identification stage checks inline; defaults when that
/// stage was deleted since.
async fn inline_password_settings(cx: &StageContext<'_>, stage_id: Uuid) -> Result<PasswordSettings> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let stage = crate::flows::entities::stage::Entity::find_by_id(stage_id)
        .filter(crate::flows::entities::stage::Column::TenantId.eq(cx.state.tenant.0))
        .one(&cx.state.db)
        .await?;
    Ok(stage.and_then(|s| serde_json::from_value(s.settings).ok()).unwrap_or_default())
}
