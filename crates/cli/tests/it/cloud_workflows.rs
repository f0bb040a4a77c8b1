//! Cloud Workflows documents run by the real binary: each file of
//! `crates/gcw/tests/data/` names its input (`# input:`) and the output it must give
//! (`# output:`, compared as JSON, integers and doubles apart) or a text its failure
//! must contain (`# output-error:`).

use serde_json::Value;

use crate::{repo, skein, stderr};

#[test]
fn every_document_of_the_suite_gives_its_expected_result() {
    let dir = repo().join("crates/gcw/tests/data");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the suite's directory")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "the suite has its documents");
    let data = tempfile::tempdir().expect("a temporary directory");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let header = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                .map(str::to_string)
        };
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let mut args = vec![
            "run",
            file.to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
        ];
        let input = header("input");
        if let Some(input) = &input {
            args.extend(["--input", input]);
        }
        let out = skein(&args);
        match (header("output"), header("output-error")) {
            (Some(expected), None) => {
                assert!(out.status.success(), "{name}: {}", stderr(&out));
                let got: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
                let expected: Value = serde_json::from_str(&expected).expect("a JSON expectation");
                assert_eq!(got, expected, "{name}");
            }
            (None, Some(expected)) => {
                assert!(!out.status.success(), "{name} should fail");
                let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
                assert!(
                    all.contains(&expected),
                    "{name}: expected `{expected}` in:\n{all}"
                );
            }
            _ => panic!("{name} needs `# output:` or `# output-error:`"),
        }
    }
}

#[test]
fn a_broken_document_gets_every_error_with_its_position() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "main:\n  steps:\n    - a:\n        assign:\n          - x: ${y + 1}\n    - b:\n        call: nope\n        next: missing\n    - c:\n        assign:\n          - z: ${len(x, 2) + textx.split(\"a\")}\n",
    )
    .unwrap();
    let out = skein(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    for expected in [
        "bad.yaml:5:18: error: the variable `y` is never assigned in this subworkflow",
        "bad.yaml:7:15: error: `nope` is neither a subworkflow",
        "bad.yaml:8:15: error: `next` names the step `missing`",
        "bad.yaml:11:18: error: `len` takes 1 arguments, not 2",
        "bad.yaml:11:30: error: unknown function `textx.split`",
        "did you mean `text.split`?",
    ] {
        assert!(text.contains(expected), "expected `{expected}` in:\n{text}");
    }
}
