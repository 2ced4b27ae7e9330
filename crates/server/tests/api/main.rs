//! The integration suite: one binary, one module per domain. Every test starts the real server
//! on a random port against a fresh database (a SQLite file, or a fresh PostgreSQL database when
//! GATEHOUSE_TEST_DATABASE_URL is set) and talks HTTP to it.
//!
//! Keep this the only file directly under `tests/`: each file there is a separate binary.

mod support;

mod access;
mod agents;
mod authenticators;
mod backchannel;
mod cli;
mod client_assertions;
mod consent;
mod crypto;
mod device;
mod endpoints;
mod escalation;
mod events;
mod factor_oracle;
mod flows;
mod flows_admin;
mod geoip;
mod groups;
mod guessing;
mod issued;
mod mail;
mod media;
mod mfa;
mod oauth;
mod oauth_caches;
mod ops;
mod quickstart;
mod scopes;
mod sessions;
mod sign_in_integrity;
mod signing_keys;
mod tasks;
mod tokens;
mod upgrades;
mod users;
