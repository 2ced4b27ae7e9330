//! Caches of what is read often and changes rarely, made correct by invalidation rather than by
//! their lifetime. A [`Generation`] counts the changes to one kind of thing: a change announces
//! itself in its transaction (a PostgreSQL `NOTIFY`, delivered to every server process when it
//! commits) and advances this process's counter after the commit. A [`GenerationCache`] keeps an
//! entry only while the generations it was read under are still current, and at most its
//! lifetime, which bounds what a process that missed a notification can serve.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbErr};

use super::notify;

/// A counter of changes to one kind of thing, shared between server processes through the
/// `NOTIFY` channel it names.
#[derive(Debug)]
pub struct Generation {
    value: AtomicU64,
    channel: &'static str,
}

impl Generation {
    /// A counter whose changes travel on `channel`, a plain SQL identifier.
    pub const fn new(channel: &'static str) -> Self {
        Self { value: AtomicU64::new(0), channel }
    }

    /// The current value; take it before reading from the database, and store with it.
    pub fn current(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Tells the other processes of a change when the transaction on `db` commits (and not at
    /// all when it rolls back). A no-op on SQLite, which one process serves.
    pub async fn announce(&self, db: &impl ConnectionTrait) -> Result<(), DbErr> {
        notify::notify(db, self.channel).await
    }

    /// Commits the change on `txn`, telling the other processes, and counts it here.
    pub async fn commit(&self, txn: sea_orm::DatabaseTransaction) -> Result<(), DbErr> {
        self.announce(&txn).await?;
        txn.commit().await?;
        self.advance();
        Ok(())
    }

    /// Counts a change in this process; call once the change is visible (after its commit).
    pub fn advance(&self) {
        self.value.fetch_add(1, Ordering::AcqRel);
    }

    /// Advances on every other process's announcement, and whenever the listener (re)connects,
    /// since announcements sent while no one listened are lost.
    pub fn subscription(self: &Arc<Self>) -> notify::Subscription {
        let generation = self.clone();
        notify::Subscription::new(self.channel, move || generation.advance())
    }
}

/// The stamp of an entry that depends on several generations: their sum. Each only grows, so the
/// sum is unchanged exactly when none of them changed.
pub fn stamp(generations: &[u64]) -> u64 {
    generations.iter().fold(0u64, |sum, g| sum.wrapping_add(*g))
}

struct Entry<V> {
    stamp: u64,
    stored: Instant,
    value: Arc<V>,
}

/// Values by key, each valid while the stamp it was read under is current and for at most the
/// cache's lifetime. Past `capacity` entries the cache starts over rather than grow.
pub struct GenerationCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: RwLock<HashMap<K, Entry<V>>>,
}

impl<K: Eq + Hash, V> GenerationCache<K, V> {
    /// A cache whose entries live at most `ttl` (zero keeps nothing), holding at most `capacity`.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, capacity, entries: RwLock::new(HashMap::new()) }
    }

    /// The value of `key`, if it was read under `stamp` (the current one) and is fresh.
    pub fn get<Q>(&self, key: &Q, stamp: u64) -> Option<Arc<V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(key)?;
        (entry.stamp == stamp && entry.stored.elapsed() < self.ttl).then(|| entry.value.clone())
    }

    /// Keeps `value`, read under `read_under`, unless a change came since (`now` differs): a
    /// read that crossed a change may be stale.
    pub fn put(&self, key: K, read_under: u64, now: u64, value: Arc<V>) {
        if self.ttl.is_zero() || read_under != now {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= self.capacity {
                entries.clear();
            }
            entries.insert(key, Entry { stamp: read_under, stored: Instant::now(), value });
        }
    }

    /// Drops every entry (they would no longer be served anyway once the stamp moved; this frees
    /// their memory at once).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_while_its_generations_do_and_a_read_across_a_change_is_not_kept() {
        let (tokens, keys) = (Generation::new("a"), Generation::new("b"));
        let cache: GenerationCache<String, u32> = GenerationCache::new(Duration::from_secs(60), 10);
        let read_under = stamp(&[tokens.current(), keys.current()]);
        cache.put("k".into(), read_under, stamp(&[tokens.current(), keys.current()]), Arc::new(1));
        assert_eq!(cache.get("k", stamp(&[tokens.current(), keys.current()])).as_deref(), Some(&1));
        keys.advance();
        assert!(cache.get("k", stamp(&[tokens.current(), keys.current()])).is_none(), "either generation moving ends it");
        cache.put("k".into(), read_under, stamp(&[tokens.current(), keys.current()]), Arc::new(2));
        assert!(cache.get("k", stamp(&[tokens.current(), keys.current()])).is_none(), "read before the change");
        let off: GenerationCache<String, u32> = GenerationCache::new(Duration::ZERO, 10);
        off.put("k".into(), 0, 0, Arc::new(1));
        assert!(off.get("k", 0).is_none(), "a zero lifetime keeps nothing");
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache: GenerationCache<u32, u32> = GenerationCache::new(Duration::from_secs(60), 2);
        for key in 0..3 {
            cache.put(key, 0, 0, Arc::new(key));
        }
        assert!(cache.get(&0, 0).is_none() && cache.get(&1, 0).is_none());
        assert_eq!(cache.get(&2, 0).as_deref(), Some(&2));
    }
}
