//! `mistake`: corrupt the data of reads and writes — between 1 and `maxOccurrences` ranges of
//! 1..=`maxLength` bytes per operation, filled with zeros or random bytes.

use faultline_api::iorule::Filling;
use rand::Rng as _;

use super::{Injector, Rng};

#[derive(Debug)]
pub(super) struct Mistake {
    pub filling: Filling,
    pub max_occurrences: u64,
    pub max_length: u64,
}

impl Mistake {
    /// Corrupts `buf` in place; returns the number of bytes overwritten (a range may overlap
    /// another; bytes are counted once per range).
    pub(super) fn corrupt(&self, buf: &mut [u8], rng: &mut Rng) -> u64 {
        if buf.is_empty() || self.max_occurrences == 0 || self.max_length == 0 {
            return 0;
        }
        let occurrences = rng.random_range(1..=self.max_occurrences);
        let mut written = 0;
        for _ in 0..occurrences {
            let max = self.max_length.min(buf.len() as u64) as usize;
            let len = rng.random_range(1..=max);
            let start = rng.random_range(0..=buf.len() - len);
            let range = &mut buf[start..start + len];
            match self.filling {
                Filling::Zero => range.fill(0),
                Filling::Random => rng.fill(range),
            }
            written += len as u64;
        }
        written
    }
}

impl Injector for Mistake {
    fn data(&self, buf: &mut [u8], rng: &mut Rng) {
        self.corrupt(buf, rng);
    }

    fn touches_data(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn corruption_is_bounded() {
        let m = Mistake {
            filling: Filling::Random,
            max_occurrences: 3,
            max_length: 7,
        };
        let mut rng = Rng::seed_from_u64(1);
        for round in 0..500 {
            let orig: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8 ^ 0x5a).collect();
            let mut buf = orig.clone();
            let n = m.corrupt(&mut buf, &mut rng);
            let changed = orig.iter().zip(&buf).filter(|(a, b)| a != b).count() as u64;
            assert!((1..=21).contains(&n), "round {round}: {n}");
            assert!(changed <= 21, "round {round}: {changed} bytes changed");
        }
        let z = Mistake {
            filling: Filling::Zero,
            max_occurrences: 1,
            max_length: 1000,
        };
        let mut buf = vec![0xffu8; 10];
        z.corrupt(&mut buf, &mut rng);
        assert!(buf.contains(&0), "zero filling writes zeros");
        let mut empty: Vec<u8> = Vec::new();
        assert_eq!(z.corrupt(&mut empty, &mut rng), 0);
    }
}
