//! The stage kinds Gatehouse ships. Each owns its settings and its question.

pub mod deny;
pub mod identification;
pub mod password;
pub mod user_login;
pub mod user_logout;

use serde_json::{Map, Value, json};

use super::stage::StageContext;

/// `pending_user` and `pending_user_avatar`, the challenge fields that say who is signing in.
/// They repeat what the person typed, so they look the same whether or not the account exists.
pub fn pending_user_fields(cx: &StageContext<'_>) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("pending_user".into(), json!(pending_user_text(cx)));
    fields.insert("pending_user_avatar".into(), json!(""));
    fields
}

/// Who is signing in, as the person typed it (or the signed-in user's username).
pub fn pending_user_text(cx: &StageContext<'_>) -> String {
    match (&cx.context.pending_user_identifier, &cx.current) {
        (Some(identifier), _) => identifier.clone(),
        (None, Some(current)) => current.user.username.clone(),
        (None, None) => String::new(),
    }
}
