//! The password stage: checks the pending user's password (or one of their app passwords).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::pending_user_fields;
use crate::accounts::entities::user;
use crate::accounts::password::Password;
use crate::error::{Error, FieldErrors, Result};
use crate::flows::factors::FactorKind;
use crate::flows::stage::{Form, Input, InputKind, Prompt, StageContext, StageKind, Step, parse_typed, text_field};

/// What a wrong password says, whatever was wrong (unknown account included).
pub const INVALID_PASSWORD: &str = "Invalid password.";

/// Checks the account's own password.
pub const INBUILT_BACKEND: &str = "authentik.core.auth.InbuiltBackend";
/// Checks the account's app passwords.
pub const TOKEN_BACKEND: &str = "authentik.core.auth.TokenBackend";

/// Settings of a password stage, with authentik's names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordSettings {
    pub backends: Vec<String>,
    pub configure_flow: Option<uuid::Uuid>,
    /// Failed answers in one run before the run is cancelled; 0 never cancels.
    pub failed_attempts_before_cancel: u32,
    pub allow_show_password: bool,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        Self {
            // App passwords sign in interactively only where a stage enables them.
            backends: vec![INBUILT_BACKEND.to_owned()],
            configure_flow: None,
            failed_attempts_before_cancel: 5,
            allow_show_password: false,
        }
    }
}

/// Checks `password` for `candidate` under the rate limits, recording the outcome. The same work
/// and the same message for unknown accounts. `Err(message)` is a failed check.
pub async fn check_password(
    cx: &mut StageContext<'_>,
    settings: &PasswordSettings,
    candidate: Option<user::Model>,
    password: &str,
) -> Result<Result<(), String>> {
    use crate::sessions::service::{self, PasswordCheck};
    let identifier = cx.context.pending_user_identifier.clone().unwrap_or_default();
    let inbuilt = settings.backends.iter().any(|b| b == INBUILT_BACKEND);
    let tokens = settings.backends.iter().any(|b| b == TOKEN_BACKEND);
    let checked =
        service::check_password(cx.state, &identifier, candidate, Password::new(password.to_owned()), cx.client, inbuilt, tokens).await;
    match checked {
        Ok(PasswordCheck::Passed { user, credential }) => {
            let kind = match credential {
                service::Credential::Password => FactorKind::Password,
                service::Credential::AppPassword => FactorKind::AppPassword,
            };
            cx.set_pending_account(*user);
            cx.record_factor(kind);
            Ok(Ok(()))
        }
        Ok(PasswordCheck::Failed) => Ok(Err(INVALID_PASSWORD.to_owned())),
        Err(Error::RateLimited { retry_after_secs }) => {
            Ok(Err(format!("Too many failed attempts. {}", crate::error::try_again_in(retry_after_secs))))
        }
        Err(other) => Err(other),
    }
}

/// Asks for the password.
pub struct PasswordStage;

#[async_trait::async_trait]
impl StageKind for PasswordStage {
    fn kind(&self) -> &'static str {
        "password"
    }
    fn component(&self) -> &'static str {
        "ak-stage-password"
    }
    fn verbose_name(&self) -> &'static str {
        "Password Stage"
    }
    fn meta_model_name(&self) -> &'static str {
        "authentik_stages_password.passwordstage"
    }

    fn parse_settings(&self, settings: Map<String, Value>) -> Result<Value, FieldErrors> {
        let (typed, value): (PasswordSettings, Value) = parse_typed(settings)?;
        if typed.backends.is_empty() {
            return Err(FieldErrors::single("backends", "Select at least one backend."));
        }
        if let Some(unknown) = typed.backends.iter().find(|b| *b != INBUILT_BACKEND && *b != TOKEN_BACKEND) {
            return Err(FieldErrors::single("backends", format!("\"{unknown}\" is not a valid choice.")));
        }
        if typed.configure_flow.is_some() {
            return Err(FieldErrors::single("configure_flow", "Not supported by this server yet; leave empty."));
        }
        Ok(value)
    }

    async fn enter(&self, cx: &mut StageContext<'_>) -> Result<Step> {
        if cx.context.pending_user_identifier.is_none() && cx.current.is_none() {
            return Ok(Step::Denied("No pending user.".into()));
        }
        let settings: PasswordSettings = cx.settings()?;
        let mut fields = pending_user_fields(cx);
        fields.insert("allow_show_password".into(), json!(settings.allow_show_password));
        let who = super::pending_user_text(cx);
        let form = Form {
            intro: Some(format!("Signing in as {who}")),
            inputs: vec![Input {
                name: "password",
                label: "Password".into(),
                kind: InputKind::Password,
                autocomplete: "current-password",
                value: String::new(),
                required: true,
                autofocus: true,
            }],
            submit: "Sign in".into(),
            links: vec![("Not you? Start again".into(), "/flows/-/cancel/".into())],
            ..Form::default()
        };
        Ok(Step::Challenge(Prompt { fields, form }))
    }

    async fn solve(&self, cx: &mut StageContext<'_>, response: &Map<String, Value>) -> Result<Step> {
        let settings: PasswordSettings = cx.settings()?;
        let password = text_field(response, "password").unwrap_or_default();
        if password.is_empty() {
            return Ok(Step::Invalid(FieldErrors::single("password", "This field is required.")));
        }
        if password.len() > 4096 {
            return Ok(Step::Invalid(FieldErrors::single("password", "Ensure this field has no more than 4096 characters.")));
        }
        let candidate = match (cx.context.pending_user, &cx.current) {
            (Some(_), _) => cx.pending_account().await?,
            (None, Some(current)) if cx.context.pending_user_identifier.is_none() => Some(current.user.clone()),
            _ => None,
        };
        if cx.context.pending_user_identifier.is_none()
            && let Some(user) = &candidate
        {
            cx.context.pending_user_identifier = Some(user.username.clone());
        }
        match check_password(cx, &settings, candidate, password).await? {
            Ok(()) => Ok(Step::Passed),
            Err(message) => {
                let limit = settings.failed_attempts_before_cancel;
                if limit > 0 && cx.context.failures + 1 >= limit {
                    return Ok(Step::Denied("Too many failed attempts; please start again.".into()));
                }
                Ok(Step::Invalid(FieldErrors::single("password", message)))
            }
        }
    }
}
