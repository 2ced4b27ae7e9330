//! `gatehouse bench-tasks`: enqueue rate, drain rate and enqueue-to-start latency of no-op
//! tasks on the configured database. It adds its rows to that database and removes them after.

use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;

use super::entities::{task, task_log};
use super::model::TaskState;
use super::queue::{self, Enqueue};
use crate::error::Result;
use crate::state::AppState;

const BATCH: u64 = 500;
const LATENCY_SAMPLES: usize = 200;

/// Runs the benchmark and prints its figures.
pub async fn run(state: &AppState, count: u64, workers: usize, concurrency: usize) -> Result<()> {
    let backend = format!("{:?}", state.config.backend());
    let noop = || Enqueue { actor: "gatehouse.noop".into(), args: json!({}), uid: Some("bench".into()), ..Default::default() };

    // The reference, in the same run: one `enqueue` call per task (one statement each).
    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        let txn = crate::db::begin_write(&state.db).await?;
        for _ in 0..BATCH.min(count - sent) {
            queue::enqueue(&txn, state, state.tenant, noop()).await?;
            sent += 1;
        }
        txn.commit().await?;
    }
    let one_by_one_rate = count as f64 / started.elapsed().as_secs_f64();
    bench_tasks_delete(state).await?;

    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        let batch = BATCH.min(count - sent);
        let txn = crate::db::begin_write(&state.db).await?;
        queue::enqueue_many(&txn, state, state.tenant, (0..batch).map(|_| noop()).collect()).await?;
        txn.commit().await?;
        sent += batch;
    }
    let enqueue_rate = count as f64 / started.elapsed().as_secs_f64();

    let drain_started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..workers {
        handles.push(super::worker::start(state.clone(), concurrency).await?);
    }
    loop {
        let done = bench_tasks(state).filter(task::Column::State.eq(TaskState::Done)).count(&state.db).await?;
        if done >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_rate = count as f64 / drain_started.elapsed().as_secs_f64();

    // Latency on an idle queue: one task at a time, from enqueue to "Task is being processed".
    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        let task = queue::send(state, state.tenant, noop()).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let started = task_log::Entity::find()
                .filter(task_log::Column::TaskId.eq(task.message_id))
                .filter(task_log::Column::Event.eq("Task is being processed"))
                .one(&state.db)
                .await?;
            if let Some(log) = started {
                latencies.push((log.timestamp - task.created).to_std().unwrap_or_default());
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for handle in handles {
        handle.shutdown().await;
    }
    latencies.sort();
    let percentile = |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default();
    let (p50, p99) = (percentile(0.5), percentile(0.99));

    let removed = bench_tasks_delete(state).await?;
    println!("database: {backend}; {count} no-op tasks; {workers} worker(s) x {concurrency}");
    println!(
        "enqueue: {enqueue_rate:.0} tasks/s (enqueue_many, {BATCH} per call and transaction); one enqueue call per task: \
         {one_by_one_rate:.0} tasks/s ({:.1}x)",
        enqueue_rate / one_by_one_rate
    );
    println!("drain:   {drain_rate:.0} tasks/s (first claim to last done)");
    println!(
        "enqueue-to-start on an idle queue ({} samples): p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0
    );
    println!("removed {removed} benchmark tasks at {}", Utc::now().to_rfc3339());
    Ok(())
}

fn bench_tasks(state: &AppState) -> sea_orm::Select<task::Entity> {
    task::Entity::find().filter(task::Column::TenantId.eq(state.tenant.0)).filter(task::Column::Uid.eq("gatehouse.noop:bench"))
}

async fn bench_tasks_delete(state: &AppState) -> Result<u64> {
    Ok(task::Entity::delete_many()
        .filter(task::Column::TenantId.eq(state.tenant.0))
        .filter(task::Column::Uid.eq("gatehouse.noop:bench"))
        .exec(&state.db)
        .await?
        .rows_affected)
}
