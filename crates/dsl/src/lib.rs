//! The Serverless Workflow front-end: parse a YAML or JSON document, validate it,
//! report every problem with its position, and lower it into the [`Program`] the
//! engine runs.
//!
//! [`parse`] returns the program (when the document has no errors) together
//! with all [`Diagnostic`]s: unknown and misspelled keys, wrong types, tasks
//! with no kind or two, dangling `then` targets and `use` references, bad
//! durations, expressions that do not compile. Expressions are compiled here, as
//! jq, once, so the engine only evaluates them.
//!
//! **API boundary:** no IO. Callers read files; this crate reads text.

mod decode;
pub mod diagnostic;
pub mod yaml;

pub use diagnostic::{Diagnostic, LineIndex, Severity};
pub use program::Program;
pub use yaml::{MAX_DEPTH, MAX_NODES};

/// The largest document accepted by default: 4 MiB.
pub const DEFAULT_MAX_BYTES: usize = 4 << 20;

/// Settings for [`parse`] (and for the other front-ends, which take the same).
#[derive(Clone, Debug)]
pub struct Options {
    /// Report every use of a skein extension (such as `for.concurrency`) as an error.
    pub strict: bool,
    /// Larger documents are refused before parsing.
    pub max_bytes: usize,
    /// Google's limits, for Cloud Workflows documents.
    pub cloud_workflows: CloudWorkflowsLimits,
    /// Read every Serverless Workflow document in Zigflow's dialect, also one that names
    /// itself with `namespace` and `name` as older Zigflow files do (`--dialect zigflow`).
    pub zigflow: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            strict: false,
            max_bytes: DEFAULT_MAX_BYTES,
            cloud_workflows: CloudWorkflowsLimits::default(),
            zigflow: false,
        }
    }
}

/// Google's limits on a Cloud Workflows execution, which the Cloud Workflows front-end
/// lowers into the program: documented defaults that configuration can raise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloudWorkflowsLimits {
    /// Branches or iterations of a `parallel` step running at once when it gives no
    /// `concurrency_limit` (Google: 20).
    pub concurrency: std::num::NonZeroU32,
    /// Bytes of a subworkflow's variables, as JSON (Google: 512 KiB).
    pub variables_bytes: usize,
    /// Steps one execution may take (Google: 100,000), counted as the tasks it starts.
    pub steps: u64,
}

impl CloudWorkflowsLimits {
    pub const DEFAULT_CONCURRENCY: u32 = 20;
    pub const DEFAULT_VARIABLES_BYTES: usize = 512 * 1024;
    pub const DEFAULT_STEPS: u64 = 100_000;
}

impl Default for CloudWorkflowsLimits {
    fn default() -> Self {
        CloudWorkflowsLimits {
            concurrency: std::num::NonZeroU32::new(Self::DEFAULT_CONCURRENCY)
                .expect("the default is not zero"),
            variables_bytes: Self::DEFAULT_VARIABLES_BYTES,
            steps: Self::DEFAULT_STEPS,
        }
    }
}

/// The outcome of [`parse`]: the workflow's program if there is no error, and every
/// diagnostic.
#[derive(Debug)]
pub struct Parsed {
    pub workflow: Option<Program>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Checks that `bytes` are a text document within the size limit and returns the text.
/// A binary file, invalid UTF-8 or an oversized document gets a diagnostic saying so.
pub fn text<'b>(bytes: &'b [u8], options: &Options) -> Result<&'b str, Diagnostic> {
    let fail = |at: usize, message: String| Diagnostic {
        severity: Severity::Error,
        message,
        range: at..at,
        path: String::new(),
        help: None,
    };
    if bytes.len() > options.max_bytes {
        return Err(fail(0, too_large(bytes.len() as u64, options.max_bytes)));
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(fail(
            0,
            format!("this is a binary file, not a YAML or JSON document (NUL byte at offset {at})"),
        ));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let valid = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
        let line = valid.matches('\n').count() + 1;
        let col = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        fail(0, format!("this file is not UTF-8 text: invalid byte at line {line}, column {col} (offset {at})"))
    })
}

/// The message for a document over the size limit.
pub fn too_large(size: u64, max_bytes: usize) -> String {
    format!(
        "the document is {}, larger than the {} limit for a workflow definition",
        human_bytes(size),
        human_bytes(max_bytes as u64)
    )
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}

/// Parses and validates a workflow document (YAML or JSON).
pub fn parse(source: &str, options: &Options) -> Parsed {
    match tree(source, options) {
        Ok(root) => lower(source, &root, options),
        Err(d) => Parsed::failed(d),
    }
}

impl Parsed {
    /// The outcome of a document stopped by one error.
    pub fn failed(diagnostic: Diagnostic) -> Parsed {
        Parsed {
            workflow: None,
            diagnostics: vec![diagnostic],
        }
    }
}

/// The positioned tree of `source`, or the one diagnostic that stops there: a
/// document over the size limit, or one that is not YAML.
pub fn tree(source: &str, options: &Options) -> Result<yaml::Node, Diagnostic> {
    let error = |range: std::ops::Range<usize>, message: String| Diagnostic {
        severity: Severity::Error,
        message,
        range,
        path: String::new(),
        help: None,
    };
    if source.len() > options.max_bytes {
        return Err(error(
            0..0,
            too_large(source.len() as u64, options.max_bytes),
        ));
    }
    yaml::parse(source).map_err(|e| {
        let at = e.line_col.map_or(0, |(line, col)| {
            LineIndex::new(source).offset(source, line, col)
        });
        Diagnostic {
            help: e.help,
            ..error(at..at + 1, e.message)
        }
    })
}

/// Validates the tree of a Serverless Workflow document (from [`tree`]) and lowers it.
pub fn lower(source: &str, root: &yaml::Node, options: &Options) -> Parsed {
    let mut cx = decode::Cx::new(source);
    cx.zigflow = options.zigflow;
    let workflow = decode::workflow(&mut cx, &decode::At::root(root));
    if options.strict {
        for use_ in &cx.extensions {
            cx.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                message: match use_.name {
                    "zigflow.document" => "`taskQueue` and `workflowType` are Zigflow's dialect, \
                         not part of the Serverless Workflow DSL (which has `namespace` and `name`)"
                        .to_string(),
                    "wait.until" => "`wait.until` is Zigflow's extension, which skein runs, \
                         not part of the Serverless Workflow DSL"
                        .to_string(),
                    "zigflow.messages" => "a `listen` to Temporal signals, queries and updates \
                         (`with.type` `signal`, `query` or `update`) is Zigflow's, which skein \
                         runs; in the Serverless Workflow DSL a listener waits for CloudEvents"
                        .to_string(),
                    "zigflow.workflows" => "a document whose top-level tasks are all `do` \
                         tasks holding several workflows is Zigflow's; in the Serverless \
                         Workflow DSL they run one after another"
                        .to_string(),
                    "duration.expressions" => "a `${ }` expression in a field of a duration is \
                         Zigflow's extension, which skein runs, not part of the Serverless \
                         Workflow DSL"
                        .to_string(),
                    name => format!(
                        "`{name}` is a skein extension, not part of the Serverless Workflow DSL"
                    ),
                },
                range: use_.range.clone(),
                path: use_.path.clone(),
                help: Some("--strict reports extensions; see docs/extensions.md".into()),
            });
        }
    }
    let failed = cx.diagnostics.iter().any(Diagnostic::is_error);
    Parsed {
        workflow: if failed { None } else { workflow },
        diagnostics: cx.diagnostics,
    }
}
