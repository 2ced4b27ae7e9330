//! Sending a code and judging the answer, under the limits on both: sends are limited per
//! account, per destination and per client address (every message costs money); wrong answers
//! count per account across every device and flow, reserved before the comparison so that
//! concurrent guesses and other processes cannot slip past the limit.

use gatehouse_types::PhoneNumber;
use serde_json::json;

use super::codes::{Answer, SentCode};
use super::sms::{self, SmsStageSettings};
use crate::accounts::entities::user;
use crate::credentials::attempts::{self, Bucket};
use crate::error::{Error, Result, try_again_in};
use crate::events::client::ClientInfo;
use crate::events::{self, Action, EventRecord};
use crate::state::AppState;

/// Codes one account may be sent in an hour.
pub const SENDS_PER_ACCOUNT_HOUR: u32 = 10;
/// Codes one number or address may be sent in an hour.
pub const SENDS_PER_DESTINATION_HOUR: u32 = 10;
/// Codes one client address may have sent in an hour.
pub const SENDS_PER_CLIENT_ADDRESS_HOUR: u32 = 30;

/// What a person is told when the provider did not take the message; the provider's answer goes
/// to the audit trail only.
pub const COULD_NOT_SEND: &str = "We could not send the code. Try again later.";

/// Sends a new code bound to `binding` to `to` for `account`. `Ok(Err(message))` when it was not
/// sent: too many sends (nothing counted then) or the provider refused (recorded as a
/// `configuration_error` event).
pub async fn send_sms_code(
    state: &AppState,
    settings: &SmsStageSettings,
    account: &user::Model,
    client: &ClientInfo,
    to: &PhoneNumber,
    binding: &str,
) -> Result<std::result::Result<SentCode, String>> {
    let destination = state.secret.digest("code-destination", to.as_str().as_bytes());
    let buckets = vec![
        Bucket::code_sends_for_account(account.id, SENDS_PER_ACCOUNT_HOUR),
        Bucket::code_sends_to(&destination, SENDS_PER_DESTINATION_HOUR),
        Bucket::code_sends_from(client.ip, SENDS_PER_CLIENT_ADDRESS_HOUR),
    ];
    let reservation = match attempts::reserve(&state.db, state.tenant, state.clock.now(), buckets).await {
        Ok(reservation) => reservation,
        Err(Error::RateLimited { retry_after_secs }) => {
            return Ok(Err(format!("Too many codes were sent. {}", try_again_in(retry_after_secs))));
        }
        Err(other) => return Err(other),
    };
    let (code, sent) = super::codes::new_code(&state.secret, binding, chrono::Utc::now());
    let timeout = state.config.sms.send_timeout.to_std();
    match sms::send(settings, &state.config.sms.twilio_base_url, timeout, to, &code).await {
        Ok(()) => {
            // The send stays counted.
            drop(reservation);
            tracing::info!(to = %sms::masked(to.as_str()), user = account.id, "sent a one-time code");
            Ok(Ok(sent))
        }
        Err(failure) => {
            reservation.release(&state.db).await?;
            tracing::warn!(to = %sms::masked(to.as_str()), status = ?failure.status, "the SMS provider did not take a message");
            let event = EventRecord::new(Action::ConfigurationError)
                .by(account)
                .from_client(client)
                .with("message", json!("Error sending SMS"))
                .with("status_code", json!(failure.status))
                .with("response", json!(failure.detail));
            events::service::record(&state.db, state, event).await?;
            Ok(Err(COULD_NOT_SEND.to_owned()))
        }
    }
}

/// How an answer to a code went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Right,
    /// Wrong, expired or spent: the message says which, and whether to ask for a new code.
    Refused {
        message: String,
        new_code_needed: bool,
    },
}

/// Judges `answer` to `sent` for `account`, counting a wrong answer toward the account's limit
/// before comparing.
pub async fn check_code(state: &AppState, account: &user::Model, sent: &mut SentCode, binding: &str, answer: &str) -> Result<Checked> {
    let reservation = match attempts::reserve(&state.db, state.tenant, state.clock.now(), vec![Bucket::code_guesses(account.id)]).await {
        Ok(reservation) => reservation,
        Err(Error::RateLimited { retry_after_secs }) => {
            let message = format!("Too many wrong codes. {}", try_again_in(retry_after_secs));
            return Ok(Checked::Refused { message, new_code_needed: false });
        }
        Err(other) => return Err(other),
    };
    match sent.answer(&state.secret, binding, answer, chrono::Utc::now()) {
        Answer::Right => {
            reservation.settle_success_now(&state.db).await?;
            Ok(Checked::Right)
        }
        Answer::Wrong => {
            drop(reservation);
            Ok(Checked::Refused { message: "Code does not match.".into(), new_code_needed: false })
        }
        Answer::WrongAndSpent => {
            drop(reservation);
            Ok(Checked::Refused {
                message: "Code does not match; too many wrong answers, so a new code is needed.".into(),
                new_code_needed: true,
            })
        }
        Answer::Expired => {
            reservation.release(&state.db).await?;
            Ok(Checked::Refused { message: "This code has expired; a new code is needed.".into(), new_code_needed: true })
        }
    }
}
