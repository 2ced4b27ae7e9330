//! A short-lived, in-process cache of session checks, so that a cookie-authenticated request
//! costs no database round trip on the hot path.
//!
//! Correctness comes from invalidation, not from the lifetime: every change that can end a
//! session or change what a user may do bumps a generation counter after it commits, which
//! drops every cached entry of this process at once. On PostgreSQL the change also sends a
//! `NOTIFY` in its transaction; every server process listens and bumps its own counter, so a
//! revocation reaches all processes within the notification's delivery time. The lifetime only
//! bounds staleness should a notification be lost (the listener also bumps on reconnect).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;

use crate::accounts::access::Rights;
use crate::accounts::entities::{group, user};
use crate::db::notify;
use crate::sessions::entities::session;

/// The PostgreSQL channel that carries invalidations between server processes.
pub const CHANNEL: &str = "gatehouse_auth";

/// Entries beyond this are dropped wholesale rather than tracked one by one.
const MAX_ENTRIES: usize = 50_000;

/// Everything a request needs to know about its caller: the session or API key it came with,
/// and the user.
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub session: Option<session::Model>,
    pub token: Option<crate::tokens::entities::token::Model>,
    pub user: user::Model,
    pub permissions: Rights,
    pub groups: Vec<group::Model>,
}

struct Entry {
    generation: u64,
    stored: Instant,
    context: Arc<AuthContext>,
}

/// Cached session checks keyed by the session key's digest.
pub struct AuthCache {
    generation: AtomicU64,
    ttl: Duration,
    entries: RwLock<HashMap<String, Entry>>,
    /// Checks of a credential running now, by digest: see [`AuthCache::turn`].
    running: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The right to check one credential in this process; see [`AuthCache::turn`].
pub struct CheckTurn<'a> {
    cache: &'a AuthCache,
    digest: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for CheckTurn<'_> {
    fn drop(&mut self) {
        self.guard.take();
        if let Ok(mut running) = self.cache.running.lock() {
            // Handles are only cloned under this lock: two left (the map's and this one) means
            // nobody else waits for this credential.
            if Arc::strong_count(&self.lock) == 2 {
                running.remove(&self.digest);
            }
        }
    }
}

impl AuthContext {
    /// When the credential stops being valid, if ever.
    pub fn expires(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        match (&self.session, &self.token) {
            (Some(session), _) => Some(session.expires),
            (None, Some(token)) if token.expiring => token.expires,
            _ => None,
        }
    }
}

impl AuthCache {
    /// A cache whose entries live at most `ttl` (zero disables caching).
    pub fn new(ttl: Duration) -> Self {
        Self { generation: AtomicU64::new(0), ttl, entries: RwLock::new(HashMap::new()), running: Default::default() }
    }

    /// Waits until no other check of the credential with `digest` runs in this process. A client
    /// sending many requests at once with a key that is not cached then costs one database check
    /// (and one reservation against its address's limit); the others find the result cached.
    pub async fn turn(&self, digest: &str) -> CheckTurn<'_> {
        let lock = match self.running.lock() {
            Ok(mut running) => running.entry(digest.to_owned()).or_default().clone(),
            Err(_) => Arc::default(),
        };
        let guard = lock.clone().lock_owned().await;
        CheckTurn { cache: self, digest: digest.to_owned(), lock, guard: Some(guard) }
    }

    /// The current generation; take it before reading from the database, and store with it.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A valid cached context.
    pub fn get(&self, digest: &str) -> Option<Arc<AuthContext>> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(digest)?;
        (entry.generation == self.generation() && entry.stored.elapsed() < self.ttl).then(|| entry.context.clone())
    }

    /// Stores a context read while `generation` was current.
    pub fn put(&self, digest: String, generation: u64, context: Arc<AuthContext>) {
        if self.ttl.is_zero() || generation != self.generation() {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(digest, Entry { generation, stored: Instant::now(), context });
        }
    }

    /// Drops every entry; call after a change that affects sessions or permissions commits.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}

/// Tells the other server processes, when the transaction on `db` commits, to drop their
/// cached session checks. A no-op on SQLite, which is served by one process.
pub async fn notify_others(db: &impl ConnectionTrait) -> Result<(), sea_orm::DbErr> {
    notify::notify(db, CHANNEL).await
}

/// Drops this process's cached checks whenever another process announces a change (and
/// whenever the listener (re)connects: anything may have changed while no one listened).
pub fn subscription(cache: Arc<AuthCache>) -> notify::Subscription {
    notify::Subscription::new(CHANNEL, move || cache.invalidate())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::Utc;

    /// An active account `id` whose password last changed at `password_changed`.
    pub(crate) fn account(id: i64, password_changed: chrono::DateTime<Utc>) -> user::Model {
        user::Model {
            id,
            uuid: uuid::Uuid::nil(),
            tenant_id: uuid::Uuid::nil(),
            username: "u".into(),
            username_key: "u".into(),
            username_skeleton: None,
            email: String::new(),
            email_key: None,
            email_skeleton: None,
            name: String::new(),
            password: None,
            password_change_date: password_changed,
            is_active: true,
            is_superuser: false,
            is_staff: false,
            phone_number: None,
            user_type: crate::accounts::UserType::Internal,
            path: "users".into(),
            attributes: serde_json::json!({}),
            date_joined: password_changed,
            last_login: None,
            last_updated: password_changed,
        }
    }

    fn context() -> Arc<AuthContext> {
        let now = Utc::now();
        Arc::new(AuthContext {
            token: None,
            session: Some(session::Model {
                id: uuid::Uuid::nil(),
                key_digest: String::new(),
                tenant_id: uuid::Uuid::nil(),
                user_id: 1,
                created: now,
                expires: now,
                last_used: now,
                last_ip: None,
                user_agent: String::new(),
                client: serde_json::json!({}),
            }),
            user: account(1, now),
            permissions: Rights::default(),
            groups: Vec::new(),
        })
    }

    #[test]
    fn invalidation_drops_entries_and_late_fills() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let before = cache.generation();
        cache.put("a".into(), before, context());
        assert!(cache.get("a").is_some());
        cache.invalidate();
        assert!(cache.get("a").is_none());
        // A fill that read the database before the invalidation is not stored.
        cache.put("b".into(), before, context());
        assert!(cache.get("b").is_none());
    }

    #[test]
    fn entries_expire_and_zero_ttl_disables() {
        let cache = AuthCache::new(Duration::from_millis(1));
        cache.put("a".into(), cache.generation(), context());
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.get("a").is_none());
        let disabled = AuthCache::new(Duration::ZERO);
        disabled.put("a".into(), disabled.generation(), context());
        assert!(disabled.get("a").is_none());
    }
}
