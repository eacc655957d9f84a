//! The packet scheduler's clock, as `tc` learns it from `/proc/net/psched`.
//!
//! tbf's `struct tc_tbf_qopt` carries times in "psched ticks" (`buffer`, `mtu`) and its rate
//! tables list per-size transmit times in ticks, so encoding tbf needs the tick length. iproute2's
//! `tc_core_init()` (tc/tc_core.c) reads three hex words from `/proc/net/psched` — `t2us`, `us2t`,
//! `clock_res` — and derives
//!
//! ```text
//! clock_factor = clock_res / TIME_UNITS_PER_SEC          (TIME_UNITS_PER_SEC = 1_000_000)
//! tick_in_usec = t2us / us2t * clock_factor               (after: if clock_res == 1e9 { t2us = us2t })
//! ```
//!
//! Kernels since 2.6.31 print `000003e8 00000040 000f4240 <hz>` (`NSEC_PER_USEC`,
//! `PSCHED_TICKS2NS(1)` = 64 ns, 1_000_000), i.e. 15.625 ticks per microsecond. The daemon reads
//! the file at run time and passes the parsed value in; this module does no I/O. `tc` ignores a
//! missing or unreadable file and keeps `tick_in_usec = 1`; we make that an error instead.

use thiserror::Error;

/// `TIME_UNITS_PER_SEC` from iproute2's `include/utils.h`: tc's internal time unit is 1 µs.
pub(crate) const TIME_UNITS_PER_SEC: f64 = 1_000_000.0;

/// The first three words of `/proc/net/psched`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Psched {
    /// Nanoseconds per microsecond as the kernel reports it (`t2us`).
    pub t2us: u32,
    /// Nanoseconds per psched tick (`us2t`, `PSCHED_TICKS2NS(1)`).
    pub us2t: u32,
    /// Clock resolution in Hz as reported (`clock_res`).
    pub clock_res: u32,
}

/// Why `/proc/net/psched` could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PschedError {
    #[error("/proc/net/psched: expected three hex words, found {found}")]
    TooShort { found: usize },
    #[error("/proc/net/psched: word {index} ({word:?}) is not a 32-bit hex number")]
    NotHex { index: usize, word: String },
    #[error("/proc/net/psched: zero in t2us/us2t/clock_res makes the tick length undefined")]
    Zero,
}

impl Psched {
    /// What every kernel since 2.6.31 reports (64 ns ticks, 1 MHz `clock_res`).
    pub const LINUX: Psched = Psched {
        t2us: 1000,
        us2t: 64,
        clock_res: 1_000_000,
    };

    /// Parses the text of `/proc/net/psched` the way `tc_core_init()` scans it (`%08x%08x%08x`:
    /// three whitespace-separated hex words; the fourth, the timer frequency, is unused).
    pub fn parse(text: &str) -> Result<Self, PschedError> {
        let words: Vec<&str> = text.split_whitespace().take(3).collect();
        if words.len() < 3 {
            return Err(PschedError::TooShort { found: words.len() });
        }
        let mut values = [0u32; 3];
        for (index, (word, slot)) in words.iter().zip(values.iter_mut()).enumerate() {
            *slot = u32::from_str_radix(word, 16).map_err(|_| PschedError::NotHex {
                index,
                word: (*word).to_owned(),
            })?;
        }
        let [t2us, us2t, clock_res] = values;
        if t2us == 0 || us2t == 0 || clock_res == 0 {
            return Err(PschedError::Zero);
        }
        Ok(Psched {
            t2us,
            us2t,
            clock_res,
        })
    }

    /// Ticks per microsecond, computed in `f64` exactly as `tc_core_init()` does in `double`.
    pub fn tick_in_usec(self) -> f64 {
        // Compatibility rule of tc_core_init(): a nanosecond clock_res means t2us is really us2t.
        let t2us = if self.clock_res == 1_000_000_000 {
            self.us2t
        } else {
            self.t2us
        };
        let clock_factor = f64::from(self.clock_res) / TIME_UNITS_PER_SEC;
        f64::from(t2us) / f64::from(self.us2t) * clock_factor
    }

    /// `tc_calc_xmittime()`: ticks to send `size` bytes at `rate` bytes/s, rounded up (iproute2 ≥
    /// 6.15 uses `ceil`; older versions truncated) and saturated at `u32::MAX`, which tc treats as
    /// "out of range". The `f64` operation order matches tc's so the result is bit-identical.
    pub fn xmittime(self, rate: u64, size: u64) -> u32 {
        let time = TIME_UNITS_PER_SEC * (size as f64 / rate as f64);
        let ticks = (time * self.tick_in_usec()).ceil();
        if ticks > f64::from(u32::MAX) {
            u32::MAX
        } else {
            ticks as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_this_kernel() {
        let p = Psched::parse("000003e8 00000040 000f4240 3b9aca00\n").unwrap();
        assert_eq!(p, Psched::LINUX);
        assert_eq!(p.tick_in_usec(), 15.625);
    }

    #[test]
    fn nanosecond_clock_res_compat_rule() {
        let p = Psched {
            t2us: 1000,
            us2t: 1000,
            clock_res: 1_000_000_000,
        };
        // t2us := us2t, clock_factor = 1000 → 1000 ticks per µs (1 ns ticks).
        assert_eq!(p.tick_in_usec(), 1000.0);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            Psched::parse("3e8 40"),
            Err(PschedError::TooShort { found: 2 })
        );
        assert!(matches!(
            Psched::parse("3e8 zz 1"),
            Err(PschedError::NotHex { index: 1, .. })
        ));
        assert_eq!(Psched::parse("0 40 f4240"), Err(PschedError::Zero));
    }

    #[test]
    fn xmittime_rounds_up_and_saturates() {
        let p = Psched::LINUX;
        // 10000 bytes at 125000 B/s = 80 ms = 80000 µs = 1_250_000 ticks exactly.
        assert_eq!(p.xmittime(125_000, 10_000), 1_250_000);
        // 1 byte at 3 B/s = 333333.33 µs → 5208333.33 ticks → 5208334.
        assert_eq!(p.xmittime(3, 1), 5_208_334);
        assert_eq!(p.xmittime(1, u64::from(u32::MAX)), u32::MAX);
    }
}
