//! Syntax shared by several kinds: percentages, interface names, integer ranges.

use super::Rule;

/// Parses a percentage written as a decimal string (`"25"`, `"0.5"`, `"100"`) into
/// millionths of a percent (0..=100_000_000), exactly.
pub fn parse_percent(value: &str) -> Result<u64, Rule> {
    let bad = || Rule::PercentOutOfRange {
        value: value.to_string(),
    };
    let s = value.trim().trim_end_matches('%').trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || int.len() > 3
    {
        return Err(bad());
    }
    let int: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let mut micro = int * 1_000_000;
    let mut place = 100_000;
    for digit in frac.bytes() {
        micro += u64::from(digit - b'0') * place;
        place /= 10;
        if place == 0 {
            break;
        }
    }
    if micro > 100_000_000 {
        return Err(bad());
    }
    Ok(micro)
}

/// `true` for a Linux network interface name the kernel accepts (`dev_valid_name`):
/// 1..=15 bytes, not `.`/`..`, no `/`, `:` or whitespace. A veth peer suffix such as `eth0@if12`,
/// as `ip link` prints it, is accepted here and stripped by [`normalize_device`].
pub fn device_name(value: &str) -> Result<(), Rule> {
    let name = normalize_device(value);
    let bad = |reason: &str| Rule::InvalidDevice {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(bad("must not be empty"));
    }
    if name.len() > 15 {
        return Err(bad("must be at most 15 bytes (IFNAMSIZ)"));
    }
    if name == "." || name == ".." {
        return Err(bad("`.` and `..` are not interface names"));
    }
    if name.bytes().any(|b| {
        b == b'/' || b == b':' || b == b'@' || b.is_ascii_whitespace() || b.is_ascii_control()
    }) {
        return Err(bad(
            "must not contain '/', ':', '@', whitespace or control characters",
        ));
    }
    if !name.is_ascii() {
        return Err(bad("must be ASCII"));
    }
    Ok(())
}

/// Strips the `@ifN` / `@peer` suffix that `ip link` prints for veth devices.
pub fn normalize_device(value: &str) -> &str {
    let value = value.trim();
    match value.split_once('@') {
        Some((name, peer)) if !peer.is_empty() && !peer.contains('@') => name,
        _ => value,
    }
}

/// An integer inside `min..=max`.
pub fn in_range(value: i128, min: i128, max: i128) -> Result<(), Rule> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Rule::OutOfRange { value, min, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents_are_exact() {
        assert_eq!(parse_percent("25"), Ok(25_000_000));
        assert_eq!(parse_percent("0.5"), Ok(500_000));
        assert_eq!(parse_percent("100"), Ok(100_000_000));
        assert_eq!(parse_percent("33.333333"), Ok(33_333_333));
        assert_eq!(parse_percent("50%"), Ok(50_000_000));
        assert!(parse_percent("100.1").is_err());
        assert!(parse_percent("-1").is_err());
        assert!(parse_percent("abc").is_err());
        assert!(parse_percent("").is_err());
        assert!(parse_percent("1e3").is_err());
    }

    #[test]
    fn devices() {
        assert!(device_name("eth0").is_ok());
        assert!(device_name("eth0@if12").is_ok());
        assert_eq!(normalize_device("eth0@if12"), "eth0");
        assert_eq!(normalize_device("eth0"), "eth0");
        assert!(device_name("a/b").is_err());
        assert!(device_name("abcdefghijklmnop").is_err());
        assert!(device_name("..").is_err());
        assert!(device_name("eth 0").is_err());
        assert!(device_name("").is_err());
        assert!(device_name("@if3").is_err());
    }
}
