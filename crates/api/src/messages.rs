//! Signals, queries and updates: the Temporal-style messages Zigflow's `listen` tasks
//! handle, sent to a running execution. REST handlers, and the operations the gRPC
//! service shares.
//!
//! A signal or an update is a CloudEvent delivered to the execution's inbox (typed by
//! [`program::MessageKind::event_type`], named by its `subject`, its `id` the update's
//! id), so that it waits there for the listener that handles it, across restarts and
//! on any replica. An update's answer is read from the `task.message` event that the
//! engine journals with its handling, so it is handled once and answered the same each
//! time it is asked. A query is answered by the process that runs the execution, from
//! the state it holds, without touching the journal; another server of the cluster
//! passes it there (to the URL the holder of the execution's lease announced).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use engine::events::Lifecycle;
use program::MessageKind;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use crate::{Service, owned, wire};

/// How long an update request waits for its answer when it does not say.
pub(crate) const DEFAULT_UPDATE_WAIT: Duration = Duration::from_secs(60);

/// The header whose value names an update, so that sending it again is safe.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Delivers signal `name` with `payload` to execution `id`: its inbox position.
pub(crate) async fn signal(
    service: &Service,
    caller: &Caller,
    id: &str,
    name: &str,
    payload: Value,
) -> ApiResult<u64> {
    caller.require(Role::Run)?;
    let event = message(
        MessageKind::Signal,
        name,
        &uuid::Uuid::new_v4().to_string(),
        payload,
    );
    crate::deliver_event(service, caller, id, event).await
}

/// The named cursor where a server of a cluster says which URL reaches it.
pub(crate) fn peer_cursor(node: &str) -> String {
    format!("peer/{node}")
}

/// Marks a query one server passed to another, so that it is not passed on again.
const FORWARDED: &str = "x-skein-forwarded";

/// How a query reached this server: the caller's `Authorization` header (passed on to
/// the server that runs the execution) and whether another server passed it here.
#[derive(Default)]
pub(crate) struct Asked<'a> {
    pub(crate) authorization: Option<&'a str>,
    pub(crate) forwarded: bool,
}

/// Query `name` of execution `id`, answered by the process that runs it: here, or,
/// with servers sharing a database, the server that holds the execution's lease.
pub(crate) async fn query(
    service: &Service,
    caller: &Caller,
    id: &str,
    name: &str,
    asked: Asked<'_>,
) -> ApiResult<Value> {
    caller.require(Role::Read)?;
    let execution = owned(service, caller, id).await?;
    match service.engine().query(id, name) {
        Ok(answer) => Ok(answer),
        Err(engine::QueryError::NotRunningHere)
            if !execution.status.is_final() && !asked.forwarded && service.cluster().is_some() =>
        {
            forward(service, id, name, &asked).await
        }
        Err(engine::QueryError::NotRunningHere) if execution.status.is_final() => {
            Err(ApiError::ended(format!(
                "the execution `{id}` has {}; queries are answered while it runs",
                execution.status.as_str()
            )))
        }
        Err(engine::QueryError::NotRunningHere) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_running_here",
            format!(
                "the execution `{id}` is not running on this server (it is {}, and waits to \
                 be taken up); queries are answered by the server that runs it",
                execution.status.as_str()
            ),
        )),
        Err(e @ engine::QueryError::Unknown { .. }) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_query",
            e.to_string(),
        )),
        Err(engine::QueryError::Failed(problem)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "query_failed",
            format!(
                "query `{name}` failed: {}",
                problem
                    .detail
                    .as_deref()
                    .or(problem.title.as_deref())
                    .unwrap_or("its `data` did not evaluate")
            ),
        )),
    }
}

/// Passes a query to the server that holds the execution's lease, at the URL it
/// announced, and returns its answer (or its refusal, as it gave it).
async fn forward(service: &Service, id: &str, name: &str, asked: &Asked<'_>) -> ApiResult<Value> {
    let unavailable =
        |why: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_running_here", why);
    let Some(holder) = service.store().holder(id).await? else {
        return Err(unavailable(format!(
            "no server runs the execution `{id}` now (it waits to be taken up); ask again"
        )));
    };
    let url = service
        .store()
        .cursor(&peer_cursor(&holder))
        .await?
        .and_then(|c| c["url"].as_str().map(str::to_string))
        .ok_or_else(|| {
            unavailable(format!(
                "the server `{holder}` runs the execution `{id}` and has not said where it \
                 is reached"
            ))
        })?;
    let target = format!(
        "{}/v1/executions/{}/queries/{}",
        url.trim_end_matches('/'),
        encode(id),
        encode(name)
    );
    let mut request = peer_client().get(&target).header(FORWARDED, "1");
    if let Some(authorization) = asked.authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.map_err(|e| {
        unavailable(format!(
            "the server `{holder}` that runs the execution `{id}` did not answer: {e}"
        ))
    })?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| {
        unavailable(format!(
            "the server `{holder}` did not finish its answer: {e}"
        ))
    })?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
        unavailable(format!(
            "the server `{holder}` answered the query with no JSON: {e}"
        ))
    })?;
    if status.is_success() {
        return Ok(body["result"].clone());
    }
    Err(ApiError::new(
        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
        body["error"].as_str().unwrap_or("query_failed"),
        body["message"]
            .as_str()
            .unwrap_or("the query failed")
            .to_string(),
    ))
}

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// One HTTP client for the queries passed between servers.
fn peer_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client")
    })
}

/// What became of an update.
pub(crate) enum Update {
    /// Handled: the `task.message` record, with `reply` and `accepted`.
    Answered(Value),
    /// Delivered (or found delivered before), not handled within the wait.
    Pending,
}

/// Sends update `name` (`update` its id) with `payload` to execution `id`, unless an
/// update of that id was sent before, and waits up to `wait` for its answer.
pub(crate) async fn update(
    service: &Service,
    caller: &Caller,
    id: &str,
    name: &str,
    update: &str,
    payload: Value,
    wait: Duration,
) -> ApiResult<Update> {
    caller.require(Role::Run)?;
    if update.is_empty() || update.len() > 200 {
        return Err(ApiError::bad_request(
            "an update's id (Idempotency-Key) must be 1 to 200 characters",
        ));
    }
    // The caller's execution, before its inbox is read.
    owned(service, caller, id).await?;
    match delivered(service, id, update).await? {
        Some(sent) if sent["subject"] != name => {
            return Err(ApiError::conflict(format!(
                "the update id `{update}` was used for the update `{}` of this execution",
                sent["subject"].as_str().unwrap_or_default()
            )));
        }
        Some(_) => {}
        None => {
            let event = message(MessageKind::Update, name, update, payload);
            crate::deliver_event(service, caller, id, event).await?;
        }
    }
    answer(service, id, update, wait).await
}

/// The answer to update `update` of execution `id`, waiting up to `wait` for it.
pub(crate) async fn update_result(
    service: &Service,
    caller: &Caller,
    id: &str,
    update: &str,
    wait: Duration,
) -> ApiResult<Update> {
    caller.require(Role::Read)?;
    owned(service, caller, id).await?;
    if delivered(service, id, update).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the execution `{id}` was sent no update `{update}`"),
        ));
    }
    answer(service, id, update, wait).await
}

/// The update of id `update` in the execution's inbox, if it was delivered.
async fn delivered(service: &Service, id: &str, update: &str) -> ApiResult<Option<Value>> {
    let inbox = service.store().inbox(id, 0).await?;
    Ok(inbox
        .into_iter()
        .map(|(_, e)| e)
        .find(|e| e["type"] == MessageKind::Update.event_type() && e["id"] == update))
}

async fn answer(service: &Service, id: &str, update: &str, wait: Duration) -> ApiResult<Update> {
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribed before the reads, so that no commit falls between them.
    let mut notices = service.store().subscribe();
    loop {
        let handled = service
            .store()
            .events_of_type(id, Lifecycle::TaskMessage.as_str())
            .await?;
        if let Some(answer) = engine::update_answer(&handled, update) {
            return Ok(Update::Answered(answer));
        }
        let execution = service
            .store()
            .execution(id)
            .await?
            .ok_or_else(|| ApiError::not_found(id))?;
        if execution.status.is_final() {
            return Err(ApiError::ended(format!(
                "the execution `{id}` {} before a listener handled the update `{update}`",
                execution.status.as_str()
            )));
        }
        loop {
            match tokio::time::timeout_at(deadline, notices.recv()).await {
                Err(_) => return Ok(Update::Pending),
                Ok(Ok(notice)) if !notice.concerns(id) => continue,
                Ok(Ok(_) | Err(RecvError::Lagged(_))) => break,
                Ok(Err(RecvError::Closed)) => return Ok(Update::Pending),
            }
        }
    }
}

fn message(kind: MessageKind, name: &str, id: &str, payload: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "skein",
        "type": kind.event_type(),
        "subject": name,
        "datacontenttype": "application/json",
        "data": payload,
    })
}

/// A request body as the message's payload: JSON, or null when empty.
fn payload(body: &Bytes) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))
}

/// `POST /v1/executions/{id}/signals/{name}`: the body (JSON, or empty for null) is the
/// signal's payload.
#[utoipa::path(post, path = "/v1/executions/{id}/signals/{name}", tag = "messages", request_body(content = Object, description = "The signal's payload: any JSON value, or nothing"), params(("id" = String, Path), ("name" = String, Path, description = "The signal's name (the `id` of a Zigflow listener's `signal` filter)")), responses((status = 202, description = "Delivered to the execution's inbox, where its listener takes it", body = wire::Delivered), (status = 404, description = "No such execution in the caller's project", body = wire::Error), (status = 409, description = "The execution has already ended", body = wire::Error), (status = 400, description = "Bad request", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error)))]
pub(crate) async fn post_signal(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<wire::Delivered>)> {
    let position = signal(&service, &caller, &id, &name, payload(&body)?).await?;
    Ok((StatusCode::ACCEPTED, Json(wire::Delivered { position })))
}

/// `GET /v1/executions/{id}/queries/{name}`: the answer, computed now.
#[utoipa::path(get, path = "/v1/executions/{id}/queries/{name}", tag = "messages", params(("id" = String, Path), ("name" = String, Path, description = "The query's name")), responses((status = 200, description = "The query's answer", body = wire::QueryAnswer), (status = 404, description = "No such execution, or it has no such query (yet)", body = wire::Error), (status = 409, description = "The execution has ended", body = wire::Error), (status = 422, description = "The query's `data` failed to evaluate", body = wire::Error), (status = 503, description = "The execution runs on another server", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error)))]
pub(crate) async fn get_query(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<wire::QueryAnswer>> {
    let asked = Asked {
        authorization: headers.get("authorization").and_then(|v| v.to_str().ok()),
        forwarded: headers.contains_key(FORWARDED),
    };
    let result = query(&service, &caller, &id, &name, asked).await?;
    Ok(Json(wire::QueryAnswer { result }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct UpdateParams {
    /// How long to wait for the answer, such as `30s`; 60 s by default.
    wait: Option<String>,
}

impl UpdateParams {
    fn wait(&self) -> ApiResult<Duration> {
        Ok(crate::parse_wait(self.wait.as_deref())?.unwrap_or(DEFAULT_UPDATE_WAIT))
    }
}

/// `POST /v1/executions/{id}/updates/{name}[?wait=60s]`: sends the body (JSON, or empty
/// for null) as the update's payload and waits for its answer. The `Idempotency-Key`
/// header names the update: sending it again returns the same answer and is handled
/// once.
#[utoipa::path(post, path = "/v1/executions/{id}/updates/{name}", tag = "messages", request_body(content = Object, description = "The update's payload: any JSON value, or nothing"), params(("id" = String, Path), ("name" = String, Path, description = "The update's name"), ("wait" = Option<String>, Query, description = "How long to wait for the answer (60s by default; 0s returns at once)"), ("Idempotency-Key" = Option<String>, Header, description = "The update's id: the same id is handled once")), responses((status = 200, description = "Handled: the listener's answer", body = wire::UpdateAnswer), (status = 202, description = "Delivered, not handled yet; ask again with GET .../updates/{name}/{update}", body = wire::UpdateAnswer), (status = 404, description = "No such execution in the caller's project", body = wire::Error), (status = 409, description = "The execution ended before handling it, or the id names another update", body = wire::Error), (status = 400, description = "Bad request", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "The token's role does not allow it", body = wire::Error)))]
pub(crate) async fn post_update(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
    Query(params): Query<UpdateParams>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<wire::UpdateAnswer>)> {
    let wait = params.wait()?;
    let update_id = match headers.get(IDEMPOTENCY_KEY) {
        Some(v) => v
            .to_str()
            .map_err(|_| ApiError::bad_request("the Idempotency-Key header must be text"))?
            .to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let outcome = update(
        &service,
        &caller,
        &id,
        &name,
        &update_id,
        payload(&body)?,
        wait,
    )
    .await?;
    Ok(respond(&name, &update_id, outcome))
}

/// `GET /v1/executions/{id}/updates/{name}/{update}[?wait=60s]`: the answer to an update
/// sent before.
#[utoipa::path(get, path = "/v1/executions/{id}/updates/{name}/{update}", tag = "messages", params(("id" = String, Path), ("name" = String, Path), ("update" = String, Path, description = "The update's id"), ("wait" = Option<String>, Query, description = "How long to wait for the answer (60s by default)")), responses((status = 200, description = "Handled: the listener's answer", body = wire::UpdateAnswer), (status = 202, description = "Not handled yet", body = wire::UpdateAnswer), (status = 404, description = "No such execution or update", body = wire::Error), (status = 409, description = "The execution ended before handling it", body = wire::Error), (status = 401, description = "No or unknown token", body = wire::Error)))]
pub(crate) async fn get_update(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path((id, name, update_id)): Path<(String, String, String)>,
    Query(params): Query<UpdateParams>,
) -> ApiResult<(StatusCode, Json<wire::UpdateAnswer>)> {
    let outcome = update_result(&service, &caller, &id, &update_id, params.wait()?).await?;
    Ok(respond(&name, &update_id, outcome))
}

fn respond(name: &str, update: &str, outcome: Update) -> (StatusCode, Json<wire::UpdateAnswer>) {
    match outcome {
        Update::Answered(record) => (
            StatusCode::OK,
            Json(wire::UpdateAnswer {
                update: update.to_string(),
                name: name.to_string(),
                handled: true,
                accepted: record["accepted"].as_bool(),
                result: Some(record["reply"].clone()),
            }),
        ),
        Update::Pending => (
            StatusCode::ACCEPTED,
            Json(wire::UpdateAnswer {
                update: update.to_string(),
                name: name.to_string(),
                handled: false,
                accepted: None,
                result: None,
            }),
        ),
    }
}
