//! Server-side sessions, sign-in and sign-out, and sign-in throttling.

pub mod entities;
pub mod handlers;
pub mod pages;
pub mod service;
pub mod throttle;
