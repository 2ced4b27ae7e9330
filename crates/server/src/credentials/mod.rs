//! What a request authenticated with, the limits on guessing it, and ending it everywhere: the in-process cache of session
//! and key checks, and the invalidation and session revocation every domain that changes who may
//! do what calls after its change.
//!
//! It sits below the domains (accounts, tokens and sessions all call it, it calls none of them;
//! it reads only their table definitions and the `Rights` value), so those three call each other
//! in one direction: tokens use accounts, sessions use both.

pub mod attempts;
pub mod cache;
pub mod known_browser;
pub mod limits;
pub mod revoke;
