//! What one evaluation of an expression may use: evaluation steps, bytes of values
//! built, nesting depth and wall-clock time. The budget belongs to the expression
//! interface, so every language behind [`crate::Expression`] is held to the same one.
//!
//! A [`Budget`] travels with the [`crate::Vars`] of an evaluation. While an
//! evaluation runs, a meter on its thread counts what it has used; the evaluator
//! charges it as it produces values and iterates ([`charge_steps`],
//! [`charge_bytes`], [`check_depth`]). Past a limit every later charge fails, so the
//! evaluation stops at its next step, and [`Budget::run`] reports the limit, even if
//! the language caught the error it was given (jq's `try`).
//!
//! Most expressions are cheap. [`Budget::run`] therefore first tries a small slice of
//! the budget on the calling thread; only an expression that needs more runs again,
//! from the start, with the whole budget, through the budget's `offload` hook (the
//! engine moves it off the async runtime's worker threads there, a few at a time).
//! One that went over a limit the whole budget has too (nesting, or one charge larger
//! than the whole budget) faults at once. Evaluation is pure, so running it twice
//! gives the same value.

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

/// How much one evaluation may use. [`Budget::default`] is the documented default,
/// far above what any honest workflow needs (see `docs/limits.md`).
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Evaluation steps: values produced, elements iterated, operations applied,
    /// rounds of a recursive generator (`repeat`, `recurse`, `while`, `until`).
    pub steps: u64,
    /// Bytes of values built: string bytes, 16 per array element, 48 per object
    /// entry. Values the expression only reads (its input, `$context`) cost nothing.
    pub bytes: u64,
    /// Wall-clock time of the evaluation: of each attempt, not counting a wait for
    /// the offload hook's turn.
    pub time: Duration,
    /// Where an evaluation that outgrows its first slice runs again with the whole
    /// budget; `None` runs it in place (and skips the slice).
    pub offload: Option<Offload>,
}

/// Runs `work` to its end, somewhere it may block for a while.
pub type Offload = fn(work: &mut dyn FnMut());

impl Budget {
    pub const DEFAULT_STEPS: u64 = 10_000_000;
    pub const DEFAULT_BYTES: u64 = 64 * 1024 * 1024;
    pub const DEFAULT_TIME: Duration = Duration::from_secs(5);

    /// The part of a budget tried first, in place.
    const SLICE_STEPS: u64 = 50_000;
    const SLICE_BYTES: u64 = 4 * 1024 * 1024;
    const SLICE_TIME: Duration = Duration::from_millis(5);

    /// No limit at all; for tools that evaluate trusted text.
    pub const UNLIMITED: Budget = Budget {
        steps: u64::MAX,
        bytes: u64::MAX,
        time: Duration::from_secs(60 * 60 * 24 * 365),
        offload: None,
    };

    /// This budget, with `offload` as where large evaluations go.
    pub fn with_offload(self, offload: Offload) -> Budget {
        Budget {
            offload: Some(offload),
            ..self
        }
    }

    /// Runs `evaluate` under this budget on the calling thread's meter: `Ok` with its
    /// result if it stayed within every limit, else the limit it went over.
    pub fn run<T>(&self, mut evaluate: impl FnMut() -> T) -> Result<T, Exceeded> {
        // An evaluation inside another (a Cloud Workflows subworkflow called from an
        // expression) counts against the one under way, on its meter.
        if let Some(meter) = METER.with(Cell::get) {
            let value = evaluate();
            let over = METER.with(Cell::get).map_or(meter.over, |m| m.over);
            return match over {
                None => Ok(value),
                Some(limit) => Err(Exceeded {
                    limit,
                    budget: self.value_of(limit),
                }),
            };
        }
        let Some(offload) = self.offload else {
            return self
                .attempt(&mut evaluate)
                .map_err(|(exceeded, _)| exceeded);
        };
        let slice = Budget {
            steps: self.steps.min(Self::SLICE_STEPS),
            bytes: self.bytes.min(Self::SLICE_BYTES),
            time: self.time.min(Self::SLICE_TIME),
            offload: None,
        };
        match slice.attempt(&mut evaluate) {
            // Over a limit of the slice that the whole budget would have allowed: again,
            // with all of it.
            Err((exceeded, refused)) if self.allows_more(&slice, exceeded.limit, refused) => {
                let mut outcome = None;
                offload(&mut || outcome = Some(self.attempt(&mut evaluate)));
                let outcome = outcome.expect("the offload hook runs the work it is given");
                outcome.map_err(|(exceeded, _)| exceeded)
            }
            // Over a limit the whole budget has too: the same fault, named with its value.
            Err((exceeded, _)) => Err(Exceeded {
                budget: self.value_of(exceeded.limit),
                ..exceeded
            }),
            Ok(value) => Ok(value),
        }
    }

    /// Whether running again with this budget could get past `limit`, where `slice`
    /// stopped after refusing a charge of `refused` bytes (0 if it was not a charge of
    /// bytes that stopped it).
    fn allows_more(&self, slice: &Budget, limit: Limit, refused: u64) -> bool {
        match limit {
            Limit::Steps => slice.steps < self.steps,
            Limit::Bytes => slice.bytes < self.bytes && refused <= self.bytes,
            Limit::Time => slice.time < self.time,
            Limit::Depth => false,
        }
    }

    /// The value of `limit` in this budget, for messages.
    fn value_of(&self, limit: Limit) -> u64 {
        match limit {
            Limit::Steps => self.steps,
            Limit::Bytes => self.bytes,
            Limit::Time => self.time.as_millis().try_into().unwrap_or(u64::MAX),
            Limit::Depth => crate::MAX_DEPTH as u64,
        }
    }

    /// One evaluation under this budget, its clock starting now; past a limit, which
    /// one, and the bytes of the charge refused if it was a charge of bytes.
    fn attempt<T>(&self, evaluate: &mut impl FnMut() -> T) -> Result<T, (Exceeded, u64)> {
        let meter = Meter {
            steps: self.steps,
            bytes: self.bytes,
            deadline: Instant::now().checked_add(self.time),
            until_clock: CLOCK_EVERY,
            over: None,
            refused: 0,
        };
        let outer = METER.replace(Some(meter));
        let value = evaluate();
        let used = METER
            .replace(outer)
            .expect("the meter stays installed while evaluating");
        match used.over {
            None => Ok(value),
            Some(limit) => Err((
                Exceeded {
                    limit,
                    budget: self.value_of(limit),
                },
                used.refused,
            )),
        }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            steps: Self::DEFAULT_STEPS,
            bytes: Self::DEFAULT_BYTES,
            time: Self::DEFAULT_TIME,
            offload: None,
        }
    }
}

/// The limit an evaluation went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Steps,
    Bytes,
    Time,
    /// A value nested deeper than [`crate::MAX_DEPTH`].
    Depth,
}

impl Limit {
    /// The name of the setting that raises it, as `docs/limits.md` lists it.
    pub fn setting(self) -> &'static str {
        match self {
            Limit::Steps => "expression-steps",
            Limit::Bytes => "expression-bytes",
            Limit::Time => "expression-time",
            Limit::Depth => "(fixed)",
        }
    }

    /// The HTTP-style status of the fault: 413 for what is too big, 400 otherwise.
    pub fn status(self) -> u16 {
        match self {
            Limit::Bytes | Limit::Depth => 413,
            Limit::Steps | Limit::Time => 400,
        }
    }
}

/// An evaluation that went over its budget: which limit, and what it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Exceeded {
    pub limit: Limit,
    /// The limit's value: steps, bytes, milliseconds or levels.
    pub budget: u64,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let budget = self.budget;
        match self.limit {
            Limit::Steps => write!(
                f,
                "the expression went over its budget of {budget} evaluation steps \
                 (setting `{}`)",
                self.limit.setting()
            ),
            Limit::Bytes => write!(
                f,
                "the expression built more than its budget of {budget} bytes of values \
                 (setting `{}`)",
                self.limit.setting()
            ),
            Limit::Time => write!(
                f,
                "the expression ran longer than its budget of {budget} ms (setting `{}`)",
                self.limit.setting()
            ),
            Limit::Depth => write!(
                f,
                "the expression built a value nested deeper than {budget} levels"
            ),
        }
    }
}

/// What the running evaluation has left.
#[derive(Clone, Copy)]
struct Meter {
    steps: u64,
    bytes: u64,
    deadline: Option<Instant>,
    /// Steps until the clock is read again.
    until_clock: u32,
    over: Option<Limit>,
    /// The charge of bytes that went over, if one did.
    refused: u64,
}

/// Reading the clock costs more than a step, so it is read every this many steps.
const CLOCK_EVERY: u32 = 1024;

thread_local! {
    static METER: Cell<Option<Meter>> = const { Cell::new(None) };
}

/// Charges through `f`, which returns the limit it went over, if any. Without a meter
/// (no evaluation under way on this thread) nothing is counted.
fn charge(f: impl FnOnce(&mut Meter) -> Option<Limit>) -> Result<(), Limit> {
    METER.with(|cell| {
        let Some(mut meter) = cell.get() else {
            return Ok(());
        };
        if let Some(limit) = meter.over {
            return Err(limit);
        }
        let over = f(&mut meter);
        meter.over = over;
        cell.set(Some(meter));
        over.map_or(Ok(()), Err)
    })
}

/// Charges `n` evaluation steps; every [`CLOCK_EVERY`] steps also checks the deadline.
pub fn charge_steps(n: u64) -> Result<(), Limit> {
    charge(|m| {
        if m.steps < n {
            return Some(Limit::Steps);
        }
        m.steps -= n;
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        if m.until_clock > n {
            m.until_clock -= n;
            return None;
        }
        m.until_clock = CLOCK_EVERY;
        m.deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
            .then_some(Limit::Time)
    })
}

/// Charges `n` bytes of values built.
pub fn charge_bytes(n: u64) -> Result<(), Limit> {
    charge(|m| {
        if m.bytes < n {
            m.refused = n;
            return Some(Limit::Bytes);
        }
        m.bytes -= n;
        None
    })
}

/// Fails (and stops the evaluation) if a value `depth` levels deep is too deep.
pub fn check_depth(depth: usize) -> Result<(), Limit> {
    if depth <= crate::MAX_DEPTH {
        return Ok(());
    }
    charge(|_| Some(Limit::Depth))
}
