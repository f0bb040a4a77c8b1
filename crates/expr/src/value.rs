//! Conversion between `serde_json::Value`, which the rest of skein stores and
//! sends, and jaq's own value type, which lives only while an expression runs.

use std::rc::Rc;

use jaq_json::{Num, Val};
use serde_json::{Map, Number, Value};

use crate::metered::Metered;

/// Deepest value an expression may return. Deeper values could overflow the
/// stack of whoever walks them later (serializers, drop glue).
pub const MAX_DEPTH: usize = 256;

/// A value read into an evaluation, with its depth for the budget.
pub(crate) fn to_val(value: &Value) -> Metered {
    let mut depth = 0;
    let val = to_val_at(value, 0, &mut depth);
    Metered::new(val, depth)
}

fn to_val_at(value: &Value, level: usize, deepest: &mut usize) -> Val {
    match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Val::Num(Num::from_integral(i))
            } else if let Some(u) = n.as_u64() {
                Val::Num(Num::from_integral(u))
            } else {
                Val::Num(Num::Float(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Value::String(s) => Val::from(s.clone()),
        Value::Array(items) => {
            *deepest = (*deepest).max(level + 1);
            Val::Arr(Rc::new(
                items
                    .iter()
                    .map(|v| to_val_at(v, level + 1, deepest))
                    .collect(),
            ))
        }
        Value::Object(map) => {
            *deepest = (*deepest).max(level + 1);
            Val::obj(
                map.iter()
                    .map(|(k, v)| (Val::from(k.clone()), to_val_at(v, level + 1, deepest)))
                    .collect(),
            )
        }
    }
}

/// Converts a jaq value back, refusing values nested deeper than [`MAX_DEPTH`].
pub(crate) fn from_val(val: &Val) -> Result<Value, String> {
    from_val_at(val, 0)
}

fn from_val_at(val: &Val, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("the result nests deeper than {MAX_DEPTH} levels"));
    }
    Ok(match val {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => number(n),
        Val::TStr(bytes) | Val::BStr(bytes) => {
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        Val::Arr(items) => Value::Array(
            items
                .iter()
                .map(|v| from_val_at(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Val::Obj(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map.iter() {
                let key = match k {
                    Val::TStr(bytes) | Val::BStr(bytes) => {
                        String::from_utf8_lossy(bytes).into_owned()
                    }
                    other => other.to_string(),
                };
                out.insert(key, from_val_at(v, depth + 1)?);
            }
            Value::Object(out)
        }
    })
}

fn number(n: &Num) -> Value {
    match n {
        Num::Int(i) => Value::Number(Number::from(*i as i64)),
        Num::Float(f) => float(*f),
        // Big integers and decimal literals keep their exact value where JSON
        // numbers can hold it, else they become the nearest float.
        other => {
            let text = other.to_string();
            if let Ok(i) = text.parse::<i64>() {
                Value::Number(i.into())
            } else if let Ok(u) = text.parse::<u64>() {
                Value::Number(u.into())
            } else {
                float(text.parse::<f64>().unwrap_or(f64::NAN))
            }
        }
    }
}

/// jq prints NaN as `null` and infinities as the largest finite floats; so do we.
fn float(f: f64) -> Value {
    let f = if f.is_infinite() {
        f.signum() * f64::MAX
    } else {
        f
    };
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// jq's notion of truth: everything except `false` and `null` is true.
pub fn is_truthy(value: &Value) -> bool {
    !matches!(value, Value::Null | Value::Bool(false))
}
