//! The name of an uploaded file: a relative path of safe characters that ends in the extension
//! of an accepted image type.

use std::fmt;

use super::kind::ImageKind;

/// Longest accepted name, in bytes (all its characters are ASCII).
pub const MAX_LEN: usize = 1024;
/// Longest accepted part between slashes.
pub const MAX_PART_LEN: usize = 255;

/// A file name that can only hold a safe relative path: letters, digits, `.`, `-`, `_` and `/`
/// between non-empty parts, no part `.` or `..` nor starting with `.`, no leading or trailing
/// `/`, and an extension naming an accepted image type. Names never reach the storage as
/// paths (objects are stored under random keys), so this guards what people see and link to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileName(String);

impl FileName {
    /// Parses a name, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("File name cannot be empty.".into());
        }
        if text.len() > MAX_LEN {
            return Err(format!("File name too long (max {MAX_LEN} characters)."));
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/')) {
            return Err(
                "File name can only contain letters (a-z, A-Z), numbers (0-9), dots (.), hyphens (-), underscores (_), and forward slashes (/)."
                    .into(),
            );
        }
        if text.starts_with('/') {
            return Err("Absolute paths are not allowed.".into());
        }
        if text.ends_with('/') || text.contains("//") {
            return Err("File name cannot contain empty parts (// or a trailing /).".into());
        }
        for part in text.split('/') {
            if part == ".." {
                return Err("Parent directory references ('..') are not allowed.".into());
            }
            if part.starts_with('.') {
                return Err("Names and folders cannot start with '.'.".into());
            }
            if part.len() > MAX_PART_LEN {
                return Err(format!("Path component too long (max {MAX_PART_LEN} characters)."));
            }
        }
        let extension = text.rsplit_once('.').map(|(_, extension)| extension.to_ascii_lowercase());
        if extension.as_deref().and_then(ImageKind::from_extension).is_none() {
            return Err(format!("File name must end in the extension of an accepted image type ({}).", ImageKind::extensions()));
        }
        Ok(Self(text.to_owned()))
    }

    /// The image type the extension names.
    pub fn kind(&self) -> ImageKind {
        self.0
            .rsplit_once('.')
            .and_then(|(_, extension)| ImageKind::from_extension(&extension.to_ascii_lowercase()))
            .expect("a parsed name ends in an accepted extension")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last part, for `Content-Disposition`.
    pub fn base_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_relative_image_names_are_accepted() {
        for name in ["logo.png", "brand/logo.svg", "flows/2026/background-1.JPG", "a_b-c.webp", "icon.ico"] {
            assert_eq!(FileName::parse(name).unwrap().as_str(), name);
        }
        assert_eq!(FileName::parse("flows/bg.JPEG").unwrap().kind(), ImageKind::Jpeg);
        assert_eq!(FileName::parse("brand/logo.svg").unwrap().base_name(), "logo.svg");
    }

    #[test]
    fn path_traversal_and_hidden_or_odd_names_are_refused() {
        for name in [
            "",
            "../secret_key.png",
            "a/../../b.png",
            "/etc/passwd.png",
            ".hidden.png",
            "a/.b.png",
            "a//b.png",
            "a/",
            "a\\b.png",
            "a b.png",
            "naïve.png",
            "a%2e%2e/b.png",
            "a\0.png",
            "logo",
            "logo.html",
            "logo.png.exe",
            "logo.",
        ] {
            assert!(FileName::parse(name).is_err(), "{name:?} was accepted");
        }
        assert!(FileName::parse(&format!("{}.png", "a".repeat(MAX_PART_LEN))).is_err());
        assert!(FileName::parse(&format!("{}.png", "a/".repeat(600))).is_err());
    }
}
