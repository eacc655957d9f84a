//! Fencing the leader: this replica acts only while it can see that it holds the Lease.
//!
//! `kube-lease-manager` renews the Lease and reports a change of leader, but when its renewals
//! fail (the API server unreachable from this replica alone, say) it only logs and backs off:
//! it never reports the Lease lost, while another replica takes it over once it runs out. So
//! the leader also reads the Lease itself, every [`POLL`], and stops when the Lease names
//! another holder, or when it has not seen a renewal for [`TRUST`] — before any other replica
//! may take it over (the Lease's duration), as client-go's leader election does with its own
//! observed times.

use std::time::{Duration, Instant};

/// How long a Lease holds without renewal (`leaseDurationSeconds`).
pub(crate) const LEASE: Duration = Duration::from_secs(15);
/// The Lease is renewed this long before it would run out: every 8 s.
pub(crate) const GRACE: Duration = Duration::from_secs(7);
/// How often the leader reads the Lease (one quorum read a second: a Lease read is cheap, and
/// client-go's leader election writes every 2 s).
pub(crate) const POLL: Duration = Duration::from_secs(1);
/// How long one read may take.
pub(crate) const READ: Duration = Duration::from_millis(500);
/// A second for clocks: another replica judges expiry by its own.
const SKEW: Duration = Duration::from_secs(1);
/// The longest the leader acts without seeing a renewal: 11 s. A renewal is seen up to a poll
/// and a read after it was made, and its absence noticed up to a poll and a read late, so the
/// leader stops at most `TRUST + 3 s` after the last renewal: before the Lease's 15 s, less
/// [`SKEW`]. A renewal may come 3 s late (11 s against every 8 s) before the leader gives up.
pub(crate) const TRUST: Duration = LEASE
    .saturating_sub(POLL)
    .saturating_sub(READ)
    .saturating_sub(POLL)
    .saturating_sub(READ)
    .saturating_sub(SKEW);

/// What the leader has seen of the Lease.
#[derive(Debug)]
pub(crate) struct Fence {
    renew_time: Option<String>,
    seen: Instant,
}

impl Fence {
    /// Starts trusting the Lease at `now` (the moment it was won).
    pub(crate) fn new(now: Instant) -> Self {
        Fence {
            renew_time: None,
            seen: now,
        }
    }

    /// Takes in one read of the Lease: `Err(why)` when this replica must stop.
    pub(crate) fn observe(
        &mut self,
        identity: &str,
        holder: Option<&str>,
        renew_time: Option<&str>,
        now: Instant,
    ) -> Result<(), String> {
        if holder != Some(identity) {
            return Err(format!(
                "the Lease is held by {} now",
                holder.unwrap_or("nobody")
            ));
        }
        if renew_time != self.renew_time.as_deref() {
            self.renew_time = renew_time.map(str::to_owned);
            self.seen = now;
        }
        self.check(now)
    }

    /// `Err(why)` once no renewal was seen for [`TRUST`] (also when the Lease cannot be read).
    pub(crate) fn check(&self, now: Instant) -> Result<(), String> {
        let since = now.saturating_duration_since(self.seen);
        if since > TRUST {
            return Err(format!(
                "no renewal of the Lease seen for {}s (another replica may take it over after {}s)",
                since.as_secs(),
                LEASE.as_secs()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_keep_the_leader_acting() {
        let t0 = Instant::now();
        let mut f = Fence::new(t0);
        for (i, renewed) in ["a", "a", "b", "b", "c"].iter().enumerate() {
            let now = t0 + Duration::from_secs(10 * i as u64);
            assert_eq!(f.observe("me", Some("me"), Some(renewed), now), Ok(()));
        }
    }

    #[test]
    fn a_lease_not_renewed_stops_the_leader_before_it_runs_out() {
        let t0 = Instant::now();
        let mut f = Fence::new(t0);
        assert!(f.observe("me", Some("me"), Some("r1"), t0).is_ok());
        let just_before = t0 + TRUST;
        assert!(f.observe("me", Some("me"), Some("r1"), just_before).is_ok());
        let after = t0 + TRUST + Duration::from_millis(1);
        let why = f.observe("me", Some("me"), Some("r1"), after).unwrap_err();
        assert!(why.contains("no renewal"), "{why}");
        assert_eq!(TRUST, Duration::from_secs(11));
        assert!(TRUST > LEASE - GRACE, "one renewal may come late");
        // Reads failing altogether count the same.
        assert!(Fence::new(t0).check(after).is_err());
    }

    #[test]
    fn another_holder_stops_the_leader_at_once() {
        let t0 = Instant::now();
        let mut f = Fence::new(t0);
        let why = f
            .observe("me", Some("other-7"), Some("r1"), t0)
            .unwrap_err();
        assert!(why.contains("other-7"), "{why}");
        assert!(f.observe("me", None, None, t0).is_err());
    }
}
