//! The task worker under `kill -9`, for `scripts/crash-loop`: queues probe tasks, runs a worker
//! whose probe actor reports any run the queue should never have started, and checks the end
//! state.
//!
//! ```text
//! crash_probe enqueue N      queue N probe tasks
//! crash_probe work C         run a worker with C tasks at a time until SIGTERM (or kill -9)
//! crash_probe check N        exit 0 when exactly N probe tasks exist, all done, and no probe
//!                            run was started for a task already done or already running (with
//!                            CRASH_EXPECT_KILLS set, also when at least one run was cut short)
//! ```
//!
//! Configuration comes from the environment as for `gatehouse` itself (`GATEHOUSE_*`); the probe
//! writes its findings under `CRASH_PROBE_DIR`.
//!
//! What "never" means here: a task whose completion was recorded is never started again, and a
//! task never runs in two live workers at once, and a task completes more than once only when the
//! worker of the earlier completion was killed before it could record it (the script lists the
//! pids it killed). A run cut short by `kill -9` before its completion was recorded is started
//! again: that is at-least-once delivery, and the check
//! counts such re-runs without failing on them (as every actor, the probe is idempotent).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use gatehouse::config::Config;
use gatehouse::tasks::entities::task;
use gatehouse::tasks::model::TaskState;
use gatehouse::tasks::queue::{self, Enqueue};
use gatehouse::tasks::{Actor, Registry};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

const PROBE: &str = "crash.probe";

fn probe_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CRASH_PROBE_DIR").unwrap_or_else(|| "crash-probe".into()))
}

fn append(path: &Path, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(format!("{line}\n").as_bytes())?;
    file.sync_data()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn registry() -> Registry {
    let mut registry = Registry::builtin();
    registry.add(
        Actor::new(PROBE, |context: gatehouse::tasks::TaskContext, _args: serde_json::Value| async move {
            let dir = probe_dir();
            let id = context.message_id;
            let fault = |e: std::io::Error| gatehouse::tasks::TaskError::from(gatehouse::error::Error::internal(e));
            let current = task::Entity::find_by_id(id).one(&context.state.db).await.map_err(gatehouse::error::Error::from)?;
            if current.is_some_and(|t| t.state == TaskState::Done.as_str()) {
                append(&dir.join("violations"), &format!("started again after it was done: {id}")).map_err(fault)?;
            }
            let marker = dir.join("running").join(id.to_string());
            if let Ok(owner) = std::fs::read_to_string(&marker)
                && let Ok(owner) = owner.trim().parse::<u32>()
                && pid_alive(owner)
            {
                // The marker of a run in this very process counts too: its run has not ended.
                append(&dir.join("violations"), &format!("started again while a live worker runs it: {id}")).map_err(fault)?;
            }
            std::fs::write(&marker, std::process::id().to_string()).map_err(fault)?;
            append(&dir.join("starts"), &id.to_string()).map_err(fault)?;
            // Long enough that a kill usually lands mid-task.
            tokio::time::sleep(Duration::from_millis(50 + u64::from(id.as_bytes()[0]) % 100)).await;
            append(&dir.join("completions"), &format!("{id} {}", std::process::id())).map_err(fault)?;
            let _ = std::fs::remove_file(&marker);
            Ok(None)
        })
        .retries(5),
    );
    registry
}

async fn run(command: &str, count: usize) -> Result<ExitCode, String> {
    let config = Config::load(None).map_err(|e| e.to_string())?;
    let state = gatehouse::app::build_state_with(config, registry()).await.map_err(|e| e.to_string())?;
    std::fs::create_dir_all(probe_dir().join("running")).map_err(|e| e.to_string())?;
    match command {
        "enqueue" => {
            for _ in 0..count {
                let request = Enqueue { actor: PROBE.into(), args: json!({}), delay: None, rel_obj: None, uid: None };
                queue::send(&state, state.tenant, request).await.map_err(|e| e.to_string())?;
            }
            println!("queued {count} probe tasks");
            Ok(ExitCode::SUCCESS)
        }
        "work" => {
            let worker = gatehouse::tasks::worker::start(state.clone(), count.max(1)).await.map_err(|e| e.to_string())?;
            gatehouse::app::shutdown_signal().await;
            worker.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
        "check" => check(&state, count).await,
        other => Err(format!("unknown command {other}")),
    }
}

async fn check(state: &gatehouse::state::AppState, expected: usize) -> Result<ExitCode, String> {
    let tasks = task::Entity::find().filter(task::Column::ActorName.eq(PROBE)).all(&state.db).await.map_err(|e| e.to_string())?;
    let done: Vec<_> = tasks.iter().filter(|t| t.state == TaskState::Done.as_str()).collect();
    let completions = std::fs::read_to_string(probe_dir().join("completions")).unwrap_or_default();
    let killed: std::collections::HashSet<String> =
        std::fs::read_to_string(probe_dir().join("killed")).unwrap_or_default().lines().map(str::to_owned).collect();
    // Completions of each task in order, by the pid that ran them.
    let mut runs = std::collections::HashMap::<&str, Vec<&str>>::new();
    for line in completions.lines() {
        let (id, pid) = line.split_once(' ').unwrap_or((line, ""));
        runs.entry(id).or_default().push(pid);
    }
    let never_completed = done.iter().filter(|t| !runs.contains_key(t.message_id.to_string().as_str())).count();
    let completed_twice = runs.values().filter(|pids| pids.len() > 1).count();
    // A task may complete again only when the worker of every earlier completion was killed
    // before it could record the completion.
    let mut unexplained: Vec<String> = runs
        .iter()
        .filter(|(_, pids)| pids[..pids.len() - 1].iter().any(|pid| !killed.contains(*pid)))
        .map(|(id, _)| format!("completed again although its worker lived to record it: {id}"))
        .collect();
    unexplained.sort();
    let starts = std::fs::read_to_string(probe_dir().join("starts")).unwrap_or_default().lines().count();
    let cut_short = starts.saturating_sub(completions.lines().count());
    let mut violations = std::fs::read_to_string(probe_dir().join("violations")).unwrap_or_default();
    for line in unexplained {
        violations.push_str(&line);
        violations.push('\n');
    }
    println!(
        "probe tasks: {} queued, {} done, {} not done, {} done without a completed run; {} runs cut short by a kill and run again, \
         {} finished just before a kill and run again (at-least-once); {} violations",
        tasks.len(),
        done.len(),
        tasks.len() - done.len(),
        never_completed,
        cut_short,
        completed_twice,
        violations.lines().count()
    );
    for line in violations.lines().take(20) {
        println!("violation: {line}");
    }
    // With kills expected, a run where none landed mid-task proved nothing.
    let kills_landed = std::env::var_os("CRASH_EXPECT_KILLS").is_none() || cut_short > 0;
    if !kills_landed {
        println!("no run was cut short: the kills did not land mid-task");
    }
    let ok = tasks.len() == expected && done.len() == expected && never_completed == 0 && violations.is_empty() && kills_landed;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(command), Some(count)) = (args.get(1), args.get(2).and_then(|n| n.parse::<usize>().ok())) else {
        eprintln!("usage: crash_probe enqueue N | work CONCURRENCY | check N");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("crash_probe: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command, count)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("crash_probe: {message}");
            ExitCode::FAILURE
        }
    }
}
