//! E-mail: the settings of an e-mail authenticator stage (its own mail relay or the server's),
//! and sending a code over SMTP.

use std::str::FromStr;
use std::time::Duration;

use chrono::TimeDelta;
use gatehouse_types::{DurationString, Email};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::codes::{FailureKind, LONGEST_CODE_LIFETIME, SendFailure};
use crate::config::EmailConfig;
use crate::error::FieldErrors;

/// The only message template this server ships, under authentik's name.
pub const TEMPLATE: &str = "email/email_otp.html";

/// Settings of an e-mail authenticator stage, with authentik's names. `password` is write-only
/// in the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailStageSettings {
    /// Send through the server's relay (`[email]` in the configuration) and ignore the
    /// connection settings below.
    pub use_global_settings: bool,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    /// STARTTLS: upgrade the connection, refusing a relay that cannot.
    pub use_tls: bool,
    /// TLS from the first byte.
    pub use_ssl: bool,
    /// Seconds one message may take, connecting included.
    pub timeout: u32,
    pub from_address: String,
    pub subject: String,
    /// How long a code is accepted: at most 10 minutes.
    pub token_expiry: DurationString,
    pub template: String,
    /// The flow a person uses to set this authenticator up themselves.
    pub configure_flow: Option<uuid::Uuid>,
    /// The name people see for this authenticator.
    pub friendly_name: String,
}

impl Default for EmailStageSettings {
    fn default() -> Self {
        Self {
            use_global_settings: false,
            host: "localhost".into(),
            port: 25,
            username: String::new(),
            password: String::new(),
            use_tls: false,
            use_ssl: false,
            timeout: 10,
            from_address: "gatehouse@localhost".into(),
            subject: "Gatehouse sign-in code".into(),
            token_expiry: DurationString::from_secs(5 * 60),
            template: TEMPLATE.into(),
            configure_flow: None,
            friendly_name: String::new(),
        }
    }
}

/// The settings fields the API never shows.
pub const WRITE_ONLY_SETTINGS: &[&str] = &["password"];

impl EmailStageSettings {
    /// An example with every field filled in, for the API's schema.
    pub fn example() -> Self {
        Self {
            host: "smtp.example.com".into(),
            port: 587,
            username: "gatehouse".into(),
            use_tls: true,
            from_address: "Gatehouse <gatehouse@example.com>".into(),
            friendly_name: "E-mail".into(),
            ..Self::default()
        }
    }

    /// Checks what serde cannot: the relay, the sender, the lifetime of codes, the template.
    pub fn check(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        if !self.use_global_settings {
            if self.host.trim().is_empty() {
                errors.add("host", "This field is required.");
            } else if self.host.len() > 253 || self.host.contains(|c: char| c.is_whitespace() || c == '/') {
                errors.add("host", "Enter a host name or address.");
            }
            if self.port == 0 {
                errors.add("port", "Ensure this value is between 1 and 65535.");
            }
        }
        if self.use_tls && self.use_ssl {
            errors.add("use_ssl", "use_tls (STARTTLS) and use_ssl (TLS from the start) exclude each other.");
        }
        for (field, value) in [("username", &self.username), ("password", &self.password), ("subject", &self.subject)] {
            if value.len() > 1024 {
                errors.add(field, "Ensure this field has no more than 1024 characters.");
            }
        }
        if self.subject.trim().is_empty() {
            errors.add("subject", "This field is required.");
        }
        if !(1..=60).contains(&self.timeout) {
            errors.add("timeout", "Ensure this value is between 1 and 60 (seconds).");
        }
        if self.from_address.len() > 254 || Mailbox::from_str(&self.from_address).is_err() {
            errors.add("from_address", "Enter an e-mail address, optionally with a name: Gatehouse <gatehouse@example.com>.");
        }
        let lifetime = self.token_expiry.to_std();
        if lifetime.is_zero() || lifetime > LONGEST_CODE_LIFETIME.to_std().unwrap_or_default() {
            errors.add("token_expiry", "A code may be valid for at most minutes=10 (and more than nothing).");
        }
        if self.template != TEMPLATE {
            errors.add("template", format!("Only \"{TEMPLATE}\" is shipped with this server."));
        }
        if self.friendly_name.len() > 200 {
            errors.add("friendly_name", "Ensure this field has no more than 200 characters.");
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// How long a code sent by this stage is accepted.
    pub fn code_lifetime(&self) -> TimeDelta {
        TimeDelta::from_std(self.token_expiry.to_std()).unwrap_or(LONGEST_CODE_LIFETIME).min(LONGEST_CODE_LIFETIME)
    }

    /// The relay this stage sends through: its own, or the server's when it says so.
    pub fn relay(&self, global: &EmailConfig) -> Relay {
        if self.use_global_settings {
            Relay {
                host: global.host.clone(),
                port: global.port,
                username: global.username.clone(),
                password: global.password.clone(),
                security: Security::of(global.use_tls, global.use_ssl),
                timeout: global.timeout.to_std(),
                from: global.from.clone(),
            }
        } else {
            Relay {
                host: self.host.clone(),
                port: self.port,
                username: self.username.clone(),
                password: self.password.clone(),
                security: Security::of(self.use_tls, self.use_ssl),
                timeout: Duration::from_secs(u64::from(self.timeout)),
                from: self.from_address.clone(),
            }
        }
    }
}

/// How the connection to a relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain SMTP (a relay on the same host or network).
    None,
    /// STARTTLS, required: a relay that does not offer it gets no message.
    StartTls,
    /// TLS from the first byte.
    Tls,
}

impl Security {
    fn of(use_tls: bool, use_ssl: bool) -> Self {
        match (use_tls, use_ssl) {
            (_, true) => Security::Tls,
            (true, false) => Security::StartTls,
            (false, false) => Security::None,
        }
    }
}

/// A mail relay and the sender to use on it.
#[derive(Clone)]
pub struct Relay {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub security: Security,
    pub timeout: Duration,
    pub from: String,
}

/// An address as logs may show it: the first character of the local part and the domain.
pub fn masked(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => format!("{}…@{domain}", local.chars().next().unwrap_or('…')),
        None => "…".to_owned(),
    }
}

/// The text of a message carrying `code`, valid for `valid_for`.
pub fn message_text(code: &str, valid_for: TimeDelta) -> String {
    let minutes = valid_for.num_minutes().max(1);
    let unit = if minutes == 1 { "minute" } else { "minutes" };
    format!(
        "Use this code to authenticate in Gatehouse: {code}\n\nIt is valid for {minutes} {unit}. If you did not try to sign in, \
         someone may know your password: change it."
    )
}

/// Sends `code` to `to` through `relay` with `subject`, within the relay's timeout (connecting
/// included).
pub async fn send(relay: &Relay, subject: &str, to: &Email, code: &str, valid_for: TimeDelta) -> Result<(), SendFailure> {
    let failure = SendFailure::refused;
    if relay.host.trim().is_empty() {
        return Err(failure("no mail relay is configured (email.host)".into()));
    }
    let from = Mailbox::from_str(&relay.from).map_err(|_| failure("the sender address does not parse".into()))?;
    let to = Mailbox::from_str(to.as_str()).map_err(|_| failure("the recipient address does not parse".into()))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(message_text(code, valid_for))
        .map_err(|e| failure(e.to_string()))?;
    let tls = || TlsParameters::new(relay.host.clone()).map_err(|e| failure(e.to_string()));
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(relay.host.as_str())
        .port(relay.port)
        .timeout(Some(relay.timeout))
        .tls(match relay.security {
            Security::None => Tls::None,
            Security::StartTls => Tls::Required(tls()?),
            Security::Tls => Tls::Wrapper(tls()?),
        });
    if !relay.username.is_empty() {
        builder = builder.credentials(Credentials::new(relay.username.clone(), relay.password.clone()));
    }
    let transport = builder.build();
    match tokio::time::timeout(relay.timeout, transport.send(message)).await {
        Err(_) => Err(SendFailure { status: None, detail: "the mail relay did not answer in time".into(), kind: FailureKind::Unknown }),
        Ok(Err(error)) => Err(SendFailure {
            status: error.status().and_then(|code| code.to_string().parse().ok()),
            detail: error.to_string().chars().take(200).collect(),
            kind: smtp_failure_kind(&error),
        }),
        Ok(Ok(_)) => Ok(()),
    }
}

/// SMTP says what a reply means: 4xx try later, 5xx never. A connection that never opened sent
/// nothing and may open later; a message that could not be built or a failed TLS handshake never
/// reached the relay; a connection lost or timed out during the session may have delivered it.
fn smtp_failure_kind(error: &lettre::transport::smtp::Error) -> FailureKind {
    // lettre tells a connection that never opened only by its message.
    if error.is_transient() || error.to_string().starts_with("Connection error") {
        FailureKind::Transient
    } else if error.is_permanent() || error.is_client() || error.is_tls() {
        FailureKind::Refused
    } else {
        FailureKind::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_logged_masked() {
        assert_eq!(masked("jane.doe@example.com"), "j…@example.com");
        assert_eq!(masked("not an address"), "…");
    }

    #[test]
    fn settings_name_what_is_missing_or_wrong() {
        let fields = |settings: EmailStageSettings| settings.check().err().map(|e| e.fields().keys().cloned().collect::<Vec<_>>());
        assert_eq!(fields(EmailStageSettings::example()), None);
        assert_eq!(fields(EmailStageSettings { host: String::new(), ..EmailStageSettings::example() }), Some(vec!["host".into()]));
        assert_eq!(fields(EmailStageSettings { host: String::new(), use_global_settings: true, ..EmailStageSettings::example() }), None);
        assert_eq!(fields(EmailStageSettings { use_ssl: true, ..EmailStageSettings::example() }), Some(vec!["use_ssl".into()]));
        let longer = EmailStageSettings { token_expiry: DurationString::parse("minutes=11").unwrap(), ..EmailStageSettings::example() };
        assert_eq!(fields(longer), Some(vec!["token_expiry".into()]));
        assert_eq!(
            fields(EmailStageSettings { from_address: "nobody".into(), ..EmailStageSettings::example() }),
            Some(vec!["from_address".into()])
        );
        assert_eq!(
            fields(EmailStageSettings { template: "email/other.html".into(), ..EmailStageSettings::example() }),
            Some(vec!["template".into()])
        );
        assert_eq!(fields(EmailStageSettings { timeout: 0, ..EmailStageSettings::example() }), Some(vec!["timeout".into()]));
    }

    #[test]
    fn the_message_says_how_long_the_code_holds() {
        assert!(message_text("123456", TimeDelta::minutes(5)).contains("123456"));
        assert!(message_text("123456", TimeDelta::minutes(5)).contains("5 minutes"));
        assert!(message_text("123456", TimeDelta::seconds(30)).contains("1 minute."));
    }
}
