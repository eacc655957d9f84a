//! `latency`: delay every matching operation by a fixed time.

use std::time::Duration;

use super::{Injector, Plan, Rng};

#[derive(Debug)]
pub(super) struct Latency {
    pub delay: Duration,
}

impl Injector for Latency {
    fn before(&self, plan: &mut Plan, _rng: &mut Rng) {
        plan.delay += self.delay;
    }
}
