//! `call: http`: the request built from the task, and the response read back
//! as the task's output or as a `communication` error.

use base64::Engine as _;
use dsl::model::{AuthPolicy, AuthRef, HttpCall, HttpOutput, Secretable, Uri};
use expr::{Problem, Vars, types};
use serde_json::{Value, json};

use crate::interp::{eval, plain_string, text};
use crate::run::Run;
use crate::{HttpError, HttpRequest, HttpResponse, Interrupt};

type Res<T> = Result<T, Interrupt>;

/// Most bytes of a failed response's body quoted in the error.
const DETAIL_BYTES: usize = 2048;

pub(crate) async fn call(
    run: &Run,
    call: &HttpCall,
    key: &str,
    at: &str,
    input: &Value,
    vars: &Vars<'_>,
) -> Res<Value> {
    let url = match &call.endpoint.uri {
        Uri::Template(t) => t.expand(input).map_err(|e| e.into_problem(at))?,
        Uri::Expr(e) => plain_string(&e.eval(input, vars).map_err(|e| e.into_problem(at))?),
    };
    let mut url = url::Url::parse(&url).map_err(|e| Problem {
        type_: types::CONFIGURATION.into(),
        status: 400,
        title: Some("Invalid endpoint".into()),
        detail: Some(format!("`{url}` is not a valid URL: {e}")),
        instance: Some(at.to_string()),
    })?;
    if let Some(query) = &call.query
        && let Value::Object(params) = eval(query, input, vars, at)?
    {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in params {
            if !value.is_null() {
                pairs.append_pair(&name, &plain_string(&value));
            }
        }
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(h) = &call.headers
        && let Value::Object(map) = eval(h, input, vars, at)?
    {
        headers.extend(
            map.into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), plain_string(&v))),
        );
    }
    if let Some(auth) = &call.endpoint.authentication {
        let value = authorization(run, auth, input, vars, at)?;
        headers.retain(|(k, _)| k != "authorization");
        headers.push(("authorization".into(), value));
    }
    let body = match &call.body {
        None => None,
        Some(template) => Some(match eval(template, input, vars, at)? {
            Value::String(s) => {
                default_header(&mut headers, "content-type", "text/plain; charset=utf-8");
                s.into_bytes()
            }
            other => {
                default_header(&mut headers, "content-type", "application/json");
                serde_json::to_vec(&other).unwrap_or_default()
            }
        }),
    };
    // Stable across re-runs of the same attempt: the key holds the task path and attempt marks.
    headers.push(("idempotency-key".into(), format!("{}:{key}", run.id)));
    let request = HttpRequest {
        method: call.method.to_ascii_uppercase(),
        url: url.to_string(),
        headers,
        body,
        follow_redirects: call.redirect,
        timeout: None,
    };

    run.barrier().await?;
    let response = tokio::select! {
        r = run.effects.http(request.clone()) => r,
        _ = run.cancel.cancelled() => return Err(Interrupt::Cancelled),
    };
    let response = response.map_err(|e| unreachable_problem(&request, &e, at))?;
    let ok = (200..300).contains(&response.status)
        || (call.redirect && (300..400).contains(&response.status));
    if !ok {
        return Err(Interrupt::Fault(status_problem(&request, &response, at)));
    }
    Ok(match call.output {
        HttpOutput::Content => content(&response),
        HttpOutput::Raw => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(&response.body))
        }
        HttpOutput::Response => json!({
            "request": {
                "method": request.method,
                "uri": request.url,
                "headers": headers_json(&request.headers),
            },
            "statusCode": response.status,
            "headers": headers_json(&response.headers),
            "content": content(&response),
        }),
    })
}

fn default_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    if !headers.iter().any(|(k, _)| k == name) {
        headers.push((name.into(), value.into()));
    }
}

fn headers_json(headers: &[(String, String)]) -> Value {
    Value::Object(
        headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// The body, deserialized when it is JSON, as text when it is text, else base64.
fn content(response: &HttpResponse) -> Value {
    if response.body.is_empty() {
        return Value::Null;
    }
    let content_type = response
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    if content_type.contains("json")
        && let Ok(v) = serde_json::from_slice(&response.body)
    {
        return v;
    }
    match std::str::from_utf8(&response.body) {
        Ok(text)
            if content_type.is_empty()
                || content_type.starts_with("text/")
                || content_type.contains("json")
                || content_type.contains("xml") =>
        {
            Value::String(text.to_string())
        }
        _ => Value::String(base64::engine::general_purpose::STANDARD.encode(&response.body)),
    }
}

fn status_problem(request: &HttpRequest, response: &HttpResponse, at: &str) -> Problem {
    let body = String::from_utf8_lossy(&response.body[..response.body.len().min(DETAIL_BYTES)])
        .into_owned();
    Problem {
        type_: types::COMMUNICATION.into(),
        status: response.status,
        title: Some(format!(
            "HTTP {} from {} {}",
            response.status, request.method, request.url
        )),
        detail: (!body.trim().is_empty()).then_some(body),
        instance: Some(at.to_string()),
    }
}

fn unreachable_problem(request: &HttpRequest, error: &HttpError, at: &str) -> Problem {
    let status = match error {
        HttpError::Connect(_) => 503,
        HttpError::Timeout => 504,
        HttpError::Other(_) => 502,
    };
    Problem {
        type_: types::COMMUNICATION.into(),
        status,
        title: Some(format!("{} {} failed", request.method, request.url)),
        detail: Some(error.to_string()),
        instance: Some(at.to_string()),
    }
}

/// The `Authorization` header of a policy.
fn authorization(
    run: &Run,
    auth: &AuthRef,
    input: &Value,
    vars: &Vars<'_>,
    at: &str,
) -> Res<String> {
    let policy = match auth {
        AuthRef::Inline(policy) => policy.as_ref(),
        AuthRef::Use(name) => &run.wf.use_.authentications[name],
    };
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    match policy {
        AuthPolicy::Basic(Secretable::Inline(basic)) => {
            let user = text(&basic.username, input, vars, at)?;
            let password = text(&basic.password, input, vars, at)?;
            Ok(format!("Basic {}", b64(format!("{user}:{password}"))))
        }
        AuthPolicy::Basic(Secretable::Secret(name)) => {
            let secret = secret(run, name, at)?;
            let field = |f: &str| secret_field(&secret, name, f, at);
            Ok(format!(
                "Basic {}",
                b64(format!("{}:{}", field("username")?, field("password")?))
            ))
        }
        AuthPolicy::Bearer(Secretable::Inline(token)) => {
            Ok(format!("Bearer {}", text(token, input, vars, at)?))
        }
        AuthPolicy::Bearer(Secretable::Secret(name)) => {
            let secret = secret(run, name, at)?;
            let token = match &secret {
                Value::String(s) => s.clone(),
                _ => secret_field(&secret, name, "token", at)?,
            };
            Ok(format!("Bearer {token}"))
        }
        AuthPolicy::Digest(_) => Err(unsupported_auth(at, "digest")),
        AuthPolicy::OAuth2(_) => Err(unsupported_auth(at, "oauth2")),
        AuthPolicy::Oidc(_) => Err(unsupported_auth(at, "oidc")),
    }
}

fn secret(run: &Run, name: &str, at: &str) -> Res<Value> {
    match run.secrets.get(name) {
        Some(v) if !v.is_null() => Ok(v.clone()),
        _ => Err(Interrupt::Fault(Problem {
            type_: types::AUTHORIZATION.into(),
            status: 403,
            title: Some("Missing secret".into()),
            detail: Some(format!(
                "the secret `{name}` was not provided to this execution"
            )),
            instance: Some(at.to_string()),
        })),
    }
}

fn secret_field(secret: &Value, name: &str, field: &str, at: &str) -> Res<String> {
    match secret.get(field) {
        Some(v) => Ok(plain_string(v)),
        None => Err(Interrupt::Fault(Problem {
            type_: types::AUTHORIZATION.into(),
            status: 403,
            title: Some("Incomplete secret".into()),
            detail: Some(format!("the secret `{name}` has no `{field}`")),
            instance: Some(at.to_string()),
        })),
    }
}

fn unsupported_auth(at: &str, scheme: &str) -> Interrupt {
    Interrupt::Fault(Problem {
        type_: types::AUTHENTICATION.into(),
        status: 501,
        title: Some("Not supported yet".into()),
        detail: Some(format!("skein does not do `{scheme}` authentication yet")),
        instance: Some(at.to_string()),
    })
}
