//! Device keys known to be good, kept in memory so that an agent's calls (check-ins above all)
//! cost no database read while nothing changed.
//!
//! Entries are dropped by invalidation, never trusted for their lifetime alone: every change
//! that can end a device key or change what an agent is told (enrolment, which replaces the
//! device's keys; a device changed or deleted; a connector changed or deleted; an access group
//! deleted) advances [`DeviceCache::changes`], and through `NOTIFY` the counter of every other
//! process. An entry lives while the counter it was read under does, and at most
//! `sessions.cache_ttl`. Expiry of the key and of the device is checked on every use.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

use super::devices::AgentCaller;
use crate::db::generation::{Generation, GenerationCache};
use crate::error::Result;
use crate::state::AppState;

/// The channel that carries changes to devices, their keys and connectors.
pub const CHANNEL: &str = "gatehouse_device_changes";

/// More known keys than this and the cache starts over.
const CAPACITY: usize = 50_000;

/// A device key known to be good, with when it stops being so.
#[derive(Debug)]
pub struct KnownKey {
    pub caller: AgentCaller,
    /// When the key expires, if it does.
    pub key_expires: Option<DateTime<Utc>>,
}

impl KnownKey {
    /// Whether the key and its device are still live at `now`.
    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        let device = &self.caller.device;
        super::devices::live(self.key_expires.is_some(), self.key_expires, now)
            && super::devices::live(device.expiring, device.expires, now)
    }
}

/// Known device keys by keyed digest, and the counter of changes that ends them.
pub struct DeviceCache {
    pub changes: Arc<Generation>,
    pub keys: GenerationCache<String, KnownKey>,
}

impl DeviceCache {
    /// A cache whose entries live at most `ttl` (zero keeps nothing).
    pub fn new(ttl: std::time::Duration) -> Self {
        Self { changes: Arc::new(Generation::new(CHANNEL)), keys: GenerationCache::new(ttl, CAPACITY) }
    }

    /// Listens for other processes' changes.
    pub fn subscription(self: &Arc<Self>) -> crate::db::notify::Subscription {
        let cache = self.clone();
        crate::db::notify::Subscription::new(CHANNEL, move || cache.changed())
    }

    fn changed(&self) {
        self.changes.advance();
        self.keys.clear();
    }
}

/// Commits a change to devices, their keys or connectors on `txn`, telling every process.
pub async fn commit_change(state: &AppState, txn: DatabaseTransaction) -> Result<()> {
    state.devices.changes.commit(txn).await?;
    state.devices.keys.clear();
    Ok(())
}
