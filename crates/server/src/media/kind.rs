//! The image types uploads may hold, recognised from their content, never from their name alone.

use crate::db::text_enum::text_enum;

text_enum!(
    /// An accepted image type, stored by its MIME type.
    ImageKind {
        Png => "image/png",
        Jpeg => "image/jpeg",
        Gif => "image/gif",
        Webp => "image/webp",
        Avif => "image/avif",
        Ico => "image/x-icon",
        Svg => "image/svg+xml",
    }
);

impl ImageKind {
    /// The file name extensions of each type.
    const EXTENSIONS: &'static [(ImageKind, &'static [&'static str])] = &[
        (ImageKind::Png, &["png"]),
        (ImageKind::Jpeg, &["jpg", "jpeg"]),
        (ImageKind::Gif, &["gif"]),
        (ImageKind::Webp, &["webp"]),
        (ImageKind::Avif, &["avif"]),
        (ImageKind::Ico, &["ico"]),
        (ImageKind::Svg, &["svg"]),
    ];

    /// The type a lower-case extension names.
    pub fn from_extension(extension: &str) -> Option<Self> {
        Self::EXTENSIONS.iter().find(|(_, extensions)| extensions.contains(&extension)).map(|(kind, _)| *kind)
    }

    /// Every accepted extension, for messages.
    pub fn extensions() -> String {
        Self::EXTENSIONS.iter().flat_map(|(_, extensions)| extensions.iter().map(|e| format!(".{e}"))).collect::<Vec<_>>().join(", ")
    }

    /// The first extension of this type, for messages.
    pub fn extension(self) -> &'static str {
        Self::EXTENSIONS.iter().find(|(kind, _)| *kind == self).map_or("", |(_, extensions)| extensions[0])
    }

    /// The type `content` holds, from its first bytes (SVG from its markup), or `None` for
    /// anything else, images of other types included.
    pub fn sniff(content: &[u8]) -> Option<Self> {
        let raster = infer::get(content).and_then(|found| match found.mime_type() {
            "image/png" => Some(Self::Png),
            "image/jpeg" => Some(Self::Jpeg),
            "image/gif" => Some(Self::Gif),
            "image/webp" => Some(Self::Webp),
            "image/avif" => Some(Self::Avif),
            "image/vnd.microsoft.icon" | "image/x-icon" => Some(Self::Ico),
            // An SVG with an XML declaration is found as XML: its markup decides below.
            _ => None,
        });
        raster.or_else(|| looks_like_svg(content).then_some(Self::Svg))
    }
}

/// Whether `content` is UTF-8 text whose first element is `<svg`, after an optional byte order
/// mark, XML declaration, comments, processing instructions and a doctype.
fn looks_like_svg(content: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(content) else { return false };
    let mut rest = text.strip_prefix('\u{feff}').unwrap_or(text);
    loop {
        rest = rest.trim_start();
        let skipped = if rest.starts_with("<?") {
            rest.find("?>").map(|end| end + 2)
        } else if rest.starts_with("<!--") {
            rest.find("-->").map(|end| end + 3)
        } else if rest.starts_with("<!DOCTYPE") || rest.starts_with("<!doctype") {
            rest.find('>').map(|end| end + 1)
        } else {
            break;
        };
        match skipped {
            Some(end) => rest = &rest[end..],
            None => return false,
        }
    }
    rest.strip_prefix("<svg").and_then(|after| after.chars().next()).is_some_and(|c| c.is_whitespace() || c == '>' || c == '/')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature and header chunk a PNG starts with.
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00";

    #[test]
    fn images_are_recognised_by_content() {
        assert_eq!(ImageKind::sniff(PNG), Some(ImageKind::Png));
        assert_eq!(ImageKind::sniff(b"GIF89a\x01\x00\x01\x00"), Some(ImageKind::Gif));
        assert_eq!(ImageKind::sniff(&[0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J', b'F', b'I', b'F']), Some(ImageKind::Jpeg));
        assert_eq!(ImageKind::sniff(b"RIFF\x1a\x00\x00\x00WEBPVP8 "), Some(ImageKind::Webp));
        assert_eq!(ImageKind::sniff(&[0, 0, 1, 0, 1, 0, 16, 16, 0, 0]), Some(ImageKind::Ico));
        for svg in
            ["<svg xmlns=\"http://www.w3.org/2000/svg\"/>", "\u{feff}<?xml version=\"1.0\"?>\n<!-- logo -->\n<!DOCTYPE svg>\n<svg>\n</svg>"]
        {
            assert_eq!(ImageKind::sniff(svg.as_bytes()), Some(ImageKind::Svg), "{svg}");
        }
    }

    #[test]
    fn other_content_is_refused_whatever_it_claims() {
        for content in [
            &b"<html><script>alert(1)</script></html>"[..],
            b"<svgx>",
            b"<!-- unterminated <svg>",
            b"%PDF-1.7",
            b"PK\x03\x04",
            b"\x7fELF\x02\x01\x01",
            b"",
            b"just text",
            &[0xff, 0xfe, 0xfd],
        ] {
            assert_eq!(ImageKind::sniff(content), None, "{content:?}");
        }
    }
}
