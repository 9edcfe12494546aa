//! Times as time values: [`Timestamp`] is a `SystemTime` that reads and writes RFC 3339 in
//! UTC with seconds precision (how records, status and logs show it).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::{Duration, SystemTime};

/// A point in time, seconds precision (sub-second parts are dropped on creation, so a value
/// equals itself after a round trip through its text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(SystemTime);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    pub fn system_time(self) -> SystemTime {
        self.0
    }

    /// How long until this time (zero when it has passed).
    pub fn until(self) -> Duration {
        self.0.duration_since(SystemTime::now()).unwrap_or_default()
    }

    pub fn parse(text: &str) -> Option<Timestamp> {
        humantime::parse_rfc3339(text).ok().map(Timestamp::from)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp::from(self.0 + d)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_seconds(self.0))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Timestamp::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not an RFC 3339 time")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_json() {
        let t = Timestamp::from(SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_250));
        assert_eq!(t.to_string(), "2025-11-24T16:00:00Z");
        assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2025-11-24T16:00:00Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
        assert!(t + Duration::from_secs(1) > t);
    }
}
