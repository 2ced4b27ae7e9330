//! The user login stage: turns the pending user into a signed-in session.

use gatehouse_types::DurationString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::pending_user_fields;
use crate::accounts::entities::user;
use crate::error::{FieldErrors, Result};
use crate::events::{Action, EventRecord};
use crate::flows::factors::verified_for;
use crate::flows::stage::{Effect, Form, Input, InputKind, Prompt, StageContext, StageKind, Step, flag_field, parse_typed};

/// Network and location bindings authentik offers; only `no_binding` is enforced so far, so only
/// it is accepted.
const NO_BINDING: &str = "no_binding";

/// What a run that reaches the login stage without a verified factor is told.
pub const NO_VERIFIED_FACTOR: &str = "This sign-in was not verified; please start again.";
/// What an account with an authenticator is told when the flow never asked for it.
pub const SECOND_FACTOR_NOT_ASKED: &str = "This account signs in with a second factor, which this sign-in did not ask for. Ask an administrator to add an authenticator validation stage to the flow.";

/// Settings of a login stage, with authentik's names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserLoginSettings {
    /// How long the session lasts; zero means until the browser closes (and at most the
    /// server's `sessions.duration`).
    pub session_duration: DurationString,
    /// End the user's other sessions when this one starts.
    pub terminate_other_sessions: bool,
    /// Added to the session when the person ticks "remember me"; zero hides the choice.
    pub remember_me_offset: DurationString,
    pub network_binding: String,
    pub geoip_binding: String,
    pub remember_device: DurationString,
}

impl Default for UserLoginSettings {
    fn default() -> Self {
        Self {
            session_duration: DurationString::from_secs(0),
            terminate_other_sessions: false,
            remember_me_offset: DurationString::from_secs(0),
            network_binding: NO_BINDING.into(),
            geoip_binding: NO_BINDING.into(),
            remember_device: DurationString::from_secs(0),
        }
    }
}

/// Signs the pending user in.
pub struct UserLogin;

impl UserLogin {
    /// The pending account when it may be signed in now, or the step that refuses it. Every
    /// refusal reads the same, so a badly built flow does not tell whether an account exists.
    async fn admissible(&self, cx: &mut StageContext<'_>) -> Result<Result<user::Model, Step>> {
        let Some(user) = cx.pending_account().await? else {
            return Ok(Err(Step::Denied(NO_VERIFIED_FACTOR.into())));
        };
        if !crate::sessions::service::may_sign_in(&user) {
            return Ok(Err(Step::Denied(NO_VERIFIED_FACTOR.into())));
        }
        if !verified_for(&cx.context.factors, user.id, user.password_change_date) {
            // Whatever the bindings say: a flow that reaches this stage without the account
            // having proven anything is a misconfiguration or an attack, never a sign-in.
            let event = EventRecord::new(Action::SuspiciousRequest)
                .from_client(cx.client)
                .with("reason", json!("sign-in without a verified factor"))
                .with("flow", json!(cx.flow.slug))
                .with("stage", json!(cx.stage.name))
                .with("pending_user", json!({"pk": user.id, "username": user.username}));
            crate::events::service::record(&cx.state.db, cx.state, event).await?;
            return Ok(Err(Step::Denied(NO_VERIFIED_FACTOR.into())));
        }
        // Whatever the flow: an account with an authenticator proves it before a session starts,
        // so a flow without a validation stage (an older sign-in flow, a copy, a test flow) never
        // lets the password alone in.
        let proved_second =
            cx.context.factors.iter().any(|f| f.user == user.id && f.kind.is_second_factor() && f.at >= user.password_change_date);
        if !proved_second && cx.has_sign_in_device(user.id).await? {
            return Ok(Err(Step::Denied(SECOND_FACTOR_NOT_ASKED.into())));
        }
        Ok(Ok(user))
    }

    async fn sign_in(&self, cx: &mut StageContext<'_>, settings: &UserLoginSettings, remember_me: bool) -> Result<Step> {
        let user = match self.admissible(cx).await? {
            Ok(user) => user,
            Err(refusal) => return Ok(refusal),
        };
        let browser_session = settings.session_duration.as_micros() == 0;
        let mut lifetime =
            if browser_session { cx.state.config.sessions.duration.to_chrono() } else { settings.session_duration.to_chrono() };
        let remembered = remember_me && settings.remember_me_offset.as_micros() > 0;
        if remembered {
            lifetime += settings.remember_me_offset.to_chrono();
        }
        // A new session key on every sign-in; the one the browser came with ends with it.
        let previous = cx.current.take();
        let replacing = previous.as_ref().and_then(|p| p.session.as_ref());
        let (user, session) = crate::sessions::service::start_session(cx.state, &user, cx.client, lifetime, replacing).await?;
        if settings.terminate_other_sessions {
            crate::sessions::service::revoke_others(cx.state, user.id, Some(session.session.id)).await?;
        }
        cx.effects.push(Effect::SignedIn { session: Box::new(session), persistent: !browser_session || remembered });
        Ok(Step::Passed)
    }
}

#[async_trait::async_trait]
impl StageKind for UserLogin {
    fn kind(&self) -> &'static str {
        "user_login"
    }
    fn component(&self) -> &'static str {
        "ak-stage-user-login"
    }
    fn verbose_name(&self) -> &'static str {
        "User Login Stage"
    }
    fn meta_model_name(&self) -> &'static str {
        "authentik_stages_user_login.userloginstage"
    }

    fn parse_settings(&self, settings: Map<String, Value>) -> Result<Value, FieldErrors> {
        let (typed, value): (UserLoginSettings, Value) = parse_typed(settings)?;
        let mut errors = FieldErrors::new();
        for (field, binding) in [("network_binding", &typed.network_binding), ("geoip_binding", &typed.geoip_binding)] {
            if binding != NO_BINDING {
                errors.add(field, format!("\"{binding}\" is not supported by this server yet; use \"{NO_BINDING}\"."));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(value)
    }

    async fn enter(&self, cx: &mut StageContext<'_>) -> Result<Step> {
        let settings: UserLoginSettings = cx.settings()?;
        if settings.remember_me_offset.as_micros() == 0 {
            return self.sign_in(cx, &settings, false).await;
        }
        if let Err(refusal) = self.admissible(cx).await? {
            return Ok(refusal);
        }
        let fields = pending_user_fields(cx);
        let form = Form {
            intro: Some(format!("Signing in as {}", super::pending_user_text(cx))),
            inputs: vec![Input {
                name: "remember_me",
                label: "Stay signed in on this device".into(),
                kind: InputKind::Checkbox,
                autocomplete: "off",
                value: String::new(),
                required: false,
                autofocus: true,
            }],
            submit: "Continue".into(),
            links: Vec::new(),
            ..Form::default()
        };
        Ok(Step::Challenge(Prompt { fields, form }))
    }

    async fn solve(&self, cx: &mut StageContext<'_>, response: &Map<String, Value>) -> Result<Step> {
        let settings: UserLoginSettings = cx.settings()?;
        self.sign_in(cx, &settings, flag_field(response, "remember_me")).await
    }
}
