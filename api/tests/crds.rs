//! The committed CRD manifests must be exactly what the Rust types generate.

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/crds");
    let mut stale = Vec::new();
    for crd in faultline_api::crds() {
        let name = format!("{}.yaml", crd.spec.names.plural);
        let want = faultline_api::crd_yaml(&crd).expect("CRD serializes");
        match std::fs::read_to_string(dir.join(&name)) {
            Ok(have) if have == want => {}
            Ok(_) => stale.push(format!("{name} differs")),
            Err(err) => stale.push(format!("{name}: {err}")),
        }
    }
    assert!(
        stale.is_empty(),
        "manifests/crds is stale ({}); run `cargo xtask crds`",
        stale.join(", ")
    );
}

#[test]
fn crds_have_printer_columns_and_status() {
    for crd in faultline_api::crds() {
        let version = &crd.spec.versions[0];
        assert_eq!(crd.spec.group, "chaos.faultline.dev");
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            columns.contains(&"Phase") && columns.contains(&"Age"),
            "{columns:?}"
        );
        if crd.spec.names.kind != "StressChaos" {
            assert!(columns.contains(&"Action"), "{columns:?}");
        }
    }
}
