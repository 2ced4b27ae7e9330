//! The static authenticator setup stage: a person is shown a set of recovery codes once, keeps
//! them somewhere safe, and confirms; the codes are then kept only as keyed digests.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{acting_for_itself, enrolling_account, pending_user_fields};
use crate::error::{Error, FieldErrors, Result};
use crate::flows::stage::{Form, Prompt, StageContext, StageKind, Step, parse_typed};
use crate::mfa::otp_devices;
use crate::mfa::recovery::{self, StaticStageSettings};

/// The codes offered in this run, sealed for the account they were offered to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Offered {
    user: i64,
    sealed: String,
    /// Names this offer, so that confirming it twice makes one set.
    id: String,
}

const SEAL_PURPOSE: &str = "recovery-codes-offered";

/// Sets up recovery codes.
pub struct AuthenticatorStatic;

impl AuthenticatorStatic {
    /// The codes offered to `user` in this run, made and kept (sealed) on first use.
    fn offered_codes(cx: &mut StageContext<'_>, user: i64) -> Result<Vec<String>> {
        let secret = &cx.state.secret;
        if let Some(offered) = cx.stage_state::<Offered>().filter(|offered| offered.user == user) {
            let plain = secret.open(SEAL_PURPOSE, &user.to_be_bytes(), &offered.sealed)?;
            let text = String::from_utf8(plain).map_err(|_| Error::internal("offered recovery codes are not text"))?;
            return Ok(text.split('\n').map(str::to_owned).collect());
        }
        let settings: StaticStageSettings = cx.settings()?;
        let codes = recovery::new_codes(settings.token_count, settings.token_length);
        let sealed = secret.seal(SEAL_PURPOSE, &user.to_be_bytes(), codes.join("\n").as_bytes())?;
        cx.set_stage_state(Some(&Offered { user, sealed, id: crate::secret::random_token(24) }));
        Ok(codes)
    }
}

#[async_trait::async_trait]
impl StageKind for AuthenticatorStatic {
    fn kind(&self) -> &'static str {
        "authenticator_static"
    }
    fn api_path(&self) -> &'static str {
        "authenticator/static"
    }
    fn component(&self) -> &'static str {
        "ak-stage-authenticator-static"
    }
    fn verbose_name(&self) -> &'static str {
        "Static Authenticator Setup Stage"
    }
    fn meta_model_name(&self) -> &'static str {
        "authentik_stages_authenticator_static.authenticatorstaticstage"
    }

    fn parse_settings(&self, settings: Map<String, Value>) -> Result<Value, FieldErrors> {
        let (typed, value): (StaticStageSettings, Value) = parse_typed(settings)?;
        typed.check()?;
        Ok(value)
    }

    async fn enter(&self, cx: &mut StageContext<'_>) -> Result<Step> {
        let Some(account) = enrolling_account(cx).await? else {
            return Ok(Step::Denied("Sign in before setting up an authenticator.".into()));
        };
        let codes = Self::offered_codes(cx, account.id)?;
        let mut fields = pending_user_fields(cx);
        fields.insert("codes".into(), json!(codes));
        let form = Form {
            intro: Some(
                "These are your recovery codes. Each works once, when you cannot use your other devices. Keep them somewhere \
                 safe: they are not shown again."
                    .into(),
            ),
            submit: "I have saved these codes".into(),
            listing: codes,
            ..Form::default()
        };
        Ok(Step::Challenge(Prompt { fields, form }))
    }

    async fn solve(&self, cx: &mut StageContext<'_>, _response: &Map<String, Value>) -> Result<Step> {
        let Some(account) = enrolling_account(cx).await? else {
            return Ok(Step::Denied("Sign in before setting up an authenticator.".into()));
        };
        let Some(offered) = cx.stage_state::<Offered>().filter(|offered| offered.user == account.id) else {
            return Ok(Step::Invalid(FieldErrors::single(crate::error::NON_FIELD_ERRORS, "Save the new codes first.")));
        };
        let codes = Self::offered_codes(cx, account.id)?;
        let actor = acting_for_itself(cx, account);
        match otp_devices::enrol_static(cx.state, &actor, cx.stage.stage_id, &offered.id, &codes).await {
            Ok(_) => {}
            Err(Error::Validation(errors)) => return Ok(Step::Invalid(errors)),
            Err(other) => return Err(other),
        }
        cx.set_stage_state::<Offered>(None);
        Ok(Step::Passed)
    }
}
