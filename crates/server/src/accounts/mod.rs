//! Accounts: users, groups, permissions and passwords.

pub mod api;
pub mod entities;
pub mod handlers;
pub mod password;
pub mod permissions;
pub mod service;

pub use service::UserType;
