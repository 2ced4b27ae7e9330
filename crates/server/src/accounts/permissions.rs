//! Permissions: named strings in authentik's `app.codename` form.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A permission name such as `authentik_core.view_user`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Permission(String);

impl Permission {
    /// Parses `app.codename` (lower-case letters, digits and underscores on both sides).
    pub fn parse(input: &str) -> Result<Self, String> {
        let valid_part = |part: &str| {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_lowercase())
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        match input.split_once('.') {
            Some((app, codename)) if input.len() <= 150 && valid_part(app) && valid_part(codename) => Ok(Self(input.to_owned())),
            _ => Err(format!("'{input}' is not a permission of the form app.codename, e.g. authentik_core.view_user.")),
        }
    }

    /// The permission's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Permissions the routes of this server check.
pub mod names {
    pub const VIEW_USER: &str = "authentik_core.view_user";
    pub const ADD_USER: &str = "authentik_core.add_user";
    pub const CHANGE_USER: &str = "authentik_core.change_user";
    pub const DELETE_USER: &str = "authentik_core.delete_user";
    pub const RESET_USER_PASSWORD: &str = "authentik_core.reset_user_password";
    pub const VIEW_GROUP: &str = "authentik_core.view_group";
    pub const ADD_GROUP: &str = "authentik_core.add_group";
    pub const CHANGE_GROUP: &str = "authentik_core.change_group";
    pub const DELETE_GROUP: &str = "authentik_core.delete_group";
    pub const VIEW_EVENT: &str = "authentik_events.view_event";
    pub const VIEW_SESSION: &str = "authentik_core.view_authenticatedsession";
    pub const DELETE_SESSION: &str = "authentik_core.delete_authenticatedsession";
    pub const VIEW_TOKEN: &str = "authentik_core.view_token";
    pub const ADD_TOKEN: &str = "authentik_core.add_token";
    pub const CHANGE_TOKEN: &str = "authentik_core.change_token";
    pub const DELETE_TOKEN: &str = "authentik_core.delete_token";
    pub const VIEW_TOKEN_KEY: &str = "authentik_core.view_token_key";
    pub const SET_TOKEN_KEY: &str = "authentik_core.set_token_key";
    pub const VIEW_FLOW: &str = "authentik_flows.view_flow";
    pub const ADD_FLOW: &str = "authentik_flows.add_flow";
    pub const CHANGE_FLOW: &str = "authentik_flows.change_flow";
    pub const DELETE_FLOW: &str = "authentik_flows.delete_flow";
    pub const EXPORT_FLOW: &str = "authentik_flows.export_flow";
    pub const VIEW_FLOW_STAGE_BINDING: &str = "authentik_flows.view_flowstagebinding";
    pub const ADD_FLOW_STAGE_BINDING: &str = "authentik_flows.add_flowstagebinding";
    pub const CHANGE_FLOW_STAGE_BINDING: &str = "authentik_flows.change_flowstagebinding";
    pub const DELETE_FLOW_STAGE_BINDING: &str = "authentik_flows.delete_flowstagebinding";
    pub const VIEW_STAGE: &str = "authentik_flows.view_stage";
    pub const ADD_STAGE: &str = "authentik_flows.add_stage";
    pub const CHANGE_STAGE: &str = "authentik_flows.change_stage";
    pub const DELETE_STAGE: &str = "authentik_flows.delete_stage";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_app_codename() {
        assert_eq!(Permission::parse("authentik_core.view_token_key").unwrap().as_str(), "authentik_core.view_token_key");
        for bad in ["", "view_user", "a.", ".b", "A.b", "a.b.c", "a b.c", "1a.b"] {
            assert!(Permission::parse(bad).is_err(), "{bad:?}");
        }
    }
}
