//! Wall-clock times as the journal and `faults.list` write them (RFC 3339, UTC).

use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `t` in RFC 3339.
pub fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// How long until `rfc3339` (zero when past); `None` when it is not a time.
pub fn until(rfc3339: &str) -> Option<Duration> {
    let at = OffsetDateTime::parse(rfc3339, &Rfc3339).ok()?;
    let left = at - OffsetDateTime::now_utc();
    Some(left.try_into().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_past_is_zero() {
        let later = rfc3339(SystemTime::now() + Duration::from_secs(60));
        let left = until(&later).unwrap();
        assert!(left > Duration::from_secs(55) && left <= Duration::from_secs(60));
        assert_eq!(until("2000-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(until("yesterday"), None);
    }
}
