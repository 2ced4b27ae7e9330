//! The audit trail: events (sign-ins, changes, secret views) and the visit history.

pub mod client;
pub mod entities;
pub mod handlers;
pub mod service;
pub mod visits;

pub use service::{Action, EventRecord, ModelRef};
