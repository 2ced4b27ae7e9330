//! Sending someone through a flow on behalf of another part of the server, and proving they came
//! out at the end. An application's authorization flow is run this way: the request hands the
//! flow facts its stages show (the application, the permissions asked for), and when the run
//! ends the way back carries a proof that this session finished this very run, for this very
//! request. The proof is signed with the server secret, short-lived and good once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
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

    /// The fact `name` read as `T`; `None` when it is missing or of another shape.
    pub fn parsed<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        serde_json::from_value(self.fact(name)?.clone()).ok()
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
/// `flow`, appended as the last query parameter. The proof lasts no longer than the finished
/// run's row (`run_expires`), which it is redeemed against.
pub fn with_proof(secret: &ServerSecret, destination: &str, run: Uuid, flow: Uuid, session: Uuid, run_expires: DateTime<Utc>) -> String {
    let expires = (Utc::now().timestamp() + PROOF_LIFETIME_SECONDS).min(run_expires.timestamp());
    let signature = mac(secret, &Bound { run, flow, session, expires, destination });
    let separator = if destination.contains('?') { '&' } else { '?' };
    format!("{destination}{separator}{PROOF_PARAMETER}={}.{expires}.{signature}", run.simple())
}

/// Whether `text` has a proof's shape: a run id in 32 hex digits, a time, and a signature.
fn proof_shaped(text: &str) -> bool {
    let mut parts = text.splitn(3, '.');
    let (Some(run), Some(expires), Some(signature)) = (parts.next(), parts.next(), parts.next()) else { return false };
    run.len() == 32
        && run.bytes().all(|b| b.is_ascii_hexdigit())
        && !expires.is_empty()
        && expires.bytes().all(|b| b.is_ascii_digit())
        && !signature.is_empty()
        && signature.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Splits a query string that may end with a proof into the query the proof was made for and
/// the proof. Only a last parameter of a proof's shape is taken for one (the query a proof
/// follows always has a client, so it never stands alone); anything else is left to the query.
pub fn split_proof(query: &str) -> (&str, Option<&str>) {
    match query.rsplit_once(&format!("&{PROOF_PARAMETER}=")) {
        Some((before, proof)) if proof_shaped(proof) => (before, Some(proof)),
        _ => (query, None),
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
        let run_expires = Utc::now() + chrono::TimeDelta::minutes(30);
        let sent = with_proof(&secret, "/application/o/authorize/?client_id=a&scope=openid", run, flow, session, run_expires);
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
        assert_eq!(split_proof("flow_proof=x"), ("flow_proof=x", None), "a proof never stands alone");
        assert_eq!(split_proof("client_id=a&flow_proof=x"), ("client_id=a&flow_proof=x", None), "not a proof's shape");
        assert_eq!(split_proof("client_id=a&flow_proof=1.2.3&b=c"), ("client_id=a&flow_proof=1.2.3&b=c", None), "not last");
    }

    #[test]
    fn a_proof_lasts_no_longer_than_the_run_it_is_redeemed_against() {
        let secret = ServerSecret::from_bytes(b"a test key of thirty-two bytes!!");
        let ending = Utc::now() + chrono::TimeDelta::seconds(10);
        let sent = with_proof(&secret, "/a?client_id=b", Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3), ending);
        let proof = split_proof(sent.split_once('?').unwrap().1).1.unwrap();
        let expires: i64 = proof.split('.').nth(1).unwrap().parse().unwrap();
        assert_eq!(expires, ending.timestamp());
    }
}
