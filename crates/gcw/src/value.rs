//! Cloud Workflows values on JSON: an integer is a JSON number held as an `i64`, a
//! double one held as an `f64` (serde_json keeps them apart, also through the
//! journal: `1.0` is written and read back as a double). Here are the operators'
//! rules for them, and the errors, tagged as Cloud Workflows tags them.

use std::cmp::Ordering;

use serde_json::{Value, json};

use crate::parse::Op;

/// A Cloud Workflows error: the value an `except` binds. Errors of the runtime are maps
/// with `message` and `tags`; `raise` may raise any value.
#[derive(Clone, Debug, PartialEq)]
pub struct Raised(pub Value);

impl Raised {
    /// A runtime error with one tag, such as `KeyError`.
    pub fn tagged(tag: &str, message: impl Into<String>) -> Raised {
        Raised(json!({"message": message.into(), "tags": [tag]}))
    }

    /// The error's message, or the value itself as text.
    pub fn message(&self) -> String {
        match &self.0 {
            Value::String(s) => s.clone(),
            Value::Object(map) => match map.get("message") {
                Some(Value::String(s)) => s.clone(),
                _ => self.0.to_string(),
            },
            other => other.to_string(),
        }
    }

    /// The first tag, if the error has any.
    pub fn tag(&self) -> Option<&str> {
        self.0.get("tags")?.get(0)?.as_str()
    }
}

pub(crate) fn type_error(message: impl Into<String>) -> Raised {
    Raised::tagged("TypeError", message)
}

pub(crate) fn value_error(message: impl Into<String>) -> Raised {
    Raised::tagged("ValueError", message)
}

/// The type of a value, as `get_type` names it.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() => "integer",
        Value::Number(_) => "double",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// A double as a value; `None` for NaN and the infinities, which JSON cannot hold.
pub(crate) fn double(d: f64) -> Option<Value> {
    serde_json::Number::from_f64(d).map(Value::Number)
}

pub(crate) fn double_or_error(d: f64, what: &str) -> Result<Value, Raised> {
    double(d).ok_or_else(|| value_error(format!("{what} is not a finite number")))
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Num {
    Int(i64),
    Double(f64),
}

impl Num {
    pub(crate) fn of(value: &Value) -> Option<Num> {
        let Value::Number(n) = value else {
            return None;
        };
        Some(match n.as_i64() {
            Some(i) if !n.is_f64() => Num::Int(i),
            _ => Num::Double(n.as_f64().unwrap_or(f64::NAN)),
        })
    }

    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Double(d) => d,
        }
    }

    pub(crate) fn into_value(self) -> Result<Value, Raised> {
        match self {
            Num::Int(i) => Ok(Value::from(i)),
            Num::Double(d) => double_or_error(d, "the result"),
        }
    }
}

/// Equality as `==` sees it: numbers by value across integer and double, lists and
/// maps element by element.
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => match (Num::of(a), Num::of(b)) {
            (Some(Num::Int(x)), Some(Num::Int(y))) => x == y,
            (Some(x), Some(y)) => x.as_f64() == y.as_f64(),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

/// Order for `<`, `<=`, `>`, `>=`: numbers with numbers, strings with strings.
pub(crate) fn compare(a: &Value, b: &Value) -> Result<Ordering, Raised> {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => match (Num::of(a), Num::of(b)) {
            (Some(Num::Int(x)), Some(Num::Int(y))) => Ok(x.cmp(&y)),
            (Some(x), Some(y)) => x
                .as_f64()
                .partial_cmp(&y.as_f64())
                .ok_or_else(|| value_error("cannot compare NaN")),
            _ => Err(type_error("cannot compare these numbers")),
        },
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => Err(type_error(format!(
            "cannot compare {} with {}",
            type_name(a),
            type_name(b)
        ))),
    }
}

/// A binary operator other than `and`/`or` on two values.
pub(crate) fn binary(op: Op, a: &Value, b: &Value) -> Result<Value, Raised> {
    match op {
        Op::Eq => return Ok(Value::Bool(equal(a, b))),
        Op::Ne => return Ok(Value::Bool(!equal(a, b))),
        Op::Lt => return Ok(Value::Bool(compare(a, b)?.is_lt())),
        Op::Le => return Ok(Value::Bool(compare(a, b)?.is_le())),
        Op::Gt => return Ok(Value::Bool(compare(a, b)?.is_gt())),
        Op::Ge => return Ok(Value::Bool(compare(a, b)?.is_ge())),
        Op::In => return contains(b, a).map(Value::Bool),
        _ => {}
    }
    if op == Op::Add {
        match (a, b) {
            (Value::String(x), Value::String(y)) => {
                crate::eval::charge_bytes(x.len() + y.len())?;
                return Ok(Value::String(format!("{x}{y}")));
            }
            (Value::Array(x), Value::Array(y)) => {
                crate::eval::charge_bytes(16 * (x.len() + y.len()))?;
                return Ok(Value::Array(x.iter().chain(y).cloned().collect()));
            }
            _ => {}
        }
    }
    let (Some(x), Some(y)) = (Num::of(a), Num::of(b)) else {
        return Err(type_error(format!(
            "unsupported operand types for {}: {} and {}",
            op.symbol(),
            type_name(a),
            type_name(b)
        )));
    };
    arithmetic(op, x, y)?.into_value()
}

fn arithmetic(op: Op, x: Num, y: Num) -> Result<Num, Raised> {
    let overflow = || value_error(format!("integer overflow in {}", op.symbol()));
    let zero = || Raised::tagged("ZeroDivisionError", "division by zero");
    if matches!(op, Op::Div | Op::FloorDiv | Op::Rem) && y.as_f64() == 0.0 {
        return Err(zero());
    }
    Ok(match (x, y) {
        (Num::Int(a), Num::Int(b)) => match op {
            Op::Add => Num::Int(a.checked_add(b).ok_or_else(overflow)?),
            Op::Sub => Num::Int(a.checked_sub(b).ok_or_else(overflow)?),
            Op::Mul => Num::Int(a.checked_mul(b).ok_or_else(overflow)?),
            Op::Div => Num::Double(a as f64 / b as f64),
            Op::FloorDiv => {
                let q = a.checked_div(b).ok_or_else(overflow)?;
                // Rounds toward negative infinity, as floor division does.
                Num::Int(if (a % b != 0) && ((a < 0) != (b < 0)) {
                    q - 1
                } else {
                    q
                })
            }
            Op::Rem => {
                let r = a.checked_rem(b).ok_or_else(overflow)?;
                // The remainder takes the divisor's sign.
                Num::Int(if r != 0 && ((r < 0) != (b < 0)) {
                    r + b
                } else {
                    r
                })
            }
            _ => unreachable!("comparisons are handled before arithmetic"),
        },
        (x, y) => {
            let (a, b) = (x.as_f64(), y.as_f64());
            Num::Double(match op {
                Op::Add => a + b,
                Op::Sub => a - b,
                Op::Mul => a * b,
                Op::Div => a / b,
                Op::FloorDiv => (a / b).floor(),
                Op::Rem => a - b * (a / b).floor(),
                _ => unreachable!("comparisons are handled before arithmetic"),
            })
        }
    })
}

/// `needle in haystack`: an element of a list, or a key of a map.
pub(crate) fn contains(haystack: &Value, needle: &Value) -> Result<bool, Raised> {
    match haystack {
        Value::Array(items) => {
            crate::eval::charge_steps(items.len())?;
            Ok(items.iter().any(|item| equal(item, needle)))
        }
        Value::Object(map) => match needle {
            Value::String(key) => Ok(map.contains_key(key)),
            other => Err(type_error(format!(
                "a map's keys are strings, not {}",
                type_name(other)
            ))),
        },
        other => Err(type_error(format!(
            "`in` looks in a list or a map, not in {}",
            type_name(other)
        ))),
    }
}

/// `base[index]`: an element of a list by its integer index, or an entry of a map.
pub(crate) fn index(base: &Value, index: &Value) -> Result<Value, Raised> {
    match (base, index) {
        (Value::Array(items), Value::Number(n)) => match n.as_i64().filter(|_| !n.is_f64()) {
            Some(i) => usize::try_from(i)
                .ok()
                .and_then(|i| items.get(i))
                .cloned()
                .ok_or_else(|| {
                    Raised::tagged(
                        "IndexError",
                        format!(
                            "list index {i} out of range (the list has {} elements)",
                            items.len()
                        ),
                    )
                }),
            None => Err(type_error("list indices must be integers")),
        },
        (Value::Object(map), Value::String(key)) => map
            .get(key)
            .cloned()
            .ok_or_else(|| Raised::tagged("KeyError", format!("key not found: {key}"))),
        (Value::Array(_), other) => Err(type_error(format!(
            "list indices must be integers, not {}",
            type_name(other)
        ))),
        (Value::Object(_), other) => Err(type_error(format!(
            "map keys must be strings, not {}",
            type_name(other)
        ))),
        (other, _) => Err(type_error(format!(
            "{} cannot be indexed",
            type_name(other)
        ))),
    }
}

/// `base.field`: an entry of a map.
pub(crate) fn field(base: &Value, name: &str) -> Result<Value, Raised> {
    match base {
        Value::Object(map) => map
            .get(name)
            .cloned()
            .ok_or_else(|| Raised::tagged("KeyError", format!("key not found: {name}"))),
        other => Err(type_error(format!(
            "cannot read the field `{name}` of {}",
            type_name(other)
        ))),
    }
}

/// A boolean operand, or the error that it is not one.
pub(crate) fn boolean(value: &Value, what: &str) -> Result<bool, Raised> {
    value
        .as_bool()
        .ok_or_else(|| type_error(format!("{what} takes booleans, not {}", type_name(value))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(op: Op, a: Value, b: Value) -> Result<Value, String> {
        binary(op, &a, &b).map_err(|e| format!("{}: {}", e.tag().unwrap_or(""), e.message()))
    }

    #[test]
    fn integers_and_doubles_stay_apart() {
        assert_eq!(op(Op::Add, json!(1), json!(2)), Ok(json!(3)));
        assert_eq!(op(Op::Add, json!(1), json!(2.0)), Ok(json!(3.0)));
        assert_eq!(
            type_name(&op(Op::Add, json!(1), json!(2.0)).unwrap()),
            "double"
        );
        assert_eq!(op(Op::Div, json!(6), json!(3)), Ok(json!(2.0)));
        assert_eq!(op(Op::FloorDiv, json!(-7), json!(2)), Ok(json!(-4)));
        assert_eq!(op(Op::Rem, json!(-7), json!(3)), Ok(json!(2)));
        assert_eq!(op(Op::FloorDiv, json!(7.5), json!(2)), Ok(json!(3.0)));
        assert!(
            op(Op::Add, json!(i64::MAX), json!(1))
                .unwrap_err()
                .starts_with("ValueError")
        );
        assert!(
            op(Op::Div, json!(1), json!(0))
                .unwrap_err()
                .starts_with("ZeroDivisionError")
        );
    }

    #[test]
    fn comparisons_are_by_value() {
        assert_eq!(op(Op::Eq, json!(1), json!(1.0)), Ok(json!(true)));
        assert_eq!(op(Op::Lt, json!(1), json!(1.5)), Ok(json!(true)));
        assert_eq!(
            op(Op::Eq, json!([1, {"a": 2}]), json!([1.0, {"a": 2.0}])),
            Ok(json!(true))
        );
        assert!(
            op(Op::Lt, json!("a"), json!(1))
                .unwrap_err()
                .starts_with("TypeError")
        );
        assert_eq!(op(Op::In, json!(2.0), json!([1, 2])), Ok(json!(true)));
        assert_eq!(op(Op::In, json!("k"), json!({"k": null})), Ok(json!(true)));
    }

    #[test]
    fn strings_and_lists_concatenate() {
        assert_eq!(op(Op::Add, json!("a"), json!("b")), Ok(json!("ab")));
        assert_eq!(op(Op::Add, json!([1]), json!([2])), Ok(json!([1, 2])));
        assert!(
            op(Op::Add, json!("a"), json!(1))
                .unwrap_err()
                .starts_with("TypeError")
        );
    }

    #[test]
    fn lookups_raise_tagged_errors() {
        assert_eq!(
            index(&json!([1]), &json!(3)).unwrap_err().tag(),
            Some("IndexError")
        );
        assert_eq!(field(&json!({}), "x").unwrap_err().tag(), Some("KeyError"));
        assert_eq!(
            index(&json!([1]), &json!(0.0)).unwrap_err().tag(),
            Some("TypeError")
        );
    }
}
