//! Certificate-key pairs through `/api/v3/crypto/certificatekeypairs/`, checked against OpenSSL:
//! what Gatehouse generates OpenSSL reads, and what OpenSSL makes Gatehouse imports.

use std::path::Path;
use std::process::Command;

use gatehouse::crypto::entities::key_pair;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::support::{Session, TestApp, assert_field_error, assert_forbidden, json, remember_secret};

const BASE: &str = "/api/v3/crypto/certificatekeypairs/";

/// Runs `openssl` with `args` in `dir`; its standard output.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs (Debian's openssl package)");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// OpenSSL's SHA-256 fingerprint of a PEM certificate, as Gatehouse writes fingerprints.
fn openssl_fingerprint(dir: &Path, certificate: &str) -> String {
    std::fs::write(dir.join("fingerprinted.pem"), certificate).unwrap();
    let printed = openssl(dir, &["x509", "-noout", "-fingerprint", "-sha256", "-in", "fingerprinted.pem"]);
    printed.trim().split_once('=').unwrap().1.to_ascii_lowercase()
}

/// Notes a private key so the suite's log check looks for it.
fn remember_key(pem: &str) {
    remember_secret(pem);
    for line in pem.lines().filter(|line| !line.starts_with("-----")) {
        remember_secret(line);
    }
}

async fn data(app: &TestApp, session: &Session, pair: &Value, view: &str) -> String {
    let (status, body) = json(app.get(session, &format!("{BASE}{}/{view}/", pair["pk"].as_str().unwrap())).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_str().unwrap().to_owned()
}

async fn generate(app: &TestApp, session: &Session, body: Value) -> Value {
    let (status, pair) = json(app.post(session, &format!("{BASE}generate/"), body).await).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    pair
}

#[tokio::test]
async fn generated_pairs_are_what_openssl_reads() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let dir = tempfile::tempdir().unwrap();
    for (alg, key_type, extra) in [("ecdsa", "ec", json!({})), ("ed25519", "ed25519", json!({})), ("rsa", "rsa", json!({"key_size": 2048}))]
    {
        let mut request = json!({"common_name": format!("{alg}.example.com"), "subject_alt_name": "sso.example.com, 192.0.2.7", "validity_days": 90, "alg": alg});
        request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let pair = generate(&app, &admin, request).await;
        assert_eq!(pair["name"], format!("{alg}.example.com"));
        assert_eq!(pair["key_type"], key_type);
        assert_eq!(pair["private_key_available"], true);
        assert_eq!(pair["cert_subject"], format!("OU=Self-signed,O=Gatehouse,CN={alg}.example.com"));
        let expiry = chrono::DateTime::parse_from_rfc3339(pair["cert_expiry"].as_str().unwrap()).unwrap();
        let days = (expiry.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
        assert!((89..=90).contains(&days), "{days} days");

        let certificate = data(&app, &admin, &pair, "view_certificate").await;
        let key = data(&app, &admin, &pair, "view_private_key").await;
        remember_key(&key);
        assert_eq!(openssl_fingerprint(dir.path(), &certificate), pair["fingerprint_sha256"], "{alg}");
        std::fs::write(dir.path().join("cert.pem"), &certificate).unwrap();
        std::fs::write(dir.path().join("key.pem"), &key).unwrap();
        let text = openssl(dir.path(), &["x509", "-noout", "-text", "-in", "cert.pem"]);
        assert!(text.contains("DNS:sso.example.com") && text.contains("IP Address:192.0.2.7"), "{text}");
        // The key is the certificate's.
        let from_certificate = openssl(dir.path(), &["x509", "-noout", "-pubkey", "-in", "cert.pem"]);
        let from_key = openssl(dir.path(), &["pkey", "-pubout", "-in", "key.pem"]);
        assert_eq!(from_certificate, from_key, "{alg}");
    }
    let (_, page) = json(app.get(&admin, &format!("{BASE}?has_key=true&key_type=ec&ordering=name")).await).await;
    let names: Vec<&str> = page["results"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Gatehouse Internal JWT Certificate", "ecdsa.example.com"]);
    let (_, page) = json(app.get(&admin, &format!("{BASE}?key_type=rsa&key_type=ed25519&ordering=-name")).await).await;
    let names: Vec<&str> = page["results"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["rsa.example.com", "ed25519.example.com"]);
    assert_field_error(app.get(&admin, &format!("{BASE}?key_type=rsa&key_type=dsa2")).await, "key_type").await;
}

#[tokio::test]
async fn pairs_openssl_made_import_and_a_key_of_another_certificate_is_refused() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "rsa.key",
            "-out",
            "rsa.pem",
            "-days",
            "10",
            "-subj",
            "/O=Example, Inc./CN=imported",
        ],
    );
    openssl(d, &["rsa", "-traditional", "-in", "rsa.key", "-out", "rsa-pkcs1.key"]);
    openssl(d, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec-sec1.key"]);
    let read = |name: &str| std::fs::read_to_string(d.join(name)).unwrap();
    let (certificate, key, pkcs1, sec1) = (read("rsa.pem"), read("rsa.key"), read("rsa-pkcs1.key"), read("ec-sec1.key"));
    for k in [&key, &pkcs1, &sec1] {
        remember_key(k);
    }

    let (status, pair) =
        json(app.post(&admin, BASE, json!({"name": "imported", "certificate_data": certificate, "key_data": key})).await).await;
    assert_eq!(status, StatusCode::CREATED, "{pair}");
    assert_eq!(pair["key_type"], "rsa");
    assert_eq!(pair["cert_subject"], "CN=imported,O=Example\\, Inc.");
    assert_eq!(pair["fingerprint_sha256"], openssl_fingerprint(d, &certificate));
    assert_eq!(pair["private_key_available"], true);
    // PKCS#1 is read too, and kept as PKCS#8.
    let (status, again) =
        json(app.post(&admin, BASE, json!({"name": "pkcs1", "certificate_data": certificate, "key_data": pkcs1})).await).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert!(data(&app, &admin, &again, "view_private_key").await.starts_with("-----BEGIN PRIVATE KEY-----\nMII"));
    // A certificate alone.
    let (status, alone) = json(app.post(&admin, BASE, json!({"name": "alone", "certificate_data": certificate})).await).await;
    assert_eq!(status, StatusCode::CREATED, "{alone}");
    assert_eq!(alone["private_key_available"], false);
    assert_eq!(data(&app, &admin, &alone, "view_private_key").await, "");

    let ec = generate(&app, &admin, json!({"common_name": "other.example.com", "validity_days": 5, "alg": "ecdsa"})).await;
    let other_key = data(&app, &admin, &ec, "view_private_key").await;
    remember_key(&other_key);
    let body = assert_field_error(
        app.post(&admin, BASE, json!({"name": "mixed", "certificate_data": certificate, "key_data": other_key})).await,
        "key_data",
    )
    .await;
    assert!(body["key_data"][0].as_str().unwrap().contains("does not belong"), "{body}");
    let body = assert_field_error(
        app.post(&admin, BASE, json!({"name": "sec1", "certificate_data": certificate, "key_data": sec1})).await,
        "key_data",
    )
    .await;
    assert!(body["key_data"][0].as_str().unwrap().contains("openssl pkcs8"), "{body}");
    assert_field_error(app.post(&admin, BASE, json!({"name": "junk", "certificate_data": "not a certificate"})).await, "certificate_data")
        .await;
    assert_field_error(app.post(&admin, BASE, json!({"name": "imported", "certificate_data": certificate})).await, "name").await;
    let body = assert_field_error(app.post(&admin, BASE, json!({"certificate_data": ""})).await, "name").await;
    assert!(body["certificate_data"].is_array(), "{body}");
    // Nothing half-written: the refused imports left no pair behind.
    let (_, page) = json(app.get(&admin, BASE).await).await;
    assert_eq!(page["pagination"]["count"], 5, "{page}");

    // A new certificate with the pair's key must match it too.
    let pk = pair["pk"].as_str().unwrap();
    let (_, ec_certificate) = (0, data(&app, &admin, &ec, "view_certificate").await);
    let body = assert_field_error(
        app.patch(&admin, &format!("{BASE}{pk}/"), json!({"certificate_data": ec_certificate})).await,
        "certificate_data",
    )
    .await;
    assert!(body["certificate_data"][0].as_str().unwrap().contains("give its key in key_data"), "{body}");
    let (status, replaced) =
        json(app.patch(&admin, &format!("{BASE}{pk}/"), json!({"certificate_data": ec_certificate, "key_data": other_key})).await).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!((replaced["key_type"].as_str(), replaced["fingerprint_sha256"].as_str()), (Some("ec"), ec["fingerprint_sha256"].as_str()));
}

#[tokio::test]
async fn private_keys_are_read_and_replaced_by_superusers_alone() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let every = [
        "authentik_crypto.view_certificatekeypair",
        "authentik_crypto.add_certificatekeypair",
        "authentik_crypto.change_certificatekeypair",
        "authentik_crypto.delete_certificatekeypair",
        "authentik_crypto.view_certificatekeypair_certificate",
        "authentik_crypto.view_certificatekeypair_key",
    ];
    app.user_with("keeper@example.com", &every).await;
    app.user("nobody@example.com", |_| {}).await;
    let admin = app.sign_in("root@example.com").await;
    let keeper = app.sign_in("keeper@example.com").await;
    let nobody = app.sign_in("nobody@example.com").await;

    assert_forbidden(app.get(&nobody, BASE).await).await;
    assert_forbidden(
        app.post(&nobody, &format!("{BASE}generate/"), json!({"common_name": "x.example.com", "validity_days": 1, "alg": "ecdsa"})).await,
    )
    .await;

    let pair = generate(&app, &keeper, json!({"common_name": "keeper.example.com", "validity_days": 1, "alg": "ecdsa"})).await;
    let path = format!("{BASE}{}/", pair["pk"].as_str().unwrap());
    assert!(data(&app, &keeper, &pair, "view_certificate").await.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_forbidden(app.get(&keeper, &format!("{path}view_private_key/")).await).await;
    let key = data(&app, &admin, &pair, "view_private_key").await;
    remember_key(&key);
    let other = generate(&app, &admin, json!({"common_name": "other.example.com", "validity_days": 1, "alg": "ecdsa"})).await;
    let other_certificate = data(&app, &admin, &other, "view_certificate").await;
    assert_forbidden(app.patch(&keeper, &path, json!({"key_data": key})).await).await;
    assert_forbidden(app.patch(&keeper, &path, json!({"certificate_data": other_certificate})).await).await;
    let (status, renamed) = json(app.patch(&keeper, &path, json!({"name": "renamed", "certificate_data": "", "key_data": ""})).await).await;
    assert_eq!((status, renamed["name"].as_str()), (StatusCode::OK, Some("renamed")));
    assert_eq!(renamed["fingerprint_sha256"], pair["fingerprint_sha256"]);
    // A client that PUTs every field back sends the certificate the pair has: no change to it.
    let own_certificate = data(&app, &keeper, &pair, "view_certificate").await;
    let (status, put) = json(app.put(&keeper, &path, json!({"name": "renamed", "certificate_data": own_certificate})).await).await;
    assert_eq!((status, put["private_key_available"].as_bool()), (StatusCode::OK, Some(true)), "{put}");
    // Nor may they learn which pairs exist by asking for keys.
    assert_forbidden(app.get(&keeper, &format!("{BASE}{}/view_private_key/", uuid::Uuid::new_v4())).await).await;

    // Each read is in the audit trail, and the key is sealed at rest.
    let (_, events) = json(app.get(&admin, "/api/v3/events/events/?action=secret_view").await).await;
    let read: Vec<(&str, &str)> = events["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["user"]["email"].as_str().unwrap_or_default(), e["context"]["viewed"].as_str().unwrap_or_default()))
        .collect();
    assert!(read.contains(&("root@example.com", "private_key")) && read.contains(&("keeper@example.com", "certificate")), "{read:?}");
    assert!(!read.contains(&("keeper@example.com", "private_key")), "{read:?}");
    let stored = key_pair::Entity::find().filter(key_pair::Column::Name.eq("renamed")).one(&app.state.db).await.unwrap().unwrap();
    let sealed = stored.private_key_sealed.unwrap();
    assert!(!sealed.contains("PRIVATE") && !key.contains(&sealed), "the key is stored sealed");

    let (status, _) = json(app.delete(&keeper, &path).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&keeper, &path).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_managed_jwt_key_is_made_once_and_kept() {
    let app = TestApp::spawn().await;
    let second = TestApp::spawn_sharing(&app, |_| {}).await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let (status, page) = json(app.get(&admin, &format!("{BASE}?managed=goauthentik.io/crypto/jwt-managed")).await).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["pagination"]["count"], 1, "one key for both processes: {page}");
    let pair = &page["results"][0];
    assert_eq!((pair["key_type"].as_str(), pair["private_key_available"].as_bool()), (Some("ec"), Some(true)));
    let body = assert_field_error(app.delete(&admin, &format!("{BASE}{}/", pair["pk"].as_str().unwrap())).await, "non_field_errors").await;
    assert!(body["non_field_errors"][0].as_str().unwrap().contains("managed"), "{body}");
    drop(second);

    // Two processes starting at once on a database without the key make one between them.
    key_pair::Entity::delete_many().filter(key_pair::Column::Managed.is_not_null()).exec(&app.state.db).await.unwrap();
    let (one, other) = tokio::join!(
        gatehouse::crypto::service::ensure_managed_jwt_key(&app.state, app.state.tenant),
        gatehouse::crypto::service::ensure_managed_jwt_key(&app.state, app.state.tenant)
    );
    assert_eq!(one.unwrap().id, other.unwrap().id);
    let managed = key_pair::Entity::find().filter(key_pair::Column::Managed.is_not_null()).all(&app.state.db).await.unwrap();
    assert_eq!(managed.len(), 1);
}

#[tokio::test]
async fn generation_requests_name_what_is_wrong() {
    let app = TestApp::spawn().await;
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let path = format!("{BASE}generate/");
    let body = assert_field_error(app.post(&admin, &path, json!({})).await, "common_name").await;
    assert!(body["validity_days"].is_array(), "{body}");
    assert_field_error(app.post(&admin, &path, json!({"common_name": "a", "validity_days": 0})).await, "validity_days").await;
    assert_field_error(app.post(&admin, &path, json!({"common_name": "a", "validity_days": 1, "alg": "ed448"})).await, "alg").await;
    assert_field_error(
        app.post(&admin, &path, json!({"common_name": "a", "validity_days": 1, "alg": "rsa", "key_size": 1024})).await,
        "key_size",
    )
    .await;
    assert_field_error(
        app.post(&admin, &path, json!({"common_name": "a", "validity_days": 1, "alg": "ecdsa", "key_size": 2048})).await,
        "key_size",
    )
    .await;
    let (status, _) = json(app.post(&admin, &path, json!({"common_name": "a", "validity_days": 1, "alg": "dsa"})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body = assert_field_error(
        app.post(
            &admin,
            &path,
            json!({"common_name": "a", "validity_days": 1, "alg": "ecdsa", "subject_alt_name": "ok.example.com, café.example.com, -x"}),
        )
        .await,
        "subject_alt_name",
    )
    .await;
    assert_eq!(body["subject_alt_name"].as_array().unwrap().len(), 2, "{body}");
    let (_, page) = json(app.get(&admin, BASE).await).await;
    assert_eq!(page["pagination"]["count"], 1, "only the managed key: {page}");

    // Without alternative names the common name may be any text, as in authentik; once taken it
    // is refused before a key is made.
    let spaced = generate(&app, &admin, json!({"common_name": "Signing key, 2027", "validity_days": 1, "alg": "ecdsa"})).await;
    assert_eq!(spaced["cert_subject"], "OU=Self-signed,O=Gatehouse,CN=Signing key\\, 2027");
    assert_field_error(
        app.post(&admin, &path, json!({"common_name": "Signing key, 2027", "validity_days": 1, "alg": "ecdsa"})).await,
        "common_name",
    )
    .await;

    // A download names the file after the pair, with nothing a header could carry further.
    let pair = generate(
        &app,
        &admin,
        json!({"common_name": "dl.example.com", "subject_alt_name": "dl.example.com", "validity_days": 1, "alg": "ecdsa"}),
    )
    .await;
    let pk = pair["pk"].as_str().unwrap();
    assert_field_error(app.patch(&admin, &format!("{BASE}{pk}/"), json!({"name": "two\r\nlines"})).await, "name").await;
    let (status, _) = json(app.patch(&admin, &format!("{BASE}{pk}/"), json!({"name": "a \"quoted\" name/x"})).await).await;
    assert_eq!(status, StatusCode::OK);
    let response = app.get(&admin, &format!("{BASE}{pk}/view_certificate/?download")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let disposition = response.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert_eq!(disposition, "attachment; filename=\"a__quoted__name_x_certificate.pem\"");
    assert!(response.text().await.unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
}
