//! Readable tables of `rules.list` and `status` results (pure: JSON in, text out).

use faultline_api::validate::errno_name;
use serde_json::Value;

/// Left-aligned columns, two spaces apart, header first.
fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `1500` → `1.5s`, `299000` → `4m59s`.
fn millis(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

fn errno(v: &Value) -> String {
    match v.as_i64().and_then(errno_name) {
        Some(name) => name.to_string(),
        None => text(v),
    }
}

/// What a rule does, in a few words.
fn effect(rule: &Value) -> String {
    match rule["type"].as_str().unwrap_or("") {
        "latency" => text(&rule["latency"]),
        "fault" => {
            let faults = rule["faults"].as_array().cloned().unwrap_or_default();
            let weighted = faults.len() > 1;
            faults
                .iter()
                .map(|f| match weighted {
                    true => format!("{}×{}", errno(&f["errno"]), text(&f["weight"])),
                    false => errno(&f["errno"]),
                })
                .collect::<Vec<_>>()
                .join(" ")
        }
        "attrOverride" => rule["attr"]
            .as_object()
            .map(|attr| {
                attr.iter()
                    .map(|(k, v)| match (k.as_str(), v) {
                        ("perm", Value::Number(n)) => {
                            format!("perm={:04o}", n.as_u64().unwrap_or(0))
                        }
                        (_, Value::Object(t)) => format!("{k}={}", text(&t["sec"])),
                        _ => format!("{k}={}", text(v)),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
        "mistake" => {
            let m = &rule["mistake"];
            format!(
                "{}, ≤{} ranges of ≤{} bytes",
                text(&m["filling"]),
                text(&m["maxOccurrences"]),
                text(&m["maxLength"])
            )
        }
        _ => "-".into(),
    }
}

/// The `rules.list` result as a table.
pub(super) fn rules(result: &Value) -> String {
    let list = result["rules"].as_array().cloned().unwrap_or_default();
    let generation = text(&result["generation"]);
    if list.is_empty() {
        return format!("no rules (generation {generation})\n");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|item| {
            let rule = &item["rule"];
            let methods = rule["methods"]
                .as_array()
                .map(|m| m.iter().map(text).collect::<Vec<_>>().join(","))
                .unwrap_or_else(|| "(default)".into());
            vec![
                text(&item["id"]),
                text(&item["mount"]),
                text(&rule["type"]),
                rule["path"].as_str().unwrap_or("(all)").to_string(),
                methods,
                format!("{}%", rule["percent"].as_u64().unwrap_or(100)),
                effect(rule),
                text(&item["hits"]),
                item["expiresInMs"].as_u64().map_or("-".into(), millis),
            ]
        })
        .collect();
    let header = [
        "ID",
        "MOUNT",
        "TYPE",
        "PATH",
        "METHODS",
        "PERCENT",
        "EFFECT",
        "HITS",
        "EXPIRES IN",
    ];
    format!("generation {generation}\n{}", render(&header, &rows))
}

fn yes(v: &Value) -> String {
    if v.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
    .to_string()
}

fn facts(out: &mut String, indent: &str, facts: &[(&str, String)]) {
    for (key, value) in facts {
        out.push_str(&format!("{indent}{key:<13}{value}\n"));
    }
}

/// The per-operation counters of one mount.
fn ops(out: &mut String, indent: &str, ops: &Value) {
    let ops = ops.as_object().cloned().unwrap_or_default();
    if ops.is_empty() {
        out.push_str(&format!("{indent}no operations yet\n"));
        return;
    }
    let rows: Vec<Vec<String>> = ops
        .iter()
        .map(|(op, c)| {
            vec![
                op.clone(),
                text(&c["count"]),
                text(&c["errors"]),
                text(&c["injected"]),
            ]
        })
        .collect();
    for line in render(&["OP", "COUNT", "ERRORS", "INJECTED"], &rows).lines() {
        out.push_str(&format!("{indent}{line}\n"));
    }
}

/// A `fast` mount's I/O mode line: whether passthrough is on, and its handles.
fn io_mode(mount: &Value) -> String {
    if mount["passthrough"].as_bool() != Some(true) {
        return "fast, but the kernel refused passthrough: every file is served as in exact".into();
    }
    let bypassed = mount["bypassedHandles"].as_u64().unwrap_or(0);
    let handles = mount["passthroughHandles"].as_u64().unwrap_or(0);
    let mut line = format!("fast: {handles} handles in kernel passthrough");
    if bypassed > 0 {
        line.push_str(&format!(
            ", {bypassed} of them bypassing a rule until closed"
        ));
    }
    line
}

/// The `status` result: the sidecar's key/value block, then each mount's block with its
/// per-operation counters.
pub(super) fn status(result: &Value) -> String {
    let mut out = String::new();
    facts(
        &mut out,
        "",
        &[
            ("ready", yes(&result["ready"])),
            ("generation", text(&result["generation"])),
            ("rules", text(&result["rules"])),
            (
                "uptime",
                result["uptimeSeconds"]
                    .as_u64()
                    .map_or("-".into(), |s| millis(s * 1000)),
            ),
        ],
    );
    for mount in result["mounts"].as_array().into_iter().flatten() {
        let app_paths: Vec<String> = mount["appPaths"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| match a["subPath"].as_str() {
                Some(sub) => format!("{} (subPath {sub})", text(&a["path"])),
                None => text(&a["path"]),
            })
            .collect();
        out.push_str(&format!("\nmount {}\n", text(&mount["name"])));
        let mut block = vec![
            ("mounted", yes(&mount["mounted"])),
            ("source", text(&mount["source"])),
            ("mountpoint", text(&mount["mountpoint"])),
        ];
        if !app_paths.is_empty() {
            block.push(("app paths", app_paths.join(", ")));
        }
        block.extend([
            ("rules", text(&mount["rules"])),
            ("inodes", text(&mount["inodes"])),
            ("open handles", text(&mount["openHandles"])),
            ("delayed ops", text(&mount["delayedOps"])),
        ]);
        if mount["ioMode"].as_str() == Some("fast") {
            block.push(("io mode", io_mode(mount)));
        }
        facts(&mut out, "  ", &block);
        ops(&mut out, "  ", &mount["ops"]);
    }
    out.push_str(
        "\n(errors: returned by the source, e.g. ENOENT; injected: failed by a fault rule)\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_table() {
        let result = json!({"generation": 3, "rules": [
            {"id": "slow", "mount": "data", "rule": {"type": "latency", "latency": "300ms", "methods": ["read"]}, "hits": 12},
            {"id": "r2", "mount": "logs", "rule": {"type": "fault", "path": "logs/**", "percent": 50,
              "faults": [{"errno": 5, "weight": 1}, {"errno": 28, "weight": 3}]}, "hits": 0, "expiresInMs": 299_000},
            {"id": "ro", "mount": "logs", "rule": {"type": "attrOverride", "attr": {"perm": 292}}, "hits": 1},
        ]});
        assert_eq!(
            rules(&result),
            "generation 3\n\
             ID    MOUNT  TYPE          PATH     METHODS    PERCENT  EFFECT          HITS  EXPIRES IN\n\
             slow  data   latency       (all)    read       100%     300ms           12    -\n\
             r2    logs   fault         logs/**  (default)  50%      EIO×1 ENOSPC×3  0     4m59s\n\
             ro    logs   attrOverride  (all)    (default)  100%     perm=0444       1     -\n"
        );
        assert_eq!(
            rules(&json!({"generation": 0, "rules": []})),
            "no rules (generation 0)\n"
        );
    }

    #[test]
    fn status_table() {
        let result = json!({"mounted": true, "ready": true, "generation": 2, "rules": 1,
        "inodes": 4, "openHandles": 0, "delayedOps": 0, "uptimeSeconds": 75, "ops": {},
        "mounts": [
            {"name": "data", "mounted": true, "ready": true, "source": "/s/data",
             "mountpoint": "/m/data", "appPaths": [{"path": "/var/lib/db"}, {"path": "/srv", "subPath": "www"}],
             "generation": 2, "rules": 1, "inodes": 4, "openHandles": 0, "delayedOps": 0,
             "ioMode": "exact",
             "ops": {"lookup": {"count": 9, "errors": 3, "injected": 0},
                     "open": {"count": 2, "errors": 0, "injected": 2}}},
            {"name": "logs", "mounted": true, "ready": true, "source": "/s/logs",
             "mountpoint": "/m/logs", "generation": 0, "rules": 0, "inodes": 1,
             "openHandles": 3, "delayedOps": 0, "ops": {}, "ioMode": "fast",
             "passthrough": true, "passthroughHandles": 3, "bypassedHandles": 1}
        ]});
        let out = status(&result);
        assert!(
            out.starts_with(
                "ready        yes\ngeneration   2\nrules        1\nuptime       1m15s\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("\nmount data\n  mounted      yes\n  source       /s/data\n  mountpoint   /m/data\n  app paths    /var/lib/db, /srv (subPath www)\n"),
            "{out}"
        );
        assert!(
            out.contains("  OP      COUNT  ERRORS  INJECTED\n  lookup  9      3       0\n  open    2      0       2\n"),
            "{out}"
        );
        assert!(out.contains("\nmount logs\n"), "{out}");
        assert!(
            out.contains("  io mode      fast: 3 handles in kernel passthrough, 1 of them bypassing a rule until closed\n"),
            "{out}"
        );
        // `exact` (the default) is not worth a line.
        assert!(
            !out.split("mount logs")
                .next()
                .unwrap_or("")
                .contains("io mode"),
            "{out}"
        );
        assert!(out.contains("  no operations yet\n"), "{out}");
    }
}
