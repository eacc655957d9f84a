//! Finding an experiment's pods: the API's pods as selection's plain data, a first selection,
//! the records' pods on later passes, and a partition's peers.

use std::collections::{BTreeMap, BTreeSet};

use faultline_api::status::{ChaosStatus, TargetRecord};
use faultline_webhook::policy::Policy;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::{Ctx, ReconcileError, kube_err};
use crate::kinds::Chaos;
use crate::selection::{Limits, PodInfo, namespaces, select};
use faultline_api::peer::{Peer, PeerHost};

/// Records' pods that no longer match the selector's labels, read one by one up to this many.
const ONE_BY_ONE: usize = 20;

pub(super) fn pod_info(pod: &Pod) -> PodInfo {
    let status = pod.status.clone().unwrap_or_default();
    let ids: BTreeMap<String, Option<String>> = status
        .container_statuses
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.name, c.container_id))
        .collect();
    let containers = pod
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), ids.get(&c.name).cloned().flatten()))
                .collect()
        })
        .unwrap_or_default();
    PodInfo {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        uid: pod.uid(),
        labels: pod.labels().clone(),
        annotations: pod.annotations().clone(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        phase: status.phase,
        pod_ip: status.pod_ip,
        deleting: pod.metadata.deletion_timestamp.is_some(),
        containers,
    }
}

pub(super) async fn list_pods(
    client: &Client,
    namespaces: &BTreeSet<String>,
    labels: &BTreeMap<String, String>,
) -> Result<Vec<PodInfo>, ReconcileError> {
    let selector = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut out = Vec::new();
    for ns in namespaces {
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(kube_err(format!("list pods in {ns}")))?;
        out.extend(list.iter().map(pod_info));
    }
    Ok(out)
}

async fn node_labels(
    client: &Client,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, ReconcileError> {
    let nodes: Api<Node> = Api::all(client.clone());
    Ok(nodes
        .list(&ListParams::default())
        .await
        .map_err(kube_err("list nodes"))?
        .into_iter()
        .map(|n| (n.name_any(), n.labels().clone()))
        .collect())
}

/// The namespace of a target that the policy protects now, if any (protected after the
/// targets were selected: selection never picks one).
pub(super) fn protected_target<'a>(
    records: &'a [TargetRecord],
    protected: &BTreeSet<&str>,
) -> Option<&'a str> {
    records
        .iter()
        .filter_map(|r| r.id.split('/').next())
        .find(|ns| protected.contains(ns))
}

pub(super) fn limits(policy: &Policy) -> Limits {
    Limits {
        protected: policy.protected().into_iter().map(str::to_owned).collect(),
        max_pods: policy.max_targets.pods,
        max_percent: policy.max_targets.percent,
    }
}

/// The experiment's targets now: the pods of its records (selected once), or a new selection.
pub(super) async fn targets<K: Chaos>(
    obj: &K,
    ctx: &Ctx,
    status: &ChaosStatus,
    ns: &str,
    uid: &str,
) -> Result<Result<Vec<PodInfo>, String>, ReconcileError> {
    let scope = obj.scope();
    let mut reach = namespaces(scope, ns);
    let policy = ctx.policy.load();
    if status.records.is_empty() {
        let pods = list_pods(&ctx.client, &reach, &scope.selector.label_selectors).await?;
        let nodes = if scope.selector.node_selectors.is_empty() {
            BTreeMap::new()
        } else {
            node_labels(&ctx.client).await?
        };
        return Ok(
            select(&pods, &nodes, scope, ns, uid, &limits(&policy)).map_err(|e| e.to_string())
        );
    }
    // Records name `ns/pod[/container]`: their pods, wherever they are now. Most still carry
    // the selector's labels: one labelled list per namespace finds them; the few that do not
    // any more are read one by one, and only when many are missing is every pod listed.
    let keys: BTreeSet<String> = status
        .records
        .iter()
        .map(|r| crate::plan::pod_key(&r.id))
        .collect();
    reach.extend(
        keys.iter()
            .filter_map(|k| k.split('/').next().map(str::to_owned)),
    );
    let labelled = list_pods(&ctx.client, &reach, &scope.selector.label_selectors).await?;
    let mut found: Vec<PodInfo> = labelled
        .into_iter()
        .filter(|p| keys.contains(&p.key()))
        .collect();
    let have: BTreeSet<String> = found.iter().map(PodInfo::key).collect();
    let missing: Vec<&String> = keys.iter().filter(|k| !have.contains(*k)).collect();
    if missing.len() > ONE_BY_ONE {
        let all = list_pods(&ctx.client, &reach, &BTreeMap::new()).await?;
        found = all
            .into_iter()
            .filter(|p| keys.contains(&p.key()))
            .collect();
    } else {
        for key in missing {
            let Some((namespace, name)) = key.split_once('/') else {
                continue;
            };
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
            // Gone (404) is fine: the record counts as recovered.
            if let Some(pod) = api
                .get_opt(name)
                .await
                .map_err(kube_err(format!("read pod {key}")))?
            {
                found.push(pod_info(&pod));
            }
        }
    }
    Ok(Ok(found))
}

/// NetworkChaos partition peers, in the daemon's canonical form: the IPs of the `target`
/// selection and `externalTargets` (host names resolved here, each address with the name's
/// port). With neither, everything (`0.0.0.0/0`, `::/0`), as Chaos Mesh cuts a partition with
/// no target off from everything. `Err`: why there is no peer (the records say so).
pub(super) async fn peers<K: Chaos>(
    obj: &K,
    ctx: &Ctx,
    ns: &str,
    uid: &str,
) -> Result<Result<Vec<String>, String>, ReconcileError> {
    let Some(external) = obj.external_peers() else {
        return Ok(Ok(Vec::new()));
    };
    let external = match external {
        Ok(e) => e,
        Err(why) => return Ok(Err(why)),
    };
    let mut out: Vec<Peer> = Vec::new();
    if let Some(scope) = obj.peers() {
        let reach = namespaces(scope, ns);
        let pods = list_pods(&ctx.client, &reach, &scope.selector.label_selectors).await?;
        let nodes = if scope.selector.node_selectors.is_empty() {
            BTreeMap::new()
        } else {
            node_labels(&ctx.client).await?
        };
        let policy = ctx.policy.load();
        match select(
            &pods,
            &nodes,
            scope,
            ns,
            &format!("{uid}/target"),
            &limits(&policy),
        ) {
            Ok(chosen) => out.extend(
                chosen
                    .into_iter()
                    .filter_map(|p| p.pod_ip?.parse::<std::net::IpAddr>().ok())
                    .map(Peer::from),
            ),
            Err(e) => return Ok(Err(format!("the partition's `target`: {e}"))),
        }
        if out.is_empty() && external.is_empty() {
            return Ok(Err(
                "the partition's `target` selects no running pod and `externalTargets` is empty"
                    .into(),
            ));
        }
    } else if external.is_empty() {
        out.extend(Peer::everything());
    }
    for peer in external {
        match &peer.host {
            PeerHost::Name(name) => match tokio::net::lookup_host((name.as_str(), 0)).await {
                Ok(addrs) => {
                    for a in addrs {
                        let p = Peer::from(a.ip());
                        out.push(match peer.port {
                            Some(port) => p.with_port(port),
                            None => p,
                        });
                    }
                }
                Err(e) => {
                    return Ok(Err(format!(
                        "externalTargets: cannot resolve `{name}`: {e}"
                    )));
                }
            },
            PeerHost::Net(_) => out.push(peer),
        }
    }
    let mut texts: Vec<String> = out.iter().map(ToString::to_string).collect();
    texts.sort();
    texts.dedup();
    Ok(Ok(texts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_api::status::RecordPhase;

    #[test]
    fn a_target_in_a_namespace_protected_since_is_found_by_its_namespace_only() {
        let rec = |id: &str| TargetRecord {
            id: id.into(),
            node: None,
            phase: RecordPhase::Recovered,
            message: None,
            injected_at: None,
            recovered_at: None,
        };
        let records = [rec("shop/cart-0"), rec("payments/api-1/app")];
        let protected = BTreeSet::from(["kube-system", "payments"]);
        assert_eq!(protected_target(&records, &protected), Some("payments"));
        let protected = BTreeSet::from(["kube-system", "pay", "api-1"]);
        assert_eq!(
            protected_target(&records, &protected),
            None,
            "neither a prefix of a namespace nor a pod name"
        );
    }
}
