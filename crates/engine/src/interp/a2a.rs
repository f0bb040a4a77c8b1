//! `call: a2a`: the Agent2Agent protocol's JSON-RPC 2.0 over HTTP. The agent's URL
//! comes from its agent card (fetched, with the card endpoint's authentication, which
//! then authenticates the calls too) or from `server`; `message/send` and
//! `message/stream` get the defaults the spec asks for (a message id, stable across
//! re-runs of the same attempt, and the `user` role). A streamed method's results are
//! journaled as `dev.skein.task.stream.v1` events as they arrive and are the output
//! together, in order; any other method's output is its result. Failures are the DSL's
//! `runtime` errors, as the spec asks.

use std::sync::{Arc, Mutex};

use expr::{Problem, Vars, types};
use program::{A2aCall, AuthRef};
use serde_json::{Value, json};
use store::{Json, Ticket};

use super::http::{JsonFetch, authorization, endpoint_url, exchange, fetch_json, task_request};
use crate::events::Lifecycle;
use crate::interp::eval;
use crate::run::Run;
use crate::{HttpRequest, HttpResponse, Interrupt};

type Res<T> = Result<T, Interrupt>;

/// The methods whose answer is a stream of results.
const STREAMED: [&str; 2] = ["message/stream", "tasks/resubscribe"];

/// The transport name of JSON-RPC in an agent card's interfaces.
const JSONRPC: &str = "JSONRPC";

pub(crate) async fn call(
    run: &Arc<Run>,
    after: Ticket,
    call: &A2aCall,
    key: &str,
    at: &str,
    input: &Value,
    vars: &Vars<'_>,
) -> Res<Value> {
    let (url, auth): (url::Url, Option<&AuthRef>) = match (&call.agent_card, &call.server) {
        (Some(card), _) => {
            let endpoint = &card.endpoint;
            let (card_url, card) = fetch_json(run, after, endpoint, input, vars, at)
                .await
                .map_err(|e| match e {
                    JsonFetch::Failed(interrupt) => as_runtime(interrupt),
                    JsonFetch::NotJson(url, e) => failure(
                        at,
                        502,
                        "Unreadable agent card",
                        format!("{url} is not a JSON agent card: {e}"),
                    ),
                })?;
            (
                jsonrpc_url(&card, &card_url, at)?,
                endpoint.authentication.as_ref(),
            )
        }
        (None, Some(server)) => (
            endpoint_url(&server.uri, input, vars, at)?,
            server.authentication.as_ref(),
        ),
        (None, None) => unreachable!("the decoder requires agentCard or server"),
    };

    let mut params = match &call.parameters {
        Some(p) => eval(p, input, vars, at)?,
        None => json!({}),
    };
    if call.method.starts_with("message/")
        && let Some(message) = params.get_mut("message").and_then(Value::as_object_mut)
    {
        message
            .entry("messageId")
            .or_insert_with(|| json!(message_id(&run.id, key)));
        message.entry("role").or_insert_with(|| json!("user"));
        message.entry("kind").or_insert_with(|| json!("message"));
    }
    let body = json!({
        "jsonrpc": "2.0",
        "id": format!("{}:{key}", run.id),
        "method": call.method,
        "params": params,
    });
    let streamed = STREAMED.contains(&call.method.as_str());
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        (
            "accept".to_string(),
            if streamed {
                "text/event-stream"
            } else {
                "application/json"
            }
            .to_string(),
        ),
    ];
    if let Some(auth) = auth {
        let header = authorization(run, after, auth, &url, input, vars, at)
            .await?
            .header(at, "A2A agents")?;
        headers.push(("authorization".into(), header));
    }
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let request = task_request(run, key, "POST", &url, headers, Some(body), false);
    run.barrier(after).await?;
    if streamed {
        return stream(run, request, &call.method, at).await;
    }
    let response = exchange(run, &request, at).await.map_err(as_runtime)?;
    let answer = answer(&request, &response, at)?;
    result(&call.method, answer, at)
}

/// A streamed method: each event is one JSON-RPC response, journaled as it comes; the
/// output is their results in order. A server that answers with one JSON response
/// instead gives a one-result stream.
async fn stream(run: &Arc<Run>, request: HttpRequest, method: &str, at: &str) -> Res<Value> {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink: crate::EventSink = {
        let (run, seen, task, method) = (
            run.clone(),
            seen.clone(),
            at.to_string(),
            method.to_string(),
        );
        Arc::new(move |data: &str| {
            let parsed: Value = serde_json::from_str(data).unwrap_or(Value::String(data.into()));
            let event = json!({
                "workflow": run.qualified_name, "task": task, "method": method,
                "response": parsed,
            });
            run.record(
                vec![],
                vec![(Lifecycle::TaskStream.as_str(), Json::of(&event))],
                None,
            );
            seen.lock().expect("stream results").push(data.to_string());
        })
    };
    let response = tokio::select! {
        r = run.effects.http_events(request.clone(), sink) => r,
        _ = run.cancel.cancelled() => return Err(Interrupt::Cancelled),
    };
    let response = response.map_err(|e| {
        failure(
            at,
            502,
            &format!("{} {} failed", request.method, request.url),
            e.to_string(),
        )
    })?;
    if !response.body.is_empty() {
        let answer = answer(&request, &response, at)?;
        return Ok(Value::Array(vec![result(method, answer, at)?]));
    }
    if !(200..300).contains(&response.status) {
        return Err(answer(&request, &response, at).unwrap_err());
    }
    let seen = std::mem::take(&mut *seen.lock().expect("stream results"));
    let mut results = Vec::with_capacity(seen.len());
    for data in seen {
        let answer: Value = serde_json::from_str(&data).map_err(|e| {
            failure(
                at,
                502,
                "Unreadable A2A event",
                format!("an event of {} is not JSON: {e}", request.url),
            )
        })?;
        results.push(result(method, answer, at)?);
    }
    Ok(Value::Array(results))
}

/// The JSON-RPC response of an HTTP response, or the error its status means.
fn answer(request: &HttpRequest, response: &HttpResponse, at: &str) -> Res<Value> {
    let parsed = serde_json::from_slice::<Value>(&response.body);
    if !(200..300).contains(&response.status) {
        let body = String::from_utf8_lossy(&response.body[..response.body.len().min(2048)]);
        return Err(failure(
            at,
            response.status,
            &format!(
                "HTTP {} from {} {}",
                response.status, request.method, request.url
            ),
            body.into_owned(),
        ));
    }
    parsed.map_err(|e| {
        failure(
            at,
            502,
            "Unreadable A2A response",
            format!("{} did not answer with JSON: {e}", request.url),
        )
    })
}

/// The `result` of a JSON-RPC response, or its `error` as a runtime error.
fn result(method: &str, mut answer: Value, at: &str) -> Res<Value> {
    if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
        let code = error["code"].as_i64().unwrap_or_default();
        let message = error["message"].as_str().unwrap_or("").to_string();
        return Err(Interrupt::Fault(Problem {
            type_: types::RUNTIME.into(),
            status: 500,
            title: Some(format!("A2A {method} failed with JSON-RPC error {code}")),
            detail: (!message.is_empty()).then_some(message),
            instance: Some(at.to_string()),
            data: Some(Box::new(error.clone())),
        }));
    }
    match answer.get_mut("result") {
        Some(result) => Ok(result.take()),
        None => Err(failure(
            at,
            502,
            "Unreadable A2A response",
            format!("the answer to {method} has neither `result` nor `error`"),
        )),
    }
}

/// The JSON-RPC URL an agent card names: its `url` when its preferred transport is
/// JSON-RPC (the default), or the JSON-RPC one of its `additionalInterfaces`.
fn jsonrpc_url(card: &Value, card_url: &url::Url, at: &str) -> Res<url::Url> {
    let preferred = card["preferredTransport"].as_str().unwrap_or(JSONRPC);
    let found = if preferred.eq_ignore_ascii_case(JSONRPC) {
        card["url"].as_str()
    } else {
        card["additionalInterfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| {
                i["transport"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case(JSONRPC))
            })
            .and_then(|i| i["url"].as_str())
    };
    let Some(text) = found else {
        return Err(failure(
            at,
            502,
            "No JSON-RPC interface",
            format!("the agent card at {card_url} names no JSON-RPC URL"),
        ));
    };
    // A relative URL is read against the card's own.
    card_url.join(text).map_err(|e| {
        failure(
            at,
            502,
            "Invalid agent card",
            format!("the agent card at {card_url} names `{text}`: {e}"),
        )
    })
}

/// A message id for `{execution}:{key}`: the same on every re-run of the attempt, so an
/// agent can tell a repeat.
fn message_id(execution: &str, key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{execution}:{key}").as_bytes(),
    );
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn failure(at: &str, status: u16, title: &str, detail: String) -> Interrupt {
    crate::fault(types::RUNTIME, status, title, detail, at)
}

/// A failed call's error as the `runtime` error the spec asks of A2A calls, its status
/// and details kept.
fn as_runtime(interrupt: Interrupt) -> Interrupt {
    match interrupt {
        Interrupt::Fault(mut problem) if problem.type_ == types::COMMUNICATION => {
            problem.type_ = types::RUNTIME.into();
            Interrupt::Fault(problem)
        }
        other => other,
    }
}
