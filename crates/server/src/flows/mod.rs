//! Flows and stages: authentik's flow executor. A flow is an ordered list of stages bound to it;
//! running it builds a plan, asks each stage's question in turn and carries the answers in a
//! context the later stages read. Kinds of stage plug in through [`stage::StageRegistry`].

pub mod api;
pub mod binding_service;
pub mod changes;
pub mod consents;
pub mod defaults;
pub mod entities;
pub mod executor;
pub mod executor_api;
pub mod factors;
pub mod flow_service;
pub mod handlers;
pub mod handoff;
pub mod model;
pub mod pages;
pub mod plans;
pub mod redirect;
pub mod run;
pub mod second_factor;
pub mod stage;
pub mod stage_service;
pub mod stages;
pub mod transfer;

pub use stage::{StageKind, StageRegistry};
