//! The flow executor: starts a run with its plan, asks the current stage's question, hands the
//! answer to that stage, and moves on, restarts or ends as the stage and its binding decide.
//! It knows stages only through [`StageKind`](super::stage::StageKind).

use std::sync::Arc;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::entities::{binding, flow, stage};
use super::model::{AuthenticationRequirement, DeniedAction, InvalidResponseAction};
use super::plans::FlowPlan;
use super::redirect::safe_next;
use super::run::{self, FlowContext, FlowInfo, Found, Plan, PlannedStage, Run, Saved};
use super::stage::{Effect, Prompt, StageContext, Step};
use crate::accounts::entities::user;
use crate::credentials::cache::AuthContext;
use crate::error::{Error, FieldErrors, NON_FIELD_ERRORS, Result};
use crate::events::client::ClientInfo;
use crate::secret::constant_time_eq;
use crate::state::AppState;

/// Shown when an answer arrives for a run that no longer exists.
pub const RUN_GONE: &str = "This sign-in expired or was already used; please start again.";
/// Shown instead of [`RUN_GONE`] when the answer came without any flow cookie while cookies are
/// `Secure`: the usual cause is a browser on plain HTTP dropping the cookie, which would
/// otherwise send the person round in circles.
pub const COOKIE_NOT_RETURNED: &str = "Your browser did not send back this sign-in's cookie, so it starts again. Browsers keep \
     secure cookies only over HTTPS: open this page with https://, or, for testing over plain HTTP only, set \
     server.secure_cookies = false.";
/// Shown when an answer arrives for a question that is no longer the current one.
pub const STALE_ANSWER: &str = "This form was already submitted; please answer the current question.";

/// Who is asking, and for which flow.
pub struct FlowRequest<'a> {
    pub slug: &'a str,
    /// The flow cookie's key, if the browser sent one.
    pub key: Option<&'a str>,
    pub client: &'a ClientInfo,
    /// The caller's session, if signed in.
    pub current: Option<Arc<AuthContext>>,
    /// The `next` the flow was opened with; only same-origin paths are kept.
    pub next: Option<&'a str>,
    /// The browser's remembered second factor
    /// ([`mfa::remembered::COOKIE`](crate::mfa::remembered::COOKIE)), if it sent one.
    pub remembered_device: Option<&'a str>,
    /// What another part of the server hands a run it starts.
    pub handoff: Option<&'a super::handoff::Handoff>,
}

impl<'a> FlowRequest<'a> {
    /// A request for the flow `slug`, with the value of the flow cookie
    /// ([`FLOW_COOKIE`](super::run::FLOW_COOKIE)) when the browser sent one.
    pub fn new(
        slug: &'a str,
        key: Option<&'a str>,
        client: &'a ClientInfo,
        current: Option<Arc<AuthContext>>,
        next: Option<&'a str>,
    ) -> Self {
        Self { slug, key, client, current, next, remembered_device: None, handoff: None }
    }

    /// The request starting its run with `handoff`.
    pub fn handing_off(mut self, handoff: &'a super::handoff::Handoff) -> Self {
        self.handoff = Some(handoff);
        self
    }

    /// The request with the browser's remembered second factor, when it sent one.
    pub fn remembering(mut self, remembered_device: Option<&'a str>) -> Self {
        self.remembered_device = remembered_device;
        self
    }
}

/// A page form's answer: the token that binds it to the browser's run, and the step it answers.
pub struct FormAnswer<'a> {
    pub token: &'a str,
    pub step: i64,
}

/// What to tell the client.
#[derive(Debug)]
pub enum Challenge {
    /// The current stage's question, with errors from the previous answer.
    Stage { component: &'static str, prompt: Prompt, errors: FieldErrors },
    /// The flow is over: go here.
    Redirect { to: String },
    /// The flow refused to continue.
    AccessDenied { message: String },
}

/// What happens to the flow cookie.
#[derive(Debug, PartialEq, Eq)]
pub enum FlowCookie {
    Keep,
    Set(String),
    Clear,
}

/// The executor's answer to one request.
#[derive(Debug)]
pub struct Outcome {
    pub flow: FlowInfo,
    pub challenge: Challenge,
    pub effects: Vec<Effect>,
    pub cookie: FlowCookie,
    /// The run still in progress and its step, for forms that must answer this very question.
    pub run: Option<(Uuid, i64)>,
}

impl Outcome {
    /// The challenge as authentik's JSON (`component`, `flow_info`, `response_errors`, ...).
    pub fn to_json(&self) -> Value {
        let flow_info = json!({
            "title": self.flow.title,
            "background": crate::media::service::resolve_url(&self.flow.background),
            "cancel_url": "/flows/-/cancel/",
            "layout": self.flow.layout,
        });
        let mut body = Map::new();
        body.insert("flow_info".into(), flow_info);
        match &self.challenge {
            Challenge::Stage { component, prompt, errors } => {
                body.insert("component".into(), json!(component));
                body.extend(prompt.fields.clone());
                if !errors.is_empty() {
                    body.insert("response_errors".into(), response_errors(errors));
                }
            }
            Challenge::Redirect { to } => {
                body.insert("component".into(), json!("xak-flow-redirect"));
                body.insert("to".into(), json!(to));
            }
            Challenge::AccessDenied { message } => {
                body.insert("component".into(), json!("ak-stage-access-denied"));
                body.insert("error_message".into(), json!(message));
                body.insert("pending_user".into(), json!(""));
                body.insert("pending_user_avatar".into(), json!(""));
            }
        }
        Value::Object(body)
    }
}

/// `{"field": [{"string": message, "code": "invalid"}]}`, authentik's `response_errors`.
fn response_errors(errors: &FieldErrors) -> Value {
    let mut out = Map::new();
    for (field, messages) in errors.fields() {
        out.insert(field.clone(), messages.iter().map(|m| json!({"string": m, "code": "invalid"})).collect());
    }
    Value::Object(out)
}

async fn find_flow(state: &AppState, slug: &str) -> Result<flow::Model> {
    flow::Entity::find()
        .filter(flow::Column::TenantId.eq(state.tenant.0))
        .filter(flow::Column::Slug.eq(slug))
        .one(&state.db)
        .await?
        .ok_or(Error::NotFound)
}

/// Why the person with `current` may not run `flow`, if they may not: the flow's own
/// authentication requirement.
pub fn requirement_unmet(flow: &flow::Model, current: Option<&AuthContext>) -> Option<&'static str> {
    match AuthenticationRequirement::parse(&flow.authentication).unwrap_or(AuthenticationRequirement::None) {
        AuthenticationRequirement::None => None,
        AuthenticationRequirement::RequireAuthenticated if current.is_none() => Some("This flow requires you to be signed in."),
        AuthenticationRequirement::RequireUnauthenticated if current.is_some() => {
            Some("This flow is only for people who are not signed in.")
        }
        AuthenticationRequirement::RequireSuperuser if !current.is_some_and(|c| c.permissions.superuser) => {
            Some("This flow requires a superuser.")
        }
        _ => None,
    }
}

/// What the caller sees when the flow denies them: the message, or a redirect to where they were
/// going, as the flow's denied action says.
fn denied(flow: &flow::Model, message: String, next: Option<&str>) -> Challenge {
    let action = DeniedAction::parse(&flow.denied_action).unwrap_or(DeniedAction::MessageContinue);
    match (action, next) {
        (DeniedAction::Continue, next) => Challenge::Redirect { to: next.unwrap_or("/").to_owned() },
        (DeniedAction::MessageContinue, Some(next)) => Challenge::Redirect { to: next.to_owned() },
        _ => Challenge::AccessDenied { message },
    }
}

/// The flow's stages in order, as a plan.
async fn plan_for(state: &AppState, flow: &flow::Model) -> Result<Plan> {
    let bound = binding::Entity::find()
        .find_also_related(stage::Entity)
        .filter(binding::Column::TenantId.eq(state.tenant.0))
        .filter(binding::Column::FlowId.eq(flow.id))
        .order_by_asc(binding::Column::BindingOrder)
        .order_by_asc(binding::Column::Id)
        .all(&state.db)
        .await?;
    let stages = bound
        .into_iter()
        .filter_map(|(binding, stage)| {
            let stage = stage.filter(|s| s.tenant_id == state.tenant.0)?;
            Some(PlannedStage {
                stage_id: stage.id,
                name: stage.name,
                kind: stage.kind,
                settings: stage.settings,
                invalid_response_action: InvalidResponseAction::parse(&binding.invalid_response_action)
                    .unwrap_or(InvalidResponseAction::Retry),
            })
        })
        .collect();
    Ok(Plan { flow: FlowInfo::from(flow), stages, position: 0 })
}

/// The flow `slug` and the plan it makes, from memory unless a change came since.
async fn flow_plan(state: &AppState, slug: &str) -> Result<Arc<FlowPlan>> {
    let tenant = state.tenant.0;
    if let Some(cached) = state.flow_plans.get(tenant, slug) {
        return Ok(cached);
    }
    let generation = state.flow_plans.generation();
    let flow = find_flow(state, slug).await?;
    let plan = plan_for(state, &flow).await?;
    let fingerprint = run::fingerprint(&state.secret, &plan)?;
    let made = Arc::new(FlowPlan { flow, plan, fingerprint });
    state.flow_plans.put(tenant, generation, made.clone());
    Ok(made)
}

/// A run of the flow for this request: the one the cookie names, or a new one.
enum Started {
    Running { run: Box<Run>, cookie: FlowCookie },
    Refused(Challenge),
}

async fn start(state: &AppState, made: &FlowPlan, request: &FlowRequest<'_>) -> Result<Started> {
    let flow = &made.flow;
    let next = request.next.and_then(safe_next);
    if let Some(reason) = requirement_unmet(flow, request.current.as_deref()) {
        return Ok(Started::Refused(denied(flow, reason.to_owned(), next.as_deref())));
    }
    if made.plan.stages.is_empty() {
        return Ok(Started::Refused(Challenge::AccessDenied { message: "This flow has no stages.".into() }));
    }
    let context = FlowContext { redirect: next, handoff: request.handoff.cloned(), ..client_context(request) };
    let lifetime = state.config.flows.run_lifetime.to_chrono();
    let (run, ticket) = run::start(&state.db, &state.secret, state.tenant, made.plan.clone(), &made.fingerprint, context, lifetime).await?;
    metrics::counter!("gatehouse_flow_runs_started_total", "designation" => flow.designation.clone()).increment(1);
    Ok(Started::Running { run: Box::new(run), cookie: FlowCookie::Set(ticket) })
}

/// A new run's context: who the client is.
fn client_context(request: &FlowRequest<'_>) -> FlowContext {
    FlowContext {
        client_ip: request.client.ip_text(),
        user_agent: request.client.user_agent.chars().take(512).collect(),
        ..FlowContext::default()
    }
}

/// The run the cookie names for the flow `slug`, if any; a run of another flow is ended (a
/// browser runs one flow at a time). A page form's token must match the run the cookie names.
async fn resume(state: &AppState, request: &FlowRequest<'_>, form: Option<&FormAnswer<'_>>) -> Result<Option<Run>> {
    let Some(key) = request.key else { return Ok(None) };
    let run = match run::find(&state.db, &state.secret, state.tenant, key).await? {
        None => return Ok(None),
        Some(Found::Stored(run)) => *run,
        Some(Found::Ticket(ticket)) => match from_ticket(state, request, ticket).await? {
            Some(run) => run,
            None => return Ok(None),
        },
    };
    if let Some(form) = form
        && !constant_time_eq(run::form_token(&state.secret, run.id).as_bytes(), form.token.as_bytes())
    {
        return Err(Error::Csrf);
    }
    if run.plan.flow.slug != request.slug {
        run::discard(&state.db, run.id).await?;
        return Ok(None);
    }
    Ok(Some(run))
}

/// The run a ticket names, rebuilt: `None` when the ticket is for another flow, the flow changed
/// since, or the caller may no longer run it.
async fn from_ticket(state: &AppState, request: &FlowRequest<'_>, ticket: run::Ticket) -> Result<Option<Run>> {
    let made = match flow_plan(state, request.slug).await {
        Ok(made) => made,
        Err(Error::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    if requirement_unmet(&made.flow, request.current.as_deref()).is_some() {
        return Ok(None);
    }
    Ok(run::from_ticket(ticket, made.plan.clone(), &made.fingerprint, client_context(request)))
}

/// The caller's run of the flow, or a new one; `Err` with the outcome when the flow refuses to
/// start.
async fn run_for(
    state: &AppState,
    request: &FlowRequest<'_>,
    form: Option<&FormAnswer<'_>>,
) -> Result<Result<(Run, FlowCookie, bool), Outcome>> {
    if let Some(run) = resume(state, request, form).await? {
        return Ok(Ok((run, FlowCookie::Keep, false)));
    }
    let made = flow_plan(state, request.slug).await?;
    match start(state, &made, request).await? {
        Started::Running { run, cookie } => Ok(Ok((*run, cookie, true))),
        Started::Refused(challenge) => Ok(Err(refused(FlowInfo::from(&made.flow), challenge, request.key.is_some()))),
    }
}

/// The stages the flow `slug` plans, in order.
pub async fn planned_stages(state: &AppState, slug: &str) -> Result<Vec<PlannedStage>> {
    Ok(flow_plan(state, slug).await?.plan.stages.clone())
}

/// Starts a run of the flow `request.slug` with its handoff, whatever run the browser had: the
/// value of the flow cookie that finds the new run, or why the flow refuses to start.
pub async fn hand_off(state: &AppState, request: FlowRequest<'_>) -> Result<std::result::Result<String, String>> {
    let made = flow_plan(state, request.slug).await?;
    match start(state, &made, &request).await? {
        Started::Running { cookie: FlowCookie::Set(ticket), .. } => Ok(Ok(ticket)),
        Started::Running { .. } => Err(Error::internal("a new run without a cookie")),
        Started::Refused(Challenge::AccessDenied { message }) => Ok(Err(message)),
        Started::Refused(_) => Ok(Err("This flow may not be run now.".to_owned())),
    }
}

/// Answers `GET /flows/executor/{slug}/`: the current question of the caller's run, starting
/// one when there is none.
pub async fn get(state: &AppState, request: FlowRequest<'_>) -> Result<Outcome> {
    let (mut run, cookie, _) = match run_for(state, &request, None).await? {
        Ok(found) => found,
        Err(outcome) => return Ok(outcome),
    };
    let flow = run.plan.flow.clone();
    let mut walk = Walk::new(state, &flow, &request, run.pending_account.take());
    // A run is saved only when entering stages changed it (a new run is not stored until then).
    let challenge = walk.advance(&mut run, false, FieldErrors::new()).await?;
    Ok(walk.finish(challenge, cookie))
}

fn refused(flow: FlowInfo, challenge: Challenge, had_cookie: bool) -> Outcome {
    let cookie = if had_cookie { FlowCookie::Clear } else { FlowCookie::Keep };
    Outcome { flow, challenge, effects: Vec::new(), cookie, run: None }
}

/// Answers `POST /flows/executor/{slug}/`: hands `response` to the current stage. A page form
/// (`form`) must carry its run's token and name the question it answers; a stale form is not
/// applied.
pub async fn solve(
    state: &AppState,
    request: FlowRequest<'_>,
    response: Map<String, Value>,
    form: Option<FormAnswer<'_>>,
) -> Result<Outcome> {
    let (mut run, cookie, fresh) = match run_for(state, &request, form.as_ref()).await? {
        Ok(found) => found,
        Err(outcome) => return Ok(outcome),
    };
    let flow = run.plan.flow.clone();
    let mut walk = Walk::new(state, &flow, &request, run.pending_account.take());
    if fresh {
        // Nothing to answer: start over rather than apply an answer to a question never asked.
        let reason = if request.key.is_none() && state.config.server.secure_cookies { COOKIE_NOT_RETURNED } else { RUN_GONE };
        let challenge = walk.advance(&mut run, false, FieldErrors::single(NON_FIELD_ERRORS, reason)).await?;
        return Ok(walk.finish(challenge, cookie));
    }
    if form.is_some_and(|form| form.step != run.step) {
        let challenge = walk.advance(&mut run, false, FieldErrors::single(NON_FIELD_ERRORS, STALE_ANSWER)).await?;
        return Ok(walk.finish(challenge, FlowCookie::Keep));
    }
    let Some(planned) = run.current().cloned() else {
        let challenge = walk.advance(&mut run, false, FieldErrors::new()).await?;
        return Ok(walk.finish(challenge, FlowCookie::Keep));
    };
    let Some(kind) = walk.kind_of(&planned) else {
        let challenge = walk.abandon(&run).await?;
        return Ok(walk.finish(challenge, FlowCookie::Keep));
    };
    if let Some(component) = response.get("component").and_then(Value::as_str)
        && component != kind.component()
    {
        let errors = FieldErrors::single("component", format!("Expected a response to {}.", kind.component()));
        let challenge = walk.advance(&mut run, false, errors).await?;
        return Ok(walk.finish(challenge, FlowCookie::Keep));
    }
    walk.answering = true;
    let decision = {
        let mut cx = walk.stage_context(run.id, &planned, &mut run.context);
        kind.solve(&mut cx, &response).await?
    };
    let outcome = match decision {
        Step::Passed => {
            run.plan.position += 1;
            run.context.failures = 0;
            walk.advance(&mut run, true, FieldErrors::new()).await
        }
        Step::PassedThen(stages) => {
            run.insert_after_current(stages);
            run.context.failures = 0;
            walk.advance(&mut run, true, FieldErrors::new()).await
        }
        Step::Challenge(prompt) => walk.ask(&mut run, true, kind.component(), prompt, FieldErrors::new()).await,
        Step::Denied(message) => walk.end(&run, Challenge::AccessDenied { message }).await,
        Step::Invalid(errors) => {
            run.context.failures += 1;
            metrics::counter!("gatehouse_flow_invalid_responses_total", "stage" => kind.kind()).increment(1);
            match planned.invalid_response_action {
                InvalidResponseAction::Retry => {}
                InvalidResponseAction::Restart => {
                    run.context = run.context.restarted();
                    run.plan.position = 0;
                }
                InvalidResponseAction::RestartWithContext => run.plan.position = 0,
            }
            walk.advance(&mut run, true, errors).await
        }
    };
    let challenge = match outcome {
        Ok(stop) => stop,
        // An earlier answer stored this ticket's run, and its reply (with the run's new key)
        // never reached the browser: the ticket is spent, so the flow starts again under a new
        // one rather than refusing every answer until the ticket expires.
        Err(_) if walk.ticket_spent => return start_over(state, &request, STALE_ANSWER).await,
        Err(error) => return Err(error),
    };
    Ok(walk.finish(challenge, FlowCookie::Keep))
}

/// A new run of the flow, asking its first question with `message`.
async fn start_over(state: &AppState, request: &FlowRequest<'_>, message: &str) -> Result<Outcome> {
    let made = flow_plan(state, request.slug).await?;
    let (mut run, cookie) = match start(state, &made, request).await? {
        Started::Running { run, cookie } => (*run, cookie),
        Started::Refused(challenge) => return Ok(refused(FlowInfo::from(&made.flow), challenge, request.key.is_some())),
    };
    let flow = run.plan.flow.clone();
    let mut walk = Walk::new(state, &flow, request, None);
    let challenge = walk.advance(&mut run, false, FieldErrors::single(NON_FIELD_ERRORS, message)).await?;
    Ok(walk.finish(challenge, cookie))
}

/// One request's walk through a run.
struct Walk<'a> {
    state: &'a AppState,
    flow: &'a FlowInfo,
    request: &'a FlowRequest<'a>,
    effects: Vec<Effect>,
    /// The pending user's account once a stage loaded it.
    account: Option<user::Model>,
    /// Whether an account has a device it can sign in with, once a stage found out.
    sign_in_device: Option<(i64, bool)>,
    /// The cookie key of a run this walk stored for the first time.
    stored_under: Option<String>,
    /// Whether storing or ending a ticket's run failed because an earlier answer had stored or
    /// ended it.
    ticket_spent: bool,
    /// Whether this walk applies an answer (rather than only asking the current question).
    answering: bool,
}

/// Where a walk stopped: the challenge, and the run if it goes on.
struct Stop {
    challenge: Challenge,
    run: Option<(Uuid, i64)>,
    ended: bool,
}

impl<'a> Walk<'a> {
    /// A walk of a run whose pending user's account, if read with the run, is `account`.
    fn new(state: &'a AppState, flow: &'a FlowInfo, request: &'a FlowRequest<'a>, account: Option<user::Model>) -> Self {
        Self {
            state,
            flow,
            request,
            effects: Vec::new(),
            account,
            sign_in_device: None,
            stored_under: None,
            ticket_spent: false,
            answering: false,
        }
    }

    fn finish(self, stop: Stop, cookie: FlowCookie) -> Outcome {
        let cookie = match (stop.ended, self.stored_under) {
            (true, _) => FlowCookie::Clear,
            (false, Some(key)) => FlowCookie::Set(key),
            (false, None) => cookie,
        };
        Outcome { flow: self.flow.clone(), challenge: stop.challenge, effects: self.effects, cookie, run: stop.run }
    }

    fn stage_context<'b>(&'b mut self, run_id: Uuid, stage: &'b PlannedStage, context: &'b mut FlowContext) -> StageContext<'b> {
        StageContext {
            run_id,
            state: self.state,
            flow: self.flow,
            stage,
            context,
            client: self.request.client,
            current: self.request.current.clone(),
            effects: &mut self.effects,
            account: &mut self.account,
            sign_in_device: &mut self.sign_in_device,
            remembered_device: self.request.remembered_device,
        }
    }

    /// The session the browser holds once this walk's effects are applied: one a stage started,
    /// none after a stage signed out, or the one the request came with.
    fn session_at_end(&self) -> Option<Uuid> {
        let mut session = self.request.current.as_ref().and_then(|current| current.session.as_ref()).map(|session| session.id);
        for effect in &self.effects {
            match effect {
                Effect::SignedIn { session: new, .. } => session = Some(new.session.id),
                Effect::SignedOut => session = None,
                Effect::RememberDevice { .. } => {}
            }
        }
        session
    }

    /// The implementation of a planned stage's kind; `None` when this server does not know it.
    fn kind_of(&self, planned: &PlannedStage) -> Option<Arc<dyn super::stage::StageKind>> {
        let kind = self.state.stages.get(&planned.kind).cloned();
        if kind.is_none() {
            tracing::warn!(stage = %planned.stage_id, kind = %planned.kind, "stage of a kind this server does not know");
        }
        kind
    }

    /// Enters stages from the run's position until one asks a question or the flow ends.
    /// `changed` says whether the run must be saved even if nothing else changes.
    async fn advance(&mut self, run: &mut Run, mut changed: bool, errors: FieldErrors) -> Result<Stop> {
        loop {
            let Some(planned) = run.current().cloned() else {
                let mut to = run.context.redirect.clone().unwrap_or_else(|| "/".to_owned());
                metrics::counter!("gatehouse_flow_runs_completed_total", "designation" => self.flow.designation.clone()).increment(1);
                if let (Some(_), Some(session)) = (&run.context.handoff, self.session_at_end()) {
                    // The proof is redeemed against the finished run's row, so the row is
                    // written even when the run ends on its first page.
                    self.answering = true;
                    to = super::handoff::with_proof(&self.state.secret, &to, run.id, run.plan.flow.id, session, run.expires);
                }
                return self.end(run, Challenge::Redirect { to }).await;
            };
            let Some(kind) = self.kind_of(&planned) else {
                return self.abandon(run).await;
            };
            let before = run.context.clone();
            let step = {
                let mut cx = self.stage_context(run.id, &planned, &mut run.context);
                kind.enter(&mut cx).await?
            };
            changed |= run.context != before;
            match step {
                Step::Challenge(prompt) => return self.ask(run, changed, kind.component(), prompt, errors).await,
                Step::Passed => {
                    run.plan.position += 1;
                    run.context.failures = 0;
                    changed = true;
                }
                Step::PassedThen(stages) => {
                    run.insert_after_current(stages);
                    run.context.failures = 0;
                    changed = true;
                }
                Step::Denied(message) => return self.end(run, Challenge::AccessDenied { message }).await,
                Step::Invalid(problems) => {
                    let message = problems.fields().values().flatten().cloned().collect::<Vec<_>>().join(" ");
                    return self.end(run, Challenge::AccessDenied { message }).await;
                }
            }
        }
    }

    async fn ask(&mut self, run: &mut Run, changed: bool, component: &'static str, prompt: Prompt, errors: FieldErrors) -> Result<Stop> {
        if changed {
            let from_ticket = !run.stored;
            match run::save(&self.state.db, &self.state.secret, self.state.tenant, run).await? {
                Saved::Updated => {}
                Saved::Stored(key) => self.stored_under = Some(key),
                Saved::Lost => {
                    self.ticket_spent = from_ticket;
                    return Err(Error::field(NON_FIELD_ERRORS, STALE_ANSWER));
                }
            }
        }
        Ok(Stop { challenge: Challenge::Stage { component, prompt, errors }, run: Some((run.id, run.step)), ended: false })
    }

    async fn end(&mut self, run: &Run, challenge: Challenge) -> Result<Stop> {
        // A run that was never stored and took no answer has nothing to end: opening a flow
        // that ends at once writes nothing either.
        if (run.stored || self.answering) && !run::finish(&self.state.db, self.state.tenant, run).await? {
            self.ticket_spent = !run.stored;
            return Err(Error::field(NON_FIELD_ERRORS, STALE_ANSWER));
        }
        Ok(Stop { challenge, run: None, ended: true })
    }

    /// The plan names a stage of a kind this server no longer knows: end the run cleanly.
    async fn abandon(&mut self, run: &Run) -> Result<Stop> {
        self.end(run, Challenge::AccessDenied { message: "This flow changed while it ran; please start again.".into() }).await
    }
}
