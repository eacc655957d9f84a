//! What the journal keeps of a fault: enough to recover it with no client and no memory of the
//! request — after a crash, on a `ttl`, or on `faults.recoverAll`.

use faultline_api::rpc::daemon::{FaultEntry, FaultId, FaultKind, Target};
use serde::{Deserialize, Serialize};

use crate::process::ProcessRef;

/// The journal format version; an entry of another version is reported, not guessed at.
pub const VERSION: u32 = 1;

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry {
    /// Must be [`VERSION`].
    #[serde(deserialize_with = "version")]
    pub version: u32,
    pub fault_id: FaultId,
    /// The target as the client named it (absent for pod failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// RFC 3339.
    pub applied_at: String,
    /// RFC 3339; the daemon recovers the fault by itself then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub record: Record,
}

fn version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if v == VERSION {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "journal version {v}; this daemon reads version {VERSION}"
        )))
    }
}

/// Per kind, what recovery needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", deny_unknown_fields)]
pub enum Record {
    /// stress-ng processes carry `FAULTLINE_FAULT_ID=<faultId>` in their environment; recovery
    /// kills every process that does, so even one started just before a crash (before its pid
    /// was known) is found.
    #[serde(rename_all = "camelCase")]
    Stress {
        /// The process whose cgroups the stressors joined.
        target: ProcessRef,
        /// stress-ng's own pid (its process group), once known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stress_ng: Option<ProcessRef>,
    },
    /// The pod's hold (this fault id) in its `faultline.dev/pod-failure` annotation.
    #[serde(rename_all = "camelCase")]
    PodFailure { namespace: String, pod: String },
    /// Rules added to the sidecar in the target's network namespace, under ids derived from
    /// the fault id (so they are removable even if the daemon died before the answer came).
    #[serde(rename_all = "camelCase")]
    Io {
        /// A process in the pod's network namespace.
        netns: ProcessRef,
        /// The sidecar's port on 127.0.0.1 there.
        port: u16,
        rule_ids: Vec<String>,
    },
    /// A shaping part and/or a partition on one device of the pod's network namespace. The
    /// device's qdiscs carry the merge of every network fault on it (`network::compose`), so
    /// recovering one recomputes the merge from the others.
    #[serde(rename_all = "camelCase")]
    Network {
        /// A process in the pod's network namespace (the sandbox's when there is one).
        netns: ProcessRef,
        /// The namespace's inode: faults on the same namespace and device compose.
        netns_inode: u64,
        device: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        netem: Option<faultline_api::convert::network::NetemParams>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bandwidth: Option<faultline_api::convert::network::TbfParams>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition: Option<crate::network::PartitionRecord>,
    },
}

impl Record {
    pub fn kind(&self) -> FaultKind {
        match self {
            Record::Network { .. } => FaultKind::Network,
            Record::Stress { .. } => FaultKind::Stress,
            Record::PodFailure { .. } => FaultKind::PodFailure,
            Record::Io { .. } => FaultKind::Io,
        }
    }
}

impl Entry {
    /// A new entry, applied now.
    pub fn new(
        fault_id: FaultId,
        target: Option<Target>,
        expires_at: Option<String>,
        record: Record,
    ) -> Self {
        Self {
            version: VERSION,
            fault_id,
            target,
            applied_at: crate::clock::now_rfc3339(),
            expires_at,
            record,
        }
    }

    /// As `faults.list` shows it.
    pub fn listed(&self) -> FaultEntry {
        FaultEntry {
            fault_id: self.fault_id.clone(),
            kind: self.record.kind(),
            target: self.target.clone(),
            applied_at: self.applied_at.clone(),
            expires_at: self.expires_at.clone(),
        }
    }
}

/// A new fault id: `<kind>-<16 hex>`, safe as a file name and an environment value.
pub fn new_fault_id(kind: FaultKind) -> FaultId {
    let prefix = match kind {
        FaultKind::Network => "net",
        FaultKind::Stress => "stress",
        FaultKind::PodFailure => "podfail",
        FaultKind::Io => "io",
    };
    FaultId(format!("{prefix}-{:016x}", rand::random::<u64>()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_round_trip_and_other_versions_are_refused() {
        let entry = Entry::new(
            FaultId("stress-1".into()),
            Some(Target::Pid { pid: 7 }),
            Some("2026-12-01T10:00:00Z".into()),
            Record::Stress {
                target: ProcessRef {
                    pid: 7,
                    start_time: 100,
                    boot_id: "b".into(),
                },
                stress_ng: None,
            },
        );
        let value = serde_json::to_value(&entry).unwrap();
        assert_eq!(value["record"]["kind"], "stress");
        let back: Entry = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(back, entry);
        let mut future = value;
        future["version"] = json!(2);
        let err = serde_json::from_value::<Entry>(future).unwrap_err();
        assert!(err.to_string().contains("journal version 2"), "{err}");
    }

    #[test]
    fn fault_ids_are_file_and_env_safe() {
        let id = new_fault_id(FaultKind::PodFailure);
        assert!(id.0.starts_with("podfail-"));
        assert!(id.0.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert_ne!(id, new_fault_id(FaultKind::PodFailure));
    }
}
