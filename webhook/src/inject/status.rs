//! The `faultline.dev/sidecar-status` annotation: what was injected into a pod, read back by
//! whoever has to talk to its sidecar (the daemon, the controller) and by the webhook itself
//! (an injected pod is never injected again).
//!
//! Two shapes exist. Now: one sidecar per pod, named once at the top (`container`, `rpcPort`),
//! and per volume the app containers' mounts of it:
//!
//! ```json
//! {"version": "0.1.0", "templateHash": "sha256:…", "mode": "native",
//!  "container": "faultline-sidecar", "rpcPort": 65533,
//!  "volumes": [{"volume": "data", "fuseVolume": "faultline-fuse-data",
//!               "mountpoint": "/faultline/mnt/data",
//!               "mounts": [{"container": "db", "mountPath": "/var/lib/db"},
//!                          {"container": "init-schema", "mountPath": "/var/lib/db", "init": true}]}]}
//! ```
//!
//! Earlier (webhook ≤ the one-sidecar-per-volume release): no top-level `container`/`rpcPort`,
//! each volume its own `container` (`faultline-sidecar`, `faultline-sidecar-2`, …) and
//! `rpcPort` (65533, 65534, …), and `mounts` as `"container:mountPath"` strings. [`SidecarStatus`]
//! reads both; [`SidecarStatus::endpoint`] answers for either.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::template::Mode;

/// One app or init container's mount of an injected volume, redirected to the fuse volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "MountRecord")]
pub struct RedirectedMount {
    /// The container.
    pub container: String,
    /// Where it mounts the volume.
    pub mount_path: String,
    /// The sub-directory of the volume it mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// The same, with `$(VAR)` expansion (not resolvable here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path_expr: Option<String>,
    /// A read-only mount.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// An init container's mount (not a name for the volume in RPC calls: IOChaos targets
    /// running containers).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
}

/// How a mount is written in either shape of the annotation.
#[derive(Deserialize)]
#[serde(untagged)]
enum MountRecord {
    /// Earlier shape: `"container:mountPath"`.
    Text(String),
    Full(FullMount),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FullMount {
    container: String,
    mount_path: String,
    #[serde(default)]
    sub_path: Option<String>,
    #[serde(default)]
    sub_path_expr: Option<String>,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    init: bool,
}

impl From<MountRecord> for RedirectedMount {
    fn from(record: MountRecord) -> Self {
        match record {
            MountRecord::Text(text) => {
                let (container, mount_path) = text.split_once(':').unwrap_or(("", &text));
                RedirectedMount {
                    container: container.to_owned(),
                    mount_path: mount_path.to_owned(),
                    sub_path: None,
                    sub_path_expr: None,
                    read_only: false,
                    init: false,
                }
            }
            MountRecord::Full(m) => RedirectedMount {
                container: m.container,
                mount_path: m.mount_path,
                sub_path: m.sub_path,
                sub_path_expr: m.sub_path_expr,
                read_only: m.read_only,
                init: m.init,
            },
        }
    }
}

/// One injected volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InjectedVolume {
    /// The pod's volume.
    pub volume: String,
    /// The added emptyDir.
    pub fuse_volume: String,
    /// Earlier shape only: the sidecar container serving this volume alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Earlier shape only: that sidecar's JSON-RPC port on 127.0.0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_port: Option<u16>,
    /// FUSE mountpoint inside the sidecar.
    pub mountpoint: String,
    /// Every redirected mount of the volume.
    pub mounts: Vec<RedirectedMount>,
}

/// The `faultline.dev/sidecar-status` annotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarStatus {
    /// Webhook version.
    pub version: String,
    /// [`super::Template::hash`].
    pub template_hash: String,
    /// native / legacy.
    pub mode: Mode,
    /// The pod's one sidecar container (absent in the earlier shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Its JSON-RPC port on 127.0.0.1 (absent in the earlier shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_port: Option<u16>,
    /// What was injected.
    pub volumes: Vec<InjectedVolume>,
}

/// Why a `volumePath` (or volume name) names no injected volume of the pod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No injected volume has that name, and no app container mounts one there.
    #[error(
        "no injected volume is named {mount:?} or mounted there by an app container (injected: {injected})"
    )]
    NotInjected {
        /// What was asked for.
        mount: String,
        /// The injected volumes with their app paths.
        injected: String,
    },
    /// App containers mount several injected volumes at that path.
    #[error(
        "app containers mount several injected volumes at {mount:?} ({volumes}): name the volume"
    )]
    Ambiguous {
        /// What was asked for.
        mount: String,
        /// The volumes, comma separated.
        volumes: String,
    },
}

/// `path` without `.` parts or repeated and trailing slashes (`None` unless absolute).
fn normal(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    path.is_absolute().then(|| {
        path.components()
            .filter(|c| *c != Component::CurDir)
            .collect()
    })
}

impl SidecarStatus {
    /// Reads the annotation (either shape).
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Whether the pod has a sidecar per volume (the earlier shape).
    pub fn per_volume(&self) -> bool {
        self.container.is_none()
    }

    /// The sidecar serving `volume`: its container and JSON-RPC port.
    pub fn endpoint(&self, volume: &str) -> Option<(&str, u16)> {
        let v = self.volumes.iter().find(|v| v.volume == volume)?;
        match (&self.container, self.rpc_port) {
            (Some(container), Some(port)) => Some((container, port)),
            _ => Some((v.container.as_deref()?, v.rpc_port?)),
        }
    }

    /// The injected volume `mount` names: a volume name, or an absolute path where an app
    /// container (not an init container) mounts it — what an IOChaos `volumePath` says. This is
    /// the rule the sidecar applies to the same `mount` param.
    pub fn volume(&self, mount: &str) -> Result<&InjectedVolume, LookupError> {
        let found: Vec<&InjectedVolume> = match normal(mount) {
            None => self.volumes.iter().filter(|v| v.volume == mount).collect(),
            Some(path) => self
                .volumes
                .iter()
                .filter(|v| {
                    v.mounts
                        .iter()
                        .any(|m| !m.init && normal(&m.mount_path).as_ref() == Some(&path))
                })
                .collect(),
        };
        match found[..] {
            [one] => Ok(one),
            [] => Err(LookupError::NotInjected {
                mount: mount.to_owned(),
                injected: self
                    .volumes
                    .iter()
                    .map(|v| {
                        let paths: Vec<&str> = v
                            .mounts
                            .iter()
                            .filter(|m| !m.init)
                            .map(|m| m.mount_path.as_str())
                            .collect();
                        format!("{} at {}", v.volume, paths.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
            _ => Err(LookupError::Ambiguous {
                mount: mount.to_owned(),
                volumes: found
                    .iter()
                    .map(|v| v.volume.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the earlier webhook wrote for a pod with two volumes: two sidecars, two ports.
    const EARLIER: &str = r#"{"version":"0.1.0","templateHash":"sha256:b615ff644bbbb6e1","mode":"native","volumes":[{"volume":"data","fuseVolume":"faultline-fuse-data","container":"faultline-sidecar","rpcPort":65533,"mountpoint":"/faultline/mnt/data","mounts":["init-schema:/var/lib/db","db:/var/lib/db"]},{"volume":"logs","fuseVolume":"faultline-fuse-logs","container":"faultline-sidecar-2","rpcPort":65534,"mountpoint":"/faultline/mnt/logs","mounts":["db:/var/log/db"]}]}"#;

    #[test]
    fn the_earlier_shape_is_read() {
        let status = SidecarStatus::parse(EARLIER).expect("parse");
        assert!(status.per_volume());
        assert_eq!(status.endpoint("data"), Some(("faultline-sidecar", 65533)));
        assert_eq!(
            status.endpoint("logs"),
            Some(("faultline-sidecar-2", 65534))
        );
        assert_eq!(status.endpoint("nope"), None);
        assert_eq!(status.volumes[0].mounts[1].container, "db");
        assert_eq!(status.volumes[0].mounts[1].mount_path, "/var/lib/db");
        assert_eq!(
            status.volume("/var/log/db/").map(|v| &v.volume),
            Ok(&"logs".to_owned())
        );
    }

    #[test]
    fn the_one_sidecar_shape_round_trips_and_names_volumes() {
        let text = r#"{"version":"0.2.0","templateHash":"sha256:x","mode":"native","container":"faultline-sidecar","rpcPort":65533,"volumes":[{"volume":"data","fuseVolume":"faultline-fuse-data","mountpoint":"/faultline/mnt/data","mounts":[{"container":"db","mountPath":"/var/lib/db","subPath":"pg","readOnly":true},{"container":"init-schema","mountPath":"/seed","init":true}]},{"volume":"a","fuseVolume":"faultline-fuse-a","mountpoint":"/faultline/mnt/a","mounts":[{"container":"x","mountPath":"/shared"}]},{"volume":"b","fuseVolume":"faultline-fuse-b","mountpoint":"/faultline/mnt/b","mounts":[{"container":"y","mountPath":"/shared"}]}]}"#;
        let status = SidecarStatus::parse(text).expect("parse");
        assert_eq!(serde_json::to_string(&status).expect("json"), text);
        assert!(!status.per_volume());
        assert_eq!(status.endpoint("b"), Some(("faultline-sidecar", 65533)));
        assert_eq!(status.volume("data").map(|v| v.volume.as_str()), Ok("data"));
        assert_eq!(
            status.volume("/var/lib/./db").map(|v| v.volume.as_str()),
            Ok("data")
        );
        assert_eq!(
            status.volume("/seed").unwrap_err().to_string(),
            "no injected volume is named \"/seed\" or mounted there by an app container (injected: data at /var/lib/db; a at /shared; b at /shared)"
        );
        assert_eq!(
            status.volume("/shared"),
            Err(LookupError::Ambiguous {
                mount: "/shared".into(),
                volumes: "a, b".into()
            })
        );
    }
}
