//! Sending someone through a flow on behalf of another part of the server, and proving they came
//! out at the end. An application's authorization flow is run this way: the request hands the
//! flow facts its stages show (the application, the permissions asked for), and when the run
//! ends the way back carries a proof that this session finished this very run, for this very
//! request. The proof is signed with the server secret, short-lived and good once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::Result;
use crate::secret::{ServerSecret, constant_time_eq};
use crate::state::AppState;

/// The query parameter the proof travels in, always last in the address.
pub const PROOF_PARAMETER: &str = "flow_proof";
/// How long a proof may wait before it is redeemed.
const PROOF_LIFETIME_SECONDS: i64 = 120;
const PROOF_PURPOSE: &str = "flow-handoff-proof";

/// What a flow is handed: facts its stages read, by name. A run with a handoff always ends with
/// a proof on its way back.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Handoff {
    pub facts: Map<String, Value>,
}

impl Handoff {
    /// A handoff with `facts`.
    pub fn new(facts: Map<String, Value>) -> Self {
        Self { facts }
    }

    /// The fact `name`, if the flow was handed one.
    pub fn fact(&self, name: &str) -> Option<&Value> {
        self.facts.get(name)
    }
}

/// What a proof binds together.
struct Bound<'a> {
    run: Uuid,
    flow: Uuid,
    session: Uuid,
    expires: i64,
    destination: &'a str,
}

fn mac(secret: &ServerSecret, bound: &Bound<'_>) -> String {
    let text = format!("{}|{}|{}|{}|{}", bound.run, bound.flow, bound.session, bound.expires, bound.destination);
    URL_SAFE_NO_PAD.encode(secret.mac(PROOF_PURPOSE, text.as_bytes()))
}

/// `destination` with a proof that the session `session` finished the run `run` of the flow
/// `flow`, appended as the last query parameter.
pub fn with_proof(secret: &ServerSecret, destination: &str, run: Uuid, flow: Uuid, session: Uuid) -> String {
    let expires = Utc::now().timestamp() + PROOF_LIFETIME_SECONDS;
    let signature = mac(secret, &Bound { run, flow, session, expires, destination });
    let separator = if destination.contains('?') { '&' } else { '?' };
    format!("{destination}{separator}{PROOF_PARAMETER}={}.{expires}.{signature}", run.simple())
}

/// Splits a query string that may end with a proof into the query the proof was made for and
/// the proof.
pub fn split_proof(query: &str) -> (&str, Option<&str>) {
    let marker = format!("{PROOF_PARAMETER}=");
    if let Some(proof) = query.strip_prefix(marker.as_str()) {
        return ("", Some(proof));
    }
    match query.rsplit_once(&format!("&{marker}")) {
        Some((before, proof)) => (before, Some(proof)),
        None => (query, None),
    }
}

/// Whether `proof` shows that the session `session` finished a run of the flow `flow` that was
/// to end at `destination`; redeeming it uses it up, so a second redemption is refused.
pub async fn redeem(state: &AppState, proof: &str, flow: Uuid, session: Uuid, destination: &str) -> Result<bool> {
    let mut parts = proof.splitn(3, '.');
    let (Some(run), Some(expires), Some(signature)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(false);
    };
    let (Ok(run), Ok(expires)) = (Uuid::try_parse(run), expires.parse::<i64>()) else {
        return Ok(false);
    };
    let expected = mac(&state.secret, &Bound { run, flow, session, expires, destination });
    if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) || expires < Utc::now().timestamp() {
        return Ok(false);
    }
    super::run::consume_finished(&state.db, state.tenant, run).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_goes_last_and_splits_off_again() {
        let secret = ServerSecret::from_bytes(b"a test key of thirty-two bytes!!");
        let (run, flow, session) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let sent = with_proof(&secret, "/application/o/authorize/?client_id=a&scope=openid", run, flow, session);
        let query = sent.split_once('?').unwrap().1;
        let (original, proof) = split_proof(query);
        assert_eq!(original, "client_id=a&scope=openid");
        let proof = proof.unwrap();
        let mut parts = proof.splitn(3, '.');
        assert_eq!(parts.next(), Some(run.simple().to_string().as_str()));
        let expires: i64 = parts.next().unwrap().parse().unwrap();
        let signature = parts.next().unwrap();
        let bound = |destination| Bound { run, flow, session, expires, destination };
        assert_eq!(mac(&secret, &bound("/application/o/authorize/?client_id=a&scope=openid")), signature);
        assert_ne!(mac(&secret, &bound("/application/o/authorize/?client_id=b&scope=openid")), signature, "another request");
        let other_session = Bound { session: Uuid::from_u128(4), ..bound("/application/o/authorize/?client_id=a&scope=openid") };
        assert_ne!(mac(&secret, &other_session), signature, "another session");
        assert_eq!(split_proof("client_id=a"), ("client_id=a", None));
        assert_eq!(split_proof("flow_proof=x"), ("", Some("x")));
    }
}
