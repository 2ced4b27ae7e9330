//! The authenticator validation stage: after the password, a person with a device proves they
//! hold it (a code sent by text message to one of their phones, a code of their authenticator
//! app, or one of their recovery codes). Without a device they are let through, refused, or sent
//! to set one up, as the stage says.

use gatehouse_types::{DurationString, Email, PhoneNumber};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::pending_user_fields;
use crate::accounts::entities::user;
use crate::error::{FieldErrors, NON_FIELD_ERRORS, Result};
use crate::flows::factors::{FactorKind, verified_for};
use crate::flows::model::InvalidResponseAction;
use crate::flows::run::PlannedStage;
use crate::flows::stage::{Effect, Form, Input, InputKind, Prompt, StageContext, StageKind, StageReference, Step, parse_typed, text_field};
use crate::mfa::codes::SentCode;
use crate::mfa::delivery::{self, Destination};
use crate::mfa::devices;
use crate::mfa::email::EmailStageSettings;
use crate::mfa::entities::{otp_device, sms_device};
use crate::mfa::otp_devices::{self, OtpKind};
use crate::mfa::remembered::Remembered;
use crate::mfa::sms::SmsStageSettings;
use crate::mfa::verify::{self, Candidates, Checked, Proof, SentAnswer};

/// What to do with someone who has no device of the allowed classes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotConfiguredAction {
    /// Let them through.
    #[default]
    Skip,
    /// End the flow.
    Deny,
    /// Send them to one of `configuration_stages`.
    Configure,
}

/// authentik's device classes. `sms`, `totp` and `static` are served; the others are refused in
/// settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceClass {
    Static,
    Totp,
    Webauthn,
    Duo,
    Sms,
    Email,
}

/// Settings of a validation stage, with authentik's names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidateSettings {
    pub not_configured_action: NotConfiguredAction,
    pub device_classes: Vec<DeviceClass>,
    /// Setup stages offered (or, when there is one, used) for `configure`.
    pub configuration_stages: Vec<Uuid>,
    /// How recently a device must have been proven in this browser, at this stage, by the same
    /// account, for the stage to pass without asking; `seconds=0` always asks.
    pub last_auth_threshold: DurationString,
    pub webauthn_user_verification: String,
    pub webauthn_hints: Vec<String>,
    pub webauthn_allowed_device_types: Vec<Uuid>,
    /// authentik's per-class factors on the delay between code attempts; Gatehouse's limits on
    /// wrong codes are its own, so only the neutral 1 is accepted.
    pub email_otp_throttling_factor: f64,
    pub sms_otp_throttling_factor: f64,
    pub totp_otp_throttling_factor: f64,
    pub static_otp_throttling_factor: f64,
}

impl Default for ValidateSettings {
    fn default() -> Self {
        Self {
            not_configured_action: NotConfiguredAction::Skip,
            device_classes: vec![DeviceClass::Sms],
            configuration_stages: Vec::new(),
            last_auth_threshold: DurationString::from_secs(0),
            webauthn_user_verification: "preferred".into(),
            webauthn_hints: Vec::new(),
            webauthn_allowed_device_types: Vec::new(),
            email_otp_throttling_factor: 1.0,
            sms_otp_throttling_factor: 1.0,
            totp_otp_throttling_factor: 1.0,
            static_otp_throttling_factor: 1.0,
        }
    }
}

/// How a code was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SentVia {
    /// By text message to a phone.
    #[default]
    Sms,
    /// By e-mail to an e-mail authenticator.
    Email,
}

/// A code this stage sent in this run: how, to which device, and the nonce that binds it to the
/// run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Progress {
    #[serde(default)]
    via: SentVia,
    device: i64,
    nonce: String,
    sent: SentCode,
}

/// What a code is bound to: this stage, account and device, and a nonce kept in this run only.
fn binding(stage: Uuid, user: i64, progress: &Progress) -> String {
    binding_of(stage, user, progress.via, progress.device, &progress.nonce)
}

fn binding_of(stage: Uuid, user: i64, via: SentVia, device: i64, nonce: &str) -> String {
    match via {
        SentVia::Sms => format!("sms-validate:{stage}:{user}:{device}:{nonce}"),
        SentVia::Email => format!("email-validate:{stage}:{user}:{device}:{nonce}"),
    }
}

/// What the stage says to someone without a device on a `deny` stage.
pub const NO_DEVICE: &str = "No authenticator is set up for this account; ask an administrator for help.";

/// Asks for a second factor.
pub struct AuthenticatorValidate;

#[async_trait::async_trait]
impl StageKind for AuthenticatorValidate {
    fn kind(&self) -> &'static str {
        "authenticator_validate"
    }
    fn api_path(&self) -> &'static str {
        "authenticator/validate"
    }
    fn component(&self) -> &'static str {
        "ak-stage-authenticator-validate"
    }
    fn verbose_name(&self) -> &'static str {
        "Authenticator Validation Stage"
    }
    fn meta_model_name(&self) -> &'static str {
        "authentik_stages_authenticator_validate.authenticatorvalidatestage"
    }

    fn list_references(&self) -> &'static [StageReference] {
        &[StageReference { field: "configuration_stages", target_kinds: super::AUTHENTICATOR_SETUP_KINDS }]
    }

    fn add_read_only_settings(&self, settings: &mut Map<String, Value>) {
        // The WebAuthn device types named, expanded; none can be named yet.
        settings.insert("webauthn_allowed_device_types_obj".into(), json!([]));
    }

    fn parse_settings(&self, settings: Map<String, Value>) -> Result<Value, FieldErrors> {
        let (typed, value): (ValidateSettings, Value) = parse_typed(settings)?;
        let mut errors = FieldErrors::new();
        if typed.device_classes.is_empty() {
            errors.add("device_classes", "Select at least one device class.");
        }
        if let Some(class) = typed.device_classes.iter().find(|c| !SERVED_CLASSES.contains(c)) {
            let name = serde_json::to_value(class).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            errors.add(
                "device_classes",
                format!("\"{name}\" devices are not supported by this server yet; \"sms\", \"email\", \"totp\" and \"static\" are."),
            );
        }
        if typed.last_auth_threshold.to_std() > LONGEST_THRESHOLD {
            errors.add("last_auth_threshold", "A device may be remembered for at most days=30.");
        }
        if !matches!(typed.webauthn_user_verification.as_str(), "required" | "preferred" | "discouraged") {
            errors.add("webauthn_user_verification", format!("\"{}\" is not a valid choice.", typed.webauthn_user_verification));
        }
        for (field, factor) in [
            ("email_otp_throttling_factor", typed.email_otp_throttling_factor),
            ("sms_otp_throttling_factor", typed.sms_otp_throttling_factor),
            ("totp_otp_throttling_factor", typed.totp_otp_throttling_factor),
            ("static_otp_throttling_factor", typed.static_otp_throttling_factor),
        ] {
            if factor != 1.0 {
                errors.add(field, "Only 1 is supported: the limits on wrong codes are the server's own (see the README).");
            }
        }
        if !typed.webauthn_hints.is_empty() {
            errors.add("webauthn_hints", "WebAuthn is not supported by this server yet; leave empty.");
        }
        if !typed.webauthn_allowed_device_types.is_empty() {
            errors.add("webauthn_allowed_device_types", "WebAuthn is not supported by this server yet; leave empty.");
        }
        if typed.not_configured_action == NotConfiguredAction::Configure && typed.configuration_stages.is_empty() {
            errors.add("configuration_stages", "Name at least one setup stage when not_configured_action is configure.");
        }
        if errors.is_empty() { Ok(value) } else { Err(errors) }
    }

    async fn enter(&self, cx: &mut StageContext<'_>) -> Result<Step> {
        let Some(account) = proven_account(cx).await? else {
            return Ok(Step::Denied("No pending user.".into()));
        };
        let settings: ValidateSettings = cx.settings()?;
        let devices = Devices::of(cx, account.id, &settings).await?;
        if devices.is_empty() {
            return not_configured(cx, &settings, None).await;
        }
        if let Some(factor) = remembered_factor(cx, &account, &settings, &devices) {
            cx.record_factor(factor);
            return Ok(Step::Passed);
        }
        let asking = match cx.stage_state::<Progress>() {
            Some(progress) => Asking::SentCode(progress.via),
            None => Asking::Any,
        };
        Ok(Step::Challenge(prompt(cx, &devices, asking)))
    }

    async fn solve(&self, cx: &mut StageContext<'_>, response: &Map<String, Value>) -> Result<Step> {
        let Some(account) = proven_account(cx).await? else {
            return Ok(Step::Denied("No pending user.".into()));
        };
        let settings: ValidateSettings = cx.settings()?;
        let code = text_field(response, "code").map(str::trim).filter(|c| !c.is_empty());
        let devices = match code {
            Some(_) if cx.stage_state::<Progress>().is_none() => Devices::for_code_not_sent(cx, account.id, &settings).await?,
            _ => Devices::of(cx, account.id, &settings).await?,
        };
        if devices.is_empty() {
            return not_configured(cx, &settings, text_field(response, "selected_stage")).await;
        }
        if let Some(code) = code {
            return check_code(cx, &account, &settings, &devices, code).await;
        }
        // Which device: the one the client selected (by its id, never a number or address from
        // the request), or, when a page asks for a code to be sent, the phone or mailbox used
        // last.
        let offered = || Step::Invalid(FieldErrors::single("selected_challenge", "Choose one of the device challenges offered."));
        match response.get("selected_challenge") {
            Some(Value::Object(challenge)) => {
                let uid = challenge.get("device_uid").and_then(Value::as_str).unwrap_or_default();
                match challenge.get("device_class").and_then(Value::as_str) {
                    Some("sms") => match devices.phones.iter().find(|d| d.id.to_string() == uid) {
                        Some(phone) => send_to(cx, &account, phone, &devices).await,
                        None => Ok(offered()),
                    },
                    Some("email") => match devices.mail.iter().find(|d| d.id.to_string() == uid) {
                        Some(mailbox) => mail_to(cx, &account, mailbox, &devices).await,
                        None => Ok(offered()),
                    },
                    // Nothing is sent for an app or a recovery code: the question is the code.
                    Some("totp") if devices.apps.iter().any(|d| d.id.to_string() == uid) => {
                        Ok(Step::Challenge(prompt(cx, &devices, Asking::Any)))
                    }
                    Some("static") if devices.recovery.iter().any(|d| d.id.to_string() == uid) => {
                        Ok(Step::Challenge(prompt(cx, &devices, Asking::Any)))
                    }
                    _ => Ok(offered()),
                }
            }
            Some(_) => Ok(offered()),
            // A code was sent and the answer carries none: asking again is a new selection, never
            // an empty answer.
            None if cx.stage_state::<Progress>().is_some() => Ok(Step::Invalid(FieldErrors::single("code", "This field is required."))),
            None => {
                let phone = devices.phones.iter().max_by_key(|d| (d.last_used, std::cmp::Reverse(d.id)));
                let mailbox = devices.mail.iter().max_by_key(|d| (d.last_used, std::cmp::Reverse(d.id)));
                match (phone, mailbox) {
                    (Some(phone), Some(mailbox)) if mailbox.last_used > phone.last_used => mail_to(cx, &account, mailbox, &devices).await,
                    (Some(phone), _) => send_to(cx, &account, phone, &devices).await,
                    (None, Some(mailbox)) => mail_to(cx, &account, mailbox, &devices).await,
                    (None, None) => Ok(Step::Invalid(FieldErrors::single("code", "This field is required."))),
                }
            }
        }
    }
}

/// The device classes this server can check.
const SERVED_CLASSES: &[DeviceClass] = &[DeviceClass::Sms, DeviceClass::Email, DeviceClass::Totp, DeviceClass::Static];

/// The devices of the allowed classes a person can answer with.
#[derive(Default)]
struct Devices {
    phones: Vec<sms_device::Model>,
    mail: Vec<otp_device::Model>,
    apps: Vec<otp_device::Model>,
    recovery: Vec<otp_device::Model>,
}

impl Devices {
    /// Every device of the allowed classes. One statement says which tables hold any (all a
    /// sign-in without an authenticator reads), then only those are read.
    async fn of(cx: &mut StageContext<'_>, user: i64, settings: &ValidateSettings) -> Result<Self> {
        let held = devices::sign_in_device_kinds(cx.state, user).await?;
        cx.note_sign_in_device(user, held.any());
        let phones = if held.phones { Self::phones_of(cx, user, settings).await? } else { Vec::new() };
        let others = if held.others { Self::others_of(cx, user, settings).await? } else { Self::default() };
        Ok(Self { phones, ..others })
    }

    /// The devices a code typed with none sent in this run can come from (apps and recovery
    /// codes), or every device when there are none, to say what to do instead: the phones are
    /// not needed to judge such a code, so a sign-in with an app reads one table fewer.
    async fn for_code_not_sent(cx: &StageContext<'_>, user: i64, settings: &ValidateSettings) -> Result<Self> {
        let others = Self::others_of(cx, user, settings).await?;
        if others.has_standing_codes() {
            return Ok(others);
        }
        Ok(Self { phones: Self::phones_of(cx, user, settings).await?, ..others })
    }

    async fn phones_of(cx: &StageContext<'_>, user: i64, settings: &ValidateSettings) -> Result<Vec<sms_device::Model>> {
        if !settings.device_classes.contains(&DeviceClass::Sms) {
            return Ok(Vec::new());
        }
        devices::sign_in_devices(cx.state, user).await
    }

    /// Every device of the allowed classes but the phones.
    async fn others_of(cx: &StageContext<'_>, user: i64, settings: &ValidateSettings) -> Result<Self> {
        let kinds: Vec<OtpKind> =
            [(DeviceClass::Email, OtpKind::Email), (DeviceClass::Totp, OtpKind::Totp), (DeviceClass::Static, OtpKind::Static)]
                .into_iter()
                .filter(|(class, _)| settings.device_classes.contains(class))
                .map(|(_, kind)| kind)
                .collect();
        let others = otp_devices::sign_in_devices_of_kinds(cx.state, user, &kinds).await?;
        let of = |kind: OtpKind| others.iter().filter(|d| d.kind == kind.as_str()).cloned().collect::<Vec<_>>();
        Ok(Self { phones: Vec::new(), mail: of(OtpKind::Email), apps: of(OtpKind::Totp), recovery: of(OtpKind::Static) })
    }

    fn is_empty(&self) -> bool {
        self.phones.is_empty() && self.mail.is_empty() && self.apps.is_empty() && self.recovery.is_empty()
    }

    /// Whether the device a code was sent to is still one of these.
    fn holds(&self, progress: &Progress) -> bool {
        match progress.via {
            SentVia::Sms => self.phones.iter().any(|d| d.id == progress.device),
            SentVia::Email => self.mail.iter().any(|d| d.id == progress.device),
        }
    }

    /// Whether a code can be typed without one being sent first.
    fn has_standing_codes(&self) -> bool {
        !self.apps.is_empty() || !self.recovery.is_empty()
    }

    /// authentik's `device_challenges`: one per device.
    fn challenges(&self) -> Vec<Value> {
        let with = |class: &str, id: i64, last_used, challenge: Value| json!({"device_class": class, "device_uid": id.to_string(), "challenge": challenge, "last_used": last_used});
        let challenge = |class: &str, id: i64, last_used| with(class, id, last_used, json!({}));
        let phones = self.phones.iter().map(|d| challenge("sms", d.id, d.last_used));
        let mail = self.mail.iter().map(|d| {
            let address = d.email.as_deref().map(crate::mfa::email::masked);
            with("email", d.id, d.last_used, json!({"email": address}))
        });
        let apps = self.apps.iter().map(|d| challenge("totp", d.id, d.last_used));
        let recovery = self.recovery.iter().map(|d| challenge("static", d.id, d.last_used));
        phones.chain(mail).chain(apps).chain(recovery).collect()
    }
}

/// Checks a typed code against the code sent in this run (if any), the apps and the recovery
/// codes.
async fn check_code(
    cx: &mut StageContext<'_>,
    account: &user::Model,
    settings: &ValidateSettings,
    devices: &Devices,
    code: &str,
) -> Result<Step> {
    let mut progress = cx.stage_state::<Progress>();
    if progress.as_ref().is_some_and(|p| !devices.holds(p)) {
        cx.set_stage_state::<Progress>(None);
        progress = None;
        if !devices.has_standing_codes() {
            return Ok(Step::Invalid(FieldErrors::single(NON_FIELD_ERRORS, "That device is gone; choose another.")));
        }
    }
    if progress.is_none() && !devices.has_standing_codes() {
        return Ok(Step::Invalid(FieldErrors::single("code", "Ask for a code first.")));
    }
    let bound_to = progress.as_ref().map(|p| binding(cx.stage.stage_id, account.id, p));
    let sent = progress.as_mut().zip(bound_to.as_deref()).map(|(p, binding)| SentAnswer { sent: &mut p.sent, binding });
    let candidates = Candidates { sent, totp: &devices.apps, recovery: &devices.recovery };
    match verify::check_answer(cx.state, account, code, candidates).await? {
        Checked::Right(proof) => {
            let sent_to = progress.map(|p| (p.via, p.device));
            remember(cx, account, settings, proof, sent_to);
            cx.set_stage_state::<Progress>(None);
            let factor = match (proof, sent_to) {
                (Proof::SentCode, Some((SentVia::Email, device))) => {
                    otp_devices::mark_used(cx.state, device).await?;
                    FactorKind::Email
                }
                (Proof::SentCode, _) => {
                    if let Some(phone) = devices.phones.iter().find(|d| Some((SentVia::Sms, d.id)) == sent_to) {
                        devices::mark_used(cx.state, phone).await?;
                    }
                    FactorKind::Sms
                }
                (Proof::Totp(_), _) => FactorKind::Totp,
                (Proof::RecoveryCode(_), _) => FactorKind::RecoveryCode,
            };
            cx.record_factor(factor);
            Ok(Step::Passed)
        }
        Checked::Refused { message, new_code_needed } => {
            if let Some(progress) = progress {
                cx.set_stage_state((!new_code_needed).then_some(&progress));
            }
            Ok(Step::Invalid(FieldErrors::single("code", message)))
        }
    }
}

/// The longest a browser may remember a second factor.
const LONGEST_THRESHOLD: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// The factor this browser remembers `account` proving at this stage, if the stage remembers at
/// all, the memory is recent enough, and its device is still one the stage accepts.
fn remembered_factor(cx: &StageContext<'_>, account: &user::Model, settings: &ValidateSettings, devices: &Devices) -> Option<FactorKind> {
    let threshold = chrono::TimeDelta::from_std(settings.last_auth_threshold.to_std()).ok()?;
    if threshold.is_zero() {
        return None;
    }
    let memory = Remembered::read(&cx.state.secret, cx.remembered_device?, chrono::Utc::now(), threshold)?;
    if memory.user != account.id || memory.stage != cx.stage.stage_id {
        return None;
    }
    // A password change or reset forgets every browser's memory, as it forgets earlier factors.
    if memory.proven < account.password_change_date {
        return None;
    }
    match memory.class.as_str() {
        "sms" if devices.phones.iter().any(|d| d.id == memory.device) => Some(FactorKind::Sms),
        "email" if devices.mail.iter().any(|d| d.id == memory.device) => Some(FactorKind::Email),
        "totp" if devices.apps.iter().any(|d| d.id == memory.device) => Some(FactorKind::Totp),
        _ => None,
    }
}

/// Asks the browser to remember the device `account` just proved, when the stage remembers
/// devices. A recovery code is never remembered: it is for when the device is lost.
fn remember(cx: &mut StageContext<'_>, account: &user::Model, settings: &ValidateSettings, proof: Proof, sent_to: Option<(SentVia, i64)>) {
    let threshold = settings.last_auth_threshold.to_std();
    if threshold.is_zero() {
        return;
    }
    let (class, device) = match (proof, sent_to) {
        (Proof::Totp(device), _) => ("totp", device),
        (Proof::SentCode, Some((SentVia::Sms, device))) => ("sms", device),
        (Proof::SentCode, Some((SentVia::Email, device))) => ("email", device),
        _ => return,
    };
    let memory = Remembered { user: account.id, stage: cx.stage.stage_id, class: class.into(), device, proven: chrono::Utc::now() };
    let token = memory.issue(&cx.state.secret);
    cx.effects.push(Effect::RememberDevice { token, max_age_secs: i64::try_from(threshold.as_secs()).unwrap_or(i64::MAX) });
}

/// The pending account, once it proved a factor in this run: the second factor comes after the
/// first, never instead of it.
async fn proven_account(cx: &mut StageContext<'_>) -> Result<Option<user::Model>> {
    let factors = cx.context.factors.clone();
    Ok(cx.pending_account().await?.filter(|account| verified_for(&factors, account.id, account.password_change_date)))
}

/// Sends a code to `device` through the provider of the stage that enrolled it.
async fn send_to(cx: &mut StageContext<'_>, account: &user::Model, device: &sms_device::Model, devices: &Devices) -> Result<Step> {
    let gateway = crate::flows::stage_service::find_stage(&cx.state.db, cx.state.tenant, device.stage_id, Some("authenticator_sms"))
        .await?
        .and_then(|stage| serde_json::from_value::<SmsStageSettings>(stage.settings).ok());
    let (Some(gateway), Ok(number)) = (gateway, PhoneNumber::parse(&device.phone_number)) else {
        return Ok(Step::Invalid(FieldErrors::single(NON_FIELD_ERRORS, delivery::COULD_NOT_SEND)));
    };
    let reservation = match delivery::reserve_send(cx.state, account, cx.client, Destination::Device(device.id)).await? {
        Ok(reservation) => reservation,
        Err(message) => return Ok(Step::Invalid(FieldErrors::single(NON_FIELD_ERRORS, message))),
    };
    let nonce = crate::secret::random_token(16);
    let bound_to = binding_of(cx.stage.stage_id, account.id, SentVia::Sms, device.id, &nonce);
    match delivery::send_sms_code(cx.state, reservation, &gateway, account, cx.client, &number, &bound_to).await? {
        Ok(sent) => {
            cx.set_stage_state(Some(&Progress { via: SentVia::Sms, device: device.id, nonce, sent }));
            Ok(Step::Challenge(prompt(cx, devices, Asking::SentCode(SentVia::Sms))))
        }
        Err(message) => Ok(Step::Invalid(FieldErrors::single(NON_FIELD_ERRORS, message))),
    }
}

/// Sends a code by e-mail to `device` through the relay of the stage that enrolled it (or the
/// server's relay, when that stage is gone).
async fn mail_to(cx: &mut StageContext<'_>, account: &user::Model, device: &otp_device::Model, devices: &Devices) -> Result<Step> {
    let stage = match device.stage_id {
        Some(stage) => crate::flows::stage_service::find_stage(&cx.state.db, cx.state.tenant, stage, Some("authenticator_email")).await?,
        None => None,
    };
    let settings = match stage {
        Some(stage) => serde_json::from_value::<EmailStageSettings>(stage.settings).ok(),
        None => Some(EmailStageSettings { use_global_settings: true, ..EmailStageSettings::default() }),
    };
    let (Some(settings), Some(Ok(address))) = (settings, device.email.as_deref().map(Email::parse)) else {
        return Ok(Step::Invalid(FieldErrors::single(NON_FIELD_ERRORS, delivery::COULD_NOT_SEND)));
    };
    let reservation = match delivery::reserve_send(cx.state, account, cx.client, Destination::Mailbox(device.id)).await? {
        Ok(reservation) => reservation,
        Err(message) => return Ok(Step::Invalid(FieldErrors::single(NON_FIELD_ERRORS, message))),
    };
    let nonce = crate::secret::random_token(16);
    let bound_to = binding_of(cx.stage.stage_id, account.id, SentVia::Email, device.id, &nonce);
    match delivery::send_email_code(cx.state, reservation, &settings, account, cx.client, &address, &bound_to).await? {
        Ok(sent) => {
            cx.set_stage_state(Some(&Progress { via: SentVia::Email, device: device.id, nonce, sent }));
            Ok(Step::Challenge(prompt(cx, devices, Asking::SentCode(SentVia::Email))))
        }
        Err(message) => Ok(Step::Invalid(FieldErrors::single(NON_FIELD_ERRORS, message))),
    }
}

/// No device of the allowed classes: skip, deny, or send to a setup stage.
async fn not_configured(cx: &mut StageContext<'_>, settings: &ValidateSettings, selected: Option<&str>) -> Result<Step> {
    match settings.not_configured_action {
        NotConfiguredAction::Skip => Ok(Step::Passed),
        NotConfiguredAction::Deny => Ok(Step::Denied(NO_DEVICE.into())),
        NotConfiguredAction::Configure => {
            let stages = crate::flows::stage_service::stages_by_id(&cx.state.db, cx.state.tenant, &settings.configuration_stages).await?;
            let usable: Vec<_> = settings
                .configuration_stages
                .iter()
                .filter_map(|id| stages.get(id))
                .filter(|stage| super::AUTHENTICATOR_SETUP_KINDS.contains(&stage.kind.as_str()))
                .cloned()
                .collect();
            let chosen = match (usable.as_slice(), selected) {
                ([], _) => return Ok(Step::Denied(NO_DEVICE.into())),
                ([only], _) => only.clone(),
                (_, Some(selected)) => match usable.iter().find(|s| s.id.to_string() == selected) {
                    Some(stage) => stage.clone(),
                    None => return Ok(Step::Invalid(FieldErrors::single("selected_stage", "Choose one of the setup stages offered."))),
                },
                (several, None) => {
                    let mut fields = pending_user_fields(cx);
                    fields.insert("device_challenges".into(), json!([]));
                    let offered: Vec<Value> = several
                        .iter()
                        .map(|s| {
                            let kind = cx.state.stages.get(&s.kind);
                            json!({"pk": s.id, "name": s.name, "verbose_name": kind.map(|k| k.verbose_name()), "meta_model_name": kind.map(|k| k.meta_model_name())})
                        })
                        .collect();
                    fields.insert("configuration_stages".into(), json!(offered));
                    let form = Form {
                        intro: Some("Set up an authenticator to continue.".into()),
                        inputs: vec![text_input("selected_stage", "Setup stage", "off")],
                        submit: "Continue".into(),
                        links: vec![("Not you? Start again".into(), "/flows/-/cancel/".into())],
                        ..Form::default()
                    };
                    return Ok(Step::Challenge(Prompt { fields, form }));
                }
            };
            Ok(Step::PassedThen(vec![PlannedStage {
                stage_id: chosen.id,
                name: chosen.name,
                kind: chosen.kind,
                settings: chosen.settings,
                invalid_response_action: InvalidResponseAction::Retry,
            }]))
        }
    }
}

fn text_input(name: &'static str, label: &str, autocomplete: &'static str) -> Input {
    Input { name, label: label.into(), kind: InputKind::Text, autocomplete, value: String::new(), required: true, autofocus: true }
}

/// What the question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asking {
    /// The code sent in this run, and how.
    SentCode(SentVia),
    /// Any code the person has (or, with phones only, whether to send one).
    Any,
}

/// The question: the code sent, a code of an app or a recovery code, or whether to send a code.
fn prompt(cx: &StageContext<'_>, devices: &Devices, asking: Asking) -> Prompt {
    let mut fields = pending_user_fields(cx);
    fields.insert("device_challenges".into(), json!(devices.challenges()));
    fields.insert("configuration_stages".into(), json!([]));
    let links = vec![("Not you? Start again".into(), "/flows/-/cancel/".into())];
    let code_input = |required| Input {
        name: "code",
        label: "Code".into(),
        kind: InputKind::Code,
        autocomplete: "one-time-code",
        value: String::new(),
        required,
        autofocus: true,
    };
    let form = match asking {
        Asking::SentCode(via) => Form {
            intro: Some(match via {
                SentVia::Sms => "Enter the code we sent to your phone.".into(),
                SentVia::Email => "Enter the code we sent to your e-mail address.".into(),
            }),
            inputs: vec![code_input(true)],
            submit: "Verify".into(),
            links,
            ..Form::default()
        },
        Asking::Any if !devices.has_standing_codes() => Form {
            intro: Some(if devices.phones.is_empty() {
                "We will send a code to your e-mail address.".into()
            } else {
                "We will send a code to your phone by text message.".into()
            }),
            submit: "Send code".into(),
            links,
            ..Form::default()
        },
        Asking::Any => {
            let source = match (devices.apps.is_empty(), devices.recovery.is_empty()) {
                (false, false) => "Enter the code from your authenticator app, or one of your recovery codes",
                (false, true) => "Enter the code from your authenticator app",
                _ => "Enter one of your recovery codes",
            };
            let sms = match (devices.phones.is_empty(), devices.mail.is_empty()) {
                (true, true) => ".",
                (false, _) => ", or leave it empty to get a code by text message.",
                (true, false) => ", or leave it empty to get a code by e-mail.",
            };
            Form {
                intro: Some(format!("{source}{sms}")),
                inputs: vec![code_input(devices.phones.is_empty() && devices.mail.is_empty())],
                submit: "Verify".into(),
                links,
                ..Form::default()
            }
        }
    };
    Prompt { fields, form }
}
