//! The DSL's error object: RFC 7807 problem details with the standard error types.
//!
//! It lives here, in the lowest crate, because expression evaluation is the
//! first place that produces one; the engine and the runtime produce the same.

use serde::{Deserialize, Serialize};

/// The standard error types of the DSL, with the status each defaults to.
pub mod types {
    pub const CONFIGURATION: &str = "https://serverlessworkflow.io/spec/1.0.0/errors/configuration";
    pub const VALIDATION: &str = "https://serverlessworkflow.io/spec/1.0.0/errors/validation";
    pub const EXPRESSION: &str = "https://serverlessworkflow.io/spec/1.0.0/errors/expression";
    pub const AUTHENTICATION: &str =
        "https://serverlessworkflow.io/spec/1.0.0/errors/authentication";
    pub const AUTHORIZATION: &str = "https://serverlessworkflow.io/spec/1.0.0/errors/authorization";
    pub const TIMEOUT: &str = "https://serverlessworkflow.io/spec/1.0.0/errors/timeout";
    pub const COMMUNICATION: &str = "https://serverlessworkflow.io/spec/1.0.0/errors/communication";
    pub const RUNTIME: &str = "https://serverlessworkflow.io/spec/1.0.0/errors/runtime";
}

/// An error raised in a workflow: by a `raise` task, a failed call, an expression, a timeout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// A URI identifying the kind of error, often one of [`types`].
    #[serde(rename = "type")]
    pub type_: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// JSON pointer to the task the error comes from, such as `/do/0/getPet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// What else the error carries (an extension member): the value a Cloud Workflows
    /// `raise` raised, or the status, headers and body of a failed HTTP call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<serde_json::Value>>,
}
