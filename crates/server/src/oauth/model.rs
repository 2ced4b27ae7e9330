//! The vocabularies of providers and the redirect URIs a client registers, as values that can
//! only hold what the server accepts.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::text_enum::text_enum;

text_enum!(
    /// Whether the client can keep a secret (RFC 6749 §2.1).
    ClientType {
        Confidential => "confidential",
        Public => "public",
    }
);

text_enum!(
    /// The grants a provider answers; authentik's implicit and hybrid grants are not offered
    /// (OAuth 2.1 removes them).
    GrantType {
        AuthorizationCode => "authorization_code",
        Implicit => "implicit",
        Hybrid => "hybrid",
        RefreshToken => "refresh_token",
        ClientCredentials => "client_credentials",
        DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
    }
);

text_enum!(
    /// How a registered redirect URI is compared with the one a request names.
    MatchingMode {
        Strict => "strict",
        Regex => "regex",
    }
);

text_enum!(
    /// What a registered URI is for.
    RedirectUriType {
        Authorization => "authorization",
        Logout => "logout",
    }
);

text_enum!(
    /// What the `sub` claim holds.
    SubMode {
        HashedUserId => "hashed_user_id",
        UserId => "user_id",
        UserUuid => "user_uuid",
        UserUsername => "user_username",
        UserEmail => "user_email",
        UserUpn => "user_upn",
    }
);

text_enum!(
    /// Whether the issuer is the server's or the provider's own.
    IssuerMode {
        Global => "global",
        PerProvider => "per_provider",
    }
);

text_enum!(
    /// How relying parties hear of a sign-out.
    LogoutMethod {
        Backchannel => "backchannel",
        Frontchannel => "frontchannel",
    }
);

/// The longest redirect URI or pattern accepted.
const LONGEST_URI: usize = 2048;
/// The most redirect URIs one provider registers.
pub const MOST_REDIRECT_URIS: usize = 100;

/// authentik's `RedirectURI`: one registered redirect URI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RedirectUri {
    pub matching_mode: MatchingMode,
    /// The URI, or with `regex` a pattern the whole URI must match.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri_type: Option<RedirectUriType>,
}

impl RedirectUri {
    /// Checks a registration: a strict URI is absolute, without a fragment (RFC 6749 §3.1.2) and
    /// not a script; a pattern compiles within bounds. The message names what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.url.is_empty() {
            return Err("Enter a URL.".into());
        }
        if self.url.len() > LONGEST_URI {
            return Err(format!("Ensure a redirect URI has no more than {LONGEST_URI} characters."));
        }
        match self.matching_mode {
            MatchingMode::Strict => check_requested_redirect(&self.url),
            MatchingMode::Regex => pattern(&self.url).map(|_| ()),
        }
    }

    /// Whether `candidate` is this registration's URI: byte for byte when strict, a whole match
    /// of the pattern when regex.
    pub fn accepts(&self, candidate: &str) -> bool {
        match self.matching_mode {
            MatchingMode::Strict => self.url == candidate,
            // The text matched must be what the browser will be sent to: a URL that a parser
            // reads differently (`\` for `/`, a host ending at `?`) could leave the pattern's
            // host behind.
            MatchingMode::Regex => {
                pattern(&self.url).is_ok_and(|pattern| pattern.is_match(candidate))
                    && url::Url::parse(candidate).is_ok_and(|parsed| parsed.as_str() == candidate)
            }
        }
    }
}

/// An absolute URI people may be sent to: a web address, or a native app's own scheme
/// (RFC 8252), never a script or data, and without a fragment.
pub fn check_redirect_target(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|_| format!("\"{}\" is not an absolute URL.", shorten(text)))?;
    if url.fragment().is_some() {
        return Err("A redirect URI must not contain a fragment (#).".into());
    }
    if matches!(url.scheme(), "javascript" | "data" | "vbscript" | "file" | "blob") {
        return Err(format!("The scheme \"{}\" cannot be a redirect URI.", url.scheme()));
    }
    if matches!(url.scheme(), "http" | "https") && url.host_str().is_none_or(str::is_empty) {
        return Err("A web redirect URI needs a host.".into());
    }
    Ok(())
}

/// Compiled patterns by source: matching a redirect URI is on an unauthenticated path, so each
/// pattern is compiled once per process, not once per request.
static PATTERNS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, regex::Regex>>> =
    std::sync::LazyLock::new(Default::default);
/// More distinct patterns than this and the cache starts again (patterns come from providers).
const MOST_CACHED_PATTERNS: usize = 4096;

/// A registered pattern, anchored at both ends and bounded in size.
fn pattern(source: &str) -> Result<regex::Regex, String> {
    let mut cache = PATTERNS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(compiled) = cache.get(source) {
        return Ok(compiled.clone());
    }
    let compiled = regex::RegexBuilder::new(&format!("^(?:{source})$"))
        .size_limit(1 << 20)
        .nest_limit(50)
        .build()
        .map_err(|_| "This is not a valid regular expression.".to_owned())?;
    if cache.len() >= MOST_CACHED_PATTERNS {
        cache.clear();
    }
    cache.insert(source.to_owned(), compiled.clone());
    Ok(compiled)
}

/// Parameters the server adds to a redirect; a redirect URI that already carries one could make
/// a client read the wrong value.
const ANSWER_PARAMETERS: [&str; 5] = ["code", "state", "iss", "error", "error_description"];

/// Checks a redirect URI a request names (after it matched a registration): a safe target whose
/// query holds none of the parameters the answer adds.
pub fn check_requested_redirect(text: &str) -> Result<(), String> {
    check_redirect_target(text)?;
    let url = url::Url::parse(text).map_err(|_| "The redirect URI is not an absolute URL.".to_owned())?;
    if url.query_pairs().any(|(name, _)| ANSWER_PARAMETERS.contains(&name.as_ref())) {
        return Err("The redirect URI already carries a parameter of the answer (code, state, iss or error).".into());
    }
    Ok(())
}

fn shorten(text: &str) -> String {
    text.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(url: &str) -> RedirectUri {
        RedirectUri { matching_mode: MatchingMode::Strict, url: url.into(), redirect_uri_type: None }
    }

    #[test]
    fn strict_redirect_uris_match_byte_for_byte() {
        let registered = strict("https://app.example/cb");
        assert!(registered.accepts("https://app.example/cb"));
        for other in ["https://app.example/cb/", "https://app.example/cb?x=1", "https://APP.example/cb", "https://app.example/c"] {
            assert!(!registered.accepts(other), "{other}");
        }
    }

    #[test]
    fn a_redirect_pattern_must_match_the_whole_uri() {
        let registered =
            RedirectUri { matching_mode: MatchingMode::Regex, url: r"https://[a-z]+\.app\.example/cb".into(), redirect_uri_type: None };
        assert!(registered.check().is_ok());
        assert!(registered.accepts("https://eu.app.example/cb"));
        assert!(!registered.accepts("https://eu.app.example/cb.evil.example"));
        assert!(!registered.accepts("https://evil.example/?https://eu.app.example/cb"));
    }

    #[test]
    fn registrations_that_could_not_be_trusted_are_refused() {
        for bad in ["", "/relative", "javascript:alert(1)", "data:text/html,x", "https://app.example/cb#frag", "https://"] {
            assert!(strict(bad).check().is_err(), "{bad}");
        }
        for good in ["https://app.example/cb", "http://127.0.0.1:8080/cb", "com.example.app:/oauth2redirect"] {
            assert!(strict(good).check().is_ok(), "{good}");
        }
        let broken = RedirectUri { matching_mode: MatchingMode::Regex, url: "(".into(), redirect_uri_type: None };
        assert!(broken.check().is_err());
    }

    #[test]
    fn a_pattern_matches_only_urls_that_read_the_same_once_parsed() {
        let careful =
            RedirectUri { matching_mode: MatchingMode::Regex, url: r"https://[^/]*\.wiki\.example/cb.*".into(), redirect_uri_type: None };
        assert!(careful.accepts("https://eu.wiki.example/cb"));
        for confusing in
            [r"https://evil.example\.wiki.example/cb", "https://evil.example?.wiki.example/cb", "https://evil.example#.wiki.example/cb"]
        {
            assert!(!careful.accepts(confusing), "{confusing}");
        }
    }

    #[test]
    fn a_requested_redirect_that_a_loose_pattern_matched_is_still_checked() {
        let loose = RedirectUri { matching_mode: MatchingMode::Regex, url: ".*".into(), redirect_uri_type: None };
        for bad in ["javascript:alert(1)", "//evil.example/", "https://app.example/cb#x", "https://app.example/cb?code=forged"] {
            assert!(!loose.accepts(bad) || check_requested_redirect(bad).is_err(), "{bad}");
            assert!(check_requested_redirect(bad).is_err(), "{bad}");
        }
        assert!(check_requested_redirect("https://app.example/cb?tenant=7").is_ok());
    }
}
