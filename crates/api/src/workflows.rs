//! Named workflows: `POST /v1/workflows` deploys a definition under a name (a new
//! revision when it differs from the latest), `GET /v1/workflows[/{name}]` lists and
//! reads them, `DELETE /v1/workflows/{name}` removes one with its revisions; and
//! `workflowRef` (`name` or `name@revision`) in a start request names one.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult, too_large};
use crate::{Service, invalid_workflow, wire};

/// A workflow's name: 1 to 64 letters, digits, `-` and `_`, starting with a letter, as
/// Google's Workflows takes them.
pub(crate) fn check_name(name: &str) -> ApiResult<()> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{name}` is not a valid workflow name: use 1 to 64 letters, digits, `-` or `_`, \
             starting with a letter"
        )))
    }
}

fn not_deployed(name: &str, revision: Option<u64>) -> ApiError {
    let what = match revision {
        Some(r) => format!("revision {r} of the workflow `{name}`"),
        None => format!("workflow `{name}`"),
    };
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("there is no {what}"),
    )
}

/// The definition a `workflowRef` (`name` or `name@revision`) names in `project`, and
/// its name and revision.
pub(crate) async fn resolve(
    service: &Arc<Service>,
    project: &str,
    reference: &str,
) -> ApiResult<store::Deployed> {
    let (name, revision) = match reference.split_once('@') {
        Some((name, revision)) => {
            let revision = revision.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "`{reference}` is not a workflow reference: use `name` or `name@revision`, \
                     with a revision number"
                ))
            })?;
            (name, Some(revision))
        }
        None => (reference, None),
    };
    check_name(name)?;
    service
        .store()
        .deployed(project, name, revision)
        .await?
        .ok_or_else(|| not_deployed(name, revision))
}

/// Checks a definition (its size, then everything the front-end checks) and deploys
/// it as `name` in the caller's project: the revision, and whether it is new.
pub(crate) async fn deploy_text(
    service: &Service,
    caller: &Caller,
    name: &str,
    definition: &str,
) -> ApiResult<(store::Deployed, bool)> {
    caller.require(Role::Run)?;
    check_name(name)?;
    let limits = service.options();
    if definition.len() > limits.max_definition_bytes {
        return Err(too_large(
            "the workflow definition",
            definition.len(),
            limits.max_definition_bytes,
            "--max-definition-bytes",
        ));
    }
    let parsed = gcw::parse_any(definition, &crate::definition_options(service));
    let Some(program) = &parsed.workflow else {
        return Err(invalid_workflow(definition, &parsed.diagnostics));
    };
    let deployed = service
        .store()
        .deploy(&caller.project, name, definition)
        .await?;
    // A `schedule` in the document starts the workflow by time from now on.
    for note in
        crate::schedules::follow_document(service, &caller.project, name, Some(program)).await?
    {
        tracing::info!("workflow `{name}`: {note}");
    }
    Ok(deployed)
}

/// Deletes what goes with a named workflow once it is gone: its document's schedule.
pub(crate) async fn undeployed(service: &Service, project: &str, name: &str) -> ApiResult<()> {
    crate::schedules::follow_document(service, project, name, None).await?;
    Ok(())
}

/// `POST /v1/workflows`: deploys a definition under a name.
#[utoipa::path(post, path = "/v1/workflows", tag = "workflows", request_body = wire::DeployRequest, responses((status = 201, description = "A new revision", body = wire::Workflow), (status = 200, description = "The definition is the latest revision's: that revision", body = wire::Workflow), (status = 400, description = "An invalid name or definition, with diagnostics", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error), (status = 413, description = "The definition is too large", body = wire::Error)))]
pub(crate) async fn deploy(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Json(request): Json<wire::DeployRequest>,
) -> ApiResult<(StatusCode, Json<wire::Workflow>)> {
    let (deployed, new) = deploy_text(&service, &caller, &request.name, &request.workflow).await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(wire::Workflow::of(deployed, true))))
}

/// The latest revision of each of the caller's named workflows, by name, without
/// definitions.
pub(crate) async fn latest_of_each(
    service: &Service,
    caller: &Caller,
) -> ApiResult<Vec<wire::Workflow>> {
    caller.require(Role::Read)?;
    let workflows = service.store().deployments(&caller.project, None).await?;
    Ok(workflows
        .into_iter()
        .map(|d| wire::Workflow::of(d, false))
        .collect())
}

/// A revision of the caller's workflow `name` (the latest without `revision`), with
/// its definition and the numbers of all its revisions.
pub(crate) async fn revision(
    service: &Service,
    caller: &Caller,
    name: &str,
    revision: Option<u64>,
) -> ApiResult<wire::Workflow> {
    caller.require(Role::Read)?;
    check_name(name)?;
    let revisions = service
        .store()
        .deployments(&caller.project, Some(name))
        .await?;
    let found = match revision {
        Some(r) => revisions.iter().find(|d| d.revision == r),
        None => revisions.first(),
    };
    let Some(found) = found.cloned() else {
        return Err(not_deployed(name, revision));
    };
    let mut workflow = wire::Workflow::of(found, true);
    workflow.revisions = revisions.iter().map(|d| d.revision).collect();
    Ok(workflow)
}

/// Deletes the caller's workflow `name` with all its revisions.
pub(crate) async fn undeploy(service: &Service, caller: &Caller, name: &str) -> ApiResult<()> {
    caller.require(Role::Run)?;
    check_name(name)?;
    if service.store().undeploy(&caller.project, name).await? {
        undeployed(service, &caller.project, name).await
    } else {
        Err(not_deployed(name, None))
    }
}

/// `GET /v1/workflows`: the latest revision of each named workflow, by name.
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows", responses((status = 200, description = "The named workflows of the caller's project", body = wire::WorkflowList), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error)))]
pub(crate) async fn list(
    State(service): State<Arc<Service>>,
    caller: Caller,
) -> ApiResult<Json<wire::WorkflowList>> {
    Ok(Json(wire::WorkflowList {
        workflows: latest_of_each(&service, &caller).await?,
    }))
}

#[derive(Deserialize)]
pub(crate) struct RevisionParam {
    revision: Option<u64>,
}

/// `GET /v1/workflows/{name}[?revision=N]`: a revision with its definition, and the
/// numbers of all the workflow's revisions.
#[utoipa::path(get, path = "/v1/workflows/{name}", tag = "workflows", params(("name" = String, Path), ("revision" = Option<u64>, Query, description = "A revision; the latest when absent")), responses((status = 200, description = "The revision, with its definition", body = wire::Workflow), (status = 404, description = "No such workflow or revision", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error)))]
pub(crate) async fn get_one(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<RevisionParam>,
) -> ApiResult<Json<wire::Workflow>> {
    Ok(Json(
        revision(&service, &caller, &name, query.revision).await?,
    ))
}

/// `DELETE /v1/workflows/{name}`: the workflow with all its revisions. Executions
/// started from it keep running with their definitions.
#[utoipa::path(delete, path = "/v1/workflows/{name}", tag = "workflows", params(("name" = String, Path)), responses((status = 204, description = "Deleted"), (status = 404, description = "No such workflow", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error)))]
pub(crate) async fn delete(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    undeploy(&service, &caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
