//! Property-based fuzzing of the decoder and the pure handlers: whatever the bytes, no panic,
//! and every decoded request gets an answer that echoes its uid.

mod common;

use std::collections::BTreeMap;

use faultline_webhook::inject::Template;
use faultline_webhook::policy::Policy;
use faultline_webhook::{admission, inject, review};
use proptest::prelude::*;
use serde_json::{Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("CREATE"),
            Just("UPDATE"),
            Just("all"),
            Just("fixed"),
            Just("50"),
            Just("1h"),
            Just("-1s"),
            Just("kube-system"),
            Just("data"),
            Just("Pod"),
            Just("PodChaos"),
            Just("NetworkChaos"),
            Just("IOChaos"),
            Just("StressChaos"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer in `v`.
fn pointers(v: &Value, prefix: String, out: &mut Vec<String>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                pointers(
                    child,
                    format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                pointers(child, format!("{prefix}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn bases() -> Vec<Value> {
    let pod_review: Value =
        serde_json::from_str(include_str!("fixtures/review-pod.json")).expect("fixture");
    let network = json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "NetworkChaos",
        "metadata": {"name": "n", "namespace": "shop"},
        "spec": {"action": "delay", "mode": "fixed-percent", "value": "20",
                 "selector": {"namespaces": ["shop"], "pods": {"batch": ["a"]}},
                 "target": {"mode": "all", "selector": {}},
                 "delay": {"latency": "10ms"}, "duration": "5m"}
    });
    let io = json!({
        "apiVersion": "chaos.faultline.dev/v1alpha1", "kind": "IOChaos",
        "metadata": {"generateName": "io-", "namespace": "shop"},
        "spec": {"action": "fault", "mode": "one", "volumePath": "/data", "path": "/data/**",
                 "errno": 5, "percent": 50, "methods": ["READ"], "duration": "1m"}
    });
    vec![
        pod_review,
        common::chaos_review("CREATE", network.clone(), Value::Null),
        common::chaos_review("UPDATE", io.clone(), io),
    ]
}

fn run_all(body: &[u8]) {
    let fast = review::decode(body);
    let careful = review::decode_carefully(body);
    assert_eq!(fast.is_ok(), careful.is_ok(), "{fast:?} vs {careful:?}");
    let Ok(r) = fast else {
        return;
    };
    let careful = careful.expect("checked above");
    assert_eq!(r.request.uid, careful.request.uid);
    assert_eq!(
        r.object.as_ref().map(|o| o.get()),
        careful.object.as_ref().map(|o| o.get())
    );
    let labels: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for verdict in [
        admission::validate(&r, &Policy::default(), &labels),
        admission::default(&r),
        inject::handle(&r, &Template::default(), &labels, &Policy::default()),
    ] {
        assert_eq!(verdict.response.uid, r.request.uid);
        let encoded = review::encode(verdict.response);
        let _: Value = serde_json::from_slice(&encoded).expect("answers are JSON");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        run_all(&bytes);
    }

    #[test]
    fn truncated_reviews_never_panic(base in 0usize..3, cut in 0.0f64..1.0) {
        let body = serde_json::to_vec(&bases()[base]).expect("json");
        let cut = ((body.len() as f64) * cut) as usize;
        run_all(&body[..cut]);
    }

    #[test]
    fn mutated_reviews_never_panic(base in 0usize..3, which in any::<prop::sample::Index>(), value in arb_json()) {
        let mut doc = bases().swap_remove(base);
        let mut all = Vec::new();
        pointers(&doc, String::new(), &mut all);
        let pointer = which.get(&all).clone();
        if pointer.is_empty() {
            doc = value;
        } else if let Some(slot) = doc.pointer_mut(&pointer) {
            *slot = value;
        }
        run_all(&serde_json::to_vec(&doc).expect("json"));
    }
}
