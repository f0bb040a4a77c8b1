//! The value type jq expressions run on: jaq's JSON value, counted. Every value an
//! expression builds, every element it iterates and every operation it applies goes
//! through [`Metered`], which charges the evaluation's budget
//! ([`crate::budget`]) before the work and keeps an upper bound of the value's
//! nesting depth, so that no expression can build more, deeper or for longer than
//! it was given. jaq's own filters that are written for its value type alone
//! (`length`, `tojson`, …) are written here again over this one ([`natives`]), with
//! the work they do charged too, and the recursive generators of jaq's prelude
//! (`repeat`, `recurse`, `while`, `until`) are replaced by ones that charge a step
//! per round ([`FUELED_DEFS`]).

use std::cmp::Ordering;
use std::fmt;
use std::rc::Rc;

use jaq_core::native::{Filter, Fun, bome, run, unary, v};
use jaq_core::path::Opt;
use jaq_core::{DataT, Error, Exn, RunPtr, ValR, ValX};
use jaq_json::{Num, Val};
use jaq_std::ValT as _;

use crate::budget::{self, Limit};

/// What an array element costs, in bytes of the budget.
const ELEMENT_BYTES: u64 = 16;
/// What an object entry costs.
const ENTRY_BYTES: u64 = 48;

/// A jaq value with an upper bound of how deeply it nests (0 for a scalar).
#[derive(Clone, Debug, Default)]
pub(crate) struct Metered {
    pub(crate) val: Val,
    depth: u16,
}

impl Metered {
    /// A value read from outside the evaluation, nesting `depth` levels.
    pub(crate) fn new(val: Val, depth: usize) -> Metered {
        Metered {
            val,
            depth: depth.try_into().unwrap_or(u16::MAX),
        }
    }

    fn scalar(val: Val) -> Metered {
        Metered { val, depth: 0 }
    }

    /// A value found inside `self` (an element, a field): at most one level shallower.
    fn child(&self, val: Val) -> Metered {
        let depth = match val {
            Val::Arr(_) | Val::Obj(_) => self.depth.saturating_sub(1).max(1),
            _ => 0,
        };
        Metered { val, depth }
    }

    /// A container holding values nested at most `inner` deep.
    fn container(val: Val, inner: u16) -> Result<Metered, Error<Metered>> {
        let depth = inner.saturating_add(1);
        budget::check_depth(depth.into()).map_err(over)?;
        Ok(Metered { val, depth })
    }

    /// A string of `bytes`, charged.
    fn string(val: Val, bytes: usize) -> Result<Metered, Error<Metered>> {
        budget::charge_bytes(bytes as u64).map_err(over)?;
        Ok(Metered::scalar(val))
    }

    fn len(&self) -> usize {
        match &self.val {
            Val::Arr(a) => a.len(),
            Val::Obj(o) => o.len(),
            Val::TStr(b) | Val::BStr(b) => b.len(),
            _ => 0,
        }
    }
}

/// The error a charge past a limit turns into. [`budget::Budget::run`] reports the
/// limit itself; this only stops the evaluation.
fn over(limit: Limit) -> Error<Metered> {
    Error::str(format_args!("over the expression budget ({limit:?})"))
}

fn step() -> Result<(), Error<Metered>> {
    budget::charge_steps(1).map_err(over)
}

/// An error of jaq's value type, as one of ours (keeping its text).
fn lift(error: Error<Val>) -> Error<Metered> {
    Error::str(error)
}

fn lift_r(result: ValR<Val>) -> Result<Val, Error<Metered>> {
    result.map_err(lift)
}

/// What `+`, `-`, `*` and `/` build, beyond their operands, for the budget; `l` is
/// reused in place when nothing else holds it.
fn built_bytes(l: &Val, r: &Val) -> u64 {
    match (l, r) {
        (Val::TStr(a) | Val::BStr(a), Val::TStr(b) | Val::BStr(b)) => {
            (if a.is_unique() { 0 } else { a.len() } + b.len()) as u64
        }
        (Val::Arr(a), Val::Arr(b)) => {
            (if Rc::strong_count(a) == 1 { 0 } else { a.len() } + b.len()) as u64 * ELEMENT_BYTES
        }
        (Val::Obj(a), Val::Obj(b)) => {
            (if Rc::strong_count(a) == 1 { 0 } else { a.len() } + b.len()) as u64 * ENTRY_BYTES
        }
        _ => 0,
    }
}

/// The result of an operation on `l` and `r`, with the depth of the deeper one.
fn combined(l_depth: u16, r_depth: u16, val: Val) -> Metered {
    let depth = match val {
        Val::Arr(_) | Val::Obj(_) => l_depth.max(r_depth).max(1),
        _ => 0,
    };
    Metered { val, depth }
}

impl fmt::Display for Metered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.val.fmt(f)
    }
}

impl PartialEq for Metered {
    fn eq(&self, other: &Self) -> bool {
        self.val == other.val
    }
}

impl Eq for Metered {}

impl PartialOrd for Metered {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Metered {
    fn cmp(&self, other: &Self) -> Ordering {
        self.val.cmp(&other.val)
    }
}

impl From<bool> for Metered {
    fn from(b: bool) -> Self {
        Metered::scalar(Val::from(b))
    }
}

impl From<isize> for Metered {
    fn from(i: isize) -> Self {
        Metered::scalar(Val::from(i))
    }
}

impl From<usize> for Metered {
    fn from(i: usize) -> Self {
        Metered::scalar(Val::from(i))
    }
}

impl From<f64> for Metered {
    fn from(f: f64) -> Self {
        Metered::scalar(Val::from(f))
    }
}

/// Infallible, so a string over the budget is still made; the charge has stopped the
/// evaluation by then, and nothing it returns is kept.
impl From<String> for Metered {
    fn from(s: String) -> Self {
        let _ = budget::charge_bytes(s.len() as u64);
        Metered::scalar(Val::from(s))
    }
}

impl From<jaq_core::val::Range<Metered>> for Metered {
    fn from(range: jaq_core::val::Range<Metered>) -> Self {
        let depth = [&range.start, &range.end]
            .into_iter()
            .flatten()
            .map(|m| m.depth)
            .max()
            .unwrap_or(0);
        let val = Val::from(range.start.map(|m| m.val)..range.end.map(|m| m.val));
        Metered {
            val,
            depth: depth.saturating_add(1),
        }
    }
}

/// Collecting stops early once the budget is spent: the evaluation has failed by
/// then, and its partial array is never seen.
impl FromIterator<Metered> for Metered {
    fn from_iter<T: IntoIterator<Item = Metered>>(iter: T) -> Self {
        let mut depth = 0;
        let items: Vec<Val> = iter
            .into_iter()
            .take_while(|_| {
                budget::charge_steps(1).is_ok() && budget::charge_bytes(ELEMENT_BYTES).is_ok()
            })
            .map(|m| {
                depth = depth.max(m.depth);
                m.val
            })
            .collect();
        let depth = depth.saturating_add(1);
        let _ = budget::check_depth(depth.into());
        Metered {
            val: Val::Arr(Rc::new(items)),
            depth,
        }
    }
}

macro_rules! arithmetic {
    ($trait:ident, $method:ident) => {
        impl std::ops::$trait for Metered {
            type Output = ValR<Metered>;
            fn $method(self, rhs: Self) -> Self::Output {
                step()?;
                budget::charge_bytes(built_bytes(&self.val, &rhs.val)).map_err(over)?;
                let val = lift_r(std::ops::$trait::$method(self.val, rhs.val))?;
                Ok(combined(self.depth, rhs.depth, val))
            }
        }
    };
}

arithmetic!(Add, add);
arithmetic!(Sub, sub);
arithmetic!(Div, div);
arithmetic!(Rem, rem);

impl std::ops::Mul for Metered {
    type Output = ValR<Metered>;
    fn mul(self, rhs: Self) -> Self::Output {
        step()?;
        // A string times n is built in one piece: charge it before it exists.
        // (Only an integer repeats a string; anything else is an error of jaq's.)
        let repeated = match (&self.val, &rhs.val) {
            (Val::TStr(s) | Val::BStr(s), n @ Val::Num(_))
            | (n @ Val::Num(_), Val::TStr(s) | Val::BStr(s))
                if n.is_int() =>
            {
                let times = n.as_isize().unwrap_or(isize::MAX).max(0) as u64;
                (s.len() as u64).saturating_mul(times)
            }
            (l, r) => built_bytes(l, r),
        };
        budget::charge_bytes(repeated).map_err(over)?;
        let val = lift_r(self.val * rhs.val)?;
        Ok(combined(self.depth, rhs.depth, val))
    }
}

impl std::ops::Neg for Metered {
    type Output = ValR<Metered>;
    fn neg(self) -> Self::Output {
        step()?;
        Ok(Metered::scalar(lift_r(-self.val)?))
    }
}

impl jaq_core::ValT for Metered {
    fn from_num(n: &str) -> ValR<Self> {
        Ok(Metered::scalar(lift_r(Val::from_num(n))?))
    }

    fn from_map<I: IntoIterator<Item = (Self, Self)>>(iter: I) -> ValR<Self> {
        let mut depth = 0;
        let mut map = jaq_json::Map::default();
        for (k, v) in iter {
            step()?;
            budget::charge_bytes(ENTRY_BYTES).map_err(over)?;
            depth = depth.max(k.depth).max(v.depth);
            map.insert(k.val, v.val);
        }
        Metered::container(Val::obj(map), depth)
    }

    fn key_values(self) -> Box<dyn Iterator<Item = ValR<(Self, Self), Self>>> {
        let parent = self.depth;
        let pairs = self.val.key_values().map(move |pair| {
            step()?;
            let (k, v) = pair.map_err(lift)?;
            let outer = Metered {
                val: Val::Null,
                depth: parent,
            };
            Ok((outer.child(k), outer.child(v)))
        });
        Box::new(pairs)
    }

    fn values(self) -> Box<dyn Iterator<Item = ValR<Self>>> {
        let outer = Metered {
            val: Val::Null,
            depth: self.depth,
        };
        Box::new(self.val.values().map(move |value| {
            step()?;
            Ok(outer.child(value.map_err(lift)?))
        }))
    }

    fn index(self, index: &Self) -> ValR<Self> {
        step()?;
        // An array indexed by an array searches for it, comparing at every position.
        if let (Val::Arr(a), Val::Arr(b)) = (&self.val, &index.val) {
            budget::charge_steps((a.len() as u64).saturating_mul(b.len() as u64)).map_err(over)?;
        }
        let value = lift_r(self.val.clone().index(&index.val))?;
        Ok(self.child(value))
    }

    fn range(self, range: jaq_core::val::Range<&Self>) -> ValR<Self> {
        step()?;
        let range = range.start.map(|m| &m.val)..range.end.map(|m| &m.val);
        let value = lift_r(self.val.range(range))?;
        if let Val::Arr(a) = &value {
            budget::charge_bytes(a.len() as u64 * ELEMENT_BYTES).map_err(over)?;
        }
        Ok(Metered {
            val: value,
            depth: self.depth,
        })
    }

    fn map_values<'a, I: Iterator<Item = ValX<'a, Self>>>(
        self,
        opt: Opt,
        f: impl Fn(Self) -> I,
    ) -> ValX<'a, Self> {
        let outer = Metered {
            val: Val::Null,
            depth: self.depth,
        };
        match self.val {
            Val::Arr(a) => {
                // Every output of `f` takes the element's place (none removes it).
                let mut out = Vec::with_capacity(a.len());
                for x in unshare(a) {
                    for y in f(outer.child(x)) {
                        out.push(y?);
                    }
                }
                Ok(out.into_iter().collect())
            }
            Val::Obj(o) => {
                let mut map = jaq_json::Map::default();
                let mut depth = 0;
                for (k, v) in unshare(o) {
                    step()?;
                    if let Some(y) = f(outer.child(v)).next() {
                        let y = y?;
                        depth = depth.max(y.depth);
                        map.insert(k, y.val);
                    }
                }
                Ok(Metered::container(Val::obj(map), depth)?)
            }
            val => opt.fail(Metered { val, depth: 0 }, |v| {
                Exn::from(Error::typ(v, "iterable (array or object)"))
            }),
        }
    }

    fn map_index<'a, I: Iterator<Item = ValX<'a, Self>>>(
        self,
        index: &Self,
        opt: Opt,
        f: impl Fn(Self) -> I,
    ) -> ValX<'a, Self> {
        step()?;
        if let (Val::Arr(_) | Val::TStr(_) | Val::BStr(_), Val::Obj(o)) = (&self.val, &index.val) {
            let bound = |key: &str| o.get(&Val::utf8_str(key.to_string())).cloned();
            let (start, end) = (
                bound("start").map(Metered::scalar),
                bound("end").map(Metered::scalar),
            );
            return self.map_range(start.as_ref()..end.as_ref(), opt, f);
        }
        let outer = Metered {
            val: Val::Null,
            depth: self.depth,
        };
        match self.val {
            Val::Obj(o) => {
                let mut o = unshare(o);
                let key = index.val.clone();
                let old = o.get(&key).cloned();
                let found = old.is_some();
                match f(outer.child(old.unwrap_or_default())).next().transpose()? {
                    Some(y) => {
                        let depth = self.depth.max(y.depth.saturating_add(1));
                        budget::check_depth(depth.into()).map_err(over)?;
                        o.insert(key, y.val);
                        Ok(Metered {
                            val: Val::obj(o),
                            depth,
                        })
                    }
                    None => {
                        if found {
                            o.swap_remove(&key);
                        }
                        Ok(Metered {
                            val: Val::obj(o),
                            depth: self.depth,
                        })
                    }
                }
            }
            Val::Arr(a) => {
                let Some(at) = index.val.as_isize().and_then(|i| position(i, a.len())) else {
                    let error = Error::str(format_args!("index {index} out of bounds"));
                    return opt.fail(
                        Metered {
                            val: Val::Arr(a),
                            depth: self.depth,
                        },
                        |_| Exn::from(error),
                    );
                };
                let mut a = unshare(a);
                match f(outer.child(std::mem::take(&mut a[at])))
                    .next()
                    .transpose()?
                {
                    Some(y) => {
                        let depth = self.depth.max(y.depth.saturating_add(1));
                        budget::check_depth(depth.into()).map_err(over)?;
                        a[at] = y.val;
                        Ok(Metered {
                            val: Val::Arr(Rc::new(a)),
                            depth,
                        })
                    }
                    None => {
                        a.remove(at);
                        Ok(Metered {
                            val: Val::Arr(Rc::new(a)),
                            depth: self.depth,
                        })
                    }
                }
            }
            val => opt.fail(Metered { val, depth: 0 }, |v| {
                Exn::from(Error::typ(v, "iterable (array or object)"))
            }),
        }
    }

    fn map_range<'a, I: Iterator<Item = ValX<'a, Self>>>(
        self,
        range: jaq_core::val::Range<&Self>,
        opt: Opt,
        f: impl Fn(Self) -> I,
    ) -> ValX<'a, Self> {
        step()?;
        let Val::Arr(a) = self.val else {
            return opt.fail(self, |v| Exn::from(Error::typ(v, "array")));
        };
        let bound = |b: Option<&Metered>, default: usize| -> Result<usize, Error<Metered>> {
            match b.map(|m| &m.val) {
                None | Some(Val::Null) => Ok(default),
                Some(v) => match v.as_isize() {
                    Some(i) => Ok(clamp(i, a.len())),
                    None => Err(Error::typ(b.cloned().unwrap_or_default(), "integer")),
                },
            }
        };
        let skip = bound(range.start, 0)?;
        let end = bound(range.end, a.len())?.max(skip);
        budget::charge_bytes((end - skip) as u64 * ELEMENT_BYTES).map_err(over)?;
        let slice = Metered {
            val: Val::Arr(Rc::new(a[skip..end].to_vec())),
            depth: self.depth,
        };
        let replacement = match f(slice).next().transpose()? {
            None => Vec::new(),
            Some(Metered {
                val: Val::Arr(r),
                depth,
            }) => {
                budget::check_depth(depth.into()).map_err(over)?;
                unshare(r)
            }
            Some(other) => return Err(Exn::from(Error::typ(other, "array"))),
        };
        let mut a = unshare(a);
        a.splice(skip..end, replacement);
        Ok(Metered {
            val: Val::Arr(Rc::new(a)),
            depth: self.depth.max(1),
        })
    }

    fn as_bool(&self) -> bool {
        self.val.as_bool()
    }

    fn into_string(self) -> Self {
        let text = self.val.into_string();
        let _ = budget::charge_bytes(Metered::scalar(text.clone()).len() as u64);
        Metered::scalar(text)
    }
}

impl jaq_std::ValT for Metered {
    fn into_seq<S: FromIterator<Self>>(self) -> Result<S, Self> {
        let outer = Metered {
            val: Val::Null,
            depth: self.depth,
        };
        match self.val {
            Val::Arr(a) => Ok(unshare(a).into_iter().map(|x| outer.child(x)).collect()),
            val => Err(Metered {
                val,
                depth: self.depth,
            }),
        }
    }

    fn is_int(&self) -> bool {
        self.val.is_int()
    }

    fn as_isize(&self) -> Option<isize> {
        self.val.as_isize()
    }

    fn as_f64(&self) -> Option<f64> {
        self.val.as_f64()
    }

    fn is_utf8_str(&self) -> bool {
        self.val.is_utf8_str()
    }

    fn as_bytes(&self) -> Option<&[u8]> {
        self.val.as_bytes()
    }

    fn as_sub_str(&self, sub: &[u8]) -> Self {
        let _ = budget::charge_steps(1);
        Metered::scalar(self.val.as_sub_str(sub))
    }

    fn from_utf8_bytes(b: impl AsRef<[u8]> + Send + 'static) -> Self {
        let _ = budget::charge_bytes(b.as_ref().len() as u64);
        Metered::scalar(Val::from_utf8_bytes(b))
    }
}

/// The vector inside `rc`, copied only if something else holds it too.
fn unshare<T: Clone>(rc: Rc<T>) -> T {
    Rc::try_unwrap(rc).unwrap_or_else(|rc| (*rc).clone())
}

/// Index `i` of a sequence of `len` (negative from the end), if inside it.
fn position(i: isize, len: usize) -> Option<usize> {
    let at = if i < 0 {
        len.checked_sub(i.unsigned_abs())?
    } else {
        i as usize
    };
    (at < len).then_some(at)
}

/// Bound `i` of a slice of a sequence of `len` (negative from the end), within it.
fn clamp(i: isize, len: usize) -> usize {
    if i < 0 {
        len.saturating_sub(i.unsigned_abs())
    } else {
        (i as usize).min(len)
    }
}

/// The prelude's recursive generators, each charging one step per round: these are
/// the only filters that loop without building or visiting anything, and user
/// expressions cannot define recursion of their own (`guard` refuses `def`).
pub(crate) const FUELED_DEFS: &str = r#"
def repeat(f): def rec: __step | (f, rec); rec;
def recurse(f): def rec: __step | (., (f | rec)); rec;
def while(cond; update): def rec: __step | if cond then ., (update | rec) else empty end; rec;
def until(cond; update): def rec: __step | if cond then . else update | rec end; rec;
"#;

/// The deepest JSON text `fromjson` parses: jaq's reader recurses per level.
fn json_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Depth of a value jaq built (one `fromjson` parsed), to give it its bound.
fn depth_of(val: &Val) -> usize {
    match val {
        Val::Arr(a) => 1 + a.iter().map(depth_of).max().unwrap_or(0),
        Val::Obj(o) => 1 + o.values().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}

fn length(v: &Val) -> Result<Val, Error<Metered>> {
    Ok(match v {
        Val::Null => Val::from(0usize),
        // jq's length of a number is its absolute value.
        Val::Num(Num::Int(i)) => Val::from(i.unsigned_abs()),
        Val::Num(_) => Val::from(v.as_f64().unwrap_or(f64::NAN).abs()),
        Val::TStr(s) => Val::from(std::str::from_utf8(s).map_or(s.len(), |s| s.chars().count())),
        Val::BStr(b) => Val::from(b.len()),
        Val::Arr(a) => Val::from(a.len()),
        Val::Obj(o) => Val::from(o.len()),
        Val::Bool(_) => return Err(Error::str(format_args!("{v} has no length"))),
    })
}

/// Whether `l` contains `r` in jq's sense, charging the comparisons.
fn contains(l: &Val, r: &Val) -> Result<bool, Error<Metered>> {
    step()?;
    Ok(match (l, r) {
        (Val::TStr(l) | Val::BStr(l), Val::TStr(r) | Val::BStr(r)) => {
            memchr::memmem::find(l, r).is_some()
        }
        (Val::Arr(l), Val::Arr(r)) => {
            for r in r.iter() {
                let mut found = false;
                for l in l.iter() {
                    if contains(l, r)? {
                        found = true;
                        break;
                    }
                }
                if !found {
                    return Ok(false);
                }
            }
            true
        }
        (Val::Obj(l), Val::Obj(r)) => {
            for (k, r) in r.iter() {
                match l.get(k) {
                    Some(l) if contains(l, r)? => {}
                    _ => return Ok(false),
                }
            }
            true
        }
        _ => l == r,
    })
}

/// The positions of `needle` in `haystack` (overlapping ones too), charging each
/// comparison of the needle.
fn indices(haystack: &Val, needle: &Val) -> Result<Vec<usize>, Error<Metered>> {
    let charge = |n: usize| budget::charge_steps(n as u64 / 64 + 1).map_err(over);
    let mut found = Vec::new();
    match (haystack, needle) {
        (Val::TStr(h) | Val::BStr(h), Val::TStr(n) | Val::BStr(n)) if !n.is_empty() => {
            let finder = memchr::memmem::Finder::new(&n[..]);
            let mut from = 0;
            while let Some(at) = finder.find(&h[from..]) {
                charge(n.len())?;
                found.push(from + at);
                from += at + 1;
            }
            // jq counts in characters for text, not bytes.
            if let Val::TStr(_) = haystack {
                let chars = |end: usize| h[..end].iter().filter(|&&b| (b & 0xC0) != 0x80).count();
                found = found.into_iter().map(chars).collect();
            }
        }
        (Val::Arr(h), Val::Arr(n)) if !n.is_empty() => {
            for (at, window) in h.windows(n.len()).enumerate() {
                charge(n.len() * 64)?;
                if window == &n[..] {
                    found.push(at);
                }
            }
        }
        (Val::Arr(h), n) if !matches!(n, Val::Arr(_)) => {
            for (at, x) in h.iter().enumerate() {
                step()?;
                if x == n {
                    found.push(at);
                }
            }
        }
        (Val::TStr(_) | Val::BStr(_) | Val::Arr(_), _) => {}
        (h, n) => {
            return Err(Error::str(format_args!("cannot index {h} with {n}")));
        }
    }
    Ok(found)
}

/// jaq's filters written for its own value type, over [`Metered`], plus `__step`.
pub(crate) fn natives<D: for<'a> DataT<V<'a> = Metered>>() -> impl Iterator<Item = Fun<D>> {
    filters().into_vec().into_iter().map(run)
}

fn filters<D: for<'a> DataT<V<'a> = Metered>>() -> Box<[Filter<RunPtr<D>>]> {
    Box::new([
        ("__step", v(0), |cv| bome(step().map(|()| cv.1))),
        ("tojson", v(0), |cv| {
            let text = cv.1.val.to_string();
            let bytes = text.len();
            bome(Metered::string(Val::utf8_str(text), bytes))
        }),
        ("fromjson", v(0), |cv| {
            let Val::TStr(text) = &cv.1.val else {
                return bome(Err(Error::typ(cv.1, "string")));
            };
            let charged = budget::check_depth(json_depth(text))
                .and_then(|()| budget::charge_bytes(text.len() as u64));
            if let Err(limit) = charged {
                return bome(Err(over(limit)));
            }
            let values: Vec<_> = jaq_json::read::parse_many(text)
                .map(|parsed| match parsed {
                    Ok(val) => {
                        let depth = depth_of(&val);
                        Ok(Metered::new(val, depth))
                    }
                    Err(e) => Err(Exn::from(Error::str(format_args!(
                        "cannot parse {} as JSON: {e}",
                        cv.1
                    )))),
                })
                .collect();
            Box::new(values.into_iter())
        }),
        // Zigflow's generators: fresh at each evaluation, so a workflow keeps what they
        // make in a `set` task, whose output the journal keeps for a replay.
        ("uuid", v(0), |_| {
            bome(Ok(Metered::from(uuid::Uuid::new_v4().to_string())))
        }),
        ("timestamp", v(0), |_| {
            bome(Ok(Metered::from(
                jiff::Timestamp::now().as_second() as isize
            )))
        }),
        ("timestamp_iso8601", v(0), |_| {
            bome(Ok(Metered::from(jiff::Timestamp::now().to_string())))
        }),
        ("length", v(0), |cv| {
            bome(length(&cv.1.val).map(Metered::scalar))
        }),
        ("contains", v(1), |cv| {
            unary(cv, |x, y| Ok(Metered::from(contains(&x.val, &y.val)?)))
        }),
        ("has", v(1), |cv| {
            unary(cv, |v, k| {
                step()?;
                let has = match (&v.val, &k.val) {
                    (Val::Null, _) => false,
                    (Val::Obj(o), k) => o.contains_key(k),
                    (Val::Arr(a), Val::Num(n)) => n
                        .as_isize()
                        .is_some_and(|i| i >= 0 && (i as usize) < a.len()),
                    (v, k) => {
                        return Err(Error::str(format_args!("cannot check whether {v} has {k}")));
                    }
                };
                Ok(Metered::from(has))
            })
        }),
        ("indices", v(1), |cv| {
            unary(cv, |x, y| {
                let found = indices(&x.val, &y.val)?;
                Ok(found.into_iter().map(Metered::from).collect())
            })
        }),
        ("bsearch", v(1), |cv| {
            unary(cv, |a, x| match &a.val {
                Val::Arr(items) => {
                    budget::charge_steps(items.len().max(1).ilog2() as u64 + 1).map_err(over)?;
                    let at = match items.binary_search(&x.val) {
                        Ok(i) => i as isize,
                        Err(i) => -1 - i as isize,
                    };
                    Ok(Metered::from(at))
                }
                _ => Err(Error::typ(a, "array")),
            })
        }),
    ])
}
