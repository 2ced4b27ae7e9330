//! The deny stage: ends the flow with a message.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{FieldErrors, Result};
use crate::flows::stage::{StageContext, StageKind, Step, parse_typed};

/// Settings of a deny stage.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DenySettings {
    /// Shown to the person denied; authentik's default when empty.
    pub deny_message: String,
}

/// Always denies.
pub struct Deny;

#[async_trait::async_trait]
impl StageKind for Deny {
    fn kind(&self) -> &'static str {
        "deny"
    }
    fn component(&self) -> &'static str {
        "ak-stage-deny"
    }
    fn verbose_name(&self) -> &'static str {
        "Deny Stage"
    }
    fn meta_model_name(&self) -> &'static str {
        "authentik_stages_deny.denystage"
    }

    fn parse_settings(&self, settings: Map<String, Value>) -> Result<Value, FieldErrors> {
        let (typed, value): (DenySettings, Value) = parse_typed(settings)?;
        if typed.deny_message.chars().count() > 1000 {
            return Err(FieldErrors::single("deny_message", "Ensure this field has no more than 1000 characters."));
        }
        Ok(value)
    }

    async fn enter(&self, cx: &mut StageContext<'_>) -> Result<Step> {
        let settings: DenySettings = cx.settings()?;
        let message = if settings.deny_message.is_empty() { "Permission denied.".to_owned() } else { settings.deny_message };
        Ok(Step::Denied(message))
    }

    async fn solve(&self, cx: &mut StageContext<'_>, _response: &Map<String, Value>) -> Result<Step> {
        self.enter(cx).await
    }
}
