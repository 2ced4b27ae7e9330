//! The e-mail authenticator setup stage: a code goes to the account's address, the person types
//! it back, and the address becomes one of their devices. Every account has an address, so an
//! address typed into the request is never used: a code goes only where the account says.

use gatehouse_types::Email;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{acting_for_itself, enrolling_account, pending_user_fields};
use crate::accounts::entities::user;
use crate::error::{Error, FieldErrors, Result};
use crate::flows::factors::FactorKind;
use crate::flows::stage::{Form, Input, InputKind, Prompt, StageContext, StageKind, Step, parse_typed, text_field};
use crate::mfa::codes::SentCode;
use crate::mfa::delivery::{self, Destination};
use crate::mfa::email::{self, EmailStageSettings, WRITE_ONLY_SETTINGS};
use crate::mfa::otp_devices;
use crate::mfa::verify::{self, Candidates, Checked, SentAnswer};

/// A code this stage sent in this run: to which account and address, and the nonce that binds
/// it to the run (and names the device it makes, so that answering twice makes one).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Progress {
    user: i64,
    address: String,
    nonce: String,
    sent: SentCode,
}

/// What a setup code is bound to: this stage, account and address, and a nonce kept in this run.
fn binding(stage: uuid::Uuid, account: i64, nonce: &str, address: &str) -> String {
    format!("email-setup:{stage}:{account}:{nonce}:{address}")
}

/// Sets up an e-mail address that receives codes.
pub struct AuthenticatorEmail;

#[async_trait::async_trait]
impl StageKind for AuthenticatorEmail {
    fn kind(&self) -> &'static str {
        "authenticator_email"
    }
    fn api_path(&self) -> &'static str {
        "authenticator/email"
    }
    fn component(&self) -> &'static str {
        "ak-stage-authenticator-email"
    }
    fn verbose_name(&self) -> &'static str {
        "Email Authenticator Setup Stage"
    }
    fn meta_model_name(&self) -> &'static str {
        "authentik_stages_authenticator_email.authenticatoremailstage"
    }
    fn write_only(&self) -> &'static [&'static str] {
        WRITE_ONLY_SETTINGS
    }
    fn example_settings(&self) -> Value {
        serde_json::to_value(EmailStageSettings::example()).unwrap_or_default()
    }

    fn parse_settings(&self, settings: Map<String, Value>) -> Result<Value, FieldErrors> {
        let (typed, value): (EmailStageSettings, Value) = parse_typed(settings)?;
        typed.check()?;
        Ok(value)
    }

    async fn enter(&self, cx: &mut StageContext<'_>) -> Result<Step> {
        let Some(account) = enrolling_account(cx).await? else {
            return Ok(Step::Denied("Sign in before setting up an authenticator.".into()));
        };
        let sent = cx.stage_state::<Progress>().filter(|p| p.user == account.id);
        Ok(Step::Challenge(prompt(cx, &account, sent.as_ref())))
    }

    async fn solve(&self, cx: &mut StageContext<'_>, response: &Map<String, Value>) -> Result<Step> {
        let settings: EmailStageSettings = cx.settings()?;
        let Some(account) = enrolling_account(cx).await? else {
            return Ok(Step::Denied("Sign in before setting up an authenticator.".into()));
        };
        let progress = cx.stage_state::<Progress>().filter(|p| p.user == account.id);
        let code = text_field(response, "code").map(str::trim).filter(|c| !c.is_empty());
        match (progress, code) {
            (Some(mut progress), Some(code)) => {
                let bound_to = binding(cx.stage.stage_id, account.id, &progress.nonce, &progress.address);
                let candidates =
                    Candidates { sent: Some(SentAnswer { sent: &mut progress.sent, binding: &bound_to }), ..Candidates::default() };
                match verify::check_answer(cx.state, &account, code, candidates).await? {
                    Checked::Right(_) => {
                        let address = Email::parse(&progress.address).map_err(|_| Error::internal("a kept address no longer parses"))?;
                        let actor = acting_for_itself(cx, account);
                        match otp_devices::enrol_email(cx.state, &actor, cx.stage.stage_id, &progress.nonce, &address).await {
                            Ok(_) => {}
                            Err(Error::Validation(errors)) => return Ok(Step::Invalid(errors)),
                            Err(other) => return Err(other),
                        }
                        cx.set_stage_state::<Progress>(None);
                        // The code proved the mailbox at hand, as answering a validation stage would.
                        cx.record_factor(FactorKind::Email);
                        Ok(Step::Passed)
                    }
                    Checked::Refused { message, new_code_needed } => {
                        cx.set_stage_state((!new_code_needed).then_some(&progress));
                        Ok(Step::Invalid(FieldErrors::single("code", message)))
                    }
                }
            }
            (Some(_), None) => Ok(Step::Invalid(FieldErrors::single("code", "This field is required."))),
            (None, Some(_)) => Ok(Step::Invalid(FieldErrors::single("code", "Ask for a code first."))),
            (None, None) => {
                let Ok(address) = Email::parse(&account.email) else {
                    return Ok(Step::Invalid(FieldErrors::single("email", "This account has no e-mail address to send a code to.")));
                };
                let reservation = match delivery::reserve_send(cx.state, &account, cx.client, Destination::Address(&address)).await? {
                    Ok(reservation) => reservation,
                    Err(message) => return Ok(Step::Invalid(FieldErrors::single("email", message))),
                };
                let nonce = crate::secret::random_token(24);
                let bound_to = binding(cx.stage.stage_id, account.id, &nonce, address.as_str());
                match delivery::send_email_code(cx.state, reservation, &settings, &account, cx.client, &address, &bound_to).await? {
                    Ok(sent) => {
                        let progress = Progress { user: account.id, address: address.as_str().to_owned(), nonce, sent };
                        cx.set_stage_state(Some(&progress));
                        Ok(Step::Challenge(prompt(cx, &account, Some(&progress))))
                    }
                    Err(message) => Ok(Step::Invalid(FieldErrors::single("email", message))),
                }
            }
        }
    }
}

/// The question: whether to send the code, or the code that was sent.
fn prompt(cx: &StageContext<'_>, account: &user::Model, sent: Option<&Progress>) -> Prompt {
    let mut fields = pending_user_fields(cx);
    let shown = sent.map(|p| p.address.as_str()).unwrap_or(account.email.as_str());
    fields.insert("email".into(), json!(email::masked(shown)));
    // authentik asks accounts without an address for one; here every account has one.
    fields.insert("email_required".into(), json!(false));
    let form = match sent {
        Some(progress) => Form {
            intro: Some(format!("Enter the code we sent to {}.", email::masked(&progress.address))),
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
            ..Form::default()
        },
        None => Form {
            intro: Some(format!("We will send a code to {}.", email::masked(&account.email))),
            submit: "Send code".into(),
            ..Form::default()
        },
    };
    Prompt { fields, form }
}
