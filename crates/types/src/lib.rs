//! Value types of Gatehouse's domain. Each type can only hold a valid value: parsing is the only
//! way to build one, and the parse error says what was wrong and what is accepted.

pub mod duration;
pub mod email;
pub mod identifier;
pub mod phone;

pub use duration::{DurationError, DurationString};
pub use email::{Email, EmailError};
pub use identifier::{IdentifierError, canonical_text, check_identifier, identifier_key, identifier_skeleton};
pub use phone::{PhoneError, PhoneNumber};
