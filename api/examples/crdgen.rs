//! Writes the CustomResourceDefinitions to `<dir>/<plural>.yaml` (default `manifests/crds`).
//! Run through `cargo xtask crds`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "manifests/crds".into()),
    );
    std::fs::create_dir_all(&dir)?;
    for crd in faultline_api::crds() {
        let path = dir.join(format!("{}.yaml", crd.spec.names.plural));
        std::fs::write(&path, faultline_api::crd_yaml(&crd)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
