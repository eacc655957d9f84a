//! Defaulting (DESIGN.md §3 `/default`): fills what is missing, never overrides the user.

use faultline_api::network_chaos::Direction;
use faultline_api::{AnyChaos, Experiment, IOChaos, NetworkChaos, PodChaos, parse};
use serde_json::json;

fn network(spec: serde_json::Value) -> NetworkChaos {
    parse(
        json!({"apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "NetworkChaos",
                 "metadata": {"name": "n"}, "spec": spec}),
    )
    .unwrap()
}

#[test]
fn network_defaults() {
    let mut c = network(json!({
        "action": "delay", "mode": "all", "delay": {"latency": "1ms"},
        "selector": {"labelSelectors": {"app": "web"}},
        "device": "eth0@if12", "targetDevice": "veth9@if3",
        "target": {"mode": "one", "selector": {"labelSelectors": {"app": "db"}}}
    }));
    c.apply_defaults("shop");
    assert_eq!(c.spec.scope.selector.namespaces, ["shop"]);
    assert_eq!(
        c.spec.target.as_ref().unwrap().selector.namespaces,
        ["shop"]
    );
    assert_eq!(c.spec.direction, Some(Direction::To));
    assert_eq!(c.spec.device.as_deref(), Some("eth0"));
    assert_eq!(c.spec.target_device.as_deref(), Some("veth9"));
}

#[test]
fn user_values_win() {
    let mut c = network(json!({
        "action": "delay", "mode": "all", "delay": {"latency": "1ms"}, "direction": "both",
        "selector": {"namespaces": ["a", "b"]},
        "target": {"mode": "one", "selector": {"pods": {"db": ["pg-0"]}}}
    }));
    c.apply_defaults("shop");
    assert_eq!(c.spec.scope.selector.namespaces, ["a", "b"]);
    assert_eq!(c.spec.direction, Some(Direction::Both));
    // `pods` already says where: no namespace is added to the target.
    assert!(
        c.spec
            .target
            .as_ref()
            .unwrap()
            .selector
            .namespaces
            .is_empty()
    );
    assert_eq!(
        c.target_namespaces().into_iter().collect::<Vec<_>>(),
        ["a", "b", "db"]
    );

    let mut io: IOChaos = parse(
        json!({"apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "IOChaos",
        "metadata": {"name": "io"}, "spec": {"action": "fault", "mode": "one", "volumePath": "/d",
        "errno": 5, "percent": 7}}),
    )
    .unwrap();
    io.apply_defaults("shop");
    assert_eq!(io.spec.percent, Some(7));
}

#[test]
fn io_percent_defaults_to_100() {
    let mut io = AnyChaos::from_value(
        "IOChaos",
        json!({"apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "IOChaos", "metadata": {"name": "io"},
               "spec": {"action": "fault", "mode": "one", "volumePath": "/d", "errno": 5,
                        "selector": {"labelSelectors": {"app": "db"}}}}),
    )
    .unwrap();
    io.apply_defaults("shop");
    assert_eq!(io.to_value()["spec"]["percent"], json!(100));
    assert_eq!(
        io.to_value()["spec"]["selector"]["namespaces"],
        json!(["shop"])
    );
}

/// An empty selector is left empty, for validation to refuse: filling in the namespace would
/// turn it into "every pod of the namespace".
#[test]
fn an_empty_selector_gets_no_namespace() {
    let mut c = network(json!({"action": "delay", "mode": "all", "delay": {"latency": "1ms"}}));
    c.apply_defaults("shop");
    assert!(c.spec.scope.selector.namespaces.is_empty());
    assert_eq!(
        c.validate()
            .into_iter()
            .map(|v| (v.path, v.rule.name()))
            .collect::<Vec<_>>(),
        [("spec.selector".to_string(), "empty-selector")]
    );
}

#[test]
fn lasting_and_durations() {
    let kill: PodChaos = parse(
        json!({"apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "PodChaos",
        "metadata": {"name": "k"}, "spec": {"action": "pod-kill", "mode": "one"}}),
    )
    .unwrap();
    assert!(!kill.lasts());
    assert_eq!(kill.duration(), None);
    let fail: PodChaos = parse(json!({"apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "PodChaos",
        "metadata": {"name": "k"}, "spec": {"action": "pod-failure", "mode": "one", "duration": "1m30s"}}))
    .unwrap();
    assert!(fail.lasts());
    assert_eq!(fail.duration(), Some(std::time::Duration::from_secs(90)));
    assert_eq!(fail.action(), "pod-failure");
}
