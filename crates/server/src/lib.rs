//! Gatehouse: a self-hosted identity and access server.
//!
//! The crate is split by domain (`accounts`, `sessions`, `events`, `tenants`), each owning its
//! tables, rules and handlers; `http` is the thin layer that wires them to axum.

pub mod accounts;
pub mod app;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod crypto;
pub mod db;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod flows;
pub mod http;
pub mod json;
pub mod mappings;
pub mod media;
pub mod mfa;
pub mod oauth;
pub mod ops;
pub mod secret;
pub mod sessions;
pub mod state;
pub mod tasks;
pub mod tenants;
pub mod tokens;
