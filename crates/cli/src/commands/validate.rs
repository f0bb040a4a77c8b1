//! `skein validate FILE...`: check workflow documents and print every problem
//! the way compilers do, or as JSON.

use program::{MessageKind, TaskKind};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args as ClapArgs;
use dsl::{Diagnostic, Options, diagnostic};

/// Check workflow documents (Serverless Workflow 1.0.x, YAML or JSON) without running them.
///
/// Every problem is reported, not just the first: unknown or misspelled keys, wrong
/// types, tasks with no kind or two, `then` targets and `use` references that do not
/// exist, bad durations, expressions that do not compile. Each is printed as
/// `FILE:LINE:COL: error: message` on stderr, with the line and a caret.
///
/// Exit status: 0 if every file is valid, 1 if any is invalid, 2 on usage errors
/// (including a file that cannot be read).
#[derive(ClapArgs)]
#[command(
    after_help = "Examples:\n  skein validate examples/*.yaml\n  skein validate --strict --json flow.yaml\n  cat flow.yaml | skein validate -"
)]
pub(crate) struct Args {
    /// Workflow files to check; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Print diagnostics as JSON on stdout instead of text on stderr.
    #[arg(long)]
    json: bool,

    /// Also report uses of skein's extensions to the DSL (see docs/extensions.md) as errors.
    #[arg(long)]
    strict: bool,

    /// Refuse documents larger than this many bytes (suffixes K and M allowed).
    #[arg(long, value_name = "SIZE", default_value = "4M", value_parser = parse_size)]
    max_size: usize,

    /// How Serverless Workflow documents are read: `auto` (Zigflow's dialect when the
    /// document names a `taskQueue` or `workflowType`) or `zigflow` (always, also for
    /// older Zigflow files that use `namespace` and `name`).
    #[arg(long, value_enum, default_value = "auto")]
    dialect: super::limits::Dialect,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let (digits, factor) = match s.strip_suffix(['K', 'k']) {
        Some(d) => (d, 1 << 10),
        None => match s.strip_suffix(['M', 'm']) {
            Some(d) => (d, 1 << 20),
            None => (s, 1),
        },
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            format!("`{s}` is not a size: write a positive number of bytes, like 65536, 64K or 4M")
        })
}

/// The outcome for one file.
struct Checked {
    file: String,
    source: String,
    diagnostics: Vec<Diagnostic>,
    /// A one-line description of the workflow, when valid.
    summary: Option<String>,
    /// What skein made of a document in another dialect, a line each.
    mapped: Vec<String>,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let options = Options {
        strict: args.strict,
        max_bytes: args.max_size,
        zigflow: args.dialect == super::limits::Dialect::Zigflow,
        ..Options::default()
    };
    let mut checked = Vec::new();
    let mut unreadable = false;
    for path in &args.files {
        let file = path.display().to_string();
        match read(path, options.max_bytes) {
            Ok(Ok(bytes)) => checked.push(check(file, &bytes, &options)),
            Ok(Err(diagnostic)) => checked.push(Checked {
                file,
                source: String::new(),
                diagnostics: vec![diagnostic],
                summary: None,
                mapped: Vec::new(),
            }),
            Err(e) => {
                eprintln!("skein: cannot read {file}: {e}");
                unreadable = true;
            }
        }
    }

    let invalid = checked
        .iter()
        .filter(|c| c.diagnostics.iter().any(Diagnostic::is_error))
        .count();
    if args.json {
        let records: Vec<serde_json::Value> = checked
            .iter()
            .map(|c| {
                serde_json::json!({
                    "file": c.file,
                    "valid": !c.diagnostics.iter().any(Diagnostic::is_error),
                    "diagnostics": diagnostic::to_json(&c.file, &c.source, &c.diagnostics),
                })
            })
            .collect();
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut out, &records);
        let _ = writeln!(out);
    } else {
        let mut err = std::io::stderr().lock();
        for c in &checked {
            let _ = write!(
                err,
                "{}",
                diagnostic::render(&c.file, &c.source, &c.diagnostics)
            );
            if let Some(summary) = &c.summary {
                let _ = writeln!(err, "{}: valid ({summary})", c.file);
                for line in &c.mapped {
                    let _ = writeln!(err, "  {line}");
                }
            }
        }
        if checked.len() > 1 || invalid > 0 {
            let errors: usize = checked
                .iter()
                .map(|c| c.diagnostics.iter().filter(|d| d.is_error()).count())
                .sum();
            let _ = writeln!(
                err,
                "{} checked: {} valid, {invalid} invalid ({errors} {})",
                plural(checked.len(), "file"),
                checked.len() - invalid,
                if errors == 1 { "error" } else { "errors" },
            );
        }
    }

    if unreadable {
        ExitCode::from(2)
    } else if invalid > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Reads a file (or stdin for `-`), refusing oversized ones without reading them whole.
fn read(path: &PathBuf, max_bytes: usize) -> std::io::Result<Result<Vec<u8>, Diagnostic>> {
    let too_large = |size: u64| Diagnostic {
        severity: dsl::Severity::Error,
        message: dsl::too_large(size, max_bytes),
        range: 0..0,
        path: String::new(),
        help: Some("use --max-size to raise the limit".into()),
    };
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("skein: reading a workflow from standard input (end with Ctrl-D)");
        }
        stdin
            .lock()
            .take(max_bytes as u64 + 1)
            .read_to_end(&mut bytes)?;
    } else {
        let file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(std::io::Error::other("it is a directory"));
        }
        if meta.len() > max_bytes as u64 {
            return Ok(Err(too_large(meta.len())));
        }
        file.take(max_bytes as u64 + 1).read_to_end(&mut bytes)?;
    }
    if bytes.len() > max_bytes {
        return Ok(Err(too_large(bytes.len() as u64)));
    }
    Ok(Ok(bytes))
}

fn check(file: String, bytes: &[u8], options: &Options) -> Checked {
    let source = match dsl::text(bytes, options) {
        Ok(text) => text.to_string(),
        Err(d) => {
            return Checked {
                file,
                source: String::new(),
                diagnostics: vec![d],
                summary: None,
                mapped: Vec::new(),
            };
        }
    };
    let parsed = gcw::parse_any(&source, options);
    let summary = parsed.workflow.as_ref().map(|w| {
        let d = &w.document;
        format!(
            "{}/{} {}, {}",
            d.namespace,
            d.name,
            d.version,
            plural(w.do_.tasks.len(), "top-level task")
        )
    });
    let mapped = match &parsed.workflow {
        Some(w) if w.accumulates_data => zigflow_mapping(w),
        _ => Vec::new(),
    };
    let mut diagnostics = parsed.diagnostics;
    if let Some(w) = &parsed.workflow {
        diagnostics.extend(grpc_protos(w, &source, options));
    }
    let summary = summary.filter(|_| !diagnostics.iter().any(Diagnostic::is_error));
    Checked {
        file,
        source,
        diagnostics,
        summary,
        mapped,
    }
}

/// The protos of the document's gRPC calls that are local files (a literal `file:`
/// URL, relative to the current directory as `skein run` reads them), compiled, and the
/// calls' services and methods looked up in them.
fn grpc_protos(w: &program::Program, source: &str, options: &Options) -> Vec<Diagnostic> {
    let root = std::env::current_dir().unwrap_or_default();
    let tree = dsl::tree(source, options).ok();
    let mut found = Vec::new();
    w.do_.each(&mut |nt| {
        let TaskKind::Call(call) = &nt.task.kind else {
            return;
        };
        let program::Call::Grpc(grpc) = call.as_ref() else {
            return;
        };
        let program::Uri::Template(uri) = &grpc.proto.endpoint.uri else {
            return;
        };
        let text = uri.as_str();
        if !text.starts_with("file:") || text.contains('{') {
            return;
        }
        let Ok(url) = url::Url::parse(text) else {
            return;
        };
        let checked = runtime::file_path(&url, &root)
            .map_err(engine::GrpcError::Definition)
            .and_then(|path| runtime::grpc::compile_file(&root, &path))
            .map_err(|e| (e, "/with/proto/endpoint"))
            .and_then(|pool| {
                runtime::grpc::find_method(&pool, &grpc.service.name, &grpc.method)
                    .map_err(|e| (e, "/with/method"))
            });
        if let Err((e, place)) = checked {
            let pointer = format!("{}{place}", nt.reference);
            let range = tree
                .as_ref()
                .and_then(|t| t.at(&pointer))
                .map_or(0..0, |n| n.range.clone());
            found.push(Diagnostic {
                severity: dsl::Severity::Error,
                message: e.to_string(),
                range,
                path: pointer,
                help: None,
            });
        }
    });
    found
}

/// What skein made of a Zigflow document, one line each: the names, the activities and
/// their policies, the message handlers.
fn zigflow_mapping(w: &program::Program) -> Vec<String> {
    let mut found = Mapping::default();
    walk(&w.do_, &mut found);
    let mut lines = vec![format!(
        "Zigflow: taskQueue `{}` is the namespace, workflowType `{}` the name",
        w.document.namespace, w.document.name
    )];
    if w.extensions.iter().any(|e| e.name == "zigflow.workflows") {
        lines.push(format!(
            "Zigflow: the document holds several workflows; it runs `{}`, and `run.workflow` \
             of another runs that one's tasks in place",
            w.do_.tasks[0].name
        ));
    }
    for (policy, n) in &found.activities {
        lines.push(format!(
            "Zigflow: {} (call, run) run as activities: {policy}",
            plural(*n, "task")
        ));
    }
    for kind in [MessageKind::Signal, MessageKind::Update, MessageKind::Query] {
        let names: Vec<&str> = found
            .messages
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n.as_str())
            .collect();
        if !names.is_empty() {
            lines.push(format!(
                "Zigflow: {} {} handled (skein exec {} …)",
                plural(names.len(), kind.as_str()),
                names.join(", "),
                kind.as_str()
            ));
        }
    }
    lines
}

#[derive(Default)]
struct Mapping {
    /// Activities by their policy, described, in the order first seen.
    activities: Vec<(String, usize)>,
    messages: Vec<(MessageKind, String)>,
}

impl Mapping {
    fn task(&mut self, nt: &program::NamedTask) {
        match &nt.task.kind {
            TaskKind::Try(t) if is_activity(nt, t) => {
                let policy = describe(t);
                match self.activities.iter_mut().find(|(p, _)| *p == policy) {
                    Some((_, n)) => *n += 1,
                    None => self.activities.push((policy, 1)),
                }
            }
            TaskKind::Try(t) => {
                walk(&t.try_, self);
                if let Some(list) = &t.catch.do_ {
                    walk(list, self);
                }
            }
            TaskKind::Do(list) => walk(list, self),
            TaskKind::For(f) => walk(&f.do_, self),
            TaskKind::Fork(f) => walk(&f.branches, self),
            TaskKind::Listen(l) => {
                if let Some(list) = l.foreach.as_ref().and_then(|f| f.do_.as_ref()) {
                    walk(list, self);
                }
            }
            TaskKind::Messages(m) => {
                for h in &m.handlers {
                    self.messages.push((h.kind, format!("`{}`", h.name)));
                }
            }
            _ => {}
        }
    }
}

fn walk(list: &program::TaskList, found: &mut Mapping) {
    for nt in &list.tasks {
        found.task(nt);
    }
}

/// Whether a `try` is the wrapper of an activity: it tries the same task (its name and
/// place) alone.
fn is_activity(nt: &program::NamedTask, t: &program::Try) -> bool {
    matches!(t.try_.tasks.as_slice(), [inner] if inner.name == nt.name && inner.reference == nt.reference)
}

fn describe(t: &program::Try) -> String {
    let Some(program::RetryRef::Inline(p)) = &t.catch.retry else {
        return "not retried".into();
    };
    let fixed = |d: &Option<program::Duration>| match d {
        Some(program::Duration::Fixed(d)) => format!("{d:?}"),
        _ => "no limit".into(),
    };
    let attempts = match p.limit.attempt_count {
        Some(n) => (n + 1).to_string(),
        None => "unlimited".into(),
    };
    format!(
        "each attempt within {}, {attempts} attempts, retried after {} growing ×{} up to {}",
        fixed(&p.limit.attempt_duration),
        fixed(&p.delay),
        p.multiplier.unwrap_or(1.0),
        fixed(&p.max_delay),
    )
}
