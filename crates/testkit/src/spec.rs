//! The Serverless Workflow specification's data (examples, conformance kit, JSON
//! schema), which some tests read. It is not our text, so it stays outside the
//! repository; tests find it, in this order:
//!
//! 1. `SKEIN_SPEC_DIR`, when set (and then it must exist);
//! 2. `spec/` in the repository (git-ignored), filled by `scripts/fetch-spec.sh`;
//! 3. `../shared/spec/serverless-workflow-1.0.3` beside the repository.
//!
//! All three have the layout of the specification repository at tag v1.0.3:
//! `schema/workflow.yaml`, `examples/*.yaml`, `ctk/features/*.feature`.

use std::path::{Path, PathBuf};

/// The variable that names the folder explicitly.
pub const DIR_VAR: &str = "SKEIN_SPEC_DIR";
/// The variable that turns a skip into a failure (CI sets it).
pub const REQUIRE_VAR: &str = "SKEIN_REQUIRE_SPEC";
/// How to get the data, as a test that skips says it.
pub const HOW: &str = "run scripts/fetch-spec.sh (or set SKEIN_SPEC_DIR to a copy of the \
                       specification repository at v1.0.3)";

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the spec's data is, if anywhere. A `SKEIN_SPEC_DIR` that names no folder is
/// a mistake worth stopping for, not a reason to look elsewhere.
pub fn locate() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(DIR_VAR) {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("schema/workflow.yaml").is_file(),
            "{DIR_VAR}={} holds no schema/workflow.yaml: it must name a copy of the \
             specification repository at v1.0.3",
            dir.display()
        );
        return Some(dir);
    }
    let root = repo();
    [
        root.join("spec"),
        root.join("../shared/spec/serverless-workflow-1.0.3"),
    ]
    .into_iter()
    .find(|dir| dir.join("schema/workflow.yaml").is_file())
}

/// The spec's folder for `test`, or `None` after saying the test was skipped (a
/// failure instead with `SKEIN_REQUIRE_SPEC=1`).
pub fn dir(test: &str) -> Option<PathBuf> {
    let found = locate();
    if found.is_none() {
        crate::skip(
            test,
            REQUIRE_VAR,
            "the Serverless Workflow spec's data is not here",
            HOW,
        );
    }
    found
}
