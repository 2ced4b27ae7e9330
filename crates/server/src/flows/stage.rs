//! What a stage is to the executor: a kind that asks one question and judges the answer. Kinds
//! register in a [`StageRegistry`]; the executor knows nothing about any particular kind, so a
//! stage added later plugs in without changing it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::run::{FlowContext, FlowInfo, PlannedStage};
use crate::accounts::entities::user;
use crate::credentials::cache::AuthContext;
use crate::error::{FieldErrors, Result};
use crate::events::client::ClientInfo;
use crate::sessions::service::NewSession;
use crate::state::AppState;

/// One kind of stage: its names as authentik spells them, its settings, and its behaviour.
#[async_trait::async_trait]
pub trait StageKind: Send + Sync + 'static {
    /// Stable identifier stored with each stage and used in API paths (`/stages/{kind}/`).
    fn kind(&self) -> &'static str;
    /// The challenge component, such as `ak-stage-identification`.
    fn component(&self) -> &'static str;
    /// Human name, such as `Identification Stage`.
    fn verbose_name(&self) -> &'static str;
    /// authentik's `app_label.modelname`, which clients use to tell kinds apart.
    fn meta_model_name(&self) -> &'static str;
    /// Parses settings sent by an administrator or an import, filling in defaults. Errors name
    /// the field; a partial update passes the stored settings with the changes merged in.
    fn parse_settings(&self, settings: Map<String, Value>) -> Result<Value, FieldErrors>;
    /// Called when the stage becomes current (and again after an invalid response): either asks
    /// its question or finishes without one.
    async fn enter(&self, cx: &mut StageContext<'_>) -> Result<Step>;
    /// Judges the answer to the question [`StageKind::enter`] asked.
    async fn solve(&self, cx: &mut StageContext<'_>, response: &Map<String, Value>) -> Result<Step>;
    /// The kind's path under `/api/v3/stages/`, as authentik spells it (`authenticator/sms`).
    fn api_path(&self) -> &'static str {
        self.kind()
    }
    /// Settings fields that hold secrets: never shown by the API or written to exports; a
    /// partial update that leaves them out keeps them.
    fn write_only(&self) -> &'static [&'static str] {
        &[]
    }
    /// Adds the read-only fields a kind shows beside its settings (such as authentik's `*_obj`
    /// expansions); the write-only ones are removed before.
    fn add_read_only_settings(&self, _settings: &mut Map<String, Value>) {}
    /// Checks parsed settings against what only the server's data can tell (that an object of
    /// another part of the server they name exists), adding errors by field. It reads through
    /// `txn`, the transaction that will store the stage: a read through the pool would wait for
    /// a second connection while the transaction holds one (SQLite's pool has one).
    async fn check_settings(
        &self,
        _txn: &sea_orm::DatabaseTransaction,
        _state: &AppState,
        _settings: &Value,
        _errors: &mut FieldErrors,
    ) -> Result<()> {
        Ok(())
    }
    /// Adds the read-only fields that need the server's data, such as the object a setting names
    /// (authentik's `*_obj`).
    async fn expand_settings(&self, _state: &AppState, _settings: &mut Map<String, Value>) -> Result<()> {
        Ok(())
    }
    /// Settings with every field filled in, from which the API's schema is read.
    fn example_settings(&self) -> Value {
        self.parse_settings(Map::new()).unwrap_or_default()
    }
    /// Settings fields that name another stage by id. The administration checks them, exports
    /// write them as the other stage's name, and deleting the named stage clears them.
    fn references(&self) -> &'static [StageReference] {
        &[]
    }
    /// Settings fields that name a webhook mapping (authentik's `NotificationWebhookMapping`),
    /// which must exist when the settings are saved.
    fn mapping_references(&self) -> &'static [&'static str] {
        &[]
    }
    /// Settings fields that list other stages by id: each must exist and be of the target kind,
    /// and deleting one takes it off the list. (Exports write these ids as they are.)
    fn list_references(&self) -> &'static [StageReference] {
        &[]
    }
}

/// A settings field that names another stage, which must be of one of `target_kinds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageReference {
    pub field: &'static str,
    pub target_kinds: &'static [&'static str],
}

/// What a stage decided.
#[derive(Debug)]
pub enum Step {
    /// Ask this, and wait for the answer.
    Challenge(Prompt),
    /// Done; go on with the next stage.
    Passed,
    /// Done; go on with these stages, then with the rest of the plan (as authentik's validation
    /// stage sends someone without a device to a setup stage).
    PassedThen(Vec<PlannedStage>),
    /// The answer was not good enough; the executor asks again or restarts, as the binding says.
    Invalid(FieldErrors),
    /// The flow ends here with this message.
    Denied(String),
}

/// A question: the challenge's own fields for JSON clients, and the form people see.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// Challenge fields besides `component`, `flow_info` and `response_errors`.
    pub fields: Map<String, Value>,
    pub form: Form,
}

/// A form on the flow page. Every stage describes its question this way, so one template renders
/// every stage, including ones added later.
#[derive(Debug, Clone, Default)]
pub struct Form {
    /// A line above the inputs, such as who is signing in.
    pub intro: Option<String>,
    pub inputs: Vec<Input>,
    pub submit: String,
    /// Links under the form: label and same-origin path.
    pub links: Vec<(String, String)>,
    /// Text shown as a QR code above the inputs, such as an `otpauth://` address to scan.
    pub qr_code: Option<String>,
    /// Lines shown as a list in a fixed-width font, such as a key to type or recovery codes.
    pub listing: Vec<String>,
}

/// One form input.
#[derive(Debug, Clone)]
pub struct Input {
    /// The response field it fills.
    pub name: &'static str,
    pub label: String,
    pub kind: InputKind,
    /// The HTML `autocomplete` token, such as `username` or `current-password`.
    pub autocomplete: &'static str,
    pub value: String,
    pub required: bool,
    pub autofocus: bool,
}

/// What sort of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Text,
    Email,
    Password,
    Checkbox,
    /// A short numeric code typed by hand.
    Code,
    /// A value the page carries back unseen, such as a token the answer must echo.
    Hidden,
}

impl InputKind {
    /// The HTML `type` attribute.
    pub fn html_type(self) -> &'static str {
        match self {
            InputKind::Text | InputKind::Code => "text",
            InputKind::Email => "email",
            InputKind::Password => "password",
            InputKind::Checkbox => "checkbox",
            InputKind::Hidden => "hidden",
        }
    }
}

/// Something a stage did that the HTTP layer must carry to the client.
#[derive(Debug)]
pub enum Effect {
    /// A session started: set its cookies. `persistent` false makes it end with the browser.
    SignedIn { session: Box<NewSession>, persistent: bool },
    /// The caller's session ended: clear its cookies.
    SignedOut,
    /// The browser should remember a second factor: keep `token` for `max_age_secs`.
    RememberDevice { token: String, max_age_secs: i64 },
}

/// What a stage may read and change while it runs.
pub struct StageContext<'a> {
    pub state: &'a AppState,
    /// The run's identity, the same from its first page to its end.
    pub run_id: uuid::Uuid,
    pub flow: &'a FlowInfo,
    /// The stage as planned: its id, name, kind and settings.
    pub stage: &'a PlannedStage,
    pub context: &'a mut FlowContext,
    pub client: &'a ClientInfo,
    /// The caller's current session, if they are signed in.
    pub current: Option<Arc<AuthContext>>,
    pub effects: &'a mut Vec<Effect>,
    /// The pending user's account as last loaded in this request, shared by its stages.
    pub account: &'a mut Option<user::Model>,
    /// Whether an account has a device it can sign in with, once a stage of this request found
    /// out: `(account id, answer)`.
    pub sign_in_device: &'a mut Option<(i64, bool)>,
    /// The browser's remembered second factor, as its cookie holds it.
    pub remembered_device: Option<&'a str>,
}

impl StageContext<'_> {
    /// The pending user's account (`None` for unknown identifiers), loaded at most once per
    /// request.
    pub async fn pending_account(&mut self) -> Result<Option<user::Model>> {
        let Some(id) = self.context.pending_user else { return Ok(None) };
        if let Some(account) = self.account.as_ref().filter(|a| a.id == id) {
            return Ok(Some(account.clone()));
        }
        let account = crate::accounts::users::find_user(&self.state.db, self.state.tenant, id).await?;
        self.account.clone_from(&account);
        Ok(account)
    }

    /// Whether `user` has a device it can sign in with ([`crate::mfa::devices::has_sign_in_device`]):
    /// what a validation stage of this request found when it listed the devices, or else the
    /// database's answer. That finding is a snapshot from earlier in the request: no later stage
    /// of the same request can have added a device, since a setup stage adds one only when it
    /// is answered, which is the first thing a request does (another request adding one
    /// meanwhile is the same race as asking the database a moment before the session starts).
    pub async fn has_sign_in_device(&self, user: i64) -> Result<bool> {
        match *self.sign_in_device {
            Some((known, answer)) if known == user => Ok(answer),
            _ => crate::mfa::devices::has_sign_in_device(self.state, user).await,
        }
    }

    /// Notes whether `user` has a device it can sign in with, as a stage just read it.
    pub fn note_sign_in_device(&mut self, user: i64, answer: bool) {
        *self.sign_in_device = Some((user, answer));
    }

    /// Records that `kind` was verified for the pending user by this stage.
    pub fn record_factor(&mut self, kind: super::factors::FactorKind) {
        if let Some(user) = self.context.pending_user {
            let factor = super::factors::VerifiedFactor { kind, user, stage: self.stage.stage_id, at: chrono::Utc::now() };
            self.context.factors.push(factor);
        }
    }

    /// Makes `account` the pending user.
    pub fn set_pending_account(&mut self, account: user::Model) {
        self.context.pending_user = Some(account.id);
        *self.account = Some(account);
    }

    /// What this stage kept in the run (such as a code it sent), under the stage's id: `None`
    /// when it kept nothing, or kept something this version cannot read.
    pub fn stage_state<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_value(self.context.extra.get(&self.state_key())?.clone()).ok()
    }

    /// Keeps `state` in the run for this stage, or forgets what it kept with `None`.
    pub fn set_stage_state<T: Serialize>(&mut self, state: Option<&T>) {
        let key = self.state_key();
        match state.and_then(|state| serde_json::to_value(state).ok()) {
            Some(value) => self.context.extra.insert(key, value),
            None => self.context.extra.remove(&key),
        };
    }

    fn state_key(&self) -> String {
        format!("stage:{}", self.stage.stage_id)
    }

    /// The stage's settings as their typed form. Stored settings were parsed on the way in, so a
    /// failure here means the row was changed behind the API's back.
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.stage.settings.clone())
            .map_err(|e| crate::error::Error::internal(format!("stage {} has unreadable settings: {e}", self.stage.stage_id)))
    }
}

/// Parses `settings` into `T` (defaults filled in, unknown fields refused) and back to JSON, with
/// errors by field: the common part of every [`StageKind::parse_settings`].
pub fn parse_typed<T: DeserializeOwned + Serialize>(settings: Map<String, Value>) -> Result<(T, Value), FieldErrors> {
    let bytes =
        serde_json::to_vec(&Value::Object(settings)).map_err(|e| FieldErrors::single(crate::error::NON_FIELD_ERRORS, e.to_string()))?;
    let typed: T = crate::json::parse(&bytes).map_err(|error| match error {
        crate::error::Error::Validation(errors) => errors,
        other => FieldErrors::single(crate::error::NON_FIELD_ERRORS, other.to_string()),
    })?;
    let value = serde_json::to_value(&typed).map_err(|e| FieldErrors::single(crate::error::NON_FIELD_ERRORS, e.to_string()))?;
    Ok((typed, value))
}

/// The stage kinds this server knows, by kind.
#[derive(Default, Clone)]
pub struct StageRegistry {
    kinds: BTreeMap<&'static str, Arc<dyn StageKind>>,
}

impl StageRegistry {
    /// The kinds Gatehouse ships.
    pub fn builtin() -> Self {
        let mut registry = Self::default();
        registry.add(super::stages::identification::Identification);
        registry.add(super::stages::password::PasswordStage);
        registry.add(super::stages::user_login::UserLogin);
        registry.add(super::stages::user_logout::UserLogout);
        registry.add(super::stages::deny::Deny);
        registry.add(super::stages::authenticator_sms::AuthenticatorSms);
        registry.add(super::stages::authenticator_totp::AuthenticatorTotp);
        registry.add(super::stages::authenticator_email::AuthenticatorEmail);
        registry.add(super::stages::authenticator_static::AuthenticatorStatic);
        registry.add(super::stages::authenticator_validate::AuthenticatorValidate);
        registry.add(super::stages::consent::Consent);
        registry
    }

    /// Adds a kind (replacing one of the same name).
    pub fn add(&mut self, kind: impl StageKind) {
        self.kinds.insert(kind.kind(), Arc::new(kind));
    }

    /// The kind named `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn StageKind>> {
        self.kinds.get(kind)
    }

    /// Every kind, by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn StageKind>> {
        self.kinds.values()
    }

    /// The settings fields of `kind` that name other stages (none for unknown kinds).
    pub fn references_of(&self, kind: &str) -> &'static [StageReference] {
        self.get(kind).map(|k| k.references()).unwrap_or(&[])
    }

    /// Every settings field, with the kind holding it, that names stages of `target_kind`.
    pub fn references_to<'a>(&'a self, target_kind: &'a str) -> impl Iterator<Item = (&'static str, &'static StageReference)> + 'a {
        self.kinds.values().flat_map(move |kind| {
            let holder = kind.kind();
            kind.references().iter().filter(move |r| r.target_kinds.contains(&target_kind)).map(move |r| (holder, r))
        })
    }
}

impl StageRegistry {
    /// Every list field, with the kind holding it, that names stages of `target_kind`.
    pub fn list_references_to<'a>(&'a self, target_kind: &'a str) -> impl Iterator<Item = (&'static str, &'static StageReference)> + 'a {
        self.kinds.values().flat_map(move |kind| {
            let holder = kind.kind();
            kind.list_references().iter().filter(move |r| r.target_kinds.contains(&target_kind)).map(move |r| (holder, r))
        })
    }
}

/// Reads a response field as text: absent and `null` are `None`.
pub fn text_field<'a>(response: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    response.get(name).and_then(Value::as_str)
}

/// Reads a response field as a flag: JSON booleans, and the `on`/`true` a form sends.
pub fn flag_field(response: &Map<String, Value>, name: &str) -> bool {
    match response.get(name) {
        Some(Value::Bool(value)) => *value,
        Some(Value::String(text)) => matches!(text.as_str(), "on" | "true" | "1"),
        _ => false,
    }
}
