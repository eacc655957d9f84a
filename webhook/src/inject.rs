//! `/inject`: the FUSE sidecar injection of DESIGN.md §7, as a pure function of a Pod and a
//! [`Template`].
//!
//! For every injected volume `V` (see [`eligible_volumes`]):
//! * an `emptyDir` volume `faultline-fuse-<V>` is added (a DNS label: cut to 63 characters with
//!   a hash suffix when needed);
//! * a sidecar container runs `faultline-sidecar --source /faultline/source/<V> --mountpoint
//!   /faultline/mnt/<V> --rpc-listen 127.0.0.1:<rpcPort + i>`, mounting `V` at the source path
//!   and `faultline-fuse-<V>` at the mountpoint with `mountPropagation: Bidirectional`
//!   (privileged). The first sidecar is named `faultline-sidecar`, the next
//!   `faultline-sidecar-2`, ...;
//! * every app container mounting `V` mounts `faultline-fuse-<V>` instead, same `mountPath`,
//!   `readOnly`, `subPath`, with `mountPropagation: HostToContainer`.
//!
//! `native` mode puts the sidecars first in `initContainers` with `restartPolicy: Always` and a
//! startupProbe, so init and app containers start once the mount is ready; init containers that
//! mount `V` are redirected as well. `legacy` mode puts them first in `containers` with a
//! `postStart` hook that blocks until `faultline-sidecar probe` succeeds (the kubelet starts the
//! next container only after it returns). Probes are exec probes running `faultline-sidecar
//! probe`: the RPC port listens on 127.0.0.1 only, which a kubelet `httpGet` probe (sent to the
//! pod IP) cannot reach. In legacy mode init containers run before
//! any sidecar, so they keep mounting `V` itself: redirecting them would make them write into
//! the empty fuse volume that the FUSE mount later hides.
//!
//! The pod gets the annotation `faultline.dev/sidecar-status` recording what was injected; a pod
//! with that annotation or a container named `faultline-sidecar` is never injected again.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, ExecAction, Lifecycle, LifecycleHandler, Pod, Probe,
    ResourceRequirements, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::core::admission::{AdmissionResponse, Operation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Verdict;
use crate::policy::NamespaceLabels;
use crate::review::{Review, kind_label};

/// Pod annotation recording the injection.
pub const STATUS_ANNOTATION: &str = "faultline.dev/sidecar-status";
/// Pod annotation naming the volumes to inject (comma list).
pub const VOLUMES_ANNOTATION: &str = "faultline.dev/inject-volumes";
/// Name of the (first) sidecar container.
pub const SIDECAR_NAME: &str = "faultline-sidecar";
/// Prefix of the added emptyDir volumes.
pub const FUSE_VOLUME_PREFIX: &str = "faultline-fuse-";
/// Where the sidecar mounts the original volume.
pub const SOURCE_ROOT: &str = "/faultline/source";
/// Where the sidecar mounts the fuse volume (and FUSE-mounts the source).
pub const MOUNT_ROOT: &str = "/faultline/mnt";
/// Version recorded in the status annotation.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How apps wait for the FUSE mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Native sidecar: init container with `restartPolicy: Always` and a startupProbe.
    #[default]
    Native,
    /// First app container with a blocking postStart hook (clusters without native sidecars).
    Legacy,
}

impl Mode {
    /// `native` / `legacy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Legacy => "legacy",
        }
    }
}

/// The injection template (`--injection FILE`; absent = [`Template::default`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Template {
    /// Sidecar image.
    pub image: String,
    /// Its pull policy.
    pub image_pull_policy: String,
    /// native or legacy.
    pub mode: Mode,
    /// JSON-RPC port of the first sidecar (on 127.0.0.1); the i-th volume gets `rpcPort + i`.
    pub rpc_port: u16,
    /// Sidecar resources.
    pub resources: ResourceRequirements,
    /// Extra environment of the sidecar.
    pub env: Vec<k8s_openapi::api::core::v1::EnvVar>,
}

impl Default for Template {
    fn default() -> Self {
        let q = |s: &str| Quantity(s.to_owned());
        Template {
            image: "faultline/sidecar:latest".to_owned(),
            image_pull_policy: "IfNotPresent".to_owned(),
            mode: Mode::Native,
            rpc_port: 65533,
            resources: ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_owned(), q("10m")),
                    ("memory".to_owned(), q("32Mi")),
                ])),
                limits: Some(BTreeMap::from([("memory".to_owned(), q("256Mi"))])),
                ..Default::default()
            },
            env: Vec::new(),
        }
    }
}

/// A template file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Unreadable file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Bad YAML or an unknown field.
    #[error("{path}: {field}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// JSON path of the bad field.
        field: String,
        /// Why.
        message: String,
    },
    /// A value out of range.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The field.
        field: &'static str,
        /// Why.
        message: &'static str,
    },
}

impl Template {
    /// Parses a template file's text; `path` names it in errors.
    pub fn from_yaml(text: &str, path: &str) -> Result<Self, TemplateError> {
        let template: Template = if text.trim().is_empty() {
            Template::default()
        } else {
            let de = serde_yaml::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let (field, message) = crate::yaml_error(&e);
                TemplateError::Parse {
                    path: path.to_owned(),
                    field,
                    message,
                }
            })?
        };
        let invalid = |field, message| TemplateError::Invalid {
            path: path.to_owned(),
            field,
            message,
        };
        if template.image.trim().is_empty() {
            return Err(invalid("image", "must not be empty"));
        }
        if template.rpc_port < 1024 {
            return Err(invalid("rpcPort", "must be between 1024 and 65535"));
        }
        if !matches!(
            template.image_pull_policy.as_str(),
            "Always" | "IfNotPresent" | "Never"
        ) {
            return Err(invalid(
                "imagePullPolicy",
                "must be Always, IfNotPresent or Never",
            ));
        }
        Ok(template)
    }

    /// Reads and parses a template file.
    pub fn load(path: &std::path::Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// `sha256:` + 16 hex digits of the template's canonical JSON.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&json);
        format!("sha256:{}", hex(&digest[..8]))
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

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

/// One injected volume, as recorded in the status annotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InjectedVolume {
    /// The pod's volume.
    pub volume: String,
    /// The added emptyDir.
    pub fuse_volume: String,
    /// The sidecar container serving it.
    pub container: String,
    /// Its JSON-RPC port on 127.0.0.1.
    pub rpc_port: u16,
    /// FUSE mountpoint inside the sidecar.
    pub mountpoint: String,
    /// `container:mountPath` of every redirected mount.
    pub mounts: Vec<String>,
}

/// The `faultline.dev/sidecar-status` annotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarStatus {
    /// Webhook version.
    pub version: String,
    /// [`Template::hash`].
    pub template_hash: String,
    /// native / legacy.
    pub mode: Mode,
    /// What was injected.
    pub volumes: Vec<InjectedVolume>,
}

/// Result of [`inject_pod`].
#[derive(Debug, Clone, PartialEq)]
pub enum Injection {
    /// Unchanged.
    Skipped(Skip),
    /// The mutated pod.
    Injected {
        /// The pod with the sidecar(s).
        pod: Box<Pod>,
        /// What was recorded in the status annotation.
        status: SidecarStatus,
        /// Soft problems.
        warnings: Vec<String>,
    },
}

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

fn sidecar_name(index: usize) -> String {
    if index == 0 {
        SIDECAR_NAME.to_owned()
    } else {
        format!("{SIDECAR_NAME}-{}", index + 1)
    }
}

/// Whether the pod already carries an injection.
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
            .any(|c| c.name == SIDECAR_NAME)
    });
    annotated || has_sidecar
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

/// Injects the sidecar(s) into `pod`, or says why not.
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
        volumes: Vec::with_capacity(volumes.len()),
    };
    let spec = pod.spec.get_or_insert_with(Default::default);
    let mut sidecars = Vec::with_capacity(volumes.len());
    for (index, volume) in volumes.iter().enumerate() {
        let fuse_volume = fuse_volume_name(volume);
        let container = sidecar_name(index);
        // rpc_port >= 1024 and the index is small: saturate rather than wrap.
        let rpc_port = template
            .rpc_port
            .saturating_add(u16::try_from(index).unwrap_or(u16::MAX));
        let source = format!("{SOURCE_ROOT}/{volume}");
        let mountpoint = format!("{MOUNT_ROOT}/{volume}");
        let mut mounts = Vec::new();
        let redirect = |c: &mut Container, mounts: &mut Vec<String>| {
            for m in c.volume_mounts.iter_mut().flatten() {
                if m.name == *volume {
                    m.name = fuse_volume.clone();
                    m.mount_propagation = Some("HostToContainer".to_owned());
                    mounts.push(format!("{}:{}", c.name, m.mount_path));
                }
            }
        };
        if mode == Mode::Native {
            for c in spec.init_containers.iter_mut().flatten() {
                redirect(c, &mut mounts);
            }
        }
        for c in spec.containers.iter_mut() {
            redirect(c, &mut mounts);
        }
        spec.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: fuse_volume.clone(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
        sidecars.push(sidecar_container(
            template,
            &container,
            volume,
            &fuse_volume,
            &source,
            &mountpoint,
            rpc_port,
        ));
        status.volumes.push(InjectedVolume {
            volume: volume.clone(),
            fuse_volume,
            container,
            rpc_port,
            mountpoint,
            mounts,
        });
    }
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

/// `faultline-sidecar probe --rpc-listen 127.0.0.1:<port>`: exits 0 once the mount is live
/// (the sidecar's `GET /ready`, asked from inside the pod).
fn probe_command(rpc_port: u16) -> Vec<String> {
    vec![
        "faultline-sidecar".to_owned(),
        "probe".to_owned(),
        "--rpc-listen".to_owned(),
        format!("127.0.0.1:{rpc_port}"),
    ]
}

/// An exec probe: the RPC port listens on 127.0.0.1 only (fault control must not be reachable
/// from the network), and the kubelet's `httpGet` probes connect to the pod IP.
fn ready_probe(rpc_port: u16, period: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(probe_command(rpc_port)),
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(3),
        ..Default::default()
    }
}

fn sidecar_container(
    template: &Template,
    name: &str,
    volume: &str,
    fuse_volume: &str,
    source: &str,
    mountpoint: &str,
    rpc_port: u16,
) -> Container {
    let mut container = Container {
        name: name.to_owned(),
        image: Some(template.image.clone()),
        image_pull_policy: Some(template.image_pull_policy.clone()),
        command: Some(vec!["faultline-sidecar".to_owned()]),
        args: Some(vec![
            "--source".to_owned(),
            source.to_owned(),
            "--mountpoint".to_owned(),
            mountpoint.to_owned(),
            "--rpc-listen".to_owned(),
            format!("127.0.0.1:{rpc_port}"),
        ]),
        env: (!template.env.is_empty()).then(|| template.env.clone()),
        resources: Some(template.resources.clone()),
        security_context: Some(SecurityContext {
            privileged: Some(true),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: volume.to_owned(),
                mount_path: source.to_owned(),
                ..Default::default()
            },
            VolumeMount {
                name: fuse_volume.to_owned(),
                mount_path: mountpoint.to_owned(),
                mount_propagation: Some("Bidirectional".to_owned()),
                ..Default::default()
            },
        ]),
        readiness_probe: Some(ready_probe(rpc_port, 5, 3)),
        ..Default::default()
    };
    match template.mode {
        Mode::Native => {
            container.restart_policy = Some("Always".to_owned());
            container.startup_probe = Some(ready_probe(rpc_port, 1, 120));
        }
        Mode::Legacy => {
            // Blocks the kubelet (and so the next containers) until the mount is up, 120 s max.
            let wait = format!(
                "i=0; until {}; do i=$((i+1)); [ $i -ge 600 ] && exit 1; sleep 0.2; done",
                probe_command(rpc_port).join(" ")
            );
            container.lifecycle = Some(Lifecycle {
                post_start: Some(LifecycleHandler {
                    exec: Some(ExecAction {
                        command: Some(vec!["/bin/sh".to_owned(), "-c".to_owned(), wait]),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    container
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
mod tests {
    use super::*;

    #[test]
    fn patch_for_equals_the_diff_of_whole_pods() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).expect("fixtures") {
            let path = entry.expect("entry").path();
            let name = path.to_string_lossy().into_owned();
            if !name.ends_with(".yaml")
                || name.ends_with(".injected.yaml")
                || name.ends_with(".template.yaml")
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            let pod: Pod = serde_yaml::from_str(&text).expect("pod");
            let legacy = Template {
                mode: Mode::Legacy,
                ..Template::default()
            };
            for template in [Template::default(), legacy] {
                if let Ok(Injection::Injected { pod: after, .. }) = inject_pod(&pod, &template) {
                    let full = crate::patch::diff(
                        &serde_json::to_value(&pod).expect("json"),
                        &serde_json::to_value(&after).expect("json"),
                    );
                    assert_eq!(patch_for(&pod, &after).expect("patch"), full, "{name}");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 10, "{checked}");
    }

    #[test]
    fn legacy_mode_skips_volumes_only_init_containers_mount() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "seed", "volumeMounts": [{"name": "seed", "mountPath": "/s"}]}],
                "containers": [{"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}],
                "volumes": [{"name": "seed", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]
            }
        }))
        .expect("pod");
        let legacy = Template {
            mode: Mode::Legacy,
            ..Template::default()
        };
        let Ok(Injection::Injected {
            status, warnings, ..
        }) = inject_pod(&pod, &legacy)
        else {
            panic!("injected");
        };
        let names: Vec<&str> = status.volumes.iter().map(|v| v.volume.as_str()).collect();
        assert_eq!(names, ["data"]);
        assert!(
            warnings[0].contains("\"seed\" is mounted by init containers only"),
            "{warnings:?}"
        );
        let Ok(Injection::Injected { status, .. }) = inject_pod(&pod, &Template::default()) else {
            panic!("injected");
        };
        assert_eq!(
            status.volumes.len(),
            2,
            "native mode serves init containers too"
        );
    }

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

    #[test]
    fn template_defaults_and_errors() {
        let t = Template::from_yaml("", "t.yaml").expect("empty = defaults");
        assert_eq!(t, Template::default());
        let t = Template::from_yaml("mode: legacy\nrpcPort: 40000\n", "t.yaml").expect("parse");
        assert_eq!(
            (t.mode, t.rpc_port, t.image.as_str()),
            (Mode::Legacy, 40000, "faultline/sidecar:latest")
        );
        let err = Template::from_yaml("mode: sideways\n", "t.yaml").unwrap_err();
        assert!(
            err.to_string().starts_with("t.yaml: mode: unknown variant"),
            "{err}"
        );
        let err = Template::from_yaml("imagee: x\n", "t.yaml").unwrap_err();
        assert!(err.to_string().contains("unknown field `imagee`"), "{err}");
        let err = Template::from_yaml("rpcPort: 80\n", "t.yaml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.yaml: rpcPort: must be between 1024 and 65535"
        );
        assert_ne!(Template::default().hash(), t.hash());
    }
}
