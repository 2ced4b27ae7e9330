//! The SMS authenticator setup stage: a person types a phone number, receives a code on it,
//! types the code back, and the phone becomes one of their devices (or, on a verify-only stage,
//! a proven number that cannot sign in).

use gatehouse_types::PhoneNumber;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{acting_for_itself, enrolling_account, pending_user_fields};
use crate::error::{FieldErrors, Result};
use crate::flows::factors::FactorKind;
use crate::flows::stage::{Form, Input, InputKind, Prompt, StageContext, StageKind, Step, parse_typed, text_field};
use crate::mfa::codes::SentCode;
use crate::mfa::delivery::{self, Destination};
use crate::mfa::devices::{self, NUMBER_UNAVAILABLE};
use crate::mfa::sms::{self, SmsStageSettings, WRITE_ONLY_SETTINGS};
use crate::mfa::verify::{self, Candidates, Checked, SentAnswer};

/// A code this stage sent in this run: to which number, and the nonce that binds it to the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Progress {
    number: String,
    nonce: String,
    sent: SentCode,
}

/// What a setup code is bound to: this stage, account and number, and a nonce kept in this run.
fn binding(stage: uuid::Uuid, account: i64, nonce: &str, number: &str) -> String {
    format!("sms-setup:{stage}:{account}:{nonce}:{number}")
}

const INVALID_NUMBER: &str = "Enter the phone number in international format, with + and the country code, e.g. +41 44 668 18 00.";

/// Sets up a phone that receives codes by text message.
pub struct AuthenticatorSms;

#[async_trait::async_trait]
impl StageKind for AuthenticatorSms {
    fn kind(&self) -> &'static str {
        "authenticator_sms"
    }
    fn api_path(&self) -> &'static str {
        "authenticator/sms"
    }
    fn component(&self) -> &'static str {
        "ak-stage-authenticator-sms"
    }
    fn verbose_name(&self) -> &'static str {
        "SMS Authenticator Setup Stage"
    }
    fn meta_model_name(&self) -> &'static str {
        "authentik_stages_authenticator_sms.authenticatorsmsstage"
    }
    fn write_only(&self) -> &'static [&'static str] {
        WRITE_ONLY_SETTINGS
    }
    fn mapping_references(&self) -> &'static [&'static str] {
        &["mapping"]
    }
    fn example_settings(&self) -> Value {
        serde_json::to_value(SmsStageSettings::example()).unwrap_or_default()
    }

    fn parse_settings(&self, settings: Map<String, Value>) -> Result<Value, FieldErrors> {
        let (typed, value): (SmsStageSettings, Value) = parse_typed(settings)?;
        typed.check()?;
        Ok(value)
    }

    async fn enter(&self, cx: &mut StageContext<'_>) -> Result<Step> {
        if cx.context.pending_user.is_none() && cx.current.is_none() {
            return Ok(Step::Denied("No pending user.".into()));
        }
        Ok(Step::Challenge(self.prompt(cx, cx.stage_state::<Progress>().is_none())))
    }

    async fn solve(&self, cx: &mut StageContext<'_>, response: &Map<String, Value>) -> Result<Step> {
        let settings: SmsStageSettings = cx.settings()?;
        let Some(account) = enrolling_account(cx).await? else {
            return Ok(Step::Denied("Sign in before setting up an authenticator.".into()));
        };
        let code = text_field(response, "code").map(str::trim).filter(|c| !c.is_empty());
        let number = text_field(response, "phone_number").map(str::trim).filter(|n| !n.is_empty());
        match (cx.stage_state::<Progress>(), code, number) {
            (Some(mut progress), Some(code), _) => {
                if code.len() > 64 {
                    return Ok(Step::Invalid(FieldErrors::single("code", "Code does not match.")));
                }
                let binding = binding(cx.stage.stage_id, account.id, &progress.nonce, &progress.number);
                let candidates =
                    Candidates { sent: Some(SentAnswer { sent: &mut progress.sent, binding: &binding }), ..Candidates::default() };
                match verify::check_answer(cx.state, &account, code, candidates).await? {
                    Checked::Right(_) => {
                        cx.set_stage_state::<Progress>(None);
                        let parsed = PhoneNumber::parse(&progress.number)
                            .map_err(|_| crate::error::Error::internal("a kept number no longer parses"))?;
                        let stored = sms::stored_number(&cx.state.secret, &parsed, settings.verify_only);
                        let actor = acting_for_itself(cx, account);
                        match devices::enrol_sms(cx.state, &actor, cx.stage.stage_id, stored, "SMS Device".into()).await {
                            Ok(_) => {
                                // The code proved the phone at hand; a verify-only number proves
                                // nothing about signing in.
                                if !settings.verify_only {
                                    cx.record_factor(FactorKind::Sms);
                                }
                                Ok(Step::Passed)
                            }
                            Err(crate::error::Error::Validation(errors)) => Ok(Step::Invalid(errors)),
                            Err(other) => Err(other),
                        }
                    }
                    Checked::Refused { message, new_code_needed } => {
                        cx.set_stage_state((!new_code_needed).then_some(&progress));
                        Ok(Step::Invalid(FieldErrors::single("code", message)))
                    }
                }
            }
            (_, _, Some(number)) => {
                let Ok(parsed) = PhoneNumber::parse(number) else {
                    return Ok(Step::Invalid(FieldErrors::single("phone_number", INVALID_NUMBER)));
                };
                // Counted before the number is looked up, so that trying numbers to learn which are
                // enrolled costs what sending codes to them would.
                let reservation = match delivery::reserve_send(cx.state, &account, cx.client, Destination::TypedNumber(&parsed)).await? {
                    Ok(reservation) => reservation,
                    Err(message) => return Ok(Step::Invalid(FieldErrors::single("phone_number", message))),
                };
                let forms = sms::stored_forms(&cx.state.secret, &parsed);
                if devices::number_taken(&cx.state.db, cx.state, cx.stage.stage_id, &forms).await? {
                    drop(reservation);
                    cx.set_stage_state::<Progress>(None);
                    return Ok(Step::Invalid(FieldErrors::single("phone_number", NUMBER_UNAVAILABLE)));
                }
                let nonce = crate::secret::random_token(16);
                let bound_to = binding(cx.stage.stage_id, account.id, &nonce, parsed.as_str());
                match delivery::send_sms_code(cx.state, reservation, &settings, &account, cx.client, &parsed, &bound_to).await? {
                    Ok(sent) => {
                        let progress = Progress { number: parsed.as_str().to_owned(), nonce, sent };
                        cx.set_stage_state(Some(&progress));
                        Ok(Step::Challenge(self.prompt(cx, false)))
                    }
                    Err(message) => Ok(Step::Invalid(FieldErrors::single("phone_number", message))),
                }
            }
            (Some(_), None, None) => Ok(Step::Invalid(FieldErrors::single("code", "This field is required."))),
            (None, _, None) => Ok(Step::Invalid(FieldErrors::single("phone_number", "This field is required."))),
        }
    }
}

impl AuthenticatorSms {
    /// The question: the number while none was sent a code in this run, else the code.
    fn prompt(&self, cx: &StageContext<'_>, number_required: bool) -> Prompt {
        let mut fields = pending_user_fields(cx);
        fields.insert("phone_number_required".into(), json!(number_required));
        let input = if number_required {
            Input {
                name: "phone_number",
                label: "Phone number".into(),
                kind: InputKind::Text,
                autocomplete: "tel",
                value: String::new(),
                required: true,
                autofocus: true,
            }
        } else {
            Input {
                name: "code",
                label: "Code".into(),
                kind: InputKind::Code,
                autocomplete: "one-time-code",
                value: String::new(),
                required: true,
                autofocus: true,
            }
        };
        let intro = if number_required {
            "Enter the phone number that should receive codes, with + and the country code.".to_owned()
        } else {
            "Enter the code we sent to your phone.".to_owned()
        };
        Prompt {
            fields,
            form: Form { intro: Some(intro), inputs: vec![input], submit: "Continue".into(), links: Vec::new(), ..Form::default() },
        }
    }
}
