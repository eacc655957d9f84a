//! docs/validation.md lists every rule id.

use faultline_api::validate::Rule;

#[test]
fn validation_doc_lists_every_rule() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/validation.md");
    let doc = std::fs::read_to_string(&path).expect("docs/validation.md exists");
    let missing: Vec<&str> = Rule::ALL_NAMES
        .iter()
        .copied()
        .filter(|id| !doc.contains(&format!("| `{id}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/validation.md lacks rows for {missing:?}"
    );
}
