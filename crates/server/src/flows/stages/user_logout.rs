//! The user logout stage: ends the caller's session once they confirm.
//!
//! Opening a flow is a GET, and any site can make a browser open one with a link (same-site-lax
//! cookies ride along on top-level navigation); so entering the stage only asks, and only the
//! answer, a POST bound to this browser's flow run, signs out.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{FieldErrors, Result};
use crate::flows::stage::{Effect, Form, Prompt, StageContext, StageKind, Step, parse_typed};

/// Settings of a logout stage (it has none).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserLogoutSettings {}

/// Asks the caller to confirm, signs them out, then passes; passes at once when nobody is signed
/// in.
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
        let Some(current) = cx.current.as_ref().filter(|current| current.session.is_some()) else { return Ok(Step::Passed) };
        let who = if current.user.email.is_empty() { current.user.username.clone() } else { current.user.email.clone() };
        let mut fields = Map::new();
        fields.insert("pending_user".into(), Value::String(who.clone()));
        let form = Form {
            intro: Some(format!("Sign out {who}?")),
            inputs: Vec::new(),
            submit: "Sign out".into(),
            links: Vec::new(),
            ..Form::default()
        };
        Ok(Step::Challenge(Prompt { fields, form }))
    }

    async fn solve(&self, cx: &mut StageContext<'_>, _response: &Map<String, Value>) -> Result<Step> {
        if let Some(current) = cx.current.take()
            && let Some(session) = &current.session
        {
            crate::sessions::service::sign_out(cx.state, session, &current.user, cx.client).await?;
            cx.effects.push(Effect::SignedOut);
        }
        Ok(Step::Passed)
    }
}
