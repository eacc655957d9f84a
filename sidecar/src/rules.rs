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
use faultline_api::iorule::{IoRule, build_glob};
use faultline_api::validate::{Findings, Violation};
use globset::{GlobSet, GlobSetBuilder};
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
    /// All path globs in one set (one pass over the path instead of one per rule), and the
    /// rule index of each glob.
    globs: Option<GlobSet>,
    glob_rule: Vec<usize>,
}

/// Which rules' globs match one path.
struct PathMatches {
    /// Sorted rule indices whose glob matches.
    hits: Vec<usize>,
}

impl PathMatches {
    fn matches(&self, rule_index: usize, rule: &CompiledRule) -> bool {
        !rule.has_glob() || self.hits.binary_search(&rule_index).is_ok()
    }
}

impl Snapshot {
    fn new(generation: u64, rules: Vec<Arc<CompiledRule>>) -> Self {
        let ops = rules.iter().fold(0, |m, r| m | r.methods());
        let has_ttl = rules.iter().any(|r| r.expires_at.is_some());
        let mut builder = GlobSetBuilder::new();
        let mut glob_rule = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            if let Some(g) = r.spec.path.as_deref().and_then(|p| build_glob(p).ok()) {
                builder.add(g);
                glob_rule.push(i);
            }
        }
        let globs = if glob_rule.is_empty() {
            None
        } else {
            builder.build().ok()
        };
        Self {
            generation,
            rules,
            ops,
            has_ttl,
            globs,
            glob_rule,
        }
    }

    fn path_matches(&self, path: Option<&str>) -> PathMatches {
        let mut hits = Vec::new();
        if let (Some(set), Some(p)) = (&self.globs, path) {
            set.matches_into(p, &mut hits);
            for h in hits.iter_mut() {
                *h = self.glob_rule[*h];
            }
            hits.sort_unstable();
        }
        PathMatches { hits }
    }

    fn needs_path(&self) -> bool {
        self.globs.is_some()
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
    pub fn decide<S: AsRef<str>>(&self, op: Op, path: impl FnOnce() -> Option<S>) -> Plan {
        let snap = self.current.load();
        if snap.ops & op.bit() == 0 {
            return Plan::none();
        }
        let now = snap.has_ttl.then(Instant::now);
        let mut plan = Plan::none();
        let applicable = |r: &CompiledRule| r.applies_to(op) && !now.is_some_and(|n| r.expired(n));
        let matches =
            if snap.needs_path() && snap.rules.iter().any(|r| r.has_glob() && applicable(r)) {
                snap.path_matches(path().as_ref().map(|p| p.as_ref()))
            } else {
                snap.path_matches(None)
            };
        for (i, rule) in snap.rules.iter().enumerate() {
            if !applicable(rule) || !matches.matches(i, rule) {
                continue;
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

    fn any_matching<S: AsRef<str>>(
        &self,
        mask: u64,
        pred: impl Fn(&CompiledRule) -> bool,
        path: impl FnOnce() -> Option<S>,
    ) -> bool {
        let snap = self.current.load();
        if snap.ops & mask == 0 || !snap.rules.iter().any(|r| pred(r)) {
            return false;
        }
        let now = Instant::now();
        let matches = if snap.needs_path() {
            snap.path_matches(path().as_ref().map(|p| p.as_ref()))
        } else {
            snap.path_matches(None)
        };
        snap.rules
            .iter()
            .enumerate()
            .any(|(i, r)| pred(r) && !r.expired(now) && matches.matches(i, r))
    }

    /// Whether some rule may change what reads of `path` return or how long they take (such
    /// files are opened `direct_io`, so the page cache cannot hide the fault).
    pub fn reads_touched<S: AsRef<str>>(&self, path: impl FnOnce() -> Option<S>) -> bool {
        self.any_matching(Op::Read.bit(), CompiledRule::touches_reads, path)
    }

    /// Whether some rule touching cached results matches `path` (replies get TTL 0).
    pub fn volatile<S: AsRef<str>>(&self, path: impl FnOnce() -> Option<S>) -> bool {
        self.any_matching(
            crate::inject::CACHED_OPS,
            CompiledRule::cache_relevant,
            path,
        )
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
        s.set(vec![rule(json!({"id": "f", "type": "fault", "path": "data/*.db", "methods": ["Read"], "faults": [{"errno": 5}]}))])
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
        s.set(rules).unwrap();
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
        s.set(vec![rule(
            json!({"type": "fault", "percent": 30, "faults": [{"errno": 5}]}),
        )])
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
        s.set(vec![rule(
            json!({"type": "fault", "ttl": "150ms", "faults": [{"errno": 5}]}),
        )])
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
}
