//! The thin HTTP layer: routing, extractors, middleware and API conventions. Handlers live in
//! their domains; this module only wires them.

pub mod auth;
pub mod client;
pub mod cookies;
pub mod error;
pub mod json;
pub mod middleware;
pub mod openapi;
pub mod pages;
pub mod query;
pub mod router;
pub mod system;
