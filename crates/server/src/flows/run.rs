//! Flow runs: the plan a flow made when it started and the context its stages share, kept in
//! the database (so any server process can continue it) and found by the browser's flow cookie.
//!
//! A run is stored only once it has something to keep. Opening a flow gives a *ticket* instead:
//! a signed cookie value naming the flow, the plan's fingerprint, the run's identity and where
//! to go afterwards. Any process rebuilds the run from it, so a flood of page loads writes
//! nothing; the first answer stores the run under a fresh random key, and storing it is the
//! compare-and-set of its first step (a second answer with the same ticket loses).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryTrait, Set, TryInsertResult};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::entities::run;
use super::model::InvalidResponseAction;
use crate::accounts::entities::user;
use crate::error::{Error, Result};
use crate::secret::{ServerSecret, constant_time_eq, random_token};
use crate::tenants::TenantId;

/// Name of the cookie that carries the flow run's key.
pub const FLOW_COOKIE: &str = "gatehouse_flow";

/// One planned stage: a copy of the stage as it was when the run started (so a run is not
/// changed under a person's feet, and each step needs no stage lookup), and what to do when its
/// answer is invalid.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlannedStage {
    pub stage_id: Uuid,
    pub name: String,
    pub kind: String,
    pub settings: Value,
    pub invalid_response_action: InvalidResponseAction,
}

/// What a run remembers of its flow, so that answering needs no flow lookup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct FlowInfo {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub background: String,
    pub layout: String,
    pub designation: String,
}

impl From<&super::entities::flow::Model> for FlowInfo {
    fn from(flow: &super::entities::flow::Model) -> Self {
        Self {
            id: flow.id,
            slug: flow.slug.clone(),
            title: flow.title.clone(),
            background: flow.background.clone(),
            layout: flow.layout.clone(),
            designation: flow.designation.clone(),
        }
    }
}

/// The stages a run goes through and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Plan {
    pub flow: FlowInfo,
    pub stages: Vec<PlannedStage>,
    /// Index of the current stage; `stages.len()` when all have passed.
    pub position: usize,
}

/// What the stages of a run know: who is signing in, what they proved, where to go afterwards.
/// Stages added later keep their own state in `extra` under their own keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct FlowContext {
    /// The account being signed in, once identified (absent for unknown accounts).
    pub pending_user: Option<i64>,
    /// What the person typed to identify themselves.
    pub pending_user_identifier: Option<String>,
    /// The factors verified in this run, in order.
    #[serde(default, deserialize_with = "super::factors::deserialize_lenient")]
    pub factors: Vec<super::factors::VerifiedFactor>,
    /// Failed answers to the current stage in this run.
    pub failures: u32,
    /// Where to go when the flow ends: a same-origin path.
    pub redirect: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: String,
    /// State of other stages, by key.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
    /// What the part of the server that sent the person here handed the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<super::handoff::Handoff>,
}

impl FlowContext {
    /// The context a restart keeps: where to go, what the flow was handed, and who the client is.
    pub fn restarted(&self) -> Self {
        Self {
            redirect: self.redirect.clone(),
            handoff: self.handoff.clone(),
            client_ip: self.client_ip.clone(),
            user_agent: self.user_agent.clone(),
            ..Self::default()
        }
    }
}

/// A loaded run.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: Uuid,
    pub step: i64,
    pub plan: Plan,
    pub context: FlowContext,
    /// When the run ends unless it finished before.
    pub expires: DateTime<Utc>,
    /// Whether the run is in the database; a run rebuilt from its ticket is not yet.
    pub stored: bool,
    /// The account `context.pending_user` names, as read with the run (the stages of a request
    /// need it nearly always, and one statement reads both).
    pub pending_account: Option<user::Model>,
}

impl Run {
    /// The current stage, if any is left.
    pub fn current(&self) -> Option<&PlannedStage> {
        self.plan.stages.get(self.plan.position)
    }

    /// Passes the current stage and puts `stages` next, before the rest of the plan; a stage
    /// that is next already (a restarted run coming back to the stage that inserted it) is not
    /// put there twice.
    pub fn insert_after_current(&mut self, stages: Vec<PlannedStage>) {
        let at = (self.plan.position + 1).min(self.plan.stages.len());
        let already_next: Vec<Uuid> = self.plan.stages[at..].iter().take(stages.len()).map(|s| s.stage_id).collect();
        if already_next != stages.iter().map(|s| s.stage_id).collect::<Vec<_>>() {
            self.plan.stages.splice(at..at, stages);
        }
        self.plan.position += 1;
    }
}

fn key_digest(secret: &ServerSecret, key: &str) -> String {
    secret.digest("flow-run", key.as_bytes())
}

fn decode(model: run::Model, pending_account: Option<user::Model>) -> Result<Run> {
    let plan = serde_json::from_value(model.plan).map_err(|e| Error::internal(format!("flow run plan: {e}")))?;
    let context: FlowContext = serde_json::from_value(model.context).map_err(|e| Error::internal(format!("flow run context: {e}")))?;
    let pending_account = pending_account.filter(|account| Some(account.id) == context.pending_user);
    Ok(Run { id: model.id, step: model.step, plan, context, expires: model.expires, stored: true, pending_account })
}

/// The pending user's id in a stored run's context, as SQL of `backend`: the JSON number that
/// [`FlowContext::pending_user`] (an `i64`) is written as.
fn pending_user_id(backend: DbBackend) -> Expr {
    match backend {
        DbBackend::Postgres => Expr::cust(r#"("flow_runs"."context" ->> 'pending_user')::bigint"#),
        _ => Expr::cust(r#"json_extract("flow_runs"."context", '$.pending_user')"#),
    }
}

/// What a run not yet stored carries in its cookie, signed with the server secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ticket {
    /// The identity the run will be stored under.
    #[serde(rename = "r")]
    pub run_id: Uuid,
    #[serde(rename = "f")]
    pub flow_id: Uuid,
    /// [`fingerprint`] of the plan the flow made when it was opened.
    #[serde(rename = "p")]
    pub plan: String,
    /// Unix seconds at which the run ends.
    #[serde(rename = "e")]
    pub expires: i64,
    /// Where to go when the flow ends.
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<String>,
    /// What the flow was handed.
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<super::handoff::Handoff>,
}

/// Longest ticket put in a cookie (browsers keep cookies up to 4096 bytes with name and
/// attributes); a run whose ticket would be longer is stored at once.
const MAX_TICKET_LEN: usize = 3500;
/// Separates a ticket's parts; never part of a stored run's key (URL-safe base64).
const TICKET_SEPARATOR: char = '.';

/// A keyed digest of a plan, so a ticket names the plan it was made with: a flow whose stages
/// changed since does not continue under the new plan as if it were the old one.
pub fn fingerprint(secret: &ServerSecret, plan: &Plan) -> Result<String> {
    let bytes = serde_json::to_vec(plan).map_err(Error::internal)?;
    Ok(secret.digest("flow-plan", &bytes)[..32].to_owned())
}

fn ticket_mac(secret: &ServerSecret, payload: &str) -> String {
    URL_SAFE_NO_PAD.encode(secret.mac("flow-ticket", payload.as_bytes()))
}

fn seal_ticket(secret: &ServerSecret, ticket: &Ticket) -> Result<String> {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(ticket).map_err(Error::internal)?);
    let mac = ticket_mac(secret, &payload);
    Ok(format!("{payload}{TICKET_SEPARATOR}{mac}"))
}

/// The ticket a cookie value holds, if the server made it and it has not expired.
fn open_ticket(secret: &ServerSecret, value: &str) -> Option<Ticket> {
    let (payload, mac) = value.split_once(TICKET_SEPARATOR)?;
    if !constant_time_eq(ticket_mac(secret, payload).as_bytes(), mac.as_bytes()) {
        return None;
    }
    let ticket: Ticket = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (ticket.expires > Utc::now().timestamp()).then_some(ticket)
}

/// What a flow cookie names.
#[derive(Debug)]
pub enum Found {
    /// A stored run.
    Stored(Box<Run>),
    /// A run not stored yet, to rebuild with [`from_ticket`].
    Ticket(Ticket),
}

/// The run a cookie key names; `None` for no run (a tampered, finished or purged key, an
/// expired ticket) and for an expired run, which is deleted on the way.
pub async fn find(db: &impl ConnectionTrait, secret: &ServerSecret, tenant: TenantId, key: &str) -> Result<Option<Found>> {
    if key.contains(TICKET_SEPARATOR) {
        return Ok((key.len() <= MAX_TICKET_LEN).then(|| open_ticket(secret, key)).flatten().map(Found::Ticket));
    }
    if key.is_empty() || key.len() > 128 {
        return Ok(None);
    }
    let mut select = run::Entity::find()
        .filter(run::Column::TenantId.eq(tenant.0))
        .filter(run::Column::KeyDigest.eq(key_digest(secret, key)))
        .select_also(user::Entity);
    QueryTrait::query(&mut select).left_join(
        user::Entity,
        Expr::col((user::Entity, user::Column::Id))
            .eq(pending_user_id(db.get_database_backend()))
            .and(Expr::col((user::Entity, user::Column::TenantId)).eq(Expr::col((run::Entity, run::Column::TenantId)))),
    );
    let Some((model, pending_account)) = select.one(db).await? else {
        return Ok(None);
    };
    if model.expires <= Utc::now() {
        discard(db, model.id).await?;
        return Ok(None);
    }
    decode(model, pending_account).map(|run| Some(Found::Stored(Box::new(run))))
}

/// The run a ticket names, rebuilt with the flow's current `plan` (whose [`fingerprint`] is
/// `plan_fingerprint`); `None` when the plan is not the one the ticket was made with.
pub fn from_ticket(ticket: Ticket, plan: Plan, plan_fingerprint: &str, context: FlowContext) -> Option<Run> {
    if plan.flow.id != ticket.flow_id || !constant_time_eq(plan_fingerprint.as_bytes(), ticket.plan.as_bytes()) {
        return None;
    }
    let expires = DateTime::from_timestamp(ticket.expires, 0)?;
    let context = FlowContext { redirect: ticket.redirect, handoff: ticket.handoff, ..context };
    Some(Run { id: ticket.run_id, step: 0, plan, context, expires, stored: false, pending_account: None })
}

/// The token a page form must carry to answer the run `run_id`: bound to the run, so a form from
/// another browser's run (or a forged one) is refused.
pub fn form_token(secret: &ServerSecret, run_id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(secret.mac("flow-form", run_id.as_bytes()))
}

/// Starts a run; returns it with the cookie value that finds it. The run is not stored: the
/// value is its ticket. Only a ticket too long for a cookie (a very long `next`) has the run
/// stored at once, under a random key.
pub async fn start(
    db: &impl ConnectionTrait,
    secret: &ServerSecret,
    tenant: TenantId,
    plan: Plan,
    plan_fingerprint: &str,
    context: FlowContext,
    lifetime: chrono::TimeDelta,
) -> Result<(Run, String)> {
    let expires = DateTime::from_timestamp((Utc::now() + lifetime).timestamp(), 0).ok_or_else(|| Error::internal("flow run expiry"))?;
    let mut run = Run { id: Uuid::new_v4(), step: 0, plan, context, expires, stored: false, pending_account: None };
    let ticket = Ticket {
        run_id: run.id,
        flow_id: run.plan.flow.id,
        plan: plan_fingerprint.to_owned(),
        expires: expires.timestamp(),
        redirect: run.context.redirect.clone(),
        handoff: run.context.handoff.clone(),
    };
    let ticket = seal_ticket(secret, &ticket)?;
    if ticket.len() <= MAX_TICKET_LEN {
        return Ok((run, ticket));
    }
    match store(db, secret, tenant, &mut run).await? {
        Saved::Stored(key) => Ok((run, key)),
        _ => Err(Error::internal("a new flow run's identity is taken")),
    }
}

/// What saving a run did.
#[derive(Debug, PartialEq, Eq)]
pub enum Saved {
    /// The stored run was updated.
    Updated,
    /// The run was stored for the first time, under this new cookie key (shown only this once).
    Stored(String),
    /// Another request changed the run meanwhile: the caller's changes are not saved.
    Lost,
}

/// Saves a run that was loaded at `run.step`, bumping the step; a run not stored yet is stored.
pub async fn save(db: &impl ConnectionTrait, secret: &ServerSecret, tenant: TenantId, run: &mut Run) -> Result<Saved> {
    if !run.stored {
        return store(db, secret, tenant, run).await;
    }
    let (plan, context) = (to_json(&run.plan)?, to_json(&run.context)?);
    if !step_forward(db, run, None, plan, context).await? {
        return Ok(Saved::Lost);
    }
    run.step += 1;
    Ok(Saved::Updated)
}

fn to_json(value: &impl Serialize) -> Result<Value> {
    serde_json::to_value(value).map_err(Error::internal)
}

/// Writes the row of the run loaded at `run.step` as its next step, with a new key digest when
/// one is given: the compare-and-set of every step after the first. `false` when another request
/// moved the run meanwhile.
async fn step_forward(db: &impl ConnectionTrait, run: &Run, key_digest: Option<String>, plan: Value, context: Value) -> Result<bool> {
    let mut update = run::Entity::update_many()
        .col_expr(run::Column::Step, sea_orm::sea_query::Expr::val(run.step + 1))
        .col_expr(run::Column::Plan, sea_orm::sea_query::Expr::val(plan))
        .col_expr(run::Column::Context, sea_orm::sea_query::Expr::val(context));
    if let Some(digest) = key_digest {
        update = update.col_expr(run::Column::KeyDigest, sea_orm::sea_query::Expr::val(digest));
    }
    let result = update.filter(run::Column::Id.eq(run.id)).filter(run::Column::Step.eq(run.step)).exec(db).await?;
    Ok(result.rows_affected == 1)
}

/// Inserts the row of a run never stored, as its next step: the compare-and-set of its first
/// step, since its identity came with its ticket. `false` when the row is there already.
async fn insert_first(
    db: &impl ConnectionTrait,
    tenant: TenantId,
    run: &Run,
    key_digest: String,
    plan: Value,
    context: Value,
) -> Result<bool> {
    let model = run::ActiveModel {
        id: Set(run.id),
        tenant_id: Set(tenant.0),
        key_digest: Set(key_digest),
        flow_id: Set(run.plan.flow.id),
        step: Set(run.step + 1),
        plan: Set(plan),
        context: Set(context),
        created: Set(Utc::now()),
        expires: Set(run.expires),
    };
    let inserted = run::Entity::insert(model).on_conflict_do_nothing_on([run::Column::Id]).exec_without_returning(db).await?;
    Ok(matches!(inserted, TryInsertResult::Inserted(1)))
}

/// Stores a run rebuilt from its ticket, at its next step. Its identity came with the ticket, so
/// a second request storing the same run finds the row there and loses.
async fn store(db: &impl ConnectionTrait, secret: &ServerSecret, tenant: TenantId, run: &mut Run) -> Result<Saved> {
    let key = random_token(32);
    let (plan, context) = (to_json(&run.plan)?, to_json(&run.context)?);
    if !insert_first(db, tenant, run, key_digest(secret, &key), plan, context).await? {
        return Ok(Saved::Lost);
    }
    run.step += 1;
    run.stored = true;
    Ok(Saved::Stored(key))
}

/// The key digest a finished run's row keeps: no cookie key has it, so the row is found by
/// nothing, but it holds the run's identity until the run would have expired, and the ticket the
/// run started from cannot store it again.
fn finished_marker(id: Uuid) -> String {
    format!("finished:{}", id.simple())
}

/// Ends a run that was loaded at `run.step`; `false` when another request changed it meanwhile.
/// The row stays, emptied, until the run's expiry, so an answer replayed with the run's ticket
/// finds it and is not applied again; a run never stored gets such a row now.
pub async fn finish(db: &impl ConnectionTrait, tenant: TenantId, run: &Run) -> Result<bool> {
    let emptied = || serde_json::json!({});
    if run.stored {
        step_forward(db, run, Some(finished_marker(run.id)), emptied(), emptied()).await
    } else {
        insert_first(db, tenant, run, finished_marker(run.id), emptied(), emptied()).await
    }
}

/// Marks the finished run `id` as redeemed: `true` only for the one call that found it finished
/// and not yet redeemed, so what a finished run proves is used once. (The row stays until the
/// run's expiry, so the run's ticket still cannot store it again.)
pub async fn consume_finished(db: &impl ConnectionTrait, tenant: TenantId, id: Uuid) -> Result<bool> {
    let redeemed = run::Entity::update_many()
        .col_expr(run::Column::KeyDigest, sea_orm::sea_query::Expr::val(format!("redeemed:{}", id.simple())))
        .filter(run::Column::TenantId.eq(tenant.0))
        .filter(run::Column::Id.eq(id))
        .filter(run::Column::KeyDigest.eq(finished_marker(id)))
        .exec(db)
        .await?;
    Ok(redeemed.rows_affected == 1)
}

/// Deletes the run `id`, whatever its state.
pub async fn discard(db: &impl ConnectionTrait, id: Uuid) -> Result<()> {
    run::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}

/// Ends the run a cookie key names, whatever its state.
pub async fn cancel(db: &impl ConnectionTrait, secret: &ServerSecret, tenant: TenantId, key: &str) -> Result<()> {
    run::Entity::delete_many()
        .filter(run::Column::TenantId.eq(tenant.0))
        .filter(run::Column::KeyDigest.eq(key_digest(secret, key)))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes runs past their lifetime; returns how many.
pub async fn purge_expired(db: &impl ConnectionTrait) -> Result<u64> {
    Ok(run::Entity::delete_many().filter(run::Column::Expires.lt(Utc::now())).exec(db).await?.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(stage_name: &str) -> Plan {
        Plan {
            flow: FlowInfo { id: Uuid::from_u128(7), slug: "sign-in".into(), ..FlowInfo::default() },
            stages: vec![PlannedStage {
                stage_id: Uuid::from_u128(8),
                name: stage_name.into(),
                kind: "identification".into(),
                settings: serde_json::json!({"user_fields": ["email"]}),
                invalid_response_action: InvalidResponseAction::Retry,
            }],
            position: 0,
        }
    }

    fn opened(secret: &ServerSecret, cookie: &str) -> Option<Ticket> {
        open_ticket(secret, cookie)
    }

    fn rebuild(secret: &ServerSecret, ticket: Ticket, plan: Plan) -> Option<Run> {
        let plan_fingerprint = fingerprint(secret, &plan).unwrap();
        from_ticket(ticket, plan, &plan_fingerprint, FlowContext::default())
    }

    /// [`start`] for a run whose ticket fits, which touches no database.
    async fn start(secret: &ServerSecret, plan: Plan, context: FlowContext, lifetime: chrono::TimeDelta) -> Result<(Run, String)> {
        let db = sea_orm::DatabaseConnection::default();
        let plan_fingerprint = fingerprint(secret, &plan)?;
        super::start(&db, secret, TenantId(Uuid::nil()), plan, &plan_fingerprint, context, lifetime).await
    }

    #[tokio::test]
    async fn a_ticket_rebuilds_the_run_it_was_made_for() {
        let secret = ServerSecret::from_bytes(b"a test key of thirty-two bytes!!");
        let context = FlowContext { redirect: Some("/if/user/".into()), ..FlowContext::default() };
        let (run, cookie) = start(&secret, plan("identify"), context, chrono::TimeDelta::minutes(30)).await.unwrap();
        assert!(!run.stored);
        let ticket = opened(&secret, &cookie).expect("the server's own ticket opens");
        let rebuilt = rebuild(&secret, ticket, plan("identify")).expect("same plan");
        assert_eq!((rebuilt.id, rebuilt.step, rebuilt.expires, rebuilt.stored), (run.id, 0, run.expires, false));
        assert_eq!(rebuilt.context.redirect.as_deref(), Some("/if/user/"));
    }

    #[tokio::test]
    async fn a_ticket_for_another_plan_another_key_or_past_its_time_does_not_open() {
        let secret = ServerSecret::from_bytes(b"a test key of thirty-two bytes!!");
        let (_, cookie) = start(&secret, plan("identify"), FlowContext::default(), chrono::TimeDelta::minutes(30)).await.unwrap();
        let ticket = opened(&secret, &cookie).unwrap();
        assert!(rebuild(&secret, ticket.clone(), plan("renamed")).is_none(), "the plan changed");
        let other_flow = Plan { flow: FlowInfo { id: Uuid::from_u128(9), ..plan("identify").flow }, ..plan("identify") };
        assert!(rebuild(&secret, ticket, other_flow).is_none(), "another flow");
        let other_key = ServerSecret::from_bytes(b"another key of thirty-two bytes!");
        assert!(opened(&other_key, &cookie).is_none(), "made with another server secret");
        assert!(opened(&secret, &cookie.replacen('.', "x.", 1)).is_none(), "payload changed");
        let (_, expired) = start(&secret, plan("identify"), FlowContext::default(), chrono::TimeDelta::seconds(-1)).await.unwrap();
        assert!(opened(&secret, &expired).is_none(), "past its time");
        assert!(opened(&secret, "no-separator").is_none());
    }
}
