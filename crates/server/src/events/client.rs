//! What a sign-in's client data says: browser, OS and device from the user agent, and the
//! location from a MaxMind-format GeoIP database when one is configured.

use std::net::IpAddr;
use std::path::Path;

use serde_json::{Map, Value, json};

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
        assert!(described["browser"]["family"].is_string());
        assert!(described.get("geo").is_none());
    }
}
