//! `podFailure.apply` / `podFailure.recover` through the Kubernetes API: every container and
//! init container of the pod is switched to a pause image, so the kubelet restarts them into
//! something that does nothing; recovery puts the real images back.
//!
//! The real images and the experiments holding the pod live in one annotation,
//! `faultline.dev/pod-failure: {"images": {"containers": {..}, "initContainers": {..}},
//! "holders": [faultId, ..]}`. The images are saved by the first hold only, and restored when
//! the last hold is released — so two overlapping experiments restore the real images in
//! either order (Chaos Mesh PR 5085: the second experiment saved the pause image as
//! "original"). Every change is a `replace` carrying the pod's `resourceVersion` (optimistic
//! concurrency), retried on conflict with the pod read again. A pod that is gone counts as
//! recovered.

use std::collections::BTreeMap;

use faultline_api::rpc::daemon::FaultId;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};

/// The annotation holding the real images and the holders.
pub const ANNOTATION: &str = "faultline.dev/pod-failure";

/// The image containers are switched to when the request names none.
pub const DEFAULT_PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

const MAX_CONFLICT_RETRIES: usize = 8;

/// What the annotation holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub images: SavedImages,
    pub holders: Vec<FaultId>,
}

/// Container name → its real image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedImages {
    #[serde(default)]
    pub containers: BTreeMap<String, String>,
    #[serde(default)]
    pub init_containers: BTreeMap<String, String>,
}

/// Why a pod could not be failed or restored.
#[derive(Debug, thiserror::Error)]
pub enum PodFailureError {
    #[error("pod {namespace}/{pod}: not found")]
    NotFound { namespace: String, pod: String },
    #[error("pod {namespace}/{pod}: annotation {ANNOTATION} is not ours to read: {reason}")]
    BadAnnotation {
        namespace: String,
        pod: String,
        reason: String,
    },
    #[error("pod {namespace}/{pod}: {what}: {source}")]
    Api {
        namespace: String,
        pod: String,
        what: &'static str,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("pod {namespace}/{pod}: still conflicting after {MAX_CONFLICT_RETRIES} attempts")]
    Conflict { namespace: String, pod: String },
    #[error("no Kubernetes client: {0}")]
    NoClient(String),
}

impl PodFailureError {
    /// Whether the pod may have been changed all the same: the replace got no answer, or a
    /// server error (a 4xx refused it; a failed read changed nothing).
    pub fn may_have_applied(&self) -> bool {
        match self {
            PodFailureError::Api {
                what: "replace",
                source,
                ..
            } => !matches!(&**source, kube::Error::Api(s) if (400..500).contains(&s.code)),
            _ => false,
        }
    }
}

fn saved(pod: &Pod) -> Result<Option<Saved>, String> {
    match pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION))
    {
        None => Ok(None),
        Some(text) => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

fn set_saved(pod: &mut Pod, saved: Option<&Saved>) {
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match saved {
        Some(s) => {
            annotations.insert(
                ANNOTATION.into(),
                serde_json::to_string(s).unwrap_or_default(),
            );
        }
        None => {
            annotations.remove(ANNOTATION);
        }
    }
}

/// Adds `fault` as a holder of `pod`, saving the real images and switching to `pause` when it
/// is the first. Returns whether the pod changed.
pub fn hold(pod: &mut Pod, fault: &FaultId, pause: &str) -> Result<bool, String> {
    let mut state = match saved(pod)? {
        Some(s) => s,
        None => {
            let spec = pod.spec.get_or_insert_with(Default::default);
            let mut images = SavedImages::default();
            for c in &mut spec.containers {
                let real = c.image.replace(pause.to_owned()).unwrap_or_default();
                images.containers.insert(c.name.clone(), real);
            }
            for c in spec.init_containers.iter_mut().flatten() {
                let real = c.image.replace(pause.to_owned()).unwrap_or_default();
                images.init_containers.insert(c.name.clone(), real);
            }
            Saved {
                images,
                holders: Vec::new(),
            }
        }
    };
    if state.holders.contains(fault) {
        return Ok(false);
    }
    state.holders.push(fault.clone());
    set_saved(pod, Some(&state));
    Ok(true)
}

/// Removes `fault` from `pod`'s holders, restoring the real images when no holder is left.
/// Returns whether the pod changed.
pub fn release(pod: &mut Pod, fault: &FaultId) -> Result<bool, String> {
    let Some(mut state) = saved(pod)? else {
        return Ok(false);
    };
    if !state.holders.contains(fault) {
        return Ok(false);
    }
    state.holders.retain(|h| h != fault);
    if !state.holders.is_empty() {
        set_saved(pod, Some(&state));
        return Ok(true);
    }
    if let Some(spec) = pod.spec.as_mut() {
        for c in &mut spec.containers {
            if let Some(real) = state.images.containers.get(&c.name) {
                c.image = Some(real.clone());
            }
        }
        for c in spec.init_containers.iter_mut().flatten() {
            if let Some(real) = state.images.init_containers.get(&c.name) {
                c.image = Some(real.clone());
            }
        }
    }
    set_saved(pod, None);
    Ok(true)
}

/// Reads the pod, applies `change`, writes it back with its resourceVersion; retried on
/// conflict. `Ok(false)`: the pod needed no change. A missing pod is [`PodFailureError::NotFound`].
async fn update(
    client: &Client,
    namespace: &str,
    name: &str,
    change: impl Fn(&mut Pod) -> Result<bool, String>,
) -> Result<bool, PodFailureError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let api = |what: &'static str| {
        move |source: kube::Error| PodFailureError::Api {
            namespace: namespace.into(),
            pod: name.into(),
            what,
            source: Box::new(source),
        }
    };
    for _ in 0..MAX_CONFLICT_RETRIES {
        let Some(mut pod) = pods.get_opt(name).await.map_err(api("get"))? else {
            return Err(PodFailureError::NotFound {
                namespace: namespace.into(),
                pod: name.into(),
            });
        };
        let changed = change(&mut pod).map_err(|reason| PodFailureError::BadAnnotation {
            namespace: namespace.into(),
            pod: name.into(),
            reason,
        })?;
        if !changed {
            return Ok(false);
        }
        match pods.replace(name, &PostParams::default(), &pod).await {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(PodFailureError::NotFound {
                    namespace: namespace.into(),
                    pod: name.into(),
                });
            }
            Err(err) => return Err(api("replace")(err)),
        }
    }
    Err(PodFailureError::Conflict {
        namespace: namespace.into(),
        pod: name.into(),
    })
}

/// Fails the pod for `fault`.
pub async fn apply(
    client: &Client,
    namespace: &str,
    pod: &str,
    fault: &FaultId,
    pause: &str,
) -> Result<(), PodFailureError> {
    update(client, namespace, pod, |p| hold(p, fault, pause)).await?;
    Ok(())
}

/// Releases `fault`'s hold on the pod; a pod that is gone is recovered.
pub async fn recover(
    client: &Client,
    namespace: &str,
    pod: &str,
    fault: &FaultId,
) -> Result<(), PodFailureError> {
    match update(client, namespace, pod, |p| release(p, fault)).await {
        Ok(_) | Err(PodFailureError::NotFound { .. }) => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_a_refused_replace_certainly_changed_nothing() {
        let failed = |what, source: kube::Error| PodFailureError::Api {
            namespace: "shop".into(),
            pod: "cart-0".into(),
            what,
            source: Box::new(source),
        };
        let code = |c| kube::Error::Api(kube::core::Status::failure("x", "y").with_code(c).boxed());
        assert!(!failed("replace", code(422)).may_have_applied());
        assert!(!failed("replace", code(403)).may_have_applied());
        assert!(failed("replace", code(500)).may_have_applied());
        assert!(failed("replace", code(504)).may_have_applied());
        let no_answer = kube::Error::Service("connection reset".into());
        assert!(failed("replace", no_answer).may_have_applied());
        assert!(
            !failed("get", code(500)).may_have_applied(),
            "a read changes nothing"
        );
        let gone = PodFailureError::NotFound {
            namespace: "shop".into(),
            pod: "cart-0".into(),
        };
        assert!(!gone.may_have_applied());
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "cart-0", "namespace": "shop", "annotations": {"keep": "me"}},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox:1"}],
                "containers": [
                    {"name": "app", "image": "shop/cart:7"},
                    {"name": "log", "image": "fluent:2"}
                ]
            }
        }))
        .unwrap()
    }

    fn images(pod: &Pod) -> Vec<String> {
        let spec = pod.spec.as_ref().unwrap();
        spec.init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .map(|c| c.image.clone().unwrap())
            .collect()
    }

    #[test]
    fn overlapping_holds_restore_the_real_images_in_either_order() {
        let (a, b) = (FaultId("podfail-a".into()), FaultId("podfail-b".into()));
        for order in [[&a, &b], [&b, &a]] {
            let mut p = pod();
            let real = images(&p);
            assert!(hold(&mut p, &a, "pause:1").unwrap());
            assert_eq!(images(&p), ["pause:1"; 3]);
            // The second experiment must not save the pause image as the original.
            assert!(hold(&mut p, &b, "pause:2").unwrap());
            assert_eq!(images(&p), ["pause:1"; 3]);
            assert!(
                !hold(&mut p, &b, "pause:2").unwrap(),
                "a hold is idempotent"
            );
            assert!(release(&mut p, order[0]).unwrap());
            assert_eq!(images(&p), ["pause:1"; 3], "one holder is left");
            assert!(release(&mut p, order[1]).unwrap());
            assert_eq!(images(&p), real);
            let annotations = p.metadata.annotations.as_ref().unwrap();
            assert!(!annotations.contains_key(ANNOTATION));
            assert_eq!(annotations["keep"], "me");
            assert!(!release(&mut p, &a).unwrap(), "a release is idempotent");
        }
    }

    #[test]
    fn a_foreign_annotation_is_an_error_not_a_guess() {
        let mut p = pod();
        p.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(ANNOTATION.into(), "not json".into());
        assert!(hold(&mut p, &FaultId("x".into()), "pause").is_err());
        assert!(release(&mut p, &FaultId("x".into())).is_err());
    }
}
