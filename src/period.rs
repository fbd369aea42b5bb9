//! Periods: the vault's own clock names the snapshot every write lands in.
//!
//! A period is a local day (`2026-11-22`) or hour (`2026-11-22T13`) in the time zone fixed at
//! init. Names sort chronologically as strings. A writer cannot choose or forge the period:
//! it is always computed here from the system clock.

use crate::error::{Error, Result};
use crate::format::config::PeriodKind;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone)]
pub struct PeriodClock {
    kind: PeriodKind,
    tz: Tz,
}

impl PeriodClock {
    pub fn new(kind: PeriodKind, time_zone: &str) -> Result<Self> {
        Ok(PeriodClock { kind, tz: parse_tz(time_zone)? })
    }

    pub fn name_at(&self, t: DateTime<Utc>) -> String {
        let local = t.with_timezone(&self.tz);
        match self.kind {
            PeriodKind::Day => local.format("%Y-%m-%d").to_string(),
            PeriodKind::Hour => local.format("%Y-%m-%dT%H").to_string(),
        }
    }

    /// The period the vault is in now.
    pub fn current(&self) -> String {
        self.name_at(Utc::now())
    }
}

pub fn parse_tz(name: &str) -> Result<Tz> {
    name.parse::<Tz>().map_err(|_| {
        Error::invalid(format!("unknown time zone {name:?} (use an IANA name such as Europe/Paris or UTC)"))
    })
}

/// The time zone a new vault gets when none is given: `TZ` if it names a zone, else the
/// system's zone, else UTC.
pub fn default_time_zone() -> String {
    if let Ok(tz) = std::env::var("TZ") {
        let tz = tz.trim_start_matches(':');
        if parse_tz(tz).is_ok() {
            return tz.to_string();
        }
    }
    match iana_time_zone::get_timezone() {
        Ok(tz) if parse_tz(&tz).is_ok() => tz,
        _ => "UTC".to_string(),
    }
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH` (digits in the right places).
pub fn looks_like_period(s: &str) -> bool {
    let b = s.as_bytes();
    let day = |b: &[u8]| {
        b.len() == 10
            && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
    };
    match b.len() {
        10 => day(b),
        13 => day(&b[..10]) && b[10] == b'T' && b[11].is_ascii_digit() && b[12].is_ascii_digit(),
        _ => false,
    }
}

/// Names that cannot be created at the root of the current period: period-like names,
/// `latest`, and `today` as a directory (it is the usual name of the nightly dump file).
pub fn reserved_at_root(name: &str, is_dir: bool) -> bool {
    looks_like_period(name) || name == "latest" || (is_dir && name == "today")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names() {
        let t = Utc.with_ymd_and_hms(2026, 11, 21, 23, 30, 0).unwrap();
        assert_eq!(PeriodClock::new(PeriodKind::Day, "UTC").unwrap().name_at(t), "2026-11-21");
        assert_eq!(PeriodClock::new(PeriodKind::Day, "Europe/Paris").unwrap().name_at(t), "2026-11-22");
        assert_eq!(PeriodClock::new(PeriodKind::Hour, "Europe/Paris").unwrap().name_at(t), "2026-11-22T00");
        assert!(PeriodClock::new(PeriodKind::Day, "Mars/Olympus").is_err());
    }

    #[test]
    fn reserved() {
        assert!(looks_like_period("2026-11-22"));
        assert!(looks_like_period("2026-11-22T05"));
        assert!(!looks_like_period("2026-11-2"));
        assert!(!looks_like_period("today"));
        assert!(reserved_at_root("latest", false));
        assert!(reserved_at_root("today", true));
        assert!(!reserved_at_root("today", false));
    }
}
