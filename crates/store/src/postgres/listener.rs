//! The listener task: follows other processes' notices (`NOTIFY skein_events` and
//! `skein_requests`) and turns them into this process's commit notices and steering
//! announcements; after a lost connection it announces that some may have been missed.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{broadcast, oneshot};

use super::{EVENTS_CHANNEL, MAX_RETRY_DELAY, REQUESTS_CHANNEL};
use crate::{Committed, Requested};

/// Follows the notices of other processes: new events, and requests.
pub(super) async fn listen_loop(
    pool: PgPool,
    node: Arc<str>,
    notices: broadcast::Sender<Committed>,
    requests: broadcast::Sender<Requested>,
    listening: oneshot::Sender<()>,
) {
    let mut listening = Some(listening);
    let mut delay = Duration::from_millis(100);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
                continue;
            }
        };
        if listener
            .listen_all([EVENTS_CHANNEL, REQUESTS_CHANNEL])
            .await
            .is_err()
        {
            tokio::time::sleep(delay).await;
            continue;
        }
        delay = Duration::from_millis(100);
        match listening.take() {
            Some(listening) => {
                let _ = listening.send(());
            }
            // A reconnection: requests recorded while nobody listened were not announced.
            None => {
                let _ = requests.send(Requested::Unknown);
            }
        }
        // Whatever was committed while nobody listened was not announced.
        let _ = notices.send(Committed::unknown());
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) if notification.channel() == REQUESTS_CHANNEL => {
                    let _ = requests.send(Requested::For(notification.payload().to_string()));
                }
                Ok(Some(notification)) => {
                    for notice in notices_of(&node, notification.payload()) {
                        let _ = notices.send(notice);
                    }
                }
                // The connection dropped (the next call reconnects): notices were lost.
                Ok(None) => {
                    let _ = notices.send(Committed::unknown());
                    let _ = requests.send(Requested::Unknown);
                }
                Err(_) => break,
            }
        }
        tokio::time::sleep(delay).await;
    }
}

/// The commit notices in an events notification from another process (none for one
/// from this process: its own commits are announced by its writer, with their events).
fn notices_of(node: &str, payload: &str) -> Vec<Committed> {
    #[derive(serde::Deserialize)]
    struct Payload {
        n: String,
        e: Option<Vec<(String, u64)>>,
    }
    match serde_json::from_str::<Payload>(payload) {
        Ok(p) if p.n == node => Vec::new(),
        Ok(Payload { e: Some(list), .. }) => list
            .into_iter()
            .map(|(execution, last_seq)| Committed {
                execution: Arc::from(execution),
                last_seq,
                events: Arc::from([]),
            })
            .collect(),
        _ => vec![Committed::unknown()],
    }
}
