//! Database connections and migrations for SQLite and PostgreSQL.

pub mod migrations;
pub mod notify;
pub mod pagination;
pub mod text_enum;

use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sea_orm::{DatabaseConnection, DbBackend, SqlxPostgresConnector, SqlxSqliteConnector};
use sea_orm_migration::MigratorTrait;

use crate::config::{Backend, Config};

/// A database connection failure, with the URL's password redacted.
#[derive(Debug, thiserror::Error)]
#[error("cannot open database {url}: {cause}")]
pub struct ConnectError {
    url: String,
    cause: String,
}

/// Opens the configured database: SQLite in WAL mode with foreign keys and a busy timeout,
/// or a PostgreSQL pool.
pub async fn connect(config: &Config) -> Result<DatabaseConnection, ConnectError> {
    let url = config.database_url();
    let fail = |cause: String| ConnectError { url: crate::config::redact_url_password(&url), cause };
    match config.backend() {
        Backend::Sqlite => {
            let options = SqliteConnectOptions::from_str(&url)
                .map_err(|e| fail(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            if let Some(parent) = options.get_filename().parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(config.database.max_connections)
                .min_connections(1)
                .connect_with(options)
                .await
                .map_err(|e| fail(e.to_string()))?;
            Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
        }
        Backend::Postgres => {
            let options = PgConnectOptions::from_str(&url).map_err(|e| fail(e.to_string()))?;
            let pool = PgPoolOptions::new()
                .max_connections(config.database.max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .map_err(|e| fail(e.to_string()))?;
            Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
        }
    }
}

/// Starts a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: a deferred
/// transaction that reads first and writes later cannot wait for the write lock (SQLite refuses
/// the upgrade at once when another connection wrote meanwhile), while an immediate one waits
/// for the lock under the busy timeout. PostgreSQL ignores the mode.
pub async fn begin_write(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    db.begin_with_options(TransactionOptions { sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate), ..Default::default() })
        .await
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    migrations::Migrator::up(db, None).await
}

/// Connection pool figures for the metrics.
pub fn pool_stats(db: &DatabaseConnection) -> (u32, usize) {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
    }
}
