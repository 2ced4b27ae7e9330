//! Tokens: API keys (knox-style: only a digest finds them), app passwords, and single-use
//! recovery and verification tokens, with authentik's `/core/tokens/` API and Smarter's extras.

pub mod api;
pub mod entities;
pub mod handlers;
pub mod key;
pub mod seal;
pub mod service;
pub mod service_accounts;
pub mod usage;
