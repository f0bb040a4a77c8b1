//! Live event streams (SSE, by the WHATWG EventSource rules) of one execution: the
//! journal's events after the client's cursor, then new ones as their commits are
//! announced. Nothing polls: a stream sleeps until the store says its execution has
//! new events. A slow client only reads more slowly; it holds no buffer of its own
//! beyond one page, and the engine never waits for it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::broadcast::error::RecvError;

use crate::{ApiError, ApiResult, Service};

/// Events read from the journal at a time.
const PAGE: usize = 256;

/// How long a client waits before it reconnects, sent once at the start.
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
pub(crate) struct StreamParams {
    /// Start after this event (the `Last-Event-ID` header wins over it).
    since_id: Option<u64>,
    /// Start at the first event at or after this time (RFC 3339).
    since_time: Option<String>,
}

/// `GET /v1/executions/{id}/events`.
pub(crate) async fn execution_events(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    Query(params): Query<StreamParams>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    if service.store().execution(&id).await?.is_none() {
        return Err(ApiError::not_found(&id));
    }
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("`Last-Event-ID` is not an event id this server gave out")
                })
        })
        .transpose()?;
    let cursor = match (last_event_id.or(params.since_id), &params.since_time) {
        (Some(seq), _) => seq,
        (None, Some(time)) => {
            let at: jiff::Timestamp = time.parse().map_err(|e| {
                ApiError::bad_request(format!(
                    "`since_time={time}` is not an RFC 3339 time such as 2026-01-31T12:00:00Z: {e}"
                ))
            })?;
            service.store().seq_before(&id, at.as_millisecond()).await?
        }
        (None, None) => 0,
    };
    // Subscribed before the first read, so that no commit falls between the two.
    let notices = service.store().subscribe();
    let heartbeat = service.heartbeat();
    let state = Streaming {
        _counted: service.metrics().subscriber(),
        service,
        id,
        cursor,
        notices,
        pending: VecDeque::new(),
        first: true,
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut state| async move {
        let event = state.next().await?;
        Some((Ok(event), state))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(heartbeat)))
}

struct Streaming {
    /// Counts this client in the metrics while the stream lives.
    _counted: crate::metrics::SubscriberGuard,
    service: Arc<Service>,
    id: String,
    /// The last event sent.
    cursor: u64,
    notices: tokio::sync::broadcast::Receiver<store::Committed>,
    pending: VecDeque<store::Event>,
    first: bool,
    done: bool,
}

impl Streaming {
    /// The next event to send, or `None` once the execution has ended and its last
    /// event was sent (or the store failed).
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.cursor = event.seq;
                let mut sse = SseEvent::default()
                    .id(event.seq.to_string())
                    .data(cloud_event(&self.id, &event));
                if std::mem::take(&mut self.first) {
                    sse = sse.retry(RETRY);
                }
                return Some(sse);
            }
            if self.done {
                return None;
            }
            let store = self.service.store();
            // The status first: if it is final now, the events read next include the
            // last one, which is committed with it.
            let ended = match store.execution(&self.id).await {
                Ok(Some(e)) => e.status.is_final(),
                Ok(None) => true,
                Err(e) => {
                    eprintln!("skein: event stream of {}: {e}", self.id);
                    return None;
                }
            };
            match store.events(&self.id, self.cursor, PAGE).await {
                Ok(events) if !events.is_empty() => {
                    self.pending.extend(events);
                    continue;
                }
                Ok(_) if ended => return None,
                Ok(_) => {}
                Err(e) => {
                    eprintln!("skein: event stream of {}: {e}", self.id);
                    return None;
                }
            }
            // Caught up: sleep until a commit brings this execution something new.
            loop {
                match self.notices.recv().await {
                    Ok(notice)
                        if *notice.execution == *self.id && notice.last_seq > self.cursor =>
                    {
                        break;
                    }
                    Ok(_) => {}
                    // Notices were missed: the journal says what is new.
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return None,
                }
            }
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
