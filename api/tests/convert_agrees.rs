//! Conversions agree with validation, field for field: for every NetworkChaos, StressChaos and
//! IOChaos spec, the conversion succeeds exactly when validation finds nothing, and when it fails it
//! returns the very violations validation reports. Values are drawn from lists of valid and
//! invalid field values, so both sides of every check are reached.

use faultline_api::convert::io::io_rule;
use faultline_api::convert::network::{NetworkFault, network_fault};
use faultline_api::convert::stress::stress_plan;
use faultline_api::io_chaos::IOChaosSpec;
use faultline_api::network_chaos::NetworkChaosSpec;
use faultline_api::parse;
use faultline_api::stress_chaos::StressChaosSpec;
use proptest::prelude::*;
use serde_json::{Value, json};

fn pick(values: &'static [&'static str]) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        4 => proptest::sample::select(values).prop_map(|v| Some(json!(v))),
    ]
}

fn int(values: &'static [i64]) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        4 => proptest::sample::select(values).prop_map(|v| Some(json!(v))),
    ]
}

const DURATIONS: &[&str] = &[
    "10ms",
    "1.5s",
    "0",
    "0ms",
    "",
    "10",
    "-5ms",
    "1h",
    "abc",
    "300000000h",
];
const PERCENTS: &[&str] = &["0", "25", "100", "100.5", "0.001", "-1", "", "abc", "50%"];
const RATES: &[&str] = &["1mbps", "8mbit", "100kbit", "", "10", "1xb", "0bit"];
const INTS: &[i64] = &[-1, 0, 1, 1500, 4_294_967_295, 4_294_967_296];
const TARGETS: &[&str] = &[
    "10.0.0.1",
    "1.1.1.1:80",
    "10.0.0.0/8:22",
    "example.com:443",
    "[fd00::1]:80",
    "fd00::/64",
    "1.1.1.1:0",
    "10.0.0.0/33",
    "[fd00::1]",
];
const ACTIONS: &[&str] = &[
    "netem",
    "delay",
    "loss",
    "duplicate",
    "corrupt",
    "rate",
    "bandwidth",
    "partition",
];

fn object(fields: Vec<(&str, Option<Value>)>) -> Option<Value> {
    let map: serde_json::Map<String, Value> = fields
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v?)))
        .collect();
    Some(Value::Object(map))
}

prop_compose! {
    fn network_spec()(
        action in proptest::sample::select(ACTIONS),
        latency in pick(DURATIONS), jitter in pick(DURATIONS), dcorr in pick(PERCENTS),
        reorder in pick(PERCENTS), rcorr in pick(PERCENTS), gap in int(INTS),
        has in proptest::collection::vec(any::<bool>(), 7),
        loss in pick(PERCENTS), lcorr in pick(PERCENTS),
        dup in pick(PERCENTS), corrupt in pick(PERCENTS),
        rate in pick(RATES), bw_rate in pick(RATES),
        limit in int(INTS), buffer in int(INTS), peakrate in int(&[0, 7, 8, 8000]),
        minburst in int(INTS),
        targets in proptest::collection::vec(proptest::sample::select(TARGETS), 0..3),
    ) -> Value {
        let mut spec = json!({"mode": "all", "action": action, "externalTargets": targets,
            "selector": {"namespaces": ["shop"]}});
        let reorder = if has[0] {
            object(vec![("reorder", reorder), ("correlation", rcorr), ("gap", gap)])
        } else {
            None
        };
        let blocks = [
            ("delay", has[1], object(vec![("latency", latency), ("jitter", jitter), ("correlation", dcorr), ("reorder", reorder)])),
            ("loss", has[2], object(vec![("loss", loss), ("correlation", lcorr)])),
            ("duplicate", has[3], object(vec![("duplicate", dup)])),
            ("corrupt", has[4], object(vec![("corrupt", corrupt)])),
            ("rate", has[5], object(vec![("rate", rate)])),
            ("bandwidth", has[6], object(vec![("rate", bw_rate), ("limit", limit), ("buffer", buffer), ("peakrate", peakrate), ("minburst", minburst)])),
        ];
        for (name, present, block) in blocks {
            if present {
                spec[name] = block.unwrap_or(Value::Null);
            }
        }
        spec
    }
}

prop_compose! {
    fn stress_spec()(
        cpu in any::<bool>(), mem in any::<bool>(),
        cpu_workers in int(&[0, 1, 4, 9000]), load in int(&[-1, 0, 50, 101]),
        workers in int(&[0, 1, 3, 9000]),
        size in pick(&["256MB", "50%", "101%", "", "1XB", "0", "1GiB"]),
        adj in int(&[-1001, -1000, 0, 1000, 1001]),
    ) -> Value {
        let mut stressors = serde_json::Map::new();
        if cpu {
            stressors.insert("cpu".into(), object(vec![("workers", cpu_workers), ("load", load)]).unwrap_or(Value::Null));
        }
        if mem {
            stressors.insert("memory".into(), object(vec![("workers", workers), ("size", size), ("oomScoreAdj", adj)]).unwrap_or(Value::Null));
        }
        json!({"mode": "one", "selector": {"namespaces": ["shop"]}, "stressors": stressors})
    }
}

prop_compose! {
    fn io_spec()(
        action in proptest::sample::select(&["latency", "fault", "attrOverride", "mistake"][..]),
        volume in pick(&["/data", "/data/", "", "data", "/data/../etc"]),
        path in pick(&["/data/**", "/data", "/data2/x", "logs/*", "/data/[", "/data/a/*.log"]),
        methods in proptest::collection::vec(proptest::sample::select(&["read", "WRITE", "open", "reed", ""][..]), 0..3),
        percent in int(&[-1, 0, 50, 100, 101]),
        delay in pick(&["10ms", "0", "", "x"]),
        errno in int(&[0, 5, 28, 4096]),
    ) -> Value {
        let mut spec = json!({"mode": "all", "selector": {"namespaces": ["shop"]}, "action": action, "methods": methods});
        for (k, v) in [("volumePath", volume), ("path", path), ("percent", percent), ("delay", delay), ("errno", errno)] {
            if let Some(v) = v {
                spec[k] = v;
            }
        }
        spec
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn io_conversion_agrees_with_validation(value in io_spec()) {
        let Ok(spec) = parse::<IOChaosSpec>(value) else { return Ok(()); };
        let violations = spec.validate();
        match io_rule(&spec, None) {
            Ok(rule) => {
                prop_assert!(violations.is_empty(), "converted despite {violations:?}");
                // Every method the spec names reaches the rule: none dropped (an empty list
                // would mean every method).
                prop_assert_eq!(rule.methods.len(), spec.methods.len());
                prop_assert_eq!(rule.percent.map(i64::from), spec.percent);
                prop_assert_eq!(rule.path.is_some(), spec.path.is_some());
            }
            Err(got) => prop_assert_eq!(got, violations),
        }
    }

    #[test]
    fn network_conversion_agrees_with_validation(value in network_spec()) {
        let Ok(spec) = parse::<NetworkChaosSpec>(value) else { return Ok(()); };
        let violations = spec.validate();
        match network_fault(&spec) {
            Ok(fault) => {
                prop_assert!(violations.is_empty(), "converted despite {violations:?}");
                match fault {
                    NetworkFault::Netem(p) => prop_assert_eq!(p.limit_packets, 1000),
                    // Every external target reaches the partition, port included.
                    NetworkFault::Partition { peers, .. } if !spec.external_targets.is_empty() => {
                        prop_assert_eq!(peers.len(), spec.external_targets.len());
                        for (peer, text) in peers.iter().zip(&spec.external_targets) {
                            prop_assert_eq!(peer.port.is_some(), text.contains("]:") || text.matches(':').count() == 1);
                        }
                    }
                    _ => {}
                }
            }
            Err(got) => prop_assert_eq!(got, violations),
        }
    }

    #[test]
    fn stress_conversion_agrees_with_validation(value in stress_spec()) {
        let Ok(spec) = parse::<StressChaosSpec>(value) else { return Ok(()); };
        let violations = spec.validate();
        match stress_plan(&spec, 8 << 30) {
            Ok(plan) => {
                prop_assert!(violations.is_empty(), "converted despite {violations:?}");
                prop_assert!(!plan.args.is_empty());
            }
            Err(got) => prop_assert_eq!(got, violations),
        }
    }
}

/// The values a valid spec converts to are exact, never a stand-in: a rate or a size that
/// validated ends up in the parameters as given.
#[test]
fn validated_values_reach_the_parameters() {
    let spec: NetworkChaosSpec = parse(json!({
        "mode": "all", "action": "bandwidth", "selector": {"namespaces": ["shop"]},
        "bandwidth": {"rate": "8mbit", "limit": 1, "buffer": 4294967295u64}
    }))
    .expect("parses");
    let NetworkFault::Bandwidth(tbf) = network_fault(&spec).expect("valid") else {
        panic!("tbf expected")
    };
    assert_eq!(tbf.rate_bytes_per_sec, 1_000_000);
    assert_eq!((tbf.limit_bytes, tbf.burst_bytes), (1, u32::MAX));

    let spec: StressChaosSpec = parse(json!({"mode": "one", "selector": {"namespaces": ["shop"]},
            "stressors": {"memory": {"workers": 2, "size": "50%"}}}))
    .expect("parses");
    let plan = stress_plan(&spec, 1000).expect("valid");
    assert_eq!(plan.args[..4], ["--vm", "2", "--vm-bytes", "250b"]);
}
