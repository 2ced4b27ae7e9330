//! Recording when keys are used without a database write per request: uses are collected in
//! memory and written in one transaction every `tokens.last_used_flush`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use super::entities::token;

/// Pending `last_used_at` values by token id.
#[derive(Clone, Default)]
pub struct UsageRecorder {
    pending: Arc<Mutex<HashMap<i64, DateTime<Utc>>>>,
}

impl UsageRecorder {
    /// Notes a use; the newest time per token wins.
    pub fn record(&self, token_id: i64, at: DateTime<Utc>) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(token_id, at);
        }
    }

    /// Writes what is pending; returns how many tokens were updated.
    pub async fn flush(&self, db: &DatabaseConnection) -> Result<usize, sea_orm::DbErr> {
        let batch: Vec<(i64, DateTime<Utc>)> = match self.pending.lock() {
            Ok(mut pending) => pending.drain().collect(),
            Err(_) => return Ok(0),
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let txn = crate::db::begin_write(db).await?;
        for (id, at) in &batch {
            token::Entity::update_many()
                .col_expr(token::Column::LastUsedAt, Expr::val(*at))
                .filter(token::Column::Id.eq(*id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(batch.len())
    }

    /// Flushes every `interval` for as long as the process runs.
    pub fn spawn_flusher(&self, db: DatabaseConnection, interval: Duration) {
        let recorder = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            loop {
                ticker.tick().await;
                if let Err(error) = recorder.flush(&db).await {
                    tracing::warn!(%error, "could not record key uses");
                }
            }
        });
    }
}
