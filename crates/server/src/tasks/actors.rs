//! Actors: the named, typed functions tasks run, and the context they run with.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::state::AppState;
use crate::tenants::TenantId;

/// Why a task's run failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TaskError {
    /// Worth another try (with backoff) until the retries are used up.
    #[error("{0}")]
    Failed(String),
    /// Retrying cannot help (for example, arguments that no longer decode): rejected at once.
    #[error("{0}")]
    Fatal(String),
}

impl From<crate::error::Error> for TaskError {
    fn from(error: crate::error::Error) -> Self {
        TaskError::Failed(error.to_string())
    }
}

/// What an actor returns: an optional JSON result.
pub type ActorResult = Result<Option<Value>, TaskError>;
type ActorFuture = Pin<Box<dyn Future<Output = ActorResult> + Send>>;
type Handler = Arc<dyn Fn(TaskContext, Value) -> ActorFuture + Send + Sync>;
type ArgsCheck = Arc<dyn Fn(&Value) -> Result<(), String> + Send + Sync>;

/// A named function tasks run, with its queue and policies.
#[derive(Clone)]
pub struct Actor {
    pub name: String,
    pub queue: String,
    /// Retries after the first attempt before the task is rejected.
    pub max_retries: u32,
    pub time_limit: Duration,
    /// How long a result is kept; `None` keeps no result.
    pub result_ttl: Option<Duration>,
    handler: Handler,
    check_args: ArgsCheck,
}

impl Actor {
    /// An actor whose arguments decode into `A`, on the `default` queue, with the server's
    /// default retries and time limit (set by [`Registry::add`]).
    pub fn new<A, F, Fut>(name: &str, handler: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        F: Fn(TaskContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ActorResult> + Send + 'static,
    {
        let handler = Arc::new(handler);
        Self {
            name: name.to_owned(),
            queue: "default".to_owned(),
            max_retries: 5,
            time_limit: Duration::from_secs(600),
            result_ttl: None,
            handler: Arc::new(move |context, args| {
                let handler = handler.clone();
                Box::pin(async move {
                    let args: A = serde_json::from_value(args).map_err(|e| TaskError::Fatal(format!("arguments do not decode: {e}")))?;
                    handler(context, args).await
                })
            }),
            check_args: Arc::new(|args| serde_json::from_value::<A>(args.clone()).map(|_| ()).map_err(|e| e.to_string())),
        }
    }

    /// Sets the retries.
    pub fn retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Sets the time limit.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = limit;
        self
    }

    /// Keeps results for `ttl`.
    pub fn keep_results(mut self, ttl: Duration) -> Self {
        self.result_ttl = Some(ttl);
        self
    }

    /// Checks arguments without running anything.
    pub fn check_args(&self, args: &Value) -> Result<(), String> {
        (self.check_args)(args)
    }

    /// Runs the actor.
    pub fn run(&self, context: TaskContext, args: Value) -> impl Future<Output = ActorResult> + Send + 'static {
        (self.handler)(context, args)
    }
}

/// The actors a process knows.
#[derive(Clone, Default)]
pub struct Registry {
    actors: HashMap<String, Actor>,
}

impl Registry {
    /// Gatehouse's own actors.
    pub fn builtin() -> Self {
        let mut registry = Self::default();
        registry.add(Actor::new("gatehouse.noop", |_context, _args: Value| async { Ok(None) }).retries(0));
        registry.add(
            Actor::new("gatehouse.sleep", |_context, args: SleepArgs| async move {
                tokio::time::sleep(Duration::from_secs_f64(args.seconds.clamp(0.0, 3600.0))).await;
                Ok(None)
            })
            .retries(0)
            .time_limit(Duration::from_secs(3600)),
        );
        registry.add(Actor::new("gatehouse.purge_expired", super::builtin::purge_expired));
        registry.add(Actor::new("gatehouse.purge_finished_tasks", super::builtin::purge_finished_tasks));
        registry.add(Actor::new("gatehouse.clean_workers", super::builtin::clean_workers));
        registry
    }

    /// Adds or replaces an actor.
    pub fn add(&mut self, actor: Actor) {
        self.actors.insert(actor.name.clone(), actor);
    }

    /// The actor of a name.
    pub fn get(&self, name: &str) -> Option<&Actor> {
        self.actors.get(name)
    }
}

/// Arguments of `gatehouse.sleep`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepArgs {
    pub seconds: f64,
}

/// What a running task can use: the server's state and its own log.
#[derive(Clone)]
pub struct TaskContext {
    pub state: AppState,
    pub message_id: Uuid,
    pub tenant: TenantId,
    pub actor_name: String,
    /// The worst level this attempt logged: 0 none, 1 info, 2 warning, 3 error.
    pub worst_level: Arc<std::sync::atomic::AtomicU8>,
}

/// Attribute names whose values are masked in task logs.
const SECRET_WORDS: [&str; 5] = ["password", "secret", "token", "key", "code"];

/// Masks the values of secret-looking keys, at any depth.
pub fn mask(attributes: Value) -> Value {
    match attributes {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let secret = SECRET_WORDS.iter().any(|w| k.to_lowercase().contains(w));
                    (k, if secret { Value::String("********".into()) } else { mask(v) })
                })
                .collect::<Map<String, Value>>(),
        ),
        other => other,
    }
}

impl TaskContext {
    /// Writes a log entry of the running task, secrets masked.
    pub async fn log(&self, level: &str, event: &str, attributes: Value) -> Result<(), TaskError> {
        let rank = match level {
            "error" | "critical" | "exception" => 3,
            "warning" | "warn" => 2,
            "info" => 1,
            _ => 0,
        };
        self.worst_level.fetch_max(rank, std::sync::atomic::Ordering::Relaxed);
        super::queue::write_log(&self.state.db, self.tenant, self.message_id, level, &self.actor_name, event, mask(attributes))
            .await
            .map_err(TaskError::from)
    }

    /// An info entry.
    pub async fn info(&self, event: &str) -> Result<(), TaskError> {
        self.log("info", event, json!({})).await
    }

    /// A warning entry.
    pub async fn warning(&self, event: &str) -> Result<(), TaskError> {
        self.log("warning", event, json!({})).await
    }

    /// An error entry.
    pub async fn error(&self, event: &str) -> Result<(), TaskError> {
        self.log("error", event, json!({})).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secret_attributes_at_any_depth() {
        let masked = mask(json!({"user": "a", "password": "p", "nested": {"api_key": "k", "n": 1}}));
        assert_eq!(masked, json!({"user": "a", "password": "********", "nested": {"api_key": "********", "n": 1}}));
    }

    #[test]
    fn arguments_are_checked_against_the_actor_type() {
        let actor = Actor::new("t", |_c, _a: SleepArgs| async { Ok(None) });
        assert!(actor.check_args(&json!({"seconds": 1})).is_ok());
        assert!(actor.check_args(&json!({"seconds": "x"})).is_err());
        assert!(actor.check_args(&json!({"minutes": 1})).is_err());
    }
}
