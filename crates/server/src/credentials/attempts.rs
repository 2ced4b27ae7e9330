//! Limits on guessing, shared by every server process through the database: the one mechanism
//! behind every check of a password, key or code.
//!
//! An attempt at an account counts toward the bucket of that account at that client address and
//! the bucket of the address (each some free failures, then a delay that doubles with every
//! further failure up to `3600 / max_failures_per_hour` seconds), and toward the account's
//! ceiling (a plain cap on failures per hour from all addresses together). The delays fall on
//! whoever guesses, not on the account: its owner at another address, or in a browser that signed
//! in before ([`super::known_browser`], which counts toward a bucket of its own instead), is
//! not held up by someone else's guessing.
//!
//! An attempt is *reserved* before anything is checked (or held, see below): it counts as a
//! failure from the moment it is let through, under a lock that serialises the buckets' readers,
//! so a burst of simultaneous attempts gets no more checks than one attempt after another would. A check that succeeds gives
//! its reservation back ([`Reservation::settle_success`]); one that could not run at all (the
//! password threads were busy) gives it back too ([`Reservation::release`]). A check short
//! enough to run inside the locking transaction (a one-time code) is instead counted there once
//! it failed ([`hold_in`]): nobody else gets past the lock in between.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, Set, Statement};

use super::limits::Limits;
use crate::error::{Error, Result};
use crate::tenants::TenantId;

/// The failure counters' table.
pub mod counter {
    use sea_orm::entity::prelude::*;

    /// Failures (and reserved attempts still being checked) of one bucket in the current window.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sign_in_throttle")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub bucket: String,
        pub failures: i32,
        pub window_started: DateTimeUtc,
        pub last_failure: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

const WINDOW: TimeDelta = TimeDelta::hours(1);

/// What a success does to a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSuccess {
    /// Forget every failure: the account's owner has proven themselves.
    Clear,
    /// Give back only this attempt: a client address is shared, one success proves nothing about
    /// the other attempts from it.
    Refund,
}

/// When a bucket makes an attempt wait.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// Some free failures, then a delay after each further failure that doubles up to a cap.
    Delay(Limits),
    /// No delay until this many failures in the window, then nothing until the window ends.
    Ceiling(u32),
}

/// One failure counter an attempt counts toward.
#[derive(Debug, Clone)]
pub struct Bucket {
    name: String,
    rule: Rule,
    on_success: OnSuccess,
}

impl Bucket {
    /// One client address's guesses at one account (named by a keyed digest of its stable key,
    /// which holds no `@` or `:`, so no two buckets' names can meet). A success clears it: the
    /// owner is at that address.
    pub fn account_at_address(key: &str, ip: Option<std::net::IpAddr>, limits: Limits) -> Self {
        let at = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        Self { name: format!("account:{key}@ip:{at}"), rule: Rule::Delay(limits), on_success: OnSuccess::Clear }
    }

    /// One known browser's guesses at one account (see [`super::known_browser`]).
    pub fn account_in_browser(key: &str, browser: &str, limits: Limits) -> Self {
        Self { name: format!("account:{key}@browser:{browser}"), rule: Rule::Delay(limits), on_success: OnSuccess::Clear }
    }

    /// Every guess at one account from its known browsers together: marks are many (one per
    /// sign-in), the guesses they allow are not.
    pub fn account_browsers_ceiling(key: &str, max_failures_per_hour: u32) -> Self {
        Self { name: format!("account:{key}@browsers"), rule: Rule::Ceiling(max_failures_per_hour), on_success: OnSuccess::Refund }
    }

    /// Every guess at one account from anywhere but its known browsers: the cap on guesses that
    /// many addresses together can make. A success gives back only itself, so the owner signing
    /// in does not reopen the account to more guessing.
    pub fn account_ceiling(key: &str, max_failures_per_hour: u32) -> Self {
        Self { name: format!("account:{key}"), rule: Rule::Ceiling(max_failures_per_hour), on_success: OnSuccess::Refund }
    }

    /// The bucket of a client address, whatever it guessed at.
    pub fn address(ip: std::net::IpAddr, limits: Limits) -> Self {
        Self { name: format!("ip:{ip}"), rule: Rule::Delay(limits), on_success: OnSuccess::Refund }
    }

    /// Failed API keys from one client address that share a prefix (named by `prefix_digest`,
    /// never by the prefix itself): completing a partly known key is slowed, while other keys
    /// from the same address, a valid one among them, are not.
    pub fn address_and_key_prefix(ip: std::net::IpAddr, prefix_digest: &str, limits: Limits) -> Self {
        Self { name: format!("ip:{ip}:key:{prefix_digest}"), rule: Rule::Delay(limits), on_success: OnSuccess::Refund }
    }

    /// Failed API keys from one client address, whatever their prefix: a cap on the lookups one
    /// address can cause, high enough that a shared address's valid keys rarely meet it.
    pub fn address_key_ceiling(ip: std::net::IpAddr, max_failures_per_hour: u32) -> Self {
        Self { name: format!("ip:{ip}:keys"), rule: Rule::Ceiling(max_failures_per_hour), on_success: OnSuccess::Refund }
    }

    /// Wrong one-time codes for one account, from every device, flow and address together. A
    /// new code does not reset it; a right code does.
    pub fn code_guesses(user: i64) -> Self {
        let limits = Limits { free_failures: 5, max_failures_per_hour: 20 };
        Self { name: format!("codes:user:{user}"), rule: Rule::Delay(limits), on_success: OnSuccess::Clear }
    }

    /// Wrong device user codes (RFC 8628) entered by one account: a user code is short, so
    /// guessing one is slowed and capped like a one-time code. A right code gives back only
    /// itself, since anyone can make a right code by asking for one.
    pub fn user_code_guesses(user: i64) -> Self {
        let limits = Limits { free_failures: 5, max_failures_per_hour: 20 };
        Self { name: format!("user-codes:user:{user}"), rule: Rule::Delay(limits), on_success: OnSuccess::Refund }
    }

    /// Device authorization requests from one client address: each writes a row and hands out a
    /// user code, so an hour allows a generous number and then no more.
    pub fn device_requests_from(ip: Option<std::net::IpAddr>) -> Self {
        let from = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        Self { name: format!("device-requests:ip:{from}"), rule: Rule::Ceiling(120), on_success: OnSuccess::Refund }
    }

    /// Codes sent for one account (each message costs money, so every send counts).
    pub fn code_sends_for_account(user: i64, max_per_hour: u32) -> Self {
        Self { name: format!("sends:user:{user}"), rule: Rule::Ceiling(max_per_hour), on_success: OnSuccess::Refund }
    }

    /// Codes sent to one destination, named by a keyed digest of it.
    pub fn code_sends_to(destination_digest: &str, max_per_hour: u32) -> Self {
        Self { name: format!("sends:to:{destination_digest}"), rule: Rule::Ceiling(max_per_hour), on_success: OnSuccess::Refund }
    }

    /// Codes sent at the request of one client address.
    pub fn code_sends_from(ip: Option<std::net::IpAddr>, max_per_hour: u32) -> Self {
        let from = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        Self { name: format!("sends:ip:{from}"), rule: Rule::Ceiling(max_per_hour), on_success: OnSuccess::Refund }
    }

    /// When an attempt `now` must wait until, given the bucket's window.
    fn must_wait(&self, failures: u32, window_started: DateTime<Utc>, last_failure: DateTime<Utc>, now: DateTime<Utc>) -> TimeDelta {
        match self.rule {
            // No delay is due within the free failures, whatever the times say: another process's
            // clock may run slightly ahead of this one's.
            Rule::Delay(limits) => match limits.delay_after(failures) {
                delay if delay.is_zero() => TimeDelta::zero(),
                delay => last_failure + delay - now,
            },
            Rule::Ceiling(max) if failures >= max => window_started + WINDOW - now,
            Rule::Ceiling(_) => TimeDelta::zero(),
        }
    }
}

/// An attempt let through the limits and already counted as a failure.
#[derive(Debug)]
#[must_use = "a reservation is settled on success or released when the check could not run"]
pub struct Reservation {
    tenant: TenantId,
    buckets: Vec<Bucket>,
}

/// Runs `check` (a reservation, the lookup or comparison it guards, and its settlement) to its
/// end on a task of its own, even when the request awaiting it stops waiting. A committed
/// reservation counts as a failure until its check gives it back: run inline, a check whose
/// client hung up in between (a closed tab, a timeout, a load generator ending its run) would
/// stay counted against the address and the account for the rest of the window, for nothing
/// the client did wrong, until those free failures ran out for everyone behind that address.
pub async fn run_to_end<T: Send + 'static>(check: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    tokio::spawn(check).await.map_err(|error| Error::internal(format!("a guarded check stopped: {error}")))?
}

/// Reserves `buckets`, then runs `lookup`, and gives the reservation back when it finds
/// something, all to the end ([`run_to_end`]): the check of a secret that is either issued
/// (found, whether it still works or not) or a guess. `lookup` runs only once the reservation
/// is made.
pub async fn look_up<T: Send + 'static>(
    db: &DatabaseConnection,
    tenant: TenantId,
    now: DateTime<Utc>,
    buckets: Vec<Bucket>,
    lookup: impl Future<Output = Result<Option<T>>> + Send + 'static,
) -> Result<Option<T>> {
    let db = db.clone();
    run_to_end(async move {
        let reservation = reserve(&db, tenant, now, buckets).await?;
        let found = lookup.await?;
        if found.is_some() {
            reservation.settle_success(&db).await?;
        }
        Ok(found)
    })
    .await
}

/// Reserves one attempt in every bucket, or fails with 429 (counting nothing) while any of them
/// must wait. Every process that reserves in the same bucket waits for the others'
/// reservations: PostgreSQL through a transaction-scoped advisory lock per bucket, SQLite
/// through its single writer. A reservation made here is committed: a check that gives it back
/// when it succeeds runs inside [`run_to_end`]. (A code send's reservation stays counted unless
/// the send fails, and a plain count is never given back: those need not.)
pub async fn reserve(db: &DatabaseConnection, tenant: TenantId, now: DateTime<Utc>, buckets: Vec<Bucket>) -> Result<Reservation> {
    if buckets.is_empty() {
        return Ok(Reservation { tenant, buckets });
    }
    if db.get_database_backend() == DbBackend::Sqlite && start_every_fresh_window(db, tenant, now, &buckets).await? {
        return Ok(Reservation { tenant, buckets });
    }
    let txn = crate::db::begin_write(db).await?;
    let reservation = reserve_locked(&txn, tenant, now, buckets).await?;
    txn.commit().await?;
    Ok(reservation)
}

/// [`reserve`] in a write transaction, which keeps the buckets locked until it ends.
async fn reserve_locked(txn: &DatabaseTransaction, tenant: TenantId, now: DateTime<Utc>, mut buckets: Vec<Bucket>) -> Result<Reservation> {
    lock_in_order(txn, tenant, &mut buckets).await?;
    let started = start_fresh_windows(txn, tenant, now, &buckets).await?;
    let rest: Vec<&Bucket> = buckets.iter().filter(|bucket| !started.contains(&bucket.name)).collect();
    if !rest.is_empty() {
        write_counts(txn, failures_if_counted(txn, tenant, now, &rest).await?.writes).await?;
    }
    Ok(Reservation { tenant, buckets })
}

/// Sorts `buckets`, drops repeats and locks each, in one order for every caller, so that two
/// attempts locking the same buckets cannot deadlock.
async fn lock_in_order(txn: &DatabaseTransaction, tenant: TenantId, buckets: &mut Vec<Bucket>) -> Result<()> {
    buckets.sort_by(|a, b| a.name.cmp(&b.name));
    buckets.dedup_by(|a, b| a.name == b.name);
    for bucket in buckets.iter() {
        crate::db::lock_for_update(txn, &format!("attempts:{}", bucket.name), tenant.0).await?;
    }
    Ok(())
}

/// Lets an attempt through the limits in the caller's write transaction, which keeps `buckets`
/// locked until it ends, without counting it yet: a check that needs nothing but that
/// transaction (comparing a code, taking an app's time step) runs inside it, then counts a
/// failure ([`Held::count_failure`]) or clears what a success clears ([`Held::settle_success`]),
/// and one commit makes either visible. Nobody else reserves in these buckets meanwhile, so
/// counting after the comparison lets no more comparisons through than counting before it, and
/// a right answer with no failures behind it writes nothing. Fails with 429 (writing nothing)
/// while any bucket must wait.
pub async fn hold_in(txn: &DatabaseTransaction, tenant: TenantId, now: DateTime<Utc>, mut buckets: Vec<Bucket>) -> Result<Held> {
    lock_in_order(txn, tenant, &mut buckets).await?;
    let counted = failures_if_counted(txn, tenant, now, &buckets.iter().collect::<Vec<_>>()).await?;
    let cleared_on_success =
        buckets.into_iter().filter(|bucket| bucket.on_success == OnSuccess::Clear && counted.holding.contains(&bucket.name)).collect();
    Ok(Held { tenant, failure: counted.writes, cleared_on_success })
}

/// An attempt let through in a locked transaction ([`hold_in`]) and not counted yet.
#[derive(Debug)]
#[must_use = "a held attempt is counted as a failure or settled as a success"]
pub struct Held {
    tenant: TenantId,
    /// What counting the attempt as a failure writes.
    failure: Vec<counter::ActiveModel>,
    /// The buckets a success clears: those that clear on success and hold failures.
    cleared_on_success: Vec<Bucket>,
}

impl Held {
    /// The check failed: counts it in every bucket, in the transaction that holds them.
    pub async fn count_failure(self, txn: &DatabaseTransaction) -> Result<()> {
        write_counts(txn, self.failure).await
    }

    /// The check succeeded: clears the buckets that clear on success and hold failures. The
    /// attempt itself was never counted, so nothing is given back.
    pub async fn settle_success(self, txn: &DatabaseTransaction) -> Result<()> {
        take_off(txn, self.tenant, &self.cleared_on_success, Expr::val(0)).await
    }
}

/// On SQLite, counts the first failure of every bucket when none of them holds failures in its
/// current window, and nothing otherwise; returns whether it counted. SQLite runs one write at a
/// time and a statement whole or not at all, so the attempt nearly every honest sign-in makes
/// costs one statement without a transaction around it; the other attempts take the locked path
/// ([`reserve_locked`]) after it, one statement more than that path alone. (PostgreSQL runs
/// writes side by side: there every attempt takes the locks.)
async fn start_every_fresh_window(db: &DatabaseConnection, tenant: TenantId, now: DateTime<Utc>, buckets: &[Bucket]) -> Result<bool> {
    // Plain placeholders, one value each: sea-orm's statement printer counts them in order.
    const SQL: &str = r#"INSERT INTO "sign_in_throttle" ("tenant_id", "bucket", "failures", "window_started", "last_failure")
        SELECT ?, "wanted"."value", 1, ?, ? FROM json_each(?) AS "wanted"
        WHERE NOT EXISTS (SELECT 1 FROM "sign_in_throttle" AS "held"
            WHERE "held"."tenant_id" = ? AND "held"."bucket" IN (SELECT "value" FROM json_each(?))
            AND "held"."failures" > 0 AND "held"."window_started" >= ?)
        ON CONFLICT ("tenant_id", "bucket") DO UPDATE
            SET "failures" = 1, "window_started" = "excluded"."window_started", "last_failure" = "excluded"."last_failure"
        RETURNING "bucket""#;
    let mut names: Vec<&str> = buckets.iter().map(|bucket| bucket.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let names_json = serde_json::to_string(&names).map_err(Error::internal)?;
    let values: Vec<sea_orm::Value> =
        vec![tenant.0.into(), now.into(), now.into(), names_json.clone().into(), tenant.0.into(), names_json.into(), (now - WINDOW).into()];
    let counted = db.query_all_raw(Statement::from_sql_and_values(DbBackend::Sqlite, SQL, values)).await?;
    Ok(counted.len() == names.len())
}

/// Counts the first failure of every bucket in `buckets` with none in the current window (no
/// row, every failure given back or cleared, or a window that ended), in one statement that both
/// checks and writes: nearly every honest attempt finds all its buckets so. Returns the names of
/// the buckets counted; the others already hold failures and are left as they were.
async fn start_fresh_windows(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    now: DateTime<Utc>,
    buckets: &[Bucket],
) -> Result<std::collections::HashSet<String>> {
    // A first failure never waits: the limits count from failures in the window.
    let first_failures: Vec<counter::ActiveModel> = buckets
        .iter()
        .map(|bucket| counter::ActiveModel {
            tenant_id: Set(tenant.0),
            bucket: Set(bucket.name.clone()),
            failures: Set(1),
            window_started: Set(now),
            last_failure: Set(now),
        })
        .collect();
    let failures = Expr::col((counter::Entity, counter::Column::Failures));
    let window_started = Expr::col((counter::Entity, counter::Column::WindowStarted));
    let counted = counter::Entity::insert_many(first_failures)
        .on_conflict(
            OnConflict::columns([counter::Column::TenantId, counter::Column::Bucket])
                .update_columns([counter::Column::Failures, counter::Column::WindowStarted, counter::Column::LastFailure])
                .action_and_where(failures.lte(0).or(window_started.lt(now - WINDOW)))
                .to_owned(),
        )
        .exec_with_returning(txn)
        .await?;
    Ok(counted.into_iter().map(|row| row.bucket).collect())
}

/// What counting one more failure in each of `buckets` would write, and which of them hold
/// failures in their current window.
#[derive(Debug)]
struct Counted {
    writes: Vec<counter::ActiveModel>,
    holding: Vec<String>,
}

/// Reads `buckets` and works out what one more failure in each would write, or fails with 429
/// while any of them must wait.
async fn failures_if_counted(txn: &DatabaseTransaction, tenant: TenantId, now: DateTime<Utc>, buckets: &[&Bucket]) -> Result<Counted> {
    let rows = counter::Entity::find()
        .filter(counter::Column::TenantId.eq(tenant.0))
        .filter(counter::Column::Bucket.is_in(buckets.iter().map(|b| b.name.as_str())))
        .all(txn)
        .await?;
    let mut wait = TimeDelta::zero();
    let mut writes = Vec::with_capacity(buckets.len());
    let mut holding = Vec::new();
    for bucket in buckets {
        // A bucket with no failures left (all given back or cleared) starts its window afresh
        // at its next failure, as if it had no row.
        let current =
            rows.iter().find(|row| row.bucket == bucket.name).filter(|row| row.failures > 0 && now - row.window_started <= WINDOW);
        let (failures, window_started) = match current {
            Some(row) => {
                let failures = u32::try_from(row.failures).unwrap_or(0);
                wait = wait.max(bucket.must_wait(failures, row.window_started, row.last_failure, now));
                holding.push(bucket.name.clone());
                (failures, row.window_started)
            }
            None => (0, now),
        };
        writes.push(counter::ActiveModel {
            tenant_id: Set(tenant.0),
            bucket: Set(bucket.name.clone()),
            failures: Set(i32::try_from(failures.saturating_add(1)).unwrap_or(i32::MAX)),
            window_started: Set(window_started),
            last_failure: Set(now),
        });
    }
    if wait > TimeDelta::zero() {
        let wait_ms = u64::try_from(wait.num_milliseconds()).unwrap_or(0);
        return Err(Error::RateLimited { retry_after_secs: std::cmp::max(wait_ms.div_ceil(1000), 1) });
    }
    Ok(Counted { writes, holding })
}

/// Writes what [`failures_if_counted`] worked out, in one statement for every bucket.
async fn write_counts(txn: &DatabaseTransaction, writes: Vec<counter::ActiveModel>) -> Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
    counter::Entity::insert_many(writes)
        .on_conflict(
            OnConflict::columns([counter::Column::TenantId, counter::Column::Bucket])
                .update_columns([counter::Column::Failures, counter::Column::WindowStarted, counter::Column::LastFailure])
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

impl Reservation {
    /// The check succeeded: clears the buckets that clear on success and gives this attempt back
    /// to the others, in one statement, so outside a transaction it needs none. A cleared bucket keeps
    /// its row with no failures, which the next reservation treats as no row.
    pub async fn settle_success(&self, db: &impl ConnectionTrait) -> Result<()> {
        if self.buckets.is_empty() {
            return Ok(());
        }
        let cleared = self.buckets.iter().filter(|b| b.on_success == OnSuccess::Clear).map(|b| b.name.clone()).collect::<Vec<_>>();
        let failures = Expr::col(counter::Column::Failures);
        let left = if cleared.is_empty() {
            failures.sub(1)
        } else {
            Expr::case(Expr::col(counter::Column::Bucket).is_in(cleared), 0).finally(failures.sub(1)).into()
        };
        take_off(db, self.tenant, &self.buckets, left).await
    }

    /// The check could not run (the server was too busy): gives the attempt back everywhere.
    pub async fn release(self, db: &impl ConnectionTrait) -> Result<()> {
        take_off(db, self.tenant, &self.buckets, Expr::col(counter::Column::Failures).sub(1)).await
    }
}

/// Sets the failures of `buckets` that have any to `left`, in one statement.
async fn take_off(db: &impl ConnectionTrait, tenant: TenantId, buckets: &[Bucket], left: Expr) -> Result<()> {
    if buckets.is_empty() {
        return Ok(());
    }
    counter::Entity::update_many()
        .col_expr(counter::Column::Failures, left)
        .filter(counter::Column::TenantId.eq(tenant.0))
        .filter(counter::Column::Bucket.is_in(buckets.iter().map(|b| b.name.as_str())))
        .filter(counter::Column::Failures.gt(0))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes counters whose window ended long ago; returns how many.
pub async fn purge_stale(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64> {
    let cutoff = now - WINDOW;
    Ok(counter::Entity::delete_many().filter(counter::Column::LastFailure.lt(cutoff)).exec(db).await?.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migrated SQLite database in a directory of its own, and its default tenant.
    async fn database() -> (tempfile::TempDir, DatabaseConnection, TenantId) {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config { data_dir: dir.path().to_path_buf(), ..crate::config::Config::default() };
        let db = crate::db::connect(&config).await.expect("a new SQLite file opens");
        crate::db::migrate(&db).await.unwrap();
        let tenant = crate::tenants::ensure_default(&db).await.unwrap();
        (dir, db, tenant)
    }

    async fn failures(db: &DatabaseConnection, tenant: TenantId, bucket: &Bucket) -> Option<i32> {
        let row = counter::Entity::find_by_id((tenant.0, bucket.name.clone())).one(db).await.unwrap();
        row.map(|row| row.failures)
    }

    #[tokio::test]
    async fn a_refused_attempt_counts_nothing_in_the_buckets_it_would_have_started() {
        let (_dir, db, tenant) = database().await;
        let full = Bucket::account_ceiling("someone", 1);
        let fresh = Bucket::code_guesses(7);
        let now = Utc::now();
        let first = reserve(&db, tenant, now, vec![full.clone()]).await.unwrap();
        drop(first);
        let refused = reserve(&db, tenant, now, vec![full.clone(), fresh.clone()]).await;
        assert!(matches!(refused, Err(Error::RateLimited { .. })), "{refused:?}");
        assert_eq!(failures(&db, tenant, &full).await, Some(1));
        assert_eq!(failures(&db, tenant, &fresh).await, None, "the refused attempt was counted in the bucket it started");
    }

    #[tokio::test]
    async fn a_bucket_with_every_failure_given_back_or_past_its_window_starts_a_new_window() {
        let (_dir, db, tenant) = database().await;
        let refunded = Bucket::code_guesses(7);
        let cleared = Bucket::account_in_browser("someone", "browser", Limits { free_failures: 1, max_failures_per_hour: 10 });
        let then = Utc::now() - TimeDelta::minutes(10);
        reserve(&db, tenant, then, vec![refunded.clone(), cleared.clone()]).await.unwrap().settle_success(&db).await.unwrap();
        assert_eq!(failures(&db, tenant, &refunded).await, Some(0));
        assert_eq!(failures(&db, tenant, &cleared).await, Some(0));
        let now = Utc::now();
        drop(reserve(&db, tenant, now, vec![refunded.clone(), cleared.clone()]).await.unwrap());
        for bucket in [&refunded, &cleared] {
            let row = counter::Entity::find_by_id((tenant.0, bucket.name.clone())).one(&db).await.unwrap().unwrap();
            assert_eq!((row.failures, row.window_started), (1, now), "{}", bucket.name);
        }
        // Past its window, a bucket's failures no longer count: the next starts a new one.
        let later = now + WINDOW + TimeDelta::seconds(1);
        drop(reserve(&db, tenant, later, vec![refunded.clone()]).await.unwrap());
        let row = counter::Entity::find_by_id((tenant.0, refunded.name.clone())).one(&db).await.unwrap().unwrap();
        assert_eq!((row.failures, row.window_started), (1, later));
        // Within it, they add up and keep the window's start.
        let soon = later + TimeDelta::seconds(1);
        drop(reserve(&db, tenant, soon, vec![refunded.clone()]).await.unwrap());
        let row = counter::Entity::find_by_id((tenant.0, refunded.name.clone())).one(&db).await.unwrap().unwrap();
        assert_eq!((row.failures, row.window_started, row.last_failure), (2, later, soon));
    }

    #[tokio::test]
    async fn an_attempt_with_one_bucket_holding_failures_adds_to_them_and_starts_the_others() {
        let (_dir, db, tenant) = database().await;
        let held = Bucket::account_ceiling("someone", 10);
        let fresh = Bucket::code_guesses(7);
        let then = Utc::now() - TimeDelta::minutes(1);
        drop(reserve(&db, tenant, then, vec![held.clone()]).await.unwrap());
        let now = Utc::now();
        drop(reserve(&db, tenant, now, vec![held.clone(), fresh.clone()]).await.unwrap());
        let row = counter::Entity::find_by_id((tenant.0, held.name.clone())).one(&db).await.unwrap().unwrap();
        assert_eq!((row.failures, row.window_started, row.last_failure), (2, then, now), "the held bucket's window was started again");
        let row = counter::Entity::find_by_id((tenant.0, fresh.name.clone())).one(&db).await.unwrap().unwrap();
        assert_eq!((row.failures, row.window_started), (1, now));
    }

    #[tokio::test]
    async fn a_held_attempt_is_counted_only_when_it_fails_and_a_success_clears_the_failures_before_it() {
        let (_dir, db, tenant) = database().await;
        let codes = Bucket::code_guesses(7);
        let held = |now| {
            let db = db.clone();
            let codes = codes.clone();
            async move {
                let txn = crate::db::begin_write(&db).await.unwrap();
                let held = hold_in(&txn, tenant, now, vec![codes]).await;
                (txn, held)
            }
        };
        let (txn, attempt) = held(Utc::now()).await;
        attempt.unwrap().settle_success(&txn).await.unwrap();
        txn.commit().await.unwrap();
        assert_eq!(failures(&db, tenant, &codes).await, None, "a right answer with no failures behind it wrote a count");
        for expected in 1..=2 {
            let (txn, attempt) = held(Utc::now()).await;
            attempt.unwrap().count_failure(&txn).await.unwrap();
            txn.commit().await.unwrap();
            assert_eq!(failures(&db, tenant, &codes).await, Some(expected));
        }
        let (txn, attempt) = held(Utc::now()).await;
        attempt.unwrap().settle_success(&txn).await.unwrap();
        txn.commit().await.unwrap();
        assert_eq!(failures(&db, tenant, &codes).await, Some(0), "a right answer left the wrong ones before it counted");
        // Past the five free failures, an attempt that must wait is refused before any check.
        for _ in 0..5 {
            let (txn, attempt) = held(Utc::now()).await;
            attempt.unwrap().count_failure(&txn).await.unwrap();
            txn.commit().await.unwrap();
        }
        let (_txn, refused) = held(Utc::now()).await;
        assert!(matches!(refused, Err(Error::RateLimited { .. })), "{refused:?}");
    }

    #[test]
    fn a_clock_behind_another_processs_never_throttles_a_free_attempt() {
        let bucket = Bucket::address("127.0.0.1".parse().unwrap(), Limits { free_failures: 5, max_failures_per_hour: 100 });
        let now = Utc::now();
        let ahead = now + TimeDelta::milliseconds(300);
        assert_eq!(bucket.must_wait(1, ahead, ahead, now), TimeDelta::zero());
        // Past the free failures the delay counts from the last failure.
        assert_eq!(bucket.must_wait(5, now, now, now), TimeDelta::seconds(1));
        assert_eq!(bucket.must_wait(5, now, ahead, now), TimeDelta::milliseconds(1300));
    }
}
