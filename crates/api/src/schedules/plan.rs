//! What a schedule starts, decided without side effects: its trigger's times (`every`,
//! `cron` in a time zone, `after` the last run), and at a given moment which slots to
//! start, skip or hold back under its catch-up and overlap policies. The server's loop
//! ([`super::run_schedules`]) applies the decision; tests drive it on a manual clock.

use std::str::FromStr;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// How long a slot may be late and still count as on time rather than missed (a
/// server busy or restarting for a moment does not lose it under `catchup: skip`).
pub const GRACE_MS: Millis = 60_000;

/// The most catch-up slots `all` starts when it sets no bound of its own.
pub const DEFAULT_CATCHUP_LIMIT: u32 = 100;

/// When a schedule starts executions.
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    /// At every multiple of this many milliseconds since the Unix epoch.
    Every(Millis),
    /// At the times of a cron expression in a time zone.
    Cron(Box<Cron>),
    /// This long after the previous execution ended (the first at once).
    After(Millis),
    /// When posted events match.
    On(Events),
}

/// Which events start an execution: each one matching (`one`, `any`), or one for every
/// filter (`all`), gathered across posts.
#[derive(Clone, Debug)]
pub struct Events {
    filters: Vec<Vec<(String, Matcher)>>,
    all: bool,
}

impl PartialEq for Events {
    fn eq(&self, other: &Events) -> bool {
        self.all == other.all && self.filters.len() == other.filters.len()
    }
}

#[derive(Clone, Debug)]
enum Matcher {
    Exact(Value),
    Pattern(String, regex::Regex),
}

impl Events {
    /// Reads `{"one": filter}`, `{"any": [filters]}` or `{"all": [filters]}`, each
    /// filter `{"with": {attribute: value}}`.
    pub fn parse(on: &Value) -> Result<Events, String> {
        let (filters, all) = match on {
            Value::Object(m) if m.len() == 1 => match m.iter().next() {
                Some((k, v)) if k == "one" => (vec![v.clone()], false),
                Some((k, Value::Array(list))) if k == "any" => (list.clone(), false),
                Some((k, Value::Array(list))) if k == "all" => (list.clone(), true),
                _ => return Err(ON_SHAPE.into()),
            },
            _ => return Err(ON_SHAPE.into()),
        };
        if filters.is_empty() {
            return Err("`on` lists no event filter".into());
        }
        let filters = filters
            .iter()
            .map(|f| {
                let Some(Value::Object(with)) = f.get("with") else {
                    return Err(format!("an event filter is `{{\"with\": {{…}}}}`, not {f}"));
                };
                with.iter()
                    .map(|(name, value)| {
                        let matcher = match value.as_str() {
                            Some(s) if s.contains("${") => {
                                return Err(format!(
                                    "the event attribute `{name}` is an expression; a schedule matches written values"
                                ));
                            }
                            Some(s) => match regex::Regex::new(&format!("^(?:{s})$")) {
                                Ok(re) => Matcher::Pattern(s.to_string(), re),
                                Err(_) => Matcher::Exact(value.clone()),
                            },
                            None => Matcher::Exact(value.clone()),
                        };
                        Ok((name.clone(), matcher))
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Events { filters, all })
    }

    fn matches(filter: &[(String, Matcher)], event: &Value) -> bool {
        filter.iter().all(|(name, m)| {
            let actual = event.get(name).unwrap_or(&Value::Null);
            match m {
                Matcher::Exact(v) => actual == v,
                Matcher::Pattern(s, re) => {
                    actual.as_str().is_some_and(|a| a == s || re.is_match(a))
                }
            }
        })
    }

    /// Offers an event: the events to start an execution with, when it completes a
    /// set; `pending` keeps, for `all`, the event each filter took so far.
    pub fn offer(&self, event: &Value, pending: &mut Vec<Value>) -> Option<Vec<Value>> {
        if !self.all {
            return self
                .filters
                .iter()
                .any(|f| Events::matches(f, event))
                .then(|| vec![event.clone()]);
        }
        pending.resize(self.filters.len(), Value::Null);
        let slot = self
            .filters
            .iter()
            .enumerate()
            .position(|(i, f)| pending[i].is_null() && Events::matches(f, event))?;
        pending[slot] = event.clone();
        if pending.iter().all(|e| !e.is_null()) {
            return Some(std::mem::take(pending));
        }
        None
    }
}

const ON_SHAPE: &str =
    "`on` is `{\"one\": filter}`, `{\"any\": [filters]}` or `{\"all\": [filters]}`";

/// The id of the execution an event starts: the schedule's and the event's, so the same
/// event posted again is the same execution.
pub fn event_execution_id(schedule: &str, event: &Value) -> String {
    let id: String = event["id"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut full = format!("{schedule}-event-{id}");
    full.truncate(128);
    full
}

/// A cron expression (5 fields, or 6 with seconds first) in a time zone.
#[derive(Clone, Debug)]
pub struct Cron {
    pub text: String,
    pub zone: String,
    schedule: jiff_cron::Schedule,
    tz: TimeZone,
}

impl PartialEq for Cron {
    fn eq(&self, other: &Cron) -> bool {
        self.text == other.text && self.zone == other.zone
    }
}

impl Cron {
    /// Parses `text` (`0 9 * * MON-FRI`, or with seconds first) in time zone `zone`
    /// (an IANA name such as `Europe/Paris`; `UTC` by default).
    pub fn parse(text: &str, zone: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let with_seconds = match fields.len() {
            5 => {
                let mut f = vec!["0"];
                f.extend(&fields);
                f
            }
            6 => fields.clone(),
            n => {
                return Err(format!(
                    "`{text}` has {n} fields; write five (minute hour day month weekday) or \
                     six (seconds first)"
                ));
            }
        };
        let mut spec: Vec<String> = with_seconds.iter().map(|s| s.to_string()).collect();
        spec[5] = weekdays(&spec[5])?;
        let schedule = jiff_cron::Schedule::from_str(&spec.join(" "))
            .map_err(|e| format!("`{text}` is not a cron expression: {e}"))?;
        let tz = TimeZone::get(zone).map_err(|e| format!("unknown time zone `{zone}`: {e}"))?;
        Ok(Cron {
            text: text.to_string(),
            zone: zone.to_string(),
            schedule,
            tz,
        })
    }

    /// The first time strictly after `after`.
    fn next(&self, after: Millis) -> Option<Millis> {
        let from = Timestamp::from_millisecond(after)
            .ok()?
            .to_zoned(self.tz.clone());
        self.schedule
            .after(from)
            .next()
            .map(|z| z.timestamp().as_millisecond())
    }
}

/// The weekday field in the cron crate's numbering: standard cron counts 0 (or 7) for
/// Sunday to 6 for Saturday; the parser counts 1 for Sunday. Numbers become names.
fn weekdays(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let name = |s: &str| -> Result<String, String> {
        match s.parse::<usize>() {
            Ok(n) if n < NAMES.len() => Ok(NAMES[n].to_string()),
            Ok(n) => Err(format!("weekday {n} is not 0 to 7")),
            Err(_) => Ok(s.to_string()),
        }
    };
    let mut items = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let mapped = match range.split_once('-') {
            // A range up to 7 (Sunday) ends on Saturday, and Sunday is added apart.
            Some((a, "7")) if step.is_none() && a != "0" && a != "7" => {
                format!("{}-SAT,SUN", name(a)?)
            }
            Some((a, b)) => format!("{}-{}", name(a)?, name(b)?),
            None => name(range)?,
        };
        items.push(match step {
            Some(s) => format!("{mapped}/{s}"),
            None => mapped,
        });
    }
    Ok(items.join(","))
}

impl Trigger {
    /// The first slot strictly after `after`, for `every` and `cron`.
    pub fn next_slot(&self, after: Millis) -> Option<Millis> {
        match self {
            Trigger::Every(every) => Some((after.div_euclid(*every) + 1) * every),
            Trigger::Cron(cron) => cron.next(after),
            Trigger::After(_) | Trigger::On(_) => None,
        }
    }
}

/// Which missed slots run after downtime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Catchup {
    /// None: only a slot that is on time (late by less than [`GRACE_MS`]) starts.
    #[default]
    Skip,
    /// The latest of them.
    One,
    /// All of them, up to a bound (the most recent ones).
    All,
}

impl Catchup {
    pub fn as_str(self) -> &'static str {
        match self {
            Catchup::Skip => "skip",
            Catchup::One => "one",
            Catchup::All => "all",
        }
    }
}

/// What a slot does while the schedule's previous execution still runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// It is skipped.
    #[default]
    Skip,
    /// The latest such slot waits and starts when the running one ends.
    Buffer,
    /// It starts anyway.
    Allow,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Buffer => "buffer",
            Overlap::Allow => "allow",
        }
    }
}

/// What the loop keeps between ticks, in the store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Every slot up to this time has been decided (started, skipped or buffered).
    pub cursor: Millis,
    /// A slot waiting for the running execution to end (`overlap: buffer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffered: Option<Millis>,
    /// The execution started last, and for `after` when the next may start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<Millis>,
    /// For `on` with `all`: the event each filter took so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<serde_json::Value>,
    /// Executions started, and slots skipped, since the schedule was created.
    #[serde(default)]
    pub started: u64,
    #[serde(default)]
    pub skipped: u64,
}

/// A schedule's decision at one moment.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    /// The slots to start, oldest first (for `after`, the run number).
    pub start: Vec<Millis>,
    pub state: State,
}

/// The policies of a schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Policies {
    pub catchup: Catchup,
    /// The most slots `catchup: all` starts at once.
    pub catchup_limit: u32,
    pub overlap: Overlap,
}

/// Decides what an `every` or `cron` schedule starts at `now`, given whether the
/// execution it started last is still running. Slots at or before `state.cursor` were
/// decided before; the new cursor is `now`.
pub fn decide(
    trigger: &Trigger,
    policies: Policies,
    state: &State,
    now: Millis,
    running: bool,
) -> Decision {
    let mut next = state.clone();
    next.cursor = now.max(state.cursor);
    // The slots since the cursor, the most recent kept when there are many.
    let keep = match policies.catchup {
        Catchup::All => policies.catchup_limit.max(1) as usize,
        _ => 1,
    };
    let mut slots: std::collections::VecDeque<Millis> = Default::default();
    let mut missed = 0u64;
    let mut at = state.cursor;
    while let Some(slot) = trigger.next_slot(at) {
        if slot > now {
            break;
        }
        if slots.len() == keep {
            slots.pop_front();
            missed += 1;
        }
        slots.push_back(slot);
        at = slot;
    }
    let latest = slots.back().copied();
    let chosen: Vec<Millis> = match policies.catchup {
        Catchup::Skip => {
            let on_time = latest.filter(|s| now - s <= GRACE_MS);
            missed += slots.len() as u64 - u64::from(on_time.is_some());
            on_time.into_iter().collect()
        }
        Catchup::One | Catchup::All => slots.into_iter().collect(),
    };
    next.skipped += missed;

    let mut start = Vec::new();
    let mut pending = chosen.into_iter();
    // A buffered slot goes first once nothing runs.
    if !running && let Some(buffered) = next.buffered.take() {
        start.push(buffered);
    }
    for slot in pending.by_ref() {
        let busy = running || (!start.is_empty() && policies.overlap != Overlap::Allow);
        if !busy {
            start.push(slot);
            continue;
        }
        match policies.overlap {
            Overlap::Allow => start.push(slot),
            Overlap::Skip => next.skipped += 1,
            Overlap::Buffer => {
                if next.buffered.replace(slot).is_some() {
                    next.skipped += 1;
                }
            }
        }
    }
    next.started += start.len() as u64;
    Decision { start, state: next }
}

/// Decides whether an `after` schedule starts its next run at `now`: `ended` is when
/// its last execution ended (`None` while it runs, or before the first).
pub fn decide_after(
    after: Millis,
    state: &State,
    now: Millis,
    last_ended: Option<Millis>,
    running: bool,
) -> Decision {
    // `after` keeps no cursor: only its last run and its next moment.
    let mut next = state.clone();
    if running {
        return Decision {
            start: Vec::new(),
            state: next,
        };
    }
    let due = match (&state.last, last_ended) {
        (None, _) => state.next_at.unwrap_or(now),
        (Some(_), Some(ended)) => ended + after,
        // The last one's end is not known: wait for it.
        (Some(_), None) => {
            return Decision {
                start: Vec::new(),
                state: next,
            };
        }
    };
    next.next_at = Some(due);
    if now < due {
        return Decision {
            start: Vec::new(),
            state: next,
        };
    }
    let run = next.started as Millis + 1;
    next.started += 1;
    Decision {
        start: vec![run],
        state: next,
    }
}

/// The next `n` times of an `every` or `cron` trigger after `after`.
pub fn upcoming(trigger: &Trigger, after: Millis, n: usize) -> Vec<Millis> {
    let mut times = Vec::with_capacity(n);
    let mut at = after;
    while times.len() < n {
        match trigger.next_slot(at) {
            Some(t) => {
                times.push(t);
                at = t;
            }
            None => break,
        }
    }
    times
}

/// The id of the execution a slot starts: the schedule's id and the slot's time (UTC,
/// to the second), or for `after` its run number; the same slot always gets the same
/// id, so no slot starts twice.
pub fn execution_id(schedule: &str, trigger: &Trigger, slot: Millis) -> String {
    match trigger {
        Trigger::After(_) | Trigger::On(_) => format!("{schedule}-run-{slot}"),
        _ => {
            let at = Timestamp::from_millisecond(slot).unwrap_or(Timestamp::UNIX_EPOCH);
            format!("{schedule}-{}", at.strftime("%Y%m%dT%H%M%SZ"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Millis = 1000;
    const MIN: Millis = 60 * S;

    fn policies(catchup: Catchup, overlap: Overlap) -> Policies {
        Policies {
            catchup,
            catchup_limit: 3,
            overlap,
        }
    }

    fn at(cursor: Millis) -> State {
        State {
            cursor,
            ..State::default()
        }
    }

    #[test]
    fn every_starts_each_slot_once_as_the_clock_moves() {
        let every = Trigger::Every(10 * S);
        let p = policies(Catchup::Skip, Overlap::Allow);
        let mut state = at(1_000 * S + 1);
        let mut started = Vec::new();
        // A manual clock, ticking every 3 s for a minute.
        for tick in 1..=20 {
            let d = decide(&every, p, &state, 1_000 * S + tick * 3 * S, false);
            started.extend(d.start);
            state = d.state;
        }
        assert_eq!(
            started,
            [
                1_010 * S,
                1_020 * S,
                1_030 * S,
                1_040 * S,
                1_050 * S,
                1_060 * S
            ]
        );
        assert_eq!((state.started, state.skipped), (6, 0));
    }

    #[test]
    fn catchup_after_downtime() {
        let every = Trigger::Every(MIN);
        // Down from 0 to 10 minutes and 30 s: slots 1 to 10 minutes are past.
        let now = 10 * MIN + 30 * S;
        let skip = decide(
            &every,
            policies(Catchup::Skip, Overlap::Allow),
            &at(0),
            now,
            false,
        );
        // The 10-minute slot is 30 s late: within the grace, on time.
        assert_eq!(skip.start, [10 * MIN]);
        assert_eq!(skip.state.skipped, 9);
        let one = decide(
            &every,
            policies(Catchup::One, Overlap::Allow),
            &at(0),
            now + 2 * MIN - 30 * S,
            false,
        );
        assert_eq!(one.start, [12 * MIN]);
        let late = decide(
            &every,
            policies(Catchup::Skip, Overlap::Allow),
            &at(0),
            10 * MIN + 2 * MIN,
            false,
        );
        assert_eq!(late.start, [12 * MIN]);
        // Every two minutes, the latest slot more than a minute late: all are missed.
        let every2 = Trigger::Every(2 * MIN);
        let far = decide(
            &every2,
            policies(Catchup::Skip, Overlap::Allow),
            &at(0),
            12 * MIN + 61 * S,
            false,
        );
        assert!(far.start.is_empty(), "{far:?}");
        assert_eq!(far.state.skipped, 6);
        // All, bounded to the three most recent.
        let all = decide(
            &every,
            policies(Catchup::All, Overlap::Allow),
            &at(0),
            now,
            false,
        );
        assert_eq!(all.start, [8 * MIN, 9 * MIN, 10 * MIN]);
        assert_eq!((all.state.started, all.state.skipped), (3, 7));
        assert_eq!(all.state.cursor, now);
    }

    #[test]
    fn overlap_skip_buffer_allow() {
        let every = Trigger::Every(MIN);
        let now = MIN + S;
        let skip = decide(
            &every,
            policies(Catchup::Skip, Overlap::Skip),
            &at(0),
            now,
            true,
        );
        assert!(skip.start.is_empty());
        assert_eq!(skip.state.skipped, 1);
        let allow = decide(
            &every,
            policies(Catchup::Skip, Overlap::Allow),
            &at(0),
            now,
            true,
        );
        assert_eq!(allow.start, [MIN]);

        let p = policies(Catchup::Skip, Overlap::Buffer);
        let held = decide(&every, p, &at(0), now, true);
        assert!(held.start.is_empty());
        assert_eq!(held.state.buffered, Some(MIN));
        // Still running at the next slot: the newer one replaces it.
        let held2 = decide(&every, p, &held.state, 2 * MIN + S, true);
        assert_eq!(
            (held2.state.buffered, held2.state.skipped),
            (Some(2 * MIN), 1)
        );
        // It ends: the buffered slot starts at the next tick, before any new slot.
        let freed = decide(&every, p, &held2.state, 2 * MIN + 2 * S, false);
        assert_eq!(freed.start, [2 * MIN]);
        assert_eq!(freed.state.buffered, None);

        // Catch-up of several slots with nothing running: under skip or buffer only one
        // runs at a time.
        let all = |o| {
            decide(
                &every,
                Policies {
                    catchup: Catchup::All,
                    catchup_limit: 3,
                    overlap: o,
                },
                &at(0),
                3 * MIN + S,
                false,
            )
        };
        assert_eq!(all(Overlap::Skip).start, [MIN]);
        assert_eq!(all(Overlap::Skip).state.skipped, 2);
        assert_eq!(all(Overlap::Buffer).start, [MIN]);
        assert_eq!(all(Overlap::Buffer).state.buffered, Some(3 * MIN));
        assert_eq!(all(Overlap::Allow).start, [MIN, 2 * MIN, 3 * MIN]);
    }

    #[test]
    fn after_waits_for_the_last_run_to_end() {
        let first = decide_after(5 * S, &State::default(), 100 * S, None, false);
        assert_eq!(first.start, [1]);
        let mut state = first.state;
        state.last = Some("s-run-1".into());
        let running = decide_after(5 * S, &state, 101 * S, None, true);
        assert!(running.start.is_empty());
        // Ended at 110 s: the next at 115 s.
        let early = decide_after(5 * S, &state, 112 * S, Some(110 * S), false);
        assert!(early.start.is_empty());
        assert_eq!(early.state.next_at, Some(115 * S));
        let due = decide_after(5 * S, &early.state, 115 * S, Some(110 * S), false);
        assert_eq!(due.start, [2]);
    }

    #[test]
    fn cron_in_a_time_zone_with_standard_weekdays() {
        // Mondays to Fridays at 09:00 in Paris; 2026-12-07 is a Monday.
        let cron = Trigger::Cron(Box::new(
            Cron::parse("0 9 * * 1-5", "Europe/Paris").unwrap(),
        ));
        let monday = Timestamp::from_str("2026-12-07T00:00:00Z")
            .unwrap()
            .as_millisecond();
        let times: Vec<String> = upcoming(&cron, monday, 6)
            .into_iter()
            .map(|t| Timestamp::from_millisecond(t).unwrap().to_string())
            .collect();
        assert_eq!(
            times,
            [
                "2026-12-07T08:00:00Z",
                "2026-12-08T08:00:00Z",
                "2026-12-09T08:00:00Z",
                "2026-12-10T08:00:00Z",
                "2026-12-11T08:00:00Z",
                "2026-12-14T08:00:00Z",
            ]
        );
        // Sundays, written 0 or 7; six fields with seconds.
        for text in ["0 12 * * 0", "0 12 * * 7", "0 0 12 * * SUN"] {
            let sunday = Trigger::Cron(Box::new(Cron::parse(text, "UTC").unwrap()));
            let t = Timestamp::from_millisecond(sunday.next_slot(monday).unwrap()).unwrap();
            assert_eq!(t.to_string(), "2026-12-13T12:00:00Z", "{text}");
        }
        assert_eq!(weekdays("5-7").unwrap(), "FRI-SAT,SUN");
        assert!(Cron::parse("0 9 * *", "UTC").is_err());
        assert!(Cron::parse("0 9 * * 1", "Mars/Olympus").is_err());
        assert!(Cron::parse("0 9 * * 9", "UTC").is_err());
    }

    #[test]
    fn events_start_one_each_or_all_together() {
        let any = Events::parse(&serde_json::json!({"any": [
            {"with": {"type": "order.placed"}},
            {"with": {"type": "order\\..*", "source": "shop"}},
        ]}))
        .unwrap();
        let mut pending = Vec::new();
        let placed = serde_json::json!({"id": "1", "type": "order.placed", "source": "web"});
        assert_eq!(any.offer(&placed, &mut pending), Some(vec![placed.clone()]));
        let paid = serde_json::json!({"id": "2", "type": "order.paid", "source": "shop"});
        assert!(any.offer(&paid, &mut pending).is_some());
        let elsewhere = serde_json::json!({"id": "3", "type": "order.paid", "source": "web"});
        assert_eq!(any.offer(&elsewhere, &mut pending), None);

        let all = Events::parse(&serde_json::json!({"all": [
            {"with": {"type": "a"}},
            {"with": {"type": "b"}},
        ]}))
        .unwrap();
        let (a, b) = (
            serde_json::json!({"type": "a"}),
            serde_json::json!({"type": "b"}),
        );
        assert_eq!(all.offer(&a, &mut pending), None);
        // A second `a` waits for a `b` as the first did: it takes no place.
        assert_eq!(all.offer(&a, &mut pending), None);
        assert_eq!(
            all.offer(&b, &mut pending),
            Some(vec![a.clone(), b.clone()])
        );
        assert!(pending.is_empty());

        for bad in [
            serde_json::json!({"every": []}),
            serde_json::json!({"any": []}),
            serde_json::json!({"one": {"type": "x"}}),
            serde_json::json!({"one": {"with": {"type": "${ .x }"}}}),
        ] {
            assert!(Events::parse(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            event_execution_id("orders", &serde_json::json!({"id": "a/b c"})),
            "orders-event-a_b_c"
        );
    }

    #[test]
    fn ids_name_the_slot() {
        let every = Trigger::Every(MIN);
        let t = Timestamp::from_str("2026-12-07T13:15:00Z")
            .unwrap()
            .as_millisecond();
        assert_eq!(
            execution_id("nightly", &every, t),
            "nightly-20261207T131500Z"
        );
        assert_eq!(execution_id("loop", &Trigger::After(S), 3), "loop-run-3");
    }
}
