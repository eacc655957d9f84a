//! Rule store: generations, ids, matching, ttl.

use super::*;
use crate::metrics::Metrics;
use serde_json::json;

fn rule(v: serde_json::Value) -> IoRule {
    serde_json::from_value(v).unwrap()
}

fn store() -> RuleStore {
    RuleStore::new(
        "data",
        Some(42),
        Arc::new(Metrics::new().mount("data")),
        Arc::default(),
    )
}

/// No other mount.
fn alone() -> OtherIds {
    OtherIds::new()
}

#[test]
fn generations_and_ids() {
    let s = store();
    assert_eq!(s.generation(), 0);
    let g = s
        .set(
            vec![rule(json!({"type": "latency", "latency": "1ms"}))],
            &alone(),
        )
        .unwrap();
    assert_eq!(g, 1);
    let (id, g) = s
        .add(
            rule(json!({"id": "x", "type": "fault", "faults": [{"errno": 5}]})),
            &alone(),
        )
        .unwrap();
    assert_eq!((id.as_str(), g), ("x", 2));
    assert_eq!(
        s.add(
            rule(json!({"id": "x", "type": "fault", "faults": [{"errno": 5}]})),
            &alone()
        ),
        Err(RuleError::Invalid(vec![FieldError::new(
            "rule.id",
            Problem::DuplicateId {
                id: "x".into(),
                first: "a loaded rule".into()
            }
        )]))
    );
    let (g, list) = s.list();
    assert_eq!(g, 2);
    assert_eq!(list.len(), 2);
    assert!(list[0].id.starts_with('r'));
    assert_eq!(s.remove("x"), Ok(3));
    let missing = s.remove("x").unwrap_err();
    assert_eq!(
        missing.to_string(),
        format!("no rule has id `x` (ids: {})", list[0].id)
    );
    assert_eq!(s.clear(), 4);
    assert!(s.list().1.is_empty());
}

#[test]
fn invalid_rules_name_the_field() {
    let s = store();
    let err = s
        .set(
            vec![
                rule(json!({"type": "latency", "latency": "1ms"})),
                rule(json!({"type": "latency", "latency": "soon"})),
                rule(json!({"type": "latency", "latency": "0s"})),
            ],
            &alone(),
        )
        .unwrap_err();
    match err {
        RuleError::Invalid(v) => {
            let paths: Vec<&str> = v.iter().map(|e| e.path.as_str()).collect();
            assert_eq!(
                paths,
                ["rules[1].latency", "rules[2].latency"],
                "all at once"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.generation(), 0, "a refused set changes nothing");
    let dup = s.set(
        vec![
            rule(json!({"id": "a", "type": "latency", "latency": "1ms"})),
            rule(json!({"id": "a", "type": "latency", "latency": "1ms"})),
        ],
        &alone(),
    );
    assert_eq!(
        dup.unwrap_err().to_string(),
        "rules[1].id: duplicate rule id `a` (already used by rules[0])"
    );
}

#[test]
fn matching_uses_glob_methods_and_counts_hits() {
    let s = store();
    s.set(vec![rule(json!({"id": "f", "type": "fault", "path": "data/*.db", "methods": ["Read"], "faults": [{"errno": 5}]}))], &alone())
        .unwrap();
    let hit = s.decide(Op::Read, || Some("data/a.db"));
    assert_eq!(hit.check(), Err(fuser::Errno::EIO));
    assert!(hit.volatile);
    assert!(
        s.decide(Op::Read, || Some("data/sub/a.db")).check().is_ok(),
        "* stays in one dir"
    );
    assert!(
        s.decide(Op::Write, || Some("data/a.db")).check().is_ok(),
        "method filter"
    );
    assert!(
        s.decide(Op::Read, || None::<String>).check().is_ok(),
        "unknown path never matches a glob"
    );
    assert!(s.reads_touched(|| Some("data/a.db")));
    assert!(!s.reads_touched(|| Some("other")));
    assert_eq!(s.list().1[0].hits, 1);
    // Identical re-set keeps the compiled rule (and its hits).
    s.set(vec![rule(json!({"id": "f", "type": "fault", "path": "data/*.db", "methods": ["Read"], "faults": [{"errno": 5}]}))], &alone())
        .unwrap();
    assert_eq!(s.list().1[0].hits, 1);
}

#[test]
fn glob_set_agrees_with_the_api_glob() {
    let patterns = [
        "logs/**",
        "/data/*.log",
        "**/*.db",
        "a?c",
        "x/[ab]/y",
        "lit\\*eral",
        "**",
        "*",
    ];
    let paths = [
        "logs/a/b",
        "logs",
        "data/x.log",
        "data/s/x.log",
        "a.db",
        "q/w/a.db",
        "abc",
        "a/c",
        "x/a/y",
        "lit*eral",
        "literal",
        "",
        "top",
    ];
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        builder.add(build_glob(p).unwrap());
    }
    let set = builder.build().unwrap();
    for path in paths {
        let hits = set.matches(path);
        for (i, p) in patterns.iter().enumerate() {
            let single = faultline_api::iorule::compile_glob(p).unwrap();
            assert_eq!(single.is_match(path), hits.contains(&i), "{p} vs {path}");
        }
    }
}

#[test]
fn many_rules_match_through_the_glob_set() {
    let s = store();
    let mut rules: Vec<IoRule> = (0..100)
        .map(|i| {
            rule(json!({"type": "fault", "path": format!("n{i}/**"), "faults": [{"errno": 5}]}))
        })
        .collect();
    rules.push(rule(
        json!({"id": "hit", "type": "fault", "path": "n42/x", "faults": [{"errno": 28}]}),
    ));
    rules.push(rule(
        json!({"type": "latency", "methods": ["mkdir"], "latency": "1ms"}),
    ));
    s.set(rules, &alone()).unwrap();
    assert_eq!(
        s.decide(Op::Read, || Some("n42/x")).check(),
        Err(fuser::Errno::EIO),
        "first matching rule wins"
    );
    assert!(s.decide(Op::Read, || Some("other/x")).check().is_ok());
    let hits: Vec<u64> = s.list().1.iter().map(|r| r.hits).collect();
    assert_eq!(hits[42], 1);
    assert_eq!(hits[100], 1);
    assert_eq!(hits.iter().sum::<u64>(), 2);
    assert_eq!(
        s.decide(Op::Mkdir, || None::<String>).delay,
        Duration::from_millis(1),
        "glob-less rules need no path"
    );
}

#[test]
fn percent_is_statistical_with_a_seed() {
    let s = store();
    s.set(
        vec![rule(
            json!({"type": "fault", "percent": 30, "faults": [{"errno": 5}]}),
        )],
        &alone(),
    )
    .unwrap();
    let n = 10_000;
    let hits = (0..n)
        .filter(|_| s.decide(Op::Getattr, || None::<String>).check().is_err())
        .count();
    // Binomial(10000, 0.3): sd ≈ 46; allow 5 sd.
    assert!((2770..=3230).contains(&hits), "{hits}");
}

#[test]
fn ttl_expires_exactly_and_reaper_removes() {
    let s = Arc::new(store());
    let reaper = s.spawn_reaper().unwrap();
    s.set(
        vec![rule(
            json!({"type": "fault", "ttl": "150ms", "faults": [{"errno": 5}]}),
        )],
        &alone(),
    )
    .unwrap();
    assert!(s.decide(Op::Getattr, || None::<String>).check().is_err());
    std::thread::sleep(Duration::from_millis(160));
    assert!(
        s.decide(Op::Getattr, || None::<String>).check().is_ok(),
        "expired rules never match"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while !s.list().1.is_empty() || s.generation() < 2 {
        assert!(Instant::now() < deadline, "reaper did not remove the rule");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(s.snapshot().rules.is_empty());
    s.stop_reaper();
    reaper.join().unwrap();
}

/// Two mounts' stores: one generation counter, generated ids never collide, and an id one
/// mount uses is a duplicate on the other.
#[test]
fn mounts_share_generations_and_ids() {
    let sequence = Arc::new(Sequence::default());
    let metrics = Metrics::new();
    let store = |name: &str| {
        RuleStore::new(
            name,
            Some(1),
            Arc::new(metrics.mount(name)),
            sequence.clone(),
        )
    };
    let (data, logs) = (store("data"), store("logs"));
    let latency = || rule(json!({"type": "latency", "latency": "1ms"}));
    let (a, g1) = data.add(latency(), &alone()).unwrap();
    let others: OtherIds = data
        .ids()
        .into_iter()
        .map(|id| (id, "data".to_owned()))
        .collect();
    let (b, g2) = logs.add(latency(), &others).unwrap();
    assert_eq!((a.as_str(), g1, b.as_str(), g2), ("r1", 1, "r2", 2));
    assert_eq!((data.generation(), logs.generation()), (1, 2));
    assert_eq!(sequence.generation(), 2);
    assert_eq!(logs.list().1[0].mount, "logs");
    assert_eq!(
        logs.set(
            vec![rule(
                json!({"id": "r1", "type": "latency", "latency": "1ms"})
            )],
            &others
        ),
        Err(RuleError::Invalid(vec![FieldError::new(
            "rules[0].id",
            Problem::DuplicateId {
                id: "r1".into(),
                first: "a rule of mount data".into()
            }
        )]))
    );
    assert_eq!(sequence.generation(), 2, "a refused change changes nothing");
}
