//! Accounts: users, groups, permissions, passwords, and the access control that guards who
//! holds what.

pub mod access;
pub mod api;
pub mod attributes;
pub mod entities;
pub mod groups;
pub mod handlers;
pub mod password;
pub mod permissions;
pub mod users;

use std::collections::HashSet;

use sea_orm::entity::prelude::*;
use serde_json::json;

use crate::error::{Error, FieldErrors};
use crate::events::ModelRef;

/// authentik's user types, stored as authentik spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum UserType {
    #[sea_orm(string_value = "internal")]
    Internal,
    #[sea_orm(string_value = "external")]
    External,
    #[sea_orm(string_value = "service_account")]
    ServiceAccount,
    #[sea_orm(string_value = "internal_service_account")]
    InternalServiceAccount,
}

impl UserType {
    /// Parses authentik's name for the type.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "internal" => Ok(Self::Internal),
            "external" => Ok(Self::External),
            "service_account" => Ok(Self::ServiceAccount),
            "internal_service_account" => Ok(Self::InternalServiceAccount),
            other => {
                Err(format!("\"{other}\" is not a valid choice; choose internal, external, service_account or internal_service_account."))
            }
        }
    }

    /// authentik's name for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::External => "external",
            Self::ServiceAccount => "service_account",
            Self::InternalServiceAccount => "internal_service_account",
        }
    }

    /// Service accounts sign in only with keys, never interactively.
    pub fn is_service_account(self) -> bool {
        matches!(self, Self::ServiceAccount | Self::InternalServiceAccount)
    }

    /// People's accounts need an e-mail address.
    pub fn needs_email(self) -> bool {
        matches!(self, Self::Internal | Self::External)
    }
}

/// A username: 1 to 150 letters, digits and `@ . + - _`.
pub fn parse_username(text: &str) -> Result<String, String> {
    let canonical = gatehouse_types::canonical_text(text);
    let trimmed = canonical.as_str();
    let valid =
        !trimmed.is_empty() && trimmed.chars().count() <= 150 && trimmed.chars().all(|c| c.is_alphanumeric() || "@.+-_".contains(c));
    if valid {
        Ok(trimmed.to_owned())
    } else {
        Err("Enter a valid username: at most 150 letters, digits and @/./+/-/_ characters.".to_owned())
    }
}

/// A date and time in RFC 3339, or a field error naming `field`.
pub fn parse_datetime(field: &str, value: &str) -> Result<chrono::DateTime<chrono::Utc>, Error> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| Error::field(field, "Enter a valid date/time."))
}

/// Adds DRF's "does not exist" message for every wanted key that was not found.
fn report_missing<T: Eq + std::hash::Hash + std::fmt::Display>(field: &str, wanted: &[T], found: &HashSet<T>, errors: &mut FieldErrors) {
    for id in wanted.iter().filter(|id| !found.contains(id)) {
        errors.add(field, format!("Invalid pk \"{id}\" - object does not exist."));
    }
}

/// A unique index caught a race that the checks before the insert missed.
fn unique_violation_to_field(error: sea_orm::DbErr) -> Error {
    match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(message)) => {
            let field = if message.contains("username") {
                "username"
            } else if message.contains("name_key") {
                "name"
            } else {
                "email"
            };
            Error::field(field, "An object with this value already exists.")
        }
        _ => error.into(),
    }
}

fn user_ref(user: &entities::user::Model) -> ModelRef {
    ModelRef { app: "authentik_core", model_name: "user", pk: json!(user.id), name: user.username.clone() }
}

fn group_ref(group: &entities::group::Model) -> ModelRef {
    ModelRef { app: "authentik_core", model_name: "group", pk: json!(group.group_uuid), name: group.name.clone() }
}
