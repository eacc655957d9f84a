//! The one `faultline-sidecar` container of an injected pod: a `--mount` per injected volume, an
//! `--app-mount` per place an app container mounts one (so RPC calls can name a volume by an
//! IOChaos `volumePath`), one RPC port, and the probes that hold the app back until every mount
//! is live.

use std::path::{Component, Path};

use k8s_openapi::api::core::v1::{
    Container, ExecAction, Lifecycle, LifecycleHandler, Probe, SecurityContext, VolumeMount,
};

use super::status::{InjectedVolume, RedirectedMount};
use super::template::{IoMode, Mode, Template};
use super::{SIDECAR_NAME, SOURCE_ROOT};

/// `faultline-sidecar probe --rpc-listen 127.0.0.1:<port>`: exits 0 once every mount is live
/// (the sidecar's `GET /ready`, asked from inside the pod).
fn probe_command(rpc_port: u16) -> Vec<String> {
    vec![
        "faultline-sidecar".to_owned(),
        "probe".to_owned(),
        "--rpc-listen".to_owned(),
        format!("127.0.0.1:{rpc_port}"),
    ]
}

/// An exec probe: the RPC port listens on 127.0.0.1 only (fault control must not be reachable
/// from the network), and the kubelet's `httpGet` probes connect to the pod IP.
fn ready_probe(rpc_port: u16, period: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(probe_command(rpc_port)),
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(3),
        ..Default::default()
    }
}

/// The `--app-mount` value of an app container's mount, when the sidecar can use it: an
/// absolute `mountPath` (normalised), and a `subPath` without `..` or `=` (Kubernetes refuses
/// `..` already; `=` would end the volume part of the flag). A `subPathExpr` depends on the
/// container's environment and is left out, as are init containers' mounts (IOChaos targets
/// running containers). The volume can always be named by its name instead.
fn app_mount(volume: &str, m: &RedirectedMount) -> Option<String> {
    if m.init || m.sub_path_expr.is_some() {
        return None;
    }
    let path = Path::new(&m.mount_path);
    if !path.is_absolute() {
        return None;
    }
    let path: std::path::PathBuf = path
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect();
    let target = match m.sub_path.as_deref().map(|s| s.trim_matches('/')) {
        None | Some("") => volume.to_owned(),
        Some(sub)
            if sub.contains('=')
                || Path::new(sub)
                    .components()
                    .any(|c| c == Component::ParentDir) =>
        {
            return None;
        }
        Some(sub) => format!("{volume}/{sub}"),
    };
    Some(format!("{target}={}", path.display()))
}

/// The sidecar's arguments: `--mount SOURCE:MOUNTPOINT:NAME` per volume, each followed by its
/// `--app-mount`s (once each), then `--rpc-listen`, then `--io-mode fast` when the template
/// asks for it (`exact` is the sidecar's default, so pods injected before stay as they were).
fn args(volumes: &[InjectedVolume], rpc_port: u16, io_mode: IoMode) -> Vec<String> {
    let mut args = Vec::new();
    for v in volumes {
        args.push("--mount".to_owned());
        args.push(format!(
            "{SOURCE_ROOT}/{}:{}:{}",
            v.volume, v.mountpoint, v.volume
        ));
        let mut seen: Vec<String> = Vec::new();
        for flag in v.mounts.iter().filter_map(|m| app_mount(&v.volume, m)) {
            if !seen.contains(&flag) {
                args.push("--app-mount".to_owned());
                args.push(flag.clone());
                seen.push(flag);
            }
        }
    }
    args.push("--rpc-listen".to_owned());
    args.push(format!("127.0.0.1:{rpc_port}"));
    if io_mode != IoMode::Exact {
        args.push("--io-mode".to_owned());
        args.push(io_mode.as_str().to_owned());
    }
    args
}

/// The sidecar container serving `volumes`: each volume at its source path and its fuse volume
/// at its mountpoint (`Bidirectional`, so the FUSE mounts reach the app containers).
pub(super) fn container(template: &Template, volumes: &[InjectedVolume]) -> Container {
    let rpc_port = template.rpc_port;
    let volume_mounts = volumes
        .iter()
        .flat_map(|v| {
            [
                VolumeMount {
                    name: v.volume.clone(),
                    mount_path: format!("{SOURCE_ROOT}/{}", v.volume),
                    ..Default::default()
                },
                VolumeMount {
                    name: v.fuse_volume.clone(),
                    mount_path: v.mountpoint.clone(),
                    mount_propagation: Some("Bidirectional".to_owned()),
                    ..Default::default()
                },
            ]
        })
        .collect();
    let mut container = Container {
        name: SIDECAR_NAME.to_owned(),
        image: Some(template.image.clone()),
        image_pull_policy: Some(template.image_pull_policy.clone()),
        command: Some(vec!["faultline-sidecar".to_owned()]),
        args: Some(args(volumes, rpc_port, template.io_mode)),
        env: (!template.env.is_empty()).then(|| template.env.clone()),
        resources: Some(template.resources.clone()),
        security_context: Some(SecurityContext {
            privileged: Some(true),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            ..Default::default()
        }),
        volume_mounts: Some(volume_mounts),
        readiness_probe: Some(ready_probe(rpc_port, 5, 3)),
        ..Default::default()
    };
    match template.mode {
        Mode::Native => {
            container.restart_policy = Some("Always".to_owned());
            container.startup_probe = Some(ready_probe(rpc_port, 1, 120));
        }
        Mode::Legacy => {
            // Blocks the kubelet (and so the next containers) until every mount is up, 120 s max.
            let wait = format!(
                "i=0; until {}; do i=$((i+1)); [ $i -ge 600 ] && exit 1; sleep 0.2; done",
                probe_command(rpc_port).join(" ")
            );
            container.lifecycle = Some(Lifecycle {
                post_start: Some(LifecycleHandler {
                    exec: Some(ExecAction {
                        command: Some(vec!["/bin/sh".to_owned(), "-c".to_owned(), wait]),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    container
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(path: &str, sub: Option<&str>) -> RedirectedMount {
        RedirectedMount {
            container: "app".into(),
            mount_path: path.into(),
            sub_path: sub.map(str::to_owned),
            sub_path_expr: None,
            read_only: false,
            init: false,
        }
    }

    #[test]
    fn app_mounts_the_sidecar_can_use() {
        assert_eq!(
            app_mount("data", &mount("/var/lib/db/", None)).as_deref(),
            Some("data=/var/lib/db")
        );
        assert_eq!(
            app_mount("data", &mount("/srv", Some("www/"))).as_deref(),
            Some("data/www=/srv")
        );
        assert_eq!(
            app_mount("data", &mount("/a=b", None)).as_deref(),
            Some("data=/a=b")
        );
        assert_eq!(app_mount("data", &mount("relative", None)), None);
        assert_eq!(app_mount("data", &mount("/srv", Some("a=b"))), None);
        assert_eq!(app_mount("data", &mount("/srv", Some("../x"))), None);
        let init = RedirectedMount {
            init: true,
            ..mount("/seed", None)
        };
        assert_eq!(app_mount("data", &init), None);
        let expr = RedirectedMount {
            sub_path_expr: Some("$(POD)".into()),
            ..mount("/logs", None)
        };
        assert_eq!(app_mount("data", &expr), None);
    }

    #[test]
    fn one_mount_flag_per_volume_and_each_app_path_once() {
        let volume = |name: &str, mounts: Vec<RedirectedMount>| InjectedVolume {
            volume: name.into(),
            fuse_volume: format!("faultline-fuse-{name}"),
            container: None,
            rpc_port: None,
            mountpoint: format!("/faultline/mnt/{name}"),
            mounts,
        };
        let args = args(
            &[
                volume(
                    "data",
                    vec![mount("/d", None), mount("/d", None), mount("/e", Some("x"))],
                ),
                volume("logs", vec![]),
            ],
            65533,
            IoMode::Exact,
        );
        assert_eq!(
            args,
            [
                "--mount",
                "/faultline/source/data:/faultline/mnt/data:data",
                "--app-mount",
                "data=/d",
                "--app-mount",
                "data/x=/e",
                "--mount",
                "/faultline/source/logs:/faultline/mnt/logs:logs",
                "--rpc-listen",
                "127.0.0.1:65533"
            ]
        );
        let fast = super::args(&[volume("data", vec![])], 65533, IoMode::Fast);
        assert_eq!(
            fast[fast.len() - 2..],
            ["--io-mode".to_owned(), "fast".to_owned()],
            "{fast:?}"
        );
    }
}
