//! Zigflow's `listen` to Temporal-style messages: a filter whose `with.type` is
//! `signal`, `query` or `update` names a handler (`with.id`), with an optional
//! `acceptIf` and a reply (`with.data`). Decoded into [`program::Messages`] in the
//! Zigflow dialect only; elsewhere such a filter is an ordinary CloudEvent filter.

use program::{Duration, ExtensionUse, MessageHandler, MessageKind, Messages, Timeout, TimeoutRef};

use super::{At, Cx, Obj};
use crate::yaml::{Kind, Node};

/// How long a Zigflow listener waits when its `metadata.timeout` says nothing.
const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

const KINDS: [&str; 3] = ["signal", "query", "update"];

/// Whether the task's `listen` waits for Zigflow messages: one of its filters has a
/// `with.type` of `signal`, `query` or `update`.
pub(super) fn is_messages(task: &Obj) -> bool {
    let Some(to) = get(task.at().node, "listen").and_then(|l| get(l, "to")) else {
        return false;
    };
    let filters: Vec<&Node> = ["one", "all", "any"]
        .iter()
        .filter_map(|k| get(to, k))
        .flat_map(|n| match &n.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![n],
        })
        .collect();
    filters.iter().any(|f| {
        get(f, "with")
            .and_then(|w| get(w, "type"))
            .and_then(Node::as_str)
            .is_some_and(|t| KINDS.contains(&t))
    })
}

fn get<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.kind {
        Kind::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Decodes the task's `listen` as message handlers.
pub(super) fn messages(cx: &mut Cx, obj: &mut Obj) -> Option<Messages> {
    let at = obj.at().clone();
    let listen_range = match &at.node.kind {
        Kind::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("listen"))
            .map(|(k, _)| k.range.clone()),
        _ => None,
    }
    .unwrap_or_else(|| at.anchor());
    if obj.has("foreach") {
        let foreach = obj.field("foreach").expect("present");
        cx.error(
            foreach.anchor(),
            &foreach.ptr,
            "a listener for Zigflow signals, queries and updates has no `foreach`",
        );
    }
    let decoded = obj.req(cx, "listen", |cx, at| {
        let mut listen = Obj::new(cx, at)?;
        let to = listen.req(cx, "to", |cx, at| {
            let mut to = Obj::new(cx, at)?;
            let present = to.present(&["one", "all", "any"]);
            let decoded = match present.as_slice() {
                ["one"] => to
                    .req(cx, "one", |cx, at| handler(cx, at).map(|h| vec![h]))
                    .map(|h| (h, true)),
                ["all"] => to.req(cx, "all", handlers).map(|h| (h, true)),
                ["any"] => to.req(cx, "any", handlers).map(|h| (h, false)),
                _ => {
                    cx.error(
                        at.anchor(),
                        &at.ptr,
                        format!("{} needs exactly one of `one`, `all` or `any`", at.label()),
                    );
                    for k in ["one", "all", "any"] {
                        to.field(k);
                    }
                    None
                }
            };
            to.finish(cx);
            decoded
        });
        listen.finish(cx);
        to
    });
    let (handlers, all) = decoded?;
    let mut seen: Vec<(MessageKind, &str)> = Vec::new();
    for h in &handlers {
        if seen.contains(&(h.kind, &h.name)) {
            cx.error(
                at.anchor(),
                &at.ptr,
                format!(
                    "{} handles the {} `{}` twice",
                    obj.at().label(),
                    h.kind.as_str(),
                    h.name
                ),
            );
            return None;
        }
        seen.push((h.kind, &h.name));
    }
    let messages = Messages { handlers, all };
    if !messages.waits() && messages.handlers.len() > 1 {
        cx.warning(
            at.anchor(),
            &at.ptr,
            "this listener has a query handler, so it does not wait for its signals or updates",
            "as in Zigflow, a listener with a query registers its handlers and goes on; \
             give signals and updates a listener of their own to wait for them",
        );
    }
    cx.extensions.push(ExtensionUse {
        name: "zigflow.messages",
        path: at.ptr.key("listen").as_str().to_string(),
        range: listen_range,
    });
    Some(messages)
}

fn handlers(cx: &mut Cx, at: &At) -> Option<Vec<MessageHandler>> {
    let Some(items) = at.items() else {
        cx.expected(at, "a list of message filters");
        return None;
    };
    let items: Vec<At> = items.collect();
    if items.is_empty() {
        cx.error(
            at.anchor(),
            &at.ptr,
            format!("{} lists no messages", at.label()),
        );
        return None;
    }
    let decoded: Vec<Option<MessageHandler>> = items.iter().map(|i| handler(cx, i)).collect();
    decoded.into_iter().collect()
}

fn handler(cx: &mut Cx, at: &At) -> Option<MessageHandler> {
    let mut filter = Obj::new(cx, at)?;
    let handler = filter.req(cx, "with", |cx, at| {
        let mut with = Obj::new(cx, at)?;
        let name = with.req(cx, "id", Cx::string);
        let kind = with.req(cx, "type", |cx, at| cx.one_of(at, &KINDS));
        let accept_if = with.opt(cx, "acceptIf", Cx::template);
        let reply = with.opt(cx, "data", Cx::template);
        with.finish(cx);
        let kind = match kind?.as_str() {
            "signal" => MessageKind::Signal,
            "query" => MessageKind::Query,
            _ => MessageKind::Update,
        };
        let name = name?;
        if name.is_empty() {
            cx.error(at.anchor(), &at.ptr, "a message's `id` (its name) is empty");
            return None;
        }
        Some(MessageHandler {
            kind,
            name,
            accept_if: accept_if?,
            reply: reply?,
        })
    });
    filter.finish(cx);
    let handler = handler?;
    if handler.kind == MessageKind::Query && handler.accept_if.is_some() {
        cx.warning(
            at.anchor(),
            &at.ptr,
            format!(
                "the query `{}` has an `acceptIf`, which queries do not use",
                handler.name
            ),
            "a query only answers; remove `acceptIf`",
        );
    }
    Some(handler)
}

/// How long a waiting listener of messages waits: the task's `timeout` if it has one,
/// else Zigflow's `metadata.timeout` (a Go duration such as `10s` or `1h30m`), else
/// Zigflow's default of 60 seconds.
pub(super) fn timeout(cx: &mut Cx, task: &At, given: Option<TimeoutRef>) -> Option<TimeoutRef> {
    if given.is_some() {
        return given;
    }
    let written = get(task.node, "metadata").and_then(|m| get(m, "timeout"));
    let after = match written {
        None => DEFAULT_TIMEOUT,
        Some(node) => {
            let ptr = task.ptr.key("metadata").key("timeout");
            match node.as_str().map(go_duration) {
                Some(Ok(d)) => d,
                Some(Err(why)) => {
                    cx.error(
                        node.range.clone(),
                        &ptr,
                        format!("`metadata.timeout`: {why}"),
                    );
                    return None;
                }
                None => {
                    cx.error(
                        node.range.clone(),
                        &ptr,
                        "`metadata.timeout` must be a duration written as text, such as `10s` or `5m`",
                    );
                    return None;
                }
            }
        }
    };
    Some(TimeoutRef::Inline(Timeout {
        after: Duration::Fixed(after),
    }))
}

/// A Go duration (`300ms`, `10s`, `1h30m`, `1.5h`, or `0`), read by jiff, whose
/// friendly format takes these.
fn go_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad =
        |why: String| format!("`{text}` is not a duration such as `10s`, `5m` or `1h30m`: {why}");
    if text.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let parsed: jiff::SignedDuration = text.trim().parse().map_err(|e| bad(format!("{e}")))?;
    std::time::Duration::try_from(parsed).map_err(|_| bad("it is negative".into()))
}

#[cfg(test)]
mod tests {
    use super::go_duration;
    use std::time::Duration;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(go_duration("0"), Ok(Duration::ZERO));
        assert!(go_duration("10").is_err());
        assert!(go_duration("ten seconds").is_err());
        assert!(go_duration("5d").is_err());
        assert!(go_duration("").is_err());
    }
}
