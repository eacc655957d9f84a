//! `/inject`: the FUSE sidecar injection of DESIGN.md §7, as a pure function of a Pod and a
//! [`Template`].
//!
//! One sidecar per pod, however many volumes: for every injected volume `V` (see
//! [`eligible_volumes`]):
//! * an `emptyDir` volume `faultline-fuse-<V>` is added (a DNS label: cut to 63 characters with
//!   a hash suffix when needed);
//! * the sidecar container `faultline-sidecar` mounts `V` at `/faultline/source/<V>` and
//!   `faultline-fuse-<V>` at `/faultline/mnt/<V>` with `mountPropagation: Bidirectional`
//!   (privileged), and runs `faultline-sidecar --mount
//!   /faultline/source/<V>:/faultline/mnt/<V>:<V> [--app-mount <V>[/<subPath>]=<mountPath>]...
//!   --rpc-listen 127.0.0.1:<rpcPort>`: one process, one FUSE session per volume, one RPC port;
//! * every app container mounting `V` mounts `faultline-fuse-<V>` instead, same `mountPath`,
//!   `readOnly`, `subPath`, with `mountPropagation: HostToContainer`.
//!
//! `native` mode puts the sidecar first in `initContainers` with `restartPolicy: Always` and a
//! startupProbe, so init and app containers start once every mount is ready; init containers
//! that mount `V` are redirected as well. `legacy` mode puts it first in `containers` with a
//! `postStart` hook that blocks until `faultline-sidecar probe` succeeds (the kubelet starts the
//! next container only after it returns). Probes are exec probes running `faultline-sidecar
//! probe`: the RPC port listens on 127.0.0.1 only, which a kubelet `httpGet` probe (sent to the
//! pod IP) cannot reach. In legacy mode init containers run before the sidecar, so they keep
//! mounting `V` itself: redirecting them would make them write into the empty fuse volume that
//! the FUSE mount later hides.
//!
//! The pod gets the annotation `faultline.dev/sidecar-status` ([`SidecarStatus`]) recording what
//! was injected, with every app container's mount path per volume; a pod with that annotation,
//! or with a container named `faultline-sidecar` or `faultline-sidecar-<n>` (the earlier shape
//! had one sidecar per volume), is never injected again.
//!
//! Files: [`template`] (the `--injection` file), `volumes` (which volumes, added names),
//! `sidecar` (the container), [`status`] (the annotation, both shapes).

mod sidecar;
pub mod status;
pub mod template;
mod volumes;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EmptyDirVolumeSource, Pod, Volume};
use kube::core::admission::{AdmissionResponse, Operation};

pub use status::{InjectedVolume, LookupError, RedirectedMount, SidecarStatus};
pub use template::{Mode, Template, TemplateError};
pub use volumes::{eligible_volumes, fuse_volume_name};

use crate::Verdict;
use crate::policy::NamespaceLabels;
use crate::review::{Review, kind_label};

/// Pod annotation recording the injection.
pub const STATUS_ANNOTATION: &str = "faultline.dev/sidecar-status";
/// Pod annotation naming the volumes to inject (comma list).
pub const VOLUMES_ANNOTATION: &str = "faultline.dev/inject-volumes";
/// Name of the sidecar container.
pub const SIDECAR_NAME: &str = "faultline-sidecar";
/// Prefix of the added emptyDir volumes.
pub const FUSE_VOLUME_PREFIX: &str = "faultline-fuse-";
/// Where the sidecar mounts the original volume.
pub const SOURCE_ROOT: &str = "/faultline/source";
/// Where the sidecar mounts the fuse volume (and FUSE-mounts the source).
pub const MOUNT_ROOT: &str = "/faultline/mnt";
/// Version recorded in the status annotation.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why a pod is denied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// A volume named in `faultline.dev/inject-volumes` does not exist.
    #[error(
        "metadata.annotations[{VOLUMES_ANNOTATION}]: volume {volume:?} does not exist in the pod (spec.volumes has: {existing})"
    )]
    MissingVolume {
        /// The volume.
        volume: String,
        /// The pod's volume names, comma separated.
        existing: String,
    },
    /// The pod uses a name reserved for what is injected.
    #[error("{field}: the name {name:?} is reserved for the Faultline sidecar")]
    ReservedName {
        /// Where.
        field: String,
        /// The name.
        name: String,
    },
}

impl InjectError {
    /// Stable rule id for the denials metric.
    pub fn rule(&self) -> &'static str {
        match self {
            InjectError::MissingVolume { .. } => "inject-missing-volume",
            InjectError::ReservedName { .. } => "inject-reserved-name",
        }
    }
}

/// Why a pod is left unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Status annotation or a `faultline-sidecar` container present.
    AlreadyInjected,
    /// `hostNetwork: true`.
    HostNetwork,
    /// No volume to put behind the fault filesystem.
    NoVolume,
}

impl Skip {
    /// Warning sent back to the client (none for an already injected pod).
    pub fn warning(self) -> Option<&'static str> {
        match self {
            Skip::AlreadyInjected => None,
            Skip::HostNetwork => Some(
                "faultline: hostNetwork pods get no fault-injection sidecar (its RPC port would be bound on the node)",
            ),
            Skip::NoVolume => Some(
                "faultline: no emptyDir, persistentVolumeClaim or ephemeral volume mounted read-write: no sidecar injected",
            ),
        }
    }
}

/// Result of [`inject_pod`].
#[derive(Debug, Clone, PartialEq)]
pub enum Injection {
    /// Unchanged.
    Skipped(Skip),
    /// The mutated pod.
    Injected {
        /// The pod with the sidecar.
        pod: Box<Pod>,
        /// What was recorded in the status annotation.
        status: SidecarStatus,
        /// Soft problems.
        warnings: Vec<String>,
    },
}

/// `faultline-sidecar`, or `faultline-sidecar-<n>` as the earlier shape named the sidecars of the
/// second and later volumes.
fn is_sidecar_name(name: &str) -> bool {
    match name.strip_prefix(SIDECAR_NAME) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('-')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// Whether the pod already carries an injection: the status annotation, or a sidecar container
/// of either shape (one per pod now, one per volume earlier).
pub fn already_injected(pod: &Pod) -> bool {
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(STATUS_ANNOTATION));
    let has_sidecar = pod.spec.as_ref().is_some_and(|spec| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| is_sidecar_name(&c.name))
    });
    annotated || has_sidecar
}

/// Injects the sidecar into `pod`, or says why not.
pub fn inject_pod(pod: &Pod, template: &Template) -> Result<Injection, InjectError> {
    if already_injected(pod) {
        return Ok(Injection::Skipped(Skip::AlreadyInjected));
    }
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(Injection::Skipped(Skip::NoVolume));
    };
    if spec.host_network == Some(true) {
        return Ok(Injection::Skipped(Skip::HostNetwork));
    }
    let (mut volumes, mut warnings) = eligible_volumes(pod)?;
    if template.mode == Mode::Legacy {
        // Legacy mode redirects app containers only: a volume no app container mounts would
        // get a sidecar that nobody reads through.
        volumes.retain(|v| {
            let used = spec
                .containers
                .iter()
                .flat_map(|c| c.volume_mounts.iter().flatten())
                .any(|m| m.name == *v);
            if !used {
                warnings.push(format!(
                    "faultline: volume {v:?} is mounted by init containers only: no sidecar in legacy mode"
                ));
            }
            used
        });
    }
    if volumes.is_empty() {
        return Ok(Injection::Skipped(Skip::NoVolume));
    }
    // Names we add must not collide with the pod's.
    for (index, v) in spec.volumes.iter().flatten().enumerate() {
        if v.name.starts_with(FUSE_VOLUME_PREFIX) {
            return Err(InjectError::ReservedName {
                field: format!("spec.volumes[{index}].name"),
                name: v.name.clone(),
            });
        }
    }
    for (field, list) in [
        ("spec.containers", Some(&spec.containers)),
        ("spec.initContainers", spec.init_containers.as_ref()),
    ] {
        for (index, c) in list.into_iter().flatten().enumerate() {
            if c.name.starts_with(SIDECAR_NAME) {
                return Err(InjectError::ReservedName {
                    field: format!("{field}[{index}].name"),
                    name: c.name.clone(),
                });
            }
        }
    }

    let mut pod = pod.clone();
    let mode = template.mode;
    let mut status = SidecarStatus {
        version: VERSION.to_owned(),
        template_hash: template.hash(),
        mode,
        container: Some(SIDECAR_NAME.to_owned()),
        rpc_port: Some(template.rpc_port),
        volumes: Vec::with_capacity(volumes.len()),
    };
    let spec = pod.spec.get_or_insert_with(Default::default);
    for volume in &volumes {
        let fuse_volume = fuse_volume_name(volume);
        let mut mounts = Vec::new();
        let redirect = |c: &mut Container, init: bool, mounts: &mut Vec<RedirectedMount>| {
            for m in c.volume_mounts.iter_mut().flatten() {
                if m.name == *volume {
                    m.name = fuse_volume.clone();
                    m.mount_propagation = Some("HostToContainer".to_owned());
                    mounts.push(RedirectedMount {
                        container: c.name.clone(),
                        mount_path: m.mount_path.clone(),
                        sub_path: m.sub_path.clone().filter(|s| !s.is_empty()),
                        sub_path_expr: m.sub_path_expr.clone().filter(|s| !s.is_empty()),
                        read_only: m.read_only == Some(true),
                        init,
                    });
                }
            }
        };
        if mode == Mode::Native {
            for c in spec.init_containers.iter_mut().flatten() {
                redirect(c, true, &mut mounts);
            }
        }
        for c in spec.containers.iter_mut() {
            redirect(c, false, &mut mounts);
        }
        spec.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: fuse_volume.clone(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
        status.volumes.push(InjectedVolume {
            volume: volume.clone(),
            fuse_volume,
            container: None,
            rpc_port: None,
            mountpoint: format!("{MOUNT_ROOT}/{volume}"),
            mounts,
        });
    }
    let sidecars = vec![sidecar::container(template, &status.volumes)];
    match mode {
        Mode::Native => {
            let init = spec.init_containers.get_or_insert_with(Vec::new);
            init.splice(0..0, sidecars);
        }
        Mode::Legacy => {
            spec.containers.splice(0..0, sidecars);
            if spec.init_containers.iter().flatten().any(|c| {
                c.volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| volumes.contains(&m.name))
            }) {
                warnings.push(
                    "faultline: legacy mode: init containers run before the sidecar and see the volume without faults"
                        .to_owned(),
                );
            }
        }
    }
    let annotation = serde_json::to_string(&status).unwrap_or_default();
    pod.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(STATUS_ANNOTATION.to_owned(), annotation);
    Ok(Injection::Injected {
        pod: Box::new(pod),
        status,
        warnings,
    })
}

/// A human name for the pod: `ns/name`, or `ns/generateName*` for pods not yet named.
pub fn pod_display_name(review: &Review, pod: &Pod) -> String {
    let ns = review
        .request
        .namespace
        .as_deref()
        .or(pod.metadata.namespace.as_deref())
        .unwrap_or("default");
    match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(name), _) if !name.is_empty() => format!("{ns}/{name}"),
        (_, Some(prefix)) => format!("{ns}/{prefix}*"),
        _ => format!("{ns}/<unnamed>"),
    }
}

/// The JSON Patch from `before` to `after`: the diff of the typed pods, computed on the
/// fields [`inject_pod`] changes (annotations, containers, init containers, volumes, in the
/// order a whole-pod diff visits them) so the
/// rest of the pod is not serialized twice per request. A test checks that it equals the diff
/// of the whole pods.
pub fn patch_for(before: &Pod, after: &Pod) -> Result<json_patch::Patch, serde_json::Error> {
    use json_patch::jsonptr::PointerBuf;
    let mut patch = json_patch::Patch(Vec::new());
    let empty = Default::default();
    let (b_spec, a_spec) = (
        before.spec.as_ref().unwrap_or(&empty),
        after.spec.as_ref().unwrap_or(&empty),
    );
    let parts = [
        (
            ["metadata", "annotations"],
            serde_json::to_value(&before.metadata.annotations)?,
            serde_json::to_value(&after.metadata.annotations)?,
        ),
        (
            ["spec", "containers"],
            serde_json::to_value(&b_spec.containers)?,
            serde_json::to_value(&a_spec.containers)?,
        ),
        (
            ["spec", "initContainers"],
            serde_json::to_value(&b_spec.init_containers)?,
            serde_json::to_value(&a_spec.init_containers)?,
        ),
        (
            ["spec", "volumes"],
            serde_json::to_value(&b_spec.volumes)?,
            serde_json::to_value(&a_spec.volumes)?,
        ),
    ];
    for (path, b, a) in parts {
        crate::patch::diff_at(&b, &a, PointerBuf::from_tokens(path), &mut patch);
    }
    Ok(patch)
}

/// The `/inject` handler: AdmissionReview in, AdmissionResponse (JSON Patch) out.
pub fn handle(
    review: &Review,
    template: &Template,
    namespaces: &dyn NamespaceLabels,
    policy: &crate::policy::Policy,
) -> Verdict {
    let req = &review.request;
    let kind = kind_label(review);
    let response = AdmissionResponse::from(req);
    if !(req.kind.group.is_empty() && req.kind.kind == "Pod") {
        let message = format!(
            "/inject admits only v1 Pods, got {}/{} {}",
            req.kind.group, req.kind.version, req.kind.kind
        );
        return Verdict::denied(response.deny(message), kind, vec!["inject-wrong-kind"]);
    }
    if req.operation != Operation::Create {
        return Verdict::allowed(response, kind);
    }
    let Some(object) = review.object.as_ref() else {
        return Verdict::denied(
            response.deny("request.object is missing"),
            kind,
            vec!["inject-no-object"],
        );
    };
    let pod: Pod = match serde_json::from_str(object.get()) {
        Ok(pod) => pod,
        Err(_) => {
            // Only on failure: parse again, tracking the path of the bad field.
            let mut de = serde_json::Deserializer::from_str(object.get());
            let message = match serde_path_to_error::deserialize::<_, Pod>(&mut de) {
                Err(e) => format!(
                    "request.object is not a valid Pod: {}: {}",
                    e.path(),
                    e.inner()
                ),
                Ok(_) => "request.object is not a valid Pod".to_owned(),
            };
            return Verdict::denied(response.deny(message), kind, vec!["inject-invalid-pod"]);
        }
    };
    let namespace = req
        .namespace
        .as_deref()
        .or(pod.metadata.namespace.as_deref())
        .unwrap_or("default");
    if let Some(warning) = crate::opt_in::refusal(&pod, namespace, namespaces, policy) {
        let mut response = response;
        response.warnings = Some(vec![warning]);
        return Verdict::allowed(response, kind);
    }
    match inject_pod(&pod, template) {
        Err(error) => {
            let rule = error.rule();
            let name = pod_display_name(review, &pod);
            Verdict::denied(
                response.deny(format!("pod {name}: {error}")),
                kind,
                vec![rule],
            )
        }
        Ok(Injection::Skipped(skip)) => {
            let mut response = response;
            if let Some(w) = skip.warning() {
                response.warnings = Some(vec![w.to_owned()]);
            }
            Verdict::allowed(response, kind)
        }
        Ok(Injection::Injected {
            pod: mutated,
            status,
            warnings,
        }) => {
            let patch = match patch_for(&pod, &mutated) {
                Ok(p) => p,
                Err(e) => {
                    return Verdict::denied(
                        response.deny(format!("serializing the pod: {e}")),
                        kind,
                        vec!["inject-internal"],
                    );
                }
            };
            let volumes: Vec<&str> = status.volumes.iter().map(|v| v.volume.as_str()).collect();
            let mut response = match response.with_patch(patch) {
                Ok(r) => r,
                Err(e) => {
                    return Verdict::denied(
                        AdmissionResponse::from(req).deny(format!("serializing the patch: {e}")),
                        kind,
                        vec!["inject-internal"],
                    );
                }
            };
            response
                .audit_annotations
                .insert("injected-volumes".to_owned(), volumes.join(","));
            response
                .audit_annotations
                .insert("sidecar-mode".to_owned(), status.mode.as_str().to_owned());
            if !warnings.is_empty() {
                response.warnings = Some(warnings);
            }
            let mut verdict = Verdict::patched(response, kind);
            // A dry run has no side effects: not counted as an injection.
            verdict.injected_volumes = if req.dry_run { 0 } else { status.volumes.len() };
            verdict.mode = Some(status.mode);
            verdict
        }
    }
}

#[cfg(test)]
mod tests;
