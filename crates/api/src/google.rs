//! Google's Workflows and Executions APIs (v1, REST), served by skein, so that Google's
//! client libraries, pointed at skein, deploy workflows and run executions unchanged.
//!
//! - `projects/{project}/locations/{location}/workflows[/{workflow}]`: create (as a
//!   long-running operation, already done), get, list, patch, delete, onto skein's
//!   named workflows; `…/operations/{operation}` answers the operations it made.
//! - `…/workflows/{workflow}/executions[/{execution}]`: create (with `argument`, a JSON
//!   string), get, list, and `:cancel`, onto skein's executions of the named workflow.
//!
//! A project in the path is the caller's skein project: with tokens it must be the
//! token's project; on a server without tokens (one project) any name is accepted.
//! Locations are accepted and echoed. Errors come in Google's form
//! (`{"error": {"code", "message", "status"}}`), which the client libraries read.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::{Service, wire, workflows};

/// An [`ApiError`] in Google's JSON error form.
pub(crate) struct GoogleError(ApiError);

impl From<ApiError> for GoogleError {
    fn from(e: ApiError) -> GoogleError {
        GoogleError(e)
    }
}

impl IntoResponse for GoogleError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        let code = match status.as_u16() {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            409 => "FAILED_PRECONDITION",
            413 => "INVALID_ARGUMENT",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            _ => "INTERNAL",
        };
        let body = json!({"error": {
            "code": status.as_u16(),
            "message": self.0.body.message,
            "status": code,
        }});
        (status, Json(body)).into_response()
    }
}

type Res<T> = Result<T, GoogleError>;

fn not_found(what: String) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
}

/// Checks that the path's project is the caller's.
fn project(caller: &Caller, project: &str) -> Result<(), ApiError> {
    if caller.project == project || caller.project == "default" {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this token belongs to the project `{}`, not `{project}`",
                caller.project
            ),
        ))
    }
}

fn revision_id(revision: u64) -> String {
    format!("{revision:06}")
}

/// A revision of a workflow as Google's API shows it, for both forms.
pub(crate) struct WorkflowView {
    pub(crate) name: String,
    pub(crate) revision_id: String,
    /// When the workflow's first revision was made.
    pub(crate) created: i64,
    /// When this revision was made.
    pub(crate) revised: i64,
    pub(crate) source: String,
}

impl WorkflowView {
    fn of(base: &str, deployed: &store::Deployed, first_created: i64) -> WorkflowView {
        WorkflowView {
            name: format!("{base}/workflows/{}", deployed.name),
            revision_id: revision_id(deployed.revision),
            created: first_created,
            revised: deployed.created_at,
            source: deployed.definition.clone(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "state": "ACTIVE",
            "revisionId": self.revision_id,
            "createTime": wire::rfc3339(self.created),
            "updateTime": wire::rfc3339(self.revised),
            "revisionCreateTime": wire::rfc3339(self.revised),
            "sourceContents": self.source,
        })
    }
}

/// A finished long-running operation: its name, verb and target, and what it made
/// (a workflow; nothing for a delete).
pub(crate) struct OperationView {
    pub(crate) name: String,
    pub(crate) verb: &'static str,
    pub(crate) target: String,
    pub(crate) workflow: Option<WorkflowView>,
}

impl OperationView {
    fn json(&self) -> Value {
        let response = match &self.workflow {
            Some(w) => {
                let mut w = w.json();
                w["@type"] = json!("type.googleapis.com/google.cloud.workflows.v1.Workflow");
                w
            }
            None => json!({"@type": "type.googleapis.com/google.protobuf.Empty"}),
        };
        json!({
            "name": self.name,
            "metadata": {
                "@type": "type.googleapis.com/google.cloud.workflows.v1.OperationMetadata",
                "target": self.target,
                "verb": self.verb,
                "apiVersion": "v1",
            },
            "done": true,
            "response": response,
        })
    }
}

/// The parts of a location's name: `projects/{p}/locations/{l}`.
fn location(name: &str) -> Result<(String, String), ApiError> {
    match name.split('/').collect::<Vec<_>>().as_slice() {
        ["projects", p, "locations", l] => Ok((p.to_string(), l.to_string())),
        _ => Err(ApiError::bad_request(format!(
            "`{name}` is not a location: projects/PROJECT/locations/LOCATION"
        ))),
    }
}

/// The revision of `name` and when its first revision was made.
async fn current(
    service: &Service,
    caller: &Caller,
    name: &str,
) -> Result<(store::Deployed, i64), ApiError> {
    let revisions = service
        .store()
        .deployments(&caller.project, Some(name))
        .await?;
    let (Some(latest), Some(first)) = (revisions.first(), revisions.last()) else {
        return Err(not_found(format!("there is no workflow `{name}`")));
    };
    Ok((latest.clone(), first.created_at))
}

/// Deploys `source` as `workflow_id` under the location `parent`: the operation.
pub(crate) async fn create(
    service: &Service,
    caller: &Caller,
    parent: &str,
    workflow_id: &str,
    source: &str,
) -> Result<OperationView, ApiError> {
    let (p, l) = location(parent)?;
    project(caller, &p)?;
    deploy_as(
        service,
        caller,
        &format!("projects/{p}/locations/{l}"),
        workflow_id,
        source,
        "create",
    )
    .await
}

/// A new revision of the workflow `name` from `source`: the operation.
pub(crate) async fn update(
    service: &Service,
    caller: &Caller,
    name: &str,
    source: &str,
) -> Result<OperationView, ApiError> {
    let names = Names::parse(name)?;
    project(caller, &names.project)?;
    current(service, caller, &names.workflow).await?;
    deploy_as(
        service,
        caller,
        &names.base(),
        &names.workflow,
        source,
        "update",
    )
    .await
}

async fn deploy_as(
    service: &Service,
    caller: &Caller,
    base: &str,
    workflow: &str,
    source: &str,
    verb: &'static str,
) -> Result<OperationView, ApiError> {
    let (deployed, _) = workflows::deploy_text(service, caller, workflow, source).await?;
    let (_, first) = current(service, caller, workflow).await?;
    Ok(OperationView {
        name: format!("{base}/operations/{verb}-{workflow}-{}", deployed.revision),
        verb,
        target: format!("{base}/workflows/{workflow}"),
        workflow: Some(WorkflowView::of(base, &deployed, first)),
    })
}

/// The latest revision of the workflow `name`, or the one `revision_id` names.
pub(crate) async fn workflow(
    service: &Service,
    caller: &Caller,
    name: &str,
    revision_id: &str,
) -> Result<WorkflowView, ApiError> {
    caller.require(Role::Read)?;
    let names = Names::parse(name)?;
    project(caller, &names.project)?;
    let (latest, first) = current(service, caller, &names.workflow).await?;
    if revision_id.is_empty() {
        return Ok(WorkflowView::of(&names.base(), &latest, first));
    }
    let revision = revision_id.trim_start_matches('0').parse::<u64>().ok();
    let deployed = match revision {
        Some(r) => {
            service
                .store()
                .deployed(&caller.project, &names.workflow, Some(r))
                .await?
        }
        None => None,
    };
    let deployed = deployed.ok_or_else(|| {
        not_found(format!(
            "the workflow `{}` has no revision `{revision_id}`",
            names.workflow
        ))
    })?;
    Ok(WorkflowView::of(&names.base(), &deployed, first))
}

/// The workflows of the location `parent`, by name; or, with `revisions_of`, every
/// revision of that one, newest first.
pub(crate) async fn workflows_of(
    service: &Service,
    caller: &Caller,
    parent: &str,
    revisions_of: Option<&str>,
) -> Result<Vec<WorkflowView>, ApiError> {
    caller.require(Role::Read)?;
    let (p, l) = location(parent)?;
    project(caller, &p)?;
    let base = format!("projects/{p}/locations/{l}");
    let mut out = Vec::new();
    let deployed = service
        .store()
        .deployments(&caller.project, revisions_of)
        .await?;
    let first_of_one = deployed.last().map(|d| d.created_at);
    for d in &deployed {
        let first = match (revisions_of, first_of_one) {
            (Some(_), Some(first)) => first,
            _ => current(service, caller, &d.name).await?.1,
        };
        out.push(WorkflowView::of(&base, d, first));
    }
    Ok(out)
}

/// Deletes the workflow `name`: the operation.
pub(crate) async fn delete(
    service: &Service,
    caller: &Caller,
    name: &str,
) -> Result<OperationView, ApiError> {
    caller.require(Role::Run)?;
    let names = Names::parse(name)?;
    project(caller, &names.project)?;
    if !service
        .store()
        .undeploy(&caller.project, &names.workflow)
        .await?
    {
        return Err(not_found(format!(
            "there is no workflow `{}`",
            names.workflow
        )));
    }
    workflows::undeployed(service, &caller.project, &names.workflow).await?;
    let base = names.base();
    Ok(OperationView {
        name: format!("{base}/operations/delete-{}", names.workflow),
        verb: "delete",
        target: format!("{base}/workflows/{}", names.workflow),
        workflow: None,
    })
}

/// The operation `name`: the operations this API makes are done when they are
/// answered; asked again, they are answered again from the workflow as it is.
pub(crate) async fn operation(
    service: &Service,
    caller: &Caller,
    name: &str,
) -> Result<OperationView, ApiError> {
    caller.require(Role::Read)?;
    let missing = || not_found(format!("there is no operation `{name}`"));
    let parts: Vec<&str> = name.split('/').collect();
    let ["projects", p, "locations", l, "operations", id] = parts.as_slice() else {
        return Err(missing());
    };
    project(caller, p)?;
    let base = format!("projects/{p}/locations/{l}");
    let (verb, rest) = id.split_once('-').ok_or_else(missing)?;
    let verb = match verb {
        "create" => "create",
        "update" => "update",
        "delete" => {
            return Ok(OperationView {
                name: name.to_string(),
                verb: "delete",
                target: format!("{base}/workflows/{rest}"),
                workflow: None,
            });
        }
        _ => return Err(missing()),
    };
    let (workflow, revision) = rest.rsplit_once('-').ok_or_else(missing)?;
    let revision = revision.parse::<u64>().map_err(|_| missing())?;
    let deployed = service
        .store()
        .deployed(&caller.project, workflow, Some(revision))
        .await?
        .ok_or_else(missing)?;
    let (_, first) = current(service, caller, workflow).await?;
    Ok(OperationView {
        name: name.to_string(),
        verb,
        target: format!("{base}/workflows/{workflow}"),
        workflow: Some(WorkflowView::of(&base, &deployed, first)),
    })
}

#[derive(Deserialize)]
pub(crate) struct Location {
    project: String,
    location: String,
}

impl Location {
    fn base(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.location)
    }
}

#[derive(Deserialize)]
pub(crate) struct WorkflowPath {
    project: String,
    location: String,
    workflow: String,
}

impl WorkflowPath {
    fn base(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.location)
    }

    fn name(&self) -> String {
        format!("{}/workflows/{}", self.base(), self.workflow)
    }
}

#[derive(Deserialize)]
pub(crate) struct CreateQuery {
    #[serde(rename = "workflowId")]
    workflow_id: String,
}

/// `POST …/workflows?workflowId=ID`: deploys `sourceContents` under ID.
pub(crate) async fn create_workflow(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(at): Path<Location>,
    Query(query): Query<CreateQuery>,
    Json(body): Json<Value>,
) -> Res<Json<Value>> {
    let source = body["sourceContents"].as_str().unwrap_or_default();
    let op = create(&service, &caller, &at.base(), &query.workflow_id, source).await?;
    Ok(Json(op.json()))
}

/// `PATCH …/workflows/{workflow}`: a new revision from `sourceContents`.
pub(crate) async fn patch_workflow(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(at): Path<WorkflowPath>,
    Json(body): Json<Value>,
) -> Res<Json<Value>> {
    let source = body["sourceContents"].as_str().unwrap_or_default();
    Ok(Json(
        update(&service, &caller, &at.name(), source).await?.json(),
    ))
}

#[derive(Deserialize)]
pub(crate) struct RevisionQuery {
    #[serde(rename = "revisionId", default)]
    revision_id: String,
}

/// `GET …/workflows/{workflow}[?revisionId=…]`.
pub(crate) async fn get_workflow(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(at): Path<WorkflowPath>,
    Query(query): Query<RevisionQuery>,
) -> Res<Json<Value>> {
    Ok(Json(
        workflow(&service, &caller, &at.name(), &query.revision_id)
            .await?
            .json(),
    ))
}

/// `GET …/workflows`.
pub(crate) async fn list_workflows(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(at): Path<Location>,
) -> Res<Json<Value>> {
    let views = workflows_of(&service, &caller, &at.base(), None).await?;
    let workflows: Vec<Value> = views.iter().map(WorkflowView::json).collect();
    Ok(Json(json!({ "workflows": workflows })))
}

/// `DELETE …/workflows/{workflow}`.
pub(crate) async fn delete_workflow(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(at): Path<WorkflowPath>,
) -> Res<Json<Value>> {
    Ok(Json(delete(&service, &caller, &at.name()).await?.json()))
}

#[derive(Deserialize)]
pub(crate) struct OperationPath {
    project: String,
    location: String,
    operation: String,
}

/// `GET …/operations/{operation}`.
pub(crate) async fn get_operation(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(at): Path<OperationPath>,
) -> Res<Json<Value>> {
    let name = format!(
        "projects/{}/locations/{}/operations/{}",
        at.project, at.location, at.operation
    );
    Ok(Json(operation(&service, &caller, &name).await?.json()))
}

/// An execution as Google's API shows it, for both forms (JSON and protobuf).
pub(crate) struct ExecutionView {
    pub(crate) name: String,
    /// The state: the API's enum value (1 active, 2 succeeded, 3 failed, 4 cancelled)
    /// and its name.
    pub(crate) state: (i32, &'static str),
    pub(crate) argument: String,
    pub(crate) result: Option<String>,
    /// The error's payload (JSON text) and context.
    pub(crate) error: Option<(String, String)>,
    pub(crate) started: i64,
    pub(crate) ended: Option<i64>,
    pub(crate) revision: String,
    /// The labels given when it was started (not skein's own, `skein.dev/…`).
    pub(crate) labels: std::collections::BTreeMap<String, String>,
    /// Google's BASIC view: name, times, state and revision only.
    pub(crate) basic: bool,
}

/// An execution's state in Google's terms: the API's enum value and its name.
fn state(status: store::Status) -> (i32, &'static str) {
    match status {
        store::Status::Completed => (2, "SUCCEEDED"),
        store::Status::Faulted => (3, "FAILED"),
        store::Status::Cancelled => (4, "CANCELLED"),
        _ => (1, "ACTIVE"),
    }
}

impl ExecutionView {
    fn of(base: &str, workflow: &str, e: &store::Execution) -> ExecutionView {
        let mut view = ExecutionView::basic(base, workflow, e);
        view.basic = false;
        view.argument = e.input.to_string();
        view.result = e
            .output
            .as_ref()
            .filter(|_| e.status == store::Status::Completed)
            .map(Value::to_string);
        view.error = (e.status == store::Status::Faulted).then(|| {
            let problem = e.error.clone().unwrap_or(Value::Null);
            // What the workflow raised, or the error it met, as Cloud Workflows shows it.
            let payload = gcw::error_value(&problem);
            let context = problem
                .get("instance")
                .and_then(Value::as_str)
                .unwrap_or_default();
            (payload.to_string(), context.to_string())
        });
        view.labels = e
            .labels
            .iter()
            .filter(|(k, _)| !k.starts_with(OWN_LABELS))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        view
    }

    /// Google's BASIC view: name, times, state and revision, and nothing that costs
    /// more to make (the argument, the result, the error, the labels).
    fn basic(base: &str, workflow: &str, e: &store::Execution) -> ExecutionView {
        ExecutionView {
            name: format!("{base}/workflows/{workflow}/executions/{}", e.id),
            state: state(e.status),
            argument: String::new(),
            result: None,
            error: None,
            started: e.created_at,
            ended: e.status.is_final().then_some(e.updated_at),
            revision: e.labels.get(REVISION_LABEL).cloned().unwrap_or_default(),
            labels: Default::default(),
            basic: true,
        }
    }

    /// The view Google's `view` asks for of a view made FULL: BASIC leaves out the
    /// argument, the result, the error and the labels.
    pub(crate) fn viewed(mut self, basic: bool) -> ExecutionView {
        if basic {
            self.basic = true;
            self.argument.clear();
            self.result = None;
            self.error = None;
            self.labels.clear();
        }
        self
    }

    fn json(&self) -> Value {
        let state = self.state.1;
        let mut out = json!({
            "name": self.name,
            "state": state,
            "startTime": wire::rfc3339(self.started),
            "workflowRevisionId": self.revision,
        });
        if !self.basic {
            out["argument"] = json!(self.argument);
            out["callLogLevel"] = json!("CALL_LOG_LEVEL_UNSPECIFIED");
            out["labels"] = json!(self.labels);
        }
        if let Some(ended) = self.ended {
            out["endTime"] = json!(wire::rfc3339(ended));
            out["duration"] = json!(format!("{:.3}s", (ended - self.started) as f64 / 1000.0));
        }
        if let Some(result) = &self.result {
            out["result"] = json!(result);
        }
        if let Some((payload, context)) = &self.error {
            out["error"] = json!({"payload": payload, "context": context});
        }
        out
    }
}

use gcw::REVISION_LABEL;

/// The prefix of the labels skein keeps for itself on an execution, which Google's API
/// neither shows nor accepts.
const OWN_LABELS: &str = "skein.dev/";

/// The parts of an execution's or a workflow's resource name:
/// `projects/{p}/locations/{l}/workflows/{w}[/executions/{e}]`.
pub(crate) struct Names {
    project: String,
    location: String,
    workflow: String,
    execution: Option<String>,
}

impl Names {
    pub(crate) fn parse(name: &str) -> Result<Names, ApiError> {
        let parts: Vec<&str> = name.split('/').collect();
        let bad = || {
            ApiError::bad_request(format!(
                "`{name}` is not a workflow or execution name: \
             projects/PROJECT/locations/LOCATION/workflows/WORKFLOW[/executions/ID]"
            ))
        };
        match parts.as_slice() {
            ["projects", p, "locations", l, "workflows", w] => Ok(Names {
                project: p.to_string(),
                location: l.to_string(),
                workflow: w.to_string(),
                execution: None,
            }),
            [
                "projects",
                p,
                "locations",
                l,
                "workflows",
                w,
                "executions",
                e,
            ] => Ok(Names {
                project: p.to_string(),
                location: l.to_string(),
                workflow: w.to_string(),
                execution: Some(e.to_string()),
            }),
            _ => Err(bad()),
        }
    }

    fn base(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.location)
    }

    fn execution(&self) -> Result<&str, ApiError> {
        self.execution
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("the name does not name an execution"))
    }
}

/// An execution of `workflow` in the caller's project.
async fn execution(
    service: &Service,
    caller: &Caller,
    workflow: &str,
    id: &str,
) -> Result<store::Execution, ApiError> {
    match service.store().execution(id).await? {
        Some(e) if e.project == caller.project && e.name == workflow => Ok(e),
        _ => Err(not_found(format!(
            "there is no execution `{id}` of the workflow `{workflow}`"
        ))),
    }
}

/// Starts the latest revision of the workflow `parent` names, with `argument` (JSON
/// text; empty for none) as its runtime arguments.
pub(crate) async fn start(
    service: &Arc<Service>,
    caller: &Caller,
    parent: &str,
    argument: &str,
    given: std::collections::BTreeMap<String, String>,
) -> Result<ExecutionView, ApiError> {
    if let Some(own) = given.keys().find(|k| k.starts_with(OWN_LABELS)) {
        return Err(ApiError::bad_request(format!(
            "the label `{own}` is skein's own: labels may not start with `{OWN_LABELS}`"
        )));
    }
    let names = Names::parse(parent)?;
    project(caller, &names.project)?;
    let input = if argument.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(argument)
            .map_err(|e| ApiError::bad_request(format!("`argument` is not JSON: {e}")))?
    };
    let (latest, _) = current(service, caller, &names.workflow).await?;
    let mut labels: store::Labels = given.into_iter().collect();
    labels.insert(REVISION_LABEL.into(), revision_id(latest.revision));
    // What `sys.get_env` gives for GOOGLE_CLOUD_PROJECT_ID and GOOGLE_CLOUD_LOCATION.
    labels.insert(gcw::GOOGLE_PROJECT_LABEL.into(), names.project.clone());
    labels.insert(gcw::GOOGLE_LOCATION_LABEL.into(), names.location.clone());
    let request = wire::StartRequest {
        workflow: String::new(),
        workflow_ref: Some(format!("{}@{}", names.workflow, latest.revision)),
        input: Some(input),
        id: None,
        labels,
    };
    let (id, _) = crate::start_execution(service, caller, request).await?;
    let e = execution(service, caller, &names.workflow, &id).await?;
    Ok(ExecutionView::of(&names.base(), &names.workflow, &e))
}

/// The execution `name` names.
pub(crate) async fn get(
    service: &Service,
    caller: &Caller,
    name: &str,
) -> Result<ExecutionView, ApiError> {
    caller.require(Role::Read)?;
    let names = Names::parse(name)?;
    project(caller, &names.project)?;
    let e = execution(service, caller, &names.workflow, names.execution()?).await?;
    Ok(ExecutionView::of(&names.base(), &names.workflow, &e))
}

/// Cancels the execution `name` names.
pub(crate) async fn cancel(
    service: &Arc<Service>,
    caller: &Caller,
    name: &str,
) -> Result<ExecutionView, ApiError> {
    let names = Names::parse(name)?;
    project(caller, &names.project)?;
    let id = names.execution()?;
    execution(service, caller, &names.workflow, id).await?;
    let e = crate::steer(service, caller, id, store::Request::Cancel).await?;
    Ok(ExecutionView::of(&names.base(), &names.workflow, &e))
}

/// How a list of executions is asked for: Google's `pageSize`, `pageToken`, `view`,
/// `filter` and `orderBy`.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ListParams {
    pub(crate) page_size: i32,
    pub(crate) page_token: String,
    /// `BASIC` (the default for lists) or `FULL`.
    pub(crate) view: String,
    pub(crate) filter: String,
    pub(crate) order_by: String,
}

/// A page of executions of the workflow `parent` names, newest first, and the token of
/// the next page (empty at the end). Pages hold `pageSize` executions (100 by default,
/// at most 1,000); a `filter` that matches few may give fewer with a token to go on.
pub(crate) async fn list(
    service: &Service,
    caller: &Caller,
    parent: &str,
    params: &ListParams,
) -> Result<(Vec<ExecutionView>, String), ApiError> {
    caller.require(Role::Read)?;
    let names = Names::parse(parent)?;
    project(caller, &names.project)?;
    let basic = match params.view.as_str() {
        "" | "BASIC" | "EXECUTION_VIEW_UNSPECIFIED" => true,
        "FULL" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "`view` is BASIC or FULL, not `{other}`"
            )));
        }
    };
    match params.order_by.trim() {
        "" | "createTime desc" | "startTime desc" => {}
        other => {
            return Err(ApiError::bad_request(format!(
                "skein lists executions newest first: `orderBy` may be `startTime desc` or \
                 `createTime desc`, not `{other}`"
            )));
        }
    }
    let filter = Filter::parse(&params.filter)?;
    let want = match params.page_size {
        0 => 100,
        n => n.clamp(1, 1000) as usize,
    };
    let mut before = if params.page_token.is_empty() {
        None
    } else {
        let parsed = params
            .page_token
            .split_once('~')
            .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())));
        Some(
            parsed
                .ok_or_else(|| ApiError::bad_request("`pageToken` is not one this server gave"))?,
        )
    };
    const BATCH: usize = 1000;
    const MOST_BATCHES: usize = 10;
    let base = names.base();
    let mut found = Vec::new();
    for _ in 0..MOST_BATCHES {
        let query = store::ListQuery {
            project: Some(caller.project.clone()),
            name: Some(names.workflow.clone()),
            before: before.clone(),
            limit: BATCH,
            ..Default::default()
        };
        let batch = service.store().list(query).await?;
        let last = batch.len() < BATCH;
        for e in &batch {
            before = Some((e.created_at, e.id.clone()));
            if filter.matches(e) {
                found.push(match basic {
                    true => ExecutionView::basic(&base, &names.workflow, e),
                    false => ExecutionView::of(&base, &names.workflow, e),
                });
                if found.len() == want {
                    let token = before.as_ref().map(|(at, id)| format!("{at}~{id}"));
                    return Ok((found, token.unwrap_or_default()));
                }
            }
        }
        if last {
            return Ok((found, String::new()));
        }
    }
    let token = before.map(|(at, id)| format!("{at}~{id}"));
    Ok((found, token.unwrap_or_default()))
}

/// A list's `filter`: terms joined by `AND`, each `FIELD OP VALUE` with OP one of
/// `=`, `!=`, `<`, `<=`, `>`, `>=` and the value optionally quoted; the fields are
/// `state`, `startTime` and `endTime` (RFC 3339), `workflowRevisionId` and
/// `labels.KEY`. Read once, then matched against each execution.
struct Filter(Vec<Term>);

struct Term {
    field: Field,
    op: &'static str,
}

/// What a term compares, with the value it compares with.
enum Field {
    State(String),
    Revision(String),
    Label(String, String),
    /// Milliseconds since the epoch.
    StartTime(i64),
    EndTime(i64),
}

impl Filter {
    const OPS: [&'static str; 6] = [">=", "<=", "!=", "=", ">", "<"];

    fn parse(text: &str) -> Result<Filter, ApiError> {
        let mut terms = Vec::new();
        let bad = |term: &str, why: &str| {
            ApiError::bad_request(format!(
                "the filter term `{term}` {why}: skein filters by state, startTime, endTime, \
                 workflowRevisionId and labels.KEY, with =, !=, <, <=, > or >=, joined by AND"
            ))
        };
        let text = text.trim();
        if text.is_empty() {
            return Ok(Filter(terms));
        }
        for term in text.split(" AND ").flat_map(|t| t.split(" and ")) {
            let term = term.trim();
            let Some((at, op)) = Self::OPS
                .iter()
                .filter_map(|op| term.find(op).map(|at| (at, *op)))
                .min_by_key(|(at, op)| (*at, std::cmp::Reverse(op.len())))
            else {
                return Err(bad(term, "has no comparison"));
            };
            let name = term[..at].trim();
            let value = term[at + op.len()..].trim().trim_matches('"').to_string();
            let time = || {
                value
                    .parse::<jiff::Timestamp>()
                    .map(|t| t.as_millisecond())
                    .map_err(|_| bad(term, "compares with a time that is not RFC 3339"))
            };
            let field = match name {
                "state" => Field::State(value.clone()),
                "workflowRevisionId" => Field::Revision(value.clone()),
                "startTime" => Field::StartTime(time()?),
                "endTime" => Field::EndTime(time()?),
                _ => match name.strip_prefix("labels.") {
                    Some(key) => Field::Label(key.to_string(), value.clone()),
                    None => return Err(bad(term, "names a field skein does not filter by")),
                },
            };
            terms.push(Term { field, op });
        }
        Ok(Filter(terms))
    }

    fn matches(&self, e: &store::Execution) -> bool {
        self.0.iter().all(|Term { field, op }| {
            let text = |actual: Option<&str>, wanted: &str| actual.map(|a| a.cmp(wanted));
            let order = match field {
                Field::State(wanted) => text(Some(state(e.status).1), wanted),
                Field::Revision(wanted) => {
                    text(e.labels.get(REVISION_LABEL).map(String::as_str), wanted)
                }
                Field::Label(key, wanted) => text(e.labels.get(key).map(String::as_str), wanted),
                Field::StartTime(wanted) => Some(e.created_at.cmp(wanted)),
                Field::EndTime(wanted) => e.status.is_final().then(|| e.updated_at.cmp(wanted)),
            };
            let Some(order) = order else {
                return *op == "!=";
            };
            match *op {
                "=" => order.is_eq(),
                "!=" => order.is_ne(),
                "<" => order.is_lt(),
                "<=" => order.is_le(),
                ">" => order.is_gt(),
                _ => order.is_ge(),
            }
        })
    }
}

#[derive(Deserialize)]
pub(crate) struct ExecutionPath {
    project: String,
    location: String,
    workflow: String,
    execution: String,
}

impl ExecutionPath {
    fn name(&self, execution: &str) -> String {
        format!(
            "projects/{}/locations/{}/workflows/{}/executions/{execution}",
            self.project, self.location, self.workflow
        )
    }
}

/// `POST …/workflows/{workflow}/executions`.
pub(crate) async fn create_execution(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(at): Path<WorkflowPath>,
    Json(body): Json<Value>,
) -> Res<Json<Value>> {
    let parent = format!("{}/workflows/{}", at.base(), at.workflow);
    let argument = body["argument"].as_str().unwrap_or_default();
    let labels = match body.get("labels") {
        None | Some(Value::Null) => Default::default(),
        Some(labels) => serde_json::from_value(labels.clone())
            .map_err(|_| ApiError::bad_request("`labels` is a map of names to string values"))?,
    };
    Ok(Json(
        start(&service, &caller, &parent, argument, labels)
            .await?
            .json(),
    ))
}

/// `GET …/executions/{execution}`.
pub(crate) async fn get_execution(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(at): Path<ExecutionPath>,
    Query(params): Query<ListParams>,
) -> Res<Json<Value>> {
    let basic = params.view == "BASIC";
    Ok(Json(
        get(&service, &caller, &at.name(&at.execution))
            .await?
            .viewed(basic)
            .json(),
    ))
}

/// `POST …/executions/{execution}:cancel`.
pub(crate) async fn cancel_execution(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(at): Path<ExecutionPath>,
) -> Res<Json<Value>> {
    let Some(id) = at.execution.strip_suffix(":cancel") else {
        return Err(not_found(format!("there is no method `{}`", at.execution)).into());
    };
    Ok(Json(cancel(&service, &caller, &at.name(id)).await?.json()))
}

/// `GET …/workflows/{workflow}/executions`.
pub(crate) async fn list_executions(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(at): Path<WorkflowPath>,
    Query(params): Query<ListParams>,
) -> Res<Json<Value>> {
    let parent = format!("{}/workflows/{}", at.base(), at.workflow);
    let (views, next) = list(&service, &caller, &parent, &params).await?;
    let executions: Vec<Value> = views.iter().map(ExecutionView::json).collect();
    let mut out = json!({ "executions": executions });
    if !next.is_empty() {
        out["nextPageToken"] = json!(next);
    }
    Ok(Json(out))
}

/// The path of a callback: `projects/{project}/locations/{location}/workflows/{workflow}`
/// `/executions/{execution}/callbacks/{callback}`.
#[derive(Deserialize)]
pub(crate) struct CallbackPath {
    project: String,
    location: String,
    workflow: String,
    execution: String,
    callback: String,
}

impl CallbackPath {
    fn path(&self) -> String {
        format!(
            "/v1/projects/{}/locations/{}/workflows/{}/executions/{}/callbacks/{}",
            self.project, self.location, self.workflow, self.execution, self.callback
        )
    }
}

/// `…/executions/{execution}/callbacks/{callback}`, any method: a callback request,
/// delivered to the execution's inbox as a [`gcw::CALLBACK_EVENT`] whose subject is the
/// callback's id and whose data is what `events.await_callback` returns:
/// `{http_request: {body, headers, method, query, url}, received_time, type: "HTTP"}`.
/// A JSON body (by its content type) is decoded; any other is kept as text. Received
/// before the workflow awaits it, it waits in the inbox.
pub(crate) async fn callback(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(at): Path<CallbackPath>,
    method: axum::http::Method,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Res<Json<Value>> {
    caller.require(Role::Run)?;
    project(&caller, &at.project)?;
    let callback = &at.callback;
    let gone = || {
        not_found(format!(
            "there is no callback `{callback}` of a running execution `{}`",
            at.execution
        ))
    };
    let execution = crate::owned(&service, &caller, &at.execution)
        .await
        .map_err(|_| gone())?;
    if execution.status.is_final() || execution.name != at.workflow {
        return Err(gone().into());
    }
    let json_body = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.contains("+json"));
    let body = if body.is_empty() {
        Value::Null
    } else if json_body {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?
    } else {
        Value::String(
            String::from_utf8(body.to_vec())
                .map_err(|_| ApiError::bad_request("a callback's body is JSON or UTF-8 text"))?,
        )
    };
    // Each parameter's values, in order, as Google gives them.
    let mut query = serde_json::Map::new();
    for (k, v) in pairs {
        if let Value::Array(values) = query.entry(k).or_insert_with(|| json!([])) {
            values.push(Value::String(v));
        }
    }
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .filter(|(name, _)| *name != axum::http::header::AUTHORIZATION)
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            )
        })
        .collect();
    let now = jiff::Timestamp::now().to_string();
    let event = json!({
        "specversion": "1.0",
        "id": format!("{callback}-{:016x}", fastrand::u64(..)),
        "source": "skein/callbacks",
        "type": gcw::CALLBACK_EVENT,
        "subject": callback,
        "time": now,
        "data": {
            "http_request": {
                "body": body,
                "headers": headers,
                "method": method.as_str(),
                "query": query,
                "url": at.path(),
            },
            "received_time": now,
            "type": "HTTP",
        },
    });
    service
        .engine()
        .deliver(&at.execution, event)
        .await
        .map_err(crate::delivery_error)?;
    Ok(Json(json!({})))
}
