//! `%START_TIME(...)%` formats: a small strftime subset, parsed once at config load into
//! [`TimeFormat`] pieces and rendered in UTC without allocating.
//!
//! Supported: `%Y %y %m %d %e %H %M %S %j %z %Z %s %F %T %%`, fractional seconds as `%f` (9
//! digits), `%1f`..`%9f` (that many digits) and Envoy's `%E3S`/`%E6S`/`%E9S` (seconds with that
//! many decimals). Envoy's default (`START_TIME` without a format) is
//! `%Y-%m-%dT%H:%M:%E3SZ`. Times are always UTC, so `%z` is `+0000` and `%Z` is `UTC`.

use std::{io::Write, time::SystemTime};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Year,
    Year2,
    Month,
    Day,
    DaySpace,
    Hour,
    Minute,
    Second,
    DayOfYear,
    Offset,
    Zone,
    Epoch,
    /// Fraction of the second with this many digits (1..=9).
    Frac(u8),
    /// Seconds, a dot and this many fraction digits (`%E3S`).
    SecFrac(u8),
}

/// A parsed `START_TIME` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeFormat(Vec<Part>);

impl TimeFormat {
    /// Envoy's default: `2026-11-25T04:09:00.123Z`.
    pub fn envoy_default() -> TimeFormat {
        TimeFormat::parse("%Y-%m-%dT%H:%M:%E3SZ").unwrap_or(TimeFormat(Vec::new()))
    }

    /// Parse a strftime-style format; the error names the unsupported specifier.
    pub fn parse(s: &str) -> Result<TimeFormat, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            let Some(spec) = chars.next() else {
                return Err("START_TIME format ends with a lone `%`".into());
            };
            let part = match spec {
                '%' => {
                    lit.push('%');
                    continue;
                }
                'Y' => Part::Year,
                'y' => Part::Year2,
                'm' => Part::Month,
                'd' => Part::Day,
                'e' => Part::DaySpace,
                'H' => Part::Hour,
                'M' => Part::Minute,
                'S' => Part::Second,
                'j' => Part::DayOfYear,
                'z' => Part::Offset,
                'Z' => Part::Zone,
                's' => Part::Epoch,
                'f' => Part::Frac(9),
                'F' => {
                    parts.extend(flush(&mut lit));
                    parts.extend([
                        Part::Year,
                        Part::Lit("-".into()),
                        Part::Month,
                        Part::Lit("-".into()),
                        Part::Day,
                    ]);
                    continue;
                }
                'T' => {
                    parts.extend(flush(&mut lit));
                    parts.extend([
                        Part::Hour,
                        Part::Lit(":".into()),
                        Part::Minute,
                        Part::Lit(":".into()),
                        Part::Second,
                    ]);
                    continue;
                }
                d @ '1'..='9' if chars.peek() == Some(&'f') => {
                    chars.next();
                    Part::Frac(d as u8 - b'0')
                }
                'E' => {
                    let d = chars.next();
                    let s = chars.next();
                    match (d, s) {
                        (Some(d @ '1'..='9'), Some('S')) => Part::SecFrac(d as u8 - b'0'),
                        _ => return Err("START_TIME: `%E` must be followed by a digit and `S` (e.g. `%E3S`)".into()),
                    }
                }
                other => {
                    return Err(format!(
                        "START_TIME: unsupported time specifier `%{other}` (supported: %Y %y %m %d %e %H %M %S %j %z %Z %s %F %T %f %1f..%9f %E1S..%E9S %%)"
                    ))
                }
            };
            parts.extend(flush(&mut lit));
            parts.push(part);
        }
        parts.extend(flush(&mut lit));
        Ok(TimeFormat(parts))
    }

    /// Write `t` (UTC) in this format.
    pub fn render(&self, t: SystemTime, out: &mut Vec<u8>) {
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        let nanos = d.subsec_nanos();
        let days = (secs / 86_400) as i64;
        let sod = secs % 86_400;
        let (y, m, day) = civil_from_days(days);
        let (hh, mm, ss) = (sod / 3600, (sod / 60) % 60, sod % 60);
        for p in &self.0 {
            let _ = match p {
                Part::Lit(s) => {
                    out.extend_from_slice(s.as_bytes());
                    Ok(())
                }
                Part::Year if (0..10_000).contains(&y) => pad(out, y as u64, 4, b'0'),
                Part::Year => write!(out, "{y:04}"),
                Part::Year2 => pad(out, y.rem_euclid(100) as u64, 2, b'0'),
                Part::Month => pad(out, u64::from(m), 2, b'0'),
                Part::Day => pad(out, u64::from(day), 2, b'0'),
                Part::DaySpace => pad(out, u64::from(day), 2, b' '),
                Part::Hour => pad(out, hh, 2, b'0'),
                Part::Minute => pad(out, mm, 2, b'0'),
                Part::Second => pad(out, ss, 2, b'0'),
                Part::DayOfYear => write!(out, "{:03}", days - days_from_civil(y, 1, 1) + 1),
                Part::Offset => write!(out, "+0000"),
                Part::Zone => write!(out, "UTC"),
                Part::Epoch => write!(out, "{secs}"),
                Part::Frac(n) => write_frac(out, nanos, *n),
                Part::SecFrac(n) => {
                    let _ = pad(out, ss, 2, b'0');
                    out.push(b'.');
                    write_frac(out, nanos, *n)
                }
            };
        }
    }
}

fn flush(lit: &mut String) -> Option<Part> {
    (!lit.is_empty()).then(|| Part::Lit(std::mem::take(lit)))
}

fn write_frac(out: &mut Vec<u8>, nanos: u32, digits: u8) -> std::io::Result<()> {
    let div = 10u32.pow(9 - u32::from(digits));
    pad(out, u64::from(nanos / div), usize::from(digits), b'0')
}

/// `v` in at least `width` digits, left-padded with `fill` (what `{:0w}` / `{:w}` write, without
/// the formatting machinery: this runs for every access-log line).
fn pad(out: &mut Vec<u8>, v: u64, width: usize, fill: u8) -> std::io::Result<()> {
    let mut buf = [0u8; 20];
    let digits = crate::text::decimal(v, &mut buf);
    out.extend(std::iter::repeat_n(
        fill,
        width.saturating_sub(digits.len()),
    ));
    out.extend_from_slice(digits);
    Ok(())
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
    }

    fn fmt(f: &str, t: SystemTime) -> String {
        let mut out = Vec::new();
        TimeFormat::parse(f).unwrap().render(t, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn envoy_default_shape() {
        // 2026-11-25T04:09:07.123Z
        let t = at(1_795_579_747, 123_456_789);
        let mut out = Vec::new();
        TimeFormat::envoy_default().render(t, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "2026-11-25T04:09:07.123Z");
    }

    #[test]
    fn specifiers() {
        let t = at(951_782_400 + 3661, 5_000_000); // 2000-02-29 01:01:01.005
        assert_eq!(fmt("%Y-%m-%dT%H:%M:%S%z", t), "2000-02-29T01:01:01+0000");
        assert_eq!(fmt("%F %T %Z", t), "2000-02-29 01:01:01 UTC");
        assert_eq!(
            fmt("%j %y %s %3f %E6S %%", t),
            "060 00 951786061 005 01.005000 %"
        );
        assert_eq!(fmt("%f", t), "005000000");
        assert_eq!(fmt("%e", at(0, 0)), " 1");
    }

    #[test]
    fn unsupported_is_an_error() {
        assert!(TimeFormat::parse("%Q").unwrap_err().contains("%Q"));
        assert!(TimeFormat::parse("abc%").is_err());
        assert!(TimeFormat::parse("%E3X").is_err());
    }
}
