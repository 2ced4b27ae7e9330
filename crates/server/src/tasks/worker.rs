//! Worker processes: register and heartbeat, claim in batches, run with a time limit, retry
//! with backoff, rescue the tasks of dead workers, send due schedules, and stop gracefully.

use std::sync::Arc;

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::actors::{TaskContext, TaskError};
use super::entities::{task, worker};
use super::queue::{self, CHANNEL};
use crate::db::notify;
use crate::error::Result;
use crate::state::AppState;
use crate::tenants::TenantId;

/// Most tasks claimed in one statement.
const MAX_CLAIM: usize = 64;

/// A running worker; drop or [`WorkerHandle::shutdown`] to stop it.
pub struct WorkerHandle {
    pub worker_id: Uuid,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops claiming, lets in-flight tasks finish within the configured deadline, returns the
    /// rest to the queue, and deregisters.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.done.await;
    }
}

/// Registers a worker and starts it with `concurrency` tasks at a time.
pub async fn start(state: AppState, concurrency: usize) -> Result<WorkerHandle> {
    let worker_id = Uuid::new_v4();
    let now = Utc::now();
    worker::ActiveModel {
        worker_id: Set(worker_id),
        hostname: Set(hostname()),
        version: Set(env!("CARGO_PKG_VERSION").to_owned()),
        started: Set(now),
        last_seen: Set(now),
    }
    .insert(&state.db)
    .await?;
    let (stop, stopped) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    spawn_listener(&state, wake.clone(), stopped.clone());
    let done = tokio::spawn(run(state, worker_id, concurrency.max(1), wake, stopped));
    tracing::info!(%worker_id, concurrency, "task worker started");
    Ok(WorkerHandle { worker_id, stop, done })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "unknown".into())
}

/// Wakes the worker when a task is queued (PostgreSQL); polling covers SQLite and lost wake-ups.
/// The listener stops with the worker.
fn spawn_listener(state: &AppState, wake: Arc<Notify>, mut stopped: watch::Receiver<bool>) {
    let Some(listener) = notify::spawn_listener(&state.db, CHANNEL, move || wake.notify_one()) else { return };
    tokio::spawn(async move {
        // Either a stop or a dropped handle ends the worker.
        let _ = stopped.changed().await;
        listener.abort();
    });
}

async fn run(state: AppState, worker_id: Uuid, concurrency: usize, wake: Arc<Notify>, mut stopped: watch::Receiver<bool>) {
    let config = state.config.tasks.clone();
    let mut in_flight: JoinSet<Option<queue::Outcome>> = JoinSet::new();
    let recorder = Recorder::start(state.clone(), worker_id, concurrency);
    // The heartbeat runs beside the claiming loop until the unfinished tasks are back in the
    // queue, so that neither a loop waiting for its outcomes to be recorded nor a shutdown
    // letting its runs finish makes a live worker look dead (its tasks would be rescued and run
    // again).
    let heartbeat = AbortOnDrop(tokio::spawn(heartbeat(state.clone(), worker_id)).abort_handle());
    // The loop claims once before it first waits, so the first poll is one interval later.
    let poll_every = config.poll_interval.to_std();
    let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + poll_every, poll_every);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stopped.borrow() {
            break;
        }
        // One claim takes at most MAX_CLAIM rows, so that no statement holds many row locks.
        let free = concurrency.saturating_sub(in_flight.len()).min(MAX_CLAIM);
        if free > 0 {
            match queue::claim(&state, worker_id, free as u64).await {
                Ok(claimed) => {
                    let full = claimed.len() == free;
                    for task in claimed {
                        in_flight.spawn(execute(state.clone(), task));
                    }
                    if full && in_flight.len() < concurrency {
                        continue;
                    }
                }
                Err(error) => tracing::warn!(%error, "claiming tasks failed"),
            }
        }
        tokio::select! {
            _ = wake.notified(), if in_flight.len() < concurrency => {}
            _ = state.task_wake.notified(), if in_flight.len() < concurrency => {}
            _ = poll.tick() => {}
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                hand_over_ready(&recorder, joined.ok().flatten(), &mut in_flight).await;
            }
            // An error means the handle was dropped: that stops the worker too.
            changed = stopped.changed() => if changed.is_err() { break },
        }
    }
    // Graceful shutdown: no more claims; in-flight tasks get the deadline, then go back.
    let deadline = tokio::time::sleep(config.shutdown_deadline.to_std());
    tokio::pin!(deadline);
    while !in_flight.is_empty() {
        tokio::select! {
            Some(joined) = in_flight.join_next() => hand_over_ready(&recorder, joined.ok().flatten(), &mut in_flight).await,
            _ = &mut deadline => {
                in_flight.abort_all();
                // Runs that finished while the others were cut off keep their outcome: returned
                // to the queue instead, they would run again.
                while let Some(joined) = in_flight.join_next().await {
                    if let Ok(Some(outcome)) = joined {
                        recorder.hand_over(outcome).await;
                    }
                }
            }
        }
    }
    // Every outcome is recorded before the rest goes back: a finished task returned to the
    // queue would run again.
    recorder.finish().await;
    match queue::release(&state, worker_id).await {
        Ok(count) if count > 0 => tracing::info!(count, "unfinished tasks returned to the queue"),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "could not return unfinished tasks"),
    }
    drop(heartbeat);
    if let Err(error) = worker::Entity::delete_by_id(worker_id).exec(&state.db).await {
        tracing::warn!(%error, "could not deregister the worker");
    }
    tracing::info!(%worker_id, "task worker stopped");
}

/// Beats every `tasks.heartbeat` until aborted.
async fn heartbeat(state: AppState, worker_id: Uuid) {
    // Registering stamped `last_seen`; the first beat is one period later.
    let period = state.config.tasks.heartbeat.to_std();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        housekeeping(&state, worker_id).await;
    }
}

/// Heartbeat, rescue of dead workers' tasks, and due schedules.
async fn housekeeping(state: &AppState, worker_id: Uuid) {
    let beat = worker::Entity::update_many()
        .col_expr(worker::Column::LastSeen, sea_orm::sea_query::Expr::val(Utc::now()))
        .filter(worker::Column::WorkerId.eq(worker_id))
        .exec(&state.db)
        .await;
    if let Err(error) = beat {
        tracing::warn!(%error, "worker heartbeat failed");
    }
    match queue::rescue(state, state.config.tasks.worker_timeout.to_std()).await {
        Ok(count) if count > 0 => {
            tracing::warn!(count, "tasks of stopped workers returned to the queue");
            queue::wake_local_workers(state);
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "rescuing tasks failed"),
    }
    if let Err(error) = super::schedules::send_due(state).await {
        tracing::warn!(%error, "sending due schedules failed");
    }
}

/// Runs one claimed (already running) task and returns its outcome for recording.
async fn execute(state: AppState, task: task::Model) -> Option<queue::Outcome> {
    let tenant = TenantId(task.tenant_id);
    let Some(actor) = state.actors.get(&task.actor_name).cloned() else {
        let message = format!("Unknown actor '{}'", task.actor_name);
        return Some(queue::Outcome { task, result: Err(TaskError::Fatal(message)), result_ttl: None, max_retries: 0, worst_own_level: 0 });
    };
    let worst_level = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let context = TaskContext {
        state: state.clone(),
        message_id: task.message_id,
        tenant,
        actor_name: actor.name.clone(),
        worst_level: worst_level.clone(),
    };
    let run = tokio::spawn(actor.run(context, task.args.clone()));
    // The run stops with this future: a worker that cuts off its tasks at shutdown, or whose
    // time limit passes, must not leave them running after they went back to the queue.
    let _stop_with_this = AbortOnDrop(run.abort_handle());
    let result = match tokio::time::timeout(actor.time_limit, run).await {
        Ok(Ok(result)) => result,
        Ok(Err(join_error)) => Err(TaskError::Failed(format!("the task panicked: {join_error}"))),
        Err(_) => Err(TaskError::Failed(format!("time limit of {} s exceeded", actor.time_limit.as_secs_f64()))),
    };
    Some(queue::Outcome {
        task,
        result,
        result_ttl: actor.result_ttl,
        max_retries: actor.max_retries,
        worst_own_level: worst_level.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Records outcomes beside the claiming loop, so that a worker claims and starts its next tasks
/// while the outcomes of the last ones are being written. Outcomes handed over while a
/// transaction is under way are recorded together in the next one.
struct Recorder {
    outcomes: mpsc::Sender<queue::Outcome>,
    done: tokio::task::JoinHandle<()>,
    state: AppState,
    worker_id: Uuid,
}

impl Recorder {
    /// Starts recording for `worker_id`; at most `backlog` outcomes wait beside the ones being
    /// written, and one transaction writes at most `backlog`.
    fn start(state: AppState, worker_id: Uuid, backlog: usize) -> Self {
        let backlog = backlog.max(1);
        let (outcomes, mut handed_over) = mpsc::channel::<queue::Outcome>(backlog);
        let recording = state.clone();
        let done = tokio::spawn(async move {
            let state = recording;
            let mut batch = Vec::with_capacity(backlog);
            while handed_over.recv_many(&mut batch, backlog).await > 0 {
                record_with_retries(&state, worker_id, &batch).await;
                batch.clear();
            }
        });
        Self { outcomes, done, state, worker_id }
    }

    /// Hands `outcome` over for recording. Waits while the backlog is full, so that a worker
    /// whose database falls behind stops claiming instead of finishing work it cannot record.
    async fn hand_over(&self, outcome: queue::Outcome) {
        if let Err(mpsc::error::SendError(outcome)) = self.outcomes.send(outcome).await {
            // Only a panic ends the recorder early (what it held is lost, and rescued or released
            // later): outcomes handed over since are recorded here instead.
            tracing::warn!("the task outcome recorder stopped; recording in the claiming loop");
            record_with_retries(&self.state, self.worker_id, std::slice::from_ref(&outcome)).await;
        }
    }

    /// Records everything handed over, then stops.
    async fn finish(self) {
        drop(self.outcomes);
        if let Err(error) = self.done.await {
            tracing::warn!(%error, "the task outcome recorder failed");
        }
    }
}

/// Attempts at recording one batch of outcomes before it is given up.
const RECORD_ATTEMPTS: u32 = 3;

/// Records `outcomes`, trying again after a failure (a pool that timed out, a lost connection),
/// then one by one, so that one outcome the database refuses does not take the others with it.
/// Outcomes never recorded leave their tasks running under this worker: they go back to the
/// queue, to run again, when it stops or when it is found dead.
async fn record_with_retries(state: &AppState, worker_id: Uuid, outcomes: &[queue::Outcome]) {
    for attempt in 1..=RECORD_ATTEMPTS {
        match queue::record(state, worker_id, outcomes).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, attempt, count = outcomes.len(), "could not record task outcomes");
                if attempt < RECORD_ATTEMPTS {
                    tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                }
            }
        }
    }
    if outcomes.len() > 1 {
        for outcome in outcomes {
            if let Err(error) = queue::record(state, worker_id, std::slice::from_ref(outcome)).await {
                tracing::warn!(%error, task = %outcome.task.message_id, "could not record a task outcome; giving up");
            }
        }
    }
}

/// Hands over `first` and every other outcome that is ready.
async fn hand_over_ready(recorder: &Recorder, first: Option<queue::Outcome>, in_flight: &mut JoinSet<Option<queue::Outcome>>) {
    if let Some(outcome) = first {
        recorder.hand_over(outcome).await;
    }
    // Let runs that are about to end end, so that the next claim fills their slots together.
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    while let Some(joined) = in_flight.try_join_next() {
        if let Ok(Some(outcome)) = joined {
            recorder.hand_over(outcome).await;
        }
    }
}
