//! `call: asyncapi`: an operation (AsyncAPI 3.0) or a channel (2.6) of a document,
//! resolved to a server and a channel address, then a message published (its payload
//! checked against the message's schema first) or a subscription consumed.
//!
//! A subscription is durable: each message it takes is journaled (`{key}/message/{i}`)
//! before the broker is told it was received, so after a crash the journaled messages
//! are replayed and the broker delivers again only what was not journaled; one it
//! delivers again although it was journaled (the crash fell between the two) is
//! recognised by its id or content and acknowledged without being consumed twice.

use std::sync::Arc;

use expr::{Problem, Vars, types};
use program::{AsyncApiCall, AsyncApiSubscription, Schema, SchemaSource};
use serde_json::{Map, Value, json};
use store::{Step, StepState};

use super::data::check_schema;
use super::http::{JsonFetch, authorization, configuration, fetch_json};
use super::{Ctx, Res, TaskCx};
use crate::effects::{Channel, Inbound, MessagingError, Outbound};
use crate::interp::{eval, plain_string};
use crate::{HttpRequest, Interrupt};

/// What a call resolved to in its document.
struct Target {
    channel: Channel,
    /// The payload schema of the operation's (first) message, with its references
    /// resolved.
    payload_schema: Option<Value>,
    /// For HTTP: the method of the operation's binding (POST by default).
    http_method: String,
}

pub(super) async fn call(
    cx: TaskCx<'_>,
    call: &AsyncApiCall,
    input: &Value,
    ctx: &mut Ctx,
) -> Res<Value> {
    let (run, key, at) = (cx.run, cx.key, cx.at());
    let target = {
        let vars = cx.vars(&ctx.value, input);
        resolve(cx, call, input, &vars, ctx).await?
    };
    if let Some(message) = &call.message {
        let vars = cx.vars(&ctx.value, input);
        let payload = match &message.payload {
            Some(p) => eval(p, input, &vars, at)?,
            None => Value::Null,
        };
        let headers: Vec<(String, String)> = match &message.headers {
            Some(h) => match eval(h, input, &vars, at)? {
                Value::Object(map) => map
                    .into_iter()
                    .map(|(k, v)| (k, plain_string(&v)))
                    .collect(),
                _ => Vec::new(),
            },
            None => Vec::new(),
        };
        if let Some(schema) = &target.payload_schema {
            check_schema(
                run,
                &compiled(schema, at)?,
                &payload,
                "the message's payload",
                at,
            )
            .await?;
        }
        let id = format!("{}:{key}", run.id);
        run.barrier(ctx.causal).await?;
        if matches!(target.channel.protocol.as_str(), "http" | "https") {
            return publish_http(run, &target, payload, headers, &id, at).await;
        }
        let outbound = Outbound {
            payload: payload.clone(),
            headers,
            id,
        };
        let published = tokio::select! {
            r = run.effects.publish(target.channel.clone(), outbound) => r,
            _ = run.cancel.cancelled() => return Err(Interrupt::Cancelled),
        };
        published.map_err(|e| messaging_error(&target.channel, e, at))?;
        return Ok(payload);
    }
    let Some(subscription) = &call.subscription else {
        return Err(configuration(
            at,
            "Nothing to do",
            "an AsyncAPI call needs `message` or `subscription`".into(),
        ));
    };
    subscribe(cx, subscription, &target, input, ctx).await
}

/// Publishes on an HTTP server: the payload as the JSON body of a request to the
/// channel's address.
async fn publish_http(
    run: &crate::run::Run,
    target: &Target,
    payload: Value,
    headers: Vec<(String, String)>,
    id: &str,
    at: &str,
) -> Res<Value> {
    let mut url = target.channel.server.clone();
    let path = format!(
        "{}/{}",
        url.path().trim_end_matches('/'),
        target.channel.address.trim_start_matches('/')
    );
    url.set_path(&path);
    let mut headers: Vec<(String, String)> = headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    headers.push(("content-type".into(), "application/json".into()));
    headers.push(("idempotency-key".into(), id.to_string()));
    if let Some(authorization) = &target.channel.authorization {
        headers.push(("authorization".into(), authorization.clone()));
    }
    let request = HttpRequest {
        method: target.http_method.clone(),
        url,
        headers,
        body: Some(serde_json::to_vec(&payload).unwrap_or_default()),
        follow_redirects: false,
        timeout: None,
        project: run.project.clone(),
    };
    let response = super::http::exchange(run, &request, at).await?;
    if !(200..300).contains(&response.status) {
        return Err(crate::fault(
            types::COMMUNICATION,
            response.status,
            &format!(
                "HTTP {} from {} {}",
                response.status, request.method, request.url
            ),
            String::from_utf8_lossy(&response.body[..response.body.len().min(2048)]).into_owned(),
            at,
        ));
    }
    Ok(payload)
}

/// Consumes messages until the subscription's `consume` says to stop; each is
/// journaled before it is acknowledged, and `foreach` runs on it as it comes.
async fn subscribe(
    cx: TaskCx<'_>,
    sub: &AsyncApiSubscription,
    target: &Target,
    input: &Value,
    ctx: &mut Ctx,
) -> Res<Value> {
    let (run, key, at) = (cx.run, cx.key, cx.at());
    let consume = &sub.consume;
    // The end of `for`, journaled, so a resumed subscription ends when it would have.
    let deadline = match &consume.for_ {
        None => None,
        Some(d) => {
            let deadline_key = format!("{key}/for");
            Some(match run.replayed(&deadline_key) {
                Some(StepState::Timer { deadline }) => *deadline,
                _ => {
                    let vars = cx.vars(&ctx.value, input);
                    let deadline = run.now() + super::timers::duration_ms(d, input, &vars, at)?;
                    let ticket = run.record(
                        vec![Step {
                            key: deadline_key,
                            state: StepState::Timer { deadline },
                        }],
                        vec![],
                        None,
                    );
                    ctx.advance(ticket);
                    deadline
                }
            })
        }
    };
    let message_key = |i: usize| format!("{key}/message/{i}");
    let mut consumed: Vec<Value> = Vec::new();
    let mut outputs: Vec<Value> = Vec::new();
    // What an earlier run consumed, in order.
    while let Some(StepState::Completed { output, .. }) = run.replayed(&message_key(consumed.len()))
    {
        let message = output.clone();
        let i = consumed.len();
        consumed.push(message.clone());
        outputs.push(each(cx, sub, key, i, message, input, ctx).await?);
    }
    if done(cx, sub, &consumed, input, ctx)? {
        return Ok(Value::Array(outputs));
    }
    run.barrier(ctx.causal).await?;
    let opened = tokio::select! {
        r = run.effects.subscribe(target.channel.clone()) => r,
        _ = run.cancel.cancelled() => return Err(Interrupt::Cancelled),
    };
    let mut subscription = opened.map_err(|e| messaging_error(&target.channel, e, at))?;
    let schema = match &target.payload_schema {
        Some(schema) => Some(compiled(schema, at)?),
        None => None,
    };
    loop {
        let next = tokio::select! {
            r = subscription.next() => r,
            _ = run.clock.sleep_until(deadline.unwrap_or(i64::MAX)), if deadline.is_some() => break,
            _ = run.cancel.cancelled() => return Err(Interrupt::Cancelled),
        };
        let Some(inbound) = next.map_err(|e| messaging_error(&target.channel, e, at))? else {
            break;
        };
        let token = inbound.token;
        let message = message_value(&inbound);
        let repeat = inbound.redelivered
            && consumed.iter().any(|c| match &inbound.id {
                Some(id) => c["id"].as_str() == Some(id),
                None => c["payload"] == message["payload"] && c["headers"] == message["headers"],
            });
        // A message that does not match the operation's schema faults the task before
        // it is journaled or acknowledged (the broker keeps it).
        if let (Some(schema), false) = (&schema, repeat) {
            check_schema(
                run,
                schema,
                &message["payload"],
                "a received message's payload",
                at,
            )
            .await?;
        }
        let wanted = !repeat
            && match &sub.filter {
                Some(filter) => {
                    let vars = cx.vars(&ctx.value, input);
                    filter
                        .eval_bool(&message, &vars)
                        .map_err(|e| e.into_problem(at))?
                }
                None => true,
            };
        if wanted {
            let ticket = run.record(
                vec![Step {
                    key: message_key(consumed.len()),
                    state: StepState::Completed {
                        output: message.clone(),
                        context: None,
                    },
                }],
                vec![],
                None,
            );
            ctx.advance(ticket);
            run.barrier(ticket).await?;
        }
        subscription
            .ack(token)
            .await
            .map_err(|e| messaging_error(&target.channel, e, at))?;
        if !wanted {
            continue;
        }
        let i = consumed.len();
        consumed.push(message.clone());
        outputs.push(each(cx, sub, key, i, message, input, ctx).await?);
        if done(cx, sub, &consumed, input, ctx)? {
            break;
        }
    }
    subscription.close().await;
    Ok(Value::Array(outputs))
}

/// Runs `foreach` (if any) on message `i`; returns its output.
async fn each(
    cx: TaskCx<'_>,
    sub: &AsyncApiSubscription,
    key: &str,
    i: usize,
    message: Value,
    input: &Value,
    ctx: &mut Ctx,
) -> Res<Value> {
    match &sub.foreach {
        Some(each) => super::events::each_item(cx, each, key, i, message, input, ctx).await,
        None => Ok(message),
    }
}

/// Whether the subscription has consumed enough: `amount` reached, `while` false or
/// `until` true (both read the messages consumed so far, with `$context`).
fn done(
    cx: TaskCx<'_>,
    sub: &AsyncApiSubscription,
    consumed: &[Value],
    input: &Value,
    ctx: &Ctx,
) -> Res<bool> {
    let consume = &sub.consume;
    if consume
        .amount
        .is_some_and(|amount| consumed.len() as u64 >= amount)
    {
        return Ok(true);
    }
    let at = cx.at();
    let so_far = Value::Array(consumed.to_vec());
    let vars = cx.vars(&ctx.value, input);
    if let Some(while_) = &consume.while_
        && !while_
            .eval_bool(&so_far, &vars)
            .map_err(|e| e.into_problem(at))?
    {
        return Ok(true);
    }
    if let Some(until) = &consume.until
        && until
            .eval_bool(&so_far, &vars)
            .map_err(|e| e.into_problem(at))?
    {
        return Ok(true);
    }
    Ok(false)
}

/// A received message as the DSL's inbound message: `payload`, `headers`,
/// `correlationId` (and `id` when the broker gave one).
fn message_value(inbound: &Inbound) -> Value {
    let mut message = json!({
        "payload": inbound.payload,
        "headers": inbound.headers,
    });
    if let Some(c) = &inbound.correlation_id {
        message["correlationId"] = json!(c);
    }
    if let Some(id) = &inbound.id {
        message["id"] = json!(id);
    }
    message
}

/// Finds the call's operation (3.0) or channel (2.6), its server and message.
async fn resolve(
    cx: TaskCx<'_>,
    call: &AsyncApiCall,
    input: &Value,
    vars: &Vars<'_>,
    ctx: &Ctx,
) -> Res<Target> {
    let (run, key, at) = (cx.run, cx.key, cx.at());
    let (doc_url, doc) = fetch_json(run, ctx.causal, &call.document.endpoint, input, vars, at)
        .await
        .map_err(|e| match e {
            JsonFetch::Failed(interrupt) => interrupt,
            JsonFetch::NotJson(url, e) => configuration(
                at,
                "Unreadable AsyncAPI document",
                format!("{url} is neither JSON nor YAML: {e}"),
            ),
        })?;
    let invalid = |detail: String| configuration(at, "Invalid AsyncAPI call", detail);
    let version = doc["asyncapi"].as_str().unwrap_or_default().to_string();
    let v3 = version.starts_with('3');
    let (channel, message, server_refs, http_method) = if v3 {
        let Some(name) = &call.operation else {
            return Err(invalid(format!(
                "{doc_url} is AsyncAPI {version}: name an `operation`"
            )));
        };
        let operation = doc["operations"].get(name).ok_or_else(|| {
            invalid(format!(
                "{doc_url} has no operation `{name}` (it has {})",
                keys(&doc["operations"])
            ))
        })?;
        let operation = deref(&doc, operation);
        let channel = deref(&doc, &operation["channel"]);
        let message = operation["messages"]
            .as_array()
            .and_then(|m| m.first())
            .map(|m| deref(&doc, m))
            .or_else(|| {
                channel["messages"]
                    .as_object()
                    .and_then(|m| m.values().next())
                    .map(|m| deref(&doc, m))
            });
        let method = operation["bindings"]["http"]["method"]
            .as_str()
            .unwrap_or("POST")
            .to_ascii_uppercase();
        let refs: Vec<Value> = channel["servers"].as_array().cloned().unwrap_or_default();
        (channel, message, refs, method)
    } else {
        let Some(name) = &call.channel else {
            return Err(invalid(format!(
                "{doc_url} is AsyncAPI {version}: name a `channel`"
            )));
        };
        let channel = doc["channels"].get(name).cloned().ok_or_else(|| {
            invalid(format!(
                "{doc_url} has no channel `{name}` (it has {})",
                keys(&doc["channels"])
            ))
        })?;
        let operation = if call.message.is_some() {
            &channel["publish"]
        } else {
            &channel["subscribe"]
        };
        let message = operation.get("message").map(|m| deref(&doc, m));
        let mut channel = deref(&doc, &channel);
        channel["address"] = json!(name);
        let method = operation["bindings"]["http"]["method"]
            .as_str()
            .unwrap_or("POST")
            .to_ascii_uppercase();
        let refs: Vec<Value> = channel["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| json!({"$ref": format!("#/servers/{}", s.as_str().unwrap_or_default())}))
            .collect();
        (channel, message, refs, method)
    };

    // The server: named, or the first of the channel's (or the document's) servers
    // with the protocol asked for.
    let servers: Vec<(String, Value)> = match &call.server {
        Some(server) => {
            let found = doc["servers"].get(&server.name).ok_or_else(|| {
                invalid(format!(
                    "{doc_url} has no server `{}` (it has {})",
                    server.name,
                    keys(&doc["servers"])
                ))
            })?;
            vec![(server.name.clone(), deref(&doc, found))]
        }
        None if !server_refs.is_empty() => server_refs
            .iter()
            .map(|r| {
                let name = r["$ref"]
                    .as_str()
                    .and_then(|r| r.rsplit('/').next())
                    .unwrap_or_default()
                    .to_string();
                (name, deref(&doc, r))
            })
            .collect(),
        None => doc["servers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, s)| (name.clone(), deref(&doc, s)))
            .collect(),
    };
    let wanted = call.protocol.as_deref().filter(|_| call.server.is_none());
    let Some((server_name, server)) = servers
        .into_iter()
        .find(|(_, s)| wanted.is_none_or(|p| s["protocol"].as_str() == Some(p)))
    else {
        return Err(invalid(format!(
            "{doc_url} has no server for this call{}",
            wanted
                .map(|p| format!(" with protocol `{p}`"))
                .unwrap_or_default()
        )));
    };
    let mut variables: Map<String, Value> = server["variables"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v["default"].clone()))
        .collect();
    if let Some(given) = call.server.as_ref().and_then(|s| s.variables.as_ref())
        && let Value::Object(given) = eval(given, input, vars, at)?
    {
        variables.extend(given);
    }
    let fill = |text: &str| {
        let mut text = text.to_string();
        for (name, value) in &variables {
            text = text.replace(&format!("{{{name}}}"), &plain_string(value));
        }
        text
    };
    let protocol = server["protocol"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let base = if v3 {
        format!(
            "{protocol}://{}{}",
            fill(server["host"].as_str().unwrap_or_default()),
            fill(server["pathname"].as_str().unwrap_or_default())
        )
    } else {
        let url = fill(server["url"].as_str().unwrap_or_default());
        if url.contains("://") {
            url
        } else {
            format!("{protocol}://{url}")
        }
    };
    let server_url = url::Url::parse(&base).map_err(|e| {
        invalid(format!(
            "server `{server_name}` of {doc_url} is not at a URL (`{base}`): {e}"
        ))
    })?;
    let address = channel["address"].as_str().unwrap_or_default().to_string();

    let (mut credentials, mut authorization_header) = (None, None);
    if let Some(auth) = &call.authentication {
        let value = authorization(run, ctx.causal, auth, &server_url, input, vars, at)
            .await?
            .header(at, "brokers")?;
        // Basic credentials are the broker's user and password too.
        if let Some(basic) = value.strip_prefix("Basic ")
            && let Some(pair) = base64_decode(basic)
            && let Some((user, password)) = pair.split_once(':')
        {
            credentials = Some((user.to_string(), password.to_string()));
        }
        authorization_header = Some(value);
    }
    let payload_schema = message
        .as_ref()
        .map(|m| deref(&doc, &m["payload"]))
        .filter(|p| p.is_object())
        .map(|p| inline_refs(&doc, &p, 0));
    Ok(Target {
        channel: Channel {
            protocol,
            server: server_url,
            address,
            credentials,
            authorization: authorization_header,
            consumer: format!("{}:{key}", run.id),
            project: run.project.clone(),
        },
        payload_schema,
        http_method,
    })
}

fn base64_decode(text: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The names of a document section, for an error message.
fn keys(section: &Value) -> String {
    match section.as_object() {
        Some(map) if !map.is_empty() => map.keys().cloned().collect::<Vec<_>>().join(", "),
        _ => "none".into(),
    }
}

/// `value`, or what its local `$ref` (`#/components/…`) points to in `doc`.
fn deref(doc: &Value, value: &Value) -> Value {
    let mut value = value.clone();
    for _ in 0..16 {
        let Some(pointer) = value["$ref"].as_str().and_then(|r| r.strip_prefix('#')) else {
            break;
        };
        match doc.pointer(pointer) {
            Some(target) => value = target.clone(),
            None => break,
        }
    }
    value
}

/// A schema with its local references replaced by what they point to (to a depth).
fn inline_refs(doc: &Value, schema: &Value, depth: usize) -> Value {
    if depth > 32 {
        return schema.clone();
    }
    match schema {
        Value::Object(map) if map.contains_key("$ref") => {
            inline_refs(doc, &deref(doc, schema), depth + 1)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), inline_refs(doc, v, depth + 1)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| inline_refs(doc, v, depth + 1))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn compiled(schema: &Value, at: &str) -> Res<Schema> {
    let validator = jsonschema::validator_for(schema).map_err(|e| {
        configuration(
            at,
            "Invalid message schema",
            format!("the AsyncAPI message's payload schema does not compile: {e}"),
        )
    })?;
    Ok(Schema {
        format: "json".into(),
        source: SchemaSource::Inline(schema.clone()),
        compiled: Some(Arc::new(validator)),
    })
}

fn messaging_error(channel: &Channel, error: MessagingError, at: &str) -> Interrupt {
    let (type_, status) = match error {
        MessagingError::Unsupported(_) => (types::CONFIGURATION, 400),
        MessagingError::Broker(_) => (types::COMMUNICATION, 503),
        MessagingError::Refused(_) => (types::AUTHORIZATION, 403),
    };
    Interrupt::Fault(Problem {
        type_: type_.into(),
        status,
        title: Some(format!(
            "{} channel `{}` at {}",
            channel.protocol, channel.address, channel.server
        )),
        detail: Some(error.to_string()),
        instance: Some(at.to_string()),
        data: None,
    })
}
