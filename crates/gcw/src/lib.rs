//! The Google Cloud Workflows front-end: a Cloud Workflows document (YAML or JSON,
//! `main` and subworkflows, or a list of steps) checked with every problem reported
//! at its position, its expressions compiled in their own language, and lowered into
//! the [`Program`] the engine runs, so that journal, retries, steering, events and
//! progress serve it as they serve the DSL.
//!
//! - `lex`, `parse`: the expression language's tokens and syntax tree, with the
//!   documented precedence.
//! - `value`: integers and doubles kept apart on JSON, the operators, the tagged
//!   errors (`KeyError`, `TypeError`, …).
//! - `eval`, `stdlib`: evaluation under the shared expression budget, and the
//!   standard library's functions that expressions call.
//! - `compute`: what each lowered task computes (assignments, results bound, loop
//!   scopes, returns).
//! - `lower`: the document to the program.
//!
//! **API boundary:** no IO; knows the DSL front-end only for its YAML tree and its
//! diagnostics.

mod compute;
mod connectors;
mod errors;
mod eval;
mod formats;
mod interp;
mod lex;
mod lower;
mod parse;
mod stdlib;
mod value;

use dsl::Parsed;
use dsl::yaml::{Kind, Node};

pub use program::Program;
/// The type of the event `sys.log` emits into its execution's stream; its data holds
/// `severity` and `text`, `json` or `data`.
pub const LOG_EVENT: &str = "dev.skein.log.v1";

/// A `sys.log` event (the CloudEvent) as one line for a log: its severity (`DEFAULT`
/// when it gives none) and what it logged.
pub fn log_line(event: &serde_json::Value) -> String {
    let data = &event["data"];
    let severity = data["severity"].as_str().unwrap_or("DEFAULT");
    let what = ["text", "json", "data"]
        .iter()
        .find_map(|k| data.get(*k))
        .map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    format!("[{severity}] {what}")
}

/// The type of the event a callback request becomes in its execution's inbox, where
/// `events.await_callback` finds it by its `subject`, the callback's id.
pub const CALLBACK_EVENT: &str = "dev.skein.callback.v1";

pub use stdlib::{GOOGLE_LOCATION_LABEL, GOOGLE_PROJECT_LABEL, REVISION_LABEL};
pub use value::{Raised, type_name};

/// The error type of what a `raise` step raises.
pub const RAISED: &str = "https://skein.dev/errors/cloud-workflows/raised";

/// Which syntax a document is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// The CNCF Serverless Workflow DSL.
    Dsl,
    /// Google Cloud Workflows.
    CloudWorkflows,
}

impl Syntax {
    /// The syntax of a document's tree, by its shape: a top-level `main` with
    /// `steps`, or a top-level list of steps, is Cloud Workflows; anything else is the
    /// DSL's (which then reports what is wrong with it).
    pub fn of(root: &Node) -> Syntax {
        let is_step = |item: &Node| match &item.kind {
            Kind::Map(e) => e.len() == 1 && matches!(e[0].1.kind, Kind::Map(_)),
            _ => false,
        };
        let cloud = match &root.kind {
            Kind::Seq(items) => !items.is_empty() && items.iter().all(is_step),
            Kind::Map(entries) => entries.iter().any(|(k, v)| {
                k.as_str() == Some("main")
                    && match &v.kind {
                        Kind::Map(e) => e.iter().any(|(k, _)| k.as_str() == Some("steps")),
                        _ => false,
                    }
            }),
            _ => false,
        };
        if cloud {
            Syntax::CloudWorkflows
        } else {
            Syntax::Dsl
        }
    }

    /// The syntax of a document's text (the DSL's when it does not parse).
    pub fn of_text(source: &str) -> Syntax {
        match dsl::yaml::parse(source) {
            Ok(root) => Syntax::of(&root),
            Err(_) => Syntax::Dsl,
        }
    }

    /// The name `--syntax` takes.
    pub fn name(self) -> &'static str {
        match self {
            Syntax::Dsl => "serverless-workflow",
            Syntax::CloudWorkflows => "cloud-workflows",
        }
    }
}

/// A failed execution's error (the engine's problem) as Cloud Workflows shows it: what
/// `raise` raised, or a map with `message` and `tags` (`HttpError` with the response,
/// `ResourceLimitError`, …), as an `except` would have seen it.
pub fn error_value(problem: &serde_json::Value) -> serde_json::Value {
    errors::from_problem(problem)
}

/// Parses and checks a document of either syntax, recognised by its shape. The YAML
/// is parsed once, whichever syntax it turns out to be.
pub fn parse_any(source: &str, options: &dsl::Options) -> Parsed {
    let root = match dsl::tree(source, options) {
        Ok(root) => root,
        Err(d) => return Parsed::failed(d),
    };
    match Syntax::of(&root) {
        Syntax::Dsl => dsl::lower(source, &root, options),
        Syntax::CloudWorkflows => lower_tree(source, &root, options),
    }
}

/// Parses and checks a Cloud Workflows document, and lowers it.
pub fn parse(source: &str, options: &dsl::Options) -> Parsed {
    match dsl::tree(source, options) {
        Ok(root) => lower_tree(source, &root, options),
        Err(d) => Parsed::failed(d),
    }
}

fn lower_tree(source: &str, root: &Node, options: &dsl::Options) -> Parsed {
    let mut lowerer = lower::Lowerer::new(source, options.cloud_workflows);
    let workflow = lowerer.document(root);
    Parsed {
        workflow,
        diagnostics: lowerer.diagnostics,
    }
}
