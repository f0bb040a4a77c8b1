//! Broken documents, each ending with what it must produce:
//!
//! ```yaml
//! # schema: invalid            (the official schema rejects it too; or `valid`, or `unparsable`)
//! # expect: 12:7 /do/0/getPet/tiemout | unknown key `tiemout`
//! ```
//!
//! Every diagnostic must be expected (line, column, JSON pointer, a fragment of the
//! message) and every expectation met. A document the schema rejects must be
//! rejected by the model: the model is at least as strict as the schema.

use super::{data_dir, documents, oracle, parse, rendered};

struct Expect {
    line: usize,
    col: usize,
    path: String,
    fragment: String,
}

fn expectations(source: &str) -> (Option<String>, Vec<Expect>) {
    let mut schema = None;
    let mut expects = Vec::new();
    for line in source.lines() {
        if let Some(s) = line.strip_prefix("# schema: ") {
            schema = Some(s.trim().to_string());
        } else if let Some(e) = line.strip_prefix("# expect: ") {
            let (pos, rest) = e.split_once(' ').expect("`# expect: L:C /path | fragment`");
            let (path, fragment) = rest
                .split_once(" | ")
                .expect("`# expect: L:C /path | fragment`");
            let (l, c) = pos.split_once(':').unwrap();
            expects.push(Expect {
                line: l.parse().unwrap(),
                col: c.parse().unwrap(),
                path: path.to_string(),
                fragment: fragment.to_string(),
            });
        }
    }
    (schema, expects)
}

/// The root's JSON pointer is the empty string; expectations write it `/`.
fn shown(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

#[test]
fn broken_documents_fail_with_the_right_message_at_the_right_place() {
    let files = documents(&data_dir("invalid"));
    assert!(
        files.len() >= 40,
        "at least 40 broken documents, found {}",
        files.len()
    );
    let judged =
        oracle::available("broken_documents_fail_with_the_right_message_at_the_right_place");
    let mut failures = String::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let source = std::fs::read_to_string(path).unwrap();
        let (schema, expects) = expectations(&source);
        let parsed = parse(&source);
        let index = dsl::LineIndex::new(&source);
        let mut problems = Vec::new();

        if parsed.workflow.is_some() {
            problems.push("the model accepted it".to_string());
        }
        if expects.is_empty() {
            problems.push("it states no `# expect:` line".into());
        }
        let mut unmatched: Vec<&dsl::Diagnostic> = parsed.diagnostics.iter().collect();
        for e in &expects {
            let found = unmatched.iter().position(|d| {
                index.line_col(&source, d.range.start) == (e.line, e.col)
                    && shown(&d.path) == e.path
                    && d.message.contains(&e.fragment)
            });
            match found {
                Some(i) => {
                    unmatched.remove(i);
                }
                None => problems.push(format!(
                    "expected {}:{} {} | {}",
                    e.line, e.col, e.path, e.fragment
                )),
            }
        }
        for d in unmatched {
            let (l, c) = index.line_col(&source, d.range.start);
            problems.push(format!(
                "unexpected {l}:{c} {} | {}",
                shown(&d.path),
                d.message
            ));
        }

        if judged {
            let verdict = oracle::verdict(&source);
            match (schema.as_deref(), &verdict) {
                (Some("invalid"), Err(_)) | (Some("valid"), Ok(())) => {}
                (Some("unparsable"), Err(e)) if e.starts_with("not parsable") => {}
                (stated, actual) => problems.push(format!(
                    "stated `# schema: {stated:?}`, the schema says {actual:?}"
                )),
            }
        }

        if !problems.is_empty() {
            failures += &format!(
                "\n{name}:\n  {}\n{}",
                problems.join("\n  "),
                rendered(&name, &source, &parsed)
            );
        }
    }
    assert!(failures.is_empty(), "{failures}");
}
