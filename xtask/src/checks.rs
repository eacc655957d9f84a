//! Workspace rules that no compiler checks, run by `cargo xtask test` after clippy:
//! - `faultline-api` stays pure in its dependencies too: none of the crates that bring a runtime,
//!   an HTTP stack or a TLS stack may be in its normal dependency tree;
//! - every member crate opts in to `[workspace.lints]`, so a new crate follows the same rules.

use std::path::Path;
use std::process::Command;

/// Crates that must not be in `faultline-api`'s normal dependencies (with its default features).
pub(crate) const NOT_IN_API: &[&str] = &[
    "tokio",
    "hyper",
    "rustls",
    "kube-client",
    "kube-runtime",
    "tower",
    "reqwest",
];

/// Names of the forbidden crates found in `cargo tree --prefix none` output.
pub(crate) fn forbidden_in_tree(tree: &str) -> Vec<String> {
    let mut found: Vec<String> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| NOT_IN_API.contains(name))
        .map(str::to_owned)
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Whether a member's Cargo.toml opts in to the workspace lints.
pub(crate) fn opts_in_to_lints(manifest: &str) -> bool {
    let mut in_lints = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_lints = line == "[lints]";
        } else if in_lints && line.replace(' ', "") == "workspace=true" {
            return true;
        }
    }
    false
}

/// The `members = [...]` of the root Cargo.toml.
pub(crate) fn members(root_manifest: &str) -> Vec<String> {
    let Some(start) = root_manifest.find("members") else {
        return Vec::new();
    };
    let rest = &root_manifest[start..];
    let (Some(open), Some(close)) = (rest.find('['), rest.find(']')) else {
        return Vec::new();
    };
    rest[open + 1..close]
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

/// Runs both checks; the error lists every finding.
pub(crate) fn run(root: &Path, mut cargo: Command) -> Result<(), String> {
    println!(
        "xtask: workspace rules (faultline-api is pure; every crate uses the workspace lints)"
    );
    let mut problems = Vec::new();
    let out = cargo
        .args([
            "tree",
            "-p",
            "faultline-api",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .map_err(|e| format!("cargo tree: cannot start: {e}"))?;
    if !out.status.success() {
        problems.push(format!(
            "cargo tree -p faultline-api failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let found = forbidden_in_tree(&String::from_utf8_lossy(&out.stdout));
    if !found.is_empty() {
        problems.push(format!(
            "faultline-api depends on {} (it must stay pure: enable client features in the crate that needs them, not in the workspace entry)",
            found.join(", ")
        ));
    }
    let root_manifest =
        std::fs::read_to_string(root.join("Cargo.toml")).map_err(|e| format!("Cargo.toml: {e}"))?;
    for member in members(&root_manifest) {
        let path = root.join(&member).join("Cargo.toml");
        let manifest =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !opts_in_to_lints(&manifest) {
            problems.push(format!(
                "{member}/Cargo.toml does not opt in to the workspace lints: add `[lints]` with `workspace = true`"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_crates_are_found_by_name() {
        let tree = "faultline-api v0.1.0 (/x/api)\nserde v1.0.0\ntokio v1.40.0\ntokio-util v0.7.0\nhyper v1.5.0\n";
        assert_eq!(forbidden_in_tree(tree), ["hyper", "tokio"]);
        assert!(forbidden_in_tree("serde v1\nkube-core v5\n").is_empty());
    }

    #[test]
    fn lints_opt_in_is_read_from_its_table() {
        assert!(opts_in_to_lints(
            "[package]\nname = \"x\"\n\n[lints]\nworkspace = true\n"
        ));
        assert!(!opts_in_to_lints(
            "[package]\nworkspace = true\n[lints.rust]\nx = 1\n"
        ));
        assert!(!opts_in_to_lints("[package]\nname = \"x\"\n"));
    }

    #[test]
    fn members_are_read_from_the_root_manifest() {
        let root = "[workspace]\nresolver = \"3\"\nmembers = [\"api\", \"certs\", \"tests\"]\n";
        assert_eq!(members(root), ["api", "certs", "tests"]);
    }

    /// The real workspace follows its rules (the cargo tree half runs in `cargo xtask test`).
    #[test]
    fn every_member_of_this_workspace_opts_in() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
        let members = members(&manifest);
        assert!(members.contains(&"api".to_owned()), "{members:?}");
        for member in members {
            let text = std::fs::read_to_string(root.join(&member).join("Cargo.toml"))
                .expect("member manifest");
            assert!(
                opts_in_to_lints(&text),
                "{member} does not use the workspace lints"
            );
        }
    }
}
