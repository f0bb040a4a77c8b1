//! Live event streams (SSE, by the WHATWG EventSource rules), of one execution (the
//! cursor is the event's sequence number) or of all executions (the cursor is the
//! event's position in the log of all executions, in commit order): the journal's
//! events after the client's cursor, then new ones as their commits are announced. Nothing polls: a stream sleeps until the store says its execution has
//! new events. A slow client only reads more slowly; it holds no buffer of its own
//! beyond one page, and the engine never waits for it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use engine::events::Lifecycle;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{Caller, Role};
use crate::{ApiError, ApiResult, Service};

/// Events read from the journal at a time.
pub(crate) const PAGE: usize = 256;

/// How long a client waits before it reconnects, sent once at the start.
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
pub(crate) struct StreamParams {
    /// `false`: end the stream once caught up, instead of waiting for new events.
    follow: Option<bool>,
    /// Start after this event (the `Last-Event-ID` header wins over it).
    since_id: Option<u64>,
    /// Start at the first event at or after this time (RFC 3339).
    since_time: Option<String>,
}

/// `GET /v1/executions/{id}/events`.
#[utoipa::path(get, path = "/v1/executions/{id}/events", tag = "events", description = "The execution's lifecycle events as a live SSE stream (text/event-stream): each with id (its sequence number) and a CloudEvent as data. Resume with the Last-Event-ID header.", params(("id" = String, Path), ("since_id" = Option<u64>, Query), ("since_time" = Option<String>, Query, description = "RFC 3339"), ("follow" = Option<bool>, Query, description = "false: end once caught up")), responses((status = 200, description = "An SSE stream", content_type = "text/event-stream"), (status = 404, description = "No such execution in the caller's project", body = crate::wire::Error)))]
pub(crate) async fn execution_events(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<StreamParams>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    caller.require(Role::Read)?;
    crate::owned(&service, &caller, &id).await?;
    let cursor = match (
        last_event_id(&headers)?.or(params.since_id),
        &params.since_time,
    ) {
        (Some(seq), _) => seq,
        (None, Some(time)) => service.store().seq_before(&id, parse_time(time)?).await?,
        (None, None) => 0,
    };
    let follow = params.follow.unwrap_or(true);
    sse(
        service,
        caller.project.clone(),
        Source::Execution(id),
        follow,
        cursor,
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct LogParams {
    /// Only this execution's events.
    execution: Option<String>,
    /// Only events of executions of this workflow (by name).
    name: Option<String>,
    /// Only events of executions with this label: `name:value`.
    label: Option<String>,
    /// Only events of this type.
    #[serde(rename = "type")]
    type_: Option<String>,
    since_id: Option<u64>,
    since_time: Option<String>,
}

/// `GET /v1/events`: the events of all executions, filtered, in commit order. It does
/// not end: new executions' events follow as they are committed. Without a cursor it
/// starts at the end of the log (`since_id=0` replays it all).
#[utoipa::path(get, path = "/v1/events", tag = "events", description = "The events of all the caller's executions in commit order, as a live SSE stream; ids are positions in that log. Without Last-Event-ID, since_id or since_time it starts with the events committed from now on; since_id=0 replays the whole log.", params(("execution" = Option<String>, Query), ("name" = Option<String>, Query), ("label" = Option<String>, Query, description = "name:value"), ("type" = Option<String>, Query), ("since_id" = Option<u64>, Query), ("since_time" = Option<String>, Query)), responses((status = 200, description = "An SSE stream", content_type = "text/event-stream")))]
pub(crate) async fn all_events(
    State(service): State<Arc<Service>>,
    caller: Caller,
    Query(params): Query<LogParams>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    caller.require(Role::Read)?;
    let cursor = match (
        last_event_id(&headers)?.or(params.since_id),
        &params.since_time,
    ) {
        (Some(pos), _) => pos,
        (None, Some(time)) => service.store().pos_before(parse_time(time)?).await?,
        // The live tail: what is committed from now on.
        (None, None) => {
            let end = store::LogQuery {
                limit: 0,
                ..Default::default()
            };
            service.store().log(end).await?.scanned
        }
    };
    let query = store::LogQuery {
        after: 0,
        execution: params.execution,
        name: params.name,
        label: params
            .label
            .as_deref()
            .map(crate::parse_label)
            .transpose()?,
        type_: params.type_,
        project: Some(caller.project.clone()),
        limit: PAGE,
    };
    sse(
        service,
        caller.project.clone(),
        Source::Log(query),
        true,
        cursor,
    )
}

/// The SSE response of a stream from `source` after `cursor`.
fn sse(
    service: Arc<Service>,
    project: String,
    source: Source,
    follow: bool,
    cursor: u64,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let heartbeat = service.heartbeat();
    let state = (open(service, &project, source, follow, cursor)?, true);
    let stream = futures::stream::unfold(state, |(mut state, first)| async move {
        let (cursor, execution, event) = state.next().await?;
        let mut sse = SseEvent::default()
            .id(cursor.to_string())
            .data(cloud_event(&execution, &event));
        if first {
            sse = sse.retry(RETRY);
        }
        Some((Ok(sse), (state, false)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(heartbeat)))
}

/// A stream of the events of `source` after `cursor`, counted as a subscriber (429 when
/// the server has its most already). SSE and gRPC streams both read through one.
pub(crate) fn open(
    service: Arc<Service>,
    project: &str,
    source: Source,
    follow: bool,
    cursor: u64,
) -> ApiResult<Streaming> {
    let project_counted = service.admit_stream(project)?;
    let max = service.options().max_subscribers;
    let counted = service.metrics().subscriber(max).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_subscribers",
            format!("the server has {max} event-stream clients already (--max-subscribers)"),
        )
    })?;
    // Subscribed before the first read, so that no commit falls between the two.
    let source = match source {
        Source::Execution(id) => Feed::Execution {
            id,
            notices: service.store().subscribe(),
        },
        Source::Log(query) => Feed::Log {
            query,
            batches: service.log_hub().subscribe(service.store()),
        },
    };
    Ok(Streaming {
        _counted: counted,
        _project_counted: project_counted,
        service,
        source,
        follow,
        cursor,
        scanned: cursor,
        pending: VecDeque::new(),
        caught_up: false,
        done: false,
    })
}

fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("`Last-Event-ID` is not an event id this server gave out")
                })
        })
        .transpose()
}

fn parse_time(time: &str) -> ApiResult<i64> {
    let at: jiff::Timestamp = time.parse().map_err(|e| {
        ApiError::bad_request(format!(
            "`since_time={time}` is not an RFC 3339 time such as 2026-01-31T12:00:00Z: {e}"
        ))
    })?;
    Ok(at.as_millisecond())
}

/// Where a stream's events come from.
pub(crate) enum Source {
    /// One execution's log; the cursor is a sequence number. Ends with the execution.
    Execution(String),
    /// The log of all executions, filtered; the cursor is a position. Never ends.
    Log(store::LogQuery),
}

/// A source, and what its stream waits for once caught up.
enum Feed {
    Execution {
        id: String,
        /// The store's commit notices, which carry the execution's events.
        notices: broadcast::Receiver<store::Committed>,
    },
    Log {
        query: store::LogQuery,
        /// The hub's batches of the log.
        batches: broadcast::Receiver<Arc<crate::hub::Batch>>,
    },
}

pub(crate) struct Streaming {
    /// Counts this client in the metrics while the stream lives.
    _counted: crate::metrics::SubscriberGuard,
    _project_counted: crate::quota::Counted,
    service: Arc<Service>,
    source: Feed,
    /// Whether to wait for new events once caught up.
    follow: bool,
    /// The cursor of the last event sent.
    cursor: u64,
    /// For the log of all executions: how far reads have looked (beyond `cursor` when
    /// a filter skipped events).
    scanned: u64,
    /// Read and not yet sent: each with its cursor and its execution.
    pending: VecDeque<(u64, String, store::Event)>,
    /// Everything committed so far was read (or came with a notice): wait for notices.
    caught_up: bool,
    done: bool,
}

impl Streaming {
    /// The next event to send, with its cursor and execution, or `None` once the
    /// execution has ended and its last event was sent (or the store failed).
    pub(crate) async fn next(&mut self) -> Option<(u64, String, store::Event)> {
        loop {
            if let Some((cursor, execution, event)) = self.pending.pop_front() {
                self.cursor = cursor;
                return Some((cursor, execution, event));
            }
            if self.done {
                return None;
            }
            if !self.caught_up {
                match self.read().await {
                    Ok(true) => continue,
                    Ok(false) if self.done || !self.follow => return None,
                    Ok(false) => self.caught_up = true,
                    Err(e) => {
                        tracing::warn!("event stream: {e}");
                        return None;
                    }
                }
            }
            // Caught up: sleep until a commit brings something new.
            let woken = match &mut self.source {
                Feed::Execution { id, notices } => {
                    let (pending, done) = (&mut self.pending, &mut self.done);
                    wait_for_execution(notices, id, self.cursor, pending, done).await
                }
                Feed::Log { query, batches } => {
                    wait_for_log(batches, query, &mut self.scanned, &mut self.pending).await
                }
            };
            match woken {
                Some(true) => {}
                // Nothing to take from the notices: the journal says what is new.
                Some(false) => self.caught_up = false,
                None => return None,
            }
        }
    }

    /// Reads the next page after the cursor into `pending`; false if there was none.
    /// Marks the stream done when its execution has ended and all was read.
    async fn read(&mut self) -> Result<bool, store::Error> {
        let store = self.service.store();
        match &self.source {
            Feed::Execution { id, .. } => {
                // The status first: if it is final now, the events read next include
                // the last one, which is committed with it.
                let ended = store
                    .execution(id)
                    .await?
                    .is_none_or(|e| e.status.is_final());
                let events = store.events(id, self.cursor, PAGE).await?;
                if events.is_empty() {
                    self.done = ended;
                    return Ok(false);
                }
                self.pending
                    .extend(events.into_iter().map(|e| (e.seq, id.clone(), e)));
                Ok(true)
            }
            Feed::Log { query, .. } => {
                let query = store::LogQuery {
                    after: self.scanned.max(self.cursor),
                    ..query.clone()
                };
                let page = store.log(query).await?;
                self.scanned = page.scanned;
                if page.events.is_empty() {
                    return Ok(false);
                }
                self.pending.extend(
                    page.events
                        .into_iter()
                        .map(|l| (l.pos, l.execution, l.event)),
                );
                Ok(true)
            }
        }
    }
}

/// Waits for the next commit of execution `id` after `cursor`. Takes its events into
/// `pending` when they come with the notice and follow the cursor (true); false when the
/// journal must be read; `None` when the store has stopped.
async fn wait_for_execution(
    notices: &mut broadcast::Receiver<store::Committed>,
    id: &str,
    cursor: u64,
    pending: &mut VecDeque<(u64, String, store::Event)>,
    done: &mut bool,
) -> Option<bool> {
    loop {
        match notices.recv().await {
            Ok(notice) if !notice.concerns(id) || notice.last_seq <= cursor => {}
            Ok(notice) => {
                // The very next events are sent from the notice, without a read; anything
                // else (a gap, a notice without events) is read.
                if notice.events.first().map(|e| e.seq) != Some(cursor + 1) {
                    return Some(false);
                }
                for event in notice.events.iter() {
                    *done |= Lifecycle::parse(&event.type_).is_some_and(Lifecycle::is_final);
                    pending.push_back((event.seq, id.to_string(), event.clone()));
                }
                return Some(true);
            }
            // Notices were missed: the journal says what is new.
            Err(RecvError::Lagged(_)) => return Some(false),
            Err(RecvError::Closed) => return None,
        }
    }
}

/// Waits for the hub's next batch of the log with an event `query` lets through, and
/// takes those events into `pending` (true); false when a gap (or lag) means the journal
/// must be read; `None` when the hub has stopped.
async fn wait_for_log(
    batches: &mut broadcast::Receiver<Arc<crate::hub::Batch>>,
    query: &store::LogQuery,
    scanned: &mut u64,
    pending: &mut VecDeque<(u64, String, store::Event)>,
) -> Option<bool> {
    loop {
        match batches.recv().await {
            Ok(batch) if batch.upto <= *scanned => {}
            Ok(batch) if batch.after > *scanned => return Some(false),
            Ok(batch) => {
                for (pos, id, owner, event) in &batch.events {
                    if *pos > *scanned && crate::hub::matches(query, id, owner, &event.type_) {
                        pending.push_back((*pos, id.to_string(), event.clone()));
                    }
                }
                *scanned = batch.upto;
                if !pending.is_empty() {
                    return Some(true);
                }
            }
            Err(RecvError::Lagged(_)) => return Some(false),
            Err(RecvError::Closed) => return None,
        }
    }
}

/// A journal event as a CloudEvent in structured JSON.
fn cloud_event(execution: &str, event: &store::Event) -> String {
    #[derive(Serialize)]
    struct CloudEvent<'a> {
        specversion: &'static str,
        id: String,
        source: String,
        #[serde(rename = "type")]
        type_: &'a str,
        time: String,
        subject: &'a str,
        datacontenttype: &'static str,
        /// Skein's extension attribute: the event's position in its execution's log.
        sequence: u64,
        data: &'a RawValue,
    }
    let time = jiff::Timestamp::from_millisecond(event.time)
        .map_or_else(|_| event.time.to_string(), |t| t.to_string());
    serde_json::to_string(&CloudEvent {
        specversion: "1.0",
        id: format!("{execution}/{}", event.seq),
        source: format!("/v1/executions/{execution}"),
        type_: &event.type_,
        time,
        subject: execution,
        datacontenttype: "application/json",
        sequence: event.seq,
        data: event.data.raw(),
    })
    .expect("a CloudEvent serializes")
}
