//! The JSON shapes of devices, as authentik's `SMSDevice`, `TOTPDevice`, `StaticDevice`,
//! `EmailDevice` and `Device`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::entities::{otp_device, sms_device};
use super::otp_devices::OtpKind;
use crate::accounts::api::PartialUser;

/// authentik's `SMSDevice`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SmsDeviceOut {
    pub name: String,
    pub pk: i64,
    /// The E.164 number, or `hash:…` for a verify-only stage's device (masked for an owner who
    /// holds rights the caller lacks).
    pub phone_number: String,
    pub user: PartialUser,
}

impl SmsDeviceOut {
    /// The representation of `device`, owned by `user`.
    pub fn new(device: sms_device::Model, user: PartialUser) -> Self {
        Self { name: device.name, pk: device.id, phone_number: device.phone_number, user }
    }
}

/// authentik's `SMSDeviceRequest`: only the name can change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceWrite {
    pub name: Option<String>,
}

/// authentik's `Device`: any kind of device, as `/authenticators/all/` lists them.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceOut {
    pub verbose_name: String,
    pub verbose_name_plural: String,
    pub meta_model_name: String,
    pub pk: String,
    pub name: String,
    #[serde(rename = "type")]
    pub device_type: String,
    pub confirmed: bool,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    pub last_used: Option<DateTime<Utc>>,
    pub extra_description: Option<String>,
    pub external_id: Option<String>,
}

impl From<sms_device::Model> for DeviceOut {
    fn from(device: sms_device::Model) -> Self {
        Self {
            verbose_name: "SMS Device".into(),
            verbose_name_plural: "SMS Devices".into(),
            meta_model_name: "authentik_stages_authenticator_sms.smsdevice".into(),
            pk: device.id.to_string(),
            extra_description: Some(super::sms::masked(&device.phone_number)),
            name: device.name,
            device_type: "authentik_stages_authenticator_sms.SMSDevice".into(),
            confirmed: device.confirmed,
            created: device.created,
            last_updated: device.last_updated,
            last_used: device.last_used,
            external_id: None,
        }
    }
}

/// authentik's `TOTPDevice`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpDeviceOut {
    pub name: String,
    pub pk: i64,
    pub user: PartialUser,
}

/// authentik's `StaticDeviceToken`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StaticDeviceTokenOut {
    pub token: String,
}

/// authentik's `StaticDevice`. `token_set` is always empty: codes are kept only as digests and
/// shown once, by the setup stage.
#[derive(Debug, Serialize, ToSchema)]
pub struct StaticDeviceOut {
    pub name: String,
    pub token_set: Vec<StaticDeviceTokenOut>,
    pub pk: i64,
    pub user: PartialUser,
}

/// authentik's `EmailDevice`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmailDeviceOut {
    pub name: String,
    pub pk: i64,
    /// Where the codes go (masked for an owner who holds rights the caller lacks).
    pub email: String,
    pub user: PartialUser,
}

/// The representation of an authenticator app or recovery-code set, as its kind's model.
pub trait OtpDeviceOut: Serialize + Send {
    fn new(device: otp_device::Model, user: PartialUser) -> Self;
}

impl OtpDeviceOut for TotpDeviceOut {
    fn new(device: otp_device::Model, user: PartialUser) -> Self {
        Self { name: device.name, pk: device.id, user }
    }
}

impl OtpDeviceOut for StaticDeviceOut {
    fn new(device: otp_device::Model, user: PartialUser) -> Self {
        Self { name: device.name, token_set: Vec::new(), pk: device.id, user }
    }
}

impl OtpDeviceOut for EmailDeviceOut {
    fn new(device: otp_device::Model, user: PartialUser) -> Self {
        Self { name: device.name, pk: device.id, email: device.email.unwrap_or_default(), user }
    }
}

impl From<otp_device::Model> for DeviceOut {
    fn from(device: otp_device::Model) -> Self {
        let (verbose_name, meta_model_name, device_type) = match OtpKind::parse(&device.kind) {
            Some(OtpKind::Totp) => {
                ("TOTP Device", "authentik_stages_authenticator_totp.totpdevice", "authentik_stages_authenticator_totp.TOTPDevice")
            }
            Some(OtpKind::Email) => {
                ("Email Device", "authentik_stages_authenticator_email.emaildevice", "authentik_stages_authenticator_email.EmailDevice")
            }
            _ => (
                "Static Device",
                "authentik_stages_authenticator_static.staticdevice",
                "authentik_stages_authenticator_static.StaticDevice",
            ),
        };
        let extra_description = device.email.as_deref().map(super::email::masked);
        Self {
            verbose_name: verbose_name.into(),
            verbose_name_plural: format!("{verbose_name}s"),
            meta_model_name: meta_model_name.into(),
            pk: device.id.to_string(),
            name: device.name,
            device_type: device_type.into(),
            confirmed: device.confirmed,
            created: device.created,
            last_updated: device.last_updated,
            last_used: device.last_used,
            extra_description,
            external_id: None,
        }
    }
}
