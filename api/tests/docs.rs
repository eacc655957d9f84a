//! docs/validation.md lists every rule id and every warning id, and nothing else in those
//! tables.

use faultline_api::validate::{Note, Rule};

/// The ids of the table rows under `heading` (`| `id` | ... |`), up to the next heading.
fn table_ids(doc: &str, heading: &str) -> Vec<String> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/validation.md has no `{heading}`"));
    doc[start + heading.len()..]
        .lines()
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |").map(|(id, _)| id.to_owned()))
        .collect()
}

#[test]
fn validation_doc_lists_every_rule_and_warning() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/validation.md");
    let doc = std::fs::read_to_string(&path).expect("docs/validation.md exists");
    for (heading, ids) in [
        ("## Rule ids", Rule::ALL_NAMES),
        ("## Warnings", Note::ALL_NAMES),
    ] {
        let rows = table_ids(&doc, heading);
        let mut want: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
        let mut got = rows.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want, "docs/validation.md `{heading}` rows");
    }
}
