//! skein's REST API under `/v1`, and the [`Service`] that runs executions for it.
//!
//! **API boundary:** the only crate that knows HTTP. Handlers turn requests into calls
//! on the service and the store, and results into [`wire`] types; every failure is an
//! [`ApiError`], which becomes a JSON body that says what was wrong (4xx) or nothing
//! internal (5xx).

pub mod auth;
pub mod callbacks;
mod cluster;
mod error;
mod google;
pub mod google_grpc;
pub mod graph;
pub mod grpc;
mod hub;
mod messages;
mod metrics;
pub mod oidc;
mod openapi;
pub mod quota;
pub mod schedules;
pub mod server_info;
mod service;
mod stream;
pub mod wire;
mod workflows;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{any, get, post};
use axum::{Json, Router};
use engine::events::Lifecycle;
use serde::Deserialize;
use serde_json::Value;
use store::{Created, Execution};

use auth::{Caller, Role};
pub use error::ApiError;
use error::{ApiResult, too_large};
pub use metrics::Metrics;
pub use service::{Cluster, Options, Secrets, Service, Steered, WorkerMetrics};

/// The longest `?wait` a request may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// The API's routes over `service`.
pub fn app(service: Arc<Service>) -> Router {
    let max_body = service.options().max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/executions", post(start).get(list))
        .route(
            "/v1/workflows",
            post(workflows::deploy).get(workflows::list),
        )
        .route(
            "/v1/workflows/{name}",
            get(workflows::get_one).delete(workflows::delete),
        )
        // Google's Workflows and Executions APIs (v1).
        .route(
            "/v1/projects/{project}/locations/{location}/workflows",
            post(google::create_workflow).get(google::list_workflows),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/workflows/{workflow}",
            get(google::get_workflow)
                .patch(google::patch_workflow)
                .delete(google::delete_workflow),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/operations/{operation}",
            get(google::get_operation),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/workflows/{workflow}/executions",
            post(google::create_execution).get(google::list_executions),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/workflows/{workflow}/executions/{execution}",
            get(google::get_execution).post(google::cancel_execution),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/workflows/{workflow}/executions/{execution}/callbacks/{callback}",
            any(google::callback),
        )
        .route(
            "/v1/events",
            get(stream::all_events).post(schedules::post_events),
        )
        .route("/v1/executions/{id}", get(get_one))
        .route("/v1/executions/{id}/graph", get(graph::execution_graph))
        .route("/v1/validate", post(graph::validate))
        .route("/v1/server", get(server_info::get))
        .route("/v1/whoami", get(server_info::whoami))
        .route("/v1/executions/{id}/cancel", post(cancel))
        .route("/v1/executions/{id}/pause", post(pause))
        .route("/v1/executions/{id}/resume", post(resume))
        .route(
            "/v1/executions/{id}/events",
            post(deliver).get(stream::execution_events),
        )
        .route(
            "/v1/schedules",
            post(schedules::post).get(schedules::get_all),
        )
        .route(
            "/v1/schedules/{id}",
            get(schedules::get_one).delete(schedules::delete_one),
        )
        .route("/v1/schedules/{id}/pause", post(schedules::pause))
        .route("/v1/schedules/{id}/resume", post(schedules::resume))
        .route(
            "/v1/executions/{id}/signals/{name}",
            post(messages::post_signal),
        )
        .route(
            "/v1/executions/{id}/queries/{name}",
            get(messages::get_query),
        )
        .route(
            "/v1/executions/{id}/updates/{name}",
            post(messages::post_update),
        )
        .route(
            "/v1/executions/{id}/updates/{name}/{update}",
            get(messages::get_update),
        )
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(service)
}

/// The longest `/healthz` waits for the database.
const HEALTH_WAIT: Duration = Duration::from_secs(2);

#[utoipa::path(get, path = "/healthz", tag = "server", responses((status = 200, description = "The server and its database answer"), (status = 503, description = "The database does not answer", body = crate::wire::Error)))]
async fn healthz(State(service): State<Arc<Service>>) -> ApiResult<Json<Value>> {
    // A read through the store proves the database answers, soon enough for a probe.
    match tokio::time::timeout(HEALTH_WAIT, service.store().execution("")).await {
        Ok(read) => read?,
        Err(_) => return Err(ApiError::unavailable()),
    };
    Ok(Json(serde_json::json!({"status": "ok"})))
}

#[derive(Debug, Deserialize)]
struct WaitParam {
    /// How long to hold the response for the execution to end, such as `30s`.
    wait: Option<String>,
}

impl WaitParam {
    fn duration(&self) -> ApiResult<Option<Duration>> {
        parse_wait(self.wait.as_deref())
    }
}

/// A `?wait=` duration, such as `30s` or `500ms`, at most [`MAX_WAIT`].
pub(crate) fn parse_wait(text: Option<&str>) -> ApiResult<Option<Duration>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let parsed: jiff::SignedDuration = text.parse().map_err(|e| {
        ApiError::bad_request(format!(
            "`wait={text}` is not a duration such as `30s` or `500ms`: {e}"
        ))
    })?;
    let wait = Duration::try_from(parsed)
        .map_err(|_| ApiError::bad_request(format!("`wait={text}` is negative")))?;
    if wait > MAX_WAIT {
        return Err(ApiError::bad_request(format!(
            "`wait={text}` is longer than the limit of {} s",
            MAX_WAIT.as_secs()
        )));
    }
    Ok(Some(wait))
}

/// How the server reads a definition it is given, with its limits.
pub(crate) fn definition_options(service: &Service) -> dsl::Options {
    let limits = service.options();
    dsl::Options {
        max_bytes: limits.max_definition_bytes,
        cloud_workflows: limits.cloud_workflows,
        zigflow: limits.zigflow,
        ..Default::default()
    }
}

/// Client-chosen ids: letters, digits and `-_.:`, 1 to 128 of them. (A `/` would
/// clash with the ids of child executions.)
fn check_id(id: &str) -> ApiResult<()> {
    let ok = (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{id}` is not a valid execution id: use 1 to 128 letters, digits, `-`, `_`, `.` or `:`"
        )))
    }
}

/// Labels: at most 64, names of 1 to 63 letters, digits and `-_./`, values of at most
/// 256 characters.
fn check_labels(labels: &store::Labels) -> ApiResult<()> {
    if labels.len() > 64 {
        return Err(ApiError::bad_request(format!(
            "{} labels is more than the limit of 64",
            labels.len()
        )));
    }
    for (name, value) in labels {
        let name_ok = (1..=63).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if !name_ok {
            return Err(ApiError::bad_request(format!(
                "`{name}` is not a valid label name: use 1 to 63 letters, digits, `-`, `_`, `.` or `/`"
            )));
        }
        if value.chars().count() > 256 {
            return Err(ApiError::bad_request(format!(
                "the value of label `{name}` is longer than 256 characters"
            )));
        }
    }
    Ok(())
}

/// A `?label=name:value` filter.
pub(crate) fn parse_label(text: &str) -> ApiResult<(String, String)> {
    text.split_once(':')
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .ok_or_else(|| {
            ApiError::bad_request(format!("`label={text}` is not of the form `name:value`"))
        })
}

/// `POST /v1/executions[?wait=30s]`: 201 for a new execution, 200 for a repeated start
/// (same id, same definition and input), 409 for an id taken by a different one.
#[utoipa::path(post, path = "/v1/executions", tag = "executions", request_body = wire::StartRequest, params(("wait" = Option<String>, Query, description = "Hold the response until the execution ends, at most this long (such as 30s)")), responses((status = 201, description = "A new execution", body = wire::Execution), (status = 200, description = "The execution started before with this id, definition and input", body = wire::Execution), (status = 409, description = "The id is taken by a different execution", body = wire::Error), (status = 413, description = "Over a size limit", body = wire::Error), (status = 400, description = "Bad request", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error)))]
async fn start(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Query(wait): Query<WaitParam>,
    body: Result<Json<wire::StartRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<wire::Execution>)> {
    caller.require(Role::Run)?;
    let wait = wait.duration()?;
    let Json(request) = body?;
    let (id, created) = start_execution(&service, &caller, request).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let execution = service
        .wait(&id, wait.unwrap_or(Duration::ZERO))
        .await?
        .ok_or_else(|| ApiError::internal(format!("the execution `{id}` vanished")))?;
    Ok((status, Json(execution.into())))
}

/// Validates a start request and creates (and launches) its execution, or finds the one
/// started before with the same id, definition and input. Returns the id, and whether
/// the execution is new. Shared by REST and gRPC.
pub(crate) async fn start_execution(
    service: &Arc<Service>,
    caller: &Caller,
    mut request: wire::StartRequest,
) -> ApiResult<(String, bool)> {
    caller.require(Role::Run)?;
    if let Some(id) = &request.id {
        check_id(id)?;
    }
    // A named workflow: its definition, under its name.
    let named = match (&request.workflow_ref, request.workflow.is_empty()) {
        (Some(reference), true) => {
            let deployed = workflows::resolve(service, &caller.project, reference).await?;
            request.workflow = deployed.definition;
            Some(deployed.name)
        }
        (Some(_), false) => {
            return Err(ApiError::bad_request(
                "give either `workflow` (a definition) or `workflowRef` (a named workflow), not both",
            ));
        }
        (None, true) => {
            return Err(ApiError::bad_request(
                "give `workflow` (a definition) or `workflowRef` (a named workflow)",
            ));
        }
        (None, false) => None,
    };
    check_labels(&request.labels)?;
    let limits = service.options();
    if request.workflow.len() > limits.max_definition_bytes {
        return Err(too_large(
            "the workflow definition",
            request.workflow.len(),
            limits.max_definition_bytes,
            "--max-definition-bytes",
        ));
    }
    if let Some(input) = &request.input {
        let size = serde_json::to_vec(input).map_or(0, |v| v.len());
        if size > limits.max_input_bytes {
            return Err(too_large(
                "the input",
                size,
                limits.max_input_bytes,
                "--max-input-bytes",
            ));
        }
    }
    service.admit_start(&caller.project)?;
    let parsed = gcw::parse_any(&request.workflow, &definition_options(service));
    let Some(mut workflow) = parsed.workflow else {
        return Err(invalid_workflow(&request.workflow, &parsed.diagnostics));
    };
    if let Some(name) = named {
        workflow.document.name = name;
    }
    let secrets = limits.secrets.for_project(&caller.project);
    let missing: Vec<&str> = workflow
        .use_
        .secrets
        .iter()
        .filter(|name| secrets.get(name.as_str()).is_none())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the workflow declares {} in `use.secrets`, which this server does not hold for \
             project `{}` (give it with `skein server --secret` or the configuration's `secrets`)",
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", "),
            caller.project
        )));
    }
    let input = request
        .input
        .unwrap_or_else(|| Value::Object(Default::default()));
    let (id, created) = service
        .engine()
        .create_or_get(
            &request.workflow,
            &workflow,
            request.id,
            input.clone(),
            request.labels,
            &caller.project,
        )
        .await
        .map_err(ApiError::internal)?;
    let created = match created {
        Created::New => {
            service.start(&id, &caller.project).await;
            true
        }
        // An id taken in another project is not this caller's to know about.
        Created::Existing(existing) if existing.project != caller.project => {
            return Err(ApiError::conflict(format!(
                "the execution id `{id}` is taken"
            )));
        }
        Created::Existing(existing) => {
            if existing.definition != request.workflow || existing.input != input {
                return Err(ApiError::conflict(format!(
                    "the execution `{id}` exists with a different {}",
                    if existing.definition != request.workflow {
                        "definition"
                    } else {
                        "input"
                    }
                )));
            }
            false
        }
    };
    Ok((id, created))
}

pub(crate) fn invalid_workflow(source: &str, diagnostics: &[dsl::Diagnostic]) -> ApiError {
    let errors: Vec<dsl::Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    let mut diagnostics = wire::Diagnostic::all(source, &errors);
    for d in &mut diagnostics {
        d.severity = None;
    }
    let first = diagnostics.first().map_or_else(String::new, |d| {
        format!(": {}:{}: {}", d.line, d.column, d.message)
    });
    let mut error = ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_workflow",
        format!(
            "the workflow is not valid ({} problem{}){first}",
            diagnostics.len(),
            if diagnostics.len() == 1 { "" } else { "s" }
        ),
    );
    error.body.diagnostics = diagnostics;
    error
}

/// `GET /v1/executions/{id}[?wait=30s]`.
#[utoipa::path(get, path = "/v1/executions/{id}", tag = "executions", params(("id" = String, Path), ("wait" = Option<String>, Query, description = "Hold the response until the execution ends, at most this long")), responses((status = 200, description = "The execution, with its progress", body = wire::Execution), (status = 404, description = "No such execution in the caller's project", body = wire::Error), (status = 400, description = "Bad request", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error)))]
async fn get_one(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(wait): Query<WaitParam>,
) -> ApiResult<Json<wire::Execution>> {
    caller.require(Role::Read)?;
    let wait = wait.duration()?.unwrap_or(Duration::ZERO);
    owned(&service, &caller, &id).await?;
    let Some(execution) = service.wait(&id, wait).await? else {
        return Err(ApiError::not_found(&id));
    };
    let mut view = wire::Execution::from(execution);
    view.progress = Some(progress(&service, &id).await?);
    Ok(Json(view))
}

/// Task counters and fan-out progress, from the execution's events.
pub(crate) async fn progress(service: &Service, id: &str) -> ApiResult<wire::Progress> {
    let mut tasks = wire::TaskCounts::default();
    for (type_, n) in service.store().event_counts(id).await? {
        match Lifecycle::parse(&type_) {
            Some(Lifecycle::TaskStarted) => tasks.started = n,
            Some(Lifecycle::TaskCompleted) => tasks.completed = n,
            Some(Lifecycle::TaskFaulted) => tasks.faulted = n,
            Some(Lifecycle::TaskCancelled) => tasks.cancelled = n,
            Some(Lifecycle::TaskRetried) => tasks.retries = n,
            _ => {}
        }
    }
    tasks.running = tasks
        .started
        .saturating_sub(tasks.completed + tasks.faulted + tasks.cancelled);
    // The last progress event of each fan-out, in the order the fan-outs began.
    let mut fan_outs: Vec<(String, Value)> = Vec::new();
    for event in service
        .store()
        .events_of_type(id, Lifecycle::TaskProgress.as_str())
        .await?
    {
        let mut data = event.data.value();
        let task = data["task"].as_str().unwrap_or_default().to_string();
        if let Some(map) = data.as_object_mut() {
            map.remove("workflow");
        }
        match fan_outs.iter_mut().find(|(t, _)| *t == task) {
            Some((_, latest)) => *latest = data,
            None => fan_outs.push((task, data)),
        }
    }
    Ok(wire::Progress {
        tasks,
        fan_outs: fan_outs.into_iter().map(|(_, data)| data).collect(),
    })
}

#[derive(Debug, Deserialize)]
struct ListParams {
    status: Option<String>,
    name: Option<String>,
    /// `name:value`.
    label: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
    /// Created at or after this time (RFC 3339).
    since: Option<String>,
    /// Created before this time (RFC 3339).
    until: Option<String>,
}

/// `GET /v1/executions[?status=…&name=…&limit=…&cursor=…]`, newest first.
#[utoipa::path(get, path = "/v1/executions", tag = "executions", params(("status" = Option<String>, Query), ("name" = Option<String>, Query, description = "The workflow's name"), ("label" = Option<String>, Query, description = "name:value"), ("limit" = Option<usize>, Query, description = "1 to 1000, default 50"), ("cursor" = Option<String>, Query, description = "The previous page's nextCursor"), ("since" = Option<String>, Query, description = "Created at or after this time (RFC 3339)"), ("until" = Option<String>, Query, description = "Created before this time (RFC 3339)")), responses((status = 200, description = "Executions, newest first", body = wire::ExecutionList), (status = 400, description = "Bad request", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error)))]
async fn list(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<wire::ExecutionList>> {
    caller.require(Role::Read)?;
    let status = params
        .status
        .as_deref()
        .map(|s| {
            store::Status::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`status={s}` is not one of pending, running, waiting, suspended, \
                     completed, faulted, cancelled"
                ))
            })
        })
        .transpose()?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "`limit={limit}` is not between 1 and 1000"
        )));
    }
    let before = params.cursor.as_deref().map(parse_cursor).transpose()?;
    let moment = |name: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| {
                t.parse::<jiff::Timestamp>()
                    .map(|t| t.as_millisecond())
                    .map_err(|e| {
                        ApiError::bad_request(format!(
                            "`{name}={t}` is not an RFC 3339 time such as 2026-12-07T20:00:00Z: {e}"
                        ))
                    })
            })
            .transpose()
    };
    let created_from = moment("since", &params.since)?;
    let created_until = moment("until", &params.until)?;
    let executions = service
        .store()
        .list(store::ListQuery {
            status,
            name: params.name,
            label: params.label.as_deref().map(parse_label).transpose()?,
            project: Some(caller.project.clone()),
            before,
            created_from,
            created_until,
            children: false,
            limit,
        })
        .await?;
    let next_cursor = (executions.len() == limit)
        .then(|| {
            executions
                .last()
                .map(|e| format!("{}~{}", e.created_at, e.id))
        })
        .flatten();
    Ok(Json(wire::ExecutionList {
        executions: executions.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// A cursor is the creation time and id of the last execution of the previous page.
fn parse_cursor(cursor: &str) -> ApiResult<(i64, String)> {
    cursor
        .split_once('~')
        .and_then(|(at, id)| Some((at.parse().ok()?, id.to_string())))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "`cursor={cursor}` is not a cursor this server gave out"
            ))
        })
}

/// `POST /v1/executions/{id}/cancel`: the execution as it stands after the cancel;
/// 409 if it had already completed or faulted.
#[utoipa::path(post, path = "/v1/executions/{id}/cancel", tag = "executions", description = "Cancel: running tasks are dropped and processes killed", params(("id" = String, Path)), responses((status = 200, description = "The execution as it stands after the request", body = wire::Execution), (status = 404, description = "No such execution in the caller's project", body = wire::Error), (status = 409, description = "The execution has already ended", body = wire::Error), (status = 400, description = "Bad request", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error)))]
async fn cancel(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::Execution>> {
    steer(&service, &caller, &id, store::Request::Cancel)
        .await
        .map(|e| Json(e.into()))
}

/// `POST /v1/executions/{id}/pause`: no new task starts and timers hold until resumed;
/// tasks already running finish. 409 once the execution has ended.
#[utoipa::path(post, path = "/v1/executions/{id}/pause", tag = "executions", description = "Pause: no new task starts and timers hold", params(("id" = String, Path)), responses((status = 200, description = "The execution as it stands after the request", body = wire::Execution), (status = 404, description = "No such execution in the caller's project", body = wire::Error), (status = 409, description = "The execution has already ended", body = wire::Error), (status = 400, description = "Bad request", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error)))]
async fn pause(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::Execution>> {
    steer(&service, &caller, &id, store::Request::Pause)
        .await
        .map(|e| Json(e.into()))
}

/// `POST /v1/executions/{id}/resume`. 409 once the execution has ended.
#[utoipa::path(post, path = "/v1/executions/{id}/resume", tag = "executions", description = "Resume a paused execution", params(("id" = String, Path)), responses((status = 200, description = "The execution as it stands after the request", body = wire::Execution), (status = 404, description = "No such execution in the caller's project", body = wire::Error), (status = 409, description = "The execution has already ended", body = wire::Error), (status = 400, description = "Bad request", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error)))]
async fn resume(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::Execution>> {
    steer(&service, &caller, &id, store::Request::Resume)
        .await
        .map(|e| Json(e.into()))
}

/// Execution `id` if it belongs to the caller's project; otherwise 404, as if it did not
/// exist, so that ids of other projects reveal nothing.
pub(crate) async fn owned(
    service: &Service,
    caller: &Caller,
    id: &str,
) -> ApiResult<store::Execution> {
    match service.store().execution(id).await? {
        Some(execution) if execution.project == caller.project => Ok(execution),
        _ => Err(ApiError::not_found(id)),
    }
}

/// A cancel, pause or resume of `id` by `caller` (REST and gRPC): the execution it
/// left, or why there is none.
pub(crate) async fn steer(
    service: &Arc<Service>,
    caller: &Caller,
    id: &str,
    request: store::Request,
) -> ApiResult<Execution> {
    caller.require(Role::Run)?;
    owned(service, caller, id).await?;
    match service.steer(id, request).await? {
        Steered::Now(execution) => Ok(execution),
        Steered::Ended(execution) => Err(ApiError::ended(format!(
            "cannot {} the execution `{id}`: it has already {}",
            request.as_str(),
            execution.status.as_str()
        ))),
        Steered::NotFound => Err(ApiError::not_found(id)),
    }
}

/// `POST /v1/executions/{id}/events`: delivers a CloudEvent (structured JSON, with at
/// least a `type`) to the execution, where its `listen` tasks find it.
#[utoipa::path(post, path = "/v1/executions/{id}/events", tag = "events", request_body(content = Object, description = "A CloudEvent in structured JSON, with a string type"), params(("id" = String, Path)), responses((status = 202, description = "Delivered to the execution's inbox", body = wire::Delivered), (status = 404, description = "No such execution in the caller's project", body = wire::Error), (status = 409, description = "The execution has already ended", body = wire::Error), (status = 400, description = "Bad request", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error)))]
async fn deliver(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<wire::Delivered>)> {
    caller.require(Role::Run)?;
    let Json(event) = body?;
    if !event.get("type").is_some_and(Value::is_string) {
        return Err(ApiError::bad_request(
            "the event must be a CloudEvent in structured JSON, with a string `type`",
        ));
    }
    let position = deliver_event(&service, &caller, &id, event).await?;
    Ok((StatusCode::ACCEPTED, Json(wire::Delivered { position })))
}

/// Delivers `event` to the inbox of the caller's execution `id`, unless it has ended:
/// its inbox position.
pub(crate) async fn deliver_event(
    service: &Service,
    caller: &Caller,
    id: &str,
    event: Value,
) -> ApiResult<u64> {
    let execution = owned(service, caller, id).await?;
    if execution.status.is_final() {
        return Err(ApiError::ended(format!(
            "the execution `{id}` has already {}",
            execution.status.as_str()
        )));
    }
    service
        .engine()
        .deliver(id, event)
        .await
        .map_err(delivery_error)
}

/// Why the engine did not deliver an event: the execution's inbox is full (429), or
/// something went wrong.
pub(crate) fn delivery_error(e: engine::Error) -> ApiError {
    match e {
        engine::Error::Limit(message) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "limit_exceeded", message)
        }
        other => ApiError::internal(other),
    }
}
