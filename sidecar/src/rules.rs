//! The rule store: an immutable snapshot of compiled rules behind an [`ArcSwap`].
//!
//! Filesystem threads `load()` the snapshot (a few atomic ops, no lock) and never hold anything
//! across a delay. Changes are serialised by a mutex, build a new snapshot with a new
//! generation, swap it in, then run the change hook (kernel cache invalidation for inodes the
//! new rules match) before the RPC call returns — so the next operation sees the change.
//! Rules with a `ttl` are dropped by a reaper thread at their deadline; until it runs, matching
//! skips expired rules, so expiry is exact.
//!
//! Each mount has its own store (its own snapshot, lock, random source and reaper), so a change
//! on one mount never touches another's rules or caches. What the mounts share is a
//! [`Sequence`]: one generation counter and one counter for generated ids, so generations are
//! sidecar-wide and rule ids are unique across the mounts (the caller passes the other mounts'
//! ids to [`RuleStore::set`] and [`RuleStore::add`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crate::sync::{lock, read, write};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use faultline_api::iorule::{FieldError, IoRule, Problem, build_glob, describe};
use faultline_api::rpc::sidecar::RuleEntry;
use faultline_api::validate::Findings;
use globset::{GlobSet, GlobSetBuilder};

use crate::inject::{CompiledRule, Op, Plan, Random, apply};
use crate::metrics::MountMetrics;

/// What the rule stores of one sidecar share: the generation and generated-id counters.
#[derive(Debug, Default)]
pub(crate) struct Sequence {
    generation: AtomicU64,
    next_id: AtomicU64,
}

impl Sequence {
    /// The latest generation of any store.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Ids of the rules of the *other* mounts: id → that mount's name.
pub(crate) type OtherIds = HashMap<String, String>;

/// One generation of rules.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
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
pub(crate) enum RuleError {
    /// Every problem of every rule, each with its field path.
    #[error("{}", describe(.0))]
    Invalid(Vec<FieldError>),
    #[error("no rule has id `{id}` (ids: {})", if known.is_empty() { "none, no rules are loaded".to_string() } else { known.join(", ") })]
    NotFound { id: String, known: Vec<String> },
}

/// Why rules left a snapshot, for the log.
#[derive(Debug, Clone, Copy)]
enum Removal {
    Replaced,
    Removed,
    Cleared,
    Expired,
}

impl Removal {
    fn as_str(self) -> &'static str {
        match self {
            Removal::Replaced => "not in rules.set",
            Removal::Removed => "rules.remove",
            Removal::Cleared => "rules.clear",
            Removal::Expired => "ttl expired",
        }
    }
}

/// `read, write` or `*` (every method the rule's type defaults to), for logs.
fn methods_of(rule: &CompiledRule) -> String {
    if rule.spec.methods.is_empty() {
        "*".into()
    } else {
        rule.spec.methods.join(",")
    }
}

/// Called after every swap with the snapshot and the rules that are new in it.
pub(crate) type ChangeHook = Box<dyn Fn(&Snapshot, &[Arc<CompiledRule>]) + Send + Sync>;

pub(crate) struct RuleStore {
    /// The mount's name, for logs and listings.
    mount: String,
    current: ArcSwap<Snapshot>,
    write: Mutex<()>,
    rng: Arc<Random>,
    sequence: Arc<Sequence>,
    metrics: Arc<MountMetrics>,
    hook: RwLock<Option<ChangeHook>>,
    /// Wakes the ttl reaper on change or shutdown: (generation seen, stop).
    reaper: (Mutex<(u64, bool)>, Condvar),
}

impl std::fmt::Debug for RuleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleStore")
            .field("mount", &self.mount)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl RuleStore {
    pub(crate) fn new(
        mount: &str,
        seed: Option<u64>,
        metrics: Arc<MountMetrics>,
        sequence: Arc<Sequence>,
    ) -> Self {
        Self {
            mount: mount.to_owned(),
            current: ArcSwap::from_pointee(Snapshot::default()),
            write: Mutex::new(()),
            rng: Arc::new(Random::new(seed)),
            sequence,
            metrics,
            hook: RwLock::new(None),
            reaper: (Mutex::new((0, false)), Condvar::new()),
        }
    }

    pub(crate) fn set_hook(&self, hook: ChangeHook) {
        *write(&self.hook) = Some(hook);
    }

    /// The generation of this store's latest change (0: never changed).
    pub(crate) fn generation(&self) -> u64 {
        self.current.load().generation
    }

    /// The ids of the loaded rules.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.current
            .load()
            .rules
            .iter()
            .map(|r| r.id.clone())
            .collect()
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Decides what happens to one operation. `path` is computed only if a rule needs it.
    pub(crate) fn decide<S: AsRef<str>>(&self, op: Op, path: impl FnOnce() -> Option<S>) -> Plan {
        let snap = self.current.load();
        if snap.ops & op.bit() == 0 {
            return Plan::none();
        }
        let now = snap.has_ttl.then(Instant::now);
        let mut plan = Plan::none();
        let applicable = |r: &CompiledRule| r.applies_to(op) && !now.is_some_and(|n| r.expired(n));
        let path = if snap.needs_path() && snap.rules.iter().any(|r| r.has_glob() && applicable(r))
        {
            path()
        } else {
            None
        };
        let path = path.as_ref().map(|p| p.as_ref());
        let matches = snap.path_matches(path);
        for (i, rule) in snap.rules.iter().enumerate() {
            if !applicable(rule) || !matches.matches(i, rule) {
                continue;
            }
            if rule.cache_relevant() {
                plan.volatile = true;
            }
            if apply(rule, &mut plan, &self.rng) {
                // Debug, not info: a busy app hits a rule thousands of times a second.
                tracing::debug!(
                    rule = %rule.id,
                    r#type = %rule.kind().as_str(),
                    op = %op.name(),
                    path = %path.unwrap_or("(not needed)"),
                    "fault injected"
                );
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
    pub(crate) fn reads_touched<S: AsRef<str>>(&self, path: impl FnOnce() -> Option<S>) -> bool {
        self.any_matching(Op::Read.bit(), CompiledRule::touches_reads, path)
    }

    /// Whether some rule can touch reads or writes of `path` (such files are never opened in
    /// kernel passthrough: those reads and writes would not reach the rule).
    pub(crate) fn data_touched<S: AsRef<str>>(&self, path: impl FnOnce() -> Option<S>) -> bool {
        self.any_matching(
            Op::Read.bit() | Op::Write.bit(),
            CompiledRule::touches_data_ops,
            path,
        )
    }

    /// Whether some rule touching cached results matches `path` (replies get TTL 0).
    pub(crate) fn volatile<S: AsRef<str>>(&self, path: impl FnOnce() -> Option<S>) -> bool {
        self.any_matching(
            crate::inject::CACHED_OPS,
            CompiledRule::cache_relevant,
            path,
        )
    }

    fn fresh_id(&self, taken: &HashSet<String>, others: &OtherIds) -> String {
        loop {
            let n = self.sequence.next_id.fetch_add(1, Ordering::Relaxed) + 1;
            let id = format!("r{n}");
            if !taken.contains(&id) && !others.contains_key(&id) {
                return id;
            }
        }
    }

    /// Validates and compiles `specs` (paths `rules[i]` or `rule`), keeping compiled rules of
    /// `keep` that are identical (same id and spec) so their hit counts and deadlines survive.
    /// An id one of the other mounts uses (`others`) is a duplicate.
    fn compile(
        &self,
        specs: Vec<IoRule>,
        prefix: impl Fn(usize) -> String,
        existing: &[Arc<CompiledRule>],
        others: &OtherIds,
    ) -> Result<Vec<Arc<CompiledRule>>, RuleError> {
        // The RPC layer has checked all of this already; the store checks again so that no
        // caller can load a rule that does not validate.
        let mut findings = Findings::default();
        for (i, spec) in specs.iter().enumerate() {
            spec.validate_at(&prefix(i), &mut findings);
        }
        let mut errors: Vec<FieldError> = findings.into_vec().into_iter().map(Into::into).collect();
        let mut taken: HashMap<String, usize> = HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            let Some(id) = &spec.id else { continue };
            let first = match (taken.insert(id.clone(), i), others.get(id)) {
                (Some(first), _) => prefix(first),
                (None, Some(mount)) => format!("a rule of mount {mount}"),
                (None, None) => continue,
            };
            errors.push(FieldError::new(
                format!("{}.id", prefix(i)),
                Problem::DuplicateId {
                    id: id.clone(),
                    first,
                },
            ));
        }
        if !errors.is_empty() {
            return Err(RuleError::Invalid(errors));
        }
        let mut taken: HashSet<String> = taken.into_keys().collect();
        let now = Instant::now();
        let mut out = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            let id = match &spec.id {
                Some(id) => id.clone(),
                None => {
                    let id = self.fresh_id(&taken, others);
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
            let counter = self.metrics.fault_counter(&id, spec.kind.as_str());
            let compiled = CompiledRule::compile(spec, id, now, counter).map_err(|reason| {
                RuleError::Invalid(vec![FieldError::new(
                    prefix(i),
                    faultline_api::validate::Rule::Required { because: reason },
                )])
            })?;
            out.push(Arc::new(compiled));
        }
        Ok(out)
    }

    fn swap(&self, rules: Vec<Arc<CompiledRule>>, why: Removal) -> u64 {
        let old = self.current.load_full();
        let generation = self.sequence.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let fresh: Vec<Arc<CompiledRule>> = rules
            .iter()
            .filter(|r| !old.rules.iter().any(|o| Arc::ptr_eq(o, r)))
            .cloned()
            .collect();
        for gone in old
            .rules
            .iter()
            .filter(|o| !rules.iter().any(|r| Arc::ptr_eq(o, r)))
        {
            tracing::info!(
                rule = %gone.id,
                r#type = %gone.kind().as_str(),
                path = %gone.spec.path.as_deref().unwrap_or("**"),
                hits = gone.hits.load(Ordering::Relaxed),
                reason = %why.as_str(),
                mount = %self.mount,
                "rule removed"
            );
        }
        for new in &fresh {
            tracing::info!(
                rule = %new.id,
                r#type = %new.kind().as_str(),
                path = %new.spec.path.as_deref().unwrap_or("**"),
                methods = %methods_of(new),
                percent = new.spec.percent.unwrap_or(100),
                mount = %self.mount,
                "rule added"
            );
        }
        let snap = Arc::new(Snapshot::new(generation, rules));
        self.current.store(snap.clone());
        self.metrics.rules.set(snap.rules.len() as i64);
        // Two stores may publish out of order: the gauge shows the counter, the latest.
        let latest = self.sequence.generation();
        self.metrics.generation.set(latest as i64);
        if let Some(hook) = read(&self.hook).as_ref() {
            hook(&snap, &fresh);
        }
        let (reaper, cv) = &self.reaper;
        lock(reaper).0 = generation;
        cv.notify_all();
        tracing::info!(
            generation,
            rules = snap.rules.len(),
            new = fresh.len(),
            mount = %self.mount,
            "rules changed"
        );
        generation
    }

    /// `rules.set`: atomic replace. `others`: the ids of the other mounts' rules.
    pub(crate) fn set(&self, specs: Vec<IoRule>, others: &OtherIds) -> Result<u64, RuleError> {
        let _w = lock(&self.write);
        let existing = self.current.load_full();
        let rules = self.compile(specs, |i| format!("rules[{i}]"), &existing.rules, others)?;
        Ok(self.swap(rules, Removal::Replaced))
    }

    /// `rules.add`: appends one rule; returns (id, generation). `others`: the ids of the other
    /// mounts' rules.
    pub(crate) fn add(&self, spec: IoRule, others: &OtherIds) -> Result<(String, u64), RuleError> {
        let _w = lock(&self.write);
        let existing = self.current.load_full();
        if let Some(id) = &spec.id
            && existing.rules.iter().any(|r| &r.id == id)
        {
            return Err(RuleError::Invalid(vec![FieldError::new(
                "rule.id",
                Problem::DuplicateId {
                    id: id.clone(),
                    first: "a loaded rule".into(),
                },
            )]));
        }
        let ids: HashSet<String> = existing.rules.iter().map(|r| r.id.clone()).collect();
        let mut spec = spec;
        if spec.id.is_none() {
            spec.id = Some(self.fresh_id(&ids, others));
        }
        let mut compiled = self.compile(vec![spec], |_| "rule".to_string(), &[], others)?;
        let mut rules = existing.rules.clone();
        rules.append(&mut compiled);
        let id = rules.last().map(|r| r.id.clone()).unwrap_or_default();
        Ok((id, self.swap(rules, Removal::Replaced)))
    }

    /// `rules.remove`.
    pub(crate) fn remove(&self, id: &str) -> Result<u64, RuleError> {
        let _w = lock(&self.write);
        let existing = self.current.load_full();
        if !existing.rules.iter().any(|r| r.id == id) {
            return Err(RuleError::NotFound {
                id: id.to_string(),
                known: existing.rules.iter().map(|r| r.id.clone()).collect(),
            });
        }
        let rules = existing
            .rules
            .iter()
            .filter(|r| r.id != id)
            .cloned()
            .collect();
        Ok(self.swap(rules, Removal::Removed))
    }

    /// `rules.clear`.
    pub(crate) fn clear(&self) -> u64 {
        let _w = lock(&self.write);
        self.swap(Vec::new(), Removal::Cleared)
    }

    /// `rules.list`: (this store's generation, rules with hit counts).
    pub(crate) fn list(&self) -> (u64, Vec<RuleEntry>) {
        let snap = self.current.load_full();
        let now = Instant::now();
        let rules = snap
            .rules
            .iter()
            .filter(|r| !r.expired(now))
            .map(|r| RuleEntry {
                id: r.id.clone(),
                mount: self.mount.clone(),
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
    pub(crate) fn expire(&self) -> Option<u64> {
        let _w = lock(&self.write);
        let existing = self.current.load_full();
        let now = Instant::now();
        if !existing.rules.iter().any(|r| r.expired(now)) {
            return None;
        }
        let rules = existing
            .rules
            .iter()
            .filter(|r| !r.expired(now))
            .cloned()
            .collect();
        Some(self.swap(rules, Removal::Expired))
    }

    /// Runs the ttl reaper until [`RuleStore::stop_reaper`].
    pub(crate) fn spawn_reaper(self: &Arc<Self>) -> std::io::Result<std::thread::JoinHandle<()>> {
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
                    let (reaper, cv) = &store.reaper;
                    let guard = lock(reaper);
                    if guard.1 {
                        return;
                    }
                    let seen = guard.0;
                    let wait = next.map_or(Duration::from_secs(3600), |t| {
                        t.saturating_duration_since(Instant::now())
                    });
                    let (guard, _) = cv
                        .wait_timeout_while(guard, wait, |g| g.0 == seen && !g.1)
                        .unwrap_or_else(|e| e.into_inner());
                    if guard.1 {
                        return;
                    }
                    drop(guard);
                    store.expire();
                }
            })
    }

    pub(crate) fn stop_reaper(&self) {
        let (reaper, cv) = &self.reaper;
        lock(reaper).1 = true;
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
mod tests;
