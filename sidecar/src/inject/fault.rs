//! `fault`: fail matching operations with an errno picked by weight.

use fuser::Errno;
use rand::Rng as _;

use super::{Injector, Plan, Rng};

#[derive(Debug)]
pub(super) struct Fault {
    /// (errno, weight); weights are not all zero (validated).
    pub errnos: Vec<(i32, u32)>,
}

impl Fault {
    pub(super) fn pick(&self, rng: &mut Rng) -> Errno {
        let total: u64 = self.errnos.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 {
            return Errno::EIO;
        }
        let mut ticket = rng.random_range(0..total);
        for (errno, weight) in &self.errnos {
            let w = u64::from(*weight);
            if ticket < w {
                return Errno::from_i32(*errno);
            }
            ticket -= w;
        }
        Errno::EIO
    }
}

impl Injector for Fault {
    fn before(&self, plan: &mut Plan, rng: &mut Rng) {
        if plan.errno.is_none() {
            plan.errno = Some(self.pick(rng));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn weights_are_respected() {
        let f = Fault {
            errnos: vec![(libc::EIO, 1), (libc::ENOSPC, 3), (libc::EPERM, 0)],
        };
        let mut rng = Rng::seed_from_u64(7);
        let mut eio = 0;
        let mut enospc = 0;
        for _ in 0..4000 {
            match f.pick(&mut rng).code() {
                libc::EIO => eio += 1,
                libc::ENOSPC => enospc += 1,
                other => panic!("weight 0 errno picked: {other}"),
            }
        }
        // Expected 1000 / 3000; allow 5 sigma (~±140).
        assert!((860..=1140).contains(&eio), "EIO {eio}");
        assert_eq!(eio + enospc, 4000);
    }
}
