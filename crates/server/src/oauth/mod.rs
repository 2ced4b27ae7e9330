//! Single sign-on: applications people launch, the OAuth 2.0 / OpenID Connect providers that
//! sign them in (authorization code with PKCE, refresh tokens, userinfo) and out again (telling
//! applications on a back channel), and each provider's
//! discovery document and published keys. Uses accounts, credentials, flows, crypto and events;
//! no domain uses this one.

pub mod api;
pub mod applications;
pub mod assertions;
pub mod backchannel;
pub mod cache;
pub mod claims;
pub mod consents;
pub mod device;
pub mod discovery;
pub mod entities;
pub mod grants;
pub mod handlers;
pub mod issued;
pub mod keys;
pub mod logout;
pub mod model;
pub mod pages;
pub mod providers;
pub mod scopes;
