//! The agent protocol against a running server, as an agent written for authentik speaks it:
//! enrol with an enrollment key, fetch the configuration, check in with facts, enrol again; and
//! every way an agent is refused.

use reqwest::{Method, Response, StatusCode};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::support::{Session, TestApp, assert_field_error, json, remember_secret};

const CONNECTORS: &str = "/api/v3/endpoints/agents/connectors/";
const ENROLL: &str = "/api/v3/endpoints/agents/connectors/enroll/";
const CONFIG: &str = "/api/v3/endpoints/agents/connectors/agent_config/";
const CHECK_IN: &str = "/api/v3/endpoints/agents/connectors/check_in/";
const DEVICES: &str = "/api/v3/endpoints/devices/";

/// A simulated agent: what it holds and how it calls.
struct Agent<'a> {
    app: &'a TestApp,
    serial: String,
    token: Option<String>,
}

impl<'a> Agent<'a> {
    fn new(app: &'a TestApp, serial: &str) -> Self {
        Self { app, serial: serial.to_owned(), token: None }
    }

    async fn enroll_raw(&self, enrollment_key: &str, name: &str) -> Response {
        remember_secret(enrollment_key);
        self.app
            .client
            .post(self.app.url(ENROLL))
            .header("authorization", format!("Bearer {enrollment_key}"))
            .json(&json!({"device_serial": self.serial, "device_name": name}))
            .send()
            .await
            .unwrap()
    }

    async fn enroll(&mut self, enrollment_key: &str, name: &str) {
        let (status, body) = json(self.enroll_raw(enrollment_key, name).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["expires_in"], 0);
        let token = body["token"].as_str().unwrap().to_owned();
        remember_secret(&token);
        self.token = Some(token);
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut request = self
            .app
            .client
            .request(method, self.app.url(path))
            .header("authorization", format!("Bearer+agent {}", self.token.as_deref().unwrap()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }
}

/// Facts as a Linux agent reports them: `uname`, `lsblk`, `ip addr`, `dpkg -l`, `ps` and
/// `getent` output shaped into authentik's `DeviceFacts`, a few kilobytes.
fn linux_facts(serial: &str, version: &str) -> Value {
    let packages: Vec<Value> = [
        "adduser", "apt", "base-files", "bash", "bsdutils", "ca-certificates", "coreutils", "curl", "dash", "debconf", "dpkg", "e2fsprogs",
        "findutils", "gcc-12-base", "gpgv", "grep", "gzip", "hostname", "init-system-helpers", "libc6", "libssl3", "login", "mount",
        "ncurses-base", "openssh-server", "openssl", "passwd", "perl-base", "procps", "sed", "sudo", "systemd", "tar", "tzdata", "util-linux",
        "zlib1g",
    ]
    .iter()
    .enumerate()
    .map(|(i, name)| json!({"name": name, "version": format!("1.{i}.0-1ubuntu0.{i}"), "source": "dpkg", "path": format!("/usr/share/doc/{name}")}))
    .collect();
    let processes: Vec<Value> =
        ["systemd", "kthreadd", "rcu_gp", "sshd", "cron", "dbus-daemon", "systemd-journald", "systemd-logind", "agetty", "ak-sysd"]
            .iter()
            .enumerate()
            .map(|(i, name)| json!({"id": i + 1, "name": name, "user": if i < 8 { "root" } else { "ak" }}))
            .collect();
    json!({
        "os": {"family": "linux", "name": "Ubuntu", "version": version, "arch": "amd64"},
        "disks": [
            {"name": "/dev/nvme0n1p2", "mountpoint": "/", "label": "root", "capacity_total_bytes": 511_101_108_224_i64, "capacity_used_bytes": 91_203_485_696_i64, "encryption_enabled": true},
            {"name": "/dev/nvme0n1p1", "mountpoint": "/boot/efi", "capacity_total_bytes": 536_834_048, "capacity_used_bytes": 6_422_528},
        ],
        "network": {
            "hostname": "build-07",
            "firewall_enabled": true,
            "interfaces": [
                {"name": "lo", "hardware_address": "00:00:00:00:00:00", "ip_addresses": ["127.0.0.1", "::1"]},
                {"name": "enp3s0", "hardware_address": "3c:7c:3f:1e:9a:01", "ip_addresses": ["192.0.2.17", "fe80::3e7c:3fff:fe1e:9a01"], "dns_servers": ["192.0.2.1"]},
            ],
            "gateway": "192.0.2.1",
        },
        "hardware": {"model": "ThinkStation P3", "manufacturer": "LENOVO", "serial": serial, "cpu_name": "13th Gen Intel(R) Core(TM) i7-13700", "cpu_count": 24, "memory_bytes": 68_719_476_736_i64},
        "software": packages,
        "processes": processes,
        "users": [{"id": "0", "username": "root", "name": "root", "home": "/root"}, {"id": "1000", "username": "ak", "name": "Ada King", "home": "/home/ak"}],
        "groups": [{"id": "0", "name": "root"}, {"id": "27", "name": "sudo"}, {"id": "1000", "name": "ak"}],
        "vendor": {"goauthentik.io/platform": {"agent_version": "0.23.0", "ssh_host_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7mVn0y2f4Xb4k0QwGxg build-07"]}},
    })
}

/// A superuser's session, an agent connector with `settings` and the key of an enrollment token
/// for it.
async fn connector_with_token(app: &TestApp, settings: Value) -> (Session, Value, String) {
    app.superuser("root@example.com").await;
    let admin = app.sign_in("root@example.com").await;
    let mut body = json!({"name": "Workstations"});
    body.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
    let (status, connector) = json(app.post(&admin, CONNECTORS, body).await).await;
    assert_eq!(status, StatusCode::CREATED, "{connector}");
    let (_, token) = json(
        app.post(
            &admin,
            "/api/v3/endpoints/agents/enrollment_tokens/",
            json!({"name": "rollout", "connector": connector["connector_uuid"]}),
        )
        .await,
    )
    .await;
    let (_, viewed) = json(
        app.get(&admin, &format!("/api/v3/endpoints/agents/enrollment_tokens/{}/view_key/", token["token_uuid"].as_str().unwrap())).await,
    )
    .await;
    let key = viewed["key"].as_str().unwrap().to_owned();
    remember_secret(&key);
    (admin, connector, key)
}

#[tokio::test]
async fn an_agent_enrols_fetches_its_configuration_checks_in_and_enrols_again() {
    let app = TestApp::spawn().await;
    let (admin, connector, key) = connector_with_token(&app, json!({"refresh_interval": "minutes=15", "nss_uid_offset": 5000})).await;
    let mut agent = Agent::new(&app, "PF3ZK9QX");
    agent.enroll(&key, "build-07").await;
    let first_token = agent.token.clone().unwrap();
    assert!(first_token.starts_with("gatehouse_dev_"), "device tokens are in the checksummed key format");

    let (status, config) = json(agent.call(Method::GET, CONFIG, None).await).await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(
        (&config["refresh_interval"], &config["nss_uid_offset"], &config["nss_gid_offset"]),
        (&json!(900), &json!(5000), &json!(1000))
    );
    assert_eq!(config["jwks_challenge"], Value::Null);
    assert_eq!(config["license_status"], Value::Null);
    assert!(config["system_config"]["capabilities"].is_array(), "{config}");
    // The keys device users' tokens will be signed with: the server's managed key.
    let (_, managed) = json(app.get(&admin, "/api/v3/crypto/certificatekeypairs/?managed=goauthentik.io/crypto/jwt-managed").await).await;
    let jwk = &config["jwks_auth"]["keys"][0];
    assert_eq!((&jwk["use"], jwk["kid"].as_str().is_some()), (&json!("sig"), true), "{config}");
    assert_eq!(managed["pagination"]["count"], 1, "{managed}");

    let facts = linux_facts("PF3ZK9QX", "24.04.3 LTS (Noble Numbat)");
    assert!(facts.to_string().len() > 3000, "a realistic report is a few kilobytes");
    let response = agent.call(Method::POST, CHECK_IN, Some(facts.clone())).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let (_, devices) = json(app.get(&admin, DEVICES).await).await;
    assert_eq!(devices["pagination"]["count"], 1, "{devices}");
    let device = &devices["results"][0];
    assert_eq!(device["device_uuid"], config["device_id"]);
    assert_eq!((&device["name"], &device["identifier"]), (&json!("build-07"), &json!("PF3ZK9QX")));
    assert_eq!(device["facts"]["vendor"], "goauthentik.io/@merged");
    assert_eq!(device["facts"]["data"]["os"]["version"], "24.04.3 LTS (Noble Numbat)");
    assert_eq!(device["facts"]["data"]["software"].as_array().unwrap().len(), facts["software"].as_array().unwrap().len());
    let path = format!("{DEVICES}{}/", device["device_uuid"].as_str().unwrap());
    let (_, details) = json(app.get(&admin, &path).await).await;
    assert_eq!(details["connections"], json!([connector["connector_uuid"]]), "{details}");
    assert_eq!(details["connections_obj"][0]["latest_snapshot"]["vendor"], "goauthentik.io/platform");
    assert_eq!(details["connections_obj"][0]["connector_obj"]["name"], "Workstations");
    let (_, summary) = json(app.get(&admin, &format!("{DEVICES}summary/")).await).await;
    assert_eq!(summary, json!({"total_count": 1, "unreachable_count": 0, "outdated_agent_count": 0}));

    // A newer report wins where it says something.
    let newer = linux_facts("PF3ZK9QX", "24.04.4 LTS (Noble Numbat)");
    assert_eq!(agent.call(Method::POST, CHECK_IN, Some(newer)).await.status(), StatusCode::NO_CONTENT);
    let (_, details) = json(app.get(&admin, &path).await).await;
    assert_eq!(details["facts"]["data"]["os"]["version"], "24.04.4 LTS (Noble Numbat)");

    // Enrolling again (a reinstalled agent) keeps the device, its name and its facts, and ends
    // the earlier token at once.
    agent.enroll(&key, "renamed-host").await;
    assert_ne!(agent.token.as_deref(), Some(first_token.as_str()));
    assert_eq!(agent.call(Method::GET, CONFIG, None).await.status(), StatusCode::OK);
    let old = Agent { app: &app, serial: agent.serial.clone(), token: Some(first_token) };
    assert_eq!(old.call(Method::GET, CONFIG, None).await.status(), StatusCode::FORBIDDEN);
    let (_, devices) = json(app.get(&admin, DEVICES).await).await;
    assert_eq!((&devices["pagination"]["count"], &devices["results"][0]["name"]), (&json!(1), &json!("build-07")), "{devices}");

    // Deleting the device refuses its agent from the next call.
    let (status, _) = json(app.delete(&admin, &path).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(agent.call(Method::POST, CHECK_IN, Some(json!({}))).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn agents_are_refused_alike_whatever_is_wrong() {
    let app = TestApp::spawn().await;
    let (admin, connector, key) = connector_with_token(&app, json!({})).await;
    let mut agent = Agent::new(&app, "SERIAL-1");
    agent.enroll(&key, "host-1").await;
    let device_token = agent.token.clone().unwrap();

    // 403 whatever is wrong, as authentik answers agents.
    let refused = |response: Response| async move {
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        body
    };
    // No header, the wrong scheme, the wrong kind of key, a mistyped key.
    let bare = app.client.get(app.url(CONFIG)).send().await.unwrap();
    let reference = refused(bare).await;
    let unknown = gatehouse::tokens::key::SecretKey::generate(gatehouse::tokens::key::KeyKind::Device);
    for header in [
        format!("Bearer {device_token}"),
        format!("Bearer+agent {key}"),
        format!("Bearer+agent {}", unknown.expose()),
        "Bearer+agent gatehouse_dev_nonsense".to_owned(),
        "Bearer+agent ".to_owned(),
    ] {
        let response = app.client.get(app.url(CONFIG)).header("authorization", header).send().await.unwrap();
        assert_eq!(refused(response).await, reference, "every refusal reads the same");
    }
    // A device key does not enrol, nor does a mistyped enrollment key.
    refused(Agent::new(&app, "SERIAL-2").enroll_raw(&device_token, "host-2").await).await;
    refused(Agent::new(&app, "SERIAL-2").enroll_raw(&format!("{key}x"), "host-2").await).await;

    // A disabled connector refuses its agents and its enrollment tokens.
    let connector_path = format!("{CONNECTORS}{}/", connector["connector_uuid"].as_str().unwrap());
    let (status, _) = json(app.patch(&admin, &connector_path, json!({"enabled": false})).await).await;
    assert_eq!(status, StatusCode::OK);
    refused(agent.call(Method::GET, CONFIG, None).await).await;
    refused(Agent::new(&app, "SERIAL-3").enroll_raw(&key, "host-3").await).await;
    let (status, _) = json(app.patch(&admin, &connector_path, json!({"enabled": true})).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(agent.call(Method::GET, CONFIG, None).await.status(), StatusCode::OK);

    // An expired enrollment token no longer enrols; an expired device is refused.
    let (_, tokens) = json(app.get(&admin, "/api/v3/endpoints/agents/enrollment_tokens/").await).await;
    let token_path = format!("/api/v3/endpoints/agents/enrollment_tokens/{}/", tokens["results"][0]["token_uuid"].as_str().unwrap());
    let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let (status, _) = json(app.patch(&admin, &token_path, json!({"expiring": true, "expires": past})).await).await;
    assert_eq!(status, StatusCode::OK);
    refused(Agent::new(&app, "SERIAL-4").enroll_raw(&key, "host-4").await).await;
    let (_, devices) = json(app.get(&admin, DEVICES).await).await;
    let device_path = format!("{DEVICES}{}/", devices["results"][0]["device_uuid"].as_str().unwrap());
    let (status, _) = json(app.patch(&admin, &device_path, json!({"expiring": true, "expires": past})).await).await;
    assert_eq!(status, StatusCode::OK);
    refused(agent.call(Method::GET, CONFIG, None).await).await;
    // None of the refused enrolments made a device.
    let (_, devices) = json(app.get(&admin, DEVICES).await).await;
    assert_eq!(devices["pagination"]["count"], 1, "{devices}");
}

#[tokio::test]
async fn a_new_serial_under_a_taken_name_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let (admin, _, key) = connector_with_token(&app, json!({})).await;
    Agent::new(&app, "SERIAL-A").enroll(&key, "shared-name").await;
    let response = Agent::new(&app, "SERIAL-B").enroll_raw(&key, "shared-name").await;
    assert_field_error(response, "device_name").await;
    for body in [json!({"device_serial": "", "device_name": "x"}), json!({"device_name": "x"})] {
        let response = app.client.post(app.url(ENROLL)).header("authorization", format!("Bearer {key}")).json(&body).send().await.unwrap();
        assert_field_error(response, "device_serial").await;
    }
    let (_, devices) = json(app.get(&admin, DEVICES).await).await;
    assert_eq!(devices["pagination"]["count"], 1, "{devices}");
}

#[tokio::test]
async fn agents_enrolling_one_serial_at_once_make_one_device() {
    let app = TestApp::spawn().await;
    let (admin, _, key) = connector_with_token(&app, json!({})).await;
    let agents: Vec<Agent> = (0..8).map(|_| Agent::new(&app, "TWIN-SERIAL")).collect();
    let responses = futures_util::future::join_all(agents.iter().map(|agent| agent.enroll_raw(&key, "twin"))).await;
    let mut tokens = Vec::new();
    for response in responses {
        let (status, body) = json(response).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = body["token"].as_str().unwrap().to_owned();
        remember_secret(&token);
        tokens.push(token);
    }
    let (_, devices) = json(app.get(&admin, DEVICES).await).await;
    assert_eq!(devices["pagination"]["count"], 1, "{devices}");
    // Each enrolment replaced the one before it: exactly one token works.
    let mut working = 0;
    for token in tokens {
        let agent = Agent { app: &app, serial: "TWIN-SERIAL".into(), token: Some(token) };
        if agent.call(Method::GET, CONFIG, None).await.status() == StatusCode::OK {
            working += 1;
        }
    }
    assert_eq!(working, 1);
}

#[tokio::test]
async fn a_check_in_out_of_bounds_is_refused_whole_and_facts_expire() {
    let app = TestApp::spawn().await;
    let (admin, _, key) = connector_with_token(&app, json!({"snapshot_expiry": "seconds=2"})).await;
    let mut agent = Agent::new(&app, "SERIAL-X");
    agent.enroll(&key, "host-x").await;

    let mut facts = linux_facts("SERIAL-X", "24.04");
    facts["software"][3]["name"] = json!("");
    assert_field_error(agent.call(Method::POST, CHECK_IN, Some(facts)).await, "software.3.name").await;
    let bad_family = json!({"os": {"family": "plan9", "arch": "amd64"}});
    assert_eq!(agent.call(Method::POST, CHECK_IN, Some(bad_family)).await.status(), StatusCode::BAD_REQUEST);
    let huge = json!({"vendor": {"blob": "x".repeat(70 * 1024)}});
    assert_field_error(agent.call(Method::POST, CHECK_IN, Some(huge)).await, "vendor").await;
    let too_large = json!({"vendor": {"blob": "x".repeat(2 * 1024 * 1024)}});
    assert_eq!(agent.call(Method::POST, CHECK_IN, Some(too_large)).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (_, devices) = json(app.get(&admin, DEVICES).await).await;
    assert_eq!(devices["results"][0]["facts"], Value::Null, "nothing of a refused report was kept: {devices}");

    assert_eq!(agent.call(Method::POST, CHECK_IN, Some(linux_facts("SERIAL-X", "24.04"))).await.status(), StatusCode::NO_CONTENT);
    let (_, devices) = json(app.get(&admin, DEVICES).await).await;
    assert_eq!(devices["results"][0]["facts"]["data"]["os"]["family"], "linux");
    // Past the connector's snapshot_expiry the report no longer counts, and the purge removes it.
    let started = std::time::Instant::now();
    loop {
        let (_, devices) = json(app.get(&admin, DEVICES).await).await;
        if devices["results"][0]["facts"].is_null() {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the report did not expire");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(gatehouse::endpoints::devices::purge_expired(&app.state.db).await.unwrap(), 1);
    let (_, summary) = json(app.get(&admin, &format!("{DEVICES}summary/")).await).await;
    assert_eq!((&summary["total_count"], &summary["unreachable_count"]), (&json!(1), &json!(1)), "{summary}");
}

#[tokio::test]
async fn a_process_name_with_control_characters_does_not_cost_the_report() {
    let app = TestApp::spawn().await;
    let (admin, connector, key) = connector_with_token(&app, json!({})).await;
    let mut agent = Agent::new(&app, "SERIAL-C");
    agent.enroll(&key, "host-c").await;
    let mut facts = linux_facts("SERIAL-C", "24.04");
    facts["processes"][0]["name"] = json!("evil\u{1b}[2Jname\u{7}");
    assert_eq!(agent.call(Method::POST, CHECK_IN, Some(facts)).await.status(), StatusCode::NO_CONTENT);
    let (_, devices) = json(app.get(&admin, DEVICES).await).await;
    assert_eq!(devices["results"][0]["facts"]["data"]["processes"][0]["name"], "evil\u{fffd}[2Jname\u{fffd}");
    // Each check-in replaces the connection's report: the facts are the newest, and only one is kept.
    assert_eq!(agent.call(Method::POST, CHECK_IN, Some(linux_facts("SERIAL-C", "26.04"))).await.status(), StatusCode::NO_CONTENT);
    let (_, devices) = json(app.get(&admin, DEVICES).await).await;
    assert_eq!(devices["results"][0]["facts"]["data"]["os"]["version"], "26.04");
    let kept = gatehouse::endpoints::entities::snapshot::Entity::find().all(&app.state.db).await.unwrap();
    assert_eq!(kept.len(), 1);
    // The connector's used_by names the device whose connection goes with it.
    let (_, used) = json(app.get(&admin, &format!("{CONNECTORS}{}/used_by/", connector["connector_uuid"].as_str().unwrap())).await).await;
    let named: Vec<(&str, &str)> =
        used.as_array().unwrap().iter().map(|u| (u["model_name"].as_str().unwrap(), u["action"].as_str().unwrap())).collect();
    assert_eq!(named, [("enrollmenttoken", "cascade"), ("deviceconnection", "cascade")], "{used}");
}

#[tokio::test]
async fn agents_of_a_disabled_connector_do_not_use_up_their_address_allowance() {
    let app = TestApp::spawn_with(|c| c.sign_in.max_failures_per_ip_hour = 5).await;
    let (admin, connector, key) = connector_with_token(&app, json!({})).await;
    let mut agent = Agent::new(&app, "SERIAL-R");
    agent.enroll(&key, "host-r").await;
    let path = format!("{CONNECTORS}{}/", connector["connector_uuid"].as_str().unwrap());
    let (status, _) = json(app.patch(&admin, &path, json!({"enabled": false})).await).await;
    assert_eq!(status, StatusCode::OK);
    // Its agents keep calling every refresh: refused, never throttled, and the address keeps
    // its allowance for when the connector is enabled again.
    for _ in 0..12 {
        assert_eq!(agent.call(Method::GET, CONFIG, None).await.status(), StatusCode::FORBIDDEN);
    }
    let (status, _) = json(app.patch(&admin, &path, json!({"enabled": true})).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(agent.call(Method::GET, CONFIG, None).await.status(), StatusCode::OK);
    // Keys that were never issued are guesses: the ceiling stops them.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let guess = gatehouse::tokens::key::SecretKey::generate(gatehouse::tokens::key::KeyKind::Device);
        let guesser = Agent { app: &app, serial: "x".into(), token: Some(guess.expose().to_owned()) };
        statuses.push(guesser.call(Method::GET, CONFIG, None).await.status());
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
}

/// A Unix account as the agent's directory component makes it (authentik's section 1.5): the
/// `uidNumber` attribute wins, else the connector's offset plus the user's pk; the primary gid
/// is `gidNumber`, else the uid.
fn unix_account(user: &Value, uid_offset: i64) -> (String, i64, i64) {
    let number = |key: &str| user["attributes"][key].as_str().and_then(|v| v.parse::<i64>().ok());
    let uid = number("uidNumber").unwrap_or(uid_offset + user["pk"].as_i64().unwrap());
    (user["username"].as_str().unwrap().to_owned(), uid, number("gidNumber").unwrap_or(uid))
}

/// A Unix group as the agent makes it: `gidNumber` wins, else the offset plus `num_pk`.
fn unix_group(group: &Value, gid_offset: i64) -> (String, i64) {
    let gid = group["attributes"]["gidNumber"].as_str().and_then(|v| v.parse::<i64>().ok());
    (group["name"].as_str().unwrap().to_owned(), gid.unwrap_or(gid_offset + group["num_pk"].as_i64().unwrap()))
}

impl Agent<'_> {
    /// Asks for a device authentication (`auth_ia/`): the path its browser window opens.
    async fn start_authentication(&self) -> String {
        let (status, body) = json(self.call(Method::POST, "/api/v3/endpoints/agents/connectors/auth_ia/", None).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let url = body["url"].as_str().unwrap().to_owned();
        assert!(url.starts_with(&self.app.url("/endpoints/agent/authenticate/")), "{url}");
        url.trim_start_matches(&self.app.url("")).to_owned()
    }

    /// Every page of `path` (`/core/users/` or `/core/groups/`), as the directory component
    /// pages through them.
    async fn read_all(&self, path: &str, include: &str) -> Vec<Value> {
        let mut all = Vec::new();
        for page in 1.. {
            let (status, body) = json(self.call(Method::GET, &format!("{path}?{include}=true&page={page}&page_size=2"), None).await).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            all.extend(body["results"].as_array().unwrap().iter().cloned());
            if body["pagination"]["next"] == 0 {
                break;
            }
        }
        all
    }
}

#[tokio::test]
async fn an_agent_reads_only_the_accounts_its_device_admits_and_maps_them_to_unix_ids() {
    let app = TestApp::spawn().await;
    let (admin, _, key) = connector_with_token(&app, json!({"nss_uid_offset": 5000, "nss_gid_offset": 7000})).await;
    let mut agent = Agent::new(&app, "UNIX-01");
    agent.enroll(&key, "shell-01").await;
    let (_, config) = json(agent.call(Method::GET, CONFIG, None).await).await;
    let device = config["device_id"].as_str().unwrap().to_owned();
    let (uid_offset, gid_offset) = (config["nss_uid_offset"].as_i64().unwrap(), config["nss_gid_offset"].as_i64().unwrap());

    // No binding admits nobody: the agent sees an empty directory.
    assert!(agent.read_all("/api/v3/core/users/", "include_groups").await.is_empty());
    assert!(agent.read_all("/api/v3/core/groups/", "include_users").await.is_empty());

    let ada = app.user_with("ada@example.com", &["authentik_core.view_user"]).await;
    let bob = app.user("bob@example.com", |_| {}).await;
    let cyd = app.user("cyd@example.com", |_| {}).await;
    let eve = app.user("eve@example.com", |u| u.is_active = false).await;
    app.user("dee@example.com", |_| {}).await;
    let (_, unix) = json(app.post(&admin, "/api/v3/core/groups/", json!({"name": "unix", "users": [bob.id, eve.id]})).await).await;
    let (_, wheel) = json(
        app.post(
            &admin,
            "/api/v3/core/groups/",
            json!({"name": "unix-admins", "users": [cyd.id], "parents": [unix["pk"]], "attributes": {"gidNumber": "27"}}),
        )
        .await,
    )
    .await;
    let (status, _) =
        json(app.patch(&admin, &format!("/api/v3/core/users/{}/", ada.id), json!({"attributes": {"uidNumber": "20001"}})).await).await;
    assert_eq!(status, StatusCode::OK);
    // Ada is bound to the device itself; the group `unix` (with `unix-admins` below it) to the
    // device's access group.
    let (_, servers) = json(app.post(&admin, "/api/v3/endpoints/device_access_groups/", json!({"name": "Servers"})).await).await;
    let (status, _) = json(app.patch(&admin, &format!("{DEVICES}{device}/"), json!({"access_group": servers["pbm_uuid"]})).await).await;
    assert_eq!(status, StatusCode::OK);
    let bindings = "/api/v3/endpoints/device_bindings/";
    let (status, for_ada) = json(app.post(&admin, bindings, json!({"target": device, "user": ada.id, "order": 0})).await).await;
    assert_eq!(status, StatusCode::CREATED, "{for_ada}");
    let (status, _) = json(app.post(&admin, bindings, json!({"target": servers["pbm_uuid"], "group": unix["pk"], "order": 0})).await).await;
    assert_eq!(status, StatusCode::CREATED);

    let users = agent.read_all("/api/v3/core/users/", "include_groups").await;
    let mut accounts: Vec<(String, i64, i64)> = users.iter().map(|u| unix_account(u, uid_offset)).collect();
    accounts.sort();
    let expected_uid = |user: &gatehouse::accounts::entities::user::Model| uid_offset + user.id;
    assert_eq!(
        accounts,
        vec![
            ("ada@example.com".to_owned(), 20001, 20001),
            ("bob@example.com".to_owned(), expected_uid(&bob), expected_uid(&bob)),
            ("cyd@example.com".to_owned(), expected_uid(&cyd), expected_uid(&cyd)),
        ],
        "the inactive member, the unbound account and the superuser stay out"
    );
    assert!(users.iter().all(|u| u["permissions"] == json!([])), "an agent reads no rights: {users:?}");

    let groups = agent.read_all("/api/v3/core/groups/", "include_users").await;
    let mut unix_groups: Vec<(String, i64)> = groups.iter().map(|g| unix_group(g, gid_offset)).collect();
    unix_groups.sort();
    assert_eq!(unix_groups, vec![("unix".to_owned(), gid_offset + unix["num_pk"].as_i64().unwrap()), ("unix-admins".to_owned(), 27)]);
    let unix_seen = groups.iter().find(|g| g["name"] == "unix").unwrap();
    assert_eq!(unix_seen["users"], json!([bob.id]), "members the device does not admit stay out: {unix_seen}");
    assert_eq!(unix_seen["children"], wheel["pk"].as_str().map(|pk| json!([pk])).unwrap());

    // The agent learns nothing of the memberships of accounts its device does not admit.
    let (_, eves) = json(agent.call(Method::GET, "/api/v3/core/groups/?members_by_username=eve@example.com", None).await).await;
    assert_eq!(eves["pagination"]["count"], 0, "{eves}");
    let (_, bobs) = json(agent.call(Method::GET, "/api/v3/core/groups/?members_by_username=bob@example.com", None).await).await;
    assert_eq!(bobs["pagination"]["count"], 1, "{bobs}");

    // A disabled binding, and one that expired, admit nobody.
    let for_ada = format!("{bindings}{}/", for_ada["pk"].as_str().unwrap());
    let pks = |users: &[Value]| users.iter().map(|u| u["pk"].as_i64().unwrap()).collect::<std::collections::BTreeSet<i64>>();
    let (status, _) = json(app.patch(&admin, &for_ada, json!({"enabled": false})).await).await;
    assert_eq!(status, StatusCode::OK);
    let users = agent.read_all("/api/v3/core/users/", "include_groups").await;
    assert!(!pks(&users).contains(&ada.id), "a disabled binding still admitted: {users:?}");
    let (status, _) =
        json(app.patch(&admin, &for_ada, json!({"enabled": true, "expiring": true, "expires": "2020-01-01T00:00:00Z"})).await).await;
    assert_eq!(status, StatusCode::OK);
    let users = agent.read_all("/api/v3/core/users/", "include_groups").await;
    assert_eq!(pks(&users), [bob.id, cyd.id].into(), "an expired binding still admitted: {users:?}");

    // A negated binding admits every active account but the one it names.
    let dee = app.user("dee2@example.com", |_| {}).await;
    let (status, negated) =
        json(app.post(&admin, bindings, json!({"target": device, "user": dee.id, "order": 1, "negate": true})).await).await;
    assert_eq!(status, StatusCode::CREATED, "{negated}");
    let users = agent.read_all("/api/v3/core/users/", "include_groups").await;
    let all_active: std::collections::BTreeSet<i64> = gatehouse::accounts::entities::user::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .filter(|u| u.is_active && u.id != dee.id)
        .map(|u| u.id)
        .collect();
    assert_eq!(pks(&users), all_active, "everyone active but dee");
    let (status, _) = json(app.delete(&admin, &format!("{bindings}{}/", negated["pk"].as_str().unwrap())).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // The device key reads the lists and nothing else.
    let response = agent.call(Method::GET, &format!("/api/v3/core/users/{}/", bob.id), None).await;
    assert!(matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN), "{}", response.status());
    let response = agent.call(Method::GET, "/api/v3/core/users/me/", None).await;
    assert!(matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN), "{}", response.status());
    let stranger = Agent { app: &app, serial: "x".into(), token: Some("gatehouse_dev_not-a-key".into()) };
    assert_eq!(stranger.call(Method::GET, "/api/v3/core/users/", None).await.status(), StatusCode::FORBIDDEN);

    // A deleted device reads nothing.
    let (status, _) = json(app.delete(&admin, &format!("{DEVICES}{device}/")).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(agent.call(Method::GET, "/api/v3/core/users/", None).await.status(), StatusCode::FORBIDDEN);
}

/// The `X-Authentik-Platform-Auth-DTH` an agent's browser window sends: the SHA-256 of its
/// device key in hex.
fn key_hash(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// Opens `path` as the agent's browser window: with the key hash, holding `browser`'s cookies,
/// following nothing.
async fn window(app: &TestApp, browser: &mut crate::flows::Browser<'_>, path: &str, hash: Option<&str>) -> Response {
    let mut request = app.client.get(app.url(path));
    if let Some(hash) = hash {
        request = request.header("x-authentik-platform-auth-dth", hash);
    }
    browser.send(request).await
}

fn location_of(response: &Response) -> String {
    response.headers().get("location").unwrap_or_else(|| panic!("no location: {}", response.status())).to_str().unwrap().to_owned()
}

/// The claims of a device authentication token, verified with the agent's `jwks_auth`.
fn verified(token: &str, jwks: &Value, device: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk =
        jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"].as_str() == header.kid.as_deref()).expect("signed by a published key");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[device]);
    validation.set_issuer(&["goauthentik.io/platform"]);
    jsonwebtoken::decode::<Value>(token, &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(), &validation).expect("a valid token").claims
}

#[tokio::test]
async fn a_person_the_device_admits_signs_in_for_it_through_the_agents_browser_window_once() {
    let app = TestApp::spawn().await;
    let (admin, connector, key) = connector_with_token(&app, json!({"auth_session_duration": "hours=8"})).await;
    let mut agent = Agent::new(&app, "LAPTOP-7");
    agent.enroll(&key, "laptop-7").await;
    let (_, config) = json(agent.call(Method::GET, CONFIG, None).await).await;
    let device = config["device_id"].as_str().unwrap().to_owned();
    let ada = app.user("ada@example.com", |_| {}).await;
    app.user("dee@example.com", |_| {}).await;
    let (status, _) =
        json(app.post(&admin, "/api/v3/endpoints/device_bindings/", json!({"target": device, "user": ada.id, "order": 0})).await).await;
    assert_eq!(status, StatusCode::CREATED);
    let hash = key_hash(agent.token.as_deref().unwrap());

    let path = agent.start_authentication().await;

    // Without the key hash, or with another, nothing happens.
    let mut browser = crate::flows::Browser::new(&app);
    assert_eq!(window(&app, &mut browser, &path, None).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(window(&app, &mut browser, &path, Some(&key_hash("another key"))).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        window(&app, &mut browser, "/endpoints/agent/authenticate/7b0e6f1e-0000-4000-8000-000000000000/", Some(&hash)).await.status(),
        StatusCode::NOT_FOUND
    );

    // A stranger is sent to sign in, and back here afterwards.
    let response = window(&app, &mut browser, &path, Some(&hash)).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let to = location_of(&response);
    assert!(to.starts_with("/if/flow/default-authentication-flow/?next=%2Fendpoints%2Fagent%2Fauthenticate%2F"), "{to}");

    // Someone the device does not admit is refused.
    let mut dee = crate::flows::Browser::new(&app);
    dee.sign_in("dee@example.com", crate::support::PASSWORD).await;
    assert_eq!(window(&app, &mut dee, &path, Some(&hash)).await.status(), StatusCode::FORBIDDEN);

    // Ada gets a token for herself on this device, signed with the key the agent was told of.
    browser.sign_in("ada@example.com", crate::support::PASSWORD).await;
    let response = window(&app, &mut browser, &path, Some(&hash)).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let finished = url::Url::parse(&location_of(&response)).unwrap();
    assert_eq!(
        format!("{}://{}{}", finished.scheme(), finished.host_str().unwrap(), finished.path()),
        "goauthentik.io://platform/finished"
    );
    let token = finished.query_pairs().find(|(k, _)| k == "ak-auth-ia-token").map(|(_, v)| v.into_owned()).expect("the token");
    remember_secret(&token);
    let claims = verified(&token, &config["jwks_auth"], &device);
    assert_eq!(claims["preferred_username"], ada.username);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 8 * 3600);
    assert_eq!(claims["jti"].as_str(), path.trim_end_matches('/').rsplit('/').next());

    // Once only.
    assert_eq!(window(&app, &mut browser, &path, Some(&hash)).await.status(), StatusCode::NOT_FOUND);
    // Two windows racing for one request get one token.
    let path = agent.start_authentication().await;
    let mut twin = crate::flows::Browser::new(&app);
    twin.cookies = browser.cookies.clone();
    let (first, second) = tokio::join!(window(&app, &mut browser, &path, Some(&hash)), window(&app, &mut twin, &path, Some(&hash)));
    let mut statuses = [first.status(), second.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::FOUND, StatusCode::NOT_FOUND]);

    // With an authorization flow, the token comes only after it: here the sign-in flow again.
    let flow = crate::oauth::flow_pk(&app, &admin, "default-authentication-flow").await;
    let connector_path = format!("{CONNECTORS}{}/", connector["connector_uuid"].as_str().unwrap());
    let (status, _) = json(app.patch(&admin, &connector_path, json!({"authorization_flow": flow})).await).await;
    assert_eq!(status, StatusCode::OK);
    let path = agent.start_authentication().await;
    let response = window(&app, &mut browser, &path, Some(&hash)).await;
    assert_eq!((response.status(), location_of(&response)), (StatusCode::FOUND, "/if/flow/default-authentication-flow/".to_owned()));
    let forged = window(&app, &mut browser, &format!("{path}?flow_proof={}.9999999999.forged", "0".repeat(32)), Some(&hash)).await;
    assert_eq!(location_of(&forged), "/if/flow/default-authentication-flow/", "a forged proof is no proof");
    let last = browser.sign_in("ada@example.com", crate::support::PASSWORD).await;
    assert_eq!(last["component"], "xak-flow-redirect", "{last}");
    let back = last["to"].as_str().unwrap();
    assert!(back.starts_with(&format!("{path}?flow_proof=")), "{back}");
    let response = window(&app, &mut browser, back, Some(&hash)).await;
    assert!(location_of(&response).starts_with("goauthentik.io://platform/finished?ak-auth-ia-token="));

    // Requests nobody redeemed are purged once they expire; redeemed ones once their token has.
    use gatehouse::endpoints::entities::authentication_token;
    use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
    agent.start_authentication().await;
    let rows = authentication_token::Entity::find().all(&app.state.db).await.unwrap();
    assert_eq!(rows.len(), 4, "three redeemed, one waiting");
    assert_eq!(gatehouse::endpoints::device_auth::purge_expired(&app.state.db).await.unwrap(), 0);
    for row in rows {
        let mut row = row.into_active_model();
        row.expires = Set(chrono::Utc::now() - chrono::TimeDelta::minutes(1));
        if row.issued_at.as_ref().is_some() {
            row.token_expires = Set(Some(chrono::Utc::now() - chrono::TimeDelta::minutes(1)));
        }
        row.update(&app.state.db).await.unwrap();
    }
    assert_eq!(gatehouse::endpoints::device_auth::purge_expired(&app.state.db).await.unwrap(), 4);

    // A deleted device's requests are gone with it.
    let path = agent.start_authentication().await;
    let (status, _) = json(app.delete(&admin, &format!("{DEVICES}{device}/")).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(window(&app, &mut browser, &path, Some(&hash)).await.status(), StatusCode::NOT_FOUND);
}

/// The endpoint stage's challenge, as a browser opening the flow at `executor` gets it.
async fn challenged(browser: &mut crate::flows::Browser<'_>, executor: &str) -> String {
    let (status, challenge) = browser.get(executor).await;
    assert_eq!((status, &challenge["component"]), (StatusCode::OK, &json!("ak-stage-endpoint-agent")), "{challenge}");
    assert_eq!(challenge["challenge_idle_timeout"], 5);
    challenge["challenge"].as_str().unwrap().to_owned()
}

/// The agent's answer to an endpoint-stage `challenge`: an HS512 JWT keyed by its device key.
fn answer(challenge: &str, serial: &str, key: &str, audience: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": serial, "aud": audience, "atc": challenge, "iat": now, "exp": now + 300});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn an_endpoint_stage_challenges_the_device_and_only_its_agent_can_answer() {
    let app = TestApp::spawn().await;
    let (admin, connector, key) =
        connector_with_token(&app, json!({"challenge_idle_timeout": "seconds=5", "challenge_trigger_check_in": true})).await;
    let (status, pair) = json(
        app.post(
            &admin,
            "/api/v3/crypto/certificatekeypairs/generate/",
            json!({"common_name": "challenges", "validity_days": 30, "alg": "ecdsa"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let connector_path = format!("{CONNECTORS}{}/", connector["connector_uuid"].as_str().unwrap());
    let (status, _) = json(app.patch(&admin, &connector_path, json!({"challenge_key": pair["pk"]})).await).await;
    assert_eq!(status, StatusCode::OK);
    let mut agent = Agent::new(&app, "DESK-42");
    agent.enroll(&key, "desk-42").await;
    let mut other = Agent::new(&app, "DESK-43");
    other.enroll(&key, "desk-43").await;
    let (_, config) = json(agent.call(Method::GET, CONFIG, None).await).await;

    // The stage names an existing connector.
    assert_field_error(
        app.post(&admin, "/api/v3/stages/endpoints/", json!({"name": "x", "connector": uuid::Uuid::new_v4()})).await,
        "connector",
    )
    .await;
    let (status, stage) = json(
        app.post(
            &admin,
            "/api/v3/stages/endpoints/",
            json!({"name": "device-check", "connector": connector["connector_uuid"], "mode": "required"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{stage}");
    assert_eq!((&stage["mode"], &stage["connector_obj"]["name"]), (&json!("required"), &json!("Workstations")), "{stage}");
    let (_, flow) = json(
        app.post(
            &admin,
            "/api/v3/flows/instances/",
            json!({"name": "Desk", "slug": "desk", "title": "Desk", "designation": "authentication"}),
        )
        .await,
    )
    .await;
    let (status, _) =
        json(app.post(&admin, "/api/v3/flows/bindings/", json!({"target": flow["pk"], "stage": stage["pk"], "order": 0})).await).await;
    assert_eq!(status, StatusCode::CREATED);
    let executor = "/api/v3/flows/executor/desk/";

    // The challenge, as the agent checks it against `jwks_challenge`.
    let mut browser = crate::flows::Browser::new(&app);
    let challenge = challenged(&mut browser, executor).await;
    let header = jsonwebtoken::decode_header(&challenge).unwrap();
    let jwk = &config["jwks_challenge"]["keys"][0];
    assert_eq!(header.kid.as_deref(), jwk["kid"].as_str());
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_required_spec_claims(&["exp", "iss"]);
    validation.validate_aud = false;
    let claims =
        jsonwebtoken::decode::<Value>(&challenge, &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(), &validation).unwrap().claims;
    assert_eq!((&claims["iss"], &claims["goauthentik.io/device/check_in"]), (&stage["pk"], &json!(true)));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300);

    // The agent's answer passes the stage.
    let token = agent.token.clone().unwrap();
    let good = answer(&challenge, "DESK-42", &token, "goauthentik.io/platform/endpoint");
    let (status, passed) = browser.post(executor, json!({"component": "ak-stage-endpoint-agent", "response": good})).await;
    assert_eq!((status, &passed["component"]), (StatusCode::OK, &json!("xak-flow-redirect")), "{passed}");

    // Anything else stops a required stage: no answer, another device's key, the wrong
    // audience, another device's serial, an answer to an earlier challenge.
    let other_token = other.token.clone().unwrap();
    type Answer = Box<dyn Fn(&str) -> Value>;
    let (t, o, g) = (token.clone(), other_token.clone(), good.clone());
    let (t2, t3) = (token.clone(), token.clone());
    let wrong: Vec<(&str, Answer)> = vec![
        ("no answer", Box::new(|_| Value::Null)),
        ("another device's key", Box::new(move |c| json!(answer(c, "DESK-42", &o, "goauthentik.io/platform/endpoint")))),
        ("the wrong audience", Box::new(move |c| json!(answer(c, "DESK-42", &t, "somewhere-else")))),
        ("another device's serial", Box::new(move |c| json!(answer(c, "DESK-43", &t2, "goauthentik.io/platform/endpoint")))),
        ("an answer to an earlier challenge", Box::new(move |_| json!(g))),
        ("not a JWT", Box::new(|_| json!("not.a.jwt"))),
    ];
    for (what, make) in wrong {
        let mut browser = crate::flows::Browser::new(&app);
        let fresh = challenged(&mut browser, executor).await;
        let (_, denied) = browser.post(executor, json!({"component": "ak-stage-endpoint-agent", "response": make(&fresh)})).await;
        assert_eq!(denied["component"], "ak-stage-access-denied", "{what} passed: {denied}");
    }
    // The same fresh challenge answered properly passes, so each refusal above is for its flaw.
    let mut browser = crate::flows::Browser::new(&app);
    let fresh = challenged(&mut browser, executor).await;
    let (_, passed) = browser
        .post(
            executor,
            json!({"component": "ak-stage-endpoint-agent", "response": answer(&fresh, "DESK-42", &t3, "goauthentik.io/platform/endpoint")}),
        )
        .await;
    assert_ne!(passed["component"], "ak-stage-access-denied", "{passed}");

    // Optional lets people through without an answer.
    let (status, _) =
        json(app.patch(&admin, &format!("/api/v3/stages/endpoints/{}/", stage["pk"].as_str().unwrap()), json!({"mode": "optional"})).await)
            .await;
    assert_eq!(status, StatusCode::OK);
    let mut browser = crate::flows::Browser::new(&app);
    challenged(&mut browser, executor).await;
    let (status, passed) = browser.post(executor, json!({"component": "ak-stage-endpoint-agent", "response": null})).await;
    assert_eq!((status, &passed["component"]), (StatusCode::OK, &json!("xak-flow-redirect")), "{passed}");

    // A device authentication whose authorization flow holds a required endpoint stage passes
    // it without a challenge: its browser window already proved the device key.
    let (status, _) =
        json(app.patch(&admin, &format!("/api/v3/stages/endpoints/{}/", stage["pk"].as_str().unwrap()), json!({"mode": "required"})).await)
            .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = json(app.patch(&admin, &connector_path, json!({"authorization_flow": flow["pk"]})).await).await;
    assert_eq!(status, StatusCode::OK);
    let ada = app.user("ada@example.com", |_| {}).await;
    let device = config["device_id"].as_str().unwrap();
    let (status, _) =
        json(app.post(&admin, "/api/v3/endpoints/device_bindings/", json!({"target": device, "user": ada.id, "order": 0})).await).await;
    assert_eq!(status, StatusCode::CREATED);
    let path = agent.start_authentication().await;
    let hash = key_hash(&token);
    let mut browser = crate::flows::Browser::new(&app);
    browser.sign_in("ada@example.com", crate::support::PASSWORD).await;
    let response = window(&app, &mut browser, &path, Some(&hash)).await;
    assert_eq!(location_of(&response), "/if/flow/desk/");
    let (_, done) = browser.get(executor).await;
    assert_eq!(done["component"], "xak-flow-redirect", "the stage asked after all: {done}");
    let response = window(&app, &mut browser, done["to"].as_str().unwrap(), Some(&hash)).await;
    assert!(location_of(&response).starts_with("goauthentik.io://platform/finished?ak-auth-ia-token="));
}

#[tokio::test]
async fn moving_a_device_into_a_group_needs_the_rights_of_everyone_its_bindings_admit() {
    let app = TestApp::spawn().await;
    let (admin, _, key) = connector_with_token(&app, json!({})).await;
    let mut agent = Agent::new(&app, "MOVE-1");
    agent.enroll(&key, "move-1").await;
    let (_, config) = json(agent.call(Method::GET, CONFIG, None).await).await;
    let device_path = format!("{DEVICES}{}/", config["device_id"].as_str().unwrap());
    let root =
        gatehouse::accounts::entities::user::Entity::find().all(&app.state.db).await.unwrap().into_iter().find(|u| u.is_superuser).unwrap();
    let plain = app.user("plain@example.com", |_| {}).await;
    let groups = "/api/v3/endpoints/device_access_groups/";
    let (_, admins_only) = json(app.post(&admin, groups, json!({"name": "Admins only"})).await).await;
    let (_, everyone) = json(app.post(&admin, groups, json!({"name": "Plain"})).await).await;
    for (group, user) in [(&admins_only, root.id), (&everyone, plain.id)] {
        let (status, _) = json(
            app.post(&admin, "/api/v3/endpoints/device_bindings/", json!({"target": group["pbm_uuid"], "user": user, "order": 0})).await,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    app.user_with("operator@example.com", &["authentik_endpoints.view_device", "authentik_endpoints.change_device"]).await;
    let operator = app.sign_in("operator@example.com").await;

    // Into the group that admits the superuser: refused, and the device stays where it was.
    crate::support::assert_forbidden(app.patch(&operator, &device_path, json!({"access_group": admins_only["pbm_uuid"]})).await).await;
    let (_, device) = json(app.get(&admin, &device_path).await).await;
    assert_eq!(device["access_group"], Value::Null, "{device}");
    let users = agent.read_all("/api/v3/core/users/", "include_groups").await;
    assert!(users.is_empty(), "{users:?}");
    // Into the group that admits whom the operator outranks: fine.
    let (status, moved) = json(app.patch(&operator, &device_path, json!({"access_group": everyone["pbm_uuid"]})).await).await;
    assert_eq!((status, &moved["access_group"]), (StatusCode::OK, &everyone["pbm_uuid"]), "{moved}");
    let users = agent.read_all("/api/v3/core/users/", "include_groups").await;
    assert_eq!(users.iter().map(|u| u["pk"].clone()).collect::<Vec<_>>(), vec![json!(plain.id)]);
}

/// Two server processes on one database: a device deleted, or its connector disabled, through
/// one is refused at the other at once, although the other remembers the agent's key. On SQLite,
/// which one process serves, the processes run with the cache off.
#[tokio::test]
async fn a_device_ended_through_one_server_is_refused_at_the_other_although_it_remembers() {
    let postgres = std::env::var("GATEHOUSE_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty());
    // On PostgreSQL known keys are kept for an hour, so only the change message can drop them.
    let caches = |c: &mut gatehouse::config::Config| {
        c.sessions.cache_ttl = if postgres { "hours=1" } else { "seconds=0" }.parse().unwrap();
    };
    let first = TestApp::spawn_with(caches).await;
    let second = TestApp::spawn_sharing(&first, caches).await;
    let (admin, connector, key) = connector_with_token(&first, json!({})).await;
    let mut agent = Agent::new(&first, "TWO-1");
    agent.enroll(&key, "two-1").await;
    let mut other = Agent::new(&first, "TWO-2");
    other.enroll(&key, "two-2").await;
    for agent in [&agent, &other] {
        assert_eq!(agent.call(Method::POST, CHECK_IN, Some(json!({}))).await.status(), StatusCode::NO_CONTENT);
    }
    let eventually = |what: &'static str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        move || assert!(std::time::Instant::now() < deadline, "the first server still admits {what}")
    };

    let (_, config) = json(agent.call(Method::GET, CONFIG, None).await).await;
    let (status, _) = json(second.delete(&admin, &format!("{DEVICES}{}/", config["device_id"].as_str().unwrap())).await).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let check = eventually("a deleted device");
    while agent.call(Method::POST, CHECK_IN, Some(json!({}))).await.status() != StatusCode::FORBIDDEN {
        check();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let path = format!("{CONNECTORS}{}/", connector["connector_uuid"].as_str().unwrap());
    let (status, _) = json(second.patch(&admin, &path, json!({"enabled": false})).await).await;
    assert_eq!(status, StatusCode::OK);
    let check = eventually("an agent of a disabled connector");
    while other.call(Method::POST, CHECK_IN, Some(json!({}))).await.status() != StatusCode::FORBIDDEN {
        check();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
