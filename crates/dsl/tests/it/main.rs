//! Integration tests of the workflow model, driven by data files: the spec's
//! examples and conformance kit, our own valid documents, and broken documents
//! that state the diagnostics they must produce. The official JSON schema is
//! the oracle for what is structurally invalid.

mod invalid;
mod limits;
mod oracle;
mod valid;

use std::path::{Path, PathBuf};

fn data_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(kind)
}

/// The `.yaml` and `.json` files of a directory, sorted.
fn documents(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    files
}

fn parse(source: &str) -> dsl::Parsed {
    dsl::parse(source, &dsl::Options::default())
}

fn rendered(file: &str, source: &str, parsed: &dsl::Parsed) -> String {
    dsl::diagnostic::render(file, source, &parsed.diagnostics)
}
