//! The factor oracle: a non-superuser holding every flow-editing permission makes random edits to
//! flows, stages and bindings over HTTP; afterwards, someone who knows only a superuser's e-mail
//! address runs every flow, answering each question as well as they can without the password.
//! Whatever the edits, no run may end with a session or a `login` event for the superuser: a
//! session needs a factor verified in the same run for that very account, not a particular
//! order of stages. A second attacker holds an account of their own, proves its password, then
//! names the superuser: they may end signed in as themselves, never as the superuser.
//!
//! `GATEHOUSE_FACTOR_ORACLE_CASES` sets the number of cases (default 32; CI's longer runs use
//! more).

use std::sync::{Arc, LazyLock, OnceLock};

use chrono::{DateTime, Utc};
use gatehouse::events::entities::event;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::flows::Browser;
use crate::support::*;

const VICTIM: &str = "victim@example.com";
const INSIDER: &str = "insider@example.com";
/// The insider's own password: everyone else made by the test support shares `PASSWORD`, which
/// the insider must not know.
const INSIDER_PASSWORD: &str = "the insider's own secret 9";
const WRONG_PASSWORD: &str = "not the victim's password 1";
const EDITING: &[&str] = &[
    "authentik_flows.add_flow",
    "authentik_flows.change_flow",
    "authentik_flows.delete_flow",
    "authentik_flows.view_flow",
    "authentik_flows.add_stage",
    "authentik_flows.change_stage",
    "authentik_flows.delete_stage",
    "authentik_flows.view_stage",
    "authentik_flows.add_flowstagebinding",
    "authentik_flows.change_flowstagebinding",
    "authentik_flows.delete_flowstagebinding",
    "authentik_flows.view_flowstagebinding",
];

/// One edit; the `usize`s pick among what exists when it runs.
#[derive(Debug, Clone)]
enum Edit {
    CreateFlow { unauthenticated_only: bool },
    CreateStage { kind: usize, variant: usize },
    Bind { flow: usize, stage: usize, order: i64 },
    Rebind { binding: usize, stage: usize },
    Unbind { binding: usize },
    ChangeStage { stage: usize, variant: usize },
}

const KINDS: [&str; 5] = ["identification", "password", "user_login", "deny", "user_logout"];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => any::<bool>().prop_map(|unauthenticated_only| Edit::CreateFlow { unauthenticated_only }),
        4 => (0..KINDS.len(), 0..3usize).prop_map(|(kind, variant)| Edit::CreateStage { kind, variant }),
        6 => (0..4usize, 0..16usize, 0..120i64).prop_map(|(flow, stage, order)| Edit::Bind { flow, stage, order }),
        2 => (0..16usize, 0..16usize).prop_map(|(binding, stage)| Edit::Rebind { binding, stage }),
        1 => (0..16usize).prop_map(|binding| Edit::Unbind { binding }),
        1 => (0..16usize, 0..3usize).prop_map(|(stage, variant)| Edit::ChangeStage { stage, variant }),
    ]
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap());
static SETUP: OnceLock<Arc<(TestApp, Session, Value)>> = OnceLock::new();

/// The server, the editor's session and the default sign-in flow, made once for all cases.
fn setup() -> Arc<(TestApp, Session, Value)> {
    SETUP
        .get_or_init(|| {
            RUNTIME.block_on(async {
                // Wrong guesses are the point here: the limits on guessing stay out of the way.
                let app = TestApp::spawn_with(|c| {
                    c.sign_in.free_failures_per_account_address = 100_000;
                    c.sign_in.max_failures_per_account_address_hour = 100_000;
                    c.sign_in.max_failures_per_account_hour = 1_000_000;
                    c.sign_in.free_failures_per_ip = 100_000;
                })
                .await;
                app.superuser(VICTIM).await;
                remember_secret(INSIDER_PASSWORD);
                app.user(INSIDER, |u| u.password = Some(gatehouse::accounts::password::Password::new(INSIDER_PASSWORD.into()))).await;
                app.user_with("editor@example.com", EDITING).await;
                let editor = app.sign_in("editor@example.com").await;
                let (_, default) = json(app.get(&editor, "/api/v3/flows/instances/default-authentication-flow/").await).await;
                Arc::new((app, editor, default))
            })
        })
        .clone()
}

fn pick<T: Clone>(items: &[T], index: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[index % items.len()].clone())
}

/// Settings of a stage of `kind`, in one of a few shapes; `password_stage` is a password stage
/// an identification stage may check inline.
fn settings(kind: &str, variant: usize, password_stage: Option<&Value>) -> Value {
    match (kind, variant) {
        ("identification", 1) => json!({"password_stage": password_stage.map(|s| s["pk"].clone())}),
        ("identification", 2) => json!({"user_fields": ["username"], "pretend_user_exists": false}),
        ("password", 1) => json!({"backends": ["authentik.core.auth.InbuiltBackend", "authentik.core.auth.TokenBackend"]}),
        ("password", 2) => json!({"backends": ["authentik.core.auth.TokenBackend"], "failed_attempts_before_cancel": 0}),
        ("user_login", 1) => json!({"remember_me_offset": "days=1"}),
        ("user_login", 2) => json!({"terminate_other_sessions": true}),
        _ => json!({}),
    }
}

/// Applies `edits` as the editor; edits that name nothing existing are skipped, refusals are fine.
async fn apply(app: &TestApp, editor: &Session, default: &Value, edits: &[Edit], case: u64) -> Vec<String> {
    let mut flows = vec![default.clone()];
    // Every case has a flow of its own from the start, and may also rebind the default flow's
    // stages (as the earlier cases left them).
    let slug = format!("c{case}-start");
    let body = json!({"name": slug, "slug": slug, "title": slug, "designation": "authentication"});
    let (status, flow) = json(app.post(editor, "/api/v3/flows/instances/", body).await).await;
    assert_eq!(status, StatusCode::CREATED, "{flow}");
    flows.push(flow);
    let mut stages: Vec<Value> = Vec::new();
    let target = default["pk"].as_str().unwrap();
    let (_, listed) = json(app.get(editor, &format!("/api/v3/flows/bindings/?target={target}")).await).await;
    let mut bindings: Vec<Value> = listed["results"].as_array().cloned().unwrap_or_default();
    for (index, edit) in edits.iter().enumerate() {
        match edit {
            Edit::CreateFlow { unauthenticated_only } => {
                let slug = format!("c{case}-f{index}");
                let mut body = json!({"name": slug, "slug": slug, "title": slug, "designation": "authentication"});
                if *unauthenticated_only {
                    body["authentication"] = json!("require_unauthenticated");
                }
                let (status, flow) = json(app.post(editor, "/api/v3/flows/instances/", body).await).await;
                if status == StatusCode::CREATED {
                    flows.push(flow);
                }
            }
            Edit::CreateStage { kind, variant } => {
                let kind = KINDS[*kind];
                let password_stage = stages.iter().find(|s| s["meta_model_name"] == "authentik_stages_password.passwordstage");
                let mut body = settings(kind, *variant, password_stage);
                body["name"] = json!(format!("c{case}-s{index}"));
                let (status, stage) = json(app.post(editor, &format!("/api/v3/stages/{kind}/"), body).await).await;
                if status == StatusCode::CREATED {
                    stages.push(stage);
                }
            }
            Edit::Bind { flow, stage, order } => {
                let (Some(flow), Some(stage)) = (pick(&flows, *flow), pick(&stages, *stage)) else { continue };
                let body = json!({"target": flow["pk"], "stage": stage["pk"], "order": order});
                let (status, binding) = json(app.post(editor, "/api/v3/flows/bindings/", body).await).await;
                if status == StatusCode::CREATED {
                    bindings.push(binding);
                }
            }
            Edit::Rebind { binding, stage } => {
                let (Some(binding), Some(stage)) = (pick(&bindings, *binding), pick(&stages, *stage)) else { continue };
                let path = format!("/api/v3/flows/bindings/{}/", binding["pk"].as_str().unwrap());
                app.patch(editor, &path, json!({"stage": stage["pk"]})).await;
            }
            Edit::Unbind { binding } => {
                let Some(binding) = pick(&bindings, *binding) else { continue };
                app.delete(editor, &format!("/api/v3/flows/bindings/{}/", binding["pk"].as_str().unwrap())).await;
            }
            Edit::ChangeStage { stage, variant } => {
                let Some(stage) = pick(&stages, *stage) else { continue };
                let kind =
                    KINDS.iter().find(|k| stage["meta_model_name"].as_str().unwrap_or_default().contains(&k.replace('_', ""))).copied();
                let Some(kind) = kind else { continue };
                let password_stage = stages.iter().find(|s| s["meta_model_name"] == "authentik_stages_password.passwordstage");
                let path = format!("/api/v3/stages/{kind}/{}/", stage["pk"].as_str().unwrap());
                app.patch(editor, &path, settings(kind, *variant, password_stage)).await;
            }
        }
    }
    flows.iter().filter_map(|f| f["slug"].as_str().map(str::to_owned)).collect()
}

/// How the attacker answers: knowing only the victim's address, or also holding an account of
/// their own whose password they prove first, naming the victim afterwards.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Attacker {
    Stranger,
    Insider,
}

/// Runs flow `slug` as `attacker`. Returns who the browser is signed in as afterwards (if anyone)
/// and the components it met, for the failure message.
async fn attack(app: &TestApp, slug: &str, attacker: Attacker) -> (Option<String>, Vec<String>) {
    let path = format!("/api/v3/flows/executor/{slug}/");
    let mut browser = Browser::new(app);
    let (_, mut challenge) = browser.get(&path).await;
    let mut met = Vec::new();
    let mut identified = false;
    let password = if attacker == Attacker::Insider { INSIDER_PASSWORD } else { WRONG_PASSWORD };
    for _ in 0..10 {
        let component = challenge["component"].as_str().unwrap_or_default().to_owned();
        met.push(component.clone());
        let answer = match component.as_str() {
            "ak-stage-identification" => {
                let who = if attacker == Attacker::Insider && !identified { INSIDER } else { VICTIM };
                identified = true;
                json!({"component": component, "uid_field": who, "password": password})
            }
            "ak-stage-password" => json!({"component": component, "password": password}),
            "ak-stage-user-login" => json!({"component": component, "remember_me": true}),
            "ak-stage-user-logout" => json!({"component": component}),
            _ => break,
        };
        challenge = browser.post(&path, answer).await.1;
    }
    let (status, me) = browser.get("/api/v3/core/users/me/").await;
    let signed_in_as = (status == StatusCode::OK).then(|| me["user"]["email"].as_str().unwrap_or_default().to_owned());
    (signed_in_as, met)
}

async fn run_case(edits: Vec<Edit>, case: u64) -> Result<(), TestCaseError> {
    let setup = setup();
    let (app, editor, default) = (&setup.0, &setup.1, &setup.2);
    let since: DateTime<Utc> = Utc::now();
    let slugs = apply(app, editor, default, &edits, case).await;
    for slug in &slugs {
        let (signed_in_as, met) = attack(app, slug, Attacker::Stranger).await;
        prop_assert_eq!(signed_in_as, None, "flow {} signed a stranger in without a factor: {:?}", slug, met);
        // An insider may sign in as themselves, never as the account named after their proof.
        let (signed_in_as, met) = attack(app, slug, Attacker::Insider).await;
        prop_assert!(signed_in_as.as_deref().is_none_or(|who| who == INSIDER), "flow {} signed {:?} in: {:?}", slug, signed_in_as, met);
    }
    let victim = gatehouse::accounts::users::find_user_by_identifier(&app.state.db, app.state.tenant, VICTIM, true, false, false)
        .await
        .unwrap()
        .unwrap();
    let logins = event::Entity::find()
        .filter(event::Column::Action.eq("login"))
        .filter(event::Column::Created.gte(since))
        .filter(event::Column::UserId.eq(victim.id))
        .count(&app.state.db)
        .await
        .unwrap();
    prop_assert_eq!(logins, 0, "the victim was signed in after {:?}", edits);
    Ok(())
}

#[test]
fn no_edit_of_flows_yields_a_session_without_a_factor() {
    let mut runner = oracle_runner("GATEHOUSE_FACTOR_ORACLE_CASES", 32, file!());
    setup();
    let counter = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&prop::collection::vec(edit(), 6..24), |edits| {
        let case = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RUNTIME.block_on(run_case(edits, case))
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}
