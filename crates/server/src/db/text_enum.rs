//! Closed sets of values stored as text: each value is a Rust variant in code and keeps its text
//! spelling in the database and the API, so no migration is needed to type a column's values.

/// Declares an enum whose variants are stored and sent as the given texts, with `ALL`, `as_str`,
/// `parse`, `choices`, serde and OpenAPI support, and conversion into a query value.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        // By hand: the derive reads the variants' names, not the texts this macro hands serde.
        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                ::utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(::utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl ::utoipa::ToSchema for $name {}

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

#[cfg(test)]
mod tests {
    text_enum!(
        /// A vocabulary whose texts differ from its variants' names.
        Spelling {
            Plain => "plain",
            WithDash => "with-dash",
        }
    );

    #[test]
    fn the_openapi_schema_lists_the_texts_not_the_variant_names() {
        let schema = serde_json::to_value(<Spelling as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["enum"], serde_json::json!(["plain", "with-dash"]));
        assert_eq!(schema["type"], "string");
        assert_eq!(Spelling::parse("with-dash"), Some(Spelling::WithDash));
    }
}
