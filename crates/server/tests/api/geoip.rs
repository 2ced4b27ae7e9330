//! Sign-in locations from a MaxMind-format database. The test writes a tiny database itself
//! (one /24 network) in the MaxMind DB format, so no data file is needed.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

/// MaxMind DB data-section encodings of the few types the test needs.
fn string(text: &str) -> Vec<u8> {
    assert!(text.len() < 29);
    let mut out = vec![(2 << 5) | text.len() as u8];
    out.extend_from_slice(text.as_bytes());
    out
}

fn uint16(value: u16) -> Vec<u8> {
    let mut out = vec![(5 << 5) | 2];
    out.extend_from_slice(&value.to_be_bytes());
    out
}

fn uint32(value: u32) -> Vec<u8> {
    let mut out = vec![(6 << 5) | 4];
    out.extend_from_slice(&value.to_be_bytes());
    out
}

fn uint64(value: u64) -> Vec<u8> {
    // Extended type 9: type bits 0, then 9 - 7 in the next byte.
    let mut out = vec![8, 9 - 7];
    out.extend_from_slice(&value.to_be_bytes());
    out
}

fn array(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![items.len() as u8, 11 - 7];
    for item in items {
        out.extend_from_slice(item);
    }
    out
}

fn map(pairs: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![(7 << 5) | pairs.len() as u8];
    for (key, value) in pairs {
        out.extend(string(key));
        out.extend_from_slice(value);
    }
    out
}

/// An IPv4 database in which `network`/24 is in `city`, `country`.
fn city_database(network: [u8; 3], city: &str, country_code: &str, country: &str) -> Vec<u8> {
    const DEPTH: u32 = 24;
    let node_count = DEPTH;
    let bits: Vec<u32> = network.iter().flat_map(|byte| (0..8).rev().map(move |i| u32::from((byte >> i) & 1))).collect();
    let mut tree = Vec::new();
    for (depth, bit) in bits.iter().enumerate() {
        let depth = depth as u32;
        // The data record lies after the tree and the 16-byte separator.
        let onward = if depth + 1 == DEPTH { node_count + 16 } else { depth + 1 };
        let (left, right) = if *bit == 0 { (onward, node_count) } else { (node_count, onward) };
        tree.extend_from_slice(&left.to_be_bytes()[1..]);
        tree.extend_from_slice(&right.to_be_bytes()[1..]);
    }
    let data = map(&[
        ("city", map(&[("names", map(&[("en", string(city))]))])),
        ("country", map(&[("iso_code", string(country_code)), ("names", map(&[("en", string(country))]))])),
        ("location", map(&[])),
    ]);
    let metadata = map(&[
        ("binary_format_major_version", uint16(2)),
        ("binary_format_minor_version", uint16(0)),
        ("build_epoch", uint64(1_700_000_000)),
        ("database_type", string("GeoLite2-City")),
        ("description", map(&[("en", string("Gatehouse test"))])),
        ("ip_version", uint16(4)),
        ("languages", array(&[string("en")])),
        ("node_count", uint32(node_count)),
        ("record_size", uint16(24)),
    ]);
    let mut file = tree;
    file.extend_from_slice(&[0u8; 16]);
    file.extend(data);
    file.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    file.extend(metadata);
    file
}

#[tokio::test]
async fn sign_ins_are_located_with_a_geoip_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("city.mmdb");
    std::fs::write(&path, city_database([203, 0, 113], "Sydney", "AU", "Australia")).unwrap();
    let app = TestApp::spawn_with(|c| {
        c.events.geoip_path = Some(path.clone());
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    app.superuser("admin@example.com").await;
    for address in ["203.0.113.77", "198.51.100.1"] {
        let response = app
            .client
            .post(app.url("/api/v3/auth/sign_in/"))
            .header("x-forwarded-for", address)
            .json(&json!({"email": "admin@example.com", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let admin = app.sign_in("admin@example.com").await;
    let (_, located) = json(app.get(&admin, "/api/v3/events/events/?action=login&client_ip=203.0.113.77").await).await;
    let geo = &located["results"][0]["context"]["client"]["geo"];
    assert_eq!(geo["city"], "Sydney", "{located}");
    assert_eq!(geo["country"], "AU");
    assert_eq!(geo["country_name"], "Australia");
    let (_, unknown) = json(app.get(&admin, "/api/v3/events/events/?action=login&client_ip=198.51.100.1").await).await;
    assert!(unknown["results"][0]["context"]["client"].get("geo").is_none(), "addresses outside the database have no location");
}

#[tokio::test]
async fn an_unreadable_geoip_database_is_reported_and_sign_in_still_works() {
    let app = TestApp::spawn_with(|c| c.events.geoip_path = Some("/nonexistent/city.mmdb".into())).await;
    app.superuser("admin@example.com").await;
    let admin = app.sign_in("admin@example.com").await;
    let (_, events) = json(app.get(&admin, "/api/v3/events/events/?action=configuration_error").await).await;
    assert_eq!(events["pagination"]["count"], 1);
    assert!(events["results"][0]["context"]["message"].as_str().unwrap().contains("events.geoip_path"));
}
