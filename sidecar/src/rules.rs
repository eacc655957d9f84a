//! The rule store: an immutable snapshot of compiled rules behind an [`ArcSwap`].
//!
//! Filesystem threads `load()` the snapshot (a few atomic ops, no lock) and never hold anything
//! across a delay. Changes are serialised by a mutex, build a new snapshot with a new
//! generation, swap it in, then run the change hook (kernel cache invalidation for inodes the
//! new rules match) before the RPC call returns — so the next operation sees the change.
//! Rules with a `ttl` are dropped by a reaper thread at their deadline; until it runs, matching
//! skips expired rules, so expiry is exact.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use faultline_api::iorule::IoRule;
use faultline_api::validate::{Findings, Violation};
use rand::SeedableRng;
use serde::Serialize;

use crate::inject::{CompiledRule, Op, Plan, Rng, apply};
use crate::metrics::Metrics;

/// One generation of rules.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub generation: u64,
    pub rules: Vec<Arc<CompiledRule>>,
    /// Union of the rules' op masks: ops outside it skip matching entirely.
    ops: u64,
    has_ttl: bool,
}

impl Snapshot {
    fn new(generation: u64, rules: Vec<Arc<CompiledRule>>) -> Self {
        let ops = rules.iter().fold(0, |m, r| m | r.methods());
        let has_ttl = rules.iter().any(|r| r.expires_at.is_some());
        Self {
            generation,
            rules,
            ops,
            has_ttl,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RuleError {
    #[error("invalid rules: {}", faultline_api::validate::describe(.0))]
    Invalid(Vec<Violation>),
    #[error("{path}: duplicate rule id `{id}`")]
    DuplicateId { path: String, id: String },
    #[error("no rule with id `{0}`")]
    NotFound(String),
}

/// A rule as `rules.list` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleView {
    pub id: String,
    pub rule: IoRule,
    pub hits: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
}

/// Called after every swap with the snapshot and the rules that are new in it.
pub type ChangeHook = Box<dyn Fn(&Snapshot, &[Arc<CompiledRule>]) + Send + Sync>;

pub struct RuleStore {
    current: ArcSwap<Snapshot>,
    write: Mutex<()>,
    rng: Arc<Mutex<Rng>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    hook: RwLock<Option<ChangeHook>>,
    /// Wakes the ttl reaper on change or shutdown: (generation seen, stop).
    reaper: (Mutex<(u64, bool)>, Condvar),
}

impl std::fmt::Debug for RuleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleStore")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl RuleStore {
    pub fn new(seed: Option<u64>, metrics: Arc<Metrics>) -> Self {
        let rng = match seed {
            Some(s) => Rng::seed_from_u64(s),
            None => Rng::from_os_rng(),
        };
        Self {
            current: ArcSwap::from_pointee(Snapshot::default()),
            write: Mutex::new(()),
            rng: Arc::new(Mutex::new(rng)),
            next_id: AtomicU64::new(1),
            metrics,
            hook: RwLock::new(None),
            reaper: (Mutex::new((0, false)), Condvar::new()),
        }
    }

    pub fn set_hook(&self, hook: ChangeHook) {
        if let Ok(mut h) = self.hook.write() {
            *h = Some(hook);
        }
    }

    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Decides what happens to one operation. `path` is computed only if a rule needs it.
    pub fn decide(&self, op: Op, path: impl FnOnce() -> Option<String>) -> Plan {
        let snap = self.current.load();
        if snap.ops & op.bit() == 0 {
            return Plan::none();
        }
        let now = snap.has_ttl.then(Instant::now);
        let mut plan = Plan::none();
        let mut path_cell: Option<Option<String>> = None;
        let mut path_fn = Some(path);
        for rule in snap.rules.iter() {
            if !rule.applies_to(op) || now.is_some_and(|n| rule.expired(n)) {
                continue;
            }
            if rule.has_glob() {
                if path_cell.is_none() {
                    path_cell = Some(path_fn.take().and_then(|f| f()));
                }
                if !rule.matches_path(path_cell.as_ref().and_then(|p| p.as_deref())) {
                    continue;
                }
            }
            if rule.cache_relevant() {
                plan.volatile = true;
            }
            if apply(rule, &mut plan, &self.rng) {
                self.metrics.fault(&rule.id, rule.kind().as_str());
            }
        }
        plan
    }

    /// Whether some rule may change what reads of `path` return or how long they take (such
    /// files are opened `direct_io`, so the page cache cannot hide the fault).
    pub fn reads_touched(&self, path: impl FnOnce() -> Option<String>) -> bool {
        let snap = self.current.load();
        if snap.ops & Op::Read.bit() == 0 {
            return false;
        }
        let path = path();
        snap.rules
            .iter()
            .any(|r| r.touches_reads() && r.matches_path(path.as_deref()))
    }

    /// Whether some rule touching cached results matches `path` (replies get TTL 0).
    pub fn volatile(&self, path: impl FnOnce() -> Option<String>) -> bool {
        let snap = self.current.load();
        if snap.ops & crate::inject::CACHED_OPS == 0 {
            return false;
        }
        let path = path();
        snap.rules
            .iter()
            .any(|r| r.cache_relevant() && r.matches_path(path.as_deref()))
    }

    fn fresh_id(&self, taken: &HashSet<String>) -> String {
        loop {
            let id = format!("r{}", self.next_id.fetch_add(1, Ordering::Relaxed));
            if !taken.contains(&id) {
                return id;
            }
        }
    }

    /// Validates and compiles `specs` (paths `rules[i]` or `rule`), keeping compiled rules of
    /// `keep` that are identical (same id and spec) so their hit counts and deadlines survive.
    fn compile(
        &self,
        specs: Vec<IoRule>,
        prefix: impl Fn(usize) -> String,
        existing: &[Arc<CompiledRule>],
    ) -> Result<Vec<Arc<CompiledRule>>, RuleError> {
        let mut findings = Findings::default();
        for (i, spec) in specs.iter().enumerate() {
            spec.validate_at(&prefix(i), &mut findings);
        }
        let violations = findings.into_vec();
        if !violations.is_empty() {
            return Err(RuleError::Invalid(violations));
        }
        let mut taken: HashSet<String> = HashSet::new();
        for (i, spec) in specs.iter().enumerate() {
            if let Some(id) = &spec.id
                && !taken.insert(id.clone())
            {
                return Err(RuleError::DuplicateId {
                    path: format!("{}.id", prefix(i)),
                    id: id.clone(),
                });
            }
        }
        let now = Instant::now();
        let mut out = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            let id = match &spec.id {
                Some(id) => id.clone(),
                None => {
                    let id = self.fresh_id(&taken);
                    taken.insert(id.clone());
                    id
                }
            };
            if let Some(same) = existing
                .iter()
                .find(|r| r.id == id && spec.id.is_some() && strip_id(&r.spec) == strip_id(&spec))
            {
                out.push(same.clone());
                continue;
            }
            let compiled = CompiledRule::compile(spec, id, now).map_err(|reason| {
                RuleError::Invalid(vec![Violation::new(
                    prefix(i),
                    faultline_api::validate::Rule::Required { because: reason },
                )])
            })?;
            out.push(Arc::new(compiled));
        }
        Ok(out)
    }

    fn swap(&self, rules: Vec<Arc<CompiledRule>>) -> u64 {
        let old = self.current.load_full();
        let generation = old.generation + 1;
        let fresh: Vec<Arc<CompiledRule>> = rules
            .iter()
            .filter(|r| !old.rules.iter().any(|o| Arc::ptr_eq(o, r)))
            .cloned()
            .collect();
        let snap = Arc::new(Snapshot::new(generation, rules));
        self.current.store(snap.clone());
        self.metrics.rules.set(snap.rules.len() as i64);
        self.metrics.generation.set(generation as i64);
        if let Ok(hook) = self.hook.read()
            && let Some(hook) = hook.as_ref()
        {
            hook(&snap, &fresh);
        }
        let (lock, cv) = &self.reaper;
        if let Ok(mut g) = lock.lock() {
            g.0 = generation;
        }
        cv.notify_all();
        tracing::info!(
            generation,
            rules = snap.rules.len(),
            new = fresh.len(),
            "rules changed"
        );
        generation
    }

    /// `rules.set`: atomic replace.
    pub fn set(&self, specs: Vec<IoRule>) -> Result<u64, RuleError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let existing = self.current.load_full();
        let rules = self.compile(specs, |i| format!("rules[{i}]"), &existing.rules)?;
        Ok(self.swap(rules))
    }

    /// `rules.add`: appends one rule; returns (id, generation).
    pub fn add(&self, spec: IoRule) -> Result<(String, u64), RuleError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let existing = self.current.load_full();
        if let Some(id) = &spec.id
            && existing.rules.iter().any(|r| &r.id == id)
        {
            return Err(RuleError::DuplicateId {
                path: "rule.id".into(),
                id: id.clone(),
            });
        }
        let ids: HashSet<String> = existing.rules.iter().map(|r| r.id.clone()).collect();
        let mut spec = spec;
        if spec.id.is_none() {
            spec.id = Some(self.fresh_id(&ids));
        }
        let mut compiled = self.compile(vec![spec], |_| "rule".to_string(), &[])?;
        let rule = compiled.pop().ok_or(RuleError::NotFound(String::new()))?;
        let id = rule.id.clone();
        let mut rules = existing.rules.clone();
        rules.push(rule);
        Ok((id, self.swap(rules)))
    }

    /// `rules.remove`.
    pub fn remove(&self, id: &str) -> Result<u64, RuleError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let existing = self.current.load_full();
        if !existing.rules.iter().any(|r| r.id == id) {
            return Err(RuleError::NotFound(id.to_string()));
        }
        let rules = existing
            .rules
            .iter()
            .filter(|r| r.id != id)
            .cloned()
            .collect();
        Ok(self.swap(rules))
    }

    /// `rules.clear`.
    pub fn clear(&self) -> u64 {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        self.swap(Vec::new())
    }

    /// `rules.list`: (generation, rules with hit counts).
    pub fn list(&self) -> (u64, Vec<RuleView>) {
        let snap = self.current.load_full();
        let now = Instant::now();
        let rules = snap
            .rules
            .iter()
            .filter(|r| !r.expired(now))
            .map(|r| RuleView {
                id: r.id.clone(),
                rule: r.spec.clone(),
                hits: r.hits.load(Ordering::Relaxed),
                expires_in_ms: r
                    .expires_at
                    .map(|t| t.saturating_duration_since(now).as_millis() as u64),
            })
            .collect();
        (snap.generation, rules)
    }

    /// Removes expired rules now; returns the new generation if anything expired.
    pub fn expire(&self) -> Option<u64> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let existing = self.current.load_full();
        let now = Instant::now();
        if !existing.rules.iter().any(|r| r.expired(now)) {
            return None;
        }
        for r in existing.rules.iter().filter(|r| r.expired(now)) {
            tracing::info!(rule = %r.id, "rule ttl expired");
        }
        let rules = existing
            .rules
            .iter()
            .filter(|r| !r.expired(now))
            .cloned()
            .collect();
        Some(self.swap(rules))
    }

    /// Runs the ttl reaper until [`RuleStore::stop_reaper`].
    pub fn spawn_reaper(self: &Arc<Self>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let store = self.clone();
        std::thread::Builder::new()
            .name("ttl-reaper".into())
            .spawn(move || {
                loop {
                    let next = store
                        .current
                        .load()
                        .rules
                        .iter()
                        .filter_map(|r| r.expires_at)
                        .min();
                    let (lock, cv) = &store.reaper;
                    let Ok(guard) = lock.lock() else { return };
                    if guard.1 {
                        return;
                    }
                    let seen = guard.0;
                    let wait = next.map_or(Duration::from_secs(3600), |t| {
                        t.saturating_duration_since(Instant::now())
                    });
                    let Ok((guard, _)) =
                        cv.wait_timeout_while(guard, wait, |g| g.0 == seen && !g.1)
                    else {
                        return;
                    };
                    if guard.1 {
                        return;
                    }
                    drop(guard);
                    store.expire();
                }
            })
    }

    pub fn stop_reaper(&self) {
        let (lock, cv) = &self.reaper;
        if let Ok(mut g) = lock.lock() {
            g.1 = true;
        }
        cv.notify_all();
    }
}

fn strip_id(spec: &IoRule) -> IoRule {
    IoRule {
        id: None,
        ..spec.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: serde_json::Value) -> IoRule {
        serde_json::from_value(v).unwrap()
    }

    fn store() -> RuleStore {
        RuleStore::new(Some(42), Arc::new(Metrics::new()))
    }

    #[test]
    fn generations_and_ids() {
        let s = store();
        assert_eq!(s.generation(), 0);
        let g = s
            .set(vec![rule(json!({"type": "latency", "latency": "1ms"}))])
            .unwrap();
        assert_eq!(g, 1);
        let (id, g) = s
            .add(rule(
                json!({"id": "x", "type": "fault", "faults": [{"errno": 5}]}),
            ))
            .unwrap();
        assert_eq!((id.as_str(), g), ("x", 2));
        assert_eq!(
            s.add(rule(
                json!({"id": "x", "type": "fault", "faults": [{"errno": 5}]})
            )),
            Err(RuleError::DuplicateId {
                path: "rule.id".into(),
                id: "x".into()
            })
        );
        let (g, list) = s.list();
        assert_eq!(g, 2);
        assert_eq!(list.len(), 2);
        assert!(list[0].id.starts_with('r'));
        assert_eq!(s.remove("x"), Ok(3));
        assert_eq!(s.remove("x"), Err(RuleError::NotFound("x".into())));
        assert_eq!(s.clear(), 4);
        assert!(s.list().1.is_empty());
    }

    #[test]
    fn invalid_rules_name_the_field() {
        let s = store();
        let err = s
            .set(vec![
                rule(json!({"type": "latency", "latency": "1ms"})),
                rule(json!({"type": "latency", "latency": "soon"})),
            ])
            .unwrap_err();
        match err {
            RuleError::Invalid(v) => assert_eq!(v[0].path, "rules[1].latency"),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.generation(), 0, "a refused set changes nothing");
        let dup = s.set(vec![
            rule(json!({"id": "a", "type": "latency", "latency": "1ms"})),
            rule(json!({"id": "a", "type": "latency", "latency": "1ms"})),
        ]);
        assert_eq!(
            dup,
            Err(RuleError::DuplicateId {
                path: "rules[1].id".into(),
                id: "a".into()
            })
        );
    }

    #[test]
    fn matching_uses_glob_methods_and_counts_hits() {
        let s = store();
        s.set(vec![rule(json!({"id": "f", "type": "fault", "path": "data/*.db", "methods": ["Read"], "faults": [{"errno": 5}]}))])
            .unwrap();
        let hit = s.decide(Op::Read, || Some("data/a.db".into()));
        assert_eq!(hit.check(), Err(fuser::Errno::EIO));
        assert!(hit.volatile);
        assert!(
            s.decide(Op::Read, || Some("data/sub/a.db".into()))
                .check()
                .is_ok(),
            "* stays in one dir"
        );
        assert!(
            s.decide(Op::Write, || Some("data/a.db".into()))
                .check()
                .is_ok(),
            "method filter"
        );
        assert!(
            s.decide(Op::Read, || None).check().is_ok(),
            "unknown path never matches a glob"
        );
        assert!(s.reads_touched(|| Some("data/a.db".into())));
        assert!(!s.reads_touched(|| Some("other".into())));
        assert_eq!(s.list().1[0].hits, 1);
        // Identical re-set keeps the compiled rule (and its hits).
        s.set(vec![rule(json!({"id": "f", "type": "fault", "path": "data/*.db", "methods": ["Read"], "faults": [{"errno": 5}]}))])
            .unwrap();
        assert_eq!(s.list().1[0].hits, 1);
    }

    #[test]
    fn percent_is_statistical_with_a_seed() {
        let s = store();
        s.set(vec![rule(
            json!({"type": "fault", "percent": 30, "faults": [{"errno": 5}]}),
        )])
        .unwrap();
        let n = 10_000;
        let hits = (0..n)
            .filter(|_| s.decide(Op::Getattr, || None).check().is_err())
            .count();
        // Binomial(10000, 0.3): sd ≈ 46; allow 5 sd.
        assert!((2770..=3230).contains(&hits), "{hits}");
    }

    #[test]
    fn ttl_expires_exactly_and_reaper_removes() {
        let s = Arc::new(store());
        let reaper = s.spawn_reaper().unwrap();
        s.set(vec![rule(
            json!({"type": "fault", "ttl": "150ms", "faults": [{"errno": 5}]}),
        )])
        .unwrap();
        assert!(s.decide(Op::Getattr, || None).check().is_err());
        std::thread::sleep(Duration::from_millis(160));
        assert!(
            s.decide(Op::Getattr, || None).check().is_ok(),
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
}
