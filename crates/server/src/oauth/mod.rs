//! Single sign-on: applications people launch, and the OAuth 2.0 / OpenID Connect providers that
//! sign them in, with each provider's discovery document and published keys. Uses accounts,
//! flows, crypto and events; nothing uses this domain.

pub mod applications;
pub mod discovery;
pub mod endpoints;
pub mod entities;
pub mod handlers;
pub mod model;
pub mod providers;
