//! Background tasks: a durable queue in the database with workers, retries, logs, aggregated
//! status, heartbeats and cron schedules. Delivery is at least once: a task whose worker dies
//! mid-run runs again, so actors must be idempotent.

pub mod actors;
pub mod api;
pub mod bench;
pub mod builtin;
pub mod entities;
pub mod handlers;
pub mod model;
pub mod queue;
pub mod schedules;
pub mod service;
pub mod worker;

pub use actors::{Actor, ActorResult, Registry, TaskContext, TaskError};
pub use queue::{Enqueue, enqueue, enqueue_many, send};
