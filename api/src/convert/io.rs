//! IOChaos → the sidecar rule of DESIGN.md §4.
//!
//! The absolute `path` becomes a glob relative to the volume (the sidecar's mount root); no
//! `path` matches every file; `path` equal to `volumePath` matches the volume root only. The
//! experiment's `duration` becomes the rule's `ttl`, so a rule outlives neither its experiment nor
//! a controller that died before recovering it.
//!
//! Only the action's own payload goes into the rule (`delay` → `latency`, `errno` → `faults`,
//! `attr`, `mistake`: [`crate::iorule::PAYLOADS`]). Chaos Mesh accepts and ignores another
//! action's payload; so does Faultline — validation warns about each such field with its path
//! (`spec.errno: ignored: action `latency` does not use it (only fault)`), and the rule built
//! here never carries it, as the sidecar would refuse it (`rule.faults: must not be set`).

use crate::io_chaos::IOChaosSpec;
use crate::iorule::{IoFaultType, IoRule, WeightedErrno};
use crate::validate::{Rule, Violation};

/// Converts an IOChaos spec into one sidecar rule with the given `id`.
pub fn io_rule(spec: &IOChaosSpec, id: Option<String>) -> Result<IoRule, Vec<Violation>> {
    let (values, findings) = spec.checked(Some(spec.action));
    let violations = findings.into_vec();
    if !violations.is_empty() {
        return Err(violations);
    }
    let values = values.ok_or_else(|| {
        vec![Violation::new(
            "spec",
            Rule::Required {
                because: "a valid volumePath, path, methods and percent".into(),
            },
        )]
    })?;
    let payload = |kind: IoFaultType| spec.action == kind;
    Ok(IoRule {
        id,
        kind: spec.action,
        path: values.path,
        methods: values.methods.into_iter().map(String::from).collect(),
        percent: values.percent,
        latency: spec.delay.clone().filter(|_| payload(IoFaultType::Latency)),
        faults: spec
            .errno
            .filter(|_| payload(IoFaultType::Fault))
            .map(|errno| vec![WeightedErrno { errno, weight: 1 }])
            .unwrap_or_default(),
        attr: spec
            .attr
            .clone()
            .filter(|_| payload(IoFaultType::AttrOverride)),
        mistake: spec.mistake.filter(|_| payload(IoFaultType::Mistake)),
        ttl: spec.duration.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iorule::IoFaultType;
    use crate::parse;
    use serde_json::json;

    #[test]
    fn latency_rule() {
        let spec: IOChaosSpec = parse(json!({
            "mode": "one", "action": "latency", "volumePath": "/var/run/data",
            "selector": {"namespaces": ["shop"]},
            "path": "/var/run/data/**/*.db", "methods": ["READ", "Write"], "percent": 50,
            "delay": "100ms", "errno": 5, "duration": "5m"
        }))
        .unwrap();
        let rule = io_rule(&spec, Some("shop/slow-db".into())).unwrap();
        assert_eq!(rule.kind, IoFaultType::Latency);
        assert_eq!(rule.path.as_deref(), Some("**/*.db"));
        assert_eq!(rule.methods, ["read", "write"]);
        assert_eq!(rule.percent, Some(50));
        assert_eq!(rule.latency.as_deref(), Some("100ms"));
        assert!(rule.faults.is_empty(), "errno belongs to fault rules only");
        assert_eq!(rule.ttl.as_deref(), Some("5m"));
        assert_eq!(rule.validate(), vec![]);
        // What the rule leaves out is what validation warns about, by path.
        let warned: Vec<_> = spec.warnings().into_iter().map(|w| w.path).collect();
        assert_eq!(warned, ["spec.errno"]);
    }

    #[test]
    fn every_foreign_payload_is_dropped_and_warned_about() {
        let all = json!({"delay": "10ms", "errno": 5, "attr": {"perm": 292},
            "mistake": {"filling": "zero", "maxOccurrences": 1, "maxLength": 1}});
        for action in ["latency", "fault", "attrOverride", "mistake"] {
            let mut value = json!({"mode": "one", "action": action, "volumePath": "/data",
                "selector": {"namespaces": ["shop"]}});
            for (k, v) in all.as_object().unwrap() {
                value[k] = v.clone();
            }
            let spec: IOChaosSpec = parse(value).unwrap();
            let rule = io_rule(&spec, None).unwrap();
            assert_eq!(
                rule.validate(),
                vec![],
                "{action}: the sidecar takes the rule"
            );
            let set = [
                rule.latency.is_some(),
                !rule.faults.is_empty(),
                rule.attr.is_some(),
                rule.mistake.is_some(),
            ];
            assert_eq!(set.iter().filter(|s| **s).count(), 1, "{action}");
            let warned: Vec<String> = spec.warnings().into_iter().map(|w| w.path).collect();
            assert_eq!(warned.len(), 3, "{action}: {warned:?}");
            assert!(warned.iter().all(|p| p.starts_with("spec.")), "{warned:?}");
        }
    }

    #[test]
    fn fault_rule_without_path() {
        let spec: IOChaosSpec = parse(json!({"mode": "all", "action": "fault",
            "selector": {"namespaces": ["shop"]}, "volumePath": "/data", "errno": 28}))
        .unwrap();
        let rule = io_rule(&spec, None).unwrap();
        assert_eq!(rule.path, None);
        assert_eq!(
            rule.faults,
            vec![WeightedErrno {
                errno: 28,
                weight: 1
            }]
        );
        assert_eq!(rule.validate(), vec![]);
    }

    #[test]
    fn invalid_spec_is_refused() {
        let spec: IOChaosSpec = parse(
            json!({"mode": "all", "action": "fault", "volumePath": "/data", "path": "/etc/*",
                "selector": {"namespaces": ["shop"]}}),
        )
        .unwrap();
        let paths: Vec<String> = io_rule(&spec, None)
            .unwrap_err()
            .into_iter()
            .map(|v| v.path)
            .collect();
        assert_eq!(paths, ["spec.path", "spec.errno"]);
    }
}
