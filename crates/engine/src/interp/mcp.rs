//! `call: mcp`: the request built from the task (the server's transport evaluated,
//! authentication as a header), made by the effects on a session of its own, and the
//! JSON-RPC result as the output. Failures are the DSL's `runtime` errors, as the
//! spec asks; a tool that reports an error (`isError`) is one too, naming the tool.

use expr::{Problem, Vars, types};
use program::{McpCall, McpTransport};
use serde_json::{Value, json};
use store::Ticket;

use super::http::{authorization, endpoint_url};
use crate::Interrupt;
use crate::effects::{McpError, McpRequest, McpServer};
use crate::interp::{eval, plain_string, text};
use crate::run::Run;

type Res<T> = Result<T, Interrupt>;

/// What `initialize` says the client is, unless the task names another.
const CLIENT: &str = "skein";

pub(crate) async fn call(
    run: &Run,
    after: Ticket,
    call: &McpCall,
    at: &str,
    input: &Value,
    vars: &Vars<'_>,
) -> Res<Value> {
    let server = match &call.transport {
        McpTransport::Http { endpoint, headers } => {
            let url = endpoint_url(&endpoint.uri, input, vars, at)?;
            let mut headers = string_map(headers.as_ref(), input, vars, at)?;
            if let Some(auth) = &endpoint.authentication {
                let header = authorization(run, after, auth, &url, input, vars, at)
                    .await?
                    .header(at, "MCP servers")?;
                headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
                headers.push(("authorization".into(), header));
            }
            McpServer::Http { url, headers }
        }
        McpTransport::Stdio {
            command,
            arguments,
            environment,
        } => McpServer::Stdio {
            command: text(command, input, vars, at)?,
            arguments: arguments
                .iter()
                .map(|a| text(a, input, vars, at))
                .collect::<Res<_>>()?,
            environment: string_map(environment.as_ref(), input, vars, at)?,
        },
    };
    let params = match &call.parameters {
        Some(p) => Some(eval(p, input, vars, at)?),
        None => None,
    };
    let timeout = match &call.timeout {
        Some(d) => Some(std::time::Duration::from_millis(
            super::timers::duration_ms(d, input, vars, at)?.max(0) as u64,
        )),
        None => None,
    };
    let client = match &call.client {
        Some(c) => (c.name.clone(), c.version.clone()),
        None => (CLIENT.to_string(), env!("CARGO_PKG_VERSION").to_string()),
    };
    let request = McpRequest {
        server,
        protocol_version: call.protocol_version.clone(),
        client,
        method: call.method.clone(),
        params,
        timeout,
        project: run.project.clone(),
    };
    run.barrier(after).await?;
    let answer = tokio::select! {
        r = run.effects.mcp(request.clone()) => r,
        _ = run.cancel.cancelled() => return Err(Interrupt::Cancelled),
    };
    let result = answer.map_err(|e| failure(&request, e, at))?;
    if request.method == "tools/call" && result["isError"] == json!(true) {
        return Err(tool_error(&request, result, at));
    }
    Ok(result)
}

/// A mapping of names to strings (headers, environment), or one expression yielding it.
fn string_map(
    template: Option<&expr::Template>,
    input: &Value,
    vars: &Vars<'_>,
    at: &str,
) -> Res<Vec<(String, String)>> {
    let Some(template) = template else {
        return Ok(Vec::new());
    };
    Ok(match eval(template, input, vars, at)? {
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| (k, plain_string(&v)))
            .collect(),
        _ => Vec::new(),
    })
}

fn server_name(request: &McpRequest) -> String {
    match &request.server {
        McpServer::Http { url, .. } => url.to_string(),
        McpServer::Stdio { command, .. } => format!("`{command}`"),
    }
}

fn failure(request: &McpRequest, error: McpError, at: &str) -> Interrupt {
    let server = server_name(request);
    let (status, data) = match &error {
        McpError::Rpc {
            code,
            message,
            data,
        } => (
            500,
            Some(json!({"code": code, "message": message, "data": data})),
        ),
        McpError::Timeout => (408, None),
        McpError::Transport(_) => (502, None),
        McpError::Invalid(_) => (400, None),
        McpError::Refused(_) => (403, None),
    };
    let type_ = match error {
        // Not the server's failure: the destination is not allowed.
        McpError::Refused(_) => types::AUTHORIZATION,
        _ => types::RUNTIME,
    };
    Interrupt::Fault(Problem {
        type_: type_.into(),
        status,
        title: Some(format!("MCP {} on {server} failed", request.method)),
        detail: Some(error.to_string()),
        instance: Some(at.to_string()),
        data: data.map(Box::new),
    })
}

/// A `tools/call` whose result says the tool failed: the tool's name, and its text
/// content as the detail; the whole result in `data`.
fn tool_error(request: &McpRequest, result: Value, at: &str) -> Interrupt {
    let tool = request
        .params
        .as_ref()
        .and_then(|p| p["name"].as_str())
        .unwrap_or("?")
        .to_string();
    let detail: Vec<&str> = result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect();
    Interrupt::Fault(Problem {
        type_: types::RUNTIME.into(),
        status: 500,
        title: Some(format!(
            "MCP tool `{tool}` on {} reported an error",
            server_name(request)
        )),
        detail: (!detail.is_empty()).then(|| detail.join("\n")),
        instance: Some(at.to_string()),
        data: Some(Box::new(result)),
    })
}
