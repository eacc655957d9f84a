//! The validation table: for each rule, patches over a valid spec and the violations they give.

use serde_json::{Value, json};

/// (kind, patch over the valid spec, expected (path, rule id) violations)
pub(crate) type Case = (&'static str, Value, Vec<(&'static str, &'static str)>);

pub(crate) fn cases() -> Vec<Case> {
    vec![
        // --- shape: missing fields, wrong types, unknown values and fields ---
        (
            "PodChaos",
            json!({"mode": null, "action": null, "selector": null}),
            vec![
                ("spec.action", "required"),
                ("spec.mode", "required"),
                ("spec.selector", "required"),
            ],
        ),
        (
            "PodChaos",
            json!({"mode": "some", "action": "pod-explode"}),
            vec![
                ("spec.action", "unknown-value"),
                ("spec.mode", "unknown-value"),
            ],
        ),
        (
            "PodChaos",
            json!({"gracePeriod": "soon", "containerNames": "app"}),
            vec![
                ("spec.containerNames", "wrong-type"),
                ("spec.gracePeriod", "wrong-type"),
            ],
        ),
        (
            "PodChaos",
            json!({"actoin": "pod-kill", "selector": {"labelSelector": {"app": "x"}}}),
            vec![
                ("spec.actoin", "unknown-field"),
                ("spec.selector.labelSelector", "unknown-field"),
            ],
        ),
        (
            "PodChaos",
            json!({"remoteCluster": "east"}),
            vec![("spec.remoteCluster", "unsupported")],
        ),
        // --- selector, mode, value (all kinds share them) ---
        (
            "PodChaos",
            json!({"selector": {"namespaces": null}}),
            vec![("spec.selector", "empty-selector")],
        ),
        (
            "PodChaos",
            json!({"selector": {"namespaces": null, "podPhaseSelectors": ["Running"]}}),
            vec![("spec.selector", "empty-selector")],
        ),
        (
            "PodChaos",
            json!({"mode": "fixed"}),
            vec![("spec.value", "value-required")],
        ),
        (
            "PodChaos",
            json!({"mode": "fixed", "value": "0"}),
            vec![("spec.value", "value-not-pod-count")],
        ),
        (
            "PodChaos",
            json!({"mode": "fixed-percent", "value": "150"}),
            vec![("spec.value", "value-not-percent")],
        ),
        (
            "PodChaos",
            json!({"mode": "random-max-percent", "value": "0"}),
            vec![("spec.value", "value-not-percent")],
        ),
        (
            "PodChaos",
            json!({"selector": {"namespaces": ["Shop"]}}),
            vec![("spec.selector.namespaces[0]", "invalid-name")],
        ),
        (
            "PodChaos",
            json!({"selector": {"nodes": ["node_1"]}}),
            vec![("spec.selector.nodes[0]", "invalid-name")],
        ),
        (
            "PodChaos",
            json!({"selector": {"pods": {"shop": ["Web"]}}}),
            vec![("spec.selector.pods[\"shop\"][0]", "invalid-name")],
        ),
        (
            "PodChaos",
            json!({"selector": {"pods": {"shop": []}}}),
            vec![("spec.selector.pods[\"shop\"]", "required")],
        ),
        (
            "PodChaos",
            json!({"selector": {"labelSelectors": {"app": "-web"}}}),
            vec![("spec.selector.labelSelectors[\"app\"]", "invalid-name")],
        ),
        (
            "PodChaos",
            json!({"selector": {"nodeSelectors": {"a/b/c": "x"}}}),
            vec![("spec.selector.nodeSelectors[\"a/b/c\"]", "invalid-name")],
        ),
        (
            "PodChaos",
            json!({"selector": {"annotationSelectors": {"bad key": "x"}}}),
            vec![(
                "spec.selector.annotationSelectors[\"bad key\"]",
                "invalid-name",
            )],
        ),
        (
            "PodChaos",
            json!({"selector": {"fieldSelectors": {"": "x"}}}),
            vec![("spec.selector.fieldSelectors[\"\"]", "invalid-name")],
        ),
        (
            "PodChaos",
            json!({"selector": {"expressionSelectors": [{"key": "tier", "operator": "Gt"}]}}),
            vec![(
                "spec.selector.expressionSelectors[0].operator",
                "unknown-operator",
            )],
        ),
        (
            "PodChaos",
            json!({"selector": {"expressionSelectors": [{"key": "tier", "operator": "In"}]}}),
            vec![(
                "spec.selector.expressionSelectors[0].values",
                "expression-values",
            )],
        ),
        (
            "PodChaos",
            json!({"selector": {"podPhaseSelectors": ["running"]}}),
            vec![("spec.selector.podPhaseSelectors[0]", "unknown-pod-phase")],
        ),
        // --- PodChaos ---
        (
            "PodChaos",
            json!({"action": "container-kill"}),
            vec![("spec.containerNames", "required")],
        ),
        (
            "PodChaos",
            json!({"action": "container-kill", "containerNames": ["app", "Side_car"]}),
            vec![("spec.containerNames[1]", "invalid-name")],
        ),
        (
            "PodChaos",
            json!({"gracePeriod": -1}),
            vec![("spec.gracePeriod", "out-of-range")],
        ),
        (
            "PodChaos",
            json!({"action": "pod-failure", "duration": "30"}),
            vec![("spec.duration", "invalid-duration")],
        ),
        (
            "PodChaos",
            json!({"action": "pod-failure", "duration": "-1s"}),
            vec![("spec.duration", "invalid-duration")],
        ),
        (
            "PodChaos",
            json!({"action": "pod-failure", "duration": "0s"}),
            vec![("spec.duration", "zero-duration")],
        ),
        (
            "PodChaos",
            json!({"action": "pod-failure", "duration": "2m30s"}),
            vec![],
        ),
        // --- NetworkChaos ---
        (
            "NetworkChaos",
            json!({"delay": null}),
            vec![("spec.delay", "required")],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"latency": ""}}),
            vec![("spec.delay.latency", "required")],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"latency": "1.5h"}}),
            vec![],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"latency": "100"}}),
            vec![("spec.delay.latency", "invalid-duration")],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"jitter": "-5ms"}}),
            vec![("spec.delay.jitter", "invalid-duration")],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"correlation": "101"}}),
            vec![("spec.delay.correlation", "percent-out-of-range")],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"reorder": {"reorder": "x", "gap": 1}}}),
            vec![("spec.delay.reorder.reorder", "percent-out-of-range")],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"reorder": {"reorder": "10"}}}),
            vec![("spec.delay.reorder.gap", "required")],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"latency": "0s", "reorder": {"reorder": "10", "gap": 5}}}),
            vec![("spec.delay.reorder", "reorder-without-latency")],
        ),
        (
            "NetworkChaos",
            json!({"delay": {"reorder": {"reorder": "10", "gap": -1}}}),
            vec![("spec.delay.reorder.gap", "out-of-range")],
        ),
        (
            "NetworkChaos",
            json!({"action": "loss", "delay": null, "loss": {"loss": "150"}}),
            vec![("spec.loss.loss", "percent-out-of-range")],
        ),
        (
            "NetworkChaos",
            json!({"action": "loss", "delay": null, "loss": {"loss": "25", "correlation": "-1"}}),
            vec![("spec.loss.correlation", "percent-out-of-range")],
        ),
        (
            "NetworkChaos",
            json!({"action": "loss", "delay": null}),
            vec![("spec.loss", "required")],
        ),
        (
            "NetworkChaos",
            json!({"action": "duplicate", "delay": null, "duplicate": {}}),
            vec![("spec.duplicate.duplicate", "required")],
        ),
        (
            "NetworkChaos",
            json!({"action": "corrupt", "delay": null, "corrupt": {"corrupt": "100.5"}}),
            vec![("spec.corrupt.corrupt", "percent-out-of-range")],
        ),
        (
            "NetworkChaos",
            json!({"action": "netem", "delay": null}),
            vec![("spec", "netem-without-effect")],
        ),
        (
            "NetworkChaos",
            json!({"action": "netem", "rate": {"rate": "10"}}),
            vec![("spec.rate.rate", "invalid-rate")],
        ),
        (
            "NetworkChaos",
            json!({"action": "netem", "rate": {"rate": "1.5mbit"}}),
            vec![("spec.rate.rate", "invalid-rate")],
        ),
        (
            "NetworkChaos",
            json!({"action": "rate", "delay": null, "rate": {"rate": "1 KBps"}}),
            vec![],
        ),
        (
            "NetworkChaos",
            json!({"action": "bandwidth", "delay": null, "bandwidth": {"rate": "1mbps", "limit": 20971520, "buffer": 10000}}),
            vec![],
        ),
        (
            "NetworkChaos",
            json!({"action": "bandwidth", "delay": null, "bandwidth": {"rate": "fast", "limit": 0, "buffer": 0}}),
            vec![
                ("spec.bandwidth.rate", "invalid-rate"),
                ("spec.bandwidth.limit", "out-of-range"),
                ("spec.bandwidth.buffer", "out-of-range"),
            ],
        ),
        (
            "NetworkChaos",
            json!({"direction": "from"}),
            vec![("spec.direction", "direction-needs-target")],
        ),
        (
            "NetworkChaos",
            json!({"direction": "both", "target": {"mode": "all", "selector": {"namespaces": ["db"]}}, "externalTargets": ["1.2.3.4"]}),
            vec![("spec.externalTargets", "external-targets-need-direction-to")],
        ),
        (
            "NetworkChaos",
            json!({"direction": "both", "target": {"mode": "all", "selector": {"namespaces": ["db"]}}}),
            vec![],
        ),
        (
            "NetworkChaos",
            json!({"target": {"mode": "fixed", "selector": {"namespaces": ["db"]}}}),
            vec![("spec.target.value", "value-required")],
        ),
        (
            "NetworkChaos",
            json!({"target": {"mode": "all", "selector": {}}}),
            vec![("spec.target.selector", "empty-selector")],
        ),
        (
            "NetworkChaos",
            json!({"target": {"selector": {"namespaces": ["db"]}}}),
            vec![("spec.target.mode", "required")],
        ),
        (
            "NetworkChaos",
            json!({"action": "partition", "delay": null}),
            vec![],
        ),
        (
            "NetworkChaos",
            json!({"action": "partition", "delay": null, "direction": "both", "externalTargets": ["10.0.0.0/8", "example.com"]}),
            vec![],
        ),
        (
            "NetworkChaos",
            json!({"externalTargets": ["10.0.0.0/99"]}),
            vec![("spec.externalTargets[0]", "invalid-external-target")],
        ),
        (
            "NetworkChaos",
            json!({"externalTargets": ["1.1.1.1:80", "example.com:443", "10.0.0.0/8:22", "[fd00::1]:80", "fd00::/64"]}),
            vec![],
        ),
        (
            "NetworkChaos",
            json!({"externalTargets": ["1.1.1.1:0", "[fd00::1]", "example.com:https", "10.0.0.256"]}),
            vec![
                ("spec.externalTargets[0]", "invalid-external-target"),
                ("spec.externalTargets[1]", "invalid-external-target"),
                ("spec.externalTargets[2]", "invalid-external-target"),
                ("spec.externalTargets[3]", "invalid-external-target"),
            ],
        ),
        (
            "NetworkChaos",
            json!({"device": "eth0@if12", "targetDevice": "veth0"}),
            vec![],
        ),
        (
            "NetworkChaos",
            json!({"device": "eth0/../x"}),
            vec![("spec.device", "invalid-device")],
        ),
        (
            "NetworkChaos",
            json!({"targetDevice": "averyveryverylongname"}),
            vec![("spec.targetDevice", "invalid-device")],
        ),
        // --- StressChaos ---
        (
            "StressChaos",
            json!({"stressors": null}),
            vec![("spec.stressors", "no-stressor")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"cpu": null}}),
            vec![("spec.stressors", "no-stressor")],
        ),
        (
            "StressChaos",
            json!({"stressngStressors": "--cpu 1"}),
            vec![],
        ),
        (
            "StressChaos",
            json!({"stressors": null, "stressngStressors": "--cpu 1 --timeout 60s"}),
            vec![],
        ),
        (
            "StressChaos",
            json!({"stressors": null, "stressngStressors": "cpu 1"}),
            vec![("spec.stressngStressors", "invalid-stress-option")],
        ),
        (
            "StressChaos",
            json!({"stressors": null, "stressngStressors": "--cpu 1 --temp-path /etc"}),
            vec![("spec.stressngStressors", "forbidden-stress-option")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"cpu": {"workers": 0}}}),
            vec![("spec.stressors.cpu.workers", "out-of-range")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"cpu": {"workers": 8193}}}),
            vec![("spec.stressors.cpu.workers", "out-of-range")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"cpu": {"load": 101}}}),
            vec![("spec.stressors.cpu.load", "out-of-range")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"cpu": {"options": ["--cpu-method matrixprod", "fast"]}}}),
            vec![("spec.stressors.cpu.options[1]", "invalid-stress-option")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"cpu": {"options": ["--log-file=/etc/passwd"]}}}),
            vec![("spec.stressors.cpu.options[0]", "forbidden-stress-option")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"memory": {"workers": 1, "size": "256MB", "oomScoreAdj": -1000}}}),
            vec![],
        ),
        (
            "StressChaos",
            json!({"stressors": {"memory": {"workers": 1, "size": "50%"}}}),
            vec![],
        ),
        (
            "StressChaos",
            json!({"stressors": {"memory": {"workers": 1, "size": "lots"}}}),
            vec![("spec.stressors.memory.size", "invalid-size")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"memory": {"workers": 1}}}),
            vec![],
        ),
        (
            "StressChaos",
            json!({"stressors": {"memory": {"size": "1GB"}}}),
            vec![("spec.stressors.memory.workers", "required")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"cpu": {"options": [""]}}}),
            vec![],
        ),
        (
            "StressChaos",
            json!({"stressors": {"memory": {"workers": 1, "size": "1GB", "oomScoreAdj": 1001}}}),
            vec![("spec.stressors.memory.oomScoreAdj", "out-of-range")],
        ),
        (
            "StressChaos",
            json!({"containerNames": ["APP"]}),
            vec![("spec.containerNames[0]", "invalid-name")],
        ),
        // --- IOChaos ---
        (
            "IOChaos",
            json!({"volumePath": ""}),
            vec![("spec.volumePath", "required")],
        ),
        (
            "IOChaos",
            json!({"volumePath": null, "path": null}),
            vec![("spec.volumePath", "required")],
        ),
        (
            "IOChaos",
            json!({"volumePath": "data"}),
            vec![("spec.volumePath", "not-absolute")],
        ),
        (
            "IOChaos",
            json!({"path": "data/*"}),
            vec![("spec.path", "not-absolute")],
        ),
        (
            "IOChaos",
            json!({"path": "/etc/**"}),
            vec![("spec.path", "path-outside-volume")],
        ),
        (
            "IOChaos",
            json!({"path": "/var/lib/data/[a"}),
            vec![("spec.path", "invalid-glob")],
        ),
        (
            "IOChaos",
            json!({"methods": ["read", "frob"]}),
            vec![("spec.methods[1]", "unknown-method")],
        ),
        (
            "IOChaos",
            json!({"percent": 101}),
            vec![("spec.percent", "out-of-range")],
        ),
        (
            "IOChaos",
            json!({"delay": null}),
            vec![("spec.delay", "required")],
        ),
        (
            "IOChaos",
            json!({"delay": "0ms"}),
            vec![("spec.delay", "zero-duration")],
        ),
        ("IOChaos", json!({"action": "fault", "errno": 5}), vec![]),
        (
            "IOChaos",
            json!({"action": "fault"}),
            vec![("spec.errno", "required")],
        ),
        (
            "IOChaos",
            json!({"action": "fault", "errno": 0}),
            vec![("spec.errno", "unknown-errno")],
        ),
        (
            "IOChaos",
            json!({"action": "fault", "errno": 4096}),
            vec![("spec.errno", "unknown-errno")],
        ),
        (
            "IOChaos",
            json!({"action": "attrOverride"}),
            vec![("spec.attr", "required")],
        ),
        (
            "IOChaos",
            json!({"action": "attrOverride", "attr": {}}),
            vec![("spec.attr", "empty-attr-override")],
        ),
        (
            "IOChaos",
            json!({"action": "attrOverride", "attr": {"perm": 4096, "kind": "regularFile"}}),
            vec![("spec.attr.perm", "out-of-range")],
        ),
        (
            "IOChaos",
            json!({"action": "attrOverride", "attr": {"mtime": {"sec": 1, "nsec": 1000000000}}}),
            vec![("spec.attr.mtime.nsec", "out-of-range")],
        ),
        (
            "IOChaos",
            json!({"action": "attrOverride", "attr": {"mtime": {"sec": 1}}}),
            vec![("spec.attr.mtime.nsec", "required")],
        ),
        (
            "IOChaos",
            json!({"action": "attrOverride", "attr": {"perm": 70000}}),
            vec![("spec.attr.perm", "out-of-range")],
        ),
        (
            "IOChaos",
            json!({"action": "mistake"}),
            vec![("spec.mistake", "required")],
        ),
        (
            "IOChaos",
            json!({"action": "mistake", "mistake": {"filling": "zero", "maxOccurrences": 1, "maxLength": 100}}),
            vec![],
        ),
        (
            "IOChaos",
            json!({"action": "mistake", "mistake": {"filling": "random", "maxOccurrences": 0, "maxLength": 2097152}}),
            vec![
                ("spec.mistake.maxOccurrences", "out-of-range"),
                ("spec.mistake.maxLength", "out-of-range"),
            ],
        ),
        (
            "IOChaos",
            json!({"duration": "forever"}),
            vec![("spec.duration", "invalid-duration")],
        ),
    ]
}
