//! Who must prove a second factor to sign in: anyone with a device to prove, and everyone when
//! the sign-in flow's validation stage does not let people without one through. Sign-ins that
//! take a password alone (the JSON sign-in) follow the same rule as the flow.

use serde_json::Value;

use super::stages::authenticator_validate::NotConfiguredAction;
use crate::accounts::entities::user;
use crate::error::Result;
use crate::sessions::service::PasswordAlone;
use crate::state::AppState;

/// The rule of the configured sign-in flow (`flows.authentication_flow`).
pub struct SignInFlowRule;

#[async_trait::async_trait]
impl PasswordAlone for SignInFlowRule {
    async fn suffices(&self, state: &AppState, user: &user::Model) -> Result<bool> {
        if crate::mfa::devices::has_sign_in_device(state, user.id).await? {
            return Ok(false);
        }
        Ok(!requires_a_device_of_everyone(state).await?)
    }
}

/// Whether a validation stage of the sign-in flow refuses, or sends to set one up, people
/// without a device. Read from the flow's plan, which is kept in memory until the flow changes.
async fn requires_a_device_of_everyone(state: &AppState) -> Result<bool> {
    let stages = match super::executor::planned_stages(state, &state.config.flows.authentication_flow).await {
        Ok(stages) => stages,
        Err(crate::error::Error::NotFound) => return Ok(false),
        Err(error) => return Err(error),
    };
    Ok(stages.iter().filter(|stage| stage.kind == "authenticator_validate").any(|stage| {
        let action = stage.settings.get("not_configured_action").cloned().unwrap_or(Value::Null);
        // Unreadable settings count as strict: refusing a password-only sign-in is the safe side.
        serde_json::from_value::<NotConfiguredAction>(action).map_or(true, |action| action != NotConfiguredAction::Skip)
    }))
}
