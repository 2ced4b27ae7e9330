//! Certificate-key pairs: certificates with their private keys, imported as PEM or generated
//! self-signed, for signing tokens (the managed internal JWT key, created at first start) and
//! for what later signs with a chosen key. Private keys are sealed at rest with the server
//! secret; reading one is recorded, and only superusers may read or replace one, since a signing
//! key speaks for every account. Other domains may use this one; it uses accounts and events.

pub mod entities;
pub mod handlers;
pub mod jwt;
pub mod material;
pub mod service;
