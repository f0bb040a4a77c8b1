//! What an `except` sees: the engine's error (a problem) as the Cloud Workflows error
//! map it stands for, with its tags, and the predefined retry predicates over it.

use expr::types;
use serde_json::{Value, json};

use crate::RAISED;

/// The Cloud Workflows error for a problem (as JSON): what `raise` raised; an
/// expression's tagged error; `HttpError` with `code`, `headers` and `body` for a
/// call answered with an error status; `ConnectionFailedError`, `ConnectionError`,
/// `TimeoutError`, `AuthError`, `ResourceLimitError`, `UnhandledBranchError` (with the
/// failed branches' errors); `SystemError` for the rest.
pub(crate) fn from_problem(problem: &Value) -> Value {
    let field = |name: &str| problem.get(name).and_then(Value::as_str);
    let type_ = field("type").unwrap_or_default();
    let status = problem.get("status").and_then(Value::as_u64).unwrap_or(0);
    let data = problem.get("data");
    let message = field("detail")
        .or(field("title"))
        .unwrap_or("an error occurred")
        .to_string();
    let tagged = |tags: &[&str]| json!({"message": message, "tags": tags});
    let is = |standard: &str| type_ == standard;
    match data {
        Some(data) if type_ == RAISED => return data.clone(),
        Some(data) if is(types::EXPRESSION) && data.get("tags").is_some() => return data.clone(),
        Some(data) if is(types::COMMUNICATION) && data.get("status").is_some() => {
            let code = data.get("status").cloned().unwrap_or(Value::Null);
            return json!({
                "message": format!("HTTP server responded with error code {code}"),
                "code": code,
                "headers": data.get("headers").cloned().unwrap_or(json!({})),
                "body": data.get("body").cloned().unwrap_or(Value::Null),
                "tags": ["HttpError"],
            });
        }
        _ => {}
    }
    if is(types::COMMUNICATION) {
        return match status {
            503 => tagged(&["ConnectionFailedError", "ConnectionError"]),
            504 => tagged(&["TimeoutError"]),
            _ => tagged(&["ConnectionError"]),
        };
    }
    if is(types::TIMEOUT) {
        return tagged(&["TimeoutError"]);
    }
    if is(types::AUTHENTICATION) || is(types::AUTHORIZATION) {
        return tagged(&["AuthError"]);
    }
    if let Some(errors) = data.and_then(|d| d.get("errors")).and_then(Value::as_array)
        && is(types::RUNTIME)
    {
        // A parallel step's branches that failed, each with its error.
        let branches: Vec<Value> = errors
            .iter()
            .map(|e| json!({"index": e["index"], "error": from_problem(&e["error"])}))
            .collect();
        return json!({
            "message": message,
            "tags": ["UnhandledBranchError"],
            "branches": branches,
        });
    }
    if is(types::RUNTIME) && data.and_then(|d| d.get("tags")).is_some() {
        return data.cloned().unwrap_or(Value::Null);
    }
    if is(types::RUNTIME) && matches!(status, 400 | 413) {
        return tagged(&["ResourceLimitError"]);
    }
    tagged(&["SystemError"])
}

/// A retry predicate of the standard library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Predicate {
    /// `http.default_retry_predicate`: 429, 502, 503, 504, `ConnectionError`,
    /// `TimeoutError`.
    Default,
    /// `http.default_retry_predicate_non_idempotent`: 429, 503,
    /// `ConnectionFailedError`.
    NonIdempotent,
    /// `retry.always`.
    Always,
    /// `retry.never`.
    Never,
}

impl Predicate {
    /// The predicate an expression such as `${http.default_retry_predicate}` names.
    pub(crate) fn named(name: &str) -> Option<Predicate> {
        Some(match name {
            "http.default_retry_predicate" => Predicate::Default,
            "http.default_retry_predicate_non_idempotent" => Predicate::NonIdempotent,
            "retry.always" => Predicate::Always,
            "retry.never" => Predicate::Never,
            _ => return None,
        })
    }

    /// Whether a step that raised `error` (a Cloud Workflows error) is retried.
    pub(crate) fn holds(self, error: &Value) -> bool {
        let code = error.get("code").and_then(Value::as_u64);
        let tagged = |tag: &str| {
            error
                .get("tags")
                .and_then(Value::as_array)
                .is_some_and(|tags| tags.iter().any(|t| t == tag))
        };
        let http = |codes: &[u64]| tagged("HttpError") && code.is_some_and(|c| codes.contains(&c));
        match self {
            Predicate::Default => {
                http(&[429, 502, 503, 504]) || tagged("ConnectionError") || tagged("TimeoutError")
            }
            Predicate::NonIdempotent => http(&[429, 503]) || tagged("ConnectionFailedError"),
            Predicate::Always => true,
            Predicate::Never => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_become_tagged_errors() {
        let http = json!({"type": types::COMMUNICATION, "status": 503, "title": "HTTP 503",
            "data": {"status": 503, "headers": {"retry-after": "1"}, "body": {"e": 1}}});
        let e = from_problem(&http);
        assert_eq!(e["tags"], json!(["HttpError"]));
        assert_eq!(
            (e["code"].clone(), e["body"].clone()),
            (json!(503), json!({"e": 1}))
        );
        assert!(Predicate::Default.holds(&e) && Predicate::NonIdempotent.holds(&e));

        let refused =
            json!({"type": types::COMMUNICATION, "status": 503, "detail": "connection refused"});
        let e = from_problem(&refused);
        assert_eq!(
            e["tags"],
            json!(["ConnectionFailedError", "ConnectionError"])
        );
        assert!(Predicate::Default.holds(&e) && Predicate::NonIdempotent.holds(&e));

        let not_found =
            json!({"type": types::COMMUNICATION, "status": 404, "data": {"status": 404}});
        assert!(!Predicate::Default.holds(&from_problem(&not_found)));

        let raised = json!({"type": RAISED, "status": 500, "data": "plain"});
        assert_eq!(from_problem(&raised), json!("plain"));
        let timeout = json!({"type": types::TIMEOUT, "status": 408});
        assert_eq!(from_problem(&timeout)["tags"], json!(["TimeoutError"]));
        assert!(!Predicate::NonIdempotent.holds(&from_problem(&timeout)));
    }
}
