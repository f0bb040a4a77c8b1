//! `call: grpc`: a unary call built from the task (arguments, authentication as
//! metadata, the task's timeout as the deadline), made by the effects, and the status
//! of a failed call read back as the DSL error it means.

use expr::{Problem, Vars, types};
use program::{Duration, GrpcCall, TimeoutRef};
use serde_json::{Value, json};
use store::Ticket;

use super::http::{authorization, endpoint_url};
use crate::effects::{GrpcError, GrpcRequest};
use crate::interp::eval;
use crate::run::Run;
use crate::{Interrupt, fault};

type Res<T> = Result<T, Interrupt>;

/// The port of a service that names none, as gRPC's own tools assume.
const DEFAULT_PORT: u16 = 443;

#[allow(clippy::too_many_arguments)]
pub(crate) async fn call(
    run: &Run,
    after: Ticket,
    call: &GrpcCall,
    timeout: Option<&TimeoutRef>,
    key: &str,
    at: &str,
    input: &Value,
    vars: &Vars<'_>,
) -> Res<Value> {
    let proto = endpoint_url(&call.proto.endpoint.uri, input, vars, at)?;
    let service = &call.service;
    let port = service.port.unwrap_or(DEFAULT_PORT);
    let message = match &call.arguments {
        Some(arguments) => eval(arguments, input, vars, at)?,
        None => json!({}),
    };
    let mut metadata = vec![("idempotency-key".to_string(), format!("{}:{key}", run.id))];
    if let Some(auth) = &service.authentication {
        // The URL only names the destination to the policies that need one (OAuth2
        // audiences, digest's request URI); gRPC travels over HTTP/2 to it.
        let scheme = if port == 443 { "https" } else { "http" };
        let url = url::Url::parse(&format!("{scheme}://{}:{port}/", service.host))
            .map_err(|e| super::http::configuration(at, "Invalid gRPC host", e.to_string()))?;
        let header = authorization(run, after, auth, &url, input, vars, at)
            .await?
            .header(at, "gRPC calls")?;
        metadata.push(("authorization".into(), header));
    }
    let request = GrpcRequest {
        proto,
        service: service.name.clone(),
        method: call.method.clone(),
        host: service.host.clone(),
        port,
        metadata,
        message,
        timeout: timeout.and_then(|t| fixed_timeout(run, t)),
        project: run.project.clone(),
    };
    run.barrier(after).await?;
    let answer = tokio::select! {
        r = run.effects.grpc(request.clone()) => r,
        _ = run.cancel.cancelled() => return Err(Interrupt::Cancelled),
    };
    answer.map_err(|e| failure(&request, e, at))
}

/// The task's timeout, when it is a fixed duration, as the call's deadline.
fn fixed_timeout(run: &Run, timeout: &TimeoutRef) -> Option<std::time::Duration> {
    let after = match timeout {
        TimeoutRef::Inline(t) => &t.after,
        TimeoutRef::Use(name) => &run.wf.use_.timeouts.get(name)?.after,
    };
    match after {
        Duration::Fixed(d) => Some(*d),
        _ => None,
    }
}

/// The name of each gRPC status code, by number.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The DSL error type and HTTP-like status of a gRPC status code: a deadline is a
/// `timeout`, credentials `authentication` and `authorization`, anything else
/// `communication` (so `UNAVAILABLE`, 503, is retried like an unreachable server).
pub(crate) fn status_error(code: i32) -> (&'static str, u16) {
    match code {
        4 => (types::TIMEOUT, 504),
        16 => (types::AUTHENTICATION, 401),
        7 => (types::AUTHORIZATION, 403),
        1 => (types::COMMUNICATION, 499),
        3 | 9 | 11 => (types::COMMUNICATION, 400),
        5 => (types::COMMUNICATION, 404),
        6 | 10 => (types::COMMUNICATION, 409),
        8 => (types::COMMUNICATION, 429),
        12 => (types::COMMUNICATION, 501),
        14 => (types::COMMUNICATION, 503),
        _ => (types::COMMUNICATION, 500),
    }
}

fn failure(request: &GrpcRequest, error: GrpcError, at: &str) -> Interrupt {
    let target = format!(
        "{}/{} at {}:{}",
        request.service, request.method, request.host, request.port
    );
    match error {
        GrpcError::Status { code, message } => {
            let (type_, status) = status_error(code);
            let name = usize::try_from(code)
                .ok()
                .and_then(|c| CODES.get(c))
                .copied()
                .unwrap_or("UNKNOWN");
            Interrupt::Fault(Problem {
                type_: type_.into(),
                status,
                title: Some(format!("gRPC {name} from {target}")),
                detail: (!message.is_empty()).then(|| message.clone()),
                instance: Some(at.to_string()),
                data: Some(Box::new(json!({
                    "code": code,
                    "status": name,
                    "message": message,
                }))),
            })
        }
        GrpcError::Definition(detail) => fault(
            types::CONFIGURATION,
            400,
            &format!("Cannot call {target}"),
            detail,
            at,
        ),
        GrpcError::Connect(detail) => fault(
            types::COMMUNICATION,
            503,
            &format!("Cannot reach {target}"),
            detail,
            at,
        ),
        GrpcError::Refused(rule) => fault(
            types::AUTHORIZATION,
            403,
            &format!("A call to {target} refused"),
            rule,
            at,
        ),
    }
}
