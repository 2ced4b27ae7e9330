//! A short-lived, in-process cache of session and key checks, so that an authenticated request
//! costs no database round trip on the hot path.
//!
//! Correctness comes from invalidation, not from the lifetime. Every change that can end a
//! session or key or change what a user may do names what it affects (users, sessions, keys:
//! [`Affected`]) and, after it commits, marks them here; a cached check is served only while
//! nothing it depends on (its user, its session or key) was marked after the check read the
//! database. Checks of everyone else stay cached. On PostgreSQL the change also sends a
//! `NOTIFY` naming what it affects, in its transaction; every server process listens and marks
//! the same, so a revocation reaches all processes within the notification's delivery time. A
//! listener that (re)connects drops everything, since notifications may have been lost. The
//! lifetime only bounds staleness should a notification be lost in another way.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::accounts::access::Rights;
use crate::accounts::entities::{group, user};
use crate::db::notify;
use crate::sessions::entities::session;

/// The PostgreSQL channel that carries invalidations between server processes.
pub const CHANNEL: &str = "gatehouse_auth";

/// Entries beyond this are dropped wholesale rather than tracked one by one.
const MAX_ENTRIES: usize = 50_000;

/// Marks beyond this are pruned to those younger than the cache's lifetime, and when that is not
/// enough the whole cache is dropped: memory stays bounded whatever the rate of changes.
const MAX_MARKS: usize = 10_000;

/// A notification longer than this says "everything" instead (PostgreSQL refuses payloads of
/// 8,000 bytes or more).
const MAX_PAYLOAD: usize = 7_000;

/// Everything a request needs to know about its caller: the session or API key it came with,
/// and the user.
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub session: Option<session::Model>,
    pub token: Option<crate::tokens::entities::token::Model>,
    pub user: user::Model,
    pub permissions: Rights,
    pub groups: Vec<group::Model>,
    /// The caller's own account as `GET me` shows it, rendered by the first request that asks:
    /// it depends only on what this check holds, so later requests answer with the same bytes.
    pub own_view: std::sync::OnceLock<bytes::Bytes>,
}

/// What a committed change can make a cached check wrong about: the checks of these users
/// (through any session or key), of these sessions and of these keys, or of everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affected {
    #[serde(default, rename = "u", skip_serializing_if = "BTreeSet::is_empty")]
    users: BTreeSet<i64>,
    #[serde(default, rename = "s", skip_serializing_if = "BTreeSet::is_empty")]
    sessions: BTreeSet<Uuid>,
    #[serde(default, rename = "t", skip_serializing_if = "BTreeSet::is_empty")]
    tokens: BTreeSet<i64>,
    #[serde(default, rename = "all", skip_serializing_if = "std::ops::Not::not")]
    everyone: bool,
}

impl Affected {
    /// The checks of one user, through every session and key.
    pub fn user(id: i64) -> Self {
        Self::users([id])
    }

    /// The checks of these users, through every session and key.
    pub fn users(ids: impl IntoIterator<Item = i64>) -> Self {
        Self { users: ids.into_iter().collect(), ..Self::default() }
    }

    /// The checks of these sessions.
    pub fn sessions(ids: impl IntoIterator<Item = Uuid>) -> Self {
        Self { sessions: ids.into_iter().collect(), ..Self::default() }
    }

    /// The checks of one API key (token).
    pub fn token(id: i64) -> Self {
        Self { tokens: BTreeSet::from([id]), ..Self::default() }
    }

    /// Every check: for when what a change reaches cannot be named.
    pub fn everyone() -> Self {
        Self { everyone: true, ..Self::default() }
    }

    /// This and `other` together.
    #[must_use]
    pub fn and(mut self, other: Self) -> Self {
        self.users.extend(other.users);
        self.sessions.extend(other.sessions);
        self.tokens.extend(other.tokens);
        self.everyone |= other.everyone;
        self
    }

    /// Whether the change affects no check at all.
    pub fn is_empty(&self) -> bool {
        !self.everyone && self.users.is_empty() && self.sessions.is_empty() && self.tokens.is_empty()
    }

    /// The notification that tells other processes: this, or "everything" when too long to send.
    fn payload(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        if self.everyone || text.is_empty() || text.len() > MAX_PAYLOAD {
            return r#"{"all":true}"#.to_owned();
        }
        text
    }

    /// What a notification says; anything unreadable (an older process's bare `NOTIFY`, say)
    /// counts as everything.
    fn from_payload(payload: &str) -> Self {
        serde_json::from_str::<Self>(payload).ok().filter(|affected| !affected.is_empty()).unwrap_or_else(Self::everyone)
    }

    fn subjects(&self) -> impl Iterator<Item = Subject> + '_ {
        let users = self.users.iter().map(|id| Subject::User(*id));
        let sessions = self.sessions.iter().map(|id| Subject::Session(*id));
        users.chain(sessions).chain(self.tokens.iter().map(|id| Subject::Token(*id)))
    }
}

/// What a cached check depends on, and what a change marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject {
    User(i64),
    Session(Uuid),
    Token(i64),
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

    /// [`own_view`](Self::own_view), rendered by `render` when no request has yet.
    pub fn own_view(&self, render: impl FnOnce() -> crate::error::Result<bytes::Bytes>) -> crate::error::Result<bytes::Bytes> {
        if let Some(rendered) = self.own_view.get() {
            return Ok(rendered.clone());
        }
        let rendered = render()?;
        Ok(self.own_view.get_or_init(|| rendered).clone())
    }

    /// What this check depends on: its user, and its session or key.
    fn subjects(&self) -> [Option<Subject>; 3] {
        [
            Some(Subject::User(self.user.id)),
            self.session.as_ref().map(|s| Subject::Session(s.id)),
            self.token.as_ref().map(|t| Subject::Token(t.id)),
        ]
    }
}

struct Entry {
    /// The change count when the check started reading the database.
    read: u64,
    stored: Instant,
    context: Arc<AuthContext>,
}

/// When each subject was last marked, as a change count.
struct Mark {
    change: u64,
    at: Instant,
}

#[derive(Default)]
struct Entries {
    checks: HashMap<String, Entry>,
    marks: HashMap<Subject, Mark>,
    /// Checks read before this change count are stale, whatever they depend on.
    floor: u64,
}

impl Entries {
    /// Drops every check, and refuses every fill that read the database before `change`.
    fn drop_all(&mut self, change: u64) {
        self.floor = change;
        self.marks.clear();
        self.checks.clear();
    }

    /// Whether a check read at change count `read` and depending on `context` is still right.
    fn current(&self, read: u64, context: &AuthContext) -> bool {
        read >= self.floor
            && context.subjects().into_iter().flatten().all(|subject| self.marks.get(&subject).is_none_or(|mark| read >= mark.change))
    }
}

/// How many checks the cache answered and how many went to the database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

/// Cached session and key checks, keyed by the credential's digest.
pub struct AuthCache {
    /// Counts invalidations; a check takes it before reading the database and is stored with it.
    changes: AtomicU64,
    ttl: Duration,
    entries: RwLock<Entries>,
    hits: AtomicU64,
    misses: AtomicU64,
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

impl AuthCache {
    /// A cache whose entries live at most `ttl` (zero disables caching).
    pub fn new(ttl: Duration) -> Self {
        Self {
            changes: AtomicU64::new(0),
            ttl,
            entries: RwLock::new(Entries::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            running: Default::default(),
        }
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

    /// The number of invalidations so far; take it before reading from the database, and store
    /// with it. Other caches whose entries depend on accounts and sessions use it too.
    pub fn generation(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// A cached check that is still right, counting the hit. A caller that then checks the
    /// database counts that with [`Self::missed`].
    pub fn get(&self, digest: &str) -> Option<Arc<AuthContext>> {
        let found = self.lookup(digest);
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Counts a check the cache could not answer and that goes to the database.
    pub fn missed(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    fn lookup(&self, digest: &str) -> Option<Arc<AuthContext>> {
        let entries = self.entries.read().ok()?;
        let entry = entries.checks.get(digest)?;
        (entry.stored.elapsed() < self.ttl && entries.current(entry.read, &entry.context)).then(|| entry.context.clone())
    }

    /// How many checks were answered here and how many were not, since the process started.
    pub fn stats(&self) -> CacheStats {
        CacheStats { hits: self.hits.load(Ordering::Relaxed), misses: self.misses.load(Ordering::Relaxed) }
    }

    /// Stores a check that started reading the database at change count `read` (from
    /// [`Self::generation`]), unless something it depends on changed since.
    pub fn put(&self, digest: String, read: u64, context: Arc<AuthContext>) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            if !entries.current(read, &context) {
                return;
            }
            if entries.checks.len() >= MAX_ENTRIES {
                entries.checks.clear();
            }
            entries.checks.insert(digest, Entry { read, stored: Instant::now(), context });
        }
    }

    /// Replaces the cached context `old` of a check with `new` (a newer last use, say) without
    /// making it look fresher than the read it came from. Does nothing when the entry no longer
    /// holds `old`: it was dropped, or refilled from a newer read whose rights must not be
    /// replaced by the older ones in `new`.
    pub fn refresh(&self, digest: &str, old: &Arc<AuthContext>, new: Arc<AuthContext>) {
        if let Ok(mut entries) = self.entries.write()
            && let Some(entry) = entries.checks.get_mut(digest)
            && Arc::ptr_eq(&entry.context, old)
        {
            entry.context = new;
        }
    }

    /// Marks what a change affects; call after the change commits, so that a check reading the
    /// database from now on sees it.
    pub fn invalidate(&self, affected: &Affected) {
        let Ok(mut entries) = self.entries.write() else { return };
        // Counted under the lock, so that marks and the floor only ever grow: two changes
        // taking their numbers in one order and the lock in the other cannot leave the lower.
        let change = self.changes.fetch_add(1, Ordering::AcqRel) + 1;
        if affected.everyone {
            entries.drop_all(change);
            return;
        }
        let now = Instant::now();
        for subject in affected.subjects() {
            entries.marks.insert(subject, Mark { change, at: now });
        }
        // Checks depending on them stay in the map, refused by their marks, until they are stored
        // again or the map is cleared: dropping them here would cost a scan of every entry.
        if entries.marks.len() > MAX_MARKS {
            self.prune(&mut entries, change);
        }
    }

    /// Drops every cached check.
    pub fn invalidate_everything(&self) {
        self.invalidate(&Affected::everyone());
    }

    /// Forgets marks older than the cache's lifetime: every check read before them has expired,
    /// so raising the floor past them drops nothing that could still be served. When that is not
    /// enough, drops everything.
    fn prune(&self, entries: &mut Entries, change: u64) {
        let ttl = self.ttl;
        let mut floor = entries.floor;
        entries.marks.retain(|_, mark| {
            let keep = mark.at.elapsed() < ttl;
            if !keep {
                floor = floor.max(mark.change);
            }
            keep
        });
        entries.floor = floor;
        if entries.marks.len() > MAX_MARKS / 2 {
            entries.drop_all(change);
        }
    }
}

/// Tells the other server processes, when the transaction on `db` commits, which of their cached
/// checks to drop. A no-op on SQLite, which is served by one process.
pub async fn notify_others(db: &impl ConnectionTrait, affected: &Affected) -> Result<(), sea_orm::DbErr> {
    notify::notify_with(db, CHANNEL, &affected.payload()).await
}

/// Marks in this process what another process's change affects, and drops everything whenever
/// the listener (re)connects: anything may have changed while no one listened.
pub fn subscription(cache: Arc<AuthCache>) -> notify::Subscription {
    notify::Subscription::reading(CHANNEL, move |wake| match wake {
        notify::Wake::Notified(payload) => cache.invalidate(&Affected::from_payload(payload)),
        notify::Wake::Reconnected => cache.invalidate_everything(),
    })
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

    /// A session check of `user` through session `session`.
    fn session_check(user: i64, session: u128) -> Arc<AuthContext> {
        let now = Utc::now();
        Arc::new(AuthContext {
            token: None,
            session: Some(session::Model {
                id: Uuid::from_u128(session),
                key_digest: String::new(),
                tenant_id: Uuid::nil(),
                user_id: user,
                created: now,
                expires: now,
                last_used: now,
                last_ip: None,
                user_agent: String::new(),
                client: serde_json::json!({}),
            }),
            user: account(user, now),
            permissions: Rights::default(),
            groups: Vec::new(),
            own_view: Default::default(),
        })
    }

    fn context() -> Arc<AuthContext> {
        session_check(1, 1)
    }

    #[test]
    fn invalidation_drops_entries_and_late_fills() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let before = cache.generation();
        cache.put("a".into(), before, context());
        assert!(cache.get("a").is_some());
        cache.invalidate_everything();
        assert!(cache.get("a").is_none());
        // A fill that read the database before the invalidation is not stored.
        cache.put("b".into(), before, context());
        assert!(cache.get("b").is_none());
        cache.missed();
        assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 1 });
    }

    #[test]
    fn a_change_drops_only_the_checks_it_affects() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let read = cache.generation();
        cache.put("alice".into(), read, session_check(1, 10));
        cache.put("alice-2".into(), read, session_check(1, 11));
        cache.put("bob".into(), read, session_check(2, 20));
        cache.invalidate(&Affected::sessions([Uuid::from_u128(11)]));
        assert!(cache.get("alice").is_some() && cache.get("bob").is_some());
        assert!(cache.get("alice-2").is_none(), "the ended session");
        cache.invalidate(&Affected::user(1));
        assert!(cache.get("alice").is_none(), "every check of the changed user");
        assert!(cache.get("bob").is_some(), "another user's check stays");
        // A check of the changed user that read the database before the change is not stored,
        // one that read it after is.
        cache.put("alice".into(), read, session_check(1, 10));
        assert!(cache.get("alice").is_none());
        cache.put("alice".into(), cache.generation(), session_check(1, 10));
        assert!(cache.get("alice").is_some());
    }

    #[test]
    fn key_checks_are_dropped_by_their_key_and_their_user() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let key_check = |user: i64, token: i64| {
            let mut check = (*session_check(user, 0)).clone();
            check.session = None;
            check.token = Some(crate::tokens::entities::token::Model { id: token, user_id: user, ..token_row() });
            Arc::new(check)
        };
        cache.put("k1".into(), cache.generation(), key_check(1, 100));
        cache.put("k2".into(), cache.generation(), key_check(1, 101));
        cache.invalidate(&Affected::token(100));
        assert!(cache.get("k1").is_none() && cache.get("k2").is_some());
        cache.invalidate(&Affected::user(1));
        assert!(cache.get("k2").is_none());
    }

    fn token_row() -> crate::tokens::entities::token::Model {
        let now = Utc::now();
        crate::tokens::entities::token::Model {
            id: 0,
            token_uuid: Uuid::nil(),
            key_id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            identifier: "k".into(),
            key_digest: String::new(),
            key_sealed: String::new(),
            intent: crate::tokens::entities::Intent::Api,
            user_id: 0,
            name: String::new(),
            description: String::new(),
            managed: None,
            expiring: false,
            expires: None,
            is_active: true,
            created: now,
            last_updated: now,
            last_used_at: None,
        }
    }

    #[test]
    fn notifications_carry_what_changed_and_anything_else_means_everything() {
        let affected = Affected::users([3, 4]).and(Affected::sessions([Uuid::from_u128(9)])).and(Affected::token(7));
        assert_eq!(Affected::from_payload(&affected.payload()), affected);
        assert_eq!(Affected::from_payload(""), Affected::everyone(), "a bare NOTIFY");
        assert_eq!(Affected::from_payload("{}"), Affected::everyone());
        assert_eq!(Affected::from_payload("not json"), Affected::everyone());
        let many = Affected::users(0..10_000);
        assert_eq!(Affected::from_payload(&many.payload()), Affected::everyone(), "too long to send: everything");
        assert!(many.payload().len() < MAX_PAYLOAD);
    }

    #[test]
    fn marks_stay_bounded_under_many_changes() {
        let cache = AuthCache::new(Duration::from_secs(60));
        cache.put("bob".into(), cache.generation(), session_check(2, 20));
        for user in 1_000..(1_000 + 3 * MAX_MARKS as i64) {
            cache.invalidate(&Affected::user(user));
        }
        let entries = cache.entries.read().unwrap();
        assert!(entries.marks.len() <= MAX_MARKS, "{} marks", entries.marks.len());
    }

    #[test]
    fn refreshing_a_check_keeps_the_read_it_came_from() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let read = cache.generation();
        cache.put("a".into(), read, context());
        cache.invalidate(&Affected::user(1));
        let old = context();
        cache.put("b".into(), cache.generation(), old.clone());
        cache.refresh("a", &old, context());
        assert!(cache.get("a").is_none(), "a refresh does not revive a dropped check");
        // A refresh of what a request read earlier does not replace a newer fill.
        let newer = context();
        cache.put("b".into(), cache.generation(), newer.clone());
        cache.refresh("b", &old, context());
        assert!(Arc::ptr_eq(&cache.get("b").unwrap(), &newer));
        cache.refresh("b", &newer, old.clone());
        assert!(Arc::ptr_eq(&cache.get("b").unwrap(), &old), "a refresh of the current entry applies");
    }

    proptest::proptest! {
        /// Whatever the order of reads, fills and changes, the cache serves exactly the checks
        /// whose read came after every change they depend on: never a stale one, and no
        /// unaffected one is dropped.
        #[test]
        fn the_cache_serves_exactly_the_checks_no_later_change_affects(
            steps in proptest::collection::vec((0u8..4, 0i64..3, 0u128..3), 1..60)
        ) {
            let cache = AuthCache::new(Duration::from_secs(60));
            // For each (user, session): the change count of the last change affecting it, the
            // last read taken, and the read of the check stored.
            let mut last_change: HashMap<(i64, u128), u64> = HashMap::new();
            let mut reads: HashMap<(i64, u128), u64> = HashMap::new();
            let mut stored: HashMap<(i64, u128), u64> = HashMap::new();
            for (step, user, session) in steps {
                let key = (user, session);
                match step {
                    0 => { reads.insert(key, cache.generation()); }
                    1 => if let Some(read) = reads.get(&key).copied() {
                        cache.put(format!("{user}/{session}"), read, session_check(user, session));
                        if read >= last_change.get(&key).copied().unwrap_or(0) {
                            stored.insert(key, read);
                        }
                    },
                    2 => {
                        cache.invalidate(&Affected::user(user));
                        for s in 0..3 { last_change.insert((user, s), cache.generation()); }
                    }
                    _ => {
                        cache.invalidate(&Affected::sessions([Uuid::from_u128(session)]));
                        for u in 0..3 { last_change.insert((u, session), cache.generation()); }
                    }
                }
                for u in 0..3 {
                    for s in 0..3 {
                        let expected = stored.get(&(u, s)).is_some_and(|read| *read >= last_change.get(&(u, s)).copied().unwrap_or(0));
                        proptest::prop_assert_eq!(cache.get(&format!("{u}/{s}")).is_some(), expected, "{}/{}", u, s);
                    }
                }
            }
        }
    }
}
