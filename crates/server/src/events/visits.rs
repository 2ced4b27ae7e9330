//! The visit history of signed-in users, written off the request path in batches so that a
//! request never waits for the database to record it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, EntityTrait, Set};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::entities::visit;

/// Batches are flushed when this full or this old.
const BATCH_SIZE: usize = 200;
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Visits queued beyond this are dropped rather than slowing requests down.
const QUEUE_CAPACITY: usize = 10_000;

/// One visit.
#[derive(Debug, Clone)]
pub struct Visit {
    pub tenant_id: Uuid,
    pub user_id: i64,
    pub method: String,
    pub url: String,
    pub referrer: Option<String>,
    pub user_agent: String,
    pub client_ip: Option<String>,
    pub created: DateTime<Utc>,
}

/// Hands visits to the background writer.
#[derive(Clone)]
pub struct VisitRecorder {
    sender: mpsc::Sender<Visit>,
}

impl VisitRecorder {
    /// Starts the writer on `db`; it stops after flushing once every recorder is dropped.
    pub fn start(db: DatabaseConnection) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let writer = tokio::spawn(write_batches(db, receiver));
        (Self { sender }, writer)
    }

    /// Queues a visit without waiting; a full queue drops it and counts the drop.
    pub fn record(&self, visit: Visit) {
        if self.sender.try_send(visit).is_err() {
            metrics::counter!("gatehouse_visits_dropped_total").increment(1);
        }
    }
}

async fn write_batches(db: DatabaseConnection, mut receiver: mpsc::Receiver<Visit>) {
    let mut batch = Vec::with_capacity(BATCH_SIZE);
    loop {
        let first = receiver.recv().await;
        let Some(first) = first else { break };
        batch.push(first);
        let deadline = tokio::time::sleep(FLUSH_EVERY);
        tokio::pin!(deadline);
        while batch.len() < BATCH_SIZE {
            tokio::select! {
                next = receiver.recv() => match next {
                    Some(visit) => batch.push(visit),
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        flush(&db, &mut batch).await;
    }
    flush(&db, &mut batch).await;
}

async fn flush(db: &DatabaseConnection, batch: &mut Vec<Visit>) {
    if batch.is_empty() {
        return;
    }
    let rows = batch.drain(..).map(|v| visit::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(v.tenant_id),
        user_id: Set(v.user_id),
        method: Set(v.method),
        url: Set(v.url),
        referrer: Set(v.referrer),
        user_agent: Set(v.user_agent),
        client_ip: Set(v.client_ip),
        created: Set(v.created),
    });
    if let Err(error) = visit::Entity::insert_many(rows).exec(db).await {
        tracing::warn!(%error, "could not record visits");
    }
}
