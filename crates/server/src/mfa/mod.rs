//! Multi-factor authentication: the devices people prove themselves with beyond a password
//! (phones that receive one-time codes by text message, authenticator apps, recovery codes), the
//! codes, and the providers that deliver them. Flows use this domain through their authenticator stages; it never uses
//! flows.

pub mod api;
pub mod codes;
pub mod delivery;
pub mod devices;
pub mod email;
pub mod entities;
pub mod handlers;
pub mod otp_devices;
pub mod outbox;
pub mod recovery;
pub mod remembered;
pub mod sms;
pub mod totp;
pub mod verify;
