//! Documents that must validate: every example of the spec, every workflow of
//! the conformance kit, and our own (including the skein extensions).

use super::{data_dir, documents, oracle, parse, rendered};

#[test]
fn every_spec_example_validates() {
    let Some(spec) = testkit::spec::dir("every_spec_example_validates") else {
        return;
    };
    let examples = documents(&spec.join("examples"));
    assert!(
        examples.len() >= 60,
        "expected the spec's examples, found {}",
        examples.len()
    );
    let mut failures = String::new();
    for path in &examples {
        let source = std::fs::read_to_string(path).unwrap();
        let parsed = parse(&source);
        if parsed.workflow.is_none() || !parsed.diagnostics.is_empty() {
            failures += &rendered(&path.display().to_string(), &source, &parsed);
        }
        // The oracle agrees, so it is a fair judge of the broken documents.
        if let Err(e) = oracle::verdict(&source) {
            failures += &format!(
                "{}: the schema rejects a spec example: {e}\n",
                path.display()
            );
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

/// The workflows embedded in the conformance kit's feature files.
fn ctk_workflows(spec: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in documents_with_ext(&spec.join("ctk/features"), "feature") {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines().enumerate().peekable();
        while let Some((n, line)) = lines.next() {
            if !line.trim_end().ends_with("a workflow with definition:") {
                continue;
            }
            let (_, open) = lines.next().expect("a doc string follows");
            let indent = open.len() - open.trim_start().len();
            let mut body = String::new();
            for (_, l) in lines.by_ref() {
                if l.trim() == "\"\"\"" {
                    break;
                }
                body += l.get(indent..).unwrap_or("").trim_end();
                body.push('\n');
            }
            out.push((format!("{}:{}", path.display(), n + 1), body));
        }
    }
    out
}

fn documents_with_ext(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .collect();
    files.sort();
    files
}

#[test]
fn every_conformance_kit_workflow_validates() {
    let Some(spec) = testkit::spec::dir("every_conformance_kit_workflow_validates") else {
        return;
    };
    let workflows = ctk_workflows(&spec);
    assert_eq!(
        workflows.len(),
        21,
        "the kit has 21 scenarios, each with one workflow"
    );
    let mut failures = String::new();
    for (name, source) in &workflows {
        let parsed = parse(source);
        if parsed.workflow.is_none() {
            failures += &rendered(name, source, &parsed);
        }
        if let Err(e) = oracle::verdict(source) {
            failures += &format!("{name}: the schema rejects it: {e}\n");
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn our_own_documents_validate() {
    let mut files = documents(&data_dir("valid"));
    files.extend(documents(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"),
    ));
    assert!(!files.is_empty());
    let judged = oracle::available("our_own_documents_validate");
    let mut failures = String::new();
    for path in &files {
        let source = std::fs::read_to_string(path).unwrap();
        let parsed = parse(&source);
        if parsed.workflow.is_none() || !parsed.diagnostics.is_empty() {
            failures += &rendered(&path.display().to_string(), &source, &parsed);
        }
        if !judged {
            continue;
        }
        // A document that uses an extension says so; the schema must then reject it,
        // and accept every other one.
        let uses_extension = source.contains("# uses: skein extension");
        match (oracle::verdict(&source), uses_extension) {
            (Ok(()), true) => {
                failures += &format!("{}: the schema accepts an extension\n", path.display())
            }
            (Err(e), false) => {
                failures += &format!("{}: the schema rejects it: {e}\n", path.display())
            }
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn strict_mode_reports_every_extension_use() {
    let source =
        std::fs::read_to_string(data_dir("valid").join("fan-out-concurrency.yaml")).unwrap();
    let lenient = parse(&source);
    let workflow = lenient.workflow.expect("valid without --strict");
    assert_eq!(workflow.extensions.len(), 2);

    let strict = dsl::parse(
        &source,
        &dsl::Options {
            strict: true,
            ..Default::default()
        },
    );
    assert!(strict.workflow.is_none());
    let paths: Vec<&str> = strict.diagnostics.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/do/1/renderChunks/for/concurrency",
            "/do/2/notifyAll/for/concurrency"
        ]
    );
    assert!(
        strict
            .diagnostics
            .iter()
            .all(|d| d.message.contains("`for.concurrency` is a skein extension"))
    );
}

#[test]
fn the_model_holds_what_the_document_says() {
    use program::{Concurrency, FlowDirective, TaskKind};
    let source =
        std::fs::read_to_string(data_dir("valid").join("fan-out-concurrency.yaml")).unwrap();
    let w = parse(&source).workflow.unwrap();
    assert_eq!(w.document.name, "render-fan-out");
    let names: Vec<&str> = w.do_.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["plan", "renderChunks", "notifyAll", "assemble"]);
    let TaskKind::For(f) = &w.do_.tasks[1].task.kind else {
        panic!("renderChunks is a for")
    };
    assert_eq!((f.each.as_str(), f.at.as_str()), ("chunk", "i"));
    assert!(matches!(f.concurrency, Concurrency::Fixed(n) if n.get() == 8));
    assert_eq!(f.do_.tasks[0].reference, "/do/1/renderChunks/do/0/render");
    let TaskKind::For(g) = &w.do_.tasks[2].task.kind else {
        panic!("notifyAll is a for")
    };
    assert!(matches!(&g.concurrency, Concurrency::Expr(e) if e.text().trim() == ".parallelism"));
    assert_eq!(w.do_.tasks[3].task.then, FlowDirective::End);
}

#[test]
fn runtime_errors_carry_the_task_path_and_become_expression_errors() {
    use program::TaskKind;
    let source = "document: {dsl: '1.0.3', namespace: t, name: t, version: '1.0.0'}\n\
                  do:\n  - outer:\n      do:\n        - price:\n            set:\n              total: ${ .items | map(.price) | add * 1.2 }\n";
    let w = parse(source).workflow.unwrap();
    let TaskKind::Do(inner) = &w.do_.tasks[0].task.kind else {
        panic!()
    };
    let task = &inner.tasks[0];
    let TaskKind::Set(template) = &task.task.kind else {
        panic!()
    };
    let input = serde_json::json!({"items": [{"price": "ten"}]});
    let err = template.eval(&input, &expr::Vars::new()).unwrap_err();
    assert_eq!(err.origin, "/do/0/outer/do/0/price/set/total");
    let problem = err.into_problem(&task.reference);
    assert_eq!(
        problem.type_,
        "https://serverlessworkflow.io/spec/1.0.0/errors/expression"
    );
    assert_eq!(problem.status, 400);
    assert_eq!(problem.instance.as_deref(), Some("/do/0/outer/do/0/price"));
    let detail = problem.detail.unwrap();
    assert!(
        detail.contains("at /do/0/outer/do/0/price/set/total"),
        "{detail}"
    );
    assert!(detail.contains("cannot"), "{detail}");
}
