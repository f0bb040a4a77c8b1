//! Schedules: executions started by time and by event. `POST/GET/DELETE
//! /v1/schedules`, pause and resume, `POST /v1/events`; a deployed workflow whose
//! document has a `schedule` gets one of its own; and the loop that starts what is due.
//!
//! A schedule's spec is what the API took (the workflow, its input and labels, the
//! trigger, the policies); its state is how far the loop got ([`plan::State`]). One
//! server at a time runs the loop (a named lease when servers share a database), and
//! each slot's execution id derives from the schedule and the slot, so a slot started
//! again after a crash or by another server is the same execution, never a second.

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use crate::{Service, wire};
use plan::{Catchup, Overlap, Policies, Trigger};

/// How often the loop looks for due slots.
pub const TICK: Duration = Duration::from_millis(250);

/// The name of the lease that says which server runs the schedules.
const LEASE: &str = "scheduler";

/// The label every started execution carries: the schedule's id.
pub const LABEL: &str = "skein.dev/schedule";

/// What a schedule starts and when: the body of `POST /v1/schedules`, and what is
/// stored.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// The schedule's id: 1 to 64 letters, digits, `-`, `_` and `.`.
    pub id: String,
    /// A named workflow (`name`, its latest revision at each start, or
    /// `name@revision`), or give `workflow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_ref: Option<String>,
    /// A workflow definition (YAML or JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// Each execution's input; `{}` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// Labels of each execution (besides `skein.dev/schedule`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Start at every multiple of this duration since the Unix epoch (`30s`, `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Start at the times of a cron expression: 5 fields (`0 9 * * 1-5`), or 6 with
    /// seconds first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The cron expression's time zone (IANA, such as `Europe/Paris`); UTC by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Start again this long after the previous execution ended (the first at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Start on events posted to `POST /v1/events`: `{"one": {"with": {…}}}`, `{"any":
    /// [filters]}` (each matching event starts one) or `{"all": [filters]}` (one start
    /// once every filter has matched an event). A filter's attributes match exactly or
    /// as an anchored regular expression. The execution's input is the list of events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub on: Option<Value>,
    /// Which slots missed while no server ran the schedule start: `skip` (the default:
    /// none, only a slot at most a minute late), `one` (the latest), `all` (up to
    /// `catchupLimit`, the most recent).
    #[serde(default)]
    pub catchup: Catchup,
    /// The most missed slots `catchup: all` starts (100 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catchup_limit: Option<u32>,
    /// What a slot does while the previous execution still runs: `skip` (the
    /// default), `buffer` (the latest waits for it to end), `allow` (starts anyway).
    #[serde(default)]
    pub overlap: Overlap,
    /// A paused schedule starts nothing; slots that pass meanwhile are missed.
    #[serde(default)]
    pub paused: bool,
    /// Set by the server: `workflow` for the schedule of a deployed workflow's
    /// document, deleted with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Spec {
    /// The trigger, or what is wrong with it.
    pub fn trigger(&self) -> Result<Trigger, String> {
        let duration = |field: &str, text: &str| -> Result<i64, String> {
            let d: jiff::SignedDuration = text.parse().map_err(|e| {
                format!("`{field}: {text}` is not a duration such as `30s`, `5m` or `1h`: {e}")
            })?;
            let ms = d.as_millis();
            if ms < 1000 {
                return Err(format!("`{field}: {text}` is shorter than one second"));
            }
            i64::try_from(ms).map_err(|_| format!("`{field}: {text}` is too long"))
        };
        if let Some(on) = &self.on {
            if self.every.is_some() || self.cron.is_some() || self.after.is_some() {
                return Err(
                    "a schedule takes only one of `every`, `cron`, `after` and `on`".into(),
                );
            }
            return plan::Events::parse(on).map(Trigger::On);
        }
        match (&self.every, &self.cron, &self.after) {
            (Some(every), None, None) => Ok(Trigger::Every(duration("every", every)?)),
            (None, Some(cron), None) => Ok(Trigger::Cron(Box::new(plan::Cron::parse(
                cron,
                self.timezone.as_deref().unwrap_or("UTC"),
            )?))),
            (None, None, Some(after)) => Ok(Trigger::After(duration("after", after)?)),
            (None, None, None) => {
                Err("a schedule needs one of `every`, `cron`, `after` or `on`".into())
            }
            _ => Err("a schedule takes only one of `every`, `cron` and `after`".into()),
        }
    }

    fn policies(&self) -> Policies {
        Policies {
            catchup: self.catchup,
            catchup_limit: self.catchup_limit.unwrap_or(plan::DEFAULT_CATCHUP_LIMIT),
            overlap: self.overlap,
        }
    }

    /// Checks what a request may not get wrong, before anything is stored.
    fn check(&self, service: &Service) -> ApiResult<Trigger> {
        let ok = (1..=64).contains(&self.id.len())
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(ApiError::bad_request(format!(
                "`{}` is not a valid schedule id: use 1 to 64 letters, digits, `-`, `_` or `.`",
                self.id
            )));
        }
        if self.timezone.is_some() && self.cron.is_none() {
            return Err(ApiError::bad_request("`timezone` only applies to `cron`"));
        }
        if self.catchup_limit == Some(0) {
            return Err(ApiError::bad_request("`catchupLimit` must be 1 or more"));
        }
        match (&self.workflow, &self.workflow_ref) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(ApiError::bad_request(
                    "give a schedule exactly one of `workflow` and `workflowRef`",
                ));
            }
            (Some(text), None) => {
                let parsed = gcw::parse_any(text, &crate::definition_options(service));
                if parsed.workflow.is_none() {
                    return Err(crate::invalid_workflow(text, &parsed.diagnostics));
                }
            }
            (None, Some(_)) => {}
        }
        self.trigger().map_err(ApiError::bad_request)
    }
}

/// A schedule as the API shows it.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct View {
    #[serde(flatten)]
    pub spec: Spec,
    /// Executions started, and slots skipped (missed, or under `overlap: skip`).
    pub started: u64,
    pub skipped: u64,
    /// The execution started last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_execution: Option<String>,
    /// The next times it starts an execution (none while paused; for `after`, the next
    /// once the last run has ended).
    pub upcoming: Vec<String>,
    /// Why the last start failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: String,
}

/// `GET /v1/schedules`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<View>,
}

fn view(stored: store::StoredSchedule, now: plan::Millis) -> ApiResult<View> {
    let spec: Spec = serde_json::from_value(stored.spec).map_err(ApiError::internal)?;
    let state: plan::State = serde_json::from_value(stored.state.clone()).unwrap_or_default();
    let upcoming = match (spec.paused, spec.trigger()) {
        (true, _) | (_, Err(_)) => Vec::new(),
        (false, Ok(Trigger::After(_))) => state.next_at.into_iter().collect(),
        (false, Ok(Trigger::On(_))) => Vec::new(),
        (false, Ok(trigger)) => plan::upcoming(&trigger, now.max(state.cursor), 5),
    };
    Ok(View {
        started: state.started,
        skipped: state.skipped,
        last_execution: state.last.clone(),
        upcoming: upcoming.into_iter().map(wire::rfc3339).collect(),
        last_error: stored.state["lastError"].as_str().map(str::to_string),
        created_at: wire::rfc3339(stored.created_at),
        spec,
    })
}

fn now_ms() -> plan::Millis {
    jiff::Timestamp::now().as_millisecond()
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("there is no schedule `{id}`"),
    )
}

/// Creates a schedule: true if new, false if the same one existed.
pub(crate) async fn create(
    service: &Arc<Service>,
    caller: &Caller,
    spec: Spec,
) -> ApiResult<(View, bool)> {
    caller.require(Role::Run)?;
    let mut spec = spec;
    spec.source = None;
    let trigger = spec.check(service)?;
    if let Some(reference) = &spec.workflow_ref {
        crate::workflows::resolve(service, &caller.project, reference).await?;
    }
    let created = put(service, &caller.project, &spec, &trigger).await?;
    let stored = service
        .store()
        .schedule(&caller.project, &spec.id)
        .await?
        .ok_or_else(|| not_found(&spec.id))?;
    if !created {
        let existing: Spec =
            serde_json::from_value(stored.spec.clone()).map_err(ApiError::internal)?;
        if existing != spec {
            return Err(ApiError::conflict(format!(
                "a different schedule `{}` exists; delete it first, or pause and resume it",
                spec.id
            )));
        }
    }
    Ok((view(stored, now_ms())?, created))
}

/// Stores a new schedule, its cursor at now (no slot before its creation starts).
async fn put(service: &Service, project: &str, spec: &Spec, trigger: &Trigger) -> ApiResult<bool> {
    let now = now_ms();
    let state = plan::State {
        cursor: now,
        next_at: matches!(trigger, Trigger::After(_)).then_some(now),
        ..plan::State::default()
    };
    Ok(service
        .store()
        .create_schedule(
            project,
            &spec.id,
            serde_json::to_value(spec).map_err(ApiError::internal)?,
            serde_json::to_value(&state).map_err(ApiError::internal)?,
        )
        .await?)
}

pub(crate) async fn get(service: &Service, caller: &Caller, id: &str) -> ApiResult<View> {
    caller.require(Role::Read)?;
    let stored = service
        .store()
        .schedule(&caller.project, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    view(stored, now_ms())
}

pub(crate) async fn list(service: &Service, caller: &Caller) -> ApiResult<Vec<View>> {
    caller.require(Role::Read)?;
    let now = now_ms();
    service
        .store()
        .schedules(Some(&caller.project))
        .await?
        .into_iter()
        .map(|s| view(s, now))
        .collect()
}

pub(crate) async fn delete(service: &Service, caller: &Caller, id: &str) -> ApiResult<()> {
    caller.require(Role::Run)?;
    if service.store().delete_schedule(&caller.project, id).await? {
        Ok(())
    } else {
        Err(not_found(id))
    }
}

/// Pauses or resumes a schedule. Resuming moves its cursor to now: what passed while
/// it was paused is not caught up.
pub(crate) async fn set_paused(
    service: &Service,
    caller: &Caller,
    id: &str,
    paused: bool,
) -> ApiResult<View> {
    caller.require(Role::Run)?;
    let stored = service
        .store()
        .schedule(&caller.project, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let mut spec: Spec = serde_json::from_value(stored.spec).map_err(ApiError::internal)?;
    if spec.paused != paused {
        spec.paused = paused;
        let mut state: plan::State = serde_json::from_value(stored.state).unwrap_or_default();
        if !paused {
            state.cursor = state.cursor.max(now_ms());
        }
        service
            .store()
            .update_schedule(
                &caller.project,
                id,
                Some(serde_json::to_value(&spec).map_err(ApiError::internal)?),
                Some(serde_json::to_value(&state).map_err(ApiError::internal)?),
            )
            .await?;
    }
    get(service, caller, id).await
}

/// Keeps the schedule of a deployed workflow in step with its document (`program`, or
/// `None` once the workflow is deleted): created or replaced when the document has a
/// `schedule`, deleted when it no longer has one. Its id is the workflow's name (for a
/// Zigflow document, its `metadata.scheduleId`); it starts the workflow itself (for
/// Zigflow, `metadata.scheduleWorkflowName`) with Zigflow's `metadata.scheduleInput`.
/// A schedule of that id made otherwise is left alone. Returns what was not applied.
pub(crate) async fn follow_document(
    service: &Service,
    project: &str,
    name: &str,
    program: Option<&program::Program>,
) -> ApiResult<Vec<String>> {
    let source = format!("workflow:{name}");
    let ours: Vec<store::StoredSchedule> = service
        .store()
        .schedules(Some(project))
        .await?
        .into_iter()
        .filter(|s| s.spec["source"] == source.as_str())
        .collect();
    let mut notes = Vec::new();
    let wanted = match program.and_then(|p| p.schedule.as_ref().map(|s| (p, s))) {
        Some((program, schedule)) => document_spec(name, &source, program, schedule, &mut notes),
        None => None,
    };
    for stale in &ours {
        let keep = wanted.as_ref().is_some_and(|w| {
            w.id == stale.id && serde_json::to_value(w).ok().as_ref() == Some(&stale.spec)
        });
        if !keep {
            service.store().delete_schedule(project, &stale.id).await?;
        }
    }
    let Some(spec) = wanted else {
        return Ok(notes);
    };
    if ours
        .iter()
        .any(|s| s.id == spec.id && Some(&s.spec) == serde_json::to_value(&spec).ok().as_ref())
    {
        return Ok(notes);
    }
    let trigger = spec.trigger().map_err(ApiError::bad_request)?;
    if !put(service, project, &spec, &trigger).await? {
        notes.push(format!(
            "the document's schedule is not applied: a schedule `{}` made otherwise exists",
            spec.id
        ));
    }
    Ok(notes)
}

/// The schedule a document asks for, if skein can run it.
fn document_spec(
    name: &str,
    source: &str,
    program: &program::Program,
    schedule: &program::Schedule,
    notes: &mut Vec<String>,
) -> Option<Spec> {
    let fixed = |d: &Option<program::Duration>| match d {
        Some(program::Duration::Fixed(d)) => Some(format!("{}ms", d.as_millis())),
        _ => None,
    };
    let metadata = &program.document.metadata;
    let text = |key: &str| {
        metadata
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let zigflow = program.accumulates_data;
    let spec = Spec {
        id: zigflow
            .then(|| text("scheduleId"))
            .flatten()
            .unwrap_or_else(|| name.to_string()),
        workflow_ref: Some(
            zigflow
                .then(|| text("scheduleWorkflowName"))
                .flatten()
                .unwrap_or_else(|| name.to_string()),
        ),
        input: zigflow
            .then(|| {
                metadata
                    .get("scheduleInput")
                    .and_then(|i| i.get(0))
                    .cloned()
            })
            .flatten(),
        every: fixed(&schedule.every),
        cron: schedule.cron.clone(),
        after: fixed(&schedule.after),
        source: Some(source.to_string()),
        ..Spec::default()
    };
    let mut spec = spec;
    if schedule.on.is_some() {
        spec.on = Some(program.definition["schedule"]["on"].clone());
    }
    match spec.trigger() {
        Ok(_) => Some(spec),
        Err(why) => {
            notes.push(format!("the document's schedule is not applied: {why}"));
            None
        }
    }
}

impl Service {
    /// Starts what the schedules say, until `stop`. With servers sharing a database
    /// only the holder of the scheduler's lease does; another takes over when it lapses.
    pub async fn run_schedules(self: Arc<Self>, owner: String, stop: CancellationToken) {
        let cluster = self.cluster().cloned();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut holding = false;
        // When the lease was last taken or renewed: renewed as often as the executions'.
        let mut renewed: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Some(cluster) = &cluster
                && renewed.is_none_or(|at| !holding || at.elapsed() >= cluster.renew_every)
            {
                let held = match self.store().hold(LEASE, &owner, cluster.lease_ms()).await {
                    Ok(held) => held,
                    Err(e) => {
                        tracing::warn!("schedules: cannot renew the scheduler's lease: {e}");
                        false
                    }
                };
                renewed = Some(tokio::time::Instant::now());
                if held != holding {
                    holding = held;
                    let now = if held { "runs" } else { "no longer runs" };
                    tracing::info!("schedules: {owner} {now} the schedules");
                }
            }
            if cluster.is_some() && !holding {
                continue;
            }
            if let Err(e) = self.tick_schedules(now_ms()).await {
                tracing::warn!("schedules: {}", e.body.message);
            }
        }
    }

    /// One pass over every schedule at `now`.
    async fn tick_schedules(self: &Arc<Self>, now: plan::Millis) -> Result<(), ApiError> {
        let schedules = self.store().schedules(None).await?;
        let mut active = 0;
        for stored in schedules {
            let Ok(spec) = serde_json::from_value::<Spec>(stored.spec.clone()) else {
                continue;
            };
            if spec.paused {
                continue;
            }
            active += 1;
            let Ok(trigger) = spec.trigger() else {
                continue;
            };
            if matches!(trigger, Trigger::On(_)) {
                // Started by events as they are posted, not by time.
                continue;
            }
            let state: plan::State =
                serde_json::from_value(stored.state.clone()).unwrap_or_default();
            let due = match &trigger {
                // A next moment ahead was set from the end of its last run.
                Trigger::After(_) => state.next_at.is_none_or(|t| t <= now),
                _ => {
                    state.buffered.is_some()
                        || trigger.next_slot(state.cursor).is_some_and(|s| s <= now)
                }
            };
            if !due {
                // Nothing to decide: no read of the last execution, no write.
                continue;
            }
            let last = match &state.last {
                Some(id) => self.store().execution(id).await?,
                None => None,
            };
            let running = last.as_ref().is_some_and(|e| !e.status.is_final());
            let decision = match trigger {
                Trigger::After(after) => {
                    let ended = last
                        .as_ref()
                        .filter(|e| e.status.is_final())
                        .map(|e| e.updated_at);
                    plan::decide_after(after, &state, now, ended, running)
                }
                _ => plan::decide(&trigger, spec.policies(), &state, now, running),
            };
            let mut new_state =
                serde_json::to_value(&decision.state).map_err(ApiError::internal)?;
            for slot in &decision.start {
                let id = plan::execution_id(&spec.id, &trigger, *slot);
                match self.start_slot(&stored.project, &spec, &id, None).await {
                    Ok(()) => {
                        new_state["last"] = json!(id);
                        self.options().metrics.schedule_started();
                    }
                    Err(e) => {
                        tracing::warn!(
                            "schedule `{}` could not start `{id}`: {}",
                            spec.id,
                            e.body.message
                        );
                        new_state["lastError"] = json!(e.body.message);
                    }
                }
            }
            if new_state != stored.state {
                self.store()
                    .update_schedule(&stored.project, &spec.id, None, Some(new_state))
                    .await?;
            }
        }
        self.options().metrics.set_schedules(active);
        Ok(())
    }

    /// Starts one slot's execution: the same id again is the same execution.
    async fn start_slot(
        self: &Arc<Self>,
        project: &str,
        spec: &Spec,
        id: &str,
        input: Option<Value>,
    ) -> ApiResult<()> {
        let caller = Caller {
            project: project.to_string(),
            role: Role::Run,
        };
        let mut labels: BTreeMap<String, String> = spec.labels.clone();
        labels.insert(LABEL.into(), spec.id.clone());
        let request = wire::StartRequest {
            workflow: spec.workflow.clone().unwrap_or_default(),
            workflow_ref: spec.workflow_ref.clone(),
            input: input.or_else(|| spec.input.clone()),
            id: Some(id.to_string()),
            labels: labels.into_iter().collect(),
        };
        match crate::start_execution(self, &caller, request).await {
            Ok(_) => Ok(()),
            // Started before (by this server before a crash, or another): it counts.
            Err(e) if e.status == StatusCode::CONFLICT => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// `POST /v1/schedules`.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", request_body = Spec, responses((status = 201, description = "A new schedule", body = View), (status = 200, description = "The same schedule existed", body = View), (status = 409, description = "A different schedule has that id", body = wire::Error), (status = 400, description = "Bad request", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error)))]
pub(crate) async fn post(
    State(service): State<Arc<Service>>,
    caller: Caller,
    body: Result<Json<Spec>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<View>)> {
    let Json(spec) = body?;
    let (view, created) = create(&service, &caller, spec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// `GET /v1/schedules`.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules", responses((status = 200, description = "The caller's schedules", body = ScheduleList), (status = 401, description = "No or unknown token", body = wire::Error)))]
pub(crate) async fn get_all(
    State(service): State<Arc<Service>>,
    caller: Caller,
) -> ApiResult<Json<ScheduleList>> {
    Ok(Json(ScheduleList {
        schedules: list(&service, &caller).await?,
    }))
}

/// `GET /v1/schedules/{id}`: with its next times.
#[utoipa::path(get, path = "/v1/schedules/{id}", tag = "schedules", params(("id" = String, Path)), responses((status = 200, description = "The schedule", body = View), (status = 404, description = "No such schedule", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error)))]
pub(crate) async fn get_one(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<View>> {
    Ok(Json(get(&service, &caller, &id).await?))
}

/// `DELETE /v1/schedules/{id}`: the executions it started go on.
#[utoipa::path(delete, path = "/v1/schedules/{id}", tag = "schedules", params(("id" = String, Path)), responses((status = 204, description = "Deleted"), (status = 404, description = "No such schedule", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error)))]
pub(crate) async fn delete_one(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    delete(&service, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/schedules/{id}/pause`.
#[utoipa::path(post, path = "/v1/schedules/{id}/pause", tag = "schedules", params(("id" = String, Path)), responses((status = 200, description = "Paused", body = View), (status = 404, description = "No such schedule", body = wire::Error)))]
pub(crate) async fn pause(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<View>> {
    Ok(Json(set_paused(&service, &caller, &id, true).await?))
}

/// `POST /v1/schedules/{id}/resume`: slots that passed while paused are not caught up.
#[utoipa::path(post, path = "/v1/schedules/{id}/resume", tag = "schedules", params(("id" = String, Path)), responses((status = 200, description = "Resumed", body = View), (status = 404, description = "No such schedule", body = wire::Error)))]
pub(crate) async fn resume(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<View>> {
    Ok(Json(set_paused(&service, &caller, &id, false).await?))
}

/// What `POST /v1/events` did with an event.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Posted {
    /// The executions it started (or had started before: the same event posted again
    /// starts nothing new), one per schedule whose `on` it completed.
    pub started: Vec<String>,
}

/// Offers an event to every schedule of the caller's project that starts on events.
pub(crate) async fn post_event(
    service: &Arc<Service>,
    caller: &Caller,
    mut event: Value,
) -> ApiResult<Vec<String>> {
    caller.require(Role::Run)?;
    if !event.get("type").is_some_and(Value::is_string) {
        return Err(ApiError::bad_request(
            "the event must be a CloudEvent in structured JSON, with a string `type`",
        ));
    }
    if !event.get("id").is_some_and(Value::is_string) {
        // No id: one of its own, so that it starts what it starts once.
        event["id"] = json!(uuid::Uuid::new_v4().to_string());
    }
    let mut started = Vec::new();
    for stored in service.store().schedules(Some(&caller.project)).await? {
        let Ok(spec) = serde_json::from_value::<Spec>(stored.spec.clone()) else {
            continue;
        };
        let Ok(Trigger::On(events)) = spec.trigger() else {
            continue;
        };
        if spec.paused {
            continue;
        }
        let mut state: plan::State =
            serde_json::from_value(stored.state.clone()).unwrap_or_default();
        if let Some(batch) = events.offer(&event, &mut state.pending) {
            let id = plan::event_execution_id(&spec.id, &event);
            service
                .start_slot(&stored.project, &spec, &id, Some(Value::Array(batch)))
                .await?;
            state.started += 1;
            state.last = Some(id.clone());
            service.options().metrics.schedule_started();
            started.push(id);
        }
        let new_state = serde_json::to_value(&state).map_err(ApiError::internal)?;
        if new_state != stored.state {
            service
                .store()
                .update_schedule(&stored.project, &spec.id, None, Some(new_state))
                .await?;
        }
    }
    Ok(started)
}

/// `POST /v1/events`: a CloudEvent for the schedules that start on events.
#[utoipa::path(post, path = "/v1/events", tag = "schedules", request_body(content = Object, description = "A CloudEvent in structured JSON, with a string type"), responses((status = 202, description = "Offered to the schedules; the executions it started", body = Posted), (status = 400, description = "Not a CloudEvent", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error)))]
pub(crate) async fn post_events(
    State(service): State<Arc<Service>>,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Posted>)> {
    let Json(event) = body?;
    let started = post_event(&service, &caller, event).await?;
    Ok((StatusCode::ACCEPTED, Json(Posted { started })))
}
