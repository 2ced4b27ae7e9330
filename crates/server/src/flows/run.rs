//! Flow runs: the plan a flow made when it started and the context its stages share, kept in
//! the database (so any server process can continue it) and found by the browser's flow cookie.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::entities::run;
use super::model::InvalidResponseAction;
use crate::error::{Error, Result};
use crate::secret::{ServerSecret, random_token};
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
}

impl FlowContext {
    /// The context a restart keeps: where to go and who the client is.
    pub fn restarted(&self) -> Self {
        Self { redirect: self.redirect.clone(), client_ip: self.client_ip.clone(), user_agent: self.user_agent.clone(), ..Self::default() }
    }
}

/// A loaded run.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: Uuid,
    pub step: i64,
    pub plan: Plan,
    pub context: FlowContext,
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

fn decode(model: run::Model) -> Result<Run> {
    let plan = serde_json::from_value(model.plan).map_err(|e| Error::internal(format!("flow run plan: {e}")))?;
    let context = serde_json::from_value(model.context).map_err(|e| Error::internal(format!("flow run context: {e}")))?;
    Ok(Run { id: model.id, step: model.step, plan, context })
}

/// The run a cookie key names; `None` for no run (a tampered, finished or purged key) and for an
/// expired one, which is deleted on the way.
pub async fn find(db: &impl ConnectionTrait, secret: &ServerSecret, tenant: TenantId, key: &str) -> Result<Option<Run>> {
    if key.is_empty() || key.len() > 128 {
        return Ok(None);
    }
    let Some(model) = run::Entity::find()
        .filter(run::Column::TenantId.eq(tenant.0))
        .filter(run::Column::KeyDigest.eq(key_digest(secret, key)))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    if model.expires <= Utc::now() {
        discard(db, model.id).await?;
        return Ok(None);
    }
    decode(model).map(Some)
}

/// The token a page form must carry to answer the run `run_id`: bound to the run, so a form from
/// another browser's run (or a forged one) is refused.
pub fn form_token(secret: &ServerSecret, run_id: Uuid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.mac("flow-form", run_id.as_bytes()))
}

/// Starts a run; returns it with the cookie key that finds it (shown only this once).
pub async fn create(
    db: &impl ConnectionTrait,
    secret: &ServerSecret,
    tenant: TenantId,
    plan: Plan,
    context: FlowContext,
    lifetime: chrono::TimeDelta,
) -> Result<(Run, String)> {
    let key = random_token(32);
    let now = Utc::now();
    let model = run::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(tenant.0),
        key_digest: Set(key_digest(secret, &key)),
        flow_id: Set(plan.flow.id),
        step: Set(0),
        plan: Set(serde_json::to_value(&plan).map_err(Error::internal)?),
        context: Set(serde_json::to_value(&context).map_err(Error::internal)?),
        created: Set(now),
        expires: Set(now + lifetime),
    }
    .insert(db)
    .await?;
    Ok((decode(model)?, key))
}

/// Saves a run that was loaded at `run.step`, bumping the step. `false` when another request
/// changed it meanwhile: the caller's changes are not saved.
pub async fn save(db: &impl ConnectionTrait, run: &mut Run) -> Result<bool> {
    let result = run::Entity::update_many()
        .col_expr(run::Column::Step, sea_orm::sea_query::Expr::val(run.step + 1))
        .col_expr(run::Column::Plan, sea_orm::sea_query::Expr::val(serde_json::to_value(&run.plan).map_err(Error::internal)?))
        .col_expr(run::Column::Context, sea_orm::sea_query::Expr::val(serde_json::to_value(&run.context).map_err(Error::internal)?))
        .filter(run::Column::Id.eq(run.id))
        .filter(run::Column::Step.eq(run.step))
        .exec(db)
        .await?;
    if result.rows_affected == 1 {
        run.step += 1;
        Ok(true)
    } else {
        Ok(false)
    }
}

/// Ends a run that was loaded at `run.step`; `false` when another request changed it meanwhile.
pub async fn finish(db: &impl ConnectionTrait, run: &Run) -> Result<bool> {
    let result = run::Entity::delete_many().filter(run::Column::Id.eq(run.id)).filter(run::Column::Step.eq(run.step)).exec(db).await?;
    Ok(result.rows_affected == 1)
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
