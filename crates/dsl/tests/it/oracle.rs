//! The official JSON schema of the DSL (read from `../shared`), as a test oracle.

use std::sync::LazyLock;

use serde_json::Value;

static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let path = super::spec_dir().join("schema/workflow.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let schema: Value = serde_saphyr::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("the official schema compiles")
});

/// Whether the schema accepts `document` (YAML or JSON text), and if not, its first complaint.
pub(crate) fn verdict(document: &str) -> Result<(), String> {
    let instance: Value = serde_saphyr::from_str_with_options(
        document,
        serde_saphyr::options! { strict_booleans: true, duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins },
    )
    .map_err(|e| format!("not parsable: {e}"))?;
    match VALIDATOR.iter_errors(&instance).next() {
        None => Ok(()),
        Some(e) => Err(format!("{} at {}", e, e.instance_path())),
    }
}
