//! Text messages: the settings of an SMS authenticator stage (which provider, with what
//! credentials), how a number is kept, and sending a code through Twilio or a generic webhook.

use std::time::Duration;

use gatehouse_types::PhoneNumber;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Digest;

use super::codes::{FailureKind, SendFailure};
use crate::error::FieldErrors;
use crate::secret::ServerSecret;

/// Who delivers the messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Twilio's Messages API.
    #[default]
    Twilio,
    /// A JSON `POST` to a URL of the operator's choosing.
    Generic,
}

/// How a generic webhook is authenticated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthType {
    /// HTTP basic with `auth` and `auth_password`.
    #[default]
    Basic,
    /// `Authorization: Bearer {auth}`.
    Bearer,
}

/// Settings of an SMS authenticator stage, with authentik's names. `auth` and `auth_password`
/// are write-only in the API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsStageSettings {
    pub provider: Provider,
    /// The sender: a number or an alphanumeric sender id.
    pub from_number: String,
    /// Twilio's account SID, or the generic webhook's URL.
    pub account_sid: String,
    /// Twilio's auth token, or the webhook's user name or bearer token.
    pub auth: String,
    /// The webhook's password for basic authentication.
    pub auth_password: String,
    pub auth_type: AuthType,
    /// Keep only a keyed digest of the number: the device proves a number and cannot sign in.
    pub verify_only: bool,
    /// A webhook mapping (`/propertymappings/notification/`) whose CEL expression gives what
    /// is sent instead of the default payload.
    pub mapping: Option<uuid::Uuid>,
    /// The flow a person uses to set this authenticator up themselves.
    pub configure_flow: Option<uuid::Uuid>,
    /// The name people see for this authenticator.
    pub friendly_name: String,
}

/// The settings fields the API never shows.
pub const WRITE_ONLY_SETTINGS: &[&str] = &["auth", "auth_password"];

impl SmsStageSettings {
    /// An example with every field filled in, for the API's schema.
    pub fn example() -> Self {
        Self {
            from_number: "+15005550006".into(),
            account_sid: "AC00000000000000000000000000000000".into(),
            auth: "token".into(),
            friendly_name: "Text message".into(),
            ..Self::default()
        }
    }

    /// Checks what serde cannot: required text, the webhook's URL.
    pub fn check(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        for (field, value) in [("from_number", &self.from_number), ("account_sid", &self.account_sid), ("auth", &self.auth)] {
            if value.trim().is_empty() {
                errors.add(field, "This field is required.");
            } else if value.len() > 1024 {
                errors.add(field, "Ensure this field has no more than 1024 characters.");
            }
        }
        if self.auth_password.len() > 1024 {
            errors.add("auth_password", "Ensure this field has no more than 1024 characters.");
        }
        if self.friendly_name.len() > 200 {
            errors.add("friendly_name", "Ensure this field has no more than 200 characters.");
        }
        if self.provider == Provider::Generic
            && !self.account_sid.is_empty()
            && !(self.account_sid.starts_with("https://") || self.account_sid.starts_with("http://"))
        {
            errors.add("account_sid", "With the generic provider this is the webhook's URL: http:// or https://.");
        }
        if self.provider == Provider::Twilio && !self.account_sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            errors.add("account_sid", "A Twilio account SID has only letters and digits.");
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// How a number is kept on a device: as itself, or for a verify-only stage as `hash:` and an
/// HMAC-SHA-256 of it under the server secret (a bare SHA-256 of a phone number is reversed by
/// trying every number).
pub fn stored_number(secret: &ServerSecret, number: &PhoneNumber, verify_only: bool) -> String {
    if verify_only { format!("hash:{}", secret.digest("sms-phone-number", number.as_str().as_bytes())) } else { number.as_str().to_owned() }
}

/// Every form in which `number` may already be kept on a stage: itself, its keyed digest, and
/// authentik's bare `hash:{sha256}`, so that a number cannot be enrolled twice whichever form
/// holds it.
pub fn stored_forms(secret: &ServerSecret, number: &PhoneNumber) -> Vec<String> {
    let bare = hex::encode(sha2::Sha256::digest(number.as_str().as_bytes()));
    vec![number.as_str().to_owned(), stored_number(secret, number, true), format!("hash:{bare}")]
}

/// A number as logs may show it: all but the last two digits masked.
pub fn masked(number: &str) -> String {
    if number.starts_with("hash:") {
        return "hash:…".to_owned();
    }
    let visible: String = number.chars().rev().take(2).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{visible}")
}

/// The text of a message carrying `code`.
pub fn message_text(code: &str) -> String {
    format!("Use this code to authenticate in Gatehouse: {code}")
}

/// What is sent without a mapping: Twilio's form fields, or the generic webhook's JSON.
pub fn default_payload(settings: &SmsStageSettings, to: &PhoneNumber, code: &str) -> Map<String, Value> {
    let text = message_text(code);
    let payload = match settings.provider {
        Provider::Twilio => json!({"To": to.as_str(), "From": settings.from_number, "Body": text}),
        Provider::Generic => json!({"From": settings.from_number, "To": to.as_str(), "Body": code, "Message": text}),
    };
    payload.as_object().cloned().unwrap_or_default()
}

/// Sends `payload` (the [`default_payload`] or what a mapping made of it) for `to` as `settings`
/// say, within `timeout` (connecting included). Twilio gets the payload's text fields as its
/// form, `To` always the device's number; the generic webhook gets the payload as JSON.
/// Redirects are not followed: the provider's URL is the only place a code goes.
pub async fn send(
    settings: &SmsStageSettings,
    twilio_base_url: &str,
    timeout: Duration,
    to: &PhoneNumber,
    payload: Map<String, Value>,
) -> Result<(), SendFailure> {
    let client = reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SendFailure::refused(e.to_string()))?;
    let request = match settings.provider {
        Provider::Twilio => {
            let url = format!("{}/2010-04-01/Accounts/{}/Messages.json", twilio_base_url.trim_end_matches('/'), settings.account_sid);
            let mut form: Vec<(String, String)> = payload
                .into_iter()
                .filter(|(name, _)| name != "To")
                .map(|(name, value)| (name, value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())))
                .collect();
            // Twilio's own order first (To, From, Body), then whatever a mapping added.
            form.sort_by_key(|(name, _)| (["From", "Body"].iter().position(|known| known == name).unwrap_or(2), name.clone()));
            form.insert(0, ("To".into(), to.as_str().to_owned()));
            client.post(url).basic_auth(&settings.account_sid, Some(&settings.auth)).form(&form)
        }
        Provider::Generic => {
            let request = client.post(&settings.account_sid).json(&payload);
            match settings.auth_type {
                AuthType::Bearer => request.bearer_auth(&settings.auth),
                AuthType::Basic => request.basic_auth(&settings.auth, Some(&settings.auth_password)),
            }
        }
    };
    let response = request.send().await.map_err(transport_failure)?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let kind = status_failure_kind(status);
    Err(SendFailure { status: Some(status.as_u16()), detail: body.chars().take(200).collect(), kind })
}

/// What an HTTP error status says about trying again: 429 and 503 ask for it; a gateway's 502
/// or 504 may come after the message went on; any other status is the provider's own refusal.
fn status_failure_kind(status: reqwest::StatusCode) -> FailureKind {
    match status.as_u16() {
        429 | 503 => FailureKind::Transient,
        502 | 504 => FailureKind::Unknown,
        _ => FailureKind::Refused,
    }
}

/// A request that got no answer. Only a connection that never opened proves nothing was sent.
fn transport_failure(error: reqwest::Error) -> SendFailure {
    let (detail, kind) = if error.is_connect() {
        ("the provider could not be reached".to_owned(), FailureKind::Transient)
    } else if error.is_timeout() {
        ("the provider did not answer in time".to_owned(), FailureKind::Unknown)
    } else {
        // Without the URL: a webhook's URL may carry credentials.
        (error.without_url().to_string(), FailureKind::Unknown)
    };
    SendFailure { status: None, detail, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_provider_asking_to_try_later_is_retried_and_a_gateway_error_is_an_unknown_outcome() {
        let kind = |status: u16| status_failure_kind(reqwest::StatusCode::from_u16(status).unwrap());
        assert_eq!((kind(429), kind(503)), (FailureKind::Transient, FailureKind::Transient));
        assert_eq!((kind(502), kind(504)), (FailureKind::Unknown, FailureKind::Unknown));
        assert_eq!((kind(400), kind(401), kind(500)), (FailureKind::Refused, FailureKind::Refused, FailureKind::Refused));
    }

    #[test]
    fn numbers_are_kept_as_themselves_or_as_a_keyed_digest_and_logged_masked() {
        let secret = ServerSecret::from_bytes(b"sms-test-secret");
        let number = PhoneNumber::parse("+41 44 668 18 00").unwrap();
        assert_eq!(stored_number(&secret, &number, false), "+41446681800");
        let hashed = stored_number(&secret, &number, true);
        assert!(hashed.starts_with("hash:") && !hashed.contains("41446681800"));
        let other = ServerSecret::from_bytes(b"another-secret");
        assert_ne!(stored_number(&other, &number, true), hashed, "the digest is keyed");
        let forms = stored_forms(&secret, &number);
        assert!(forms.contains(&hashed));
        // authentik's bare form: the SHA-256 of the E.164 number.
        assert!(forms.contains(&"hash:80536ff12e32b33a441f17f460fe8dbaafa21e25e6dda3685d21a4a36e2ae4cc".to_owned()), "{forms:?}");
        assert_eq!(masked("+41446681800"), "…00");
        assert_eq!(masked(&hashed), "hash:…");
    }

    #[test]
    fn settings_name_what_is_missing_or_wrong() {
        let fields = |settings: SmsStageSettings| settings.check().err().map(|e| e.fields().keys().cloned().collect::<Vec<_>>());
        assert_eq!(fields(SmsStageSettings::example()), None);
        assert_eq!(fields(SmsStageSettings::default()), Some(vec!["account_sid".into(), "auth".into(), "from_number".into()]));
        let generic =
            SmsStageSettings { provider: Provider::Generic, account_sid: "ftp://sms.example".into(), ..SmsStageSettings::example() };
        assert_eq!(fields(generic), Some(vec!["account_sid".into()]));
    }
}
