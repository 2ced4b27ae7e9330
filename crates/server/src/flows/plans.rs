//! The plans flows make, kept in memory so that opening or resuming a flow reads nothing. A
//! change to any flow, stage or binding drops them in this process at once and, through
//! PostgreSQL's `NOTIFY`, in every other; entries also expire after `flows.plan_cache_ttl`, which
//! bounds what a process that missed a message can serve.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use super::entities::flow;
use super::run::Plan;
use crate::db::generation::{Generation, GenerationCache};
use crate::db::notify;
use crate::error::Result;
use crate::state::AppState;

/// The `NOTIFY` channel that carries flow changes between processes.
const CHANNEL: &str = "gatehouse_flow_changes";
/// More flows than any tenant has: past it the cache starts over rather than grow.
const MAX_ENTRIES: usize = 4096;

/// A flow and the plan it makes, with the plan's fingerprint for tickets.
#[derive(Debug)]
pub struct FlowPlan {
    pub flow: flow::Model,
    pub plan: Plan,
    pub fingerprint: String,
}

/// Plans by tenant and flow slug.
pub struct PlanCache {
    changes: Generation,
    plans: GenerationCache<(Uuid, String), FlowPlan>,
}

impl PlanCache {
    /// A cache whose entries live at most `ttl` (zero disables caching).
    pub fn new(ttl: Duration) -> Self {
        Self { changes: Generation::new(CHANNEL), plans: GenerationCache::new(ttl, MAX_ENTRIES) }
    }

    /// The current generation; take it before reading from the database, and store with it.
    pub fn generation(&self) -> u64 {
        self.changes.current()
    }

    /// The cached plan of the flow `slug`, if still valid.
    pub fn get(&self, tenant: Uuid, slug: &str) -> Option<Arc<FlowPlan>> {
        self.plans.get(&(tenant, slug.to_owned()), self.generation())
    }

    /// Stores a plan read while `generation` was current; one read across a change is dropped.
    pub fn put(&self, tenant: Uuid, generation: u64, plan: Arc<FlowPlan>) {
        self.plans.put((tenant, plan.flow.slug.clone()), generation, self.generation(), plan);
    }

    /// Drops every plan; call after a change to flows, stages or bindings commits.
    pub fn invalidate(&self) {
        self.changes.advance();
        self.plans.clear();
    }
}

/// Commits a change to flows, stages or bindings and drops the plans made before it, here and
/// (on PostgreSQL, when the transaction commits) in every other process.
pub async fn commit_change(state: &AppState, txn: DatabaseTransaction) -> Result<()> {
    notify::notify(&txn, CHANNEL).await?;
    txn.commit().await?;
    state.flow_plans.invalidate();
    Ok(())
}

/// Drops this process's plans whenever another process announces a flow change (and whenever
/// the listener (re)connects: anything may have changed while no one listened).
pub fn subscription(cache: Arc<PlanCache>) -> notify::Subscription {
    notify::Subscription::new(CHANNEL, move || cache.invalidate())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(slug: &str) -> Arc<FlowPlan> {
        let now = chrono::Utc::now();
        let text = String::new;
        let flow = flow::Model {
            id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            slug: slug.into(),
            name: text(),
            title: text(),
            designation: text(),
            authentication: text(),
            denied_action: text(),
            layout: text(),
            policy_engine_mode: text(),
            compatibility_mode: false,
            background: text(),
            created: now,
            last_updated: now,
        };
        Arc::new(FlowPlan { flow, plan: Plan::default(), fingerprint: String::new() })
    }

    #[test]
    fn a_change_drops_plans_and_a_read_across_it_is_not_kept() {
        let cache = PlanCache::new(Duration::from_secs(60));
        let tenant = Uuid::nil();
        let before = cache.generation();
        cache.put(tenant, before, plan("sign-in"));
        assert!(cache.get(tenant, "sign-in").is_some());
        assert!(cache.get(Uuid::from_u128(1), "sign-in").is_none(), "plans are per tenant");
        cache.invalidate();
        assert!(cache.get(tenant, "sign-in").is_none());
        cache.put(tenant, before, plan("sign-in"));
        assert!(cache.get(tenant, "sign-in").is_none(), "read before the change");
        let off = PlanCache::new(Duration::ZERO);
        off.put(tenant, off.generation(), plan("sign-in"));
        assert!(off.get(tenant, "sign-in").is_none(), "a zero lifetime keeps nothing");
    }
}
