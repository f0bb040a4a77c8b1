//! Zigflow's `listen` to Temporal-style messages ([`program::Messages`]).
//!
//! Signals and updates arrive in the execution's inbox as CloudEvents (typed by
//! [`program::MessageKind::event_type`], named by their `subject`), sent through the
//! server's API. A waiting listener takes the ones its handlers name, in inbox order:
//! each message's payload goes into `$data` (under the task's name for a signal, the
//! update's name for an update), its `acceptIf` decides whether it completes its
//! handler, and an update's reply is computed. Each handled message is one journal
//! step (`{key}/message#{n}`) written together with a `task.message` event that carries
//! the reply, so an update is handled and answered once, also across a crash: the
//! server reads the answer from that event. Queries are registered on the run and
//! answered from its live state, never journaled.

use std::collections::HashSet;
use std::sync::Arc;

use program::{MessageKind, Messages, TaskKind};
use serde_json::{Map, Value, json};
use store::{Step, StepState};

use super::{Ctx, Res, TaskCx};
use crate::events::Lifecycle;
use crate::run::{QueryHandler, Run};

/// Runs a listener of messages: registers its queries; unless it has one, waits until
/// its handlers have accepted messages as `all` or `any` asks. Its output is what it
/// added to `$data`.
pub(super) async fn handle(
    cx: TaskCx<'_>,
    messages: &Messages,
    input: &Value,
    ctx: &mut Ctx,
) -> Res<Value> {
    let (run, key, at) = (cx.run, cx.key, cx.at());
    for h in &messages.handlers {
        if h.kind == MessageKind::Query {
            run.register_query(
                &h.name,
                QueryHandler {
                    reply: h.reply.clone(),
                    scope: cx.scope.clone(),
                    context: ctx.value.clone(),
                    input: input.clone(),
                    task_var: cx.task_var.clone(),
                    at: at.to_string(),
                },
            );
        }
    }
    if let Some(data) = &ctx.data {
        // What the queries registered just now answer from, until the next task.
        run.set_data(data);
    }
    let mut added = Map::new();
    if !messages.waits() {
        return Ok(Value::Object(added));
    }
    let mut data = match &ctx.data {
        Some(Value::Object(data)) => data.clone(),
        _ => Map::new(),
    };
    let mut accepted = vec![false; messages.handlers.len()];
    let done = |accepted: &[bool]| {
        if messages.all {
            accepted.iter().all(|a| *a)
        } else {
            accepted.iter().any(|a| *a)
        }
    };

    // Messages handled before a restart, as they were.
    let mut n = 0usize;
    while let Some(StepState::Completed { output, .. }) =
        run.replayed(&format!("{key}/message#{n}"))
    {
        n += 1;
        let (Some(i), Some(data_key)) = (
            output["handler"].as_u64().map(|i| i as usize),
            output["key"].as_str(),
        ) else {
            continue;
        };
        data.insert(data_key.to_string(), output["data"].clone());
        added.insert(data_key.to_string(), output["data"].clone());
        if output["accepted"] == json!(true) && i < accepted.len() {
            accepted[i] = true;
        }
        if done(&accepted) {
            return Ok(Value::Object(added));
        }
    }

    let mut inbox = super::listen::Inbox::default();
    loop {
        for (position, event) in inbox.next(run).await? {
            if run.is_consumed(position) {
                continue;
            }
            let Some(i) = messages.handlers.iter().enumerate().position(|(i, h)| {
                !accepted[i]
                    && h.kind != MessageKind::Query
                    && event["type"] == h.kind.event_type()
                    && event["subject"] == h.name.as_str()
            }) else {
                continue;
            };
            let handler = &messages.handlers[i];
            let id = event["id"].as_str().unwrap_or_default().to_string();
            if handler.kind == MessageKind::Update && !run.handle_update(&id) {
                // Delivered twice under one update id: handled the first time.
                run.consume(position);
                continue;
            }
            let payload = event.get("data").cloned().unwrap_or(Value::Null);
            let data_key = match handler.kind {
                MessageKind::Signal => cx.task.name.clone(),
                _ => handler.name.clone(),
            };
            data.insert(data_key.clone(), payload.clone());
            let scope = cx
                .scope
                .with([(Arc::from("data"), Value::Object(data.clone()))]);
            let vars = run.vars(&scope, &ctx.value, &payload, cx.task_var, None);
            let ok = match &handler.accept_if {
                None => true,
                Some(condition) => {
                    condition
                        .eval(&payload, &vars)
                        .map_err(|e| e.into_problem(at))?
                        == json!(true)
                }
            };
            let reply = match (&handler.kind, &handler.reply) {
                (MessageKind::Update, Some(reply)) => reply
                    .eval(&payload, &vars)
                    .map_err(|e| e.into_problem(at))?,
                _ => Value::Null,
            };
            let record = json!({
                "handler": i,
                "position": position,
                "kind": handler.kind.as_str(),
                "name": handler.name,
                "id": id,
                "key": data_key,
                "data": payload,
                "accepted": ok,
                "reply": reply,
            });
            run.consume(position);
            let event = run.task_event(&cx.task.reference, "handledAt", Some(("message", &record)));
            let ticket = run.record(
                vec![Step {
                    key: format!("{key}/message#{n}"),
                    state: StepState::Completed {
                        output: record,
                        context: None,
                    },
                }],
                vec![(Lifecycle::TaskMessage.as_str(), event)],
                None,
            );
            ctx.advance(ticket);
            n += 1;
            added.insert(data_key, payload);
            run.set_data(&Value::Object(data.clone()));
            if ok {
                accepted[i] = true;
                if done(&accepted) {
                    return Ok(Value::Object(added));
                }
            }
        }
    }
}

/// The inbox positions the handled messages of a journal took, for [`crate::run::Run`].
pub(crate) fn consumed_in(steps: &[store::Step]) -> impl Iterator<Item = u64> + '_ {
    messages_in(steps).filter_map(|m| m["position"].as_u64())
}

/// The ids of the updates a journal handled (also before a checkpoint).
pub(crate) fn handled_updates(steps: &[store::Step]) -> HashSet<String> {
    messages_in(steps)
        .filter(|m| m["kind"] == "update")
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .chain(checkpointed(steps, "updates").filter_map(|v| v.as_str().map(str::to_string)))
        .collect()
}

/// A list a continue-as-new checkpoint of the journal kept.
pub(crate) fn checkpointed<'s>(
    steps: &'s [store::Step],
    field: &'s str,
) -> impl Iterator<Item = &'s Value> + 's {
    steps
        .iter()
        .filter(|s| s.key == super::task::CHECKPOINT)
        .filter_map(move |s| match &s.state {
            StepState::Completed { output, .. } => output[field].as_array(),
            _ => None,
        })
        .flatten()
}

/// Registers again the queries of the listeners a continue-as-new checkpoint skips:
/// their handlers stay answerable after a resume.
pub(super) fn register_skipped(
    run: &Run,
    skipped: &[program::NamedTask],
    scope: &crate::run::Scope,
    ctx: &Ctx,
    input: &Value,
) {
    for nt in skipped {
        let TaskKind::Messages(m) = &nt.task.kind else {
            continue;
        };
        for h in m.handlers.iter().filter(|h| h.kind == MessageKind::Query) {
            run.register_query(
                &h.name,
                QueryHandler {
                    reply: h.reply.clone(),
                    scope: scope.clone(),
                    context: ctx.value.clone(),
                    input: input.clone(),
                    task_var: Value::Null,
                    at: nt.reference.clone(),
                },
            );
        }
    }
}

fn messages_in(steps: &[store::Step]) -> impl Iterator<Item = &Value> {
    steps
        .iter()
        .filter(|s| s.key.contains("/message#"))
        .filter_map(|s| match &s.state {
            StepState::Completed { output, .. } => Some(output),
            _ => None,
        })
}

/// The answer to update `id`, from the `task.message` events of an execution: what the
/// server returns to the caller that sent it.
pub fn update_answer(events: &[store::Event], id: &str) -> Option<Value> {
    events.iter().find_map(|e| {
        let message = e.data.value().get("message")?.clone();
        (message["kind"] == "update" && message["id"] == id).then_some(message)
    })
}
