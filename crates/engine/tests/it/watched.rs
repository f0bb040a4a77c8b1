//! A store that counts the calls in flight through it, so that the manual-clock driver
//! knows when a run is idle rather than guessing: reads and writes happen on other
//! threads, and a run that waits on one has not settled, however many times it yields.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use serde_json::Value;
use store::{
    Batch, Claim, CommitObserver, Committed, Created, Deployed, Event, Execution, Journal, Lease,
    ListQuery, LogPage, LogQuery, Millis, NewExecution, Request, Requested, Result, Status, Store,
    Ticket,
};

pub(crate) struct Watched {
    inner: Arc<dyn Store>,
    busy: AtomicUsize,
    /// Woken when the last call in flight ends.
    idle: tokio::sync::Notify,
}

impl Watched {
    pub(crate) fn new(inner: Arc<dyn Store>) -> Watched {
        Watched {
            inner,
            busy: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
        }
    }

    /// True if no call is in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }

    /// Returns once no call is in flight.
    pub(crate) async fn idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.is_idle() {
                return;
            }
            idle.await;
        }
    }

    async fn watch<T>(&self, call: impl Future<Output = T>) -> T {
        struct Done<'a>(&'a Watched);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                if self.0.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
                    self.0.idle.notify_waiters();
                }
            }
        }
        self.busy.fetch_add(1, Ordering::SeqCst);
        let _done = Done(self);
        call.await
    }
}

#[async_trait]
impl Store for Watched {
    async fn create(&self, new: NewExecution) -> Result<Created> {
        self.watch(self.inner.create(new)).await
    }
    async fn execution(&self, id: &str) -> Result<Option<Execution>> {
        self.watch(self.inner.execution(id)).await
    }
    async fn unfinished(&self) -> Result<Vec<String>> {
        self.watch(self.inner.unfinished()).await
    }
    async fn list(&self, query: ListQuery) -> Result<Vec<Execution>> {
        self.watch(self.inner.list(query)).await
    }
    async fn journal(&self, id: &str) -> Result<Journal> {
        self.watch(self.inner.journal(id)).await
    }
    async fn events(&self, id: &str, after_seq: u64, limit: usize) -> Result<Vec<Event>> {
        self.watch(self.inner.events(id, after_seq, limit)).await
    }
    async fn log(&self, query: LogQuery) -> Result<LogPage> {
        self.watch(self.inner.log(query)).await
    }
    async fn pos_before(&self, time: Millis) -> Result<u64> {
        self.watch(self.inner.pos_before(time)).await
    }
    async fn event_counts(&self, id: &str) -> Result<Vec<(String, u64)>> {
        self.watch(self.inner.event_counts(id)).await
    }
    async fn events_of_type(&self, id: &str, type_: &str) -> Result<Vec<Event>> {
        self.watch(self.inner.events_of_type(id, type_)).await
    }
    async fn seq_before(&self, id: &str, time: Millis) -> Result<u64> {
        self.watch(self.inner.seq_before(id, time)).await
    }
    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>> {
        self.watch(self.inner.count_by_status()).await
    }
    async fn holders(&self) -> Result<store::Holders> {
        self.watch(self.inner.holders()).await
    }
    fn observe_commits(&self, observer: CommitObserver) {
        self.inner.observe_commits(observer)
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Committed> {
        self.inner.subscribe()
    }
    fn commit(&self, batch: Batch) -> Ticket {
        self.inner.commit(batch)
    }
    async fn durable(&self, ticket: Ticket) -> Result<()> {
        self.watch(self.inner.durable(ticket)).await
    }
    async fn deliver(&self, id: &str, event: Value) -> Result<u64> {
        self.watch(self.inner.deliver(id, event)).await
    }
    async fn inbox(&self, id: &str, after: u64) -> Result<Vec<(u64, Value)>> {
        self.watch(self.inner.inbox(id, after)).await
    }
    async fn cursor(&self, name: &str) -> Result<Option<Value>> {
        self.watch(self.inner.cursor(name)).await
    }
    async fn set_cursors(&self, cursors: Vec<(String, Value)>) -> Result<()> {
        self.watch(self.inner.set_cursors(cursors)).await
    }
    async fn claim(&self, owner: &str, lease_ms: Millis, which: Claim) -> Result<Vec<Lease>> {
        self.watch(self.inner.claim(owner, lease_ms, which)).await
    }
    async fn renew(&self, owner: &str, lease_ms: Millis) -> Result<Vec<Lease>> {
        self.watch(self.inner.renew(owner, lease_ms)).await
    }
    async fn release(&self, owner: &str) -> Result<()> {
        self.watch(self.inner.release(owner)).await
    }
    async fn hold(&self, name: &str, owner: &str, lease_ms: Millis) -> Result<bool> {
        self.watch(self.inner.hold(name, owner, lease_ms)).await
    }
    async fn request(&self, id: &str, request: Request) -> Result<bool> {
        self.watch(self.inner.request(id, request)).await
    }
    fn requests(&self) -> tokio::sync::broadcast::Receiver<Requested> {
        self.inner.requests()
    }
    async fn deploy(
        &self,
        project: &str,
        name: &str,
        definition: &str,
    ) -> Result<(Deployed, bool)> {
        self.watch(self.inner.deploy(project, name, definition))
            .await
    }
    async fn deployed(
        &self,
        project: &str,
        name: &str,
        revision: Option<u64>,
    ) -> Result<Option<Deployed>> {
        self.watch(self.inner.deployed(project, name, revision))
            .await
    }
    async fn deployments(&self, project: &str, name: Option<&str>) -> Result<Vec<Deployed>> {
        self.watch(self.inner.deployments(project, name)).await
    }
    async fn undeploy(&self, project: &str, name: &str) -> Result<bool> {
        self.watch(self.inner.undeploy(project, name)).await
    }
    async fn holder(&self, id: &str) -> Result<Option<String>> {
        self.watch(self.inner.holder(id)).await
    }
    async fn update_labels(&self, id: &str, set: store::Labels, unset: Vec<String>) -> Result<()> {
        self.watch(self.inner.update_labels(id, set, unset)).await
    }
    async fn forget_steps(&self, id: &str, prefix: &str) -> Result<u64> {
        self.watch(self.inner.forget_steps(id, prefix)).await
    }
    async fn create_schedule(
        &self,
        project: &str,
        id: &str,
        spec: Value,
        state: Value,
    ) -> Result<bool> {
        self.watch(self.inner.create_schedule(project, id, spec, state))
            .await
    }
    async fn update_schedule(
        &self,
        project: &str,
        id: &str,
        spec: Option<Value>,
        state: Option<Value>,
    ) -> Result<bool> {
        self.watch(self.inner.update_schedule(project, id, spec, state))
            .await
    }
    async fn schedule(&self, project: &str, id: &str) -> Result<Option<store::StoredSchedule>> {
        self.watch(self.inner.schedule(project, id)).await
    }
    async fn schedules(&self, project: Option<&str>) -> Result<Vec<store::StoredSchedule>> {
        self.watch(self.inner.schedules(project)).await
    }
    async fn delete_schedule(&self, project: &str, id: &str) -> Result<bool> {
        self.watch(self.inner.delete_schedule(project, id)).await
    }
}
