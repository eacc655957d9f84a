//! Which volumes go behind the fault filesystem, and the names of what is added for them.

use k8s_openapi::api::core::v1::{Pod, Volume};
use sha2::{Digest, Sha256};

use super::template::hex;
use super::{FUSE_VOLUME_PREFIX, InjectError, VOLUMES_ANNOTATION};

/// `faultline-fuse-<volume>`, cut to a DNS label (≤ 63) with an 8-hex-digit hash when too long.
pub fn fuse_volume_name(volume: &str) -> String {
    let full = format!("{FUSE_VOLUME_PREFIX}{volume}");
    if full.len() <= 63 {
        return full;
    }
    let digest = hex(&Sha256::digest(volume.as_bytes())[..4]);
    let keep = 63 - 1 - digest.len();
    let mut cut = full[..keep].to_owned();
    while cut.ends_with('-') || cut.ends_with('.') {
        cut.pop();
    }
    format!("{cut}-{digest}")
}

/// The volumes to inject: the annotation's list (each must exist), or every emptyDir,
/// persistentVolumeClaim and ephemeral volume some container mounts read-write. Only volumes
/// that some container mounts are kept. Also returns warnings.
pub fn eligible_volumes(pod: &Pod) -> Result<(Vec<String>, Vec<String>), InjectError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let volumes: &[Volume] = spec.volumes.as_deref().unwrap_or_default();
    let all_mounts = || {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.volume_mounts.iter().flatten())
    };
    let mut warnings = Vec::new();
    let requested = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(VOLUMES_ANNOTATION));
    let chosen: Vec<String> = match requested {
        Some(list) => {
            let mut chosen: Vec<String> = Vec::new();
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if !volumes.iter().any(|v| v.name == name) {
                    return Err(InjectError::MissingVolume {
                        volume: name.to_owned(),
                        existing: volumes
                            .iter()
                            .map(|v| v.name.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                    });
                }
                if !all_mounts().any(|m| m.name == name) {
                    warnings.push(format!(
                        "faultline: volume {name:?} is not mounted by any container: not injected"
                    ));
                    continue;
                }
                if !chosen.iter().any(|c| c == name) {
                    chosen.push(name.to_owned());
                }
            }
            // Keep the pod's volume order, whatever the annotation's order.
            volumes
                .iter()
                .filter(|v| chosen.contains(&v.name))
                .map(|v| v.name.clone())
                .collect()
        }
        None => volumes
            .iter()
            .filter(|v| {
                v.empty_dir.is_some()
                    || v.persistent_volume_claim.is_some()
                    || v.ephemeral.is_some()
            })
            .filter(|v| all_mounts().any(|m| m.name == v.name && m.read_only != Some(true)))
            .map(|v| v.name.clone())
            .collect(),
    };
    Ok((chosen, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_volume_names_are_dns_labels() {
        assert_eq!(fuse_volume_name("data"), "faultline-fuse-data");
        let long = "a".repeat(63);
        let name = fuse_volume_name(&long);
        assert_eq!(name.len(), 63);
        assert!(name.starts_with("faultline-fuse-aaaa"));
        assert_ne!(fuse_volume_name(&long), fuse_volume_name(&"a".repeat(62)));
        let exactly = "b".repeat(63 - FUSE_VOLUME_PREFIX.len());
        assert_eq!(
            fuse_volume_name(&exactly),
            format!("faultline-fuse-{exactly}")
        );
        // A cut that lands on '-' does not leave "--".
        let dashy = format!("{}-{}", "c".repeat(38), "d".repeat(20));
        assert!(!fuse_volume_name(&dashy).contains("--"));
    }
}
