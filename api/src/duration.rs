//! Go-style durations (`300ms`, `1.5h`, `2m30s`), as Chaos Mesh and Kubernetes users write them.
//!
//! Parsed into exact nanoseconds: fractions are computed with integer arithmetic so `1.1s` is
//! 1_100_000_000 ns, never 1_099_999_999 from a float round trip. Negative values, a missing unit
//! (other than a bare `0`) and overflow past `u64` nanoseconds are errors.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("is empty")]
    Empty,
    #[error("is negative; durations must be positive")]
    Negative,
    #[error("`{0}` has no unit; write e.g. `{0}s` or `{0}ms` (units: ns, us, ms, s, m, h)")]
    MissingUnit(String),
    #[error("unknown unit `{unit}` in `{input}` (units: ns, us, ms, s, m, h)")]
    UnknownUnit { input: String, unit: String },
    #[error("`{0}` is not a duration like `300ms`, `1.5h` or `2m30s`")]
    Malformed(String),
    #[error("`{0}` is too long")]
    Overflow(String),
}

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a Go duration string into an exact [`Duration`].
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let s = match s.strip_prefix('-') {
        Some(rest)
            if rest
                .trim_start_matches(['0', '.'])
                .chars()
                .any(|c| c.is_ascii_digit()) =>
        {
            return Err(DurationError::Negative);
        }
        Some(rest) => rest,
        None => s.strip_prefix('+').unwrap_or(s),
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let malformed = || DurationError::Malformed(input.to_string());
    let overflow = || DurationError::Overflow(input.to_string());
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(num_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(malformed());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.trim().to_string()));
        }
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| DurationError::UnknownUnit {
                input: input.to_string(),
                unit: unit.to_string(),
            })?;
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut nanos = int.checked_mul(scale).ok_or_else(overflow)?;
        // Fraction digits beyond nanosecond resolution are dropped, as Go does.
        let mut place = scale;
        for digit in frac_part.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            nanos += u128::from(digit - b'0') * place;
        }
        total = total.checked_add(nanos).ok_or_else(overflow)?;
        rest = next;
    }
    let nanos = u64::try_from(total).map_err(|_| overflow())?;
    Ok(Duration::from_nanos(nanos))
}

/// Formats a duration the way Go does (`1h2m3.5s`, `300ms`, `0s`), so conversions emit
/// canonical strings that [`parse_duration`] reads back exactly.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("us", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(nanos, scale));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = nanos / 60_000_000_000 % 60;
    let secs = nanos % 60_000_000_000;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{}s", fraction(secs, 1_000_000_000)));
    out
}

fn fraction(value: u128, scale: u128) -> String {
    let int = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return int.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations_exactly() {
        let cases = [
            ("300ms", 300_000_000),
            ("1.5h", 5_400_000_000_000),
            ("2m30s", 150_000_000_000),
            ("1.1s", 1_100_000_000),
            ("10us", 10_000),
            ("10µs", 10_000),
            ("7ns", 7),
            (".5s", 500_000_000),
            ("0", 0),
            ("0s", 0),
            ("1h0m0.000000001s", 3_600_000_000_001),
            (" 5s ", 5_000_000_000),
        ];
        for (input, nanos) in cases {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_nanos(nanos)),
                "{input}"
            );
        }
    }

    #[test]
    fn refuses_bad_durations() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("-1s"), Err(DurationError::Negative));
        assert_eq!(
            parse_duration("10"),
            Err(DurationError::MissingUnit("10".into()))
        );
        assert!(matches!(
            parse_duration("10d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("1..2s"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_duration("s"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_duration("ms10"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("10 s"),
            Err(DurationError::UnknownUnit { .. })
        ));
    }

    #[test]
    fn formats_round_trip() {
        for input in [
            "0s",
            "300ms",
            "1h30m0s",
            "2m30s",
            "1.5s",
            "10us",
            "7ns",
            "1h0m0.000000001s",
        ] {
            let d = parse_duration(input).unwrap();
            assert_eq!(format_duration(d), input);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,24}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn format_parse_round_trip(nanos in 0u64..u64::MAX / 2) {
            let d = Duration::from_nanos(nanos);
            proptest::prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
