//! The log hub: one reader of the log of all executions for every `/v1/events` client
//! in this process. On each commit notice it reads the new part of the log once, with
//! what filters need to know of each event's execution, and broadcasts it; each client
//! filters the batches it receives. Without it, every commit cost every client a query.
//!
//! The hub runs while it has clients: the first client starts it, and it stops at the
//! first notice after the last client left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use store::{LogQuery, Store};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

/// Events read from the log at a time.
const PAGE: usize = 1024;

/// Batches a client may fall behind by before it is told it lagged (and reads the
/// journal instead).
const BACKLOG: usize = 1024;

/// Executions whose details are kept at most; the cache starts over beyond.
const CACHED_EXECUTIONS: usize = 100_000;

/// What filters look at of an event's execution. It never changes once created.
#[derive(Debug)]
pub(crate) struct Owner {
    pub(crate) project: String,
    pub(crate) name: String,
    pub(crate) labels: store::Labels,
}

/// The events of the log at positions in `(after, upto]`: all of them, unfiltered, each
/// with its position, its execution's id and that execution's details.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) after: u64,
    pub(crate) upto: u64,
    pub(crate) events: Vec<(u64, Arc<str>, Arc<Owner>, store::Event)>,
}

/// Where clients find the running hub.
#[derive(Default)]
pub(crate) struct Hub {
    sender: Arc<Mutex<Option<broadcast::Sender<Arc<Batch>>>>>,
}

impl Hub {
    /// Batches from now on, starting the hub if it is not running.
    pub(crate) fn subscribe(&self, store: &Arc<dyn Store>) -> broadcast::Receiver<Arc<Batch>> {
        let mut sender = self.sender.lock().expect("hub lock");
        if let Some(tx) = sender.as_ref() {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(BACKLOG);
        *sender = Some(tx.clone());
        tokio::spawn(run(store.clone(), tx, self.sender.clone()));
        rx
    }
}

async fn run(
    store: Arc<dyn Store>,
    tx: broadcast::Sender<Arc<Batch>>,
    slot: Arc<Mutex<Option<broadcast::Sender<Arc<Batch>>>>>,
) {
    // Subscribed before the end of the log is read, so no commit falls between.
    let mut notices = store.subscribe();
    let stop = |slot: &Mutex<Option<broadcast::Sender<Arc<Batch>>>>| {
        let mut sender = slot.lock().expect("hub lock");
        // Under the lock: no client can subscribe between this check and the stop.
        if tx.receiver_count() == 0 {
            *sender = None;
            true
        } else {
            false
        }
    };
    let end = store.log(LogQuery {
        limit: 0,
        ..Default::default()
    });
    let mut cursor = match end.await {
        Ok(page) => page.scanned,
        Err(e) => {
            tracing::warn!("event hub: {e}");
            *slot.lock().expect("hub lock") = None;
            return;
        }
    };
    let mut owners: HashMap<Arc<str>, Arc<Owner>> = HashMap::new();
    loop {
        match notices.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => break,
        }
        // Several notices usually come from one commit: one read covers them all.
        while notices.try_recv().is_ok() {}
        if stop(&slot) {
            return;
        }
        if let Err(e) = read(&store, &tx, &mut cursor, &mut owners).await {
            // The clients end their streams and reconnect from their cursors.
            tracing::warn!("event hub: {e}");
            break;
        }
    }
    *slot.lock().expect("hub lock") = None;
}

/// Reads the log after `cursor` to its end and broadcasts it, page by page.
async fn read(
    store: &Arc<dyn Store>,
    tx: &broadcast::Sender<Arc<Batch>>,
    cursor: &mut u64,
    owners: &mut HashMap<Arc<str>, Arc<Owner>>,
) -> Result<(), store::Error> {
    loop {
        let page = store
            .log(LogQuery {
                after: *cursor,
                limit: PAGE,
                ..Default::default()
            })
            .await?;
        let full = page.events.len() >= PAGE;
        let mut events = Vec::with_capacity(page.events.len());
        for logged in page.events {
            let id: Arc<str> = Arc::from(logged.execution);
            let owner = match owners.get(&id) {
                Some(owner) => owner.clone(),
                None => {
                    let Some(execution) = store.execution(&id).await? else {
                        continue;
                    };
                    if owners.len() >= CACHED_EXECUTIONS {
                        owners.clear();
                    }
                    let owner = Arc::new(Owner {
                        project: execution.project,
                        name: execution.name,
                        labels: execution.labels,
                    });
                    owners.insert(id.clone(), owner.clone());
                    owner
                }
            };
            events.push((logged.pos, id, owner, logged.event));
        }
        let batch = Batch {
            after: *cursor,
            upto: page.scanned,
            events,
        };
        *cursor = page.scanned;
        // No receiver is not an error: the next notice stops the hub.
        let _ = tx.send(Arc::new(batch));
        if !full {
            return Ok(());
        }
    }
}

/// Whether an event of execution `id` (owned as `owner`) of type `type_` passes `query`'s
/// filters (its `after` and `limit` aside).
pub(crate) fn matches(query: &LogQuery, id: &str, owner: &Owner, type_: &str) -> bool {
    query.execution.as_deref().is_none_or(|e| e == id)
        && query.name.as_deref().is_none_or(|n| n == owner.name)
        && query.type_.as_deref().is_none_or(|t| t == type_)
        && query.project.as_deref().is_none_or(|p| p == owner.project)
        && query
            .label
            .as_ref()
            .is_none_or(|(k, v)| owner.labels.get(k) == Some(v))
}
