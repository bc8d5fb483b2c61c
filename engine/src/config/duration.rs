//! Durations as the config file writes them: a number and a unit, `250ms`, `5s`, `1.5s`, `1m`,
//! `1h`. [`Dur`] is the schema type; it parses while the file is deserialized, so a bad value is
//! an error at that key's path. Integer arithmetic only: no input can overflow or panic.

use std::{fmt, time::Duration};

use serde::{de, Deserialize, Deserializer};

/// A duration written `<number><unit>` with unit `ms`, `s`, `m` or `h`; the number may have a
/// fraction (`1.5s`). `0s` is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

const EXPECTED: &str = "a duration like \"250ms\", \"5s\", \"1.5s\", \"1m\" or \"1h\"";

/// Parses `250ms`, `5s`, `1.5s`, `1m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}: expected {EXPECTED}");
    let unit_at = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("invalid duration {text:?}: missing unit (ms, s, m or h)"))?;
    let (number, unit) = text.split_at(unit_at);
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return Err(bad()),
    };
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int.is_empty() || (number.contains('.') && frac.is_empty()) || frac.contains('.') {
        return Err(bad());
    }
    // Fractions finer than a nanosecond of the unit are dropped.
    let frac = &frac[..frac.len().min(12)];
    let int: u128 = int.parse().map_err(|_| bad())?;
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| bad())?
    };
    let scale = 10u128.pow(frac.len() as u32);
    let nanos = int
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(frac_value * unit_nanos / scale))
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| format!("duration {text:?} is too long"))?;
    Ok(Duration::from_nanos(nanos))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration {n}: a duration needs a unit, like \"{n}s\" or \"{n}ms\""
                )))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration {n}: expected {EXPECTED}"
                )))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration {n}: a duration needs a unit, like \"{n}s\""
                )))
            }
        }
        d.deserialize_any(V)
    }
}
