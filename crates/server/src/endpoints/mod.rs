//! Endpoint devices and the agent connector: device access groups, agent connectors and the
//! enrollment tokens devices enrol with, the devices themselves and what their agents report, in
//! authentik's `/api/v3/endpoints/` shapes.

pub mod access_groups;
pub mod bindings;
pub mod cache;
pub mod connectors;
pub mod device_auth;
pub mod devices;
pub mod directory;
pub mod enrollment;
pub mod entities;
pub mod facts;
pub mod handlers;
pub mod pages;
pub mod stage;
