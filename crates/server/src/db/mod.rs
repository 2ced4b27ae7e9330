//! Database connections and migrations for SQLite and PostgreSQL.

pub mod batch;
pub mod generation;
pub mod migrations;
pub mod notify;
pub mod pagination;
pub mod text_enum;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The statements a connection pool ran and how many of them failed, counted as they finish.
#[derive(Debug, Default)]
pub struct StatementCount {
    run: AtomicU64,
    failed: AtomicU64,
}

impl StatementCount {
    /// Counts every statement `db` runs from now on, in transactions too; attach before `db` is
    /// cloned, since clones made earlier are not counted.
    pub fn attach(self: &Arc<Self>, db: &mut DatabaseConnection) {
        let count = self.clone();
        db.set_metric_callback(move |info| {
            count.run.fetch_add(1, Ordering::Relaxed);
            if info.failed {
                count.failed.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// Statements run so far.
    pub fn run(&self) -> u64 {
        self.run.load(Ordering::Relaxed)
    }

    /// Statements that failed so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// How long a statement waits for a pooled connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

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
                .max_connections(config.pool_size())
                .min_connections(1)
                // A file cannot hang up: a ping before each checkout is one more hand-off to
                // the connection's thread for every statement, for nothing.
                .test_before_acquire(false)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(|e| fail(e.to_string()))?;
            Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
        }
        Backend::Postgres => {
            let options = PgConnectOptions::from_str(&url).map_err(|e| fail(e.to_string()))?;
            first_postgres_connection(&options).await.map_err(fail)?;
            let pool = PgPoolOptions::new()
                .max_connections(config.pool_size())
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(|e| fail(e.to_string()))?;
            Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
        }
    }
}

/// A connection for one task that writes again and again (see [`batch`]). On SQLite it is a
/// pool of its own with one connection: a connection's page cache stays valid only while no
/// other connection writes, so a writer that always uses the same one reads nothing back from
/// the file before each batch. PostgreSQL keeps no such cache per connection: there it is `db`.
pub async fn dedicated_writer(config: &Config, db: &DatabaseConnection) -> Result<DatabaseConnection, ConnectError> {
    match config.backend() {
        Backend::Sqlite => {
            let mut single = config.clone();
            single.database.max_connections = Some(1);
            connect(&single).await
        }
        Backend::Postgres => Ok(db.clone()),
    }
}

/// How long the first connection to PostgreSQL may take before the start gives up.
const FIRST_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// One connection, opened and closed before the pool exists, so that a database that cannot be
/// reached or refuses the login stops the start within seconds with a message saying which,
/// instead of the pool's timeout. A database that is still starting (refused connections,
/// "starting up", too many connections) is tried again until the time is up.
async fn first_postgres_connection(options: &PgConnectOptions) -> Result<(), String> {
    use sea_orm::sqlx::{Connection, Error as SqlxError, PgConnection};
    let at = format!("{}:{}", options.get_host(), options.get_port());
    let deadline = tokio::time::Instant::now() + FIRST_CONNECTION_TIMEOUT;
    loop {
        let attempt = tokio::time::timeout_at(deadline, PgConnection::connect_with(options)).await;
        let transient = match &attempt {
            Ok(Err(SqlxError::Io(error))) => error.kind() == std::io::ErrorKind::ConnectionRefused,
            // cannot_connect_now (starting up), too_many_connections
            Ok(Err(SqlxError::Database(error))) => matches!(error.code().as_deref(), Some("57P03" | "53300")),
            _ => false,
        };
        if transient && tokio::time::Instant::now() + Duration::from_millis(200) < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        return match attempt {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                Ok(())
            }
            Ok(Err(SqlxError::Io(error))) => Err(format!("cannot reach PostgreSQL at {at}: {}", io_reason(&error))),
            Ok(Err(SqlxError::Database(error))) => {
                let user = options.get_username();
                let hint = match error.code().as_deref() {
                    Some("28000") if error.message().contains("does not exist") => format!(" (create the role with: createuser {user})"),
                    Some("28000") => " (check that pg_hba.conf lets this user in from this address)".to_owned(),
                    Some("28P01") => " (check the password in database.url)".to_owned(),
                    // invalid_catalog_name
                    Some("3D000") => {
                        let database = options.get_database().unwrap_or(user);
                        format!(" (create the database with: createdb --owner {user} {database})")
                    }
                    _ => String::new(),
                };
                Err(format!("PostgreSQL at {at} refused the connection as {user}: {}{hint}", error.message()))
            }
            Ok(Err(error)) => Err(format!("cannot connect to PostgreSQL at {at}: {error}")),
            Err(_) => Err(format!("cannot reach PostgreSQL at {at}: no answer within {} s", FIRST_CONNECTION_TIMEOUT.as_secs())),
        };
    }
}

/// An I/O failure in words, without the OS error number.
fn io_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused (is it running, and listening on that address?)".to_owned(),
        std::io::ErrorKind::TimedOut => "timed out".to_owned(),
        _ => error.to_string(),
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

/// Serialises the transaction on `txn` with every other transaction that takes the same lock
/// (`what` within `tenant`) until it ends: a PostgreSQL transaction-scoped advisory lock. On
/// SQLite, where write transactions already run one at a time, it does nothing.
pub async fn lock_for_update(txn: &impl sea_orm::ConnectionTrait, what: &str, tenant: uuid::Uuid) -> Result<(), sea_orm::DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    use sha2::Digest;
    let digest = sha2::Sha256::new().chain_update(what.as_bytes()).chain_update(tenant.as_bytes()).finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // The key is a number computed here, never text from a request.
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({})", i64::from_be_bytes(first))).await?;
    Ok(())
}

/// Whether `error` is a refused foreign key: a row still referred to, or a reference to no row.
/// SQLite reports a `RESTRICT` action with its trigger code (1811), which sea-orm does not map,
/// so its message is read too.
pub fn is_foreign_key_violation(error: &sea_orm::DbErr) -> bool {
    matches!(error.sql_err(), Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)))
        || error.to_string().contains("FOREIGN KEY constraint failed")
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    migrations::Migrator::up(db, None).await
}

/// The names of the migrations not yet applied to `db`, oldest first; nothing is changed.
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<Vec<String>, sea_orm::DbErr> {
    use sea_orm_migration::MigratorTrait;
    Ok(migrations::Migrator::get_pending_migrations(db).await?.iter().map(|m| m.name().to_owned()).collect())
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

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};

    use super::*;

    /// Without the planner's stability guarantee SQLite parses and plans a statement with a
    /// bound `LIMIT ?` (every ORM `.one()`) again at every execution, because the planner looks
    /// at the bound value.
    #[tokio::test]
    async fn sqlite_limit_parameters_do_not_replan_every_statement() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
        let db = connect(&config).await.expect("a new SQLite file opens");
        let rows = db.query_all_raw(Statement::from_string(DbBackend::Sqlite, "PRAGMA compile_options")).await.unwrap();
        let options: Vec<String> = rows.iter().map(|row| row.try_get_by_index::<String>(0).unwrap()).collect();
        assert!(options.iter().any(|o| o == "ENABLE_QPSG"), "SQLite built without ENABLE_QPSG: {options:?}");
    }
}
