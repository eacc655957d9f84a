//! Rates (`10mbps`, `1 kbit`) and memory sizes (`256MB`, `1GiB`, `50%`), parsed exactly.
//!
//! Rate units follow tc(8): `bit`, `kbit`, `mbit`, `gbit`, `tbit` are bits per second (SI),
//! `kibit`… are IEC; `bps`, `kbps`, `mbps`… are **bytes** per second, as in tc. Units are
//! case-insensitive and required: a bare number is ambiguous between tc (bits) and humans (bytes).
//! A rate is a whole number, as Chaos Mesh takes it (`1500kbit`, not `1.5mbit`).

/// A decimal number as an exact fraction `mantissa / 10^decimals`.
fn parse_decimal(number: &str) -> Option<(u128, u32)> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || int.len() + frac.len() > 30
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    Some((digits.parse().ok()?, frac.len() as u32))
}

fn split_number(input: &str) -> (&str, &str) {
    let end = input
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(input.len());
    let (number, unit) = input.split_at(end);
    (number, unit.trim())
}

const RATE_UNITS: &[(&str, u128)] = &[
    ("bit", 1),
    ("kbit", 1_000),
    ("mbit", 1_000_000),
    ("gbit", 1_000_000_000),
    ("tbit", 1_000_000_000_000),
    ("kibit", 1 << 10),
    ("mibit", 1 << 20),
    ("gibit", 1 << 30),
    ("tibit", 1 << 40),
    ("bps", 8),
    ("kbps", 8_000),
    ("mbps", 8_000_000),
    ("gbps", 8_000_000_000),
    ("tbps", 8_000_000_000_000),
    ("kibps", 8 << 10),
    ("mibps", 8 << 20),
    ("gibps", 8 << 30),
    ("tibps", 8 << 40),
];

/// Why a rate or a memory size does not parse; its text is the reason in
/// [`crate::validate::Rule::InvalidRate`] and [`crate::validate::Rule::InvalidSize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// No leading number.
    #[error("must start with a number{example}")]
    NoNumber {
        /// An example of the form, or nothing.
        example: &'static str,
    },
    /// The number is not a decimal.
    #[error("the number is malformed")]
    Malformed,
    /// A rate with a fraction: Chaos Mesh takes whole numbers only.
    #[error("must be a whole number with a unit, e.g. `1500kbit` rather than `1.5mbit`")]
    Fraction,
    /// A rate without a unit.
    #[error("needs a unit: bit, kbit, mbit, gbit (bits/s) or bps, kbps, mbps, gbps (bytes/s)")]
    NoRateUnit,
    /// A unit that is not one of `known`.
    #[error("unknown unit `{unit}` ({known})")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The units there are.
        known: &'static str,
    },
    /// More than fits in 64 bits.
    #[error("is too large")]
    TooLarge,
    /// A rate that rounds to zero bytes per second.
    #[error("is below one byte per second")]
    BelowOneByte,
    /// A memory percentage outside 1..=100.
    #[error("a percentage must be a whole number from 1 to 100")]
    Percent,
    /// A memory size below what a stress-ng vm worker accepts.
    #[error("must be at least {MIN_MEMORY_BYTES} bytes")]
    TooSmall,
}

/// Parses a tc rate into bytes per second.
pub fn parse_rate(input: &str) -> Result<u64, QuantityError> {
    let s = input.trim();
    let (number, unit) = split_number(s);
    if number.is_empty() {
        return Err(QuantityError::NoNumber {
            example: ", e.g. `10mbit`",
        });
    }
    let (mantissa, decimals) = parse_decimal(number).ok_or(QuantityError::Malformed)?;
    if decimals > 0 || number.contains('.') {
        return Err(QuantityError::Fraction);
    }
    if unit.is_empty() {
        return Err(QuantityError::NoRateUnit);
    }
    let lower = unit.to_ascii_lowercase();
    let bits = RATE_UNITS
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(_, bits)| *bits)
        .ok_or_else(|| QuantityError::UnknownUnit {
            unit: unit.to_owned(),
            known: "bit, kbit, mbit, gbit, tbit, bps, kbps, mbps, gbps, tbps, or IEC kibit, mibps, ...",
        })?;
    let bytes = mantissa
        .checked_mul(bits)
        .map(|b| b / 10u128.pow(decimals) / 8)
        .and_then(|b| u64::try_from(b).ok())
        .ok_or(QuantityError::TooLarge)?;
    if bytes == 0 {
        return Err(QuantityError::BelowOneByte);
    }
    Ok(bytes)
}

/// A stress-ng memory size: absolute bytes or a share of the container's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemorySize {
    Bytes(u64),
    Percent(u32),
}

const SIZE_UNITS: &[(&str, u128)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1_000),
    ("kb", 1_000),
    ("m", 1_000_000),
    ("mb", 1_000_000),
    ("g", 1_000_000_000),
    ("gb", 1_000_000_000),
    ("t", 1_000_000_000_000),
    ("tb", 1_000_000_000_000),
    ("ki", 1 << 10),
    ("kib", 1 << 10),
    ("mi", 1 << 20),
    ("mib", 1 << 20),
    ("gi", 1 << 30),
    ("gib", 1 << 30),
    ("ti", 1 << 40),
    ("tib", 1 << 40),
];

/// Smallest memory a stress-ng vm worker accepts.
pub const MIN_MEMORY_BYTES: u64 = 4096;

/// Parses `256MB` (SI, as Chaos Mesh's go-units), `1GiB` (IEC), `1024` (bytes) or `50%`.
pub fn parse_memory_size(input: &str) -> Result<MemorySize, QuantityError> {
    let s = input.trim();
    if let Some(percent) = s.strip_suffix('%') {
        return match percent.trim().parse::<u32>() {
            Ok(p) if (1..=100).contains(&p) => Ok(MemorySize::Percent(p)),
            _ => Err(QuantityError::Percent),
        };
    }
    let (number, unit) = split_number(s);
    if number.is_empty() {
        return Err(QuantityError::NoNumber { example: "" });
    }
    let (mantissa, decimals) = parse_decimal(number).ok_or(QuantityError::Malformed)?;
    let lower = unit.to_ascii_lowercase();
    let scale = SIZE_UNITS
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(_, scale)| *scale)
        .ok_or_else(|| QuantityError::UnknownUnit {
            unit: unit.to_owned(),
            known: "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB",
        })?;
    let bytes = mantissa
        .checked_mul(scale)
        .map(|b| b / 10u128.pow(decimals))
        .and_then(|b| u64::try_from(b).ok())
        .ok_or(QuantityError::TooLarge)?;
    if bytes < MIN_MEMORY_BYTES {
        return Err(QuantityError::TooSmall);
    }
    Ok(MemorySize::Bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let cases = [
            ("10mbps", 10_000_000),
            ("10MBps", 10_000_000),
            ("1 kbit", 125),
            ("1mbit", 125_000),
            ("1500kbit", 187_500),
            ("100bit", 12),
            ("1gbit", 125_000_000),
            ("1kibit", 128),
            ("1mibps", 1 << 20),
            ("8bps", 8),
        ];
        for (input, want) in cases {
            assert_eq!(parse_rate(input), Ok(want), "{input}");
        }
        for bad in [
            "",
            "10",
            "mbit",
            "10 furlongs",
            "1bit",
            "1..2mbit",
            "99999999999999999999tbps",
            "-1mbit",
            "1.5mbit",
            "1.mbit",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_rate("1.5mbit"), Err(QuantityError::Fraction));
    }

    #[test]
    fn sizes() {
        assert_eq!(
            parse_memory_size("256MB"),
            Ok(MemorySize::Bytes(256_000_000))
        );
        assert_eq!(
            parse_memory_size("256mb"),
            Ok(MemorySize::Bytes(256_000_000))
        );
        assert_eq!(parse_memory_size("1GiB"), Ok(MemorySize::Bytes(1 << 30)));
        assert_eq!(
            parse_memory_size("1.5G"),
            Ok(MemorySize::Bytes(1_500_000_000))
        );
        assert_eq!(parse_memory_size("8192"), Ok(MemorySize::Bytes(8192)));
        assert_eq!(parse_memory_size("50%"), Ok(MemorySize::Percent(50)));
        for bad in ["", "0%", "101%", "1.5%", "100", "12XB", "MB", "-1MB"] {
            assert!(parse_memory_size(bad).is_err(), "{bad}");
        }
    }
}
