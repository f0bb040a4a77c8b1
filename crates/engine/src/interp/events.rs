//! `emit` and `listen`: events recorded into the execution's log, and events taken
//! from its inbox (the inbox itself, matching and consumption are in `listen`), with
//! `listen.foreach` running a list for each event consumed.

use std::sync::Arc;

use program::{Emit, Listen};
use serde_json::{Value, json};
use store::Json;

use super::{Ctx, Res, TaskCx, eval, task};
use crate::run::iso;

/// Runs an `emit` task: the event, with the CloudEvent attributes it lacks, recorded in
/// the execution's log; it is also the task's output.
pub(super) fn emit(cx: TaskCx<'_>, emit: &Emit, input: &Value, ctx: &Ctx) -> Res<Value> {
    let run = cx.run;
    let vars = cx.vars(&ctx.value, input);
    let mut event = serde_json::Map::new();
    for (name, template) in &emit.event {
        event.insert(name.clone(), eval(template, input, &vars, cx.at())?);
    }
    // The same on a re-run after a crash (the step key holds the iteration and
    // attempt), so that whoever acts on the event once can tell.
    event
        .entry("id")
        .or_insert_with(|| Value::String(format!("{}:{}", run.id, cx.key)));
    event.insert("specversion".into(), json!("1.0"));
    event
        .entry("time")
        .or_insert_with(|| Value::String(iso(run.now())));
    if event.contains_key("data") {
        event
            .entry("datacontenttype")
            .or_insert_with(|| json!("application/json"));
    }
    let event = Value::Object(event);
    let type_ = event["type"].as_str().unwrap_or_default().to_string();
    run.record(vec![], vec![(type_.as_str(), Json::of(&event))], None);
    Ok(event)
}

/// Runs a `listen` task: waits for the events it asks for, then runs its `foreach` (if
/// any) on each, in order, under `{key}/foreach/{i}/do`.
pub(super) async fn listen(cx: TaskCx<'_>, l: &Listen, input: &Value, ctx: &mut Ctx) -> Res<Value> {
    let (run, key, at) = (cx.run, cx.key, cx.at());
    let (events, ticket) = {
        let vars = cx.vars(&ctx.value, input);
        super::listen::listen(run, l, key, &vars, at).await?
    };
    if let Some(ticket) = ticket {
        ctx.advance(ticket);
    }
    let Some(each) = &l.foreach else {
        return Ok(Value::Array(events));
    };
    let mut outputs = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        outputs.push(each_item(cx, each, key, i, event, input, ctx).await?);
    }
    Ok(Value::Array(outputs))
}

/// Runs a subscription's `foreach` on its item `i` (an event, a message) under
/// `{key}/foreach/{i}/do`, with `output.as` and `export.as`; returns the item's output.
pub(super) async fn each_item(
    cx: TaskCx<'_>,
    each: &program::SubscriptionIterator,
    key: &str,
    i: usize,
    item: Value,
    input: &Value,
    ctx: &mut Ctx,
) -> Res<Value> {
    let (run, at) = (cx.run, cx.at());
    let scope_i = cx.scope.with([
        (Arc::from(each.item.as_str()), item.clone()),
        (Arc::from(each.at.as_str()), json!(i)),
    ]);
    let cx_i = cx.within(&scope_i);
    let mut out = match &each.do_ {
        Some(list) => task::run_list(
            run,
            list,
            format!("{key}/foreach/{i}/do"),
            &scope_i,
            item,
            ctx,
        )
        .await?
        .value(),
        None => item,
    };
    if let Some(as_) = each.output.as_ref().and_then(|o| o.as_.as_ref()) {
        out = eval(as_, &out, &cx_i.vars(&ctx.value, input), at)?;
    }
    if let Some(as_) = each.export.as_ref().and_then(|e| e.as_.as_ref()) {
        let context = eval(as_, &out, &cx_i.export_vars(&ctx.value, input, &out), at)?;
        ctx.set(context);
    }
    Ok(out)
}
