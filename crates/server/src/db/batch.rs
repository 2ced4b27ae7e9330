//! Group commit for rows many requests insert at once: one task writes what is waiting in one
//! multi-row `INSERT`, so that a burst of requests costs a few statements and commits instead
//! of one each (on SQLite every statement is a hand-off to a connection's thread and a turn at
//! the single write lock; on PostgreSQL every commit a WAL flush). Each caller waits until its
//! row is committed, so nothing is answered before it is stored and nothing is kept here.

use sea_orm::{ActiveModelTrait, DatabaseConnection, DbErr, EntityTrait};
use tokio::sync::{mpsc, oneshot};

/// Rows waiting beyond this make their callers wait for room.
const QUEUE: usize = 4096;

struct Pending<A> {
    row: A,
    done: oneshot::Sender<Result<(), DbErr>>,
}

/// Inserts rows of the entity `E` in batches of at most `largest`.
pub struct InsertBatcher<E: EntityTrait> {
    sender: mpsc::Sender<Pending<E::ActiveModel>>,
}

impl<E> InsertBatcher<E>
where
    E: EntityTrait,
    E::ActiveModel: ActiveModelTrait<Entity = E> + Clone + Send + 'static,
{
    /// Starts the writing task on `db`; it ends when the batcher is dropped.
    pub fn spawn(db: DatabaseConnection, largest: usize) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches::<E>(db, receiver, largest.max(1)));
        Self { sender }
    }

    /// Inserts `row`, returning once it is committed.
    pub async fn insert(&self, row: E::ActiveModel) -> Result<(), DbErr> {
        let (done, committed) = oneshot::channel();
        let stopped = || DbErr::Custom("the row writer has stopped".into());
        self.sender.send(Pending { row, done }).await.map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?
    }
}

/// Writes what is waiting, one batch at a time: while one batch is written the next gathers.
async fn write_batches<E>(db: DatabaseConnection, mut receiver: mpsc::Receiver<Pending<E::ActiveModel>>, largest: usize)
where
    E: EntityTrait,
    E::ActiveModel: ActiveModelTrait<Entity = E> + Clone + Send + 'static,
{
    let mut batch = Vec::with_capacity(largest);
    while receiver.recv_many(&mut batch, largest).await > 0 {
        if batch.len() > 1 {
            let rows: Vec<E::ActiveModel> = batch.iter().map(|pending| pending.row.clone()).collect();
            match E::insert_many(rows).exec_without_returning(&db).await {
                Ok(_) => {
                    for pending in batch.drain(..) {
                        let _ = pending.done.send(Ok(()));
                    }
                    continue;
                }
                // One bad row must not fail the others: each is tried alone and hears its own
                // error. A database that cannot write (locked, gone) fails them all at once
                // rather than once per row.
                Err(error) if error.sql_err().is_none() => {
                    for pending in batch.drain(..) {
                        let _ = pending.done.send(Err(DbErr::Custom(error.to_string())));
                    }
                    continue;
                }
                Err(_) => {}
            }
        }
        for pending in batch.drain(..) {
            let written = E::insert(pending.row).exec_without_returning(&db).await.map(|_| ());
            let _ = pending.done.send(written);
        }
    }
}
