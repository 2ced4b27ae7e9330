//! Wake-ups between server processes through PostgreSQL's `NOTIFY`/`LISTEN`. SQLite is served by
//! one process, so there both sides do nothing and callers rely on in-process signals.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr};

/// How long to wait before connecting the listener again after it failed.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Sends a notification on `channel`, a plain SQL identifier. Inside a transaction it is
/// delivered when the transaction commits, and not at all if it rolls back. A no-op on SQLite.
pub async fn notify(db: &impl ConnectionTrait, channel: &str) -> Result<(), DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared(&format!("NOTIFY {channel}")).await?;
    }
    Ok(())
}

/// [`notify`] with a payload (PostgreSQL keeps payloads under 8,000 bytes; callers send less).
pub async fn notify_with(db: &impl ConnectionTrait, channel: &str, payload: &str) -> Result<(), DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        let statement =
            sea_orm::Statement::from_sql_and_values(DbBackend::Postgres, "SELECT pg_notify($1, $2)", [channel.into(), payload.into()]);
        db.execute_raw(statement).await?;
    }
    Ok(())
}

/// Why a subscription wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake<'a> {
    /// A notification arrived, with its payload (empty when it was sent without one).
    Notified(&'a str),
    /// The listener (re)connected or failed: notifications may have been lost meanwhile.
    Reconnected,
}

/// What notifications on one channel do in this process.
pub struct Subscription {
    channel: &'static str,
    on_wake: Box<dyn Fn(Wake<'_>) + Send + Sync>,
}

impl Subscription {
    /// Runs `on_wake` on each notification on `channel` (a plain SQL identifier), whatever it says.
    pub fn new(channel: &'static str, on_wake: impl Fn() + Send + Sync + 'static) -> Self {
        Self::reading(channel, move |_| on_wake())
    }

    /// Runs `on_wake` on each notification on `channel` with what it says, and with
    /// [`Wake::Reconnected`] when notifications may have been lost.
    pub fn reading(channel: &'static str, on_wake: impl Fn(Wake<'_>) + Send + Sync + 'static) -> Self {
        Self { channel, on_wake: Box::new(on_wake) }
    }
}

/// On PostgreSQL, listens on `channel` for as long as the process runs (or until the returned
/// handle aborts it), reconnecting after failures. `on_wake` runs on each notification, and also
/// on every (re)connection and error, since notifications sent while no one listened are lost.
/// `None` on SQLite, where there is nothing to listen to.
pub fn spawn_listener(
    db: &DatabaseConnection,
    channel: &'static str,
    on_wake: impl Fn() + Send + Sync + 'static,
) -> Option<tokio::task::AbortHandle> {
    spawn_subscriptions(db, vec![Subscription::new(channel, on_wake)])
}

/// [`spawn_listener`] for several channels on one connection (each listener holds one of the
/// pool's connections for as long as it runs): each notification wakes its channel's
/// subscription; a (re)connection or an error wakes them all.
pub fn spawn_subscriptions(db: &DatabaseConnection, subscriptions: Vec<Subscription>) -> Option<tokio::task::AbortHandle> {
    if db.get_database_backend() != DbBackend::Postgres || subscriptions.is_empty() {
        return None;
    }
    let pool = db.get_postgres_connection_pool().clone();
    let wake_all = move |subscriptions: &[Subscription]| subscriptions.iter().for_each(|s| (s.on_wake)(Wake::Reconnected));
    let task = tokio::spawn(async move {
        let channels: Vec<&str> = subscriptions.iter().map(|s| s.channel).collect();
        loop {
            // A closed pool is a process shutting down, not a failure to report.
            if pool.is_closed() {
                return;
            }
            match sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if let Err(error) = listener.listen_all(channels.iter().copied()).await {
                        tracing::warn!(%error, ?channels, "cannot listen for notifications");
                    } else {
                        wake_all(&subscriptions);
                        loop {
                            match listener.try_recv().await {
                                Ok(Some(notification)) => subscriptions
                                    .iter()
                                    .filter(|s| s.channel == notification.channel())
                                    .for_each(|s| (s.on_wake)(Wake::Notified(notification.payload()))),
                                // The connection dropped and was re-established.
                                Ok(None) => wake_all(&subscriptions),
                                Err(_) if pool.is_closed() => return,
                                Err(error) => {
                                    tracing::warn!(%error, ?channels, "notification listener failed");
                                    wake_all(&subscriptions);
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(_) if pool.is_closed() => return,
                Err(error) => {
                    tracing::warn!(%error, ?channels, "cannot connect the notification listener");
                    wake_all(&subscriptions);
                }
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    });
    Some(task.abort_handle())
}
