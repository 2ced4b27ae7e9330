//! JSON documents read into typed values, with errors named by the field that failed, as the API
//! reports them.

use serde::de::DeserializeOwned;

use crate::error::{Error, FieldErrors, NON_FIELD_ERRORS};

/// What every text input containing U+0000 is told: no store keeps such text (PostgreSQL refuses
/// it outright), and no name, password or key needs it.
pub const NULL_CHARACTER: &str = "Null characters are not allowed.";

/// What text holding any other control character is told (C0 and C1 controls and DEL; values may
/// still hold tab, line feed and carriage return).
pub const CONTROL_CHARACTER: &str = "Control characters are not allowed.";

/// Where text appears, which decides whether line breaks and tabs are allowed in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextRole {
    /// A value that may span lines: a description, a message, a password.
    Value,
    /// A name: a JSON key, a query parameter or its value, a path segment.
    Name,
}

/// The refusal for `text` when it holds a control character it may not hold in `role`.
pub fn refused_control(text: &str, role: TextRole) -> Option<&'static str> {
    let mut refusal = None;
    for c in text.chars() {
        if c == '\0' {
            return Some(NULL_CHARACTER);
        }
        let line_break = matches!(c, '\t' | '\n' | '\r');
        if c.is_control() && !(line_break && role == TextRole::Value) {
            refusal = Some(CONTROL_CHARACTER);
        }
    }
    refusal
}

/// Fields whose text may span lines (PEM text among them).
const MULTILINE_FIELDS: [&str; 6] = ["description", "deny_message", "password", "message", "certificate_data", "key_data"];
/// Fields that hold free-form data, whose text may hold anything a value may.
const FREE_FORM_FIELDS: [&str; 4] = ["attributes", "args", "kwargs", "context"];

/// The role the text of field `name` plays, in a JSON body or a form: a value where the field
/// allows line breaks, a name otherwise.
pub fn field_role(name: &str) -> TextRole {
    if MULTILINE_FIELDS.contains(&name) || FREE_FORM_FIELDS.contains(&name) { TextRole::Value } else { TextRole::Name }
}

/// `name` without its control characters, fit to name the field an error is about.
pub fn printable(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).collect()
}

/// The role text under `key` plays (`inherited` inside free-form data).
fn role_under(key: &str, inherited: TextRole) -> TextRole {
    if inherited == TextRole::Value { TextRole::Value } else { field_role(key) }
}

/// The path (`a.b.0.c`) of the first string, or key, holding a control character it may not
/// hold in `value`, with the refusal. Line breaks and tabs are allowed only in the text of
/// multi-line fields (a description, a password) and inside free-form data (`attributes`).
pub fn find_control_character(value: &serde_json::Value) -> Option<(String, &'static str)> {
    find_control_character_as(value, TextRole::Name)
}

fn find_control_character_as(value: &serde_json::Value, role: TextRole) -> Option<(String, &'static str)> {
    match value {
        serde_json::Value::String(text) => refused_control(text, role).map(|refusal| (String::new(), refusal)),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            find_control_character_as(item, role)
                .map(|(rest, refusal)| (if rest.is_empty() { index.to_string() } else { format!("{index}.{rest}") }, refusal))
        }),
        serde_json::Value::Object(map) => map.iter().find_map(|(key, item)| {
            if let Some(refusal) = refused_control(key, TextRole::Name) {
                // A bad key is the fault of the object holding it.
                return Some((String::new(), refusal));
            }
            find_control_character_as(item, role_under(key, role))
                .map(|(rest, refusal)| (if rest.is_empty() { key.clone() } else { format!("{key}.{rest}") }, refusal))
        }),
        _ => None,
    }
}

/// Whether a JSON document may hold a control character: raw DEL or C1 bytes, or any escape.
/// Most bodies hold none of these, so the walk is skipped for them.
fn may_hold_controls(bytes: &[u8]) -> bool {
    bytes.iter().any(|b| *b == b'\\' || *b == 0x7f) || bytes.windows(2).any(|w| w[0] == 0xc2 && (0x80..=0x9f).contains(&w[1]))
}

/// Deserialises a JSON document, reporting errors by field path. Text holding a control
/// character it may not hold ([`refused_control`]) is refused on its field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if may_hold_controls(bytes)
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some((path, refusal)) = find_control_character(&value)
    {
        let field = if path.is_empty() { NON_FIELD_ERRORS.to_owned() } else { path };
        return Err(Error::field(field, refusal));
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(field_error)
}

/// Like [`parse`], but control characters in text (keys included) are replaced with U+FFFD
/// instead of refused: for what a device reports of itself, where one odd process name must not
/// cost the whole report.
pub fn parse_replacing_controls<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if !may_hold_controls(bytes) {
        return parse(bytes);
    }
    // A document that is not JSON at all gets the same answer as from `parse`.
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes) else { return parse(bytes) };
    replace_controls(&mut value);
    serde_path_to_error::deserialize(value).map_err(field_error)
}

/// `text` with its control characters but tab, line feed and carriage return replaced by
/// U+FFFD: for text from outside (an error, a provider's answer) on its way into a store, which
/// may refuse some of them (PostgreSQL refuses U+0000 in text and `jsonb`).
pub fn without_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let kept = |c: char| !c.is_control() || matches!(c, '\t' | '\n' | '\r');
    if text.chars().all(kept) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(text.chars().map(|c| if kept(c) { c } else { '\u{fffd}' }).collect())
}

/// [`without_controls`] for every string and key of `value`.
pub fn replace_controls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if let std::borrow::Cow::Owned(clean) = without_controls(text) {
                *text = clean;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(replace_controls),
        serde_json::Value::Object(map) => {
            map.values_mut().for_each(replace_controls);
            // Keys are rebuilt only when one of them has something to replace.
            if map.keys().any(|key| matches!(without_controls(key), std::borrow::Cow::Owned(_))) {
                for (key, item) in std::mem::take(map) {
                    map.insert(without_controls(&key).into_owned(), item);
                }
            }
        }
        _ => {}
    }
}

/// A deserialisation error as the API's field error.
fn field_error(error: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let path = error.path().to_string();
    let inner = error.into_inner();
    let message = inner.to_string();
    let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
    if inner.is_syntax() || inner.is_eof() {
        return Error::field(NON_FIELD_ERRORS, format!("JSON parse error: {message}"));
    }
    if let Some(missing) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
        let field = if path == "." { missing.to_owned() } else { format!("{path}.{missing}") };
        return Error::Validation(FieldErrors::single(field, "This field is required."));
    }
    if let Some(unknown) = message.strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
        // The path already ends with the unknown field's name.
        let field = if path == "." { unknown.to_owned() } else { path };
        return Error::Validation(FieldErrors::single(field, "Unknown field."));
    }
    let field = if path == "." { NON_FIELD_ERRORS.to_owned() } else { path };
    Error::Validation(FieldErrors::single(field, message))
}

/// Limits on a document read into a [`serde_json::Value`], whatever its format.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Values (scalars, lists, maps, keys) in the whole document, counted as often as they are
    /// used: a YAML alias counts its whole anchored subtree again.
    pub max_nodes: usize,
    /// Nesting of lists and maps.
    pub max_depth: usize,
    /// Bytes of text in keys and strings, counted as often as they are used.
    pub max_text_bytes: usize,
}

/// Why a bounded read stopped.
pub const TOO_MANY_VALUES: &str = "too many values";
/// Why a bounded read stopped.
pub const TOO_DEEP: &str = "nested too deeply";
/// Why a bounded read stopped.
pub const TOO_MUCH_TEXT: &str = "too much text";

/// Reads any self-describing document (JSON, YAML) into a value, failing as soon as it exceeds
/// `bounds`, so that a small document that expands (YAML anchors used many times over) costs
/// bounded memory and time. The error message contains one of [`TOO_MANY_VALUES`], [`TOO_DEEP`],
/// [`TOO_MUCH_TEXT`] when a bound was hit (formats may add where).
pub fn bounded_value<'de, D: serde::Deserializer<'de>>(deserializer: D, bounds: Bounds) -> Result<serde_json::Value, D::Error> {
    let budget = Budget { nodes: std::cell::Cell::new(bounds.max_nodes), text: std::cell::Cell::new(bounds.max_text_bytes) };
    serde::de::DeserializeSeed::deserialize(Bounded { budget: &budget, depth_left: bounds.max_depth }, deserializer)
}

struct Budget {
    nodes: std::cell::Cell<usize>,
    text: std::cell::Cell<usize>,
}

#[derive(Clone, Copy)]
struct Bounded<'b> {
    budget: &'b Budget,
    depth_left: usize,
}

impl Bounded<'_> {
    fn node<E: serde::de::Error>(&self) -> Result<(), E> {
        let left = self.budget.nodes.get();
        if left == 0 {
            return Err(E::custom(TOO_MANY_VALUES));
        }
        self.budget.nodes.set(left - 1);
        Ok(())
    }

    fn text<E: serde::de::Error>(&self, text: &str) -> Result<String, E> {
        self.node()?;
        if let Some(refusal) = refused_control(text, TextRole::Value) {
            return Err(E::custom(refusal));
        }
        let left = self.budget.text.get();
        if text.len() > left {
            return Err(E::custom(TOO_MUCH_TEXT));
        }
        self.budget.text.set(left - text.len());
        Ok(text.to_owned())
    }

    fn nested<E: serde::de::Error>(&self) -> Result<Self, E> {
        self.node()?;
        if self.depth_left == 0 {
            return Err(E::custom(TOO_DEEP));
        }
        Ok(Self { budget: self.budget, depth_left: self.depth_left - 1 })
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Bounded<'_> {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// A map key: text only, as JSON requires.
struct Key<'b>(Bounded<'b>);

impl<'de> serde::de::DeserializeSeed<'de> for Key<'_> {
    type Value = String;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for Key<'_> {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a text key")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<String, E> {
        if let Some(refusal) = refused_control(text, TextRole::Name) {
            return Err(E::custom(refusal));
        }
        self.0.text(text)
    }
}

impl<'de> serde::de::Visitor<'de> for Bounded<'_> {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON-compatible value")
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Self::Value, E> {
        self.node()?;
        Ok(value.into())
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
        self.node()?;
        Ok(value.into())
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
        self.node()?;
        Ok(value.into())
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
        self.node()?;
        Ok(serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, serde_json::Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(serde_json::Value::String(self.text(value)?))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.node()?;
        Ok(serde_json::Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        serde::de::DeserializeSeed::deserialize(self, deserializer)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let inner = self.nested()?;
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key_seed(Key(inner))? {
            let value = map.next_value_seed(inner)?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

/// Deserialises a field that may be absent (`None`), `null` (`Some(None)`) or a value, for
/// changes that can clear it: `#[serde(default, deserialize_with = "crate::json::present")]`.
pub fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: String,
        count: Option<u32>,
    }

    fn fields(error: Error) -> Vec<(String, Vec<String>)> {
        match error {
            Error::Validation(errors) => errors.fields().clone().into_iter().collect(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn control_characters_are_refused_except_line_breaks_in_values() {
        use super::{CONTROL_CHARACTER, NULL_CHARACTER, TextRole, refused_control};
        assert_eq!(refused_control("first line\nsecond\tcolumn\r\n", TextRole::Value), None);
        assert_eq!(refused_control("name\n", TextRole::Name), Some(CONTROL_CHARACTER));
        for control in ['\u{1}', '\u{8}', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}'] {
            assert_eq!(refused_control(&format!("a{control}b"), TextRole::Value), Some(CONTROL_CHARACTER), "{:?}", control);
        }
        assert_eq!(refused_control("a\u{1}\u{0}", TextRole::Value), Some(NULL_CHARACTER), "U+0000 is named as such");
        assert_eq!(refused_control("Ünïcödé ✓ text", TextRole::Name), None);
        let body = serde_json::json!({"name": "x", "description": "two\nlines", "attributes": {"notes": ["a\tb"]}});
        assert_eq!(super::find_control_character(&body), None);
        let body = serde_json::json!({"name": "two\nlines"});
        assert_eq!(super::find_control_character(&body), Some(("name".to_owned(), CONTROL_CHARACTER)));
    }

    #[test]
    fn names_the_failing_field() {
        assert_eq!(fields(parse::<Body>(b"{}").unwrap_err())[0].0, "name");
        let wrong_type = fields(parse::<Body>(br#"{"name": "x", "count": "many"}"#).unwrap_err());
        assert_eq!(wrong_type[0].0, "count");
        assert_eq!(fields(parse::<Body>(br#"{"name": "x", "extra": 1}"#).unwrap_err())[0].0, "extra");
        assert_eq!(fields(parse::<Body>(b"{not json").unwrap_err())[0].0, NON_FIELD_ERRORS);
    }

    #[test]
    fn null_characters_are_refused_on_their_field() {
        let refused = fields(parse::<Body>(br#"{"name": "a\u0000b"}"#).unwrap_err());
        assert_eq!(refused, vec![("name".to_owned(), vec![NULL_CHARACTER.to_owned()])]);
        let nested = fields(parse::<serde_json::Value>(br#"{"attributes": {"list": ["ok", "\u0000"]}}"#).unwrap_err());
        assert_eq!(nested[0].0, "attributes.list.1");
        // An escaped backslash followed by "u0000" is six ordinary characters.
        assert_eq!(parse::<Body>(br#"{"name": "a\\u0000"}"#).unwrap().name, "a\\u0000");
        assert!(read("[\"a\\u0000\"]").unwrap_err().contains(NULL_CHARACTER));
    }

    const SMALL: Bounds = Bounds { max_nodes: 50, max_depth: 3, max_text_bytes: 40 };

    fn read(text: &str) -> Result<serde_json::Value, String> {
        bounded_value(&mut serde_json::Deserializer::from_str(text), SMALL).map_err(|e| e.to_string())
    }

    #[test]
    fn bounded_reads_stop_at_each_bound() {
        assert_eq!(read(r#"{"a": [1, 2.5, true, null, "x"]}"#).unwrap(), serde_json::json!({"a": [1, 2.5, true, null, "x"]}));
        assert!(read(&format!("[{}]", vec!["1"; 60].join(","))).unwrap_err().starts_with(TOO_MANY_VALUES));
        assert!(read("[[[[1]]]]").unwrap_err().starts_with(TOO_DEEP));
        assert!(read(&format!(r#"["{}"]"#, "x".repeat(41))).unwrap_err().starts_with(TOO_MUCH_TEXT));
        assert!(read(&format!(r#"{{"{}": 1}}"#, "k".repeat(41))).unwrap_err().starts_with(TOO_MUCH_TEXT), "keys count as text");
    }
}
