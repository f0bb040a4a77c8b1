//! What both stores' writers publish, and how a caller waits on it: how far the writer
//! has committed (by ticket), or why it stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use crate::{Error, Result, Ticket};

#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    pub(crate) committed: u64,
    pub(crate) failure: Option<Arc<str>>,
}

/// Waits until the batch of `ticket` (and every batch before it) is committed. `wanted`
/// is the highest ticket anyone waits for, which the writer reads to decide whether to
/// linger; `wake` tells a lingering writer to commit now, and is called only by a
/// caller that raised `wanted`.
pub(crate) async fn durable(
    progress: &watch::Receiver<Progress>,
    wanted: &AtomicU64,
    ticket: Ticket,
    wake: impl FnOnce(),
) -> Result<()> {
    let mut progress = progress.clone();
    if progress.borrow().committed < ticket.0
        && wanted.fetch_max(ticket.0, Ordering::AcqRel) < ticket.0
    {
        wake();
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
pub(crate) fn stopped(progress: &watch::Receiver<Progress>) -> Error {
    let failure = progress.borrow().failure.clone();
    Error::WriterStopped(failure.map_or_else(|| "the writer is gone".into(), |m| m.to_string()))
}
