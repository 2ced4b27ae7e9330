//! The plans flows make, kept in memory so that opening or resuming a flow reads nothing. A
//! change to any flow, stage or binding drops them in this process at once and, through
//! PostgreSQL's `NOTIFY`, in every other; entries also expire after `flows.plan_cache_ttl`, which
//! bounds what a process that missed a message can serve.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use super::entities::flow;
use super::run::Plan;
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

struct Entry {
    generation: u64,
    stored: Instant,
    plan: Arc<FlowPlan>,
}

/// Plans by tenant and flow slug.
pub struct PlanCache {
    generation: AtomicU64,
    ttl: Duration,
    entries: RwLock<HashMap<(Uuid, String), Entry>>,
}

impl PlanCache {
    /// A cache whose entries live at most `ttl` (zero disables caching).
    pub fn new(ttl: Duration) -> Self {
        Self { generation: AtomicU64::new(0), ttl, entries: RwLock::new(HashMap::new()) }
    }

    /// The current generation; take it before reading from the database, and store with it.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The cached plan of the flow `slug`, if still valid.
    pub fn get(&self, tenant: Uuid, slug: &str) -> Option<Arc<FlowPlan>> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(&(tenant, slug.to_owned()))?;
        (entry.generation == self.generation() && entry.stored.elapsed() < self.ttl).then(|| entry.plan.clone())
    }

    /// Stores a plan read while `generation` was current; one read across a change is dropped.
    pub fn put(&self, tenant: Uuid, generation: u64, plan: Arc<FlowPlan>) {
        if self.ttl.is_zero() || generation != self.generation() {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert((tenant, plan.flow.slug.clone()), Entry { generation, stored: Instant::now(), plan });
        }
    }

    /// Drops every plan; call after a change to flows, stages or bindings commits.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
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
