//! Server-side sessions, sign-in and sign-out.

pub mod entities;
pub mod handlers;
pub mod pages;
pub mod service;
