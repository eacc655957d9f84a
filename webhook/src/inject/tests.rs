//! `inject_pod` and `patch_for` on typed pods (the golden fixtures are `tests/inject_golden.rs`).

use super::*;

#[test]
fn patch_for_equals_the_diff_of_whole_pods() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        let name = path.to_string_lossy().into_owned();
        if !name.ends_with(".yaml")
            || name.ends_with(".injected.yaml")
            || name.ends_with(".template.yaml")
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let pod: Pod = serde_yaml::from_str(&text).expect("pod");
        let legacy = Template {
            mode: Mode::Legacy,
            ..Template::default()
        };
        for template in [Template::default(), legacy] {
            if let Ok(Injection::Injected { pod: after, .. }) = inject_pod(&pod, &template) {
                let full = crate::patch::diff(
                    &serde_json::to_value(&pod).expect("json"),
                    &serde_json::to_value(&after).expect("json"),
                );
                assert_eq!(patch_for(&pod, &after).expect("patch"), full, "{name}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "{checked}");
}

#[test]
fn legacy_mode_skips_volumes_only_init_containers_mount() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "spec": {
            "initContainers": [{"name": "seed", "volumeMounts": [{"name": "seed", "mountPath": "/s"}]}],
            "containers": [{"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}],
            "volumes": [{"name": "seed", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]
        }
    }))
    .expect("pod");
    let legacy = Template {
        mode: Mode::Legacy,
        ..Template::default()
    };
    let Ok(Injection::Injected {
        status, warnings, ..
    }) = inject_pod(&pod, &legacy)
    else {
        panic!("injected");
    };
    let names: Vec<&str> = status.volumes.iter().map(|v| v.volume.as_str()).collect();
    assert_eq!(names, ["data"]);
    assert!(
        warnings[0].contains("\"seed\" is mounted by init containers only"),
        "{warnings:?}"
    );
    let Ok(Injection::Injected { status, .. }) = inject_pod(&pod, &Template::default()) else {
        panic!("injected");
    };
    assert_eq!(
        status.volumes.len(),
        2,
        "native mode serves init containers too"
    );
}

/// A pod with three volumes gets one sidecar with six mounts (each volume at its source
/// path and its fuse volume at its mountpoint), one RPC port and a `--mount` per volume.
#[test]
fn three_volumes_one_sidecar_six_mounts() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "app", "volumeMounts": [
                {"name": "data", "mountPath": "/var/lib/app"},
                {"name": "logs", "mountPath": "/var/log/app", "subPath": "app"},
                {"name": "cache", "mountPath": "/cache"}
            ]}],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "logs", "emptyDir": {}},
                {"name": "cache", "emptyDir": {"medium": "Memory"}}
            ]
        }
    }))
    .expect("pod");
    let Ok(Injection::Injected { pod, status, .. }) = inject_pod(&pod, &Template::default()) else {
        panic!("injected");
    };
    let spec = pod.spec.expect("spec");
    let init = spec.init_containers.expect("init containers");
    let sidecars: Vec<&Container> = init
        .iter()
        .chain(&spec.containers)
        .filter(|c| c.name.starts_with(SIDECAR_NAME))
        .collect();
    assert_eq!(sidecars.len(), 1);
    let mounts = sidecars[0].volume_mounts.as_ref().expect("mounts");
    assert_eq!(mounts.len(), 6);
    let args = sidecars[0].args.as_ref().expect("args");
    assert_eq!(args.iter().filter(|a| *a == "--mount").count(), 3);
    assert!(
        args.contains(&"logs/app=/var/log/app".to_owned()),
        "{args:?}"
    );
    assert_eq!(args[args.len() - 2..], ["--rpc-listen", "127.0.0.1:65533"]);
    assert_eq!(status.endpoint("cache"), Some((SIDECAR_NAME, 65533)));
    assert_eq!(
        status.volume("/var/log/app").map(|v| v.volume.as_str()),
        Ok("logs")
    );
    assert_eq!(status.volumes[1].mounts[0].sub_path.as_deref(), Some("app"));
}

/// Pods injected by the earlier shape (a sidecar per volume) are injected already, with or
/// without the annotation.
#[test]
fn sidecars_of_the_earlier_shape_count_as_injected() {
    for (names, injected) in [
        (&["app", "faultline-sidecar-2"][..], true),
        (&["faultline-sidecar-13", "app"][..], true),
        (&["faultline-sidecar"][..], true),
        (&["faultline-sidecar-x"][..], false),
        (&["faultline-sidecar-"][..], false),
        (&["faultline-sidecars"][..], false),
    ] {
        let containers: Vec<serde_json::Value> = names
            .iter()
            .map(|n| serde_json::json!({"name": n}))
            .collect();
        let pod: Pod =
            serde_json::from_value(serde_json::json!({"spec": {"containers": containers}}))
                .expect("pod");
        assert_eq!(already_injected(&pod), injected, "{names:?}");
    }
}
