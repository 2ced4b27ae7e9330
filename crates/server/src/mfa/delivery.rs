//! Making a code, sending it (through [`outbox`]) and judging the answer, under the limits on
//! both: sends are limited per account, per destination and per client address (every message
//! costs money); wrong answers count per account across every device and flow, reserved before
//! the comparison so that concurrent guesses and other processes cannot slip past the limit.

use gatehouse_types::{Email, PhoneNumber};
use serde_json::{Map, Value, json};

use super::codes::SentCode;
use super::email::{self, EmailStageSettings};
use super::outbox::{self, Dispatched, Letter, Message};
use super::sms::{self, SmsStageSettings};
use crate::accounts::entities::user;
use crate::credentials::attempts::{self, Bucket, Reservation};
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

/// Where a code goes, for the limit per destination: a number typed while setting up a phone, or
/// an enrolled device at sign-in. They are counted apart, so that codes someone sends to a
/// number while pretending to set it up cannot use up its owner's codes for signing in.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    TypedNumber(&'a PhoneNumber),
    /// An account's address, while an e-mail authenticator is set up.
    Address(&'a Email),
    /// An enrolled phone.
    Device(i64),
    /// An enrolled e-mail authenticator.
    Mailbox(i64),
}

/// Counts one send for `account` to `destination` from `client`, before anything is checked
/// or sent; `Ok(Err(message))` when a limit is reached (nothing counted then).
pub async fn reserve_send(
    state: &AppState,
    account: &user::Model,
    client: &ClientInfo,
    destination: Destination<'_>,
) -> Result<std::result::Result<Reservation, String>> {
    let destination = match destination {
        Destination::TypedNumber(number) => state.secret.digest("code-destination", number.as_str().as_bytes()),
        Destination::Address(address) => state.secret.digest("code-destination", address.as_str().to_lowercase().as_bytes()),
        Destination::Device(id) => format!("device-{id}"),
        Destination::Mailbox(id) => format!("email-device-{id}"),
    };
    let buckets = vec![
        Bucket::code_sends_for_account(account.id, SENDS_PER_ACCOUNT_HOUR),
        Bucket::code_sends_to(&destination, SENDS_PER_DESTINATION_HOUR),
        Bucket::code_sends_from(client.ip, SENDS_PER_CLIENT_ADDRESS_HOUR),
    ];
    match attempts::reserve(&state.db, state.tenant, state.clock.now(), buckets).await {
        Ok(reservation) => Ok(Ok(reservation)),
        Err(Error::RateLimited { retry_after_secs }) => Ok(Err(format!("Too many codes were sent. {}", try_again_in(retry_after_secs)))),
        Err(other) => Err(other),
    }
}

/// Sends a new code bound to `binding` to `to` for `account` through the task queue (see
/// [`outbox`]), under a send `reservation` from [`reserve_send`]. `Ok(Err(message))` when the
/// mapping failed or the first attempt did (recorded as a `configuration_error` event; the send
/// is given back).
pub async fn send_sms_code(
    state: &AppState,
    reservation: Reservation,
    settings: &SmsStageSettings,
    account: &user::Model,
    client: &ClientInfo,
    to: &PhoneNumber,
    binding: &str,
) -> Result<std::result::Result<SentCode, String>> {
    let (code, sent) = super::codes::new_code(&state.secret, binding, chrono::Utc::now());
    let payload = sms::default_payload(settings, to, &code);
    let payload = match settings.mapping {
        None => payload,
        Some(mapping) => match mapped_payload(state, mapping, settings, account, client, to, &code, payload).await {
            Err(error) => {
                reservation.release(&state.db).await?;
                return Err(error);
            }
            Ok(Ok(mapped)) => mapped,
            Ok(Err(failure)) => {
                let event = EventRecord::new(Action::ConfigurationError)
                    .by(account)
                    .from_client(client)
                    .with("message", json!("Error evaluating the SMS webhook mapping"))
                    .with("mapping", json!(mapping))
                    .with("error", json!(mask_personal(&failure)));
                tracing::warn!(to = %sms::masked(to.as_str()), medium = "SMS", "a code was not sent: the webhook mapping failed");
                return give_back(state, reservation, event).await;
            }
        },
    };
    let letter =
        Letter::new(account, client, sent.valid_until(), Message::Sms { settings: settings.clone(), to: to.as_str().to_owned(), payload });
    Ok(settle(state, reservation, outbox::dispatch(state, &letter).await?).await?.map(|()| sent))
}

/// The payload the stage's webhook mapping makes of `payload`: its CEL expression sees `user`,
/// `device`, `code`, `stage`, `client` and `payload`, and must give an object. `Ok(Err(why))`
/// when the mapping is gone, fails or gives something else: then nothing is sent.
#[allow(clippy::too_many_arguments)]
async fn mapped_payload(
    state: &AppState,
    mapping: uuid::Uuid,
    settings: &SmsStageSettings,
    account: &user::Model,
    client: &ClientInfo,
    to: &PhoneNumber,
    code: &str,
    payload: Map<String, Value>,
) -> Result<std::result::Result<Map<String, Value>, String>> {
    let Some(found) = crate::mappings::service::find_webhook_mapping(&state.db, state.tenant, mapping).await? else {
        return Ok(Err("the webhook mapping no longer exists".into()));
    };
    let expression = crate::mappings::expression::Expression::stored(&found.expression);
    // Bounded, so that an expression repeating it cannot make much of a long header.
    let user_agent: String = client.user_agent.chars().take(256).collect();
    let variables = json!({
        "user": {"pk": account.id, "username": account.username, "email": account.email, "name": account.name},
        "device": {"phone_number": to.as_str()},
        "code": code,
        "stage": {"from_number": settings.from_number, "provider": settings.provider},
        "client": {"ip": client.ip.map(|ip| ip.to_string()), "user_agent": user_agent},
        "payload": payload,
    });
    Ok(match expression.evaluate(variables).await {
        Ok(Value::Object(mapped)) => Ok(mapped),
        Ok(_) => Err("the webhook mapping must give an object".into()),
        Err(why) => Err(why),
    })
}

/// Sends a new code bound to `binding` by e-mail to `to` for `account` as the e-mail stage's
/// `settings` say, under a send `reservation` from [`reserve_send`]; like [`send_sms_code`].
pub async fn send_email_code(
    state: &AppState,
    reservation: Reservation,
    settings: &EmailStageSettings,
    account: &user::Model,
    client: &ClientInfo,
    to: &Email,
    binding: &str,
) -> Result<std::result::Result<SentCode, String>> {
    let lifetime = settings.code_lifetime();
    let (code, sent) = super::codes::new_code_valid_for(&state.secret, binding, chrono::Utc::now(), lifetime);
    let letter = Letter::new(
        account,
        client,
        sent.valid_until(),
        Message::Email { settings: settings.clone(), to: to.as_str().to_owned(), code, valid_for_secs: lifetime.num_seconds() },
    );
    Ok(settle(state, reservation, outbox::dispatch(state, &letter).await?).await?.map(|()| sent))
}

/// Gives back a send that no provider took, records `event` (why), and says what the person is
/// told.
async fn give_back<T>(state: &AppState, reservation: Reservation, event: EventRecord) -> Result<std::result::Result<T, String>> {
    reservation.release(&state.db).await?;
    events::service::record(&state.db, state, event).await?;
    Ok(Err(COULD_NOT_SEND.to_owned()))
}

/// Keeps a send counted (and the code) unless the letter surely was not delivered: then the
/// send is given back (the worker recorded the provider's answer) and the person is told to try
/// later.
async fn settle(state: &AppState, reservation: Reservation, dispatched: Dispatched) -> Result<std::result::Result<(), String>> {
    match dispatched {
        Dispatched::Delivered | Dispatched::Pending => {
            // The send stays counted.
            drop(reservation);
            Ok(Ok(()))
        }
        Dispatched::NotDelivered => {
            reservation.release(&state.db).await?;
            Ok(Err(COULD_NOT_SEND.to_owned()))
        }
    }
}

/// `text` as the audit trail may keep it: runs of digits and e-mail addresses masked (providers
/// and the expression evaluator repeat numbers, addresses and values in their errors), at most
/// 200 characters.
pub fn mask_personal(text: &str) -> String {
    let masked: Vec<String> =
        mask_digit_runs(text)
            .split(' ')
            .map(|word| {
                if word.contains('@') { email::masked(word.trim_matches(|c: char| "<>()[]{},;:'\"".contains(c))) } else { word.to_owned() }
            })
            .collect();
    masked.join(" ").chars().take(200).collect()
}

/// `text` with every run of six or more digits masked: providers repeat the number in their
/// errors, and the audit trail keeps numbers masked like the logs.
fn mask_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 6 {
            out.push_str(&"•".repeat(run.len() - 2));
            out.push_str(&run[run.len() - 2..]);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_in_provider_answers_are_masked_and_the_text_shortened() {
        assert_eq!(
            super::mask_personal("550 5.1.1 <jane.doe@example.com>: Recipient address rejected"),
            "550 5.1.1 j…@example.com Recipient address rejected"
        );
        assert_eq!(super::mask_personal(&"x".repeat(500)).len(), 200);
    }

    #[test]
    fn numbers_in_provider_answers_are_masked() {
        assert_eq!(
            super::mask_digit_runs("The 'To' number +41446681800 is not valid (code 21211)"),
            "The 'To' number +•••••••••00 is not valid (code 21211)"
        );
    }
}
