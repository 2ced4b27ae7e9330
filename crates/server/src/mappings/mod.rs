//! Property mappings: expressions an administrator writes to shape what Gatehouse sends to
//! other systems. Today the webhook mappings of SMS stages (authentik's
//! `NotificationWebhookMapping`), written in the Common Expression Language and evaluated with
//! bounds on size and time. Other domains use this one; it uses none of them.

pub mod entities;
pub mod expression;
pub mod handlers;
pub mod service;
