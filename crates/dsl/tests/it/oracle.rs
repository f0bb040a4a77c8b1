//! The official JSON schema of the DSL (from the spec's data, `testkit::spec`), as a
//! test oracle. Without the spec's data there is no oracle: the tests that ask it say
//! that they skipped its verdicts.

use std::sync::LazyLock;

use serde_json::Value;

static VALIDATOR: LazyLock<Option<jsonschema::Validator>> = LazyLock::new(|| {
    let path = testkit::spec::locate()?.join("schema/workflow.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let schema: Value = serde_saphyr::from_str(&text).unwrap();
    Some(jsonschema::validator_for(&schema).expect("the official schema compiles"))
});

/// Whether the oracle is here; if not, says that `test` skipped its verdicts (and
/// fails where the spec is required).
pub(crate) fn available(test: &str) -> bool {
    VALIDATOR.is_some() || testkit::spec::dir(&format!("{test} (the schema's verdicts)")).is_some()
}

/// Whether the schema accepts `document` (YAML or JSON text), and if not, its first
/// complaint. Only to be asked when [`available`].
pub(crate) fn verdict(document: &str) -> Result<(), String> {
    let validator = VALIDATOR.as_ref().expect("asked only when available");
    let instance: Value = serde_saphyr::from_str_with_options(
        document,
        serde_saphyr::options! { strict_booleans: true, duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins },
    )
    .map_err(|e| format!("not parsable: {e}"))?;
    match validator.iter_errors(&instance).next() {
        None => Ok(()),
        Some(e) => Err(format!("{} at {}", e, e.instance_path())),
    }
}
