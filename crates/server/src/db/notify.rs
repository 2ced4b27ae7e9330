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

/// On PostgreSQL, listens on `channel` for as long as the process runs (or until the returned
/// handle aborts it), reconnecting after failures. `on_wake` runs on each notification, and also
/// on every (re)connection and error, since notifications sent while no one listened are lost.
/// `None` on SQLite, where there is nothing to listen to.
pub fn spawn_listener(
    db: &DatabaseConnection,
    channel: &'static str,
    on_wake: impl Fn() + Send + Sync + 'static,
) -> Option<tokio::task::AbortHandle> {
    if db.get_database_backend() != DbBackend::Postgres {
        return None;
    }
    let pool = db.get_postgres_connection_pool().clone();
    let task = tokio::spawn(async move {
        loop {
            // A closed pool is a process shutting down, not a failure to report.
            if pool.is_closed() {
                return;
            }
            match sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if let Err(error) = listener.listen(channel).await {
                        tracing::warn!(%error, channel, "cannot listen for notifications");
                    } else {
                        on_wake();
                        loop {
                            match listener.try_recv().await {
                                Ok(Some(_)) => on_wake(),
                                // The connection dropped and was re-established.
                                Ok(None) => on_wake(),
                                Err(_) if pool.is_closed() => return,
                                Err(error) => {
                                    tracing::warn!(%error, channel, "notification listener failed");
                                    on_wake();
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(_) if pool.is_closed() => return,
                Err(error) => {
                    tracing::warn!(%error, channel, "cannot connect the notification listener");
                    on_wake();
                }
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    });
    Some(task.abort_handle())
}
