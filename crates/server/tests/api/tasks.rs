//! The task queue: running, retries, time limits, transactional enqueue, exactly-once claiming,
//! crash rescue, graceful shutdown, schedules, and the `/api/v3/tasks/` API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse::config::Config;
use gatehouse::tasks::entities::{schedule, task};
use gatehouse::tasks::{Actor, Enqueue, Registry, TaskError};
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::*;

fn fast(config: &mut Config) {
    config.tasks.poll_interval = "milliseconds=20".parse().unwrap();
    config.tasks.heartbeat = "milliseconds=100".parse().unwrap();
    // Fifty missed heartbeats: a loaded machine never makes a live worker look dead.
    config.tasks.worker_timeout = "seconds=5".parse().unwrap();
    config.tasks.retry_min_backoff = "milliseconds=20".parse().unwrap();
    config.tasks.retry_max_backoff = "milliseconds=100".parse().unwrap();
    config.tasks.shutdown_deadline = "milliseconds=300".parse().unwrap();
}

async fn send(app: &TestApp, actor: &str, args: Value) -> Uuid {
    let request = Enqueue { actor: actor.into(), args, ..Default::default() };
    gatehouse::tasks::send(&app.state, app.state.tenant, request).await.unwrap().message_id
}

async fn task_row(app: &TestApp, id: Uuid) -> task::Model {
    task::Entity::find_by_id(id).one(&app.state.db).await.unwrap().unwrap()
}

/// Waits until the task reaches one of `states`.
async fn wait_for(app: &TestApp, id: Uuid, states: &[&str], limit: Duration) -> task::Model {
    let deadline = Instant::now() + limit;
    loop {
        let row = task_row(app, id).await;
        if states.contains(&row.state.as_str()) {
            return row;
        }
        assert!(Instant::now() < deadline, "task stayed {} (wanted {states:?})", row.state);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tasks_run_log_and_show_in_the_api() {
    let mut actors = Registry::builtin();
    actors.add(
        Actor::new("test.report", |context, args: Value| async move {
            context.info("working on it").await?;
            context.log("warning", "something looked odd", json!({"password": "hunter2", "count": 3})).await?;
            Ok(Some(json!({"echo": args})))
        })
        .keep_results(Duration::from_secs(3600)),
    );
    let app = TestApp::spawn_with_actors(fast, actors).await;
    let worker = gatehouse::tasks::worker::start(app.state.clone(), 2).await.unwrap();
    let id = send(&app, "test.report", json!({"n": 1})).await;
    let done = wait_for(&app, id, &["done"], Duration::from_secs(10)).await;
    assert_eq!(done.aggregated_status, "warning", "the worst own log level");
    assert_eq!(done.result, Some(json!({"echo": {"n": 1}})));
    assert!(done.result_expiry.is_some());

    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    let (status, one) = json(app.get(&admin, &format!("/api/v3/tasks/tasks/{id}/")).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["state"], "done");
    assert_eq!(one["actor_name"], "test.report");
    assert_eq!(one["uid"], "test.report");
    let events: Vec<&str> = one["logs"].as_array().unwrap().iter().map(|l| l["event"].as_str().unwrap()).collect();
    for expected in [
        "Task has been queued",
        "Task is being processed",
        "working on it",
        "something looked odd",
        "Task finished processing without errors",
    ] {
        assert!(events.contains(&expected), "{events:?} lacks {expected}");
    }
    assert!(!one.to_string().contains("hunter2"), "secrets in log attributes are masked");
    assert_eq!(one["previous_logs"], json!([]));

    let (_, list) = json(app.get(&admin, "/api/v3/tasks/tasks/?actor_name=test.report&aggregated_status=warning").await).await;
    assert_eq!(list["pagination"]["count"], 1);
    let (_, counts) = json(app.get(&admin, "/api/v3/tasks/tasks/status/").await).await;
    assert_eq!(counts["warning"], 1);
    assert_field_error(app.get(&admin, "/api/v3/tasks/tasks/?state=finished").await, "state").await;
    assert_eq!(app.get(&admin, &format!("/api/v3/tasks/tasks/{}/", Uuid::new_v4())).await.status(), StatusCode::NOT_FOUND);

    let (_, workers) = json(app.get(&admin, "/api/v3/tasks/workers").await).await;
    let listed = workers.as_array().unwrap().iter().find(|w| w["worker_id"] == worker.worker_id.to_string()).expect("worker listed");
    assert_eq!(listed["version_matching"], true);
    assert_eq!(listed["alive"], true);

    app.user("plain@example.com", |_| {}).await;
    let plain = app.sign_in("plain@example.com").await;
    assert_forbidden(app.get(&plain, "/api/v3/tasks/tasks/").await).await;
    assert_forbidden(app.get(&plain, "/api/v3/tasks/workers").await).await;
    assert_forbidden(app.post(&plain, &format!("/api/v3/tasks/tasks/{id}/retry/"), json!({})).await).await;
    worker.shutdown().await;
}

/// Text a task stores may come from outside (an error, a provider's answer) and hold a NUL,
/// which PostgreSQL refuses: its outcome could then never be recorded, and the task stayed
/// running until its worker stopped and ran it again. Control characters are replaced instead.
#[tokio::test]
async fn a_task_whose_error_and_log_hold_a_nul_character_is_still_recorded() {
    let mut actors = Registry::builtin();
    actors.add(
        Actor::new("test.nul_result", |_context, _args: Value| async move { Ok(Some(json!({"answer\u{0}": "bad\u{0}byte"}))) })
            .keep_results(Duration::from_secs(3600)),
    );
    actors.add(Actor::new("test.nul_error", |context, _args: Value| async move {
        context.log("info", "the provider said \u{0}", json!({"body\u{0}": "x\u{0}y"})).await?;
        Err(TaskError::Fatal("the provider answered \u{0}garbage".into()))
    }));
    let app = TestApp::spawn_with_actors(fast, actors).await;
    let worker = gatehouse::tasks::worker::start(app.state.clone(), 2).await.unwrap();
    let kept = send(&app, "test.nul_result", json!({})).await;
    let failed = send(&app, "test.nul_error", json!({})).await;
    let kept = wait_for(&app, kept, &["done"], Duration::from_secs(10)).await;
    assert_eq!(kept.result, Some(json!({"answer\u{fffd}": "bad\u{fffd}byte"})));
    wait_for(&app, failed, &["rejected"], Duration::from_secs(10)).await;
    worker.shutdown().await;
    use gatehouse::tasks::entities::task_log;
    let logged: Vec<(String, Value)> = task_log::Entity::find()
        .filter(task_log::Column::TaskId.eq(failed))
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| (entry.event, entry.attributes))
        .collect();
    assert!(logged.contains(&("the provider said \u{fffd}".to_owned(), json!({"body\u{fffd}": "x\u{fffd}y"}))), "{logged:?}");
    assert!(logged.iter().any(|(event, _)| event == "the provider answered \u{fffd}garbage"), "{logged:?}");
}

#[tokio::test]
async fn due_tasks_run_in_eta_order() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut actors = Registry::builtin();
    let seen = order.clone();
    actors.add(Actor::new("test.order", move |_context, args: Value| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push((args["name"].as_str().unwrap().to_owned(), Instant::now()));
            Ok(None)
        }
    }));
    let app = TestApp::spawn_with_actors(fast, actors).await;
    let sent = Instant::now();
    let late = Enqueue {
        actor: "test.order".into(),
        args: json!({"name": "late"}),
        delay: Some(Duration::from_millis(600)),
        ..Default::default()
    };
    let late_id = gatehouse::tasks::send(&app.state, app.state.tenant, late).await.unwrap().message_id;
    send(&app, "test.order", json!({"name": "now"})).await;
    let worker = gatehouse::tasks::worker::start(app.state.clone(), 1).await.unwrap();
    wait_for(&app, late_id, &["done"], Duration::from_secs(10)).await;
    let order = order.lock().unwrap().clone();
    assert_eq!(order.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["now", "late"]);
    assert!(order[1].1 - sent >= Duration::from_millis(600), "not before its eta");
    worker.shutdown().await;
}

#[tokio::test]
async fn failures_are_retried_with_backoff_then_rejected_and_retried_by_hand() {
    let attempts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let healed = Arc::new(AtomicBool::new(false));
    let mut actors = Registry::builtin();
    let counter = attempts.clone();
    let fixed = healed.clone();
    actors.add(
        Actor::new("test.flaky", move |_context, args: Value| {
            let counter = counter.clone();
            let fixed = fixed.clone();
            async move {
                let name = args["name"].as_str().unwrap().to_owned();
                let failures = args["failures"].as_u64().unwrap() as u32;
                let attempt = {
                    let mut counter = counter.lock().unwrap();
                    let entry = counter.entry(name).or_insert(0);
                    *entry += 1;
                    *entry
                };
                if attempt <= failures && !fixed.load(Ordering::SeqCst) {
                    return Err(TaskError::Failed(format!("attempt {attempt} failed")));
                }
                Ok(None)
            }
        })
        .retries(2),
    );
    let app = TestApp::spawn_with_actors(fast, actors).await;
    let worker = gatehouse::tasks::worker::start(app.state.clone(), 2).await.unwrap();
    let recovers = send(&app, "test.flaky", json!({"name": "recovers", "failures": 2})).await;
    let gives_up = send(&app, "test.flaky", json!({"name": "gives-up", "failures": 10})).await;

    let done = wait_for(&app, recovers, &["done"], Duration::from_secs(10)).await;
    assert_eq!(done.retries, 2);
    assert_eq!(done.aggregated_status, "error", "errors of earlier attempts count");
    let rejected = wait_for(&app, gives_up, &["rejected"], Duration::from_secs(10)).await;
    assert_eq!(rejected.retries, 2, "two retries after the first attempt");
    assert_eq!(rejected.args, json!({"name": "gives-up", "failures": 10}), "arguments kept for a manual retry");
    assert_eq!(attempts.lock().unwrap()["gives-up"], 3);

    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    let (_, shown) = json(app.get(&admin, &format!("/api/v3/tasks/tasks/{gives_up}/")).await).await;
    assert!(!shown["previous_logs"].as_array().unwrap().is_empty());
    assert!(shown["logs"].as_array().unwrap().iter().any(|l| l["log_level"] == "error" && l["event"] == "attempt 3 failed"));
    // The "queued" entry belongs to the first attempt: once among the earlier entries, first.
    let queued_in = |list: &Value| list.as_array().unwrap().iter().filter(|l| l["event"] == "Task has been queued").count();
    assert_eq!((queued_in(&shown["previous_logs"]), queued_in(&shown["logs"])), (1, 0), "{shown}");
    assert_eq!(shown["previous_logs"][0]["event"], "Task has been queued");

    assert_field_error(app.post(&admin, &format!("/api/v3/tasks/tasks/{recovers}/retry/"), json!({})).await, "non_field_errors").await;
    assert_eq!(
        app.post(&admin, &format!("/api/v3/tasks/tasks/{}/retry/", Uuid::new_v4()), json!({})).await.status(),
        StatusCode::NOT_FOUND
    );
    healed.store(true, Ordering::SeqCst);
    let user = app.user_with("operator@example.com", &["authentik_tasks.retry_task"]).await;
    let operator = app.sign_in(&user.email).await;
    assert_eq!(app.post(&operator, &format!("/api/v3/tasks/tasks/{gives_up}/retry/"), json!({})).await.status(), StatusCode::NO_CONTENT);
    let retried = wait_for(&app, gives_up, &["done"], Duration::from_secs(10)).await;
    assert_eq!(retried.retries, 0);
    let (_, shown) = json(app.get(&admin, &format!("/api/v3/tasks/tasks/{gives_up}/")).await).await;
    assert_eq!((queued_in(&shown["previous_logs"]), queued_in(&shown["logs"])), (1, 0), "{shown}");
    worker.shutdown().await;
}

#[tokio::test]
async fn tasks_over_their_time_limit_are_stopped() {
    let mut actors = Registry::builtin();
    actors.add(
        Actor::new("test.slow", |_context, _args: Value| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(None)
        })
        .retries(0)
        .time_limit(Duration::from_millis(200)),
    );
    let app = TestApp::spawn_with_actors(fast, actors).await;
    let worker = gatehouse::tasks::worker::start(app.state.clone(), 1).await.unwrap();
    let started = Instant::now();
    let id = send(&app, "test.slow", json!({})).await;
    wait_for(&app, id, &["rejected"], Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let logs = gatehouse::tasks::entities::task_log::Entity::find()
        .filter(gatehouse::tasks::entities::task_log::Column::TaskId.eq(id))
        .all(&app.state.db)
        .await
        .unwrap();
    assert!(logs.iter().any(|l| l.log_level == "error" && l.event.contains("time limit")));
    worker.shutdown().await;
}

#[tokio::test]
async fn enqueue_is_part_of_the_callers_transaction_and_checks_its_input() {
    let app = TestApp::spawn_with(fast).await;
    let txn = gatehouse::db::begin_write(&app.state.db).await.unwrap();
    let request = Enqueue { actor: "gatehouse.noop".into(), args: json!({}), ..Default::default() };
    let rolled_back = gatehouse::tasks::enqueue(&txn, &app.state, app.state.tenant, request.clone()).await.unwrap().message_id;
    txn.rollback().await.unwrap();
    assert!(task::Entity::find_by_id(rolled_back).one(&app.state.db).await.unwrap().is_none(), "a rolled-back task never existed");
    let txn = gatehouse::db::begin_write(&app.state.db).await.unwrap();
    let committed = gatehouse::tasks::enqueue(&txn, &app.state, app.state.tenant, request).await.unwrap().message_id;
    txn.commit().await.unwrap();
    let worker = gatehouse::tasks::worker::start(app.state.clone(), 1).await.unwrap();
    wait_for(&app, committed, &["done"], Duration::from_secs(10)).await;
    worker.shutdown().await;

    let unknown = Enqueue { actor: "no.such.actor".into(), args: json!({}), ..Default::default() };
    let error = gatehouse::tasks::send(&app.state, app.state.tenant, unknown).await.unwrap_err();
    assert!(format!("{error:?}").contains("actor_name"), "{error:?}");
    let malformed = Enqueue { actor: "gatehouse.sleep".into(), args: json!({"seconds": "soon"}), ..Default::default() };
    let error = gatehouse::tasks::send(&app.state, app.state.tenant, malformed).await.unwrap_err();
    assert!(format!("{error:?}").contains("args"), "{error:?}");
}

#[tokio::test]
async fn two_workers_never_run_a_task_twice() {
    let runs: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let mut actors = Registry::builtin();
    let counter = runs.clone();
    actors.add(Actor::new("test.count", move |_context, args: Value| {
        let counter = counter.clone();
        async move {
            *counter.lock().unwrap().entry(args["n"].as_u64().unwrap()).or_insert(0) += 1;
            Ok(None)
        }
    }));
    let app = TestApp::spawn_with_actors(fast, actors).await;
    const TASKS: u64 = 2000;
    let txn = gatehouse::db::begin_write(&app.state.db).await.unwrap();
    for n in 0..TASKS {
        let request = Enqueue { actor: "test.count".into(), args: json!({"n": n}), ..Default::default() };
        gatehouse::tasks::enqueue(&txn, &app.state, app.state.tenant, request).await.unwrap();
    }
    txn.commit().await.unwrap();
    let first = gatehouse::tasks::worker::start(app.state.clone(), 4).await.unwrap();
    let second = gatehouse::tasks::worker::start(app.state.clone(), 4).await.unwrap();
    let (first_id, second_id) = (first.worker_id, second.worker_id);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Only this test's tasks: a built-in schedule may fire while it runs.
        let done = task::Entity::find()
            .filter(task::Column::State.eq("done"))
            .filter(task::Column::ActorName.eq("test.count"))
            .count(&app.state.db)
            .await
            .unwrap();
        if done == TASKS {
            break;
        }
        assert!(Instant::now() < deadline, "only {done} of {TASKS} done");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.shutdown().await;
    second.shutdown().await;
    {
        let runs = runs.lock().unwrap();
        assert_eq!(runs.len() as u64, TASKS, "every task ran");
        assert!(runs.values().all(|count| *count == 1), "a task ran twice");
    }
    let workers: std::collections::HashSet<Uuid> = task::Entity::find()
        .filter(task::Column::ActorName.eq("test.count"))
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.worker_id.expect("a finished task names its worker"))
        .collect();
    assert_eq!(workers, [first_id, second_id].into_iter().collect(), "both workers took part");
}

#[tokio::test]
async fn graceful_shutdown_returns_unfinished_tasks_to_the_queue() {
    let app = TestApp::spawn_with(fast).await;
    let worker = gatehouse::tasks::worker::start(app.state.clone(), 1).await.unwrap();
    let id = send(&app, "gatehouse.sleep", json!({"seconds": 30})).await;
    wait_for(&app, id, &["running"], Duration::from_secs(10)).await;
    let worker_id = worker.worker_id;
    let stopping = Instant::now();
    worker.shutdown().await;
    assert!(stopping.elapsed() < Duration::from_secs(5), "the deadline bounds the shutdown");
    let row = task_row(&app, id).await;
    assert_eq!(row.state, "queued");
    assert_eq!(row.worker_id, None);
    assert!(gatehouse::tasks::entities::worker::Entity::find_by_id(worker_id).one(&app.state.db).await.unwrap().is_none());
}

#[tokio::test]
async fn a_worker_stopping_as_its_tasks_end_records_every_outcome_before_it_returns_the_rest() {
    const TASKS: u32 = 64;
    let started = Arc::new(AtomicU32::new(0));
    let (gate, opened) = tokio::sync::watch::channel(false);
    let mut actors = Registry::builtin();
    let counter = started.clone();
    actors.add(Actor::new("test.gated", move |_context, _args: Value| {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut opened = opened.clone();
        async move {
            let _ = opened.wait_for(|open| *open).await;
            Ok(None)
        }
    }));
    let app = TestApp::spawn_with_actors(fast, actors).await;
    let txn = gatehouse::db::begin_write(&app.state.db).await.unwrap();
    for n in 0..TASKS {
        let request = Enqueue { actor: "test.gated".into(), args: json!({"n": n}), ..Default::default() };
        gatehouse::tasks::enqueue(&txn, &app.state, app.state.tenant, request).await.unwrap();
    }
    txn.commit().await.unwrap();
    let worker = gatehouse::tasks::worker::start(app.state.clone(), TASKS as usize).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while started.load(Ordering::SeqCst) < TASKS {
        assert!(Instant::now() < deadline, "only {} of {TASKS} started", started.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every run ends just as the worker is told to stop: their outcomes are still being
    // recorded when it returns its unfinished tasks, and none of them is unfinished.
    let stopping = tokio::spawn(worker.shutdown());
    gate.send(true).unwrap();
    stopping.await.unwrap();
    let rows = task::Entity::find().filter(task::Column::ActorName.eq("test.gated")).all(&app.state.db).await.unwrap();
    let not_done: Vec<(u32, String)> =
        rows.iter().filter(|t| t.state != "done").map(|t| (t.args["n"].as_u64().unwrap() as u32, t.state.clone())).collect();
    assert_eq!(rows.len() as u32, TASKS);
    assert!(not_done.is_empty(), "finished runs went back to the queue to run again: {not_done:?}");
}

/// A worker letting its last run finish at shutdown beats on: stopping its heartbeat at the stop
/// would let another worker find it dead and run the same task again beside it.
#[tokio::test]
async fn a_worker_stopping_keeps_its_heartbeat_until_its_runs_are_done() {
    let runs = Arc::new(AtomicU32::new(0));
    let mut actors = Registry::builtin();
    let counter = runs.clone();
    actors.add(Actor::new("test.long", move |_context, _args: Value| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(None)
        }
    }));
    let app = TestApp::spawn_with_actors(
        |config| {
            fast(config);
            // Twenty missed beats, and a run that ends well after that many.
            config.tasks.worker_timeout = "seconds=2".parse().unwrap();
            config.tasks.shutdown_deadline = "seconds=30".parse().unwrap();
        },
        actors,
    )
    .await;
    let stopping = gatehouse::tasks::worker::start(app.state.clone(), 1).await.unwrap();
    let id = send(&app, "test.long", json!({})).await;
    let claimed = wait_for(&app, id, &["running"], Duration::from_secs(10)).await;
    assert_eq!(claimed.worker_id, Some(stopping.worker_id));
    // Another worker, rescuing tasks of workers it finds dead at each of its beats.
    let other = gatehouse::tasks::worker::start(app.state.clone(), 1).await.unwrap();
    stopping.shutdown().await;
    let row = task_row(&app, id).await;
    assert_eq!((row.state.as_str(), row.attempt), ("done", 1), "the task was rescued from a worker still running it");
    other.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the task ran twice");
}

#[tokio::test]
async fn many_tasks_are_queued_in_a_few_statements_all_or_none_and_each_runs_once() {
    let runs = Arc::new(Mutex::new(HashMap::<u32, u32>::new()));
    let mut actors = Registry::builtin();
    let seen = runs.clone();
    actors.add(Actor::new("test.numbered", move |_context, args: Value| {
        let seen = seen.clone();
        async move {
            let n = args["n"].as_u64().unwrap() as u32;
            *seen.lock().unwrap().entry(n).or_default() += 1;
            Ok(None)
        }
    }));
    let app = TestApp::spawn_with_actors(fast, actors).await;
    let request = |n: u32| Enqueue { actor: "test.numbered".into(), args: json!({"n": n}), ..Default::default() };

    // One request that does not fit its actor refuses the whole batch.
    let txn = gatehouse::db::begin_write(&app.state.db).await.unwrap();
    let mut batch: Vec<Enqueue> = (0..10).map(request).collect();
    batch.push(Enqueue { actor: "gatehouse.sleep".into(), args: json!({"seconds": "soon"}), ..Default::default() });
    let refused = gatehouse::tasks::enqueue_many(&txn, &app.state, app.state.tenant, batch).await.unwrap_err();
    assert!(format!("{refused:?}").contains("args"), "{refused:?}");
    drop(txn);
    assert_eq!(task::Entity::find().count(&app.state.db).await.unwrap(), 0);

    // More tasks than one statement takes.
    let count = 2_500;
    let txn = gatehouse::db::begin_write(&app.state.db).await.unwrap();
    let ids = gatehouse::tasks::enqueue_many(&txn, &app.state, app.state.tenant, (0..count).map(request).collect()).await.unwrap();
    txn.commit().await.unwrap();
    // Every id names its own request's row, and the batch is due in its order.
    let rows = task::Entity::find().filter(task::Column::State.eq("queued")).all(&app.state.db).await.unwrap();
    assert_eq!(rows.len(), count as usize);
    let by_id: HashMap<Uuid, &task::Model> = rows.iter().map(|row| (row.message_id, row)).collect();
    assert_eq!(ids.len(), count as usize);
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(by_id[id].args["n"], n, "the id at {n} names another task");
    }
    assert!(ids.windows(2).all(|pair| by_id[&pair[0]].due < by_id[&pair[1]].due), "each task is due after the one before");
    // Their "queued" entries are told by the tasks' rows, not stored.
    let stored_logs = gatehouse::tasks::entities::task_log::Entity::find().count(&app.state.db).await.unwrap();
    assert_eq!(stored_logs, 0);

    let worker = gatehouse::tasks::worker::start(app.state.clone(), 64).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while task::Entity::find().filter(task::Column::State.eq("done")).count(&app.state.db).await.unwrap() < u64::from(count) {
        assert!(Instant::now() < deadline, "the batch was not drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await;
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), count as usize);
    assert!(runs.values().all(|&times| times == 1), "every task ran exactly once");
}

#[tokio::test]
async fn a_task_queued_in_a_batch_is_stored_as_one_queued_alone() {
    let app = TestApp::spawn().await;
    let request = || Enqueue {
        actor: "gatehouse.noop".into(),
        args: json!({}),
        delay: Some(Duration::from_secs(90)),
        rel_obj: Some(("authentik_core.user".into(), "42".into())),
        uid: Some("same".into()),
    };
    let txn = gatehouse::db::begin_write(&app.state.db).await.unwrap();
    let alone = gatehouse::tasks::enqueue(&txn, &app.state, app.state.tenant, request()).await.unwrap().message_id;
    let batched = gatehouse::tasks::enqueue_many(
        &txn,
        &app.state,
        app.state.tenant,
        vec![request(), Enqueue { delay: None, rel_obj: None, uid: None, ..request() }],
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    let row = |id: Uuid| {
        let db = app.state.db.clone();
        async move { task::Entity::find_by_id(id).one(&db).await.unwrap().unwrap() }
    };
    let (alone, in_batch, plain) = (row(alone).await, row(batched[0]).await, row(batched[1]).await);
    // What may differ: the ids and the moments of queueing (the delay counts from each).
    let comparable = |task: &task::Model| task::Model {
        message_id: Uuid::nil(),
        mtime: chrono::DateTime::UNIX_EPOCH,
        created: chrono::DateTime::UNIX_EPOCH,
        eta: task.eta.map(|eta| chrono::DateTime::UNIX_EPOCH + (eta - task.created)),
        due: chrono::DateTime::UNIX_EPOCH + (task.due - task.created),
        ..task.clone()
    };
    assert_eq!(comparable(&in_batch), comparable(&alone));
    assert_eq!(alone.due - alone.created, chrono::TimeDelta::seconds(90));
    assert_eq!(
        (alone.eta, alone.rel_obj_type.as_deref(), alone.rel_obj_id.as_deref(), alone.uid.as_str()),
        (Some(alone.due), Some("authentik_core.user"), Some("42"), "gatehouse.noop:same")
    );
    assert_eq!((plain.eta, plain.due, plain.mtime), (None, plain.created, plain.created));
    assert_eq!((plain.rel_obj_type, plain.rel_obj_id, plain.uid.as_str()), (None, None, "gatehouse.noop"));
    assert_eq!((plain.result, plain.result_expiry, plain.worker_id, plain.attempt, plain.retries), (None, None, None, 0, 0));

    // Neither path stores a log entry: the "queued" entry is told by the task's row.
    use gatehouse::tasks::entities::task_log;
    assert_eq!(task_log::Entity::find().count(&app.state.db).await.unwrap(), 0);
}

/// One task queued inside a caller's transaction costs the caller one round trip: one statement
/// for the task (on PostgreSQL with the wake-up of other processes' workers). Its "queued" log
/// entry is told by its row, dated when it was queued.
#[tokio::test]
async fn a_task_queued_in_a_callers_transaction_is_one_statement() {
    let app = TestApp::spawn().await;
    let statements = || app.state.statements.run();
    let txn = gatehouse::db::begin_write(&app.state.db).await.unwrap();
    let before = statements();
    let request = Enqueue { actor: "gatehouse.noop".into(), args: json!({}), ..Default::default() };
    let queued = gatehouse::tasks::enqueue(&txn, &app.state, app.state.tenant, request).await.unwrap();
    assert_eq!(statements() - before, 1);
    txn.commit().await.unwrap();
    // What `enqueue` answered is what was stored, and the task shows its first log entry.
    assert_eq!(task_row(&app, queued.message_id).await, queued);
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    let (status, shown) = json(app.get(&admin, &format!("/api/v3/tasks/tasks/{}/", queued.message_id)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["logs"].as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(shown["logs"][0]["event"], "Task has been queued");
    assert_eq!(shown["logs"][0]["log_level"], "info");
    assert_eq!(shown["logs"][0]["logger"], "gatehouse.tasks");
    let at: chrono::DateTime<chrono::Utc> = serde_json::from_value(shown["logs"][0]["timestamp"].clone()).unwrap();
    assert_eq!(at, queued.created);
    assert_eq!(shown["previous_logs"], json!([]));
}

/// A worker's claim is one statement on PostgreSQL (the tasks marked running and their "being
/// processed" entries, committed on its own), so an idle worker starts a task one round trip
/// after its wake-up; on both databases the entry is dated like the claim.
#[tokio::test]
async fn a_claim_is_one_statement_on_postgresql_and_logs_the_start_of_each_task() {
    let app = TestApp::spawn().await;
    let postgres = app.state.config.backend() == gatehouse::config::Backend::Postgres;
    let first = send(&app, "gatehouse.noop", json!({})).await;
    let second = send(&app, "gatehouse.noop", json!({})).await;
    let worker = Uuid::new_v4();
    let before = app.state.statements.run();
    let claimed = gatehouse::tasks::queue::claim(&app.state, worker, 1).await.unwrap();
    if postgres {
        assert_eq!(app.state.statements.run() - before, 1);
    }
    // The one due first, and only it.
    assert_eq!(claimed.iter().map(|t| t.message_id).collect::<Vec<_>>(), [first]);
    let row = task_row(&app, first).await;
    assert_eq!((row.state.as_str(), row.worker_id, row.attempt), ("running", Some(worker), 1));
    assert_eq!(task_row(&app, second).await.state, "queued");
    use gatehouse::tasks::entities::task_log;
    let started = task_log::Entity::find()
        .filter(task_log::Column::TaskId.eq(first))
        .filter(task_log::Column::Event.eq("Task is being processed"))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(started.len(), 1);
    let entry = &started[0];
    assert_eq!(
        (entry.logger.as_str(), entry.log_level.as_str(), entry.attributes.clone()),
        ("gatehouse.tasks", "info", json!({"attempt": 1}))
    );
    assert_eq!((entry.tenant_id, entry.timestamp, entry.previous), (row.tenant_id, row.mtime, false));
}

/// A worker's usual batch of outcomes, runs that succeeded with nothing to keep, is recorded
/// in one statement on PostgreSQL (besides its transaction's begin and commit): each task done
/// with the status of its own worst entry and one "finished" entry dated like its row, and
/// nothing done for a run that is no longer this worker's.
#[tokio::test]
async fn first_runs_that_succeeded_are_recorded_in_one_statement_on_postgresql() {
    use gatehouse::tasks::entities::task_log;
    use gatehouse::tasks::queue::{self, Outcome};
    let app = TestApp::spawn().await;
    let postgres = app.state.config.backend() == gatehouse::config::Backend::Postgres;
    let ids = [
        send(&app, "gatehouse.noop", json!({})).await,
        send(&app, "gatehouse.noop", json!({})).await,
        send(&app, "gatehouse.noop", json!({})).await,
    ];
    let worker = Uuid::new_v4();
    let claimed = queue::claim(&app.state, worker, 3).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let other = send(&app, "gatehouse.noop", json!({})).await;
    let foreign = queue::claim(&app.state, Uuid::new_v4(), 1).await.unwrap().pop().expect("claimed by another worker");
    assert_eq!(foreign.message_id, other);
    let outcome = |task: &task::Model, worst_own_level: u8| Outcome {
        task: task.clone(),
        result: Ok(None),
        result_ttl: None,
        max_retries: 0,
        worst_own_level,
    };
    let claimed_as = |id: Uuid| claimed.iter().find(|task| task.message_id == id).expect("claimed");
    let mut outcomes: Vec<Outcome> = ids.iter().zip([0, 2, 1]).map(|(id, level)| outcome(claimed_as(*id), level)).collect();
    // Handed in by the wrong worker: it must stay running.
    outcomes.push(outcome(&foreign, 0));
    let before = app.state.statements.run();
    queue::record(&app.state, worker, &outcomes).await.unwrap();
    if postgres {
        assert_eq!(app.state.statements.run() - before, 1);
    }
    let mut statuses = Vec::new();
    for id in ids {
        let row = task_row(&app, id).await;
        assert_eq!((row.state.as_str(), row.worker_id, row.result.clone()), ("done", Some(worker), None));
        let finished = task_log::Entity::find()
            .filter(task_log::Column::TaskId.eq(id))
            .filter(task_log::Column::Event.eq("Task finished processing without errors"))
            .all(&app.state.db)
            .await
            .unwrap();
        assert_eq!(finished.len(), 1, "one end entry");
        let entry = &finished[0];
        assert_eq!(
            (entry.logger.as_str(), entry.log_level.as_str(), entry.attributes.clone(), entry.previous),
            ("gatehouse.tasks", "info", json!({}), false)
        );
        assert_eq!((entry.tenant_id, entry.timestamp), (row.tenant_id, row.mtime));
        statuses.push(row.aggregated_status);
    }
    assert_eq!(statuses, ["done", "warning", "info"]);
    let untouched = task_row(&app, other).await;
    assert_eq!((untouched.state.as_str(), untouched.worker_id), ("running", foreign.worker_id));
    assert_eq!(finished_logs(&app, other).await, 0);
}

/// Sets its flag when dropped: the run holding it ended, finished or cut off.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_task_cut_off_at_shutdown_stops_running_when_it_goes_back_to_the_queue() {
    let ended = Arc::new(AtomicBool::new(false));
    let mut actors = Registry::builtin();
    let flag = ended.clone();
    actors.add(Actor::new("test.held", move |_context, _args: Value| {
        let running = SetOnDrop(flag.clone());
        async move {
            let _running = running;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(None)
        }
    }));
    let app = TestApp::spawn_with_actors(fast, actors).await;
    let worker = gatehouse::tasks::worker::start(app.state.clone(), 1).await.unwrap();
    let id = send(&app, "test.held", json!({})).await;
    wait_for(&app, id, &["running"], Duration::from_secs(10)).await;
    worker.shutdown().await;
    assert_eq!(task_row(&app, id).await.state, "queued");
    // Otherwise it would run on beside whichever worker takes it next.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ended.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the cut-off run is still running");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A `gatehouse worker` process on `app`'s database with the given `tasks.*` timings.
fn worker_process(app: &TestApp, dir: &std::path::Path, poll: &str, heartbeat: &str, worker_timeout: &str) -> std::process::Child {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    for (key, _) in std::env::vars() {
        if key.starts_with("GATEHOUSE_") {
            command.env_remove(key);
        }
    }
    command
        .arg("worker")
        .env("GATEHOUSE_DATA_DIR", dir)
        .env("GATEHOUSE_DATABASE__URL", app.state.config.database_url())
        .env("GATEHOUSE_SECRET_KEY", app.state.config.secret_key.clone().unwrap())
        .env("GATEHOUSE_TASKS__POLL_INTERVAL", poll)
        .env("GATEHOUSE_TASKS__HEARTBEAT", heartbeat)
        .env("GATEHOUSE_TASKS__WORKER_TIMEOUT", worker_timeout)
        .env("GATEHOUSE_TASKS__SHUTDOWN_DEADLINE", "seconds=30")
        .env("GATEHOUSE_LOG__LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_worker_killed_mid_task_loses_nothing() {
    let app = TestApp::spawn_with(fast).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = worker_process(&app, dir.path(), "milliseconds=20", "milliseconds=100", "seconds=5");
    let id = send(&app, "gatehouse.sleep", json!({"seconds": 1.0})).await;
    let claimed = wait_for(&app, id, &["running"], Duration::from_secs(20)).await;
    assert_eq!(claimed.attempt, 1);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // A surviving worker notices the silence and runs the task again.
    let survivor = gatehouse::tasks::worker::start(app.state.clone(), 1).await.unwrap();
    let done = wait_for(&app, id, &["done"], Duration::from_secs(20)).await;
    assert_eq!(done.attempt, 2);
    assert_eq!(done.worker_id, Some(survivor.worker_id));
    let logs = gatehouse::tasks::entities::task_log::Entity::find()
        .filter(gatehouse::tasks::entities::task_log::Column::TaskId.eq(id))
        .all(&app.state.db)
        .await
        .unwrap();
    assert!(logs.iter().any(|l| l.event.contains("returned to the queue")));
    survivor.shutdown().await;
}

#[tokio::test]
async fn schedules_are_sent_once_with_competing_schedulers() {
    let runs = Arc::new(AtomicU32::new(0));
    let mut actors = Registry::builtin();
    let counter = runs.clone();
    actors.add(Actor::new("test.tick", move |_context, _args: Value| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        }
    }));
    let app = TestApp::spawn_with_actors(fast, actors).await;
    let schedule_id = Uuid::new_v4();
    schedule::ActiveModel {
        id: Set(schedule_id),
        tenant_id: Set(app.state.tenant.0),
        identifier: Set("tick".into()),
        actor_name: Set("test.tick".into()),
        args: Set(json!({})),
        rel_obj_type: Set(None),
        rel_obj_id: Set(None),
        crontab: Set("0 0 1 1 *".into()),
        paused: Set(false),
        next_run: Set(chrono::Utc::now() - chrono::TimeDelta::seconds(5)),
        description: Set(None),
    }
    .insert(&app.state.db)
    .await
    .unwrap();
    let first = gatehouse::tasks::worker::start(app.state.clone(), 2).await.unwrap();
    let second = gatehouse::tasks::worker::start(app.state.clone(), 2).await.unwrap();
    let sent_task = wait_for_schedule_task(&app, schedule_id).await;
    wait_for(&app, sent_task, &["done"], Duration::from_secs(20)).await;
    // More scheduler ticks, all at once, now that the task has finished: none sends again.
    let ticks = (0..8).map(|_| gatehouse::tasks::schedules::send_due(&app.state));
    for tick in futures_util::future::join_all(ticks).await {
        tick.unwrap();
    }
    first.shutdown().await;
    second.shutdown().await;
    let sent = task::Entity::find().filter(task::Column::RelObjId.eq(schedule_id.to_string())).count(&app.state.db).await.unwrap();
    assert_eq!(sent, 1, "one occurrence, one task");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let row = schedule::Entity::find_by_id(schedule_id).one(&app.state.db).await.unwrap().unwrap();
    let yearly = gatehouse::tasks::schedules::parse_crontab("0 0 1 1 *").unwrap();
    let next_new_year = gatehouse::tasks::schedules::next_after(&yearly, chrono::Utc::now()).unwrap();
    assert_eq!(row.next_run, next_new_year, "next_run moved to the next occurrence");

    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    let (_, list) = json(app.get(&admin, "/api/v3/tasks/schedules/").await).await;
    let identifiers: Vec<&str> = list["results"].as_array().unwrap().iter().map(|s| s["identifier"].as_str().unwrap()).collect();
    for builtin in ["purge-expired", "purge-finished-tasks", "clean-workers", "tick"] {
        assert!(identifiers.contains(&builtin), "{identifiers:?}");
    }
    let path = format!("/api/v3/tasks/schedules/{schedule_id}/");
    let (_, shown) = json(app.get(&admin, &path).await).await;
    assert_eq!(shown["last_task_status"], "done");
    assert_eq!(shown["uid"], "test.tick:tick");
    assert_field_error(app.patch(&admin, &path, json!({"crontab": "every day"})).await, "crontab").await;
    assert_field_error(app.put(&admin, &path, json!({"paused": true})).await, "crontab").await;
    let (status, patched) = json(app.patch(&admin, &path, json!({"crontab": "*/10 * * * *", "paused": true})).await).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["paused"], true);
    assert_eq!(app.post(&admin, &format!("{path}send/"), json!({})).await.status(), StatusCode::NO_CONTENT);
    let sent = task::Entity::find().filter(task::Column::RelObjId.eq(schedule_id.to_string())).count(&app.state.db).await.unwrap();
    assert_eq!(sent, 2, "send/ sends at once");
    app.user("plain@example.com", |_| {}).await;
    let plain = app.sign_in("plain@example.com").await;
    assert_forbidden(app.get(&plain, "/api/v3/tasks/schedules/").await).await;
    assert_forbidden(app.post(&plain, &format!("{path}send/"), json!({})).await).await;
}

/// Waits until a schedule has sent a task, and returns it.
async fn wait_for_schedule_task(app: &TestApp, schedule_id: Uuid) -> Uuid {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sent = task::Entity::find().filter(task::Column::RelObjId.eq(schedule_id.to_string())).one(&app.state.db).await.unwrap();
        if let Some(sent) = sent {
            return sent.message_id;
        }
        assert!(Instant::now() < deadline, "the schedule sent nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two schedulers read the same due occurrence; the first sends it and its task finishes
/// before the second gets to it. The second must find `next_run` moved and send nothing: the
/// pending-task check cannot help here, the task is no longer pending.
#[tokio::test]
async fn a_scheduler_that_read_a_sent_occurrence_does_not_send_it_again() {
    let app = TestApp::spawn_with(fast).await;
    let read_by_both = schedule::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(app.state.tenant.0),
        identifier: Set("nightly".into()),
        actor_name: Set("gatehouse.noop".into()),
        args: Set(json!({})),
        rel_obj_type: Set(None),
        rel_obj_id: Set(None),
        crontab: Set("0 3 * * *".into()),
        paused: Set(false),
        next_run: Set(chrono::Utc::now() - chrono::TimeDelta::seconds(5)),
        description: Set(None),
    }
    .insert(&app.state.db)
    .await
    .unwrap();
    let now = chrono::Utc::now();
    assert!(gatehouse::tasks::schedules::send_occurrence(&app.state, &read_by_both, now).await.unwrap());
    let worker = gatehouse::tasks::worker::start(app.state.clone(), 1).await.unwrap();
    let sent = wait_for_schedule_task(&app, read_by_both.id).await;
    wait_for(&app, sent, &["done"], Duration::from_secs(20)).await;
    worker.shutdown().await;
    assert!(!gatehouse::tasks::schedules::send_occurrence(&app.state, &read_by_both, now).await.unwrap(), "sent twice");
    let sent = task::Entity::find().filter(task::Column::RelObjId.eq(read_by_both.id.to_string())).count(&app.state.db).await.unwrap();
    assert_eq!(sent, 1);
}

#[tokio::test]
async fn a_schedule_is_not_sent_again_while_its_task_is_pending() {
    let app = TestApp::spawn_with(fast).await;
    let schedule_id = Uuid::new_v4();
    schedule::ActiveModel {
        id: Set(schedule_id),
        tenant_id: Set(app.state.tenant.0),
        identifier: Set("slow".into()),
        actor_name: Set("gatehouse.sleep".into()),
        args: Set(json!({"seconds": 30})),
        rel_obj_type: Set(None),
        rel_obj_id: Set(None),
        crontab: Set("* * * * * *".into()),
        paused: Set(false),
        next_run: Set(chrono::Utc::now() - chrono::TimeDelta::seconds(1)),
        description: Set(None),
    }
    .insert(&app.state.db)
    .await
    .unwrap();
    // No worker runs the task, so it stays queued while the scheduler keeps ticking; each tick
    // finds the schedule due again (its next run moved back into the past, as time would).
    let mut sent_by_tick = Vec::new();
    for _ in 0..3 {
        schedule::Entity::update_many()
            .col_expr(schedule::Column::NextRun, sea_orm::sea_query::Expr::val(chrono::Utc::now() - chrono::TimeDelta::seconds(1)))
            .filter(schedule::Column::Id.eq(schedule_id))
            .exec(&app.state.db)
            .await
            .unwrap();
        let due = schedule::Entity::find_by_id(schedule_id).one(&app.state.db).await.unwrap().unwrap();
        sent_by_tick.push(gatehouse::tasks::schedules::send_occurrence(&app.state, &due, chrono::Utc::now()).await.unwrap());
    }
    assert_eq!(sent_by_tick, [true, false, false]);
    let row = schedule::Entity::find_by_id(schedule_id).one(&app.state.db).await.unwrap().unwrap();
    assert!(row.next_run > chrono::Utc::now() - chrono::TimeDelta::seconds(1), "each tick moved next_run on");
    let sent = task::Entity::find().filter(task::Column::RelObjId.eq(schedule_id.to_string())).count(&app.state.db).await.unwrap();
    assert_eq!(sent, 1);
}

#[tokio::test]
async fn tasks_that_cannot_run_are_rejected_once_with_the_reason() {
    let app = TestApp::spawn_with(fast).await;
    // Rows as an older release might have left them: arguments that no longer decode, and an
    // actor that no longer exists.
    let undecodable = send(&app, "gatehouse.sleep", json!({"seconds": 0})).await;
    let mut row: task::ActiveModel = task_row(&app, undecodable).await.into();
    row.args = Set(json!({"minutes": 1}));
    row.update(&app.state.db).await.unwrap();
    let vanished = send(&app, "gatehouse.noop", json!({})).await;
    let mut row: task::ActiveModel = task_row(&app, vanished).await.into();
    row.actor_name = Set("gatehouse.retired".into());
    row.update(&app.state.db).await.unwrap();

    let worker = gatehouse::tasks::worker::start(app.state.clone(), 2).await.unwrap();
    for (id, reason) in [(undecodable, "arguments do not decode"), (vanished, "Unknown actor")] {
        let rejected = wait_for(&app, id, &["rejected"], Duration::from_secs(10)).await;
        assert_eq!(rejected.retries, 0, "never retried");
        let logs = gatehouse::tasks::entities::task_log::Entity::find()
            .filter(gatehouse::tasks::entities::task_log::Column::TaskId.eq(id))
            .all(&app.state.db)
            .await
            .unwrap();
        assert!(logs.iter().any(|l| l.log_level == "error" && l.event.contains(reason)), "{reason}");
    }
    worker.shutdown().await;
}

/// The audit events about `model_name` objects, newest first.
async fn audit_of(app: &TestApp, admin: &Session, model_name: &str) -> Vec<Value> {
    let (_, page) = json(app.get(admin, "/api/v3/events/events/?action=model_updated").await).await;
    page["results"].as_array().unwrap().iter().filter(|e| e["context"]["model"]["model_name"] == model_name).cloned().collect()
}

#[tokio::test]
async fn schedule_edits_sends_and_retries_are_audited_and_send_waits_for_a_pending_task() {
    let app = TestApp::spawn().await;
    let schedule_id = Uuid::new_v4();
    schedule::ActiveModel {
        id: Set(schedule_id),
        tenant_id: Set(app.state.tenant.0),
        identifier: Set("nightly".into()),
        actor_name: Set("gatehouse.sleep".into()),
        args: Set(json!({"seconds": 30})),
        rel_obj_type: Set(None),
        rel_obj_id: Set(None),
        crontab: Set("0 3 * * *".into()),
        paused: Set(false),
        next_run: Set(chrono::Utc::now() + chrono::TimeDelta::hours(1)),
        description: Set(None),
    }
    .insert(&app.state.db)
    .await
    .unwrap();
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    let operator = app
        .user_with(
            "operator@example.com",
            &["authentik_tasks_schedules.change_schedule", "authentik_tasks_schedules.send_schedule", "authentik_tasks.retry_task"],
        )
        .await;
    let session = app.sign_in("operator@example.com").await;
    let path = format!("/api/v3/tasks/schedules/{schedule_id}/");

    let (status, body) = json(app.patch(&session, &path, json!({"paused": true})).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let changes = audit_of(&app, &admin, "schedule").await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["user"]["pk"], operator.id);
    assert_eq!(changes[0]["context"]["diff"]["paused"], json!({"previous_value": false, "new_value": true}));

    // A crontab that names no date that exists is refused, and changes nothing.
    let never = assert_field_error(app.patch(&session, &path, json!({"crontab": "0 0 31 2 *"})).await, "crontab").await;
    assert!(never["crontab"][0].as_str().unwrap().contains("never"), "{never}");
    let (_, shown) = json(app.get(&admin, &path).await).await;
    assert_eq!(shown["crontab"], "0 3 * * *");

    // No worker runs here: the task sent by hand stays queued, and a second send waits for it.
    assert_eq!(app.post(&session, &format!("{path}send/"), json!({})).await.status(), StatusCode::NO_CONTENT);
    let (status, body) = json(app.post(&session, &format!("{path}send/"), json!({})).await).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("still queued or running"));
    let sent = task::Entity::find().filter(task::Column::RelObjId.eq(schedule_id.to_string())).all(&app.state.db).await.unwrap();
    assert_eq!(sent.len(), 1);
    let changes = audit_of(&app, &admin, "schedule").await;
    assert_eq!(changes.len(), 2, "the edit and the one send: {changes:?}");
    assert_eq!(changes[0]["context"]["sent"]["task"], json!(sent[0].message_id));

    // A retry by hand names who did it.
    let mut rejected: task::ActiveModel = sent[0].clone().into();
    rejected.state = Set("rejected".into());
    rejected.update(&app.state.db).await.unwrap();
    let retry = app.post(&session, &format!("/api/v3/tasks/tasks/{}/retry/", sent[0].message_id), json!({})).await;
    assert_eq!(retry.status(), StatusCode::NO_CONTENT);
    let retries = audit_of(&app, &admin, "task").await;
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(retries[0]["user"]["pk"], operator.id);
    assert_eq!(retries[0]["context"]["model"]["pk"], json!(sent[0].message_id));
}

/// Finished-processing entries in a task's log.
async fn finished_logs(app: &TestApp, id: Uuid) -> usize {
    gatehouse::tasks::entities::task_log::Entity::find()
        .filter(gatehouse::tasks::entities::task_log::Column::TaskId.eq(id))
        .all(&app.state.db)
        .await
        .unwrap()
        .iter()
        .filter(|l| l.event == "Task finished processing without errors")
        .count()
}

/// A worker whose heartbeat stalled (here: the whole process stopped) loses its task to a
/// rescue; when it wakes and finishes, the rerun's outcome stands and the task finishes once.
#[tokio::test]
async fn a_worker_rescued_while_alive_finishes_nothing_when_it_wakes() {
    let app = TestApp::spawn_with(fast).await;
    // Queued before the worker process starts, so that its start-up claim takes it; it polls
    // hourly and beats every 30 s, so it writes nothing else before it is stopped (a process
    // stopped while it held SQLite's write lock would block everyone else).
    let id = send(&app, "gatehouse.sleep", json!({"seconds": 5.0})).await;
    let dir = tempfile::tempdir().unwrap();
    let mut zombie = worker_process(&app, dir.path(), "hours=1", "seconds=30", "seconds=60");
    let claimed = wait_for(&app, id, &["running"], Duration::from_secs(20)).await;
    let zombie_worker = claimed.worker_id.expect("claimed by the worker process");
    let signal = |name: &str| {
        let status = std::process::Command::new("kill").args([name, &zombie.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {name}");
    };
    signal("-STOP");
    // Another worker sees the heartbeat stop, rescues the task and runs it to the end.
    let rescuer = gatehouse::tasks::worker::start(app.state.clone(), 1).await.unwrap();
    let rescuer_id = rescuer.worker_id;
    let rerun = wait_for(&app, id, &["done"], Duration::from_secs(60)).await;
    assert_eq!((rerun.attempt, rerun.worker_id), (2, Some(rescuer_id)));
    rescuer.shutdown().await;
    // The stopped worker wakes, its run completes, and it shuts down gracefully: everything it
    // would record is recorded by the time it exits.
    signal("-CONT");
    signal("-TERM");
    let exited = zombie.wait().unwrap();
    assert!(exited.success(), "{exited:?}");
    let after = task_row(&app, id).await;
    assert_eq!((after.state.as_str(), after.attempt, after.worker_id), ("done", 2, Some(rescuer_id)));
    assert_ne!(after.worker_id, Some(zombie_worker));
    assert_eq!(finished_logs(&app, id).await, 1, "the task finished twice");
}

/// The same, when the rescued worker claims its own task again before the first run ends: the
/// late outcome of attempt 1 must not finish attempt 2.
#[tokio::test]
async fn a_late_outcome_never_finishes_a_later_attempt_of_the_same_worker() {
    use gatehouse::tasks::queue::{self, Outcome};
    let app = TestApp::spawn_with(fast).await;
    let id = send(&app, "gatehouse.noop", json!({})).await;
    let worker = Uuid::new_v4(); // registered nowhere, so every rescue finds it dead
    let first = queue::claim(&app.state, worker, 1).await.unwrap().pop().expect("claimed");
    assert_eq!(first.attempt, 1);
    assert_eq!(queue::rescue(&app.state, Duration::from_secs(5)).await.unwrap(), 1);
    let second = queue::claim(&app.state, worker, 1).await.unwrap().pop().expect("claimed again");
    assert_eq!((second.message_id, second.attempt), (id, 2));
    let outcome =
        |task: &task::Model| Outcome { task: task.clone(), result: Ok(None), result_ttl: None, max_retries: 0, worst_own_level: 0 };
    queue::record(&app.state, worker, &[outcome(&first)]).await.unwrap();
    let row = task_row(&app, id).await;
    assert_eq!((row.state.as_str(), row.attempt), ("running", 2), "the late outcome finished the rerun");
    assert_eq!(finished_logs(&app, id).await, 0);
    // A late failure neither requeues the rerun nor leaves an error in its log.
    let failure = Outcome { result: Err(TaskError::Failed("the late attempt failed".into())), max_retries: 3, ..outcome(&first) };
    queue::record(&app.state, worker, &[failure]).await.unwrap();
    let row = task_row(&app, id).await;
    assert_eq!((row.state.as_str(), row.attempt, row.retries), ("running", 2, 0));
    // Both attempts' successes recorded together: only the current attempt finishes, once.
    queue::record(&app.state, worker, &[outcome(&first), outcome(&second)]).await.unwrap();
    let row = task_row(&app, id).await;
    // The rescue's own warning shows; the late failure's error must not.
    assert_eq!((row.state.as_str(), row.aggregated_status.as_str()), ("done", "warning"), "a late failure coloured the task");
    assert_eq!(finished_logs(&app, id).await, 1);
}

/// An idle worker starts a new task because the enqueue woke it, not because it polled: its
/// poll interval is an hour. On PostgreSQL the task is queued by another server process, so
/// the wake-up can only be the database's notification.
#[tokio::test]
async fn an_idle_worker_is_woken_by_the_enqueue_not_by_polling() {
    let hourly = |config: &mut Config| {
        fast(config);
        config.tasks.poll_interval = "hours=1".parse().unwrap();
        config.tasks.heartbeat = "hours=1".parse().unwrap();
    };
    let app = TestApp::spawn_with(hourly).await;
    let postgres = app.state.config.backend() == gatehouse::config::Backend::Postgres;
    let other = if postgres { Some(TestApp::spawn_sharing(&app, hourly).await) } else { None };
    let worker_app = other.as_ref().unwrap_or(&app);
    let worker = gatehouse::tasks::worker::start(worker_app.state.clone(), 1).await.unwrap();
    // The first task proves the worker is past its start-up claim and waiting.
    let warm_up = send(&app, "gatehouse.noop", json!({})).await;
    wait_for(&app, warm_up, &["done"], Duration::from_secs(30)).await;
    let id = send(&app, "gatehouse.noop", json!({})).await;
    let done = wait_for(&app, id, &["done"], Duration::from_secs(30)).await;
    assert_eq!(done.worker_id, Some(worker.worker_id));
    // A batch wakes it too: on PostgreSQL its last statement notifies, and the worker is in the
    // other process, which only that reaches.
    let txn = gatehouse::db::begin_write(&app.state.db).await.unwrap();
    let noop = || Enqueue { actor: "gatehouse.noop".into(), args: json!({}), ..Default::default() };
    let batch = gatehouse::tasks::enqueue_many(&txn, &app.state, app.state.tenant, vec![noop(), noop(), noop()]).await.unwrap();
    txn.commit().await.unwrap();
    gatehouse::tasks::queue::wake_local_workers(&app.state);
    for id in batch {
        assert_eq!(wait_for(&app, id, &["done"], Duration::from_secs(30)).await.worker_id, Some(worker.worker_id));
    }
    worker.shutdown().await;
}

/// Of this process's sockets from one of the local `ports` to `server_port`, how many there are and
/// how many leave Nagle's algorithm on (`TCP_NODELAY` unset).
fn sockets_on(ports: &[u16], server_port: u16) -> (usize, usize) {
    let (mut sockets, mut delaying) = (0, 0);
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd is readable").flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        if !std::fs::read_link(entry.path()).is_ok_and(|target| target.to_string_lossy().starts_with("socket:")) {
            continue;
        }
        // SAFETY: only socket options and addresses are read; a descriptor closed (or reused)
        // meanwhile fails the calls or has another local port, and is skipped.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        let Some(local) = socket.local_addr().ok().and_then(|addr| addr.as_socket()) else { continue };
        let Some(peer) = socket.peer_addr().ok().and_then(|addr| addr.as_socket()) else { continue };
        if !ports.contains(&local.port()) || peer.port() != server_port {
            continue;
        }
        let Ok(nodelay) = socket.tcp_nodelay() else { continue };
        sockets += 1;
        delaying += usize::from(!nodelay);
    }
    (sockets, delaying)
}

/// A worker with 128 tasks in flight drained at a third of its rate on PostgreSQL over TLS:
/// sqlx 0.9.0 left Nagle's algorithm on, so the last small TLS record of a large statement waited
/// for the acknowledgement PostgreSQL delays by 40 ms. Every connection of the server to its
/// database (found by their client ports in `pg_stat_activity`, since other tests' connections
/// share this process) must send at once. On SQLite the pool keeps one connection (so its page
/// cache survives writes), however many statements run at once.
#[tokio::test]
async fn database_sockets_never_wait_for_nagle_and_sqlite_keeps_one_connection() {
    let app = TestApp::spawn_with(fast).await;
    let counts = (0..6).map(|_| task::Entity::find().count(&app.state.db));
    for count in futures_util::future::join_all(counts).await {
        count.expect("the count runs");
    }
    match app.state.config.backend() {
        gatehouse::config::Backend::Postgres => {
            use sea_orm::{ConnectionTrait, Statement};
            // The connections to this test's own database that come from this machine.
            let sql = "SELECT client_port FROM pg_stat_activity WHERE datname = current_database() AND client_port > 0";
            let rows = app.state.db.query_all_raw(Statement::from_string(app.state.db.get_database_backend(), sql)).await.unwrap();
            let ports: Vec<u16> = rows.iter().map(|row| row.try_get::<i32>("", "client_port").unwrap() as u16).collect();
            assert!(ports.len() >= 2, "the pool and its listener hold connections: {ports:?}");
            let url = reqwest::Url::parse(&app.state.config.database_url()).expect("the database URL parses");
            let (sockets, delaying) = sockets_on(&ports, url.port().unwrap_or(5432));
            assert_eq!(sockets, ports.len(), "every connection PostgreSQL lists is one of this process's sockets");
            assert_eq!(delaying, 0, "{delaying} of {sockets} database sockets leave Nagle's algorithm on");
        }
        gatehouse::config::Backend::Sqlite => {
            assert_eq!(gatehouse::db::pool_stats(&app.state.db).0, 1, "one SQLite connection keeps its page cache");
        }
    }
}

/// The "queued" entry shows once in the two cases the task's row cannot tell: a task withdrawn
/// while still queued (no attempt, no retry) and then retried by hand keeps it among the earlier
/// entries, and an entry stored by an earlier version is shown as stored, not twice.
#[tokio::test]
async fn the_queued_entry_shows_once_after_a_withdrawal_and_when_an_earlier_version_stored_it() {
    use gatehouse::tasks::entities::task_log;
    let app = TestApp::spawn().await;
    let later =
        || Enqueue { actor: "gatehouse.noop".into(), args: json!({}), delay: Some(Duration::from_secs(3600)), ..Default::default() };
    let withdrawn = gatehouse::tasks::send(&app.state, app.state.tenant, later()).await.unwrap().message_id;
    assert!(gatehouse::tasks::queue::withdraw(&app.state, app.state.tenant, withdrawn, "no longer needed").await.unwrap());
    let stored = gatehouse::tasks::send(&app.state, app.state.tenant, later()).await.unwrap();
    task_log::ActiveModel {
        id: Set(Uuid::new_v4()),
        task_id: Set(stored.message_id),
        tenant_id: Set(stored.tenant_id),
        event: Set("Task has been queued".into()),
        log_level: Set("info".into()),
        logger: Set("gatehouse.tasks".into()),
        timestamp: Set(stored.created),
        attributes: Set(json!({})),
        previous: Set(false),
    }
    .insert(&app.state.db)
    .await
    .unwrap();

    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    let retried = app.post(&admin, &format!("/api/v3/tasks/tasks/{withdrawn}/retry/"), json!({})).await.status();
    assert_eq!(retried, StatusCode::NO_CONTENT);
    let queued_in = |list: &Value| list.as_array().unwrap().iter().filter(|l| l["event"] == "Task has been queued").count();
    let (_, shown) = json(app.get(&admin, &format!("/api/v3/tasks/tasks/{withdrawn}/")).await).await;
    assert_eq!((queued_in(&shown["previous_logs"]), queued_in(&shown["logs"])), (1, 0), "{shown}");
    assert_eq!(shown["previous_logs"][0]["event"], "Task has been queued");
    let (_, shown) = json(app.get(&admin, &format!("/api/v3/tasks/tasks/{}/", stored.message_id)).await).await;
    assert_eq!((queued_in(&shown["previous_logs"]), queued_in(&shown["logs"])), (0, 1), "{shown}");
}
