//! The warning table: what Chaos Mesh accepts and Faultline admits, but reads its own way.

use serde_json::{Value, json};

/// (kind, patch over the valid spec, expected (path, note id) warnings); each is admitted.
pub(crate) type Case = (&'static str, Value, Vec<(&'static str, &'static str)>);

pub(crate) fn cases() -> Vec<Case> {
    vec![
        (
            "PodChaos",
            json!({"mode": "all", "value": "3"}),
            vec![("spec.value", "value-ignored")],
        ),
        (
            "NetworkChaos",
            json!({"target": {"mode": "one", "value": "50", "selector": {"namespaces": ["db"]}}}),
            vec![("spec.target.value", "value-ignored")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"cpu": {"options": ["", "--cpu-method sqrt"]}}}),
            vec![("spec.stressors.cpu.options[0]", "empty-option")],
        ),
        (
            "StressChaos",
            json!({"stressors": {"cpu": null, "memory": {"workers": 4}}}),
            vec![("spec.stressors.memory.size", "memory-size-default")],
        ),
        (
            "StressChaos",
            json!({"stressngStressors": "--cpu 1 --cpu-load 20"}),
            vec![("spec.stressors", "stressors-ignored")],
        ),
        (
            "NetworkChaos",
            json!({"action": "partition", "delay": null}),
            vec![("spec", "partition-everything")],
        ),
        (
            "NetworkChaos",
            json!({"action": "partition"}),
            vec![
                ("spec.delay", "field-ignored"),
                ("spec", "partition-everything"),
            ],
        ),
        (
            "NetworkChaos",
            json!({"bandwidth": {"rate": "1mbps", "limit": 1, "buffer": 1}}),
            vec![("spec.bandwidth", "field-ignored")],
        ),
        (
            "NetworkChaos",
            json!({"action": "bandwidth", "bandwidth": {"rate": "1mbps", "limit": 1, "buffer": 1}}),
            vec![("spec.delay", "field-ignored")],
        ),
        (
            "IOChaos",
            json!({"errno": 5, "attr": {"perm": 292}}),
            vec![
                ("spec.errno", "field-ignored"),
                ("spec.attr", "field-ignored"),
            ],
        ),
        (
            "IOChaos",
            json!({"action": "fault", "errno": 5, "mistake": {"filling": "zero", "maxOccurrences": 1, "maxLength": 1}}),
            vec![
                ("spec.delay", "field-ignored"),
                ("spec.mistake", "field-ignored"),
            ],
        ),
    ]
}
