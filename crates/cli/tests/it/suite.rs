//! Suites of workflow documents run by the real binary: each file of a directory
//! names its input (`# input:`, where `{{base}}` is a local stand-in HTTP server), any
//! more options of `skein run` (`# args:`) and the output it must give (`# output:`,
//! compared as JSON, integers and doubles apart) or a text its failure must contain
//! (`# output-error:`).

use std::path::Path;

use serde_json::Value;

use crate::{skein, stderr};

/// Runs every `.yaml` file of `dir` and checks its result against its header.
pub(crate) async fn every_document_gives_its_result(dir: &Path, base: &str) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("the suite's directory")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "the suite has its documents");
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
        let input = header("input").map(|i| i.replace("{{base}}", base));
        if let Some(input) = &input {
            args.extend(["--input", input]);
        }
        // `{{dir}}`: the suite's directory, for files beside the documents.
        let extra = header("args")
            .unwrap_or_default()
            .replace("{{dir}}", &dir.to_string_lossy());
        args.extend(extra.split_whitespace());
        let owned: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let out = tokio::task::spawn_blocking(move || {
            skein(&owned.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .expect("runs skein");
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
