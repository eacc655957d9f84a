//! What the controller remembers between passes, in memory only (a restarted controller starts
//! afresh, which is always safe): when each experiment's faults were last renewed, which object
//! version a status write was refused for, and how many passes in a row failed.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::lifecycle::{Goal, RENEW_EVERY};

/// When each experiment's lasting faults were last sent in full (in memory: a restarted
/// controller renews at its first pass). Passes in between — most are the echo of the
/// controller's own status write — leave injected targets alone, so an experiment over 5,000
/// pods costs 5,000 daemon calls per [`RENEW_EVERY`], not per pass.
#[derive(Default)]
pub struct Renewals(Mutex<BTreeMap<String, Instant>>);

impl Renewals {
    /// Whether `uid`'s renewals are due (none yet, or [`RENEW_EVERY`] less a second ago).
    pub(super) fn due(&self, uid: &str) -> bool {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(uid)
            .is_none_or(|t| t.elapsed() + Duration::from_secs(1) >= RENEW_EVERY)
    }

    pub(super) fn passed(&self, uid: &str, goal: Goal, renewed: bool) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match goal {
            Goal::Injected { .. } if renewed => {
                map.insert(uid.to_owned(), Instant::now());
            }
            Goal::Injected { .. } => {}
            Goal::Recovered(_) => {
                map.remove(uid);
            }
        }
    }
}

/// The `resourceVersion`s of each experiment that a status write of this controller went onto
/// or was refused for (409): outdated. The watch cache can still hand one to the next pass; a
/// pass on it would act on what is known to be stale (send again what the last pass sent,
/// select and kill again), so it waits for the cache instead.
#[derive(Default)]
pub struct Stale(Mutex<BTreeMap<String, Vec<String>>>);

/// Outdated versions kept per experiment: a pass writes at most three times (ahead, final, the
/// retry of a conflict), and the cache is never more than a pass behind for long.
const KEPT: usize = 8;

impl Stale {
    pub(super) fn superseded(&self, uid: &str, resource_version: Option<String>) {
        if let Some(rv) = resource_version {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let versions = map.entry(uid.to_owned()).or_default();
            if !versions.contains(&rv) {
                if versions.len() == KEPT {
                    versions.remove(0);
                }
                versions.push(rv);
            }
        }
    }

    /// Whether `resource_version` of `uid` is one known to be outdated; forgets them all once
    /// another version is seen (the cache only moves forward, so that one is newer).
    pub(super) fn is_stale(&self, uid: &str, resource_version: Option<&str>) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match (map.get(uid), resource_version) {
            (Some(versions), Some(rv)) if versions.iter().any(|v| v == rv) => true,
            (Some(_), _) => {
                map.remove(uid);
                false
            }
            (None, _) => false,
        }
    }

    /// Forgets `uid` (its object is gone).
    pub(super) fn forget(&self, uid: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }
}

/// Retries of an experiment whose pass failed for a reason that may pass (a daemon or the API
/// unreachable): 5 s, then doubling up to a minute, back to 5 s after a pass that needs none.
#[derive(Default)]
pub struct Backoff(Mutex<BTreeMap<String, u32>>);

/// The first retry.
const FIRST: Duration = Duration::from_secs(5);
/// The longest wait between retries.
const LONGEST: Duration = Duration::from_secs(60);

impl Backoff {
    /// One more failed pass of `uid`: how long to wait before the next.
    pub(super) fn failed(&self, uid: &str) -> Duration {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(uid.to_owned()).or_default();
        let wait = FIRST.saturating_mul(1 << (*n).min(4)).min(LONGEST);
        *n = n.saturating_add(1);
        wait
    }

    /// A pass of `uid` that needs no retry.
    pub(super) fn passed(&self, uid: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superseded_versions_are_stale_until_a_newer_one_is_seen() {
        let s = Stale::default();
        s.superseded("u", Some("7".into()));
        s.superseded("u", Some("9".into()));
        assert!(s.is_stale("u", Some("7")), "two writes behind");
        assert!(s.is_stale("u", Some("9")));
        assert!(!s.is_stale("other", Some("7")));
        assert!(!s.is_stale("u", Some("10")));
        assert!(
            !s.is_stale("u", Some("7")),
            "forgotten once a newer version was seen"
        );
        for v in 0..20 {
            s.superseded("u", Some(v.to_string()));
        }
        assert!(s.is_stale("u", Some("19")));
        assert!(!s.is_stale("u", Some("0")), "only the last few are kept");
    }

    #[test]
    fn retries_double_up_to_a_minute_and_start_over_after_a_clean_pass() {
        let b = Backoff::default();
        let waits: Vec<u64> = (0..7).map(|_| b.failed("u").as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60, 60]);
        assert_eq!(b.failed("other").as_secs(), 5, "per experiment");
        b.passed("u");
        assert_eq!(b.failed("u").as_secs(), 5);
    }
}
