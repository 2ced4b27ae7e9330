//! Permissions: named strings in authentik's `app.codename` form.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::db::pagination::{ListParams, Paginated};

/// A permission name such as `authentik_core.view_user`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Permission(String);

impl Permission {
    /// Parses `app.codename` (lower-case letters, digits and underscores on both sides) naming a
    /// permission of the [`catalogue`]: a misspelt or foreign name would be stored and grant
    /// nothing, silently.
    pub fn parse(input: &str) -> Result<Self, String> {
        let valid_part = |part: &str| {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_lowercase())
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        match input.split_once('.') {
            Some((app, codename)) if input.len() <= 150 && valid_part(app) && valid_part(codename) => {
                if known(input).is_none() {
                    return Err(format!("'{input}' is not a permission Gatehouse knows; GET /api/v3/rbac/permissions/ lists them."));
                }
                Ok(Self(input.to_owned()))
            }
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

/// One permission of the catalogue, described as authentik describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownPermission {
    /// Stable number, authentik's `id`.
    pub id: u32,
    /// `app_label.codename`.
    pub full_name: &'static str,
    /// What it allows, in words (`Can view User`).
    pub name: &'static str,
    pub model: &'static str,
    pub model_verbose: &'static str,
    pub app_label_verbose: &'static str,
}

impl KnownPermission {
    /// The app label (`authentik_core`).
    pub fn app_label(&self) -> &'static str {
        self.full_name.split_once('.').map_or("", |(app, _)| app)
    }

    /// The codename (`view_user`).
    pub fn codename(&self) -> &'static str {
        self.full_name.split_once('.').map_or(self.full_name, |(_, codename)| codename)
    }
}

/// (full name, description, model, model's name, app's name); the position is the id, so new
/// permissions are only ever appended.
const CATALOGUE_ROWS: &[(&str, &str, &str, &str, &str)] = &[
    ("authentik_core.view_user", "Can view User", "user", "User", "authentik Core"),
    ("authentik_core.add_user", "Can add User", "user", "User", "authentik Core"),
    ("authentik_core.change_user", "Can change User", "user", "User", "authentik Core"),
    ("authentik_core.delete_user", "Can delete User", "user", "User", "authentik Core"),
    ("authentik_core.reset_user_password", "Reset Password", "user", "User", "authentik Core"),
    ("authentik_core.view_group", "Can view Group", "group", "Group", "authentik Core"),
    ("authentik_core.add_group", "Can add Group", "group", "Group", "authentik Core"),
    ("authentik_core.change_group", "Can change Group", "group", "Group", "authentik Core"),
    ("authentik_core.delete_group", "Can delete Group", "group", "Group", "authentik Core"),
    (
        "authentik_core.view_authenticatedsession",
        "Can view Authenticated Session",
        "authenticatedsession",
        "Authenticated Session",
        "authentik Core",
    ),
    (
        "authentik_core.delete_authenticatedsession",
        "Can delete Authenticated Session",
        "authenticatedsession",
        "Authenticated Session",
        "authentik Core",
    ),
    ("authentik_core.view_token", "Can view Token", "token", "Token", "authentik Core"),
    ("authentik_core.add_token", "Can add Token", "token", "Token", "authentik Core"),
    ("authentik_core.change_token", "Can change Token", "token", "Token", "authentik Core"),
    ("authentik_core.delete_token", "Can delete Token", "token", "Token", "authentik Core"),
    ("authentik_core.view_token_key", "View token's key", "token", "Token", "authentik Core"),
    ("authentik_core.set_token_key", "Set a token's key", "token", "Token", "authentik Core"),
    ("authentik_events.view_event", "Can view Event", "event", "Event", "authentik Events"),
    ("authentik_flows.view_flow", "Can view Flow", "flow", "Flow", "authentik Flows"),
    ("authentik_flows.add_flow", "Can add Flow", "flow", "Flow", "authentik Flows"),
    ("authentik_flows.change_flow", "Can change Flow", "flow", "Flow", "authentik Flows"),
    ("authentik_flows.delete_flow", "Can delete Flow", "flow", "Flow", "authentik Flows"),
    ("authentik_flows.export_flow", "Can export a Flow", "flow", "Flow", "authentik Flows"),
    ("authentik_flows.view_flowstagebinding", "Can view Flow Stage Binding", "flowstagebinding", "Flow Stage Binding", "authentik Flows"),
    ("authentik_flows.add_flowstagebinding", "Can add Flow Stage Binding", "flowstagebinding", "Flow Stage Binding", "authentik Flows"),
    (
        "authentik_flows.change_flowstagebinding",
        "Can change Flow Stage Binding",
        "flowstagebinding",
        "Flow Stage Binding",
        "authentik Flows",
    ),
    (
        "authentik_flows.delete_flowstagebinding",
        "Can delete Flow Stage Binding",
        "flowstagebinding",
        "Flow Stage Binding",
        "authentik Flows",
    ),
    ("authentik_flows.view_stage", "Can view Stage", "stage", "Stage", "authentik Flows"),
    ("authentik_flows.add_stage", "Can add Stage", "stage", "Stage", "authentik Flows"),
    ("authentik_flows.change_stage", "Can change Stage", "stage", "Stage", "authentik Flows"),
    ("authentik_flows.delete_stage", "Can delete Stage", "stage", "Stage", "authentik Flows"),
    ("authentik_tasks.view_task", "Can view Task", "task", "Task", "authentik Tasks"),
    ("authentik_tasks.retry_task", "Retry failed task", "task", "Task", "authentik Tasks"),
    ("authentik_tasks_schedules.view_schedule", "Can view Schedule", "schedule", "Schedule", "authentik Tasks Schedules"),
    ("authentik_tasks_schedules.change_schedule", "Can change Schedule", "schedule", "Schedule", "authentik Tasks Schedules"),
    ("authentik_tasks_schedules.send_schedule", "Manually trigger a schedule", "schedule", "Schedule", "authentik Tasks Schedules"),
    (
        "authentik_stages_authenticator_sms.view_smsdevice",
        "Can view SMS Device",
        "smsdevice",
        "SMS Device",
        "authentik Stages.Authenticator.SMS",
    ),
    (
        "authentik_stages_authenticator_sms.change_smsdevice",
        "Can change SMS Device",
        "smsdevice",
        "SMS Device",
        "authentik Stages.Authenticator.SMS",
    ),
    (
        "authentik_stages_authenticator_sms.delete_smsdevice",
        "Can delete SMS Device",
        "smsdevice",
        "SMS Device",
        "authentik Stages.Authenticator.SMS",
    ),
    (
        "authentik_stages_authenticator_totp.view_totpdevice",
        "Can view TOTP Device",
        "totpdevice",
        "TOTP Device",
        "authentik Stages.Authenticator.TOTP",
    ),
    (
        "authentik_stages_authenticator_totp.change_totpdevice",
        "Can change TOTP Device",
        "totpdevice",
        "TOTP Device",
        "authentik Stages.Authenticator.TOTP",
    ),
    (
        "authentik_stages_authenticator_totp.delete_totpdevice",
        "Can delete TOTP Device",
        "totpdevice",
        "TOTP Device",
        "authentik Stages.Authenticator.TOTP",
    ),
    (
        "authentik_stages_authenticator_static.view_staticdevice",
        "Can view Static Device",
        "staticdevice",
        "Static Device",
        "authentik Stages.Authenticator.Static",
    ),
    (
        "authentik_stages_authenticator_static.change_staticdevice",
        "Can change Static Device",
        "staticdevice",
        "Static Device",
        "authentik Stages.Authenticator.Static",
    ),
    (
        "authentik_stages_authenticator_static.delete_staticdevice",
        "Can delete Static Device",
        "staticdevice",
        "Static Device",
        "authentik Stages.Authenticator.Static",
    ),
    (
        "authentik_stages_authenticator_email.view_emaildevice",
        "Can view Email Device",
        "emaildevice",
        "Email Device",
        "authentik Stages.Authenticator.Email",
    ),
    (
        "authentik_stages_authenticator_email.change_emaildevice",
        "Can change Email Device",
        "emaildevice",
        "Email Device",
        "authentik Stages.Authenticator.Email",
    ),
    (
        "authentik_stages_authenticator_email.delete_emaildevice",
        "Can delete Email Device",
        "emaildevice",
        "Email Device",
        "authentik Stages.Authenticator.Email",
    ),
    (
        "authentik_events.view_notificationwebhookmapping",
        "Can view Webhook Mapping",
        "notificationwebhookmapping",
        "Webhook Mapping",
        "authentik Events",
    ),
    (
        "authentik_events.add_notificationwebhookmapping",
        "Can add Webhook Mapping",
        "notificationwebhookmapping",
        "Webhook Mapping",
        "authentik Events",
    ),
    (
        "authentik_events.change_notificationwebhookmapping",
        "Can change Webhook Mapping",
        "notificationwebhookmapping",
        "Webhook Mapping",
        "authentik Events",
    ),
    (
        "authentik_events.delete_notificationwebhookmapping",
        "Can delete Webhook Mapping",
        "notificationwebhookmapping",
        "Webhook Mapping",
        "authentik Events",
    ),
    ("authentik_rbac.view_media_files", "Can view media files", "systempermission", "System Permission", "authentik RBAC"),
    ("authentik_rbac.manage_media_files", "Can manage media files", "systempermission", "System Permission", "authentik RBAC"),
    (
        "authentik_crypto.view_certificatekeypair",
        "Can view Certificate-Key Pair",
        "certificatekeypair",
        "Certificate-Key Pair",
        "authentik Crypto",
    ),
    (
        "authentik_crypto.add_certificatekeypair",
        "Can add Certificate-Key Pair",
        "certificatekeypair",
        "Certificate-Key Pair",
        "authentik Crypto",
    ),
    (
        "authentik_crypto.change_certificatekeypair",
        "Can change Certificate-Key Pair",
        "certificatekeypair",
        "Certificate-Key Pair",
        "authentik Crypto",
    ),
    (
        "authentik_crypto.delete_certificatekeypair",
        "Can delete Certificate-Key Pair",
        "certificatekeypair",
        "Certificate-Key Pair",
        "authentik Crypto",
    ),
    (
        "authentik_crypto.view_certificatekeypair_certificate",
        "View Certificate-Key pair's certificate",
        "certificatekeypair",
        "Certificate-Key Pair",
        "authentik Crypto",
    ),
    (
        "authentik_crypto.view_certificatekeypair_key",
        "View Certificate-Key pair's private key",
        "certificatekeypair",
        "Certificate-Key Pair",
        "authentik Crypto",
    ),
    ("authentik_core.view_application", "Can view Application", "application", "Application", "authentik Core"),
    ("authentik_core.add_application", "Can add Application", "application", "Application", "authentik Core"),
    ("authentik_core.change_application", "Can change Application", "application", "Application", "authentik Core"),
    ("authentik_core.delete_application", "Can delete Application", "application", "Application", "authentik Core"),
    (
        "authentik_providers_oauth2.view_oauth2provider",
        "Can view OAuth2/OpenID Provider",
        "oauth2provider",
        "OAuth2/OpenID Provider",
        "authentik Providers OAuth2",
    ),
    (
        "authentik_providers_oauth2.add_oauth2provider",
        "Can add OAuth2/OpenID Provider",
        "oauth2provider",
        "OAuth2/OpenID Provider",
        "authentik Providers OAuth2",
    ),
    (
        "authentik_providers_oauth2.change_oauth2provider",
        "Can change OAuth2/OpenID Provider",
        "oauth2provider",
        "OAuth2/OpenID Provider",
        "authentik Providers OAuth2",
    ),
    (
        "authentik_providers_oauth2.delete_oauth2provider",
        "Can delete OAuth2/OpenID Provider",
        "oauth2provider",
        "OAuth2/OpenID Provider",
        "authentik Providers OAuth2",
    ),
    (
        "authentik_providers_oauth2.view_scopemapping",
        "Can view Scope Mapping",
        "scopemapping",
        "Scope Mapping",
        "authentik Providers OAuth2",
    ),
    ("authentik_providers_oauth2.add_scopemapping", "Can add Scope Mapping", "scopemapping", "Scope Mapping", "authentik Providers OAuth2"),
    (
        "authentik_providers_oauth2.change_scopemapping",
        "Can change Scope Mapping",
        "scopemapping",
        "Scope Mapping",
        "authentik Providers OAuth2",
    ),
    (
        "authentik_providers_oauth2.delete_scopemapping",
        "Can delete Scope Mapping",
        "scopemapping",
        "Scope Mapping",
        "authentik Providers OAuth2",
    ),
    ("authentik_stages_consent.view_userconsent", "Can view User Consent", "userconsent", "User Consent", "authentik Stages.Consent"),
    ("authentik_stages_consent.delete_userconsent", "Can delete User Consent", "userconsent", "User Consent", "authentik Stages.Consent"),
    (
        "authentik_providers_oauth2.view_accesstoken",
        "Can view OAuth2 Access Token",
        "accesstoken",
        "OAuth2 Access Token",
        "authentik Providers OAuth2",
    ),
    (
        "authentik_providers_oauth2.delete_accesstoken",
        "Can delete OAuth2 Access Token",
        "accesstoken",
        "OAuth2 Access Token",
        "authentik Providers OAuth2",
    ),
    (
        "authentik_providers_oauth2.view_refreshtoken",
        "Can view OAuth2 Refresh Token",
        "refreshtoken",
        "OAuth2 Refresh Token",
        "authentik Providers OAuth2",
    ),
    (
        "authentik_providers_oauth2.delete_refreshtoken",
        "Can delete OAuth2 Refresh Token",
        "refreshtoken",
        "OAuth2 Refresh Token",
        "authentik Providers OAuth2",
    ),
    (
        "authentik_providers_oauth2.view_authorizationcode",
        "Can view Authorization Code",
        "authorizationcode",
        "Authorization Code",
        "authentik Providers OAuth2",
    ),
    (
        "authentik_providers_oauth2.delete_authorizationcode",
        "Can delete Authorization Code",
        "authorizationcode",
        "Authorization Code",
        "authentik Providers OAuth2",
    ),
    (
        "authentik_endpoints_connectors_agent.view_agentconnector",
        "Can view Agent Connector",
        "agentconnector",
        "Agent Connector",
        "authentik Endpoints.Connectors.Agent",
    ),
    (
        "authentik_endpoints_connectors_agent.add_agentconnector",
        "Can add Agent Connector",
        "agentconnector",
        "Agent Connector",
        "authentik Endpoints.Connectors.Agent",
    ),
    (
        "authentik_endpoints_connectors_agent.change_agentconnector",
        "Can change Agent Connector",
        "agentconnector",
        "Agent Connector",
        "authentik Endpoints.Connectors.Agent",
    ),
    (
        "authentik_endpoints_connectors_agent.delete_agentconnector",
        "Can delete Agent Connector",
        "agentconnector",
        "Agent Connector",
        "authentik Endpoints.Connectors.Agent",
    ),
    (
        "authentik_endpoints_connectors_agent.view_enrollmenttoken",
        "Can view Enrollment Token",
        "enrollmenttoken",
        "Enrollment Token",
        "authentik Endpoints.Connectors.Agent",
    ),
    (
        "authentik_endpoints_connectors_agent.add_enrollmenttoken",
        "Can add Enrollment Token",
        "enrollmenttoken",
        "Enrollment Token",
        "authentik Endpoints.Connectors.Agent",
    ),
    (
        "authentik_endpoints_connectors_agent.change_enrollmenttoken",
        "Can change Enrollment Token",
        "enrollmenttoken",
        "Enrollment Token",
        "authentik Endpoints.Connectors.Agent",
    ),
    (
        "authentik_endpoints_connectors_agent.delete_enrollmenttoken",
        "Can delete Enrollment Token",
        "enrollmenttoken",
        "Enrollment Token",
        "authentik Endpoints.Connectors.Agent",
    ),
    (
        "authentik_endpoints_connectors_agent.view_enrollment_token_key",
        "View token's key",
        "enrollmenttoken",
        "Enrollment Token",
        "authentik Endpoints.Connectors.Agent",
    ),
    (
        "authentik_endpoints.view_deviceaccessgroup",
        "Can view Device access group",
        "deviceaccessgroup",
        "Device access group",
        "authentik Endpoints",
    ),
    (
        "authentik_endpoints.add_deviceaccessgroup",
        "Can add Device access group",
        "deviceaccessgroup",
        "Device access group",
        "authentik Endpoints",
    ),
    (
        "authentik_endpoints.change_deviceaccessgroup",
        "Can change Device access group",
        "deviceaccessgroup",
        "Device access group",
        "authentik Endpoints",
    ),
    (
        "authentik_endpoints.delete_deviceaccessgroup",
        "Can delete Device access group",
        "deviceaccessgroup",
        "Device access group",
        "authentik Endpoints",
    ),
    ("authentik_endpoints.view_device", "Can view Device", "device", "Device", "authentik Endpoints"),
    ("authentik_endpoints.change_device", "Can change Device", "device", "Device", "authentik Endpoints"),
    ("authentik_endpoints.delete_device", "Can delete Device", "device", "Device", "authentik Endpoints"),
    (
        "authentik_endpoints.view_deviceuserbinding",
        "Can view Device User Binding",
        "deviceuserbinding",
        "Device User Binding",
        "authentik Endpoints",
    ),
    (
        "authentik_endpoints.add_deviceuserbinding",
        "Can add Device User Binding",
        "deviceuserbinding",
        "Device User Binding",
        "authentik Endpoints",
    ),
    (
        "authentik_endpoints.change_deviceuserbinding",
        "Can change Device User Binding",
        "deviceuserbinding",
        "Device User Binding",
        "authentik Endpoints",
    ),
    (
        "authentik_endpoints.delete_deviceuserbinding",
        "Can delete Device User Binding",
        "deviceuserbinding",
        "Device User Binding",
        "authentik Endpoints",
    ),
];

/// Every permission Gatehouse checks, in id order.
pub fn catalogue() -> impl Iterator<Item = KnownPermission> {
    CATALOGUE_ROWS.iter().enumerate().map(|(index, &(full_name, name, model, model_verbose, app_label_verbose))| KnownPermission {
        id: index as u32 + 1,
        full_name,
        name,
        model,
        model_verbose,
        app_label_verbose,
    })
}

/// The catalogue's entry for `full_name`.
pub fn known(full_name: &str) -> Option<KnownPermission> {
    catalogue().find(|p| p.full_name == full_name)
}

/// Filters of the permission list, as authentik names them.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PermissionFilter {
    /// Exact codename, e.g. `view_user`.
    pub codename: Option<String>,
    /// Exact app label, e.g. `authentik_core`.
    #[serde(rename = "content_type__app_label")]
    #[param(rename = "content_type__app_label")]
    pub app_label: Option<String>,
    /// Exact model, e.g. `user`.
    #[serde(rename = "content_type__model")]
    #[param(rename = "content_type__model")]
    pub model: Option<String>,
}

/// One page of the catalogue, filtered; `search` matches the name and codename.
pub fn list(
    config: &crate::config::ApiConfig,
    filter: &PermissionFilter,
    params: &ListParams,
) -> crate::error::Result<Paginated<KnownPermission>> {
    let page = params.page_request(config)?;
    let search = params.search.as_deref().map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty());
    let matches = |p: &KnownPermission| {
        filter.codename.as_deref().is_none_or(|c| c.is_empty() || c == p.codename())
            && filter.app_label.as_deref().is_none_or(|a| a.is_empty() || a == p.app_label())
            && filter.model.as_deref().is_none_or(|m| m.is_empty() || m == p.model)
            && search.as_deref().is_none_or(|s| p.name.to_lowercase().contains(s) || p.full_name.contains(s))
    };
    crate::db::pagination::page_of(catalogue().filter(matches).collect(), page)
}

/// The catalogue's entry with authentik's `id`.
pub fn get(id: u32) -> Option<KnownPermission> {
    catalogue().find(|p| p.id == id)
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
    pub const VIEW_SMS_DEVICE: &str = "authentik_stages_authenticator_sms.view_smsdevice";
    pub const CHANGE_SMS_DEVICE: &str = "authentik_stages_authenticator_sms.change_smsdevice";
    pub const DELETE_SMS_DEVICE: &str = "authentik_stages_authenticator_sms.delete_smsdevice";
    pub const VIEW_TOTP_DEVICE: &str = "authentik_stages_authenticator_totp.view_totpdevice";
    pub const CHANGE_TOTP_DEVICE: &str = "authentik_stages_authenticator_totp.change_totpdevice";
    pub const DELETE_TOTP_DEVICE: &str = "authentik_stages_authenticator_totp.delete_totpdevice";
    pub const VIEW_STATIC_DEVICE: &str = "authentik_stages_authenticator_static.view_staticdevice";
    pub const CHANGE_STATIC_DEVICE: &str = "authentik_stages_authenticator_static.change_staticdevice";
    pub const DELETE_STATIC_DEVICE: &str = "authentik_stages_authenticator_static.delete_staticdevice";
    pub const VIEW_EMAIL_DEVICE: &str = "authentik_stages_authenticator_email.view_emaildevice";
    pub const CHANGE_EMAIL_DEVICE: &str = "authentik_stages_authenticator_email.change_emaildevice";
    pub const DELETE_EMAIL_DEVICE: &str = "authentik_stages_authenticator_email.delete_emaildevice";
    pub const VIEW_WEBHOOK_MAPPING: &str = "authentik_events.view_notificationwebhookmapping";
    pub const ADD_WEBHOOK_MAPPING: &str = "authentik_events.add_notificationwebhookmapping";
    pub const CHANGE_WEBHOOK_MAPPING: &str = "authentik_events.change_notificationwebhookmapping";
    pub const DELETE_WEBHOOK_MAPPING: &str = "authentik_events.delete_notificationwebhookmapping";
    pub const VIEW_MEDIA_FILES: &str = "authentik_rbac.view_media_files";
    pub const MANAGE_MEDIA_FILES: &str = "authentik_rbac.manage_media_files";
    pub const VIEW_AGENT_CONNECTOR: &str = "authentik_endpoints_connectors_agent.view_agentconnector";
    pub const ADD_AGENT_CONNECTOR: &str = "authentik_endpoints_connectors_agent.add_agentconnector";
    pub const CHANGE_AGENT_CONNECTOR: &str = "authentik_endpoints_connectors_agent.change_agentconnector";
    pub const DELETE_AGENT_CONNECTOR: &str = "authentik_endpoints_connectors_agent.delete_agentconnector";
    pub const VIEW_ENROLLMENT_TOKEN: &str = "authentik_endpoints_connectors_agent.view_enrollmenttoken";
    pub const ADD_ENROLLMENT_TOKEN: &str = "authentik_endpoints_connectors_agent.add_enrollmenttoken";
    pub const CHANGE_ENROLLMENT_TOKEN: &str = "authentik_endpoints_connectors_agent.change_enrollmenttoken";
    pub const DELETE_ENROLLMENT_TOKEN: &str = "authentik_endpoints_connectors_agent.delete_enrollmenttoken";
    pub const VIEW_ENROLLMENT_TOKEN_KEY: &str = "authentik_endpoints_connectors_agent.view_enrollment_token_key";
    pub const VIEW_DEVICE_ACCESS_GROUP: &str = "authentik_endpoints.view_deviceaccessgroup";
    pub const ADD_DEVICE_ACCESS_GROUP: &str = "authentik_endpoints.add_deviceaccessgroup";
    pub const CHANGE_DEVICE_ACCESS_GROUP: &str = "authentik_endpoints.change_deviceaccessgroup";
    pub const DELETE_DEVICE_ACCESS_GROUP: &str = "authentik_endpoints.delete_deviceaccessgroup";
    pub const VIEW_DEVICE: &str = "authentik_endpoints.view_device";
    pub const CHANGE_DEVICE: &str = "authentik_endpoints.change_device";
    pub const DELETE_DEVICE: &str = "authentik_endpoints.delete_device";
    pub const VIEW_DEVICE_BINDING: &str = "authentik_endpoints.view_deviceuserbinding";
    pub const ADD_DEVICE_BINDING: &str = "authentik_endpoints.add_deviceuserbinding";
    pub const CHANGE_DEVICE_BINDING: &str = "authentik_endpoints.change_deviceuserbinding";
    pub const DELETE_DEVICE_BINDING: &str = "authentik_endpoints.delete_deviceuserbinding";
    pub const VIEW_CERTIFICATE_KEY_PAIR: &str = "authentik_crypto.view_certificatekeypair";
    pub const ADD_CERTIFICATE_KEY_PAIR: &str = "authentik_crypto.add_certificatekeypair";
    pub const CHANGE_CERTIFICATE_KEY_PAIR: &str = "authentik_crypto.change_certificatekeypair";
    pub const DELETE_CERTIFICATE_KEY_PAIR: &str = "authentik_crypto.delete_certificatekeypair";
    pub const VIEW_CERTIFICATE_KEY_PAIR_CERTIFICATE: &str = "authentik_crypto.view_certificatekeypair_certificate";
    pub const VIEW_CERTIFICATE_KEY_PAIR_KEY: &str = "authentik_crypto.view_certificatekeypair_key";
    pub const VIEW_APPLICATION: &str = "authentik_core.view_application";
    pub const ADD_APPLICATION: &str = "authentik_core.add_application";
    pub const CHANGE_APPLICATION: &str = "authentik_core.change_application";
    pub const DELETE_APPLICATION: &str = "authentik_core.delete_application";
    pub const VIEW_OAUTH2_PROVIDER: &str = "authentik_providers_oauth2.view_oauth2provider";
    pub const ADD_OAUTH2_PROVIDER: &str = "authentik_providers_oauth2.add_oauth2provider";
    pub const CHANGE_OAUTH2_PROVIDER: &str = "authentik_providers_oauth2.change_oauth2provider";
    pub const DELETE_OAUTH2_PROVIDER: &str = "authentik_providers_oauth2.delete_oauth2provider";
    pub const VIEW_SCOPE_MAPPING: &str = "authentik_providers_oauth2.view_scopemapping";
    pub const ADD_SCOPE_MAPPING: &str = "authentik_providers_oauth2.add_scopemapping";
    pub const CHANGE_SCOPE_MAPPING: &str = "authentik_providers_oauth2.change_scopemapping";
    pub const DELETE_SCOPE_MAPPING: &str = "authentik_providers_oauth2.delete_scopemapping";
    pub const VIEW_USER_CONSENT: &str = "authentik_stages_consent.view_userconsent";
    pub const DELETE_USER_CONSENT: &str = "authentik_stages_consent.delete_userconsent";
    pub const VIEW_ACCESS_TOKEN: &str = "authentik_providers_oauth2.view_accesstoken";
    pub const DELETE_ACCESS_TOKEN: &str = "authentik_providers_oauth2.delete_accesstoken";
    pub const VIEW_REFRESH_TOKEN: &str = "authentik_providers_oauth2.view_refreshtoken";
    pub const DELETE_REFRESH_TOKEN: &str = "authentik_providers_oauth2.delete_refreshtoken";
    pub const VIEW_AUTHORIZATION_CODE: &str = "authentik_providers_oauth2.view_authorizationcode";
    pub const DELETE_AUTHORIZATION_CODE: &str = "authentik_providers_oauth2.delete_authorizationcode";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_app_codename() {
        assert_eq!(Permission::parse("authentik_core.view_token_key").unwrap().as_str(), "authentik_core.view_token_key");
        for bad in ["", "view_user", "a.", ".b", "A.b", "a.b.c", "a b.c", "1a.b", "authentik_core.fly_to_moon"] {
            assert!(Permission::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Permission::parse("authentik_core.fly_to_moon").unwrap_err().contains("/api/v3/rbac/permissions/"));
    }

    #[test]
    fn every_permission_a_route_checks_is_in_the_catalogue_once() {
        for name in [
            names::VIEW_USER,
            names::ADD_USER,
            names::CHANGE_USER,
            names::DELETE_USER,
            names::RESET_USER_PASSWORD,
            names::VIEW_GROUP,
            names::ADD_GROUP,
            names::CHANGE_GROUP,
            names::DELETE_GROUP,
            names::VIEW_EVENT,
            names::VIEW_SESSION,
            names::DELETE_SESSION,
            names::VIEW_TOKEN,
            names::ADD_TOKEN,
            names::CHANGE_TOKEN,
            names::DELETE_TOKEN,
            names::VIEW_TOKEN_KEY,
            names::SET_TOKEN_KEY,
            names::VIEW_FLOW,
            names::ADD_FLOW,
            names::CHANGE_FLOW,
            names::DELETE_FLOW,
            names::EXPORT_FLOW,
            names::VIEW_FLOW_STAGE_BINDING,
            names::ADD_FLOW_STAGE_BINDING,
            names::CHANGE_FLOW_STAGE_BINDING,
            names::DELETE_FLOW_STAGE_BINDING,
            names::VIEW_STAGE,
            names::ADD_STAGE,
            names::CHANGE_STAGE,
            names::DELETE_STAGE,
        ] {
            assert!(known(name).is_some(), "{name} is missing from the catalogue");
        }
        let mut names: Vec<&str> = catalogue().map(|p| p.full_name).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a permission is listed twice");
        assert!(catalogue().all(|p| !p.codename().is_empty() && !p.app_label().is_empty()));
    }
}
