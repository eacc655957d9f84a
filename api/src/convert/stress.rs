//! StressChaos → stress-ng command line.
//!
//! stress-ng's `--vm-bytes` is per vm worker, while Chaos Mesh's `size` is the total to occupy:
//! the total is split evenly (rounded up) across workers. A percentage is of the memory the caller
//! passes in — the daemon passes the target container's cgroup limit, or the node's memory when
//! the container has none — so the result does not depend on where stress-ng happens to run.
//! Without `size`, no `--vm-bytes` is passed: stress-ng's default (256MB per worker) applies,
//! and validation says so in a warning. Empty `options` entries are dropped (with a warning),
//! and with `stressngStressors` set, `stressors` is ignored (with a warning), as in Chaos Mesh.

use crate::quantity::MemorySize;
use crate::stress_chaos::StressChaosSpec;
use crate::validate::{Rule, Violation};
use serde::{Deserialize, Serialize};

/// What the daemon runs: `stress-ng <args>` with the given oom_score_adj.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StressPlan {
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i32>,
}

fn push_options(args: &mut Vec<String>, options: &[String]) {
    args.extend(
        options
            .iter()
            .flat_map(|o| o.split_whitespace().map(String::from)),
    );
}

/// Builds the stress-ng arguments. `memory_total_bytes` resolves a percentage `size`.
pub fn stress_plan(
    spec: &StressChaosSpec,
    memory_total_bytes: u64,
) -> Result<StressPlan, Vec<Violation>> {
    let (memory, findings) = spec.checked();
    let violations = findings.into_vec();
    if !violations.is_empty() {
        return Err(violations);
    }
    if let Some(raw) = spec
        .stressng_stressors
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        return Ok(StressPlan {
            args: raw.split_whitespace().map(String::from).collect(),
            oom_score_adj: None,
        });
    }
    let mut args = Vec::new();
    let mut oom_score_adj = None;
    let stressors = spec.stressors.clone().unwrap_or_default();
    if let Some(cpu) = &stressors.cpu {
        args.extend(["--cpu".to_string(), cpu.workers.to_string()]);
        if let Some(load) = cpu.load {
            args.extend(["--cpu-load".to_string(), load.to_string()]);
        }
        push_options(&mut args, &cpu.options);
    }
    if let Some(mem) = &stressors.memory {
        let values = memory.ok_or_else(|| {
            vec![Violation::new(
                "spec.stressors.memory",
                Rule::Required {
                    because: "a valid memory stressor (workers, size)".into(),
                },
            )]
        })?;
        args.extend(["--vm".to_string(), values.workers.to_string()]);
        if let Some(size) = values.size {
            let total = match size {
                MemorySize::Bytes(b) => b,
                MemorySize::Percent(p) => {
                    u64::try_from(u128::from(memory_total_bytes) * u128::from(p) / 100)
                        .unwrap_or(u64::MAX)
                }
            };
            let per_worker = total.div_ceil(u64::from(values.workers));
            args.extend(["--vm-bytes".to_string(), format!("{per_worker}b")]);
        }
        args.push("--vm-keep".to_string());
        push_options(&mut args, &mem.options);
        oom_score_adj = values.oom_score_adj;
    }
    Ok(StressPlan {
        args,
        oom_score_adj,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use serde_json::json;

    /// A spec from JSON, with a selector when the test gives none.
    fn spec(mut value: serde_json::Value) -> StressChaosSpec {
        if value.get("selector").is_none() {
            value["selector"] = json!({"namespaces": ["shop"]});
        }
        parse(value).expect("spec parses")
    }

    #[test]
    fn cpu_and_memory() {
        let s = spec(json!({"mode": "one", "stressors": {
            "cpu": {"workers": 2, "load": 50, "options": ["--cpu-method matrixprod"]},
            "memory": {"workers": 3, "size": "1GB", "oomScoreAdj": -500}
        }}));
        let plan = stress_plan(&s, 8 << 30).unwrap();
        assert_eq!(
            plan.args,
            [
                "--cpu",
                "2",
                "--cpu-load",
                "50",
                "--cpu-method",
                "matrixprod",
                "--vm",
                "3",
                "--vm-bytes",
                "333333334b",
                "--vm-keep"
            ]
        );
        assert_eq!(plan.oom_score_adj, Some(-500));
    }

    #[test]
    fn percent_of_given_memory() {
        let s =
            spec(json!({"mode": "one", "stressors": {"memory": {"workers": 2, "size": "50%"}}}));
        let plan = stress_plan(&s, 1 << 30).unwrap();
        assert_eq!(
            plan.args,
            ["--vm", "2", "--vm-bytes", "268435456b", "--vm-keep"]
        );
    }

    #[test]
    fn raw_stressors() {
        let s = spec(json!({"mode": "one", "stressngStressors": " --cpu 1  --cpu-load 10 "}));
        assert_eq!(
            stress_plan(&s, 0).unwrap().args,
            ["--cpu", "1", "--cpu-load", "10"]
        );
    }

    #[test]
    fn chaos_mesh_leftovers_are_read_as_chaos_mesh_does() {
        // No size: stress-ng's default. An empty option: dropped.
        let s =
            spec(json!({"mode": "one", "stressors": {"memory": {"workers": 2, "options": [""]}}}));
        assert_eq!(
            stress_plan(&s, 1 << 30).unwrap().args,
            ["--vm", "2", "--vm-keep"]
        );
        let notes: Vec<_> = s
            .warnings()
            .into_iter()
            .map(|w| (w.path, w.note.name()))
            .collect();
        assert_eq!(
            notes,
            [
                (
                    "spec.stressors.memory.size".to_string(),
                    "memory-size-default"
                ),
                (
                    "spec.stressors.memory.options[0]".to_string(),
                    "empty-option"
                ),
            ]
        );
        // Both stressors and the raw line: the raw line runs.
        let s = spec(json!({"mode": "one", "stressors": {"cpu": {"workers": 1}},
            "stressngStressors": "--vm 1"}));
        assert_eq!(stress_plan(&s, 0).unwrap().args, ["--vm", "1"]);
        assert_eq!(s.warnings()[0].note.name(), "stressors-ignored");
    }

    #[test]
    fn invalid_is_refused() {
        let s = spec(json!({"mode": "one", "stressors": {"cpu": {"workers": 0}}}));
        assert_eq!(
            stress_plan(&s, 0).unwrap_err()[0].path,
            "spec.stressors.cpu.workers"
        );
    }
}
