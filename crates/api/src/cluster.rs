//! Sharing one database with other servers: the loop that keeps this server's leases.
//!
//! Every `renew_every` it renews its leases; the answer is the authority on what it may
//! run. A run whose lease is gone (another server took the execution over, because
//! this one failed to renew in time) is abandoned; an execution it holds but does not
//! run (its run stopped on a database error) is launched again. Then it claims free
//! executions, as many as it has room for: new ones no server took, and those of
//! servers whose leases expired. Between ticks it obeys requests (cancel, pause,
//! resume) recorded by any server for the executions it runs.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::Service;

impl Service {
    /// Keeps this server's leases until `stop`; returns at once without [`crate::Cluster`]
    /// options.
    pub async fn run_cluster(self: Arc<Self>, stop: CancellationToken) {
        let Some(cluster) = self.cluster().cloned() else {
            return;
        };
        let mut requests = self.store().requests();
        let mut tick = tokio::time::interval(cluster.renew_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed = tokio::time::Instant::now();
        let mut failing = false;
        // Where the other servers send the queries of the executions this one runs.
        let mut announced = false;
        loop {
            if !announced {
                announced = self
                    .store()
                    .set_cursors(vec![(
                        crate::messages::peer_cursor(&cluster.node),
                        serde_json::json!({"url": cluster.url}),
                    )])
                    .await
                    .is_ok();
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                request = requests.recv() => {
                    match request {
                        Ok(store::Requested::For(id)) => self.obey(&id).await,
                        // Missed some: the running ones' requests are read again.
                        Ok(store::Requested::Unknown) | Err(RecvError::Lagged(_)) => {
                            for (id, _) in self.running_since() {
                                self.obey(&id).await;
                            }
                        }
                        Err(RecvError::Closed) => return,
                    }
                    continue;
                }
                _ = tick.tick() => {}
            }
            let asked = tokio::time::Instant::now();
            let held = match self.store().renew(&cluster.node, cluster.lease_ms()).await {
                Ok(held) => held,
                Err(e) => {
                    if !failing {
                        tracing::warn!("the leases cannot be renewed ({e}); retrying");
                        failing = true;
                    }
                    // Past the lease, another server may run these executions already.
                    if renewed.elapsed() >= cluster.lease {
                        for (id, _) in self.running_since() {
                            if self.abandon(&id) {
                                self.metrics().leases_lost.inc();
                                tracing::warn!(
                                    "execution {id} left: its lease could not be renewed"
                                );
                            }
                        }
                    }
                    continue;
                }
            };
            if failing {
                tracing::info!("the leases are renewed again");
                failing = false;
            }
            renewed = asked;
            let ids: HashSet<&str> = held.iter().map(|l| l.id.as_str()).collect();
            for (id, since) in self.running_since() {
                // A run launched after the renewal was asked is not in its answer.
                if since < asked && !ids.contains(id.as_str()) && self.abandon(&id) {
                    self.metrics().leases_lost.inc();
                    tracing::warn!("execution {id} is run by another server now; left here");
                }
            }
            let running: HashSet<String> =
                self.running_since().into_iter().map(|(id, _)| id).collect();
            for lease in &held {
                if !running.contains(&lease.id) {
                    self.launch_lease(lease);
                } else if lease.requested == Some(store::Request::Cancel) {
                    // Also when its notice was lost (cancelling twice does no harm; a
                    // pause or resume read here could be older than one obeyed since).
                    self.obey_here(&lease.id, store::Request::Cancel);
                }
            }
            let room = cluster.capacity.saturating_sub(self.running_count());
            if room == 0 {
                continue;
            }
            let started = std::time::Instant::now();
            let claimed = self
                .store()
                .claim(&cluster.node, cluster.lease_ms(), store::Claim::Any(room))
                .await;
            self.metrics()
                .lease_claim_seconds
                .observe(started.elapsed().as_secs_f64());
            match claimed {
                Ok(leases) => {
                    for lease in leases {
                        if let Some((from, overdue)) = &lease.taken_from {
                            self.metrics().lease_takeovers.inc();
                            self.metrics()
                                .takeover_delay_seconds
                                .observe(*overdue as f64 / 1000.0);
                            tracing::info!(
                                "took execution {} over from {from} ({overdue} ms after its lease expired)",
                                lease.id
                            );
                            // Another server held it: a run of it still listed here is
                            // stale, and would keep `launch` from starting a new one.
                            if self.abandon(&lease.id) {
                                tracing::warn!(
                                    "execution {}: a stale run here was stopped",
                                    lease.id
                                );
                            }
                        }
                        self.launch_lease(&lease);
                    }
                }
                Err(e) => tracing::warn!("cannot claim free executions: {e}"),
            }
        }
    }

    /// Applies the last request recorded for `id`, if it runs here.
    async fn obey(&self, id: &str) {
        if self.running_since().iter().all(|(r, _)| r != id) {
            return;
        }
        match self.store().execution(id).await {
            Ok(Some(execution)) => {
                if let Some(request) = execution.requested {
                    self.obey_here(id, request);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("the request for {id} could not be read: {e}"),
        }
    }
}
