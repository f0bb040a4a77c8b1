//! `skein validate FILE...`: check workflow documents and print every problem
//! the way compilers do, or as JSON.

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
}

pub(crate) fn run(args: Args) -> ExitCode {
    let options = Options {
        strict: args.strict,
        max_bytes: args.max_size,
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
    Checked {
        file,
        source,
        diagnostics: parsed.diagnostics,
        summary,
    }
}
