//! The sidecar's shared state behind the RPC methods: the mounts, and the rule changes
//! addressed to one of them (or to all).
//!
//! Changes are serialised by one lock across the mounts, so that "an id is unique across the
//! mounts" holds when two calls add rules to two mounts at once. Reading (matching in the
//! filesystem threads, `rules.list`, `status`) takes no lock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use faultline_api::iorule::IoRule;
use faultline_api::rpc::sidecar::{OpCounts, RulesList, Status};

use crate::delay::Shutdown;
use crate::metrics::Metrics;
use crate::rules::{OtherIds, RuleError, Sequence};
use crate::sync::lock;
use crate::volume::{MountError, Resolved, Volume, resolve, under_sub_path};

/// Why a rule change was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChangeError {
    #[error("mount: {0}")]
    Mount(#[from] MountError),
    #[error(transparent)]
    Rule(#[from] RuleError),
}

/// Shared state of the RPC side.
pub(crate) struct App {
    /// In command-line order.
    pub volumes: Vec<Arc<Volume>>,
    pub metrics: Arc<Metrics>,
    pub sequence: Arc<Sequence>,
    pub shutdown: Arc<Shutdown>,
    changes: Mutex<()>,
    started: Instant,
}

impl App {
    pub(crate) fn new(
        volumes: Vec<Arc<Volume>>,
        metrics: Arc<Metrics>,
        sequence: Arc<Sequence>,
        shutdown: Arc<Shutdown>,
    ) -> Self {
        App {
            volumes,
            metrics,
            sequence,
            shutdown,
            changes: Mutex::new(()),
            started: Instant::now(),
        }
    }

    /// Ok when every mount is up and answering; else what is not, per mount.
    pub(crate) fn ready(&self) -> Result<(), String> {
        if self.shutdown.is_set() {
            return Err("shutting down".into());
        }
        let problems: Vec<String> = self
            .volumes
            .iter()
            .filter_map(|v| v.live().err().map(|why| format!("mount {}: {why}", v.name)))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    fn resolve(&self, mount: Option<&str>) -> Result<Resolved, MountError> {
        resolve(&self.volumes, mount)
    }

    /// The ids of the rules of every mount but `except`.
    fn others(&self, except: &Arc<Volume>) -> OtherIds {
        self.volumes
            .iter()
            .filter(|v| !Arc::ptr_eq(v, except))
            .flat_map(|v| v.rules.ids().into_iter().map(|id| (id, v.name.clone())))
            .collect()
    }

    /// `rules.set`: replaces the rules of one mount.
    pub(crate) fn set_rules(
        &self,
        mount: Option<&str>,
        rules: Vec<IoRule>,
    ) -> Result<u64, ChangeError> {
        let target = self.resolve(mount)?;
        let rules = match &target.sub_path {
            Some(sub) => rules.into_iter().map(|r| under_sub_path(r, sub)).collect(),
            None => rules,
        };
        let _change = lock(&self.changes);
        let others = self.others(&target.volume);
        Ok(target.volume.rules.set(rules, &others)?)
    }

    /// `rules.add`: (id, generation, the mount's name).
    pub(crate) fn add_rule(
        &self,
        mount: Option<&str>,
        rule: IoRule,
    ) -> Result<(String, u64, String), ChangeError> {
        let target = self.resolve(mount)?;
        let rule = match &target.sub_path {
            Some(sub) => under_sub_path(rule, sub),
            None => rule,
        };
        let _change = lock(&self.changes);
        let others = self.others(&target.volume);
        let (id, generation) = target.volume.rules.add(rule, &others)?;
        Ok((id, generation, target.volume.name.clone()))
    }

    /// `rules.remove`: the rule with this id, wherever it is (on `mount`, when given).
    pub(crate) fn remove_rule(&self, mount: Option<&str>, id: &str) -> Result<u64, ChangeError> {
        let within: Vec<Arc<Volume>> = match mount {
            Some(_) => vec![self.resolve(mount)?.volume],
            None => self.volumes.clone(),
        };
        let _change = lock(&self.changes);
        match within
            .iter()
            .find(|v| v.rules.ids().iter().any(|i| i == id))
        {
            Some(v) => Ok(v.rules.remove(id)?),
            None => Err(RuleError::NotFound {
                id: id.to_owned(),
                known: within.iter().flat_map(|v| v.rules.ids()).collect(),
            }
            .into()),
        }
    }

    /// `rules.clear`: the rules of one mount, or of every mount.
    pub(crate) fn clear(&self, mount: Option<&str>) -> Result<u64, ChangeError> {
        let _change = lock(&self.changes);
        match mount {
            Some(_) => Ok(self.resolve(mount)?.volume.rules.clear()),
            None => {
                for v in &self.volumes {
                    v.rules.clear();
                }
                Ok(self.sequence.generation())
            }
        }
    }

    /// The mounts a read-only call is about: the one `mount` names, or all.
    fn shown(&self, mount: Option<&str>) -> Result<Vec<Arc<Volume>>, MountError> {
        Ok(match mount {
            Some(_) => vec![self.resolve(mount)?.volume],
            None => self.volumes.clone(),
        })
    }

    /// `rules.list`.
    pub(crate) fn list(&self, mount: Option<&str>) -> Result<RulesList, MountError> {
        let shown = self.shown(mount)?;
        let generation = self.sequence.generation();
        let rules = shown.iter().flat_map(|v| v.rules.list().1).collect();
        Ok(RulesList { generation, rules })
    }

    /// `status`.
    pub(crate) fn status(&self, mount: Option<&str>) -> Result<Status, MountError> {
        let stopping = self.shutdown.is_set();
        let mounts: Vec<_> = self
            .shown(mount)?
            .iter()
            .map(|v| v.status(stopping))
            .collect();
        let mut ops: BTreeMap<String, OpCounts> = BTreeMap::new();
        for (op, c) in mounts.iter().flat_map(|m| &m.ops) {
            let sum = ops.entry(op.clone()).or_default();
            sum.count += c.count;
            sum.errors += c.errors;
            sum.injected += c.injected;
        }
        let mounted = mounts.iter().all(|m| m.mounted);
        Ok(Status {
            mounted,
            ready: mounted && !stopping,
            generation: self.sequence.generation(),
            rules: mounts.iter().map(|m| m.rules).sum(),
            ops,
            inodes: mounts.iter().map(|m| m.inodes).sum(),
            open_handles: mounts.iter().map(|m| m.open_handles).sum(),
            delayed_ops: mounts.iter().map(|m| m.delayed_ops).sum(),
            uptime_seconds: self.started.elapsed().as_secs(),
            mounts,
        })
    }
}
