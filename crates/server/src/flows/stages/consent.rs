//! The consent stage: asks the person whether an application may have what it asks for, and
//! remembers the answer as its mode says (never, for good, or for a while). What the application
//! is and what it asks for come with the run's handoff (the [`APPLICATION`] and [`PERMISSIONS`]
//! facts); without an application there is nothing to remember, and the stage always asks.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use gatehouse_types::DurationString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::pending_user_fields;
use crate::error::{FieldErrors, Result};
use crate::flows::consents;
use crate::flows::handoff::Handoff;
use crate::flows::run::PlannedStage;
use crate::flows::stage::{Form, Input, InputKind, Prompt, StageContext, StageKind, Step, parse_typed, text_field};
use crate::secret::constant_time_eq;
use crate::state::AppState;

/// The handoff fact naming the application: `{"pk": uuid, "name": text, "slug": text}`.
pub const APPLICATION: &str = "application";
/// The handoff fact listing what is asked for: `[{"id": scope, "name": description}]`.
pub const PERMISSIONS: &str = "permissions";
/// The handoff fact that makes the stage ask even when a remembered consent covers everything
/// (OpenID Connect's `prompt=consent`): `true`.
pub const ASK_AGAIN: &str = "ask_again";
/// The handoff fact naming where declining leads: a path on this server.
pub const DECLINE: &str = "decline";

/// What the page says when the echoed token is not the one asked with.
const INVALID_TOKEN: &str = "Invalid consent token, please try again.";

/// How long a consent is remembered (authentik's `ConsentMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMode {
    /// Asked every time.
    AlwaysRequire,
    /// Remembered until revoked.
    Permanent,
    /// Remembered for `consent_expire_in`.
    Expiring,
}

/// Settings of a consent stage, with authentik's names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentSettings {
    pub mode: ConsentMode,
    /// How long an expiring consent lasts.
    pub consent_expire_in: DurationString,
}

impl Default for ConsentSettings {
    fn default() -> Self {
        Self { mode: ConsentMode::AlwaysRequire, consent_expire_in: DurationString::from_secs(4 * 7 * 86_400) }
    }
}

/// One permission asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Permission {
    id: String,
    name: String,
}

/// The application the run's handoff names.
#[derive(Debug, Clone, Deserialize)]
struct Application {
    pk: Uuid,
    name: String,
}

/// Asks for and remembers consent.
pub struct Consent;

impl Consent {
    fn fact<T: serde::de::DeserializeOwned>(cx: &StageContext<'_>, name: &str) -> Option<T> {
        cx.context.handoff.as_ref()?.parsed(name)
    }

    fn application(cx: &StageContext<'_>) -> Option<Application> {
        Self::fact(cx, APPLICATION)
    }

    fn permissions(cx: &StageContext<'_>) -> Vec<Permission> {
        Self::fact(cx, PERMISSIONS).unwrap_or_default()
    }

    /// Whose consent: the person signed in, or else the person signing in once they proved
    /// who they are (so a flow that only identified someone cannot consent for them).
    fn person(cx: &StageContext<'_>) -> Option<i64> {
        cx.current.as_ref().map(|current| current.user.id).or_else(|| {
            let pending = cx.context.pending_user?;
            cx.context.factors.iter().any(|factor| factor.user == pending).then_some(pending)
        })
    }

    fn fact_is_true(cx: &StageContext<'_>, name: &str) -> bool {
        Self::fact::<bool>(cx, name).unwrap_or(false)
    }

    /// The token the answer must echo: bound to the run and the stage, so asking writes nothing
    /// and an answer from another run or stage is refused.
    fn token(cx: &StageContext<'_>) -> String {
        let bound = format!("{}|{}", cx.run_id, cx.stage.stage_id);
        URL_SAFE_NO_PAD.encode(cx.state.secret.mac("consent-token", bound.as_bytes()))
    }
}

#[async_trait::async_trait]
impl StageKind for Consent {
    fn kind(&self) -> &'static str {
        "consent"
    }
    fn component(&self) -> &'static str {
        "ak-stage-consent"
    }
    fn verbose_name(&self) -> &'static str {
        "Consent Stage"
    }
    fn meta_model_name(&self) -> &'static str {
        "authentik_stages_consent.consentstage"
    }

    fn parse_settings(&self, settings: Map<String, Value>) -> Result<Value, FieldErrors> {
        let (typed, value): (ConsentSettings, Value) = parse_typed(settings)?;
        if typed.mode == ConsentMode::Expiring && typed.consent_expire_in.as_micros() <= 0 {
            return Err(FieldErrors::single("consent_expire_in", "An expiring consent must last longer than zero."));
        }
        Ok(value)
    }

    async fn enter(&self, cx: &mut StageContext<'_>) -> Result<Step> {
        let settings: ConsentSettings = cx.settings()?;
        let application = Self::application(cx);
        let asked = Self::permissions(cx);
        let held = if Self::fact_is_true(cx, ASK_AGAIN) {
            None
        } else {
            held(cx.state, &settings, application.as_ref(), Self::person(cx), &asked).await?
        };
        // As authentik: a first question lists everything under `permissions`; a question after
        // an earlier consent lists what it covers there and what is new under
        // `additional_permissions`. Fewer scopes than consented to pass without a question.
        let (already, additional) = match held {
            Some((_, additional)) if additional.is_empty() => return Ok(Step::Passed),
            Some(split) => split,
            None => (asked, Vec::new()),
        };
        let token = Self::token(cx);
        let name = application.as_ref().map_or("This application", |a| a.name.as_str());
        let header = if additional.is_empty() || already.is_empty() {
            format!("{name} asks for the following permissions:")
        } else {
            format!("{name} already has some permissions and asks for more:")
        };
        let mut fields = pending_user_fields(cx);
        fields.insert("header_text".into(), json!(header));
        fields.insert("permissions".into(), json!(already));
        fields.insert("additional_permissions".into(), json!(additional));
        fields.insert("token".into(), json!(token));
        let listing = already.iter().chain(additional.iter()).map(|p| p.name.clone()).filter(|n| !n.is_empty()).collect();
        let decline = Self::fact::<String>(cx, DECLINE)
            .as_deref()
            .and_then(crate::flows::redirect::safe_next)
            .unwrap_or_else(|| "/flows/-/cancel/".to_owned());
        let form = Form {
            intro: Some(header),
            inputs: vec![Input {
                name: "token",
                label: String::new(),
                kind: InputKind::Hidden,
                autocomplete: "off",
                value: token,
                required: true,
                autofocus: false,
            }],
            submit: "Allow".into(),
            links: vec![("Deny".into(), decline)],
            listing,
            ..Form::default()
        };
        Ok(Step::Challenge(Prompt { fields, form }))
    }

    async fn solve(&self, cx: &mut StageContext<'_>, response: &Map<String, Value>) -> Result<Step> {
        let given = text_field(response, "token").unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), Self::token(cx).as_bytes()) {
            return Ok(Step::Invalid(FieldErrors::single("token", INVALID_TOKEN)));
        }
        let settings: ConsentSettings = cx.settings()?;
        let expires = match settings.mode {
            ConsentMode::AlwaysRequire => return Ok(Step::Passed),
            ConsentMode::Permanent => None,
            ConsentMode::Expiring => Some(Utc::now() + settings.consent_expire_in.to_chrono()),
        };
        let (Some(application), Some(person)) = (Self::application(cx), Self::person(cx)) else {
            return Ok(Step::Passed);
        };
        // What was consented to before and still holds stays consented to.
        let mut permissions: Vec<String> = match consents::holding_consent(&cx.state.db, cx.state.tenant, person, application.pk).await? {
            Some(before) => consents::permissions_of(&before).into_iter().map(str::to_owned).collect(),
            None => Vec::new(),
        };
        for permission in Self::permissions(cx) {
            if !permissions.contains(&permission.id) {
                permissions.push(permission.id);
            }
        }
        consents::record(&cx.state.db, cx.state.tenant, person, application.pk, &permissions, expires).await?;
        Ok(Step::Passed)
    }
}

/// What of `asked` the consent `person` gave `application` already covers, and what it does not:
/// `None` when the stage remembers nothing (its mode, no application or person) or no consent
/// holds.
async fn held(
    state: &AppState,
    settings: &ConsentSettings,
    application: Option<&Application>,
    person: Option<i64>,
    asked: &[Permission],
) -> Result<Option<(Vec<Permission>, Vec<Permission>)>> {
    let (ConsentMode::Permanent | ConsentMode::Expiring, Some(application), Some(person)) = (settings.mode, application, person) else {
        return Ok(None);
    };
    let Some(given) = consents::holding_consent(&state.db, state.tenant, person, application.pk).await? else {
        return Ok(None);
    };
    let covered = consents::permissions_of(&given);
    Ok(Some(asked.iter().cloned().partition(|p| covered.contains(&p.id.as_str()))))
}

/// Whether the consent stage planned as `stage` lets `person` through without asking, in a run
/// handed `handoff` (so an application can skip a flow that would only pass).
pub async fn passes_without_asking(state: &AppState, stage: &PlannedStage, person: i64, handoff: &Handoff) -> Result<bool> {
    let Ok(settings) = serde_json::from_value::<ConsentSettings>(stage.settings.clone()) else {
        return Ok(false);
    };
    let application: Option<Application> = handoff.parsed(APPLICATION);
    let asked: Vec<Permission> = handoff.parsed(PERMISSIONS).unwrap_or_default();
    Ok(held(state, &settings, application.as_ref(), Some(person), &asked).await?.is_some_and(|(_, additional)| additional.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_take_authentiks_defaults_and_refuse_an_expiring_consent_of_no_length() {
        let parsed = Consent.parse_settings(Map::new()).unwrap();
        assert_eq!(parsed, json!({"mode": "always_require", "consent_expire_in": "weeks=4"}));
        let zero = json!({"mode": "expiring", "consent_expire_in": "seconds=0"});
        let Value::Object(zero) = zero else { unreachable!() };
        assert!(Consent.parse_settings(zero).unwrap_err().fields().contains_key("consent_expire_in"));
        let Value::Object(unknown) = json!({"mode": "sometimes"}) else { unreachable!() };
        assert!(Consent.parse_settings(unknown).is_err());
    }
}
