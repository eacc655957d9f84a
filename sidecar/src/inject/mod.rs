//! Fault injection: rules compiled into [`Injector`]s, and the per-operation [`Plan`].
//!
//! Each rule kind is one small injector (`latency.rs`, `fault.rs`, `attr.rs`, `mistake.rs`)
//! with default no-op hooks; a [`Plan`] is the composite of the rules that hit one operation:
//! the delay to wait, the errno to fail with, and the rules whose post hooks (attribute
//! override, data corruption) apply to the result.

mod attr;
mod fault;
mod latency;
mod mistake;
pub(crate) mod op;

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use faultline_api::iorule::{IoFaultType, IoRule, compile_glob};
use fuser::{Errno, FileAttr};
use globset::GlobMatcher;
pub(crate) use op::{CACHED_OPS, Op};
use prometheus_client::metrics::counter::Counter;

/// One thread's generator.
pub(crate) type Rng = rand::rngs::StdRng;

/// The random source (percent rolls, weighted errnos, mistakes): one generator per thread, so a
/// rule hit takes no lock. Each thread's generator is seeded from the source's seed and the
/// order in which threads first draw from it, so `--seed` makes every thread's sequence repeat.
#[derive(Debug)]
pub(crate) struct Random {
    /// Tells apart sources living in one process (tests run several stores).
    id: u64,
    seed: u64,
    streams: AtomicU64,
}

static NEXT_RANDOM: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's generators, by source id (one entry in a running sidecar).
    static GENERATORS: RefCell<Vec<(u64, Rng)>> = const { RefCell::new(Vec::new()) };
}

impl Random {
    /// A source seeded with `seed`, or from the OS when `None`.
    pub(crate) fn new(seed: Option<u64>) -> Self {
        Self {
            id: NEXT_RANDOM.fetch_add(1, Ordering::Relaxed),
            seed: seed.unwrap_or_else(rand::random),
            streams: AtomicU64::new(0),
        }
    }

    /// Runs `f` with this thread's generator (`f` must not draw from a source itself).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Rng) -> R) -> R {
        use rand::SeedableRng;
        GENERATORS.with(|cell| {
            let mut generators = cell.borrow_mut();
            let at = match generators.iter().position(|(id, _)| *id == self.id) {
                Some(at) => at,
                None => {
                    // Sources of finished tests would pile up on a long-lived thread.
                    if generators.len() >= 8 {
                        generators.remove(0);
                    }
                    let stream = self.streams.fetch_add(1, Ordering::Relaxed);
                    let seed = self
                        .seed
                        .wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    generators.push((self.id, Rng::seed_from_u64(seed)));
                    generators.len() - 1
                }
            };
            f(&mut generators[at].1)
        })
    }
}

/// One fault kind. Every hook defaults to doing nothing.
pub(crate) trait Injector: Send + Sync + std::fmt::Debug {
    /// Before the operation runs: add a delay, pick an errno.
    fn before(&self, _plan: &mut Plan, _rng: &mut Rng) {}
    /// On attributes about to be replied (`entry`: part of an entry reply, not a getattr).
    fn attr(&self, _attr: &mut FileAttr, _entry: bool) {}
    /// On data read from the source before it is replied, or written by the app before it
    /// reaches the source.
    fn data(&self, _buf: &mut [u8], _rng: &mut Rng) {}
    /// Whether [`Injector::data`] does anything (the write path copies data only then).
    fn touches_data(&self) -> bool {
        false
    }
}

/// What happens to one operation.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub delay: Duration,
    pub errno: Option<Errno>,
    /// A rule touching cached results matches this path: reply with TTL 0, invalidate after
    /// cached reads.
    pub volatile: bool,
    post: Vec<Arc<CompiledRule>>,
    rng: Option<Arc<Random>>,
}

impl Plan {
    /// The plan of an operation no rule matches.
    pub(crate) fn none() -> Self {
        Self::default()
    }

    /// `Err(errno)` when a fault rule hit.
    pub(crate) fn check(&self) -> Result<(), Errno> {
        self.errno.map_or(Ok(()), Err)
    }

    pub(crate) fn attr(&self, mut attr: FileAttr, entry: bool) -> FileAttr {
        for rule in &self.post {
            rule.injector.attr(&mut attr, entry);
        }
        attr
    }

    pub(crate) fn touches_data(&self) -> bool {
        self.post.iter().any(|r| r.injector.touches_data())
    }

    /// Applies data hooks (mistakes) to `buf`.
    pub(crate) fn data(&self, buf: &mut [u8]) {
        let Some(rng) = &self.rng else { return };
        for rule in self.post.iter().filter(|r| r.injector.touches_data()) {
            rng.with(|rng| rule.injector.data(buf, rng));
        }
    }
}

/// A validated rule ready to match operations.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub id: String,
    /// The rule as given (with its id filled in).
    pub spec: IoRule,
    glob: Option<GlobMatcher>,
    /// Ops the rule applies to.
    methods: u64,
    percent: u32,
    pub expires_at: Option<Instant>,
    injector: Box<dyn Injector>,
    pub hits: AtomicU64,
    /// `faultline_sidecar_faults_injected_total{rule, kind}` of this rule, resolved once here
    /// so that a hit is one atomic add (no label string, no family lock).
    fault_counter: Counter,
}

const ALL_OPS: u64 = (1 << Op::COUNT as u64) - 1;

impl CompiledRule {
    /// Compiles a rule that passed [`IoRule::validate`]. `Err` carries a reason for the (should
    /// not happen) case of a rule that validates but does not compile.
    pub(crate) fn compile(
        mut spec: IoRule,
        id: String,
        now: Instant,
        fault_counter: Counter,
    ) -> Result<Self, String> {
        spec.id = Some(id.clone());
        let glob = match &spec.path {
            Some(p) => Some(compile_glob(p).map_err(|e| e.to_string())?),
            None => None,
        };
        let mut methods = 0u64;
        for m in &spec.methods {
            methods |= Op::from_method(m)
                .ok_or_else(|| format!("unknown method {m}"))?
                .bit();
        }
        if methods == 0 {
            methods = match spec.kind {
                IoFaultType::Mistake => Op::Read.bit() | Op::Write.bit(),
                IoFaultType::AttrOverride => [
                    Op::Lookup,
                    Op::Getattr,
                    Op::Setattr,
                    Op::Create,
                    Op::Mkdir,
                    Op::Mknod,
                ]
                .iter()
                .chain([Op::Symlink, Op::Link, Op::Readdirplus].iter())
                .fold(0, |m, op| m | op.bit()),
                _ => ALL_OPS,
            };
        }
        let injector: Box<dyn Injector> = match spec.kind {
            IoFaultType::Latency => Box::new(latency::Latency {
                delay: spec.latency_duration().ok_or("latency: invalid duration")?,
            }),
            IoFaultType::Fault => Box::new(fault::Fault {
                errnos: spec
                    .faults
                    .iter()
                    .map(|f| (f.errno as i32, f.weight))
                    .collect(),
            }),
            IoFaultType::AttrOverride => Box::new(attr::AttrOverrider {
                attr: spec.attr.clone().ok_or("attrOverride: no attr")?,
            }),
            IoFaultType::Mistake => {
                let m = spec.mistake.ok_or("mistake: no mistake")?;
                Box::new(mistake::Mistake {
                    filling: m.filling,
                    max_occurrences: m.max_occurrences.max(0) as u64,
                    max_length: m.max_length.max(0) as u64,
                })
            }
        };
        let expires_at = spec.ttl_duration().map(|ttl| now + ttl);
        Ok(Self {
            id,
            percent: spec.percent.unwrap_or(100).min(100),
            spec,
            glob,
            methods,
            expires_at,
            injector,
            hits: AtomicU64::new(0),
            fault_counter,
        })
    }

    pub(crate) fn kind(&self) -> IoFaultType {
        self.spec.kind
    }

    pub(crate) fn applies_to(&self, op: Op) -> bool {
        self.methods & op.bit() != 0
    }

    pub(crate) fn methods(&self) -> u64 {
        self.methods
    }

    pub(crate) fn has_glob(&self) -> bool {
        self.glob.is_some()
    }

    /// Whether the rule's path glob matches `path` (no glob matches everything, an unknown
    /// path matches only rules without a glob).
    pub(crate) fn matches_path(&self, path: Option<&str>) -> bool {
        match (&self.glob, path) {
            (None, _) => true,
            (Some(g), Some(p)) => g.is_match(p),
            (Some(_), None) => false,
        }
    }

    /// Touches results the kernel caches (so matching inodes must not be served from cache).
    pub(crate) fn cache_relevant(&self) -> bool {
        self.methods & CACHED_OPS != 0
    }

    /// Changes what reads return or how long they take (matching files are opened direct_io).
    pub(crate) fn touches_reads(&self) -> bool {
        self.spec.kind != IoFaultType::AttrOverride && self.applies_to(Op::Read)
    }

    /// Applies to reads or writes (kernel passthrough would bypass it).
    pub(crate) fn touches_data_ops(&self) -> bool {
        self.spec.kind != IoFaultType::AttrOverride
            && (self.applies_to(Op::Read) || self.applies_to(Op::Write))
    }

    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Runs the rule's `before` hook for a hit and records whether it has post hooks.
    fn hit(self: &Arc<Self>, plan: &mut Plan, rng: &Arc<Random>) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.fault_counter.inc();
        rng.with(|r| self.injector.before(plan, r));
        if matches!(
            self.spec.kind,
            IoFaultType::AttrOverride | IoFaultType::Mistake
        ) {
            plan.post.push(self.clone());
            if plan.rng.is_none() {
                plan.rng = Some(rng.clone());
            }
        }
    }
}

/// Rolls the percent filter and applies a matching rule to `plan`.
pub(crate) fn apply(rule: &Arc<CompiledRule>, plan: &mut Plan, rng: &Arc<Random>) -> bool {
    if rule.percent < 100 {
        use rand::Rng as _;
        let roll = rng.with(|r| r.random_range(0..100u32));
        if roll >= rule.percent {
            return false;
        }
    }
    rule.hit(plan, rng);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compiled(v: serde_json::Value) -> Arc<CompiledRule> {
        let spec: IoRule = serde_json::from_value(v).unwrap();
        assert_eq!(spec.validate(), vec![]);
        Arc::new(
            CompiledRule::compile(spec, "r".into(), Instant::now(), Counter::default()).unwrap(),
        )
    }

    #[test]
    fn default_methods_per_kind() {
        let m = compiled(
            json!({"type": "mistake", "mistake": {"filling": "zero", "maxOccurrences": 1, "maxLength": 1}}),
        );
        assert!(m.applies_to(Op::Read) && m.applies_to(Op::Write) && !m.applies_to(Op::Open));
        let l = compiled(json!({"type": "latency", "latency": "1ms"}));
        assert!(Op::ALL.iter().all(|op| l.applies_to(*op)));
        let a = compiled(json!({"type": "attrOverride", "attr": {"size": 1}}));
        assert!(a.applies_to(Op::Getattr) && !a.applies_to(Op::Read) && !a.touches_reads());
        let f = compiled(json!({"type": "fault", "methods": ["WRITE"], "faults": [{"errno": 5}]}));
        assert!(f.applies_to(Op::Write) && !f.applies_to(Op::Read) && !f.cache_relevant());
    }

    #[test]
    fn plan_composes_rules() {
        let rng = Arc::new(Random::new(Some(3)));
        let mut plan = Plan::none();
        for r in [
            compiled(json!({"type": "latency", "latency": "2ms"})),
            compiled(json!({"type": "latency", "latency": "3ms"})),
            compiled(json!({"type": "fault", "faults": [{"errno": 28}]})),
            compiled(json!({"type": "fault", "faults": [{"errno": 5}]})),
            compiled(json!({"type": "attrOverride", "attr": {"perm": 0o400, "ino": 9}})),
        ] {
            assert!(apply(&r, &mut plan, &rng));
            assert_eq!(r.hits.load(Ordering::Relaxed), 1);
        }
        assert_eq!(plan.delay, Duration::from_millis(5), "delays add up");
        assert_eq!(plan.check(), Err(Errno::ENOSPC), "first fault wins");
        let attr = FileAttr {
            ino: fuser::INodeNo(5),
            size: 1,
            blocks: 1,
            atime: std::time::UNIX_EPOCH,
            mtime: std::time::UNIX_EPOCH,
            ctime: std::time::UNIX_EPOCH,
            crtime: std::time::UNIX_EPOCH,
            kind: fuser::FileType::RegularFile,
            perm: 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        let got = plan.attr(attr, true);
        assert_eq!(got.perm, 0o400);
        assert_eq!(got.ino.0, 5, "entry replies keep the node id");
        assert_eq!(plan.attr(attr, false).ino.0, 9);
    }

    #[test]
    fn percent_zero_never_hits() {
        let rng = Arc::new(Random::new(Some(3)));
        let r = compiled(json!({"type": "fault", "percent": 0, "faults": [{"errno": 5}]}));
        let mut plan = Plan::none();
        for _ in 0..1000 {
            assert!(!apply(&r, &mut plan, &rng));
        }
        assert!(plan.delay.is_zero() && plan.check().is_ok() && plan.post.is_empty());
        assert_eq!(r.hits.load(Ordering::Relaxed), 0);
    }
}
