//! Who is on the other end of a request and what its client data says: the client address
//! (trusting `X-Forwarded-For` only from configured proxies), browser, OS and device from the
//! user agent, and the location from a MaxMind-format GeoIP database when one is configured.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde_json::{Map, Value, json};

/// The client's address and user agent, and the known-browser mark it presented (unchecked;
/// see `credentials::known_browser`).
#[derive(Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<IpAddr>,
    pub user_agent: String,
    pub known_browser: Option<String>,
}

impl std::fmt::Debug for ClientInfo {
    // The mark is left out: it is a credential of sorts, and logs do not need it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientInfo").field("ip", &self.ip).field("user_agent", &self.user_agent).finish_non_exhaustive()
    }
}

impl ClientInfo {
    /// The address as text, for storage.
    pub fn ip_text(&self) -> Option<String> {
        self.ip.map(|ip| ip.to_string())
    }
}

/// The client address: the peer, unless the peer is a trusted proxy, in which case
/// `X-Forwarded-For` is walked from the right through trusted proxies only, and the first entry
/// that is not a trusted proxy is the client.
///
/// Only the right end of the header is written by proxies we trust; everything to the left of
/// the client's entry is whatever the client sent. So an entry that does not parse stops the
/// walk, and the client is then the last trusted hop reached: skipping it would let a client
/// choose its own address by sending `X-Forwarded-For: <any address>, garbage`. `ip:port` and
/// `[v6]:port` entries count as their address.
///
/// `forwarded_for` holds the values of every `X-Forwarded-For` header, in order; each may list
/// several comma-separated entries.
pub fn client_ip<'a>(peer: Option<IpAddr>, forwarded_for: impl IntoIterator<Item = &'a str>, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer.map(|ip| ip.to_canonical())?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer;
    if !is_trusted(&client) {
        return Some(client);
    }
    let headers: Vec<&str> = forwarded_for.into_iter().collect();
    for entry in headers.iter().rev().flat_map(|value| value.rsplit(',')) {
        let Some(ip) = forwarded_address(entry) else { break };
        client = ip;
        if !is_trusted(&client) {
            break;
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` entry as an address: `ip`, `ip:port`, `[v6]` or `[v6]:port`.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if entry.len() > 64 {
        return None;
    }
    let ip = entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|addr| addr.ip())).or_else(|| {
        entry.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).and_then(|v6| v6.parse::<std::net::Ipv6Addr>().ok()).map(IpAddr::V6)
    })?;
    Some(ip.to_canonical())
}

/// An open GeoIP city database.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl GeoIp {
    /// Opens a `.mmdb` file.
    pub fn open(path: &Path) -> Result<Self, String> {
        maxminddb::Reader::open_readfile(path)
            .map(|reader| Self { reader })
            .map_err(|e| format!("events.geoip_path: cannot open {}: {e}", path.display()))
    }

    /// City and country of an address, when the database knows it.
    pub fn locate(&self, ip: IpAddr) -> Option<Value> {
        let city: maxminddb::geoip2::City = self.reader.lookup(ip).ok()??;
        let english = |names: Option<std::collections::BTreeMap<&str, &str>>| names.and_then(|n| n.get("en").map(|s| s.to_string()));
        let mut location = Map::new();
        if let Some(name) = english(city.city.and_then(|c| c.names)) {
            location.insert("city".into(), Value::String(name));
        }
        if let Some(country) = city.country {
            if let Some(code) = country.iso_code {
                location.insert("country".into(), Value::String(code.to_owned()));
            }
            if let Some(name) = english(country.names) {
                location.insert("country_name".into(), Value::String(name));
            }
        }
        if let Some(place) = city.location
            && let (Some(lat), Some(long)) = (place.latitude, place.longitude)
        {
            location.insert("lat".into(), json!(lat));
            location.insert("long".into(), json!(long));
        }
        (!location.is_empty()).then_some(Value::Object(location))
    }
}

/// The user agent parsed into browser, OS and device.
pub fn parse_user_agent(user_agent: &str) -> Value {
    let parsed = woothee::parser::Parser::new().parse(user_agent);
    match parsed {
        Some(result) => json!({
            "browser": { "family": result.name, "version": result.version },
            "os": { "family": result.os, "version": result.os_version },
            "device": { "category": result.category, "vendor": result.vendor },
        }),
        None => json!({
            "browser": { "family": "UNKNOWN", "version": "UNKNOWN" },
            "os": { "family": "UNKNOWN", "version": "UNKNOWN" },
            "device": { "category": "UNKNOWN", "vendor": "UNKNOWN" },
        }),
    }
}

/// The client data recorded with sign-ins and sessions: the raw and parsed user agent and, when
/// known, the location.
pub fn describe(user_agent: &str, ip: Option<IpAddr>, geoip: Option<&GeoIp>) -> Value {
    let mut client = Map::new();
    client.insert("user_agent".into(), Value::String(user_agent.to_owned()));
    if let Value::Object(parsed) = parse_user_agent(user_agent) {
        client.extend(parsed);
    }
    if let (Some(ip), Some(geoip)) = (ip, geoip)
        && let Some(location) = geoip.locate(ip)
    {
        client.insert("geo".into(), location);
    }
    Value::Object(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_desktop_browser() {
        let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        let parsed = parse_user_agent(ua);
        assert_eq!(parsed["browser"]["family"], "Chrome");
        assert_eq!(parsed["os"]["family"], "Windows 10");
        assert_eq!(parsed["device"]["category"], "pc");
    }

    #[test]
    fn unknown_agents_are_marked_unknown() {
        let described = describe("curl-ish/0", None, None);
        assert_eq!(described["user_agent"], "curl-ish/0");
        for part in ["browser", "os"] {
            assert_eq!(described[part], json!({"family": "UNKNOWN", "version": "UNKNOWN"}), "{described}");
        }
        assert_eq!(described["device"], json!({"category": "UNKNOWN", "vendor": "UNKNOWN"}));
        assert!(described.get("geo").is_none());
    }

    #[test]
    fn forwarded_header_is_ignored_from_untrusted_peers() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(Some(peer), ["1.2.3.4"], &[]), Some(peer));
    }

    #[test]
    fn trusted_proxy_forwards_the_rightmost_untrusted_address() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let got = client_ip(Some(peer), ["6.6.6.6, 198.51.100.7, 10.0.0.5"], &trusted);
        assert_eq!(got, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(client_ip(Some(peer), [], &trusted), Some(peer));
    }

    #[test]
    fn forwarded_entries_that_do_not_parse_stop_the_walk() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let at = |text: &str| Some(text.parse::<IpAddr>().unwrap());
        // The client wrote everything left of what the proxy appended: "unknown" ends the walk at
        // the last trusted hop instead of letting the client's chosen address through.
        assert_eq!(client_ip(Some(peer), ["6.6.6.6, unknown"], &trusted), Some(peer));
        assert_eq!(client_ip(Some(peer), ["6.6.6.6, 10.0.0.7, unknown, 10.0.0.5"], &trusted), at("10.0.0.5"));
        assert_eq!(client_ip(Some(peer), ["6.6.6.6", "unknown"], &trusted), Some(peer), "header lines are one list");
        assert_eq!(client_ip(Some(peer), ["6.6.6.6,"], &trusted), Some(peer), "an empty entry does not parse");
        // Ports are accepted as their address.
        assert_eq!(client_ip(Some(peer), ["6.6.6.6, 198.51.100.7:4711"], &trusted), at("198.51.100.7"));
        assert_eq!(client_ip(Some(peer), ["6.6.6.6, [2001:db8::1]:443"], &trusted), at("2001:db8::1"));
        assert_eq!(client_ip(Some(peer), ["[2001:db8::2]"], &trusted), at("2001:db8::2"));
        // An IPv4 address written as IPv6 is the same address (and the same throttling bucket).
        assert_eq!(client_ip(Some(peer), ["::ffff:198.51.100.8"], &trusted), at("198.51.100.8"));
        // A chain of trusted proxies is walked through.
        assert_eq!(client_ip(Some(peer), ["6.6.6.6, 198.51.100.9, 10.1.1.1, 10.2.2.2"], &trusted), at("198.51.100.9"));
    }
}
