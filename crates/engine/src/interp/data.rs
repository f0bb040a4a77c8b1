//! Evaluating a task's expressions and templates, checking values against their
//! schemas, and the errors those raise.

use expr::{Problem, Template, types};
use program::{ErrorDef, Schema, SchemaSource};
use serde_json::Value;

use super::Res;
use crate::Interrupt;
use crate::run::Run;

/// A value as text: strings as they are, anything else as JSON.
pub(crate) fn plain_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(crate) fn eval(template: &Template, input: &Value, vars: &expr::Vars, at: &str) -> Res<Value> {
    template
        .eval(input, vars)
        .map_err(|e| Interrupt::Fault(e.into_problem(at)))
}

pub(crate) fn text(template: &Template, input: &Value, vars: &expr::Vars, at: &str) -> Res<String> {
    Ok(plain_string(&eval(template, input, vars, at)?))
}

pub(super) fn raised(def: &ErrorDef, input: &Value, vars: &expr::Vars, at: &str) -> Res<Problem> {
    let opt = |t: &Option<Template>| t.as_ref().map(|t| text(t, input, vars, at)).transpose();
    Ok(Problem {
        type_: text(&def.type_, input, vars, at)?,
        status: def.status,
        title: opt(&def.title)?,
        detail: opt(&def.detail)?,
        instance: Some(opt(&def.instance)?.unwrap_or_else(|| at.to_string())),
        data: def
            .data
            .as_ref()
            .map(|t| eval(t, input, vars, at).map(Box::new))
            .transpose()?,
    })
}

/// Checks `value` (called `what` in errors) against `schema`: inline, or read from its
/// resource (with its authentication) and compiled once per run.
pub(super) async fn check_schema(
    run: &crate::run::Run,
    schema: &Schema,
    value: &Value,
    what: &str,
    at: &str,
) -> Res<()> {
    let validator = match (&schema.source, &schema.compiled) {
        (SchemaSource::Inline(_), Some(validator)) => validator.clone(),
        (SchemaSource::Resource(resource), _) => resource_schema(run, resource, at).await?,
        (SchemaSource::Inline(_), None) => return Ok(()),
    };
    validate(&validator, value, what, at)
}

/// The validator of a schema from an external resource, read and compiled on first use.
async fn resource_schema(
    run: &crate::run::Run,
    resource: &program::ExternalResource,
    at: &str,
) -> Res<std::sync::Arc<jsonschema::Validator>> {
    let vars = run.no_vars();
    let url = super::http::endpoint_url(&resource.endpoint.uri, &Value::Null, &vars, at)?;
    if let Some(validator) = run.schemas.lock().expect("schemas").get(url.as_str()) {
        return Ok(validator.clone());
    }
    let mut headers = vec![(
        "accept".to_string(),
        "application/schema+json, application/json, application/yaml".to_string(),
    )];
    if let Some(auth) = &resource.endpoint.authentication {
        let header =
            super::http::authorization(run, store::Ticket(0), auth, &url, &Value::Null, &vars, at)
                .await?
                .header(at, "schema resources")?;
        headers.push(("authorization".into(), header));
    }
    let request = crate::HttpRequest::get(url.clone(), headers, &run.project);
    let invalid = |detail: String| super::http::configuration(at, "Invalid schema", detail);
    let text = tokio::select! {
        r = run.effects.definition(request) => r,
        _ = run.cancel.cancelled() => return Err(crate::Interrupt::Cancelled),
    }
    .map_err(|e| invalid(format!("cannot read the schema at {url}: {e}")))?;
    let document = dsl::tree(&text, &dsl::Options::default())
        .map_err(|d| invalid(format!("{url}: {}", d.message)))?
        .to_json();
    let validator = jsonschema::validator_for(&document)
        .map_err(|e| invalid(format!("the schema at {url} does not compile: {e}")))?;
    let validator = std::sync::Arc::new(validator);
    run.schemas
        .lock()
        .expect("schemas")
        .insert(url.to_string(), validator.clone());
    Ok(validator)
}

fn validate(validator: &jsonschema::Validator, value: &Value, what: &str, at: &str) -> Res<()> {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .take(5)
        .map(|e| {
            let path = e.instance_path().to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("{path}: {e}")
            }
        })
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    Err(Interrupt::Fault(Problem {
        type_: types::VALIDATION.into(),
        status: 400,
        title: Some(format!("{} does not match its schema", capitalize(what))),
        detail: Some(errors.join("; ")),
        instance: Some(at.to_string()),
        data: None,
    }))
}

pub(super) fn stored_problem(error: &Value) -> Problem {
    serde_json::from_value(error.clone()).unwrap_or_else(|_| Problem {
        type_: types::RUNTIME.into(),
        status: 500,
        title: Some("A journaled error could not be read".into()),
        detail: Some(error.to_string()),
        instance: None,
        data: None,
    })
}

pub(super) fn expression_problem(at: &str, detail: String) -> Interrupt {
    crate::fault(
        types::EXPRESSION,
        400,
        "Expression evaluation failed",
        detail,
        at,
    )
}

pub(super) fn not_supported(at: &str, what: &str) -> Interrupt {
    crate::fault(
        types::RUNTIME,
        501,
        "Not supported yet",
        format!("skein does not run {what} yet"),
        at,
    )
}

pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

/// Applies Zigflow's `searchAttributes` (`{name: {type, value}}`, or `{name: value}`) as
/// labels of the execution: a value is kept as text (a list joined with commas), a
/// null value removes the label.
pub(crate) async fn search_attributes(run: &Run, value: &Value, at: &str) -> Res<()> {
    let Value::Object(attributes) = value else {
        return Err(super::http::configuration(
            at,
            "Invalid search attributes",
            format!("`searchAttributes` is a mapping of names to values, not {value}"),
        ));
    };
    let mut set = store::Labels::new();
    let mut unset = Vec::new();
    for (name, attribute) in attributes {
        let name_ok = (1..=63).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if !name_ok {
            return Err(super::http::configuration(
                at,
                "Invalid search attributes",
                format!(
                    "the search attribute `{name}` is not a label name (1 to 63 letters, digits, `-`, `_`, `.` or `/`)"
                ),
            ));
        }
        let value = match attribute {
            Value::Object(typed) if typed.contains_key("type") => {
                typed.get("value").cloned().unwrap_or(Value::Null)
            }
            other => other.clone(),
        };
        let text = match value {
            Value::Null => {
                unset.push(name.clone());
                continue;
            }
            Value::String(s) => s,
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        set.insert(name.clone(), text.chars().take(256).collect());
    }
    run.store
        .update_labels(&run.id, set, unset)
        .await
        .map_err(|e| Interrupt::Store(e.to_string()))
}
