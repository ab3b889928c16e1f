//! How the config file spells durations and lists, for serde.
//!
//! - A duration is a number of seconds, fractions allowed (`15`, `0.02`, or the same as
//!   a string, as the environment gives it); `0` usually means "off". Printed back as
//!   seconds.
//! - A list is a TOML array, or one string with commas (`"a,b"`), so that an
//!   environment variable can carry it.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

/// Seconds as the CLI and the config file take them: `0`, or at least one millisecond.
pub(crate) fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    seconds_from_f64(secs).map_err(|why| format!("{s:?} {why}"))
}

fn seconds_from_f64(secs: f64) -> Result<Duration, &'static str> {
    if !secs.is_finite() || secs < 0.0 {
        return Err("must be a finite number of seconds, 0 or more");
    }
    if secs > 0.0 && secs < 0.001 {
        return Err("is too short: use 0 (off) or at least 0.001");
    }
    Duration::try_from_secs_f64(secs).map_err(|_| "is too long")
}

/// `#[serde(with = "units::seconds")]`.
pub(super) mod seconds {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let secs = d.as_secs_f64();
        if secs.fract() == 0.0 && secs < 1e15 {
            s.serialize_u64(d.as_secs())
        } else {
            s.serialize_f64(secs)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(SecondsVisitor)
    }
}

struct SecondsVisitor;

impl Visitor<'_> for SecondsVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number of seconds (0 or more, fractions allowed)")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("{v} must be 0 or more seconds")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        seconds_from_f64(v).map_err(|why| E::custom(format!("{v} {why}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_seconds(v).map_err(E::custom)
    }
}

/// `#[serde(with = "units::list")]`: a TOML array, or one comma-separated string, of
/// anything that parses from a string.
pub(super) mod list {
    use super::*;

    pub(crate) fn serialize<T: fmt::Display, S: Serializer>(
        v: &[T],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(ToString::to_string))
    }

    pub(crate) fn deserialize<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr,
        T::Err: fmt::Display,
    {
        d.deserialize_any(ListVisitor(PhantomData))
    }
}

struct ListVisitor<T>(PhantomData<T>);

fn item<T: FromStr, E: de::Error>(s: &str) -> Result<T, E>
where
    T::Err: fmt::Display,
{
    s.trim()
        .parse()
        .map_err(|e| E::custom(format!("{s:?}: {e}")))
}

impl<'de, T: FromStr> Visitor<'de> for ListVisitor<T>
where
    T::Err: fmt::Display,
{
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of strings, or one string with commas")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
        v.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(item)
            .collect()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::new();
        while let Some(s) = seq.next_element::<String>()? {
            out.push(item(&s)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_fractions_and_refuse_nonsense() {
        assert_eq!(parse_seconds("1").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_seconds("0.25").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_seconds("0").unwrap(), Duration::ZERO);
        for bad in ["-1", "abc", "inf", "NaN", "0.0000001"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }
}
