//! Uploaded files: application icons, flow backgrounds, logos and avatars, kept in a local
//! directory or an S3-compatible bucket, listed from an index in the database, and served back
//! by this server at stable URLs.

pub mod entities;
pub mod handlers;
pub mod kind;
pub mod name;
pub mod service;
pub mod store;

/// Where the file `name` is served.
pub fn url_of(name: &name::FileName) -> String {
    format!("{}{}", service::SERVED_PREFIX, name.as_str())
}
