//! The user logout stage: ends the caller's session.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{FieldErrors, Result};
use crate::flows::stage::{Effect, StageContext, StageKind, Step, parse_typed};

/// Settings of a logout stage (it has none).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserLogoutSettings {}

/// Signs the caller out, then passes; passes at once when nobody is signed in.
pub struct UserLogout;

#[async_trait::async_trait]
impl StageKind for UserLogout {
    fn kind(&self) -> &'static str {
        "user_logout"
    }
    fn component(&self) -> &'static str {
        "ak-stage-user-logout"
    }
    fn verbose_name(&self) -> &'static str {
        "User Logout Stage"
    }
    fn meta_model_name(&self) -> &'static str {
        "authentik_stages_user_logout.userlogoutstage"
    }

    fn parse_settings(&self, settings: Map<String, Value>) -> Result<Value, FieldErrors> {
        Ok(parse_typed::<UserLogoutSettings>(settings)?.1)
    }

    async fn enter(&self, cx: &mut StageContext<'_>) -> Result<Step> {
        if let Some(current) = cx.current.take()
            && let Some(session) = &current.session
        {
            crate::sessions::service::sign_out(cx.state, session, &current.user, cx.client).await?;
            cx.effects.push(Effect::SignedOut);
        }
        Ok(Step::Passed)
    }

    async fn solve(&self, cx: &mut StageContext<'_>, _response: &Map<String, Value>) -> Result<Step> {
        self.enter(cx).await
    }
}
