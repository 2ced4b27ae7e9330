//! The JSON shapes of devices, as authentik's `SMSDevice` and `Device`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::entities::sms_device;
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
pub struct SmsDeviceWrite {
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
