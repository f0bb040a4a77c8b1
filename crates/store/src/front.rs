//! The group-commit front both drivers put before their one writer: tickets handed out
//! in queue order, how far the writer has committed (or why it stopped), who waits for
//! which ticket (so that a writer with nobody waiting lingers for more batches), the
//! commit notices for live streams, the steering requests, and the commit observer.
//!
//! A driver owns the [`Front`] and gives its writer the [`Publisher`]. The writer folds
//! queued commands into one transaction of its database, and after the commit tells the
//! publisher how far it got and which executions have new events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};

use crate::{Batch, CommitObserver, Committed, Error, Event, Requested, Result, Ticket};

/// Most commands folded into one transaction.
pub(crate) const MAX_GROUP: usize = 4096;

/// Commit notices (and requests) kept for subscribers that have not read them yet.
pub(crate) const NOTICES: usize = 4096;

/// Longest a batch nobody waits for stays uncommitted. A crash loses at most this
/// much such work, which the engine re-runs from the journal: nothing outside the
/// process depended on it, or it would have been waited for.
pub(crate) const LINGER: Duration = Duration::from_millis(5);

/// The writer's channel: a std channel to SQLite's writer thread, a tokio one to
/// PostgreSQL's writer task. A send to a writer that is gone is dropped: `durable`
/// reports why it stopped.
pub(crate) trait Queue<C>: Send {
    fn push(&self, ticket: u64, command: C);
}

impl<C: Send> Queue<C> for std::sync::mpsc::Sender<(u64, C)> {
    fn push(&self, ticket: u64, command: C) {
        let _ = self.send((ticket, command));
    }
}

impl<C: Send> Queue<C> for tokio::sync::mpsc::UnboundedSender<(u64, C)> {
    fn push(&self, ticket: u64, command: C) {
        let _ = self.send((ticket, command));
    }
}

#[derive(Clone, Debug, Default)]
struct Progress {
    committed: u64,
    failure: Option<Arc<str>>,
}

/// The callers' side.
pub(crate) struct Front<Q> {
    /// The queue to the writer, with the number of the last command queued: taken
    /// together so that ticket order is queue order.
    queue: Mutex<(Q, u64)>,
    progress: watch::Receiver<Progress>,
    /// The highest ticket anyone waits for.
    wanted: Arc<AtomicU64>,
    notices: broadcast::Sender<Committed>,
    requests: broadcast::Sender<Requested>,
    observer: Arc<Mutex<Option<CommitObserver>>>,
}

/// The writer's side.
pub(crate) struct Publisher {
    progress: watch::Sender<Progress>,
    wanted: Arc<AtomicU64>,
    notices: broadcast::Sender<Committed>,
    observer: Arc<Mutex<Option<CommitObserver>>>,
    committed: u64,
}

impl<Q> Front<Q> {
    /// A front before the writer that reads from the other end of `queue`.
    pub(crate) fn new(queue: Q) -> (Front<Q>, Publisher) {
        let (progress_tx, progress) = watch::channel(Progress::default());
        let wanted = Arc::new(AtomicU64::new(0));
        let notices = broadcast::channel(NOTICES).0;
        let observer = Arc::new(Mutex::new(None));
        let publisher = Publisher {
            progress: progress_tx,
            wanted: wanted.clone(),
            notices: notices.clone(),
            observer: observer.clone(),
            committed: 0,
        };
        let front = Front {
            queue: Mutex::new((queue, 0)),
            progress,
            wanted,
            notices,
            requests: broadcast::channel(NOTICES).0,
            observer,
        };
        (front, publisher)
    }

    /// Queues `command` and returns its ticket.
    pub(crate) fn send<C>(&self, command: C) -> Ticket
    where
        Q: Queue<C>,
    {
        let mut queue = self.queue.lock().expect("queue lock");
        queue.1 += 1;
        let ticket = queue.1;
        queue.0.push(ticket, command);
        Ticket(ticket)
    }

    /// Waits until the command of `ticket` (and every command before it) is committed.
    /// A writer lingering for more batches is told to commit now with `flush`, queued
    /// (under the queue lock, so after the command of `ticket`) only by a caller that
    /// raised the highest ticket anyone waits for.
    pub(crate) async fn durable<C>(&self, ticket: Ticket, flush: impl FnOnce() -> C) -> Result<()>
    where
        Q: Queue<C>,
    {
        let mut progress = self.progress.clone();
        if progress.borrow().committed < ticket.0
            && self.wanted.fetch_max(ticket.0, Ordering::AcqRel) < ticket.0
        {
            self.queue.lock().expect("queue lock").0.push(0, flush());
        }
        let reached = progress
            .wait_for(|p| p.committed >= ticket.0 || p.failure.is_some())
            .await
            .map_err(|_| Error::WriterStopped("the writer is gone".into()))?;
        match &reached.failure {
            Some(message) if reached.committed < ticket.0 => {
                Err(Error::WriterStopped(message.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// The error for a caller whose writer stopped: why, if it said.
    pub(crate) fn stopped(&self) -> Error {
        let failure = self.progress.borrow().failure.clone();
        Error::WriterStopped(failure.map_or_else(|| "the writer is gone".into(), |m| m.to_string()))
    }

    /// The commit notices, for `Store::subscribe`; a listener to other processes'
    /// commits sends on it too.
    pub(crate) fn notices(&self) -> &broadcast::Sender<Committed> {
        &self.notices
    }

    /// The steering announcements, for `Store::request` and `Store::requests`.
    pub(crate) fn requests(&self) -> &broadcast::Sender<Requested> {
        &self.requests
    }

    pub(crate) fn observe(&self, observer: CommitObserver) {
        *self.observer.lock().expect("observer lock") = Some(observer);
    }
}

impl Publisher {
    /// True while nobody waits for a command the writer holds uncommitted: it may
    /// linger for more.
    pub(crate) fn may_linger(&self) -> bool {
        self.wanted.load(Ordering::Acquire) <= self.committed
    }

    /// Whether anyone reads the commit notices, so that they should carry the events.
    pub(crate) fn listening(&self) -> bool {
        self.notices.receiver_count() > 0
    }

    /// A group of `folded` commands, up to ticket `last`, opened at `opened`, is
    /// committed: tells the observer, those who wait, and the subscribers.
    pub(crate) fn committed(&mut self, last: u64, opened: Instant, folded: usize, newest: Newest) {
        let observer = self.observer.lock().expect("observer lock").clone();
        if let Some(observe) = observer {
            observe(opened.elapsed(), folded);
        }
        self.committed = self.committed.max(last);
        let committed = self.committed;
        self.progress.send_modify(|p| p.committed = committed);
        for (execution, (last_seq, events)) in newest.0 {
            // No subscriber is not an error.
            let _ = self.notices.send(Committed {
                execution: Arc::from(execution),
                last_seq,
                events: events.into(),
            });
        }
    }

    /// The writer stopped: a group it cannot commit leaves the journal without batches
    /// the engine counts on, so it takes no more work rather than drift.
    pub(crate) fn failed(&self, message: Arc<str>) {
        self.progress.send_modify(|p| p.failure = Some(message));
    }
}

/// Per execution with new events in a group: its last sequence number, and the events
/// themselves when someone listens.
#[derive(Default)]
pub(crate) struct Newest(HashMap<String, (u64, Vec<Event>)>);

impl Newest {
    /// Notes the events of `batch`, copied only when `listening`.
    pub(crate) fn note(&mut self, batch: &Batch, listening: bool) {
        let Some(last) = batch.events.last() else {
            return;
        };
        // Looked up before inserting: most batches are of an execution already seen in
        // the group, and the key would be cloned for nothing.
        if !self.0.contains_key(&batch.execution) {
            self.0.insert(batch.execution.clone(), (0, Vec::new()));
        }
        let (seq, events) = self.0.get_mut(&batch.execution).expect("inserted above");
        *seq = (*seq).max(last.seq);
        if listening {
            events.extend(batch.events.iter().cloned());
        }
    }

    /// Forgets the executions for which `keep` is false.
    #[cfg(feature = "postgres")]
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.0.retain(|id, _| keep(id));
    }

    /// Each execution and its last sequence number.
    #[cfg(feature = "postgres")]
    pub(crate) fn last_seqs(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(id, (seq, _))| (id.as_str(), *seq))
    }
}
