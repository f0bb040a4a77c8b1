//! `listen`: waiting for events delivered to an execution's inbox.
//!
//! Events arrive through [`crate::Engine::deliver`] (and, later, the server's
//! HTTP and gRPC endpoints) into the store's inbox, in order. A listening task
//! consumes matching events that no earlier listener consumed; which inbox
//! positions it took is journaled, so a resumed execution consumes the same ones.
//! Correlations (`correlate`) are part of matching: an event whose correlation value
//! differs from the expected one (or from the first one consumed) is left in the inbox.

use std::collections::{HashMap, HashSet};

use expr::{Template, Vars};
use program::{ConsumptionStrategy, EventFilter, Listen, ListenRead, Until};
use serde_json::{Value, json};
use store::{Step, StepState};

use crate::Interrupt;
use crate::run::Run;

type Res<T> = Result<T, Interrupt>;

/// How often the inbox is read when no in-process delivery wakes the listener.
const POLL_MS: i64 = 250;

/// Waits until the strategy is satisfied; returns the consumed events (read as `read`
/// says) and the ticket of the record of what was consumed, if it was recorded now.
pub(crate) async fn listen(
    run: &Run,
    listen: &Listen,
    key: &str,
    vars: &Vars<'_>,
    at: &str,
) -> Res<(Vec<Value>, Option<store::Ticket>)> {
    let consumed_key = format!("{key}/consumed");
    if let Some(StepState::Completed { output, .. }) = run.replayed(&consumed_key) {
        // Consumed before a restart: take the same events again.
        let positions: Vec<u64> = output
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        let inbox = run
            .store
            .inbox(&run.id, 0)
            .await
            .map_err(|e| Interrupt::Store(e.to_string()))?;
        let events = positions
            .iter()
            .filter_map(|p| {
                inbox
                    .iter()
                    .find(|(q, _)| q == p)
                    .map(|(_, e)| read(listen.read, e))
            })
            .collect();
        return Ok((events, None));
    }

    let mut state = Progress::new(&listen.to);
    let mut inbox = Inbox::default();
    loop {
        for (position, event) in inbox.next(run).await? {
            if run.is_consumed(position) {
                continue;
            }
            if state.offer(position, &event, vars, at)? {
                run.consume(position);
            }
            if state.done(vars, at, listen.read)? {
                let positions: Vec<u64> = state.taken.iter().map(|(p, _)| *p).collect();
                let ticket = run.record(
                    vec![Step {
                        key: consumed_key,
                        state: StepState::Completed {
                            output: json!(positions),
                            context: None,
                        },
                    }],
                    vec![],
                    None,
                );
                let events = state
                    .taken
                    .iter()
                    .map(|(_, e)| read(listen.read, e))
                    .collect();
                return Ok((events, Some(ticket)));
            }
        }
    }
}

/// A listener's reading of its execution's inbox: the events after those it read that
/// no listener took, in order, waiting for a delivery when there are none.
#[derive(Default)]
pub(crate) struct Inbox {
    cursor: u64,
}

impl Inbox {
    pub(crate) async fn next(&mut self, run: &Run) -> Res<Vec<(u64, Value)>> {
        loop {
            // Registered before the read, so that no delivery falls between the two.
            let notified = run.wake.notified();
            let events = run
                .store
                .inbox(&run.id, self.cursor)
                .await
                .map_err(|e| Interrupt::Store(e.to_string()))?;
            if let Some((last, _)) = events.last() {
                self.cursor = *last;
            }
            let fresh: Vec<(u64, Value)> = events
                .into_iter()
                .filter(|(position, _)| !run.is_consumed(*position))
                .collect();
            if !fresh.is_empty() {
                return Ok(fresh);
            }
            tokio::select! {
                _ = notified => {}
                _ = run.clock.sleep_until(run.now() + POLL_MS) => {}
                _ = run.cancel.cancelled() => return Err(Interrupt::Cancelled),
            }
        }
    }
}

fn read(how: ListenRead, event: &Value) -> Value {
    match how {
        ListenRead::Envelope => event.clone(),
        ListenRead::Data | ListenRead::Raw => event.get("data").cloned().unwrap_or(Value::Null),
    }
}

/// What a strategy has consumed so far.
struct Progress<'w> {
    strategy: &'w ConsumptionStrategy,
    /// Consumed events that count toward the output, with their inbox positions.
    taken: Vec<(u64, Value)>,
    /// For `all`: which filters have matched.
    matched: Vec<bool>,
    /// For `any` with `until` events: the progress of that inner strategy.
    until: Option<Box<Progress<'w>>>,
    /// Correlation values fixed by the first consumed event that carried them.
    correlated: HashMap<String, Value>,
}

impl<'w> Progress<'w> {
    fn new(strategy: &'w ConsumptionStrategy) -> Progress<'w> {
        let (matched, until) = match strategy {
            ConsumptionStrategy::All(filters) => (vec![false; filters.len()], None),
            ConsumptionStrategy::Any {
                until: Some(until), ..
            } => match until.as_ref() {
                Until::Events(inner) => (Vec::new(), Some(Box::new(Progress::new(inner)))),
                Until::Condition(_) => (Vec::new(), None),
            },
            _ => (Vec::new(), None),
        };
        Progress {
            strategy,
            taken: Vec::new(),
            matched,
            until,
            correlated: HashMap::new(),
        }
    }

    /// Offers an event; true if this strategy consumed it.
    fn offer(&mut self, position: u64, event: &Value, vars: &Vars<'_>, at: &str) -> Res<bool> {
        match self.strategy {
            ConsumptionStrategy::One(filter) => {
                if self.taken.is_empty() && self.accepts(filter, event, vars, at)? {
                    self.taken.push((position, event.clone()));
                    return Ok(true);
                }
                Ok(false)
            }
            ConsumptionStrategy::All(filters) => {
                for (i, filter) in filters.iter().enumerate() {
                    if !self.matched[i] && self.accepts(filter, event, vars, at)? {
                        self.matched[i] = true;
                        self.taken.push((position, event.clone()));
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            ConsumptionStrategy::Any { filters, .. } => {
                if let Some(until) = &mut self.until
                    && until.offer(position, event, vars, at)?
                {
                    // Events consumed by `until` end the listening but are not output.
                    return Ok(true);
                }
                let mut any = filters.is_empty();
                for filter in filters {
                    if self.accepts(filter, event, vars, at)? {
                        any = true;
                        break;
                    }
                }
                if any {
                    self.taken.push((position, event.clone()));
                }
                Ok(any)
            }
        }
    }

    /// Whether `event` passes `filter`: its attributes, then its correlations. The
    /// correlation values of an accepted event become the expectation for later events
    /// when the filter states none, so `all` gathers events of one room, one order, ….
    fn accepts(
        &mut self,
        filter: &EventFilter,
        event: &Value,
        vars: &Vars<'_>,
        at: &str,
    ) -> Res<bool> {
        if !matches(filter, event, vars, at)? {
            return Ok(false);
        }
        let mut fixed = Vec::new();
        for (name, correlation) in &filter.correlate {
            let value = correlation
                .from
                .eval(event, vars)
                .map_err(|e| e.into_problem(at))?;
            let expected = match &correlation.expect {
                Some(expect) => Some(
                    expect
                        .eval(vars.get("input").unwrap_or(&Value::Null), vars)
                        .map_err(|e| e.into_problem(at))?,
                ),
                None => self.correlated.get(name).cloned(),
            };
            match expected {
                Some(expected) if expected != value => return Ok(false),
                Some(_) => {}
                None => fixed.push((name.clone(), value)),
            }
        }
        self.correlated.extend(fixed);
        Ok(true)
    }

    fn done(&self, vars: &Vars<'_>, at: &str, read_as: ListenRead) -> Res<bool> {
        Ok(match self.strategy {
            ConsumptionStrategy::One(_) => !self.taken.is_empty(),
            ConsumptionStrategy::All(_) => self.matched.iter().all(|m| *m),
            ConsumptionStrategy::Any { until: None, .. } => !self.taken.is_empty(),
            ConsumptionStrategy::Any {
                until: Some(until), ..
            } => match until.as_ref() {
                Until::Events(_) => self
                    .until
                    .as_ref()
                    .is_some_and(|u| u.done(vars, at, read_as).unwrap_or(false)),
                Until::Condition(condition) => {
                    if self.taken.is_empty() {
                        false
                    } else {
                        let consumed = Value::Array(
                            self.taken.iter().map(|(_, e)| read(read_as, e)).collect(),
                        );
                        condition
                            .eval_bool(&consumed, vars)
                            .map_err(|e| e.into_problem(at))?
                    }
                }
            },
        })
    }
}

/// Whether an event has every attribute of the filter. A string attribute matches
/// exactly or as an anchored regular expression; an expression attribute is evaluated
/// on the event's attribute and matches when true.
fn matches(filter: &EventFilter, event: &Value, vars: &Vars<'_>, at: &str) -> Res<bool> {
    for (name, expected) in &filter.with {
        let actual = event.get(name).unwrap_or(&Value::Null);
        let ok = match expected {
            Template::Const(Value::String(pattern)) => match actual.as_str() {
                Some(actual) => {
                    actual == pattern || anchored(pattern).is_some_and(|re| re.is_match(actual))
                }
                None => false,
            },
            Template::Const(value) => actual == value,
            Template::Expr(e) | Template::Loose(e, _) => {
                e.eval_bool(actual, vars).map_err(|e| e.into_problem(at))?
            }
            structured => {
                structured
                    .eval(actual, vars)
                    .map_err(|e| e.into_problem(at))?
                    == *actual
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn anchored(pattern: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?:{pattern})$")).ok()
}

/// Inbox positions consumed by completed listeners of a journal (and by the messages
/// they handled), for [`Run`].
pub(crate) fn consumed_in(steps: &[store::Step]) -> HashSet<u64> {
    let mut consumed: HashSet<u64> = super::messages::consumed_in(steps).collect();
    // What a continue-as-new checkpoint kept of the steps it let go.
    consumed.extend(super::messages::checkpointed(steps, "consumed").filter_map(|v| v.as_u64()));
    consumed.extend(
        steps
            .iter()
            .filter(|s| s.key.ends_with("/consumed"))
            .filter_map(|s| match &s.state {
                StepState::Completed { output, .. } => output.as_array().cloned(),
                _ => None,
            })
            .flatten()
            .filter_map(|v| v.as_u64()),
    );
    consumed
}
