//! Closed sets of values stored as text: each value is a Rust variant in code and keeps its text
//! spelling in the database and the API, so no migration is needed to type a column's values.

/// Declares an enum whose variants are stored and sent as the given texts, with `ALL`, `as_str`,
/// `parse`, `choices`, serde and OpenAPI support, and conversion into a query value.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize, ::utoipa::ToSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as stored and sent.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the stored or sent text.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The accepted values, for error messages.
            pub fn choices() -> String {
                [$($text),+].join(", ")
            }
        }

        impl From<$name> for ::sea_orm::Value {
            fn from(value: $name) -> Self {
                value.as_str().into()
            }
        }
    };
}

pub(crate) use text_enum;
