//! Where a flow may send people afterwards: only paths on this server.

/// `next` if it is a same-origin path, `None` otherwise. Refuses scheme-relative (`//host`) and
/// backslash forms (`/\host`) that browsers treat as other origins, and control characters.
pub fn safe_next(next: &str) -> Option<String> {
    let next = next.trim();
    if next.len() > 2048 || !next.starts_with('/') {
        return None;
    }
    let second = next.as_bytes().get(1).copied();
    if matches!(second, Some(b'/') | Some(b'\\')) {
        return None;
    }
    if next.chars().any(|c| c.is_control() || c == '\\') {
        return None;
    }
    Some(next.to_owned())
}

/// The `next` parameter of a query string (`next=%2Fif%2Fuser%2F&...`), decoded.
pub fn next_from_query(query: &str) -> Option<String> {
    url_params(query).into_iter().find(|(k, _)| k == "next").map(|(_, v)| v)
}

/// Decodes `application/x-www-form-urlencoded` pairs.
pub fn url_params(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_paths_pass() {
        assert_eq!(safe_next("/if/user/").as_deref(), Some("/if/user/"));
        assert_eq!(safe_next("/a?b=c").as_deref(), Some("/a?b=c"));
        for bad in
            ["https://evil.example/", "//evil.example/", "/\\evil.example", "\\\\evil", "evil", "javascript:alert(1)", "/\t/evil", ""]
        {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(next_from_query("a=1&next=%2Fif%2Fuser%2F").as_deref(), Some("/if/user/"));
        assert_eq!(
            url_params("uid_field=a%40b.c&password=x+y%"),
            vec![("uid_field".into(), "a@b.c".into()), ("password".into(), "x y%".into())]
        );
        assert_eq!(next_from_query("other=1"), None);
    }
}
