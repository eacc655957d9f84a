//! Sidecar rules (`faultline_api::iorule`): strict reading from JSON, validation, globs, methods.

use faultline_api::iorule::{
    FieldError, IoRule, Problem, canonical_method, compile_glob, parse_mode, parse_rule,
    parse_rules,
};
use faultline_api::validate::Rule;
use serde_json::{Value, json};

fn rule(value: Value) -> IoRule {
    serde_json::from_value(value).expect("rule parses")
}

/// (path, problem id) of every error `parse_rule` reports.
fn errors(value: Value) -> Vec<(String, &'static str)> {
    parse_rule(&value, "rule")
        .expect_err("rule is refused")
        .into_iter()
        .map(|e| (e.path, e.problem.name()))
        .collect()
}

fn messages(value: Value) -> Vec<String> {
    parse_rule(&value, "rule")
        .expect_err("rule is refused")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn valid_rules_pass() {
    for value in [
        json!({"type": "latency", "latency": "10ms", "path": "logs/**", "methods": ["READ", "write"], "percent": 50}),
        json!({"type": "fault", "faults": [{"errno": 5, "weight": 1}, {"errno": 28, "weight": 3}], "ttl": "5m"}),
        json!({"type": "attrOverride", "attr": {"perm": 0o444, "size": 0}}),
        json!({"type": "mistake", "mistake": {"filling": "zero", "maxOccurrences": 1, "maxLength": 10}}),
    ] {
        let r = parse_rule(&value, "rule").unwrap_or_else(|e| panic!("{value}: {e:?}"));
        assert_eq!(r.validate(), vec![], "{value}");
        assert_eq!(serde_json::to_value(&r).unwrap(), value);
        assert_eq!(rule(value.clone()), r, "serde reads the same");
    }
}

#[test]
fn each_type_needs_its_payload() {
    let cases = [
        (json!({"type": "latency"}), "rule.latency"),
        (json!({"type": "fault"}), "rule.faults"),
        (json!({"type": "attrOverride"}), "rule.attr"),
        (json!({"type": "mistake"}), "rule.mistake"),
    ];
    for (value, path) in cases {
        let v = rule(value).validate();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].path, path);
        assert!(matches!(v[0].rule, Rule::Required { .. }));
    }
}

#[test]
fn another_types_payload_is_refused() {
    assert_eq!(
        messages(json!({"type": "fault", "latency": "1s", "faults": [{"errno": 5}]})),
        ["rule.latency: must not be set for a rule of type `fault` (only `latency` rules take it)"]
    );
}

#[test]
fn a_misspelled_field_is_an_error_at_every_level() {
    // `pth` would otherwise be dropped, leaving a rule that matches every file.
    assert_eq!(
        messages(json!({"type": "fault", "pth": "logs/**", "faults": [{"errno": 5}]})),
        [
            "rule.pth: unknown field (accepted: id, type, path, methods, percent, latency, faults, attr, mistake, ttl)"
        ]
    );
    assert_eq!(
        errors(json!({
            "type": "attrOverride",
            "attr": {"prem": 1, "mtime": {"sec": 1, "nanos": 2}},
        })),
        [
            ("rule.attr.prem".to_string(), "unknown-field"),
            ("rule.attr.mtime.nanos".to_string(), "unknown-field"),
        ]
    );
    assert_eq!(
        errors(json!({"type": "fault", "faults": [{"errno": 5, "wieght": 2}]})),
        [("rule.faults[0].wieght".to_string(), "unknown-field")]
    );
    assert_eq!(
        errors(
            json!({"type": "mistake", "mistake": {"filling": "zero", "maxOccurrences": 1, "maxLength": 1, "max": 3}})
        ),
        [("rule.mistake.max".to_string(), "unknown-field")]
    );
    let err = serde_json::from_value::<IoRule>(
        json!({"type": "fault", "pth": "x", "faults": [{"errno": 5}]}),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("pth: unknown field (accepted: id, type,"),
        "{err}"
    );
}

#[test]
fn ranges_and_types_in_words() {
    assert_eq!(
        messages(json!({"type": "latency", "latency": "1ms", "percent": -5})),
        ["rule.percent: -5 is out of range: must be from 0 to 100"]
    );
    assert_eq!(
        messages(json!({"type": "latency", "latency": 5, "methods": "read"})),
        [
            "rule.methods: must be an array of FUSE operation names, not the string \"read\"",
            "rule.latency: must be a string, not 5",
        ],
        "in documentation order"
    );
    assert_eq!(
        messages(json!({"type": "latnecy"})),
        ["rule.type: `latnecy` is not one of latency, fault, attrOverride, mistake"]
    );
    assert_eq!(
        messages(json!({"latency": "1s"})),
        ["rule.type: is required (one of latency, fault, attrOverride, mistake)"]
    );
    assert_eq!(
        messages(json!("fault")),
        ["rule: must be a rule object like {\"type\": \"fault\", ...}, not the string \"fault\""]
    );
}

#[test]
fn every_problem_at_once_and_none_twice() {
    assert_eq!(
        errors(json!({
            "type": "fault",
            "path": "a/[",
            "methods": ["read", "frobnicate", 7],
            "percent": 101,
            "faults": [{"errno": 0, "weight": 0}, {"errno": "EIOO"}, {"errno": true}],
            "ttl": "0s",
            "extra": 1
        })),
        [
            ("rule.extra".to_string(), "unknown-field"),
            ("rule.path".to_string(), "invalid-glob"),
            ("rule.methods[1]".to_string(), "unknown-method"),
            ("rule.methods[2]".to_string(), "wrong-type"),
            ("rule.percent".to_string(), "out-of-range"),
            ("rule.faults[0].errno".to_string(), "unknown-errno"),
            ("rule.faults[1].errno".to_string(), "unknown-errno-name"),
            ("rule.faults[2].errno".to_string(), "wrong-type"),
            ("rule.ttl".to_string(), "zero-duration"),
        ],
        "a field that could not be read is not judged again (no unknown-errno for [1], [2])"
    );
}

#[test]
fn errnos_by_name_or_number() {
    let r = parse_rule(
        &json!({"type": "fault", "faults": [{"errno": "EIO", "weight": 3}, {"errno": "enospc"}, {"errno": 13}]}),
        "rule",
    )
    .unwrap();
    let got: Vec<(i64, u32)> = r.faults.iter().map(|f| (f.errno, f.weight)).collect();
    assert_eq!(got, [(5, 3), (28, 1), (13, 1)]);
    assert_eq!(
        messages(json!({"type": "fault", "faults": [{"errno": "EIOO"}]})),
        [
            "rule.faults[0].errno: `EIOO` is not a Linux errno name or number (e.g. EIO, ENOSPC, EACCES, or 5)"
        ]
    );
    assert_eq!(
        errors(json!({"type": "fault", "faults": [{"errno": 9999}]})),
        [("rule.faults[0].errno".to_string(), "unknown-errno")]
    );
}

#[test]
fn modes_as_octal_strings_or_numbers() {
    let r = parse_rule(
        &json!({"type": "attrOverride", "attr": {"perm": "0444"}}),
        "rule",
    )
    .unwrap();
    assert_eq!(r.attr.unwrap().perm, Some(0o444));
    let r = parse_rule(
        &json!({"type": "attrOverride", "attr": {"perm": 420}}),
        "rule",
    )
    .unwrap();
    assert_eq!(r.attr.unwrap().perm, Some(0o644));
    assert_eq!(
        messages(json!({"type": "attrOverride", "attr": {"perm": "0999"}})),
        ["rule.attr.perm: `0999` is not a file mode: must be octal digits like \"0644\""]
    );
    assert_eq!(
        messages(json!({"type": "attrOverride", "attr": {"perm": 4096}})),
        ["rule.attr.perm: 4096 is out of range: must be from 0 to 4095"]
    );
    assert_eq!(parse_mode("0600"), Ok(0o600));
    assert_eq!(parse_mode("600"), Ok(0o600));
    assert_eq!(parse_mode("0o660"), Ok(0o660));
    assert!(parse_mode("").is_err());
    assert!(parse_mode("rw").is_err());
    assert!(parse_mode("17777").is_err());
}

#[test]
fn rule_lists_report_every_rule_and_duplicate_ids() {
    let err = parse_rules(
        &json!([
            {"id": "a", "type": "latency", "latency": "1ms"},
            {"id": "a", "type": "latency", "latency": "soon"},
            {"type": "bogus"}
        ]),
        "rules",
    )
    .unwrap_err();
    let got: Vec<(&str, &str)> = err
        .iter()
        .map(|e| (e.path.as_str(), e.problem.name()))
        .collect();
    assert_eq!(
        got,
        [
            ("rules[1].id", "duplicate-id"),
            ("rules[1].latency", "invalid-duration"),
            ("rules[2].type", "unknown-value"),
        ]
    );
    assert_eq!(
        err[0],
        FieldError::new(
            "rules[1].id",
            Problem::DuplicateId {
                id: "a".into(),
                first: "rules[0]".into()
            }
        )
    );
    assert_eq!(
        parse_rules(&json!({"rules": []}), "rules").unwrap_err()[0].to_string(),
        "rules: must be an array of rules, not an object"
    );
}

#[test]
fn mistake_and_attr_bounds() {
    assert_eq!(
        errors(
            json!({"type": "mistake", "mistake": {"filling": "random", "maxOccurrences": 0, "maxLength": 2_000_000}})
        ),
        [
            ("rule.mistake.maxOccurrences".to_string(), "out-of-range"),
            ("rule.mistake.maxLength".to_string(), "out-of-range"),
        ]
    );
    assert_eq!(
        errors(json!({"type": "mistake", "mistake": {"filling": "ones"}})),
        [
            ("rule.mistake.filling".to_string(), "unknown-value"),
            ("rule.mistake.maxOccurrences".to_string(), "required"),
            ("rule.mistake.maxLength".to_string(), "required"),
        ]
    );
    assert_eq!(
        rule(json!({"type": "attrOverride", "attr": {}})).validate()[0].rule,
        Rule::EmptyAttrOverride
    );
    // Validation still guards rules built in code.
    let mut r = rule(json!({"type": "attrOverride", "attr": {"perm": 1}}));
    r.attr.as_mut().unwrap().perm = Some(0o10000);
    assert_eq!(r.validate()[0].path, "rule.attr.perm");
}

#[test]
fn globs() {
    let g = compile_glob("logs/**").unwrap();
    assert!(g.is_match("logs/a/b/c.txt"));
    let g = compile_glob("/data/*.log").unwrap();
    assert!(g.is_match("data/x.log"));
    assert!(!g.is_match("data/sub/x.log"));
    let g = compile_glob("**/*.db").unwrap();
    assert!(g.is_match("a.db"));
    assert!(g.is_match("x/y/a.db"));
    assert!(compile_glob("a/{b").is_err());
}

#[test]
fn methods_are_case_insensitive() {
    assert_eq!(canonical_method("READ"), Some("read"));
    assert_eq!(canonical_method("copyFileRange"), Some("copy_file_range"));
    assert_eq!(canonical_method("GetAttr"), Some("getattr"));
    assert_eq!(canonical_method("nope"), None);
}
