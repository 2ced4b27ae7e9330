//! The endpoint stage (authentik's `EndpointStage` with the agent connector's
//! `ak-stage-endpoint-agent` challenge): asks the browser's device to prove itself. The challenge
//! is a JWT signed with the connector's challenge key; the device's agent (through the browser
//! extension) answers with an HS512 JWT keyed by its device key, naming its serial as `iss`,
//! `goauthentik.io/platform/endpoint` as `aud` and the challenge as `atc`. A device that
//! proves itself is put into the run (`device` in its context). `optional` lets people without
//! a device (or whose device does not answer) through; `required` stops them.

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::entities::device;
use crate::error::{Error, FieldErrors, Result};
use crate::flows::stage::{Form, Input, InputKind, Prompt, StageContext, StageKind, Step, parse_typed};
use crate::secret::{constant_time_eq, random_token};
use crate::state::AppState;

/// The audience of an agent's answer, as authentik's agents send it.
pub const RESPONSE_AUDIENCE: &str = "goauthentik.io/platform/endpoint";
/// The key in the run's context that holds the device that proved itself.
pub const DEVICE_CONTEXT_KEY: &str = "device";
/// How long a challenge may be answered.
const CHALLENGE_LIFETIME_SECONDS: i64 = 300;
/// Clock difference allowed between the server and the agent.
const LEEWAY_SECONDS: u64 = 30;
/// Longest answer read: a challenge JWT inside a JWT is well under this.
const LONGEST_RESPONSE: usize = 16 * 1024;
/// Shown when `required` and the device did not prove itself.
const NOT_VERIFIED: &str = "This device could not be verified.";

/// Whether people without a verified device may pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageMode {
    #[default]
    Optional,
    Required,
}

/// Settings of an endpoint stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointStageSettings {
    /// The connector whose devices are asked.
    pub connector: Uuid,
    #[serde(default)]
    pub mode: StageMode,
}

/// What the stage keeps in the run between asking and the answer.
#[derive(Debug, Serialize, Deserialize)]
struct Asked {
    challenge: String,
    /// When it was issued (seconds since the epoch): an answer after its lifetime is refused.
    issued_at: i64,
}

/// The claims of a challenge.
#[derive(Debug, Serialize)]
struct ChallengeClaims {
    atc: String,
    iss: String,
    iat: i64,
    exp: i64,
    #[serde(rename = "goauthentik.io/device/check_in")]
    check_in: bool,
}

/// The endpoint stage kind.
pub struct EndpointStage;

impl EndpointStage {
    /// Ends the stage without a verified device, as the mode says.
    fn unverified(mode: StageMode, message: &str) -> Step {
        match mode {
            StageMode::Optional => Step::Passed,
            StageMode::Required => Step::Denied(message.to_owned()),
        }
    }

    /// The device `response` proves, if it does: an answer keyed by a live device key of the
    /// connector `connector_id` for the device named in it, to the challenge `asked`.
    async fn verified_device(state: &AppState, connector_id: Uuid, asked: &str, response: &str) -> Result<Option<device::Model>> {
        if response.len() > LONGEST_RESPONSE {
            return Ok(None);
        }
        // The serial tells which device's keys to try; nothing read here is trusted before one
        // of them verifies the whole answer.
        let Some(serial) = unverified_issuer(response) else { return Ok(None) };
        let Some((device, keys)) = super::devices::live_keys_for(state, connector_id, &serial).await? else { return Ok(None) };
        let mut validation = Validation::new(Algorithm::HS512);
        validation.set_issuer(&[&device.identifier]);
        validation.set_audience(&[RESPONSE_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = LEEWAY_SECONDS;
        for key in keys {
            let Ok(data) = jsonwebtoken::decode::<Value>(response, &DecodingKey::from_secret(key.as_bytes()), &validation) else {
                continue;
            };
            let answered = data.claims.get("atc").and_then(Value::as_str).unwrap_or_default();
            if constant_time_eq(answered.as_bytes(), asked.as_bytes()) {
                return Ok(Some(device));
            }
        }
        Ok(None)
    }
}

/// The `iss` of a compact JWS, read without checking anything.
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// The connector a stored `connector` setting names, if it is an id.
fn connector_named(setting: Option<&Value>) -> Option<Uuid> {
    setting.and_then(Value::as_str).and_then(|v| Uuid::parse_str(v).ok())
}

#[async_trait::async_trait]
impl StageKind for EndpointStage {
    fn kind(&self) -> &'static str {
        // authentik's path: `/api/v3/stages/endpoints/`.
        "endpoints"
    }
    fn component(&self) -> &'static str {
        "ak-stage-endpoint-agent"
    }
    fn verbose_name(&self) -> &'static str {
        "Endpoint Stage"
    }
    fn meta_model_name(&self) -> &'static str {
        "authentik_endpoints.endpointstage"
    }
    fn example_settings(&self) -> Value {
        json!({"connector": Uuid::nil(), "mode": "optional"})
    }

    fn parse_settings(&self, settings: Map<String, Value>) -> Result<Value, FieldErrors> {
        let (_, value): (EndpointStageSettings, Value) = parse_typed(settings)?;
        Ok(value)
    }

    async fn check_settings(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        state: &AppState,
        settings: &Value,
        errors: &mut FieldErrors,
    ) -> Result<()> {
        let Some(id) = connector_named(settings.get("connector")) else { return Ok(()) };
        if super::connectors::connectors_by_ids(txn, state.tenant, &[id]).await?.is_empty() {
            errors.add("connector", format!("Invalid pk \"{id}\" - object does not exist."));
        }
        Ok(())
    }

    async fn expand_settings(&self, state: &AppState, settings: &mut Map<String, Value>) -> Result<()> {
        let connector = match connector_named(settings.get("connector")) {
            Some(id) => super::connectors::connectors_by_ids(&state.db, state.tenant, &[id]).await?.pop(),
            None => None,
        };
        let shown = connector.as_ref().map(super::connectors::generic_shape);
        settings.insert("connector_obj".into(), shown.unwrap_or(Value::Null));
        Ok(())
    }

    async fn enter(&self, cx: &mut StageContext<'_>) -> Result<Step> {
        let settings: EndpointStageSettings = cx.settings()?;
        let Some(connector) =
            super::connectors::connectors_by_ids(&cx.state.db, cx.state.tenant, &[settings.connector]).await?.pop().filter(|c| c.enabled)
        else {
            return Ok(Self::unverified(settings.mode, "Invalid stage configuration."));
        };
        // A device authentication hands its run the device whose key its browser window proved
        // (for this stage only when it came through this stage's connector).
        let handed = cx.context.handoff.as_ref().and_then(|h| h.fact(super::device_auth::DEVICE_FACT)).cloned();
        if let Some(device) = handed.filter(|d| d.get("connector").and_then(Value::as_str) == Some(connector.id.to_string().as_str())) {
            cx.context.extra.insert(DEVICE_CONTEXT_KEY.into(), device);
            return Ok(Step::Passed);
        }
        let Some(key_id) = connector.challenge_key_id else {
            // Nothing to sign a challenge with: no device can prove itself. authentik passes even
            // a required stage here; a required check that cannot be made stops the flow instead.
            return Ok(Self::unverified(settings.mode, "Invalid stage configuration."));
        };
        let pair = crate::crypto::service::pair_by_id(&cx.state.db, cx.state.tenant, key_id)
            .await?
            .ok_or_else(|| Error::internal("a connector's challenge key is missing"))?;
        let signer = crate::crypto::jwt::Signer::for_pair(&cx.state.secret, &pair)?
            .ok_or_else(|| Error::internal("a connector's challenge key cannot sign"))?;
        let now = Utc::now().timestamp();
        let claims = ChallengeClaims {
            atc: random_token(30),
            iss: cx.stage.stage_id.to_string(),
            iat: now,
            exp: now + CHALLENGE_LIFETIME_SECONDS,
            check_in: connector.challenge_trigger_check_in,
        };
        let challenge = signer.sign(&claims, "JWT")?;
        cx.set_stage_state(Some(&Asked { challenge: challenge.clone(), issued_at: now }));
        let idle = gatehouse_types::DurationString::parse(&connector.challenge_idle_timeout)
            .map_err(|e| Error::internal(format!("a stored duration: {e}")))?;
        let mut fields = Map::new();
        fields.insert("challenge".into(), json!(challenge));
        fields.insert("challenge_idle_timeout".into(), json!(idle.as_micros() / 1_000_000));
        // The page works without JavaScript, so it cannot reach the browser extension: it
        // continues without an answer, which the mode then judges.
        let form = Form {
            intro: Some("This sign-in checks the device you are using.".into()),
            inputs: vec![Input {
                name: "response",
                label: String::new(),
                kind: InputKind::Hidden,
                autocomplete: "off",
                value: String::new(),
                required: false,
                autofocus: false,
            }],
            submit: "Continue".into(),
            ..Form::default()
        };
        Ok(Step::Challenge(Prompt { fields, form }))
    }

    async fn solve(&self, cx: &mut StageContext<'_>, response: &Map<String, Value>) -> Result<Step> {
        let settings: EndpointStageSettings = cx.settings()?;
        let Some(asked) = cx.stage_state::<Asked>() else { return self.enter(cx).await };
        let answer = response.get("response").and_then(Value::as_str).filter(|v| !v.is_empty());
        let in_time = Utc::now().timestamp() <= asked.issued_at + CHALLENGE_LIFETIME_SECONDS;
        let enabled = super::connectors::connectors_by_ids(&cx.state.db, cx.state.tenant, &[settings.connector])
            .await?
            .pop()
            .is_some_and(|c| c.enabled);
        let device = match answer {
            Some(answer) if in_time && enabled => Self::verified_device(cx.state, settings.connector, &asked.challenge, answer).await?,
            _ => None,
        };
        // A challenge is answered once, whatever the outcome.
        cx.set_stage_state::<Asked>(None);
        match device {
            Some(device) => {
                cx.context.extra.insert(DEVICE_CONTEXT_KEY.into(), json!({"pk": device.id, "name": device.name}));
                Ok(Step::Passed)
            }
            None => Ok(Self::unverified(settings.mode, NOT_VERIFIED)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_is_read_from_the_payload_and_nothing_else_is_trusted() {
        use base64::Engine;
        let encode = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let token = format!("{}.{}.sig", encode(&json!({"alg": "HS512"})), encode(&json!({"iss": "SERIAL-1"})));
        assert_eq!(unverified_issuer(&token).as_deref(), Some("SERIAL-1"));
        assert_eq!(unverified_issuer("not a token"), None);
        assert_eq!(unverified_issuer(&format!("a.{}.c", encode(&json!({"iss": 5})))), None);
    }
}
