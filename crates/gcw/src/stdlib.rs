//! The standard library's functions that expressions may call: pure functions of their
//! arguments (and `sys.now`, `sys.get_env`, `uuid.generate`, whose results the journal
//! keeps with the step that used them). Functions that wait or have effects
//! (`http.*`, `sys.sleep`, `sys.log`, `events.*`) belong in `call` steps; the front-end
//! lowers those onto tasks of the engine.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::eval::{Cx, charge_bytes, charge_steps};
use crate::value::{self, Num, Raised, type_error, type_name, value_error};

/// A function expressions may call: its name, its parameters (the names a `call`
/// step's `args` give them by) and how many of them a call must give.
pub(crate) struct Function {
    pub(crate) name: &'static str,
    pub(crate) params: &'static [&'static str],
    pub(crate) min: usize,
    pub(crate) max: usize,
}

const fn f(name: &'static str, params: &'static [&'static str], min: usize) -> Function {
    Function {
        name,
        params,
        min,
        max: params.len(),
    }
}

/// Every function expressions may call.
pub(crate) const FUNCTIONS: &[Function] = &[
    f("default", &["val", "default_val"], 2),
    f("double", &["source"], 1),
    f("get_type", &["value"], 1),
    f("int", &["source"], 1),
    f("keys", &["map"], 1),
    f("len", &["value"], 1),
    f("string", &["source"], 1),
    f("base64.decode", &["data", "padding"], 1),
    f("hash.compute_checksum", &["data", "algorithm"], 2),
    f("hash.compute_hmac", &["key", "data", "algorithm"], 3),
    f("http.default_retry_predicate", &["exception"], 1),
    f(
        "http.default_retry_predicate_non_idempotent",
        &["exception"],
        1,
    ),
    f("retry.always", &["exception"], 1),
    f("retry.never", &["exception"], 1),
    f("base64.encode", &["data", "padding"], 1),
    f("json.decode", &["data"], 1),
    f("json.encode", &["data", "indent"], 1),
    f("json.encode_to_string", &["data", "indent"], 1),
    f("list.concat", &["objs", "val"], 2),
    f("list.prepend", &["objs", "val"], 2),
    f("map.delete", &["map", "key"], 2),
    f("map.get", &["map", "keys"], 2),
    f("map.merge", &["first", "second"], 2),
    f("map.merge_nested", &["first", "second"], 2),
    f("math.abs", &["x"], 1),
    f("math.floor", &["x"], 1),
    f("math.max", &["x", "y"], 2),
    f("math.min", &["x", "y"], 2),
    f("sys.get_env", &["name", "default"], 1),
    f("sys.now", &[], 0),
    f("text.decode", &["data", "charset"], 1),
    f("text.encode", &["text", "charset"], 1),
    f("text.find_all", &["source", "substr"], 2),
    f("text.find_all_regex", &["source", "regexp"], 2),
    f("text.match_regex", &["source", "regexp"], 2),
    f("text.replace_all_regex", &["source", "regexp", "repl"], 3),
    f("text.replace_all", &["source", "substr", "repl"], 3),
    f("text.split", &["source", "separator"], 2),
    f("text.substring", &["source", "start", "end"], 3),
    f("text.to_lower", &["source"], 1),
    f("text.to_upper", &["source"], 1),
    f("text.url_decode", &["source"], 1),
    f("text.url_encode", &["source"], 1),
    f("text.url_encode_plus", &["source"], 1),
    f("time.format", &["seconds", "timezone"], 1),
    f("time.parse", &["value"], 1),
    f("uuid.generate", &[], 0),
];

/// The function called `name`, if expressions may call it.
pub(crate) fn function(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// The environment variable `name`: what the server's configuration gives every
/// workflow (`$runtime.metadata.env`) first, else the `GOOGLE_CLOUD_*` names made from
/// the execution: its id, its project and workflow (or those of the Google API path it
/// was started through), its revision, and its location (`local` when none is given).
pub(crate) fn get_env(cx: &Cx<'_>, name: &str) -> Option<Value> {
    let meta = |key: &str| cx.runtime_metadata(key);
    if let Some(v) = meta("env").and_then(|e| e.get(name)) {
        return Some(v.clone());
    }
    let label = |key: &str| meta("labels").and_then(|l| l.get(key)).cloned();
    match name {
        "GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID" => cx.workflow().and_then(|w| w.get("id")).cloned(),
        "GOOGLE_CLOUD_PROJECT_ID" => {
            label(GOOGLE_PROJECT_LABEL).or_else(|| meta("project").cloned())
        }
        "GOOGLE_CLOUD_LOCATION" => {
            label(GOOGLE_LOCATION_LABEL).or_else(|| Some(Value::String("local".into())))
        }
        "GOOGLE_CLOUD_WORKFLOW_ID" => meta("workflow").cloned(),
        "GOOGLE_CLOUD_WORKFLOW_REVISION_ID" => label(REVISION_LABEL),
        _ => None,
    }
}

/// The labels an execution started through Google's Executions API keeps the path's
/// project and location in, and the revision of the named workflow it runs.
pub const GOOGLE_PROJECT_LABEL: &str = "skein.dev/google-project";
pub const GOOGLE_LOCATION_LABEL: &str = "skein.dev/google-location";
pub const REVISION_LABEL: &str = "skein.dev/workflow-revision";

/// Bytes in an evaluation are a map with one key, as no JSON type holds them; a
/// workflow cannot return them, as on Google.
pub(crate) const BYTES: &str = "__bytes__";

fn bytes_value(bytes: &[u8]) -> Value {
    json!({ BYTES: base64::engine::general_purpose::STANDARD.encode(bytes) })
}

pub(crate) fn as_bytes(value: &Value) -> Option<Vec<u8>> {
    let encoded = value.as_object()?.get(BYTES)?.as_str()?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
}

fn string<'v>(args: &'v [Value], i: usize, function: &str) -> Result<&'v str, Raised> {
    args[i].as_str().ok_or_else(|| {
        type_error(format!(
            "{function}: argument {} must be a string, not {}",
            i + 1,
            type_name(&args[i])
        ))
    })
}

fn int(args: &[Value], i: usize, function: &str) -> Result<i64, Raised> {
    match Num::of(&args[i]) {
        Some(Num::Int(n)) => Ok(n),
        _ => Err(type_error(format!(
            "{function}: argument {} must be an integer, not {}",
            i + 1,
            type_name(&args[i])
        ))),
    }
}

fn number(args: &[Value], i: usize, function: &str) -> Result<Num, Raised> {
    Num::of(&args[i]).ok_or_else(|| {
        type_error(format!(
            "{function}: argument {} must be a number, not {}",
            i + 1,
            type_name(&args[i])
        ))
    })
}

fn text_out(s: String) -> Result<Value, Raised> {
    charge_bytes(s.len())?;
    Ok(Value::String(s))
}

/// Calls the function `name` (checked when the expression was compiled) on `args`.
pub(crate) fn call(name: &str, mut args: Vec<Value>, cx: &Cx<'_>) -> Result<Value, Raised> {
    let Some(function) = function(name) else {
        return Err(Raised::tagged(
            "KeyError",
            format!("`{name}` is not a function expressions can call"),
        ));
    };
    if args.len() < function.min || args.len() > function.max {
        return Err(type_error(format!(
            "{name} takes {} arguments, not {}",
            arity(function),
            args.len()
        )));
    }
    if let Some(predicate) = crate::errors::Predicate::named(name) {
        return Ok(Value::Bool(predicate.holds(&args[0])));
    }
    match name {
        "default" => Ok(match args.swap_remove(0) {
            Value::Null => args.swap_remove(0),
            value => value,
        }),
        "double" => match &args[0] {
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(value::double)
                .ok_or_else(|| value_error(format!("double: cannot convert {s:?} to a double"))),
            v => Ok(value::double(number(&args, 0, name)?.as_f64()).unwrap_or(v.clone())),
        },
        "int" => match &args[0] {
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| value_error(format!("int: cannot convert {s:?} to an integer"))),
            _ => match number(&args, 0, name)? {
                Num::Int(i) => Ok(Value::from(i)),
                // Toward zero, as a conversion truncates.
                Num::Double(d) if d.is_finite() && d.abs() < 9.2e18 => {
                    Ok(Value::from(d.trunc() as i64))
                }
                Num::Double(d) => Err(value_error(format!("int: {d} does not fit in an integer"))),
            },
        },
        "string" => match &args[0] {
            Value::String(s) => Ok(Value::String(s.clone())),
            Value::Number(_) | Value::Bool(_) => text_out(args[0].to_string()),
            other => Err(type_error(format!(
                "string: cannot convert {} to a string",
                type_name(other)
            ))),
        },
        "get_type" => Ok(json!(if as_bytes(&args[0]).is_some() {
            "bytes"
        } else {
            type_name(&args[0])
        })),
        "keys" => match &args[0] {
            Value::Object(map) => {
                charge_bytes(16 * map.len())?;
                Ok(Value::Array(map.keys().map(|k| json!(k)).collect()))
            }
            other => Err(type_error(format!(
                "keys: expected a map, not {}",
                type_name(other)
            ))),
        },
        "len" => match &args[0] {
            Value::String(s) => Ok(json!(s.chars().count())),
            Value::Array(items) => Ok(json!(items.len())),
            Value::Object(map) => match as_bytes(&args[0]) {
                Some(bytes) => Ok(json!(bytes.len())),
                None => Ok(json!(map.len())),
            },
            other => Err(type_error(format!(
                "len: {} has no length",
                type_name(other)
            ))),
        },
        "base64.encode" => {
            let bytes =
                as_bytes(&args[0]).ok_or_else(|| type_error("base64.encode: expected bytes"))?;
            let padding = args.get(1).and_then(Value::as_bool).unwrap_or(true);
            let engine = if padding {
                &base64::engine::general_purpose::STANDARD
            } else {
                &base64::engine::general_purpose::STANDARD_NO_PAD
            };
            text_out(engine.encode(bytes))
        }
        "base64.decode" => {
            let text = string(&args, 0, name)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim_end_matches('='))
                .or_else(|_| {
                    base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(text.trim_end_matches('='))
                })
                .map_err(|e| value_error(format!("base64.decode: {e}")))?;
            charge_bytes(bytes.len())?;
            Ok(bytes_value(&bytes))
        }
        "text.encode" => {
            let text = string(&args, 0, name)?;
            charge_bytes(text.len())?;
            Ok(bytes_value(text.as_bytes()))
        }
        "text.decode" => {
            let bytes =
                as_bytes(&args[0]).ok_or_else(|| type_error("text.decode: expected bytes"))?;
            String::from_utf8(bytes)
                .map_err(|_| value_error("text.decode: the bytes are not UTF-8"))
                .and_then(text_out)
        }
        "json.decode" => {
            let text = match as_bytes(&args[0]) {
                Some(bytes) => String::from_utf8(bytes)
                    .map_err(|_| value_error("json.decode: the bytes are not UTF-8"))?,
                None => string(&args, 0, name)?.to_string(),
            };
            charge_bytes(text.len())?;
            serde_json::from_str(&text).map_err(|e| value_error(format!("json.decode: {e}")))
        }
        "json.encode" | "json.encode_to_string" => {
            let text = if args.get(1).and_then(Value::as_bool).unwrap_or(false)
                || args.get(1).is_some_and(Value::is_object)
            {
                serde_json::to_string_pretty(&args[0])
            } else {
                serde_json::to_string(&args[0])
            }
            .map_err(|e| value_error(format!("{name}: {e}")))?;
            if name == "json.encode" {
                charge_bytes(text.len())?;
                Ok(bytes_value(text.as_bytes()))
            } else {
                text_out(text)
            }
        }
        "list.concat" => match args.swap_remove(0) {
            Value::Array(mut items) => {
                charge_bytes(16 * (items.len() + 1))?;
                items.push(args.swap_remove(0));
                Ok(Value::Array(items))
            }
            other => Err(type_error(format!(
                "list.concat: expected a list, not {}",
                type_name(&other)
            ))),
        },
        "list.prepend" => match args.swap_remove(0) {
            Value::Array(mut items) => {
                charge_bytes(16 * (items.len() + 1))?;
                items.insert(0, args.swap_remove(0));
                Ok(Value::Array(items))
            }
            other => Err(type_error(format!(
                "list.prepend: expected a list, not {}",
                type_name(&other)
            ))),
        },
        "map.get" => map_get(&args[0], &args[1]),
        "map.delete" => match (&args[0], &args[1]) {
            (Value::Object(map), Value::String(key)) => {
                let mut map = map.clone();
                map.shift_remove(key);
                Ok(Value::Object(map))
            }
            _ => Err(type_error("map.delete: expected a map and a string key")),
        },
        "map.merge" | "map.merge_nested" => match (&args[0], &args[1]) {
            (Value::Object(a), Value::Object(b)) => {
                charge_bytes(48 * (a.len() + b.len()))?;
                let mut out = a.clone();
                merge(&mut out, b, name == "map.merge_nested")?;
                Ok(Value::Object(out))
            }
            _ => Err(type_error(format!("{name}: expected two maps"))),
        },
        "math.abs" => match number(&args, 0, name)? {
            Num::Int(i) => i
                .checked_abs()
                .map(Value::from)
                .ok_or_else(|| value_error("math.abs: integer overflow")),
            Num::Double(d) => value::double_or_error(d.abs(), "math.abs"),
        },
        "math.floor" => match number(&args, 0, name)? {
            Num::Int(i) => Ok(Value::from(i)),
            Num::Double(d) if d.is_finite() && d.abs() < 9.2e18 => {
                Ok(Value::from(d.floor() as i64))
            }
            Num::Double(d) => Err(value_error(format!(
                "math.floor: {d} does not fit in an integer"
            ))),
        },
        "math.max" | "math.min" => {
            let (a, b) = (number(&args, 0, name)?, number(&args, 1, name)?);
            let first = value::compare(&args[0], &args[1])?.is_ge() == (name == "math.max");
            Ok(if first { a } else { b }.into_value()?)
        }
        "sys.now" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            value::double_or_error(now, "sys.now")
        }
        "sys.get_env" => {
            let variable = string(&args, 0, name)?;
            let found = get_env(cx, variable);
            match (found, args.get(1)) {
                (Some(v), _) => Ok(v),
                (None, Some(default)) => Ok(default.clone()),
                (None, None) => Err(Raised::tagged(
                    "KeyError",
                    format!("sys.get_env: the environment variable {variable} is not set"),
                )),
            }
        }
        "text.find_all" => {
            let (source, substr) = (string(&args, 0, name)?, string(&args, 1, name)?);
            if substr.is_empty() {
                return Err(value_error("text.find_all: the substring is empty"));
            }
            charge_steps(source.len())?;
            let found: Vec<Value> = source
                .match_indices(substr)
                .map(|(at, s)| json!({"index": source[..at].chars().count(), "match": s}))
                .collect();
            charge_bytes(64 * found.len())?;
            Ok(Value::Array(found))
        }
        "text.replace_all" => {
            let (source, old, new) = (
                string(&args, 0, name)?,
                string(&args, 1, name)?,
                string(&args, 2, name)?,
            );
            if old.is_empty() {
                return Err(value_error(
                    "text.replace_all: the substring to replace is empty",
                ));
            }
            charge_steps(source.len())?;
            let count = source.matches(old).count();
            charge_bytes(source.len() + count * new.len())?;
            Ok(Value::String(source.replace(old, new)))
        }
        "text.split" => {
            let (source, separator) = (string(&args, 0, name)?, string(&args, 1, name)?);
            charge_steps(source.len())?;
            let parts: Vec<Value> = if separator.is_empty() {
                source.chars().map(|c| json!(c.to_string())).collect()
            } else {
                source.split(separator).map(|p| json!(p)).collect()
            };
            charge_bytes(source.len() + 16 * parts.len())?;
            Ok(Value::Array(parts))
        }
        "text.substring" => {
            let source = string(&args, 0, name)?;
            let (start, end) = (int(&args, 1, name)?, int(&args, 2, name)?);
            let chars: Vec<char> = source.chars().collect();
            let clamp = |i: i64| i.clamp(0, chars.len() as i64) as usize;
            let (start, end) = (clamp(start), clamp(end));
            text_out(if start < end {
                chars[start..end].iter().collect()
            } else {
                String::new()
            })
        }
        "text.to_lower" => text_out(string(&args, 0, name)?.to_lowercase()),
        "text.to_upper" => text_out(string(&args, 0, name)?.to_uppercase()),
        "uuid.generate" => Ok(json!(uuid::Uuid::new_v4().to_string())),
        other => crate::formats::call(other, &args)
            .unwrap_or_else(|| unreachable!("every function of the table is implemented: {name}")),
    }
}

/// `map.get(map, key)`: the value at a key, or at a path of keys given as a list; null
/// when any key along the way is missing.
fn map_get(map: &Value, key: &Value) -> Result<Value, Raised> {
    let path: Vec<&Value> = match key {
        Value::Array(keys) => keys.iter().collect(),
        key => vec![key],
    };
    let mut current = map;
    for key in path {
        let Value::String(key) = key else {
            return Err(type_error(format!(
                "map.get: keys are strings, not {}",
                type_name(key)
            )));
        };
        match current {
            Value::Object(m) => match m.get(key) {
                Some(v) => current = v,
                None => return Ok(Value::Null),
            },
            Value::Null => return Ok(Value::Null),
            other => {
                return Err(type_error(format!(
                    "map.get: expected a map, not {}",
                    type_name(other)
                )));
            }
        }
    }
    Ok(current.clone())
}

fn merge(
    into: &mut Map<String, Value>,
    from: &Map<String, Value>,
    nested: bool,
) -> Result<(), Raised> {
    for (k, v) in from {
        charge_steps(1)?;
        match (into.get_mut(k), v) {
            (Some(Value::Object(a)), Value::Object(b)) if nested => merge(a, b, true)?,
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

/// How many arguments a function takes, for messages.
pub(crate) fn arity(function: &Function) -> String {
    if function.min == function.max {
        function.min.to_string()
    } else {
        format!("{} to {}", function.min, function.max)
    }
}
