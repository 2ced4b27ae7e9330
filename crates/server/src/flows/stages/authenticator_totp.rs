//! The TOTP authenticator setup stage: a person scans a QR code (or types the key) into an
//! authenticator app and proves it works by typing the code the app shows.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{acting_for_itself, enrolling_account, pending_user_fields};
use crate::error::{Error, FieldErrors, Result};
use crate::flows::factors::FactorKind;
use crate::flows::stage::{Form, Input, InputKind, Prompt, StageContext, StageKind, Step, parse_typed, text_field};
use crate::mfa::otp_devices;
use crate::mfa::totp::{TotpSecret, TotpStageSettings};
use crate::mfa::verify;

/// The secret offered in this run, sealed for the account it was offered to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Offered {
    user: i64,
    sealed: String,
    /// Names this offer, so that answering it twice makes one device.
    id: String,
}

/// The issuer an app shows beside the account.
const ISSUER: &str = "Gatehouse";

/// Sets up an authenticator app.
pub struct AuthenticatorTotp;

#[async_trait::async_trait]
impl StageKind for AuthenticatorTotp {
    fn kind(&self) -> &'static str {
        "authenticator_totp"
    }
    fn api_path(&self) -> &'static str {
        "authenticator/totp"
    }
    fn component(&self) -> &'static str {
        "ak-stage-authenticator-totp"
    }
    fn verbose_name(&self) -> &'static str {
        "TOTP Authenticator Setup Stage"
    }
    fn meta_model_name(&self) -> &'static str {
        "authentik_stages_authenticator_totp.authenticatortotpstage"
    }

    fn parse_settings(&self, settings: Map<String, Value>) -> Result<Value, FieldErrors> {
        let (_, value): (TotpStageSettings, Value) = parse_typed(settings)?;
        Ok(value)
    }

    async fn enter(&self, cx: &mut StageContext<'_>) -> Result<Step> {
        let Some(account) = enrolling_account(cx).await? else {
            return Ok(Step::Denied("Sign in before setting up an authenticator.".into()));
        };
        // The secret is made once per run and account, so that reloading the page shows the
        // code already scanned.
        let secret = match cx.stage_state::<Offered>().filter(|offered| offered.user == account.id) {
            Some(offered) => TotpSecret::open(&cx.state.secret, account.id, &offered.sealed)?,
            None => {
                let secret = TotpSecret::generate();
                let offered =
                    Offered { user: account.id, sealed: secret.seal(&cx.state.secret, account.id)?, id: crate::secret::random_token(24) };
                cx.set_stage_state(Some(&offered));
                secret
            }
        };
        let settings: TotpStageSettings = cx.settings()?;
        let config_url = secret.config_url(settings.digits, ISSUER, &account.username)?;
        let mut fields = pending_user_fields(cx);
        fields.insert("config_url".into(), json!(config_url));
        let key: Vec<String> = secret.base32().as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        let form = Form {
            intro: Some(
                "Scan this QR code with your authenticator app, or type the key below into it, then enter the code the app shows.".into(),
            ),
            inputs: vec![Input {
                name: "code",
                label: "Code".into(),
                kind: InputKind::Code,
                autocomplete: "one-time-code",
                value: String::new(),
                required: true,
                autofocus: true,
            }],
            submit: "Continue".into(),
            links: Vec::new(),
            qr_code: Some(config_url),
            listing: vec![key.join(" ")],
        };
        Ok(Step::Challenge(Prompt { fields, form }))
    }

    async fn solve(&self, cx: &mut StageContext<'_>, response: &Map<String, Value>) -> Result<Step> {
        let Some(account) = enrolling_account(cx).await? else {
            return Ok(Step::Denied("Sign in before setting up an authenticator.".into()));
        };
        let Some(offered) = cx.stage_state::<Offered>().filter(|offered| offered.user == account.id) else {
            return Ok(Step::Invalid(FieldErrors::single("code", "Scan the new QR code first.")));
        };
        let Some(code) = text_field(response, "code").map(str::trim).filter(|c| !c.is_empty()) else {
            return Ok(Step::Invalid(FieldErrors::single("code", "This field is required.")));
        };
        let settings: TotpStageSettings = cx.settings()?;
        let secret = TotpSecret::open(&cx.state.secret, account.id, &offered.sealed)?;
        match verify::check_new_totp(cx.state, &account, &secret, settings.digits, code).await? {
            Ok(step) => {
                let actor = acting_for_itself(cx, account);
                match otp_devices::enrol_totp(cx.state, &actor, cx.stage.stage_id, &offered.id, &secret, settings.digits, step).await {
                    Ok(_) => {}
                    Err(Error::Validation(errors)) => return Ok(Step::Invalid(errors)),
                    Err(other) => return Err(other),
                }
                cx.set_stage_state::<Offered>(None);
                // Setting the app up proved it is at hand, as answering a validation stage would:
                // a setup stage that follows in this run may add another authenticator.
                cx.record_factor(FactorKind::Totp);
                Ok(Step::Passed)
            }
            Err(message) => Ok(Step::Invalid(FieldErrors::single("code", message))),
        }
    }
}
