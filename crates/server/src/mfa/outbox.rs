//! Codes leave through the task queue. The request that asks for a code seals a letter (the
//! destination, the code and the provider's settings) into a task and waits a short while for
//! the first attempt, so that a refusal is told at once; a worker hands the letter to the
//! provider at most once, whatever retries, crashes and rescues happen around it; past the wait
//! the queue carries on alone, retrying what a provider asked to try later while the code is
//! still valid.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gatehouse_types::{Email, PhoneNumber};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::codes::{FailureKind, SendFailure};
use super::email::{self, EmailStageSettings};
use super::entities::code_handover;
use super::sms::{self, SmsStageSettings};
use crate::db::text_enum::text_enum;
use crate::error::{Error, Result};
use crate::events::client::ClientInfo;
use crate::events::{self, Action, EventRecord};
use crate::state::AppState;
use crate::tasks::actors::{Actor, ActorResult, TaskContext, TaskError};
use crate::tasks::model::TaskState;
use crate::tasks::queue::{self, Enqueue};
use crate::tenants::TenantId;

/// The actor that sends codes.
pub const ACTOR: &str = "gatehouse.send_code";
/// What a letter is sealed for.
const SEAL_PURPOSE: &str = "code-letter";
/// How much longer than the provider's own timeout a request waits for the first attempt: the
/// time a worker takes to claim the task and record its outcome.
pub const FIRST_ATTEMPT_MARGIN: Duration = Duration::from_secs(2);
/// The longest pause between two looks at the task while a request waits.
const LONGEST_POLL: Duration = Duration::from_millis(50);

/// Everything a worker needs to send one code, sealed with the server secret while it waits in
/// the queue (the task's arguments are visible to whoever may read tasks).
#[derive(Debug, Serialize, Deserialize)]
pub struct Letter {
    /// The account the code is for.
    pub account: i64,
    /// Where the person asked from, for the audit trail.
    pub client_ip: Option<IpAddr>,
    pub user_agent: String,
    /// When the code stops being accepted: a letter still queued then is not sent.
    pub valid_until: DateTime<Utc>,
    pub message: Message,
}

/// A code and how it travels.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Message {
    /// A text message through the stage's provider; `payload` already holds the code (and what
    /// the webhook mapping made of it).
    Sms { settings: SmsStageSettings, to: String, payload: Map<String, Value> },
    /// An e-mail through the stage's relay (or the server's).
    Email { settings: EmailStageSettings, to: String, code: String, valid_for_secs: i64 },
}

impl Letter {
    /// A letter carrying `message` for `account`, asked for from `client`, worth sending until
    /// `valid_until`.
    pub fn new(
        account: &crate::accounts::entities::user::Model,
        client: &ClientInfo,
        valid_until: DateTime<Utc>,
        message: Message,
    ) -> Self {
        Self { account: account.id, client_ip: client.ip, user_agent: client.user_agent.clone(), valid_until, message }
    }
}

impl Message {
    /// The provider's own timeout: the first attempt cannot take much longer.
    fn timeout(&self, state: &AppState) -> Duration {
        match self {
            Message::Sms { .. } => state.config.sms.send_timeout.to_std(),
            Message::Email { settings, .. } => settings.relay(&state.config.email).timeout,
        }
    }
}

/// The arguments of [`ACTOR`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendCodeArgs {
    /// A sealed [`Letter`].
    pub letter: String,
}

/// What became of a letter while the request waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatched {
    /// The provider took it.
    Delivered,
    /// The provider surely did not take it, and nothing more will be tried; the worker recorded
    /// why.
    NotDelivered,
    /// Still on its way when the wait ended (the queue carries on), or handed to a provider that
    /// never said whether it took it: the code may arrive, so it is kept.
    Pending,
}

/// Queues `letter` and waits for its first attempt, at most the provider's timeout and
/// [`FIRST_ATTEMPT_MARGIN`]. A first attempt that failed and was set to retry is withdrawn, since
/// the person is told it failed: a code they were told was not sent never arrives later.
pub async fn dispatch(state: &AppState, letter: &Letter) -> Result<Dispatched> {
    let plain = serde_json::to_vec(letter).map_err(|e| Error::internal(format!("a letter does not serialise: {e}")))?;
    let sealed = state.secret.seal(SEAL_PURPOSE, b"", &plain)?;
    let request = Enqueue { actor: ACTOR.into(), args: json!({"letter": sealed}), ..Enqueue::default() };
    let task = queue::send(state, state.tenant, request).await?;
    let deadline = tokio::time::Instant::now() + letter.message.timeout(state) + FIRST_ATTEMPT_MARGIN;
    let mut pause = Duration::from_millis(2);
    loop {
        tokio::time::sleep_until(std::cmp::min(tokio::time::Instant::now() + pause, deadline)).await;
        pause = std::cmp::min(pause * 2, LONGEST_POLL);
        match queue::progress_of(&state.db, state.tenant, task.message_id).await? {
            Some((TaskState::Done, _)) => return Ok(Dispatched::Delivered),
            Some((TaskState::Rejected, _)) | None => {
                return Ok(match handover_of(&state.db, task.message_id).await? {
                    Some(Handover::HandingOver | Handover::HandedOver) => Dispatched::Pending,
                    Some(Handover::Refused | Handover::Withdrawn) | None => Dispatched::NotDelivered,
                });
            }
            // Withdrawn first, so that a worker claiming the retry meanwhile refuses to send it
            // (and an administrator's retry of the task later too).
            Some((TaskState::Queued, retries))
                if retries > 0 && move_handover(&state.db, task.message_id, Some(Handover::Refused), Handover::Withdrawn).await? =>
            {
                let reason = "Withdrawn: the person was told the code could not be sent";
                queue::withdraw(state, state.tenant, task.message_id, reason).await?;
                return Ok(Dispatched::NotDelivered);
            }
            Some(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(Dispatched::Pending);
        }
    }
}

/// [`ACTOR`], retried while a provider asks to try later.
pub fn actor() -> Actor {
    Actor::new(ACTOR, send_code).retries(5).time_limit(Duration::from_secs(120))
}

text_enum!(
    /// How far a task got in handing its code to the provider: `handing_over` while it sends or
    /// when an attempt ended without knowing whether the provider took the code, `refused` when
    /// the provider surely did not (another attempt may send it), `handed_over` once it did, and
    /// `withdrawn` when the person was told it failed (no attempt may send it any more).
    Handover {
        HandingOver => "handing_over",
        Refused => "refused",
        HandedOver => "handed_over",
        Withdrawn => "withdrawn",
    }
);

/// Sends the letter of one task, once.
async fn send_code(context: TaskContext, args: SendCodeArgs) -> ActorResult {
    let state = &context.state;
    let letter: Letter = state
        .secret
        .open(SEAL_PURPOSE, b"", &args.letter)
        .ok()
        .and_then(|plain| serde_json::from_slice(&plain).ok())
        .ok_or_else(|| TaskError::Fatal("the letter does not open with this server's secret".into()))?;
    if Utc::now() >= letter.valid_until {
        return Err(TaskError::Fatal("the code expired before it could be sent; it is not sent".into()));
    }
    if !start_handover(&state.db, context.tenant, context.message_id).await? {
        return Err(TaskError::Fatal("an earlier attempt may have handed this code to the provider; it is not sent twice".into()));
    }
    let (medium, to, outcome) = match &letter.message {
        Message::Sms { settings, to, payload } => {
            let number = PhoneNumber::parse(to).map_err(|_| TaskError::Fatal("the letter's number does not parse".into()))?;
            let timeout = state.config.sms.send_timeout.to_std();
            ("SMS", sms::masked(to), sms::send(settings, &state.config.sms.twilio_base_url, timeout, &number, payload.clone()).await)
        }
        Message::Email { settings, to, code, valid_for_secs } => {
            let address = Email::parse(to).map_err(|_| TaskError::Fatal("the letter's address does not parse".into()))?;
            let valid_for = chrono::TimeDelta::seconds(*valid_for_secs);
            let relay = settings.relay(&state.config.email);
            ("Email", email::masked(to), email::send(&relay, &settings.subject, &address, code, valid_for).await)
        }
    };
    match outcome {
        Ok(()) => {
            tracing::info!(to = %to, medium, user = letter.account, "sent a one-time code");
            // The code is out: a failure to note it must not make the task fail and be retried
            // or withdrawn (the hand-over left as it is still stops any other attempt).
            if let Err(error) = move_handover(&state.db, context.message_id, None, Handover::HandedOver).await {
                tracing::warn!(%error, "could not record that a code was handed over");
            }
            if let Err(error) = context.log("info", "Code sent", json!({"medium": medium, "to": to})).await {
                tracing::warn!(%error, "could not log that a code was sent");
            }
            Ok(None)
        }
        Err(failure) => {
            if failure.kind != FailureKind::Unknown {
                move_handover(&state.db, context.message_id, None, Handover::Refused).await?;
            }
            tracing::warn!(to = %to, medium, status = ?failure.status, kind = ?failure.kind, "the provider did not take a message");
            record_failure(state, context.tenant, &letter, medium, &failure).await?;
            let why = match failure.status {
                Some(status) => format!("the provider did not take the message (status {status})"),
                None => format!("the provider did not take the message ({})", super::delivery::mask_personal(&failure.detail)),
            };
            match failure.kind {
                FailureKind::Transient => Err(TaskError::Failed(why)),
                FailureKind::Refused | FailureKind::Unknown => Err(TaskError::Fatal(why)),
            }
        }
    }
}

/// Records a provider's refusal as a `configuration_error` event of the account, from where the
/// person asked, with the provider's answer shortened and masked.
async fn record_failure(state: &AppState, tenant: TenantId, letter: &Letter, medium: &str, failure: &SendFailure) -> Result<()> {
    let client = ClientInfo { ip: letter.client_ip, user_agent: letter.user_agent.clone(), known_browser: None };
    let mut event = EventRecord::new(Action::ConfigurationError)
        .from_client(&client)
        .with("message", json!(format!("Error sending {medium}")))
        .with("status_code", json!(failure.status))
        .with("response", json!(super::delivery::mask_personal(&failure.detail)));
    if let Some(account) = crate::accounts::users::find_user(&state.db, tenant, letter.account).await? {
        event = event.by(&account);
    }
    events::service::record(&state.db, state, event).await?;
    Ok(())
}

/// Marks that the task `message_id` is handing its code over; `false` when an earlier attempt
/// did, or may have: only an attempt the provider surely refused may be followed by another.
async fn start_handover(db: &impl ConnectionTrait, tenant: TenantId, message_id: Uuid) -> Result<bool> {
    let insert = Query::insert()
        .into_table(code_handover::Entity)
        .columns([
            code_handover::Column::MessageId,
            code_handover::Column::TenantId,
            code_handover::Column::State,
            code_handover::Column::LastUpdated,
        ])
        .values_panic([message_id.into(), tenant.0.into(), Handover::HandingOver.into(), Utc::now().into()])
        .on_conflict(OnConflict::column(code_handover::Column::MessageId).do_nothing().to_owned())
        .to_owned();
    if db.execute(&insert).await?.rows_affected() == 1 {
        return Ok(true);
    }
    move_handover(db, message_id, Some(Handover::Refused), Handover::HandingOver).await
}

/// How far the task `message_id` got in handing its code over, if it started.
async fn handover_of(db: &impl ConnectionTrait, message_id: Uuid) -> Result<Option<Handover>> {
    let found = code_handover::Entity::find_by_id(message_id).one(db).await?;
    Ok(found.and_then(|row| Handover::parse(&row.state)))
}

/// Moves the hand-over of `message_id` to `to`, only from `from` when given; whether it moved.
async fn move_handover(db: &impl ConnectionTrait, message_id: Uuid, from: Option<Handover>, to: Handover) -> Result<bool> {
    let mut update = code_handover::Entity::update_many()
        .col_expr(code_handover::Column::State, Expr::val(to))
        .col_expr(code_handover::Column::LastUpdated, Expr::val(Utc::now()))
        .filter(code_handover::Column::MessageId.eq(message_id));
    if let Some(from) = from {
        update = update.filter(code_handover::Column::State.eq(from));
    }
    Ok(update.exec(db).await?.rows_affected == 1)
}
